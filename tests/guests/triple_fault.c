/* triple_fault: faults with an empty IDT; after the VMM's reset, the CMOS
 * marker tells the second boot to report success. */
#include "rt/rt.h"

#define MARKER_IDX 0x34
#define MARKER 0xa5

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	if (rt_cmos_read(MARKER_IDX) == MARKER) {
		rt_puts("triple_fault: rebooted");
		rt_cmos_write(MARKER_IDX, 0);
		rt_exit(0x11);
	}
	rt_cmos_write(MARKER_IDX, MARKER);
	rt_puts("triple_fault: faulting");

	/* #PF with IDT limit 0 -> #GP -> #DF -> shutdown. */
	static const struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} empty_idt = {0, 0};
	__asm__ volatile("lidt %0\n\t"
			 "movq (%1), %%rax"
			 :: "m"(empty_idt), "r"(0x200000000ull) : "rax", "memory");
	rt_puts("triple_fault: still running after the fault");
	return 0x7d;
}
