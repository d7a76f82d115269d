/* MSI-X (PCI Local Bus 3.0, 6.8.2): the capability, the vector table and
 * the pending bit array. A vector is masked while its entry's mask bit or
 * the function mask is set, or MSI-X is disabled; a notify then sets its
 * pending bit, and the first moment it is unmasked (entry, function mask or
 * enable), the pending bit is cleared and the message sent. The routing
 * hook sees a vector's message only when it is unmasked and differs from
 * what was routed before, so masked reprogramming costs nothing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci/pci_internal.h"
#include "base/log.h"

static uint32_t rd32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static struct pci_msix_msg entry_msg(const struct pci_msix *m, unsigned v)
{
	const uint8_t *e = m->table + (size_t)v * PCI_MSIX_ENTRY_SIZE;

	return (struct pci_msix_msg){
		.addr = (uint64_t)rd32le(e + PCI_MSIX_ENTRY_ADDR_HI) << 32 |
			rd32le(e + PCI_MSIX_ENTRY_ADDR_LO),
		.data = rd32le(e + PCI_MSIX_ENTRY_DATA),
		.valid = true,
	};
}

static bool vector_masked(const struct pci_msix *m, unsigned v)
{
	const uint8_t *e = m->table + (size_t)v * PCI_MSIX_ENTRY_SIZE;

	return !m->enabled || m->fmask || (e[PCI_MSIX_ENTRY_CTRL] & PCI_MSIX_ENTRY_MASKBIT);
}

static bool test_pending(const struct pci_msix *m, unsigned v)
{
	return m->pba[v / 64] & (1ULL << (v % 64));
}

static void set_pending(struct pci_msix *m, unsigned v, bool on)
{
	if (on)
		m->pba[v / 64] |= 1ULL << (v % 64);
	else
		m->pba[v / 64] &= ~(1ULL << (v % 64));
}

/* Lock held. Route and send, the message being current. */
static void fire(struct pci_msix *m, unsigned v, const struct pci_msix_msg *msg)
{
	struct pci_host *h = m->dev->host;

	m->fired++;
	if (h && h->irq && h->irq->msi_fire)
		h->irq->msi_fire(h, m->dev, v, msg->addr, msg->data);
}

/* Lock held. Vector v may have become unmasked or changed its message. */
static void vector_update(struct pci_msix *m, unsigned v)
{
	struct pci_host *h = m->dev->host;
	struct pci_msix_msg msg;

	if (vector_masked(m, v))
		return;
	msg = entry_msg(m, v);
	if (!m->routed[v].valid || m->routed[v].addr != msg.addr || m->routed[v].data != msg.data) {
		m->routed[v] = msg;
		if (h && h->irq && h->irq->msi_route)
			h->irq->msi_route(h, m->dev, v, msg.addr, msg.data);
	}
	if (test_pending(m, v)) {
		set_pending(m, v, false);
		fire(m, v, &msg);
	}
}

int pci_msix_create(struct pci_device *d, unsigned nvec, unsigned table_bar, uint32_t table_off,
		    unsigned pba_bar, uint32_t pba_off)
{
	struct pci_msix *m;
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->dev = d;
	m->nvec = nvec;
	m->table_bar = table_bar;
	m->table_off = table_off;
	m->pba_bar = pba_bar;
	m->pba_off = pba_off;
	m->table = calloc(nvec, PCI_MSIX_ENTRY_SIZE);
	m->pba = calloc((nvec + 63) / 64, sizeof(uint64_t));
	m->routed = calloc(nvec, sizeof(*m->routed));
	if (!m->table || !m->pba || !m->routed) {
		ret = -ENOMEM;
		goto err;
	}
	ret = -pthread_mutex_init(&m->lock, NULL);
	if (ret)
		goto err;
	pci_msix_reset(m);
	d->msix = m;
	return 0;
err:
	free(m->table);
	free(m->pba);
	free(m->routed);
	free(m);
	return ret;
}

void pci_msix_destroy(struct pci_msix *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->table);
	free(m->pba);
	free(m->routed);
	free(m);
}

void pci_msix_reset(struct pci_msix *m)
{
	pthread_mutex_lock(&m->lock);
	memset(m->table, 0, (size_t)m->nvec * PCI_MSIX_ENTRY_SIZE);
	for (unsigned v = 0; v < m->nvec; v++)
		m->table[(size_t)v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_CTRL] = PCI_MSIX_ENTRY_MASKBIT;
	memset(m->pba, 0, (m->nvec + 63) / 64 * sizeof(uint64_t));
	memset(m->routed, 0, m->nvec * sizeof(*m->routed));
	__atomic_store_n(&m->enabled, 0, __ATOMIC_RELEASE);
	m->fmask = false;
	pthread_mutex_unlock(&m->lock);
}

void pci_msix_control_written(struct pci_msix *m)
{
	uint16_t ctrl = (uint16_t)pci_cfg_get(m->dev, m->cap + PCI_MSIX_FLAGS, 2);
	int now = (ctrl & PCI_MSIX_FLAGS_ENABLE) ? 1 : 0;
	int was;

	pthread_mutex_lock(&m->lock);
	was = m->enabled;
	__atomic_store_n(&m->enabled, now, __ATOMIC_RELEASE);
	m->fmask = (ctrl & PCI_MSIX_FLAGS_MASKALL) != 0;
	for (unsigned v = 0; v < m->nvec; v++)
		vector_update(m, v);
	pthread_mutex_unlock(&m->lock);
	if (was != now)
		pci_intx_update(m->dev);	/* INTx is off while MSI-X is on */
}

/* Where [off, off+len) falls: 1 inside the table or PBA region (*rel set),
 * 0 outside both, -1 straddling an edge. */
static int region(uint64_t start, uint64_t size, uint64_t off, unsigned len, uint64_t *rel)
{
	if (off + len <= start || off >= start + size)
		return 0;
	if (off < start || off + len > start + size)
		return -1;
	*rel = off - start;
	return 1;
}

static uint64_t table_size(const struct pci_msix *m)
{
	return (uint64_t)m->nvec * PCI_MSIX_ENTRY_SIZE;
}

static uint64_t pba_size(const struct pci_msix *m)
{
	return (m->nvec + 63) / 64 * 8ULL;
}

bool pci_msix_bar_read(struct pci_msix *m, unsigned bar, uint64_t off, void *data, unsigned len)
{
	uint64_t rel = 0;
	int r;

	if (bar == m->table_bar && (r = region(m->table_off, table_size(m), off, len, &rel))) {
		if (r < 0) {
			memset(data, 0, len);
			return true;
		}
		pthread_mutex_lock(&m->lock);
		memcpy(data, m->table + rel, len);
		pthread_mutex_unlock(&m->lock);
		return true;
	}
	if (bar == m->pba_bar && (r = region(m->pba_off, pba_size(m), off, len, &rel))) {
		uint8_t *out = data;

		memset(data, 0, len);
		if (r < 0)
			return true;
		pthread_mutex_lock(&m->lock);
		for (unsigned i = 0; i < len; i++)
			out[i] = (uint8_t)(m->pba[(rel + i) / 8] >> ((rel + i) % 8 * 8));
		pthread_mutex_unlock(&m->lock);
		return true;
	}
	return false;
}

/* Writable bits of each byte of a table entry: the address is dword
 * aligned; only bit 0 of vector control exists. */
static const uint8_t entry_wmask[PCI_MSIX_ENTRY_SIZE] = {
	0xfc, 0xff, 0xff, 0xff,		/* address low */
	0xff, 0xff, 0xff, 0xff,		/* address high */
	0xff, 0xff, 0xff, 0xff,		/* data */
	0x01, 0x00, 0x00, 0x00,		/* vector control */
};

bool pci_msix_bar_write(struct pci_msix *m, unsigned bar, uint64_t off, const void *data,
			unsigned len)
{
	const uint8_t *in = data;
	uint64_t rel = 0;
	unsigned first, last;
	int r;

	if (bar == m->pba_bar && region(m->pba_off, pba_size(m), off, len, &rel))
		return true;	/* the PBA is read-only */
	if (bar != m->table_bar || !(r = region(m->table_off, table_size(m), off, len, &rel)))
		return false;
	if (r < 0)
		return true;
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < len; i++) {
		uint8_t *p = &m->table[rel + i];
		uint8_t wm = entry_wmask[(rel + i) % PCI_MSIX_ENTRY_SIZE];

		*p = (uint8_t)((*p & ~wm) | (in[i] & wm));
	}
	first = (unsigned)(rel / PCI_MSIX_ENTRY_SIZE);
	last = (unsigned)((rel + len - 1) / PCI_MSIX_ENTRY_SIZE);
	for (unsigned v = first; v <= last && v < m->nvec; v++)
		vector_update(m, v);
	pthread_mutex_unlock(&m->lock);
	return true;
}

bool pci_msix_enabled(const struct pci_device *d)
{
	return d->msix && __atomic_load_n(&d->msix->enabled, __ATOMIC_ACQUIRE);
}

unsigned pci_msix_nr_vectors(const struct pci_device *d)
{
	return d->msix ? d->msix->nvec : 0;
}

int pci_msix_notify(struct pci_device *d, unsigned vec)
{
	struct pci_msix *m = d->msix;
	struct pci_msix_msg msg;
	int ret = 0;

	if (!m)
		return -ENODEV;
	if (vec >= m->nvec)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	if (!m->enabled) {
		ret = -ENODEV;
	} else if (vector_masked(m, vec)) {
		set_pending(m, vec, true);
	} else {
		vector_update(m, vec);	/* normally a no-op: routed at unmask */
		msg = entry_msg(m, vec);
		fire(m, vec, &msg);
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

bool pci_msix_pending(struct pci_device *d, unsigned vec)
{
	bool p;

	if (!d->msix || vec >= d->msix->nvec)
		return false;
	pthread_mutex_lock(&d->msix->lock);
	p = test_pending(d->msix, vec);
	pthread_mutex_unlock(&d->msix->lock);
	return p;
}
