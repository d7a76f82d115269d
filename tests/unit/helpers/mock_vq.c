#include "helpers/mock_vq.h"

#include <check.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>

void mock_mem_init(struct mock_mem *m, uint64_t base, uint64_t size)
{
	void *p = NULL;

	memset(m, 0, sizeof(*m));
	ck_assert_int_eq(posix_memalign(&p, 4096, size), 0);
	memset(p, 0, size);
	m->buf = p;
	m->base = base;
	m->size = size;
	m->next = base;
	ck_assert_int_eq(gm_add_region(&m->gm, base, size, p), 0);
}

void mock_mem_destroy(struct mock_mem *m)
{
	free(m->buf);
	memset(m, 0, sizeof(*m));
}

uint64_t mock_mem_alloc(struct mock_mem *m, uint64_t len, uint64_t align)
{
	uint64_t gpa = (m->next + align - 1) & ~(align - 1);

	ck_assert_msg(len <= m->base + m->size - gpa, "mock memory exhausted");
	m->next = gpa + len;
	return gpa;
}

void *mock_mem_ptr(struct mock_mem *m, uint64_t gpa, uint64_t len)
{
	void *p = gm_ptr(&m->gm, gpa, len);

	ck_assert_ptr_nonnull(p);
	return p;
}

void mock_mem_write(struct mock_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	ck_assert_int_eq(gm_write(&m->gm, gpa, src, len), 0);
}

void mock_mem_read(struct mock_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	ck_assert_int_eq(gm_read(&m->gm, gpa, dst, len), 0);
}

static uint16_t *r16(struct mock_mem *m, uint64_t gpa)
{
	return mock_mem_ptr(m, gpa, 2);
}

void mock_vq_init(struct mock_vq *mq, struct mock_mem *m, uint16_t size)
{
	memset(mq, 0, sizeof(*mq));
	mq->mem = m;
	mq->size = size;
	mq->desc = mock_mem_alloc(m, VIRTQ_DESC_SIZE(size), 16);
	mq->avail = mock_mem_alloc(m, VIRTQ_AVAIL_SIZE(size), 2);
	mq->used = mock_mem_alloc(m, VIRTQ_USED_SIZE(size), 4096);
}

void mock_vq_attach(const struct mock_vq *mq, struct virtqueue *vq)
{
	vq->size = mq->size;
	vq->desc_gpa = mq->desc;
	vq->avail_gpa = mq->avail;
	vq->used_gpa = mq->used;
	vq->enabled = true;
}

void mock_write_desc(struct mock_mem *m, uint64_t table_gpa, uint32_t idx, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		.addr = htole64(addr), .len = htole32(len),
		.flags = htole16(flags), .next = htole16(next),
	};

	mock_mem_write(m, table_gpa + 16ULL * idx, &d, sizeof(d));
}

void mock_vq_set_desc(struct mock_vq *mq, uint16_t idx, uint64_t addr, uint32_t len,
		      uint16_t flags, uint16_t next)
{
	ck_assert_uint_lt(idx, mq->size);
	mock_write_desc(mq->mem, mq->desc, idx, addr, len, flags, next);
}

static uint16_t take_desc(struct mock_vq *mq)
{
	uint16_t i = mq->next_desc;

	mq->next_desc = (uint16_t)((mq->next_desc + 1) & (mq->size - 1));
	return i;
}

uint16_t mock_vq_build_chain(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n)
{
	uint16_t head = 0, prev = 0;

	ck_assert_uint_gt(n, 0);
	ck_assert_uint_le(n, mq->size);
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = take_desc(mq);

		if (i == 0)
			head = d;
		else
			mock_vq_set_desc(mq, prev, bufs[i - 1].gpa, bufs[i - 1].len,
					 VIRTQ_DESC_F_NEXT | (bufs[i - 1].write ? VIRTQ_DESC_F_WRITE : 0),
					 d);
		prev = d;
	}
	mock_vq_set_desc(mq, prev, bufs[n - 1].gpa, bufs[n - 1].len,
			 bufs[n - 1].write ? VIRTQ_DESC_F_WRITE : 0, 0);
	return head;
}

uint16_t mock_vq_build_indirect(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n)
{
	uint64_t table = mock_mem_alloc(mq->mem, 16ULL * n, 16);
	uint16_t d;

	for (unsigned i = 0; i < n; i++)
		mock_write_desc(mq->mem, table, i, bufs[i].gpa, bufs[i].len,
				(i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) |
					(bufs[i].write ? VIRTQ_DESC_F_WRITE : 0),
				(uint16_t)(i + 1 < n ? i + 1 : 0));
	d = take_desc(mq);
	mock_vq_set_desc(mq, d, table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
	return d;
}

void mock_vq_set_avail_ring(struct mock_vq *mq, uint16_t slot, uint16_t head)
{
	*r16(mq->mem, mq->avail + 4 + 2ULL * (slot & (mq->size - 1))) = htole16(head);
}

void mock_vq_publish(struct mock_vq *mq, uint16_t head)
{
	mock_vq_set_avail_ring(mq, mq->avail_idx, head);
	mq->avail_idx++;
	__atomic_store_n(r16(mq->mem, mq->avail + 2), htole16(mq->avail_idx), __ATOMIC_RELEASE);
}

uint16_t mock_vq_add_chain(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n)
{
	uint16_t head = mock_vq_build_chain(mq, bufs, n);

	mock_vq_publish(mq, head);
	return head;
}

uint16_t mock_vq_add_indirect(struct mock_vq *mq, const struct mock_buf *bufs, unsigned n)
{
	uint16_t head = mock_vq_build_indirect(mq, bufs, n);

	mock_vq_publish(mq, head);
	return head;
}

void mock_vq_set_avail_idx(struct mock_vq *mq, uint16_t idx)
{
	mq->avail_idx = idx;
	__atomic_store_n(r16(mq->mem, mq->avail + 2), htole16(idx), __ATOMIC_RELEASE);
}

uint16_t mock_vq_used_idx(struct mock_vq *mq)
{
	return le16toh(__atomic_load_n(r16(mq->mem, mq->used + 2), __ATOMIC_ACQUIRE));
}

struct virtq_used_elem mock_vq_used_elem(struct mock_vq *mq, uint16_t i)
{
	struct virtq_used_elem e;

	mock_mem_read(mq->mem, mq->used + 4 + 8ULL * (i & (mq->size - 1)), &e, sizeof(e));
	e.id = le32toh(e.id);
	e.len = le32toh(e.len);
	return e;
}

uint16_t mock_vq_used_flags(struct mock_vq *mq)
{
	return le16toh(__atomic_load_n(r16(mq->mem, mq->used), __ATOMIC_ACQUIRE));
}

uint16_t mock_vq_avail_event(struct mock_vq *mq)
{
	return le16toh(__atomic_load_n(r16(mq->mem, mq->used + 4 + 8ULL * mq->size),
				       __ATOMIC_ACQUIRE));
}

void mock_vq_set_used_event(struct mock_vq *mq, uint16_t v)
{
	__atomic_store_n(r16(mq->mem, mq->avail + 4 + 2ULL * mq->size), htole16(v),
			 __ATOMIC_RELEASE);
}

void mock_vq_set_avail_flags(struct mock_vq *mq, uint16_t flags)
{
	__atomic_store_n(r16(mq->mem, mq->avail), htole16(flags), __ATOMIC_RELEASE);
}

int mock_virtio_bring_up(struct virtio_device *dev, struct mock_vq *mq, uint64_t want)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE;

	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	st |= VIRTIO_STATUS_DRIVER;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, virtio_dev_host_features(dev) & want);
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_FEATURES_OK);
	ck_assert(virtio_dev_queue_writable(dev));
	mock_vq_attach(mq, virtio_dev_queue(dev, 0));
	st |= VIRTIO_STATUS_DRIVER_OK;
	return virtio_dev_set_status(dev, st);
}
