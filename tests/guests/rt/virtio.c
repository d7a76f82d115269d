/* Modern virtio-pci driver for test guests. See virtio.h. */
#include "rt/virtio.h"
#include "rt/apic.h"

#define RESET_TIMEOUT_MS 1000
#define RING_BYTES 1024
#define RING_POOL_QUEUES 4 /* .bss is cleared at boot: keep it small */
/* Offsets inside one queue's RING_BYTES: desc, avail, used, indirect. */
#define RING_AVAIL_OFF (VIRTQ_MAX_SIZE * 16)
#define RING_USED_OFF (RING_AVAIL_OFF + 72)
#define RING_INDIRECT_OFF (RING_USED_OFF + 264)
_Static_assert(RING_AVAIL_OFF >= VIRTQ_MAX_SIZE * 16, "desc");
_Static_assert(RING_USED_OFF - RING_AVAIL_OFF >= 6 + 2 * VIRTQ_MAX_SIZE, "avail");
_Static_assert(RING_INDIRECT_OFF - RING_USED_OFF >= 6 + 8 * VIRTQ_MAX_SIZE, "used");
_Static_assert(RING_INDIRECT_OFF + 16 * VIRTQ_MAX_INDIRECT <= RING_BYTES, "ring pool");

static uint8_t ring_pool[RING_POOL_QUEUES][RING_BYTES] __attribute__((aligned(4096)));
static unsigned ring_pool_used;

#define VOL8(x) (*(volatile uint8_t *)&(x))
#define VOL16(x) (*(volatile uint16_t *)&(x))
#define VOL32(x) (*(volatile uint32_t *)&(x))

/* Store-load barrier (a locked instruction; the emulator has no mfence). */
static inline void full_barrier(void)
{
	__asm__ volatile("lock orl $0, (%%rsp)" ::: "memory", "cc");
}

/* memset for larger blocks: rep stosq is 8x fewer emulated iterations. */
static void zero(void *p, size_t n)
{
	size_t q = n / 8, r = n % 8;
	__asm__ volatile("rep stosq" : "+D"(p), "+c"(q) : "a"(0ull) : "memory");
	__asm__ volatile("rep stosb" : "+D"(p), "+c"(r) : "a"(0ull) : "memory");
}

const char *virtio_strerror(int err)
{
	switch (err) {
	case VIRTIO_E_NODEV: return "no such device";
	case VIRTIO_E_CAPS: return "missing virtio capability";
	case VIRTIO_E_BAR: return "unusable BAR";
	case VIRTIO_E_RESET: return "reset did not complete";
	case VIRTIO_E_VERSION: return "VERSION_1 not offered";
	case VIRTIO_E_FEATURES_OK: return "FEATURES_OK not accepted";
	case VIRTIO_E_QUEUE: return "queue unavailable";
	case VIRTIO_E_MSIX: return "MSI-X setup failed";
	case VIRTIO_E_FULL: return "queue full";
	case VIRTIO_E_TIMEOUT: return "timeout";
	case VIRTIO_E_NOIRQ: return "used ring advanced without an interrupt";
	case VIRTIO_E_USED: return "bad used ring entry";
	default: return err >= 0 ? "ok" : "?";
	}
}

/* ---- Common configuration ---- */

static uint8_t c_rd8(const struct virtio_dev *v, unsigned o) { return mmio_read8(v->common + o); }
static uint16_t c_rd16(const struct virtio_dev *v, unsigned o) { return mmio_read16(v->common + o); }
static uint32_t c_rd32(const struct virtio_dev *v, unsigned o) { return mmio_read32(v->common + o); }
static void c_wr8(const struct virtio_dev *v, unsigned o, uint8_t x) { mmio_write8(v->common + o, x); }
static void c_wr16(const struct virtio_dev *v, unsigned o, uint16_t x) { mmio_write16(v->common + o, x); }
static void c_wr32(const struct virtio_dev *v, unsigned o, uint32_t x) { mmio_write32(v->common + o, x); }
static void c_wr64(const struct virtio_dev *v, unsigned o, uint64_t x)
{
	c_wr32(v, o, (uint32_t)x);
	c_wr32(v, o + 4, (uint32_t)(x >> 32));
}

uint8_t virtio_status(const struct virtio_dev *v) { return c_rd8(v, VIRTIO_COMMON_STATUS); }
void virtio_set_status(struct virtio_dev *v, uint8_t s) { c_wr8(v, VIRTIO_COMMON_STATUS, s); }

void virtio_driver_ok(struct virtio_dev *v)
{
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
}

int virtio_reset(struct virtio_dev *v)
{
	virtio_set_status(v, 0);
	if (!virtio_status(v))
		return 0;
	uint64_t deadline = rt_deadline_ms(RESET_TIMEOUT_MS);
	while (virtio_status(v)) {
		if (rt_expired(deadline))
			return VIRTIO_E_RESET;
		rt_cpu_relax();
	}
	return 0;
}

/* ---- Discovery ---- */

static struct pci_dev *find_fn(uint16_t id, unsigned n)
{
	for (unsigned k = 0; k < pci_scan(); k++) {
		struct pci_dev *d = pci_dev_at(k);
		if (d->vendor != VIRTIO_PCI_VENDOR)
			continue;
		bool match = d->device == VIRTIO_PCI_DEVICE_MODERN(id);
		if (!match && d->device >= 0x1000 && d->device < 0x1040)
			match = pci_cfg_read16(d, PCI_SUBSYS_ID) == id;
		if (match && n-- == 0)
			return d;
	}
	return NULL;
}

int virtio_probe(struct virtio_dev *v, uint16_t device_id, unsigned n)
{
	zero(v, sizeof(*v));
	v->id = device_id;
	v->pci = find_fn(device_id, n);
	if (!v->pci)
		return VIRTIO_E_NODEV;

	struct pci_dev *d = v->pci;
	bool bad_bar = false;
	for (uint8_t p = 0; (p = pci_find_cap(d, PCI_CAP_ID_VNDR, p));) {
		uint32_t hdr = pci_cfg_read32(d, p);
		uint8_t type = (uint8_t)(hdr >> 24), cap_len = (uint8_t)(hdr >> 16);
		uint64_t *slot = type == VIRTIO_PCI_CAP_COMMON ? &v->common
			       : type == VIRTIO_PCI_CAP_NOTIFY ? &v->notify
			       : type == VIRTIO_PCI_CAP_ISR    ? &v->isr
			       : type == VIRTIO_PCI_CAP_DEVICE ? &v->device
							       : NULL;
		if (!slot || *slot || cap_len < 16)
			continue; /* unknown type, or not the first of its type */
		uint8_t bar = pci_cfg_read8(d, p + 4);
		if (bar > 5)
			continue;
		uint32_t off = pci_cfg_read32(d, p + 8), len = pci_cfg_read32(d, p + 12);
		if ((type == VIRTIO_PCI_CAP_COMMON && len < VIRTIO_COMMON_Q_USEDHI + 4) ||
		    (type == VIRTIO_PCI_CAP_NOTIFY && len < 2) || (type == VIRTIO_PCI_CAP_ISR && len < 1))
			continue; /* too short to be usable */
		if (type == VIRTIO_PCI_CAP_NOTIFY) {
			if (cap_len < 20)
				continue;
			v->notify_mul = pci_cfg_read32(d, p + 16);
		}
		uint64_t base = pci_bar_map(d, bar);
		/* The BAR's size is only known when this driver sized it. */
		if (!base || (d->bar_size[bar] && (uint64_t)off + len > d->bar_size[bar])) {
			bad_bar = true;
			continue;
		}
		*slot = base + off;
		if (type == VIRTIO_PCI_CAP_DEVICE)
			v->device_len = len;
	}
	if (!v->common || !v->notify)
		return bad_bar ? VIRTIO_E_BAR : VIRTIO_E_CAPS;
	pci_enable(d);
	return 0;
}

int virtio_start(struct virtio_dev *v, uint64_t want)
{
	int r = virtio_reset(v);
	if (r)
		return r;
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE);
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);

	c_wr32(v, VIRTIO_COMMON_DFSELECT, 0);
	uint64_t lo = c_rd32(v, VIRTIO_COMMON_DF);
	c_wr32(v, VIRTIO_COMMON_DFSELECT, 1);
	uint64_t hi = c_rd32(v, VIRTIO_COMMON_DF);
	v->offered = hi << 32 | lo;
	if (!(v->offered & VIRTIO_F(VIRTIO_F_VERSION_1))) {
		virtio_set_status(v, VIRTIO_S_FAILED);
		return VIRTIO_E_VERSION;
	}
	v->features = v->offered & (want | VIRTIO_F(VIRTIO_F_VERSION_1));
	c_wr32(v, VIRTIO_COMMON_GFSELECT, 0);
	c_wr32(v, VIRTIO_COMMON_GF, (uint32_t)v->features);
	c_wr32(v, VIRTIO_COMMON_GFSELECT, 1);
	c_wr32(v, VIRTIO_COMMON_GF, (uint32_t)(v->features >> 32));

	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	if (!(virtio_status(v) & VIRTIO_S_FEATURES_OK)) {
		virtio_set_status(v, VIRTIO_S_FAILED);
		return VIRTIO_E_FEATURES_OK;
	}
	v->num_queues = c_rd16(v, VIRTIO_COMMON_NUMQ);
	return 0;
}

/* ---- Interrupts ---- */

static uint32_t bsp_apic_id = ~0u;

static void vq_irq(unsigned vector, void *arg)
{
	(void)vector;
	struct virtq *q = arg;
	q->irqs++;
}

static void config_irq(unsigned vector, void *arg)
{
	(void)vector;
	struct virtio_dev *v = arg;
	v->config_irqs++;
}

static int msix_ready(struct virtio_dev *v)
{
	if (v->msix_entries)
		return 0;
	apic_init();
	if (bsp_apic_id == ~0u)
		bsp_apic_id = rt_lapic_id();
	unsigned n = pci_msix_init(v->pci);
	if (!n)
		return VIRTIO_E_MSIX;
	/* Entries come out of reset masked; each is unmasked when programmed. */
	pci_msix_enable(v->pci, true, false);
	v->msix_entries = (uint16_t)n;
	return 0;
}

int virtio_config_irq(struct virtio_dev *v, uint8_t vector)
{
	if (!vector) {
		c_wr16(v, VIRTIO_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
		v->config_vector = 0;
		return 0;
	}
	int r = msix_ready(v);
	if (r)
		return r;
	rt_set_irq_handler(vector, config_irq, v);
	pci_msix_set(v->pci, 0, bsp_apic_id, vector, false);
	c_wr16(v, VIRTIO_COMMON_MSIX, 0);
	if (c_rd16(v, VIRTIO_COMMON_MSIX) != 0)
		return VIRTIO_E_MSIX;
	v->config_vector = vector;
	return 0;
}

/* ---- Queues ---- */

int virtio_queue_setup(struct virtio_dev *v, unsigned qi, unsigned size, uint8_t vector)
{
	if (qi >= VIRTIO_MAX_QUEUES || qi >= v->num_queues)
		return VIRTIO_E_QUEUE;
	struct virtq *q = &v->vq[qi];
	c_wr16(v, VIRTIO_COMMON_Q_SELECT, (uint16_t)qi);
	unsigned max = c_rd16(v, VIRTIO_COMMON_Q_SIZE);
	if (!max)
		return VIRTIO_E_QUEUE;
	if (size > max)
		size = max;
	if (size > VIRTQ_MAX_SIZE)
		size = VIRTQ_MAX_SIZE;
	while (size & (size - 1))
		size &= size - 1;
	if (!size)
		return VIRTIO_E_QUEUE;

	if (!q->desc) {
		if (ring_pool_used == RING_POOL_QUEUES)
			return VIRTIO_E_QUEUE;
		uint8_t *mem = ring_pool[ring_pool_used++];
		q->desc = (struct vring_desc *)mem;
		q->avail = (struct vring_avail *)(mem + RING_AVAIL_OFF);
		q->used = (struct vring_used *)(mem + RING_USED_OFF);
		q->indirect = (struct vring_desc *)(mem + RING_INDIRECT_OFF);
	}
	/* Descriptors are written before use; of the rings only the flags,
	 * indexes and event fields must start at zero. */
	memset(q->avail, 0, 6 + 2 * size);
	memset(q->used, 0, 6 + 8 * size);
	q->dev = v;
	q->index = (uint16_t)qi;
	q->size = (uint16_t)size;
	for (unsigned i = 0; i < size; i++)
		q->desc[i].next = (uint16_t)(i + 1);
	q->free_head = 0;
	q->num_free = (uint16_t)size;
	q->avail_idx = q->last_used = q->kicked_idx = 0;
	q->indirect_busy = false;
	q->indirect_head = -1;
	zero(q->chain_len, sizeof(q->chain_len));

	c_wr16(v, VIRTIO_COMMON_Q_SIZE, (uint16_t)size);
	c_wr64(v, VIRTIO_COMMON_Q_DESCLO, (uintptr_t)q->desc);
	c_wr64(v, VIRTIO_COMMON_Q_AVAILLO, (uintptr_t)q->avail);
	c_wr64(v, VIRTIO_COMMON_Q_USEDLO, (uintptr_t)q->used);
	q->vector = 0;
	q->msix_entry = VIRTIO_MSI_NO_VECTOR;
	if (vector) {
		int r = msix_ready(v);
		if (r)
			return r;
		unsigned entry = 1 + qi;
		if (entry >= v->msix_entries)
			return VIRTIO_E_MSIX;
		rt_set_irq_handler(vector, vq_irq, q);
		pci_msix_set(v->pci, entry, bsp_apic_id, vector, false);
		c_wr16(v, VIRTIO_COMMON_Q_MSIX, (uint16_t)entry);
		if (c_rd16(v, VIRTIO_COMMON_Q_MSIX) != entry)
			return VIRTIO_E_MSIX;
		q->vector = vector;
		q->msix_entry = (uint16_t)entry;
	} else if (v->msix_entries) {
		c_wr16(v, VIRTIO_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	}
	uint16_t noff = c_rd16(v, VIRTIO_COMMON_Q_NOFF);
	q->notify_addr = v->notify + (uint64_t)noff * v->notify_mul;
	c_wr16(v, VIRTIO_COMMON_Q_ENABLE, 1);
	return 0;
}

/* ---- Device configuration ---- */

uint8_t virtio_cfg_read8(const struct virtio_dev *v, uint32_t off) { return mmio_read8(v->device + off); }
uint16_t virtio_cfg_read16(const struct virtio_dev *v, uint32_t off) { return mmio_read16(v->device + off); }
uint32_t virtio_cfg_read32(const struct virtio_dev *v, uint32_t off) { return mmio_read32(v->device + off); }

uint64_t virtio_cfg_read64(const struct virtio_dev *v, uint32_t off)
{
	uint64_t val = 0;
	for (int tries = 0; tries < 8; tries++) {
		uint8_t gen = c_rd8(v, VIRTIO_COMMON_CFGGEN);
		uint64_t lo = mmio_read32(v->device + off);
		uint64_t hi = mmio_read32(v->device + off + 4);
		val = hi << 32 | lo;
		if (c_rd8(v, VIRTIO_COMMON_CFGGEN) == gen)
			break;
	}
	return val;
}

/* ---- Virtqueue operations ---- */

static uint16_t *used_event(struct virtq *q) { return &q->avail->ring[q->size]; }
static uint16_t *avail_event(struct virtq *q) { return (uint16_t *)&q->used->ring[q->size]; }

static void publish(struct virtq *q, uint16_t head)
{
	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	rt_barrier(); /* x86 keeps stores in order: the entry before the index */
	q->avail_idx++;
	VOL16(q->avail->idx) = q->avail_idx;
}

int virtq_add(struct virtq *q, const struct virtq_buf *b, unsigned nout, unsigned nin, bool indirect)
{
	unsigned n = nout + nin;
	if (!n || !q->size)
		return VIRTIO_E_QUEUE;
	uint16_t head = q->free_head;

	if (indirect) {
		if (!virtio_has(q->dev, VIRTIO_F_INDIRECT_DESC) || n > VIRTQ_MAX_INDIRECT)
			return VIRTIO_E_QUEUE;
		if (q->indirect_busy || !q->num_free)
			return VIRTIO_E_FULL;
		for (unsigned i = 0; i < n; i++) {
			struct vring_desc *t = &q->indirect[i];
			t->addr = (uintptr_t)b[i].addr;
			t->len = b[i].len;
			t->flags = (uint16_t)((i >= nout ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0));
			t->next = (uint16_t)(i + 1 < n ? i + 1 : 0);
		}
		struct vring_desc *d = &q->desc[head];
		q->free_head = d->next;
		d->addr = (uintptr_t)q->indirect;
		d->len = (uint32_t)(n * sizeof(struct vring_desc));
		d->flags = VRING_DESC_F_INDIRECT;
		q->num_free--;
		q->chain_len[head] = 1;
		q->indirect_busy = true;
		q->indirect_head = (int16_t)head;
	} else {
		if (n > q->num_free)
			return VIRTIO_E_FULL;
		uint16_t i = head;
		for (unsigned k = 0; k < n; k++) {
			struct vring_desc *d = &q->desc[i];
			d->addr = (uintptr_t)b[k].addr;
			d->len = b[k].len;
			d->flags = (uint16_t)((k >= nout ? VRING_DESC_F_WRITE : 0) | (k + 1 < n ? VRING_DESC_F_NEXT : 0));
			/* d->next already links to the next free descriptor. */
			i = d->next;
		}
		q->free_head = i;
		q->num_free = (uint16_t)(q->num_free - n);
		q->chain_len[head] = (uint16_t)n;
	}
	publish(q, head);
	return head;
}

void virtq_publish_raw(struct virtq *q, uint16_t head)
{
	publish(q, head);
}

void virtq_kick(struct virtq *q)
{
	q->irqs_at_kick = q->irqs;
	full_barrier(); /* avail->idx store before the event/flags load */
	uint16_t new_idx = q->avail_idx, old_idx = q->kicked_idx;
	bool notify;
	if (virtio_has(q->dev, VIRTIO_F_EVENT_IDX)) {
		uint16_t ev = VOL16(*avail_event(q));
		notify = (uint16_t)(new_idx - ev - 1) < (uint16_t)(new_idx - old_idx);
	} else {
		notify = !(VOL16(q->used->flags) & VRING_USED_F_NO_NOTIFY);
	}
	q->kicked_idx = new_idx;
	if (notify)
		mmio_write16(q->notify_addr, q->index);
}

bool virtq_has_used(const struct virtq *q)
{
	return VOL16(q->used->idx) != q->last_used;
}

int virtq_poll(struct virtq *q, uint32_t *len)
{
	if (!virtq_has_used(q))
		return VIRTQ_EMPTY;
	rt_barrier(); /* x86 keeps loads in order: the index before the entry */
	struct vring_used_elem *e = &q->used->ring[q->last_used & (q->size - 1)];
	uint32_t id = VOL32(e->id), l = VOL32(e->len);
	q->last_used++;
	if (virtio_has(q->dev, VIRTIO_F_EVENT_IDX))
		VOL16(*used_event(q)) = q->last_used;
	if (len)
		*len = l;
	if (id >= q->size || !q->chain_len[id])
		return VIRTIO_E_USED;

	uint16_t last = (uint16_t)id;
	for (unsigned k = 1; k < q->chain_len[id]; k++)
		last = q->desc[last].next;
	q->desc[last].next = q->free_head;
	q->free_head = (uint16_t)id;
	q->num_free = (uint16_t)(q->num_free + q->chain_len[id]);
	q->chain_len[id] = 0;
	if (q->indirect_head == (int16_t)id) {
		q->indirect_busy = false;
		q->indirect_head = -1;
	}
	return (int)id;
}

static bool used_and_irq(void *arg)
{
	struct virtq *q = arg;
	return virtq_has_used(q) && q->irqs != q->irqs_at_kick;
}

static bool used_only(void *arg)
{
	return virtq_has_used(arg);
}

int virtq_wait(struct virtq *q, uint32_t *len, uint64_t ms)
{
	if (q->vector) {
		if (!apic_wait(used_and_irq, q, ms)) {
			if (!virtq_has_used(q))
				return VIRTIO_E_TIMEOUT;
			return VIRTIO_E_NOIRQ;
		}
	} else {
		uint64_t deadline = rt_deadline_ms(ms);
		while (!used_only(q)) {
			if (rt_expired(deadline))
				return VIRTIO_E_TIMEOUT;
			rt_cpu_relax();
		}
	}
	return virtq_poll(q, len);
}

/* ---- virtio-blk ---- */

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

int virtio_blk_request(struct virtio_dev *v, uint32_t type, uint64_t sector, void *data, uint32_t len,
		       unsigned nseg, bool indirect, uint32_t *used_len, uint64_t ms)
{
	static struct blk_hdr hdr;
	static volatile uint8_t status;
	struct virtq_buf b[VIRTQ_MAX_INDIRECT];

	if (nseg > VIRTQ_MAX_INDIRECT - 2 || (nseg && len < nseg))
		return VIRTIO_E_QUEUE;
	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	status = 0xff;
	unsigned n = 0;
	b[n++] = (struct virtq_buf){&hdr, sizeof(hdr)};
	uint32_t left = len;
	for (unsigned k = 0; k < nseg; k++) {
		uint32_t piece = k + 1 == nseg ? left : len / nseg;
		b[n++] = (struct virtq_buf){(uint8_t *)data + (len - left), piece};
		left -= piece;
	}
	unsigned nout = type == VIRTIO_BLK_T_OUT ? n : 1;
	b[n++] = (struct virtq_buf){(void *)&status, 1};
	struct virtq *q = &v->vq[0];
	int r = virtq_add(q, b, nout, n - nout, indirect);
	if (r < 0)
		return r;
	virtq_kick(q);
	r = virtq_wait(q, used_len, ms);
	if (r < 0)
		return r;
	return status;
}
