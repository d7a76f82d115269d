/* virtio-console: the core driven through two mock driver queues (receiveq
 * and transmitq), with a capture buffer as the host side. The device has no
 * thread: the test plays the event loop and calls virtio_console_kick(). */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "base/evloop.h"
#include "devices/chardev/chardev.h"
#include "devices/options.h"
#include "devices/pci/pci.h"
#include "devices/virtio/console/console.h"
#include "devices/virtio/registry.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"
#include "helpers/stderr_capture.h"
#include "vmm/config.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(8ULL << 20)
#define ALL_FEATURES	(~0ULL)
#define NO_EVENT_IDX	(~VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX))
#define RXQ		VIRTIO_CONSOLE_RXQ
#define TXQ		VIRTIO_CONSOLE_TXQ
#define OUT_MAX		(2u << 20)

static struct mock_mem mem;
static struct mock_vq rxq, txq;
static struct virtio_console *cons;
static struct virtio_device *dev;
static unsigned used_irqs[2], config_irqs;
static unsigned pauses, resumes;
static uint8_t *out;
static size_t out_len;

static size_t sink_room = SIZE_MAX;	/* bytes the sink takes before it stalls */

static size_t sink_write(void *opaque, const void *buf, size_t len)
{
	ck_assert_ptr_eq(opaque, &out);
	if (len > sink_room)
		len = sink_room;
	if (sink_room != SIZE_MAX)
		sink_room -= len;
	ck_assert_uint_le(len, OUT_MAX - out_len);
	memcpy(out + out_len, buf, len);
	out_len += len;
	return len;
}

static void sink_pause(void *opaque)
{
	(void)opaque;
	pauses++;
}

static void sink_resume(void *opaque)
{
	(void)opaque;
	resumes++;
}

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	ck_assert_uint_lt(q, 2);
	used_irqs[q]++;
}

static void on_config(struct virtio_device *d)
{
	(void)d;
	config_irqs++;
}

static void setup(void)
{
	static const struct virtio_console_io io = {
		.write = sink_write,
		.pause_input = sink_pause,
		.resume_input = sink_resume,
		.opaque = &out,
	};

	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	out = malloc(OUT_MAX);
	ck_assert_ptr_nonnull(out);
	out_len = 0;
	ck_assert_int_eq(virtio_console_create(&cons, &mem.gm, &io), 0);
	dev = virtio_console_virtio(cons);
	dev->notify_used = on_used;
	dev->notify_config = on_config;
	used_irqs[0] = used_irqs[1] = config_irqs = 0;
	pauses = resumes = 0;
	sink_room = SIZE_MAX;
}

static void teardown(void)
{
	virtio_console_destroy(cons);
	cons = NULL;
	free(out);
	mock_mem_destroy(&mem);
}

/* What the event loop does with one kick of queue q. Returns callbacks. */
static unsigned serve(unsigned q)
{
	unsigned calls = 1;

	while (virtio_console_kick(cons, q)) {
		calls++;
		ck_assert_uint_lt(calls, 1000);
	}
	return calls;
}

static void kick(unsigned q)
{
	virtio_dev_queue_notify(dev, q);
	serve(q);
}

/* Reset .. DRIVER_OK with both queues on fresh rings; then the activation
 * kicks are served. */
static void bring_up_sizes(uint64_t want, uint16_t rx_size, uint16_t tx_size)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE;

	mock_vq_init(&rxq, &mem, rx_size);
	mock_vq_init(&txq, &mem, tx_size);
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	st |= VIRTIO_STATUS_DRIVER;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, virtio_dev_host_features(dev) & want);
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_FEATURES_OK);
	ck_assert(virtio_dev_queue_writable(dev));
	mock_vq_attach(&rxq, virtio_dev_queue(dev, RXQ));
	mock_vq_attach(&txq, virtio_dev_queue(dev, TXQ));
	st |= VIRTIO_STATUS_DRIVER_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev), st);
	serve(RXQ);
	serve(TXQ);
}

static void bring_up(uint64_t want)
{
	bring_up_sizes(want, VIRTIO_CONSOLE_QUEUE_SIZE, VIRTIO_CONSOLE_QUEUE_SIZE);
}

static void reset_dev(void)
{
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
}

static uint64_t data_buf(const void *data, uint32_t len)
{
	uint64_t gpa = mock_mem_alloc(&mem, len, 8);

	mock_mem_write(&mem, gpa, data, len);
	return gpa;
}

static uint64_t fill_buf(uint32_t len, uint8_t v)
{
	uint64_t gpa = mock_mem_alloc(&mem, len, 8);

	memset(mock_mem_ptr(&mem, gpa, len), v, len);
	return gpa;
}

/* Queue one TX chain carrying s, split into nseg readable descriptors. */
static uint16_t tx_str(const char *s, unsigned nseg, bool indirect)
{
	uint32_t len = (uint32_t)strlen(s), off = 0;
	uint64_t gpa = data_buf(s, len);
	struct mock_buf b[8];

	ck_assert_uint_le(nseg, 8);
	ck_assert_uint_ge(len, nseg);
	for (unsigned i = 0; i < nseg; i++) {
		uint32_t n = i + 1 == nseg ? len - off : len / nseg;

		b[i] = (struct mock_buf){ gpa + off, n, false };
		off += n;
	}
	return indirect ? mock_vq_add_indirect(&txq, b, nseg) : mock_vq_add_chain(&txq, b, nseg);
}

static void check_out(const char *s)
{
	ck_assert_uint_eq(out_len, strlen(s));
	ck_assert(memcmp(out, s, out_len) == 0);
}

static void check_used(struct mock_vq *mq, uint16_t i, uint16_t head, uint32_t len)
{
	struct virtq_used_elem e = mock_vq_used_elem(mq, i);

	ck_assert_uint_eq(e.id, head);
	ck_assert_uint_eq(e.len, len);
}

static void check_mem(uint64_t gpa, const void *want, uint32_t len)
{
	ck_assert(memcmp(mock_mem_ptr(&mem, gpa, len), want, len) == 0);
}

static void input(const char *s)
{
	virtio_console_input(cons, (const uint8_t *)s, strlen(s));
}

/* ---- config space and features ---- */

static uint32_t cfg_read(uint64_t off, size_t len)
{
	uint8_t b[8];
	uint32_t v = 0;

	ck_assert_uint_le(len, 4);
	memset(b, 0xAA, sizeof(b));
	virtio_dev_config_read(dev, off, b, len);
	memcpy(&v, b, len);
	for (size_t i = len; i < sizeof(b); i++)
		ck_assert_uint_eq(b[i], 0xAA);	/* nothing past len */
	return le32toh(v);
}

START_TEST(test_features_and_config)
{
	struct virtio_console_config cfg;
	uint64_t f = virtio_dev_host_features(dev);
	uint32_t v;

	ck_assert_uint_eq(f, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
			     VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE) |
			     VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
			     VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC));
	ck_assert_uint_eq(dev->ops->device_id, VIRTIO_ID_CONSOLE);
	ck_assert_uint_eq(dev->ops->config_size, sizeof(cfg));
	ck_assert_uint_eq(sizeof(cfg), 12);
	ck_assert_uint_eq(dev->nr_queues, 2);
	ck_assert_uint_eq(virtio_dev_queue(dev, RXQ)->max_size, VIRTIO_CONSOLE_QUEUE_SIZE);
	ck_assert_uint_eq(virtio_dev_queue(dev, TXQ)->max_size, VIRTIO_CONSOLE_QUEUE_SIZE);
	ck_assert_ptr_null(virtio_dev_queue(dev, 2));

	/* F_SIZE not offered: cols and rows read 0. F_MULTIPORT not offered:
	 * max_nr_ports is 1 (one port). emerg_wr is write-only: 0. */
	ck_assert_uint_eq(f & VIRTIO_BIT(VIRTIO_CONSOLE_F_SIZE), 0);
	ck_assert_uint_eq(f & VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT), 0);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_COLS, 2), 0);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_ROWS, 2), 0);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_MAX_NR_PORTS, 4), 1);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_MAX_NR_PORTS, 1), 1);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_MAX_NR_PORTS + 1, 1), 0);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_EMERG_WR, 4), 0);
	memset(&cfg, 0xAA, sizeof(cfg));
	virtio_dev_config_read(dev, 0, &cfg, sizeof(cfg));
	ck_assert_uint_eq(cfg.cols, 0);
	ck_assert_uint_eq(cfg.rows, 0);
	ck_assert_uint_eq(le32toh(cfg.max_nr_ports), 1);
	ck_assert_uint_eq(cfg.emerg_wr, 0);

	/* Bounds: anything not wholly inside the 12 bytes reads zeros. */
	ck_assert_uint_eq(cfg_read(4, 4), 1);
	ck_assert_uint_eq(cfg_read(10, 4), 0);
	ck_assert_uint_eq(cfg_read(11, 2), 0);
	ck_assert_uint_eq(cfg_read(12, 1), 0);
	ck_assert_uint_eq(cfg_read(12, 4), 0);
	ck_assert_uint_eq(cfg_read(4096, 4), 0);
	ck_assert_uint_eq(cfg_read(UINT64_MAX, 4), 0);
	ck_assert_uint_eq(cfg_read(UINT64_MAX - 3, 4), 0);
	ck_assert_uint_eq(cfg_read(4, 0), 0);
	{
		uint8_t big[64];

		memset(big, 0xAA, sizeof(big));
		virtio_dev_config_read(dev, 0, big, sizeof(big));
		for (unsigned i = 0; i < sizeof(big); i++)
			ck_assert_uint_eq(big[i], 0);
	}

	/* Writes to the read-only fields change nothing. */
	v = htole32(0x12345678);
	virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_COLS, &v, 4);
	virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_MAX_NR_PORTS, &v, 4);
	virtio_dev_config_write(dev, 10, &v, 4);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_COLS, 4), 0);
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_MAX_NR_PORTS, 4), 1);
	ck_assert_uint_eq(out_len, 0);
}
END_TEST

/* emerg_wr prints its low byte, only once EMERG_WRITE is negotiated. */
START_TEST(test_emerg_write)
{
	uint32_t v = htole32('!');
	uint8_t c = 'x';

	virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_EMERG_WR, &v, 4);
	ck_assert_uint_eq(out_len, 0);
	bring_up(~VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE));
	virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_EMERG_WR, &v, 4);
	ck_assert_uint_eq(out_len, 0);
	reset_dev();
	bring_up(ALL_FEATURES);
	ck_assert(virtio_dev_has_feature(dev, VIRTIO_CONSOLE_F_EMERG_WRITE));
	v = htole32(0x4241u << 8 | 'E');	/* the low byte only */
	virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_EMERG_WR, &v, 4);
	virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_EMERG_WR, &c, 1);
	virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_EMERG_WR + 1, &c, 1);	/* not emerg_wr */
	check_out("Ex");
	ck_assert_uint_eq(cfg_read(VIRTIO_CONSOLE_CFG_EMERG_WR, 4), 0);
}
END_TEST

START_TEST(test_status_machine)
{
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE |
					       VIRTIO_STATUS_DRIVER_OK), -EINVAL);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE |
					       VIRTIO_STATUS_DRIVER), 0);
	virtio_dev_set_driver_features(dev, 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE |
					       VIRTIO_STATUS_DRIVER |
					       VIRTIO_STATUS_FEATURES_OK), -EINVAL);
	ck_assert(!virtio_dev_queue_writable(dev));
	/* Not active: kicks and input do nothing but buffer the input. */
	ck_assert(!virtio_console_kick(cons, TXQ));
	ck_assert(!virtio_console_kick(cons, RXQ));
	ck_assert(!virtio_console_kick(cons, 7));
	input("early");
	ck_assert_uint_eq(virtio_console_input_pending(cons), 5);
	reset_dev();
	bring_up(ALL_FEATURES);
	ck_assert_uint_eq(dev->driver_features, virtio_dev_host_features(dev));
	ck_assert_uint_eq(virtio_console_input_pending(cons), 5);
}
END_TEST

/* ---- transmitq ---- */

START_TEST(test_tx_in_order)
{
	uint16_t h[5];
	char big[10000 + 1];

	bring_up(ALL_FEATURES);
	h[0] = tx_str("hello ", 1, false);
	h[1] = tx_str("world", 2, false);
	h[2] = tx_str(", from", 3, true);
	h[3] = tx_str(" the guest\n", 1, true);
	kick(TXQ);
	check_out("hello world, from the guest\n");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 4);
	for (uint16_t i = 0; i < 4; i++)
		check_used(&txq, i, h[i], 0);	/* nothing written to a TX buffer */
	ck_assert_uint_eq(used_irqs[TXQ], 1);
	ck_assert_uint_eq(used_irqs[RXQ], 0);

	/* A chain longer than the device's copy buffer, then more. */
	for (unsigned i = 0; i < sizeof(big) - 1; i++)
		big[i] = (char)('a' + i % 26);
	big[sizeof(big) - 1] = 0;
	out_len = 0;
	h[4] = tx_str(big, 3, false);
	tx_str("tail", 1, false);
	kick(TXQ);
	ck_assert_uint_eq(out_len, sizeof(big) - 1 + 4);
	ck_assert(memcmp(out, big, sizeof(big) - 1) == 0);
	ck_assert(memcmp(out + sizeof(big) - 1, "tail", 4) == 0);
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 6);
	check_used(&txq, 4, h[4], 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
END_TEST

/* TX posted before DRIVER_OK goes out on activation. */
START_TEST(test_tx_before_driver_ok)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	mock_vq_init(&rxq, &mem, 16);
	mock_vq_init(&txq, &mem, 16);
	tx_str("early bird\n", 2, false);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	mock_vq_attach(&rxq, virtio_dev_queue(dev, RXQ));
	mock_vq_attach(&txq, virtio_dev_queue(dev, TXQ));
	ck_assert(!virtio_console_kick(cons, TXQ));
	ck_assert_uint_eq(out_len, 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK), 0);
	serve(TXQ);
	check_out("early bird\n");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 1);
}
END_TEST

/* More than VIRTIO_CONSOLE_TX_BUDGET bytes: the first callback stops at
 * the budget and re-kicks; nothing is lost or reordered. */
START_TEST(test_tx_budget_rekicks)
{
	enum { CH = 64 * 1024, N = VIRTIO_CONSOLE_TX_BUDGET / CH + 2 };
	uint64_t gpa = mock_mem_alloc(&mem, (uint64_t)N * CH, 8);
	uint8_t *p = mock_mem_ptr(&mem, gpa, (uint64_t)N * CH);
	eventfd_t v;

	for (size_t i = 0; i < (size_t)N * CH; i++)
		p[i] = (uint8_t)(i * 131 + (i >> 16));
	bring_up(ALL_FEATURES);
	for (unsigned i = 0; i < N; i++) {
		struct mock_buf b = { gpa + (uint64_t)i * CH, CH, false };

		mock_vq_add_chain(&txq, &b, 1);
	}
	virtio_dev_queue_notify(dev, TXQ);
	ck_assert(virtio_console_kick(cons, TXQ));
	ck_assert_uint_eq(mock_vq_used_idx(&txq), VIRTIO_CONSOLE_TX_BUDGET / CH);
	ck_assert_uint_eq(out_len, VIRTIO_CONSOLE_TX_BUDGET);
	ck_assert_int_eq(eventfd_read(virtio_dev_kick_fd(dev, TXQ), &v), 0);
	ck_assert(!virtio_console_kick(cons, TXQ));
	ck_assert_uint_eq(mock_vq_used_idx(&txq), N);
	ck_assert_uint_eq(out_len, (size_t)N * CH);
	ck_assert(memcmp(out, p, out_len) == 0);
}
END_TEST

/* One indirect chain of many large descriptors, all pointing at the same
 * buffer: each kick sends at most the budget, however long the chain, and
 * the chain completes only when all of it has gone out. */
START_TEST(test_tx_budget_within_one_chain)
{
	enum { SEG = 1 << 20, NSEG = 24 };
	uint64_t gpa = mock_mem_alloc(&mem, SEG, 8);
	uint8_t *p = mock_mem_ptr(&mem, gpa, SEG);
	struct mock_buf b[NSEG];
	size_t total = 0;
	unsigned kicks = 0;
	eventfd_t v;
	bool more;

	for (size_t i = 0; i < SEG; i++)
		p[i] = (uint8_t)(i * 7 + 3);
	bring_up(ALL_FEATURES);
	for (unsigned i = 0; i < NSEG; i++)
		b[i] = (struct mock_buf){ gpa, SEG, false };
	mock_vq_add_indirect(&txq, b, NSEG);
	virtio_dev_queue_notify(dev, TXQ);
	do {
		out_len = 0;
		more = virtio_console_kick(cons, TXQ);
		ck_assert_uint_le(out_len, VIRTIO_CONSOLE_TX_BUDGET);
		for (size_t i = 0; i < out_len; i++)
			if (out[i] != p[(total + i) % SEG])
				ck_abort_msg("byte %zu differs", total + i);
		total += out_len;
		if (more) {
			if (total < (size_t)SEG * NSEG)
				ck_assert_uint_eq(mock_vq_used_idx(&txq), 0);
			ck_assert_int_eq(eventfd_read(virtio_dev_kick_fd(dev, TXQ), &v), 0);
		}
		ck_assert_uint_lt(++kicks, 1000);
	} while (more);
	ck_assert_uint_eq(total, (size_t)SEG * NSEG);
	ck_assert_uint_ge(kicks, (size_t)SEG * NSEG / VIRTIO_CONSOLE_TX_BUDGET);
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 1);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
END_TEST

/* A backend that stops taking output: the kick returns at once, nothing
 * is lost, the chain stays in flight, and the next kick after the backend
 * has room carries on where it stopped. A reset drops what was held. */
START_TEST(test_tx_backend_stall_defers)
{
	uint16_t h;

	bring_up(ALL_FEATURES);
	sink_room = 5;
	h = tx_str("hello, stalled world", 2, false);
	tx_str("!", 1, false);
	kick(TXQ);
	check_out("hello");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 0);
	kick(TXQ);	/* still full: nothing more, no spin */
	check_out("hello");
	sink_room = 3;
	kick(TXQ);
	check_out("hello, s");
	sink_room = SIZE_MAX;
	kick(TXQ);
	check_out("hello, stalled world!");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 2);
	check_used(&txq, 0, h, 0);

	/* Held output does not survive a reset. */
	sink_room = 2;
	tx_str("abcdef", 1, false);
	kick(TXQ);
	reset_dev();
	sink_room = SIZE_MAX;
	out_len = 0;
	bring_up(ALL_FEATURES);
	tx_str("xyz", 1, false);
	kick(TXQ);
	check_out("xyz");
}
END_TEST

/* While the VM is paused the device touches neither queue: output stays
 * in the guest's buffers, input stays buffered; resume serves both. */
START_TEST(test_pause_leaves_queues_alone)
{
	uint64_t rx = mock_mem_alloc(&mem, 16, 8);
	struct mock_buf b = { rx, 16, true };

	bring_up(ALL_FEATURES);
	virtio_console_pause(cons);
	tx_str("later", 1, false);
	kick(TXQ);
	mock_vq_add_chain(&rxq, &b, 1);
	input("in");
	kick(RXQ);
	ck_assert_uint_eq(out_len, 0);
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 0);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 0);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 2);
	virtio_console_resume(cons);
	serve(RXQ);
	serve(TXQ);
	check_out("later");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 1);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 1);
	check_mem(rx, "in", 2);
}
END_TEST

/* A device-writable descriptor on the transmitq: nothing of the chain is
 * sent, it comes back with len 0, and the device needs a reset. */
START_TEST(test_tx_writable_descriptor_is_an_error)
{
	uint64_t ro = data_buf("secret", 6), wr = fill_buf(8, 0x77);
	struct mock_buf b[2] = { { ro, 6, false }, { wr, 8, true } };
	uint8_t sevens[8];
	uint16_t h;

	memset(sevens, 0x77, sizeof(sevens));
	bring_up(ALL_FEATURES);
	tx_str("before ", 1, false);
	h = mock_vq_add_chain(&txq, b, 2);
	tx_str("after", 1, false);
	kick(TXQ);
	check_out("before ");
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_eq(config_irqs, 1);
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 2);
	check_used(&txq, 1, h, 0);
	check_mem(wr, sevens, 8);
	ck_assert_uint_eq(used_irqs[TXQ], 1);
	/* Stopped until reset. */
	kick(TXQ);
	check_out("before ");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 2);

	/* A writable-only chain, through an indirect table, after a reset. */
	reset_dev();
	bring_up(ALL_FEATURES);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
	h = mock_vq_add_indirect(&txq, &b[1], 1);
	kick(TXQ);
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_eq(config_irqs, 2);
	check_used(&txq, 0, h, 0);
	check_mem(wr, sevens, 8);

	reset_dev();
	bring_up(ALL_FEATURES);
	tx_str("fine again\n", 2, false);
	kick(TXQ);
	check_out("before fine again\n");
}
END_TEST

/* ---- receiveq ---- */

START_TEST(test_rx_partial_fill)
{
	uint64_t a = fill_buf(16, 0xEE);
	struct mock_buf b = { a, 16, true };
	uint8_t want[16];
	uint16_t h;

	bring_up(ALL_FEATURES);
	h = mock_vq_add_chain(&rxq, &b, 1);
	kick(RXQ);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 0);	/* no input yet: buffer kept */
	input("abc");
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 1);
	check_used(&rxq, 0, h, 3);
	memset(want, 0xEE, sizeof(want));
	memcpy(want, "abc", 3);
	check_mem(a, want, 16);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 0);
	ck_assert_uint_eq(used_irqs[RXQ], 1);
	ck_assert_uint_eq(used_irqs[TXQ], 0);
	ck_assert_uint_eq(out_len, 0);
}
END_TEST

/* More input than buffers: the buffers fill in order, the rest waits for
 * the next buffers, none is dropped. */
START_TEST(test_rx_more_input_than_buffers)
{
	uint64_t a = fill_buf(4, 0), b = fill_buf(4, 0), c = fill_buf(3, 0), d = fill_buf(5, 0);
	uint64_t e = fill_buf(32, 0);
	struct mock_buf ba = { a, 4, true }, bb = { b, 4, true };
	struct mock_buf split[2] = { { c, 3, true }, { d, 5, true } };
	struct mock_buf be = { e, 32, true };
	uint16_t h[4];

	bring_up(ALL_FEATURES);
	h[0] = mock_vq_add_chain(&rxq, &ba, 1);
	h[1] = mock_vq_add_indirect(&rxq, &bb, 1);
	kick(RXQ);
	input("0123456789");
	input("ABCDEF");
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 2);
	check_used(&rxq, 0, h[0], 4);
	check_used(&rxq, 1, h[1], 4);
	check_mem(a, "0123", 4);
	check_mem(b, "4567", 4);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 8);
	/* EVENT_IDX: the device wants a kick as soon as a buffer comes. */
	ck_assert_uint_eq(mock_vq_avail_event(&rxq), 2);

	h[2] = mock_vq_add_chain(&rxq, split, 2);
	kick(RXQ);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 3);
	check_used(&rxq, 2, h[2], 8);
	check_mem(c, "89A", 3);
	check_mem(d, "BCDEF", 5);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 0);

	/* A buffer with nothing to put in it waits for input. */
	h[3] = mock_vq_add_chain(&rxq, &be, 1);
	kick(RXQ);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 3);
	input("z");
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 4);
	check_used(&rxq, 3, h[3], 1);
	check_mem(e, "z", 1);
	ck_assert_uint_eq(pauses, 0);
}
END_TEST

/* Input that arrives before the driver is ready is delivered once it is. */
START_TEST(test_rx_input_before_driver_ok)
{
	uint64_t a = fill_buf(64, 0);
	struct mock_buf b = { a, 64, true };
	uint16_t h;

	input("typed ahead");
	bring_up_sizes(ALL_FEATURES, 8, 8);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 11);
	h = mock_vq_add_chain(&rxq, &b, 1);
	kick(RXQ);
	check_used(&rxq, 0, h, 11);
	check_mem(a, "typed ahead", 11);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 0);
}
END_TEST

/* Flow control: pause when the input buffer is nearly full, resume once the
 * guest has drained it to half; bytes beyond the buffer are dropped. */
START_TEST(test_rx_flow_control)
{
	size_t n = VIRTIO_CONSOLE_INBUF - CHARDEV_READ_MAX + 1;
	uint8_t *blob = malloc(VIRTIO_CONSOLE_INBUF + 100);
	uint64_t gpa = mock_mem_alloc(&mem, VIRTIO_CONSOLE_INBUF, 8);
	struct mock_buf b = { gpa, 16384, true };

	ck_assert_ptr_nonnull(blob);
	for (size_t i = 0; i < VIRTIO_CONSOLE_INBUF + 100; i++)
		blob[i] = (uint8_t)(i * 7 + (i >> 8));
	bring_up(ALL_FEATURES);
	virtio_console_input(cons, blob, n - 1);
	ck_assert_uint_eq(pauses, 0);
	virtio_console_input(cons, blob + n - 1, 1);
	ck_assert_uint_eq(pauses, 1);
	ck_assert_uint_eq(virtio_console_input_pending(cons), n);

	/* Not yet down to half: still paused. */
	mock_vq_add_chain(&rxq, &b, 1);
	kick(RXQ);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq, 0).len, b.len);
	ck_assert_uint_eq(resumes, 0);
	check_mem(gpa, blob, b.len);
	ck_assert_uint_gt(virtio_console_input_pending(cons), VIRTIO_CONSOLE_INBUF / 2);
	/* Now it is. */
	b.gpa += b.len;
	b.len = (uint32_t)(n - b.len);
	mock_vq_add_chain(&rxq, &b, 1);
	kick(RXQ);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq, 1).len, b.len);
	ck_assert_uint_eq(resumes, 1);
	check_mem(gpa, blob, (uint32_t)n);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 0);

	/* A caller that ignores pause: the buffer keeps INBUF bytes, in order,
	 * across the ring's wrap, and drops the rest. */
	virtio_console_input(cons, blob, VIRTIO_CONSOLE_INBUF + 100);
	ck_assert_uint_eq(virtio_console_input_pending(cons), VIRTIO_CONSOLE_INBUF);
	ck_assert_uint_eq(pauses, 2);
	b = (struct mock_buf){ gpa, VIRTIO_CONSOLE_INBUF, true };
	mock_vq_add_chain(&rxq, &b, 1);
	kick(RXQ);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq, 2).len, VIRTIO_CONSOLE_INBUF);
	check_mem(gpa, blob, VIRTIO_CONSOLE_INBUF);
	ck_assert_uint_eq(resumes, 2);
	free(blob);
}
END_TEST

/* A device-readable descriptor on the receiveq: nothing is written, the
 * chain comes back with len 0, the device needs a reset, and the input
 * waits for the next driver. */
START_TEST(test_rx_readable_descriptor_is_an_error)
{
	uint64_t ro = fill_buf(8, 0x55), wr = fill_buf(8, 0x66), ok = fill_buf(8, 0);
	struct mock_buf b[2] = { { ro, 8, false }, { wr, 8, true } };
	struct mock_buf good = { ok, 8, true };
	uint8_t fives[8], sixes[8];
	uint16_t h;

	memset(fives, 0x55, sizeof(fives));
	memset(sixes, 0x66, sizeof(sixes));
	bring_up(ALL_FEATURES);
	h = mock_vq_add_chain(&rxq, b, 2);
	mock_vq_add_chain(&rxq, &good, 1);
	kick(RXQ);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 0);	/* not looked at without input */
	input("xyz");
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_eq(config_irqs, 1);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 1);
	check_used(&rxq, 0, h, 0);
	check_mem(ro, fives, 8);
	check_mem(wr, sixes, 8);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 3);
	input("!");
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 1);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 4);

	reset_dev();
	bring_up(ALL_FEATURES);
	h = mock_vq_add_chain(&rxq, &good, 1);
	kick(RXQ);
	check_used(&rxq, 0, h, 4);
	check_mem(ok, "xyz!", 4);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 0);
}
END_TEST

/* ---- malformed rings ---- */

START_TEST(test_loop_needs_reset)
{
	uint64_t a = fill_buf(8, 0), c = fill_buf(8, 0);
	uint64_t s = data_buf("loop", 4);
	uint8_t zero[8] = { 0 };

	for (unsigned q = 0; q < 2; q++) {
		struct mock_vq *mq = q == RXQ ? &rxq : &txq;

		if (q)
			reset_dev();
		config_irqs = 0;
		bring_up(ALL_FEATURES);
		/* 0 -> 1 -> 0 -> ... */
		if (q == RXQ) {
			mock_vq_set_desc(mq, 0, a, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
			mock_vq_set_desc(mq, 1, c, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
		} else {
			mock_vq_set_desc(mq, 0, s, 4, VIRTQ_DESC_F_NEXT, 1);
			mock_vq_set_desc(mq, 1, s, 4, VIRTQ_DESC_F_NEXT, 0);
		}
		mq->next_desc = 2;
		mock_vq_publish(mq, 0);
		kick(q);
		if (q == RXQ) {
			ck_assert_uint_eq(mock_vq_used_idx(mq), 0);
			input("data");
		}
		ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
		ck_assert_uint_eq(config_irqs, 1);
		ck_assert_uint_eq(mock_vq_used_idx(mq), 1);
		check_used(mq, 0, 0, 0);
		check_mem(a, zero, 8);
		check_mem(c, zero, 8);
		ck_assert_uint_eq(out_len, 0);
		/* And no crash or spin on more kicks. */
		kick(q);
		kick(1 - q);
		ck_assert_uint_eq(config_irqs, 1);
	}
	ck_assert_uint_eq(virtio_console_input_pending(cons), 4);

	/* Both directions work again after a reset. */
	reset_dev();
	bring_up(ALL_FEATURES);
	{
		struct mock_buf b = { a, 8, true };

		mock_vq_add_chain(&rxq, &b, 1);
	}
	kick(RXQ);
	check_mem(a, "data", 4);
	tx_str("ok\n", 1, false);
	kick(TXQ);
	check_out("ok\n");
}
END_TEST

/* A reset stops both queues; buffers published afterwards are not used. */
START_TEST(test_reset_stops_queues)
{
	uint64_t a = fill_buf(8, 0);
	struct mock_buf b = { a, 8, true };
	uint8_t zero[8] = { 0 };

	bring_up(NO_EVENT_IDX);
	tx_str("one ", 1, false);
	kick(TXQ);
	ck_assert_uint_eq(used_irqs[TXQ], 1);
	reset_dev();
	tx_str("two ", 1, false);
	mock_vq_add_chain(&rxq, &b, 1);
	virtio_dev_queue_notify(dev, TXQ);
	virtio_dev_queue_notify(dev, RXQ);
	ck_assert(!virtio_console_kick(cons, TXQ));
	ck_assert(!virtio_console_kick(cons, RXQ));
	input("in");
	check_out("one ");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 1);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 0);
	check_mem(a, zero, 8);
	ck_assert_uint_eq(virtio_console_input_pending(cons), 2);

	for (int i = 0; i < 3; i++) {
		bring_up_sizes(i % 2 ? NO_EVENT_IDX : ALL_FEATURES, 16, 32);
		tx_str("again ", 2, false);
		kick(TXQ);
		reset_dev();
	}
	check_out("one again again again ");
}
END_TEST

/* Without EVENT_IDX: an interrupt per callback that used buffers, none for
 * one that didn't, and one (not two) when a callback ends in an error. */
START_TEST(test_no_event_idx_interrupts)
{
	uint64_t wr = fill_buf(4, 0);
	struct mock_buf b[2] = { { data_buf("bad", 3), 3, false }, { wr, 4, true } };

	bring_up(NO_EVENT_IDX);
	ck_assert(!virtio_dev_has_feature(dev, VIRTIO_RING_F_EVENT_IDX));
	kick(TXQ);
	kick(RXQ);
	input("x");
	ck_assert_uint_eq(used_irqs[TXQ], 0);
	ck_assert_uint_eq(used_irqs[RXQ], 0);
	tx_str("a", 1, false);
	kick(TXQ);
	ck_assert_uint_eq(used_irqs[TXQ], 1);
	tx_str("b", 1, false);
	mock_vq_add_chain(&txq, b, 2);
	kick(TXQ);
	check_out("ab");
	ck_assert_uint_eq(used_irqs[TXQ], 2);
	ck_assert_uint_eq(config_irqs, 1);
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 3);
}
END_TEST

/* ---- the device type: options, registry, snapshots ---- */

static const struct virtio_device_desc *console_type(void)
{
	const struct virtio_device_desc *d = virtio_device_find("virtio-console");

	ck_assert_ptr_nonnull(d);
	return d;
}

START_TEST(test_options_table)
{
	const struct dev_option_table *t = dev_option_table_by_flag("virtio-console");
	struct { char *backend; } o;
	char err[128];

	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_eq(t, console_type()->options);
	ck_assert_str_eq(t->type, "virtio-console");
	ck_assert_uint_eq(t->max_instances, 1);
	ck_assert_uint_eq(t->size, sizeof(o));
	for (unsigned i = 0; i < 3; i++) {
		static const char *const good[] = { "stdio", "none", "file:/tmp/x" };

		memset(&o, 0, sizeof(o));
		ck_assert_msg(dev_options_parse(t, good[i], &o, err, sizeof(err)) == 0, "%s", err);
		ck_assert_str_eq(o.backend, good[i]);
		dev_options_free(t, &o);
	}
	ck_assert_int_eq(dev_options_parse(t, "backend=none", &o, err, sizeof(err)), 0);
	dev_options_free(t, &o);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(t, "pty", &o, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "backend: 'pty' is not stdio, none or file:PATH");
	ck_assert_int_eq(dev_options_parse(t, "file:", &o, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(dev_options_parse(t, "", &o, err, sizeof(err)), -EINVAL);
}
END_TEST

/* A snapshot while the backend is full: the chain goes back to the ring
 * with what was sent, and nothing is sent twice or lost. */
START_TEST(test_save_hands_back_held_chain)
{
	const struct virtio_device_desc *d = console_type();
	char err[128] = "";
	json_t *saved;

	bring_up(ALL_FEATURES);
	sink_room = 5;
	tx_str("hello, stalled world", 2, false);
	tx_str("!", 1, false);
	kick(TXQ);
	check_out("hello");
	ck_assert_uint_eq(virtio_dev_queue(dev, TXQ)->inflight, 1);
	virtio_console_pause(cons);
	saved = d->save(dev);
	ck_assert_ptr_nonnull(saved);
	ck_assert_uint_eq(virtio_dev_queue(dev, TXQ)->inflight, 0);
	ck_assert_int_eq(json_integer_value(json_object_get(saved, "tx_skip")), 5);
	/* The VM goes on: the chain comes again, without its first 5 bytes. */
	virtio_console_resume(cons);
	sink_room = SIZE_MAX;
	serve(TXQ);
	check_out("hello, stalled world!");
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 2);

	/* Restored into a fresh device: the skip applies to the next chain. */
	ck_assert_int_eq(d->load(dev, saved, err, sizeof(err)), 0);
	out_len = 0;
	tx_str("12345678", 1, false);
	kick(TXQ);
	check_out("678");
	json_object_set_new(saved, "tx_skip", json_integer(-1));
	ck_assert_int_eq(d->load(dev, saved, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "tx_skip"));
	json_decref(saved);
}
END_TEST

START_TEST(test_registry_realize)
{
	const struct device_desc *dd = &console_type()->dev_desc;
	struct pci_host_params p = { .mmio32_base = 0xC0000000ULL, .mmio32_size = 0x10000000ULL };
	struct pci_host host;
	struct vm_config cfg;
	struct device_ctx ctx;
	void *state = NULL;

	config_defaults(&cfg);
	cfg.devices[cfg.nr_devices++] = (struct device_spec){ "virtio-console", "none" };
	ck_assert_int_eq(pci_host_init(&host, &p), 0);
	ctx = (struct device_ctx){ .cfg = &cfg, .mem = &mem.gm, .pci = &host,
				   .loop = evloop_create() };
	ck_assert_ptr_nonnull(ctx.loop);
	ck_assert_int_eq(dd->realize(dd, &ctx, &state), 0);
	ck_assert_uint_eq(virtio_set_count(state), 1);
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 1, 0, PCI_REVISION_ID, 4) >> 8, 0x078000);
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 1, 0, PCI_DEVICE_ID, 2), 0x1043);
	dd->destroy(state);
	/* A backend that cannot open: one line, nothing left. */
	cfg.devices[0].args = "file:/nonexistent/ember/dir/out";
	state = NULL;
	stderr_capture_begin();
	ck_assert_int_ne(dd->realize(dd, &ctx, &state), 0);
	ck_assert_uint_eq(stderr_capture_end(), 1);
	ck_assert_ptr_null(state);
	ck_assert_ptr_null(pci_host_device(&host, 1));
	evloop_destroy(ctx.loop);
	pci_host_destroy(&host);
}
END_TEST

static Suite *console_suite(void)
{
	Suite *s = suite_create("virtio-console");
	TCase *cfg = tcase_create("config");
	TCase *tx = tcase_create("transmitq");
	TCase *rx = tcase_create("receiveq");
	TCase *bad = tcase_create("malformed");
	TCase *type = tcase_create("device type");

	tcase_add_checked_fixture(cfg, setup, teardown);
	tcase_add_test(cfg, test_features_and_config);
	tcase_add_test(cfg, test_emerg_write);
	tcase_add_test(cfg, test_status_machine);
	suite_add_tcase(s, cfg);

	tcase_add_checked_fixture(tx, setup, teardown);
	tcase_add_test(tx, test_tx_in_order);
	tcase_add_test(tx, test_tx_before_driver_ok);
	tcase_add_test(tx, test_tx_budget_rekicks);
	tcase_add_test(tx, test_tx_budget_within_one_chain);
	tcase_add_test(tx, test_tx_backend_stall_defers);
	tcase_add_test(tx, test_pause_leaves_queues_alone);
	tcase_add_test(tx, test_tx_writable_descriptor_is_an_error);
	suite_add_tcase(s, tx);

	tcase_add_checked_fixture(rx, setup, teardown);
	tcase_add_test(rx, test_rx_partial_fill);
	tcase_add_test(rx, test_rx_more_input_than_buffers);
	tcase_add_test(rx, test_rx_input_before_driver_ok);
	tcase_add_test(rx, test_rx_flow_control);
	tcase_add_test(rx, test_rx_readable_descriptor_is_an_error);
	suite_add_tcase(s, rx);

	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_add_test(bad, test_loop_needs_reset);
	tcase_add_test(bad, test_reset_stops_queues);
	tcase_add_test(bad, test_no_event_idx_interrupts);
	suite_add_tcase(s, bad);

	tcase_add_checked_fixture(type, setup, teardown);
	tcase_add_test(type, test_options_table);
	tcase_add_test(type, test_save_hands_back_held_chain);
	tcase_add_test(type, test_registry_realize);
	suite_add_tcase(s, type);
	return s;
}

int main(void)
{
	return ck_run_suite(console_suite());
}
