/* Snapshots: QMP snapshot-save writes a directory, `ember run --restore DIR`
 * starts a new process from it.
 *
 *   DIR/state       the machine state (vmm/snapshot/state.h): vCPUs,
 *                   irqchip, PIT, kvmclock, devices, memory layout
 *   DIR/memory      guest RAM in memfd order, sparse: pages that were never
 *                   touched or are all zeros are holes
 *   DIR/disks.json  the disks and their identity (path, size, device and
 *                   inode), checked on restore
 *
 * Files are written under temporary names and renamed into place, the state
 * file last, so a directory holds one complete snapshot or an older one.
 * Restore maps DIR/memory MAP_PRIVATE: pages load lazily as the guest
 * touches them, and the file never changes. The VM must be configured as
 * it was (CPUs, memory, CPU model, devices, the same disk files). */
#ifndef EMBER_SNAPSHOT_H
#define EMBER_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vm_config;
struct guest_mem;
struct snapshot_restore;

#define SNAPSHOT_STATE_FILE	"state"
#define SNAPSHOT_MEMORY_FILE	"memory"
#define SNAPSHOT_DISKS_FILE	"disks.json"

/* Write a snapshot of the paused VM into dir (created if missing). Returns
 * 0, or -errno with one line in err; a failed save leaves no partial files
 * under the final names. */
int snapshot_save(struct vm *vm, const char *dir, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* QMP snapshot-save: a running VM is stopped first (STOP event) and stays
 * stopped, held like a QMP stop until cont; a failed save resumes it. */
int snapshot_save_cmd(struct vm *vm, const char *dir, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* --restore, in vm_create instead of gm_init: read and validate DIR/state
 * against cfg (vCPUs, RAM, CPU model), check DIR/disks.json against cfg's
 * disks, and map DIR/memory into gm. Logs one line and returns -errno on
 * failure. */
int snapshot_restore_open(struct snapshot_restore **out, const struct vm_config *cfg,
			  struct guest_mem *gm) __attribute__((warn_unused_result));

/* --restore, in vm_run instead of starting the vCPUs: pause the created
 * VM, start the vCPU threads (they park), restore the irqchip, PIT and
 * devices, each vCPU's state on its own thread and the kvmclock, then run
 * (or, with cfg->restore_paused, stay paused as after a QMP stop). Logs one
 * line and returns -errno on failure; vCPU threads may have started. */
int snapshot_restore_start(struct vm *vm) __attribute__((warn_unused_result));

void snapshot_restore_free(struct snapshot_restore *r);

/* Live migration (vmm/migration/). Source: the paused VM's state as a state
 * image (the DIR/state format) and its disk list (the disks.json text), both
 * malloc'd. Destination: validate a received image and disk list against
 * this VM (vCPUs, RAM and layout, CPU model, the same disk files) whose RAM
 * already holds the guest, and set vm->restore for snapshot_restore_start()
 * (paused: stay paused after the load). 0 or -errno with one line in err. */
int snapshot_capture(struct vm *vm, uint8_t **image, size_t *image_len, char **disks,
		     char *err, size_t errlen) __attribute__((warn_unused_result));
int snapshot_restore_from_image(struct vm *vm, const uint8_t *image, size_t len,
				const char *disks, size_t disks_len, bool paused, char *err,
				size_t errlen) __attribute__((warn_unused_result));

/* The pieces, for tests. The memory file: gm's RAM written into fd at its
 * memfd offsets, all-zero pages and memfd holes left as holes; *written is
 * the bytes of data. 0 or -errno. */
int snapshot_write_memory(const struct guest_mem *gm, int fd, uint64_t *written)
	__attribute__((warn_unused_result));
/* Map the memory file at path MAP_PRIVATE into gm, laid out as s says
 * (gm_destroy unmaps it). 0 or -errno with one line in err. */
struct snap_state;
int snapshot_map_memory(const char *path, const struct snap_state *s, struct guest_mem *gm,
			char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
