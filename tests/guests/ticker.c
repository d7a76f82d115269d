/* Prints `tick N` about every 50 ms, forever: a guest whose progress the
 * control-plane tests can watch (stop, cont, quit). */
#include "rt/rt.h"

int guest_main(const struct hvm_start_info *si)
{
	uint64_t period = (uint64_t)rt_cmdline_int("period_ms", 50);

	(void)si;
	rt_puts("ticker: up");
	for (uint64_t n = 0;; n++) {
		uint64_t deadline = rt_deadline_ms(period);

		rt_printf("tick %lu\n", n);
		while (!rt_expired(deadline))
			rt_cpu_relax();
	}
}
