/* Guest runtime: C entry, console, printf, machine control, boot info, libc. */
#include "rt.h"

#define COM1_THR 0x3f8
#define DEBUG_EXIT_PORT 0xf4
#define PM1A_CNT_PORT 0x604
#define PM1_SLP_TYP_S5 (5u << 10)
#define PM1_SLP_EN (1u << 13)
#define I8042_CMD_PORT 0x64
#define I8042_CMD_RESET 0xfe
#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71

const struct hvm_start_info *rt_start_info;

RT_NORETURN void rt_main(uint32_t si_paddr);

RT_NORETURN void rt_main(uint32_t si_paddr)
{
	const struct hvm_start_info *si = (const void *)(uintptr_t)si_paddr;

	if (si && si->magic != HVM_START_MAGIC)
		si = NULL;
	rt_start_info = si;
	rt_exit(guest_main(si));
}

/* ---- Console ----
 * THR is written without polling LSR.THRE: every port access is a VM exit
 * (~14 us here), and ember's (and QEMU's) 16550 model consumes THR writes
 * synchronously, so the transmitter is always ready. A real 16550 would need
 * the LSR poll. */
void rt_putc(char c)
{
	outb(COM1_THR, (uint8_t)c);
}

void rt_write(const char *s)
{
	while (*s)
		rt_putc(*s++);
}

void rt_puts(const char *s)
{
	rt_write(s);
	rt_putc('\n');
}

static int put_u64(uint64_t v, unsigned base, bool upper, bool neg, int width, bool zero, bool left)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char buf[24];
	int n = 0, len, out = 0;

	do {
		buf[n++] = digits[v % base];
		v /= base;
	} while (v);
	len = n + (neg ? 1 : 0);
	if (neg && zero)
		rt_putc('-');
	if (!left)
		for (; width > len; width--, out++)
			rt_putc(zero ? '0' : ' ');
	if (neg && !zero)
		rt_putc('-');
	while (n)
		rt_putc(buf[--n]);
	out += len;
	for (; left && width > len; width--, out++)
		rt_putc(' ');
	return out;
}

int rt_vprintf(const char *fmt, va_list ap)
{
	int out = 0;

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			rt_putc(*fmt);
			out++;
			continue;
		}
		bool zero = false, left = false;
		int width = 0, lng = 0;
		for (fmt++;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		if (left)
			zero = false;
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, long) : va_arg(ap, int);
			uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
			out += put_u64(u, 10, false, v < 0, width, zero, left);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			out += put_u64(v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, zero, left);
			break;
		}
		case 'p':
			rt_write("0x");
			out += 2 + put_u64((uintptr_t)va_arg(ap, void *), 16, false, false, width, zero, left);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			int len;
			if (!s)
				s = "(null)";
			len = (int)strlen(s);
			for (; !left && width > len; width--, out++)
				rt_putc(' ');
			rt_write(s);
			out += len;
			for (; left && width > len; width--, out++)
				rt_putc(' ');
			break;
		}
		case 'c':
			rt_putc((char)va_arg(ap, int));
			out++;
			break;
		case '%':
			rt_putc('%');
			out++;
			break;
		case '\0':
			return out;
		default:
			rt_putc('%');
			rt_putc(*fmt);
			out += 2;
			break;
		}
	}
	return out;
}

int rt_printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = rt_vprintf(fmt, ap);
	va_end(ap);
	return n;
}

/* ---- Machine control ---- */
RT_NORETURN void rt_halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" ::: "memory");
}

RT_NORETURN void rt_exit(int v)
{
	outb(DEBUG_EXIT_PORT, (uint8_t)v);
	rt_halt();
}

RT_NORETURN void rt_poweroff(void)
{
	outw(PM1A_CNT_PORT, PM1_SLP_TYP_S5 | PM1_SLP_EN);
	rt_puts("rt: ACPI poweroff had no effect, using isa-debug-exit");
	rt_exit(0);
}

RT_NORETURN void rt_i8042_reset(void)
{
	/* A real i8042 wants its input buffer (status bit 1) polled first;
	 * the VMM's model never has one pending, so skip the extra exits. */
	outb(I8042_CMD_PORT, I8042_CMD_RESET);
	uint64_t deadline = rt_deadline_ms(2000);
	while (!rt_expired(deadline))
		rt_cpu_relax();
	rt_puts("rt: i8042 reset did not happen");
	rt_exit(0x7e);
}

uint8_t rt_cmos_read(uint8_t idx)
{
	outb(CMOS_INDEX, idx & 0x7f);
	return inb(CMOS_DATA);
}

void rt_cmos_write(uint8_t idx, uint8_t val)
{
	outb(CMOS_INDEX, idx & 0x7f);
	outb(CMOS_DATA, val);
}

/* ---- Boot information ---- */
#define MAX_MEMMAP_ENTRIES 128
#define LOW_4G 0x100000000ull

uint64_t rt_mem_size(const struct hvm_start_info *si)
{
	uint64_t total = 0;

	if (!si || si->version < 1 || !si->memmap_paddr)
		return 0;
	uint32_t n = si->memmap_entries;
	if (n > MAX_MEMMAP_ENTRIES)
		n = MAX_MEMMAP_ENTRIES;
	/* Only the first 4 GiB is mapped. */
	if (si->memmap_paddr >= LOW_4G || si->memmap_paddr + (uint64_t)n * sizeof(struct hvm_memmap_table_entry) > LOW_4G)
		return 0;
	const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < n; i++)
		if (e[i].type == HVM_MEMMAP_TYPE_RAM)
			total += e[i].size;
	return total;
}

const char *rt_cmdline(void)
{
	const struct hvm_start_info *si = rt_start_info;

	if (!si || !si->cmdline_paddr || si->cmdline_paddr >= LOW_4G - 4096)
		return "";
	return (const char *)(uintptr_t)si->cmdline_paddr;
}

static bool parse_long(const char *s, long *out)
{
	bool neg = false;
	unsigned base = 10;
	uint64_t v = 0;
	int digits = 0;

	if (*s == '-') {
		neg = true;
		s++;
	}
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++, digits++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			break;
		v = v * base + d;
	}
	if (!digits || (*s && *s != ' '))
		return false;
	*out = neg ? -(long)v : (long)v;
	return true;
}

long rt_cmdline_int(const char *key, long def)
{
	const char *p = rt_cmdline();
	size_t klen = strlen(key);

	while (*p) {
		while (*p == ' ')
			p++;
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			long v;
			return parse_long(p + klen + 1, &v) ? v : def;
		}
		while (*p && *p != ' ')
			p++;
	}
	return def;
}

/* ---- libc subset: one rep-string instruction each where possible ---- */
void *memset(void *d, int c, size_t n)
{
	void *r = d;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return r;
}

void *memcpy(void *restrict d, const void *restrict s, size_t n)
{
	void *r = d;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return r;
}

void *memmove(void *d, const void *s, size_t n)
{
	if ((uintptr_t)d - (uintptr_t)s >= n)
		return memcpy(d, s, n);
	void *r = d;
	d = (char *)d + n - 1;
	s = (const char *)s + n - 1;
	__asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return r;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		if (!*a)
			return 0;
	}
	return 0;
}
