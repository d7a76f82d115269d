/* Exception reporting and one-shot fault fixups (stubs in entry.S). */
#include "rt.h"

struct rt_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

volatile struct rt_exception_info rt_last_exception;
volatile uint32_t rt_exception_count;
static volatile uint64_t fixup_rip[32];

static const char *const names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "reserved",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved",
	"reserved", "reserved", "reserved", "reserved", "#HV", "#VC", "#SX", "reserved",
};

const char *rt_exception_name(unsigned vector)
{
	return vector < 32 ? names[vector] : "?";
}

void rt_set_fault_fixup(unsigned vector, uint64_t resume_rip)
{
	if (vector < 32)
		fixup_rip[vector] = resume_rip;
}

void rt_exception(struct rt_frame *f);

/* Returns only when a fixup was armed; f->rip is then the resume point. */
void rt_exception(struct rt_frame *f)
{
	uint64_t cr2 = rt_read_cr2();
	unsigned v = (unsigned)f->vector;

	rt_last_exception.vector = v;
	rt_last_exception.error = f->error;
	rt_last_exception.rip = f->rip;
	rt_last_exception.rsp = f->rsp;
	rt_last_exception.cr2 = cr2;
	rt_atomic_inc(&rt_exception_count);

	rt_printf("exception: vector=%u (%s) error=0x%lx rip=0x%lx cr2=0x%lx\n",
		  v, rt_exception_name(v), f->error, f->rip, cr2);

	uint64_t resume = v < 32 ? __atomic_exchange_n(&fixup_rip[v], 0, __ATOMIC_ACQ_REL) : 0;
	if (!resume)
		rt_exit(RT_EXC_FATAL_EXIT);
	f->rip = resume;
}

int rt_try_read64(uint64_t addr, uint64_t *val)
{
	uint32_t before = rt_exception_count;
	uint64_t v = 0;

	/* The fixups point at the label right after the load; on a fault all
	 * registers are restored, so v keeps its old value. */
	__asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
			 "movq %%rax, %[gp]\n\t"
			 "movq %%rax, %[pf]\n\t"
			 "movq (%[addr]), %[v]\n"
			 "1:"
			 : [v] "+r"(v), [gp] "=m"(fixup_rip[13]), [pf] "=m"(fixup_rip[14])
			 : [addr] "r"(addr)
			 : "rax", "memory");
	fixup_rip[13] = 0;
	fixup_rip[14] = 0;
	if (rt_exception_count != before)
		return (int)rt_last_exception.vector;
	*val = v;
	return RT_NO_FAULT;
}
