#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/boot/boot.h"
#include "vmm/cpuid.h"
#include "base/log.h"
#include "vmm/vm.h"

#define VCPU_KICK_SIGNAL (SIGRTMIN + 1)

/* The kick handler only needs the running thread's kvm_run. */
static __thread struct kvm_run *tls_run;

static void vcpu_kick_handler(int sig)
{
	(void)sig;
	if (tls_run)
		tls_run->immediate_exit = 1;
}

int vcpu_signal_init(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

/* MSR indices. */
#define MSR_IA32_TSC		0x10
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_MTRR_DEF_TYPE	0x2ff
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102

static const struct {
	uint32_t index;
	uint64_t value;
} boot_msrs[] = {
	{ MSR_IA32_SYSENTER_CS, 0 },
	{ MSR_IA32_SYSENTER_ESP, 0 },
	{ MSR_IA32_SYSENTER_EIP, 0 },
	{ MSR_STAR, 0 },
	{ MSR_CSTAR, 0 },
	{ MSR_KERNEL_GS_BASE, 0 },
	{ MSR_SYSCALL_MASK, 0 },
	{ MSR_LSTAR, 0 },
	{ MSR_IA32_TSC, 0 },
	{ MSR_IA32_MISC_ENABLE, 1 },	/* fast strings */
	{ MSR_MTRR_DEF_TYPE, (1 << 11) | 6 },	/* MTRRs on, default write-back */
};

#define NR_BOOT_MSRS (sizeof(boot_msrs) / sizeof(boot_msrs[0]))

/* struct kvm_msrs ends in a flexible array; give it room for our entries. */
union kvm_msrs_buf {
	struct kvm_msrs hdr;
	uint8_t bytes[sizeof(struct kvm_msrs) + NR_BOOT_MSRS * sizeof(struct kvm_msr_entry)];
};

static int vcpu_set_boot_msrs(struct vcpu *vcpu)
{
	union kvm_msrs_buf m;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = NR_BOOT_MSRS;
	for (unsigned i = 0; i < NR_BOOT_MSRS; i++) {
		m.hdr.entries[i].index = boot_msrs[i].index;
		m.hdr.entries[i].data = boot_msrs[i].value;
	}
	if (kvm_set_msrs(&vcpu->kfd, &m.hdr) == 0)
		return 0;
	/* Some accelerators reject individual MSRs; set what they accept. */
	for (unsigned i = 0; i < NR_BOOT_MSRS; i++) {
		union kvm_msrs_buf one;

		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.hdr.entries[0] = m.hdr.entries[i];
		if (kvm_set_msrs(&vcpu->kfd, &one.hdr))
			log_debug("vcpu%u: KVM rejected MSR 0x%x", vcpu->index,
				  m.hdr.entries[i].index);
	}
	return 0;
}

/* Virtual-wire mode: LINT0 takes ExtINT from the PIC, LINT1 takes NMI,
 * as firmware would leave it for the OS. */
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI 0x4

static void lapic_set_lvt(struct kvm_lapic_state *l, unsigned reg, unsigned mode)
{
	uint32_t v;

	memcpy(&v, &l->regs[reg], 4);
	v = (v & ~0x700u & ~0x10000u) | (mode << 8);
	memcpy(&l->regs[reg], &v, 4);
}

static int vcpu_setup_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state l;
	int ret = kvm_get_lapic(&vcpu->kfd, &l);

	if (ret)
		return ret;
	lapic_set_lvt(&l, APIC_LVT0, APIC_MODE_EXTINT);
	lapic_set_lvt(&l, APIC_LVT1, APIC_MODE_NMI);
	return kvm_set_lapic(&vcpu->kfd, &l);
}

static int vcpu_setup_fpu(struct vcpu *vcpu)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	return kvm_set_fpu(&vcpu->kfd, &fpu);
}

int vcpu_create(struct vm *vm, unsigned index, struct vcpu **out)
{
	struct kvm_cpuid2 *cpuid = NULL;
	const struct kvm_cpuid2 *supported;
	struct vcpu *vcpu;
	int ret;

	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu)
		return -ENOMEM;
	vcpu->vm = vm;
	vcpu->index = index;
	vcpu->kfd.fd = -1;
	ret = kvm_create_vcpu(vm->kvm, index, &vcpu->kfd);
	if (ret) {
		log_err("cannot create vcpu%u: %s", index, strerror(-ret));
		goto err_free;
	}
	supported = kvm_supported_cpuid(vm->kvm);
	if (!supported) {
		ret = -EIO;
		log_err("KVM_GET_SUPPORTED_CPUID failed");
		goto err_vcpu;
	}
	ret = cpuid_build(supported, vm->cfg->cpu_model, index, vm->nr_vcpus, &cpuid);
	if (!ret) {
		struct cpuid_host_info host;

		cpuid_host_info_read(&host, kvm_check_extension(vm->kvm, KVM_CAP_TSC_DEADLINE_TIMER) > 0);
		cpuid_apply_host_info(cpuid, &host);
		ret = kvm_set_cpuid2(&vcpu->kfd, cpuid);
	}
	free(cpuid);
	if (ret) {
		log_err("vcpu%u: cannot set CPUID: %s", index, strerror(-ret));
		goto err_vcpu;
	}
	ret = vcpu_set_boot_msrs(vcpu);
	if (!ret)
		ret = vcpu_setup_fpu(vcpu);
	if (!ret)
		ret = vcpu_setup_lapic(vcpu);
	if (ret) {
		log_err("vcpu%u: initial state: %s", index, strerror(-ret));
		goto err_vcpu;
	}

	vcpu->power_on = calloc(1, sizeof(*vcpu->power_on));
	if (!vcpu->power_on) {
		ret = -ENOMEM;
		goto err_vcpu;
	}
	ret = kvm_get_regs(&vcpu->kfd, &vcpu->power_on->regs);
	if (!ret)
		ret = kvm_get_sregs(&vcpu->kfd, &vcpu->power_on->sregs);
	if (!ret)
		ret = kvm_get_lapic(&vcpu->kfd, &vcpu->power_on->lapic);
	if (!ret)
		ret = kvm_get_mp_state(&vcpu->kfd, &vcpu->power_on->mp_state);
	if (ret) {
		log_err("vcpu%u: cannot read power-on state: %s", index, strerror(-ret));
		goto err_state;
	}
	*out = vcpu;
	return 0;

err_state:
	free(vcpu->power_on);
err_vcpu:
	kvm_destroy_vcpu(&vcpu->kfd);
err_free:
	free(vcpu);
	return ret;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (!vcpu)
		return;
	kvm_destroy_vcpu(&vcpu->kfd);
	free(vcpu->power_on);
	free(vcpu);
}

int vcpu_reset(struct vcpu *vcpu)
{
	struct vcpu_power_on_state *p = vcpu->power_on;
	int ret;

	ret = kvm_set_sregs(&vcpu->kfd, &p->sregs);
	if (!ret)
		ret = kvm_set_regs(&vcpu->kfd, &p->regs);
	if (!ret)
		ret = vcpu_setup_fpu(vcpu);
	if (!ret)
		ret = vcpu_set_boot_msrs(vcpu);
	if (!ret)
		ret = kvm_set_lapic(&vcpu->kfd, &p->lapic);
	if (!ret)
		ret = kvm_set_mp_state(&vcpu->kfd, &p->mp_state);
	return ret;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = 1,
		.l = code64 ? 1 : 0,
		.g = 1,
	};
}

#define X86_CR0_PE 0x1
#define X86_CR0_MP 0x2
#define X86_CR0_ET 0x10
#define X86_CR0_NE 0x20
#define X86_CR0_PG 0x80000000
#define X86_CR4_PAE 0x20
#define X86_EFER_LME 0x100
#define X86_EFER_LMA 0x400

int vcpu_setup_boot(struct vcpu *vcpu, const struct boot_info *bi)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int ret;

	ret = kvm_get_sregs(&vcpu->kfd, &sregs);
	if (ret)
		return ret;
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = BOOT_GDT_LIMIT;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	seg_flat(&sregs.ds, BOOT_GDT_DATA, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.selector = BOOT_GDT_TSS, .limit = 0x67, .type = 0xb, .present = 1,
	};
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = bi->entry;

	if (bi->entry_64bit) {
		/* Linux 64-bit boot protocol: long mode, identity-mapped, rsi =
		 * boot_params. */
		seg_flat(&sregs.cs, BOOT_GDT_CODE64, 0xb, true);
		sregs.cr3 = BOOT_PML4_ADDR;
		sregs.cr4 = X86_CR4_PAE;
		sregs.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
		sregs.efer = X86_EFER_LME | X86_EFER_LMA;
		regs.rsi = bi->boot_arg;
	} else {
		/* PVH: 32-bit protected mode, paging off, ebx = hvm_start_info. */
		seg_flat(&sregs.cs, BOOT_GDT_CODE32, 0xb, false);
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
		sregs.cr4 = 0;
		sregs.efer = 0;
		regs.rbx = bi->boot_arg;
	}
	ret = kvm_set_sregs(&vcpu->kfd, &sregs);
	return ret ? ret : kvm_set_regs(&vcpu->kfd, &regs);
}

void vcpu_kick(struct vcpu *vcpu)
{
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

unsigned coalesced_ring_drain(struct kvm_coalesced_mmio_ring *ring, uint32_t max,
			      coalesced_write_fn write, void *opaque)
{
	uint32_t first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
	uint32_t last = __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE);
	unsigned n = 0;

	/* Neither index is trusted: out of range means a broken ring, and
	 * it is dropped whole rather than walked. At most max - 1 entries
	 * are taken per call, so the walk ends whatever the indexes say. */
	if (first >= max || last >= max) {
		__atomic_store_n(&ring->first, last < max ? last : 0, __ATOMIC_RELEASE);
		return 0;
	}
	while (first != last && n < max - 1) {
		struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[first];
		uint8_t data[8];
		uint32_t len = e->len <= sizeof(data) ? e->len : sizeof(data);

		memcpy(data, e->data, len);
		if (len)
			write(opaque, e->pio != 0, e->phys_addr, data, len);
		first = (first + 1) % max;
		__atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
		n++;
	}
	return n;
}

static void coalesced_bus_write(void *opaque, bool pio, uint64_t addr, const void *data,
				unsigned len)
{
	struct vm *vm = opaque;

	bus_write(pio ? &vm->pio_bus : &vm->mmio_bus, addr, data, len);
}

void vcpu_drain_coalesced(struct vm *vm)
{
	struct kvm_coalesced_mmio_ring *ring = vm->coalesced_ring;
	const uint32_t max = (4096 - sizeof(*ring)) / sizeof(ring->coalesced_mmio[0]);

	if (!ring || __atomic_load_n(&ring->first, __ATOMIC_ACQUIRE) ==
			     __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&vm->coalesced_lock);
	(void)coalesced_ring_drain(ring, max, coalesced_bus_write, vm);
	pthread_mutex_unlock(&vm->coalesced_lock);
}

/* Read the instruction at RIP from guest memory when KVM did not report it. */
static unsigned vcpu_fetch_insn(struct vcpu *vcpu, uint64_t linear, uint8_t *buf, unsigned max)
{
	struct kvm_translation tr = { .linear_address = linear };
	const uint64_t page_left = 4096 - (linear & 4095);
	unsigned n = max < page_left ? max : (unsigned)page_left;

	if (kvm_translate(&vcpu->kfd, &tr) || !tr.valid)
		return 0;
	if (gm_read(&vcpu->vm->mem, tr.physical_address, buf, n))
		return 0;
	return n;
}

static void vcpu_report_error(struct vcpu *vcpu, const struct exit_action *act)
{
	char bytes[EXIT_INSN_MAX * 3 + 32] = "unavailable";
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint8_t insn[EXIT_INSN_MAX];
	unsigned n = act->insn_len;
	const char *src = "reported by KVM";
	char cause[160];

	memset(&regs, 0, sizeof(regs));
	memset(&sregs, 0, sizeof(sregs));
	kvm_get_regs(&vcpu->kfd, &regs);
	kvm_get_sregs(&vcpu->kfd, &sregs);
	memcpy(insn, act->insn, n);
	if (!n) {
		n = vcpu_fetch_insn(vcpu, sregs.cs.base + regs.rip, insn, EXIT_INSN_MAX);
		src = "read from guest memory";
	}
	if (n) {
		int off = 0;

		for (unsigned i = 0; i < n; i++)
			off += snprintf(bytes + off, sizeof(bytes) - off, "%s%02x", i ? " " : "",
					insn[i]);
		snprintf(bytes + off, sizeof(bytes) - off, " (%s)", src);
	}
	log_err("vcpu%u: %s: exit reason %u (%s), suberror %u, hardware reason 0x%llx, "
		"RIP 0x%llx, CS base 0x%llx, CR0 0x%llx, instruction bytes: %s",
		vcpu->index, act->what ? act->what : "error", act->exit_reason,
		exit_reason_name(act->exit_reason), act->suberror,
		(unsigned long long)act->hw_reason, (unsigned long long)regs.rip,
		(unsigned long long)sregs.cs.base, (unsigned long long)sregs.cr0, bytes);
	snprintf(cause, sizeof(cause), "vcpu%u: %s at RIP 0x%llx", vcpu->index,
		 act->what ? act->what : "error", (unsigned long long)regs.rip);
	vm_request_error(vcpu->vm, cause);
}

static void vcpu_do_pio(struct vcpu *vcpu, const struct exit_action *act)
{
	struct vm *vm = vcpu->vm;

	vcpu_drain_coalesced(vm);
	for (unsigned i = 0; i < act->count; i++) {
		uint8_t *d = act->data + (size_t)i * act->size;

		if (act->kind == EXIT_ACT_PIO_OUT)
			bus_write(&vm->pio_bus, act->addr, d, act->size);
		else
			bus_read(&vm->pio_bus, act->addr, d, act->size);
	}
}

static void vcpu_do_mmio(struct vcpu *vcpu, const struct exit_action *act)
{
	struct vm *vm = vcpu->vm;

	vcpu_drain_coalesced(vm);
	if (act->kind == EXIT_ACT_MMIO_WRITE)
		bus_write(&vm->mmio_bus, act->addr, act->data, act->size);
	else
		bus_read(&vm->mmio_bus, act->addr, act->data, act->size);
}

/* With vm->lock held: run the vcpu_call() work, unlocked, and hand back
 * its result. */
static void vcpu_run_call(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	int (*fn)(struct vcpu *, void *) = vcpu->call_fn;
	int ret;

	pthread_mutex_unlock(&vm->lock);
	ret = fn(vcpu, vcpu->call_arg);
	pthread_mutex_lock(&vm->lock);
	vcpu->call_ret = ret;
	vcpu->call_fn = NULL;
	pthread_cond_broadcast(&vm->cond);
}

int vcpu_call(struct vcpu *vcpu, int (*fn)(struct vcpu *vcpu, void *arg), void *arg)
{
	struct vm *vm = vcpu->vm;
	int ret;

	pthread_mutex_lock(&vm->lock);
	if (!vcpu->thread_started || vcpu->thread_exited) {
		pthread_mutex_unlock(&vm->lock);
		return fn(vcpu, arg);
	}
	if (vm->state != VM_STATE_PAUSED && vm->state != VM_STATE_CREATED) {
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	vcpu->call_fn = fn;
	vcpu->call_arg = arg;
	pthread_cond_broadcast(&vm->cond);
	/* The thread is parked in vcpu_should_exit (or about to be). */
	while (vcpu->call_fn && !vcpu->thread_exited)
		pthread_cond_wait(&vm->cond, &vm->lock);
	ret = vcpu->call_fn ? -ESRCH : vcpu->call_ret;
	vcpu->call_fn = NULL;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/* Park while paused, apply resets, and say whether to leave the loop. */
static bool vcpu_should_exit(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	bool leave = false;

	if (__atomic_load_n(&vm->state, __ATOMIC_ACQUIRE) == VM_STATE_RUNNING &&
	    __atomic_load_n(&vm->reset_gen, __ATOMIC_ACQUIRE) == vcpu->reset_gen)
		return false;

	pthread_mutex_lock(&vm->lock);
	while (vm->state == VM_STATE_PAUSED || vm->state == VM_STATE_CREATED) {
		if (vcpu->call_fn) {
			vcpu_run_call(vcpu);
			continue;
		}
		vm->vcpus_paused++;
		pthread_cond_broadcast(&vm->cond);
		pthread_cond_wait(&vm->cond, &vm->lock);
		vm->vcpus_paused--;
	}
	if (vm->state == VM_STATE_STOPPING || vm->state == VM_STATE_STOPPED)
		leave = true;
	if (!leave && vm->reset_gen != vcpu->reset_gen) {
		int ret = vcpu_reset(vcpu);

		if (!ret && vcpu->index == 0)
			ret = vcpu_setup_boot(vcpu, &vm->boot);
		vcpu->reset_gen = vm->reset_gen;
		if (ret) {
			log_err("vcpu%u: reset failed: %s", vcpu->index, strerror(-ret));
			leave = true;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	if (leave && vm->state != VM_STATE_STOPPING && vm->state != VM_STATE_STOPPED)
		vm_request_error(vm, "vCPU reset failed");
	return leave;
}

/* A counter with one writer (this vCPU) and readers elsewhere (QMP stats):
 * relaxed atomics, so no lock prefix on the hot path and no torn reads. */
static inline void counter_inc(uint64_t *c)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	struct kvm_run *run = vcpu->kfd.run;
	struct exit_action act;
	sigset_t set;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", vcpu->index);
	pthread_setname_np(pthread_self(), name);
	vcpu->tid = (pid_t)syscall(SYS_gettid);
	tls_run = run;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	/* Pause, reset and stop always kick the vCPU (signal plus
	 * immediate_exit), so the VM state only needs a look after a kick or
	 * after this vCPU itself raised a request, not on every exit. */
	for (bool check = true;;) {
		int ret;

		if (check && vcpu_should_exit(vcpu))
			break;
		check = false;
		ret = kvm_run(&vcpu->kfd);
		if (ret == -EINTR || ret == -EAGAIN) {
			run->immediate_exit = 0;
			counter_inc(&vcpu->intr_exits);
			check = true;
			continue;
		}
		if (ret) {
			log_err("vcpu%u: KVM_RUN failed: %s", vcpu->index, strerror(-ret));
			vm_request_error(vm, "KVM_RUN failed");
			break;
		}
		counter_inc(&vcpu->exits[run->exit_reason < VCPU_EXIT_COUNTERS ? run->exit_reason
									       : VCPU_EXIT_COUNTERS - 1]);
		/* POST codes (port 0x80 writes) are the most frequent exit of
		 * firmware and early kernels and have no device state: take
		 * them before any decoding or locking. */
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x80 &&
		    run->io.direction == KVM_EXIT_IO_OUT) {
			vcpu->pio_exits++;
			continue;
		}
		handle_exit(run, vcpu->kfd.run_size, &act);
		switch (act.kind) {
		case EXIT_ACT_PIO_IN:
		case EXIT_ACT_PIO_OUT:
			vcpu->pio_exits++;
			vcpu_do_pio(vcpu, &act);
			break;
		case EXIT_ACT_MMIO_READ:
		case EXIT_ACT_MMIO_WRITE:
			vcpu->mmio_exits++;
			vcpu_do_mmio(vcpu, &act);
			break;
		case EXIT_ACT_INTR:
			check = true;
			break;
		case EXIT_ACT_RESUME:
		case EXIT_ACT_HLT:
			break;
		case EXIT_ACT_TRIPLE_FAULT:
			log_warn("vcpu%u: guest triple fault", vcpu->index);
			vm_request_panic(vm, "triple fault");
			break;
		case EXIT_ACT_RESET:
			vm_request_reset(vm, "KVM system event: reset");
			break;
		case EXIT_ACT_POWEROFF:
			vm_request_poweroff(vm, "KVM system event: shutdown");
			break;
		case EXIT_ACT_CRASH:
			vm_request_panic(vm, "KVM system event: crash");
			break;
		case EXIT_ACT_ERROR:
			vcpu_report_error(vcpu, &act);
			break;
		}
		/* Once anything asked to reset, stop or power off the VM, this
		 * vCPU must not run another guest instruction: wait here until
		 * the main loop has acted (it pauses, resets or stops us). */
		if (__atomic_load_n(&vm->request, __ATOMIC_ACQUIRE) != VM_REQ_NONE) {
			pthread_mutex_lock(&vm->lock);
			while (vm->state == VM_STATE_RUNNING &&
			       vm->reset_gen == vcpu->reset_gen &&
			       __atomic_load_n(&vm->request, __ATOMIC_ACQUIRE) != VM_REQ_NONE)
				pthread_cond_wait(&vm->cond, &vm->lock);
			pthread_mutex_unlock(&vm->lock);
			check = true;
		}
	}
	/* vm_pause() must not wait for a vCPU that has left its loop. */
	pthread_mutex_lock(&vm->lock);
	vm->vcpus_exited++;
	vcpu->thread_exited = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	tls_run = NULL;
	return NULL;
}

int vcpu_start(struct vcpu *vcpu)
{
	int ret = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);

	if (ret)
		return -ret;
	vcpu->thread_started = true;
	return 0;
}

void vcpu_join(struct vcpu *vcpu)
{
	if (vcpu->thread_started) {
		pthread_join(vcpu->thread, NULL);
		vcpu->thread_started = false;
	}
}
