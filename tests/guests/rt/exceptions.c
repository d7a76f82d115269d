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

/* A few registrations, searched on dispatch: this keeps .bss (cleared at
 * every boot) small. */
#define RT_IRQ_SLOTS 16
static struct {
	rt_irq_handler_t fn;
	void *arg;
	uint32_t vector;
} irq_slot[RT_IRQ_SLOTS];
static uint32_t irq_nslots;
volatile uint32_t rt_irq_count[256];

void rt_set_irq_handler(unsigned vector, rt_irq_handler_t fn, void *arg)
{
	unsigned i;

	if (vector < RT_IRQ_VECTOR_MIN || vector > 255)
		return;
	for (i = 0; i < irq_nslots && irq_slot[i].vector != vector; i++)
		;
	if (i == RT_IRQ_SLOTS) {
		rt_printf("rt: no free interrupt handler slot for vector %u\n", vector);
		rt_exit(RT_EXC_FATAL_EXIT);
	}
	/* Callers register with interrupts disabled; the order still keeps a
	 * racing dispatch from seeing a new fn with an old arg. */
	irq_slot[i].fn = NULL;
	rt_barrier();
	irq_slot[i].vector = vector;
	irq_slot[i].arg = arg;
	rt_barrier();
	irq_slot[i].fn = fn;
	if (i == irq_nslots)
		irq_nslots++;
}

static void rt_irq_dispatch(unsigned v)
{
	rt_atomic_inc(&rt_irq_count[v]);
	for (unsigned i = 0; i < irq_nslots; i++) {
		if (irq_slot[i].vector == v) {
			rt_irq_handler_t fn = irq_slot[i].fn;
			if (fn)
				fn(v, irq_slot[i].arg);
			break;
		}
	}
	if (v != RT_SPURIOUS_VECTOR)
		mmio_write32(RT_LAPIC_BASE + 0xb0, 0); /* EOI */
}

void rt_exception(struct rt_frame *f);

/* Returns when a fixup was armed (f->rip is then the resume point) and after
 * every interrupt (vector >= 32). */
void rt_exception(struct rt_frame *f)
{
	unsigned v = (unsigned)f->vector;

	if (v >= RT_IRQ_VECTOR_MIN) {
		rt_irq_dispatch(v);
		return;
	}

	uint64_t cr2 = rt_read_cr2();

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
