/* virtio-pci modern transport (see virtio_pci.h for the layout). */
#include "devices/virtio/virtio_pci.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/byteorder.h"
#include "base/log.h"
#include "devices/device.h"

struct virtio_pci {
	struct pci_device pci;
	struct virtio_device *vdev;
	pthread_mutex_t lock;		/* common configuration state */
	uint32_t dfselect;
	uint32_t gfselect;
	uint64_t gfeatures;		/* what the driver wrote, unmasked */
	uint16_t queue_sel;
	uint16_t msix_config;		/* atomic: read by notify paths */
	uint16_t queue_vector[VIRTIO_MAX_QUEUES];	/* atomic */
	unsigned nvec;
	/* For kernel backends (vdev->call_fd_changed set): each vector's
	 * irqfd, and whether signalling it delivers the vector right now
	 * (the MSI-X mask notifier's word). */
	int vec_efd[VIRTIO_MAX_QUEUES + 1];
	bool vec_direct[VIRTIO_MAX_QUEUES + 1];		/* atomic */
	bool mask_notifier;

	pthread_mutex_t isr_lock;	/* ISR and the INTx level move together */
	uint8_t isr;

	unsigned cfg_cap;		/* VIRTIO_PCI_CAP_PCI_CFG offset */
	/* Under the host's cfg_lock (bar_map runs there). */
	bool ioeventfds;
	uint64_t notify_addr;
	struct ratelimit rl;
};

static struct virtio_pci *to_vp(struct pci_device *d)
{
	return d->opaque;
}

/* ---- Interrupts ---- */

static void raise_isr(struct virtio_pci *vp, uint8_t bit)
{
	pthread_mutex_lock(&vp->isr_lock);
	vp->isr |= bit;
	pci_set_irq(&vp->pci, true);
	pthread_mutex_unlock(&vp->isr_lock);
}

static uint8_t read_isr(struct virtio_pci *vp)
{
	uint8_t v;

	pthread_mutex_lock(&vp->isr_lock);
	v = vp->isr;
	vp->isr = 0;
	pci_set_irq(&vp->pci, false);
	pthread_mutex_unlock(&vp->isr_lock);
	return v;
}

/* The vector's MSI-X message, or with MSI-X off the ISR bit and INTA. */
static void fire_msix_or_intx(struct virtio_pci *vp, uint16_t vec, uint8_t isr_bit)
{
	if (pci_msix_enabled(&vp->pci)) {
		if (vec == VIRTIO_MSI_NO_VECTOR || pci_msix_notify(&vp->pci, vec) != -ENODEV)
			return;
		/* MSI-X was disabled under us: INTx it is. */
	}
	raise_isr(vp, isr_bit);
}

static void vp_notify_used(struct virtio_device *vdev, unsigned q)
{
	struct virtio_pci *vp = vdev->transport;

	if (q < VIRTIO_MAX_QUEUES)
		fire_msix_or_intx(vp, __atomic_load_n(&vp->queue_vector[q], __ATOMIC_ACQUIRE),
				  VIRTIO_PCI_ISR_QUEUE);
}

static void vp_notify_config(struct virtio_device *vdev)
{
	struct virtio_pci *vp = vdev->transport;

	fire_msix_or_intx(vp, __atomic_load_n(&vp->msix_config, __ATOMIC_ACQUIRE),
			  VIRTIO_PCI_ISR_CONFIG);
}

/* ---- Kernel backends: queue q's call eventfd (virtio.h) ---- */

static int vp_call_fd(struct virtio_device *vdev, unsigned q)
{
	struct virtio_pci *vp = vdev->transport;
	uint16_t vec;

	if (!vp || q >= vdev->nr_queues)
		return -1;
	vec = __atomic_load_n(&vp->queue_vector[q], __ATOMIC_ACQUIRE);
	if (vec >= vp->nvec || !__atomic_load_n(&vp->vec_direct[vec], __ATOMIC_ACQUIRE))
		return -1;
	return vp->vec_efd[vec];
}

/* Tell the device which queues' call fd may have changed: those on
 * vector vec, or all of them (vec NO_VECTOR). */
static void call_fds_changed(struct virtio_pci *vp, uint16_t vec)
{
	struct virtio_device *vdev = vp->vdev;

	if (!vdev->call_fd_changed)
		return;
	for (unsigned q = 0; q < vdev->nr_queues; q++)
		if (vec == VIRTIO_MSI_NO_VECTOR ||
		    __atomic_load_n(&vp->queue_vector[q], __ATOMIC_ACQUIRE) == vec)
			vdev->call_fd_changed(vdev, q);
}

/* The MSI-X lock is held: no pci_msix_* from here (vec_efd is cached). */
static void vp_vector_mask(void *opaque, struct pci_device *d, unsigned vec, bool masked)
{
	struct virtio_pci *vp = opaque;

	(void)d;
	if (vec >= vp->nvec)
		return;
	__atomic_store_n(&vp->vec_direct[vec], !masked && vp->vec_efd[vec] >= 0,
			 __ATOMIC_RELEASE);
	call_fds_changed(vp, (uint16_t)vec);
}

/* ---- Common configuration ---- */

#define REG(off, len)	((off) << 4 | (len))	/* a register by offset and width */

/* Features word sel (0: bits 0-31, 1: bits 32-63, others read 0). */
static uint32_t features_word(uint64_t v, uint32_t sel)
{
	return sel < 2 ? (uint32_t)(v >> (32 * sel)) : 0;
}

/* Lock held. */
static void transport_reset(struct virtio_pci *vp)
{
	vp->dfselect = vp->gfselect = 0;
	vp->gfeatures = 0;
	vp->queue_sel = 0;
	__atomic_store_n(&vp->msix_config, VIRTIO_MSI_NO_VECTOR, __ATOMIC_RELEASE);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		__atomic_store_n(&vp->queue_vector[q], VIRTIO_MSI_NO_VECTOR, __ATOMIC_RELEASE);
	(void)read_isr(vp);
	call_fds_changed(vp, VIRTIO_MSI_NO_VECTOR);
}

static void common_read(struct virtio_pci *vp, uint64_t off, void *data, unsigned len)
{
	struct virtio_device *vdev = vp->vdev;
	uint8_t buf[0x40] = { 0 };
	struct virtqueue *vq;
	unsigned q;

	if (off >= sizeof(buf) || len > sizeof(buf) - off) {
		memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	q = vp->queue_sel;
	vq = virtio_dev_queue(vdev, q);
	wr32(buf + VIRTIO_PCI_COMMON_DFSELECT, vp->dfselect);
	wr32(buf + VIRTIO_PCI_COMMON_DF, features_word(virtio_dev_host_features(vdev), vp->dfselect));
	wr32(buf + VIRTIO_PCI_COMMON_GFSELECT, vp->gfselect);
	wr32(buf + VIRTIO_PCI_COMMON_GF, features_word(vdev->driver_features, vp->gfselect));
	wr16(buf + VIRTIO_PCI_COMMON_MSIX, vp->msix_config);
	wr16(buf + VIRTIO_PCI_COMMON_NUMQ, (uint16_t)vdev->nr_queues);
	buf[VIRTIO_PCI_COMMON_STATUS] = virtio_dev_get_status(vdev);
	buf[VIRTIO_PCI_COMMON_CFGGENERATION] =
		(uint8_t)__atomic_load_n(&vdev->config_generation, __ATOMIC_ACQUIRE);
	wr16(buf + VIRTIO_PCI_COMMON_Q_SELECT, (uint16_t)q);
	if (vq) {
		wr16(buf + VIRTIO_PCI_COMMON_Q_SIZE, vq->size);
		wr16(buf + VIRTIO_PCI_COMMON_Q_MSIX, vp->queue_vector[q]);
		wr16(buf + VIRTIO_PCI_COMMON_Q_ENABLE, vq->enabled);
		wr16(buf + VIRTIO_PCI_COMMON_Q_NOFF, (uint16_t)q);
		wr64(buf + VIRTIO_PCI_COMMON_Q_DESCLO, vq->desc_gpa);
		wr64(buf + VIRTIO_PCI_COMMON_Q_AVAILLO, vq->avail_gpa);
		wr64(buf + VIRTIO_PCI_COMMON_Q_USEDLO, vq->used_gpa);
	}
	pthread_mutex_unlock(&vp->lock);
	memcpy(data, buf + off, len);
}

static uint16_t valid_vector(const struct virtio_pci *vp, uint64_t v)
{
	return v < vp->nvec ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

/* A 64-bit ring address written whole, or one half of it. */
static bool write_ring_addr(uint64_t *a, unsigned base, uint64_t off, unsigned len, uint64_t v)
{
	if (off == base && len == 8)
		*a = v;
	else if (off == base && len == 4)
		*a = (*a & 0xffffffff00000000ULL) | (uint32_t)v;
	else if (off == base + 4 && len == 4)
		*a = (*a & 0xffffffffULL) | v << 32;
	else
		return false;
	return true;
}

static void common_write(struct virtio_pci *vp, uint64_t off, const void *data, unsigned len)
{
	struct virtio_device *vdev = vp->vdev;
	uint64_t v = rd_le(data, len);
	struct virtqueue *vq;
	bool ok = true;

	pthread_mutex_lock(&vp->lock);
	vq = virtio_dev_queue(vdev, vp->queue_sel);
	switch (off << 4 | len) {
	case REG(VIRTIO_PCI_COMMON_DFSELECT, 4):
		vp->dfselect = (uint32_t)v;
		break;
	case REG(VIRTIO_PCI_COMMON_GFSELECT, 4):
		vp->gfselect = (uint32_t)v;
		break;
	case REG(VIRTIO_PCI_COMMON_GF, 4):
		if (vp->gfselect >= 2)
			break;
		vp->gfeatures &= ~(0xffffffffULL << (32 * vp->gfselect));
		vp->gfeatures |= v << (32 * vp->gfselect);
		virtio_dev_set_driver_features(vdev, vp->gfeatures);
		break;
	case REG(VIRTIO_PCI_COMMON_MSIX, 2):
		__atomic_store_n(&vp->msix_config, valid_vector(vp, v), __ATOMIC_RELEASE);
		break;
	case REG(VIRTIO_PCI_COMMON_STATUS, 1):
		(void)virtio_dev_set_status(vdev, (uint8_t)v);
		if (v == 0)
			transport_reset(vp);
		break;
	case REG(VIRTIO_PCI_COMMON_Q_SELECT, 2):
		vp->queue_sel = (uint16_t)v;
		break;
	default:
		ok = false;
	}
	if (ok || !vq || !virtio_dev_queue_writable(vdev))
		goto out;
	ok = true;
	switch (off << 4 | len) {
	case REG(VIRTIO_PCI_COMMON_Q_SIZE, 2):
		if (v && v <= vq->max_size)
			vq->size = (uint16_t)v;
		break;
	case REG(VIRTIO_PCI_COMMON_Q_MSIX, 2):
		__atomic_store_n(&vp->queue_vector[vp->queue_sel], valid_vector(vp, v),
				 __ATOMIC_RELEASE);
		if (vdev->call_fd_changed)
			vdev->call_fd_changed(vdev, vp->queue_sel);
		break;
	case REG(VIRTIO_PCI_COMMON_Q_ENABLE, 2):
		if (v == 1)
			vq->enabled = true;
		break;
	default:
		ok = write_ring_addr(&vq->desc_gpa, VIRTIO_PCI_COMMON_Q_DESCLO, off, len, v) ||
		     write_ring_addr(&vq->avail_gpa, VIRTIO_PCI_COMMON_Q_AVAILLO, off, len, v) ||
		     write_ring_addr(&vq->used_gpa, VIRTIO_PCI_COMMON_Q_USEDLO, off, len, v);
	}
out:
	pthread_mutex_unlock(&vp->lock);
	if (!ok && ratelimit_allow(&vp->rl))
		log_debug("%s: ignored %u-byte write at common config 0x%llx", vp->pci.name, len,
			  (unsigned long long)off);
}

/* ---- BAR 0 ---- */

static void vp_bar_read(struct pci_device *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
	struct virtio_pci *vp = to_vp(d);
	uint64_t rel = off % VIRTIO_PCI_REGION_SIZE;

	memset(data, 0, len);
	if (bar != VIRTIO_PCI_BAR || rel + len > VIRTIO_PCI_REGION_SIZE)
		return;
	switch (off - rel) {
	case VIRTIO_PCI_COMMON_OFF:
		common_read(vp, rel, data, len);
		break;
	case VIRTIO_PCI_ISR_OFF:
		if (rel == 0)
			((uint8_t *)data)[0] = read_isr(vp);
		break;
	case VIRTIO_PCI_DEVICE_OFF:
		virtio_dev_config_read(vp->vdev, rel, data, len);
		break;
	}
}

static void vp_bar_write(struct pci_device *d, unsigned bar, uint64_t off, const void *data,
			 unsigned len)
{
	struct virtio_pci *vp = to_vp(d);
	uint64_t rel = off % VIRTIO_PCI_REGION_SIZE;

	if (bar != VIRTIO_PCI_BAR || rel + len > VIRTIO_PCI_REGION_SIZE)
		return;
	switch (off - rel) {
	case VIRTIO_PCI_COMMON_OFF:
		common_write(vp, rel, data, len);
		break;
	case VIRTIO_PCI_DEVICE_OFF:
		virtio_dev_config_write(vp->vdev, rel, data, len);
		break;
	case VIRTIO_PCI_NOTIFY_OFF:
		/* Only without an ioeventfd (or with an odd access width). */
		if (rel / VIRTIO_PCI_NOTIFY_MULT < vp->vdev->nr_queues)
			virtio_dev_queue_notify(vp->vdev, (unsigned)(rel / VIRTIO_PCI_NOTIFY_MULT));
		break;
	}
}

/* Config lock held: the BAR moved, or decoding went on or off. */
static void vp_bar_map(struct pci_device *d, unsigned bar, uint64_t addr, bool mapped)
{
	struct virtio_pci *vp = to_vp(d);
	const struct device_ctx *ctx = d->host ? d->host->ctx : NULL;
	unsigned n = vp->vdev->nr_queues;

	if (bar != VIRTIO_PCI_BAR || !ctx)
		return;
	if (vp->ioeventfds) {
		for (unsigned q = 0; q < n; q++)
			if (device_ioeventfd(ctx, vp->notify_addr + q * VIRTIO_PCI_NOTIFY_MULT, 2,
					     false, virtio_dev_kick_fd(vp->vdev, q), false))
				log_warn("%s: cannot drop the ioeventfd of queue %u", d->name, q);
		vp->ioeventfds = false;
	}
	if (!mapped)
		return;
	vp->notify_addr = addr + VIRTIO_PCI_NOTIFY_OFF;
	for (unsigned q = 0; q < n; q++) {
		int ret = device_ioeventfd(ctx, vp->notify_addr + q * VIRTIO_PCI_NOTIFY_MULT, 2,
					   false, virtio_dev_kick_fd(vp->vdev, q), true);

		if (ret) {
			log_warn("%s: KVM_IOEVENTFD for queue %u: %s; notifications exit to "
				 "userspace", d->name, q, strerror(-ret));
			while (q-- > 0)
				(void)device_ioeventfd(ctx, vp->notify_addr +
							    q * VIRTIO_PCI_NOTIFY_MULT,
						       2, false, virtio_dev_kick_fd(vp->vdev, q),
						       false);
			return;
		}
	}
	vp->ioeventfds = true;
}

/* ---- VIRTIO_PCI_CAP_PCI_CFG: a config-space window into the BARs ---- */

static bool cfg_window_target(struct virtio_pci *vp, unsigned *bar, uint32_t *off, uint32_t *len)
{
	struct pci_device *d = &vp->pci;
	unsigned c = vp->cfg_cap;

	*bar = d->cfg[c + VIRTIO_PCI_CAP_BAR];
	*off = pci_cfg_get(d, c + VIRTIO_PCI_CAP_OFFSET, 4);
	*len = pci_cfg_get(d, c + VIRTIO_PCI_CAP_LENGTH, 4);
	return *bar < PCI_NR_BARS && d->bars[*bar].size && (*len == 1 || *len == 2 || *len == 4) &&
	       *off % *len == 0;
}

static bool touches_window_data(struct virtio_pci *vp, unsigned off, unsigned len)
{
	unsigned start = vp->cfg_cap + VIRTIO_PCI_CAP_EXTRA;

	return off < start + 4 && off + len > start;
}

static void vp_config_read(struct pci_device *d, unsigned off, unsigned len, uint32_t *val)
{
	struct virtio_pci *vp = to_vp(d);
	unsigned data = vp->cfg_cap + VIRTIO_PCI_CAP_EXTRA, bar;
	uint32_t boff, blen;
	uint8_t buf[4] = { 0 };

	if (!touches_window_data(vp, off, len) || !cfg_window_target(vp, &bar, &boff, &blen))
		return;
	pci_device_bar_read(d, bar, boff, buf, blen);
	memcpy(&d->cfg[data], buf, sizeof(buf));
	*val = pci_cfg_get(d, off, len);
}

static void vp_config_write(struct pci_device *d, unsigned off, unsigned len, uint32_t val)
{
	struct virtio_pci *vp = to_vp(d);
	unsigned data = vp->cfg_cap + VIRTIO_PCI_CAP_EXTRA, bar;
	uint32_t boff, blen;

	(void)val;
	if (!touches_window_data(vp, off, len) || !cfg_window_target(vp, &bar, &boff, &blen))
		return;
	pci_device_bar_write(d, bar, boff, &d->cfg[data], blen);
}

static const struct pci_device_ops vp_pci_ops = {
	.config_read = vp_config_read,
	.config_write = vp_config_write,
	.bar_read = vp_bar_read,
	.bar_write = vp_bar_write,
	.bar_map = vp_bar_map,
};

/* ---- Construction ---- */

static int add_virtio_cap(struct pci_device *d, uint8_t type, uint32_t off, uint32_t len,
		    unsigned extra)
{
	int cap = pci_device_add_cap(d, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_LEN + extra);

	if (cap < 0)
		return cap;
	pci_cfg_set8(d, cap + 2, (uint8_t)(VIRTIO_PCI_CAP_LEN + extra));
	pci_cfg_set8(d, cap + 3, type);
	pci_cfg_set8(d, cap + VIRTIO_PCI_CAP_BAR, VIRTIO_PCI_BAR);
	pci_cfg_set32(d, cap + VIRTIO_PCI_CAP_OFFSET, off);
	pci_cfg_set32(d, cap + VIRTIO_PCI_CAP_LENGTH, len);
	return cap;
}

static int build_config_space(struct virtio_pci *vp)
{
	struct pci_device *d = &vp->pci;
	const struct virtio_device_ops *ops = vp->vdev->ops;
	int ret, cap;

	if ((ret = pci_device_add_bar(d, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, PCI_BARF_64)) ||
	    (ret = pci_device_add_bar(d, VIRTIO_PCI_MSIX_BAR, VIRTIO_PCI_MSIX_BAR_SIZE, 0)))
		return ret;
	ret = pci_device_add_msix(d, vp->nvec, VIRTIO_PCI_MSIX_BAR, VIRTIO_PCI_MSIX_TABLE_OFF,
				  VIRTIO_PCI_MSIX_BAR, VIRTIO_PCI_MSIX_PBA_OFF);
	if (ret < 0)
		return ret;
	cap = add_virtio_cap(d, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN, 0);
	if (cap < 0)
		return cap;
	cap = add_virtio_cap(d, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
		       vp->vdev->nr_queues * VIRTIO_PCI_NOTIFY_MULT, 4);
	if (cap < 0)
		return cap;
	pci_cfg_set32(d, cap + VIRTIO_PCI_CAP_EXTRA, VIRTIO_PCI_NOTIFY_MULT);
	cap = add_virtio_cap(d, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, VIRTIO_PCI_ISR_LEN, 0);
	if (cap < 0)
		return cap;
	if (ops->config_size) {
		uint32_t n = ops->config_size < VIRTIO_PCI_REGION_SIZE ?
			     (uint32_t)ops->config_size : VIRTIO_PCI_REGION_SIZE;

		cap = add_virtio_cap(d, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF, n, 0);
		if (cap < 0)
			return cap;
	}
	cap = add_virtio_cap(d, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 4);
	if (cap < 0)
		return cap;
	vp->cfg_cap = (unsigned)cap;
	pci_cfg_set8(d, cap + VIRTIO_PCI_CAP_BAR, 0);
	pci_cfg_set_wmask(d, cap + VIRTIO_PCI_CAP_BAR, 1, 0xff);
	pci_cfg_set_wmask(d, cap + VIRTIO_PCI_CAP_OFFSET, 4, 0xffffffff);
	pci_cfg_set_wmask(d, cap + VIRTIO_PCI_CAP_LENGTH, 4, 0xffffffff);
	pci_cfg_set_wmask(d, cap + VIRTIO_PCI_CAP_EXTRA, 4, 0xffffffff);
	pci_device_set_intx_pin(d, PCI_INTX_PIN_A);
	return 0;
}

int virtio_pci_create(struct pci_host *h, struct virtio_device *vdev, uint32_t pci_class,
		      struct virtio_pci **out)
{
	struct virtio_pci *vp;
	uint32_t id;
	int ret;

	*out = NULL;
	if (!vdev->ops || vdev->nr_queues == 0 || vdev->nr_queues > VIRTIO_MAX_QUEUES)
		return -EINVAL;
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	id = vdev->ops->device_id;
	vp->vdev = vdev;
	vp->nvec = vdev->nr_queues + 1;
	vp->rl = (struct ratelimit)RATELIMIT_INIT(5000, 5);
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->isr_lock, NULL);
	pci_device_init(&vp->pci, vdev->ops->name, &vp_pci_ops, vp, VIRTIO_PCI_VENDOR,
			(uint16_t)(VIRTIO_PCI_DEVICE_BASE + id), pci_class ? pci_class : 0xff0000,
			VIRTIO_PCI_REVISION, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_SUBSYS_BASE + id));
	pthread_mutex_lock(&vp->lock);
	transport_reset(vp);
	pthread_mutex_unlock(&vp->lock);
	ret = build_config_space(vp);
	if (ret)
		goto err;
	vdev->transport = vp;
	vdev->notify_used = vp_notify_used;
	vdev->notify_config = vp_notify_config;
	ret = pci_register_device(h, &vp->pci);
	if (ret < 0)
		goto err;
	if (vdev->call_fd_changed) {
		/* The eventfds are stable while registered; the notifier
		 * reports every vector's state at once. */
		for (unsigned v = 0; v < vp->nvec; v++)
			vp->vec_efd[v] = pci_msix_vector_eventfd(&vp->pci, v);
		vdev->call_fd = vp_call_fd;
		pci_msix_set_mask_notifier(&vp->pci, vp_vector_mask, vp);
		vp->mask_notifier = true;
	}
	log_debug("%s: PCI 00:%02x.0, BAR0 0x%llx, BAR2 0x%llx, INTA GSI %u", vp->pci.name,
		  vp->pci.slot, (unsigned long long)vp->pci.bars[VIRTIO_PCI_BAR].default_addr,
		  (unsigned long long)vp->pci.bars[VIRTIO_PCI_MSIX_BAR].default_addr, vp->pci.gsi);
	*out = vp;
	return 0;
err:
	vdev->transport = NULL;
	vdev->notify_used = NULL;
	vdev->notify_config = NULL;
	pci_device_release(&vp->pci);
	pthread_mutex_destroy(&vp->lock);
	pthread_mutex_destroy(&vp->isr_lock);
	free(vp);
	return ret;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	if (vp->mask_notifier)
		pci_msix_set_mask_notifier(&vp->pci, NULL, NULL);
	vp->vdev->call_fd = NULL;
	pci_unregister_device(&vp->pci);
	vp->vdev->transport = NULL;
	vp->vdev->notify_used = NULL;
	vp->vdev->notify_config = NULL;
	pci_device_release(&vp->pci);
	pthread_mutex_destroy(&vp->lock);
	pthread_mutex_destroy(&vp->isr_lock);
	free(vp);
}

void virtio_pci_reset(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	virtio_dev_reset(vp->vdev);
	transport_reset(vp);
	pthread_mutex_unlock(&vp->lock);
	pci_device_reset(&vp->pci);
}

struct pci_device *virtio_pci_dev(struct virtio_pci *vp)
{
	return &vp->pci;
}

/* ---- Snapshots ---- */

json_t *virtio_pci_save(struct virtio_pci *vp)
{
	json_t *vectors = json_array();
	json_t *o;

	pthread_mutex_lock(&vp->lock);
	for (unsigned q = 0; q < vp->vdev->nr_queues; q++)
		json_array_append_new(vectors, json_integer(vp->queue_vector[q]));
	pthread_mutex_lock(&vp->isr_lock);
	o = json_pack("{s:i, s:o, s:I, s:I, s:i, s:i}",
		      "msix_config", vp->msix_config, "queue_vectors", vectors,
		      "dfselect", (json_int_t)vp->dfselect, "gfselect", (json_int_t)vp->gfselect,
		      "queue_select", vp->queue_sel, "isr", vp->isr);
	pthread_mutex_unlock(&vp->isr_lock);
	pthread_mutex_unlock(&vp->lock);
	return o;
}

static int load_uint(json_t *o, const char *key, uint64_t max, uint64_t *out, char *err,
		     size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max) {
		snprintf(err, errlen, "transport: %s: expected an integer from 0 to %llu", key,
			 (unsigned long long)max);
		return -EINVAL;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int load_vector(const struct virtio_pci *vp, json_t *v, const char *what, uint16_t *out,
		       char *err, size_t errlen)
{
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;

	if (n != VIRTIO_MSI_NO_VECTOR && (n < 0 || n >= (json_int_t)vp->nvec)) {
		snprintf(err, errlen, "transport: %s: not an MSI-X vector below %u or %u", what,
			 vp->nvec, VIRTIO_MSI_NO_VECTOR);
		return -EINVAL;
	}
	*out = (uint16_t)n;
	return 0;
}

int virtio_pci_load(struct virtio_pci *vp, json_t *saved, char *err, size_t errlen)
{
	uint16_t msix_config, vectors[VIRTIO_MAX_QUEUES];
	uint64_t dfselect, gfselect, queue_sel, isr;
	json_t *qv = json_object_get(saved, "queue_vectors");
	unsigned nq = vp->vdev->nr_queues;
	int ret;

	if (!json_is_object(saved)) {
		snprintf(err, errlen, "transport: expected an object");
		return -EINVAL;
	}
	if ((ret = load_vector(vp, json_object_get(saved, "msix_config"), "msix_config",
			       &msix_config, err, errlen)) ||
	    (ret = load_uint(saved, "dfselect", UINT32_MAX, &dfselect, err, errlen)) ||
	    (ret = load_uint(saved, "gfselect", UINT32_MAX, &gfselect, err, errlen)) ||
	    (ret = load_uint(saved, "queue_select", UINT16_MAX, &queue_sel, err, errlen)) ||
	    (ret = load_uint(saved, "isr", VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG, &isr, err,
			     errlen)))
		return ret;
	if (!json_is_array(qv) || json_array_size(qv) != nq) {
		snprintf(err, errlen, "transport: queue_vectors: expected %u vectors", nq);
		return -EINVAL;
	}
	for (unsigned q = 0; q < nq; q++)
		if ((ret = load_vector(vp, json_array_get(qv, q), "queue_vectors", &vectors[q], err,
				       errlen)))
			return ret;

	pthread_mutex_lock(&vp->lock);
	transport_reset(vp);
	vp->dfselect = (uint32_t)dfselect;
	vp->gfselect = (uint32_t)gfselect;
	vp->gfeatures = vp->vdev->driver_features;
	vp->queue_sel = (uint16_t)queue_sel;
	__atomic_store_n(&vp->msix_config, msix_config, __ATOMIC_RELEASE);
	for (unsigned q = 0; q < nq; q++)
		__atomic_store_n(&vp->queue_vector[q], vectors[q], __ATOMIC_RELEASE);
	call_fds_changed(vp, VIRTIO_MSI_NO_VECTOR);
	pthread_mutex_unlock(&vp->lock);
	if (isr)
		raise_isr(vp, (uint8_t)isr);
	return 0;
}
