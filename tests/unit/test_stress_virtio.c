/* Multi-threaded stress: each virtio device driven the way the VMM drives
 * it, from several threads at once, for a fixed time. A "guest" thread
 * (what a vCPU does through the transport) brings the device up, queues
 * requests and resets it, often with requests in flight; a "main loop"
 * thread serves kicks and pauses/resumes the device (VM stop/cont); a
 * "monitor" thread polls statistics (QMP query-blockstats). Afterwards the
 * device must still work, and everything it produced must be what the
 * guest asked for. Built for ThreadSanitizer (make test-tsan) and ASan. */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "devices/virtio/blk/blk.h"
#include "devices/virtio/console/console.h"
#include "devices/virtio/rng/rng.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(16ULL << 20)
#define STRESS_MS	1500

static struct mock_mem mem;
static struct virtio_device *dev;
static int stop_flag;
static int bad;			/* set by a helper thread that saw something wrong */
static char bad_why[128];

static bool stopping(void)
{
	return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE);
}

static void fail_later(const char *why)
{
	if (!__atomic_exchange_n(&bad, 1, __ATOMIC_SEQ_CST))
		snprintf(bad_why, sizeof(bad_why), "%s", why);
}

static void check_helpers(void)
{
	ck_assert_msg(!__atomic_load_n(&bad, __ATOMIC_SEQ_CST), "%s", bad_why);
}

/* Rings at fixed addresses, rebuilt from zero for every driver instance:
 * the mock allocator is rewound to `mark` (nothing is in flight after a
 * reset, so the old buffers are free). */
static void rings_fresh(uint64_t mark, struct mock_vq *qs, unsigned nq, uint16_t size)
{
	mem.next = mark;
	for (unsigned i = 0; i < nq; i++)
		mock_vq_init(&qs[i], &mem, size);
	memset(mock_mem_ptr(&mem, mark, mem.next - mark), 0, mem.next - mark);
}

static void bring_up(struct mock_vq *qs, unsigned nq, uint64_t want)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE;

	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	st |= VIRTIO_STATUS_DRIVER;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, virtio_dev_host_features(dev) & want);
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	for (unsigned i = 0; i < nq; i++)
		mock_vq_attach(&qs[i], virtio_dev_queue(dev, i));
	st |= VIRTIO_STATUS_DRIVER_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev), st);
}

static void start_helpers(pthread_t *t, unsigned n, void *(**fn)(void *))
{
	__atomic_store_n(&stop_flag, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&bad, 0, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, fn[i], NULL), 0);
}

static void stop_helpers(pthread_t *t, unsigned n)
{
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	check_helpers();
}

/* ---- virtio-blk ---- */

#define BLK_REQS	8
#define BLK_DATA	4096

static struct blk_dev *blk;
static struct mock_vq bq;
static int irq_efd = -1;
static char path[64];
static int disk_fd = -1;

static void blk_on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
	(void)eventfd_write(irq_efd, 1);
}

static void blk_on_config(struct virtio_device *d)
{
	(void)d;
}

static void blk_setup_aio(const char *aio)
{
	char s[160], err[256];
	struct blk_opts o;

	strcpy(path, "/tmp/ember-stress-blk-XXXXXX");
	disk_fd = mkstemp(path);
	ck_assert_int_ge(disk_fd, 0);
	ck_assert_int_eq(ftruncate(disk_fd, 1 << 20), 0);
	irq_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(irq_efd, 0);
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	snprintf(s, sizeof(s), "path=%s,aio=%s", path, aio);
	ck_assert_msg(blk_parse_opts(s, &o, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(blk_create(&blk, &o, &mem.gm), 0);
	dev = blk_virtio(blk);
	dev->notify_used = blk_on_used;
	dev->notify_config = blk_on_config;
	ck_assert_int_eq(blk_start(blk), 0);
}

static void blk_teardown(void)
{
	blk_destroy(blk);
	blk = NULL;
	mock_mem_destroy(&mem);
	close(irq_efd);
	close(disk_fd);
	unlink(path);
}

/* Queue one request: header, one data buffer, status. */
static uint64_t blk_queue(uint32_t type, uint64_t sector, uint64_t data)
{
	struct {
		uint32_t type, ioprio;
		uint64_t sector;
	} h = { htole32(type), 0, htole64(sector) };
	uint64_t hdr = mock_mem_alloc(&mem, 16, 16), st = mock_mem_alloc(&mem, 1, 1);
	struct mock_buf b[3] = {
		{ hdr, 16, false },
		{ data, BLK_DATA, type == VIRTIO_BLK_T_IN },
		{ st, 1, true },
	};

	mock_mem_write(&mem, hdr, &h, sizeof(h));
	*(uint8_t *)mock_mem_ptr(&mem, st, 1) = 0xEE;
	mock_vq_add_chain(&bq, b, 3);
	return st;
}

static bool blk_wait_used(uint16_t n, int timeout_ms)
{
	int64_t end = monotonic_ms() + timeout_ms;

	while ((uint16_t)(mock_vq_used_idx(&bq) - n) > 0x8000) {
		struct pollfd p = { .fd = irq_efd, .events = POLLIN };
		eventfd_t v;

		if (monotonic_ms() > end)
			return false;
		poll(&p, 1, 10);
		(void)eventfd_read(irq_efd, &v);
	}
	return true;
}

static void *blk_monitor(void *arg)
{
	struct blk_stats prev = { 0 }, st;

	(void)arg;
	while (!stopping()) {
		blk_get_stats(blk, &st);
		if (st.requests < prev.requests || st.reads < prev.reads ||
		    st.writes < prev.writes || st.rd_bytes < prev.rd_bytes ||
		    st.wr_bytes < prev.wr_bytes)
			fail_later("blk statistics went backwards");
		prev = st;
	}
	return NULL;
}

static void *blk_stopcont(void *arg)
{
	unsigned i = 0;

	(void)arg;
	while (!stopping()) {
		blk_pause(blk);
		if (i++ % 4 == 0)
			usleep(500);
		blk_resume(blk);
		usleep(300);
	}
	return NULL;
}

static void blk_stress(const char *aio)
{
	void *(*fn[])(void *) = { blk_monitor, blk_stopcont };
	pthread_t t[2];
	uint64_t mark, st[BLK_REQS], data;
	int64_t end;
	unsigned iter = 0, completed = 0;
	uint8_t *p;

	blk_setup_aio(aio);
	mark = mem.next;
	start_helpers(t, 2, fn);
	end = monotonic_ms() + STRESS_MS;
	while (monotonic_ms() < end) {
		rings_fresh(mark, &bq, 1, 256);
		bring_up(&bq, 1, ~0ULL);
		for (unsigned i = 0; i < BLK_REQS; i++) {
			data = mock_mem_alloc(&mem, BLK_DATA, 512);
			memset(mock_mem_ptr(&mem, data, BLK_DATA), (int)(i + 1), BLK_DATA);
			st[i] = blk_queue(i & 1 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT,
					  (uint64_t)(i / 2) * (BLK_DATA / 512), data);
		}
		virtio_dev_queue_notify(dev, 0);
		/* Every third driver waits for its requests; the others reset
		 * the device under them, at varying points. */
		if (iter % 3 == 0) {
			ck_assert_msg(blk_wait_used(BLK_REQS, 20000), "requests never completed");
			for (unsigned i = 0; i < BLK_REQS; i++)
				ck_assert_uint_eq(*(uint8_t *)mock_mem_ptr(&mem, st[i], 1),
						  VIRTIO_BLK_S_OK);
			completed++;
		} else if (iter % 3 == 1) {
			usleep(iter % 200);
		}
		ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
		iter++;
	}
	stop_helpers(t, 2);
	ck_assert_uint_ge(iter, 3);
	ck_assert_uint_ge(completed, 1);

	/* Still a working disk. */
	rings_fresh(mark, &bq, 1, 256);
	bring_up(&bq, 1, ~0ULL);
	data = mock_mem_alloc(&mem, BLK_DATA, 512);
	memset(mock_mem_ptr(&mem, data, BLK_DATA), 0x5A, BLK_DATA);
	st[0] = blk_queue(VIRTIO_BLK_T_OUT, 64, data);
	virtio_dev_queue_notify(dev, 0);
	ck_assert(blk_wait_used(1, 20000));
	ck_assert_uint_eq(*(uint8_t *)mock_mem_ptr(&mem, st[0], 1), VIRTIO_BLK_S_OK);
	data = mock_mem_alloc(&mem, BLK_DATA, 512);
	st[0] = blk_queue(VIRTIO_BLK_T_IN, 64, data);
	virtio_dev_queue_notify(dev, 0);
	ck_assert(blk_wait_used(2, 20000));
	ck_assert_uint_eq(*(uint8_t *)mock_mem_ptr(&mem, st[0], 1), VIRTIO_BLK_S_OK);
	p = mock_mem_ptr(&mem, data, BLK_DATA);
	for (unsigned i = 0; i < BLK_DATA; i++)
		ck_assert_uint_eq(p[i], 0x5A);
	blk_teardown();
}

START_TEST(test_blk_io_uring)
{
	blk_stress("io_uring");
}
END_TEST

START_TEST(test_blk_threads)
{
	blk_stress("threads");
}
END_TEST

/* ---- virtio-console ---- */

static struct virtio_console *cons;
static struct mock_vq cq[2];
static uint64_t cons_out_bytes;

/* The guest only ever transmits 'A'..'Z' (and '!' through emerg_wr). */
static size_t cons_sink(void *opaque, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	(void)opaque;
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || p[i] == '!')) {
			fail_later("virtio-console transmitted a byte the guest never wrote");
			break;
		}
	/* A backend that sometimes takes only part. */
	if (len > 7 && (__atomic_load_n(&cons_out_bytes, __ATOMIC_RELAXED) & 3) == 0)
		len = 7;
	__atomic_add_fetch(&cons_out_bytes, len, __ATOMIC_RELAXED);
	return len;
}

static void cons_nop(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
}

static void cons_nop_cfg(struct virtio_device *d)
{
	(void)d;
}

static void *cons_mainloop(void *arg)
{
	static const uint8_t in[37] = "host input host input host input ..";
	unsigned i = 0;

	(void)arg;
	while (!stopping()) {
		virtio_console_kick(cons, VIRTIO_CONSOLE_TXQ);
		virtio_console_kick(cons, VIRTIO_CONSOLE_RXQ);
		if (i % 3 == 0 && virtio_console_input_pending(cons) < VIRTIO_CONSOLE_INBUF / 2)
			virtio_console_input(cons, in, sizeof(in));
		if (i % 16 == 0) {
			virtio_console_pause(cons);
			virtio_console_input(cons, in, 5);
			virtio_console_kick(cons, VIRTIO_CONSOLE_TXQ);
			virtio_console_resume(cons);
		}
		i++;
	}
	return NULL;
}

static void *cons_monitor(void *arg)
{
	(void)arg;
	while (!stopping()) {
		if (virtio_console_input_pending(cons) > VIRTIO_CONSOLE_INBUF)
			fail_later("virtio-console input buffer over its bound");
		(void)virtio_dev_get_status(dev);
	}
	return NULL;
}

static void cons_post(unsigned iter)
{
	for (unsigned i = 0; i < 4; i++) {
		uint64_t rx = mock_mem_alloc(&mem, 64, 8), tx = mock_mem_alloc(&mem, 300, 8);
		struct mock_buf rb = { rx, 64, true }, tb[2] = {
			{ tx, 100, false }, { tx + 100, 200, false },
		};

		memset(mock_mem_ptr(&mem, tx, 300), 'A' + (int)((iter + i) % 26), 300);
		mock_vq_add_chain(&cq[VIRTIO_CONSOLE_RXQ], &rb, 1);
		if (i & 1)
			mock_vq_add_indirect(&cq[VIRTIO_CONSOLE_TXQ], tb, 2);
		else
			mock_vq_add_chain(&cq[VIRTIO_CONSOLE_TXQ], tb, 2);
	}
}

START_TEST(test_console)
{
	static const struct virtio_console_io io = { .write = cons_sink };
	void *(*fn[])(void *) = { cons_mainloop, cons_monitor };
	pthread_t t[2];
	uint64_t mark, before;
	uint32_t emerg = '!';
	unsigned iter = 0;
	int64_t end;

	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	cons_out_bytes = 0;
	ck_assert_int_eq(virtio_console_create(&cons, &mem.gm, &io), 0);
	dev = virtio_console_virtio(cons);
	dev->notify_used = cons_nop;
	dev->notify_config = cons_nop_cfg;
	mark = mem.next;
	start_helpers(t, 2, fn);
	end = monotonic_ms() + STRESS_MS;
	while (monotonic_ms() < end) {
		rings_fresh(mark, cq, 2, VIRTIO_CONSOLE_QUEUE_SIZE);
		bring_up(cq, 2, ~0ULL);
		cons_post(iter);
		virtio_dev_queue_notify(dev, VIRTIO_CONSOLE_RXQ);
		virtio_dev_queue_notify(dev, VIRTIO_CONSOLE_TXQ);
		virtio_dev_config_write(dev, VIRTIO_CONSOLE_CFG_EMERG_WR, &emerg, 4);
		usleep(iter % 300);
		ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
		iter++;
	}
	stop_helpers(t, 2);
	ck_assert_uint_ge(iter, 3);
	ck_assert_uint_gt(__atomic_load_n(&cons_out_bytes, __ATOMIC_RELAXED), 0);

	/* Still a working console: one chain goes out whole. */
	before = cons_out_bytes;
	rings_fresh(mark, cq, 2, VIRTIO_CONSOLE_QUEUE_SIZE);
	bring_up(cq, 2, ~0ULL);
	cons_post(0);
	virtio_dev_queue_notify(dev, VIRTIO_CONSOLE_TXQ);
	for (int i = 0; i < 1000 && cons_out_bytes - before < 4 * 300; i++)
		virtio_console_kick(cons, VIRTIO_CONSOLE_TXQ);
	ck_assert_uint_eq(cons_out_bytes - before, 4 * 300);
	ck_assert_uint_eq(mock_vq_used_idx(&cq[VIRTIO_CONSOLE_TXQ]), 4);
	check_helpers();
	virtio_console_destroy(cons);
	mock_mem_destroy(&mem);
}
END_TEST

/* ---- virtio-rng ---- */

static struct virtio_rng *rng;
static struct mock_vq rq;

static void *rng_mainloop(void *arg)
{
	unsigned i = 0;

	(void)arg;
	while (!stopping()) {
		virtio_rng_kick(rng);
		if (i++ % 8 == 0) {
			virtio_rng_pause(rng);
			virtio_rng_kick(rng);
			virtio_rng_resume(rng);
		}
	}
	return NULL;
}

static void *rng_monitor(void *arg)
{
	uint64_t prev = 0, n;

	(void)arg;
	while (!stopping()) {
		n = virtio_rng_bytes(rng);
		if (n < prev)
			fail_later("virtio-rng byte count went backwards");
		prev = n;
	}
	return NULL;
}

START_TEST(test_rng)
{
	void *(*fn[])(void *) = { rng_mainloop, rng_monitor };
	pthread_t t[2];
	uint64_t mark, buf;
	unsigned iter = 0;
	int64_t end;

	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	ck_assert_int_eq(virtio_rng_create(&rng, &mem.gm), 0);
	dev = virtio_rng_virtio(rng);
	dev->notify_used = cons_nop;
	dev->notify_config = cons_nop_cfg;
	mark = mem.next;
	start_helpers(t, 2, fn);
	end = monotonic_ms() + STRESS_MS;
	while (monotonic_ms() < end) {
		rings_fresh(mark, &rq, 1, VIRTIO_RNG_QUEUE_SIZE);
		bring_up(&rq, 1, ~0ULL);
		for (unsigned i = 0; i < 8; i++) {
			struct mock_buf b = { mock_mem_alloc(&mem, 512, 8), 512, true };

			if (i & 1)
				mock_vq_add_indirect(&rq, &b, 1);
			else
				mock_vq_add_chain(&rq, &b, 1);
		}
		virtio_dev_queue_notify(dev, 0);
		usleep(iter % 300);
		ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
		iter++;
	}
	stop_helpers(t, 2);
	ck_assert_uint_ge(iter, 3);
	ck_assert_uint_gt(virtio_rng_bytes(rng), 0);

	rings_fresh(mark, &rq, 1, VIRTIO_RNG_QUEUE_SIZE);
	bring_up(&rq, 1, ~0ULL);
	buf = mock_mem_alloc(&mem, 64, 8);
	mock_vq_add_chain(&rq, &(struct mock_buf){ buf, 64, true }, 1);
	virtio_dev_queue_notify(dev, 0);
	virtio_rng_kick(rng);
	ck_assert_uint_eq(mock_vq_used_idx(&rq), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&rq, 0).len, 64);
	virtio_rng_destroy(rng);
	mock_mem_destroy(&mem);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_virtio");
	TCase *tc = tcase_create("stress");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_blk_io_uring);
	tcase_add_test(tc, test_blk_threads);
	tcase_add_test(tc, test_console);
	tcase_add_test(tc, test_rng);
	suite_add_tcase(s, tc);
	return ck_run_suite(s);
}
