/* KVM: every ioctl Ember issues lives behind these typed wrappers. */
#ifndef EMBER_KVM_H
#define EMBER_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

struct kvm_vm {
	int sys_fd;		/* /dev/kvm */
	int vm_fd;
	int vcpu_mmap_size;
	int max_vcpus;
	int nr_memslots;
	unsigned next_slot;
	int coalesced_mmio_page;	/* KVM_CAP_COALESCED_MMIO: ring page offset */
	struct kvm_cpuid2 *supported_cpuid;
};

struct kvm_vcpu_fd {
	int fd;
	unsigned index;
	struct kvm_run *run;
	size_t run_size;
	struct kvm_coalesced_mmio_ring *ring;	/* NULL if unsupported */
};

/* Open /dev/kvm, require API 12 and every capability Ember relies on. On a
 * missing capability, err names it. */
int kvm_open(struct kvm_vm *kvm, char *err, size_t errlen)
	__attribute__((warn_unused_result));
int kvm_create_vm(struct kvm_vm *kvm) __attribute__((warn_unused_result));
void kvm_close(struct kvm_vm *kvm);
int kvm_check_extension(const struct kvm_vm *kvm, long cap);

int kvm_set_tss_addr(struct kvm_vm *kvm, uint64_t addr);
int kvm_set_identity_map_addr(struct kvm_vm *kvm, uint64_t addr);
int kvm_set_memslot(struct kvm_vm *kvm, uint32_t slot, uint64_t gpa, uint64_t size,
		    void *hva, uint32_t flags);
int kvm_add_memslot(struct kvm_vm *kvm, uint64_t gpa, uint64_t size, void *hva);
/* KVM_GET_DIRTY_LOG: copy slot's dirty bitmap (a bit per 4 KiB page, 64-bit
 * words, enough for the slot's size) into bitmap and clear it in KVM. The
 * slot must have KVM_MEM_LOG_DIRTY_PAGES (kvm_set_memslot flags). */
int kvm_get_dirty_log(struct kvm_vm *kvm, uint32_t slot, uint64_t *bitmap);

int kvm_create_irqchip(struct kvm_vm *kvm);
int kvm_create_pit2(struct kvm_vm *kvm);
int kvm_irq_line(struct kvm_vm *kvm, uint32_t gsi, int level);
int kvm_get_irqchip(struct kvm_vm *kvm, struct kvm_irqchip *chip);
int kvm_set_irqchip(struct kvm_vm *kvm, struct kvm_irqchip *chip);
int kvm_get_pit2(struct kvm_vm *kvm, struct kvm_pit_state2 *pit);
int kvm_set_pit2(struct kvm_vm *kvm, struct kvm_pit_state2 *pit);
int kvm_set_gsi_routing(struct kvm_vm *kvm, const struct kvm_irq_routing *routing);
int kvm_irqfd(struct kvm_vm *kvm, int fd, uint32_t gsi, int resample_fd, bool deassign);
int kvm_ioeventfd(struct kvm_vm *kvm, uint64_t addr, uint32_t len, int fd,
		  bool pio, bool datamatch, uint64_t data, bool deassign);
int kvm_signal_msi(struct kvm_vm *kvm, uint64_t addr, uint32_t data);

int kvm_register_coalesced_mmio(struct kvm_vm *kvm, uint64_t addr, uint32_t size);
int kvm_register_coalesced_pio(struct kvm_vm *kvm, uint64_t port, uint32_t size);

int kvm_create_vcpu(struct kvm_vm *kvm, unsigned index, struct kvm_vcpu_fd *vcpu)
	__attribute__((warn_unused_result));
void kvm_destroy_vcpu(struct kvm_vcpu_fd *vcpu);
int kvm_run(struct kvm_vcpu_fd *vcpu);	/* 0 or -errno (EINTR is normal) */
int kvm_get_regs(struct kvm_vcpu_fd *v, struct kvm_regs *regs);
int kvm_set_regs(struct kvm_vcpu_fd *v, const struct kvm_regs *regs);
int kvm_get_sregs(struct kvm_vcpu_fd *v, struct kvm_sregs *sregs);
int kvm_set_sregs(struct kvm_vcpu_fd *v, const struct kvm_sregs *sregs);
int kvm_set_fpu(struct kvm_vcpu_fd *v, const struct kvm_fpu *fpu);
int kvm_set_msrs(struct kvm_vcpu_fd *v, const struct kvm_msrs *msrs);
int kvm_set_cpuid2(struct kvm_vcpu_fd *v, const struct kvm_cpuid2 *cpuid);
int kvm_get_lapic(struct kvm_vcpu_fd *v, struct kvm_lapic_state *lapic);
int kvm_set_lapic(struct kvm_vcpu_fd *v, const struct kvm_lapic_state *lapic);
int kvm_get_mp_state(struct kvm_vcpu_fd *v, struct kvm_mp_state *mp);
int kvm_set_mp_state(struct kvm_vcpu_fd *v, const struct kvm_mp_state *mp);
int kvm_translate(struct kvm_vcpu_fd *v, struct kvm_translation *tr);
int kvm_get_vcpu_events(struct kvm_vcpu_fd *v, struct kvm_vcpu_events *ev);
int kvm_set_vcpu_events(struct kvm_vcpu_fd *v, const struct kvm_vcpu_events *ev);

/* Machine state for snapshots (vmm/snapshot/). */
int kvm_get_fpu(struct kvm_vcpu_fd *v, struct kvm_fpu *fpu);
/* The XSAVE area KVM exchanges: KVM_CAP_XSAVE2's size (larger than struct
 * kvm_xsave with AMX), 4096 with plain KVM_CAP_XSAVE, 0 without XSAVE. */
size_t kvm_xsave_size(const struct kvm_vm *kvm);
/* buf holds `size` bytes (kvm_xsave_size); KVM_GET_XSAVE2 when size > 4096. */
int kvm_get_xsave(struct kvm_vcpu_fd *v, void *buf, size_t size);
int kvm_set_xsave(struct kvm_vcpu_fd *v, const void *buf);
int kvm_get_xcrs(struct kvm_vcpu_fd *v, struct kvm_xcrs *xcrs);
int kvm_set_xcrs(struct kvm_vcpu_fd *v, const struct kvm_xcrs *xcrs);
int kvm_get_debugregs(struct kvm_vcpu_fd *v, struct kvm_debugregs *dbg);
int kvm_set_debugregs(struct kvm_vcpu_fd *v, const struct kvm_debugregs *dbg);
/* KVM_GET_MSRS: the number of MSRs read (KVM stops at the first it cannot
 * read), or -errno. */
int kvm_get_msrs(struct kvm_vcpu_fd *v, struct kvm_msrs *msrs);
/* KVM_GET_CPUID2: cpuid->nent is the room on entry; -E2BIG if too small. */
int kvm_get_cpuid2(struct kvm_vcpu_fd *v, struct kvm_cpuid2 *cpuid);
/* KVM_GET_TSC_KHZ: the vCPU's TSC frequency (> 0), or -errno. */
int kvm_get_tsc_khz(struct kvm_vcpu_fd *v);
int kvm_set_tsc_khz(struct kvm_vcpu_fd *v, uint32_t khz);
int kvm_get_clock(struct kvm_vm *kvm, struct kvm_clock_data *clock);
int kvm_set_clock(struct kvm_vm *kvm, const struct kvm_clock_data *clock);
/* KVM_GET_MSR_INDEX_LIST: every MSR KVM can save, malloc'd into *out (the
 * caller frees it). Returns the count or -errno. */
int kvm_get_msr_index_list(struct kvm_vm *kvm, uint32_t **out);

/* A copy of KVM_GET_SUPPORTED_CPUID (cached in kvm->supported_cpuid). */
const struct kvm_cpuid2 *kvm_supported_cpuid(struct kvm_vm *kvm);

#endif
