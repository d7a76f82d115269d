/* The reference point for bench/startup: about the least a VMM can do to
 * boot a PVH ELF guest. One vCPU, no irqchip, no devices but port 0xf4
 * (isa-debug-exit semantics) and COM1 output. Not hardened: benchmark only. */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM_SIZE (128UL << 20)

static void die(const char *m)
{
	perror(m);
	exit(120);
}

int main(int argc, char **argv)
{
	const char *cmdline = argc > 2 ? argv[2] : "";
	uint32_t entry = 0;
	struct stat st;

	if (argc < 2) {
		fprintf(stderr, "usage: minimal_kvm GUEST.elf [cmdline]\n");
		return 120;
	}
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0)
		die("guest");
	uint8_t *img = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff + i * eh->e_phentsize);
		if (ph->p_type == PT_LOAD)
			memcpy(mem + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
		if (ph->p_type == PT_NOTE) {
			for (uint64_t o = ph->p_offset; o + 12 <= ph->p_offset + ph->p_filesz;) {
				uint32_t *n = (uint32_t *)(img + o);
				uint64_t desc = o + 12 + ((n[0] + 3) & ~3u);
				if (n[2] == 18)
					entry = *(uint32_t *)(img + desc);
				o = desc + ((n[1] + 3) & ~3u);
			}
		}
	}
	/* hvm_start_info at 0x6000, one e820 entry, cmdline at 0x20000. */
	uint32_t *si = (uint32_t *)(mem + 0x6000);
	si[0] = 0x336ec578;
	si[1] = 1;
	*(uint64_t *)(mem + 0x6000 + 24) = 0x20000;	/* cmdline_paddr */
	*(uint64_t *)(mem + 0x6000 + 40) = 0x6100;	/* memmap_paddr */
	si[12] = 1;					/* memmap_entries */
	uint64_t *mm = (uint64_t *)(mem + 0x6100);
	mm[0] = 0;
	mm[1] = MEM_SIZE;
	*(uint32_t *)&mm[2] = 1;
	strcpy((char *)mem + 0x20000, cmdline);

	int kvm = open("/dev/kvm", O_RDWR);
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	struct kvm_userspace_memory_region r = {
		.memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem,
	};
	if (vm < 0 || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		die("vm");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	static union {
		struct kvm_cpuid2 c;
		uint8_t bytes[sizeof(struct kvm_cpuid2) + 256 * sizeof(struct kvm_cpuid_entry2)];
	} cpuid = { .c.nent = 256 };
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid.c) < 0 ||
	    ioctl(vcpu, KVM_SET_CPUID2, &cpuid.c) < 0)
		die("cpuid");
	struct kvm_sregs s;
	ioctl(vcpu, KVM_GET_SREGS, &s);
	struct kvm_segment seg = { .limit = 0xffffffff, .selector = 0x18, .type = 3,
				   .present = 1, .db = 1, .s = 1, .g = 1 };
	s.ds = s.es = s.fs = s.gs = s.ss = seg;
	seg.selector = 0x08;
	seg.type = 0xb;
	s.cs = seg;
	s.cr0 = 0x11;
	ioctl(vcpu, KVM_SET_SREGS, &s);
	struct kvm_regs regs = { .rip = entry, .rbx = 0x6000, .rflags = 2 };
	ioctl(vcpu, KVM_SET_REGS, &regs);

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			die("KVM_RUN");
		if (run->exit_reason == KVM_EXIT_IO) {
			uint8_t *d = (uint8_t *)run + run->io.data_offset;
			if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0xf4)
				return (d[0] << 1) | 1;
			if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8)
				fputc(d[0], stdout);
			else if (run->io.direction == KVM_EXIT_IO_IN)
				memset(d, 0xff, run->io.size * run->io.count);
			continue;
		}
		if (run->exit_reason == KVM_EXIT_MMIO) {
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, 8);
			continue;
		}
		fprintf(stderr, "minimal_kvm: exit reason %u\n", run->exit_reason);
		return 121;
	}
}
