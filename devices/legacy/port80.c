/* Port 0x80, the POST diagnostic port: guests write it as an I/O delay.
 * Writes are dropped and reads are all ones, on the shortest path. */
#include "base/bus.h"
#include "devices/device.h"

#define PORT80 0x80

static void port80_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	(void)opaque;
	(void)offset;
	(void)data;
	(void)len;
}

/* No read handler: the bus returns all ones without counting it as
 * unhandled. */
static const struct bus_dev_ops port80_ops = {
	.write = port80_write,
};

/* The state is the bus, for destroy. */
static int port80_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	int ret;

	(void)desc;
	ret = bus_register(ctx->pio_bus, PORT80, 1, &port80_ops, NULL, "port80");
	if (ret)
		return ret;
	*state = ctx->pio_bus;
	return 0;
}

static void port80_destroy(void *state)
{
	if (state)
		bus_unregister(state, PORT80);
}

static struct device_desc port80_desc = {
	.name = "port80",
	.level = DEVICE_LEVEL_LEGACY,
	.realize = port80_realize,
	.destroy = port80_destroy,
};
DEVICE_REGISTER(port80_desc);
