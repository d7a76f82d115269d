/* isa-debug-exit (QEMU semantics): writing v to port 0xf4 ends the VM with
 * exit status (v << 1) | 1. Reads are left unhandled (all ones). Opt-in
 * (--debug-exit, "debug_exit": true), as in QEMU; on by default only for
 * the built-in demo guest: otherwise any guest could choose our status. */
#include <errno.h>

#include "devices/device.h"
#include "vmm/vm.h"

#define DEBUG_EXIT_PORT 0xf4

static void debug_exit_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	struct vm *vm = opaque;
	unsigned v;

	if (offset != 0 || len == 0)
		return;
	v = *(const uint8_t *)data;
	vm_request_exit(vm, (int)((v << 1) | 1), "isa-debug-exit");
}

static const struct bus_dev_ops debug_exit_ops = {
	.write = debug_exit_write,
};

static int debug_exit_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct vm *vm = ctx->machine;	/* transitional */

	(void)desc;
	int ret;

	*state = NULL;
	if (!CONFIG_DEBUG_EXIT(vm->cfg))
		return 0;
	ret = bus_register(&vm->pio_bus, DEBUG_EXIT_PORT, 1, &debug_exit_ops, vm,
			       "isa-debug-exit");

	if (ret)
		return ret;
	*state = vm;
	return 0;
}

static void debug_exit_destroy(void *state)
{
	struct vm *vm = state;

	if (vm)
		bus_unregister(&vm->pio_bus, DEBUG_EXIT_PORT);
}

static struct device_desc debug_exit_desc = {
	.name = "isa-debug-exit",
	.level = DEVICE_LEVEL_LEGACY,
	.realize = debug_exit_realize,
	.destroy = debug_exit_destroy,
};
DEVICE_REGISTER(debug_exit_desc);
