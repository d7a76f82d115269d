/* Split virtqueue (virtio 1.2 section 2.7), device side. The one chain walker
 * every Ember virtio device uses. All guest memory goes through guest_mem;
 * ring pointers are resolved (whole range, overflow-checked) once at
 * virtqueue_validate() time, and every descriptor is copied out of guest
 * memory before it is checked, so a guest racing with us only ever hurts
 * itself.
 *
 * Threading: a queue is owned by one thread at a time (the device's I/O
 * thread once activated); none of these functions lock. */
#ifndef EMBER_VIRTQUEUE_H
#define EMBER_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "base/guest_mem.h"

#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4

#define VIRTQ_AVAIL_F_NO_INTERRUPT	1
#define VIRTQ_USED_F_NO_NOTIFY		1

#define VIRTQ_MAX_SIZE		32768
/* Most segments one chain may have; longer chains are rejected (-E2BIG). */
#define VQ_CHAIN_MAX_SEGS	1024

/* Ring layouts, little-endian in guest memory. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* Sizes and alignments of the three parts of a split ring of `n` entries,
 * including the event-index words. */
#define VIRTQ_DESC_SIZE(n)	(16ULL * (n))
#define VIRTQ_AVAIL_SIZE(n)	(6ULL + 2ULL * (n))
#define VIRTQ_USED_SIZE(n)	(6ULL + 8ULL * (n))
#define VIRTQ_DESC_ALIGN	16
#define VIRTQ_AVAIL_ALIGN	2
#define VIRTQ_USED_ALIGN	4

struct virtqueue {
	/* Set by the transport while the driver configures the queue. */
	uint16_t size;		/* negotiated size: power of 2, <= max_size */
	uint16_t max_size;	/* what the device offers */
	bool enabled;		/* queue_enable (PCI) / QueueReady (MMIO) */
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;

	/* Set from negotiated features before virtqueue_validate(). */
	bool event_idx;		/* VIRTIO_RING_F_EVENT_IDX */
	bool indirect;		/* VIRTIO_RING_F_INDIRECT_DESC */

	/* Device-side state. */
	uint16_t last_avail_idx;
	uint16_t used_idx;
	uint16_t signalled_used;	/* used_idx when we last decided to notify */
	bool signalled_used_valid;
	uint32_t inflight;	/* popped, not yet pushed */
	int error;		/* first pop error; the queue is broken while != 0 */
	bool ready;		/* validated and usable */

	const struct guest_mem *gm;
	/* Host views of the rings, from gm_ptr() at validate time. */
	uint8_t *desc;
	uint8_t *avail;
	uint8_t *used;
};

/* A popped chain: `nr_out` device-readable segments followed by `nr_in`
 * device-writable segments in iov[], plus two byte-stream cursors. The iov
 * bases are host pointers into guest memory, each wholly inside one region. */
struct vq_cursor {
	unsigned seg;		/* index into iov[] */
	size_t off;		/* offset within iov[seg] */
	size_t done;		/* bytes consumed so far */
};

struct vq_chain {
	uint16_t head;
	bool head_valid;	/* on error: whether `head` names a real entry */
	unsigned nr_out;
	unsigned nr_in;
	uint32_t out_len;	/* bytes device-readable */
	uint32_t in_len;	/* bytes device-writable */
	struct vq_cursor rd;
	struct vq_cursor wr;
	struct iovec iov[VQ_CHAIN_MAX_SEGS];
};

/* Bind a queue to guest memory and put it in the reset state. */
void virtqueue_init(struct virtqueue *vq, const struct guest_mem *gm, uint16_t max_size);
/* Back to the reset state: addresses zeroed, size = max_size, not ready. */
void virtqueue_reset(struct virtqueue *vq);

/* At DRIVER_OK (or queue enable): check size and that the three rings map
 * wholly inside guest memory with the right alignment, and resolve them.
 * Returns 0, or -EINVAL (size/alignment) / -EFAULT (not in guest memory). */
int virtqueue_validate(struct virtqueue *vq) __attribute__((warn_unused_result));

/* Pop the next available chain.
 *   1: got a chain in *chain;   0: nothing available;
 *   < 0: the guest broke the queue. The queue is then marked broken and
 *   every later pop returns the same error until virtqueue_reset(). If the
 *   head of the bad chain was valid it has already been returned on the used
 *   ring with len 0 (the caller should still call virtqueue_should_notify()
 *   and raise the interrupt), and the caller must set DEVICE_NEEDS_RESET.
 * Errors:
 *   -EPROTO    avail->idx moved by more than the queue size
 *   -ERANGE    head index >= queue size
 *   -ENOSPC    queue size chains already in flight
 *   -EINVAL    bad descriptor: next out of range, nested indirect,
 *              INDIRECT+NEXT, indirect not negotiated, bad indirect length,
 *              zero-length buffer, readable after writable
 *   -ELOOP     hop budget exhausted (a loop)
 *   -EFAULT    a buffer or indirect table not wholly in guest memory
 *   -EOVERFLOW total chain length overflows u32
 *   -E2BIG     more than VQ_CHAIN_MAX_SEGS segments
 *   -ENODEV    queue not validated/ready */
int virtqueue_pop(struct virtqueue *vq, struct vq_chain *chain)
	__attribute__((warn_unused_result));

/* The device found a chain it cannot serve (e.g. a block request with no
 * status byte): stop popping until reset, like a pop error. */
void virtqueue_mark_broken(struct virtqueue *vq, int err);

/* Return chain `head` with `len` bytes written: write the used element, then
 * publish used->idx with a release store. */
void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len);

/* Return n chains at once: every used element is written first, then
 * used->idx is published once (release), so the driver never sees part of
 * the batch (the chains of one merged receive buffer must appear together).
 * Elements whose head is out of range are skipped. */
void virtqueue_push_batch(struct virtqueue *vq, const struct virtq_used_elem *elems,
			  unsigned n);

/* Give back the last n chains popped and not pushed: the next pops return
 * them again, in the same order. For a device that takes buffers ahead of
 * need (virtio-net's receive buffers) and must hand them back on pause. */
void virtqueue_unpop(struct virtqueue *vq, uint16_t n);

/* A queue's state for snapshots: the registers the driver wrote and where
 * the device is on the two rings. Saved while the device is quiesced. */
struct virtqueue_state {
	uint16_t size;
	bool enabled;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail_idx;
	uint16_t used_idx;
	uint32_t inflight;	/* popped, not pushed: 0 for a state that loads */
	int error;		/* the queue is broken (0 or -errno) */
};

void virtqueue_export(const struct virtqueue *vq, struct virtqueue_state *st);
/* Restore, in two steps around the device's activation (which validates
 * the rings and starts them at index 0): the registers, then the ring
 * positions. import_regs refuses (-EINVAL) a size the queue cannot have;
 * import_indices a position more than a queue size apart, or chains in
 * flight. */
int virtqueue_import_regs(struct virtqueue *vq, const struct virtqueue_state *st)
	__attribute__((warn_unused_result));
int virtqueue_import_indices(struct virtqueue *vq, const struct virtqueue_state *st)
	__attribute__((warn_unused_result));

/* After one or more pushes: does the driver want an interrupt?
 * EVENT_IDX: vring_need_event(used_event, new, old); else !NO_INTERRUPT. */
bool virtqueue_should_notify(struct virtqueue *vq);

/* Ask the driver not to kick (NO_NOTIFY flag; a no-op with EVENT_IDX, where
 * avail_event simply stays behind). */
void virtqueue_disable_notify(struct virtqueue *vq);
/* Ask for kicks again (clear NO_NOTIFY, or avail_event = last_avail_idx),
 * then re-check the avail ring: returns true if buffers arrived meanwhile, in
 * which case the caller must process the queue again rather than sleep. */
bool virtqueue_enable_notify(struct virtqueue *vq) __attribute__((warn_unused_result));

/* True if avail->idx != last_avail_idx (acquire). */
bool virtqueue_has_work(struct virtqueue *vq);

/* The spec's vring_need_event(), exposed for tests. */
static inline bool vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

const char *virtqueue_strerror(int err);

/* Reader (device-readable part) and writer (device-writable part) cursors.
 * read/write/skip return bytes moved, which is less than n only at the end
 * of that part. */
size_t vq_reader_read(struct vq_chain *c, void *buf, size_t n);
size_t vq_reader_skip(struct vq_chain *c, size_t n);
size_t vq_reader_remaining(const struct vq_chain *c);
size_t vq_writer_write(struct vq_chain *c, const void *buf, size_t n);
size_t vq_writer_skip(struct vq_chain *c, size_t n);
size_t vq_writer_remaining(const struct vq_chain *c);
size_t vq_writer_written(const struct vq_chain *c);
/* Consume exactly n bytes and describe them as up to max iovecs (pointing
 * into guest memory) for zero-copy I/O. Returns the iovec count, or -ENODATA
 * if fewer than n bytes remain, or -E2BIG if more than max would be needed;
 * the cursor does not move on error. */
int vq_reader_iov(struct vq_chain *c, size_t n, struct iovec *iov, unsigned max);
int vq_writer_iov(struct vq_chain *c, size_t n, struct iovec *iov, unsigned max);
/* Host pointer to the last device-writable byte of the chain, or NULL. */
uint8_t *vq_chain_last_writable(const struct vq_chain *c);

#endif
