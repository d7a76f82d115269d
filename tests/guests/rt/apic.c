/* Local APIC: enable, timer-backed waiting. See apic.h. */
#include "rt/apic.h"

#define LAPIC_SVR (RT_LAPIC_BASE + 0xf0)
#define LAPIC_LVT_TIMER (RT_LAPIC_BASE + 0x320)
#define LAPIC_LVT_LINT0 (RT_LAPIC_BASE + 0x350)
#define LAPIC_TIMER_INIT (RT_LAPIC_BASE + 0x380)
#define LAPIC_TIMER_DIV (RT_LAPIC_BASE + 0x3e0)
#define LVT_MASKED 0x10000u
#define SVR_ENABLE 0x100u
#define TIMER_DIV_1 0xbu
/* KVM's LAPIC timer runs at 1 GHz (APIC bus cycle 1 ns): ~10 ms; at other
 * rates it only changes how often the deadline is checked. */
#define WAKE_COUNT 10000000u
#define PROBE_COUNT 100000u
#define PROBE_MS 100

static bool inited, timer_ok;

bool apic_timer_works(void) { return timer_ok; }

static void timer_arm(uint32_t count)
{
	mmio_write32(LAPIC_TIMER_INIT, count);
}

void apic_init(void)
{
	if (inited)
		return;
	inited = true;
	rt_irq_disable();
	outb(0x21, 0xff); /* 8259 master / slave: mask all */
	outb(0xa1, 0xff);
	mmio_write32(LAPIC_LVT_LINT0, LVT_MASKED);
	mmio_write32(LAPIC_SVR, SVR_ENABLE | RT_SPURIOUS_VECTOR);
	mmio_write32(LAPIC_TIMER_DIV, TIMER_DIV_1);
	mmio_write32(LAPIC_LVT_TIMER, APIC_TIMER_VECTOR); /* one-shot, unmasked */

	uint32_t before = rt_irq_count[APIC_TIMER_VECTOR];
	uint64_t deadline = rt_deadline_ms(PROBE_MS);
	timer_arm(PROBE_COUNT);
	rt_irq_enable();
	while (rt_irq_count[APIC_TIMER_VECTOR] == before && !rt_expired(deadline))
		rt_cpu_relax();
	rt_irq_disable();
	timer_ok = rt_irq_count[APIC_TIMER_VECTOR] != before;
	if (!timer_ok) {
		timer_arm(0);
		rt_puts("apic: LAPIC timer did not fire; waits will poll");
	}
}

bool apic_wait(bool (*done)(void *arg), void *arg, uint64_t ms)
{
	uint64_t deadline = rt_deadline_ms(ms);
	uint32_t fired = 0;
	bool armed = false, ok;

	for (;;) {
		if ((ok = done(arg)) || rt_expired(deadline))
			break;
		if (!timer_ok) {
			rt_irq_enable();
			rt_cpu_relax();
			rt_irq_disable();
			continue;
		}
		if (!armed || rt_irq_count[APIC_TIMER_VECTOR] != fired) {
			fired = rt_irq_count[APIC_TIMER_VECTOR];
			timer_arm(WAKE_COUNT);
			armed = true;
		}
		rt_irq_wait();
	}
	if (armed)
		timer_arm(0);
	return ok;
}

struct count_wait {
	const volatile uint32_t *counter;
	uint32_t snapshot;
};

static bool count_changed(void *arg)
{
	struct count_wait *w = arg;
	return *w->counter != w->snapshot;
}

bool apic_wait_count(const volatile uint32_t *counter, uint32_t snapshot, uint64_t ms)
{
	struct count_wait w = {counter, snapshot};
	return apic_wait(count_changed, &w, ms);
}
