/* Snapshot save and restore over struct vm (snapshot.h). */
#include "vmm/snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accel/kvm.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "vmm/snapshot/disks.h"
#include "vmm/snapshot/state.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.0.0"
#endif

#define MSR_IA32_TSC_DEADLINE	0x6e0
#define PAGE			4096u
#define STATE_FILE_MAX		(64u << 20)	/* far above any real state file */

struct snapshot_restore {
	struct snap_state state;
	char *dir;
	bool paused;
};

static char *path_join(const char *dir, const char *name)
{
	char *p;

	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* ---- per-vCPU state, on the vCPU's own thread ---- */

struct vcpu_job {
	struct snap_state *state;
	struct kvm_vm *kvm;
	const uint32_t *msr_index;	/* capture: what to try */
	unsigned nr_msr_index;
	size_t xsave_size;
	bool has_xcrs;
	char err[256];
};

#define VCPU_TRY(job, vcpu, call, what)                                               \
	do {                                                                          \
		int r_ = (call);                                                      \
		if (r_ < 0)                                                           \
			return errf((job)->err, sizeof((job)->err), r_, "vcpu%u: %s: %s", \
				    (vcpu)->index, what, strerror(-r_));               \
	} while (0)

/* KVM_GET_MSRS stops at the first MSR it cannot read: take what it gave,
 * skip that one, and go on with the rest. */
static int capture_msrs(struct vcpu_job *job, struct vcpu *vcpu, struct snap_vcpu *v)
{
	unsigned n = job->nr_msr_index < SNAP_MAX_MSRS ? job->nr_msr_index : SNAP_MAX_MSRS;
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
	unsigned next = 0;

	v->msrs = calloc(n ? n : 1, sizeof(*v->msrs));
	if (!m || !v->msrs) {
		free(m);
		return errf(job->err, sizeof(job->err), -ENOMEM, "vcpu%u: out of memory",
			    vcpu->index);
	}
	while (next < n) {
		unsigned batch = n - next;
		int got;

		m->nmsrs = batch;
		for (unsigned i = 0; i < batch; i++)
			m->entries[i] = (struct kvm_msr_entry){ .index = job->msr_index[next + i] };
		got = kvm_get_msrs(&vcpu->kfd, m);
		if (got < 0) {
			free(m);
			return errf(job->err, sizeof(job->err), got, "vcpu%u: KVM_GET_MSRS: %s",
				    vcpu->index, strerror(-got));
		}
		memcpy(&v->msrs[v->nr_msrs], m->entries, (size_t)got * sizeof(m->entries[0]));
		v->nr_msrs += (unsigned)got;
		next += (unsigned)got < batch ? (unsigned)got + 1 : batch;
	}
	free(m);
	return 0;
}

/* The vCPU's CPUID table (malloc'd). Older kernels (6.1) neither report
 * the count on success (nent stays what was passed) nor copy it back with
 * E2BIG, so the buffer starts as all-ones entries, which no real entry is,
 * and the table ends at the first one still untouched. */
static int get_vcpu_cpuid(struct kvm_vcpu_fd *fd, struct kvm_cpuid2 **out)
{
	size_t esize = sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = malloc(sizeof(*c) + SNAP_MAX_CPUID * esize);
	uint8_t ones[sizeof(struct kvm_cpuid_entry2)];
	unsigned n = 0;
	int ret;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	memset(c, 0xff, sizeof(*c) + SNAP_MAX_CPUID * esize);
	memset(ones, 0xff, sizeof(ones));
	c->nent = SNAP_MAX_CPUID;
	c->padding = 0;
	ret = kvm_get_cpuid2(fd, c);
	if (ret < 0) {
		free(c);
		return ret;
	}
	while (n < SNAP_MAX_CPUID && n < c->nent && memcmp(&c->entries[n], ones, esize))
		n++;
	c->nent = n;
	*out = c;
	return 0;
}

static int capture_vcpu(struct vcpu *vcpu, void *arg)
{
	struct vcpu_job *job = arg;
	struct snap_vcpu *v = &job->state->vcpus[vcpu->index];
	struct kvm_vcpu_fd *fd = &vcpu->kfd;
	struct kvm_cpuid2 *cpuid;
	int ret;

	/* First: reading the MP state makes KVM take pending INIT/SIPI into
	 * the vCPU, which the rest must then reflect. */
	VCPU_TRY(job, vcpu, kvm_get_mp_state(fd, &v->mp_state), "KVM_GET_MP_STATE");
	VCPU_TRY(job, vcpu, kvm_get_regs(fd, &v->regs), "KVM_GET_REGS");
	VCPU_TRY(job, vcpu, kvm_get_sregs(fd, &v->sregs), "KVM_GET_SREGS");
	if (job->xsave_size) {
		v->xsave = calloc(1, job->xsave_size);
		if (!v->xsave)
			return errf(job->err, sizeof(job->err), -ENOMEM, "out of memory");
		v->xsave_len = job->xsave_size;
		VCPU_TRY(job, vcpu, kvm_get_xsave(fd, v->xsave, job->xsave_size), "KVM_GET_XSAVE");
	} else {
		VCPU_TRY(job, vcpu, kvm_get_fpu(fd, &v->fpu), "KVM_GET_FPU");
	}
	if (job->has_xcrs) {
		VCPU_TRY(job, vcpu, kvm_get_xcrs(fd, &v->xcrs), "KVM_GET_XCRS");
		v->has_xcrs = true;
	}
	VCPU_TRY(job, vcpu, kvm_get_debugregs(fd, &v->debugregs), "KVM_GET_DEBUGREGS");
	VCPU_TRY(job, vcpu, kvm_get_lapic(fd, &v->lapic), "KVM_GET_LAPIC");
	ret = capture_msrs(job, vcpu, v);
	if (ret)
		return ret;
	VCPU_TRY(job, vcpu, kvm_get_vcpu_events(fd, &v->events), "KVM_GET_VCPU_EVENTS");
	ret = get_vcpu_cpuid(fd, &cpuid);
	if (ret < 0)
		return errf(job->err, sizeof(job->err), ret, "vcpu%u: KVM_GET_CPUID2: %s",
			    vcpu->index, strerror(-ret));
	v->cpuid = malloc(cpuid->nent * sizeof(*v->cpuid) + 1);
	if (!v->cpuid) {
		free(cpuid);
		return errf(job->err, sizeof(job->err), -ENOMEM, "out of memory");
	}
	memcpy(v->cpuid, cpuid->entries, cpuid->nent * sizeof(*v->cpuid));
	v->nr_cpuid = cpuid->nent;
	free(cpuid);
	ret = kvm_get_tsc_khz(fd);
	v->tsc_khz = ret > 0 ? (uint32_t)ret : 0;
	return 0;
}

/* Bits KVM rewrites as the guest runs (from CR4, XCR0, the APIC base), so
 * a running vCPU's table differs there from a fresh one of the same model. */
static void cpuid_runtime_mask(const struct kvm_cpuid_entry2 *e, uint32_t mask[4])
{
	mask[0] = mask[1] = mask[2] = mask[3] = ~0u;	/* eax ebx ecx edx */
	if (e->function == 1) {
		mask[2] &= ~(1u << 27);	/* OSXSAVE */
		mask[3] &= ~(1u << 9);	/* APIC */
	} else if (e->function == 7 && e->index == 0) {
		mask[2] &= ~(1u << 4);	/* OSPKE */
	} else if (e->function == 0xd && e->index <= 1) {
		mask[1] = 0;		/* XSAVE size for the enabled features */
	}
}

static int compare_cpuid(struct vcpu_job *job, struct vcpu *vcpu, const struct snap_vcpu *v)
{
	struct kvm_cpuid2 *cur;
	int ret = get_vcpu_cpuid(&vcpu->kfd, &cur);

	if (ret < 0)
		return errf(job->err, sizeof(job->err), ret, "vcpu%u: KVM_GET_CPUID2: %s",
			    vcpu->index, strerror(-ret));
	ret = 0;
	for (unsigned i = 0; i < v->nr_cpuid && !ret; i++) {
		const struct kvm_cpuid_entry2 *s = &v->cpuid[i], *c = NULL;
		uint32_t m[4];

		for (unsigned j = 0; j < cur->nent && !c; j++)
			if (cur->entries[j].function == s->function && cur->entries[j].index == s->index)
				c = &cur->entries[j];
		if (!c) {
			ret = errf(job->err, sizeof(job->err), -EINVAL,
				   "snapshot: vcpu%u: CPUID leaf 0x%x.%u does not exist on this VM's CPU "
				   "(another host, kernel or --cpu-model)", vcpu->index, s->function,
				   s->index);
			break;
		}
		cpuid_runtime_mask(s, m);
		if (((s->eax ^ c->eax) & m[0]) || ((s->ebx ^ c->ebx) & m[1]) ||
		    ((s->ecx ^ c->ecx) & m[2]) || ((s->edx ^ c->edx) & m[3]))
			ret = errf(job->err, sizeof(job->err), -EINVAL,
				   "snapshot: vcpu%u: CPUID leaf 0x%x.%u is %08x %08x %08x %08x in the "
				   "snapshot, %08x %08x %08x %08x here: a different CPU model (restore "
				   "on the same host and kernel with the same --cpu-model)",
				   vcpu->index, s->function, s->index, s->eax, s->ebx, s->ecx, s->edx,
				   c->eax, c->ebx, c->ecx, c->edx);
	}
	if (!ret && cur->nent != v->nr_cpuid)
		ret = errf(job->err, sizeof(job->err), -EINVAL,
			   "snapshot: vcpu%u: %u CPUID leaves in the snapshot, %u here: a different "
			   "CPU model", vcpu->index, v->nr_cpuid, cur->nent);
	free(cur);
	return ret;
}

/* KVM_SET_MSRS says only how many it took: find the one it refused. */
static int restore_msrs(struct vcpu_job *job, struct vcpu *vcpu, const struct kvm_msr_entry *e,
			unsigned n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (n ? n : 1) * sizeof(m->entries[0]));
	int ret;

	if (!m)
		return errf(job->err, sizeof(job->err), -ENOMEM, "out of memory");
	m->nmsrs = n;
	memcpy(m->entries, e, n * sizeof(*e));
	ret = n ? kvm_set_msrs(&vcpu->kfd, m) : 0;
	for (unsigned i = 0; ret && i < n; i++) {
		m->nmsrs = 1;
		m->entries[0] = e[i];
		if (kvm_set_msrs(&vcpu->kfd, m)) {
			ret = errf(job->err, sizeof(job->err), -EINVAL,
				   "snapshot: vcpu%u: KVM refused MSR 0x%x = 0x%llx", vcpu->index,
				   e[i].index, (unsigned long long)e[i].data);
			break;
		}
	}
	if (ret && !job->err[0])
		ret = errf(job->err, sizeof(job->err), ret, "vcpu%u: KVM_SET_MSRS: %s", vcpu->index,
			   strerror(-ret));
	free(m);
	return ret;
}

static int restore_xsave(struct vcpu_job *job, struct vcpu *vcpu, const struct snap_vcpu *v)
{
	size_t size = job->xsave_size;
	uint8_t *buf;
	int ret;

	if (!v->xsave)
		return kvm_set_fpu(&vcpu->kfd, &v->fpu);
	if (!size)
		return errf(job->err, sizeof(job->err), -EINVAL,
			    "snapshot: vcpu%u: the snapshot has XSAVE state, this host's KVM has no "
			    "XSAVE", vcpu->index);
	/* Sizes differ with AMX; what does not fit must be unused (zero). */
	if (v->xsave_len > size) {
		for (size_t i = size; i < v->xsave_len; i++)
			if (v->xsave[i])
				return errf(job->err, sizeof(job->err), -EINVAL,
					    "snapshot: vcpu%u: XSAVE state of %zu bytes does not fit "
					    "this host's %zu", vcpu->index, v->xsave_len, size);
	}
	buf = calloc(1, size);
	if (!buf)
		return errf(job->err, sizeof(job->err), -ENOMEM, "out of memory");
	memcpy(buf, v->xsave, v->xsave_len < size ? v->xsave_len : size);
	ret = kvm_set_xsave(&vcpu->kfd, buf);
	free(buf);
	return ret;
}

static int restore_vcpu(struct vcpu *vcpu, void *arg)
{
	struct vcpu_job *job = arg;
	const struct snap_vcpu *v = &job->state->vcpus[vcpu->index];
	struct kvm_vcpu_fd *fd = &vcpu->kfd;
	struct kvm_msr_entry *msrs, deadline = { .index = 0 };
	unsigned n = 0;
	int ret;

	ret = compare_cpuid(job, vcpu, v);
	if (ret)
		return ret;
	if (v->tsc_khz) {
		ret = kvm_get_tsc_khz(fd);
		if (ret > 0 && (uint32_t)ret != v->tsc_khz && kvm_set_tsc_khz(fd, v->tsc_khz))
			return errf(job->err, sizeof(job->err), -EINVAL,
				    "snapshot: vcpu%u: the snapshot's TSC runs at %u kHz, this host's at "
				    "%d kHz, and KVM cannot scale it", vcpu->index, v->tsc_khz, ret);
	}
	if (v->has_xcrs && !job->has_xcrs)
		return errf(job->err, sizeof(job->err), -EINVAL,
			    "snapshot: vcpu%u: the snapshot has XCRs, this host's KVM does not",
			    vcpu->index);
	/* sregs first: the APIC base (x2APIC or not) decides how the LAPIC
	 * loads; regs before events, as KVM_SET_REGS drops a pending exception. */
	VCPU_TRY(job, vcpu, kvm_set_sregs(fd, &v->sregs), "KVM refused the saved special registers");
	VCPU_TRY(job, vcpu, kvm_set_regs(fd, &v->regs), "KVM refused the saved registers");
	ret = restore_xsave(job, vcpu, v);
	if (ret)
		return job->err[0] ? ret : errf(job->err, sizeof(job->err), ret,
						"vcpu%u: KVM refused the saved FPU/XSAVE state: %s",
						vcpu->index, strerror(-ret));
	if (v->has_xcrs)
		VCPU_TRY(job, vcpu, kvm_set_xcrs(fd, &v->xcrs), "KVM refused the saved XCRs");
	VCPU_TRY(job, vcpu, kvm_set_lapic(fd, &v->lapic), "KVM refused the saved LAPIC");
	/* The TSC deadline only arms a LAPIC already in TSC-deadline mode, and
	 * counts in the restored TSC: it goes last. */
	msrs = malloc(v->nr_msrs * sizeof(*msrs) + 1);
	if (!msrs)
		return errf(job->err, sizeof(job->err), -ENOMEM, "out of memory");
	for (unsigned i = 0; i < v->nr_msrs; i++) {
		if (v->msrs[i].index == MSR_IA32_TSC_DEADLINE)
			deadline = v->msrs[i];
		else
			msrs[n++] = v->msrs[i];
	}
	if (deadline.index)
		msrs[n++] = deadline;
	ret = restore_msrs(job, vcpu, msrs, n);
	free(msrs);
	if (ret)
		return ret;
	VCPU_TRY(job, vcpu, kvm_set_mp_state(fd, &v->mp_state), "KVM refused the saved MP state");
	VCPU_TRY(job, vcpu, kvm_set_vcpu_events(fd, &v->events), "KVM refused the saved events");
	VCPU_TRY(job, vcpu, kvm_set_debugregs(fd, &v->debugregs),
		 "KVM refused the saved debug registers");
	return 0;
}

/* ---- the memory file ---- */

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)(const void *)p;

	for (unsigned i = 0; i < PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Pages [from, to) of region r (page offsets in bytes): non-zero runs go to
 * the file, zero pages stay holes. */
static int write_pages(int fd, const struct gm_region *r, uint64_t from, uint64_t to,
		       uint64_t *written)
{
	uint64_t run = UINT64_MAX;

	for (uint64_t off = from; off <= to; off += PAGE) {
		bool data = off < to && !page_is_zero(r->hva + off);

		if (data && run == UINT64_MAX)
			run = off;
		if (!data && run != UINT64_MAX) {
			int ret = pwrite_all(fd, r->hva + run, off - run, (off_t)(r->fd_offset + run));

			if (ret)
				return ret;
			*written += off - run;
			run = UINT64_MAX;
		}
	}
	return 0;
}

int snapshot_write_memory(const struct guest_mem *gm, int fd, uint64_t *written)
{
	int ret;

	*written = 0;
	if (ftruncate(fd, (off_t)gm->ram_size) < 0)
		return -errno;
	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->regions[i];
		uint64_t pos = 0;

		while (pos < r->size) {
			uint64_t data = pos, hole = r->size;

			/* Holes in the memfd were never touched: skip them without
			 * reading (a read would allocate the page). */
			if (gm->memfd >= 0) {
				off_t d = lseek(gm->memfd, (off_t)(r->fd_offset + pos), SEEK_DATA);
				off_t h;

				if (d < 0 && errno == ENXIO)
					break;
				if (d >= 0) {
					if ((uint64_t)d >= r->fd_offset + r->size)
						break;
					h = lseek(gm->memfd, d, SEEK_HOLE);
					data = (uint64_t)d - r->fd_offset;
					if (h >= 0 && (uint64_t)h - r->fd_offset < r->size)
						hole = (uint64_t)h - r->fd_offset;
				}
			}
			data &= ~(uint64_t)(PAGE - 1);
			hole = (hole + PAGE - 1) & ~(uint64_t)(PAGE - 1);
			if (hole > r->size)
				hole = r->size;
			ret = write_pages(fd, r, data, hole, written);
			if (ret)
				return ret;
			pos = hole;
		}
	}
	return 0;
}

/* ---- save ---- */

static int write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int ret;

	if (fd < 0)
		return -errno;
	ret = pwrite_all(fd, buf, len, 0);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	return ret;
}

static int capture_machine(struct vm *vm, struct snap_state *s, char *err, size_t errlen)
{
	struct vcpu_job job = { .state = s, .kvm = vm->kvm };
	uint32_t *msr_list = NULL;
	json_t *devices;
	int n, ret;

	snprintf(s->ember_version, sizeof(s->ember_version), "%s", EMBER_VERSION);
	s->cpu_model = (uint32_t)vm->cfg->cpu_model;
	s->memory_size = vm->mem.ram_size;
	if (vm->mem.nr > SNAP_MAX_REGIONS)
		return errf(err, errlen, -EINVAL, "%u memory regions", vm->mem.nr);
	for (unsigned i = 0; i < vm->mem.nr; i++)
		s->regions[i] = (struct snap_region){ .gpa = vm->mem.regions[i].gpa,
						      .size = vm->mem.regions[i].size,
						      .offset = vm->mem.regions[i].fd_offset };
	s->nr_regions = vm->mem.nr;
	s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if ((ret = kvm_get_irqchip(vm->kvm, &s->pic_master)) ||
	    (ret = kvm_get_irqchip(vm->kvm, &s->pic_slave)) ||
	    (ret = kvm_get_irqchip(vm->kvm, &s->ioapic)))
		return errf(err, errlen, ret, "KVM_GET_IRQCHIP: %s", strerror(-ret));
	if ((ret = kvm_get_pit2(vm->kvm, &s->pit)))
		return errf(err, errlen, ret, "KVM_GET_PIT2: %s", strerror(-ret));
	if ((ret = kvm_get_clock(vm->kvm, &s->clock)))
		return errf(err, errlen, ret, "KVM_GET_CLOCK: %s", strerror(-ret));

	devices = vm_devices_save(vm);
	if (!devices)
		return errf(err, errlen, -EIO, "a device could not save its state (see the log)");
	s->devices_json = json_dumps(devices, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(devices);
	if (!s->devices_json)
		return errf(err, errlen, -ENOMEM, "cannot encode the device state");

	n = kvm_get_msr_index_list(vm->kvm, &msr_list);
	if (n < 0)
		return errf(err, errlen, n, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-n));
	job.msr_index = msr_list;
	job.nr_msr_index = (unsigned)n;
	job.xsave_size = kvm_xsave_size(vm->kvm);
	job.has_xcrs = kvm_check_extension(vm->kvm, KVM_CAP_XCRS) > 0;
	ret = snap_state_alloc_vcpus(s, vm->nr_vcpus);
	for (unsigned i = 0; !ret && i < vm->nr_vcpus; i++)
		ret = vcpu_call(vm->vcpus[i], capture_vcpu, &job);
	free(msr_list);
	if (ret)
		return errf(err, errlen, ret, "%s", job.err[0] ? job.err : strerror(-ret));
	return 0;
}

int snapshot_save(struct vm *vm, const char *dir, char *err, size_t errlen)
{
	static const char *const names[] = { SNAPSHOT_MEMORY_FILE, SNAPSHOT_DISKS_FILE,
					      SNAPSHOT_STATE_FILE };
	char *tmp[3] = { NULL }, *final[3] = { NULL };
	struct snap_state s = { 0 };
	uint8_t *image = NULL;
	char *disks = NULL;
	size_t image_len;
	uint64_t written = 0;
	int64_t t0 = monotonic_ms();
	struct stat st;
	int fd = -1, ret;

	if (!dir || !*dir)
		return errf(err, errlen, -EINVAL, "snapshot-save: empty path");
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return errf(err, errlen, -errno, "snapshot-save: cannot create %s: %s", dir,
			    strerror(errno));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return errf(err, errlen, -ENOTDIR, "snapshot-save: %s is not a directory", dir);
	for (unsigned i = 0; i < 3; i++) {
		char name[64];

		snprintf(name, sizeof(name), ".%s.tmp", names[i]);
		tmp[i] = path_join(dir, name);
		final[i] = path_join(dir, names[i]);
		if (!tmp[i] || !final[i]) {
			ret = errf(err, errlen, -ENOMEM, "snapshot-save: out of memory");
			goto out;
		}
	}

	ret = capture_machine(vm, &s, err, errlen);
	if (!ret)
		ret = snap_state_serialize(&s, &image, &image_len, err, errlen);
	if (!ret)
		ret = snapshot_disks_describe(vm->cfg, &disks, err, errlen);
	if (ret) {
		char why[256];

		snprintf(why, sizeof(why), "%s", err);
		errf(err, errlen, ret, "snapshot-save: %s", why);
		goto out;
	}

	fd = open(tmp[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = errf(err, errlen, -errno, "snapshot-save: cannot create %s: %s", tmp[0],
			   strerror(errno));
		goto out;
	}
	ret = snapshot_write_memory(&vm->mem, fd, &written);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	fd = -1;
	if (ret) {
		errf(err, errlen, ret, "snapshot-save: writing %s: %s", final[0], strerror(-ret));
		goto out;
	}
	if ((ret = write_file(tmp[1], disks, strlen(disks))) ||
	    (ret = write_file(tmp[2], image, image_len))) {
		errf(err, errlen, ret, "snapshot-save: writing in %s: %s", dir, strerror(-ret));
		goto out;
	}
	/* The old state goes first: memory and disks of one snapshot never
	 * sit next to the state of another. */
	if ((unlink(final[2]) < 0 && errno != ENOENT) || rename(tmp[0], final[0]) < 0 ||
	    rename(tmp[1], final[1]) < 0 || rename(tmp[2], final[2]) < 0) {
		ret = errf(err, errlen, -errno, "snapshot-save: renaming into %s: %s", dir,
			   strerror(errno));
		goto out;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
		fd = -1;
	}
	log_info("snapshot saved to %s: state %zu bytes, memory %llu of %llu MiB written, %lld ms",
		 dir, image_len, (unsigned long long)(written >> 20),
		 (unsigned long long)(vm->mem.ram_size >> 20), (long long)(monotonic_ms() - t0));
out:
	for (unsigned i = 0; i < 3; i++) {
		if (ret && tmp[i])
			unlink(tmp[i]);
		free(tmp[i]);
		free(final[i]);
	}
	free(image);
	free(disks);
	snap_state_free(&s);
	return ret;
}

int snapshot_capture(struct vm *vm, uint8_t **image, size_t *image_len, char **disks,
		     char *err, size_t errlen)
{
	struct snap_state s = { 0 };
	int ret;

	*image = NULL;
	*disks = NULL;
	ret = capture_machine(vm, &s, err, errlen);
	if (!ret)
		ret = snap_state_serialize(&s, image, image_len, err, errlen);
	if (!ret)
		ret = snapshot_disks_describe(vm->cfg, disks, err, errlen);
	snap_state_free(&s);
	if (ret) {
		free(*image);
		*image = NULL;
	}
	return ret;
}

int snapshot_save_cmd(struct vm *vm, const char *dir, char *err, size_t errlen)
{
	bool was_stopped = vm->qmp_stopped;
	int ret;

	ret = vm_pause(vm);
	if (ret)
		return errf(err, errlen, ret, "snapshot-save: the VM is neither running nor paused");
	ret = snapshot_save(vm, dir, err, errlen);
	if (ret || was_stopped) {
		/* Failed: as it was. Already stopped: that pause still holds. */
		vm_resume(vm);
		if (ret)
			log_err("%s", err);
		return ret;
	}
	/* Our pause becomes the QMP stop that cont releases. */
	vm->qmp_stopped = true;
	vm_emit_event(vm, "STOP", NULL);
	return 0;
}

/* ---- restore ---- */

static int read_state_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	*buf = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (st.st_size > STATE_FILE_MAX) {
		close(fd);
		return -EFBIG;
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, *buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : 0;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return ret;
}

static const char *model_name(uint32_t m)
{
	return m == CPU_MODEL_BASELINE ? "baseline" : "host";
}

/* The snapshot against this VM's configuration. */
static int check_config(const struct snap_state *s, const struct vm_config *cfg,
			const struct guest_mem *gm, char *err, size_t errlen)
{
	if (s->nr_vcpus != cfg->cpus)
		return errf(err, errlen, -EINVAL, "snapshot: taken with %u vCPUs, this VM has %u "
			    "(--cpus must match)", s->nr_vcpus, cfg->cpus);
	if (s->memory_size != cfg->memory)
		return errf(err, errlen, -EINVAL, "snapshot: taken with %llu MiB of RAM, this VM has "
			    "%llu MiB (--memory must match)", (unsigned long long)(s->memory_size >> 20),
			    (unsigned long long)(cfg->memory >> 20));
	if (s->cpu_model != (uint32_t)cfg->cpu_model)
		return errf(err, errlen, -EINVAL, "snapshot: taken with --cpu-model %s, this VM has "
			    "--cpu-model %s", model_name(s->cpu_model), model_name(cfg->cpu_model));
	if (s->nr_regions != gm->nr)
		return errf(err, errlen, -EINVAL, "snapshot: %u memory regions, this VM has %u",
			    s->nr_regions, gm->nr);
	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->regions[i];

		if (s->regions[i].gpa != r->gpa || s->regions[i].size != r->size ||
		    s->regions[i].offset != r->fd_offset)
			return errf(err, errlen, -EINVAL, "snapshot: memory region %u is 0x%llx+0x%llx, "
				    "this VM's is 0x%llx+0x%llx", i,
				    (unsigned long long)s->regions[i].gpa,
				    (unsigned long long)s->regions[i].size,
				    (unsigned long long)r->gpa, (unsigned long long)r->size);
	}
	return 0;
}

/* DIR/memory, opened and checked to be as large as the state says. */
static int open_memory_file(const char *path, const struct snap_state *s, char *err,
			    size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return errf(err, errlen, -errno, "snapshot: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != s->memory_size) {
		close(fd);
		return errf(err, errlen, -EINVAL, "snapshot: %s: %lld bytes, the state says %llu "
			    "(truncated or another snapshot's)", path, (long long)st.st_size,
			    (unsigned long long)s->memory_size);
	}
	return fd;
}

/* Guest RAM from DIR/memory, MAP_PRIVATE: nothing is read until the guest
 * touches it, and its writes never reach the file. */
int snapshot_map_memory(const char *path, const struct snap_state *s, struct guest_mem *gm,
			char *err, size_t errlen)
{
	void *map;
	int fd = open_memory_file(path, s, err, errlen), ret;

	if (fd < 0)
		return fd;
	map = mmap(NULL, s->memory_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	ret = map == MAP_FAILED ? -errno : 0;
	close(fd);
	if (ret)
		return errf(err, errlen, ret, "snapshot: cannot map %s: %s", path, strerror(-ret));
	madvise(map, s->memory_size, MADV_DONTDUMP);
	madvise(map, s->memory_size, MADV_DONTFORK);
	memset(gm, 0, sizeof(*gm));
	for (unsigned i = 0; i < s->nr_regions && !ret; i++) {
		ret = gm_add_region(gm, s->regions[i].gpa, s->regions[i].size,
				    (uint8_t *)map + s->regions[i].offset);
		if (!ret)
			gm->regions[i].fd_offset = s->regions[i].offset;
	}
	if (ret) {
		munmap(map, s->memory_size);
		memset(gm, 0, sizeof(*gm));
		gm->memfd = -1;
		return errf(err, errlen, ret, "snapshot: bad memory layout");
	}
	/* gm_destroy unmaps it; with memfd -1 a reset or a balloon discard puts
	 * fresh anonymous pages over it (guest_mem.c). */
	gm->map = map;
	gm->map_size = s->memory_size;
	return 0;
}

/* A vhost-user backend maps guest RAM from the memfd Ember passes it, so a
 * VM with one cannot run on a private file mapping: its RAM is a fresh
 * memfd with the memory file read in (holes skipped, they are zeros). */
static bool needs_shared_ram(const struct vm_config *cfg)
{
	for (unsigned i = 0; i < cfg->nr_devices; i++)
		if (cfg->devices[i].type && !strncmp(cfg->devices[i].type, "vhost-user", 10))
			return true;
	return false;
}

static int copy_memory(const char *path, const struct snap_state *s, uint64_t ram_size,
		       struct guest_mem *gm, char *err, size_t errlen)
{
	int fd = open_memory_file(path, s, err, errlen), ret;

	if (fd < 0)
		return fd;
	ret = gm_init(gm, ram_size, false);
	if (ret) {
		close(fd);
		return errf(err, errlen, ret, "cannot allocate guest RAM: %s", strerror(-ret));
	}
	/* check_config() matched the layouts region by region. */
	for (unsigned i = 0; i < s->nr_regions && i < gm->nr && !ret; i++) {
		off_t pos = (off_t)s->regions[i].offset, end = pos + (off_t)s->regions[i].size;

		while (pos < end && !ret) {
			off_t data = lseek(fd, pos, SEEK_DATA), hole;
			ssize_t n;

			if (data < 0 || data >= end)
				break;	/* the rest is a hole */
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0 || hole > end)
				hole = end;
			n = pread(fd, gm->regions[i].hva + (data - (off_t)s->regions[i].offset),
				  (size_t)(hole - data), data);
			if (n <= 0)
				ret = errf(err, errlen, n < 0 ? -errno : -EIO, "snapshot: reading %s: %s",
					   path, n < 0 ? strerror(errno) : "short file");
			pos = data + (n > 0 ? n : 0);
		}
	}
	close(fd);
	if (ret)
		gm_destroy(gm);
	return ret;
}

int snapshot_restore_open(struct snapshot_restore **out, const struct vm_config *cfg,
			  struct guest_mem *gm)
{
	struct snapshot_restore *r = calloc(1, sizeof(*r));
	char err[512] = "", *path = NULL;
	struct guest_mem layout;
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->dir = strdup(cfg->restore_dir);
	r->paused = cfg->restore_paused;
	path = r->dir ? path_join(r->dir, SNAPSHOT_STATE_FILE) : NULL;
	if (!path) {
		ret = -ENOMEM;
		goto out;
	}
	if (cfg->hugepages) {
		ret = errf(err, sizeof(err), -EINVAL, "--restore maps the memory file lazily and "
			   "cannot use --hugepages");
		goto out;
	}
	ret = read_state_file(path, &buf, &len);
	if (ret) {
		errf(err, sizeof(err), ret, "snapshot: %s: %s", path,
		     ret == -EFBIG ? "too large for a state file" : strerror(-ret));
		goto out;
	}
	ret = snap_state_parse(buf, len, &r->state, err, sizeof(err));
	if (ret)
		goto out;
	/* The layout this VM would have, from the one place that decides it. */
	ret = gm_init(&layout, cfg->memory, false);
	if (ret) {
		errf(err, sizeof(err), ret, "cannot lay out %llu MiB of RAM: %s",
		     (unsigned long long)(cfg->memory >> 20), strerror(-ret));
		goto out;
	}
	ret = check_config(&r->state, cfg, &layout, err, sizeof(err));
	gm_destroy(&layout);
	if (!ret)
		ret = snapshot_disks_check(r->dir, cfg, err, sizeof(err));
	if (ret)
		goto out;
	free(path);
	path = path_join(r->dir, SNAPSHOT_MEMORY_FILE);
	if (!path)
		ret = -ENOMEM;
	else if (needs_shared_ram(cfg))
		ret = copy_memory(path, &r->state, cfg->memory, gm, err, sizeof(err));
	else
		ret = snapshot_map_memory(path, &r->state, gm, err, sizeof(err));
	if (ret)
		goto out;
	log_debug("snapshot: %s written by Ember %s, %u vCPUs, %llu MiB", r->dir,
		  r->state.ember_version, r->state.nr_vcpus,
		  (unsigned long long)(r->state.memory_size >> 20));
	*out = r;
	r = NULL;
out:
	if (ret)
		log_err("%s", err[0] ? err : strerror(-ret));
	free(buf);
	free(path);
	snapshot_restore_free(r);
	return ret;
}

int snapshot_restore_from_image(struct vm *vm, const uint8_t *image, size_t len,
				const char *disks, size_t disks_len, bool paused, char *err,
				size_t errlen)
{
	struct snapshot_restore *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return errf(err, errlen, -ENOMEM, "out of memory");
	r->paused = paused;
	r->dir = strdup("the migration stream");
	ret = r->dir ? snap_state_parse(image, len, &r->state, err, errlen) :
		       errf(err, errlen, -ENOMEM, "out of memory");
	if (!ret)
		ret = check_config(&r->state, vm->cfg, &vm->mem, err, errlen);
	if (!ret)
		ret = snapshot_disks_check_json(disks, disks_len, vm->cfg, err, errlen);
	if (ret) {
		snapshot_restore_free(r);
		return ret;
	}
	vm->restore = r;
	return 0;
}

/* Every MSR in the snapshot must be one this host's KVM saves. */
static int check_msrs(struct vm *vm, const struct snap_state *s, char *err, size_t errlen)
{
	uint32_t *list = NULL;
	int n = kvm_get_msr_index_list(vm->kvm, &list), ret = 0;

	if (n < 0)
		return errf(err, errlen, n, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-n));
	for (unsigned c = 0; c < s->nr_vcpus && !ret; c++) {
		for (unsigned i = 0; i < s->vcpus[c].nr_msrs && !ret; i++) {
			bool found = false;

			for (int j = 0; j < n && !found; j++)
				found = list[j] == s->vcpus[c].msrs[i].index;
			if (!found)
				ret = errf(err, errlen, -EINVAL, "snapshot: vcpu%u: MSR 0x%x is not one "
					   "this host's KVM saves (another host or kernel)", c,
					   s->vcpus[c].msrs[i].index);
		}
	}
	free(list);
	return ret;
}

static int restore_machine(struct vm *vm, struct snapshot_restore *r, char *err, size_t errlen)
{
	struct snap_state *s = &r->state;
	struct vcpu_job job = { .state = s, .kvm = vm->kvm };
	struct kvm_clock_data clock = { .clock = s->clock.clock };
	json_error_t jerr;
	json_t *devices;
	int ret;

	ret = check_msrs(vm, s, err, errlen);
	if (ret)
		return ret;
	/* vCPUs first: whatever the irqchip or a device delivers while they
	 * load (an IOAPIC line still pending, a UART with data ready) lands in
	 * the restored LAPICs instead of being overwritten by them. */
	job.xsave_size = kvm_xsave_size(vm->kvm);
	job.has_xcrs = kvm_check_extension(vm->kvm, KVM_CAP_XCRS) > 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_call(vm->vcpus[i], restore_vcpu, &job);
		if (ret)
			return errf(err, errlen, ret, "%s", job.err[0] ? job.err : strerror(-ret));
	}
	if ((ret = kvm_set_irqchip(vm->kvm, &s->pic_master)) ||
	    (ret = kvm_set_irqchip(vm->kvm, &s->pic_slave)) ||
	    (ret = kvm_set_irqchip(vm->kvm, &s->ioapic)))
		return errf(err, errlen, ret, "snapshot: KVM refused the saved irqchip: %s",
			    strerror(-ret));
	if ((ret = kvm_set_pit2(vm->kvm, &s->pit)))
		return errf(err, errlen, ret, "snapshot: KVM refused the saved PIT: %s",
			    strerror(-ret));
	devices = json_loads(s->devices_json, JSON_REJECT_DUPLICATES, &jerr);
	if (!devices)
		return errf(err, errlen, -EINVAL, "snapshot: devices: %s", jerr.text);
	{
		char why[384] = "";

		ret = vm_devices_load(vm, devices, why, sizeof(why));
		json_decref(devices);
		if (ret)
			return errf(err, errlen, ret, "snapshot: device %s", why);
	}
	/* Guest time resumes where it stopped: no jump for the time away. */
	if ((ret = kvm_set_clock(vm->kvm, &clock)))
		return errf(err, errlen, ret, "snapshot: KVM_SET_CLOCK: %s", strerror(-ret));
	return 0;
}

int snapshot_restore_start(struct vm *vm)
{
	struct snapshot_restore *r = vm->restore;
	int64_t t0 = monotonic_ms();
	char err[512] = "";
	int ret;

	/* A created VM paused before its vCPUs start: they park at once, and
	 * devices are quiesced for the load. */
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_STATE_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	ret = vm_pause(vm);
	if (ret) {
		log_err("snapshot: cannot pause the new VM: %s", strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_start(vm->vcpus[i]);
		if (ret) {
			log_err("cannot start vcpu%u: %s", i, strerror(-ret));
			return ret;
		}
	}
	ret = restore_machine(vm, r, err, sizeof(err));
	if (ret) {
		log_err("%s", err[0] ? err : strerror(-ret));
		return ret;
	}
	log_info("restored the snapshot in %s (%lld ms)%s", r->dir,
		 (long long)(monotonic_ms() - t0), r->paused ? "; paused until cont" : "");
	vm->restore = NULL;
	if (r->paused)
		vm->qmp_stopped = true;	/* held like a QMP stop: cont runs it */
	else
		ret = vm_resume(vm);
	snapshot_restore_free(r);
	return ret;
}

void snapshot_restore_free(struct snapshot_restore *r)
{
	if (!r)
		return;
	snap_state_free(&r->state);
	free(r->dir);
	free(r);
}
