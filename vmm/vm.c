#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "accel/kvm.h"
#include "devices/device.h"
#include "vmm/acpi/acpi.h"
#include "base/evloop.h"
#include "base/log.h"
#include "vmm/notify.h"
#include "vmm/migration/migration.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vcpu.h"

/* Exit statuses (documented in the README). */
#define EXIT_STATUS_OK 0
#define EXIT_STATUS_PANIC 2
#define EXIT_STATUS_ERROR 4

/* KVM's private pages for VMX real mode, placed at the top of the hole
 * like other VMMs do. */
#define KVM_IDENTITY_MAP_ADDR 0xFFFBC000ULL
#define KVM_TSS_ADDR 0xFFFBD000ULL

static struct vm_device_inst *vm_find_device(struct vm *vm, const char *name)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (strcmp(vm->devices[i].desc->name, name) == 0)
			return &vm->devices[i];
	return NULL;
}

void *vm_device_state(struct vm *vm, const char *name)
{
	struct vm_device_inst *d = vm_find_device(vm, name);

	return d ? d->state : NULL;
}

static int map_file(const char *what, const char *path, const uint8_t **data, size_t *size)
{
	struct stat st;
	void *p;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_err("%s '%s': %s", what, path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		log_err("%s '%s': not a non-empty regular file", what, path);
		close(fd);
		return -EINVAL;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		log_err("%s '%s': mmap: %s", what, path, strerror(errno));
		return -errno;
	}
	*data = p;
	*size = (size_t)st.st_size;
	return 0;
}

/* Write ACPI, the boot GDT and the kernel into guest memory. Used at
 * creation and after every reset (memory is zeroed then). */
static int vm_load_guest(struct vm *vm)
{
	struct boot_params_in in = {
		.kernel = vm->kernel_img,
		.kernel_size = vm->kernel_size,
		.initrd = vm->initrd_img,
		.initrd_size = vm->initrd_size,
		.cmdline = vm->cfg->cmdline,
	};
	struct acpi_build_ctx actx = { .nr_cpus = vm->nr_vcpus, .vm = vm, .pci = vm->dev_ctx.pci };
	char err[256] = "";
	int ret;

	ret = acpi_build(&vm->mem, &actx, &in.rsdp_addr);
	if (ret) {
		log_err("cannot build ACPI tables: %s", strerror(-ret));
		return ret;
	}
	ret = boot_write_gdt(&vm->mem);
	if (ret) {
		log_err("cannot write the boot GDT: %s", strerror(-ret));
		return ret;
	}
	if (bzimage_is_bzimage(vm->kernel_img, vm->kernel_size)) {
		ret = boot_write_identity_tables(&vm->mem);
		if (!ret)
			ret = bzimage_load(&vm->mem, &in, &vm->boot, err, sizeof(err));
	} else if (pvh_is_elf(vm->kernel_img, vm->kernel_size)) {
		ret = pvh_load(&vm->mem, &in, &vm->boot, err, sizeof(err));
	} else {
		snprintf(err, sizeof(err), "kernel: neither a bzImage nor an ELF image");
		ret = -EINVAL;
	}
	if (ret) {
		log_err("%s", err[0] ? err : strerror(-ret));
		return ret;
	}
	log_debug("boot: %s entry 0x%llx, image [0x%llx, 0x%llx), initrd at 0x%llx size 0x%llx, "
		  "RSDP 0x%llx", vm->boot.entry_64bit ? "64-bit Linux" : "PVH",
		  (unsigned long long)vm->boot.entry, (unsigned long long)vm->boot.kernel_start,
		  (unsigned long long)vm->boot.kernel_end, (unsigned long long)vm->boot.initrd_addr,
		  (unsigned long long)vm->boot.initrd_size, (unsigned long long)in.rsdp_addr);
	return 0;
}

/* ---- The device context: what devices may ask of the machine ---- */

static int ctx_ioeventfd(void *machine, uint64_t addr, unsigned len, bool pio, int fd,
			 bool assign)
{
	struct vm *vm = machine;

	return kvm_ioeventfd(vm->kvm, addr, len, fd, pio, false, 0, !assign);
}

static int ctx_irqfd(void *machine, unsigned gsi, int fd, int resample_fd, bool assign)
{
	struct vm *vm = machine;

	return kvm_irqfd(vm->kvm, fd, gsi, resample_fd, !assign);
}

static int ctx_coalesced_zone(void *machine, uint64_t addr, uint64_t len, bool pio, bool add)
{
	struct vm *vm = machine;

	if (!add || len > UINT32_MAX)
		return -EINVAL;	/* zones are never removed at run time */
	return pio ? kvm_register_coalesced_pio(vm->kvm, addr, (uint32_t)len) :
		     kvm_register_coalesced_mmio(vm->kvm, addr, (uint32_t)len);
}

static void ctx_request(void *machine, enum device_machine_request req, int status,
			const char *cause)
{
	struct vm *vm = machine;

	switch (req) {
	case DEVICE_REQ_RESET:
		vm_request_reset(vm, cause);
		break;
	case DEVICE_REQ_POWEROFF:
		vm_request_poweroff(vm, cause);
		break;
	case DEVICE_REQ_EXIT:
		vm_request_exit(vm, status, cause);
		break;
	case DEVICE_REQ_PANIC:
		vm_request_panic(vm, cause);
		break;
	case DEVICE_REQ_QUIT:
		vm_request_quit(vm, cause);
		break;
	case DEVICE_REQ_ERROR:
		vm_request_error(vm, cause);
		break;
	}
}

static void ctx_emit_event(void *machine, const char *name, struct json_t *data)
{
	vm_emit_event(machine, name, data);
}

const struct device_machine_ops vm_device_machine_ops = {
	.ioeventfd = ctx_ioeventfd,
	.irqfd = ctx_irqfd,
	.coalesced_zone = ctx_coalesced_zone,
	.request = ctx_request,
	.emit_event = ctx_emit_event,
};

static int vm_realize_devices(struct vm *vm)
{
	unsigned n = 0;
	int ret;

	vm->dev_ctx = (struct device_ctx){
		.cfg = vm->cfg,
		.mem = &vm->mem,
		.pio_bus = &vm->pio_bus,
		.mmio_bus = &vm->mmio_bus,
		.loop = vm->loop,
		.irqchip = &vm->irqchip,
		.ops = &vm_device_machine_ops,
		.machine = vm,
	};
	for (struct device_desc *d = device_list(); d; d = d->next)
		n++;
	vm->devices = calloc(n ? n : 1, sizeof(*vm->devices));
	if (!vm->devices)
		return -ENOMEM;
	for (struct device_desc *d = device_list(); d; d = d->next) {
		unsigned errors = log_error_count();
		void *state = NULL;

		ret = d->realize(d, &vm->dev_ctx, &state);
		if (ret) {
			/* One line per failure: only if the device said nothing. */
			if (log_error_count() == errors)
				log_err("device %s: %s", d->name, strerror(-ret));
			return ret;
		}
		vm->devices[vm->nr_devices++] = (struct vm_device_inst){ d, state };
	}
	return 0;
}

static void vm_destroy_devices(struct vm *vm)
{
	/* Reverse order: later levels may depend on earlier ones. */
	for (unsigned i = vm->nr_devices; i-- > 0;) {
		struct vm_device_inst *d = &vm->devices[i];

		if (d->state && d->desc->destroy)
			d->desc->destroy(d->state);
	}
	free(vm->devices);
	vm->devices = NULL;
	vm->nr_devices = 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	char err[256];
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->request_efd = -1;
	vm->shutdown_timer_fd = -1;
	vm->watchdog_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->coalesced_lock, NULL);
	vm->state = VM_STATE_CREATED;

	vm->kvm = calloc(1, sizeof(*vm->kvm));
	if (!vm->kvm)
		return -ENOMEM;
	vm->kvm->sys_fd = vm->kvm->vm_fd = -1;

	if (cfg->kernel) {
		ret = map_file("kernel", cfg->kernel, &vm->kernel_img, &vm->kernel_size);
		if (ret)
			goto err;
		vm->kernel_mapped = true;
	} else {
		vm->kernel_img = cfg->kernel_image;
		vm->kernel_size = cfg->kernel_image_size;
	}
	if (cfg->initrd) {
		ret = map_file("initrd", cfg->initrd, &vm->initrd_img, &vm->initrd_size);
		if (ret)
			goto err;
	}

	ret = kvm_open(vm->kvm, err, sizeof(err));
	if (ret) {
		log_err("%s", err);
		goto err;
	}
	/* xAPIC ids: 254 vCPUs at most (the IOAPIC takes the next id). */
	if (cfg->cpus == 0 || cfg->cpus > (unsigned)vm->kvm->max_vcpus || cfg->cpus > ACPI_MAX_CPUS) {
		log_err("--cpus %u: this host's KVM allows 1 to %d vCPUs", cfg->cpus,
			vm->kvm->max_vcpus < ACPI_MAX_CPUS ? vm->kvm->max_vcpus : ACPI_MAX_CPUS);
		ret = -EINVAL;
		goto err;
	}
	ret = kvm_create_vm(vm->kvm);
	if (ret) {
		log_err("KVM_CREATE_VM failed: %s", strerror(-ret));
		goto err;
	}
	/* Only VMX uses these; other accelerators may refuse them harmlessly. */
	if (kvm_set_identity_map_addr(vm->kvm, KVM_IDENTITY_MAP_ADDR))
		log_debug("KVM_SET_IDENTITY_MAP_ADDR not accepted");
	if (kvm_set_tss_addr(vm->kvm, KVM_TSS_ADDR))
		log_debug("KVM_SET_TSS_ADDR not accepted");

	/* --restore: guest RAM is the snapshot's memory file (it logs why not). */
	ret = cfg->restore_dir ? snapshot_restore_open(&vm->restore, cfg, &vm->mem) :
				 gm_init(&vm->mem, cfg->memory, cfg->hugepages);
	if (ret) {
		if (!cfg->restore_dir)
			log_err("cannot allocate %llu MiB of guest memory%s: %s",
				(unsigned long long)(cfg->memory >> 20),
				cfg->hugepages ? " in hugepages" : "", strerror(-ret));
		goto err;
	}
	vm->mem_slot_base = vm->kvm->next_slot;
	for (unsigned i = 0; i < vm->mem.nr; i++) {
		const struct gm_region *r = &vm->mem.regions[i];

		ret = kvm_add_memslot(vm->kvm, r->gpa, r->size, r->hva);
		if (ret) {
			log_err("KVM_SET_USER_MEMORY_REGION failed: %s", strerror(-ret));
			goto err;
		}
	}

	if ((ret = bus_init(&vm->pio_bus, "pio")) || (ret = bus_init(&vm->mmio_bus, "mmio")))
		goto err;
	vm->loop = evloop_create();
	vm->request_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!vm->loop || vm->request_efd < 0) {
		ret = -ENOMEM;
		goto err;
	}

	ret = irqchip_create(&vm->irqchip, vm->kvm);
	if (ret)
		goto err;

	ret = vcpu_signal_init();
	if (ret)
		goto err;
	vm->nr_vcpus = cfg->cpus;
	vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_create(vm, i, &vm->vcpus[i]);
		if (ret)
			goto err;
	}
	vm->coalesced_ring = vm->vcpus[0]->kfd.ring;

	ret = vm_realize_devices(vm);
	if (ret)
		goto err;
	/* A restored VM's RAM already holds the guest; vm_run loads its state. */
	ret = vm->restore || cfg->incoming ? 0 : vm_load_guest(vm);
	if (ret)
		goto err;
	ret = vm->restore || cfg->incoming ? 0 : vcpu_setup_boot(vm->vcpus[0], &vm->boot);
	if (ret) {
		log_err("cannot set up the boot vCPU: %s", strerror(-ret));
		goto err;
	}
	ret = irqchip_save_reset_state(&vm->irqchip);
	if (ret) {
		log_err("cannot save irqchip state: %s", strerror(-ret));
		goto err;
	}
	return 0;

err:
	vm_destroy(vm);
	return ret;
}

static void vm_post_request(struct vm *vm, enum vm_request req, int status, const char *cause)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	/* The first request wins until the main loop has acted on it. */
	if (vm->request == VM_REQ_NONE) {
		/* vCPUs peek at it without the lock (vcpu.c). */
		__atomic_store_n(&vm->request, req, __ATOMIC_RELEASE);
		vm->request_cause = cause;
		vm->exit_status = status;
	}
	pthread_mutex_unlock(&vm->lock);
	if (write(vm->request_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("cannot wake the main loop: %s", strerror(errno));
}

void vm_request_reset(struct vm *vm, const char *cause)
{
	vm_post_request(vm, VM_REQ_RESET, EXIT_STATUS_OK, cause);
}

void vm_request_poweroff(struct vm *vm, const char *cause)
{
	vm_post_request(vm, VM_REQ_POWEROFF, EXIT_STATUS_OK, cause);
}

void vm_request_exit(struct vm *vm, int status, const char *cause)
{
	vm_post_request(vm, VM_REQ_EXIT, status, cause);
}

void vm_request_error(struct vm *vm, const char *cause)
{
	vm_post_request(vm, VM_REQ_ERROR, EXIT_STATUS_ERROR, cause);
}

void vm_request_quit(struct vm *vm, const char *cause)
{
	vm_post_request(vm, VM_REQ_QUIT, EXIT_STATUS_OK, cause);
}

void vm_request_panic(struct vm *vm, const char *cause)
{
	vm_post_request(vm, VM_REQ_PANIC, EXIT_STATUS_PANIC, cause);
}

static void vm_kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(vm->vcpus[i]);
}

static unsigned vm_running_vcpus(struct vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		n += vm->vcpus[i]->thread_started;
	return n - vm->vcpus_exited;
}

/* pause_busy serialises the transitions (and device save/load) across
 * threads; vm->cond is shared with the vCPUs' pause wait, so every waiter
 * loops on its own condition. */
static void vm_exclusive_begin(struct vm *vm)
{
	while (vm->pause_busy)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->pause_busy = true;
}

static void vm_exclusive_end(struct vm *vm)
{
	vm->pause_busy = false;
	pthread_cond_broadcast(&vm->cond);
}

static void vm_park_vcpus(struct vm *vm)
{
	vm_kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->vcpus_paused < vm_running_vcpus(vm)) {
		struct timespec ts;

		/* Re-kick periodically: a kick can land before KVM_RUN clears it. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&vm->lock);
			vm_kick_all(vm);
			pthread_mutex_lock(&vm->lock);
		}
	}
	pthread_mutex_unlock(&vm->lock);
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm_exclusive_begin(vm);
	if (vm->state != VM_STATE_RUNNING && vm->state != VM_STATE_PAUSED) {
		vm_exclusive_end(vm);
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	if (vm->pause_count++ > 0) {
		/* Already paused and quiesced by an earlier holder. */
		vm_exclusive_end(vm);
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	__atomic_store_n(&vm->state, VM_STATE_PAUSED, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);

	vm_park_vcpus(vm);
	/* Nothing the guest wrote may sit in the ring while paused. */
	vcpu_drain_coalesced(vm);
	/* Then nothing may write guest memory or disk images. */
	for (unsigned i = vm->nr_devices; i-- > 0;) {
		struct vm_device_inst *d = &vm->devices[i];

		if (d->state && d->desc->pause)
			d->desc->pause(d->state);
	}
	pthread_mutex_lock(&vm->lock);
	vm_exclusive_end(vm);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm_exclusive_begin(vm);
	if (vm->state != VM_STATE_PAUSED || vm->pause_count == 0 || --vm->pause_count > 0) {
		int ret = vm->state == VM_STATE_RUNNING || vm->state == VM_STATE_PAUSED ? 0 : -EBUSY;

		vm_exclusive_end(vm);
		pthread_mutex_unlock(&vm->lock);
		return ret;
	}
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct vm_device_inst *d = &vm->devices[i];

		if (d->state && d->desc->resume)
			d->desc->resume(d->state);
	}
	pthread_mutex_lock(&vm->lock);
	__atomic_store_n(&vm->state, VM_STATE_RUNNING, __ATOMIC_RELEASE);
	vm_exclusive_end(vm);	/* broadcasts: the vCPUs run */
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_reset_devices_and_memory(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct vm_device_inst *d = &vm->devices[i];

		if (d->state && d->desc->reset)
			d->desc->reset(d->state);
	}
	gm_zero_all(&vm->mem);
}

/* Full machine reset. Order matters: vCPUs stop and devices quiesce
 * (vm_pause), devices reset (dropping every chain they held), and only then
 * is RAM zeroed, so no late completion lands in the new guest's memory.
 * Then the irqchip, the guest images, and every vCPU resets its own
 * registers when it next runs (KVM wants vCPU ioctls from its thread).
 * A VM that was paused before stays paused: vm_resume only releases the
 * pause taken here. */
int vm_reset(struct vm *vm)
{
	int ret;

	ret = vm_pause(vm);
	if (ret)
		return ret;
	pthread_mutex_lock(&vm->lock);
	vm_exclusive_begin(vm);	/* no device save/load in between */
	pthread_mutex_unlock(&vm->lock);
	vm_reset_devices_and_memory(vm);
	ret = irqchip_restore_reset_state(&vm->irqchip);
	if (ret)
		log_err("reset: cannot restore irqchip state: %s", strerror(-ret));
	else
		ret = vm_load_guest(vm);
	pthread_mutex_lock(&vm->lock);
	if (!ret) {
		__atomic_add_fetch(&vm->reset_gen, 1, __ATOMIC_RELEASE);
		__atomic_store_n(&vm->request, VM_REQ_NONE, __ATOMIC_RELEASE);
		vm->request_cause = NULL;
	}
	vm_exclusive_end(vm);
	pthread_mutex_unlock(&vm->lock);
	if (ret)
		return ret;	/* the pause stays: the machine is in no state to run */
	return vm_resume(vm);
}

unsigned vm_devices_power_button(struct vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct vm_device_inst *d = &vm->devices[i];

		if (d->state && d->desc->power_button) {
			d->desc->power_button(d->state);
			n++;
		}
	}
	if (!n)
		log_warn("no device has a power button; the press is dropped");
	return n;
}

const struct device_qmp_command *vm_device_qmp_find(struct vm *vm, const char *name,
						    void **state)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct vm_device_inst *d = &vm->devices[i];

		for (const struct device_qmp_command *c = d->desc->qmp; c && c->name; c++) {
			if (strcmp(c->name, name) == 0) {
				*state = d->state;
				return c;
			}
		}
	}
	return NULL;
}

/* Held paused and exclusive (no pause, resume or reset transition) while
 * devices save or load. */
static int vm_devices_state_begin(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm_exclusive_begin(vm);
	if (vm->state != VM_STATE_PAUSED || vm->pause_count == 0) {
		vm_exclusive_end(vm);
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

static void vm_devices_state_end(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm_exclusive_end(vm);
	pthread_mutex_unlock(&vm->lock);
}

json_t *vm_devices_save(struct vm *vm)
{
	json_t *all;

	if (vm_devices_state_begin(vm)) {
		log_err("device state can only be saved while the VM is paused");
		return NULL;
	}
	all = json_object();
	for (unsigned i = 0; all && i < vm->nr_devices; i++) {
		struct vm_device_inst *d = &vm->devices[i];
		json_t *one;

		if (!d->state || !d->desc->save)
			continue;
		one = d->desc->save(d->state);
		if (!json_is_object(one) || json_object_set_new(all, d->desc->name, one)) {
			log_err("device %s: cannot save its state", d->desc->name);
			if (!json_is_object(one))
				json_decref(one);
			json_decref(all);
			all = NULL;
		}
	}
	vm_devices_state_end(vm);
	return all;
}

/* Everything load will need, checked before any device changes. */
static int vm_devices_check_saved(struct vm *vm, json_t *saved, char *err, size_t errlen)
{
	const char *name;
	json_t *val;

	if (!json_is_object(saved)) {
		snprintf(err, errlen, "saved device state is not a JSON object");
		return -EINVAL;
	}
	json_object_foreach(saved, name, val) {
		struct vm_device_inst *d = vm_find_device(vm, name);

		if (!d || !d->state) {
			snprintf(err, errlen, "%s: no such device in this VM", name);
			return -EINVAL;
		}
		if (!d->desc->load) {
			snprintf(err, errlen, "%s: the device cannot load state", name);
			return -EINVAL;
		}
		if (!json_is_object(val)) {
			snprintf(err, errlen, "%s: saved state is not a JSON object", name);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct vm_device_inst *d = &vm->devices[i];

		if (d->state && d->desc->save && !json_object_get(saved, d->desc->name)) {
			snprintf(err, errlen, "%s: no saved state for this device", d->desc->name);
			return -EINVAL;
		}
	}
	return 0;
}

int vm_devices_load(struct vm *vm, json_t *saved, char *err, size_t errlen)
{
	int ret;

	if (vm_devices_state_begin(vm)) {
		snprintf(err, errlen, "device state can only be loaded while the VM is paused");
		return -EBUSY;
	}
	ret = vm_devices_check_saved(vm, saved, err, errlen);
	for (unsigned i = 0; !ret && i < vm->nr_devices; i++) {
		struct vm_device_inst *d = &vm->devices[i];
		json_t *one = json_object_get(saved, d->desc->name);
		char why[256] = "";

		if (!one)
			continue;
		ret = d->desc->load(d->state, one, why, sizeof(why));
		if (ret)
			snprintf(err, errlen, "%s: %s", d->desc->name,
				 why[0] ? why : strerror(-ret));
	}
	vm_devices_state_end(vm);
	return ret;
}

static void vm_stop(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	__atomic_store_n(&vm->state, VM_STATE_STOPPING, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	vm_kick_all(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_join(vm->vcpus[i]);
	vcpu_drain_coalesced(vm);
	vm->state = VM_STATE_STOPPED;
	vm->vcpus_exited = 0;
}

struct vm_loop_ctx {
	struct vm *vm;
	bool done;
	int status;
};

static void vm_on_request(void *opaque, uint32_t events)
{
	struct vm_loop_ctx *ctx = opaque;
	struct vm *vm = ctx->vm;
	enum vm_request req;
	const char *cause;
	uint64_t v;
	int status;

	(void)events;
	if (read(vm->request_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&vm->lock);
	req = vm->request;
	cause = vm->request_cause ? vm->request_cause : "unknown";
	status = vm->exit_status;
	pthread_mutex_unlock(&vm->lock);

	switch (req) {
	case VM_REQ_NONE:
		return;
	case VM_REQ_PANIC:
	case VM_REQ_RESET:
		if (req == VM_REQ_PANIC)
			vm_emit_event(vm, "GUEST_PANICKED",
				      json_pack("{s:s}", "action",
						vm->cfg->on_reboot == REBOOT_RESTART ? "run"
										  : "poweroff"));
		if (vm->cfg->on_reboot == REBOOT_RESTART) {
			log_info("guest %s (%s): resetting the VM",
				 req == VM_REQ_PANIC ? "crashed" : "rebooted", cause);
			vm_emit_event(vm, "RESET",
				      json_pack("{s:b, s:s}", "guest", 1, "reason", "guest-reset"));
			if (vm_reset(vm) == 0)
				return;
			ctx->status = EXIT_STATUS_ERROR;
			break;
		}
		log_info("guest %s (%s): exiting per --on-reboot exit",
			 req == VM_REQ_PANIC ? "crashed" : "rebooted", cause);
		if (req == VM_REQ_PANIC)
			vm->guest_panicked = true;
		else
			vm_emit_event(vm, "SHUTDOWN", json_pack("{s:b, s:s}", "guest", 1,
								"reason", "guest-reset"));
		ctx->status = req == VM_REQ_PANIC ? EXIT_STATUS_PANIC : EXIT_STATUS_OK;
		break;
	case VM_REQ_POWEROFF:
		log_info("guest powered off (%s)", cause);
		vm_emit_event(vm, "SHUTDOWN",
			      json_pack("{s:b, s:s}", "guest", 1, "reason", "guest-shutdown"));
		ctx->status = EXIT_STATUS_OK;
		break;
	case VM_REQ_EXIT:
		log_debug("guest exit with status %d (%s)", status, cause);
		vm_emit_event(vm, "SHUTDOWN",
			      json_pack("{s:b, s:s}", "guest", 1, "reason", "guest-shutdown"));
		ctx->status = status;
		break;
	case VM_REQ_ERROR:
		log_err("stopping the VM: %s", cause);
		vm->error_stopped = true;
		ctx->status = EXIT_STATUS_ERROR;
		break;
	case VM_REQ_QUIT:
		log_info("quitting (%s)", cause);
		ctx->status = EXIT_STATUS_OK;
		break;
	}
	ctx->done = true;
}

struct vm_signal_ctx {
	struct vm *vm;
	int fd;
};

static void vm_on_signal(void *opaque, uint32_t events)
{
	struct vm_signal_ctx *sc = opaque;
	struct signalfd_siginfo si;

	(void)events;
	while (read(sc->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM) {
			/* A service stop: let the guest shut down cleanly. */
			vm_graceful_shutdown(sc->vm, "SIGTERM");
			continue;
		}
		vm_emit_event(sc->vm, "SHUTDOWN",
			      json_pack("{s:b, s:s}", "guest", 0, "reason", "host-signal"));
		vm_arm_exit_deadline(0);
		vm_request_quit(sc->vm, si.ssi_signo == SIGINT ? "SIGINT" : "SIGHUP");
	}
}

int vm_run(struct vm *vm)
{
	struct vm_loop_ctx ctx = { .vm = vm, .status = EXIT_STATUS_ERROR };
	struct vm_signal_ctx sc = { .vm = vm, .fd = -1 };
	sigset_t set, old;
	int ret;

	/* Termination signals arrive through a signalfd on the main loop; the
	 * mask is inherited by the vCPU threads created below. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sc.fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sc.fd < 0 || evloop_add(vm->loop, sc.fd, EPOLLIN, vm_on_signal, &sc) ||
	    evloop_add(vm->loop, vm->request_efd, EPOLLIN, vm_on_request, &ctx)) {
		log_err("cannot set up the main loop");
		goto out;
	}

	ret = vm_control_start(vm);
	if (ret) {
		ctx.status = 1;	/* a start-up failure, like a bad flag */
		goto out;
	}

	if (vm->restore) {
		/* The vCPUs start parked and load the snapshot, then run. */
		if (snapshot_restore_start(vm)) {
			ctx.status = 1;	/* a start-up failure, like a bad flag */
			ctx.done = true;
		}
	} else if (vm->cfg->incoming) {
		/* The same, from a live migration's stream. */
		if (migration_incoming(vm)) {
			ctx.status = 1;
			ctx.done = true;
		}
	} else {
		pthread_mutex_lock(&vm->lock);
		vm->state = VM_STATE_RUNNING;
		pthread_mutex_unlock(&vm->lock);
		for (unsigned i = 0; i < vm->nr_vcpus; i++) {
			ret = vcpu_start(vm->vcpus[i]);
			if (ret) {
				log_err("cannot start vcpu%u: %s", i, strerror(-ret));
				vm_request_error(vm, "vCPU thread creation failed");
				break;
			}
		}
	}
	notify_ready();
	while (!ctx.done) {
		ret = evloop_run_once(vm->loop, -1);
		if (ret < 0) {
			log_err("main loop: %s", strerror(-ret));
			break;
		}
	}
	notify_stopping();
	migration_destroy(vm);	/* its thread is done with the VM before we stop it */
	vm_stop(vm);
out:
	vm_control_stop(vm);
	if (sc.fd >= 0) {
		evloop_del(vm->loop, sc.fd);
		close(sc.fd);
	}
	evloop_del(vm->loop, vm->request_efd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ctx.status;
}

void vm_destroy(struct vm *vm)
{
	if (vm->vcpus && vm->state == VM_STATE_RUNNING)
		vm_stop(vm);
	vm_destroy_devices(vm);
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			vcpu_destroy(vm->vcpus[i]);
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	irqchip_destroy(&vm->irqchip);
	if (vm->loop)
		evloop_destroy(vm->loop);
	vm->loop = NULL;
	if (vm->request_efd >= 0)
		close(vm->request_efd);
	vm->request_efd = -1;
	if (vm->pio_bus.name)
		bus_destroy(&vm->pio_bus);
	if (vm->mmio_bus.name)
		bus_destroy(&vm->mmio_bus);
	gm_destroy(&vm->mem);
	if (vm->kvm) {
		if (vm->kvm->sys_fd >= 0 || vm->kvm->vm_fd >= 0)
			kvm_close(vm->kvm);
		free(vm->kvm);
		vm->kvm = NULL;
	}
	if (vm->kernel_mapped && vm->kernel_img)
		munmap((void *)vm->kernel_img, vm->kernel_size);
	if (vm->initrd_img)
		munmap((void *)vm->initrd_img, vm->initrd_size);
	vm->kernel_img = vm->initrd_img = NULL;
	snapshot_restore_free(vm->restore);
	vm->restore = NULL;
}
