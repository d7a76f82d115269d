/* PCI configuration mechanism #1, bus 0 scan, BARs and MSI-X. See pci.h. */
#include "rt/pci.h"

#define CFG_ADDR 0xcf8
#define CFG_DATA 0xcfc
#define LOW_4G 0x100000000ull
#define TESTDEV_BASE 0xd0000000ull
#define TESTDEV_SIZE 0x100000ull
#define MAX_BAR_SIZE 0x40000000ull
#define MIN_BAR_ALIGN 0x1000ull
#define MAX_RESV 24

static struct pci_dev devs[PCI_MAX_DEVS];
static unsigned ndevs;
static bool scanned;

static void cfg_select(const struct pci_dev *d, uint8_t off)
{
	outl(CFG_ADDR, 0x80000000u | (uint32_t)d->bus << 16 | (uint32_t)d->slot << 11 |
			       (uint32_t)d->func << 8 | (off & 0xfcu));
}

uint32_t pci_cfg_read32(const struct pci_dev *d, uint8_t off)
{
	cfg_select(d, off);
	return inl(CFG_DATA);
}

uint16_t pci_cfg_read16(const struct pci_dev *d, uint8_t off)
{
	cfg_select(d, off);
	return inw(CFG_DATA + (off & 2));
}

uint8_t pci_cfg_read8(const struct pci_dev *d, uint8_t off)
{
	cfg_select(d, off);
	return inb(CFG_DATA + (off & 3));
}

void pci_cfg_write32(const struct pci_dev *d, uint8_t off, uint32_t v)
{
	cfg_select(d, off);
	outl(CFG_DATA, v);
}

void pci_cfg_write16(const struct pci_dev *d, uint8_t off, uint16_t v)
{
	cfg_select(d, off);
	outw(CFG_DATA + (off & 2), v);
}

void pci_cfg_write8(const struct pci_dev *d, uint8_t off, uint8_t v)
{
	cfg_select(d, off);
	outb(CFG_DATA + (off & 3), v);
}

/* ---- Enumeration ---- */

static bool probe(uint8_t slot, uint8_t func)
{
	/* devs[] is .bss: entries past ndevs are still zero. */
	struct pci_dev *d = &devs[ndevs];

	d->slot = slot;
	d->func = func;
	uint32_t id = pci_cfg_read32(d, PCI_VENDOR_ID);
	if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
		return false;
	d->vendor = (uint16_t)id;
	d->device = (uint16_t)(id >> 16);
	d->header_type = pci_cfg_read8(d, PCI_HEADER_TYPE);
	ndevs++;
	return true;
}

unsigned pci_scan(void)
{
	if (scanned)
		return ndevs;
	scanned = true;
	for (uint8_t slot = 0; slot < 32; slot++) {
		if (ndevs == PCI_MAX_DEVS) {
			rt_printf("pci: more than %u functions on bus 0; slots %u-31 not scanned\n", PCI_MAX_DEVS, slot);
			break;
		}
		if (!probe(slot, 0))
			continue;
		if (!(devs[ndevs - 1].header_type & 0x80))
			continue;
		for (uint8_t fn = 1; fn < 8 && ndevs < PCI_MAX_DEVS; fn++)
			probe(slot, fn);
	}
	return ndevs;
}

struct pci_dev *pci_dev_at(unsigned k)
{
	return k < pci_scan() ? &devs[k] : NULL;
}

struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned n)
{
	for (unsigned k = 0; k < pci_scan(); k++)
		if (devs[k].vendor == vendor && devs[k].device == device && n-- == 0)
			return &devs[k];
	return NULL;
}

uint8_t pci_find_cap(const struct pci_dev *d, uint8_t id, uint8_t after)
{
	uint8_t p;

	if (after) {
		p = pci_cfg_read8(d, after + 1);
	} else {
		if (!(pci_cfg_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
			return 0;
		p = pci_cfg_read8(d, PCI_CAP_PTR);
	}
	/* At most 48 capabilities fit in 192 bytes: bounds a looping list. */
	for (unsigned hops = 0; hops < 48; hops++) {
		p &= 0xfc;
		if (p < 0x40)
			return 0;
		uint16_t hdr = pci_cfg_read16(d, p);
		if ((hdr & 0xff) == id)
			return p;
		p = (uint8_t)(hdr >> 8);
	}
	return 0;
}

/* ---- BAR assignment ---- */

struct range {
	uint64_t base, end;
};
static struct range resv[MAX_RESV];
static unsigned nresv;
static bool resv_ready;
static uint64_t next_free = PCI_MMIO_WINDOW_BASE;
/* cmdline pci_reassign=1 (or =BASE, allocating from BASE): assign every
 * BAR this driver maps, ignoring what firmware or the VMM placed. */
static int reassign = -1;

static void reserve(uint64_t base, uint64_t size)
{
	if (nresv < MAX_RESV && size)
		resv[nresv++] = (struct range){base, base + size};
}

static bool sum_ok(const uint8_t *p, uint32_t len)
{
	uint8_t s = 0;
	while (len--)
		s += *p++;
	return s == 0;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static const uint8_t *acpi_sdt(uint64_t pa, const char *sig)
{
	if (!pa || pa >= LOW_4G - 36)
		return NULL;
	const uint8_t *t = (const uint8_t *)(uintptr_t)pa;
	if (memcmp(t, sig, 4))
		return NULL;
	uint32_t len = rd32(t + 4);
	if (len < 36 || len > 0x10000 || pa + len > LOW_4G || !sum_ok(t, len))
		return NULL;
	return t;
}

/* ECAM windows of the ACPI MCFG (if any) are not BAR space. */
static void reserve_mcfg(void)
{
	const struct hvm_start_info *si = rt_start_info;
	if (!si || !si->rsdp_paddr || si->rsdp_paddr >= LOW_4G - 36)
		return;
	const uint8_t *rsdp = (const uint8_t *)(uintptr_t)si->rsdp_paddr;
	if (memcmp(rsdp, "RSD PTR ", 8) || !sum_ok(rsdp, 20))
		return;
	const uint8_t *root = NULL;
	unsigned esz = 8;
	if (rsdp[15] >= 2)
		root = acpi_sdt(rd64(rsdp + 24), "XSDT");
	if (!root) {
		root = acpi_sdt(rd32(rsdp + 16), "RSDT");
		esz = 4;
	}
	if (!root)
		return;
	uint32_t len = rd32(root + 4);
	for (uint32_t off = 36; off + esz <= len; off += esz) {
		const uint8_t *m = acpi_sdt(esz == 8 ? rd64(root + off) : rd32(root + off), "MCFG");
		if (!m)
			continue;
		uint32_t mlen = rd32(m + 4);
		for (uint32_t e = 44; e + 16 <= mlen; e += 16) {
			uint64_t base = rd64(m + e);
			uint8_t end_bus = m[e + 11];
			reserve(base, ((uint64_t)end_bus + 1) << 20);
			rt_printf("pci: ECAM 0x%lx-0x%lx reserved\n", base,
				  base + (((uint64_t)end_bus + 1) << 20) - 1);
		}
	}
}

static void reserve_init(void)
{
	if (resv_ready)
		return;
	resv_ready = true;
	reserve(TESTDEV_BASE, TESTDEV_SIZE);
	const struct hvm_start_info *si = rt_start_info;
	if (si && si->version >= 1 && si->memmap_paddr && si->memmap_paddr < LOW_4G - 4096) {
		const struct hvm_memmap_table_entry *e =
			(const struct hvm_memmap_table_entry *)(uintptr_t)si->memmap_paddr;
		for (uint32_t i = 0; i < si->memmap_entries && i < 64; i++)
			reserve(e[i].addr, e[i].size);
	}
	reserve_mcfg();
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

static uint64_t bar_alloc(uint64_t size)
{
	reserve_init();
	if (size < MIN_BAR_ALIGN)
		size = MIN_BAR_ALIGN;
	uint64_t a = align_up(next_free, size);
	for (unsigned i = 0; i < nresv;) {
		if (a < resv[i].end && a + size > resv[i].base) {
			a = align_up(resv[i].end, size);
			i = 0; /* re-check against every range */
		} else {
			i++;
		}
	}
	if (a < PCI_MMIO_WINDOW_BASE || a + size > PCI_MMIO_WINDOW_END)
		return 0;
	next_free = a + size;
	return a;
}

uint64_t pci_bar_map(struct pci_dev *d, unsigned bar)
{
	if (bar > 5)
		return 0;
	if (d->bar_flags[bar] & PCI_BARF_READ)
		return d->bar_addr[bar];
	d->bar_flags[bar] |= PCI_BARF_READ;

	uint8_t off = (uint8_t)(PCI_BAR0 + 4 * bar);
	uint32_t lo = pci_cfg_read32(d, off);
	if (lo & 1) {
		d->bar_flags[bar] |= PCI_BARF_IO;
		return 0;
	}
	bool is64 = ((lo >> 1) & 3) == 2;
	if (is64 && bar == 5)
		return 0;
	uint32_t hi = is64 ? pci_cfg_read32(d, off + 4) : 0;
	uint64_t addr = ((uint64_t)hi << 32) | (lo & ~0xfu);
	if (is64)
		d->bar_flags[bar] |= PCI_BARF_64;
	if (reassign < 0) {
		long base = rt_cmdline_int("pci_reassign", 0);
		reassign = base != 0;
		if (base >= (long)PCI_MMIO_WINDOW_BASE && base < (long)PCI_MMIO_WINDOW_END)
			next_free = (uint64_t)base;
	}
	if (addr && addr < LOW_4G && !reassign) {
		d->bar_addr[bar] = (uint32_t)addr;
		return addr;
	}

	/* Size it with decoding off, then place it in the window. */
	uint16_t cmd = pci_cfg_read16(d, PCI_COMMAND);
	pci_cfg_write16(d, PCI_COMMAND, cmd & ~(PCI_CMD_MEM | PCI_CMD_IO));
	pci_cfg_write32(d, off, 0xffffffffu);
	uint32_t mlo = pci_cfg_read32(d, off) & ~0xfu, mhi = 0xffffffffu;
	if (is64) {
		pci_cfg_write32(d, off + 4, 0xffffffffu);
		mhi = pci_cfg_read32(d, off + 4);
	}
	uint64_t size = 0, base = 0;
	if (mlo || (is64 && mhi)) {
		size = ~(((uint64_t)mhi << 32) | mlo) + 1;
		if (size && size <= MAX_BAR_SIZE && !(size & (size - 1)))
			base = bar_alloc(size);
	}
	pci_cfg_write32(d, off, (uint32_t)base);
	if (is64)
		pci_cfg_write32(d, off + 4, 0);
	pci_cfg_write16(d, PCI_COMMAND, cmd);
	if (!base) {
		rt_printf("pci: %02x.%x BAR%u: cannot assign (size 0x%lx)\n", d->slot, d->func, bar, size);
		return 0;
	}
	d->bar_addr[bar] = (uint32_t)base;
	d->bar_size[bar] = (uint32_t)size;
	d->bar_flags[bar] |= PCI_BARF_ASSIGNED;
	return base;
}

void pci_enable(struct pci_dev *d)
{
	uint16_t cmd = pci_cfg_read16(d, PCI_COMMAND);
	cmd |= PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_DISABLE;
	pci_cfg_write16(d, PCI_COMMAND, cmd);
	d->command = cmd;
}

/* ---- MSI-X ---- */

unsigned pci_msix_init(struct pci_dev *d)
{
	if (d->msix_cap)
		return d->msix_entries;
	uint8_t cap = pci_find_cap(d, PCI_CAP_ID_MSIX, 0);
	if (!cap)
		return 0;
	uint16_t ctrl = pci_cfg_read16(d, cap + PCI_MSIX_CTRL);
	uint32_t t = pci_cfg_read32(d, cap + PCI_MSIX_TABLE);
	uint32_t p = pci_cfg_read32(d, cap + PCI_MSIX_PBA);
	uint64_t tb = pci_bar_map(d, t & 7), pb = pci_bar_map(d, p & 7);
	if (!tb || !pb)
		return 0;
	d->msix_cap = cap;
	d->msix_entries = (uint16_t)((ctrl & PCI_MSIX_CTRL_SIZE) + 1);
	d->msix_table = tb + (t & ~7u);
	d->msix_pba = pb + (p & ~7u);
	return d->msix_entries;
}

void pci_msix_set(struct pci_dev *d, unsigned entry, uint32_t apic_id, uint8_t vector, bool masked)
{
	uint64_t e = d->msix_table + (uint64_t)entry * PCI_MSIX_ENTRY_SIZE;

	mmio_write32(e + PCI_MSIX_ENTRY_CTRL, PCI_MSIX_ENTRY_MASKED);
	mmio_write32(e + PCI_MSIX_ENTRY_ADDR_LO, RT_LAPIC_BASE | (apic_id << 12));
	mmio_write32(e + PCI_MSIX_ENTRY_ADDR_HI, 0);
	mmio_write32(e + PCI_MSIX_ENTRY_DATA, vector);
	if (!masked)
		mmio_write32(e + PCI_MSIX_ENTRY_CTRL, 0);
}

void pci_msix_mask(struct pci_dev *d, unsigned entry, bool masked)
{
	mmio_write32(d->msix_table + (uint64_t)entry * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_CTRL,
		     masked ? PCI_MSIX_ENTRY_MASKED : 0);
}

void pci_msix_enable(struct pci_dev *d, bool enable, bool function_mask)
{
	uint16_t ctrl = pci_cfg_read16(d, d->msix_cap + PCI_MSIX_CTRL);
	ctrl &= (uint16_t)~(PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL);
	if (enable)
		ctrl |= PCI_MSIX_CTRL_ENABLE;
	if (function_mask)
		ctrl |= PCI_MSIX_CTRL_MASKALL;
	pci_cfg_write16(d, d->msix_cap + PCI_MSIX_CTRL, ctrl);
}

bool pci_msix_pending(const struct pci_dev *d, unsigned entry)
{
	return (mmio_read32(d->msix_pba + 4 * (entry / 32)) >> (entry % 32)) & 1;
}
