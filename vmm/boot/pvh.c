/* ELF loader with the PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), for test
 * guests and uncompressed vmlinux. Every offset and size in the image is
 * checked against the file before use. */
#include "vmm/boot/boot.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/guest_mem.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
} __attribute__((packed));

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
} __attribute__((packed));

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
} __attribute__((packed));

#define BOOT_MODLIST_ADDR (BOOT_START_INFO_ADDR + 0x40)

#define fail(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

bool pvh_is_elf(const uint8_t *img, size_t len)
{
	return len >= EI_NIDENT && memcmp(img, ELFMAG, SELFMAG) == 0;
}

/* A uniform view of 32- and 64-bit program headers. */
struct phdr {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

static int elf_phdr(const uint8_t *img, size_t len, bool is64, uint64_t phoff,
		    unsigned phentsize, unsigned i, struct phdr *ph)
{
	uint64_t off = phoff + (uint64_t)i * phentsize;

	if (off < phoff || off > len || phentsize > len - off)
		return -EINVAL;
	if (is64) {
		Elf64_Phdr p;

		memcpy(&p, img + off, sizeof(p));
		*ph = (struct phdr){ p.p_type, p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz };
	} else {
		Elf32_Phdr p;

		memcpy(&p, img + off, sizeof(p));
		*ph = (struct phdr){ p.p_type, p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz };
	}
	return 0;
}

/* Scan one note segment for the PVH entry; 0 if found. */
static int find_pvh_note(const uint8_t *img, size_t len, const struct phdr *ph, uint64_t *entry)
{
	uint64_t pos = ph->offset, end;

	if (ph->offset > len || ph->filesz > len - ph->offset)
		return -EINVAL;
	end = ph->offset + ph->filesz;
	while (end - pos >= 12) {
		uint32_t namesz, descsz, type;
		uint64_t name_off, desc_off, next;

		memcpy(&namesz, img + pos, 4);
		memcpy(&descsz, img + pos + 4, 4);
		memcpy(&type, img + pos + 8, 4);
		name_off = pos + 12;
		desc_off = name_off + (((uint64_t)namesz + 3) & ~3ULL);
		next = desc_off + (((uint64_t)descsz + 3) & ~3ULL);
		if (desc_off > end || next > end)
			return -EINVAL;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(img + name_off, "Xen", 4) == 0) {
			if (descsz == 4) {
				uint32_t e;

				memcpy(&e, img + desc_off, 4);
				*entry = e;
			} else if (descsz == 8) {
				memcpy(entry, img + desc_off, 8);
			} else {
				return -EINVAL;
			}
			return 0;
		}
		pos = next;
	}
	return -ENOENT;
}

int pvh_load(const struct guest_mem *gm, const struct boot_params_in *in,
	     struct boot_info *bi, char *err, size_t errlen)
{
	const uint8_t *img = in->kernel;
	size_t len = in->kernel_size;
	struct hvm_memmap_entry mm[E820_MAX];
	struct e820_entry e820[E820_MAX];
	struct hvm_start_info si;
	uint64_t phoff, entry = 0, kend = 0, kstart = UINT64_MAX;
	unsigned phnum, phentsize, nr_e820;
	bool is64, have_entry = false;
	size_t cmdlen;
	int ret;

	memset(bi, 0, sizeof(*bi));
	if (!pvh_is_elf(img, len))
		fail("kernel: not an ELF image");
	is64 = img[EI_CLASS] == ELFCLASS64;
	if (!is64 && img[EI_CLASS] != ELFCLASS32)
		fail("kernel: ELF class %u is not 32 or 64-bit", img[EI_CLASS]);
	if (img[EI_DATA] != ELFDATA2LSB)
		fail("kernel: ELF image is not little-endian");
	if (is64) {
		Elf64_Ehdr eh;

		if (len < sizeof(eh))
			fail("kernel: truncated ELF header");
		memcpy(&eh, img, sizeof(eh));
		if (eh.e_machine != EM_X86_64)
			fail("kernel: ELF machine %u is not x86-64", eh.e_machine);
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phentsize = eh.e_phentsize;
		if (phentsize < sizeof(Elf64_Phdr))
			fail("kernel: ELF e_phentsize %u too small", phentsize);
	} else {
		Elf32_Ehdr eh;

		if (len < sizeof(eh))
			fail("kernel: truncated ELF header");
		memcpy(&eh, img, sizeof(eh));
		if (eh.e_machine != EM_386 && eh.e_machine != EM_X86_64)
			fail("kernel: ELF machine %u is not x86", eh.e_machine);
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phentsize = eh.e_phentsize;
		if (phentsize < sizeof(Elf32_Phdr))
			fail("kernel: ELF e_phentsize %u too small", phentsize);
	}
	if (phnum == 0 || phnum > 256)
		fail("kernel: ELF has %u program headers", phnum);

	/* Validate every segment before writing anything. */
	for (unsigned i = 0; i < phnum; i++) {
		struct phdr ph = { 0 };

		if (elf_phdr(img, len, is64, phoff, phentsize, i, &ph))
			fail("kernel: program header %u lies outside the file", i);
		if (ph.type == PT_NOTE && !have_entry) {
			ret = find_pvh_note(img, len, &ph, &entry);
			if (ret == -EINVAL)
				fail("kernel: malformed ELF note in program header %u", i);
			have_entry = ret == 0;
		}
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		if (ph.filesz > ph.memsz)
			fail("kernel: segment %u p_filesz exceeds p_memsz", i);
		if (ph.offset > len || ph.filesz > len - ph.offset)
			fail("kernel: segment %u extends past the end of the file", i);
		if (ph.paddr < BOOT_HIGH_ADDR)
			fail("kernel: segment %u loads at 0x%llx, below 1 MiB", i,
			     (unsigned long long)ph.paddr);
		if (!gm_range_valid(gm, ph.paddr, ph.memsz))
			fail("kernel: segment %u [0x%llx, +0x%llx) is outside guest RAM", i,
			     (unsigned long long)ph.paddr, (unsigned long long)ph.memsz);
		if (ph.paddr < kstart)
			kstart = ph.paddr;
		if (ph.paddr + ph.memsz > kend)
			kend = ph.paddr + ph.memsz;
	}
	if (!have_entry)
		fail("kernel: ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
	if (kend == 0)
		fail("kernel: ELF has no loadable segments");
	if (entry < kstart || entry >= kend)
		fail("kernel: PVH entry 0x%llx is outside the loaded image",
		     (unsigned long long)entry);

	for (unsigned i = 0; i < phnum; i++) {
		struct phdr ph = { 0 };

		elf_phdr(img, len, is64, phoff, phentsize, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		if ((ph.filesz && gm_write(gm, ph.paddr, img + ph.offset, ph.filesz)) ||
		    (ph.memsz > ph.filesz &&
		     gm_fill(gm, ph.paddr + ph.filesz, 0, ph.memsz - ph.filesz)))
			fail("kernel: cannot write segment %u", i);
	}

	memset(&si, 0, sizeof(si));
	si.magic = HVM_START_MAGIC;
	si.version = 1;
	si.rsdp_paddr = in->rsdp_addr;

	cmdlen = in->cmdline ? strlen(in->cmdline) : 0;
	if (cmdlen >= BOOT_CMDLINE_MAX)
		fail("cmdline: %zu bytes is longer than the %llu-byte limit", cmdlen,
		     (unsigned long long)BOOT_CMDLINE_MAX - 1);
	if (gm_write(gm, BOOT_CMDLINE_ADDR, cmdlen ? in->cmdline : "", cmdlen + 1))
		fail("cmdline: cannot write to guest memory");
	si.cmdline_paddr = BOOT_CMDLINE_ADDR;

	nr_e820 = boot_e820(gm, e820, E820_MAX);
	for (unsigned i = 0; i < nr_e820; i++)
		mm[i] = (struct hvm_memmap_entry){ e820[i].addr, e820[i].size, e820[i].type, 0 };
	if (gm_write(gm, BOOT_MEMMAP_ADDR, mm, nr_e820 * sizeof(mm[0])))
		fail("memmap: cannot write to guest memory");
	si.memmap_paddr = BOOT_MEMMAP_ADDR;
	si.memmap_entries = nr_e820;

	if (in->initrd && in->initrd_size) {
		struct hvm_modlist_entry mod;

		ret = boot_place_initrd(gm, in, kend, UINT64_MAX, bi, err, errlen);
		if (ret)
			return ret;
		mod = (struct hvm_modlist_entry){ .paddr = bi->initrd_addr,
						  .size = bi->initrd_size };
		if (gm_write(gm, BOOT_MODLIST_ADDR, &mod, sizeof(mod)))
			fail("initrd: cannot write the module list");
		si.nr_modules = 1;
		si.modlist_paddr = BOOT_MODLIST_ADDR;
	}
	if (gm_write(gm, BOOT_START_INFO_ADDR, &si, sizeof(si)))
		fail("start_info: cannot write to guest memory");

	bi->entry = entry;
	bi->entry_64bit = false;
	bi->boot_arg = BOOT_START_INFO_ADDR;
	bi->kernel_start = kstart;
	bi->kernel_end = kend;
	bi->rsdp_addr = in->rsdp_addr;
	return 0;
}
