/* The in-kernel irqchip (PIC, IOAPIC, LAPIC, PIT), interrupt lines, and
 * the GSI routing table (irqchip/routing.h) that MSI and irqfd users share. */
#ifndef EMBER_IRQCHIP_H
#define EMBER_IRQCHIP_H

#include <stdbool.h>
#include <stdint.h>

#include "irqchip/routing.h"

struct kvm_vm;

#define IRQCHIP_IOAPIC_ADDR 0xFEC00000ULL
#define IRQCHIP_LAPIC_ADDR  0xFEE00000ULL
#define IRQCHIP_IOAPIC_PINS 24

struct irqchip {
	struct kvm_vm *kvm;
	void *saved_state;	/* power-on PIC/IOAPIC/PIT state for reset */
	struct irq_routing routing;	/* set up by irqchip_create */
};

int irqchip_create(struct irqchip *ic, struct kvm_vm *kvm)
	__attribute__((warn_unused_result));
void irqchip_destroy(struct irqchip *ic);
/* Capture / restore power-on state (after creation, before first run). */
int irqchip_save_reset_state(struct irqchip *ic);
int irqchip_restore_reset_state(struct irqchip *ic);

/* Drive a GSI line level (edge devices pulse: 1 then 0). */
int irqchip_set_line(struct irqchip *ic, unsigned gsi, bool level);
int irqchip_pulse(struct irqchip *ic, unsigned gsi);
/* Inject one MSI (KVM_SIGNAL_MSI): for sources without an irqfd. */
int irqchip_signal_msi(struct irqchip *ic, uint64_t addr, uint32_t data);

#endif
