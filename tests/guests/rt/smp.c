/* AP bring-up: INIT + SIPI to the real-mode trampoline (entry.S). */
#include "rt.h"

#define LAPIC_SVR (RT_LAPIC_BASE + 0xf0)
#define LAPIC_ICR_LO (RT_LAPIC_BASE + 0x300)
#define LAPIC_ICR_HI (RT_LAPIC_BASE + 0x310)
#define SVR_ENABLE 0x100u
#define SPURIOUS_VECTOR 0xffu
#define ICR_INIT 0x4500u /* delivery mode INIT, level assert, physical */
#define ICR_SIPI 0x4600u /* delivery mode Start-up, level assert */
#define SIPI_VECTOR (RT_AP_TRAMPOLINE >> 12)

#define FIRST_WAIT_MS 100
#define SECOND_WAIT_MS 2000

/* Used by rt_ap64 in entry.S. */
void (*volatile rt_ap_fn)(uint32_t);
volatile uint32_t rt_ap_booted;
volatile uint8_t rt_ap_alive[RT_MAX_CPUS];

extern const char rt_tramp_start[], rt_tramp_end[];

static bool wait_booted(uint32_t want, uint64_t ms)
{
	uint64_t deadline = rt_deadline_ms(ms);

	while (rt_atomic_load(&rt_ap_booted) < want) {
		if (rt_expired(deadline))
			return false;
		rt_cpu_relax();
	}
	return true;
}

static void send_ipi(uint32_t apic_id, uint32_t icr)
{
	mmio_write32(LAPIC_ICR_HI, apic_id << 24);
	mmio_write32(LAPIC_ICR_LO, icr);
}

unsigned rt_start_aps(unsigned n, void (*fn)(uint32_t apic_id))
{
	if (n > RT_MAX_CPUS)
		n = RT_MAX_CPUS;
	if (n <= 1)
		return 1;

	memcpy((void *)(uintptr_t)RT_AP_TRAMPOLINE, rt_tramp_start, (size_t)(rt_tramp_end - rt_tramp_start));
	rt_ap_fn = fn;
	mmio_write32(LAPIC_SVR, SVR_ENABLE | SPURIOUS_VECTOR);

	/* KVM processes INIT and SIPI in order, so the 10 ms INIT-SIPI delay
	 * of the MP spec is skipped; a second SIPI is only sent to APs that
	 * did not check in. */
	uint32_t self = rt_lapic_id();
	uint32_t want = 0;
	for (uint32_t id = 0; id < RT_MAX_CPUS && want < n - 1; id++) {
		if (id == self)
			continue;
		send_ipi(id, ICR_INIT);
		mmio_write32(LAPIC_ICR_LO, ICR_SIPI | SIPI_VECTOR); /* ICR_HI still holds id */
		want++;
	}

	if (!wait_booted(want, FIRST_WAIT_MS)) {
		uint32_t sent = 0;
		for (uint32_t id = 0; id < RT_MAX_CPUS && sent < want; id++) {
			if (id == self)
				continue;
			sent++;
			if (!rt_ap_alive[id])
				send_ipi(id, ICR_SIPI | SIPI_VECTOR);
		}
		wait_booted(want, SECOND_WAIT_MS);
	}
	return 1 + rt_atomic_load(&rt_ap_booted);
}
