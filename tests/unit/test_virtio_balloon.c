/* virtio-balloon driven through the mock driver queue. The test plays the
 * main loop: it reads a queue's kick eventfd and calls balloon_kick(), as
 * the virtio registry does. One test runs on a real memfd (gm_init) to see
 * inflated pages leave the host. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "base/byteorder.h"
#include "base/evloop.h"
#include "devices/device.h"
#include "devices/options.h"
#include "devices/virtio/balloon/balloon.h"
#include "devices/virtio/registry.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(8ULL << 20)
#define ALL		(~0ULL)
#define NO_STATS	(~VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ))
#define PAGE		4096ULL

static struct mock_mem mem;
static struct mock_vq mq[4];
static struct virtio_device *dev;
static struct device_ctx ctx;
static unsigned used_irqs[4], config_irqs, events;
static int64_t last_event_actual;

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	ck_assert_uint_lt(q, 4);
	used_irqs[q]++;
}

static void on_config(struct virtio_device *d)
{
	(void)d;
	config_irqs++;
}

static void on_event(void *machine, const char *name, json_t *data)
{
	(void)machine;
	ck_assert_str_eq(name, "BALLOON_CHANGE");
	last_event_actual = json_integer_value(json_object_get(data, "actual"));
	events++;
	json_decref(data);
}

static const struct device_machine_ops machine_ops = { .emit_event = on_event };

static void make(const struct balloon_options *o)
{
	ck_assert_int_eq(balloon_create(&ctx, o, &dev), 0);
	dev->notify_used = on_used;
	dev->notify_config = on_config;
}

static void setup_ctx(struct guest_mem *gm)
{
	memset(&ctx, 0, sizeof(ctx));
	ctx.mem = gm;
	ctx.ops = &machine_ops;
	memset(used_irqs, 0, sizeof(used_irqs));
	config_irqs = events = 0;
	last_event_actual = -1;
}

static void setup(void)
{
	struct balloon_options o = { .free_page_reporting = true };

	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	setup_ctx(&mem.gm);
	make(&o);
}

static void teardown(void)
{
	balloon_destroy(dev);
	dev = NULL;
	mock_mem_destroy(&mem);
}

/* ACKNOWLEDGE, DRIVER, features & want, FEATURES_OK, nq queues, DRIVER_OK. */
static void bring_up(uint64_t want, unsigned nq)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE;

	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	st |= VIRTIO_STATUS_DRIVER;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, virtio_dev_host_features(dev) & want);
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	for (unsigned q = 0; q < nq; q++) {
		mock_vq_init(&mq[q], &mem, BALLOON_QUEUE_SIZE);
		mock_vq_attach(&mq[q], virtio_dev_queue(dev, q));
	}
	st |= VIRTIO_STATUS_DRIVER_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
}

/* The main loop: serve every kicked queue until no kick is left. */
static unsigned serve(void)
{
	unsigned calls = 0;
	bool again = true;

	while (again) {
		again = false;
		for (unsigned q = 0; q < dev->nr_queues; q++) {
			eventfd_t v;

			if (eventfd_read(virtio_dev_kick_fd(dev, q), &v) == 0 && v) {
				balloon_kick(dev, q);
				calls++;
				again = true;
				ck_assert_uint_lt(calls, 10000);
			}
		}
	}
	return calls;
}

static void kick(unsigned q)
{
	ck_assert_int_eq(eventfd_write(virtio_dev_kick_fd(dev, q), 1), 0);
}

/* Did the device kick itself to come back? (The kick stays pending.) */
static bool rekicked(unsigned q)
{
	eventfd_t v;

	if (eventfd_read(virtio_dev_kick_fd(dev, q), &v) || !v)
		return false;
	kick(q);
	return true;
}

/* A PFN array in guest memory; returns its gpa. */
static uint64_t pfn_buf(const uint32_t *pfns, unsigned n)
{
	uint64_t gpa = mock_mem_alloc(&mem, 4ULL * n, 4);
	uint8_t *p = mock_mem_ptr(&mem, gpa, 4ULL * n);

	for (unsigned i = 0; i < n; i++)
		wr32(p + 4 * i, pfns[i]);
	return gpa;
}

static uint16_t send_pfns(unsigned q, const uint32_t *pfns, unsigned n)
{
	struct mock_buf buf = { .gpa = pfn_buf(pfns, n), .len = 4 * n };

	return mock_vq_add_chain(&mq[q], &buf, 1);
}

static uint64_t pages(unsigned n, uint8_t fill)
{
	uint64_t gpa = mock_mem_alloc(&mem, n * PAGE, PAGE);

	memset(mock_mem_ptr(&mem, gpa, n * PAGE), fill, n * PAGE);
	return gpa;
}

static bool all_equal(uint64_t gpa, uint64_t len, uint8_t v)
{
	const uint8_t *p = mock_mem_ptr(&mem, gpa, len);

	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static uint32_t cfg32(unsigned off)
{
	uint8_t buf[4];

	virtio_dev_config_read(dev, off, buf, 4);
	return rd32(buf);
}

static void write_actual(uint32_t pages_)
{
	uint8_t buf[4];

	wr32(buf, pages_);
	virtio_dev_config_write(dev, 4, buf, 4);
}

static struct balloon_counters counters(void)
{
	struct balloon_counters c;

	balloon_get_counters(dev, &c);
	return c;
}

START_TEST(test_features_queues_config)
{
	struct balloon_options o = { .deflate_on_oom = true };
	uint64_t f = virtio_dev_host_features(dev);
	uint8_t buf[16];

	ck_assert_uint_eq(dev->ops->device_id, VIRTIO_ID_BALLOON);
	ck_assert(f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert(f & VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	ck_assert(f & VIRTIO_BIT(VIRTIO_BALLOON_F_REPORTING));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_BALLOON_F_MUST_TELL_HOST)));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_BALLOON_F_FREE_PAGE_HINT)));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_POISON)));
	ck_assert_uint_eq(dev->nr_queues, 4);
	ck_assert_uint_eq(cfg32(0), 0);
	ck_assert_uint_eq(cfg32(4), 0);
	/* Past the 8 config bytes: zeros. */
	memset(buf, 0xAA, sizeof(buf));
	virtio_dev_config_read(dev, 4, buf, 8);
	for (unsigned i = 0; i < 8; i++)
		ck_assert_uint_eq(buf[i], 0);
	balloon_destroy(dev);

	make(&o);
	f = virtio_dev_host_features(dev);
	ck_assert(f & VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_BALLOON_F_REPORTING)));
	ck_assert_uint_eq(dev->nr_queues, 3);
}
END_TEST

START_TEST(test_target_and_actual)
{
	uint64_t ram = MEM_SIZE;
	uint8_t byte;

	ck_assert_int_eq(balloon_set_target(dev, 0), -EINVAL);
	/* Before DRIVER_OK: stored, no interrupt. */
	ck_assert_int_eq(balloon_set_target(dev, ram - (2 << 20)), 0);
	ck_assert_uint_eq(cfg32(0), 512);
	ck_assert_uint_eq(config_irqs, 0);
	bring_up(ALL, 4);
	ck_assert_int_eq(balloon_set_target(dev, ram - (4 << 20)), 0);
	ck_assert_uint_eq(cfg32(0), 1024);
	ck_assert_uint_eq(balloon_target_pages(dev), 1024);
	ck_assert_uint_eq(config_irqs, 1);
	/* More than RAM: no balloon. Odd sizes round the balloon down. */
	ck_assert_int_eq(balloon_set_target(dev, ram * 4), 0);
	ck_assert_uint_eq(cfg32(0), 0);
	ck_assert_int_eq(balloon_set_target(dev, ram - 4095), 0);
	ck_assert_uint_eq(cfg32(0), 0);
	ck_assert_int_eq(balloon_set_target(dev, 1), 0);
	ck_assert_uint_eq(cfg32(0), (ram - 1) / PAGE);

	/* The guest writes actual: one event per change, with RAM minus it. */
	ck_assert_uint_eq(balloon_actual_bytes(dev), ram);
	write_actual(256);
	ck_assert_uint_eq(cfg32(4), 256);
	ck_assert_uint_eq(events, 1);
	ck_assert_int_eq(last_event_actual, (int64_t)(ram - 256 * PAGE));
	ck_assert_uint_eq(balloon_actual_bytes(dev), ram - 256 * PAGE);
	write_actual(256);
	ck_assert_uint_eq(events, 1);
	/* One byte at a time, and num_pages is not the guest's to write. */
	byte = 2;
	virtio_dev_config_write(dev, 5, &byte, 1);
	ck_assert_uint_eq(cfg32(4), 256 + 256);
	ck_assert_uint_eq(events, 2);
	virtio_dev_config_write(dev, 0, &byte, 1);
	ck_assert_uint_eq(cfg32(0), (ram - 1) / PAGE);
	ck_assert_uint_eq(events, 2);
	/* A balloon bigger than RAM (hostile): actual never goes negative. */
	write_actual(UINT32_MAX);
	ck_assert_int_eq(last_event_actual, 0);
	ck_assert_uint_eq(balloon_actual_bytes(dev), 0);
}
END_TEST

START_TEST(test_inflate_discards_and_counts)
{
	uint64_t a = pages(4, 0xAB), c = pages(1, 0xCD), keep = pages(1, 0xEE);
	uint32_t pfns[5] = { (uint32_t)(a / PAGE) + 0, (uint32_t)(a / PAGE) + 1,
			     (uint32_t)(a / PAGE) + 3, (uint32_t)(a / PAGE) + 2,
			     (uint32_t)(c / PAGE) };
	uint16_t head;
	struct balloon_counters cnt;

	bring_up(ALL, 4);
	head = send_pfns(0, pfns, 5);
	kick(0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[0], 0).id, head);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[0], 0).len, 0);
	ck_assert_uint_eq(used_irqs[0], 1);
	ck_assert_uint_eq(mock_vq_avail_event(&mq[0]), 1);
	/* No memfd here: discarded pages read as zeros, the rest is intact. */
	ck_assert(all_equal(a, 4 * PAGE, 0));
	ck_assert(all_equal(c, PAGE, 0));
	ck_assert(all_equal(keep, PAGE, 0xEE));
	cnt = counters();
	ck_assert_uint_eq(cnt.inflated_pages, 5);
	ck_assert_uint_eq(cnt.discarded_bytes, 5 * PAGE);
	ck_assert_uint_eq(cnt.ignored_pfns, 0);

	/* Deflate: accounting only; the guest's memory is left alone. */
	memset(mock_mem_ptr(&mem, a, PAGE), 0x11, PAGE);
	send_pfns(1, pfns, 2);
	kick(1);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[1]), 1);
	ck_assert_uint_eq(used_irqs[1], 1);
	ck_assert(all_equal(a, PAGE, 0x11));
	cnt = counters();
	ck_assert_uint_eq(cnt.deflated_pages, 2);
	ck_assert_uint_eq(cnt.inflated_pages, 5);
}
END_TEST

START_TEST(test_hostile_pfns_ignored)
{
	uint64_t a = pages(1, 0xAB);
	uint64_t last = MEM_BASE + MEM_SIZE - PAGE;
	uint32_t pfns[] = {
		0,				/* below the region */
		(uint32_t)(MEM_BASE / PAGE) - 1,
		(uint32_t)((MEM_BASE + MEM_SIZE) / PAGE),	/* just past the end */
		0xC0000,			/* the MMIO hole */
		UINT32_MAX,			/* 16 TiB */
		(uint32_t)(a / PAGE),		/* the one good page */
	};
	struct mock_buf odd = { 0 };
	struct balloon_counters cnt;

	memset(mock_mem_ptr(&mem, last, PAGE), 0x77, PAGE);
	bring_up(ALL, 4);
	send_pfns(0, pfns, 6);
	/* A trailing partial PFN (6 bytes: one PFN and half of another). */
	odd.gpa = pfn_buf((uint32_t[]){ (uint32_t)(last / PAGE), 0x1234 }, 2);
	odd.len = 6;
	mock_vq_add_chain(&mq[0], &odd, 1);
	/* Deflating nonsense is counted too. */
	send_pfns(1, pfns, 5);
	kick(0);
	kick(1);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 2);
	ck_assert_uint_eq(mock_vq_used_idx(&mq[1]), 1);
	cnt = counters();
	ck_assert_uint_eq(cnt.ignored_pfns, 10);
	ck_assert_uint_eq(cnt.inflated_pages, 2);
	ck_assert_uint_eq(cnt.deflated_pages, 0);
	ck_assert(all_equal(a, PAGE, 0));
	ck_assert(all_equal(last, PAGE, 0));
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
END_TEST

START_TEST(test_budget_resumes_a_long_chain)
{
	unsigned n = BALLOON_PFN_BUDGET + 1000;
	uint64_t a = pages(1, 0xAB);
	uint32_t *pfns = malloc(4ULL * n);
	struct balloon_counters cnt;

	for (unsigned i = 0; i < n; i++)
		pfns[i] = (uint32_t)(a / PAGE);
	bring_up(ALL, 4);
	send_pfns(0, pfns, n);
	free(pfns);
	/* First callback: the budget, and a re-kick instead of the rest. */
	balloon_kick(dev, 0);
	ck_assert(rekicked(0));
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 0);
	ck_assert_uint_eq(counters().inflated_pages, BALLOON_PFN_BUDGET);
	ck_assert_uint_ge(serve(), 1);
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 1);
	cnt = counters();
	ck_assert_uint_eq(cnt.inflated_pages, n);
}
END_TEST

START_TEST(test_pause_cuts_a_long_chain)
{
	unsigned n = BALLOON_PFN_BUDGET + 10;
	uint64_t a = pages(1, 0xAB);
	uint32_t *pfns = malloc(4ULL * n);

	for (unsigned i = 0; i < n; i++)
		pfns[i] = (uint32_t)(a / PAGE);
	bring_up(ALL, 4);
	send_pfns(0, pfns, n);
	free(pfns);
	balloon_kick(dev, 0);
	ck_assert(rekicked(0));
	balloon_pause(dev);
	/* Returned at once, nothing in flight; paused kicks do nothing. */
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 1);
	ck_assert_uint_eq(counters().cut_chains, 1);
	memset(mock_mem_ptr(&mem, a, PAGE), 0x11, PAGE);
	send_pfns(0, (uint32_t[]){ (uint32_t)(a / PAGE) }, 1);
	kick(0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 1);
	ck_assert(all_equal(a, PAGE, 0x11));
	balloon_resume(dev);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 2);
	ck_assert(all_equal(a, PAGE, 0));
}
END_TEST

/* A stats buffer: entries (tag, value), plus `extra` raw bytes. */
static uint16_t send_stats(const uint16_t *tags, const uint64_t *vals, unsigned n, unsigned extra)
{
	uint64_t gpa = mock_mem_alloc(&mem, BALLOON_STAT_SIZE * n + extra, 2);
	uint8_t *p = mock_mem_ptr(&mem, gpa, BALLOON_STAT_SIZE * n + extra);
	struct mock_buf buf = { .gpa = gpa, .len = BALLOON_STAT_SIZE * n + extra };

	for (unsigned i = 0; i < n; i++) {
		wr16(p + BALLOON_STAT_SIZE * i, tags[i]);
		wr64(p + BALLOON_STAT_SIZE * i + 2, vals[i]);
	}
	memset(p + BALLOON_STAT_SIZE * n, 0x05, extra);
	return mock_vq_add_chain(&mq[2], &buf, 1);
}

START_TEST(test_stats)
{
	uint16_t tags[] = { BALLOON_S_MEMFREE, BALLOON_S_MEMTOT, 999, BALLOON_S_MEMFREE,
			    BALLOON_S_DIRECT_RECLAIM };
	uint64_t vals[] = { 100, 8 << 20, 7, 200, UINT64_MAX };
	struct balloon_stats s;
	uint16_t head, head2;
	json_t *q, *st;

	bring_up(ALL, 4);
	/* The driver primes the queue with its first stats. */
	head = send_stats(tags, vals, 5, 7);
	kick(2);
	serve();
	balloon_get_stats(dev, &s);
	ck_assert_uint_eq(s.val[BALLOON_S_MEMFREE], 200);	/* last wins */
	ck_assert_uint_eq(s.val[BALLOON_S_MEMTOT], 8 << 20);
	ck_assert_uint_eq(s.have, (1u << BALLOON_S_MEMFREE) | (1u << BALLOON_S_MEMTOT) |
				  (1u << BALLOON_S_DIRECT_RECLAIM));
	ck_assert_int_ne(s.last_update, 0);
	/* Held, not returned, until the host wants more; and the driver is
	 * asked to kick for the next one (EVENT_IDX: avail_event moved on). */
	ck_assert_uint_eq(mock_vq_used_idx(&mq[2]), 0);
	ck_assert_uint_eq(mock_vq_avail_event(&mq[2]), 1);
	q = balloon_query(dev);
	ck_assert_int_eq(json_integer_value(json_object_get(q, "actual")), MEM_SIZE);
	st = json_object_get(q, "stats");
	ck_assert_int_eq(json_integer_value(json_object_get(st, "stat-free-memory")), 200);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "stat-total-memory")), 8 << 20);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "stat-swap-in")), -1);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "stat-direct-reclaims")), INT64_MAX);
	ck_assert(json_is_integer(json_object_get(q, "last-update")));
	json_decref(q);
	/* The query asked for fresh stats: the buffer went back. */
	ck_assert_uint_eq(mock_vq_used_idx(&mq[2]), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[2], 0).id, head);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[2], 0).len, 0);
	ck_assert_uint_eq(used_irqs[2], 1);
	/* Asking again with nothing held does nothing. */
	balloon_request_stats(dev);
	ck_assert_uint_eq(mock_vq_used_idx(&mq[2]), 1);
	head2 = send_stats((uint16_t[]){ BALLOON_S_MEMFREE }, (uint64_t[]){ 300 }, 1, 0);
	kick(2);
	serve();
	balloon_get_stats(dev, &s);
	ck_assert_uint_eq(s.val[BALLOON_S_MEMFREE], 300);
	ck_assert_uint_eq(counters().stats_updates, 2);
	/* A second buffer while one is held: the first goes back. */
	send_stats((uint16_t[]){ BALLOON_S_MEMFREE }, (uint64_t[]){ 400 }, 1, 0);
	kick(2);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[2]), 2);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[2], 1).id, head2);
	balloon_get_stats(dev, &s);
	ck_assert_uint_eq(s.val[BALLOON_S_MEMFREE], 400);
}
END_TEST

START_TEST(test_stats_parse)
{
	struct balloon_stats s = { 0 };
	uint8_t buf[3 * BALLOON_STAT_SIZE + 9];

	memset(buf, 0, sizeof(buf));
	wr16(buf, BALLOON_S_SWAP_OUT);
	wr64(buf + 2, 0x0102030405060708ULL);
	wr16(buf + 10, BALLOON_S_NR);	/* unknown */
	wr16(buf + 20, 0xFFFF);
	wr16(buf + 30, BALLOON_S_MEMFREE);	/* truncated entry */
	ck_assert_uint_eq(balloon_stats_parse(&s, buf, sizeof(buf)), 1);
	ck_assert_uint_eq(s.val[BALLOON_S_SWAP_OUT], 0x0102030405060708ULL);
	ck_assert_uint_eq(s.have, 1u << BALLOON_S_SWAP_OUT);
	ck_assert_uint_eq(balloon_stats_parse(&s, buf, 0), 0);
	ck_assert_uint_eq(balloon_stats_parse(&s, buf, 9), 0);
	ck_assert_str_eq(balloon_stat_name(BALLOON_S_AVAIL), "stat-available-memory");
	ck_assert_ptr_null(balloon_stat_name(BALLOON_S_NR));
}
END_TEST

static void check_reporting(uint64_t want, unsigned q)
{
	uint64_t a = pages(4, 0xAB), keep = pages(1, 0xEE);
	struct mock_buf bufs[2] = {
		{ .gpa = a, .len = 2 * PAGE, .write = true },
		{ .gpa = a + 2 * PAGE, .len = 2 * PAGE, .write = true },
	};
	uint16_t head;

	bring_up(want, q + 1);
	head = mock_vq_add_chain(&mq[q], bufs, 2);
	kick(q);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[q]), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[q], 0).id, head);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[q], 0).len, 0);
	ck_assert_uint_eq(used_irqs[q], 1);
	ck_assert(all_equal(a, 4 * PAGE, 0));
	ck_assert(all_equal(keep, PAGE, 0xEE));
	ck_assert_uint_eq(counters().reported_bytes, 4 * PAGE);
	ck_assert_uint_eq(counters().discarded_bytes, 4 * PAGE);
}

START_TEST(test_reporting_after_stats)
{
	check_reporting(ALL, 3);
}
END_TEST

/* Without STATS_VQ the reporting queue moves up to index 2. */
START_TEST(test_reporting_without_stats)
{
	check_reporting(NO_STATS, 2);
}
END_TEST

START_TEST(test_partial_pages_in_reports_stay)
{
	uint64_t a = pages(2, 0xAB);
	struct mock_buf buf = { .gpa = a + 100, .len = 2 * PAGE - 200, .write = true };

	bring_up(ALL, 4);
	mock_vq_add_chain(&mq[3], &buf, 1);
	kick(3);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[3]), 1);
	ck_assert(all_equal(a, 2 * PAGE, 0xAB));	/* no whole page inside */
	ck_assert_uint_eq(counters().discarded_bytes, 0);
}
END_TEST

START_TEST(test_bad_chain_needs_reset)
{
	uint64_t a = pages(1, 0xAB);

	bring_up(ALL, 4);
	/* A descriptor whose next is out of range. */
	mock_vq_set_desc(&mq[0], 0, a, 4, VIRTQ_DESC_F_NEXT, BALLOON_QUEUE_SIZE + 5);
	mock_vq_publish(&mq[0], 0);
	kick(0);
	serve();
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_ge(config_irqs, 1);
	/* The other queues carry on. */
	send_pfns(1, (uint32_t[]){ (uint32_t)(a / PAGE) }, 1);
	kick(1);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[1]), 1);
	ck_assert(all_equal(a, PAGE, 0xAB));
}
END_TEST

START_TEST(test_reset_drops_the_balloon)
{
	uint16_t t = BALLOON_S_MEMFREE;
	uint64_t v = 1;

	bring_up(ALL, 4);
	ck_assert_int_eq(balloon_set_target(dev, MEM_SIZE / 2), 0);
	send_stats(&t, &v, 1, 0);
	kick(2);
	serve();
	write_actual(1024);
	ck_assert_uint_eq(events, 1);
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	ck_assert_uint_eq(cfg32(4), 0);
	ck_assert_uint_eq(events, 2);
	ck_assert_int_eq(last_event_actual, MEM_SIZE);
	/* The host's target stays; the held stats buffer is gone with the queue. */
	ck_assert_uint_eq(cfg32(0), (MEM_SIZE / 2) / PAGE);
	balloon_request_stats(dev);
	/* Up again: works as new. */
	bring_up(ALL, 4);
	send_pfns(0, (uint32_t[]){ (uint32_t)(pages(1, 1) / PAGE) }, 1);
	kick(0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 1);
}
END_TEST

START_TEST(test_kicks_before_driver_ok)
{
	uint64_t a = pages(1, 0xAB);
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, ALL);
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	for (unsigned q = 0; q < 4; q++) {
		mock_vq_init(&mq[q], &mem, BALLOON_QUEUE_SIZE);
		mock_vq_attach(&mq[q], virtio_dev_queue(dev, q));
	}
	send_pfns(0, (uint32_t[]){ (uint32_t)(a / PAGE) }, 1);
	kick(0);
	serve();	/* not active yet: nothing */
	ck_assert(all_equal(a, PAGE, 0xAB));
	st |= VIRTIO_STATUS_DRIVER_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	serve();	/* activation re-kicks every queue */
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 1);
	ck_assert(all_equal(a, PAGE, 0));
}
END_TEST

START_TEST(test_save_load)
{
	uint16_t t = BALLOON_S_MEMFREE;
	uint64_t v = 1;
	char err[128];
	json_t *s, *bad;
	uint16_t head;

	bring_up(ALL, 4);
	ck_assert_int_eq(balloon_set_target(dev, MEM_SIZE / 2), 0);
	head = send_stats(&t, &v, 1, 0);
	kick(2);
	serve();
	ck_assert_uint_eq(virtio_dev_queue(dev, 2)->inflight, 1);
	write_actual(77);
	balloon_pause(dev);
	s = balloon_save(dev);
	/* Nothing in flight in a snapshot: the stats buffer went back. */
	for (unsigned q = 0; q < dev->nr_queues; q++)
		ck_assert_uint_eq(virtio_dev_queue(dev, q)->inflight, 0);
	ck_assert_uint_eq(virtio_dev_queue(dev, 2)->last_avail_idx, 0);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "num-pages")), (MEM_SIZE / 2) / PAGE);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "actual")), 77);
	bad = json_deep_copy(s);
	json_object_set_new(bad, "num-pages", json_integer(1LL << 32));
	ck_assert_int_eq(balloon_load(dev, bad, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "num-pages"));
	json_object_set_new(bad, "num-pages", json_integer(1));
	json_object_set_new(bad, "actual", json_integer(-1));
	ck_assert_int_eq(balloon_load(dev, bad, err, sizeof(err)), -EINVAL);
	json_object_del(bad, "actual");
	ck_assert_int_eq(balloon_load(dev, bad, err, sizeof(err)), -EINVAL);
	json_decref(bad);
	bad = json_string("x");
	ck_assert_int_eq(balloon_load(dev, bad, err, sizeof(err)), -EINVAL);
	json_decref(bad);
	write_actual(5);
	ck_assert_int_eq(balloon_set_target(dev, MEM_SIZE), 0);
	ck_assert_int_eq(balloon_load(dev, s, err, sizeof(err)), 0);
	json_decref(s);
	ck_assert_uint_eq(cfg32(0), (MEM_SIZE / 2) / PAGE);
	ck_assert_uint_eq(cfg32(4), 77);
	/* Resume pops the stats buffer again; it goes back on request. */
	balloon_resume(dev);
	serve();
	ck_assert_uint_eq(virtio_dev_queue(dev, 2)->inflight, 1);
	ck_assert_uint_eq(counters().stats_updates, 2);
	balloon_request_stats(dev);
	ck_assert_uint_eq(mock_vq_used_idx(&mq[2]), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&mq[2], 0).id, head);
}
END_TEST

START_TEST(test_stats_timer)
{
	struct balloon_options o = { .stats_interval = 1 };
	struct evloop *loop = evloop_create();
	uint16_t t = BALLOON_S_MEMFREE;
	uint64_t v = 1;

	ck_assert_ptr_nonnull(loop);
	balloon_destroy(dev);
	/* A timer needs a loop. */
	ck_assert_int_eq(balloon_create(&ctx, &o, &dev), -EINVAL);
	ctx.loop = loop;
	make(&o);
	ck_assert_int_eq(balloon_start(dev), 0);
	bring_up(ALL, 3);
	send_stats(&t, &v, 1, 0);
	kick(2);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[2]), 0);
	for (int i = 0; i < 30 && mock_vq_used_idx(&mq[2]) == 0; i++)
		ck_assert_int_ge(evloop_run_once(loop, 100), 0);
	ck_assert_uint_eq(mock_vq_used_idx(&mq[2]), 1);
	balloon_stop(dev);
	balloon_destroy(dev);
	dev = NULL;
	evloop_destroy(loop);
}
END_TEST

/* The registration: one descriptor, its options table and QMP commands. */
START_TEST(test_registration_and_options)
{
	const struct virtio_device_desc *d = virtio_device_find("virtio-balloon");
	const struct dev_option_table *t = dev_option_table_by_flag("balloon");
	struct balloon_options o;
	char err[256];
	json_t *ret = NULL;
	unsigned n = 0;

	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(d->device_id, VIRTIO_ID_BALLOON);
	ck_assert_uint_eq(d->pci_class, 0x00ff00);
	ck_assert_int_eq(d->io, VIRTIO_IO_MAIN_LOOP);
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_eq(t, d->options);
	ck_assert_ptr_eq(dev_option_table_by_json_key("balloon"), t);
	ck_assert_ptr_eq(dev_option_table_find("virtio-balloon"), t);
	ck_assert(t->arg_optional);
	ck_assert_uint_eq(t->max_instances, 1);

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(t, "", &o, err, sizeof(err)), 0);
	ck_assert(!o.deflate_on_oom && !o.free_page_reporting);
	ck_assert_uint_eq(o.stats_interval, 0);
	dev_options_free(t, &o);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(t, "deflate-on-oom=on,free-page-reporting=on,"
					   "stats-interval=5", &o, err, sizeof(err)), 0);
	ck_assert(o.deflate_on_oom && o.free_page_reporting);
	ck_assert_uint_eq(o.stats_interval, 5);
	dev_options_free(t, &o);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(t, "stats-interval=-1", &o, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(dev_options_parse(t, "size=4", &o, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(dev_options_parse(t, "deflate-on-oom=maybe", &o, err, sizeof(err)),
			 -EINVAL);

	for (const struct device_qmp_command *c = d->qmp; c->name; c++) {
		ck_assert(!strcmp(c->name, "balloon") || !strcmp(c->name, "query-balloon"));
		n++;
		/* No instance: QEMU's error, and nothing returned. */
		ck_assert_int_eq(c->fn(NULL, NULL, &ret, err, sizeof(err)), -ENODEV);
		ck_assert_str_eq(err, "No balloon device has been activated");
		ck_assert_ptr_null(ret);
	}
	ck_assert_uint_eq(n, 2);
}
END_TEST

static long rss_shmem_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssShmem: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* On a real memfd: inflated pages leave the file and this process's RSS. */
START_TEST(test_inflate_frees_memfd_pages)
{
	struct balloon_options o = { 0 };
	unsigned n = 1024;	/* 4 MiB */
	uint32_t *pfns = malloc(4ULL * n);
	struct stat before, after;
	long rss_before, rss_after;
	uint64_t a;

	memset(&mem, 0, sizeof(mem));
	ck_assert_int_eq(gm_init(&mem.gm, 16 << 20, false), 0);
	mem.size = 16 << 20;
	mem.next = 1 << 20;
	setup_ctx(&mem.gm);
	make(&o);
	bring_up(ALL, 3);
	a = pages(n, 0x5A);
	for (unsigned i = 0; i < n; i++)
		pfns[i] = (uint32_t)(a / PAGE) + (i ^ 1);	/* not quite in order */
	send_pfns(0, pfns, n);
	free(pfns);
	ck_assert_int_eq(fstat(mem.gm.memfd, &before), 0);
	rss_before = rss_shmem_kb();
	kick(0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq[0]), 1);
	ck_assert_int_eq(fstat(mem.gm.memfd, &after), 0);
	rss_after = rss_shmem_kb();
	/* The device's used-ring writes may touch a page or two first. */
	ck_assert_int_ge((before.st_blocks - after.st_blocks) * 512, (long)((n - 4) * PAGE));
	if (rss_before >= 0)
		ck_assert_int_ge(rss_before - rss_after, (long)((n - 4) * PAGE / 1024));
	ck_assert_uint_eq(counters().discarded_bytes, n * PAGE);
	/* They read as zeros and come back on touch. */
	ck_assert(all_equal(a, n * PAGE, 0));
	memset(mock_mem_ptr(&mem, a, PAGE), 1, PAGE);
	ck_assert_int_eq(fstat(mem.gm.memfd, &after), 0);
	balloon_destroy(dev);
	dev = NULL;
	gm_destroy(&mem.gm);
	memset(&mem, 0, sizeof(mem));
}
END_TEST

static Suite *balloon_suite(void)
{
	Suite *s = suite_create("virtio-balloon");
	TCase *tc = tcase_create("device");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_features_queues_config);
	tcase_add_test(tc, test_target_and_actual);
	tcase_add_test(tc, test_inflate_discards_and_counts);
	tcase_add_test(tc, test_hostile_pfns_ignored);
	tcase_add_test(tc, test_budget_resumes_a_long_chain);
	tcase_add_test(tc, test_pause_cuts_a_long_chain);
	tcase_add_test(tc, test_stats);
	tcase_add_test(tc, test_stats_parse);
	tcase_add_test(tc, test_reporting_after_stats);
	tcase_add_test(tc, test_reporting_without_stats);
	tcase_add_test(tc, test_partial_pages_in_reports_stay);
	tcase_add_test(tc, test_bad_chain_needs_reset);
	tcase_add_test(tc, test_reset_drops_the_balloon);
	tcase_add_test(tc, test_kicks_before_driver_ok);
	tcase_add_test(tc, test_save_load);
	tcase_add_test(tc, test_stats_timer);
	suite_add_tcase(s, tc);
	tc = tcase_create("registration");
	tcase_add_test(tc, test_registration_and_options);
	suite_add_tcase(s, tc);
	tc = tcase_create("memfd");
	tcase_add_test(tc, test_inflate_frees_memfd_pages);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(balloon_suite());
}
