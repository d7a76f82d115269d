/* GSI allocation and the KVM interrupt routing table.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so the table kept here
 * always holds KVM's default irqchip routes (GSI 0-15 on the PIC, master
 * pins 0-7 and slave pins 8-15, except GSI 2, the cascade, which is IOAPIC
 * only; GSI 0-23 on IOAPIC pins 0-23) plus one MSI route per allocated GSI
 * (24 and up) that has a message.
 *
 * Updates only mark the table dirty; irq_routing_commit() pushes it to KVM
 * once per batch of changes (the MSI-X model commits when vectors are
 * unmasked or their messages change, so an irqfd on such a GSI delivers
 * the current message). Unchanged messages never dirty the table.
 *
 * The sources themselves (an eventfd per GSI assigned as an irqfd, INTx
 * lines) belong to their devices (devices/pci/host.c) and reach KVM
 * through the device context.
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

#endif
