/* A mock virtio driver for unit tests: guest memory backed by a heap buffer
 * (added with gm_add_region), a split ring laid out in it, and helpers to
 * build direct and indirect chains, publish them and read the used ring.
 * Everything the "driver" writes goes through guest_mem too. Helpers abort
 * the test (via ck_assert) on misuse, so callers need not check results. */
#ifndef EMBER_TEST_MOCK_VQ_H
#define EMBER_TEST_MOCK_VQ_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"
#include "devices/virtio/virtqueue.h"
#include "base/guest_mem.h"

struct mock_mem {
	struct guest_mem gm;
	uint8_t *buf;
	uint64_t base;		/* gpa of the first byte */
	uint64_t size;
	uint64_t next;		/* bump allocator, as a gpa */
};

/* One region [base, base+size), zeroed, 4 KiB-aligned on the host. */
void mock_mem_init(struct mock_mem *m, uint64_t base, uint64_t size);
void mock_mem_destroy(struct mock_mem *m);
/* Allocate len bytes aligned to align (a power of 2); returns the gpa. */
uint64_t mock_mem_alloc(struct mock_mem *m, uint64_t len, uint64_t align);
/* Host pointer for [gpa, gpa+len) (through gm_ptr). */
void *mock_mem_ptr(struct mock_mem *m, uint64_t gpa, uint64_t len);
void mock_mem_write(struct mock_mem *m, uint64_t gpa, const void *src, uint64_t len);
void mock_mem_read(struct mock_mem *m, uint64_t gpa, void *dst, uint64_t len);

struct mock_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;		/* device-writable */
};

struct mock_vq {
	struct mock_mem *mem;
	uint16_t size;
	uint64_t desc, avail, used;	/* gpas */
	uint16_t next_desc;	/* descriptors are handed out round-robin */
	uint16_t avail_idx;
};

void mock_vq_init(struct mock_vq *mq, struct mock_mem *m, uint16_t size);
/* Point a device-side queue at this ring (size, addresses, enabled). */
void mock_vq_attach(const struct mock_vq *mq, struct virtqueue *vq);

/* Raw descriptor writes, for building malformed chains. */
void mock_vq_set_desc(struct mock_vq *mq, uint16_t idx, uint64_t addr, uint32_t len,
		      uint16_t flags, uint16_t next);
void mock_write_desc(struct mock_mem *m, uint64_t table_gpa, uint32_t idx, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next);

/* Build a chain from n buffers in the next free descriptors; returns the
 * head, not yet published. */
uint16_t mock_vq_build_chain(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n);
/* Build an indirect table holding n buffers (allocated in guest memory) and
 * one INDIRECT descriptor pointing at it; returns that descriptor's index. */
uint16_t mock_vq_build_indirect(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n);
/* Put head in the avail ring and bump avail->idx (release). */
void mock_vq_publish(struct mock_vq *mq, uint16_t head);
/* build + publish */
uint16_t mock_vq_add_chain(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n);
uint16_t mock_vq_add_indirect(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n);
/* Write avail->idx directly (to fake a hostile jump). */
void mock_vq_set_avail_idx(struct mock_vq *mq, uint16_t idx);
void mock_vq_set_avail_ring(struct mock_vq *mq, uint16_t slot, uint16_t head);

uint16_t mock_vq_used_idx(struct mock_vq *mq);
struct virtq_used_elem mock_vq_used_elem(struct mock_vq *mq, uint16_t i);
uint16_t mock_vq_used_flags(struct mock_vq *mq);
uint16_t mock_vq_avail_event(struct mock_vq *mq);
void mock_vq_set_used_event(struct mock_vq *mq, uint16_t v);
void mock_vq_set_avail_flags(struct mock_vq *mq, uint16_t flags);

/* Drive a virtio_device through ACKNOWLEDGE, DRIVER, features (masked to
 * `want`), FEATURES_OK, queue 0 = mq, DRIVER_OK. Returns set_status's result
 * for DRIVER_OK. */
int mock_virtio_bring_up(struct virtio_device *dev, struct mock_vq *mq, uint64_t want);

#endif
