/* Guest CPUID and initial MSRs, per vCPU. */
#ifndef EMBER_CPUID_H
#define EMBER_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>

#include "vmm/config.h"

/* Build the CPUID table for vCPU `index` of `nr_vcpus` from what KVM
 * supports, filtered by the CPU model. APIC ID == index. The result is
 * malloc'd; the caller frees it. Returns 0 or -errno. */
int cpuid_build(const struct kvm_cpuid2 *supported, enum cpu_model model,
		unsigned index, unsigned nr_vcpus, struct kvm_cpuid2 **out);

/* What KVM's supported table does not say: the host's brand string
 * (leaves 0x80000002-4, which KVM reports as zeros) and whether the
 * in-kernel LAPIC has a TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER). */
struct cpuid_host_info {
	char brand[48];
	bool tsc_deadline;
};

void cpuid_host_info_read(struct cpuid_host_info *h, bool tsc_deadline);
/* Fills empty brand leaves (host brand, else "Ember Virtual CPU"), sets
 * CPUID.1:ECX.TSC_DEADLINE when available and makes leaf 0xD's sizes agree
 * with its subleaves. Call after cpuid_build(). */
void cpuid_apply_host_info(struct kvm_cpuid2 *c, const struct cpuid_host_info *h);

#endif
