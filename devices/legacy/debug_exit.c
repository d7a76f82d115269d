/* isa-debug-exit (QEMU semantics): writing v to port 0xf4 ends the VM with
 * exit status (v << 1) | 1. Reads are left unhandled (all ones). Opt-in
 * (--debug-exit, "debug_exit": true), as in QEMU; on by default only for
 * the built-in demo guest: otherwise any guest could choose our status. */
#include <errno.h>
#include <stdlib.h>

#include "base/bus.h"
#include "devices/device.h"
#include "vmm/config.h"

#define DEBUG_EXIT_PORT 0xf4

static void debug_exit_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	const struct device_ctx *ctx = opaque;
	unsigned v;

	if (offset != 0 || len == 0)
		return;
	v = *(const uint8_t *)data;
	device_request(ctx, DEVICE_REQ_EXIT, (int)((v << 1) | 1), "isa-debug-exit");
}

static const struct bus_dev_ops debug_exit_ops = {
	.write = debug_exit_write,
};

/* The state is a copy of the context: the port and the exit request. */
static int debug_exit_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct device_ctx *copy;
	int ret;

	(void)desc;
	*state = NULL;
	if (!CONFIG_DEBUG_EXIT(ctx->cfg))
		return 0;
	copy = malloc(sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	*copy = *ctx;
	ret = bus_register(ctx->pio_bus, DEBUG_EXIT_PORT, 1, &debug_exit_ops, copy,
			   "isa-debug-exit");
	if (ret) {
		free(copy);
		return ret;
	}
	*state = copy;
	return 0;
}

static void debug_exit_destroy(void *state)
{
	struct device_ctx *ctx = state;

	if (!ctx)
		return;
	bus_unregister(ctx->pio_bus, DEBUG_EXIT_PORT);
	free(ctx);
}

static struct device_desc debug_exit_desc = {
	.name = "isa-debug-exit",
	.level = DEVICE_LEVEL_LEGACY,
	.realize = debug_exit_realize,
	.destroy = debug_exit_destroy,
};
DEVICE_REGISTER(debug_exit_desc);
