/* libFuzzer target: the ACPI PM1a event/control blocks and the reset
 * register (devices/acpi/pm.c) driven through the PIO bus the way a guest
 * would, with a device context that has no KVM behind it (as
 * tests/unit/test_acpi.c does): SCI changes fail quietly, poweroff/reset
 * requests only land in a fake machine, which the fuzzer checks and clears.
 *
 * Input: a sequence of 4-byte operations:
 *   [0] bit 0: write; bits 1-2: width 1/2/4/8 (plus 3 for odd sizes);
 *       bits 3-7: 0-23 plain access, 24-26 power button, 27-28 device
 *       reset, 29-31 clear the pending machine request
 *   [1] port offset from ACPI_PM1A_EVT_PORT - 2 (mod 16: both range edges)
 *   [2..3] value (LE16, repeated to the access width) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm.h"
#include "base/bus.h"
#include "base/log.h"
#include "devices/acpi/pm.h"
#include "devices/device.h"
#include "irqchip/irqchip.h"
#include "vmm/acpi/acpi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct device_desc *pm_desc;

/* The machine's side: the first request since the last clear wins, as in
 * vm_post_request(). */
struct fake_machine {
	bool pending;
	enum device_machine_request req;
};

static void fake_request(void *machine, enum device_machine_request req, int status,
			 const char *cause)
{
	struct fake_machine *m = machine;

	(void)status;
	(void)cause;
	if (m->pending)
		return;
	m->pending = true;
	m->req = req;
}

static const struct device_machine_ops fake_ops = { .request = fake_request };

static void setup(void)
{
	if (pm_desc)
		return;
	log_set_level(LOG_ERR);
	pm_desc = device_find(ACPI_PM_DEVICE_NAME);
	if (!pm_desc || !pm_desc->power_button)
		abort();
}

static uint16_t rd16(struct bus *pio_bus, uint16_t port)
{
	uint16_t v = 0;

	if (!bus_read(pio_bus, port, &v, 2))
		abort();
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned widths[4] = { 1, 2, 4, 8 };
	struct fake_machine m = { 0 };
	struct irqchip irqchip;
	struct kvm_vm kvm;
	struct bus pio_bus;
	struct device_ctx ctx;
	void *state = NULL;

	setup();
	memset(&kvm, 0, sizeof(kvm));
	memset(&irqchip, 0, sizeof(irqchip));
	kvm.vm_fd = -1;
	irqchip.kvm = &kvm;
	if (bus_init(&pio_bus, "pio"))
		abort();
	ctx = (struct device_ctx){ .pio_bus = &pio_bus, .irqchip = &irqchip, .ops = &fake_ops,
				   .machine = &m };
	if (pm_desc->realize(pm_desc, &ctx, &state))
		abort();

	for (size_t i = 0; i + 4 <= size; i += 4) {
		const uint8_t *op = data + i;
		unsigned kind = op[0] >> 3;
		unsigned len = widths[(op[0] >> 1) & 3];
		uint64_t port = ACPI_PM1A_EVT_PORT - 2 + (op[1] & 15);
		uint8_t buf[8];
		bool before = m.pending;

		if (kind >= 29) {
			m.pending = false;
			continue;
		}
		if (kind >= 27) {
			pm_desc->reset(state);
			if (rd16(&pio_bus, ACPI_PM1A_EVT_PORT) ||
			    rd16(&pio_bus, ACPI_PM1A_EVT_PORT + 2) ||
			    rd16(&pio_bus, ACPI_PM1A_CNT_PORT) != 1)
				abort();	/* reset clears everything but SCI_EN */
			continue;
		}
		if (kind >= 24) {
			pm_desc->power_button(state);
			if (!(rd16(&pio_bus, ACPI_PM1A_EVT_PORT) & (1u << 8)))
				abort();
			continue;
		}
		if (kind >= 20)
			len = 3 + (kind & 3) * 2;	/* 3, 5, 7, 9: odd sizes */
		if (len > sizeof(buf))
			len = sizeof(buf);
		for (unsigned b = 0; b < len; b++)
			buf[b] = op[2 + (b & 1)];
		if (op[0] & 1) {
			bus_write(&pio_bus, port, buf, len);
			/* Writing the reset value to the reset register asks for a reset. */
			if (port == ACPI_RESET_PORT && len == 1 && buf[0] == ACPI_RESET_VALUE &&
			    !before && (!m.pending || m.req != DEVICE_REQ_RESET))
				abort();
		} else {
			memset(buf, 0xa5, sizeof(buf));
			bus_read(&pio_bus, port, buf, len);
		}
		/* SCI_EN always reads set; SLP_EN is write-only. */
		{
			uint16_t cnt = rd16(&pio_bus, ACPI_PM1A_CNT_PORT);

			if (!(cnt & 1) || (cnt & (1u << 13)))
				abort();
		}
		if (m.pending && m.req != DEVICE_REQ_RESET && m.req != DEVICE_REQ_POWEROFF)
			abort();
	}

	pm_desc->destroy(state);
	bus_destroy(&pio_bus);
	return 0;
}
