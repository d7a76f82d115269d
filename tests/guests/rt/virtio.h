/*
 * Minimal modern virtio-pci driver (virtio 1.2 section 4.1) for test guests:
 * capability discovery, status/feature negotiation, split virtqueues in
 * static guest memory, MSI-X interrupts through the runtime's IDT.
 *
 * Typical use:
 *   struct virtio_dev v;
 *   virtio_probe(&v, VIRTIO_ID_RNG, 0);             // PCI + capabilities
 *   virtio_start(&v, VIRTIO_F(VIRTIO_F_EVENT_IDX)); // reset .. FEATURES_OK
 *   virtio_queue_setup(&v, 0, 8, 0x41);             // MSI-X entry 1 -> vector 0x41
 *   virtio_driver_ok(&v);
 *   struct virtq_buf b = {buf, 64};
 *   virtq_add(&v.vq[0], &b, 0, 1, false);            // 0 out, 1 in (device-writable)
 *   virtq_kick(&v.vq[0]);
 *   virtq_wait(&v.vq[0], &len, 2000);               // sti; hlt until the MSI
 *
 * Interrupts: MSI-X entry 0 is the configuration vector, entry 1 + q is
 * queue q's. Queues set up with vector 0 have no interrupt and are polled.
 *
 * Memory: rings come from a static pool of 4 queues (VIRTQ_MAX_SIZE
 * descriptors each) shared by all devices; a queue keeps its ring across
 * re-setups (after a reset) of the same struct virtio_dev. Single CPU (the
 * BSP), no locking: one request at a time per indirect table.
 */
#ifndef EMBER_GUEST_VIRTIO_H
#define EMBER_GUEST_VIRTIO_H

#include "rt/pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_MODERN(id) (0x1040 + (id))

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

/* Device status (2.1). */
#define VIRTIO_S_ACKNOWLEDGE 1u
#define VIRTIO_S_DRIVER 2u
#define VIRTIO_S_DRIVER_OK 4u
#define VIRTIO_S_FEATURES_OK 8u
#define VIRTIO_S_NEEDS_RESET 64u
#define VIRTIO_S_FAILED 128u

/* Feature bits (6). */
#define VIRTIO_F(bit) (1ull << (bit))
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33

/* virtio_pci_cap cfg_type (4.1.4). */
#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR 3
#define VIRTIO_PCI_CAP_DEVICE 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

/* struct virtio_pci_common_cfg offsets (4.1.4.3). */
#define VIRTIO_COMMON_DFSELECT 0
#define VIRTIO_COMMON_DF 4
#define VIRTIO_COMMON_GFSELECT 8
#define VIRTIO_COMMON_GF 12
#define VIRTIO_COMMON_MSIX 16
#define VIRTIO_COMMON_NUMQ 18
#define VIRTIO_COMMON_STATUS 20
#define VIRTIO_COMMON_CFGGEN 21
#define VIRTIO_COMMON_Q_SELECT 22
#define VIRTIO_COMMON_Q_SIZE 24
#define VIRTIO_COMMON_Q_MSIX 26
#define VIRTIO_COMMON_Q_ENABLE 28
#define VIRTIO_COMMON_Q_NOFF 30
#define VIRTIO_COMMON_Q_DESCLO 32
#define VIRTIO_COMMON_Q_DESCHI 36
#define VIRTIO_COMMON_Q_AVAILLO 40
#define VIRTIO_COMMON_Q_AVAILHI 44
#define VIRTIO_COMMON_Q_USEDLO 48
#define VIRTIO_COMMON_Q_USEDHI 52

#define VIRTIO_MSI_NO_VECTOR 0xffffu

/* Split virtqueue layout (2.7). */
#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
#define VRING_DESC_F_INDIRECT 4u
#define VRING_USED_F_NO_NOTIFY 1u
#define VRING_AVAIL_F_NO_INTERRUPT 1u

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* [size], then used_event */
};
struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};
struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[]; /* [size], then avail_event */
};

#define VIRTQ_MAX_SIZE 32     /* descriptors per queue this driver allocates */
#define VIRTQ_MAX_INDIRECT 8  /* entries of the per-queue indirect table */
#define VIRTIO_MAX_QUEUES 4

/* Errors (negative returns). virtio_strerror() names them. */
#define VIRTIO_E_NODEV (-1)      /* no such PCI function */
#define VIRTIO_E_CAPS (-2)       /* a required virtio capability is missing */
#define VIRTIO_E_BAR (-3)        /* a capability's BAR is unusable */
#define VIRTIO_E_RESET (-4)      /* device_status did not read 0 after reset */
#define VIRTIO_E_VERSION (-5)    /* VERSION_1 not offered */
#define VIRTIO_E_FEATURES_OK (-6) /* FEATURES_OK not accepted */
#define VIRTIO_E_QUEUE (-7)      /* queue missing (size 0) or bad index */
#define VIRTIO_E_MSIX (-8)       /* no MSI-X, too few entries or vector read back 0xffff */
#define VIRTIO_E_FULL (-9)       /* no free descriptors */
#define VIRTIO_E_TIMEOUT (-10)   /* nothing on the used ring in time */
#define VIRTIO_E_NOIRQ (-11)     /* used ring advanced but no interrupt came */
#define VIRTIO_E_USED (-12)      /* used ring entry with a bad id */
#define VIRTQ_EMPTY (-13)        /* virtq_poll: nothing on the used ring */

struct virtq_buf {
	void *addr;
	uint32_t len;
};

struct virtio_dev;

struct virtq {
	struct virtio_dev *dev;
	uint16_t index, size;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	struct vring_desc *indirect; /* VIRTQ_MAX_INDIRECT entries */
	uint64_t notify_addr;
	uint16_t free_head, num_free;
	uint16_t avail_idx, last_used, kicked_idx;
	uint16_t msix_entry;         /* VIRTIO_MSI_NO_VECTOR: polled */
	uint8_t vector;              /* IDT vector, 0 = none */
	bool indirect_busy;
	int16_t indirect_head;       /* head using the indirect table, or -1 */
	volatile uint32_t irqs;      /* interrupts taken on this queue */
	uint32_t irqs_at_kick;
	uint16_t chain_len[VIRTQ_MAX_SIZE];
};

struct virtio_dev {
	struct pci_dev *pci;
	uint16_t id;                 /* virtio device ID */
	uint64_t common, notify, isr, device;
	uint32_t notify_mul, device_len;
	uint64_t offered, features;  /* device features, negotiated features */
	uint16_t num_queues;
	uint16_t msix_entries;       /* after the first interrupt setup */
	uint8_t config_vector;       /* 0 = none */
	volatile uint32_t config_irqs;
	struct virtq vq[VIRTIO_MAX_QUEUES];
};

const char *virtio_strerror(int err);

/* Finds the n-th virtio PCI function of this device type on bus 0 (modern
 * 0x1040+id, or transitional 0x1000-0x103f with subsystem ID == id), walks
 * its vendor capabilities (common, notify, ISR, device: the first of each),
 * maps the BARs they use and enables memory decoding and bus mastering. */
int virtio_probe(struct virtio_dev *v, uint16_t device_id, unsigned n);

/* Reset (waits for device_status == 0), ACKNOWLEDGE, DRIVER, read device
 * features, write (offered & (want | VERSION_1)), FEATURES_OK and check it
 * stuck. VERSION_1 is required. Leaves v->features = the negotiated set. */
int virtio_start(struct virtio_dev *v, uint64_t want);

/* Writes 0 to device_status and waits (bounded) for it to read back 0. */
int virtio_reset(struct virtio_dev *v);
uint8_t virtio_status(const struct virtio_dev *v);
void virtio_set_status(struct virtio_dev *v, uint8_t status);
void virtio_driver_ok(struct virtio_dev *v);
static inline bool virtio_has(const struct virtio_dev *v, unsigned bit) { return (v->features >> bit) & 1; }

/* MSI-X: enables MSI-X on first use (entries masked until programmed) and
 * routes entry 0 / config_msix_vector to IDT vector `vector` on this CPU;
 * the read-back must not be 0xffff. vector 0 writes NO_VECTOR instead. */
int virtio_config_irq(struct virtio_dev *v, uint8_t vector);

/* Queue q (size rounded down to a power of two <= min(device max,
 * VIRTQ_MAX_SIZE)): rings from static memory, addresses, MSI-X entry 1+q to
 * IDT vector `vector` (0: no interrupt, NO_VECTOR), queue_enable = 1. */
int virtio_queue_setup(struct virtio_dev *v, unsigned q, unsigned size, uint8_t vector);

/* Device-specific configuration space (generation-checked for 64 bits). */
uint8_t virtio_cfg_read8(const struct virtio_dev *v, uint32_t off);
uint16_t virtio_cfg_read16(const struct virtio_dev *v, uint32_t off);
uint32_t virtio_cfg_read32(const struct virtio_dev *v, uint32_t off);
uint64_t virtio_cfg_read64(const struct virtio_dev *v, uint32_t off);

/* Adds a chain: nout device-readable buffers then nin device-writable ones.
 * indirect: put them in the queue's indirect table (needs INDIRECT_DESC and
 * at most VIRTQ_MAX_INDIRECT buffers; one indirect chain in flight at a
 * time). Publishes it on the avail ring (no notification). Returns the
 * head descriptor id or a negative error. */
int virtq_add(struct virtq *q, const struct virtq_buf *bufs, unsigned nout, unsigned nin, bool indirect);
/* Publishes a caller-built chain starting at descriptor `head` as is (for
 * malformed-ring tests: no bookkeeping, the queue must be reset after). */
void virtq_publish_raw(struct virtq *q, uint16_t head);
/* Notifies the device unless it suppressed notifications (EVENT_IDX
 * avail_event or VRING_USED_F_NO_NOTIFY). Snapshots the interrupt count. */
void virtq_kick(struct virtq *q);
/* Pops one used entry: returns its id and stores its len, or VIRTQ_EMPTY. */
int virtq_poll(struct virtq *q, uint32_t *len);
/* True if the used ring has an entry not yet popped. */
bool virtq_has_used(const struct virtq *q);
/* Waits for a used entry and, on an interrupt-driven queue, an interrupt
 * since the last kick (sti; hlt with a LAPIC timer fallback), then pops it.
 * Returns the id, VIRTIO_E_TIMEOUT, or VIRTIO_E_NOIRQ (the entry is left on
 * the ring) if the used ring advanced without an interrupt. */
int virtq_wait(struct virtq *q, uint32_t *len, uint64_t ms);

/* ---- virtio-blk (5.2) ---- */
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_T_FLUSH 4u
#define VIRTIO_BLK_T_GET_ID 8u
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_CFG_CAPACITY 0 /* le64, 512-byte sectors */
#define VIRTIO_BLK_ID_BYTES 20

/* One request on queue 0: header (type, sector), then `len` bytes at data
 * (device-readable for T_OUT, device-writable otherwise; split into nseg
 * descriptors, 0 = no data descriptor), then the status byte; waits up to
 * ms. Returns the status byte (0-255) or a negative VIRTIO_E_* error;
 * *used_len gets the used-ring length. */
int virtio_blk_request(struct virtio_dev *v, uint32_t type, uint64_t sector, void *data, uint32_t len,
		       unsigned nseg, bool indirect, uint32_t *used_len, uint64_t ms);

#endif
