#include "irqchip/routing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm.h"
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
