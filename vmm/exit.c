#include "vmm/exit.h"

#include <errno.h>
#include <string.h>

static const char *const reason_names[] = {
	[KVM_EXIT_UNKNOWN] = "UNKNOWN",
	[KVM_EXIT_EXCEPTION] = "EXCEPTION",
	[KVM_EXIT_IO] = "IO",
	[KVM_EXIT_HYPERCALL] = "HYPERCALL",
	[KVM_EXIT_DEBUG] = "DEBUG",
	[KVM_EXIT_HLT] = "HLT",
	[KVM_EXIT_MMIO] = "MMIO",
	[KVM_EXIT_IRQ_WINDOW_OPEN] = "IRQ_WINDOW_OPEN",
	[KVM_EXIT_SHUTDOWN] = "SHUTDOWN",
	[KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY",
	[KVM_EXIT_INTR] = "INTR",
	[KVM_EXIT_SET_TPR] = "SET_TPR",
	[KVM_EXIT_TPR_ACCESS] = "TPR_ACCESS",
	[KVM_EXIT_NMI] = "NMI",
	[KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
	[KVM_EXIT_SYSTEM_EVENT] = "SYSTEM_EVENT",
};

const char *exit_reason_name(uint32_t reason)
{
	if (reason < sizeof(reason_names) / sizeof(reason_names[0]) && reason_names[reason])
		return reason_names[reason];
	return "OTHER";
}

static const char *internal_error_what(uint32_t suberror)
{
	switch (suberror) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "event delivery failed";
	default:
		return "internal error";
	}
}

static void decode_internal_error(const struct kvm_run *run, struct exit_action *act)
{
	act->suberror = run->internal.suberror;
	act->what = internal_error_what(act->suberror);
	/* With the FLAG_INSTRUCTION_BYTES flag, KVM reports the bytes it could
	 * not emulate. */
	if (act->suberror == KVM_INTERNAL_ERROR_EMULATION &&
	    run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		unsigned n = run->emulation_failure.insn_size;

		if (n > EXIT_INSN_MAX)
			n = EXIT_INSN_MAX;
		memcpy(act->insn, run->emulation_failure.insn_bytes, n);
		act->insn_len = n;
	}
}

static void error_fields_clear(struct exit_action *act)
{
	act->suberror = 0;
	act->hw_reason = 0;
	act->insn_len = 0;
}

/* Sets only the fields the action kind uses (this runs on every exit):
 * addr/size/count/data for PIO and MMIO, what and the error fields for
 * errors and lifecycle exits. */
int handle_exit(struct kvm_run *run, size_t run_size, struct exit_action *act)
{
	act->exit_reason = run->exit_reason;
	act->what = NULL;
	if (run->exit_reason != KVM_EXIT_IO && run->exit_reason != KVM_EXIT_MMIO) {
		error_fields_clear(act);
		act->addr = 0;
		act->size = act->count = 0;
		act->data = NULL;
	}

	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint64_t bytes = (uint64_t)run->io.size * run->io.count;

		if ((run->io.size != 1 && run->io.size != 2 && run->io.size != 4) ||
		    run->io.count == 0 || run->io.data_offset > run_size ||
		    bytes > run_size - run->io.data_offset) {
			act->kind = EXIT_ACT_ERROR;
			act->what = "malformed IO exit";
			error_fields_clear(act);
			return -EINVAL;
		}
		act->kind = run->io.direction == KVM_EXIT_IO_OUT ? EXIT_ACT_PIO_OUT : EXIT_ACT_PIO_IN;
		act->addr = run->io.port;
		act->size = run->io.size;
		act->count = run->io.count;
		act->data = (uint8_t *)run + run->io.data_offset;
		return 0;
	}
	case KVM_EXIT_MMIO:
		if (run->mmio.len == 0 || run->mmio.len > sizeof(run->mmio.data)) {
			act->kind = EXIT_ACT_ERROR;
			act->what = "malformed MMIO exit";
			error_fields_clear(act);
			return -EINVAL;
		}
		act->kind = run->mmio.is_write ? EXIT_ACT_MMIO_WRITE : EXIT_ACT_MMIO_READ;
		act->addr = run->mmio.phys_addr;
		act->size = run->mmio.len;
		act->count = 1;
		act->data = run->mmio.data;
		return 0;
	case KVM_EXIT_INTR:
		act->kind = EXIT_ACT_INTR;
		return 0;
	case KVM_EXIT_HLT:
		act->kind = EXIT_ACT_HLT;
		return 0;
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_SET_TPR:
	case KVM_EXIT_TPR_ACCESS:
		act->kind = EXIT_ACT_RESUME;
		return 0;
	case KVM_EXIT_SHUTDOWN:
		act->kind = EXIT_ACT_TRIPLE_FAULT;
		act->what = "triple fault";
		return 0;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_RESET:
			act->kind = EXIT_ACT_RESET;
			act->what = "system reset event";
			return 0;
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			act->kind = EXIT_ACT_POWEROFF;
			act->what = "system shutdown event";
			return 0;
		case KVM_SYSTEM_EVENT_CRASH:
			act->kind = EXIT_ACT_CRASH;
			act->what = "guest crash event";
			return 0;
		default:
			act->kind = EXIT_ACT_ERROR;
			act->what = "unknown system event";
			act->suberror = run->system_event.type;
			return -EINVAL;
		}
	case KVM_EXIT_INTERNAL_ERROR:
		act->kind = EXIT_ACT_ERROR;
		decode_internal_error(run, act);
		return 0;
	case KVM_EXIT_FAIL_ENTRY:
		act->kind = EXIT_ACT_ERROR;
		act->what = "VM entry failed";
		act->hw_reason = run->fail_entry.hardware_entry_failure_reason;
		return 0;
	default:
		act->kind = EXIT_ACT_ERROR;
		act->what = "unexpected exit reason";
		return -EINVAL;
	}
}
