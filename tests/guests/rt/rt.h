/*
 * Ember guest runtime: a tiny freestanding x86-64 runtime for test guests.
 *
 * Guests are PVH ELF64 images linked at 1 MiB. rt/entry.S switches from the
 * PVH 32-bit entry to long mode (static identity map of the first 4 GiB with
 * 2 MiB pages; nothing above 4 GiB is mapped) and calls guest_main(). If
 * guest_main returns, its value is passed to rt_exit().
 *
 * Every instruction may cost ~1 us (KVM instruction emulator) and every port
 * or MMIO exit ~14 us, so everything here is written to execute as few
 * instructions and exits as possible. Guests must not use SSE/AVX, int3,
 * cmpxchg16b, xsave or iretq (the runtime never does; see README.md).
 */
#ifndef EMBER_GUEST_RT_H
#define EMBER_GUEST_RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_NORETURN __attribute__((noreturn))
#define RT_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ---- PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h) ---- */
#define HVM_START_MAGIC 0x336ec578u
#define HVM_MEMMAP_TYPE_RAM 1u

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;   /* version >= 1 */
	uint32_t memmap_entries; /* version >= 1 */
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/*
 * Implemented by each guest. si is the PVH start info, or NULL when EBX did
 * not point at a valid one (bad magic). The return value goes to rt_exit().
 */
int guest_main(const struct hvm_start_info *si);

/* The validated start info (NULL if none). */
extern const struct hvm_start_info *rt_start_info;

/* ---- Limits and fixed addresses ---- */
#define RT_MAX_CPUS 16
#define RT_AP_TRAMPOLINE 0x10000u /* SIPI vector 0x10 */
#define RT_LAPIC_BASE 0xfee00000u
#define RT_IOAPIC_BASE 0xfec00000u

/* ---- Port I/O. NOTE: argument order is (port, value). ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* ---- MMIO (guest-physical == virtual below 4 GiB) ---- */
static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)(uintptr_t)a; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)(uintptr_t)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)(uintptr_t)a; }
static inline uint64_t mmio_read64(uint64_t a) { return *(volatile uint64_t *)(uintptr_t)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)(uintptr_t)a = v; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)(uintptr_t)a = v; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)(uintptr_t)a = v; }
static inline void mmio_write64(uint64_t a, uint64_t v) { *(volatile uint64_t *)(uintptr_t)a = v; }

/* ---- CPU helpers ---- */
static inline void rt_cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void rt_barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline uint64_t rt_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void rt_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline uint64_t rt_read_cr2(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}
/* This CPU's xAPIC ID (one MMIO read). */
static inline uint32_t rt_lapic_id(void) { return mmio_read32(RT_LAPIC_BASE + 0x20) >> 24; }

/* ---- Spinlock and atomics (xchg / lock xadd only) ---- */
typedef struct {
	volatile uint32_t locked;
} rt_spinlock_t;
#define RT_SPINLOCK_INIT {0}

static inline void rt_spin_lock(rt_spinlock_t *l)
{
	while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
		while (l->locked)
			rt_cpu_relax();
}
static inline void rt_spin_unlock(rt_spinlock_t *l)
{
	/* A release store is a plain mov on x86 (no mfence). */
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}
/* Returns the new value. */
static inline uint32_t rt_atomic_inc(volatile uint32_t *p) { return __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL); }
static inline uint32_t rt_atomic_load(const volatile uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* ---- Console: COM1 (0x3f8) ---- */
void rt_putc(char c);
void rt_write(const char *s);  /* no newline added */
void rt_puts(const char *s);   /* appends '\n', like puts() */
/* %d %i %u %x %X %p %s %c %%, length l/ll/z, flags '0' and '-', width. */
int rt_printf(const char *fmt, ...) RT_PRINTF(1, 2);
int rt_vprintf(const char *fmt, va_list ap);

/* ---- Machine control ---- */
/* isa-debug-exit (port 0xf4): the VMM exits with status ((v & 0xff) << 1) | 1. */
RT_NORETURN void rt_exit(int v);
/* ACPI PM1a_CNT (port 0x604) SLP_TYP=5|SLP_EN: the VMM exits with status 0.
 * If that port does nothing (e.g. QEMU microvm) it falls back to rt_exit(0). */
RT_NORETURN void rt_poweroff(void);
/* i8042 command 0xfe (pulse reset line). If no reset happens within ~2 s it
 * prints a message and calls rt_exit(0x7e). */
RT_NORETURN void rt_i8042_reset(void);
/* cli; hlt forever. */
RT_NORETURN void rt_halt(void);

/* CMOS RAM (index port 0x70, data 0x71). Index 0x34 survives a reset. */
uint8_t rt_cmos_read(uint8_t idx);
void rt_cmos_write(uint8_t idx, uint8_t val);

/* ---- Boot information ---- */
/* Enabled LAPICs in the ACPI MADT (via si->rsdp_paddr, validated), else
 * CPUID.1:EBX[23:16], else 1. Cached after the first call. */
unsigned rt_cpu_count(void);
/* Sum of the sizes of type-1 (RAM) memmap entries, in bytes; 0 if none. */
uint64_t rt_mem_size(const struct hvm_start_info *si);
/* The kernel command line, or "" if there is none. */
const char *rt_cmdline(void);
/* Value of the first "key=<int>" token on the command line (decimal, 0x hex,
 * optional '-'), or def if absent or malformed. */
long rt_cmdline_int(const char *key, long def);

/* ---- Time (TSC) ---- */
/* TSC frequency from CPUID 0x15 / 0x16 / 0x40000010, else assumed 3 GHz
 * (so timeouts err on the long side). */
uint64_t rt_tsc_khz(void);
uint64_t rt_deadline_ms(uint64_t ms); /* TSC value ms from now */
static inline bool rt_expired(uint64_t deadline) { return (int64_t)(rt_rdtsc() - deadline) >= 0; }

/* ---- Exceptions ----
 * Vectors 0-31 go to a handler that prints
 *   exception: vector=<n> (<name>) error=0x<e> rip=0x<rip> cr2=0x<cr2>
 * and then calls rt_exit(0x7f), unless a fixup is armed for that vector. */
#define RT_EXC_FATAL_EXIT 0x7f
#define RT_NO_FAULT (-1)

struct rt_exception_info {
	uint64_t vector, error, rip, rsp, cr2;
};
/* The last exception taken (any CPU) and the total number taken. */
extern volatile struct rt_exception_info rt_last_exception;
extern volatile uint32_t rt_exception_count;

/* One-shot: the next exception `vector` prints the report line, then resumes
 * at resume_rip with all general registers and RSP/RFLAGS as they were at the
 * fault (i.e. as if the faulting instruction were a jump to resume_rip).
 * resume_rip == 0 disarms. */
void rt_set_fault_fixup(unsigned vector, uint64_t resume_rip);
/* Reads 8 bytes at addr with #GP and #PF fixups armed. Returns RT_NO_FAULT
 * and stores the value, or returns the vector taken (13 or 14). */
int rt_try_read64(uint64_t addr, uint64_t *val);
const char *rt_exception_name(unsigned vector);

/* ---- Interrupts: vectors 32-255 ----
 * Every vector >= 32 has an IDT gate. On delivery rt_irq_count[v] is
 * incremented, the handler registered for v (if any) runs with interrupts
 * disabled, and the LAPIC EOI register (0xfee000b0) is written, except for
 * RT_SPURIOUS_VECTOR (the SVR's vector, which takes no EOI). Enabling the
 * LAPIC and sources is up to the guest (rt/apic.h). Return is via
 * popfq; ret like the exception fixups, so RFLAGS.IF is restored. */
#define RT_IRQ_VECTOR_MIN 32
#define RT_SPURIOUS_VECTOR 0xffu
typedef void (*rt_irq_handler_t)(unsigned vector, void *arg);
/* fn == NULL unregisters (the vector is then only counted and EOIed). At
 * most 16 vectors can have handlers; a 17th is a fatal error. */
void rt_set_irq_handler(unsigned vector, rt_irq_handler_t fn, void *arg);
extern volatile uint32_t rt_irq_count[256];

static inline void rt_irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void rt_irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
/* With interrupts disabled: atomically enable them and halt until one is
 * taken (sti's one-instruction shadow covers the hlt), then disable again. */
static inline void rt_irq_wait(void) { __asm__ volatile("sti; hlt; cli" ::: "memory"); }

/* ---- SMP ----
 * Copies the real-mode trampoline to 0x10000, enables the BSP's LAPIC, sends
 * INIT + SIPI(0x10) to APIC IDs 0..n-1 except the BSP's own, and waits
 * (bounded) for each AP to reach long mode; APs that have not checked in
 * after ~100 ms get a second SIPI. Each AP runs on its own 8 KiB stack and
 * calls fn(apic_id); when fn returns the AP halts (cli; hlt).
 * n is clamped to RT_MAX_CPUS. Returns the number of CPUs running (BSP + APs
 * that reached long mode). */
unsigned rt_start_aps(unsigned n, void (*fn)(uint32_t apic_id));

/* ---- Freestanding libc subset (the compiler may emit calls to these) ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

#endif
