/* ACPI PM1a event/control blocks and the reset register. ACPI mode is
 * always on (no SMM): SCI_EN reads as set. The only event is the fixed
 * power button; the SCI (GSI 9, level) is high while STS & EN is non-zero. */
#include "devices/acpi/pm.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/bus.h"
#include "base/log.h"
#include "devices/device.h"
#include "irqchip/irqchip.h"
#include "vmm/acpi/acpi.h"

/* Register offsets from ACPI_PM1A_EVT_PORT. */
#define PM1_STS		0
#define PM1_EN		2
#define PM1_CNT		(ACPI_PM1A_CNT_PORT - ACPI_PM1A_EVT_PORT)
#define PM_RESET	(ACPI_RESET_PORT - ACPI_PM1A_EVT_PORT)
#define PM_RANGE_LEN	(PM_RESET + 1)
#define PM_NR_REG16	3	/* STS, EN, CNT */

#define PM1_PWRBTN	(1u << 8)	/* PWRBTN_STS / PWRBTN_EN */
#define PM1_CNT_SCI_EN	(1u << 0)
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_TYP_MASK 7u
#define PM1_CNT_SLP_EN	(1u << 13)

struct acpi_pm {
	struct device_ctx ctx;
	pthread_mutex_t lock;
	uint16_t reg[PM_NR_REG16];	/* indexed by offset / 2 */
	struct ratelimit sleep_rl;	/* under lock */
	bool sci;			/* level we last drove */
};

enum { REG_STS = PM1_STS / 2, REG_EN = PM1_EN / 2, REG_CNT = PM1_CNT / 2 };

/* Called with the lock held. */
static void pm_update_sci(struct acpi_pm *pm)
{
	bool level = (pm->reg[REG_STS] & pm->reg[REG_EN] & PM1_PWRBTN) != 0;

	if (level == pm->sci)
		return;
	pm->sci = level;
	if (irqchip_set_line(pm->ctx.irqchip, ACPI_SCI_IRQ, level))
		log_warn("acpi-pm: cannot drive SCI (GSI %d) to %d", ACPI_SCI_IRQ, level);
}

static void pm_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	struct acpi_pm *pm = opaque;
	uint8_t regs[PM_RANGE_LEN] = { 0 };

	if (offset > PM_RANGE_LEN || len > PM_RANGE_LEN - offset) {
		memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&pm->lock);
	for (unsigned r = 0; r < PM_NR_REG16; r++) {
		uint16_t v = pm->reg[r];

		if (r == REG_CNT)
			v |= PM1_CNT_SCI_EN;
		regs[2 * r] = (uint8_t)v;
		regs[2 * r + 1] = (uint8_t)(v >> 8);
	}
	pthread_mutex_unlock(&pm->lock);
	memcpy(data, regs + offset, len);
}

static void pm_sleep(struct acpi_pm *pm, unsigned typ)
{
	bool allow;

	if (typ == ACPI_S5_SLP_TYP) {
		device_request(&pm->ctx, DEVICE_REQ_POWEROFF, 0, "ACPI S5 (PM1a_CNT)");
		return;
	}
	pthread_mutex_lock(&pm->lock);
	allow = ratelimit_allow(&pm->sleep_rl);	/* a guest can ask at will */
	pthread_mutex_unlock(&pm->lock);
	if (allow)
		log_info("acpi-pm: guest asked for sleep type %u; only S5 (type %u) is supported, "
			 "ignored", typ, ACPI_S5_SLP_TYP);
}

static void pm_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	struct acpi_pm *pm = opaque;
	const uint8_t *d = data;
	uint16_t val[PM_NR_REG16] = { 0 }, mask[PM_NR_REG16] = { 0 };
	bool sleep, reset = false;
	unsigned typ;

	if (offset > PM_RANGE_LEN || len > PM_RANGE_LEN - offset)
		return;
	/* Split the access into per-register bytes: any width works. */
	for (unsigned i = 0; i < len; i++) {
		uint64_t a = offset + i;

		if (a < 2 * PM_NR_REG16) {
			val[a / 2] |= (uint16_t)(d[i] << (a % 2 * 8));
			mask[a / 2] |= (uint16_t)(0xff << (a % 2 * 8));
		} else if (a == PM_RESET) {
			reset = d[i] == ACPI_RESET_VALUE;
			if (!reset)
				log_debug("acpi-pm: reset register written with 0x%02x, ignored", d[i]);
		}
	}

	pthread_mutex_lock(&pm->lock);
	pm->reg[REG_STS] &= (uint16_t)~(val[REG_STS] & mask[REG_STS]);	/* write 1 to clear */
	pm->reg[REG_EN] = (uint16_t)((pm->reg[REG_EN] & ~mask[REG_EN]) | (val[REG_EN] & mask[REG_EN]));
	/* SLP_EN is write-only: act on it, never store it. */
	pm->reg[REG_CNT] = (uint16_t)((pm->reg[REG_CNT] & ~mask[REG_CNT]) |
				      (val[REG_CNT] & mask[REG_CNT] & ~PM1_CNT_SLP_EN));
	sleep = (val[REG_CNT] & mask[REG_CNT] & PM1_CNT_SLP_EN) != 0;
	typ = (pm->reg[REG_CNT] >> PM1_CNT_SLP_TYP_SHIFT) & PM1_CNT_SLP_TYP_MASK;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);

	/* Machine requests take the machine's lock: make them without ours. */
	if (sleep)
		pm_sleep(pm, typ);
	if (reset)
		device_request(&pm->ctx, DEVICE_REQ_RESET, 0, "ACPI reset register");
}

static const struct bus_dev_ops pm_ops = {
	.read = pm_read,
	.write = pm_write,
};

/* The host pressed the power button (QMP system_powerdown, SIGTERM). */
static void pm_power_button(void *state)
{
	struct acpi_pm *pm = state;

	pthread_mutex_lock(&pm->lock);
	pm->reg[REG_STS] |= PM1_PWRBTN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static int pm_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct acpi_pm *pm;
	int ret;

	(void)desc;
	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	pm->ctx = *ctx;
	pm->sleep_rl = (struct ratelimit)RATELIMIT_INIT(5000, 5);
	ret = -pthread_mutex_init(&pm->lock, NULL);
	if (ret)
		goto err_free;
	ret = bus_register(ctx->pio_bus, ACPI_PM1A_EVT_PORT, PM_RANGE_LEN, &pm_ops, pm,
			   ACPI_PM_DEVICE_NAME);
	if (ret)
		goto err_mutex;
	*state = pm;
	return 0;

err_mutex:
	pthread_mutex_destroy(&pm->lock);
err_free:
	free(pm);
	return ret;
}

static void pm_reset(void *state)
{
	struct acpi_pm *pm = state;

	pthread_mutex_lock(&pm->lock);
	memset(pm->reg, 0, sizeof(pm->reg));
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static void pm_destroy(void *state)
{
	struct acpi_pm *pm = state;

	if (!pm)
		return;
	bus_unregister(pm->ctx.pio_bus, ACPI_PM1A_EVT_PORT);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

/* Snapshots: PM1 status, enable and control; the SCI follows them. */
static json_t *pm_save(void *state)
{
	struct acpi_pm *pm = state;
	json_t *o;

	pthread_mutex_lock(&pm->lock);
	o = json_pack("{s:i, s:i, s:i}", "sts", pm->reg[REG_STS], "en", pm->reg[REG_EN], "cnt",
		      pm->reg[REG_CNT]);
	pthread_mutex_unlock(&pm->lock);
	return o;
}

static int pm_load(void *state, json_t *saved, char *err, size_t errlen)
{
	static const char *const keys[PM_NR_REG16] = { "sts", "en", "cnt" };
	struct acpi_pm *pm = state;
	uint16_t reg[PM_NR_REG16];

	for (unsigned r = 0; r < PM_NR_REG16; r++) {
		json_t *v = json_object_get(saved, keys[r]);

		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > UINT16_MAX) {
			snprintf(err, errlen, "%s: expected a 16-bit register value", keys[r]);
			return -EINVAL;
		}
		reg[r] = (uint16_t)json_integer_value(v);
	}
	if (reg[REG_CNT] & PM1_CNT_SLP_EN) {
		snprintf(err, errlen, "cnt: SLP_EN is never stored");
		return -EINVAL;
	}
	pthread_mutex_lock(&pm->lock);
	memcpy(pm->reg, reg, sizeof(reg));
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static struct device_desc acpi_pm_desc = {
	.name = ACPI_PM_DEVICE_NAME,
	.level = DEVICE_LEVEL_LEGACY,
	.realize = pm_realize,
	.reset = pm_reset,
	.power_button = pm_power_button,
	.save = pm_save,
	.load = pm_load,
	.destroy = pm_destroy,
};
DEVICE_REGISTER(acpi_pm_desc);
