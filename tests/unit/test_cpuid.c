/* CPUID models on fabricated KVM_GET_SUPPORTED_CPUID tables: topology per
 * vCPU, baseline hides every listed feature, host keeps them. */
#include <stddef.h>

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cpuid.h"
#include "helpers/ck_run.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX

struct leaf {
	uint32_t fn, idx, flags, eax, ebx, ecx, edx;
};

/* Everything set in the feature leaves, so clearing is observable. */
static const struct leaf common_leaves[] = {
	{ 1, 0, 0, 0x000806F8, 0x00000800, 0xFFFFFFFF & ~(1u << 31), 0xFFFFFFFF },
	{ 4, 0, SIG, 0x00000121, 0, 0, 0 },		/* L1d */
	{ 4, 1, SIG, 0x00000122, 0, 0, 0 },		/* L1i */
	{ 4, 2, SIG, 0x00000143, 0, 0, 0 },		/* L2 */
	{ 4, 3, SIG, 0x00000163, 0, 0, 0 },		/* L3 */
	{ 4, 4, SIG, 0, 0, 0, 0 },			/* end */
	{ 7, 0, SIG, 1, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF },
	{ 7, 1, SIG, 0xFFFFFFFF, 0, 0, 0xFFFFFFFF },
	{ 0xB, 0, SIG, 1, 2, 0x100, 0 },		/* host topology: must be replaced */
	{ 0xB, 1, SIG, 5, 32, 0x201, 0 },
	{ 0xD, 0, SIG, 0x2E7, 0x2440, 0x2440, 0 },
	{ 0xD, 1, SIG, 0xF, 0, 0, 0 },
	{ 0x1D, 0, SIG, 1, 0, 0, 0 },
	{ 0x1F, 0, SIG, 1, 2, 0x100, 0 },
	{ 0x80000000, 0, 0, 0x80000021, 0, 0, 0 },
	{ 0x80000001, 0, 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF },
	{ 0x80000008, 0, 0, 0x3030, 0, 0x0000F00F, 0 },
	{ 0x8000001D, 0, SIG, 0x00000121, 0, 0, 0 },
	{ 0x8000001D, 1, SIG, 0x00000163, 0, 0, 0 },
	{ 0x8000001E, 0, 0, 0, 0, 0, 0 },
};

static struct kvm_cpuid2 *fabricate(const char vendor[12])
{
	size_t n = sizeof(common_leaves) / sizeof(common_leaves[0]);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (n + 1) * sizeof(c->entries[0]));
	struct kvm_cpuid_entry2 *e = &c->entries[0];

	e->function = 0;
	e->eax = 0x1F;
	memcpy(&e->ebx, vendor, 4);
	memcpy(&e->edx, vendor + 4, 4);
	memcpy(&e->ecx, vendor + 8, 4);
	for (size_t i = 0; i < n; i++) {
		const struct leaf *l = &common_leaves[i];

		c->entries[i + 1] = (struct kvm_cpuid_entry2){
			.function = l->fn, .index = l->idx, .flags = l->flags,
			.eax = l->eax, .ebx = l->ebx, .ecx = l->ecx, .edx = l->edx,
		};
	}
	c->nent = (uint32_t)(n + 1);
	return c;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	const struct kvm_cpuid_entry2 *hit = NULL;

	for (unsigned i = 0; i < c->nent; i++) {
		if (c->entries[i].function == fn && c->entries[i].index == idx) {
			ck_assert_msg(hit == NULL, "duplicate leaf 0x%x.%u", fn, idx);
			hit = &c->entries[i];
		}
	}
	return hit;
}

static const struct kvm_cpuid_entry2 *must(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	const struct kvm_cpuid_entry2 *e = find(c, fn, idx);

	ck_assert_msg(e != NULL, "leaf 0x%x.%u missing", fn, idx);
	return e;
}

static struct kvm_cpuid2 *build(const struct kvm_cpuid2 *sup, enum cpu_model m,
				unsigned idx, unsigned nr)
{
	struct kvm_cpuid2 *out = NULL;

	ck_assert_int_eq(cpuid_build(sup, m, idx, nr, &out), 0);
	ck_assert_ptr_nonnull(out);
	return out;
}

static void check_topology(const struct kvm_cpuid2 *c, unsigned idx, unsigned nr, bool amd)
{
	const struct kvm_cpuid_entry2 *e = must(c, 1, 0);
	unsigned shift = 0;

	while ((1u << shift) < nr)
		shift++;
	ck_assert_uint_eq(e->ebx >> 24, idx);
	ck_assert_uint_eq((e->ebx >> 16) & 0xFF, nr);
	ck_assert_uint_eq(e->ebx & 0xFFFF, 0x0800);		/* CLFLUSH size kept */
	ck_assert_uint_eq(!!(e->edx & (1u << 28)), nr > 1);	/* HTT */
	ck_assert(e->ecx & (1u << 31));				/* hypervisor */

	for (uint32_t sub = 0; sub < 4; sub++) {
		e = must(c, 4, sub);
		if (!(e->eax & 0x1F)) {
			ck_assert_uint_eq(e->eax, 0);
			continue;
		}
		ck_assert_uint_eq(e->eax >> 26, (nr > 64 ? 64 : nr) - 1);
		ck_assert_uint_eq((e->eax >> 14) & 0xFFF, sub == 3 ? nr - 1 : 0);
	}
	ck_assert_uint_eq(must(c, 4, 4)->eax, 0);

	for (uint32_t fn = 0xB; fn <= 0x1F; fn += 0x1F - 0xB) {
		e = must(c, fn, 0);
		ck_assert_uint_eq(e->eax & 0x1F, 0);
		ck_assert_uint_eq(e->ebx & 0xFFFF, 1);
		ck_assert_uint_eq(e->ecx, 0x100);		/* level 0, type SMT */
		ck_assert_uint_eq(e->edx, idx);
		ck_assert(e->flags & SIG);
		e = must(c, fn, 1);
		ck_assert_uint_eq(e->eax & 0x1F, shift);
		ck_assert_uint_eq(e->ebx & 0xFFFF, nr);
		ck_assert_uint_eq(e->ecx, 0x201);		/* level 1, type core */
		ck_assert_uint_eq(e->edx, idx);
		e = must(c, fn, 2);
		ck_assert_uint_eq(e->ebx, 0);
		ck_assert_uint_eq(e->ecx, 2);			/* type invalid */
		ck_assert_uint_eq(e->edx, idx);
	}

	if (amd) {
		e = must(c, 0x80000008, 0);
		ck_assert_uint_eq(e->ecx & 0xFF, nr - 1);
		ck_assert_uint_eq((e->ecx >> 12) & 0xF, shift);
		ck_assert_uint_eq(e->ecx & 0xFFFF0F00, 0);
		e = must(c, 0x8000001E, 0);
		ck_assert_uint_eq(e->eax, idx);
		ck_assert_uint_eq(e->ebx & 0xFF, idx);
		ck_assert_uint_eq((e->ebx >> 8) & 0xFF, 0);
		ck_assert_uint_eq((must(c, 0x8000001D, 1)->eax >> 14) & 0xFFF, nr - 1);
		ck_assert_uint_eq((must(c, 0x8000001D, 0)->eax >> 14) & 0xFFF, 0);
		ck_assert_uint_eq(!!(must(c, 0x80000001, 0)->ecx & 2), nr > 1);
	} else {
		/* Intel: AMD-only leaves untouched. */
		ck_assert_uint_eq(must(c, 0x80000008, 0)->ecx, 0x0000F00F);
	}
}

static void topology_for(const char *vendor, bool amd)
{
	static const unsigned counts[] = { 1, 2, 3, 8, 64, 254 };
	struct kvm_cpuid2 *sup = fabricate(vendor);

	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		unsigned nr = counts[k];

		for (unsigned idx = 0; idx < nr; idx += (nr > 8 ? 37 : 1)) {
			for (int m = 0; m < 2; m++) {
				struct kvm_cpuid2 *c = build(sup, m ? CPU_MODEL_BASELINE : CPU_MODEL_HOST,
							     idx, nr);

				check_topology(c, idx, nr, amd);
				free(c);
			}
		}
	}
	free(sup);
}

START_TEST(test_topology_intel)
{
	topology_for("GenuineIntel", false);
}
END_TEST

START_TEST(test_topology_amd)
{
	topology_for("AuthenticAMD", true);
}
END_TEST

struct hidden {
	uint32_t fn, idx;
	char reg;	/* 'a', 'b', 'c', 'd' */
	unsigned bit;
	const char *what;
};

static const struct hidden hidden_bits[] = {
	{ 1, 0, 'c', 12, "FMA" }, { 1, 0, 'c', 13, "CX16" }, { 1, 0, 'c', 26, "XSAVE" },
	{ 1, 0, 'c', 27, "OSXSAVE" }, { 1, 0, 'c', 28, "AVX" }, { 1, 0, 'c', 29, "F16C" },
	{ 7, 0, 'b', 3, "BMI1" }, { 7, 0, 'b', 5, "AVX2" }, { 7, 0, 'b', 8, "BMI2" },
	{ 7, 0, 'b', 16, "AVX512F" }, { 7, 0, 'b', 17, "AVX512DQ" },
	{ 7, 0, 'b', 21, "AVX512IFMA" }, { 7, 0, 'b', 26, "AVX512PF" },
	{ 7, 0, 'b', 27, "AVX512ER" }, { 7, 0, 'b', 28, "AVX512CD" },
	{ 7, 0, 'b', 30, "AVX512BW" }, { 7, 0, 'b', 31, "AVX512VL" },
	{ 7, 0, 'c', 1, "AVX512VBMI" }, { 7, 0, 'c', 3, "PKU" }, { 7, 0, 'c', 4, "OSPKE" },
	{ 7, 0, 'c', 6, "AVX512VBMI2" }, { 7, 0, 'c', 9, "VAES" },
	{ 7, 0, 'c', 10, "VPCLMULQDQ" }, { 7, 0, 'c', 11, "AVX512VNNI" },
	{ 7, 0, 'c', 12, "AVX512BITALG" }, { 7, 0, 'c', 14, "AVX512VPOPCNTDQ" },
	{ 7, 0, 'd', 2, "AVX512_4VNNIW" }, { 7, 0, 'd', 3, "AVX512_4FMAPS" },
	{ 7, 0, 'd', 8, "AVX512_VP2INTERSECT" }, { 7, 0, 'd', 22, "AMX_BF16" },
	{ 7, 0, 'd', 23, "AVX512_FP16" }, { 7, 0, 'd', 24, "AMX_TILE" },
	{ 7, 0, 'd', 25, "AMX_INT8" },
	{ 7, 1, 'a', 4, "AVX_VNNI" }, { 7, 1, 'a', 5, "AVX512_BF16" },
	{ 7, 1, 'a', 21, "AMX_FP16" }, { 7, 1, 'a', 23, "AVX_IFMA" },
	{ 7, 1, 'd', 4, "AVX_VNNI_INT8" }, { 7, 1, 'd', 5, "AVX_NE_CONVERT" },
	{ 7, 1, 'd', 8, "AMX_COMPLEX" }, { 7, 1, 'd', 10, "AVX_VNNI_INT16" },
	{ 7, 1, 'd', 19, "AVX10" },
	{ 0x80000001, 0, 'c', 11, "XOP" }, { 0x80000001, 0, 'c', 16, "FMA4" },
	{ 0x80000001, 0, 'c', 21, "TBM" },
};

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, char r)
{
	switch (r) {
	case 'a': return e->eax;
	case 'b': return e->ebx;
	case 'c': return e->ecx;
	default: return e->edx;
	}
}

START_TEST(test_baseline_hides)
{
	struct kvm_cpuid2 *sup = fabricate("GenuineIntel");
	struct kvm_cpuid2 *base = build(sup, CPU_MODEL_BASELINE, 1, 2);
	struct kvm_cpuid2 *host = build(sup, CPU_MODEL_HOST, 1, 2);

	for (size_t i = 0; i < sizeof(hidden_bits) / sizeof(hidden_bits[0]); i++) {
		const struct hidden *h = &hidden_bits[i];

		ck_assert_msg(!(reg_of(must(base, h->fn, h->idx), h->reg) & (1u << h->bit)),
			      "baseline exposes %s", h->what);
		ck_assert_msg(reg_of(must(host, h->fn, h->idx), h->reg) & (1u << h->bit),
			      "host hides %s", h->what);
	}
	/* Other bits survive: SSE4.2 (1.ECX 20), SMEP (7.EBX 7), ERMS (7.EBX 9). */
	ck_assert(must(base, 1, 0)->ecx & (1u << 20));
	ck_assert(must(base, 7, 0)->ebx & (1u << 7));
	ck_assert(must(base, 7, 0)->ebx & (1u << 9));

	/* Leaf 0xD and the AMX leaf are gone; host keeps them. */
	ck_assert_ptr_null(find(base, 0xD, 0));
	ck_assert_ptr_null(find(base, 0xD, 1));
	ck_assert_ptr_null(find(base, 0x1D, 0));
	ck_assert_ptr_nonnull(find(host, 0xD, 0));
	ck_assert_ptr_nonnull(find(host, 0xD, 1));
	ck_assert_ptr_nonnull(find(host, 0x1D, 0));
	ck_assert_uint_eq(must(host, 0xD, 0)->eax, 0x2E7);
	free(base);
	free(host);
	free(sup);
}
END_TEST

START_TEST(test_no_topology_leaves)
{
	/* Without 0xB/0x1F in the supported list, none are invented. */
	struct kvm_cpuid2 sup = { .nent = 0 };
	struct kvm_cpuid2 *c = build(&sup, CPU_MODEL_HOST, 0, 1);

	ck_assert_uint_eq(c->nent, 0);
	free(c);
}
END_TEST

START_TEST(test_bad_args)
{
	struct kvm_cpuid2 *sup = fabricate("AuthenticAMD");
	struct kvm_cpuid2 *out = NULL;

	ck_assert_int_eq(cpuid_build(sup, CPU_MODEL_HOST, 2, 2, &out), -EINVAL);
	ck_assert_int_eq(cpuid_build(sup, CPU_MODEL_HOST, 0, 0, &out), -EINVAL);
	ck_assert_int_eq(cpuid_build(NULL, CPU_MODEL_HOST, 0, 1, &out), -EINVAL);
	ck_assert_int_eq(cpuid_build(sup, CPU_MODEL_HOST, 0, 1, NULL), -EINVAL);
	ck_assert_ptr_null(out);
	free(sup);
}
END_TEST

START_TEST(test_supported_untouched)
{
	struct kvm_cpuid2 *sup = fabricate("GenuineIntel");
	size_t size = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	void *copy = malloc(size);
	struct kvm_cpuid2 *c;

	memcpy(copy, sup, size);
	c = build(sup, CPU_MODEL_BASELINE, 3, 4);
	ck_assert(!memcmp(copy, sup, size));
	free(c);
	free(copy);
	free(sup);
}
END_TEST

/* The nested L1's table: XSAVE with x87|SSE|YMM, sizes that must agree,
 * and empty brand leaves (KVM leaves them to the VMM). */
static struct kvm_cpuid2 *l1_table(void)
{
	static const struct leaf t[] = {
		{ 0, 0, 0, 0xD, 0x68747541, 0x444d4163, 0x69746e65 },	/* AuthenticAMD */
		{ 1, 0, 0, 0x00800f12, 0x00020800, 0x76f83203, 0x078bfbfd },
		{ 0xD, 0, SIG, 7, 576, 576, 0 },		/* sizes for x87|SSE only: wrong */
		{ 0xD, 1, SIG, 5, 0, 0, 0 },
		{ 0xD, 2, SIG, 256, 576, 0, 0 },		/* YMM: 256 bytes at 576 */
		{ 0xD, 9, SIG, 0, 0, 0, 0 },			/* not in the mask */
		{ 0x80000000, 0, 0, 0x80000021, 0, 0, 0 },
		{ 0x80000002, 0, 0, 0, 0, 0, 0 },
		{ 0x80000003, 0, 0, 0, 0, 0, 0 },
		{ 0x80000004, 0, 0, 0, 0, 0, 0 },
	};
	size_t n = sizeof(t) / sizeof(t[0]);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	for (size_t i = 0; i < n; i++)
		c->entries[i] = (struct kvm_cpuid_entry2){
			.function = t[i].fn, .index = t[i].idx, .flags = t[i].flags,
			.eax = t[i].eax, .ebx = t[i].ebx, .ecx = t[i].ecx, .edx = t[i].edx,
		};
	c->nent = (uint32_t)n;
	return c;
}

static void brand_of(const struct kvm_cpuid2 *c, char out[49])
{
	for (unsigned i = 0; i < 3; i++) {
		const struct kvm_cpuid_entry2 *e = must(c, 0x80000002 + i, 0);

		memcpy(out + 16 * i, &e->eax, 4);
		memcpy(out + 16 * i + 4, &e->ebx, 4);
		memcpy(out + 16 * i + 8, &e->ecx, 4);
		memcpy(out + 16 * i + 12, &e->edx, 4);
	}
	out[48] = 0;
}

START_TEST(test_host_info_brand_and_xsave)
{
	struct kvm_cpuid2 *sup = l1_table(), *c = build(sup, CPU_MODEL_HOST, 0, 2);
	struct cpuid_host_info h = { .tsc_deadline = true };
	char brand[49];

	strcpy(h.brand, "AMD EPYC Processor");
	cpuid_apply_host_info(c, &h);
	brand_of(c, brand);
	ck_assert_str_eq(brand, "AMD EPYC Processor");
	/* 0xD.0: both sizes cover YMM (576 + 256), as Linux recomputes them. */
	ck_assert_uint_eq(must(c, 0xD, 0)->ebx, 832);
	ck_assert_uint_eq(must(c, 0xD, 0)->ecx, 832);
	ck_assert_uint_eq(must(c, 0xD, 0)->eax, 7);
	ck_assert(must(c, 1, 0)->ecx & (1u << 24));	/* TSC deadline */
	free(c);
	free(sup);
}
END_TEST

START_TEST(test_host_info_fallbacks)
{
	struct kvm_cpuid2 *sup = l1_table(), *c;
	struct cpuid_host_info h = { 0 };
	char brand[49];

	/* A component without a layout subleaf leaves the mask. */
	for (unsigned i = 0; i < sup->nent; i++)
		if (sup->entries[i].function == 0xD && sup->entries[i].index == 0)
			sup->entries[i].eax |= 1u << 9;
	c = build(sup, CPU_MODEL_HOST, 0, 1);
	cpuid_apply_host_info(c, &h);
	brand_of(c, brand);
	ck_assert_str_eq(brand, "Ember Virtual CPU");
	ck_assert_uint_eq(must(c, 0xD, 0)->eax, 7);
	ck_assert(!(must(c, 1, 0)->ecx & (1u << 24)));
	free(c);
	/* A brand already there is kept. */
	for (unsigned i = 0; i < sup->nent; i++)
		if (sup->entries[i].function == 0x80000002)
			memcpy(&sup->entries[i].eax, "KVMx", 4);
	c = build(sup, CPU_MODEL_BASELINE, 0, 1);
	strcpy(h.brand, "Other");
	cpuid_apply_host_info(c, &h);
	brand_of(c, brand);
	ck_assert_mem_eq(brand, "KVMx", 4);
	ck_assert_ptr_null(find(c, 0xD, 0));	/* baseline: no XSAVE leaf */
	free(c);
	free(sup);
}
END_TEST

START_TEST(test_host_info_read)
{
	struct cpuid_host_info h;

	cpuid_host_info_read(&h, true);
	ck_assert(h.tsc_deadline);
	ck_assert_uint_lt(strnlen(h.brand, sizeof(h.brand)), sizeof(h.brand) + 1);
}
END_TEST

static Suite *cpuid_suite(void)
{
	Suite *s = suite_create("cpuid");
	TCase *tc = tcase_create("cpuid");

	tcase_add_test(tc, test_topology_intel);
	tcase_add_test(tc, test_topology_amd);
	tcase_add_test(tc, test_baseline_hides);
	tcase_add_test(tc, test_no_topology_leaves);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_supported_untouched);
	tcase_add_test(tc, test_host_info_brand_and_xsave);
	tcase_add_test(tc, test_host_info_fallbacks);
	tcase_add_test(tc, test_host_info_read);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(cpuid_suite());
}
