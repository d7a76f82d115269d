/* The machine state a snapshot carries, and its file format.
 *
 * The state file (DIR/state) is a header followed by sections, all
 * little-endian x86-64:
 *
 *   header (128 bytes): magic "EMBERSNP", format version, header size,
 *     the Ember build that wrote it, CPU model, vCPU count, RAM size,
 *     section count, file size, then a CRC32 of the header itself;
 *   section: type, index (the vCPU for per-vCPU sections, else 0), payload
 *     length, CRC32 of the payload, then the payload padded to 8 bytes.
 *
 * KVM's own structures (struct kvm_regs, kvm_sregs, kvm_lapic_state, ...)
 * are stored as KVM exchanges them: they are a stable ABI, and a payload
 * must have exactly their size. Devices are one JSON object (each device's
 * save hook under its name).
 *
 * snap_state_parse() is the only way in from a file: it checks the header,
 * every section's bounds and checksum, that each section appears once and
 * every required one is there, and every field KVM does not check itself.
 * It never trusts a length or a count it has not bounded, and any failure is
 * one line in err. The fuzzer (fuzz/fuzz_snapshot_load.c) feeds it. */
#ifndef EMBER_SNAPSHOT_STATE_H
#define EMBER_SNAPSHOT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#define SNAP_MAGIC		"EMBERSNP"
#define SNAP_FORMAT_VERSION	1
#define SNAP_HEADER_SIZE	128
#define SNAP_SECTION_HDR_SIZE	24

#define SNAP_MAX_VCPUS		1024
#define SNAP_MAX_REGIONS	8
#define SNAP_MAX_MSRS		1024
#define SNAP_MAX_CPUID		256	/* KVM_MAX_CPUID_ENTRIES */
#define SNAP_XSAVE_MIN		4096	/* struct kvm_xsave */
#define SNAP_XSAVE_MAX		(64u << 10)
#define SNAP_DEVICES_MAX	(16u << 20)	/* the devices' JSON, bytes */
#define SNAP_MEMORY_MIN		(1ULL << 20)
#define SNAP_MEMORY_MAX		(1ULL << 40)
#define SNAP_VERSION_LEN	32

enum snap_section_type {
	SNAP_SEC_LAYOUT = 1,	/* guest memory regions */
	SNAP_SEC_IRQCHIP,	/* PIC master, PIC slave, IOAPIC */
	SNAP_SEC_PIT,
	SNAP_SEC_CLOCK,		/* kvmclock */
	SNAP_SEC_DEVICES,	/* JSON */
	SNAP_SEC_REGS,		/* per vCPU from here on */
	SNAP_SEC_SREGS,
	SNAP_SEC_XSAVE,		/* or SNAP_SEC_FPU on hosts without XSAVE */
	SNAP_SEC_FPU,
	SNAP_SEC_XCRS,		/* optional (KVM_CAP_XCRS) */
	SNAP_SEC_DEBUGREGS,
	SNAP_SEC_MSRS,
	SNAP_SEC_LAPIC,
	SNAP_SEC_EVENTS,
	SNAP_SEC_MP_STATE,
	SNAP_SEC_CPUID,
	SNAP_SEC_TSC_KHZ,	/* optional (KVM_GET_TSC_KHZ) */
	SNAP_SEC_MAX,
};

struct snap_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t offset;	/* in the memory file (the memfd offset) */
};

struct snap_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint8_t *xsave;		/* xsave_len bytes, or NULL: fpu instead */
	size_t xsave_len;
	struct kvm_fpu fpu;
	bool has_xcrs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs debugregs;
	struct kvm_msr_entry *msrs;
	unsigned nr_msrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_cpuid_entry2 *cpuid;
	unsigned nr_cpuid;
	uint32_t tsc_khz;	/* 0: not recorded */
};

struct snap_state {
	char ember_version[SNAP_VERSION_LEN];	/* NUL-terminated */
	uint32_t cpu_model;	/* enum cpu_model */
	uint64_t memory_size;
	struct snap_region regions[SNAP_MAX_REGIONS];
	unsigned nr_regions;
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	char *devices_json;	/* NUL-terminated */
	struct snap_vcpu *vcpus;
	unsigned nr_vcpus;
};

/* Allocate nr zeroed vCPU states (snap_state_free releases them). */
int snap_state_alloc_vcpus(struct snap_state *s, unsigned nr) __attribute__((warn_unused_result));
void snap_state_free(struct snap_state *s);

/* The state as a file image (malloc'd into *out). Returns 0 or -errno;
 * -EINVAL when s itself would not parse back (a bug, logged in err). */
int snap_state_serialize(const struct snap_state *s, uint8_t **out, size_t *len,
			 char *err, size_t errlen) __attribute__((warn_unused_result));

/* Parse and validate a file image into *s (zeroed first; freed with
 * snap_state_free, also after a failure). Returns 0, or -EINVAL with one
 * line in err. */
int snap_state_parse(const uint8_t *buf, size_t len, struct snap_state *s, char *err,
		     size_t errlen) __attribute__((warn_unused_result));

/* CRC-32 (IEEE 802.3, zlib's), for sections and the memory file. */
uint32_t snap_crc32(uint32_t crc, const void *buf, size_t len);

const char *snap_section_name(unsigned type);

#endif
