/* The PCI model without KVM: config-space masks, BAR sizing and decoding
 * (flat, on a machine-like MMIO bus shared with ECAM), capability lists,
 * CF8/CFC and ECAM decoding, MSI-X table/PBA semantics and INTx through a
 * fake interrupt sink; the GSI routing table; the machine's host bridge
 * (devices/pci/host.c) realized on a fake device context: per-vector
 * irqfds, route commits on unmask, the lock-free fast path, exact masking
 * and the mask notifier; and the ACPI description of the host bridge. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/bus.h"
#include "base/guest_mem.h"
#include "devices/device.h"
#include "devices/pci/pci.h"
#include "irqchip/irqchip.h"
#include "irqchip/routing.h"
#include "vmm/acpi/acpi.h"
#include "vmm/boot/boot.h"
#include "helpers/ck_run.h"

#define W32_BASE 0xC0000000ULL
#define W32_SIZE 0x10000000ULL
#define W64_BASE 0x200000000ULL
#define W64_SIZE 0x100000000ULL
#define NVEC 4
#define MAX_EVENTS 64

/* ---- A fake interrupt sink ---- */

struct irq_event {
	char kind;		/* 'r' route, 'f' fire, 'i' INTx */
	unsigned vec;
	uint64_t addr;
	uint32_t data;
	bool level;
};

static struct irq_event events[MAX_EVENTS];
static unsigned nevents;
static unsigned resets;

static void ev(char kind, unsigned vec, uint64_t addr, uint32_t data, bool level)
{
	ck_assert_uint_lt(nevents, MAX_EVENTS);
	events[nevents++] = (struct irq_event){ kind, vec, addr, data, level };
}

static unsigned count(char kind)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nevents; i++)
		n += events[i].kind == kind;
	return n;
}

static const struct irq_event *last(char kind)
{
	for (unsigned i = nevents; i-- > 0;)
		if (events[i].kind == kind)
			return &events[i];
	return NULL;
}

static void sink_route(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a, uint32_t data)
{
	(void)h;
	(void)d;
	ev('r', v, a, data, false);
}

static void sink_fire(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a, uint32_t data)
{
	(void)h;
	(void)d;
	ev('f', v, a, data, false);
}

static void sink_intx(struct pci_host *h, struct pci_device *d, bool level)
{
	(void)h;
	(void)d;
	ev('i', 0, 0, 0, level);
}

static const struct pci_irq_ops sink_ops = {
	.msi_route = sink_route,
	.msi_fire = sink_fire,
	.intx_set = sink_intx,
};

/* ---- A fake machine behind the device context ---- */

#define MAX_IRQFDS 64

struct fake_irqfd {
	unsigned gsi;
	int fd, resample_fd;
	bool assigned;
};

static struct fake_irqfd irqfds[MAX_IRQFDS];
static unsigned nirqfds, deassigns;
static int irqfd_ret;

static void fake_request(void *machine, enum device_machine_request req, int status,
			 const char *cause)
{
	(void)machine;
	(void)status;
	(void)cause;
	if (req == DEVICE_REQ_RESET)
		resets++;
}

static int fake_irqfd(void *machine, unsigned gsi, int fd, int resample_fd, bool assign)
{
	(void)machine;
	if (irqfd_ret)
		return irqfd_ret;
	if (!assign) {
		for (unsigned i = 0; i < nirqfds; i++)
			if (irqfds[i].fd == fd && irqfds[i].gsi == gsi && irqfds[i].assigned) {
				irqfds[i].assigned = false;
				deassigns++;
				return 0;
			}
		return -ENOENT;
	}
	ck_assert_uint_lt(nirqfds, MAX_IRQFDS);
	irqfds[nirqfds++] = (struct fake_irqfd){ gsi, fd, resample_fd, true };
	return 0;
}

static const struct device_machine_ops fake_ops = {
	.irqfd = fake_irqfd,
	.request = fake_request,
};

static const struct fake_irqfd *irqfd_of(int fd)
{
	for (unsigned i = 0; i < nirqfds; i++)
		if (irqfds[i].fd == fd)
			return &irqfds[i];
	return NULL;
}

/* ---- A test device: BAR0 32-bit 4 KiB, BAR2-3 64-bit 16 KiB prefetchable,
 * BAR4 32-bit 4 KiB with the MSI-X table (0) and PBA (0x800), a vendor
 * capability, INTA. BAR0 and BAR2 are plain RAM. ---- */

struct tdev {
	struct pci_device pci;
	uint8_t ram[2][0x4000];
	unsigned maps, unmaps;
	uint64_t last_map;
};

static void t_bar_read(struct pci_device *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
	struct tdev *t = d->opaque;

	memset(data, 0, len);
	if (bar == 0 || bar == 2)
		memcpy(data, &t->ram[bar / 2][off], len);
}

static void t_bar_write(struct pci_device *d, unsigned bar, uint64_t off, const void *data, unsigned len)
{
	struct tdev *t = d->opaque;

	if (bar == 0 || bar == 2)
		memcpy(&t->ram[bar / 2][off], data, len);
}

static void t_bar_map(struct pci_device *d, unsigned bar, uint64_t addr, bool mapped)
{
	struct tdev *t = d->opaque;

	(void)bar;
	if (mapped) {
		t->maps++;
		t->last_map = addr;
	} else {
		t->unmaps++;
	}
}

static const struct pci_device_ops tdev_ops = {
	.bar_read = t_bar_read,
	.bar_write = t_bar_write,
	.bar_map = t_bar_map,
};

static struct pci_host host;
static struct bus mmio_bus;
static struct device_ctx mctx;
static struct tdev *td;
static int vcap;
static int mcap;
static int slot;

static void tdev_new(void)
{
	td = calloc(1, sizeof(*td));
	ck_assert_ptr_nonnull(td);
	pci_device_init(&td->pci, "tdev", &tdev_ops, td, 0x1234, 0x5678, 0x0c0330, 0x42, 0xabcd, 0xef01);
	ck_assert_int_eq(pci_device_add_bar(&td->pci, 0, 0x1000, 0), 0);
	ck_assert_int_eq(pci_device_add_bar(&td->pci, 2, 0x4000, PCI_BARF_64 | PCI_BARF_PREFETCH), 0);
	ck_assert_int_eq(pci_device_add_bar(&td->pci, 4, 0x1000, 0), 0);
	mcap = pci_device_add_msix(&td->pci, NVEC, 4, 0, 4, 0x800);
	ck_assert_int_ge(mcap, PCI_CAP_START);
	vcap = pci_device_add_cap(&td->pci, PCI_CAP_ID_VNDR, 8);
	ck_assert_int_gt(vcap, mcap);
	pci_cfg_set_wmask(&td->pci, vcap + 4, 4, 0x00ff00ff);	/* partly writable */
	pci_device_set_intx_pin(&td->pci, PCI_INTX_PIN_A);
}

static void ecam_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	pci_host_ecam_read(opaque, off, data, len);
}

static void ecam_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	pci_host_ecam_write(opaque, off, data, len);
}

static const struct bus_dev_ops ecam_bus_ops = { .read = ecam_bus_read, .write = ecam_bus_write };

/* The model on a machine-like context: BARs and ECAM share one MMIO bus,
 * 0xCF9 goes to the fake machine. */
static void setup(void)
{
	struct pci_host_params p = {
		.ecam_base = PCI_ECAM_BASE,
		.mmio32_base = W32_BASE, .mmio32_size = W32_SIZE,
		.mmio64_base = W64_BASE, .mmio64_size = W64_SIZE,
		.irq = &sink_ops,
		.ctx = &mctx,
	};

	nevents = 0;
	resets = 0;
	ck_assert_int_eq(bus_init(&mmio_bus, "mmio"), 0);
	mctx = (struct device_ctx){ .mmio_bus = &mmio_bus, .ops = &fake_ops };
	ck_assert_int_eq(pci_host_init(&host, &p), 0);
	ck_assert_int_eq(bus_register(&mmio_bus, PCI_ECAM_BASE, PCI_ECAM_SIZE, &ecam_bus_ops, &host,
				      "pci-ecam"), 0);
	tdev_new();
	slot = pci_register_device(&host, &td->pci);
	ck_assert_int_eq(slot, 1);
}

static void teardown(void)
{
	pci_unregister_device(&td->pci);
	pci_device_release(&td->pci);
	free(td);
	pci_host_destroy(&host);
	bus_destroy(&mmio_bus);
}

static uint32_t cfg_rd(unsigned off, unsigned len)
{
	return pci_host_config_read(&host, 0, (unsigned)slot, 0, off, len);
}

static void cfg_wr(unsigned off, unsigned len, uint32_t v)
{
	pci_host_config_write(&host, 0, (unsigned)slot, 0, off, len, v);
}

static uint32_t mmio_rd32(uint64_t addr)
{
	uint32_t v = 0;

	ck_assert(pci_host_mmio_read(&host, addr, &v, 4));
	return v;
}

static void mmio_wr32(uint64_t addr, uint32_t v)
{
	ck_assert(pci_host_mmio_write(&host, addr, &v, 4));
}

static bool mmio_hits(uint64_t addr)
{
	uint32_t v;

	return pci_host_mmio_read(&host, addr, &v, 4);
}

static uint64_t bar_base(unsigned bar)
{
	uint64_t a = cfg_rd(PCI_BASE_ADDRESS_0 + 4 * bar, 4) & ~0xfULL;

	if (bar == 2)
		a |= (uint64_t)cfg_rd(PCI_BASE_ADDRESS_0 + 12, 4) << 32;
	return a;
}

static void enable_mem(void)
{
	cfg_wr(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

/* ---- Config space ---- */

START_TEST(test_header_ids)
{
	ck_assert_uint_eq(cfg_rd(PCI_VENDOR_ID, 4), 0x56781234);
	ck_assert_uint_eq(cfg_rd(PCI_REVISION_ID, 4), 0x0c033042);
	ck_assert_uint_eq(cfg_rd(PCI_SUBSYSTEM_VENDOR_ID, 4), 0xef01abcd);
	ck_assert_uint_eq(cfg_rd(PCI_HEADER_TYPE, 1), 0);
	ck_assert_uint_eq(cfg_rd(PCI_INTERRUPT_PIN, 1), 1);
	ck_assert_uint_eq(cfg_rd(PCI_INTERRUPT_LINE, 1), pci_slot_gsi(1, 1));
	ck_assert_uint_eq(pci_slot_gsi(1, 1), 17);
	ck_assert_uint_eq(pci_slot_gsi(7, 2), 16);
	ck_assert_uint_eq(pci_slot_gsi(0, 4), 19);
	/* The host bridge at 00:00.0. */
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 0, 0, 0, 4),
			  PCI_HOST_DEVICE << 16 | PCI_HOST_VENDOR);
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 0, 0, PCI_REVISION_ID, 4) >> 16, 0x0600);
	/* Nothing else on the bus. */
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 2, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 1, 1, 0, 4), 0xffffffff);
	ck_assert_uint_eq(pci_host_config_read(&host, 1, 1, 0, 0, 4), 0xffffffff);
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 2, 0, 0, 2), 0xffff);
}
END_TEST

START_TEST(test_readonly_bits)
{
	uint8_t before[PCI_CFG_SPACE_SIZE];

	for (unsigned off = 0; off < PCI_CFG_SPACE_SIZE; off++)
		before[off] = (uint8_t)cfg_rd(off, 1);
	/* All ones everywhere except the BARs (sizing is tested apart). */
	for (unsigned off = 0; off < PCI_CFG_SPACE_SIZE; off += 4)
		if (off < PCI_BASE_ADDRESS_0 || off >= PCI_BASE_ADDRESS_END)
			cfg_wr(off, 4, 0xffffffff);
	for (unsigned off = 0; off < PCI_CFG_SPACE_SIZE; off++) {
		uint8_t now = (uint8_t)cfg_rd(off, 1);

		switch (off) {
		case PCI_COMMAND:
			ck_assert_uint_eq(now, (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
						PCI_COMMAND_PARITY) & 0xff);
			break;
		case PCI_COMMAND + 1:
			ck_assert_uint_eq(now, (PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE) >> 8);
			break;
		case PCI_CACHE_LINE_SIZE:
		case PCI_LATENCY_TIMER:
		case PCI_INTERRUPT_LINE:
			ck_assert_uint_eq(now, 0xff);
			break;
		default:
			if (off >= PCI_BASE_ADDRESS_0 && off < PCI_BASE_ADDRESS_END)
				break;
			if (off == (unsigned)mcap + PCI_MSIX_FLAGS + 1) {
				ck_assert_uint_eq(now, 0xc0);	/* enable + function mask */
				break;
			}
			if (off == (unsigned)vcap + 4 || off == (unsigned)vcap + 6) {
				ck_assert_uint_eq(now, 0xff);
				break;
			}
			ck_assert_msg(now == before[off], "byte 0x%02x changed: 0x%02x -> 0x%02x",
				      off, before[off], now);
		}
	}
	/* Sub-dword writes obey the same masks. */
	cfg_wr(PCI_VENDOR_ID, 2, 0);
	cfg_wr(PCI_DEVICE_ID + 1, 1, 0);
	ck_assert_uint_eq(cfg_rd(PCI_VENDOR_ID, 4), 0x56781234);
	cfg_wr(PCI_CAPABILITY_LIST, 1, 0);
	ck_assert_uint_eq(cfg_rd(PCI_CAPABILITY_LIST, 1), (unsigned)mcap);
}
END_TEST

START_TEST(test_status_w1c)
{
	/* Pretend the device signalled errors. */
	td->pci.cfg[PCI_STATUS + 1] = 0xf9;
	ck_assert_uint_eq(cfg_rd(PCI_STATUS, 2), 0xf900 | PCI_STATUS_CAP_LIST);
	/* Writing zeros (e.g. a command write as a dword) clears nothing. */
	cfg_wr(PCI_COMMAND, 4, PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(cfg_rd(PCI_STATUS, 2), 0xf900 | PCI_STATUS_CAP_LIST);
	/* Ones clear exactly those error bits; CAP_LIST is read-only. */
	cfg_wr(PCI_STATUS, 2, 0x0810 | 0x0001);
	ck_assert_uint_eq(cfg_rd(PCI_STATUS, 2), 0xf100 | PCI_STATUS_CAP_LIST);
	cfg_wr(PCI_STATUS + 1, 1, 0xff);
	ck_assert_uint_eq(cfg_rd(PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	ck_assert_uint_eq(cfg_rd(PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
}
END_TEST

START_TEST(test_bar_sizing)
{
	uint64_t b0 = bar_base(0), b2 = bar_base(2), b4 = bar_base(4);

	/* Pre-assigned, naturally aligned, inside the 32-bit window. */
	ck_assert(b0 >= W32_BASE && b0 + 0x1000 <= W32_BASE + W32_SIZE && b0 % 0x1000 == 0);
	ck_assert(b2 >= W32_BASE && b2 + 0x4000 <= W32_BASE + W32_SIZE && b2 % 0x4000 == 0);
	ck_assert(b4 >= W32_BASE && b4 + 0x1000 <= W32_BASE + W32_SIZE && b4 % 0x1000 == 0);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0 + 8, 4) & 0xf, 0xc);	/* 64-bit, prefetch */
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0, 4) & 0xf, 0);

	/* 32-bit BAR: all ones reads back the size mask with the type bits. */
	cfg_wr(PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0, 4), 0xfffff000);
	cfg_wr(PCI_BASE_ADDRESS_0, 4, (uint32_t)b0);
	ck_assert_uint_eq(bar_base(0), b0);

	/* 64-bit BAR: both halves. */
	cfg_wr(PCI_BASE_ADDRESS_0 + 8, 4, 0xffffffff);
	cfg_wr(PCI_BASE_ADDRESS_0 + 12, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0 + 8, 4), 0xffffc00c);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0 + 12, 4), 0xffffffff);
	cfg_wr(PCI_BASE_ADDRESS_0 + 8, 4, (uint32_t)b2);
	cfg_wr(PCI_BASE_ADDRESS_0 + 12, 4, 0);
	ck_assert_uint_eq(bar_base(2), b2);

	/* Unimplemented BARs and the ROM BAR stay 0. */
	cfg_wr(PCI_BASE_ADDRESS_0 + 4, 4, 0xffffffff);
	cfg_wr(PCI_BASE_ADDRESS_0 + 20, 4, 0xffffffff);
	cfg_wr(PCI_ROM_ADDRESS, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0 + 4, 4), 0);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0 + 20, 4), 0);
	ck_assert_uint_eq(cfg_rd(PCI_ROM_ADDRESS, 4), 0);

	/* Byte-wide writes to a BAR obey the mask too. */
	cfg_wr(PCI_BASE_ADDRESS_0, 1, 0xff);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0, 4), (uint32_t)b0);
}
END_TEST

START_TEST(test_bar_add_errors)
{
	struct pci_device d;

	pci_device_init(&d, "x", NULL, NULL, 1, 2, 0, 0, 0, 0);
	ck_assert_int_eq(pci_device_add_bar(&d, 6, 0x1000, 0), -EINVAL);
	ck_assert_int_eq(pci_device_add_bar(&d, 5, 0x1000, PCI_BARF_64), -EINVAL);
	ck_assert_int_eq(pci_device_add_bar(&d, 0, 0x1800, 0), -EINVAL);
	ck_assert_int_eq(pci_device_add_bar(&d, 0, 8, 0), -EINVAL);
	ck_assert_int_eq(pci_device_add_bar(&d, 0, 0x1000, PCI_BARF_64), 0);
	ck_assert_int_eq(pci_device_add_bar(&d, 1, 0x1000, 0), -EBUSY);
	ck_assert_int_eq(pci_device_add_bar(&d, 0, 0x1000, 0), -EBUSY);
	/* MSI-X must fit its BARs. */
	ck_assert_int_eq(pci_device_add_msix(&d, 300, 0, 0, 0, 0x800), -EINVAL);
	ck_assert_int_eq(pci_device_add_msix(&d, 4, 0, 0, 0, 0x20), -EINVAL);	/* overlap */
	ck_assert_int_eq(pci_device_add_msix(&d, 4, 3, 0, 0, 0x800), -EINVAL);
	ck_assert_int_ge(pci_device_add_msix(&d, 4, 0, 0, 0, 0x800), PCI_CAP_START);
	pci_device_release(&d);
}
END_TEST

START_TEST(test_bar_decoding)
{
	uint64_t b0 = bar_base(0), b2 = bar_base(2), nb;

	/* Decoding off at power-on. */
	ck_assert(!mmio_hits(b0));
	ck_assert_uint_eq(td->maps, 0);
	enable_mem();
	ck_assert_uint_eq(td->maps, 3);
	mmio_wr32(b0 + 0x10, 0xdeadbeef);
	ck_assert_uint_eq(mmio_rd32(b0 + 0x10), 0xdeadbeef);
	ck_assert_uint_eq(td->ram[0][0x10], 0xef);		/* handler saw the offset */
	mmio_wr32(b2 + 0x3ffc, 0x12345678);
	ck_assert_uint_eq(td->ram[1][0x3ffc], 0x78);
	ck_assert(!mmio_hits(b0 + 0x1000) || b0 + 0x1000 == b2 || b0 + 0x1000 == bar_base(4));

	/* Move BAR0 to a free spot in the window. */
	nb = W32_BASE + 0x800000;
	cfg_wr(PCI_BASE_ADDRESS_0, 4, (uint32_t)nb);
	ck_assert_uint_eq(td->unmaps, 1);
	ck_assert_uint_eq(td->last_map, nb);
	ck_assert(!mmio_hits(b0 + 0x10));
	ck_assert_uint_eq(mmio_rd32(nb + 0x10), 0xdeadbeef);

	/* Onto another BAR: it cannot decode there until that moves away. */
	cfg_wr(PCI_BASE_ADDRESS_0, 4, (uint32_t)b2);
	ck_assert_uint_eq(mmio_rd32(b2 + 0x10), 0);		/* still BAR2's RAM */
	cfg_wr(PCI_BASE_ADDRESS_0 + 8, 4, (uint32_t)(W32_BASE + 0x900000));
	ck_assert_uint_eq(mmio_rd32(b2 + 0x10), 0xdeadbeef);	/* BAR0 took over */
	ck_assert_uint_eq(td->ram[1][0x3ffc], 0x78);
	ck_assert_uint_eq(mmio_rd32(W32_BASE + 0x900000 + 0x3ffc), 0x12345678);

	/* 64-bit BAR into the 64-bit window; then outside every window. */
	cfg_wr(PCI_BASE_ADDRESS_0 + 8, 4, (uint32_t)W64_BASE);
	cfg_wr(PCI_BASE_ADDRESS_0 + 12, 4, (uint32_t)(W64_BASE >> 32));
	ck_assert_uint_eq(mmio_rd32(W64_BASE + 0x3ffc), 0x12345678);
	cfg_wr(PCI_BASE_ADDRESS_0 + 12, 4, 0x10);
	ck_assert(!mmio_hits(W64_BASE + 0x3ffc));
	ck_assert(!mmio_hits(0x1000000000ULL + (W64_BASE & 0xffffffff)));

	/* Decoding off unmaps everything; back on maps again. */
	cfg_wr(PCI_COMMAND, 2, 0);
	ck_assert(!mmio_hits(b2 + 0x10));
	ck_assert(!mmio_hits(bar_base(4)));
	enable_mem();
	ck_assert_uint_eq(mmio_rd32(b2 + 0x10), 0xdeadbeef);

	/* Reset: back to the pre-assigned places, not decoding. */
	pci_device_reset(&td->pci);
	ck_assert_uint_eq(bar_base(0), b0);
	ck_assert_uint_eq(bar_base(2), b2);
	ck_assert_uint_eq(cfg_rd(PCI_COMMAND, 2), 0);
	ck_assert(!mmio_hits(b2 + 0x10));
}
END_TEST

START_TEST(test_cap_walk)
{
	uint8_t ids[8];
	unsigned n = 0, p;

	ck_assert(cfg_rd(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	p = cfg_rd(PCI_CAPABILITY_LIST, 1);
	while (p && n < 8) {
		ck_assert_uint_ge(p, PCI_CAP_START);
		ck_assert_uint_eq(p % 4, 0);
		ids[n++] = (uint8_t)cfg_rd(p, 1);
		p = cfg_rd(p + 1, 1);
	}
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(ids[0], PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(ids[1], PCI_CAP_ID_VNDR);
	/* The MSI-X capability describes the table and PBA. */
	ck_assert_uint_eq(cfg_rd(mcap + PCI_MSIX_FLAGS, 2), NVEC - 1);
	ck_assert_uint_eq(cfg_rd(mcap + PCI_MSIX_TABLE, 4), 4);
	ck_assert_uint_eq(cfg_rd(mcap + PCI_MSIX_PBA, 4), 0x800 | 4);
	/* IDs and next pointers are read-only. */
	cfg_wr(mcap, 2, 0);
	ck_assert_uint_eq(cfg_rd(mcap, 1), PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(cfg_rd(mcap + 1, 1), (unsigned)vcap);
	/* A device without capabilities has no list. */
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 0, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
}
END_TEST

START_TEST(test_cap_space)
{
	struct pci_device d;
	int n = 0;

	pci_device_init(&d, "x", NULL, NULL, 1, 2, 0, 0, 0, 0);
	ck_assert_int_eq(pci_device_add_cap(&d, 9, 1), -ENOSPC);
	while (pci_device_add_cap(&d, 9, 20) > 0)
		n++;
	ck_assert_int_eq(n, (PCI_CFG_SPACE_SIZE - PCI_CAP_START) / 20);
	pci_device_release(&d);
}
END_TEST

/* ---- CF8/CFC and ECAM ---- */

static void pio_wr(unsigned port, unsigned len, uint32_t v)
{
	pci_host_pio_write(&host, port - PCI_CONFIG_PORT, &v, len);
}

static uint32_t pio_rd(unsigned port, unsigned len)
{
	uint32_t v = 0;

	pci_host_pio_read(&host, port - PCI_CONFIG_PORT, &v, len);
	return v;
}

static uint32_t cf8(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | reg;
}

START_TEST(test_cf8_decoding)
{
	pio_wr(0xcf8, 4, cf8(0, 1, 0, 0));
	ck_assert_uint_eq(pio_rd(0xcf8, 4), cf8(0, 1, 0, 0));
	ck_assert_uint_eq(pio_rd(0xcfc, 4), 0x56781234);
	ck_assert_uint_eq(pio_rd(0xcfc, 2), 0x1234);
	ck_assert_uint_eq(pio_rd(0xcfe, 2), 0x5678);
	ck_assert_uint_eq(pio_rd(0xcfd, 1), 0x12);
	ck_assert_uint_eq(pio_rd(0xcff, 1), 0x56);
	ck_assert_uint_eq(pio_rd(0xcfd, 2), 0xffff);	/* unaligned word */
	/* Register 0x08 by dword and the class byte by offset. */
	pio_wr(0xcf8, 4, cf8(0, 1, 0, 0x08));
	ck_assert_uint_eq(pio_rd(0xcfc, 4), 0x0c033042);
	ck_assert_uint_eq(pio_rd(0xcff, 1), 0x0c);
	/* A word write at 0xCFC+2 lands at register + 2. */
	pio_wr(0xcf8, 4, cf8(0, 1, 0, 0x04));
	pio_wr(0xcfc, 2, PCI_COMMAND_MEMORY);
	pio_wr(0xcfe, 2, 0);
	ck_assert_uint_eq(cfg_rd(PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
	pio_wr(0xcf8, 4, cf8(0, 1, 0, 0x3c));
	pio_wr(0xcfc, 1, 0x0b);
	ck_assert_uint_eq(cfg_rd(PCI_INTERRUPT_LINE, 1), 0x0b);
	pio_wr(0xcfd, 1, 0x03);				/* interrupt pin: read-only */
	ck_assert_uint_eq(cfg_rd(PCI_INTERRUPT_PIN, 1), 1);

	/* Reserved bits of CONFIG_ADDRESS read as 0. */
	pio_wr(0xcf8, 4, 0xff000003 | cf8(0, 1, 0, 0));
	ck_assert_uint_eq(pio_rd(0xcf8, 4), cf8(0, 1, 0, 0));
	/* Byte/word accesses to 0xCF8 do not touch the latch. */
	pio_wr(0xcf8, 2, 0);
	pio_wr(0xcfa, 2, 0);
	pio_wr(0xcf8, 1, 0);
	ck_assert_uint_eq(pio_rd(0xcf8, 4), cf8(0, 1, 0, 0));

	/* Enable bit clear: no config cycle. */
	pio_wr(0xcf8, 4, cf8(0, 1, 0, 0x3c) & ~0x80000000u);
	ck_assert_uint_eq(pio_rd(0xcfc, 4), 0xffffffff);
	pio_wr(0xcfc, 1, 0x05);
	ck_assert_uint_eq(cfg_rd(PCI_INTERRUPT_LINE, 1), 0x0b);

	/* Absent device, function, bus. */
	pio_wr(0xcf8, 4, cf8(0, 9, 0, 0));
	ck_assert_uint_eq(pio_rd(0xcfc, 4), 0xffffffff);
	pio_wr(0xcf8, 4, cf8(0, 1, 3, 0));
	ck_assert_uint_eq(pio_rd(0xcfc, 2), 0xffff);
	pio_wr(0xcf8, 4, cf8(2, 1, 0, 0));
	ck_assert_uint_eq(pio_rd(0xcfc, 1), 0xff);

	/* 0xCF9: RST_CPU going 0 -> 1 asks for a reset, once. */
	ck_assert_uint_eq(resets, 0);
	pio_wr(0xcf9, 1, 0x02);
	ck_assert_uint_eq(pio_rd(0xcf9, 1), 0x02);
	ck_assert_uint_eq(resets, 0);
	pio_wr(0xcf9, 1, 0x06);
	ck_assert_uint_eq(resets, 1);
	pio_wr(0xcf9, 1, 0x06);
	ck_assert_uint_eq(resets, 1);
	ck_assert_uint_eq(pio_rd(0xcf8, 4), cf8(2, 1, 0, 0));
	pci_host_reset(&host);
	ck_assert_uint_eq(pio_rd(0xcf8, 4), 0);
}
END_TEST

static uint32_t ecam_rd(uint64_t off, unsigned len)
{
	uint32_t v = 0;

	pci_host_ecam_read(&host, off, &v, len);
	return v;
}

static void ecam_wr(uint64_t off, unsigned len, uint32_t v)
{
	pci_host_ecam_write(&host, off, &v, len);
}

static uint64_t ecam(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return (uint64_t)bus << 20 | dev << 15 | fn << 12 | reg;
}

START_TEST(test_ecam_decoding)
{
	uint64_t v64 = 0;

	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 0, 0), 4), 0x56781234);
	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 0, 2), 2), 0x5678);
	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 0, 0x0b), 1), 0x0c);
	ck_assert_uint_eq(ecam_rd(ecam(0, 0, 0, 0), 2), PCI_HOST_VENDOR);
	ck_assert_uint_eq(ecam_rd(ecam(0, 2, 0, 0), 4), 0xffffffff);
	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 1, 0), 4), 0xffffffff);
	ck_assert_uint_eq(ecam_rd(ecam(255, 1, 0, 0), 4), 0xffffffff);
	/* Extended config space of a conventional function: zeros. */
	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 0, 0x100), 4), 0);
	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 0, 0xffc), 4), 0);
	/* Misaligned and 8-byte accesses are not config cycles. */
	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 0, 1), 4), 0xffffffff);
	ck_assert_uint_eq(ecam_rd(ecam(0, 1, 0, 3), 2), 0xffff);
	pci_host_ecam_read(&host, ecam(0, 1, 0, 0), &v64, 8);
	ck_assert_uint_eq(v64, ~0ULL);
	ecam_wr(ecam(0, 1, 0, 0x3d), 2, 0x0505);	/* misaligned: dropped */
	ecam_wr(ecam(0, 1, 0, 0x3c), 1, 0x0a);
	ck_assert_uint_eq(cfg_rd(PCI_INTERRUPT_LINE, 2), 0x010a);
	/* An ECAM write that moves a BAR takes effect; made through the MMIO
	 * bus the BAR lives on, it re-enters that bus without deadlock. */
	ecam_wr(ecam(0, 1, 0, PCI_COMMAND), 2, PCI_COMMAND_MEMORY);
	ecam_wr(ecam(0, 1, 0, PCI_BASE_ADDRESS_0), 4, (uint32_t)(W32_BASE + 0x700000));
	ck_assert(mmio_hits(W32_BASE + 0x700000));
	{
		uint32_t nb = (uint32_t)(W32_BASE + 0x600000), v = 0;

		ck_assert(bus_write(&mmio_bus, PCI_ECAM_BASE + ecam(0, 1, 0, PCI_BASE_ADDRESS_0),
				    &nb, 4));
		ck_assert(bus_read(&mmio_bus, PCI_ECAM_BASE + ecam(0, 1, 0, PCI_BASE_ADDRESS_0),
				   &v, 4));
		ck_assert_uint_eq(v, nb);
		ck_assert(mmio_hits(nb));
		ck_assert(!mmio_hits(W32_BASE + 0x700000));
		/* The BAR is a range of its own on the machine's bus. */
		ck_assert(bus_write(&mmio_bus, nb + 0x20, &nb, 4));
		ck_assert_uint_eq(td->ram[0][0x20], (uint8_t)nb);
	}
}
END_TEST

/* ---- MSI-X ---- */

static uint64_t table(void)
{
	return bar_base(4);
}

static void msix_entry(unsigned v, uint64_t addr, uint32_t data, bool masked)
{
	uint64_t e = table() + v * PCI_MSIX_ENTRY_SIZE;

	mmio_wr32(e + PCI_MSIX_ENTRY_ADDR_LO, (uint32_t)addr);
	mmio_wr32(e + PCI_MSIX_ENTRY_ADDR_HI, (uint32_t)(addr >> 32));
	mmio_wr32(e + PCI_MSIX_ENTRY_DATA, data);
	mmio_wr32(e + PCI_MSIX_ENTRY_CTRL, masked);
}

static void msix_ctrl(bool enable, bool fmask)
{
	cfg_wr(mcap + PCI_MSIX_FLAGS, 2, (enable ? PCI_MSIX_FLAGS_ENABLE : 0) |
					 (fmask ? PCI_MSIX_FLAGS_MASKALL : 0));
}

static uint32_t pba(void)
{
	return mmio_rd32(table() + 0x800);
}

START_TEST(test_msix_table)
{
	uint64_t e;

	enable_mem();
	e = table();
	/* Power-on: every vector masked, everything else zero. */
	for (unsigned v = 0; v < NVEC; v++) {
		ck_assert_uint_eq(mmio_rd32(e + v * 16 + PCI_MSIX_ENTRY_CTRL), 1);
		ck_assert_uint_eq(mmio_rd32(e + v * 16 + PCI_MSIX_ENTRY_DATA), 0);
	}
	/* Read-only bits: address bits 1:0, vector control above bit 0. */
	mmio_wr32(e + PCI_MSIX_ENTRY_ADDR_LO, 0xfee00003);
	mmio_wr32(e + PCI_MSIX_ENTRY_CTRL, 0xffffffff);
	ck_assert_uint_eq(mmio_rd32(e + PCI_MSIX_ENTRY_ADDR_LO), 0xfee00000);
	ck_assert_uint_eq(mmio_rd32(e + PCI_MSIX_ENTRY_CTRL), 1);
	/* A 64-bit write covers address low and high. */
	{
		uint64_t a = 0x00000001fee01000ULL, r = 0;

		ck_assert(pci_host_mmio_write(&host, e + 16, &a, 8));
		ck_assert(pci_host_mmio_read(&host, e + 16, &r, 8));
		ck_assert_uint_eq(r, a);
	}
	/* The PBA is read-only; past the table and PBA the device's handler
	 * runs (zeros here). */
	mmio_wr32(e + 0x800, 0xffffffff);
	ck_assert_uint_eq(pba(), 0);
	ck_assert_uint_eq(mmio_rd32(e + 0x400), 0);
	/* Nothing was routed or fired: MSI-X is disabled. */
	ck_assert_uint_eq(count('r') + count('f'), 0);
}
END_TEST

START_TEST(test_msix_mask_pending)
{
	const struct irq_event *f;

	enable_mem();
	ck_assert_int_eq(pci_msix_notify(&td->pci, 0), -ENODEV);	/* disabled */
	ck_assert_int_eq(pci_msix_notify(&td->pci, NVEC), -EINVAL);
	msix_ctrl(true, false);
	ck_assert(pci_msix_enabled(&td->pci));

	/* Masked vector: pending, no message. */
	msix_entry(1, 0xfee00000, 0x41, true);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 1), 0);
	ck_assert_uint_eq(count('f'), 0);
	ck_assert_uint_eq(count('r'), 0);
	ck_assert_uint_eq(pba(), 1u << 1);
	ck_assert(pci_msix_pending(&td->pci, 1));
	/* Unmask: routed, delivered once, pending cleared. */
	mmio_wr32(table() + 16 + PCI_MSIX_ENTRY_CTRL, 0);
	ck_assert_uint_eq(count('r'), 1);
	ck_assert_uint_eq(count('f'), 1);
	f = last('f');
	ck_assert_uint_eq(f->vec, 1);
	ck_assert_uint_eq(f->addr, 0xfee00000);
	ck_assert_uint_eq(f->data, 0x41);
	ck_assert_uint_eq(pba(), 0);
	/* Unmasked: straight through, no re-route for an unchanged message. */
	ck_assert_int_eq(pci_msix_notify(&td->pci, 1), 0);
	ck_assert_uint_eq(count('f'), 2);
	ck_assert_uint_eq(count('r'), 1);

	/* Function mask: pending while set, delivered when cleared. */
	msix_ctrl(true, true);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 1), 0);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 1), 0);
	ck_assert_uint_eq(count('f'), 2);
	ck_assert_uint_eq(pba(), 1u << 1);
	msix_ctrl(true, false);
	ck_assert_uint_eq(count('f'), 3);
	ck_assert_uint_eq(pba(), 0);

	/* Re-programming a masked vector routes nothing until it is unmasked;
	 * a still-masked vector with a pending bit keeps it. */
	mmio_wr32(table() + 16 + PCI_MSIX_ENTRY_CTRL, 1);
	msix_entry(1, 0xfee01000, 0x42, true);
	msix_entry(2, 0xfee00000, 0x43, true);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 2), 0);
	ck_assert_uint_eq(count('r'), 1);
	mmio_wr32(table() + 16 + PCI_MSIX_ENTRY_CTRL, 0);
	ck_assert_uint_eq(count('r'), 2);
	ck_assert_uint_eq(last('r')->addr, 0xfee01000);
	ck_assert_uint_eq(count('f'), 3);	/* vector 1 had nothing pending */
	ck_assert_uint_eq(pba(), 1u << 2);

	/* Writing the message of an unmasked vector re-routes it. */
	mmio_wr32(table() + 16 + PCI_MSIX_ENTRY_DATA, 0x44);
	ck_assert_uint_eq(count('r'), 3);
	ck_assert_uint_eq(last('r')->data, 0x44);

	/* Disabling MSI-X keeps the pending bit; enabling again with the
	 * vector unmasked delivers it. */
	msix_ctrl(false, false);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 2), -ENODEV);
	mmio_wr32(table() + 32 + PCI_MSIX_ENTRY_CTRL, 0);
	ck_assert_uint_eq(count('f'), 3);
	msix_ctrl(true, false);
	ck_assert_uint_eq(count('f'), 4);
	ck_assert_uint_eq(last('f')->vec, 2);
	ck_assert_uint_eq(pba(), 0);

	/* Reset: disabled, all masked, nothing pending. */
	pci_device_reset(&td->pci);
	ck_assert(!pci_msix_enabled(&td->pci));
	ck_assert_uint_eq(cfg_rd(mcap + PCI_MSIX_FLAGS, 2), NVEC - 1);
}
END_TEST

START_TEST(test_intx)
{
	ck_assert(!pci_intx_effective(&td->pci));
	pci_set_irq(&td->pci, true);
	ck_assert_uint_eq(count('i'), 1);
	ck_assert(last('i')->level);
	ck_assert(cfg_rd(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* Raising again changes nothing on the line. */
	pci_set_irq(&td->pci, true);
	ck_assert_uint_eq(count('i'), 1);
	/* INTx disable drops the line; the status bit still shows the request. */
	cfg_wr(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
	ck_assert_uint_eq(count('i'), 2);
	ck_assert(!last('i')->level);
	ck_assert(cfg_rd(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_wr(PCI_COMMAND, 2, 0);
	ck_assert(last('i')->level);
	/* MSI-X enabled: INTx is off. */
	msix_ctrl(true, false);
	ck_assert(!last('i')->level);
	ck_assert(!pci_intx_effective(&td->pci));
	msix_ctrl(false, false);
	ck_assert(last('i')->level);
	pci_set_irq(&td->pci, false);
	ck_assert(!last('i')->level);
	ck_assert(!(cfg_rd(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	/* The status INTx bit is read-only. */
	cfg_wr(PCI_STATUS, 2, PCI_STATUS_INTERRUPT);
	ck_assert(!(cfg_rd(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
}
END_TEST

START_TEST(test_slots)
{
	struct pci_device d[PCI_NR_SLOTS];
	int n = 0, s;

	/* Slots 2..31 are free; the 31st extra device does not fit. */
	for (unsigned i = 0; i < PCI_NR_SLOTS; i++) {
		pci_device_init(&d[i], "s", NULL, NULL, 1, 2, 0, 0, 0, 0);
		s = pci_register_device(&host, &d[i]);
		if (s < 0) {
			ck_assert_int_eq(s, -ENOSPC);
			pci_device_release(&d[i]);
			break;
		}
		ck_assert_int_eq(s, 2 + n);
		n++;
	}
	ck_assert_int_eq(n, PCI_NR_SLOTS - 2);
	pci_unregister_device(&d[3]);
	ck_assert_ptr_null(pci_host_device(&host, 5));
	ck_assert_int_eq(pci_register_device(&host, &d[3]), 5);
	for (int i = 0; i < n; i++) {
		pci_unregister_device(&d[i]);
		pci_device_release(&d[i]);
	}
}
END_TEST

/* ---- GSI routing ---- */

START_TEST(test_routing_table)
{
	static struct kvm_irq_routing_entry e[IRQ_MAX_ROUTES];
	struct irq_routing r;
	unsigned n, pic = 0, ioapic = 0;
	int g1, g2;

	ck_assert_int_eq(irq_routing_init(&r, NULL), 0);
	/* The initial table differs from KVM's built-in one and must be committed. */
	ck_assert(irq_routing_is_dirty(&r));
	ck_assert_int_eq(irq_routing_commit(&r), 0);
	ck_assert(!irq_routing_is_dirty(&r));
	n = irq_routing_build(&r, e, IRQ_MAX_ROUTES);
	ck_assert_uint_eq(n, IRQ_NR_LEGACY_ROUTES);
	for (unsigned i = 0; i < n; i++) {
		ck_assert_uint_eq(e[i].type, KVM_IRQ_ROUTING_IRQCHIP);
		if (e[i].u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC) {
			/* ISA IRQ 0 goes to pin 2 (the MADT override); GSI 2 has no route. */
			ck_assert_uint_ne(e[i].gsi, 2);
			ck_assert_uint_eq(e[i].u.irqchip.pin, e[i].gsi == 0 ? 2 : e[i].gsi);
			ioapic++;
			continue;
		}
		ck_assert_uint_lt(e[i].gsi, 16);
		ck_assert_uint_ne(e[i].gsi, 2);
		ck_assert_uint_eq(e[i].u.irqchip.irqchip,
				  e[i].gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
		ck_assert_uint_eq(e[i].u.irqchip.pin, e[i].gsi % 8);
		pic++;
	}
	ck_assert_uint_eq(pic, 15);
	ck_assert_uint_eq(ioapic, 23);

	/* Allocation starts above the IOAPIC pins; freed GSIs come back. */
	g1 = irq_gsi_alloc(&r);
	g2 = irq_gsi_alloc(&r);
	ck_assert_int_eq(g1, 24);
	ck_assert_int_eq(g2, 25);
	ck_assert(!irq_routing_is_dirty(&r));
	ck_assert_int_eq(irq_routing_set_msi(&r, 3, 0xfee00000, 0x30), -EINVAL);
	ck_assert_int_eq(irq_routing_set_msi(&r, 26, 0xfee00000, 0x30), -EINVAL);

	/* Only changes dirty the table; a commit happens only when dirty. */
	ck_assert_int_eq(irq_routing_set_msi(&r, (unsigned)g1, 0xfee00000, 0x30), 1);
	ck_assert_int_eq(irq_routing_set_msi(&r, (unsigned)g2, 0xfee01000, 0x31), 1);
	ck_assert(irq_routing_is_dirty(&r));
	ck_assert_int_eq(irq_routing_commit(&r), 0);
	ck_assert_int_eq(irq_routing_commit(&r), 0);
	/* The initial commit plus one for both MSI routes. */
	ck_assert_uint_eq(irq_routing_commit_count(&r), 2);
	ck_assert_int_eq(irq_routing_set_msi(&r, (unsigned)g1, 0xfee00000, 0x30), 0);
	ck_assert(!irq_routing_is_dirty(&r));
	n = irq_routing_build(&r, e, IRQ_MAX_ROUTES);
	ck_assert_uint_eq(n, IRQ_NR_LEGACY_ROUTES + 2);
	ck_assert_uint_eq(e[n - 2].gsi, 24);
	ck_assert_uint_eq(e[n - 2].type, KVM_IRQ_ROUTING_MSI);
	ck_assert_uint_eq(e[n - 2].u.msi.address_lo, 0xfee00000);
	ck_assert_uint_eq(e[n - 2].u.msi.data, 0x30);
	ck_assert_uint_eq(e[n - 1].u.msi.address_lo, 0xfee01000);

	/* Freeing a routed GSI drops its route. */
	irq_gsi_free(&r, (unsigned)g1);
	ck_assert(irq_routing_is_dirty(&r));
	ck_assert_uint_eq(irq_routing_build(&r, e, IRQ_MAX_ROUTES), IRQ_NR_LEGACY_ROUTES + 1);
	ck_assert_int_eq(irq_gsi_alloc(&r), 24);
	ck_assert_int_eq(irq_routing_clear_msi(&r, (unsigned)g2), 1);
	ck_assert_int_eq(irq_routing_clear_msi(&r, (unsigned)g2), 0);
	irq_routing_destroy(&r);
	irq_routing_destroy(&r);
}
END_TEST

START_TEST(test_routing_exhaustion)
{
	struct irq_routing r;
	int g, n = 0;

	ck_assert_int_eq(irq_routing_init(&r, NULL), 0);
	while ((g = irq_gsi_alloc(&r)) >= 0)
		n++;
	ck_assert_int_eq(g, -ENOSPC);
	ck_assert_int_eq(n, IRQ_MAX_GSI - IRQ_NR_LEGACY_GSI);
	irq_routing_destroy(&r);
}
END_TEST

/* ---- The machine's host bridge on a fake device context ---- */

static struct guest_mem pgm;
static uint8_t *pram;
static struct bus ppio;
static struct irqchip pchip;
static struct device_ctx pctx;
static void *pstate;
static const struct device_desc *pdesc;
static bool registered;

static void plumb_setup(void)
{
	nevents = resets = nirqfds = deassigns = 0;
	irqfd_ret = 0;
	memset(&pgm, 0, sizeof(pgm));
	pram = calloc(1, 1 << 20);
	ck_assert_ptr_nonnull(pram);
	ck_assert_int_eq(gm_add_region(&pgm, 0, 1 << 20, pram), 0);
	ck_assert_int_eq(bus_init(&ppio, "pio"), 0);
	ck_assert_int_eq(bus_init(&mmio_bus, "mmio"), 0);
	memset(&pchip, 0, sizeof(pchip));
	ck_assert_int_eq(irq_routing_init(&pchip.routing, NULL), 0);
	ck_assert_int_eq(irq_routing_commit(&pchip.routing), 0);	/* as irqchip_create */
	pctx = (struct device_ctx){ .mem = &pgm, .pio_bus = &ppio, .mmio_bus = &mmio_bus,
				    .irqchip = &pchip, .ops = &fake_ops };
	pdesc = device_find(PCI_HOST_DEVICE_NAME);
	ck_assert_ptr_nonnull(pdesc);
}

static void plumb_register(void)
{
	ck_assert_int_eq(pdesc->realize(pdesc, &pctx, &pstate), 0);
	ck_assert_ptr_nonnull(pctx.pci);
	ck_assert_ptr_eq(pctx.pci, pstate);	/* the state is the host */
	tdev_new();
	slot = pci_register_device(pctx.pci, &td->pci);
	ck_assert_int_eq(slot, 1);
	registered = true;
}

static void plumb_setup_registered(void)
{
	plumb_setup();
	plumb_register();
}

static void plumb_teardown(void)
{
	if (registered)
		pci_unregister_device(&td->pci);
	registered = false;
	if (td) {
		pci_device_release(&td->pci);
		free(td);
		td = NULL;
	}
	if (pstate)
		pdesc->destroy(pstate);
	pstate = NULL;
	irq_routing_destroy(&pchip.routing);
	bus_destroy(&ppio);
	bus_destroy(&mmio_bus);
	free(pram);
}

static uint32_t pcfg_rd(unsigned reg, unsigned len)
{
	uint32_t v = 0;

	ck_assert(bus_read(&mmio_bus, PCI_ECAM_BASE + ecam(0, (unsigned)slot, 0, reg), &v, len));
	return v;
}

static void pcfg_wr(unsigned reg, unsigned len, uint32_t v)
{
	ck_assert(bus_write(&mmio_bus, PCI_ECAM_BASE + ecam(0, (unsigned)slot, 0, reg), &v, len));
}

static uint64_t ptable(void)
{
	return pcfg_rd(PCI_BASE_ADDRESS_0 + 16, 4) & ~0xfULL;
}

static void pwr32(uint64_t addr, uint32_t v)
{
	ck_assert(bus_write(&mmio_bus, addr, &v, 4));
}

static void pentry(unsigned v, uint32_t data, bool masked)
{
	uint64_t e = ptable() + v * PCI_MSIX_ENTRY_SIZE;

	pwr32(e + PCI_MSIX_ENTRY_ADDR_LO, 0xfee00000);
	pwr32(e + PCI_MSIX_ENTRY_ADDR_HI, 0);
	pwr32(e + PCI_MSIX_ENTRY_DATA, data);
	pwr32(e + PCI_MSIX_ENTRY_CTRL, masked);
}

static void pmask(unsigned v, bool masked)
{
	pwr32(ptable() + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_CTRL, masked);
}

static void pmsix_ctrl(bool enable, bool fmask)
{
	pcfg_wr(mcap + PCI_MSIX_FLAGS, 2, (enable ? PCI_MSIX_FLAGS_ENABLE : 0) |
					 (fmask ? PCI_MSIX_FLAGS_MASKALL : 0));
}

/* The eventfd's count since the last look (0: not signalled). */
static uint64_t signals(unsigned v)
{
	eventfd_t n = 0;
	int fd = pci_msix_vector_eventfd(&td->pci, v);

	ck_assert_int_ge(fd, 0);
	return eventfd_read(fd, &n) == 0 ? n : 0;
}

static const struct kvm_irq_routing_entry *msi_route_of(unsigned gsi)
{
	static struct kvm_irq_routing_entry e[IRQ_MAX_ROUTES];
	unsigned n = irq_routing_build(&pchip.routing, e, IRQ_MAX_ROUTES);

	for (unsigned i = 0; i < n; i++)
		if (e[i].gsi == gsi && e[i].type == KVM_IRQ_ROUTING_MSI)
			return &e[i];
	return NULL;
}

START_TEST(test_host_realize)
{
	uint32_t v;

	/* Ports 0xCF8-0xCFF on the context's PIO bus. */
	v = cf8(0, 1, 0, 0);
	ck_assert(bus_write(&ppio, 0xcf8, &v, 4));
	v = 0;
	ck_assert(bus_read(&ppio, 0xcfc, &v, 4));
	ck_assert_uint_eq(v, 0x56781234);
	/* 0xCF9 RST_CPU asks the machine for a reset. */
	v = 0x06;
	ck_assert(bus_write(&ppio, 0xcf9, &v, 1));
	ck_assert_uint_eq(resets, 1);
	/* An irqfd on a GSI of its own per vector (24 up); INTx has no event
	 * loop here, so it drives the irqchip line instead. */
	ck_assert_uint_eq(nirqfds, NVEC);
	for (unsigned i = 0; i < NVEC; i++) {
		const struct fake_irqfd *f = irqfd_of(pci_msix_vector_eventfd(&td->pci, i));

		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(f->gsi, 24 + i);
		ck_assert_int_eq(f->resample_fd, -1);
	}
	ck_assert_int_eq(pci_msix_vector_eventfd(&td->pci, NVEC), -1);
	pci_set_irq(&td->pci, true);	/* no KVM behind the irqchip: logged, no crash */
	pci_set_irq(&td->pci, false);
	/* Gone again: irqfds deassigned, the context forgets the host. */
	pci_unregister_device(&td->pci);
	registered = false;
	ck_assert_uint_eq(deassigns, NVEC);
	pdesc->destroy(pstate);
	pstate = NULL;
	ck_assert_ptr_null(pctx.pci);
}
END_TEST

START_TEST(test_host_msix_direct)
{
	uint64_t commits;
	const struct kvm_irq_routing_entry *r;

	pcfg_wr(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	for (unsigned v = 0; v < NVEC; v++)
		pentry(v, 0x50 + v, false);
	/* Nothing routed while MSI-X is off; enabling it routes all four
	 * vectors and commits once. */
	ck_assert_uint_eq(irq_routing_commit_count(&pchip.routing), 1);
	pmsix_ctrl(true, false);
	commits = irq_routing_commit_count(&pchip.routing);
	ck_assert_uint_eq(commits, 2);
	ck_assert(!irq_routing_is_dirty(&pchip.routing));
	for (unsigned v = 0; v < NVEC; v++) {
		r = msi_route_of(24 + v);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->u.msi.address_lo, 0xfee00000);
		ck_assert_uint_eq(r->u.msi.data, 0x50 + v);
	}
	/* Direct: each notify is one signal on the vector's eventfd. */
	for (unsigned v = 0; v < NVEC; v++) {
		ck_assert_int_eq(pci_msix_notify(&td->pci, v), 0);
		ck_assert_int_eq(pci_msix_notify(&td->pci, v), 0);
		ck_assert_uint_eq(signals(v), 2);
	}
	ck_assert_uint_eq(irq_routing_commit_count(&pchip.routing), commits);

	/* Masked: pending, no signal; unmasking delivers it, no new commit
	 * for an unchanged message. */
	pmask(2, true);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 2), 0);
	ck_assert_uint_eq(signals(2), 0);
	ck_assert(pci_msix_pending(&td->pci, 2));
	pmask(2, false);
	ck_assert_uint_eq(signals(2), 1);
	ck_assert(!pci_msix_pending(&td->pci, 2));
	ck_assert_uint_eq(irq_routing_commit_count(&pchip.routing), commits);

	/* A new message on an unmasked vector is routed and committed at once. */
	pwr32(ptable() + 3 * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_DATA, 0x77);
	ck_assert_uint_eq(irq_routing_commit_count(&pchip.routing), commits + 1);
	ck_assert_uint_eq(msi_route_of(27)->u.msi.data, 0x77);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 3), 0);
	ck_assert_uint_eq(signals(3), 1);

	/* Function mask: everything pending until it clears. */
	pmsix_ctrl(true, true);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 0), 0);
	ck_assert_uint_eq(signals(0), 0);
	pmsix_ctrl(true, false);
	ck_assert_uint_eq(signals(0), 1);

	/* Disabled: INTx territory. */
	pmsix_ctrl(false, false);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 0), -ENODEV);
	ck_assert_uint_eq(signals(0), 0);
	/* Reset: all masked; a later enable routes again. */
	pmsix_ctrl(true, false);
	ck_assert_uint_eq(signals(0), 0);
	pci_device_reset(&td->pci);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 1), -ENODEV);
	ck_assert_uint_eq(signals(1), 0);
}
END_TEST

START_TEST(test_host_msix_no_irqfd)
{
	/* Without irqfds (KVM lacks them) vectors have no eventfd and go
	 * through the locked path (KVM_SIGNAL_MSI; nothing here). */
	irqfd_ret = -ENOSYS;
	plumb_register();
	ck_assert_uint_eq(nirqfds, 0);
	ck_assert_int_eq(pci_msix_vector_eventfd(&td->pci, 0), -1);
	pcfg_wr(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	pentry(0, 0x41, false);
	pmsix_ctrl(true, false);
	ck_assert_int_eq(pci_msix_notify(&td->pci, 0), 0);
	ck_assert(!pci_msix_pending(&td->pci, 0));
}
END_TEST

static unsigned mask_calls;
static bool mask_state[NVEC];

static void on_mask(void *opaque, struct pci_device *d, unsigned vec, bool masked)
{
	ck_assert_ptr_eq(opaque, &mask_calls);
	ck_assert_ptr_eq(d, &td->pci);
	ck_assert_uint_lt(vec, NVEC);
	mask_calls++;
	mask_state[vec] = masked;
}

START_TEST(test_host_mask_notifier)
{
	mask_calls = 0;
	pci_msix_set_mask_notifier(&td->pci, on_mask, &mask_calls);
	ck_assert_uint_eq(mask_calls, NVEC);	/* the current state, at once */
	for (unsigned v = 0; v < NVEC; v++)
		ck_assert(mask_state[v]);
	pcfg_wr(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	pentry(1, 0x41, false);
	ck_assert_uint_eq(mask_calls, NVEC);	/* MSI-X still off */
	pmsix_ctrl(true, false);
	ck_assert_uint_eq(mask_calls, NVEC + 1);
	ck_assert(!mask_state[1]);
	pmask(1, true);
	ck_assert_uint_eq(mask_calls, NVEC + 2);
	ck_assert(mask_state[1]);
	pmask(1, false);
	ck_assert(!mask_state[1]);
	pmsix_ctrl(true, true);
	ck_assert(mask_state[1]);
	pmsix_ctrl(true, false);
	ck_assert(!mask_state[1]);
	ck_assert_uint_eq(mask_calls, NVEC + 5);
	/* Re-writing the same message changes nothing. */
	pentry(1, 0x41, false);
	ck_assert_uint_eq(mask_calls, NVEC + 5);
	pci_msix_set_mask_notifier(&td->pci, NULL, NULL);
	pmask(1, true);
	ck_assert_uint_eq(mask_calls, NVEC + 5);
}
END_TEST

static int stop_firing;
static unsigned long fired_total;

static void *firer(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop_firing, __ATOMIC_ACQUIRE)) {
		ck_assert_int_eq(pci_msix_notify(&td->pci, 1), 0);
		__atomic_fetch_add(&fired_total, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Masking is exact: once the guest's mask write has returned, no signal
 * reaches the vector's eventfd, however hard another thread fires; what
 * fired meanwhile is pending and delivered on unmask. */
START_TEST(test_host_mask_exact)
{
	pthread_t t;
	uint64_t delivered = 0;

	pcfg_wr(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	pentry(1, 0x41, false);
	pmsix_ctrl(true, false);
	stop_firing = 0;
	fired_total = 0;
	ck_assert_int_eq(pthread_create(&t, NULL, firer, NULL), 0);
	for (unsigned i = 0; i < 300; i++) {
		pmask(1, true);
		delivered += signals(1);
		for (unsigned k = 0; k < 20; k++) {
			sched_yield();
			ck_assert_uint_eq(signals(1), 0);
		}
		pmask(1, false);
		delivered += signals(1);
	}
	__atomic_store_n(&stop_firing, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	delivered += signals(1);
	ck_assert_uint_gt(fired_total, 0);
	ck_assert_uint_gt(delivered, 0);
	ck_assert_uint_le(delivered, fired_total);
}
END_TEST

/* ---- ACPI: MCFG, \_SB.PCI0, \_SB.MRES ---- */

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (!memcmp(hay + i, needle, m))
			return true;
	return false;
}

static void dump(const char *dir, const char *name, const uint8_t *t)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(t, 1, rd32(t + 4), f), rd32(t + 4));
	fclose(f);
}

START_TEST(test_acpi)
{
	struct acpi_build_ctx ctx = { .nr_cpus = 2, .pci = &host };
	const size_t cap = BOOT_ACPI_END - BOOT_ACPI_ADDR;
	const uint8_t *xsdt, *mcfg = NULL, *dsdt = NULL, *fadt = NULL;
	const char *dir = getenv("EMBER_ACPI_DUMP_DIR");
	/* Name(_HID, EisaId("PNP0A08")) and the ECAM Memory32Fixed. */
	static const uint8_t hid[] = { 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08 };
	static const uint8_t mres[] = { 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0,
					0x00, 0x00, 0x00, 0x10 };
	uint8_t *buf = calloc(1, cap);
	size_t used = 0;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(acpi_build_buf(buf, cap, BOOT_ACPI_ADDR, &ctx, &used), 0);
	xsdt = buf + (rd64(buf + 24) - BOOT_ACPI_ADDR);
	for (unsigned off = 36; off < rd32(xsdt + 4); off += 8) {
		const uint8_t *t = buf + (rd64(xsdt + off) - BOOT_ACPI_ADDR);

		ck_assert_uint_eq(acpi_checksum(t, rd32(t + 4)), 0);
		if (!memcmp(t, "MCFG", 4))
			mcfg = t;
		if (!memcmp(t, "FACP", 4))
			fadt = t;
	}
	ck_assert_ptr_nonnull(mcfg);
	ck_assert_ptr_nonnull(fadt);
	dsdt = buf + (rd32(fadt + 40) - BOOT_ACPI_ADDR);
	ck_assert_uint_eq(acpi_checksum(dsdt, rd32(dsdt + 4)), 0);

	ck_assert_uint_eq(rd32(mcfg + 4), 60);
	ck_assert_uint_eq(rd64(mcfg + 44), PCI_ECAM_BASE);
	ck_assert_uint_eq(mcfg[54], 0);		/* start bus */
	ck_assert_uint_eq(mcfg[55], 255);	/* end bus */

	ck_assert(contains(dsdt, rd32(dsdt + 4), "PCI0", 4));
	ck_assert(contains(dsdt, rd32(dsdt + 4), hid, sizeof(hid)));
	ck_assert(contains(dsdt, rd32(dsdt + 4), "_PRT", 4));
	ck_assert(contains(dsdt, rd32(dsdt + 4), "MRES", 4));
	ck_assert(contains(dsdt, rd32(dsdt + 4), mres, sizeof(mres)));
	if (dir && *dir) {
		dump(dir, "DSDT.dat", dsdt);
		dump(dir, "MCFG.dat", mcfg);
	}
	free(buf);
}
END_TEST

static Suite *pci_suite(void)
{
	Suite *s = suite_create("pci");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_header_ids);
	tcase_add_test(tc, test_readonly_bits);
	tcase_add_test(tc, test_status_w1c);
	tcase_add_test(tc, test_bar_sizing);
	tcase_add_test(tc, test_bar_add_errors);
	tcase_add_test(tc, test_bar_decoding);
	tcase_add_test(tc, test_cap_walk);
	tcase_add_test(tc, test_cap_space);
	tcase_add_test(tc, test_slots);
	suite_add_tcase(s, tc);

	tc = tcase_create("access");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_cf8_decoding);
	tcase_add_test(tc, test_ecam_decoding);
	suite_add_tcase(s, tc);

	tc = tcase_create("interrupts");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_msix_table);
	tcase_add_test(tc, test_msix_mask_pending);
	tcase_add_test(tc, test_intx);
	suite_add_tcase(s, tc);

	tc = tcase_create("routing");
	tcase_add_test(tc, test_routing_table);
	tcase_add_test(tc, test_routing_exhaustion);
	suite_add_tcase(s, tc);

	tc = tcase_create("host");
	tcase_add_checked_fixture(tc, plumb_setup_registered, plumb_teardown);
	tcase_add_test(tc, test_host_realize);
	tcase_add_test(tc, test_host_msix_direct);
	tcase_add_test(tc, test_host_mask_notifier);
	tcase_add_test(tc, test_host_mask_exact);
	suite_add_tcase(s, tc);

	tc = tcase_create("host-no-irqfd");
	tcase_add_checked_fixture(tc, plumb_setup, plumb_teardown);
	tcase_add_test(tc, test_host_msix_no_irqfd);
	suite_add_tcase(s, tc);

	tc = tcase_create("acpi");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_acpi);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(pci_suite());
}
