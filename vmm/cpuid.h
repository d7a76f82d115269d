/* Guest CPUID and initial MSRs, per vCPU. */
#ifndef EMBER_CPUID_H
#define EMBER_CPUID_H

#include <linux/kvm.h>

#include "vmm/config.h"

/* Build the CPUID table for vCPU `index` of `nr_vcpus` from what KVM
 * supports, filtered by the CPU model. APIC ID == index. The result is
 * malloc'd; the caller frees it. Returns 0 or -errno. */
int cpuid_build(const struct kvm_cpuid2 *supported, enum cpu_model model,
		unsigned index, unsigned nr_vcpus, struct kvm_cpuid2 **out);

#endif
