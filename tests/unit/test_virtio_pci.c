/* The virtio-pci transport driven the way a guest driver does: capability
 * discovery through config space, then the common configuration, ISR,
 * device configuration and notification regions through BAR 0, with a fake
 * virtio device, a fake interrupt sink and no KVM. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/pci/pci.h"
#include "devices/virtio/virtio.h"
#include "devices/virtio/virtio_pci.h"
#include "helpers/mock_vq.h"
#include "helpers/ck_run.h"

#define MEM_BASE 0x100000ULL
#define MEM_SIZE (1ULL << 20)
#define FAKE_ID VIRTIO_ID_RNG
#define NQ 2
#define QMAX 64
#define FEAT_LO (VIRTIO_BIT(0) | VIRTIO_BIT(5) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX))
#define FEAT_HI VIRTIO_BIT(40)
#define NVEC (NQ + 1)

/* ---- Fake device ---- */

static unsigned activations, resets;
static int activate_ret;
static uint8_t devcfg[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

static void f_config_read(struct virtio_device *dev, size_t off, void *data, size_t len)
{
	(void)dev;
	memcpy(data, devcfg + off, len);
}

static void f_config_write(struct virtio_device *dev, size_t off, const void *data, size_t len)
{
	(void)dev;
	memcpy(devcfg + off, data, len);
}

static int f_activate(struct virtio_device *dev)
{
	(void)dev;
	activations++;
	return activate_ret;
}

static void f_reset(struct virtio_device *dev)
{
	(void)dev;
	resets++;
}

static const struct virtio_device_ops fake_ops = {
	.name = "virtio-fake",
	.device_id = FAKE_ID,
	.config_size = sizeof(devcfg),
	.config_read = f_config_read,
	.config_write = f_config_write,
	.activate = f_activate,
	.reset = f_reset,
};

/* ---- Fake interrupt sink ---- */

static unsigned fired[NVEC];
static unsigned nfired;
static int intx_level = -1;

static void s_fire(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a, uint32_t data)
{
	(void)h;
	(void)d;
	(void)a;
	(void)data;
	ck_assert_uint_lt(v, NVEC);
	fired[v]++;
	nfired++;
}

static void s_intx(struct pci_host *h, struct pci_device *d, bool level)
{
	(void)h;
	(void)d;
	intx_level = level;
}

static const struct pci_irq_ops sink = { .msi_fire = s_fire, .intx_set = s_intx };

/* ---- Fixture ---- */

static struct mock_mem mem;
static struct virtio_device vdev;
static struct pci_host host;
static struct virtio_pci *vp;
static unsigned slot;
static uint64_t bar0, bar2;

static uint32_t cfg_rd(unsigned off, unsigned len)
{
	return pci_host_config_read(&host, 0, slot, 0, off, len);
}

static void cfg_wr(unsigned off, unsigned len, uint32_t v)
{
	pci_host_config_write(&host, 0, slot, 0, off, len, v);
}

static uint64_t rd(uint64_t off, unsigned len)
{
	uint64_t v = 0;

	ck_assert(pci_host_mmio_read(&host, bar0 + off, &v, len));
	return v;
}

static void wr(uint64_t off, unsigned len, uint64_t v)
{
	ck_assert(pci_host_mmio_write(&host, bar0 + off, &v, len));
}

static void status(uint8_t s)
{
	wr(VIRTIO_PCI_COMMON_STATUS, 1, s);
}

static uint8_t get_status(void)
{
	return (uint8_t)rd(VIRTIO_PCI_COMMON_STATUS, 1);
}

static void setup(void)
{
	struct pci_host_params p = {
		.mmio32_base = 0xC0000000ULL, .mmio32_size = 0x10000000ULL, .irq = &sink,
	};

	activations = resets = 0;
	activate_ret = 0;
	nfired = 0;
	memset(fired, 0, sizeof(fired));
	intx_level = -1;
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	ck_assert_int_eq(virtio_dev_init(&vdev, &fake_ops, &mem.gm, NQ, QMAX, FEAT_LO | FEAT_HI), 0);
	ck_assert_int_eq(pci_host_init(&host, &p), 0);
	ck_assert_int_eq(virtio_pci_create(&host, &vdev, 0xff0000, &vp), 0);
	slot = virtio_pci_dev(vp)->slot;
	ck_assert_uint_eq(slot, 1);
	bar0 = (cfg_rd(PCI_BASE_ADDRESS_0, 4) & ~0xfULL) | (uint64_t)cfg_rd(PCI_BASE_ADDRESS_0 + 4, 4) << 32;
	bar2 = cfg_rd(PCI_BASE_ADDRESS_0 + 8, 4) & ~0xfULL;
	cfg_wr(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static void teardown(void)
{
	virtio_pci_destroy(vp);
	virtio_dev_destroy(&vdev);
	pci_host_destroy(&host);
	mock_mem_destroy(&mem);
}

/* Find a vendor capability by cfg_type; returns its offset or 0. */
static unsigned find_vcap(uint8_t type)
{
	unsigned p = cfg_rd(PCI_CAPABILITY_LIST, 1), hops = 0;

	while (p && hops++ < 48) {
		if (cfg_rd(p, 1) == PCI_CAP_ID_VNDR && cfg_rd(p + 3, 1) == type)
			return p;
		p = cfg_rd(p + 1, 1);
	}
	return 0;
}

static void features_ok(void)
{
	status(VIRTIO_STATUS_ACKNOWLEDGE);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	wr(VIRTIO_PCI_COMMON_GF, 4, 1);		/* VERSION_1 */
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	ck_assert(get_status() & VIRTIO_STATUS_FEATURES_OK);
}

/* ---- Tests ---- */

START_TEST(test_ids_and_layout)
{
	struct { uint8_t type; uint32_t off, len; } want[] = {
		{ VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN },
		{ VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF, NQ * 4 },
		{ VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, VIRTIO_PCI_ISR_LEN },
		{ VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF, sizeof(devcfg) },
	};
	unsigned c, msix;

	ck_assert_uint_eq(cfg_rd(PCI_VENDOR_ID, 2), 0x1af4);
	ck_assert_uint_eq(cfg_rd(PCI_DEVICE_ID, 2), 0x1040 + FAKE_ID);
	ck_assert_uint_eq(cfg_rd(PCI_REVISION_ID, 1), 1);
	ck_assert_uint_eq(cfg_rd(PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	ck_assert_uint_ge(cfg_rd(PCI_SUBSYSTEM_ID, 2), 0x40);
	ck_assert_uint_eq(cfg_rd(PCI_INTERRUPT_PIN, 1), 1);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0, 4) & 0xf, PCI_BAR_MEM_TYPE_64);
	ck_assert_uint_eq(cfg_rd(PCI_BASE_ADDRESS_0 + 8, 4) & 0xf, 0);
	ck_assert(bar0 && bar0 < 0x100000000ULL && bar0 % VIRTIO_PCI_BAR_SIZE == 0);

	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		c = find_vcap(want[i].type);
		ck_assert_msg(c, "cfg_type %u missing", want[i].type);
		ck_assert_uint_eq(cfg_rd(c + VIRTIO_PCI_CAP_BAR, 1), VIRTIO_PCI_BAR);
		ck_assert_uint_eq(cfg_rd(c + VIRTIO_PCI_CAP_OFFSET, 4), want[i].off);
		ck_assert_uint_eq(cfg_rd(c + VIRTIO_PCI_CAP_LENGTH, 4), want[i].len);
		ck_assert_uint_ge(cfg_rd(c + 2, 1), 16);
	}
	c = find_vcap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	ck_assert_uint_eq(cfg_rd(c + 2, 1), 20);
	ck_assert_uint_eq(cfg_rd(c + VIRTIO_PCI_CAP_EXTRA, 4), VIRTIO_PCI_NOTIFY_MULT);
	c = find_vcap(VIRTIO_PCI_CAP_PCI_CFG);
	ck_assert(c);
	ck_assert_uint_eq(cfg_rd(c + 2, 1), 20);

	/* MSI-X: one vector per queue plus config, table and PBA in BAR 2. */
	for (msix = cfg_rd(PCI_CAPABILITY_LIST, 1); msix && cfg_rd(msix, 1) != PCI_CAP_ID_MSIX;)
		msix = cfg_rd(msix + 1, 1);
	ck_assert(msix);
	ck_assert_uint_eq((cfg_rd(msix + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1, NVEC);
	ck_assert_uint_eq(cfg_rd(msix + PCI_MSIX_TABLE, 4), VIRTIO_PCI_MSIX_TABLE_OFF | VIRTIO_PCI_MSIX_BAR);
	ck_assert_uint_eq(cfg_rd(msix + PCI_MSIX_PBA, 4), VIRTIO_PCI_MSIX_PBA_OFF | VIRTIO_PCI_MSIX_BAR);

	/* Registers a driver reads first. */
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	ck_assert_uint_eq(get_status(), 0);
	for (unsigned q = 0; q < NQ; q++) {
		wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_NOFF, 2), q);
		ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), QMAX);
		ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	}
}
END_TEST

START_TEST(test_features)
{
	uint64_t all = virtio_dev_host_features(&vdev);

	ck_assert_uint_eq(all, FEAT_LO | FEAT_HI | VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_DF, 4), (uint32_t)all);
	wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_DFSELECT, 4), 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_DF, 4), (uint32_t)(all >> 32));
	wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 2);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_DF, 4), 0);
	/* device_feature is read-only. */
	wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	wr(VIRTIO_PCI_COMMON_DF, 4, 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_DF, 4), (uint32_t)all);

	/* Acks before DRIVER are ignored. */
	wr(VIRTIO_PCI_COMMON_GF, 4, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GF, 4), 0);

	status(VIRTIO_STATUS_ACKNOWLEDGE);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* Acks are masked to what was offered, word by word. */
	wr(VIRTIO_PCI_COMMON_GF, 4, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GF, 4), (uint32_t)all);
	wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GF, 4), 0);
	wr(VIRTIO_PCI_COMMON_GF, 4, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GF, 4), (uint32_t)(all >> 32));
	ck_assert_uint_eq(vdev.driver_features, all);
	/* Narrowing works until FEATURES_OK. */
	wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	wr(VIRTIO_PCI_COMMON_GF, 4, 1);
	ck_assert_uint_eq(vdev.driver_features, (all & ~0xffffffffULL) | 1);
	wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 5);
	wr(VIRTIO_PCI_COMMON_GF, 4, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GF, 4), 0);
	ck_assert_uint_eq(vdev.driver_features, (all & ~0xffffffffULL) | 1);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	ck_assert(get_status() & VIRTIO_STATUS_FEATURES_OK);
	/* Frozen after FEATURES_OK. */
	wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	wr(VIRTIO_PCI_COMMON_GF, 4, 0x20);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GF, 4), 1);
}
END_TEST

START_TEST(test_status_machine)
{
	/* DRIVER before ACKNOWLEDGE: refused. */
	status(VIRTIO_STATUS_DRIVER);
	ck_assert_uint_eq(get_status(), 0);
	status(VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_eq(get_status(), VIRTIO_STATUS_ACKNOWLEDGE);
	/* DRIVER_OK before FEATURES_OK: refused. */
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(get_status(), VIRTIO_STATUS_ACKNOWLEDGE);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* FEATURES_OK without VERSION_1 does not stick. */
	wr(VIRTIO_PCI_COMMON_GF, 4, 1);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	ck_assert_uint_eq(get_status(), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	wr(VIRTIO_PCI_COMMON_GF, 4, 1);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	ck_assert_uint_eq(get_status(), 0x0b);
	/* Clearing bits other than by reset: refused. */
	status(VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_eq(get_status(), 0x0b);
	ck_assert_uint_eq(activations, 0);
	status(0x0f);
	ck_assert_uint_eq(get_status(), 0x0f);
	ck_assert_uint_eq(activations, 1);
	ck_assert(!virtio_dev_queue_writable(&vdev));
	/* FAILED can always be added. */
	status(0x8f);
	ck_assert_uint_eq(get_status(), 0x8f);
}
END_TEST

START_TEST(test_failed_activation)
{
	features_ok();
	activate_ret = -EIO;
	status(0x0f);
	ck_assert(get_status() & VIRTIO_STATUS_NEEDS_RESET);
	/* MSI-X is off: the config change shows in the ISR and on INTA. */
	ck_assert_int_eq(intx_level, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_CONFIG);
	ck_assert_int_eq(intx_level, 0);
}
END_TEST

START_TEST(test_queue_registers)
{
	struct virtqueue *vq0 = virtio_dev_queue(&vdev, 0), *vq1 = virtio_dev_queue(&vdev, 1);

	/* Before FEATURES_OK nothing but the selector is writable. */
	status(VIRTIO_STATUS_ACKNOWLEDGE | 0);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, 8, 0x1000);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), QMAX);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);

	wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	wr(VIRTIO_PCI_COMMON_GF, 4, 1);
	status(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	ck_assert(virtio_dev_queue_writable(&vdev));
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 0);		/* ignored */
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, QMAX * 2);	/* ignored */
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16);
	/* 64-bit addresses: whole, or as two halves. */
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, 8, 0x123456789000ULL);
	wr(VIRTIO_PCI_COMMON_Q_AVAILLO, 4, 0xabcd0000);
	wr(VIRTIO_PCI_COMMON_Q_AVAILHI, 4, 0x12);
	wr(VIRTIO_PCI_COMMON_Q_USEDHI, 4, 0x34);
	wr(VIRTIO_PCI_COMMON_Q_USEDLO, 4, 0x5000);
	wr(VIRTIO_PCI_COMMON_Q_USEDLO + 2, 2, 0xffff);	/* not a register */
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0x123456789000ULL);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_DESCHI, 4), 0x1234);
	ck_assert_uint_eq(vq1->avail_gpa, 0x12abcd0000ULL);
	ck_assert_uint_eq(vq1->used_gpa, 0x3400005000ULL);
	ck_assert_uint_eq(vq0->desc_gpa, 0);
	/* Vectors beyond the table read back as NO_VECTOR. */
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), 2);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, NVEC);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	wr(VIRTIO_PCI_COMMON_MSIX, 2, 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_MSIX, 2), 0);
	wr(VIRTIO_PCI_COMMON_MSIX, 2, 9);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	/* Only 1 enables. */
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 2);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	ck_assert(vq1->enabled);
	ck_assert(!vq0->enabled);
	/* A queue that does not exist: reads 0, takes nothing. */
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, NQ);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 8);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	/* RO registers stay. */
	wr(VIRTIO_PCI_COMMON_NUMQ, 2, 7);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_NUMQ, 2), NQ);

	/* After DRIVER_OK (queue 1 has a bad ring, so the device needs a
	 * reset, but that is beside the point): registers are frozen. */
	vq1->enabled = false;
	status(0x0f);
	ck_assert_uint_eq(activations, 1);
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 32);
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, 8, 0x4000);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0x123456789000ULL);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), 2);
}
END_TEST

START_TEST(test_bring_up_with_rings)
{
	struct mock_vq mq[NQ];

	features_ok();
	for (unsigned q = 0; q < NQ; q++) {
		mock_vq_init(&mq[q], &mem, 16);
		wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
		wr(VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)mq[q].desc);
		wr(VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
		wr(VIRTIO_PCI_COMMON_Q_AVAILLO, 8, mq[q].avail);
		wr(VIRTIO_PCI_COMMON_Q_USEDLO, 8, mq[q].used);
		wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	}
	status(0x0f);
	ck_assert_uint_eq(get_status(), 0x0f);
	ck_assert_uint_eq(activations, 1);
	ck_assert(virtio_dev_queue(&vdev, 0)->ready);
	ck_assert(virtio_dev_queue(&vdev, 1)->ready);
	ck_assert(vdev.active);
}
END_TEST

START_TEST(test_reset_clears_everything)
{
	struct virtqueue *vq = virtio_dev_queue(&vdev, 1);

	features_ok();
	wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	wr(VIRTIO_PCI_COMMON_MSIX, 2, 0);
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 8);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, 8, 0x8000);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	vdev.notify_used(&vdev, 1);			/* ISR set, INTA up */
	ck_assert_int_eq(intx_level, 1);

	status(0);
	ck_assert_uint_eq(resets, 1);
	ck_assert_uint_eq(get_status(), 0);
	ck_assert_int_eq(intx_level, 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF, 1), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_DFSELECT, 4), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GFSELECT, 4), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_GF, 4), 0);
	ck_assert_uint_eq(vdev.driver_features, 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SELECT, 2), 0);
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), QMAX);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	ck_assert(!vq->enabled);
	/* And the device comes up again from scratch. */
	features_ok();
}
END_TEST

START_TEST(test_notify)
{
	eventfd_t v;
	uint32_t c = find_vcap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	uint64_t base = cfg_rd(c + VIRTIO_PCI_CAP_OFFSET, 4);
	uint32_t mult = cfg_rd(c + VIRTIO_PCI_CAP_EXTRA, 4);

	for (unsigned q = 0; q < NQ; q++) {
		wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		wr(base + rd(VIRTIO_PCI_COMMON_Q_NOFF, 2) * mult, 2, q);
		for (unsigned o = 0; o < NQ; o++) {
			int r = eventfd_read(virtio_dev_kick_fd(&vdev, o), &v);

			ck_assert_int_eq(r, o == q ? 0 : -1);
		}
	}
	/* A 4-byte write works too; past the last queue, nothing. */
	wr(base + mult, 4, 1);
	ck_assert_int_eq(eventfd_read(virtio_dev_kick_fd(&vdev, 1), &v), 0);
	wr(base + NQ * mult, 2, NQ);
	wr(base + 0xffc, 2, 0);
	for (unsigned o = 0; o < NQ; o++)
		ck_assert_int_eq(eventfd_read(virtio_dev_kick_fd(&vdev, o), &v), -1);
	/* Reads of the notify region are zero. */
	ck_assert_uint_eq(rd(base, 2), 0);
}
END_TEST

START_TEST(test_isr_intx)
{
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF, 1), 0);
	vdev.notify_used(&vdev, 0);
	ck_assert_int_eq(intx_level, 1);
	ck_assert(cfg_rd(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	vdev.notify_config(&vdev);
	/* Only the byte at offset 0 reads (and clears) the ISR. */
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF + 1, 1), 0);
	ck_assert_int_eq(intx_level, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF, 4), VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG);
	ck_assert_int_eq(intx_level, 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF, 1), 0);
	ck_assert(!(cfg_rd(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	ck_assert_uint_eq(nfired, 0);
}
END_TEST

START_TEST(test_msix_vectors)
{
	unsigned msix;

	for (msix = cfg_rd(PCI_CAPABILITY_LIST, 1); cfg_rd(msix, 1) != PCI_CAP_ID_MSIX;)
		msix = cfg_rd(msix + 1, 1);
	for (unsigned v = 0; v < NVEC; v++) {
		uint64_t e = bar2 + v * PCI_MSIX_ENTRY_SIZE;
		uint32_t z = 0, a = 0xfee00000, d = 0x40 + v;

		ck_assert(pci_host_mmio_write(&host, e + PCI_MSIX_ENTRY_ADDR_LO, &a, 4));
		ck_assert(pci_host_mmio_write(&host, e + PCI_MSIX_ENTRY_DATA, &d, 4));
		ck_assert(pci_host_mmio_write(&host, e + PCI_MSIX_ENTRY_CTRL, &z, 4));
	}
	cfg_wr(msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	features_ok();
	wr(VIRTIO_PCI_COMMON_MSIX, 2, 0);
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	vdev.notify_used(&vdev, 0);
	ck_assert_uint_eq(fired[2], 1);
	vdev.notify_config(&vdev);
	ck_assert_uint_eq(fired[0], 1);
	/* Queue 1 has NO_VECTOR: no interrupt at all, not even INTx. */
	vdev.notify_used(&vdev, 1);
	ck_assert_uint_eq(nfired, 2);
	ck_assert_int_eq(intx_level, -1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF, 1), 0);
	/* MSI-X off again: INTx and the ISR. */
	cfg_wr(msix + PCI_MSIX_FLAGS, 2, 0);
	vdev.notify_used(&vdev, 0);
	ck_assert_uint_eq(nfired, 2);
	ck_assert_int_eq(intx_level, 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_QUEUE);
}
END_TEST

/* Kernel backends (vhost): with call_fd_changed set by the device, the
 * transport offers each queue's vector irqfd as call_fd while the vector
 * is direct, and reports every change. Its own host binds real eventfds. */
static int kb_efd[NVEC];
static unsigned kb_changed[NQ];

static int kb_attach(struct pci_host *h, struct pci_device *d)
{
	(void)h;
	for (unsigned v = 0; v < pci_msix_nr_vectors(d); v++) {
		kb_efd[v] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		ck_assert_int_ge(kb_efd[v], 0);
		ck_assert_int_eq(pci_msix_bind_eventfd(d, v, kb_efd[v]), 0);
	}
	return 0;
}

static void kb_detach(struct pci_host *h, struct pci_device *d)
{
	(void)h;
	for (unsigned v = 0; v < pci_msix_nr_vectors(d); v++) {
		(void)pci_msix_bind_eventfd(d, v, -1);
		close(kb_efd[v]);
	}
}

static const struct pci_irq_ops kb_sink = { .attach = kb_attach, .detach = kb_detach };

static void kb_call_fd_changed(struct virtio_device *d, unsigned q)
{
	(void)d;
	ck_assert_uint_lt(q, NQ);
	kb_changed[q]++;
}

START_TEST(test_call_fd_for_kernel_backends)
{
	struct pci_host_params p = {
		.mmio32_base = 0xC0000000ULL, .mmio32_size = 0x10000000ULL, .irq = &kb_sink,
	};
	struct virtio_device kdev;
	struct pci_host kh;
	struct virtio_pci *kvp;
	unsigned ks, msix;
	uint64_t kbar0, kbar2, e;
	uint32_t a = 0xfee00000, d = 0x41, ctrl = 0, masked = 1;

#define KCFG_RD(off, len) pci_host_config_read(&kh, 0, ks, 0, (off), (len))
#define KCFG_WR(off, len, v) pci_host_config_write(&kh, 0, ks, 0, (off), (len), (v))
#define KWR(off, len, v) do { uint64_t x_ = (v); \
		ck_assert(pci_host_mmio_write(&kh, kbar0 + (off), &x_, (len))); } while (0)
	memset(kb_changed, 0, sizeof(kb_changed));
	ck_assert_int_eq(virtio_dev_init(&kdev, &fake_ops, &mem.gm, NQ, QMAX, FEAT_LO | FEAT_HI), 0);
	kdev.call_fd_changed = kb_call_fd_changed;
	ck_assert_int_eq(pci_host_init(&kh, &p), 0);
	ck_assert_int_eq(virtio_pci_create(&kh, &kdev, 0x020000, &kvp), 0);
	ck_assert_ptr_nonnull(kdev.call_fd);
	ks = virtio_pci_dev(kvp)->slot;
	kbar0 = (KCFG_RD(PCI_BASE_ADDRESS_0, 4) & ~0xfULL) |
		(uint64_t)KCFG_RD(PCI_BASE_ADDRESS_0 + 4, 4) << 32;
	kbar2 = KCFG_RD(PCI_BASE_ADDRESS_0 + 8, 4) & ~0xfULL;
	KCFG_WR(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	/* MSI-X off: every queue needs Ember. */
	for (unsigned q = 0; q < NQ; q++)
		ck_assert_int_eq(kdev.call_fd(&kdev, q), -1);

	KWR(VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	KWR(VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	KWR(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	KWR(VIRTIO_PCI_COMMON_GF, 4, 1);
	KWR(VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK);
	memset(kb_changed, 0, sizeof(kb_changed));
	KWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	KWR(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);		/* queue 1 on vector 2 */
	ck_assert_uint_eq(kb_changed[1], 1);
	ck_assert_int_eq(kdev.call_fd(&kdev, 1), -1);	/* MSI-X still off */

	for (msix = KCFG_RD(PCI_CAPABILITY_LIST, 1); KCFG_RD(msix, 1) != PCI_CAP_ID_MSIX;)
		msix = KCFG_RD(msix + 1, 1);
	e = kbar2 + 2 * PCI_MSIX_ENTRY_SIZE;
	ck_assert(pci_host_mmio_write(&kh, e + PCI_MSIX_ENTRY_ADDR_LO, &a, 4));
	ck_assert(pci_host_mmio_write(&kh, e + PCI_MSIX_ENTRY_DATA, &d, 4));
	ck_assert(pci_host_mmio_write(&kh, e + PCI_MSIX_ENTRY_CTRL, &ctrl, 4));
	KCFG_WR(msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	/* Vector 2 is direct now: its irqfd is queue 1's call fd. */
	ck_assert_uint_eq(kb_changed[1], 2);
	ck_assert_int_eq(kdev.call_fd(&kdev, 1), kb_efd[2]);
	ck_assert_int_eq(kdev.call_fd(&kdev, 0), -1);	/* NO_VECTOR */
	/* Masked: back to Ember. */
	ck_assert(pci_host_mmio_write(&kh, e + PCI_MSIX_ENTRY_CTRL, &masked, 4));
	ck_assert_uint_eq(kb_changed[1], 3);
	ck_assert_int_eq(kdev.call_fd(&kdev, 1), -1);
	ck_assert(pci_host_mmio_write(&kh, e + PCI_MSIX_ENTRY_CTRL, &ctrl, 4));
	ck_assert_int_eq(kdev.call_fd(&kdev, 1), kb_efd[2]);
	/* A reset takes every vector away. */
	KWR(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_int_eq(kdev.call_fd(&kdev, 1), -1);
	ck_assert_uint_ge(kb_changed[0], 1);

	virtio_pci_destroy(kvp);
	ck_assert_ptr_null(kdev.call_fd);
	virtio_dev_destroy(&kdev);
	pci_host_destroy(&kh);
#undef KCFG_RD
#undef KCFG_WR
#undef KWR
}
END_TEST

START_TEST(test_pci_cfg_window)
{
	unsigned c = find_vcap(VIRTIO_PCI_CAP_PCI_CFG);
	unsigned data = c + VIRTIO_PCI_CAP_EXTRA;

	/* Works with memory decoding off too. */
	cfg_wr(PCI_COMMAND, 2, 0);
	cfg_wr(c + VIRTIO_PCI_CAP_BAR, 1, VIRTIO_PCI_BAR);
	cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_NUMQ);
	cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	ck_assert_uint_eq(cfg_rd(data, 2), NQ);
	/* A write goes through to the BAR. */
	cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS);
	cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	cfg_wr(data, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_eq(virtio_dev_get_status(&vdev), VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_eq(cfg_rd(data, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	/* Device config, 4 bytes. */
	cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_DEVICE_OFF + 4);
	cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 4);
	ck_assert_uint_eq(cfg_rd(data, 4), 0x08070605);
	/* Misaligned or bad lengths: no access (the data bytes just stay). */
	cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_DEVICE_OFF + 1);
	cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	ck_assert_uint_eq(cfg_rd(data, 4), 0x08070605);
	cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 3);
	ck_assert_uint_eq(cfg_rd(data, 4), 0x08070605);
	cfg_wr(c + VIRTIO_PCI_CAP_BAR, 1, 1);		/* BAR 1 is the high half */
	cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	ck_assert_uint_eq(cfg_rd(data, 4), 0x08070605);
	/* The ISR through the window clears it. */
	vdev.notify_used(&vdev, 0);
	cfg_wr(c + VIRTIO_PCI_CAP_BAR, 1, VIRTIO_PCI_BAR);
	cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_ISR_OFF);
	ck_assert_uint_eq(cfg_rd(data, 1), VIRTIO_PCI_ISR_QUEUE);
	ck_assert_int_eq(intx_level, 0);
	/* The cap header stays read-only. */
	cfg_wr(c, 4, 0);
	ck_assert_uint_eq(cfg_rd(c, 1), PCI_CAP_ID_VNDR);
	ck_assert_uint_eq(cfg_rd(c + 3, 1), VIRTIO_PCI_CAP_PCI_CFG);
}
END_TEST

START_TEST(test_device_config)
{
	ck_assert_uint_eq(rd(VIRTIO_PCI_DEVICE_OFF, 8), 0x0807060504030201ULL);
	ck_assert_uint_eq(rd(VIRTIO_PCI_DEVICE_OFF + 6, 2), 0x0807);
	ck_assert_uint_eq(rd(VIRTIO_PCI_DEVICE_OFF + 6, 4), 0);	/* crosses the end */
	ck_assert_uint_eq(rd(VIRTIO_PCI_DEVICE_OFF + 0x100, 4), 0);
	wr(VIRTIO_PCI_DEVICE_OFF + 2, 2, 0xaabb);
	ck_assert_uint_eq(devcfg[2], 0xbb);
	ck_assert_uint_eq(devcfg[3], 0xaa);
	/* Config generation reads (the device bumps it on changes). */
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1), vdev.config_generation & 0xff);
}
END_TEST

START_TEST(test_vm_reset)
{
	features_ok();
	ck_assert(pci_host_mmio_read(&host, bar0, &(uint32_t){ 0 }, 4));
	virtio_pci_reset(vp);
	ck_assert_uint_eq(virtio_dev_get_status(&vdev), 0);
	ck_assert_uint_eq(resets, 1);
	ck_assert_uint_eq(cfg_rd(PCI_COMMAND, 2), 0);
	ck_assert(!pci_host_mmio_read(&host, bar0, &(uint32_t){ 0 }, 4));
	ck_assert(!pci_msix_enabled(virtio_pci_dev(vp)));
	cfg_wr(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
}
END_TEST

START_TEST(test_save_load_transport)
{
	char err[128] = "";
	json_t *saved;

	features_ok();
	wr(VIRTIO_PCI_COMMON_MSIX, 2, 2);
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	saved = virtio_pci_save(vp);
	ck_assert_ptr_nonnull(saved);
	ck_assert_int_eq(json_integer_value(json_object_get(saved, "msix_config")), 2);
	wr(VIRTIO_PCI_COMMON_STATUS, 1, 0);	/* reset: vectors gone */
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	ck_assert_int_eq(virtio_pci_load(vp, saved, err, sizeof(err)), 0);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_MSIX, 2), 2);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_DFSELECT, 4), 1);
	/* Out of range: refused, nothing changed. */
	json_object_set_new(saved, "msix_config", json_integer(NVEC));
	ck_assert_int_eq(virtio_pci_load(vp, saved, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "msix_config"));
	ck_assert_uint_eq(rd(VIRTIO_PCI_COMMON_MSIX, 2), 2);
	json_object_set_new(saved, "msix_config", json_integer(VIRTIO_MSI_NO_VECTOR));
	json_object_set_new(saved, "queue_vectors", json_pack("[i]", 0));
	ck_assert_int_eq(virtio_pci_load(vp, saved, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(virtio_pci_load(vp, NULL, err, sizeof(err)), -EINVAL);
	json_decref(saved);
}
END_TEST

START_TEST(test_create_errors)
{
	struct virtio_device bad = vdev;
	struct virtio_pci *x = (void *)1;

	bad.nr_queues = 0;
	ck_assert_int_eq(virtio_pci_create(&host, &bad, 0, &x), -EINVAL);
	ck_assert_ptr_null(x);
}
END_TEST

static Suite *virtio_pci_suite(void)
{
	Suite *s = suite_create("virtio-pci");
	TCase *tc = tcase_create("common");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ids_and_layout);
	tcase_add_test(tc, test_features);
	tcase_add_test(tc, test_status_machine);
	tcase_add_test(tc, test_failed_activation);
	tcase_add_test(tc, test_queue_registers);
	tcase_add_test(tc, test_bring_up_with_rings);
	tcase_add_test(tc, test_reset_clears_everything);
	tcase_add_test(tc, test_notify);
	tcase_add_test(tc, test_isr_intx);
	tcase_add_test(tc, test_msix_vectors);
	tcase_add_test(tc, test_call_fd_for_kernel_backends);
	tcase_add_test(tc, test_pci_cfg_window);
	tcase_add_test(tc, test_device_config);
	tcase_add_test(tc, test_vm_reset);
	tcase_add_test(tc, test_save_load_transport);
	tcase_add_test(tc, test_create_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(virtio_pci_suite());
}
