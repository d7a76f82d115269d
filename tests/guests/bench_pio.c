/* bench_pio: the guest for bench/startup. Executes `count=N` (default 0)
 * `outb %al, $0x80` instructions in a three-instruction loop
 * (out; dec; jnz), then exits through isa-debug-exit with 0 (status 1).
 * Prints nothing, except one line at the end with `verbose=1`. Port 0x80
 * (the POST/delay port) is a no-op sink on every VMM, so each iteration
 * costs exactly one PIO exit to userspace. */
#include "rt/rt.h"

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	unsigned long n = (unsigned long)rt_cmdline_int("count", 0);

	if ((long)n > 0) {
		unsigned long c = n;

		__asm__ volatile("1:\n\t"
				 "outb %%al, $0x80\n\t"
				 "dec %0\n\t"
				 "jnz 1b"
				 : "+r"(c)
				 : "a"(0)
				 : "cc", "memory");
	} else {
		n = 0;
	}
	if (rt_cmdline_int("verbose", 0) == 1)
		rt_printf("bench_pio: %lu outb done\n", n);
	rt_exit(0);
}
