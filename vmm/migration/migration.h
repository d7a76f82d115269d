/* Live migration between two Ember processes, QMP as QEMU names it.
 *
 * Source (QMP migrate {"uri": "unix:PATH" | "tcp:HOST:PORT" | "fd:NAME"}):
 * a migration thread connects, turns on dirty logging (KVM's per memslot for
 * vCPU writes, guest_mem's for device writes: virtqueue completions mark what
 * the device wrote), sends all non-zero RAM, then sends the pages dirtied
 * meanwhile, pass after pass, until the estimated downtime (dirty bytes /
 * measured bandwidth) fits the downtime limit (or 30 passes). Then it pauses
 * the VM (devices quiesce: nothing in flight), sends the last dirty pages,
 * the machine state (the snapshot state format, vmm/snapshot/) and the disk
 * list, and waits for the destination's ACK. With the ACK the source emits
 * MIGRATION "completed" and exits 0; it never resumes. Without it (error,
 * cancel, the destination died) dirty logging stops and the VM runs on as
 * before, exactly once resumed.
 *
 * Destination (ember run --incoming URI, the same flags): listens, accepts
 * one source, checks the header (vCPUs, RAM, CPU model), writes pages into
 * its RAM (every address checked against the layout), validates the state
 * (section CRCs, the snapshot loader's checks) and the disks (the same
 * files), loads it, ACKs, and runs (or stays paused if the source was).
 * Disk images: the destination takes their locks only after the handover
 * (virtio-blk defer_lock), when the source has let go. Any bad input is one
 * error line and exit status 1.
 *
 * Wire format, little-endian: a 64-byte header ("EMBERMIG", version, vCPUs,
 * RAM bytes, CPU model, the sender's Ember version), then records, each a
 * u64 tag (a guest address with the record type in its low 12 bits):
 *   PAGE  4096 bytes of data follow      ZERO  the page is all zeros
 *   STATE u32 flags, u64 image length, u64 disks length, u32 CRC32 of both,
 *         then the image and the disks text
 *   END   the stream is complete; the destination answers one byte:
 *         'A' (running here now) or 'N' (refused; the source carries on). */
#ifndef EMBER_MIGRATION_H
#define EMBER_MIGRATION_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

#define MIG_MAGIC		"EMBERMIG"
#define MIG_VERSION		1
#define MIG_HEADER_SIZE		64
#define MIG_PAGE_SIZE		4096u
#define MIG_REC_PAGE		1u
#define MIG_REC_ZERO		2u
#define MIG_REC_STATE		3u
#define MIG_REC_END		4u
#define MIG_STATE_PAUSED	1u	/* STATE flags: the source was stopped */
#define MIG_MAX_STATE_BYTES	(64u << 20)
#define MIG_MAX_DISKS_BYTES	(1u << 20)
#define MIG_MAX_PASSES		30
#define MIG_DEFAULT_DOWNTIME_MS	300

/* QMP: 0 or -errno with one line in err. migrate fails while one runs. */
int migration_start(struct vm *vm, const char *uri, char *err, size_t errlen);
int migration_cancel(struct vm *vm, char *err, size_t errlen);
int migration_set_parameters(struct vm *vm, json_t *args, char *err, size_t errlen);
json_t *migration_query(struct vm *vm);
json_t *migration_query_parameters(struct vm *vm);

/* --incoming: receive, load and run (vm_run calls it instead of booting).
 * 0, or -errno after one error line. */
int migration_incoming(struct vm *vm);

/* vm_destroy: wait for the migration thread; free. */
void migration_destroy(struct vm *vm);

/* The destination's receive loop, apart for the fuzzer and tests: header
 * checks against want, pages into gm (every address checked), and the
 * STATE record (bounded, CRC-checked) handed to on_state, whose return
 * ends the loop with an error. Reads fd until END. 0 or -errno with one line
 * in err. */
struct guest_mem;
struct mig_expect {
	unsigned cpus;
	uint64_t memory;
	uint32_t cpu_model;
};
typedef int (*mig_state_fn)(void *opaque, uint32_t flags, const uint8_t *image, size_t len,
			    const char *disks, size_t disks_len, char *err, size_t errlen);
int migration_receive(const struct mig_expect *want, struct guest_mem *gm, int fd,
		      mig_state_fn on_state, void *opaque, char *err, size_t errlen);

#endif
