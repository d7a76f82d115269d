/* Linux bzImage loader, 64-bit boot protocol (Documentation/arch/x86/boot.rst).
 * The setup header is read from the image, validated field by field, copied
 * into a fresh zero page, and the protected-mode payload is loaded where the
 * kernel prefers it or, if relocatable, at the first aligned spot >= 1 MiB. */
#include "vmm/boot/boot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/guest_mem.h"
#include "base/byteorder.h"

/* Setup header / zero page offsets (the header sits at the same offset in
 * the image and in struct boot_params). */
#define BP_SIZE			4096
#define BP_ACPI_RSDP_ADDR	0x070
#define BP_EXT_RAMDISK_IMAGE	0x0c0
#define BP_EXT_RAMDISK_SIZE	0x0c4
#define BP_EXT_CMD_LINE_PTR	0x0c8
#define BP_E820_ENTRIES		0x1e8
#define BP_HDR			0x1f1
#define BP_E820_TABLE		0x2d0
#define BP_E820_MAX		128
#define BP_HDR_MAX_END		0x290	/* end of the header area in boot_params */

#define HDR_SETUP_SECTS		0x1f1
#define HDR_BOOT_FLAG		0x1fe
#define HDR_JUMP		0x200
#define HDR_MAGIC		0x202
#define HDR_VERSION		0x206
#define HDR_TYPE_OF_LOADER	0x210
#define HDR_LOADFLAGS		0x211
#define HDR_CODE32_START	0x214
#define HDR_RAMDISK_IMAGE	0x218
#define HDR_RAMDISK_SIZE	0x21c
#define HDR_HEAP_END_PTR	0x224
#define HDR_CMD_LINE_PTR	0x228
#define HDR_INITRD_ADDR_MAX	0x22c
#define HDR_KERNEL_ALIGNMENT	0x230
#define HDR_RELOCATABLE		0x234
#define HDR_XLOADFLAGS		0x236
#define HDR_CMDLINE_SIZE	0x238
#define HDR_PREF_ADDRESS	0x258
#define HDR_INIT_SIZE		0x260
#define HDR_V212_END		0x268	/* handover_offset is the last 2.12 field */

#define BOOT_FLAG_MAGIC		0xAA55
#define HDRS_MAGIC		0x53726448	/* "HdrS" */
#define MIN_VERSION		0x020c
#define XLF_KERNEL_64		(1u << 0)
#define LOADFLAG_KEEP_SEGMENTS	(1u << 6)
#define LOADFLAG_CAN_USE_HEAP	(1u << 7)
#define LOADER_TYPE_UNDEFINED	0xff
/* Setup heap end relative to the (unused) real-mode segment: 64 KiB - 0x200. */
#define HEAP_END_PTR		0xfe00
#define ENTRY64_OFFSET		0x200

struct bz_hdr {
	uint16_t version;
	uint32_t setup_size;	/* bytes before the protected-mode payload */
	uint32_t hdr_end;	/* end of the setup header in the image */
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable;
	uint16_t xloadflags;
	uint32_t cmdline_size;
	uint64_t pref_address;
	uint32_t init_size;
};

bool bzimage_is_bzimage(const uint8_t *img, size_t len)
{
	return img && len >= HDR_MAGIC + 4 && rd16(img + HDR_BOOT_FLAG) == BOOT_FLAG_MAGIC &&
	       rd32(img + HDR_MAGIC) == HDRS_MAGIC;
}

/* Identification and protocol checks, then the fields we rely on. */
static int parse_hdr(const uint8_t *img, size_t len, struct bz_hdr *h, char *err, size_t errlen)
{
	unsigned sects;

	if (!img || len < HDR_MAGIC + 4 || rd16(img + HDR_BOOT_FLAG) != BOOT_FLAG_MAGIC) {
		snprintf(err, errlen, "not a Linux kernel: no boot_flag 0xAA55 at offset 0x1fe");
		return -ENOEXEC;
	}
	if (rd32(img + HDR_MAGIC) != HDRS_MAGIC) {
		snprintf(err, errlen, "not a bzImage: no 'HdrS' header magic at offset 0x202");
		return -ENOEXEC;
	}
	h->version = rd16(img + HDR_VERSION);
	if (h->version < MIN_VERSION) {
		snprintf(err, errlen, "bzImage boot protocol version %u.%02u too old (need 2.12)",
			 h->version >> 8, h->version & 0xff);
		return -ENOEXEC;
	}
	h->hdr_end = HDR_MAGIC + img[HDR_JUMP + 1];
	if (len < HDR_V212_END || h->hdr_end < HDR_V212_END) {
		snprintf(err, errlen, "bzImage setup header truncated (header ends at 0x%x, need 0x%x)",
			 len < HDR_V212_END ? (unsigned)len : h->hdr_end, HDR_V212_END);
		return -ENOEXEC;
	}
	if (h->hdr_end > BP_HDR_MAX_END)
		h->hdr_end = BP_HDR_MAX_END;

	h->xloadflags = rd16(img + HDR_XLOADFLAGS);
	if (!(h->xloadflags & XLF_KERNEL_64)) {
		snprintf(err, errlen, "bzImage xloadflags: XLF_KERNEL_64 not set (no 64-bit entry)");
		return -ENOEXEC;
	}
	sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	h->setup_size = (sects + 1) * 512;
	if (h->setup_size + ENTRY64_OFFSET >= len) {
		snprintf(err, errlen, "bzImage setup_sects=%u: setup (%u bytes) leaves no payload in a %zu-byte file",
			 sects, h->setup_size, len);
		return -ENOEXEC;
	}
	h->initrd_addr_max = rd32(img + HDR_INITRD_ADDR_MAX);
	h->kernel_alignment = rd32(img + HDR_KERNEL_ALIGNMENT);
	h->relocatable = img[HDR_RELOCATABLE];
	h->cmdline_size = rd32(img + HDR_CMDLINE_SIZE);
	h->pref_address = rd64(img + HDR_PREF_ADDRESS);
	h->init_size = rd32(img + HDR_INIT_SIZE);
	return 0;
}

static bool fits(uint64_t addr, uint64_t need, uint64_t ram_end)
{
	return addr >= BOOT_HIGH_ADDR && addr <= ram_end && need <= ram_end - addr;
}

/* Load address: pref_address if it fits in low RAM, else the first
 * kernel_alignment-aligned address >= 1 MiB when relocatable. */
static int place_kernel(const struct guest_mem *gm, const struct bz_hdr *h, uint64_t need,
			uint64_t *addr, char *err, size_t errlen)
{
	uint64_t ram_end = gm_low_ram_end(gm);
	uint64_t align = h->kernel_alignment, a;

	if (ram_end <= BOOT_HIGH_ADDR || need > ram_end - BOOT_HIGH_ADDR) {
		snprintf(err, errlen, "bzImage payload/init_size (%" PRIu64 " bytes) larger than RAM "
			 "between 1 MiB and 0x%" PRIx64, need, ram_end);
		return -E2BIG;
	}
	if (fits(h->pref_address, need, ram_end)) {
		*addr = h->pref_address;
		return 0;
	}
	if (!h->relocatable) {
		snprintf(err, errlen, "bzImage relocatable_kernel=0 and pref_address 0x%" PRIx64
			 " + init_size 0x%" PRIx64 " is not in RAM", h->pref_address, need);
		return -ENOEXEC;
	}
	if (!align || (align & (align - 1))) {
		snprintf(err, errlen, "bzImage kernel_alignment 0x%" PRIx64 " is not a power of two",
			 align);
		return -ENOEXEC;
	}
	a = (BOOT_HIGH_ADDR + align - 1) & ~(align - 1);
	if (!fits(a, need, ram_end)) {
		snprintf(err, errlen, "bzImage payload/init_size (%" PRIu64 " bytes) at kernel_alignment "
			 "0x%" PRIx64 " does not fit below 0x%" PRIx64, need, align, ram_end);
		return -E2BIG;
	}
	*addr = a;
	return 0;
}

static int write_cmdline(const struct guest_mem *gm, const struct boot_params_in *in,
			 const struct bz_hdr *h, char *err, size_t errlen)
{
	const char *cmdline = in->cmdline ? in->cmdline : "";
	size_t len = strlen(cmdline);

	if (len > h->cmdline_size) {
		snprintf(err, errlen, "command line (%zu bytes) longer than the kernel's cmdline_size (%u)",
			 len, h->cmdline_size);
		return -E2BIG;
	}
	if (len >= BOOT_CMDLINE_MAX) {
		snprintf(err, errlen, "command line (%zu bytes) longer than the %llu-byte boot slot",
			 len, BOOT_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	if (gm_write(gm, BOOT_CMDLINE_ADDR, cmdline, len + 1)) {
		snprintf(err, errlen, "command line: guest range 0x%llx+%zu is not RAM",
			 BOOT_CMDLINE_ADDR, len + 1);
		return -EFAULT;
	}
	return 0;
}

static void fill_zero_page(uint8_t *bp, const struct guest_mem *gm, const uint8_t *img,
			   const struct bz_hdr *h, uint64_t load_addr,
			   const struct boot_info *bi, uint64_t rsdp)
{
	struct e820_entry e820[E820_MAX];
	unsigned n = boot_e820(gm, e820, E820_MAX);

	memset(bp, 0, BP_SIZE);
	memcpy(bp + BP_HDR, img + BP_HDR, h->hdr_end - BP_HDR);

	bp[HDR_TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
	bp[HDR_LOADFLAGS] = (uint8_t)((bp[HDR_LOADFLAGS] | LOADFLAG_CAN_USE_HEAP) &
				      ~LOADFLAG_KEEP_SEGMENTS);
	wr16(bp + HDR_HEAP_END_PTR, HEAP_END_PTR);
	wr32(bp + HDR_CODE32_START, (uint32_t)load_addr);
	wr32(bp + HDR_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);
	wr32(bp + BP_EXT_CMD_LINE_PTR, (uint32_t)(BOOT_CMDLINE_ADDR >> 32));
	wr32(bp + HDR_RAMDISK_IMAGE, (uint32_t)bi->initrd_addr);
	wr32(bp + HDR_RAMDISK_SIZE, (uint32_t)bi->initrd_size);
	wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(bi->initrd_addr >> 32));
	wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(bi->initrd_size >> 32));
	wr64(bp + BP_ACPI_RSDP_ADDR, rsdp);

	if (n > BP_E820_MAX)
		n = BP_E820_MAX;
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + i * 20;

		wr64(e, e820[i].addr);
		wr64(e + 8, e820[i].size);
		wr32(e + 16, e820[i].type);
	}
}

int bzimage_load(const struct guest_mem *gm, const struct boot_params_in *in,
		 struct boot_info *bi, char *err, size_t errlen)
{
	uint8_t bp[BP_SIZE];
	struct bz_hdr h;
	uint64_t addr, need, payload_size;
	const uint8_t *img = in->kernel;
	int ret;

	memset(bi, 0, sizeof(*bi));
	if (errlen)
		err[0] = '\0';
	ret = parse_hdr(img, in->kernel_size, &h, err, errlen);
	if (ret)
		return ret;
	payload_size = in->kernel_size - h.setup_size;
	/* The kernel decompresses in place and needs init_size bytes there. */
	need = payload_size > h.init_size ? payload_size : h.init_size;
	ret = place_kernel(gm, &h, need, &addr, err, errlen);
	if (ret)
		return ret;
	if (gm_write(gm, addr, img + h.setup_size, payload_size)) {
		snprintf(err, errlen, "bzImage payload: guest range 0x%" PRIx64 "+0x%" PRIx64
			 " is not RAM", addr, payload_size);
		return -EFAULT;
	}
	ret = write_cmdline(gm, in, &h, err, errlen);
	if (ret)
		return ret;
	/* initrd_addr_max is inclusive; boot_place_initrd wants an end. */
	ret = boot_place_initrd(gm, in, addr + need, (uint64_t)h.initrd_addr_max + 1, bi,
				err, errlen);
	if (ret)
		return ret;

	fill_zero_page(bp, gm, img, &h, addr, bi, in->rsdp_addr);
	ret = gm_write(gm, BOOT_PARAMS_ADDR, bp, BP_SIZE);
	if (!ret)
		ret = boot_write_gdt(gm);
	if (!ret)
		ret = boot_write_identity_tables(gm);
	if (ret) {
		snprintf(err, errlen, "guest RAM too small for boot_params, GDT and page tables");
		return ret;
	}
	bi->entry = addr + ENTRY64_OFFSET;
	bi->entry_64bit = true;
	bi->boot_arg = BOOT_PARAMS_ADDR;
	bi->kernel_start = addr;
	bi->kernel_end = addr + need;
	bi->rsdp_addr = in->rsdp_addr;
	return 0;
}
