/* PCI configuration space and BAR accesses from fuzz input, against a
 * virtio-pci function (a 64-bit BAR, a 32-bit MSI-X BAR with table and PBA,
 * vendor capabilities with the PCI-config window) on a host bridge with no
 * KVM behind it. Each 8-byte record is one access:
 *   [0] op   [1] width/selector   [2..3] offset   [4..7] value
 * ops: CF8 write, CFC-CFF write/read, ECAM write/read, BAR window
 * write/read, device-side interrupts. After every access the read-only
 * parts of config space must be as they were. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci/pci.h"
#include "devices/virtio/virtio.h"
#include "devices/virtio/virtio_pci.h"
#include "base/guest_mem.h"

#define W32_BASE	0xC0000000ULL
#define W32_SIZE	0x10000000ULL
#define RAM_SIZE	(64u << 10)
#define NQ		2
#define MAX_CAPS	16

static struct guest_mem gm;
static struct virtio_device vdev;
static struct pci_host host;
static struct virtio_pci *vp;
static uint32_t ids, classrev, subsys;
static uint8_t cap_ids[MAX_CAPS], cap_offs[MAX_CAPS];
static unsigned ncaps;
static uint8_t devcfg[8];
static unsigned fired;

static void cfg_read(struct virtio_device *d, size_t off, void *data, size_t len)
{
	(void)d;
	memcpy(data, devcfg + off, len);
}

static void cfg_write(struct virtio_device *d, size_t off, const void *data, size_t len)
{
	(void)d;
	memcpy(devcfg + off, data, len);
}

static const struct virtio_device_ops fake_ops = {
	.name = "virtio-fuzz",
	.device_id = VIRTIO_ID_RNG,
	.config_size = sizeof(devcfg),
	.config_read = cfg_read,
	.config_write = cfg_write,
};

static void sink_fire(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a, uint32_t data)
{
	(void)h;
	(void)d;
	(void)a;
	(void)data;
	if (v >= NQ + 1)
		abort();
	fired++;
}

static void sink_intx(struct pci_host *h, struct pci_device *d, bool level)
{
	(void)h;
	(void)d;
	(void)level;
}

static const struct pci_irq_ops sink = { .msi_fire = sink_fire, .intx_set = sink_intx };

static unsigned walk_caps(uint8_t *idv, uint8_t *offv)
{
	unsigned p = pci_host_config_read(&host, 0, 1, 0, PCI_CAPABILITY_LIST, 1), n = 0;

	while (p && n < MAX_CAPS) {
		if (p < PCI_CAP_START || p % 4)
			abort();
		idv[n] = (uint8_t)pci_host_config_read(&host, 0, 1, 0, p, 1);
		offv[n++] = (uint8_t)p;
		p = pci_host_config_read(&host, 0, 1, 0, p + 1, 1);
	}
	if (p)
		abort();	/* a loop */
	return n;
}

static void setup(void)
{
	static uint8_t *ram;
	struct pci_host_params p = {
		.ecam_base = PCI_ECAM_BASE,
		.mmio32_base = W32_BASE,
		.mmio32_size = W32_SIZE,
		.irq = &sink,
	};

	if (ram)
		return;
	ram = calloc(1, RAM_SIZE);
	if (!ram || gm_add_region(&gm, 0, RAM_SIZE, ram) ||
	    virtio_dev_init(&vdev, &fake_ops, &gm, NQ, 16, VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX)) ||
	    pci_host_init(&host, &p) || virtio_pci_create(&host, &vdev, 0xff0000, &vp))
		abort();
	ids = pci_host_config_read(&host, 0, 1, 0, PCI_VENDOR_ID, 4);
	classrev = pci_host_config_read(&host, 0, 1, 0, PCI_REVISION_ID, 4);
	subsys = pci_host_config_read(&host, 0, 1, 0, PCI_SUBSYSTEM_VENDOR_ID, 4);
	ncaps = walk_caps(cap_ids, cap_offs);
}

static void check(void)
{
	uint8_t idv[MAX_CAPS], offv[MAX_CAPS];
	uint32_t bar0 = pci_host_config_read(&host, 0, 1, 0, PCI_BASE_ADDRESS_0, 4);
	uint32_t bar2 = pci_host_config_read(&host, 0, 1, 0, PCI_BASE_ADDRESS_0 + 8, 4);

	if (pci_host_config_read(&host, 0, 1, 0, PCI_VENDOR_ID, 4) != ids ||
	    pci_host_config_read(&host, 0, 1, 0, PCI_REVISION_ID, 4) != classrev ||
	    pci_host_config_read(&host, 0, 1, 0, PCI_SUBSYSTEM_VENDOR_ID, 4) != subsys ||
	    pci_host_config_read(&host, 0, 1, 0, PCI_HEADER_TYPE, 1) != 0 ||
	    pci_host_config_read(&host, 0, 1, 0, PCI_INTERRUPT_PIN, 1) != 1 ||
	    !(pci_host_config_read(&host, 0, 1, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		abort();
	/* BAR type bits and size alignment never change. */
	if ((bar0 & 0xf) != PCI_BAR_MEM_TYPE_64 || (bar0 & (VIRTIO_PCI_BAR_SIZE - 1) & ~0xfu) ||
	    (bar2 & 0xf) != 0 || (bar2 & (VIRTIO_PCI_MSIX_BAR_SIZE - 1) & ~0xfu))
		abort();
	if (walk_caps(idv, offv) != ncaps || memcmp(idv, cap_ids, ncaps) || memcmp(offv, cap_offs, ncaps))
		abort();
	if (pci_host_config_read(&host, 0, 0, 0, PCI_VENDOR_ID, 2) != PCI_HOST_VENDOR)
		abort();
}

static unsigned width(uint8_t sel)
{
	static const unsigned w[4] = { 1, 2, 4, 8 };

	return w[sel & 3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	/* Power-on state for every input. */
	pci_host_reset(&host);
	virtio_pci_reset(vp);
	fired = 0;

	for (; size >= 8; data += 8, size -= 8) {
		uint8_t op = data[0], sel = data[1];
		uint32_t off = (uint32_t)data[2] | (uint32_t)data[3] << 8;
		uint64_t val = (uint64_t)data[4] | (uint64_t)data[5] << 8 |
			       (uint64_t)data[6] << 16 | (uint64_t)data[7] << 24;
		uint64_t rd = 0;
		unsigned len = width(sel);
		uint64_t ecam = (uint64_t)((sel >> 2) & 0x1f) << 15 | (off & 0xfff);
		uint64_t addr = W32_BASE + ((uint64_t)(sel >> 2 & 7) << 16 | off);

		if (sel & 0x80)
			ecam |= (uint64_t)(off >> 12) << 20;	/* other buses */
		switch (op % 9) {
		case 0:
			pci_host_pio_write(&host, 0, &val, 4);
			break;
		case 1:
			if (len > 4)
				len = 4;
			pci_host_pio_write(&host, 4 + (sel >> 2 & 3), &val, len);
			break;
		case 2:
			if (len > 4)
				len = 4;
			pci_host_pio_read(&host, 4 + (sel >> 2 & 3), &rd, len);
			break;
		case 3:
			pci_host_ecam_write(&host, ecam, &val, len);
			break;
		case 4:
			pci_host_ecam_read(&host, ecam, &rd, len);
			break;
		case 5:
			pci_host_mmio_write(&host, addr, &val, len);
			break;
		case 6:
			pci_host_mmio_read(&host, addr, &rd, len);
			break;
		case 7:
			if (vdev.notify_used && (sel & 1))
				vdev.notify_used(&vdev, (unsigned)val % NQ);
			else if (vdev.notify_config)
				vdev.notify_config(&vdev);
			break;
		case 8:
			(void)pci_msix_notify(virtio_pci_dev(vp), (unsigned)val % 8);
			break;
		}
		check();
	}
	return 0;
}
