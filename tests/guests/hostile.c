/*
 * A hostile guest: for `ms=` milliseconds or `iters=` rounds (whichever ends
 * first), driven by a xorshift PRNG seeded with `seed=`, it hammers every
 * device Ember exposes:
 *  - COM1 (all of 0x3f8-0x3ff, restored to 8N1 without loopback before each
 *    line is printed), and, on the AP (if there is one), the i8042, the RTC,
 *    the ACPI PM block, pvpanic, port 0x80, unhandled ports and ECAM reads;
 *  - the PCI configuration space of every virtio function, through CF8/CFC
 *    and ECAM (header and capabilities; BARs only with a sizing probe that is
 *    undone at once, or moved to a free address, used there, and moved back);
 *  - the virtio-pci common configuration (status, features, queue registers,
 *    MSI-X vectors), the device configuration, ISR and notify regions;
 *  - virtqueues with random descriptor tables (out-of-RAM and straddling
 *    addresses, loops, huge and zero lengths, bad next, nested and broken
 *    indirect tables, avail-index jumps), kicked, with device resets between.
 * Never done: i8042 pulse commands with bit 0 clear (0xF0..0xFE even) or an
 * output-port write with bit 0 clear, ACPI SLP_EN with SLP_TYP 5, the reset
 * value 0x0F at 0x608, pvpanic bit 0, byte writes to 0xCF9, isa-debug-exit,
 * the in-kernel PIC/PIT/IOAPIC/LAPIC, and device writes below 16 MiB (the
 * image, stacks and page tables): every address handed to a device is in
 * [32 MiB, end of low RAM) or outside RAM.
 *
 * Progress: "hostile: round N ..." about once a second. At the end every
 * device is reset and used sanely once: a virtio-rng read (MSI-X), a
 * virtio-blk read of sector 0, a line on the virtio-console transmitq
 * ("hostile: console ok"). Then "hostile: done", and after `linger=` ms
 * (default 0; the test quits over QMP meanwhile) rt_exit(0).
 * Failures: "hostile: FAIL(code): ..." and rt_exit(code).
 */
#include "rt/rt.h"
#include "rt/apic.h"
#include "rt/virtio.h"

enum {
	E_MEM = 2, E_PROBE, E_RESET_HANG, E_FINAL_RNG, E_FINAL_BLK, E_FINAL_CON, E_AP,
};

#define ARENA_BASE (32ull << 20)
#define ARENA_SLOT 0x10000ull                 /* rings of one (device, queue) */
#define ARENA_HDRS (ARENA_BASE + 0x100000ull)  /* blk headers, indirect tables */
#define ARENA_DATA (ARENA_BASE + 0x200000ull)  /* data buffers */
#define ARENA_DATA_LEN 0x600000ull
#define NDEV 3
#define MAX_RING 1024

#define ECAM_BASE 0xe0000000ull
#define VEC_FINAL 0x41
#define VEC_LO 0x50
#define VEC_HI 0xdf

#define PM_BASE 0x600
#define PM_CNT_HI 0x605
#define PM_RESET 0x608
#define PM_RESET_VALUE 0x0f
#define PVPANIC_PORT 0x505

struct prng {
	uint64_t s;
};

static uint64_t rnd(struct prng *p)
{
	uint64_t x = p->s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return p->s = x;
}
static uint32_t below(struct prng *p, uint32_t n) { return n ? (uint32_t)(rnd(p) % n) : 0; }
static bool chance(struct prng *p, unsigned one_in) { return below(p, one_in) == 0; }

struct hdev {
	const char *name;
	struct virtio_dev v;
	uint64_t bar0;            /* where BAR 0 was placed */
	uint8_t cfg_cap;          /* VIRTIO_PCI_CAP_PCI_CFG offset, 0 if none */
	uint8_t msix_cap;
	uint16_t qmax[VIRTIO_MAX_QUEUES];
	uint16_t nq;
};

static struct hdev devs[NDEV];
static uint64_t ram_end;      /* end of the RAM entry holding ARENA_BASE */
static struct prng bsp_rng;

static volatile uint32_t ap_stop, ap_done, ap_ops;
static uint64_t ap_seed;

static uint64_t st_rounds, st_kicks, st_resets, st_needs_reset, st_cfg_writes, st_common_writes;

RT_PRINTF(2, 3) static RT_NORETURN void fail(int code, const char *fmt, ...)
{
	va_list ap;
	rt_printf("hostile: FAIL(%d): ", code);
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_putc('\n');
	rt_exit(code);
}

/* ---- Addresses and lengths handed to devices ---- */

static uint64_t rnd_addr(struct prng *p)
{
	switch (below(p, 10)) {
	case 0: case 1: case 2: case 3:
		return ARENA_DATA + below(p, ARENA_DATA_LEN);
	case 4:
		return ram_end - 1 - below(p, 4096);          /* straddles the end of RAM */
	case 5:
		return ram_end + below(p, 1u << 20);          /* just past RAM */
	case 6:
		return 0xc0000000ull + below(p, 0x3fffffffu); /* the MMIO hole */
	case 7:
		return rnd(p) | (1ull << 40);                 /* far above RAM */
	case 8:
		return ~0ull - below(p, 64);                  /* wraps */
	default:
		return ARENA_BASE + below(p, 0x200000);       /* the rings themselves */
	}
}

static uint32_t rnd_len(struct prng *p)
{
	switch (below(p, 9)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return 16;
	case 3: return 512;
	case 4: return 0xffffffffu;
	case 5: return 0x80000000u;
	case 6: return (uint32_t)rnd(p);
	case 7: return below(p, 1u << 20);
	default: return below(p, 4096);
	}
}

/* ---- Legacy ports ---- */

static void uart_restore(void)
{
	outb(0x3f8 + 3, 0x03); /* 8N1, DLAB off */
	outb(0x3f8 + 1, 0x00); /* no interrupts */
	outb(0x3f8 + 4, 0x00); /* no loopback */
}

static void hammer_uart(struct prng *p, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint16_t port = (uint16_t)(0x3f8 + below(p, 8));
		if (chance(p, 2))
			(void)inb(port);
		else
			outb(port, (uint8_t)rnd(p));
	}
	uart_restore();
}

/* One write somewhere in the ACPI PM block, with the two dangerous byte
 * values (S5 SLP_EN, the reset value) defused. */
static void pm_write_safe(struct prng *p)
{
	unsigned w = 1u << below(p, 3);
	uint16_t port = (uint16_t)(PM_BASE + below(p, 16));
	port = (uint16_t)(port & ~(w - 1));
	uint32_t v = (uint32_t)rnd(p);
	for (unsigned i = 0; i < w; i++) {
		uint16_t a = (uint16_t)(port + i);
		uint8_t b = (uint8_t)(v >> (8 * i));
		if (a == PM_RESET && b == PM_RESET_VALUE)
			b ^= 1;
		if (a == PM_CNT_HI && (b & 0x20) && ((b >> 2) & 7) == 5)
			b &= (uint8_t)~0x20;
		v = (v & ~(0xffu << (8 * i))) | ((uint32_t)b << (8 * i));
	}
	if (w == 1)
		outb(port, (uint8_t)v);
	else if (w == 2)
		outw(port, (uint16_t)v);
	else
		outl(port, v);
}

struct i8042_state {
	bool pending_outport; /* last command was 0xD1: the next data byte is the output port */
};

static void hammer_legacy(struct prng *p, struct i8042_state *k, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		switch (below(p, 10)) {
		case 0: { /* i8042 command */
			uint8_t c = (uint8_t)rnd(p);
			if (c >= 0xf0 && !(c & 1))
				c |= 1;
			outb(0x64, c);
			k->pending_outport = c == 0xd1;
			break;
		}
		case 1: { /* i8042 data */
			uint8_t d = (uint8_t)rnd(p);
			if (k->pending_outport)
				d |= 1;
			outb(0x60, d);
			k->pending_outport = false;
			break;
		}
		case 2:
			(void)inb(chance(p, 2) ? 0x60 : 0x64);
			break;
		case 3:
			outb(0x70, (uint8_t)rnd(p));
			if (chance(p, 2))
				outb(0x71, (uint8_t)rnd(p));
			else
				(void)inb(0x71);
			break;
		case 4:
			pm_write_safe(p);
			break;
		case 5: {
			uint16_t port = (uint16_t)(PM_BASE + below(p, 16));
			if (chance(p, 2))
				(void)inb(port);
			else
				(void)inw((uint16_t)(port & ~1u));
			break;
		}
		case 6:
			if (chance(p, 2))
				outb(PVPANIC_PORT, (uint8_t)(rnd(p) & ~1u));
			else
				(void)inb(PVPANIC_PORT);
			break;
		case 7:
			outb(0x80, (uint8_t)rnd(p));
			break;
		case 8: { /* nobody there */
			uint16_t port = (uint16_t)(0x1000 + below(p, 0xe000));
			if (chance(p, 2))
				outl((uint16_t)(port & ~3u), (uint32_t)rnd(p));
			else
				(void)inb(port);
			break;
		}
		default: { /* ECAM reads of any function */
			uint64_t a = ECAM_BASE + ((uint64_t)below(p, 32) << 15) + ((uint64_t)below(p, 8) << 12) +
				     (below(p, 0x1000) & ~3u);
			(void)mmio_read32(a);
			break;
		}
		}
	}
}

static void ap_main(uint32_t apic_id)
{
	struct prng p = {ap_seed ^ (0x9e3779b97f4a7c15ull * (apic_id + 1))};
	struct i8042_state k = {false};
	while (!rt_atomic_load(&ap_stop)) {
		hammer_legacy(&p, &k, 16);
		rt_atomic_inc(&ap_ops);
	}
	rt_atomic_inc(&ap_done);
}

/* ---- PCI configuration space ---- */

static bool is_bar_byte(unsigned off) { return (off >= 0x10 && off < 0x28) || (off >= 0x30 && off < 0x34); }

/* The value a config write of width w at off would put in the PCI_CFG
 * capability's BAR byte must not select the MSI-X BAR: the window would then
 * write random MSI-X messages (INIT, SMI, vectors below 16). */
static uint32_t defuse_cfg(const struct hdev *h, unsigned off, unsigned w, uint32_t v)
{
	if (!h->cfg_cap)
		return v;
	unsigned bar_byte = h->cfg_cap + 4u;
	if (bar_byte >= off && bar_byte < off + w) {
		unsigned sh = 8 * (bar_byte - off);
		if (((v >> sh) & 0xff) == 2)
			v ^= 1u << sh;
	}
	return v;
}

static bool touches_bar(unsigned off, unsigned w)
{
	for (unsigned i = 0; i < w; i++)
		if (is_bar_byte(off + i))
			return true;
	return false;
}

static void ecam_write(const struct pci_dev *d, unsigned off, unsigned w, uint32_t v)
{
	uint64_t a = ECAM_BASE + ((uint64_t)d->slot << 15) + ((uint64_t)d->func << 12) + off;
	if (w == 1)
		mmio_write8(a, (uint8_t)v);
	else if (w == 2)
		mmio_write16(a, (uint16_t)v);
	else
		mmio_write32(a, v);
}

static void hammer_cfg(struct prng *p, struct hdev *h, unsigned n)
{
	struct pci_dev *d = h->v.pci;
	for (unsigned i = 0; i < n; i++) {
		unsigned w = 1u << below(p, 3);
		/* Mostly the capabilities (0x40 and up), sometimes the header or
		 * the extended space (ECAM only). */
		unsigned off = chance(p, 4) ? below(p, 0x40) : 0x40 + below(p, chance(p, 8) ? 0xfc0 : 0xc0);
		off &= ~(w - 1);
		if (chance(p, 3)) {
			if (off < 0x100) {
				if (w == 1)
					(void)pci_cfg_read8(d, (uint8_t)off);
				else if (w == 2)
					(void)pci_cfg_read16(d, (uint8_t)off);
				else
					(void)pci_cfg_read32(d, (uint8_t)off);
			}
			continue;
		}
		if (touches_bar(off, w))
			continue;
		uint32_t v = defuse_cfg(h, off, w, (uint32_t)rnd(p));
		st_cfg_writes++;
		if (off >= 0x100 || chance(p, 3)) {
			ecam_write(d, off, w, v);
		} else if (w == 1) {
			pci_cfg_write8(d, (uint8_t)off, (uint8_t)v);
		} else if (w == 2) {
			pci_cfg_write16(d, (uint8_t)off, (uint16_t)v);
		} else {
			pci_cfg_write32(d, (uint8_t)off, v);
		}
	}
	/* A config cycle to nobody, and a random CONFIG_ADDRESS read back. */
	outl(0xcf8, 0x80000000u | (1u + below(p, 255)) << 16 | below(p, 0x4000) << 2);
	outl(0xcfc, (uint32_t)rnd(p));
	outl(0xcf8, (uint32_t)rnd(p));
	(void)inl(0xcfc);
	(void)inw(0xcfe);
}

/* Sizing probe of every BAR, undone at once. */
static void probe_bars(struct hdev *h)
{
	struct pci_dev *d = h->v.pci;
	for (uint8_t off = 0x10; off < 0x28; off += 4) {
		uint32_t old = pci_cfg_read32(d, off);
		pci_cfg_write32(d, off, 0xffffffffu);
		(void)pci_cfg_read32(d, off);
		pci_cfg_write32(d, off, old);
	}
	uint32_t rom = pci_cfg_read32(d, 0x30);
	pci_cfg_write32(d, 0x30, 0xfffff800u);
	pci_cfg_write32(d, 0x30, rom);
}

/* ---- virtio-pci registers through BAR 0 (wherever it is now) ---- */

static uint64_t common(const struct hdev *h, uint64_t bar0) { return bar0 + (h->v.common - h->bar0); }

static void reg_write(uint64_t a, unsigned w, uint64_t v)
{
	if (w == 1)
		mmio_write8(a, (uint8_t)v);
	else if (w == 2)
		mmio_write16(a, (uint16_t)v);
	else if (w == 4)
		mmio_write32(a, (uint32_t)v);
	else
		mmio_write64(a, v);
}

static uint64_t reg_read(uint64_t a, unsigned w)
{
	if (w == 1)
		return mmio_read8(a);
	if (w == 2)
		return mmio_read16(a);
	if (w == 4)
		return mmio_read32(a);
	return mmio_read64(a);
}

/* Random accesses to the common, ISR, device and notify regions. */
static void hammer_regs(struct prng *p, uint64_t bar0, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		unsigned w = 1u << below(p, 4);
		uint64_t region = (uint64_t)below(p, 4) << 12; /* common, ISR, device, notify */
		unsigned rel = chance(p, 8) ? below(p, 0x1000) : below(p, 0x40);
		if (chance(p, 4))
			rel &= ~(w - 1);
		else
			rel &= 0xff8;
		uint64_t a = bar0 + region + rel;
		if (region == 0 && rel < 0x38 && chance(p, 2)) {
			/* Values that mean something there. */
			uint64_t v;
			switch (rel) {
			case VIRTIO_COMMON_STATUS:
				v = chance(p, 3) ? 0 : below(p, 256);
				break;
			case VIRTIO_COMMON_Q_SELECT:
				v = below(p, 10);
				break;
			case VIRTIO_COMMON_Q_SIZE:
				v = chance(p, 2) ? 1u << below(p, 11) : below(p, 0x10000);
				break;
			case VIRTIO_COMMON_Q_DESCLO: case VIRTIO_COMMON_Q_AVAILLO: case VIRTIO_COMMON_Q_USEDLO:
				v = rnd_addr(p);
				w = 4;
				reg_write(a + 4, 4, v >> 32);
				break;
			default:
				v = rnd(p);
			}
			reg_write(a, w, v);
			st_common_writes++;
		} else if (chance(p, 2)) {
			(void)reg_read(a, w);
		} else {
			reg_write(a, w, rnd(p));
			if (region == 0)
				st_common_writes++;
			if (region == 0x3000)
				st_kicks++;
		}
	}
}

/* ---- MSI-X: only well-formed messages (fixed delivery, vector >= 0x50) ---- */

static void hammer_msix(struct prng *p, struct hdev *h)
{
	struct pci_dev *d = h->v.pci;
	if (!d->msix_table)
		return;
	for (unsigned e = 0; e < d->msix_entries && e < 8; e++) {
		if (chance(p, 2))
			pci_msix_set(d, e, rt_lapic_id(), (uint8_t)(VEC_LO + below(p, VEC_HI - VEC_LO + 1)), chance(p, 2));
	}
	if (chance(p, 3))
		mmio_write32(d->msix_pba + 4 * below(p, 4), (uint32_t)rnd(p)); /* read-only */
	(void)mmio_read32(d->msix_pba);
	pci_msix_enable(d, !chance(p, 4), chance(p, 4));
}

/* ---- Hostile virtqueues ---- */

static uint16_t rnd_qsize(struct prng *p, uint16_t max)
{
	switch (below(p, 10)) {
	case 0: return 0;
	case 1: return (uint16_t)(max <= MAX_RING ? max : MAX_RING);
	case 2: return (uint16_t)(max + 1);
	case 3: return (uint16_t)(3 + 2 * below(p, 40)); /* not a power of two */
	case 4: return 0xffff;
	default: {
		uint16_t s = (uint16_t)(1u << below(p, 7)); /* 1..64 */
		return s > max ? max : s;
	}
	}
}

static void fill_desc(struct prng *p, struct vring_desc *t, unsigned n, uint16_t size, uint64_t indirect_tab)
{
	for (unsigned i = 0; i < n; i++) {
		struct vring_desc *d = &t[i];
		d->addr = rnd_addr(p);
		d->len = rnd_len(p);
		d->flags = (uint16_t)(chance(p, 16) ? rnd(p) : below(p, 8));
		d->next = (uint16_t)(chance(p, 8) ? rnd(p) : below(p, size ? size : 1));
		if ((d->flags & VRING_DESC_F_INDIRECT) && indirect_tab && chance(p, 2)) {
			d->addr = indirect_tab;
			d->len = chance(p, 4) ? rnd_len(p) : 16u * (1 + below(p, 16));
		}
	}
}

/* A chain that mostly makes sense (blk header, data, status), then maybe
 * one field broken. */
static uint16_t fill_chain(struct prng *p, struct hdev *h, struct vring_desc *t, uint16_t size, uint16_t head,
			   uint64_t hdr)
{
	unsigned n = 1 + below(p, 6);
	if (n > size)
		n = size;
	if (h->v.id == VIRTIO_ID_BLOCK) {
		uint32_t *hp = (uint32_t *)(uintptr_t)hdr;
		static const uint32_t types[] = {0, 1, 4, 8, 11, 13, 0x7fffffff};
		hp[0] = chance(p, 8) ? (uint32_t)rnd(p) : types[below(p, 7)];
		hp[1] = 0;
		uint64_t sector = chance(p, 2) ? below(p, 2048) : chance(p, 2) ? ~0ull - below(p, 8) : rnd(p);
		hp[2] = (uint32_t)sector;
		hp[3] = (uint32_t)(sector >> 32);
	}
	uint16_t i = head;
	for (unsigned k = 0; k < n; k++) {
		struct vring_desc *d = &t[i];
		bool last = k + 1 == n;
		if (k == 0 && h->v.id == VIRTIO_ID_BLOCK) {
			*d = (struct vring_desc){hdr, 16, 0, 0};
		} else if (last && h->v.id == VIRTIO_ID_BLOCK) {
			*d = (struct vring_desc){ARENA_DATA + below(p, ARENA_DATA_LEN), 1, VRING_DESC_F_WRITE, 0};
		} else {
			uint32_t len = chance(p, 3) ? rnd_len(p) : 512u * (1 + below(p, 8));
			*d = (struct vring_desc){ARENA_DATA + below(p, ARENA_DATA_LEN - 0x10000), len,
						 (uint16_t)(chance(p, 2) ? VRING_DESC_F_WRITE : 0), 0};
		}
		uint16_t next = (uint16_t)((i + 1) % size);
		if (!last) {
			d->flags |= VRING_DESC_F_NEXT;
			d->next = next;
		}
		i = next;
	}
	if (chance(p, 3)) {
		struct vring_desc *d = &t[(head + below(p, n)) % size];
		switch (below(p, 6)) {
		case 0: d->addr = rnd_addr(p); break;
		case 1: d->len = rnd_len(p); break;
		case 2: d->next = head; d->flags |= VRING_DESC_F_NEXT; break; /* loop */
		case 3: d->next = (uint16_t)(size + below(p, 100)); d->flags |= VRING_DESC_F_NEXT; break;
		case 4: d->flags ^= VRING_DESC_F_WRITE; break;
		default: d->flags |= VRING_DESC_F_INDIRECT; break;
		}
	}
	return head;
}

static void wait_a_bit(struct hdev *h, uint64_t bar0, volatile struct vring_used *used, uint16_t before, uint64_t us)
{
	uint64_t end = rt_rdtsc() + rt_tsc_khz() * us / 1000;
	while (!rt_expired(end)) {
		if (used && used->idx != before)
			break;
		if (mmio_read8(common(h, bar0) + VIRTIO_COMMON_STATUS) & VIRTIO_S_NEEDS_RESET)
			break;
		rt_cpu_relax();
	}
}

static void reset_dev(struct hdev *h, uint64_t bar0)
{
	uint64_t c = common(h, bar0);
	mmio_write8(c + VIRTIO_COMMON_STATUS, 0);
	uint64_t deadline = rt_deadline_ms(2000);
	while (mmio_read8(c + VIRTIO_COMMON_STATUS)) {
		if (rt_expired(deadline))
			fail(E_RESET_HANG, "%s: device_status 0x%x 2 s after a reset", h->name,
			     mmio_read8(c + VIRTIO_COMMON_STATUS));
		rt_cpu_relax();
	}
	st_resets++;
}

static void hostile_queues(struct prng *p, struct hdev *h, unsigned devi, uint64_t bar0)
{
	uint64_t c = common(h, bar0);
	reset_dev(h, bar0);
	mmio_write8(c + VIRTIO_COMMON_STATUS, VIRTIO_S_ACKNOWLEDGE);
	mmio_write8(c + VIRTIO_COMMON_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	mmio_write32(c + VIRTIO_COMMON_DFSELECT, 0);
	uint32_t lo = mmio_read32(c + VIRTIO_COMMON_DF);
	uint64_t want = chance(p, 8) ? rnd(p) : (lo & (uint32_t)rnd(p)) | VIRTIO_F(VIRTIO_F_VERSION_1);
	mmio_write32(c + VIRTIO_COMMON_GFSELECT, 0);
	mmio_write32(c + VIRTIO_COMMON_GF, (uint32_t)want);
	mmio_write32(c + VIRTIO_COMMON_GFSELECT, chance(p, 8) ? below(p, 5) : 1);
	mmio_write32(c + VIRTIO_COMMON_GF, (uint32_t)(want >> 32));
	mmio_write8(c + VIRTIO_COMMON_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);

	uint16_t nq = h->nq < VIRTIO_MAX_QUEUES ? h->nq : VIRTIO_MAX_QUEUES;
	volatile struct vring_used *used0 = NULL;
	uint16_t size0 = 0;
	for (uint16_t q = 0; q < nq; q++) {
		if (chance(p, 4))
			continue;
		uint64_t slot = ARENA_BASE + (devi * VIRTIO_MAX_QUEUES + q) * ARENA_SLOT;
		uint64_t desc = slot, avail = slot + 0x4000, used = slot + 0x6000;
		uint64_t itab = ARENA_HDRS + 0x10000 + (devi * VIRTIO_MAX_QUEUES + q) * 0x1000;
		uint64_t hdrs = ARENA_HDRS + (devi * VIRTIO_MAX_QUEUES + q) * 0x1000;
		mmio_write16(c + VIRTIO_COMMON_Q_SELECT, q);
		uint16_t size = rnd_qsize(p, h->qmax[q]);
		mmio_write16(c + VIRTIO_COMMON_Q_SIZE, size);
		size = mmio_read16(c + VIRTIO_COMMON_Q_SIZE);
		if (size > MAX_RING)
			size = MAX_RING; /* what we fill; the device may see more */
		uint64_t d = chance(p, 10) ? rnd_addr(p) : desc + (chance(p, 16) ? 1 : 0);
		uint64_t a = chance(p, 10) ? rnd_addr(p) : avail;
		uint64_t u = chance(p, 10) ? rnd_addr(p) : used;
		mmio_write32(c + VIRTIO_COMMON_Q_DESCLO, (uint32_t)d);
		mmio_write32(c + VIRTIO_COMMON_Q_DESCHI, (uint32_t)(d >> 32));
		mmio_write32(c + VIRTIO_COMMON_Q_AVAILLO, (uint32_t)a);
		mmio_write32(c + VIRTIO_COMMON_Q_AVAILHI, (uint32_t)(a >> 32));
		mmio_write32(c + VIRTIO_COMMON_Q_USEDLO, (uint32_t)u);
		mmio_write32(c + VIRTIO_COMMON_Q_USEDHI, (uint32_t)(u >> 32));
		mmio_write16(c + VIRTIO_COMMON_Q_MSIX, (uint16_t)(chance(p, 3) ? 0xffff : below(p, 10)));

		/* Rings: random table, a few chains that nearly make sense. */
		struct vring_desc *t = (struct vring_desc *)(uintptr_t)desc;
		if (size) {
			fill_desc(p, t, size, size, itab);
			fill_desc(p, (struct vring_desc *)(uintptr_t)itab, 16, 16, chance(p, 2) ? itab : 0);
		}
		struct vring_avail *av = (struct vring_avail *)(uintptr_t)avail;
		volatile struct vring_used *us = (volatile struct vring_used *)(uintptr_t)used;
		us->idx = 0;
		us->flags = 0;
		av->flags = (uint16_t)below(p, 2);
		uint16_t n = (uint16_t)(size ? 1 + below(p, size < 8 ? size : 8) : 0);
		for (uint16_t k = 0; k < n; k++) {
			uint16_t head = (uint16_t)below(p, size);
			if (chance(p, 2))
				fill_chain(p, h, t, size, head, hdrs + 16 * (k % 64));
			av->ring[k] = chance(p, 10) ? (uint16_t)rnd(p) : head;
		}
		if (size)
			av->ring[size] = (uint16_t)rnd(p); /* used_event */
		av->idx = chance(p, 8) ? (uint16_t)rnd(p) : chance(p, 8) ? (uint16_t)(size + 1 + below(p, 8)) : n;
		if (!chance(p, 6))
			mmio_write16(c + VIRTIO_COMMON_Q_ENABLE, chance(p, 10) ? (uint16_t)rnd(p) : 1);
		if (!used0 && size) {
			used0 = us;
			size0 = size;
		}
	}
	if (!chance(p, 8))
		mmio_write8(c + VIRTIO_COMMON_STATUS, chance(p, 10) ? (uint8_t)rnd(p)
					: VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
	(void)size0;
	uint16_t before = used0 ? used0->idx : 0;
	for (uint16_t q = 0; q <= nq; q++) {
		mmio_write16(c + VIRTIO_COMMON_Q_SELECT, q);
		uint16_t noff = mmio_read16(c + VIRTIO_COMMON_Q_NOFF);
		uint64_t na = bar0 + (h->v.notify - h->bar0) + (uint64_t)noff * h->v.notify_mul;
		if (chance(p, 4))
			mmio_write32(na, (uint32_t)rnd(p)); /* odd width: the slow path */
		else
			mmio_write16(na, chance(p, 8) ? (uint16_t)rnd(p) : q);
		st_kicks++;
	}
	wait_a_bit(h, bar0, used0, before, 300 + below(p, 2000));
	if (mmio_read8(c + VIRTIO_COMMON_STATUS) & VIRTIO_S_NEEDS_RESET)
		st_needs_reset++;
	/* Meddle while it may be running, kick again, then maybe reset. */
	hammer_regs(p, bar0, below(p, 12));
	if (chance(p, 2)) {
		for (uint16_t q = 0; q < nq; q++)
			mmio_write16(h->v.notify + (uint64_t)q * h->v.notify_mul - h->bar0 + bar0, q);
	}
	if (!chance(p, 4))
		reset_dev(h, bar0);
}

/* ---- BAR 0 moved to a free address, used there, and moved back ---- */

static bool overlaps_any_bar(uint64_t a, uint64_t len)
{
	for (unsigned k = 0; k < pci_scan(); k++) {
		struct pci_dev *d = pci_dev_at(k);
		for (unsigned b = 0; b < 6; b++) {
			uint32_t lo = pci_cfg_read32(d, (uint8_t)(PCI_BAR0 + 4 * b));
			if (lo & 1)
				continue;
			uint64_t base = lo & ~0xfull;
			if (base && base < a + len && a < base + 0x100000)
				return true;
		}
	}
	return false;
}

static void move_bar0(struct prng *p, struct hdev *h, unsigned devi)
{
	uint64_t alt = 0xc8000000ull + devi * 0x100000ull; /* inside Ember's 32-bit PCI window */
	if (overlaps_any_bar(alt, 0x100000))
		return;
	struct pci_dev *d = h->v.pci;
	pci_enable(d);
	pci_cfg_write32(d, PCI_BAR0, (uint32_t)alt);
	if (h->v.pci->bar_flags[0] & PCI_BARF_64)
		pci_cfg_write32(d, PCI_BAR0 + 4, 0);
	hostile_queues(p, h, devi, alt);
	hammer_regs(p, alt, 8);
	reset_dev(h, alt);
	pci_cfg_write32(d, PCI_BAR0, (uint32_t)h->bar0);
	if (h->v.pci->bar_flags[0] & PCI_BARF_64)
		pci_cfg_write32(d, PCI_BAR0 + 4, (uint32_t)(h->bar0 >> 32));
}

/* ---- Set-up and the final sane use ---- */

static uint8_t find_vcap(struct pci_dev *d, uint8_t type)
{
	for (uint8_t p = 0; (p = pci_find_cap(d, PCI_CAP_ID_VNDR, p));)
		if (pci_cfg_read8(d, p + 3) == type)
			return p;
	return 0;
}

static void setup_dev(struct hdev *h, const char *name, uint16_t id)
{
	h->name = name;
	int r = virtio_probe(&h->v, id, 0);
	if (r)
		fail(E_PROBE, "%s probe: %s", name, virtio_strerror(r));
	struct pci_dev *d = h->v.pci;
	h->bar0 = pci_bar_map(d, 0);
	h->cfg_cap = find_vcap(d, VIRTIO_PCI_CAP_PCI_CFG);
	h->msix_cap = pci_find_cap(d, PCI_CAP_ID_MSIX, 0);
	if (!pci_msix_init(d))
		fail(E_PROBE, "%s: no MSI-X", name);
	h->nq = mmio_read16(h->v.common + VIRTIO_COMMON_NUMQ);
	for (uint16_t q = 0; q < h->nq && q < VIRTIO_MAX_QUEUES; q++) {
		mmio_write16(h->v.common + VIRTIO_COMMON_Q_SELECT, q);
		h->qmax[q] = mmio_read16(h->v.common + VIRTIO_COMMON_Q_SIZE);
	}
	rt_printf("hostile: %s at %02x.%x, BAR0 0x%lx, %u queues (max %u), cfg cap 0x%x\n", name, d->slot, d->func,
		  (unsigned long)h->bar0, h->nq, h->qmax[0], h->cfg_cap);
}

static void sane_again(struct hdev *h)
{
	struct pci_dev *d = h->v.pci;
	pci_cfg_write32(d, PCI_BAR0, (uint32_t)h->bar0);
	if (d->bar_flags[0] & PCI_BARF_64)
		pci_cfg_write32(d, PCI_BAR0 + 4, (uint32_t)(h->bar0 >> 32));
	pci_enable(d);
	pci_msix_enable(d, true, false);
	for (unsigned e = 0; e < d->msix_entries; e++)
		pci_msix_mask(d, e, true);
	reset_dev(h, h->bar0);
}

static uint8_t rngbuf[64], sector[512];
static const char con_line[] = "hostile: console ok\n";

static void final_checks(void)
{
	struct hdev *blk = &devs[0], *rng = &devs[1], *con = &devs[2];
	uint32_t len = 0;
	int r;

	/* virtio-rng, interrupt-driven. */
	if ((r = virtio_start(&rng->v, 0)) || (r = virtio_queue_setup(&rng->v, 0, 8, VEC_FINAL)))
		fail(E_FINAL_RNG, "rng setup: %s", virtio_strerror(r));
	virtio_driver_ok(&rng->v);
	struct virtq_buf b = {rngbuf, sizeof(rngbuf)};
	if ((r = virtq_add(&rng->v.vq[0], &b, 0, 1, false)) < 0)
		fail(E_FINAL_RNG, "rng add: %s", virtio_strerror(r));
	virtq_kick(&rng->v.vq[0]);
	r = virtq_wait(&rng->v.vq[0], &len, 5000);
	if (r < 0 || len == 0 || len > sizeof(rngbuf))
		fail(E_FINAL_RNG, "rng read: %s, len %u", r < 0 ? virtio_strerror(r) : "ok", len);
	rt_printf("hostile: rng ok (%u bytes)\n", len);

	/* virtio-blk, polled. */
	if ((r = virtio_start(&blk->v, 0)) || (r = virtio_queue_setup(&blk->v, 0, 8, 0)))
		fail(E_FINAL_BLK, "blk setup: %s", virtio_strerror(r));
	virtio_driver_ok(&blk->v);
	r = virtio_blk_request(&blk->v, VIRTIO_BLK_T_IN, 0, sector, sizeof(sector), 1, false, &len, 5000);
	if (r != VIRTIO_BLK_S_OK)
		fail(E_FINAL_BLK, "blk read: %s %d", r < 0 ? virtio_strerror(r) : "status", r);
	rt_puts("hostile: blk ok");

	/* virtio-console transmitq (queue 1), polled. */
	if ((r = virtio_start(&con->v, 0)) || (r = virtio_queue_setup(&con->v, 1, 8, 0)))
		fail(E_FINAL_CON, "console setup: %s", virtio_strerror(r));
	virtio_driver_ok(&con->v);
	struct virtq_buf cb = {(void *)con_line, sizeof(con_line) - 1};
	if ((r = virtq_add(&con->v.vq[1], &cb, 1, 0, false)) < 0)
		fail(E_FINAL_CON, "console add: %s", virtio_strerror(r));
	virtq_kick(&con->v.vq[1]);
	if ((r = virtq_wait(&con->v.vq[1], &len, 5000)) < 0)
		fail(E_FINAL_CON, "console tx: %s", virtio_strerror(r));
	rt_puts("hostile: console sent");
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

int guest_main(const struct hvm_start_info *si)
{
	uint64_t seed = (uint64_t)rt_cmdline_int("seed", 1);
	long iters = rt_cmdline_int("iters", 1000000);
	long ms = rt_cmdline_int("ms", 10000);
	long linger = rt_cmdline_int("linger", 0);
	bsp_rng.s = seed * 0x2545f4914f6cdd1dull + 0x9e3779b97f4a7c15ull;
	if (!bsp_rng.s)
		bsp_rng.s = 1;
	ap_seed = rnd(&bsp_rng);

	/* The RAM entry that holds the arena. */
	if (si && si->version >= 1) {
		const struct hvm_memmap_table_entry *m = (const void *)(uintptr_t)si->memmap_paddr;
		for (uint32_t i = 0; i < si->memmap_entries; i++)
			if (m[i].type == HVM_MEMMAP_TYPE_RAM && m[i].addr <= ARENA_BASE &&
			    m[i].addr + m[i].size > ARENA_BASE)
				ram_end = m[i].addr + m[i].size;
	}
	if (ram_end < ARENA_DATA + ARENA_DATA_LEN)
		fail(E_MEM, "need RAM up to 0x%lx, have 0x%lx", (unsigned long)(ARENA_DATA + ARENA_DATA_LEN),
		     (unsigned long)ram_end);

	apic_init();
	setup_dev(&devs[0], "virtio-blk", VIRTIO_ID_BLOCK);
	setup_dev(&devs[1], "virtio-rng", VIRTIO_ID_RNG);
	setup_dev(&devs[2], "virtio-console", VIRTIO_ID_CONSOLE);
	unsigned cpus = rt_cpu_count();
	unsigned running = cpus > 1 ? rt_start_aps(cpus, ap_main) : 1;
	rt_printf("hostile: seed %lu, %ld rounds or %ld ms, %u cpus (%u running)\n", (unsigned long)seed, iters, ms,
		  cpus, running);

	uint64_t start = rt_rdtsc(), end = rt_deadline_ms((uint64_t)ms), next_report = 0;
	struct i8042_state k = {false};
	for (long round = 0; round < iters && !rt_expired(end); round++) {
		struct prng *p = &bsp_rng;
		if (rt_rdtsc() >= next_report) {
			uart_restore();
			rt_printf("hostile: round %ld, %lu ms, resets %lu, kicks %lu, needs_reset %lu, cfg %lu, "
				  "common %lu, ap %u\n", round,
				  (unsigned long)((rt_rdtsc() - start) / rt_tsc_khz()), (unsigned long)st_resets,
				  (unsigned long)st_kicks, (unsigned long)st_needs_reset, (unsigned long)st_cfg_writes,
				  (unsigned long)st_common_writes, rt_atomic_load(&ap_ops));
			next_report = rt_rdtsc() + rt_tsc_khz() * 1000;
		}
		hammer_uart(p, below(p, 6));
		if (running < 2)
			hammer_legacy(p, &k, 8);
		unsigned devi = below(p, NDEV);
		struct hdev *h = &devs[devi];
		switch (below(p, 8)) {
		case 0:
			hammer_cfg(p, h, 4 + below(p, 12));
			if (chance(p, 2))
				pci_enable(h->v.pci);
			break;
		case 1:
			probe_bars(h);
			hammer_msix(p, h);
			break;
		case 2:
			if (chance(p, 4))
				move_bar0(p, h, devi);
			else
				hammer_regs(p, h->bar0, 8 + below(p, 24));
			break;
		default:
			pci_enable(h->v.pci);
			hostile_queues(p, h, devi, h->bar0);
			break;
		}
		st_rounds = (uint64_t)round + 1;
	}

	if (running > 1) {
		__atomic_store_n(&ap_stop, 1, __ATOMIC_RELEASE);
		uint64_t deadline = rt_deadline_ms(2000);
		while (rt_atomic_load(&ap_done) < running - 1)
			if (rt_expired(deadline))
				fail(E_AP, "APs did not stop");
	}
	uart_restore();
	rt_printf("hostile: %lu rounds in %lu ms: resets %lu, kicks %lu, needs_reset %lu, cfg writes %lu, "
		  "common writes %lu, ap ops %u\n", (unsigned long)st_rounds,
		  (unsigned long)((rt_rdtsc() - start) / rt_tsc_khz()), (unsigned long)st_resets,
		  (unsigned long)st_kicks, (unsigned long)st_needs_reset, (unsigned long)st_cfg_writes,
		  (unsigned long)st_common_writes, rt_atomic_load(&ap_ops));

	for (unsigned i = 0; i < NDEV; i++)
		sane_again(&devs[i]);
	final_checks();
	rt_puts("hostile: done");
	if (linger > 0)
		apic_wait(never, NULL, (uint64_t)linger);
	return 0;
}
