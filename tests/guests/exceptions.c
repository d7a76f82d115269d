/* exceptions: #GP and #PF through the runtime's IDT, resumed by fixups. */
#include "rt/rt.h"

#define UNMAPPED 0x200000000ull /* 8 GiB: only [0, 4 GiB) is mapped */

extern const char gp_resume[], pf_resume[];

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	uint32_t count = rt_exception_count;

	/* Non-canonical address: #GP(0). The fault resumes at the label. */
	rt_set_fault_fixup(13, (uintptr_t)gp_resume);
	__asm__ volatile("movabsq $0x8000000000000000, %%rax\n\t"
			 "movq (%%rax), %%rax\n"
			 ".globl gp_resume\n"
			 "gp_resume:"
			 ::: "rax", "memory");
	if (rt_exception_count != count + 1 || rt_last_exception.vector != 13) {
		rt_puts("exceptions: FAIL: no #GP");
		return 4;
	}
	rt_puts("exceptions: gp ok");

	rt_set_fault_fixup(14, (uintptr_t)pf_resume);
	__asm__ volatile("movq (%0), %%rax\n"
			 ".globl pf_resume\n"
			 "pf_resume:"
			 :: "r"(UNMAPPED) : "rax", "memory");
	if (rt_exception_count != count + 2 || rt_last_exception.vector != 14 ||
	    rt_last_exception.cr2 != UNMAPPED) {
		rt_puts("exceptions: FAIL: no #PF at 0x200000000");
		return 4;
	}
	rt_printf("exceptions: pf ok cr2=0x%lx\n", rt_last_exception.cr2);
	return 0;
}
