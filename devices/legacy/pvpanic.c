/* pvpanic (QEMU's ISA device, ACPI id QEMU0001) at port 0x505: a guest
 * kernel reports its own panic, which Ember turns into a GUEST_PANICKED
 * event and the crash action of --on-reboot (restart: reset; exit: exit
 * status 2), instead of learning of it only when the guest reboots. Reads
 * return the events supported; writes report them. Linux: pvpanic-mmio. */
#include <errno.h>
#include <stdlib.h>

#include "base/bus.h"
#include "base/log.h"
#include "devices/device.h"
#include "vmm/acpi/acpi.h"

#define PVPANIC_PORT		0x505
#define PVPANIC_PANICKED	(1u << 0)
#define PVPANIC_CRASH_LOADED	(1u << 1)

static void pvpanic_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	(void)opaque;
	if (len)
		*(uint8_t *)data = offset == 0 ? PVPANIC_PANICKED | PVPANIC_CRASH_LOADED : 0xff;
	for (unsigned i = 1; i < len; i++)
		((uint8_t *)data)[i] = 0;
}

/* Only vCPU threads write here; an occasional extra line is harmless. */
static struct ratelimit crash_loaded_rl = RATELIMIT_INIT(5000, 2);

static void pvpanic_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	const struct device_ctx *ctx = opaque;
	uint8_t v;

	if (offset != 0 || len == 0)
		return;
	v = *(const uint8_t *)data;
	if (v & PVPANIC_PANICKED)
		device_request(ctx, DEVICE_REQ_PANIC, 0, "guest kernel panic (pvpanic)");
	else if ((v & PVPANIC_CRASH_LOADED) && ratelimit_allow(&crash_loaded_rl))
		log_info("guest loaded a crash kernel (pvpanic)");
}

static const struct bus_dev_ops pvpanic_ops = {
	.read = pvpanic_read,
	.write = pvpanic_write,
};

/* The state is a copy of the context: the port and the panic request. */
static int pvpanic_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct device_ctx *copy;
	int ret;

	(void)desc;
	copy = malloc(sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	*copy = *ctx;
	ret = bus_register(ctx->pio_bus, PVPANIC_PORT, 1, &pvpanic_ops, copy, "pvpanic");
	if (ret) {
		free(copy);
		return ret;
	}
	*state = copy;
	return 0;
}

static void pvpanic_destroy(void *state)
{
	struct device_ctx *ctx = state;

	if (!ctx)
		return;
	bus_unregister(ctx->pio_bus, PVPANIC_PORT);
	free(ctx);
}

static struct device_desc pvpanic_desc = {
	.name = "pvpanic",
	.level = DEVICE_LEVEL_LEGACY,
	.realize = pvpanic_realize,
	.destroy = pvpanic_destroy,
};
DEVICE_REGISTER(pvpanic_desc);

static void pvpanic_dsdt(struct acpi_builder *b, const struct acpi_build_ctx *ctx)
{
	(void)ctx;
	aml_device_begin(b, "PEVT");
	aml_name_decl(b, "_HID");
	aml_string(b, "QEMU0001");
	aml_name_decl(b, "_CRS");
	aml_buffer_begin(b);
	aml_res_io(b, PVPANIC_PORT, 1);
	aml_res_end_tag(b);
	aml_end(b);
	aml_name_decl(b, "_STA");
	aml_int(b, 0xF);
	aml_end(b);
}

static struct acpi_extension pvpanic_acpi = {
	.name = "pvpanic",
	.dsdt_sb = pvpanic_dsdt,
};
ACPI_EXTENSION_REGISTER(pvpanic_acpi);
