/* Split virtqueue: the chain walker's hardening, cursors, used ring and
 * notification suppression, driven through the mock driver queue. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "devices/virtio/virtqueue.h"
#include "helpers/mock_vq.h"
#include "helpers/ck_run.h"

#define MEM_BASE 0x10000ULL
#define MEM_SIZE (1ULL << 20)
#define QSZ 16

static struct mock_mem mem;
static struct mock_vq mq;
static struct virtqueue vq;
static struct vq_chain chain;

static void setup_size(uint16_t size)
{
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	mock_vq_init(&mq, &mem, size);
	virtqueue_init(&vq, &mem.gm, VIRTQ_MAX_SIZE);
	mock_vq_attach(&mq, &vq);
	vq.indirect = true;
	ck_assert_int_eq(virtqueue_validate(&vq), 0);
}

static void setup(void)
{
	setup_size(QSZ);
}

static void teardown(void)
{
	mock_mem_destroy(&mem);
}

static uint64_t buf(uint32_t len, uint8_t fill)
{
	uint64_t gpa = mock_mem_alloc(&mem, len, 8);

	memset(mock_mem_ptr(&mem, gpa, len), fill, len);
	return gpa;
}

/* Pop expecting err; the queue is then broken and stays broken. */
static void expect_pop_error(int err)
{
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), err);
	ck_assert_int_eq(vq.error, err);
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), err);
}

/* The malformed chain `head` came back with len 0 so the guest isn't stuck. */
static void expect_returned_len0(uint16_t head)
{
	struct virtq_used_elem e;

	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	e = mock_vq_used_elem(&mq, 0);
	ck_assert_uint_eq(e.id, head);
	ck_assert_uint_eq(e.len, 0);
}

/* ---- valid chains ---- */

START_TEST(test_empty)
{
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 0);
	ck_assert(!virtqueue_has_work(&vq));
}
END_TEST

START_TEST(test_direct_chain_reader_writer)
{
	struct mock_buf b[4] = {
		{ buf(5, 'a'), 5, false }, { buf(7, 'b'), 7, false },
		{ buf(3, 0), 3, true }, { buf(9, 0), 9, true },
	};
	uint16_t head = mock_vq_add_chain(&mq, b, 4);
	char in[32], out[12];
	struct virtq_used_elem e;

	ck_assert(virtqueue_has_work(&vq));
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	ck_assert_uint_eq(chain.head, head);
	ck_assert_uint_eq(chain.nr_out, 2);
	ck_assert_uint_eq(chain.nr_in, 2);
	ck_assert_uint_eq(chain.out_len, 12);
	ck_assert_uint_eq(chain.in_len, 12);
	ck_assert_uint_eq(vq.inflight, 1);

	/* Reads cross segment boundaries and stop at the end. */
	ck_assert_uint_eq(vq_reader_read(&chain, in, 4), 4);
	ck_assert_uint_eq(vq_reader_remaining(&chain), 8);
	ck_assert_uint_eq(vq_reader_read(&chain, in + 4, 32), 8);
	ck_assert_mem_eq(in, "aaaaabbbbbbb", 12);
	ck_assert_uint_eq(vq_reader_read(&chain, in, 1), 0);

	ck_assert_uint_eq(vq_writer_skip(&chain, 2), 2);
	memcpy(out, "0123456789", 10);
	ck_assert_uint_eq(vq_writer_write(&chain, out, 10), 10);
	ck_assert_uint_eq(vq_writer_remaining(&chain), 0);
	ck_assert_uint_eq(vq_writer_write(&chain, out, 1), 0);
	ck_assert_uint_eq(vq_writer_written(&chain), 12);
	ck_assert_mem_eq(mock_mem_ptr(&mem, b[2].gpa, 3), "\0\0" "0", 3);
	ck_assert_mem_eq(mock_mem_ptr(&mem, b[3].gpa, 9), "123456789", 9);
	ck_assert_ptr_eq(vq_chain_last_writable(&chain), (uint8_t *)mock_mem_ptr(&mem, b[3].gpa, 9) + 8);

	virtqueue_push(&vq, chain.head, 12);
	ck_assert_uint_eq(vq.inflight, 0);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	e = mock_vq_used_elem(&mq, 0);
	ck_assert_uint_eq(e.id, head);
	ck_assert_uint_eq(e.len, 12);
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 0);
}
END_TEST

START_TEST(test_reader_iov)
{
	struct mock_buf b[3] = {
		{ buf(16, 1), 16, false }, { buf(100, 2), 100, false }, { buf(1, 0), 1, true },
	};
	struct iovec iov[4];

	mock_vq_add_chain(&mq, b, 3);
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	ck_assert_uint_eq(vq_reader_skip(&chain, 10), 10);
	ck_assert_int_eq(vq_reader_iov(&chain, 200, iov, 4), -ENODATA);
	ck_assert_int_eq(vq_reader_iov(&chain, 50, iov, 1), -E2BIG);
	ck_assert_uint_eq(vq_reader_remaining(&chain), 106);	/* unmoved on error */
	ck_assert_int_eq(vq_reader_iov(&chain, 50, iov, 4), 2);
	ck_assert_uint_eq(iov[0].iov_len, 6);
	ck_assert_ptr_eq(iov[0].iov_base, (uint8_t *)mock_mem_ptr(&mem, b[0].gpa, 16) + 10);
	ck_assert_uint_eq(iov[1].iov_len, 44);
	ck_assert_uint_eq(vq_reader_remaining(&chain), 56);
	ck_assert_int_eq(vq_writer_iov(&chain, 1, iov, 4), 1);
	ck_assert_int_eq(vq_writer_iov(&chain, 1, iov, 4), -ENODATA);
}
END_TEST

START_TEST(test_indirect_chain)
{
	struct mock_buf b[3] = {
		{ buf(16, 'h'), 16, false }, { buf(512, 0), 512, true }, { buf(1, 0), 1, true },
	};
	uint16_t head = mock_vq_add_indirect(&mq, b, 3);
	char hdr[16];

	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	ck_assert_uint_eq(chain.head, head);
	ck_assert_uint_eq(chain.nr_out, 1);
	ck_assert_uint_eq(chain.nr_in, 2);
	ck_assert_uint_eq(vq_reader_read(&chain, hdr, 16), 16);
	ck_assert_mem_eq(hdr, "hhhhhhhhhhhhhhhh", 16);
	ck_assert_uint_eq(chain.in_len, 513);
}
END_TEST

START_TEST(test_mixed_direct_then_indirect)
{
	/* Direct descriptors, the last of which points at an indirect table. */
	struct mock_buf ind[2] = { { buf(32, 'x'), 32, false }, { buf(8, 0), 8, true } };
	uint64_t table = mock_mem_alloc(&mem, 32, 16);
	uint64_t first = buf(4, 'f');

	mock_write_desc(&mem, table, 0, ind[0].gpa, 32, VIRTQ_DESC_F_NEXT, 1);
	mock_write_desc(&mem, table, 1, ind[1].gpa, 8, VIRTQ_DESC_F_WRITE, 0);
	mock_vq_set_desc(&mq, 3, first, 4, VIRTQ_DESC_F_NEXT, 7);
	mock_vq_set_desc(&mq, 7, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 3);

	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	ck_assert_uint_eq(chain.head, 3);
	ck_assert_uint_eq(chain.nr_out, 2);
	ck_assert_uint_eq(chain.nr_in, 1);
	ck_assert_uint_eq(chain.out_len, 36);
	ck_assert_uint_eq(chain.in_len, 8);
}
END_TEST

START_TEST(test_many_chains_in_order)
{
	for (unsigned round = 0; round < 5; round++) {
		uint16_t heads[4];

		for (unsigned i = 0; i < 4; i++) {
			struct mock_buf b = { buf(8, (uint8_t)i), 8, i & 1 };

			heads[i] = mock_vq_add_chain(&mq, &b, 1);
		}
		for (unsigned i = 0; i < 4; i++) {
			ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
			ck_assert_uint_eq(chain.head, heads[i]);
			virtqueue_push(&vq, chain.head, i);
		}
		ck_assert_int_eq(virtqueue_pop(&vq, &chain), 0);
	}
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 20);
	/* The ring wrapped (size 16): the last element is in slot 19 % 16. */
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 19).len, 3);
}
END_TEST

/* ---- malformed chains ---- */

START_TEST(test_descriptor_loop)
{
	uint64_t a = buf(8, 0);

	mock_vq_set_desc(&mq, 0, a, 8, VIRTQ_DESC_F_NEXT, 1);
	mock_vq_set_desc(&mq, 1, a, 8, VIRTQ_DESC_F_NEXT, 2);
	mock_vq_set_desc(&mq, 2, a, 8, VIRTQ_DESC_F_NEXT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-ELOOP);
	expect_returned_len0(0);
}
END_TEST

START_TEST(test_self_loop)
{
	mock_vq_set_desc(&mq, 5, buf(8, 0), 8, VIRTQ_DESC_F_NEXT, 5);
	mock_vq_publish(&mq, 5);
	expect_pop_error(-ELOOP);
	expect_returned_len0(5);
}
END_TEST

START_TEST(test_next_out_of_range)
{
	mock_vq_set_desc(&mq, 0, buf(8, 0), 8, VIRTQ_DESC_F_NEXT, QSZ);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
	expect_returned_len0(0);
}
END_TEST

START_TEST(test_head_out_of_range)
{
	mock_vq_set_avail_ring(&mq, 0, QSZ + 3);
	mock_vq_set_avail_idx(&mq, 1);
	expect_pop_error(-ERANGE);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 0);	/* no valid head to return */
}
END_TEST

START_TEST(test_avail_jump)
{
	struct mock_buf b = { buf(8, 0), 8, false };

	mock_vq_add_chain(&mq, &b, 1);
	mock_vq_set_avail_idx(&mq, QSZ + 1);
	expect_pop_error(-EPROTO);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 0);
}
END_TEST

START_TEST(test_avail_full_ring_is_fine)
{
	/* Exactly `size` new entries is legal; one more is not. */
	for (unsigned i = 0; i < QSZ; i++) {
		struct mock_buf b = { buf(8, 0), 8, false };

		mock_vq_add_chain(&mq, &b, 1);
	}
	for (unsigned i = 0; i < QSZ; i++) {
		ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
		virtqueue_push(&vq, chain.head, 0);
	}
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 0);
}
END_TEST

START_TEST(test_inflight_exceeds_size)
{
	struct mock_buf b = { buf(8, 0), 8, false };

	for (unsigned i = 0; i < QSZ; i++) {
		mock_vq_add_chain(&mq, &b, 1);
		ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	}
	/* The driver re-offers a head the device still holds. */
	mock_vq_publish(&mq, 0);
	expect_pop_error(-ENOSPC);
}
END_TEST

START_TEST(test_indirect_len_zero)
{
	mock_vq_set_desc(&mq, 0, buf(64, 0), 0, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
	expect_returned_len0(0);
}
END_TEST

START_TEST(test_indirect_len_not_multiple)
{
	mock_vq_set_desc(&mq, 0, buf(64, 0), 17, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_indirect_not_mapped)
{
	/* The table runs past the end of guest memory. */
	mock_vq_set_desc(&mq, 0, MEM_BASE + MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EFAULT);
	expect_returned_len0(0);
}
END_TEST

START_TEST(test_indirect_below_memory)
{
	mock_vq_set_desc(&mq, 0, 0x1000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EFAULT);
}
END_TEST

START_TEST(test_indirect_nested)
{
	uint64_t inner = mock_mem_alloc(&mem, 16, 16);
	uint64_t outer = mock_mem_alloc(&mem, 32, 16);

	mock_write_desc(&mem, inner, 0, buf(8, 0), 8, 0, 0);
	mock_write_desc(&mem, outer, 0, buf(8, 0), 8, VIRTQ_DESC_F_NEXT, 1);
	mock_write_desc(&mem, outer, 1, inner, 16, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_set_desc(&mq, 0, outer, 32, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_indirect_with_next)
{
	uint64_t table = mock_mem_alloc(&mem, 16, 16);

	mock_write_desc(&mem, table, 0, buf(8, 0), 8, 0, 0);
	mock_vq_set_desc(&mq, 0, table, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	mock_vq_set_desc(&mq, 1, buf(8, 0), 8, 0, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_indirect_not_negotiated)
{
	struct mock_buf b = { buf(8, 0), 8, false };

	vq.indirect = false;
	mock_vq_add_indirect(&mq, &b, 1);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_indirect_loop)
{
	uint64_t table = mock_mem_alloc(&mem, 48, 16);
	uint64_t a = buf(8, 0);

	mock_write_desc(&mem, table, 0, a, 8, VIRTQ_DESC_F_NEXT, 1);
	mock_write_desc(&mem, table, 1, a, 8, VIRTQ_DESC_F_NEXT, 2);
	mock_write_desc(&mem, table, 2, a, 8, VIRTQ_DESC_F_NEXT, 1);
	mock_vq_set_desc(&mq, 0, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-ELOOP);
}
END_TEST

START_TEST(test_indirect_next_out_of_table)
{
	/* next < queue size but >= table entries. */
	uint64_t table = mock_mem_alloc(&mem, 32, 16);

	mock_write_desc(&mem, table, 0, buf(8, 0), 8, VIRTQ_DESC_F_NEXT, 2);
	mock_write_desc(&mem, table, 1, buf(8, 0), 8, 0, 0);
	mock_vq_set_desc(&mq, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_buffer_straddles_end)
{
	struct mock_buf b[2] = {
		{ buf(8, 0), 8, false }, { MEM_BASE + MEM_SIZE - 4, 8, true },
	};
	uint16_t head = mock_vq_add_chain(&mq, b, 2);

	expect_pop_error(-EFAULT);
	expect_returned_len0(head);
}
END_TEST

START_TEST(test_buffer_address_wraps)
{
	struct mock_buf b = { UINT64_MAX - 3, 16, false };

	mock_vq_add_chain(&mq, &b, 1);
	expect_pop_error(-EFAULT);
}
END_TEST

START_TEST(test_zero_length_buffer)
{
	struct mock_buf b[2] = { { buf(8, 0), 8, false }, { buf(8, 0), 0, true } };

	mock_vq_add_chain(&mq, b, 2);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_readable_after_writable)
{
	struct mock_buf b[3] = {
		{ buf(8, 0), 8, false }, { buf(8, 0), 8, true }, { buf(8, 0), 8, false },
	};

	mock_vq_add_chain(&mq, b, 3);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_readable_after_writable_across_indirect)
{
	uint64_t table = mock_mem_alloc(&mem, 16, 16);

	mock_write_desc(&mem, table, 0, buf(8, 0), 8, 0, 0);
	mock_vq_set_desc(&mq, 0, buf(8, 0), 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	mock_vq_set_desc(&mq, 1, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
}
END_TEST

START_TEST(test_total_length_overflow)
{
	/* A sparse 4 GiB region at 4 GiB so that two huge buffers map. */
	const uint64_t big = 1ULL << 32;
	void *p = mmap(NULL, big, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct mock_buf b[2] = {
		{ big, 0xFFFFF000U, false }, { big, 0x2000, false },
	};

	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(gm_add_region(&mem.gm, big, big, p), 0);
	mock_vq_add_chain(&mq, b, 2);
	expect_pop_error(-EOVERFLOW);
	munmap(p, big);
}
END_TEST

START_TEST(test_too_many_segments)
{
	uint64_t a;
	uint16_t n = VQ_CHAIN_MAX_SEGS + 1;

	teardown();
	setup_size(2048);
	a = buf(1, 0);
	for (uint16_t i = 0; i < n; i++)
		mock_vq_set_desc(&mq, i, a, 1, i + 1 < n ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	mock_vq_publish(&mq, 0);
	expect_pop_error(-E2BIG);
}
END_TEST

START_TEST(test_max_segments_ok)
{
	uint64_t a;
	uint16_t n = VQ_CHAIN_MAX_SEGS;

	teardown();
	setup_size(2048);
	a = buf(1, 0);
	for (uint16_t i = 0; i < n; i++)
		mock_vq_set_desc(&mq, i, a, 1, i + 1 < n ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	mock_vq_publish(&mq, 0);
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	ck_assert_uint_eq(chain.nr_out, VQ_CHAIN_MAX_SEGS);
}
END_TEST

START_TEST(test_reset_clears_broken)
{
	mock_vq_set_desc(&mq, 0, buf(8, 0), 0, 0, 0);
	mock_vq_publish(&mq, 0);
	expect_pop_error(-EINVAL);
	virtqueue_reset(&vq);
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), -ENODEV);
	ck_assert_str_eq(virtqueue_strerror(-ELOOP), "descriptor chain loops");
}
END_TEST

/* ---- validate ---- */

START_TEST(test_validate_layouts)
{
	struct virtqueue q;

	virtqueue_init(&q, &mem.gm, 256);
	mock_vq_attach(&mq, &q);
	ck_assert_int_eq(virtqueue_validate(&q), 0);

	q.size = 0;
	ck_assert_int_eq(virtqueue_validate(&q), -EINVAL);
	q.size = 12;	/* not a power of 2 */
	ck_assert_int_eq(virtqueue_validate(&q), -EINVAL);
	q.size = 512;	/* above max_size */
	ck_assert_int_eq(virtqueue_validate(&q), -EINVAL);
	q.size = QSZ;

	q.desc_gpa = mq.desc + 8;
	ck_assert_int_eq(virtqueue_validate(&q), -EINVAL);
	q.desc_gpa = mq.desc;
	q.avail_gpa = mq.avail + 1;
	ck_assert_int_eq(virtqueue_validate(&q), -EINVAL);
	q.avail_gpa = mq.avail;
	q.used_gpa = mq.used + 2;
	ck_assert_int_eq(virtqueue_validate(&q), -EINVAL);
	q.used_gpa = mq.used;

	/* Rings that don't fit wholly in guest memory. */
	q.desc_gpa = MEM_BASE + MEM_SIZE - 16 * QSZ + 16;
	ck_assert_int_eq(virtqueue_validate(&q), -EFAULT);
	q.desc_gpa = mq.desc;
	q.used_gpa = MEM_BASE + MEM_SIZE - (6 + 8 * QSZ) + 2;
	ck_assert_int_eq(virtqueue_validate(&q), -EFAULT);
	q.used_gpa = MEM_BASE + MEM_SIZE - (6 + 8 * QSZ) - 2;	/* 4-aligned and inside */
	ck_assert_int_eq(virtqueue_validate(&q), 0);
	q.avail_gpa = MEM_BASE - 2;
	ck_assert_int_eq(virtqueue_validate(&q), -EFAULT);
	q.avail_gpa = UINT64_MAX - 1;
	ck_assert_int_eq(virtqueue_validate(&q), -EFAULT);
	ck_assert(!q.ready);
	ck_assert_int_eq(virtqueue_pop(&q, &chain), -ENODEV);
}
END_TEST

/* ---- notification ---- */

START_TEST(test_need_event_math)
{
	ck_assert(vring_need_event(9, 10, 5));
	ck_assert(vring_need_event(5, 10, 5));
	ck_assert(!vring_need_event(10, 10, 5));
	ck_assert(!vring_need_event(4, 10, 5));	/* event already passed before old */
	ck_assert(!vring_need_event(0, 5, 5));	/* nothing new */
	/* Wraparound of the 16-bit indexes. */
	ck_assert(vring_need_event(0xFFFF, 2, 0xFFFE));
	ck_assert(vring_need_event(0, 2, 0xFFFE));
	ck_assert(vring_need_event(1, 2, 0xFFFE));
	ck_assert(!vring_need_event(2, 2, 0xFFFE));
	ck_assert(!vring_need_event(0xFFFD, 2, 0xFFFE));
}
END_TEST

static void push_one(void)
{
	struct mock_buf b = { buf(4, 0), 4, true };

	mock_vq_add_chain(&mq, &b, 1);
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	virtqueue_push(&vq, chain.head, 4);
}

START_TEST(test_notify_no_event_idx)
{
	push_one();
	ck_assert(virtqueue_should_notify(&vq));
	mock_vq_set_avail_flags(&mq, VIRTQ_AVAIL_F_NO_INTERRUPT);
	push_one();
	ck_assert(!virtqueue_should_notify(&vq));
	mock_vq_set_avail_flags(&mq, 0);
	push_one();
	ck_assert(virtqueue_should_notify(&vq));
}
END_TEST

START_TEST(test_notify_event_idx)
{
	vq.event_idx = true;
	/* used_event = 0 (zeroed ring): the first completion interrupts. */
	push_one();
	ck_assert(virtqueue_should_notify(&vq));
	/* The driver wants an interrupt only when used idx passes 3. */
	mock_vq_set_used_event(&mq, 3);
	push_one();	/* used 2 */
	ck_assert(!virtqueue_should_notify(&vq));
	push_one();	/* used 3 */
	ck_assert(!virtqueue_should_notify(&vq));
	push_one();	/* used 4: crossed event 3 */
	ck_assert(virtqueue_should_notify(&vq));
	push_one();	/* used 5: event still 3, already signalled */
	ck_assert(!virtqueue_should_notify(&vq));
	/* Nothing pushed since: no interrupt. */
	ck_assert(!virtqueue_should_notify(&vq));
	/* A batch that jumps over the event index still interrupts once. */
	mock_vq_set_used_event(&mq, 6);
	push_one();
	push_one();
	push_one();	/* used 8 */
	ck_assert(virtqueue_should_notify(&vq));
}
END_TEST

START_TEST(test_notify_event_idx_wraparound)
{
	vq.event_idx = true;
	/* Move the indexes near 2^16 (white box, as after a long uptime). */
	vq.used_idx = vq.signalled_used = 0xFFFE;
	vq.last_avail_idx = 0xFFFE;
	mock_vq_set_avail_idx(&mq, 0xFFFE);
	mock_vq_set_used_event(&mq, 0);
	push_one();	/* used 0xFFFF */
	ck_assert(!virtqueue_should_notify(&vq));
	push_one();	/* used 0 */
	ck_assert(!virtqueue_should_notify(&vq));
	push_one();	/* used 1: passed event 0 */
	ck_assert(virtqueue_should_notify(&vq));
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 0xFFFF).len, 4);
}
END_TEST

START_TEST(test_enable_notify_race)
{
	struct mock_buf b = { buf(4, 0), 4, false };

	/* Without EVENT_IDX: the NO_NOTIFY flag. */
	virtqueue_disable_notify(&vq);
	ck_assert_uint_eq(mock_vq_used_flags(&mq) & VIRTQ_USED_F_NO_NOTIFY, VIRTQ_USED_F_NO_NOTIFY);
	ck_assert(!virtqueue_enable_notify(&vq));
	ck_assert_uint_eq(mock_vq_used_flags(&mq) & VIRTQ_USED_F_NO_NOTIFY, 0);
	/* A buffer that arrived while notifications were off is reported. */
	virtqueue_disable_notify(&vq);
	mock_vq_add_chain(&mq, &b, 1);
	ck_assert(virtqueue_enable_notify(&vq));
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	ck_assert(!virtqueue_enable_notify(&vq));

	/* With EVENT_IDX: avail_event tracks last_avail_idx. */
	vq.event_idx = true;
	mock_vq_add_chain(&mq, &b, 1);
	ck_assert(virtqueue_enable_notify(&vq));
	ck_assert_uint_eq(mock_vq_avail_event(&mq), 1);
	ck_assert_int_eq(virtqueue_pop(&vq, &chain), 1);
	ck_assert(!virtqueue_enable_notify(&vq));
	ck_assert_uint_eq(mock_vq_avail_event(&mq), 2);
}
END_TEST

static Suite *virtqueue_suite(void)
{
	Suite *s = suite_create("virtqueue");
	TCase *ok = tcase_create("valid");
	TCase *bad = tcase_create("malformed");
	TCase *ring = tcase_create("ring");

	tcase_add_checked_fixture(ok, setup, teardown);
	tcase_add_test(ok, test_empty);
	tcase_add_test(ok, test_direct_chain_reader_writer);
	tcase_add_test(ok, test_reader_iov);
	tcase_add_test(ok, test_indirect_chain);
	tcase_add_test(ok, test_mixed_direct_then_indirect);
	tcase_add_test(ok, test_many_chains_in_order);
	tcase_add_test(ok, test_avail_full_ring_is_fine);
	tcase_add_test(ok, test_max_segments_ok);
	suite_add_tcase(s, ok);

	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_add_test(bad, test_descriptor_loop);
	tcase_add_test(bad, test_self_loop);
	tcase_add_test(bad, test_next_out_of_range);
	tcase_add_test(bad, test_head_out_of_range);
	tcase_add_test(bad, test_avail_jump);
	tcase_add_test(bad, test_inflight_exceeds_size);
	tcase_add_test(bad, test_indirect_len_zero);
	tcase_add_test(bad, test_indirect_len_not_multiple);
	tcase_add_test(bad, test_indirect_not_mapped);
	tcase_add_test(bad, test_indirect_below_memory);
	tcase_add_test(bad, test_indirect_nested);
	tcase_add_test(bad, test_indirect_with_next);
	tcase_add_test(bad, test_indirect_not_negotiated);
	tcase_add_test(bad, test_indirect_loop);
	tcase_add_test(bad, test_indirect_next_out_of_table);
	tcase_add_test(bad, test_buffer_straddles_end);
	tcase_add_test(bad, test_buffer_address_wraps);
	tcase_add_test(bad, test_zero_length_buffer);
	tcase_add_test(bad, test_readable_after_writable);
	tcase_add_test(bad, test_readable_after_writable_across_indirect);
	tcase_add_test(bad, test_total_length_overflow);
	tcase_add_test(bad, test_too_many_segments);
	tcase_add_test(bad, test_reset_clears_broken);
	suite_add_tcase(s, bad);

	tcase_add_checked_fixture(ring, setup, teardown);
	tcase_add_test(ring, test_validate_layouts);
	tcase_add_test(ring, test_need_event_math);
	tcase_add_test(ring, test_notify_no_event_idx);
	tcase_add_test(ring, test_notify_event_idx);
	tcase_add_test(ring, test_notify_event_idx_wraparound);
	tcase_add_test(ring, test_enable_notify_race);
	suite_add_tcase(s, ring);
	return s;
}

int main(void)
{
	return ck_run_suite(virtqueue_suite());
}
