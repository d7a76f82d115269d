/* CPU count (ACPI MADT, else CPUID) and TSC timing. */
#include "rt.h"

#define LOW_4G 0x100000000ull
#define SDT_HDR_LEN 36u
#define SDT_MAX_LEN 0x10000u

static bool checksum_ok(const uint8_t *p, uint32_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return sum == 0;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* A validated ACPI table with signature sig at paddr, or NULL. */
static const uint8_t *acpi_table(uint64_t paddr, const char *sig)
{
	if (!paddr || paddr >= LOW_4G - SDT_HDR_LEN)
		return NULL;
	const uint8_t *t = (const uint8_t *)(uintptr_t)paddr;
	if (memcmp(t, sig, 4))
		return NULL;
	uint32_t len = rd32(t + 4);
	if (len < SDT_HDR_LEN || len > SDT_MAX_LEN || paddr + len > LOW_4G || !checksum_ok(t, len))
		return NULL;
	return t;
}

static unsigned madt_cpus(const uint8_t *madt)
{
	uint32_t len = rd32(madt + 4);
	unsigned n = 0;

	/* Header (36) + local APIC address (4) + flags (4), then entries. */
	for (uint32_t off = SDT_HDR_LEN + 8; off + 2 <= len;) {
		uint8_t type = madt[off], elen = madt[off + 1];
		if (elen < 2 || off + elen > len)
			break;
		if (type == 0 && elen >= 8 && (rd32(madt + off + 4) & 1))
			n++; /* Processor Local APIC, enabled */
		else if (type == 9 && elen >= 16 && (rd32(madt + off + 8) & 1))
			n++; /* Processor Local x2APIC, enabled */
		off += elen;
	}
	return n;
}

static unsigned acpi_cpu_count(uint64_t rsdp_paddr)
{
	if (rsdp_paddr >= LOW_4G - 36)
		return 0;
	const uint8_t *rsdp = (const uint8_t *)(uintptr_t)rsdp_paddr;
	if (memcmp(rsdp, "RSD PTR ", 8) || !checksum_ok(rsdp, 20))
		return 0;

	const uint8_t *root = NULL;
	unsigned esz = 4;
	if (rsdp[15] >= 2 && rd32(rsdp + 20) >= 36 && checksum_ok(rsdp, 36)) {
		root = acpi_table(rd64(rsdp + 24), "XSDT");
		esz = 8;
	}
	if (!root) {
		root = acpi_table(rd32(rsdp + 16), "RSDT");
		esz = 4;
	}
	if (!root)
		return 0;

	uint32_t len = rd32(root + 4);
	for (uint32_t off = SDT_HDR_LEN; off + esz <= len; off += esz) {
		uint64_t p = esz == 8 ? rd64(root + off) : rd32(root + off);
		const uint8_t *madt = acpi_table(p, "APIC");
		if (madt && rd32(madt + 4) >= SDT_HDR_LEN + 8)
			return madt_cpus(madt);
	}
	return 0;
}

static unsigned cpu_count;

unsigned rt_cpu_count(void)
{
	if (cpu_count)
		return cpu_count;

	unsigned n = 0;
	if (rt_start_info && rt_start_info->rsdp_paddr)
		n = acpi_cpu_count(rt_start_info->rsdp_paddr);
	if (!n) {
		uint32_t r[4];
		rt_cpuid(1, 0, r);
		n = (r[1] >> 16) & 0xff;
	}
	cpu_count = n ? n : 1;
	return cpu_count;
}

#define DEFAULT_TSC_KHZ 3000000ull

static uint64_t tsc_khz;

uint64_t rt_tsc_khz(void)
{
	if (tsc_khz)
		return tsc_khz;

	uint32_t r[4];
	uint64_t khz = 0;
	rt_cpuid(0, 0, r);
	uint32_t max = r[0];
	if (max >= 0x15) {
		rt_cpuid(0x15, 0, r); /* eax = denominator, ebx = numerator, ecx = crystal Hz */
		if (r[0] && r[1] && r[2])
			khz = (uint64_t)r[2] * r[1] / r[0] / 1000;
	}
	if (!khz && max >= 0x16) {
		rt_cpuid(0x16, 0, r); /* eax = base MHz */
		khz = (uint64_t)(r[0] & 0xffff) * 1000;
	}
	if (!khz) {
		rt_cpuid(1, 0, r);
		if (r[2] & (1u << 31)) { /* hypervisor present */
			rt_cpuid(0x40000000, 0, r);
			if (r[0] >= 0x40000010) {
				rt_cpuid(0x40000010, 0, r); /* eax = TSC kHz */
				khz = r[0];
			}
		}
	}
	tsc_khz = khz ? khz : DEFAULT_TSC_KHZ;
	return tsc_khz;
}

uint64_t rt_deadline_ms(uint64_t ms)
{
	return rt_rdtsc() + ms * rt_tsc_khz();
}
