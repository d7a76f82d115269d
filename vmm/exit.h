/* Exit decoding: a pure function from a kvm_run to the action the vCPU
 * thread must take. No side effects, so tests feed it fabricated exits. */
#ifndef EMBER_EXIT_H
#define EMBER_EXIT_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

enum exit_action_kind {
	EXIT_ACT_RESUME,	/* nothing to do; re-enter */
	EXIT_ACT_PIO_IN,
	EXIT_ACT_PIO_OUT,
	EXIT_ACT_MMIO_READ,
	EXIT_ACT_MMIO_WRITE,
	EXIT_ACT_INTR,		/* kicked by a signal: look at the VM state */
	EXIT_ACT_HLT,		/* only without an in-kernel LAPIC */
	EXIT_ACT_TRIPLE_FAULT,	/* KVM_EXIT_SHUTDOWN */
	EXIT_ACT_RESET,		/* KVM_SYSTEM_EVENT_RESET */
	EXIT_ACT_POWEROFF,	/* KVM_SYSTEM_EVENT_SHUTDOWN */
	EXIT_ACT_CRASH,		/* KVM_SYSTEM_EVENT_CRASH */
	EXIT_ACT_ERROR,		/* internal error, failed entry, or unknown exit */
};

#define EXIT_INSN_MAX 15

struct exit_action {
	enum exit_action_kind kind;
	uint32_t exit_reason;

	/* PIO/MMIO: `count` accesses of `size` bytes at `addr`; `data` points
	 * into the kvm_run mapping (already bounds-checked). */
	uint64_t addr;
	unsigned size;
	unsigned count;
	uint8_t *data;

	/* Errors. */
	const char *what;
	uint32_t suberror;
	uint64_t hw_reason;	/* fail_entry hardware reason */
	unsigned insn_len;	/* instruction bytes reported by KVM, if any */
	uint8_t insn[EXIT_INSN_MAX];
};

int handle_exit(struct kvm_run *run, size_t run_size, struct exit_action *act);
const char *exit_reason_name(uint32_t reason);

#endif
