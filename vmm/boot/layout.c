/* The boot-time memory layout shared by the loaders: e820 map, initrd
 * placement, boot GDT and identity page tables. */
#include "vmm/boot/boot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/guest_mem.h"

#define PAGE_SIZE	4096ULL
#define PTE_PRESENT	(1ULL << 0)
#define PTE_RW		(1ULL << 1)
#define PTE_PS		(1ULL << 7)	/* 2 MiB page in a PD entry */
#define BOOT_NR_PD	4		/* 4 x 1 GiB */
#define VGA_START	0xA0000ULL

const uint64_t boot_gdt[BOOT_GDT_ENTRIES] = {
	0,
	BOOT_GDT_DESC_CODE32,
	BOOT_GDT_DESC_CODE64,
	BOOT_GDT_DESC_DATA,
	BOOT_GDT_DESC_TSS_LO,
	BOOT_GDT_DESC_TSS_HI,
};

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static unsigned e820_add(struct e820_entry *e, unsigned n, unsigned max,
			 uint64_t start, uint64_t end, uint32_t type)
{
	if (end <= start || n >= max)
		return n;
	e[n] = (struct e820_entry){ .addr = start, .size = end - start, .type = type };
	return n + 1;
}

/* Each RAM region is split around the legacy hole: RAM below the EBDA,
 * the EBDA and the BIOS area (where the ACPI tables live) reserved, the
 * VGA/option ROM window left out, RAM from 1 MiB up. The MMIO hole is not
 * RAM and is left out too; the guest learns it from ACPI. */
unsigned boot_e820(const struct guest_mem *gm, struct e820_entry *e, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < gm->nr; i++) {
		uint64_t s = gm->regions[i].gpa;
		uint64_t end = s + gm->regions[i].size;

		n = e820_add(e, n, max, s, min_u64(end, BOOT_EBDA_START), E820_RAM);
		n = e820_add(e, n, max, max_u64(s, BOOT_EBDA_START), min_u64(end, VGA_START),
			     E820_RESERVED);
		n = e820_add(e, n, max, max_u64(s, BOOT_ACPI_ADDR), min_u64(end, BOOT_ACPI_END),
			     E820_RESERVED);
		n = e820_add(e, n, max, max_u64(s, BOOT_HIGH_ADDR), end, E820_RAM);
	}
	return n;
}

int boot_place_initrd(const struct guest_mem *gm, const struct boot_params_in *in,
		      uint64_t kernel_end, uint64_t max_addr, struct boot_info *bi,
		      char *err, size_t errlen)
{
	uint64_t top = min_u64(max_addr, gm_low_ram_end(gm));
	uint64_t lo = (kernel_end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	uint64_t size = in->initrd_size, addr;

	bi->initrd_addr = 0;
	bi->initrd_size = 0;
	if (!in->initrd || !size)
		return 0;
	if (lo < kernel_end || top < lo || size > top - lo) {
		snprintf(err, errlen,
			 "initrd (%" PRIu64 " bytes) does not fit between kernel end 0x%" PRIx64
			 " and 0x%" PRIx64, size, kernel_end, top);
		return -ENOSPC;
	}
	addr = (top - size) & ~(PAGE_SIZE - 1);
	if (gm_write(gm, addr, in->initrd, size)) {
		snprintf(err, errlen, "initrd: guest range 0x%" PRIx64 "+0x%" PRIx64
			 " is not RAM", addr, size);
		return -EFAULT;
	}
	bi->initrd_addr = addr;
	bi->initrd_size = size;
	return 0;
}

int boot_write_gdt(const struct guest_mem *gm)
{
	return gm_write(gm, BOOT_GDT_ADDR, boot_gdt, sizeof(boot_gdt));
}

int boot_write_identity_tables(const struct guest_mem *gm)
{
	uint64_t pml4[512] = { 0 }, pdpt[512] = { 0 }, pd[512];
	int ret;

	pml4[0] = BOOT_PDPT_ADDR | PTE_PRESENT | PTE_RW;
	for (unsigned i = 0; i < BOOT_NR_PD; i++)
		pdpt[i] = (BOOT_PD_ADDR + i * PAGE_SIZE) | PTE_PRESENT | PTE_RW;
	ret = gm_write(gm, BOOT_PML4_ADDR, pml4, sizeof(pml4));
	if (!ret)
		ret = gm_write(gm, BOOT_PDPT_ADDR, pdpt, sizeof(pdpt));
	for (unsigned i = 0; !ret && i < BOOT_NR_PD; i++) {
		for (unsigned j = 0; j < 512; j++)
			pd[j] = (((uint64_t)i * 512 + j) << 21) | PTE_PRESENT | PTE_RW | PTE_PS;
		ret = gm_write(gm, BOOT_PD_ADDR + i * PAGE_SIZE, pd, sizeof(pd));
	}
	return ret;
}
