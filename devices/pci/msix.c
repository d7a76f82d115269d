/* MSI-X (PCI Local Bus 3.0, 6.8.2): the capability, the vector table and
 * the pending bit array. A vector is masked while its entry's mask bit or
 * the function mask is set, or MSI-X is disabled; a notify then sets its
 * pending bit, and the first moment it is unmasked (entry, function mask or
 * enable), the pending bit is cleared and the message sent.
 *
 * Every table or control write brings the touched vectors in line at once
 * (sync_vectors): a vector that is unmasked with a message other than the
 * one routed gets routed, the batch is committed once, and a vector with a
 * bound eventfd and a committed route is armed. Firing an armed vector is
 * lock-free (pci_msix_notify); disarming waits for such deliveries in
 * flight, so masking is exact. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "devices/pci/pci_internal.h"
#include "base/log.h"

static struct ratelimit msix_rl = RATELIMIT_INIT(5000, 10);

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

/* ---- The lock-free fast path and its fence ---- */

/* Lock held. efd is set and the route committed. */
static void arm(struct pci_msix *m, unsigned v)
{
	__atomic_or_fetch(&m->vecs[v].state, PCI_MSIX_VEC_ARMED, __ATOMIC_RELEASE);
}

/* Lock held. On return no lock-free delivery of v is under way and none
 * can start. Waiting is short: a notifier holds its in-flight count only
 * around one eventfd_write. */
static void disarm(struct pci_msix *m, unsigned v)
{
	int *state = &m->vecs[v].state;

	__atomic_and_fetch(state, ~PCI_MSIX_VEC_ARMED, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(state, __ATOMIC_ACQUIRE) >= PCI_MSIX_VEC_INFLIGHT)
		sched_yield();
}

static bool armed(const struct pci_msix *m, unsigned v)
{
	return __atomic_load_n(&m->vecs[v].state, __ATOMIC_ACQUIRE) & PCI_MSIX_VEC_ARMED;
}

static int signal_efd(const struct pci_msix *m, unsigned v)
{
	if (eventfd_write(m->vecs[v].efd, 1) == 0)
		return 0;
	if (ratelimit_allow(&msix_rl))
		log_warn("pci %s: MSI-X vector %u: eventfd write failed: %s", m->dev->name, v,
			 strerror(errno));
	return -errno;
}

/* ---- Under the lock ---- */

/* Send unmasked vector v now. */
static void deliver(struct pci_msix *m, unsigned v)
{
	struct pci_host *h = m->dev->host;
	struct pci_msix_msg msg;

	if (armed(m, v)) {
		(void)signal_efd(m, v);
		return;
	}
	msg = entry_msg(m, v);
	if (h && h->irq && h->irq->msi_fire)
		h->irq->msi_fire(h, m->dev, v, msg.addr, msg.data);
}

static void tell_mask_notifier(struct pci_msix *m, unsigned v, bool direct)
{
	struct pci_msix_vec *x = &m->vecs[v];

	if (x->direct == direct)
		return;
	x->direct = direct;
	if (m->mask_fn)
		m->mask_fn(m->mask_opaque, m->dev, v, !direct);
}

/* Bring vectors [first, last] in line with the table and control state:
 * route the unmasked ones whose message changed, commit the batch once,
 * arm or disarm, tell the mask notifier, deliver what was pending. */
static void sync_vectors(struct pci_msix *m, unsigned first, unsigned last)
{
	struct pci_host *h = m->dev->host;
	const struct pci_irq_ops *irq = h ? h->irq : NULL;
	bool rerouted = false, committed = true;

	for (unsigned v = first; v <= last; v++) {
		struct pci_msix_vec *x = &m->vecs[v];
		struct pci_msix_msg msg;

		if (vector_masked(m, v)) {
			disarm(m, v);
			tell_mask_notifier(m, v, false);
			continue;
		}
		msg = entry_msg(m, v);
		if (x->routed.valid && x->routed.addr == msg.addr && x->routed.data == msg.data)
			continue;
		x->routed = msg;
		x->stale = true;
		rerouted = true;
		if (irq && irq->msi_route)
			irq->msi_route(h, m->dev, v, msg.addr, msg.data);
	}
	if (rerouted && irq && irq->msi_commit)
		committed = irq->msi_commit(h, m->dev) == 0;
	for (unsigned v = first; v <= last; v++) {
		struct pci_msix_vec *x = &m->vecs[v];
		bool direct;

		if (vector_masked(m, v))
			continue;
		if (x->stale) {
			x->stale = false;
			if (!committed)
				x->routed.valid = false;	/* route again next time */
		}
		direct = x->efd >= 0 && x->routed.valid;
		if (direct)
			arm(m, v);
		else
			disarm(m, v);
		tell_mask_notifier(m, v, direct);
		if (test_pending(m, v)) {
			set_pending(m, v, false);
			deliver(m, v);
		}
	}
}

/* ---- Life cycle ---- */

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
	m->vecs = calloc(nvec, sizeof(*m->vecs));
	if (!m->table || !m->pba || !m->vecs) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned v = 0; v < nvec; v++)
		m->vecs[v].efd = -1;
	ret = -pthread_mutex_init(&m->lock, NULL);
	if (ret)
		goto err;
	pci_msix_reset(m);
	d->msix = m;
	return 0;
err:
	free(m->table);
	free(m->pba);
	free(m->vecs);
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
	free(m->vecs);
	free(m);
}

void pci_msix_reset(struct pci_msix *m)
{
	pthread_mutex_lock(&m->lock);
	memset(m->table, 0, (size_t)m->nvec * PCI_MSIX_ENTRY_SIZE);
	for (unsigned v = 0; v < m->nvec; v++)
		m->table[(size_t)v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_CTRL] = PCI_MSIX_ENTRY_MASKBIT;
	memset(m->pba, 0, (m->nvec + 63) / 64 * sizeof(uint64_t));
	__atomic_store_n(&m->enabled, 0, __ATOMIC_RELEASE);
	m->fmask = false;
	for (unsigned v = 0; v < m->nvec; v++) {
		disarm(m, v);
		tell_mask_notifier(m, v, false);
		m->vecs[v].routed.valid = false;
		m->vecs[v].stale = false;
	}
	pthread_mutex_unlock(&m->lock);
}

int pci_msix_bind_eventfd(struct pci_device *d, unsigned vec, int efd)
{
	struct pci_msix *m = d->msix;

	if (!m || vec >= m->nvec)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	disarm(m, vec);
	m->vecs[vec].efd = efd;
	sync_vectors(m, vec, vec);
	pthread_mutex_unlock(&m->lock);
	return 0;
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
	sync_vectors(m, 0, m->nvec - 1);
	pthread_mutex_unlock(&m->lock);
	if (was != now)
		pci_intx_update(m->dev);	/* INTx is off while MSI-X is on */
}

/* ---- Table and PBA ---- */

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
	if (last >= m->nvec)
		last = m->nvec - 1;
	sync_vectors(m, first, last);
	pthread_mutex_unlock(&m->lock);
	return true;
}

/* ---- Snapshots ---- */

json_t *pci_msix_save(struct pci_msix *m)
{
	size_t tlen = table_size(m), plen = pba_size(m);
	char *t = malloc(2 * tlen + 1), *p = malloc(2 * plen + 1);
	uint8_t *pba = malloc(plen);
	json_t *o = NULL;

	if (t && p && pba) {
		pthread_mutex_lock(&m->lock);
		pci_hex_encode(m->table, tlen, t);
		for (size_t i = 0; i < plen; i++)
			pba[i] = (uint8_t)(m->pba[i / 8] >> (i % 8 * 8));
		pthread_mutex_unlock(&m->lock);
		pci_hex_encode(pba, plen, p);
		o = json_pack("{s:i, s:s, s:s}", "vectors", (int)m->nvec, "table", t, "pba", p);
	}
	free(t);
	free(p);
	free(pba);
	return o;
}

int pci_msix_load(struct pci_msix *m, json_t *saved, char *err, size_t errlen)
{
	size_t tlen = table_size(m), plen = pba_size(m);
	json_t *t = json_object_get(saved, "table"), *p = json_object_get(saved, "pba");
	json_t *n = json_object_get(saved, "vectors");
	uint8_t *table = malloc(tlen), *pba = malloc(plen);
	int ret = -EINVAL;

	if (!table || !pba) {
		ret = -ENOMEM;
		goto out;
	}
	if (!json_is_integer(n) || json_integer_value(n) != (json_int_t)m->nvec) {
		snprintf(err, errlen, "msix: %u vectors here, the snapshot has another count", m->nvec);
		goto out;
	}
	if (!json_is_string(t) || pci_hex_decode(json_string_value(t), table, tlen) ||
	    !json_is_string(p) || pci_hex_decode(json_string_value(p), pba, plen)) {
		snprintf(err, errlen, "msix: table or PBA is not %zu/%zu bytes of hex", tlen, plen);
		goto out;
	}
	for (size_t i = 0; i < tlen; i++) {
		if (table[i] & ~entry_wmask[i % PCI_MSIX_ENTRY_SIZE]) {
			snprintf(err, errlen, "msix: vector %zu has reserved bits set",
				 i / PCI_MSIX_ENTRY_SIZE);
			goto out;
		}
	}
	for (size_t v = m->nvec; v < plen * 8; v++) {
		if (pba[v / 8] & (1u << (v % 8))) {
			snprintf(err, errlen, "msix: pending bit %zu of %u vectors", v, m->nvec);
			goto out;
		}
	}
	pthread_mutex_lock(&m->lock);
	memcpy(m->table, table, tlen);
	memset(m->pba, 0, plen);
	for (size_t i = 0; i < plen; i++)
		m->pba[i / 8] |= (uint64_t)pba[i] << (i % 8 * 8);
	for (unsigned v = 0; v < m->nvec; v++) {
		disarm(m, v);
		m->vecs[v].routed.valid = false;
		m->vecs[v].stale = false;
	}
	pthread_mutex_unlock(&m->lock);
	ret = 0;
out:
	free(table);
	free(pba);
	return ret;
}

/* ---- Device side ---- */

bool pci_msix_enabled(const struct pci_device *d)
{
	return d->msix && __atomic_load_n(&d->msix->enabled, __ATOMIC_ACQUIRE);
}

unsigned pci_msix_nr_vectors(const struct pci_device *d)
{
	return d->msix ? d->msix->nvec : 0;
}

static int notify_locked(struct pci_msix *m, unsigned vec)
{
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	if (!m->enabled)
		ret = -ENODEV;
	else if (vector_masked(m, vec))
		set_pending(m, vec, true);
	else
		deliver(m, vec);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int pci_msix_notify(struct pci_device *d, unsigned vec)
{
	struct pci_msix *m = d->msix;
	int *state, ret;

	if (!m)
		return -ENODEV;
	if (vec >= m->nvec)
		return -EINVAL;
	/* Count ourselves in flight, then look: disarm() either sees the
	 * count and waits for the write below, or we see it unarmed. */
	state = &m->vecs[vec].state;
	if (__atomic_add_fetch(state, PCI_MSIX_VEC_INFLIGHT, __ATOMIC_ACQUIRE) &
	    PCI_MSIX_VEC_ARMED) {
		ret = signal_efd(m, vec);
		__atomic_sub_fetch(state, PCI_MSIX_VEC_INFLIGHT, __ATOMIC_RELEASE);
		return ret;
	}
	__atomic_sub_fetch(state, PCI_MSIX_VEC_INFLIGHT, __ATOMIC_RELEASE);
	return notify_locked(m, vec);
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

int pci_msix_vector_eventfd(struct pci_device *d, unsigned vec)
{
	int efd;

	if (!d->msix || vec >= d->msix->nvec)
		return -1;
	pthread_mutex_lock(&d->msix->lock);
	efd = d->msix->vecs[vec].efd;
	pthread_mutex_unlock(&d->msix->lock);
	return efd;
}

void pci_msix_set_mask_notifier(struct pci_device *d, pci_msix_mask_fn fn, void *opaque)
{
	struct pci_msix *m = d->msix;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->mask_fn = fn;
	m->mask_opaque = opaque;
	for (unsigned v = 0; fn && v < m->nvec; v++)
		fn(opaque, d, v, !m->vecs[v].direct);
	pthread_mutex_unlock(&m->lock);
}
