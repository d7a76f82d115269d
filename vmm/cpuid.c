/* Guest CPUID: KVM's supported table, given a flat topology (one package,
 * nr_vcpus cores, one thread per core, APIC ID == vCPU index), filtered by
 * the CPU model.
 *
 * The baseline model hides what KVM's instruction emulator cannot execute
 * (see PLATFORM.md): CMPXCHG16B, XSAVE and everything whose state lives in
 * the XSAVE area or that is VEX/EVEX/XOP encoded (AVX, AVX2, AVX-512, FMA,
 * F16C, BMI1/2, VAES, VPCLMULQDQ, AVX-VNNI, AVX10, AMX, XOP, FMA4, TBM) and
 * PKU/OSPKE (PKRU is XSAVE state). Leaves 0xD (XSAVE), 0x1D/0x1E (AMX) and
 * 0x24 (AVX10) are dropped. The host model passes KVM's table through. */
#include <stddef.h>	/* before vmm/cpuid.h: vmm/config.h uses size_t */

#include "vmm/cpuid.h"

#include <cpuid.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BIT(n)			(1u << (n))
#define TOPO_SUBLEAVES		3	/* SMT, core, terminating invalid level */
#define TOPO_LEVEL_SMT		1
#define TOPO_LEVEL_CORE		2

#define LEAF1_EBX_COUNT_SHIFT	16
#define LEAF1_EBX_APIC_SHIFT	24
#define LEAF1_EDX_HTT		BIT(28)
#define LEAF1_ECX_HYPERVISOR	BIT(31)
#define CACHE_TYPE_MASK		0x1Fu
#define CACHE_LEVEL(eax)	(((eax) >> 5) & 7)
#define CACHE_SHARING_SHIFT	14
#define CACHE_SHARING_MASK	(0xFFFu << CACHE_SHARING_SHIFT)
#define CACHE_CORES_SHIFT	26
#define CACHE_CORES_MASK	(0x3Fu << CACHE_CORES_SHIFT)
#define EXT1_ECX_CMP_LEGACY	BIT(1)
#define EXT8_ECX_NC_MASK	0xFFu
#define EXT8_ECX_APICID_SHIFT	12
#define EXT8_ECX_APICID_MASK	(0xFu << EXT8_ECX_APICID_SHIFT)

enum vendor { VENDOR_OTHER, VENDOR_INTEL, VENDOR_AMD };

struct feature_mask {
	uint32_t function, index;
	bool any_index;		/* apply to every subleaf */
	uint32_t eax, ebx, ecx, edx;	/* bits to clear */
};

static const struct feature_mask baseline_masks[] = {
	{ .function = 1, .any_index = true,
	  .ecx = BIT(12) | BIT(13) | BIT(26) | BIT(27) | BIT(28) | BIT(29) },
	{ .function = 7, .index = 0,
	  .ebx = BIT(3) | BIT(5) | BIT(8) | BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) |
		 BIT(28) | BIT(30) | BIT(31),
	  .ecx = BIT(1) | BIT(3) | BIT(4) | BIT(6) | BIT(9) | BIT(10) | BIT(11) | BIT(12) |
		 BIT(14),
	  .edx = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25) },
	{ .function = 7, .index = 1,
	  .eax = BIT(4) | BIT(5) | BIT(21) | BIT(23),
	  .edx = BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19) },
	{ .function = 0x80000001, .any_index = true,
	  .ecx = BIT(11) | BIT(16) | BIT(21) },
};

static bool baseline_drops(uint32_t function)
{
	return function == 0xD || function == 0x1D || function == 0x1E || function == 0x24;
}

static enum vendor cpuid_vendor(const struct kvm_cpuid2 *c)
{
	for (unsigned i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		char id[12];

		if (e->function != 0)
			continue;
		memcpy(id, &e->ebx, 4);
		memcpy(id + 4, &e->edx, 4);
		memcpy(id + 8, &e->ecx, 4);
		if (!memcmp(id, "GenuineIntel", 12))
			return VENDOR_INTEL;
		if (!memcmp(id, "AuthenticAMD", 12) || !memcmp(id, "HygonGenuine", 12))
			return VENDOR_AMD;
	}
	return VENDOR_OTHER;
}

static unsigned order_base_2(unsigned n)
{
	unsigned shift = 0;

	while (shift < 31 && (1u << shift) < n)
		shift++;
	return shift;
}

static unsigned clamp(unsigned v, unsigned max)
{
	return v > max ? max : v;
}

/* Leaf 0xB / 0x1F subleaf `sub`: one thread per core, nr cores. */
static void topo_entry(struct kvm_cpuid_entry2 *e, uint32_t fn, uint32_t sub,
		       unsigned index, unsigned nr)
{
	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = sub;
	e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	e->edx = index;			/* x2APIC ID */
	e->ecx = sub;
	if (sub == 0) {
		e->eax = 0;		/* no SMT bits in the APIC ID */
		e->ebx = 1;
		e->ecx |= TOPO_LEVEL_SMT << 8;
	} else if (sub == 1) {
		e->eax = order_base_2(nr);
		e->ebx = nr;
		e->ecx |= TOPO_LEVEL_CORE << 8;
	}
}

/* Deterministic cache parameters (Intel leaf 4, AMD 0x8000001D). */
static void fix_cache_leaf(struct kvm_cpuid_entry2 *e, unsigned nr, bool cores_field)
{
	unsigned sharing;

	if (!(e->eax & CACHE_TYPE_MASK))
		return;			/* no cache at this subleaf */
	sharing = CACHE_LEVEL(e->eax) >= 3 ? nr - 1 : 0;
	e->eax &= ~CACHE_SHARING_MASK;
	e->eax |= clamp(sharing, 0xFFF) << CACHE_SHARING_SHIFT;
	if (cores_field) {
		e->eax &= ~CACHE_CORES_MASK;
		e->eax |= (clamp(nr, 64) - 1) << CACHE_CORES_SHIFT;
	}
}

static void fix_topology(struct kvm_cpuid_entry2 *e, enum vendor v, unsigned index, unsigned nr)
{
	switch (e->function) {
	case 1:
		e->ebx &= 0xFFFF;
		e->ebx |= clamp(nr, 255) << LEAF1_EBX_COUNT_SHIFT;
		e->ebx |= (index & 0xFF) << LEAF1_EBX_APIC_SHIFT;
		e->edx &= ~LEAF1_EDX_HTT;
		if (nr > 1)
			e->edx |= LEAF1_EDX_HTT;
		e->ecx |= LEAF1_ECX_HYPERVISOR;
		break;
	case 4:
		fix_cache_leaf(e, nr, true);
		break;
	case 0x80000001:
		if (v != VENDOR_AMD)
			break;
		e->ecx &= ~EXT1_ECX_CMP_LEGACY;
		if (nr > 1)
			e->ecx |= EXT1_ECX_CMP_LEGACY;
		break;
	case 0x80000008:
		if (v != VENDOR_AMD)
			break;
		e->ecx &= ~(EXT8_ECX_NC_MASK | EXT8_ECX_APICID_MASK);
		e->ecx |= clamp(nr - 1, 0xFF);
		e->ecx |= order_base_2(nr) << EXT8_ECX_APICID_SHIFT;
		break;
	case 0x8000001D:
		if (v == VENDOR_AMD)
			fix_cache_leaf(e, nr, false);
		break;
	case 0x8000001E:
		if (v != VENDOR_AMD)
			break;
		e->eax = index;		/* extended APIC ID */
		e->ebx = index & 0xFF;	/* core id; threads per core - 1 = 0 */
		e->ecx = 0;		/* node 0, one node per package */
		break;
	}
}

static void apply_masks(struct kvm_cpuid_entry2 *e)
{
	for (size_t i = 0; i < sizeof(baseline_masks) / sizeof(baseline_masks[0]); i++) {
		const struct feature_mask *m = &baseline_masks[i];

		if (m->function != e->function || (!m->any_index && m->index != e->index))
			continue;
		e->eax &= ~m->eax;
		e->ebx &= ~m->ebx;
		e->ecx &= ~m->ecx;
		e->edx &= ~m->edx;
	}
}

static void add_topology_leaf(struct kvm_cpuid2 *c, uint32_t fn, unsigned index, unsigned nr)
{
	for (uint32_t sub = 0; sub < TOPO_SUBLEAVES; sub++)
		topo_entry(&c->entries[c->nent++], fn, sub, index, nr);
}

int cpuid_build(const struct kvm_cpuid2 *supported, enum cpu_model model,
		unsigned index, unsigned nr_vcpus, struct kvm_cpuid2 **out)
{
	bool baseline = model == CPU_MODEL_BASELINE, has_0b = false, has_1f = false;
	size_t cap;
	struct kvm_cpuid2 *c;
	enum vendor v;

	if (!supported || !out || nr_vcpus == 0 || index >= nr_vcpus)
		return -EINVAL;
	cap = (size_t)supported->nent + 2 * TOPO_SUBLEAVES;
	c = calloc(1, sizeof(*c) + cap * sizeof(c->entries[0]));
	if (!c)
		return -ENOMEM;
	v = cpuid_vendor(supported);

	for (unsigned i = 0; i < supported->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &supported->entries[i];

		/* Topology leaves are rebuilt from scratch below. */
		has_0b |= e->function == 0xB;
		has_1f |= e->function == 0x1F;
		if (e->function == 0xB || e->function == 0x1F)
			continue;
		if (baseline && baseline_drops(e->function))
			continue;
		c->entries[c->nent++] = *e;
	}
	if (has_0b)
		add_topology_leaf(c, 0xB, index, nr_vcpus);
	if (has_1f)
		add_topology_leaf(c, 0x1F, index, nr_vcpus);

	for (unsigned i = 0; i < c->nent; i++) {
		fix_topology(&c->entries[i], v, index, nr_vcpus);
		if (baseline)
			apply_masks(&c->entries[i]);
	}
	*out = c;
	return 0;
}

static struct kvm_cpuid_entry2 *entry_of(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

void cpuid_host_info_read(struct cpuid_host_info *h, bool tsc_deadline)
{
	unsigned a, b, c, d;

	memset(h, 0, sizeof(*h));
	h->tsc_deadline = tsc_deadline;
	if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000004)
		return;
	for (unsigned i = 0; i < 3; i++) {
		__cpuid(0x80000002 + i, a, b, c, d);
		memcpy(h->brand + 16 * i, &a, 4);
		memcpy(h->brand + 16 * i + 4, &b, 4);
		memcpy(h->brand + 16 * i + 8, &c, 4);
		memcpy(h->brand + 16 * i + 12, &d, 4);
	}
}

/* Leaf 0xD subleaf 0: EBX and ECX are the XSAVE area size for the enabled
 * and for all supported components. Make both agree with the subleaves'
 * offsets and sizes, so a guest's own size check (Linux's "XSAVE
 * consistency problem") holds. KVM rewrites EBX for the guest's XCR0. */
static void fix_xsave_leaf(struct kvm_cpuid2 *c)
{
	struct kvm_cpuid_entry2 *l0 = entry_of(c, 0xD, 0);
	uint64_t mask;
	uint32_t size = 576;	/* legacy area + header */

	if (!l0)
		return;
	mask = l0->eax | (uint64_t)l0->edx << 32;
	for (unsigned i = 2; i < 63; i++) {
		const struct kvm_cpuid_entry2 *e;

		if (!(mask & (1ULL << i)))
			continue;
		e = entry_of(c, 0xD, i);
		if (!e || e->eax == 0) {
			mask &= ~(1ULL << i);	/* no layout: not usable */
			continue;
		}
		if (e->ebx + e->eax > size && e->ebx + e->eax > e->ebx)
			size = e->ebx + e->eax;
	}
	l0->eax = (uint32_t)mask;
	l0->edx = (uint32_t)(mask >> 32);
	l0->ebx = size;
	l0->ecx = size;
}

void cpuid_apply_host_info(struct kvm_cpuid2 *c, const struct cpuid_host_info *h)
{
	struct kvm_cpuid_entry2 *e;
	bool empty = true;
	static const char fallback[48] = "Ember Virtual CPU";
	const char *brand;

	if ((e = entry_of(c, 1, 0)) && h->tsc_deadline)
		e->ecx |= BIT(24);
	fix_xsave_leaf(c);

	/* Brand string: KVM's table leaves it to the VMM. */
	for (unsigned i = 0; i < 3; i++) {
		e = entry_of(c, 0x80000002 + i, 0);
		if (!e)
			return;		/* no brand leaves at all */
		empty &= !(e->eax | e->ebx | e->ecx | e->edx);
	}
	if (!empty)
		return;
	brand = h->brand[0] ? h->brand : fallback;
	for (unsigned i = 0; i < 3; i++) {
		e = entry_of(c, 0x80000002 + i, 0);
		memcpy(&e->eax, brand + 16 * i, 4);
		memcpy(&e->ebx, brand + 16 * i + 4, 4);
		memcpy(&e->ecx, brand + 16 * i + 8, 4);
		memcpy(&e->edx, brand + 16 * i + 12, 4);
	}
}
