/* The machine: guest memory, buses, irqchip, vCPUs and devices, plus the
 * run state shared by vCPU threads and the main event loop. */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/boot/boot.h"
#include "base/bus.h"
#include "vmm/config.h"
#include "base/guest_mem.h"
#include "devices/device.h"
#include "irqchip/irqchip.h"

struct kvm_vm;
struct vcpu;
struct evloop;
struct qmp_server;
struct snapshot_restore;
struct migration;
struct json_t;

enum vm_state {
	VM_STATE_CREATED,
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_STOPPING,	/* vCPUs are leaving their loops */
	VM_STATE_STOPPED,
};

/* Why the VM stopped or wants to change state; recorded by whoever asks. */
enum vm_request {
	VM_REQ_NONE = 0,
	VM_REQ_RESET,		/* i8042 0xFE, ACPI reset, triple fault (restart) */
	VM_REQ_POWEROFF,	/* ACPI S5: exit 0 */
	VM_REQ_EXIT,		/* isa-debug-exit: exit with vm->exit_status */
	VM_REQ_ERROR,		/* emulation failure or fatal host error */
	VM_REQ_QUIT,		/* host asked to quit */
	VM_REQ_PANIC,		/* triple fault or guest crash report */
};

struct vm_device_inst {
	struct device_desc *desc;
	void *state;
};

struct vm {
	const struct vm_config *cfg;
	struct kvm_vm *kvm;
	struct guest_mem mem;
	unsigned mem_slot_base;		/* KVM memslot of mem.regions[0]; region i is +i */
	struct bus pio_bus;
	struct bus mmio_bus;
	struct irqchip irqchip;

	struct vcpu **vcpus;
	unsigned nr_vcpus;

	struct device_ctx dev_ctx;	/* what every device is given */
	struct vm_device_inst *devices;
	unsigned nr_devices;

	/* The kernel and initrd images, kept mapped so a reset can reload. */
	const uint8_t *kernel_img;
	size_t kernel_size;
	bool kernel_mapped;	/* false: embedded demo guest */
	const uint8_t *initrd_img;
	size_t initrd_size;
	struct boot_info boot;

	/* KVM's coalesced MMIO/PIO ring, one per VM. */
	struct kvm_coalesced_mmio_ring *coalesced_ring;
	pthread_mutex_t coalesced_lock;

	/* Run state. lock protects everything below. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	enum vm_request request;
	const char *request_cause;
	int exit_status;
	unsigned vcpus_paused;	/* vCPUs parked in the pause wait */
	/* Pauses held (vm_pause calls not yet matched by vm_resume); the VM
	 * runs again when the last is released. pause_busy: a pause, resume,
	 * reset or device save/load is under way; the others wait for it. */
	unsigned pause_count;
	bool pause_busy;
	unsigned vcpus_exited;
	int request_efd;	/* eventfd: wakes the main loop on a request */

	uint64_t reset_gen;	/* bumped on every VM reset */
	struct evloop *loop;

	/* Control plane (vmm/vm_control.c). */
	struct qmp_server *qmp;
	int shutdown_timer_fd;	/* armed by SIGTERM: quit when it fires */
	int watchdog_fd;	/* systemd watchdog keep-alive timer */
	bool guest_panicked;
	bool error_stopped;
	bool qmp_stopped;	/* QMP stop holds one pause until cont */
	/* --restore: the snapshot vm_run restores instead of booting. */
	struct snapshot_restore *restore;
	/* QMP migrate's state (vmm/migration/), made on first use. */
	struct migration *migration;
};

int vm_create(struct vm *vm, const struct vm_config *cfg)
	__attribute__((warn_unused_result));
/* Run until the guest or host ends the VM; returns the process exit status. */
int vm_run(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Called from any thread (vCPU or device). The main loop acts on them. */
void vm_request_reset(struct vm *vm, const char *cause);
void vm_request_poweroff(struct vm *vm, const char *cause);
void vm_request_exit(struct vm *vm, int status, const char *cause);
void vm_request_error(struct vm *vm, const char *cause);
void vm_request_quit(struct vm *vm, const char *cause);
void vm_request_panic(struct vm *vm, const char *cause);

/* Pause: park every vCPU (blocking until they are), drain the coalesced
 * ring, then pause every device (their I/O finishes; nothing writes guest
 * memory or disk images until vm_resume). Resume: devices, then vCPUs.
 * Pauses nest and may come from several threads (QMP stop on the main
 * loop, a snapshot elsewhere): the first does the work and the others
 * return once it is done; the VM runs again at the last vm_resume.
 * Devices see one pause and one resume. -EBUSY when the VM is neither
 * running nor paused (created, stopping); vm_resume without a pause held
 * returns 0 and does nothing. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
/* The device half of vm_reset(), with the VM paused: reset every device,
 * then zero guest RAM. */
void vm_reset_devices_and_memory(struct vm *vm);

/* Full machine reset, from the main loop (QMP system_reset, reboots). */
int vm_reset(struct vm *vm);

/* Control plane: QMP server, systemd notifications, graceful SIGTERM. */
int vm_control_start(struct vm *vm) __attribute__((warn_unused_result));
void vm_control_stop(struct vm *vm);
/* Emit a QMP event (data is stolen; may be NULL). Thread-safe. */
void vm_emit_event(struct vm *vm, const char *name, struct json_t *data);
/* SIGTERM: press the power button, quit after cfg->shutdown_timeout_s. */
void vm_graceful_shutdown(struct vm *vm, const char *cause);
/* Ends the process (status 4) if it still runs `seconds` + 10 s from now:
 * a host-requested shutdown always finishes. Armed once. */
void vm_arm_exit_deadline(unsigned seconds);

/* The device context's ops on a struct vm (machine = the vm); tests that
 * build a partial vm use them too. */
extern const struct device_machine_ops vm_device_machine_ops;

/* Find a realized device's state by name (NULL if absent or disabled). */
void *vm_device_state(struct vm *vm, const char *name);

/* The host pressed the power button: every realized device's power_button
 * hook runs (the ACPI PM device raises its SCI). Returns how many did. */
unsigned vm_devices_power_button(struct vm *vm);

/* Device state for snapshots; the VM must be paused (-EBUSY / NULL
 * otherwise). Save: an object keyed by device name holding each realized
 * device's desc->save (devices without the hook are left out); NULL, with
 * the reason logged, on failure. Load: the whole object is checked first
 * (an object, no unknown or absent devices, no device without a load
 * hook, nothing missing for a device that saves), then every device
 * loads its part; -EINVAL with "device: reason" in err on failure. */
struct json_t *vm_devices_save(struct vm *vm);
int vm_devices_load(struct vm *vm, struct json_t *saved, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The first realized device (state may be NULL: disabled by config) whose
 * desc->qmp offers `name`, and that device's state; NULL if none. */
const struct device_qmp_command *vm_device_qmp_find(struct vm *vm, const char *name,
						    void **state);

#endif
