/* GSI allocation and the KVM interrupt routing table.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so the table kept here
 * always holds KVM's default irqchip routes (GSI 0-15 on the PIC, master
 * pins 0-7 and slave pins 8-15, except GSI 2, the cascade, which is IOAPIC
 * only; GSI 0-23 on IOAPIC pins 0-23) plus one MSI route per allocated GSI
 * (24 and up) that has a message.
 *
 * Updates only mark the table dirty; it is committed to KVM at most once
 * per batch of changes: lazily, right before an interrupt is sent through
 * an irqfd while the table is dirty, or by an explicit irq_routing_commit().
 * Unchanged messages never dirty the table.
 *
 * struct irq_msi is one MSI source: a GSI with an irqfd, so any thread
 * raises it with an eventfd write; without a GSI or irqfd it falls back to
 * KVM_SIGNAL_MSI. struct irq_intx is one level-triggered INTx line: an irqfd
 * in resample mode (KVM deasserts on EOI and signals the resample eventfd,
 * where the line is re-asserted if the source is still pending), or
 * KVM_IRQ_LINE when resampling is unavailable.
 *
 * Without a struct kvm_vm (unit tests) the table is kept and "committed"
 * (counted) but nothing reaches KVM. */
#ifndef EMBER_IRQ_ROUTING_H
#define EMBER_IRQ_ROUTING_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

struct kvm_vm;
struct evloop;

#define IRQ_NR_LEGACY_GSI	24	/* IOAPIC pins; GSIs below this are fixed */
#define IRQ_NR_PIC_GSI		16
#define IRQ_PIC_CASCADE_GSI	2
#define IRQ_MAX_GSI		1024	/* GSIs handed out: [24, IRQ_MAX_GSI) */
/* Routes in a full table: legacy routes plus one per MSI GSI. */
/* IOAPIC pins except pin 0 (ISA IRQ 0 lands on pin 2), PIC pins except the cascade. */
#define IRQ_NR_LEGACY_ROUTES	(IRQ_NR_LEGACY_GSI - 1 + IRQ_NR_PIC_GSI - 1)
#define IRQ_MAX_ROUTES		(IRQ_NR_LEGACY_ROUTES + IRQ_MAX_GSI - IRQ_NR_LEGACY_GSI)

struct irq_msi_route {
	uint64_t addr;
	uint32_t data;
	bool valid;
};

struct irq_routing {
	struct kvm_vm *kvm;		/* NULL: bookkeeping only */
	pthread_mutex_t lock;
	bool initialized;
	unsigned nr_gsi;		/* GSIs [0, nr_gsi) exist */
	uint64_t used[IRQ_MAX_GSI / 64];
	struct irq_msi_route *msi;	/* [IRQ_MAX_GSI] */
	bool dirty;
	uint64_t commits;		/* KVM_SET_GSI_ROUTING calls made */
	struct kvm_irq_routing *scratch;
};

/* kvm may be NULL. */
int irq_routing_init(struct irq_routing *r, struct kvm_vm *kvm)
	__attribute__((warn_unused_result));
/* Safe on a zeroed, never-initialized struct. */
void irq_routing_destroy(struct irq_routing *r);

/* A free GSI >= IRQ_NR_LEGACY_GSI, or -ENOSPC. */
int irq_gsi_alloc(struct irq_routing *r) __attribute__((warn_unused_result));
/* Frees the GSI and drops its route. */
void irq_gsi_free(struct irq_routing *r, unsigned gsi);

/* Set or drop the MSI route of an allocated GSI. Returns 1 when the table
 * changed (now dirty), 0 when the route was already that, or -EINVAL. */
int irq_routing_set_msi(struct irq_routing *r, unsigned gsi, uint64_t addr, uint32_t data);
int irq_routing_clear_msi(struct irq_routing *r, unsigned gsi);

/* Push the table to KVM if dirty. Returns 0 or the ioctl's -errno (the
 * table then stays dirty, and the next commit retries). */
int irq_routing_commit(struct irq_routing *r);
bool irq_routing_is_dirty(struct irq_routing *r);
uint64_t irq_routing_commit_count(struct irq_routing *r);

/* The table as it would be committed, for tests: fills up to max entries
 * and returns the total count. */
unsigned irq_routing_build(struct irq_routing *r, struct kvm_irq_routing_entry *e, unsigned max);

/* ---- MSI sources ---- */

struct irq_msi {
	struct irq_routing *r;
	int gsi;		/* -1: no GSI, KVM_SIGNAL_MSI fallback */
	int efd;		/* irqfd eventfd, -1 if none */
	bool irqfd;		/* efd is assigned to gsi in KVM */
	uint64_t addr;		/* last message set */
	uint32_t data;
	bool has_msg;
};

/* Allocate a GSI and an irqfd for it. Never fails for lack of a GSI or of
 * irqfd support (the source then uses KVM_SIGNAL_MSI); returns -ENOMEM and
 * such only. */
int irq_msi_init(struct irq_msi *m, struct irq_routing *r) __attribute__((warn_unused_result));
void irq_msi_destroy(struct irq_msi *m);
/* New message: update the route if it differs. */
void irq_msi_set_msg(struct irq_msi *m, uint64_t addr, uint32_t data);
/* Drop the route (the message is kept for the fallback). */
void irq_msi_clear_msg(struct irq_msi *m);
/* Send the current message. Callers serialise set_msg and fire for one
 * source (the MSI-X lock does). Returns 0 or -errno. */
int irq_msi_fire(struct irq_msi *m);

/* ---- Level-triggered INTx lines ---- */

typedef bool (*irq_intx_pending_fn)(void *opaque);

struct irq_intx {
	struct kvm_vm *kvm;
	struct evloop *loop;
	unsigned gsi;
	int efd;		/* irqfd (resample mode), -1: KVM_IRQ_LINE fallback */
	int rfd;		/* resample eventfd */
	irq_intx_pending_fn pending;
	void *opaque;
	bool level;		/* fallback: level last driven */
	pthread_mutex_t lock;	/* fallback: orders line updates */
	uint64_t asserts;	/* times the line was raised (statistics, tests) */
};

/* kvm and loop may be NULL (then every set is only counted). pending()
 * is called on the event loop thread after each EOI. */
int irq_intx_init(struct irq_intx *x, struct kvm_vm *kvm, struct evloop *loop, unsigned gsi,
		  irq_intx_pending_fn pending, void *opaque) __attribute__((warn_unused_result));
void irq_intx_destroy(struct irq_intx *x);
/* Thread-safe. With resampling, a deassert is a no-op: KVM drops the line
 * at EOI and the resample handler asks pending() before raising it again. */
void irq_intx_set(struct irq_intx *x, bool level);

#endif
