#include "irqchip/routing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "accel/kvm.h"
#include "base/evloop.h"
#include "base/log.h"

int irq_routing_init(struct irq_routing *r, struct kvm_vm *kvm)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->kvm = kvm;
	r->nr_gsi = IRQ_MAX_GSI;
	if (kvm) {
		/* KVM_CAP_IRQ_ROUTING reports how many GSIs the table may name. */
		int n = kvm_check_extension(kvm, KVM_CAP_IRQ_ROUTING);

		if (n > IRQ_NR_LEGACY_GSI && n < IRQ_MAX_GSI)
			r->nr_gsi = (unsigned)n;
	}
	r->msi = calloc(IRQ_MAX_GSI, sizeof(*r->msi));
	r->scratch = calloc(1, sizeof(*r->scratch) +
			       IRQ_MAX_ROUTES * sizeof(r->scratch->entries[0]));
	if (!r->msi || !r->scratch) {
		free(r->msi);
		free(r->scratch);
		return -ENOMEM;
	}
	ret = -pthread_mutex_init(&r->lock, NULL);
	if (ret) {
		free(r->msi);
		free(r->scratch);
		return ret;
	}
	/* GSIs below 24 belong to the PIC/IOAPIC and are never handed out. */
	for (unsigned g = 0; g < IRQ_NR_LEGACY_GSI; g++)
		r->used[g / 64] |= 1ULL << (g % 64);
	/* KVM's built-in table routes GSI 0 to IOAPIC pin 0; ours must be
	 * committed before the guest runs. */
	r->dirty = true;
	r->initialized = true;
	return 0;
}

void irq_routing_destroy(struct irq_routing *r)
{
	if (!r->initialized)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->msi);
	free(r->scratch);
	r->msi = NULL;
	r->scratch = NULL;
	r->initialized = false;
}

int irq_gsi_alloc(struct irq_routing *r)
{
	int gsi = -ENOSPC;

	if (!r->initialized)
		return -ENODEV;
	pthread_mutex_lock(&r->lock);
	for (unsigned g = IRQ_NR_LEGACY_GSI; g < r->nr_gsi; g++) {
		if (r->used[g / 64] & (1ULL << (g % 64)))
			continue;
		r->used[g / 64] |= 1ULL << (g % 64);
		r->msi[g].valid = false;
		gsi = (int)g;
		break;
	}
	pthread_mutex_unlock(&r->lock);
	return gsi;
}

static bool gsi_allocated(const struct irq_routing *r, unsigned gsi)
{
	return gsi >= IRQ_NR_LEGACY_GSI && gsi < r->nr_gsi &&
	       (r->used[gsi / 64] & (1ULL << (gsi % 64)));
}

void irq_gsi_free(struct irq_routing *r, unsigned gsi)
{
	if (!r->initialized)
		return;
	pthread_mutex_lock(&r->lock);
	if (gsi_allocated(r, gsi)) {
		if (r->msi[gsi].valid)
			r->dirty = true;
		r->msi[gsi].valid = false;
		r->used[gsi / 64] &= ~(1ULL << (gsi % 64));
	}
	pthread_mutex_unlock(&r->lock);
}

int irq_routing_set_msi(struct irq_routing *r, unsigned gsi, uint64_t addr, uint32_t data)
{
	struct irq_msi_route *m;
	int ret = 0;

	if (!r->initialized)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (!gsi_allocated(r, gsi)) {
		ret = -EINVAL;
		goto out;
	}
	m = &r->msi[gsi];
	if (m->valid && m->addr == addr && m->data == data)
		goto out;
	*m = (struct irq_msi_route){ .addr = addr, .data = data, .valid = true };
	r->dirty = true;
	ret = 1;
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int irq_routing_clear_msi(struct irq_routing *r, unsigned gsi)
{
	int ret = 0;

	if (!r->initialized)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (!gsi_allocated(r, gsi)) {
		ret = -EINVAL;
	} else if (r->msi[gsi].valid) {
		r->msi[gsi].valid = false;
		r->dirty = true;
		ret = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

static unsigned add_route(struct kvm_irq_routing_entry *e, unsigned n, unsigned max,
			  const struct kvm_irq_routing_entry *src)
{
	if (n < max)
		e[n] = *src;
	return n + 1;
}

/* Caller holds the lock. */
static unsigned build_locked(struct irq_routing *r, struct kvm_irq_routing_entry *e, unsigned max)
{
	struct kvm_irq_routing_entry t;
	unsigned n = 0;

	for (unsigned g = 0; g < IRQ_NR_PIC_GSI; g++) {
		if (g == IRQ_PIC_CASCADE_GSI)
			continue;
		memset(&t, 0, sizeof(t));
		t.gsi = g;
		t.type = KVM_IRQ_ROUTING_IRQCHIP;
		t.u.irqchip.irqchip = g < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		t.u.irqchip.pin = g % 8;
		n = add_route(e, n, max, &t);
	}
	/* IOAPIC: ISA IRQ 0 (the PIT) arrives on pin 2, as the MADT's interrupt
	 * source override says and as on real chipsets; pin 0 is unused. */
	for (unsigned g = 0; g < IRQ_NR_LEGACY_GSI; g++) {
		if (g == 2)
			continue;
		memset(&t, 0, sizeof(t));
		t.gsi = g;
		t.type = KVM_IRQ_ROUTING_IRQCHIP;
		t.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		t.u.irqchip.pin = g == 0 ? 2 : g;
		n = add_route(e, n, max, &t);
	}
	for (unsigned g = IRQ_NR_LEGACY_GSI; g < r->nr_gsi; g++) {
		const struct irq_msi_route *m = &r->msi[g];

		if (!gsi_allocated(r, g) || !m->valid)
			continue;
		memset(&t, 0, sizeof(t));
		t.gsi = g;
		t.type = KVM_IRQ_ROUTING_MSI;
		t.u.msi.address_lo = (uint32_t)m->addr;
		t.u.msi.address_hi = (uint32_t)(m->addr >> 32);
		t.u.msi.data = m->data;
		n = add_route(e, n, max, &t);
	}
	return n;
}

unsigned irq_routing_build(struct irq_routing *r, struct kvm_irq_routing_entry *e, unsigned max)
{
	unsigned n;

	if (!r->initialized)
		return 0;
	pthread_mutex_lock(&r->lock);
	n = build_locked(r, e, max);
	pthread_mutex_unlock(&r->lock);
	return n;
}

int irq_routing_commit(struct irq_routing *r)
{
	int ret = 0;

	if (!r->initialized)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (!r->dirty)
		goto out;
	r->scratch->nr = build_locked(r, r->scratch->entries, IRQ_MAX_ROUTES);
	r->scratch->flags = 0;
	if (r->kvm)
		ret = kvm_set_gsi_routing(r->kvm, r->scratch);
	if (ret) {
		static struct ratelimit rl = RATELIMIT_INIT(5000, 5);

		if (ratelimit_allow(&rl))
			log_warn("irq routing: KVM_SET_GSI_ROUTING (%u routes) failed: %s",
				 r->scratch->nr, strerror(-ret));
		goto out;
	}
	r->dirty = false;
	r->commits++;
	log_debug("irq routing: committed %u routes (commit #%llu)", r->scratch->nr,
		  (unsigned long long)r->commits);
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

bool irq_routing_is_dirty(struct irq_routing *r)
{
	bool d;

	if (!r->initialized)
		return false;
	pthread_mutex_lock(&r->lock);
	d = r->dirty;
	pthread_mutex_unlock(&r->lock);
	return d;
}

uint64_t irq_routing_commit_count(struct irq_routing *r)
{
	uint64_t n;

	if (!r->initialized)
		return 0;
	pthread_mutex_lock(&r->lock);
	n = r->commits;
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* ---- MSI sources ---- */

int irq_msi_init(struct irq_msi *m, struct irq_routing *r)
{
	int gsi, ret;

	memset(m, 0, sizeof(*m));
	m->r = r;
	m->gsi = -1;
	m->efd = -1;
	gsi = irq_gsi_alloc(r);
	if (gsi < 0) {
		log_debug("irq: no free GSI, MSI source falls back to KVM_SIGNAL_MSI");
		return 0;
	}
	m->gsi = gsi;
	if (!r->kvm)
		return 0;
	m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->efd < 0)
		return -errno;
	ret = kvm_irqfd(r->kvm, m->efd, (uint32_t)gsi, -1, false);
	if (ret) {
		log_debug("irq: KVM_IRQFD on GSI %d: %s; using KVM_SIGNAL_MSI", gsi, strerror(-ret));
		close(m->efd);
		m->efd = -1;
		return 0;
	}
	m->irqfd = true;
	return 0;
}

void irq_msi_destroy(struct irq_msi *m)
{
	if (!m->r)
		return;
	if (m->irqfd && kvm_irqfd(m->r->kvm, m->efd, (uint32_t)m->gsi, -1, true))
		log_warn("irq: cannot deassign the irqfd of GSI %d", m->gsi);
	if (m->efd >= 0)
		close(m->efd);
	if (m->gsi >= 0)
		irq_gsi_free(m->r, (unsigned)m->gsi);
	memset(m, 0, sizeof(*m));
	m->gsi = m->efd = -1;
}

void irq_msi_set_msg(struct irq_msi *m, uint64_t addr, uint32_t data)
{
	m->addr = addr;
	m->data = data;
	m->has_msg = true;
	if (m->gsi >= 0)
		(void)irq_routing_set_msi(m->r, (unsigned)m->gsi, addr, data);
}

void irq_msi_clear_msg(struct irq_msi *m)
{
	if (m->gsi >= 0)
		(void)irq_routing_clear_msi(m->r, (unsigned)m->gsi);
}

int irq_msi_fire(struct irq_msi *m)
{
	if (!m->r || !m->has_msg)
		return -EINVAL;
	/* The irqfd follows the committed route: commit what is pending first
	 * (one commit covers every change made since the last one). */
	if (m->gsi >= 0 && irq_routing_commit(m->r) == 0 && m->irqfd)
		return eventfd_write(m->efd, 1) < 0 ? -errno : 0;
	if (!m->r->kvm)
		return 0;
	return kvm_signal_msi(m->r->kvm, m->addr, m->data) < 0 ? -EIO : 0;
}

/* ---- INTx ---- */

static void intx_resample(void *opaque, uint32_t events)
{
	struct irq_intx *x = opaque;
	eventfd_t v;

	(void)events;
	if (eventfd_read(x->rfd, &v) < 0)
		return;
	/* KVM dropped the line at EOI; raise it again while the source is
	 * still pending (level semantics). */
	if (x->pending && x->pending(x->opaque)) {
		__atomic_fetch_add(&x->asserts, 1, __ATOMIC_RELAXED);
		if (eventfd_write(x->efd, 1) < 0)
			log_warn("irq: INTx GSI %u re-assert: %s", x->gsi, strerror(errno));
	}
}

int irq_intx_init(struct irq_intx *x, struct kvm_vm *kvm, struct evloop *loop, unsigned gsi,
		  irq_intx_pending_fn pending, void *opaque)
{
	int ret;

	memset(x, 0, sizeof(*x));
	x->kvm = kvm;
	x->loop = loop;
	x->gsi = gsi;
	x->efd = x->rfd = -1;
	x->pending = pending;
	x->opaque = opaque;
	ret = -pthread_mutex_init(&x->lock, NULL);
	if (ret)
		return ret;
	if (!kvm || !loop || kvm_check_extension(kvm, KVM_CAP_IRQFD_RESAMPLE) <= 0)
		return 0;
	x->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	x->rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (x->efd < 0 || x->rfd < 0)
		goto fallback;
	ret = kvm_irqfd(kvm, x->efd, gsi, x->rfd, false);
	if (ret) {
		log_debug("irq: resampling irqfd on GSI %u: %s; using KVM_IRQ_LINE", gsi,
			  strerror(-ret));
		goto fallback;
	}
	ret = evloop_add(loop, x->rfd, EPOLLIN, intx_resample, x);
	if (ret) {
		(void)kvm_irqfd(kvm, x->efd, gsi, -1, true);
		goto fallback;
	}
	return 0;

fallback:
	if (x->efd >= 0)
		close(x->efd);
	if (x->rfd >= 0)
		close(x->rfd);
	x->efd = x->rfd = -1;
	return 0;
}

void irq_intx_destroy(struct irq_intx *x)
{
	if (x->efd >= 0) {
		evloop_del(x->loop, x->rfd);
		if (kvm_irqfd(x->kvm, x->efd, x->gsi, -1, true))
			log_warn("irq: cannot deassign the INTx irqfd of GSI %u", x->gsi);
		close(x->efd);
		close(x->rfd);
	} else if (x->level && x->kvm) {
		(void)kvm_irq_line(x->kvm, x->gsi, 0);
	}
	pthread_mutex_destroy(&x->lock);
	x->efd = x->rfd = -1;
	x->level = false;
}

void irq_intx_set(struct irq_intx *x, bool level)
{
	if (x->efd >= 0) {
		if (!level)
			return;
		__atomic_fetch_add(&x->asserts, 1, __ATOMIC_RELAXED);
		if (eventfd_write(x->efd, 1) < 0)
			log_warn("irq: INTx GSI %u: %s", x->gsi, strerror(errno));
		return;
	}
	pthread_mutex_lock(&x->lock);
	if (level != x->level) {
		x->level = level;
		if (level)
			__atomic_fetch_add(&x->asserts, 1, __ATOMIC_RELAXED);
		if (x->kvm && kvm_irq_line(x->kvm, x->gsi, level))
			log_warn("irq: INTx GSI %u: KVM_IRQ_LINE failed", x->gsi);
	}
	pthread_mutex_unlock(&x->lock);
}
