/* Handles the ACPI power button the way an OS does: enables PWRBTN_EN,
 * routes the SCI (GSI 9, level, active high) through the IOAPIC to a
 * vector, sleeps in hlt, and on the interrupt clears PWRBTN_STS and powers
 * off through PM1a_CNT (S5). Ember then exits 0. */
#include "rt/apic.h"
#include "rt/rt.h"

#define PM1_STS		0x600
#define PM1_EN		0x602
#define PWRBTN		(1u << 8)
#define SCI_GSI		9
#define SCI_VECTOR	0x50
#define IOAPIC_BASE	0xfec00000ULL

static volatile uint32_t pressed;

static void ioapic_write(uint32_t reg, uint32_t val)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, val);
}

static void sci_handler(unsigned vector, void *arg)
{
	uint16_t sts = inw(PM1_STS);

	(void)vector;
	(void)arg;
	if (sts & PWRBTN) {
		outw(PM1_STS, PWRBTN);	/* write 1 to clear: drops the SCI level */
		pressed = 1;
	}
}

static bool was_pressed(void *arg)
{
	(void)arg;
	return pressed;
}

int guest_main(const struct hvm_start_info *si)
{
	uint64_t wait_ms = (uint64_t)rt_cmdline_int("wait_ms", 120000);

	(void)si;
	apic_init();
	rt_set_irq_handler(SCI_VECTOR, sci_handler, 0);
	/* Redirection entry: vector, fixed, physical dest = this CPU, level,
	 * active high (bit 15 = level, bit 13 = 0 active high). */
	ioapic_write(0x10 + 2 * SCI_GSI + 1, rt_lapic_id() << 24);
	ioapic_write(0x10 + 2 * SCI_GSI, SCI_VECTOR | (1u << 15));
	outw(PM1_EN, PWRBTN);
	rt_puts("pwrbtn: waiting for the power button");
	if (!apic_wait(was_pressed, 0, wait_ms)) {
		rt_puts("pwrbtn: no power button event");
		return 3;
	}
	rt_puts("pwrbtn: pressed, powering off");
	rt_poweroff();
}
