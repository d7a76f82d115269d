#include "accel/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int xioctl(int fd, unsigned long req, const void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, req, arg);
	} while (ret < 0 && errno == EINTR && req != KVM_RUN);
	return ret < 0 ? -errno : ret;
}

struct kvm_cap_req {
	long cap;
	const char *name;
};

/* Everything Ember relies on; a missing one is a clear startup error. */
static const struct kvm_cap_req required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_COALESCED_MMIO, "KVM_CAP_COALESCED_MMIO" },
	{ KVM_CAP_COALESCED_PIO, "KVM_CAP_COALESCED_PIO" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
	{ KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
};

int kvm_check_extension(const struct kvm_vm *kvm, long cap)
{
	int fd = kvm->vm_fd >= 0 ? kvm->vm_fd : kvm->sys_fd;
	int ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return ret < 0 ? 0 : ret;
}

int kvm_open(struct kvm_vm *kvm, char *err, size_t errlen)
{
	int ret;

	memset(kvm, 0, sizeof(*kvm));
	kvm->vm_fd = -1;
	kvm->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm->sys_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open /dev/kvm: %s", strerror(errno));
		return ret;
	}
	ret = ioctl(kvm->sys_fd, KVM_GET_API_VERSION, 0);
	if (ret != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm has API version %d, need %d", ret, KVM_API_VERSION);
		ret = -ENOTSUP;
		goto err_close;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (kvm_check_extension(kvm, required_caps[i].cap) <= 0) {
			snprintf(err, errlen, "KVM lacks required capability %s",
				 required_caps[i].name);
			ret = -ENOTSUP;
			goto err_close;
		}
	}
	kvm->coalesced_mmio_page = kvm_check_extension(kvm, KVM_CAP_COALESCED_MMIO);
	kvm->vcpu_mmap_size = ioctl(kvm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (kvm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE returned %d", kvm->vcpu_mmap_size);
		ret = -EINVAL;
		goto err_close;
	}
	kvm->max_vcpus = kvm_check_extension(kvm, KVM_CAP_MAX_VCPUS);
	if (kvm->max_vcpus <= 0)
		kvm->max_vcpus = kvm_check_extension(kvm, KVM_CAP_NR_VCPUS);
	if (kvm->max_vcpus <= 0)
		kvm->max_vcpus = 4;
	kvm->nr_memslots = kvm_check_extension(kvm, KVM_CAP_NR_MEMSLOTS);
	return 0;

err_close:
	close(kvm->sys_fd);
	kvm->sys_fd = -1;
	return ret;
}

int kvm_create_vm(struct kvm_vm *kvm)
{
	int fd;

	do {
		fd = ioctl(kvm->sys_fd, KVM_CREATE_VM, 0);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	kvm->vm_fd = fd;
	return 0;
}

void kvm_close(struct kvm_vm *kvm)
{
	if (kvm->vm_fd >= 0)
		close(kvm->vm_fd);
	if (kvm->sys_fd >= 0)
		close(kvm->sys_fd);
	free(kvm->supported_cpuid);
	kvm->supported_cpuid = NULL;
	kvm->vm_fd = kvm->sys_fd = -1;
}

int kvm_set_tss_addr(struct kvm_vm *kvm, uint64_t addr)
{
	return xioctl(kvm->vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)addr);
}

int kvm_set_identity_map_addr(struct kvm_vm *kvm, uint64_t addr)
{
	return xioctl(kvm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &addr);
}

int kvm_set_memslot(struct kvm_vm *kvm, uint32_t slot, uint64_t gpa, uint64_t size,
		    void *hva, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	return xioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
}

int kvm_get_dirty_log(struct kvm_vm *kvm, uint32_t slot, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };

	return xioctl(kvm->vm_fd, KVM_GET_DIRTY_LOG, &log);
}

int kvm_add_memslot(struct kvm_vm *kvm, uint64_t gpa, uint64_t size, void *hva)
{
	int ret;

	if (kvm->nr_memslots > 0 && kvm->next_slot >= (unsigned)kvm->nr_memslots)
		return -ENOSPC;
	ret = kvm_set_memslot(kvm, kvm->next_slot, gpa, size, hva, 0);
	if (!ret)
		kvm->next_slot++;
	return ret;
}

int kvm_create_irqchip(struct kvm_vm *kvm)
{
	return xioctl(kvm->vm_fd, KVM_CREATE_IRQCHIP, NULL);
}

int kvm_create_pit2(struct kvm_vm *kvm)
{
	struct kvm_pit_config cfg = { .flags = 0 };

	return xioctl(kvm->vm_fd, KVM_CREATE_PIT2, &cfg);
}

int kvm_irq_line(struct kvm_vm *kvm, uint32_t gsi, int level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level };

	return xioctl(kvm->vm_fd, KVM_IRQ_LINE, &l);
}

int kvm_get_irqchip(struct kvm_vm *kvm, struct kvm_irqchip *chip)
{
	return xioctl(kvm->vm_fd, KVM_GET_IRQCHIP, chip);
}

int kvm_set_irqchip(struct kvm_vm *kvm, struct kvm_irqchip *chip)
{
	return xioctl(kvm->vm_fd, KVM_SET_IRQCHIP, chip);
}

int kvm_get_pit2(struct kvm_vm *kvm, struct kvm_pit_state2 *pit)
{
	return xioctl(kvm->vm_fd, KVM_GET_PIT2, pit);
}

int kvm_set_pit2(struct kvm_vm *kvm, struct kvm_pit_state2 *pit)
{
	return xioctl(kvm->vm_fd, KVM_SET_PIT2, pit);
}

int kvm_set_gsi_routing(struct kvm_vm *kvm, const struct kvm_irq_routing *routing)
{
	return xioctl(kvm->vm_fd, KVM_SET_GSI_ROUTING, routing);
}

int kvm_irqfd(struct kvm_vm *kvm, int fd, uint32_t gsi, int resample_fd, bool deassign)
{
	struct kvm_irqfd req = { .fd = (uint32_t)fd, .gsi = gsi };

	if (deassign)
		req.flags |= KVM_IRQFD_FLAG_DEASSIGN;
	if (resample_fd >= 0) {
		req.flags |= KVM_IRQFD_FLAG_RESAMPLE;
		req.resamplefd = (uint32_t)resample_fd;
	}
	return xioctl(kvm->vm_fd, KVM_IRQFD, &req);
}

int kvm_ioeventfd(struct kvm_vm *kvm, uint64_t addr, uint32_t len, int fd,
		  bool pio, bool datamatch, uint64_t data, bool deassign)
{
	struct kvm_ioeventfd req = {
		.datamatch = data, .addr = addr, .len = len, .fd = fd,
	};

	if (pio)
		req.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (datamatch)
		req.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	if (deassign)
		req.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return xioctl(kvm->vm_fd, KVM_IOEVENTFD, &req);
}

int kvm_signal_msi(struct kvm_vm *kvm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};

	return xioctl(kvm->vm_fd, KVM_SIGNAL_MSI, &msi);
}

int kvm_register_coalesced_mmio(struct kvm_vm *kvm, uint64_t addr, uint32_t size)
{
	struct kvm_coalesced_mmio_zone z = { .addr = addr, .size = size };

	return xioctl(kvm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &z);
}

int kvm_register_coalesced_pio(struct kvm_vm *kvm, uint64_t port, uint32_t size)
{
	struct kvm_coalesced_mmio_zone z = { .addr = port, .size = size, .pio = 1 };

	return xioctl(kvm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &z);
}

int kvm_create_vcpu(struct kvm_vm *kvm, unsigned index, struct kvm_vcpu_fd *vcpu)
{
	void *map;
	int ret;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->index = index;
	vcpu->fd = ioctl(kvm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0)
		return -errno;
	map = mmap(NULL, (size_t)kvm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   vcpu->fd, 0);
	if (map == MAP_FAILED) {
		ret = -errno;
		close(vcpu->fd);
		vcpu->fd = -1;
		return ret;
	}
	vcpu->run = map;
	vcpu->run_size = (size_t)kvm->vcpu_mmap_size;
	/* The coalesced ring lives in the same mapping, at its page offset. */
	if (kvm->coalesced_mmio_page > 0 &&
	    (size_t)kvm->coalesced_mmio_page * 4096 + 4096 <= vcpu->run_size)
		vcpu->ring = (void *)((uint8_t *)map + (size_t)kvm->coalesced_mmio_page * 4096);
	return 0;
}

void kvm_destroy_vcpu(struct kvm_vcpu_fd *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, vcpu->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

int kvm_run(struct kvm_vcpu_fd *vcpu)
{
	return ioctl(vcpu->fd, KVM_RUN, 0) < 0 ? -errno : 0;
}

#define VCPU_IOCTL(name, req, type)                                \
	int name(struct kvm_vcpu_fd *v, type arg)                  \
	{                                                          \
		return xioctl(v->fd, req, arg);                    \
	}

VCPU_IOCTL(kvm_get_regs, KVM_GET_REGS, struct kvm_regs *)
VCPU_IOCTL(kvm_set_regs, KVM_SET_REGS, const struct kvm_regs *)
VCPU_IOCTL(kvm_get_sregs, KVM_GET_SREGS, struct kvm_sregs *)
VCPU_IOCTL(kvm_set_sregs, KVM_SET_SREGS, const struct kvm_sregs *)
VCPU_IOCTL(kvm_set_fpu, KVM_SET_FPU, const struct kvm_fpu *)
VCPU_IOCTL(kvm_set_cpuid2, KVM_SET_CPUID2, const struct kvm_cpuid2 *)
VCPU_IOCTL(kvm_get_lapic, KVM_GET_LAPIC, struct kvm_lapic_state *)
VCPU_IOCTL(kvm_set_lapic, KVM_SET_LAPIC, const struct kvm_lapic_state *)
VCPU_IOCTL(kvm_get_mp_state, KVM_GET_MP_STATE, struct kvm_mp_state *)
VCPU_IOCTL(kvm_set_mp_state, KVM_SET_MP_STATE, const struct kvm_mp_state *)
VCPU_IOCTL(kvm_translate, KVM_TRANSLATE, struct kvm_translation *)
VCPU_IOCTL(kvm_get_vcpu_events, KVM_GET_VCPU_EVENTS, struct kvm_vcpu_events *)
VCPU_IOCTL(kvm_set_vcpu_events, KVM_SET_VCPU_EVENTS, const struct kvm_vcpu_events *)
VCPU_IOCTL(kvm_get_fpu, KVM_GET_FPU, struct kvm_fpu *)
VCPU_IOCTL(kvm_get_xcrs, KVM_GET_XCRS, struct kvm_xcrs *)
VCPU_IOCTL(kvm_set_xcrs, KVM_SET_XCRS, const struct kvm_xcrs *)
VCPU_IOCTL(kvm_get_debugregs, KVM_GET_DEBUGREGS, struct kvm_debugregs *)
VCPU_IOCTL(kvm_set_debugregs, KVM_SET_DEBUGREGS, const struct kvm_debugregs *)
VCPU_IOCTL(kvm_get_msrs, KVM_GET_MSRS, struct kvm_msrs *)
VCPU_IOCTL(kvm_get_cpuid2, KVM_GET_CPUID2, struct kvm_cpuid2 *)

size_t kvm_xsave_size(const struct kvm_vm *kvm)
{
	int n = kvm_check_extension(kvm, KVM_CAP_XSAVE2);

	if (n > (int)sizeof(struct kvm_xsave))
		return (size_t)n;
	return kvm_check_extension(kvm, KVM_CAP_XSAVE) > 0 ? sizeof(struct kvm_xsave) : 0;
}

int kvm_get_xsave(struct kvm_vcpu_fd *v, void *buf, size_t size)
{
	if (size < sizeof(struct kvm_xsave))
		return -EINVAL;
	return xioctl(v->fd, size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, buf);
}

int kvm_set_xsave(struct kvm_vcpu_fd *v, const void *buf)
{
	return xioctl(v->fd, KVM_SET_XSAVE, buf);
}

int kvm_get_tsc_khz(struct kvm_vcpu_fd *v)
{
	return xioctl(v->fd, KVM_GET_TSC_KHZ, NULL);
}

int kvm_set_tsc_khz(struct kvm_vcpu_fd *v, uint32_t khz)
{
	return xioctl(v->fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)khz);
}

int kvm_get_clock(struct kvm_vm *kvm, struct kvm_clock_data *clock)
{
	return xioctl(kvm->vm_fd, KVM_GET_CLOCK, clock);
}

int kvm_set_clock(struct kvm_vm *kvm, const struct kvm_clock_data *clock)
{
	return xioctl(kvm->vm_fd, KVM_SET_CLOCK, clock);
}

int kvm_get_msr_index_list(struct kvm_vm *kvm, uint32_t **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	int ret;

	*out = NULL;
	/* The first call fails with E2BIG and says how many there are. */
	ret = xioctl(kvm->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (ret < 0 && ret != -E2BIG)
		return ret;
	if (probe.nmsrs == 0)
		return 0;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	ret = xioctl(kvm->sys_fd, KVM_GET_MSR_INDEX_LIST, list);
	if (ret < 0) {
		free(list);
		return ret;
	}
	*out = malloc(list->nmsrs * sizeof(uint32_t));
	if (!*out) {
		free(list);
		return -ENOMEM;
	}
	memcpy(*out, list->indices, list->nmsrs * sizeof(uint32_t));
	ret = (int)list->nmsrs;
	free(list);
	return ret;
}

int kvm_set_msrs(struct kvm_vcpu_fd *v, const struct kvm_msrs *msrs)
{
	int ret = xioctl(v->fd, KVM_SET_MSRS, msrs);

	if (ret >= 0 && (uint32_t)ret != msrs->nmsrs)
		return -EINVAL;	/* KVM stops at the first MSR it rejects */
	return ret < 0 ? ret : 0;
}

const struct kvm_cpuid2 *kvm_supported_cpuid(struct kvm_vm *kvm)
{
	unsigned n = 128;

	while (!kvm->supported_cpuid && n <= 4096) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(kvm->sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			kvm->supported_cpuid = c;
			break;
		}
		free(c);
		if (errno != E2BIG)
			return NULL;
		n *= 2;
	}
	return kvm->supported_cpuid;
}
