/* smp: starts every AP; each checks in under a spinlock. */
#include "rt/rt.h"

#define TIMEOUT_MS 3000

static rt_spinlock_t lock = RT_SPINLOCK_INIT;
static volatile uint32_t checked_in;

static void ap_main(uint32_t apic_id)
{
	rt_spin_lock(&lock);
	rt_printf("smp: cpu %u online\n", apic_id);
	rt_spin_unlock(&lock);
	rt_atomic_inc(&checked_in);
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	unsigned n = rt_cpu_count();

	rt_printf("smp: bsp up, %u cpus\n", n);
	if (n > RT_MAX_CPUS)
		n = RT_MAX_CPUS;
	rt_start_aps(n, ap_main);

	uint64_t deadline = rt_deadline_ms(TIMEOUT_MS);
	while (rt_atomic_load(&checked_in) < n - 1 && !rt_expired(deadline))
		rt_cpu_relax();

	rt_spin_lock(&lock);
	uint32_t k = 1 + rt_atomic_load(&checked_in);
	if (k < n) {
		rt_printf("smp: timeout, only %u of %u\n", k, n);
		rt_exit(2);
	}
	rt_printf("smp: all %u cpus online\n", n);
	return 0;
}
