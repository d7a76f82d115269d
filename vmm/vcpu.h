/* vCPU threads: one per vCPU, each a KVM_RUN loop. */
#ifndef EMBER_VCPU_H
#define EMBER_VCPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "accel/kvm.h"
#include "vmm/exit.h"

struct vm;
struct boot_info;

/* Per-reason exit counters (index by KVM exit reason, clamped). */
#define VCPU_EXIT_COUNTERS 64

struct vcpu_power_on_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp_state;
};

struct vcpu {
	struct vm *vm;
	unsigned index;
	struct kvm_vcpu_fd kfd;
	pthread_t thread;
	bool thread_started;
	pid_t tid;
	uint64_t reset_gen;	/* VM reset generation this vCPU has applied */
	struct vcpu_power_on_state *power_on;
	/* vcpu_call() work for this thread (vm->lock protects these). */
	int (*call_fn)(struct vcpu *vcpu, void *arg);
	void *call_arg;
	int call_ret;
	bool thread_exited;
	/* Hot counters first, next to exits[KVM_EXIT_IO], on one cache line. */
	uint64_t pio_exits, mmio_exits, intr_exits;
	uint64_t exits[VCPU_EXIT_COUNTERS];
};

int vcpu_create(struct vm *vm, unsigned index, struct vcpu **out)
	__attribute__((warn_unused_result));
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu) __attribute__((warn_unused_result));
void vcpu_join(struct vcpu *vcpu);
/* Interrupt KVM_RUN (or the next entry) so the thread sees a state change. */
void vcpu_kick(struct vcpu *vcpu);

/* Run fn(vcpu, arg) on the vCPU's own thread, as KVM wants for a vCPU's
 * state (snapshots), and return its result. Only while the VM is paused or
 * not yet started (state CREATED: started threads park until it runs); a
 * vCPU whose thread is not running calls fn on the caller's thread. Called
 * from the main loop; -EBUSY while the VM runs. */
int vcpu_call(struct vcpu *vcpu, int (*fn)(struct vcpu *vcpu, void *arg), void *arg);

/* Install the kick signal handler; once per process, before any vCPU runs. */
int vcpu_signal_init(void);

/* Set up the boot vCPU's registers for the loaded kernel. */
int vcpu_setup_boot(struct vcpu *vcpu, const struct boot_info *bi);
/* Back to the power-on state captured at creation (used on VM reset). */
int vcpu_reset(struct vcpu *vcpu);

/* Drain the VM's coalesced MMIO/PIO ring into the buses. Thread-safe. */
void vcpu_drain_coalesced(struct vm *vm);
/* The ring walk itself, for tests and the fuzzer: hands each entry between
 * ring->first and ring->last to write() and advances first. Indexes at or
 * past max (entries in the ring) drop the ring; at most max - 1 entries are
 * taken per call. Returns how many were. */
struct kvm_coalesced_mmio_ring;
typedef void (*coalesced_write_fn)(void *opaque, bool pio, uint64_t addr, const void *data,
				   unsigned len);
unsigned coalesced_ring_drain(struct kvm_coalesced_mmio_ring *ring, uint32_t max,
			      coalesced_write_fn write, void *opaque);

#endif
