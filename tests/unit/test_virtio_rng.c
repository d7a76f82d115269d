/* virtio-rng: the core driven through the mock driver queue. The device has
 * no thread: the test plays the event loop and calls virtio_rng_kick(). */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>

#include "base/evloop.h"
#include "devices/options.h"
#include "devices/pci/pci.h"
#include "devices/virtio/registry.h"
#include "devices/virtio/rng/rng.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"
#include "vmm/config.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(8ULL << 20)
#define ALL_FEATURES	(~0ULL)
#define NO_EVENT_IDX	(~VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX))
#define GUARD		16
#define GUARD_BYTE	0xCC

static struct mock_mem mem;
static struct mock_vq mq;
static struct virtio_rng *rng;
static struct virtio_device *dev;
static unsigned used_irqs, config_irqs;

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	ck_assert_uint_eq(q, 0);
	used_irqs++;
}

static void on_config(struct virtio_device *d)
{
	(void)d;
	config_irqs++;
}

static void setup(void)
{
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	ck_assert_int_eq(virtio_rng_create(&rng, &mem.gm), 0);
	dev = virtio_rng_virtio(rng);
	dev->notify_used = on_used;
	dev->notify_config = on_config;
	used_irqs = config_irqs = 0;
}

static void teardown(void)
{
	virtio_rng_destroy(rng);
	rng = NULL;
	mock_mem_destroy(&mem);
}

static void bring_up(uint64_t want)
{
	mock_vq_init(&mq, &mem, VIRTIO_RNG_QUEUE_SIZE);
	ck_assert_int_eq(mock_virtio_bring_up(dev, &mq, want), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

/* What the event loop does: one callback per kick, until no re-kick.
 * Returns the number of callbacks. */
static unsigned serve(void)
{
	unsigned calls = 1;

	while (virtio_rng_kick(rng)) {
		calls++;
		ck_assert_uint_lt(calls, 1000);
	}
	return calls;
}

static bool kick_pending(void)
{
	eventfd_t v;

	return eventfd_read(virtio_dev_kick_fd(dev, 0), &v) == 0 && v > 0;
}

/* A buffer of len bytes with GUARD guard bytes either side, all `fill`
 * inside and GUARD_BYTE outside. Returns the buffer's gpa. */
static uint64_t guarded_buf(uint32_t len, uint8_t fill)
{
	uint64_t gpa = mock_mem_alloc(&mem, len + 2 * GUARD, 16) + GUARD;

	memset(mock_mem_ptr(&mem, gpa - GUARD, GUARD), GUARD_BYTE, GUARD);
	memset(mock_mem_ptr(&mem, gpa, len), fill, len);
	memset(mock_mem_ptr(&mem, gpa + len, GUARD), GUARD_BYTE, GUARD);
	return gpa;
}

static void check_guards(uint64_t gpa, uint32_t len)
{
	const uint8_t *lo = mock_mem_ptr(&mem, gpa - GUARD, GUARD);
	const uint8_t *hi = mock_mem_ptr(&mem, gpa + len, GUARD);

	for (unsigned i = 0; i < GUARD; i++) {
		ck_assert_uint_eq(lo[i], GUARD_BYTE);
		ck_assert_uint_eq(hi[i], GUARD_BYTE);
	}
}

static bool all_equal(uint64_t gpa, uint32_t len, uint8_t v)
{
	const uint8_t *p = mock_mem_ptr(&mem, gpa, len);

	for (uint32_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void check_used(uint16_t i, uint16_t head, uint32_t len)
{
	struct virtq_used_elem e = mock_vq_used_elem(&mq, i);

	ck_assert_uint_eq(e.id, head);
	ck_assert_uint_eq(e.len, len);
}

START_TEST(test_features_and_config)
{
	uint8_t buf[8];

	ck_assert_uint_eq(virtio_dev_host_features(dev),
			  VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
			  VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC));
	ck_assert_uint_eq(dev->ops->device_id, VIRTIO_ID_RNG);
	ck_assert_uint_eq(dev->nr_queues, 1);
	ck_assert_uint_eq(virtio_dev_queue(dev, 0)->max_size, VIRTIO_RNG_QUEUE_SIZE);
	ck_assert_ptr_null(virtio_dev_queue(dev, 1));
	/* No config space: every read is zeros, writes go nowhere. */
	memset(buf, 0xAA, sizeof(buf));
	virtio_dev_config_read(dev, 0, buf, sizeof(buf));
	for (unsigned i = 0; i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], 0);
	virtio_dev_config_write(dev, 0, buf, sizeof(buf));
}
END_TEST

START_TEST(test_status_machine)
{
	/* Out of order and without VERSION_1: refused. */
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_DRIVER), -EINVAL);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE |
					       VIRTIO_STATUS_DRIVER), 0);
	virtio_dev_set_driver_features(dev, VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX));
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE |
					       VIRTIO_STATUS_DRIVER |
					       VIRTIO_STATUS_FEATURES_OK), -EINVAL);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_FEATURES_OK, 0);
	ck_assert(!virtio_dev_queue_writable(dev));
	/* Unoffered bits are masked away. */
	virtio_dev_set_driver_features(dev, ~0ULL);
	ck_assert_uint_eq(dev->driver_features, virtio_dev_host_features(dev));
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	/* A kick before DRIVER_OK does nothing. */
	mock_vq_init(&mq, &mem, VIRTIO_RNG_QUEUE_SIZE);
	ck_assert(!virtio_rng_kick(rng));
	bring_up(ALL_FEATURES);
	ck_assert_uint_eq(dev->driver_features, virtio_dev_host_features(dev));
	ck_assert(!virtio_dev_queue_writable(dev));
}
END_TEST

/* A readable header (ignored) and three writable segments of odd sizes:
 * exactly the writable bytes are filled, nothing around them. */
START_TEST(test_fills_exactly_the_writable_bytes)
{
	static const uint32_t lens[3] = { 5, 64, 300 };
	uint64_t ro = guarded_buf(16, 0x5A);
	struct mock_buf b[4] = { { ro, 16, false } };
	uint32_t total = 0;
	uint16_t head;

	for (unsigned i = 0; i < 3; i++) {
		b[i + 1] = (struct mock_buf){ guarded_buf(lens[i], 0), lens[i], true };
		total += lens[i];
	}
	bring_up(ALL_FEATURES);
	ck_assert_uint_eq(serve(), 1);	/* the activation kick: nothing yet */
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 0);
	head = mock_vq_add_chain(&mq, b, 4);
	virtio_dev_queue_notify(dev, 0);
	ck_assert_uint_eq(serve(), 1);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	check_used(0, head, total);
	ck_assert(all_equal(ro, 16, 0x5A));
	check_guards(ro, 16);
	for (unsigned i = 0; i < 3; i++) {
		check_guards(b[i + 1].gpa, lens[i]);
		/* 5 zero bytes from getrandom: 2^-40. */
		ck_assert(!all_equal(b[i + 1].gpa, lens[i], 0));
	}
	ck_assert_uint_eq(virtio_rng_bytes(rng), total);
	ck_assert_uint_eq(used_irqs, 1);
	ck_assert_uint_eq(config_irqs, 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
END_TEST

/* One chain gets at most VIRTIO_RNG_REQ_MAX bytes, in descriptor order. */
START_TEST(test_caps_request_size)
{
	uint32_t big = 2 * VIRTIO_RNG_REQ_MAX, half = VIRTIO_RNG_REQ_MAX * 3 / 4;
	uint64_t a = guarded_buf(big, GUARD_BYTE);
	uint64_t b1 = guarded_buf(half, GUARD_BYTE), b2 = guarded_buf(half, GUARD_BYTE);
	struct mock_buf one = { a, big, true };
	struct mock_buf two[2] = { { b1, half, true }, { b2, half, true } };
	uint32_t rest = VIRTIO_RNG_REQ_MAX - half;
	uint16_t h1, h2;

	bring_up(ALL_FEATURES);
	h1 = mock_vq_add_chain(&mq, &one, 1);
	h2 = mock_vq_add_chain(&mq, two, 2);
	virtio_dev_queue_notify(dev, 0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 2);
	check_used(0, h1, VIRTIO_RNG_REQ_MAX);
	check_used(1, h2, VIRTIO_RNG_REQ_MAX);
	ck_assert(!all_equal(a, VIRTIO_RNG_REQ_MAX, GUARD_BYTE));
	ck_assert(all_equal(a + VIRTIO_RNG_REQ_MAX, big - VIRTIO_RNG_REQ_MAX, GUARD_BYTE));
	ck_assert(!all_equal(b1, half, GUARD_BYTE));
	ck_assert(!all_equal(b2, rest, GUARD_BYTE));
	ck_assert(all_equal(b2 + rest, half - rest, GUARD_BYTE));
	ck_assert_uint_eq(virtio_rng_bytes(rng), 2ULL * VIRTIO_RNG_REQ_MAX);
}
END_TEST

/* Several chains, direct and indirect, published at once: all served in
 * order by one callback, with one interrupt. */
START_TEST(test_several_chains)
{
	enum { N = 12 };
	uint16_t heads[N];
	uint32_t lens[N];
	uint64_t gpas[N];

	bring_up(ALL_FEATURES);
	serve();
	for (unsigned i = 0; i < N; i++) {
		struct mock_buf b[2];

		lens[i] = 17 + 61 * i;
		gpas[i] = guarded_buf(lens[i], 0);
		if (i % 3 == 2) {
			b[0] = (struct mock_buf){ gpas[i], 8, true };
			b[1] = (struct mock_buf){ gpas[i] + 8, lens[i] - 8, true };
			heads[i] = mock_vq_add_indirect(&mq, b, 2);
		} else if (i % 3 == 1) {
			b[0] = (struct mock_buf){ gpas[i], 9, true };
			b[1] = (struct mock_buf){ gpas[i] + 9, lens[i] - 9, true };
			heads[i] = mock_vq_add_chain(&mq, b, 2);
		} else {
			b[0] = (struct mock_buf){ gpas[i], lens[i], true };
			heads[i] = mock_vq_add_chain(&mq, b, 1);
		}
	}
	virtio_dev_queue_notify(dev, 0);
	ck_assert_uint_eq(serve(), 1);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), N);
	for (unsigned i = 0; i < N; i++) {
		check_used((uint16_t)i, heads[i], lens[i]);
		check_guards(gpas[i], lens[i]);
		ck_assert(!all_equal(gpas[i], lens[i], 0));
	}
	ck_assert_uint_eq(used_irqs, 1);
	/* EVENT_IDX: the device asks to be kicked for the next buffer. */
	ck_assert_uint_eq(mock_vq_avail_event(&mq), N);
}
END_TEST

/* More than VIRTIO_RNG_BUDGET bytes queued: the first callback stops at the
 * budget and re-kicks itself; the next one finishes. */
START_TEST(test_budget_rekicks)
{
	enum { N = VIRTIO_RNG_BUDGET / VIRTIO_RNG_REQ_MAX + 4 };
	uint64_t gpa = mock_mem_alloc(&mem, (uint64_t)N * VIRTIO_RNG_REQ_MAX, 16);

	bring_up(ALL_FEATURES);
	serve();
	for (unsigned i = 0; i < N; i++) {
		struct mock_buf b = { gpa + (uint64_t)i * VIRTIO_RNG_REQ_MAX, VIRTIO_RNG_REQ_MAX,
				      true };

		mock_vq_add_chain(&mq, &b, 1);
	}
	virtio_dev_queue_notify(dev, 0);
	ck_assert(virtio_rng_kick(rng));
	ck_assert_uint_eq(mock_vq_used_idx(&mq), VIRTIO_RNG_BUDGET / VIRTIO_RNG_REQ_MAX);
	ck_assert_uint_eq(virtio_rng_bytes(rng), VIRTIO_RNG_BUDGET);
	ck_assert(kick_pending());
	ck_assert(!virtio_rng_kick(rng));
	ck_assert_uint_eq(mock_vq_used_idx(&mq), N);
	for (unsigned i = 0; i < N; i++)
		ck_assert_uint_eq(mock_vq_used_elem(&mq, (uint16_t)i).len, VIRTIO_RNG_REQ_MAX);
	ck_assert(!kick_pending());
}
END_TEST

/* Only device-readable descriptors: nothing is written, the chain is
 * completed with used length 0, and the device carries on. */
START_TEST(test_readable_only_chain)
{
	uint64_t r1 = guarded_buf(32, 0x11), r2 = guarded_buf(8, 0x22), w = guarded_buf(48, 0);
	struct mock_buf ro[2] = { { r1, 32, false }, { r2, 8, false } };
	struct mock_buf ok = { w, 48, true };
	uint16_t h1, h2, h3;

	bring_up(ALL_FEATURES);
	h1 = mock_vq_add_chain(&mq, ro, 2);
	h2 = mock_vq_add_indirect(&mq, ro, 1);
	h3 = mock_vq_add_chain(&mq, &ok, 1);
	virtio_dev_queue_notify(dev, 0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 3);
	check_used(0, h1, 0);
	check_used(1, h2, 0);
	check_used(2, h3, 48);
	ck_assert(all_equal(r1, 32, 0x11));
	ck_assert(all_equal(r2, 8, 0x22));
	check_guards(r1, 32);
	check_guards(r2, 8);
	ck_assert(!all_equal(w, 48, 0));
	ck_assert_uint_eq(virtio_rng_bytes(rng), 48);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
	ck_assert_uint_eq(config_irqs, 0);
}
END_TEST

/* A looping chain: returned with len 0, NEEDS_RESET, a config interrupt, no
 * hang; the queue stays stopped until a reset, and then works again. */
START_TEST(test_loop_needs_reset_then_reset)
{
	uint64_t a = guarded_buf(64, 0), b = guarded_buf(64, 0), c = guarded_buf(64, 0);
	struct mock_buf later = { c, 64, true };
	uint16_t h;

	bring_up(ALL_FEATURES);
	serve();
	mock_vq_set_desc(&mq, 0, a, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	mock_vq_set_desc(&mq, 1, b, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	mq.next_desc = 2;
	mock_vq_publish(&mq, 0);
	virtio_dev_queue_notify(dev, 0);
	ck_assert_uint_eq(serve(), 1);
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(config_irqs, 1);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	check_used(0, 0, 0);
	ck_assert_uint_eq(used_irqs, 1);
	ck_assert_uint_eq(virtio_rng_bytes(rng), 0);
	ck_assert(all_equal(a, 64, 0));
	ck_assert(all_equal(b, 64, 0));

	/* Broken until reset: later buffers are left alone. */
	mock_vq_add_chain(&mq, &later, 1);
	virtio_dev_queue_notify(dev, 0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert_uint_eq(config_irqs, 1);
	ck_assert(all_equal(c, 64, 0));

	/* Reset, and a new driver on fresh rings; a buffer posted before
	 * DRIVER_OK is served on activation. */
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
	ck_assert(!virtio_rng_kick(rng));
	mock_vq_init(&mq, &mem, 8);
	h = mock_vq_add_chain(&mq, &later, 1);
	ck_assert_int_eq(mock_virtio_bring_up(dev, &mq, NO_EVENT_IDX), 0);
	ck_assert(!virtio_dev_has_feature(dev, VIRTIO_RING_F_EVENT_IDX));
	ck_assert(kick_pending());
	virtio_dev_queue_notify(dev, 0);
	serve();
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	check_used(0, h, 64);
	ck_assert(!all_equal(c, 64, 0));
	ck_assert_uint_eq(used_irqs, 2);
}
END_TEST

/* Other chains the queue rejects: next out of range, and a nested
 * indirect table. */
START_TEST(test_bad_chains_need_reset)
{
	for (int round = 0; round < 2; round++) {
		uint64_t a = guarded_buf(32, 0);

		if (round)
			ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
		config_irqs = 0;
		bring_up(ALL_FEATURES);
		serve();
		if (round == 0) {
			mock_vq_set_desc(&mq, 0, a, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
					 VIRTIO_RNG_QUEUE_SIZE);
		} else {
			uint64_t t = mock_mem_alloc(&mem, 16, 16);

			mock_write_desc(&mem, t, 0, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
			mock_vq_set_desc(&mq, 0, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
		}
		mock_vq_publish(&mq, 0);
		virtio_dev_queue_notify(dev, 0);
		serve();
		ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
		ck_assert_uint_eq(config_irqs, 1);
		ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
		check_used(0, 0, 0);
		ck_assert(all_equal(a, 32, 0));
	}
}
END_TEST

/* A reset in the middle: chains published after it are not touched; a
 * reactivated device on the same memory starts again from index 0. */
START_TEST(test_reset_and_reactivate)
{
	uint64_t w = guarded_buf(40, 0);
	struct mock_buf b = { w, 40, true };

	bring_up(ALL_FEATURES);
	mock_vq_add_chain(&mq, &b, 1);
	virtio_dev_queue_notify(dev, 0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);

	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	memset(mock_mem_ptr(&mem, w, 40), 0, 40);
	mock_vq_add_chain(&mq, &b, 1);
	virtio_dev_queue_notify(dev, 0);
	ck_assert(!virtio_rng_kick(rng));
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert(all_equal(w, 40, 0));

	for (int i = 0; i < 3; i++) {
		bring_up(i % 2 ? NO_EVENT_IDX : ALL_FEATURES);
		mock_vq_add_chain(&mq, &b, 1);
		virtio_dev_queue_notify(dev, 0);
		serve();
		ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
		ck_assert_uint_eq(mock_vq_used_elem(&mq, 0).len, 40);
		ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	}
	ck_assert_uint_eq(virtio_rng_bytes(rng), 4 * 40);
}
END_TEST

/* Without EVENT_IDX the driver's NO_INTERRUPT flag is honoured. */
START_TEST(test_no_interrupt_flag)
{
	uint64_t w = guarded_buf(16, 0);
	struct mock_buf b = { w, 16, true };

	bring_up(NO_EVENT_IDX);
	serve();
	mock_vq_set_avail_flags(&mq, VIRTQ_AVAIL_F_NO_INTERRUPT);
	mock_vq_add_chain(&mq, &b, 1);
	virtio_dev_queue_notify(dev, 0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert_uint_eq(used_irqs, 0);
	mock_vq_set_avail_flags(&mq, 0);
	mock_vq_add_chain(&mq, &b, 1);
	virtio_dev_queue_notify(dev, 0);
	serve();
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 2);
	ck_assert_uint_eq(used_irqs, 1);
	ck_assert_uint_eq(mock_vq_used_flags(&mq) & VIRTQ_USED_F_NO_NOTIFY, 0);
}
END_TEST

/* ---- the device type: --rng through the registry ---- */

START_TEST(test_options_table)
{
	const struct virtio_device_desc *d = virtio_device_find("virtio-rng");
	const struct dev_option_table *t = dev_option_table_by_flag("rng");
	char o[8], err[128];

	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_eq(d->options, t);
	ck_assert_str_eq(t->json_key, "rng");
	ck_assert(t->arg_optional);
	ck_assert_uint_eq(t->max_instances, 1);
	ck_assert_uint_eq(t->nr_opts, 0);
	ck_assert_int_eq(dev_options_parse(t, "", o, err, sizeof(err)), 0);
	ck_assert_int_eq(dev_options_parse(t, "x", o, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(d->io, VIRTIO_IO_MAIN_LOOP);
}
END_TEST

/* Realized from a device spec, served by kicks on the main loop. */
START_TEST(test_registry_main_loop)
{
	const struct device_desc *dd = device_find("virtio-rng");
	struct pci_host_params p = { .mmio32_base = 0xC0000000ULL, .mmio32_size = 0x10000000ULL };
	struct mock_buf b;
	struct pci_host host;
	struct vm_config cfg;
	struct device_ctx ctx;
	void *state = NULL;
	unsigned rounds = 0;

	config_defaults(&cfg);
	cfg.devices[cfg.nr_devices++] = (struct device_spec){ "virtio-rng", "" };
	ck_assert_int_eq(pci_host_init(&host, &p), 0);
	ctx = (struct device_ctx){ .cfg = &cfg, .mem = &mem.gm, .pci = &host,
				   .loop = evloop_create() };
	ck_assert_int_eq(dd->realize(dd, &ctx, &state), 0);
	ck_assert_uint_eq(virtio_set_count(state), 1);
	dev = virtio_set_device(state, 0);
	dev->notify_used = on_used;	/* in place of the transport's */
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 1, 0, PCI_DEVICE_ID, 2), 0x1044);
	mock_vq_init(&mq, &mem, VIRTIO_RNG_QUEUE_SIZE);
	ck_assert_int_eq(mock_virtio_bring_up(dev, &mq, ALL_FEATURES), 0);
	b = (struct mock_buf){ guarded_buf(64, 0), 64, true };
	mock_vq_add_chain(&mq, &b, 1);
	virtio_dev_queue_notify(dev, 0);
	while (mock_vq_used_idx(&mq) != 1 && rounds++ < 100)
		ck_assert_int_ge(evloop_run_once(ctx.loop, 100), 0);
	check_used(0, 0, 64);
	check_guards(b.gpa, 64);
	/* Paused: kicks are taken but the queue is left alone. */
	dd->pause(state);
	mock_vq_add_chain(&mq, &b, 1);
	virtio_dev_queue_notify(dev, 0);
	ck_assert_int_ge(evloop_run_once(ctx.loop, 50), 0);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	dd->resume(state);
	for (rounds = 0; mock_vq_used_idx(&mq) != 2 && rounds < 100; rounds++)
		ck_assert_int_ge(evloop_run_once(ctx.loop, 100), 0);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 2);
	dd->destroy(state);
	evloop_destroy(ctx.loop);
	pci_host_destroy(&host);
	dev = virtio_rng_virtio(rng);
}
END_TEST

static Suite *rng_suite(void)
{
	Suite *s = suite_create("virtio-rng");
	TCase *tc = tcase_create("device");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_features_and_config);
	tcase_add_test(tc, test_status_machine);
	tcase_add_test(tc, test_fills_exactly_the_writable_bytes);
	tcase_add_test(tc, test_caps_request_size);
	tcase_add_test(tc, test_several_chains);
	tcase_add_test(tc, test_budget_rekicks);
	tcase_add_test(tc, test_readable_only_chain);
	tcase_add_test(tc, test_loop_needs_reset_then_reset);
	tcase_add_test(tc, test_bad_chains_need_reset);
	tcase_add_test(tc, test_reset_and_reactivate);
	tcase_add_test(tc, test_no_interrupt_flag);
	tcase_add_test(tc, test_options_table);
	tcase_add_test(tc, test_registry_main_loop);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(rng_suite());
}
