/* Kernel loaders and the boot-time memory layout shared by them. */
#ifndef EMBER_BOOT_H
#define EMBER_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_mem;

/* Fixed guest-physical layout of what Ember writes before the first run. */
#define BOOT_GDT_ADDR		0x0500ULL	/* GDT for the boot CPU */
#define BOOT_START_INFO_ADDR	0x6000ULL	/* PVH hvm_start_info */
#define BOOT_MEMMAP_ADDR	0x6100ULL	/* PVH memmap entries */
#define BOOT_PARAMS_ADDR	0x7000ULL	/* Linux zero page (boot_params) */
#define BOOT_PML4_ADDR		0x9000ULL	/* identity page tables for 64-bit entry */
#define BOOT_PDPT_ADDR		0xA000ULL
#define BOOT_PD_ADDR		0xB000ULL	/* 4 pages: 0xB000-0xEFFF map 4 GiB */
#define BOOT_CMDLINE_ADDR	0x20000ULL
#define BOOT_CMDLINE_MAX	0x10000ULL	/* 64 KiB */
#define BOOT_EBDA_START		0x9FC00ULL
#define BOOT_ACPI_ADDR		0xE0000ULL	/* RSDP and tables, 0xE0000-0xFFFFF */
#define BOOT_ACPI_END		0x100000ULL
#define BOOT_HIGH_ADDR		0x100000ULL	/* kernels load at or above 1 MiB */

/* The boot GDT at BOOT_GDT_ADDR. Selectors:
 *   0x00 null
 *   0x08 BOOT_GDT_CODE32: flat 32-bit code, for the PVH 32-bit entry
 *   0x10 BOOT_GDT_CODE64: flat 64-bit code (Linux __BOOT_CS)
 *   0x18 BOOT_GDT_DATA:   flat 32-bit data, DS/ES/SS/FS/GS (Linux __BOOT_DS)
 *   0x20 BOOT_GDT_TSS:    a 16-byte 64-bit TSS descriptor (base 0, limit
 *                         0x67, busy) so TR has something valid to name;
 *                         the guest loads its own TR before using it.
 * The vCPU's hidden segment state must match these raw descriptors. */
#define BOOT_GDT_CODE32		0x08
#define BOOT_GDT_CODE64		0x10
#define BOOT_GDT_DATA		0x18
#define BOOT_GDT_TSS		0x20
#define BOOT_GDT_DESC_CODE32	0x00cf9b000000ffffULL	/* G, D, P, DPL0, exec/read, accessed */
#define BOOT_GDT_DESC_CODE64	0x00af9b000000ffffULL	/* G, L, P, DPL0, exec/read, accessed */
#define BOOT_GDT_DESC_DATA	0x00cf93000000ffffULL	/* G, B, P, DPL0, read/write, accessed */
#define BOOT_GDT_DESC_TSS_LO	0x00008b0000000067ULL	/* P, type 0xB (busy 64-bit TSS) */
#define BOOT_GDT_DESC_TSS_HI	0x0000000000000000ULL	/* base[63:32] */
#define BOOT_GDT_ENTRIES	6
extern const uint64_t boot_gdt[BOOT_GDT_ENTRIES];	/* indexed by selector >> 3 */
#define BOOT_GDT_LIMIT		(BOOT_GDT_ENTRIES * 8 - 1)

#define E820_RAM	1
#define E820_RESERVED	2
#define E820_ACPI	3
#define E820_MAX	32

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

/* What a loader decided; used to set up the boot vCPU. */
struct boot_info {
	uint64_t entry;		/* first instruction (physical) */
	bool entry_64bit;	/* Linux 64-bit boot protocol vs PVH 32-bit entry */
	uint64_t boot_arg;	/* rsi (boot_params) or ebx (hvm_start_info) */
	uint64_t kernel_start, kernel_end;
	uint64_t initrd_addr, initrd_size;
	uint64_t rsdp_addr;	/* 0 when no ACPI tables */
};

/* Inputs common to all loaders. */
struct boot_params_in {
	const uint8_t *kernel;
	size_t kernel_size;
	const uint8_t *initrd;	/* may be NULL */
	size_t initrd_size;
	const char *cmdline;	/* may be NULL */
	uint64_t rsdp_addr;	/* 0 if none */
};

/* Build the e820 map for this memory layout. Returns number of entries. */
unsigned boot_e820(const struct guest_mem *gm, struct e820_entry *e, unsigned max);

/* Loaders return 0, or a negative errno with a one-line reason in err. */
bool pvh_is_elf(const uint8_t *img, size_t len);
int pvh_load(const struct guest_mem *gm, const struct boot_params_in *in,
	     struct boot_info *bi, char *err, size_t errlen);
bool bzimage_is_bzimage(const uint8_t *img, size_t len);
int bzimage_load(const struct guest_mem *gm, const struct boot_params_in *in,
		 struct boot_info *bi, char *err, size_t errlen);

/* Place the initrd at the highest suitable page-aligned address below
 * min(max_addr, top of low RAM) and above kernel_end. max_addr is exclusive
 * (the first byte the initrd must not occupy). No initrd (NULL or size 0)
 * succeeds with bi->initrd_addr = bi->initrd_size = 0. */
int boot_place_initrd(const struct guest_mem *gm, const struct boot_params_in *in,
		      uint64_t kernel_end, uint64_t max_addr, struct boot_info *bi,
		      char *err, size_t errlen);

/* Write the boot GDT (and, for 64-bit entry, the identity page tables:
 * PML4 -> PDPT -> 4 PDs of 2 MiB pages mapping [0, 4 GiB) 1:1). CR3 is
 * BOOT_PML4_ADDR. bzimage_load writes both itself. */
int boot_write_gdt(const struct guest_mem *gm);
int boot_write_identity_tables(const struct guest_mem *gm);

#endif
