/* virtio-vsock without /dev/vhost-vsock: the config space, CID checks and
 * the event queue Ember keeps (TRANSPORT_RESET held until the driver adds a
 * buffer, held while paused, dropped by a reset). The kernel rings need
 * the real device: the Linux suite's vsock test covers them. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "base/byteorder.h"
#include "devices/virtio/vsock/vsock.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(8ULL << 20)

static struct mock_mem mem;
static struct mock_vq evq;
static struct virtio_vsock *vs;
static struct virtio_device *dev;
static unsigned used_irqs;

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	ck_assert_uint_eq(q, VSOCK_QUEUE_EVENT);
	used_irqs++;
}

static void on_config(struct virtio_device *d)
{
	(void)d;
}

static void setup(void)
{
	struct device_ctx ctx = { 0 };
	char err[256] = "";

	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	ctx.mem = &mem.gm;
	ck_assert_int_eq(vsock_dev_create(&vs, &ctx, 42, -1, err, sizeof(err)), 0);
	dev = vsock_virtio(vs);
	dev->notify_used = on_used;
	dev->notify_config = on_config;
	used_irqs = 0;
}

static void teardown(void)
{
	vsock_dev_destroy(vs);
	vs = NULL;
	mock_mem_destroy(&mem);
}

/* The driver enables only the event queue (the kernel has the others). */
static void bring_up(void)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, virtio_dev_host_features(dev));
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	mock_vq_init(&evq, &mem, 8);
	mock_vq_attach(&evq, virtio_dev_queue(dev, VSOCK_QUEUE_EVENT));
	ck_assert_int_eq(virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK), 0);
}

static uint64_t add_event_buffer(uint32_t len)
{
	uint64_t gpa = mock_mem_alloc(&mem, len, 8);
	struct mock_buf b = { .gpa = gpa, .len = len, .write = true };

	memset(mock_mem_ptr(&mem, gpa, len), 0xcc, len);
	mock_vq_add_chain(&evq, &b, 1);
	return gpa;
}

START_TEST(test_config_and_features)
{
	uint8_t cfg[8];
	uint64_t f = virtio_dev_host_features(dev);

	virtio_dev_config_read(dev, 0, cfg, sizeof(cfg));
	ck_assert_uint_eq(rd64(cfg), 42);
	ck_assert_uint_eq(vsock_cid(vs), 42);
	ck_assert(f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert_uint_eq(dev->nr_queues, VSOCK_NR_QUEUES);
}
END_TEST

START_TEST(test_reserved_cids)
{
	struct device_ctx ctx = { .mem = &mem.gm };
	static const uint64_t bad[] = { 0, 1, 2, 0xffffffffULL, 1ULL << 40 };
	struct virtio_vsock *v;
	char err[256];

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		ck_assert_int_lt(vsock_dev_create(&v, &ctx, bad[i], -1, err, sizeof(err)), 0);
		ck_assert_ptr_null(v);
		ck_assert_ptr_nonnull(strstr(err, "reserved"));
	}
}
END_TEST

START_TEST(test_reset_event_held_until_buffer)
{
	uint64_t gpa;

	bring_up();
	vsock_transport_reset(vs);
	ck_assert(vsock_event_pending(vs));
	ck_assert_uint_eq(mock_vq_used_idx(&evq), 0);
	gpa = add_event_buffer(4);
	vsock_event_kick(vs);
	ck_assert(!vsock_event_pending(vs));
	ck_assert_uint_eq(mock_vq_used_idx(&evq), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&evq, 0).len, 4);
	ck_assert_uint_eq(rd32(mock_mem_ptr(&mem, gpa, 4)), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	ck_assert_uint_ge(used_irqs, 1);
	/* No second event without a second reset. */
	add_event_buffer(4);
	vsock_event_kick(vs);
	ck_assert_uint_eq(mock_vq_used_idx(&evq), 1);
}
END_TEST

START_TEST(test_small_buffer_returned_event_kept)
{
	bring_up();
	add_event_buffer(2);
	vsock_transport_reset(vs);
	ck_assert_uint_eq(mock_vq_used_idx(&evq), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&evq, 0).len, 0);
	ck_assert(vsock_event_pending(vs));
	add_event_buffer(8);
	vsock_event_kick(vs);
	ck_assert_uint_eq(mock_vq_used_idx(&evq), 2);
	ck_assert_uint_eq(mock_vq_used_elem(&evq, 1).len, 4);
	ck_assert(!vsock_event_pending(vs));
}
END_TEST

START_TEST(test_paused_holds_event)
{
	bring_up();
	add_event_buffer(4);
	vsock_dev_pause(vs);
	vsock_transport_reset(vs);
	ck_assert_uint_eq(mock_vq_used_idx(&evq), 0);
	vsock_dev_resume(vs);
	ck_assert_uint_eq(mock_vq_used_idx(&evq), 1);
	ck_assert(!vsock_event_pending(vs));
}
END_TEST

START_TEST(test_device_reset_drops_event)
{
	bring_up();
	vsock_transport_reset(vs);
	ck_assert(vsock_event_pending(vs));
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	ck_assert(!vsock_event_pending(vs));
}
END_TEST

START_TEST(test_broken_event_queue_needs_reset)
{
	bring_up();
	mock_vq_set_avail_idx(&evq, 100);	/* more than the queue size */
	vsock_transport_reset(vs);
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
}
END_TEST

static Suite *vsock_suite(void)
{
	Suite *s = suite_create("virtio-vsock");
	TCase *tc = tcase_create("device");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_config_and_features);
	tcase_add_test(tc, test_reserved_cids);
	tcase_add_test(tc, test_reset_event_held_until_buffer);
	tcase_add_test(tc, test_small_buffer_returned_event_kept);
	tcase_add_test(tc, test_paused_holds_event);
	tcase_add_test(tc, test_device_reset_drops_event);
	tcase_add_test(tc, test_broken_event_queue_needs_reset);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(vsock_suite());
}
