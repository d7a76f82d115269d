/*
 * Local APIC helpers for interrupt-driven test guests (xAPIC MMIO at
 * 0xfee00000, BSP only). Interrupt vectors >= 32 are dispatched by the
 * runtime (rt_set_irq_handler, rt.h), which also writes the EOI.
 */
#ifndef EMBER_GUEST_APIC_H
#define EMBER_GUEST_APIC_H

#include "rt/rt.h"

#define APIC_TIMER_VECTOR 0xefu /* one-shot wake-up timer used by apic_wait */

/* Masks both 8259 PICs and LVT LINT0 (so no legacy interrupt lands on an
 * exception vector once interrupts are enabled), software-enables the LAPIC
 * (SVR = 0x100 | RT_SPURIOUS_VECTOR) and checks once that the LAPIC timer
 * fires (~100 us). Leaves interrupts disabled. Idempotent. */
void apic_init(void);

/* Whether the LAPIC timer fired in apic_init (apic_wait then halts; without
 * it apic_wait polls with interrupts enabled). */
bool apic_timer_works(void);

/* Waits with interrupts enabled only inside the wait (sti; hlt; cli), for
 * done(arg) to become true or for ms milliseconds (TSC) to pass. While
 * halted, a one-shot LAPIC timer wakes the CPU every ~10 ms so the deadline
 * is checked even if no interrupt comes. Returns done(arg) as last seen.
 * Must be called with interrupts disabled (the guest default). */
bool apic_wait(bool (*done)(void *arg), void *arg, uint64_t ms);

/* Waits until *counter != snapshot (e.g. an interrupt count). */
bool apic_wait_count(const volatile uint32_t *counter, uint32_t snapshot, uint64_t ms);

/* MSI address/data for a fixed-delivery, edge, physical-destination message
 * to this CPU's LAPIC on vector. */
static inline uint32_t apic_msi_addr(uint32_t apic_id) { return RT_LAPIC_BASE | (apic_id << 12); }
static inline uint32_t apic_msi_data(uint8_t vector) { return vector; }

#endif
