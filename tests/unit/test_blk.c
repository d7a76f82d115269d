/* virtio-blk: the device driven through the mock driver queue against a
 * temporary image in /tmp, for each backend; and the --disk option parser. */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <jansson.h>
#include <time.h>
#include <unistd.h>

#include "devices/options.h"
#include "devices/pci/pci.h"
#include "devices/virtio/blk/blk.h"
#include "devices/virtio/registry.h"
#include "vmm/config.h"
#include "helpers/mock_vq.h"
#include "helpers/ck_run.h"
#include "helpers/stderr_capture.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(16ULL << 20)
#define DISK_SIZE	(4ULL << 20)
#define DISK_SECTORS	(DISK_SIZE / 512)
#define ALL_FEATURES	(~0ULL)
#define NO_EVENT_IDX	(~VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX))

static struct mock_mem mem;
static struct mock_vq mq;
static struct blk_dev *blk;
static struct virtio_device *dev;
static char path[64];
static int disk_fd = -1;
static int irq_efd = -1;
static unsigned used_irqs, config_irqs;

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
	__atomic_add_fetch(&used_irqs, 1, __ATOMIC_SEQ_CST);
	(void)eventfd_write(irq_efd, 1);
}

static void on_config(struct virtio_device *d)
{
	(void)d;
	__atomic_add_fetch(&config_irqs, 1, __ATOMIC_SEQ_CST);
	(void)eventfd_write(irq_efd, 1);
}

static void setup(void)
{
	strcpy(path, "/tmp/ember-test-blk-XXXXXX");
	disk_fd = mkstemp(path);
	ck_assert_int_ge(disk_fd, 0);
	ck_assert_int_eq(ftruncate(disk_fd, DISK_SIZE), 0);
	irq_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(irq_efd, 0);
	used_irqs = config_irqs = 0;
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	blk = NULL;
}

static void teardown(void)
{
	blk_destroy(blk);
	blk = NULL;
	mock_mem_destroy(&mem);
	close(irq_efd);
	close(disk_fd);
	unlink(path);
}

/* Create the device on the temp image with extra options, start its thread
 * and bring it up with the given driver features. */
static void start_dev(const char *extra, uint64_t want)
{
	char s[256], err[256];
	struct blk_opts o;

	snprintf(s, sizeof(s), "path=%s%s%s", path, extra && *extra ? "," : "", extra ? extra : "");
	ck_assert_msg(blk_parse_opts(s, &o, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(blk_create(&blk, &o, &mem.gm), 0);
	dev = blk_virtio(blk);
	dev->notify_used = on_used;
	dev->notify_config = on_config;
	ck_assert_int_eq(blk_start(blk), 0);
	mock_vq_init(&mq, &mem, 256);
	ck_assert_int_eq(mock_virtio_bring_up(dev, &mq, want), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_DRIVER_OK);
}

/* The used element of a rejected chain is pushed while the chain is
 * walked; NEEDS_RESET and the config interrupt follow on the I/O thread. */
static void wait_needs_reset(void)
{
	for (int i = 0; i < 2000; i++) {
		if ((virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET) &&
		    __atomic_load_n(&config_irqs, __ATOMIC_SEQ_CST))
			return;
		usleep(1000);
	}
}

static void wait_used(uint16_t n)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((uint16_t)(mock_vq_used_idx(&mq) - n) > 0x8000) {
		struct pollfd p = { .fd = irq_efd, .events = POLLIN };
		eventfd_t v;

		poll(&p, 1, 10);
		(void)eventfd_read(irq_efd, &v);
		clock_gettime(CLOCK_MONOTONIC, &t);
		ck_assert_msg(t.tv_sec - t0.tv_sec < 20, "timed out waiting for used idx %u (at %u)",
			      n, mock_vq_used_idx(&mq));
	}
}

static uint64_t alloc_hdr(uint32_t type, uint64_t sector)
{
	struct {
		uint32_t type, ioprio;
		uint64_t sector;
	} h = { htole32(type), 0, htole64(sector) };
	uint64_t gpa = mock_mem_alloc(&mem, 16, 16);

	mock_mem_write(&mem, gpa, &h, sizeof(h));
	return gpa;
}

static uint64_t alloc_status(void)
{
	uint64_t gpa = mock_mem_alloc(&mem, 1, 1);

	*(uint8_t *)mock_mem_ptr(&mem, gpa, 1) = 0xEE;
	return gpa;
}

static uint8_t status_at(uint64_t gpa)
{
	return *(uint8_t *)mock_mem_ptr(&mem, gpa, 1);
}

/* A request: header, data buffers (readable for OUT/DISCARD/WRITE_ZEROES,
 * writable otherwise), status. Returns the status byte's gpa; published. */
static uint64_t queue_req(uint32_t type, uint64_t sector, const struct mock_buf *data,
			  unsigned ndata, bool indirect)
{
	struct mock_buf b[BLK_SEG_MAX + 4];
	uint64_t st = alloc_status();
	unsigned n = 0;

	ck_assert_uint_le(ndata, BLK_SEG_MAX + 2);
	b[n++] = (struct mock_buf){ alloc_hdr(type, sector), 16, false };
	for (unsigned i = 0; i < ndata; i++)
		b[n++] = data[i];
	b[n++] = (struct mock_buf){ st, 1, true };
	if (indirect)
		mock_vq_add_indirect(&mq, b, n);
	else
		mock_vq_add_chain(&mq, b, n);
	return st;
}

static uint8_t do_req(uint32_t type, uint64_t sector, const struct mock_buf *data, unsigned ndata)
{
	uint16_t want = (uint16_t)(mock_vq_used_idx(&mq) + 1);
	uint64_t st = queue_req(type, sector, data, ndata, false);

	virtio_dev_queue_notify(dev, 0);
	wait_used(want);
	return status_at(st);
}

static uint8_t do_io(uint32_t type, uint64_t sector, uint64_t gpa, uint32_t len)
{
	struct mock_buf b = { gpa, len, type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID };

	return do_req(type, sector, &b, len ? 1 : 0);
}

static uint64_t pattern_buf(uint32_t len, uint64_t align, uint32_t seed)
{
	uint64_t gpa = mock_mem_alloc(&mem, len, align);
	uint8_t *p = mock_mem_ptr(&mem, gpa, len);

	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed + (i >> 9));
	return gpa;
}

static void file_read(uint64_t off, void *buf, size_t len)
{
	ck_assert_int_eq(pread(disk_fd, buf, len, (off_t)off), (ssize_t)len);
}

static bool tmp_supports_odirect(void)
{
	int fd = open(path, O_RDWR | O_DIRECT);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* ---- each backend ---- */

static const char *const backends[] = {
	"aio=io_uring", "aio=io_uring,cache=none", "aio=native,cache=none",
	"aio=threads", "aio=threads,cache=none",
};

START_TEST(test_backend_write_flush_read)
{
	const uint32_t len = 64 << 10;
	uint64_t src, dst, usrc, udst;
	struct mock_buf w[3], r, uw, ur;
	struct blk_stats st;
	uint8_t *file;

	if (strstr(backends[_i], "cache=none") && !tmp_supports_odirect()) {
		if (strstr(backends[_i], "native")) {
			printf("skipping %s: /tmp does not support O_DIRECT\n", backends[_i]);
			return;
		}
	}
	start_dev(backends[_i], ALL_FEATURES);

	/* A 64 KiB write in three descriptors, flush, read back in one. */
	src = pattern_buf(len, 4096, _i);
	w[0] = (struct mock_buf){ src, 16 << 10, false };
	w[1] = (struct mock_buf){ src + (16 << 10), 32 << 10, false };
	w[2] = (struct mock_buf){ src + (48 << 10), 16 << 10, false };
	ck_assert_uint_eq(do_req(VIRTIO_BLK_T_OUT, 16, w, 3), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 0).len, 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_FLUSH, 0, 0, 0) , VIRTIO_BLK_S_OK);
	dst = mock_mem_alloc(&mem, len, 4096);
	r = (struct mock_buf){ dst, len, true };
	ck_assert_uint_eq(do_req(VIRTIO_BLK_T_IN, 16, &r, 1), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 2).len, len + 1);
	ck_assert_mem_eq(mock_mem_ptr(&mem, dst, len), mock_mem_ptr(&mem, src, len), len);
	file = malloc(len);
	file_read(16 * 512, file, len);
	ck_assert_mem_eq(file, mock_mem_ptr(&mem, src, len), len);
	free(file);

	/* Unaligned guest buffers (bounced under O_DIRECT), through an indirect table. */
	usrc = pattern_buf(4096 + 1, 4096, 99) + 1;
	udst = mock_mem_alloc(&mem, 4096 + 3, 4096) + 3;
	uw = (struct mock_buf){ usrc, 4096, false };
	ur = (struct mock_buf){ udst, 4096, true };
	{
		uint16_t want = (uint16_t)(mock_vq_used_idx(&mq) + 1);
		uint64_t s = queue_req(VIRTIO_BLK_T_OUT, 1000, &uw, 1, true);

		virtio_dev_queue_notify(dev, 0);
		wait_used(want);
		ck_assert_uint_eq(status_at(s), VIRTIO_BLK_S_OK);
	}
	ck_assert_uint_eq(do_req(VIRTIO_BLK_T_IN, 1000, &ur, 1), VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(mock_mem_ptr(&mem, udst, 4096), mock_mem_ptr(&mem, usrc, 4096), 4096);

	blk_get_stats(blk, &st);
	ck_assert_uint_eq(st.writes, 2);
	ck_assert_uint_eq(st.reads, 2);
	ck_assert_uint_eq(st.flushes, 1);
	ck_assert_uint_eq(st.ioerr, 0);
	if (blk_is_direct(blk))
		ck_assert_uint_eq(st.bounced, 2);
	else
		ck_assert_uint_eq(st.bounced, 0);
	if (strstr(backends[_i], "cache=none") && !blk_is_direct(blk))
		printf("%s: /tmp refused O_DIRECT, fell back to the page cache\n", backends[_i]);
}
END_TEST

START_TEST(test_backend_many_in_flight_one_irq)
{
	enum { N = 64 };
	uint64_t st[N], dst = 0;
	struct blk_stats s;
	uint8_t pat[4096];

	if (strstr(backends[_i], "native") && !tmp_supports_odirect()) {
		printf("skipping %s: /tmp does not support O_DIRECT\n", backends[_i]);
		return;
	}
	for (unsigned i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(i ^ 0x5a);
	for (unsigned i = 0; i < N; i++)
		ck_assert_int_eq(pwrite(disk_fd, pat, sizeof(pat), i * 8192), (ssize_t)sizeof(pat));
	start_dev(backends[_i], ALL_FEATURES);
	ck_assert(virtio_dev_has_feature(dev, VIRTIO_RING_F_EVENT_IDX));

	/* Park the I/O thread (its activation kick may still be pending) so the
	 * whole batch is seen by one kick. */
	blk_pause(blk);
	/* The driver asks for one interrupt, when the N-th completion lands. */
	mock_vq_set_used_event(&mq, N - 1);
	for (unsigned i = 0; i < N; i++) {
		struct mock_buf b;

		dst = mock_mem_alloc(&mem, 4096, 4096);
		b = (struct mock_buf){ dst, 4096, true };
		st[i] = queue_req(VIRTIO_BLK_T_IN, i * 16, &b, 1, i & 1);
	}
	virtio_dev_queue_notify(dev, 0);
	blk_resume(blk);
	wait_used(N);
	for (unsigned i = 0; i < N; i++)
		ck_assert_uint_eq(status_at(st[i]), VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(mock_mem_ptr(&mem, dst, 4096), pat, 4096);
	blk_get_stats(blk, &s);
	ck_assert_uint_eq(s.reads, N);
	ck_assert_uint_eq(s.max_inflight, N);
	ck_assert_uint_eq(__atomic_load_n(&used_irqs, __ATOMIC_SEQ_CST), 1);
	ck_assert_uint_eq(s.notifications, 1);
	/* The device asked to be kicked at the next avail entry. */
	ck_assert_uint_eq(mock_vq_avail_event(&mq), N);
}
END_TEST

/* ---- request semantics (io_uring) ---- */

START_TEST(test_get_id)
{
	uint64_t id;
	char want[20] = "ember-serial-01";

	start_dev("serial=ember-serial-01", ALL_FEATURES);
	id = mock_mem_alloc(&mem, 20, 1);
	memset(mock_mem_ptr(&mem, id, 20), 0xff, 20);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_GET_ID, 0, id, 20), VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(mock_mem_ptr(&mem, id, 20), want, 20);
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 0).len, 21);
}
END_TEST

START_TEST(test_get_id_no_serial)
{
	uint64_t id;
	char zero[20] = { 0 };

	start_dev("aio=threads", ALL_FEATURES);
	id = mock_mem_alloc(&mem, 20, 1);
	memset(mock_mem_ptr(&mem, id, 20), 0xff, 20);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_GET_ID, 0, id, 20), VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(mock_mem_ptr(&mem, id, 20), zero, 20);
}
END_TEST

START_TEST(test_readonly)
{
	uint8_t before[8192], after[8192];
	uint64_t src, dwz;
	struct {
		uint64_t sector;
		uint32_t num, flags;
	} seg = { 0, htole32(8), 0 };

	memset(before, 0x3c, sizeof(before));
	ck_assert_int_eq(pwrite(disk_fd, before, sizeof(before), 0), (ssize_t)sizeof(before));
	start_dev("readonly=on", ALL_FEATURES);
	ck_assert(virtio_dev_has_feature(dev, VIRTIO_BLK_F_RO));
	ck_assert(!(virtio_dev_host_features(dev) & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD)));

	src = pattern_buf(4096, 4096, 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_OUT, 0, src, 4096), VIRTIO_BLK_S_IOERR);
	dwz = mock_mem_alloc(&mem, 16, 8);
	mock_mem_write(&mem, dwz, &seg, sizeof(seg));
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_DISCARD, 0, dwz, 16), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_WRITE_ZEROES, 0, dwz, 16), VIRTIO_BLK_S_IOERR);
	/* Reads and flushes still work. */
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, 0, src, 4096), VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(mock_mem_ptr(&mem, src, 4096), before, 4096);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
	file_read(0, after, sizeof(after));
	ck_assert_mem_eq(after, before, sizeof(after));
}
END_TEST

START_TEST(test_past_end)
{
	uint64_t b;

	start_dev("", ALL_FEATURES);
	ck_assert_uint_eq(blk_capacity(blk), DISK_SECTORS);
	b = mock_mem_alloc(&mem, 1024, 4096);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, b, 512), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, b, 1024), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, DISK_SECTORS, b, 512), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_OUT, DISK_SECTORS, b, 512), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_OUT, DISK_SECTORS - 1, b, 1024), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 2).len, 1);
}
END_TEST

START_TEST(test_sector_overflow)
{
	uint64_t b;

	start_dev("", ALL_FEATURES);
	b = mock_mem_alloc(&mem, 1024, 4096);
	/* sector * 512 overflows */
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, 1ULL << 55, b, 512), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, UINT64_MAX, b, 512), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_OUT, UINT64_MAX, b, 512), VIRTIO_BLK_S_IOERR);
	/* offset + len overflows */
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, UINT64_MAX >> 9, b, 1024), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_OUT, (UINT64_MAX >> 9) - 1, b, 1024), VIRTIO_BLK_S_IOERR);
}
END_TEST

static uint64_t dwz_segs(const uint64_t (*s)[3], unsigned n)
{
	uint64_t gpa = mock_mem_alloc(&mem, 16ULL * n, 8);

	for (unsigned i = 0; i < n; i++) {
		struct {
			uint64_t sector;
			uint32_t num, flags;
		} seg = { htole64(s[i][0]), htole32((uint32_t)s[i][1]), htole32((uint32_t)s[i][2]) };

		mock_mem_write(&mem, gpa + 16ULL * i, &seg, sizeof(seg));
	}
	return gpa;
}

START_TEST(test_discard_write_zeroes)
{
	static const uint64_t one_discard[][3] = { { 8, 8, 0 } };
	static const uint64_t wz_multi[][3] = { { 24, 8, 0 }, { 40, 8, VIRTIO_BLK_DWZ_F_UNMAP },
						{ 100, 1, 0 } };
	static const uint64_t bad_unmap[][3] = { { 0, 8, VIRTIO_BLK_DWZ_F_UNMAP } };
	static const uint64_t bad_flag[][3] = { { 0, 8, 2 } };
	static const uint64_t past_end[][3] = { { DISK_SECTORS - 4, 8, 0 } };
	static const uint64_t overflow[][3] = { { UINT64_MAX >> 8, 8, 0 } };
	uint64_t many[BLK_DWZ_SEG_MAX + 1][3];
	uint8_t data[128 * 512], expect[128 * 512];
	uint64_t g, rd;

	memset(data, 0xAA, sizeof(data));
	ck_assert_int_eq(pwrite(disk_fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
	start_dev("", ALL_FEATURES);
	ck_assert(virtio_dev_has_feature(dev, VIRTIO_BLK_F_DISCARD));
	ck_assert(virtio_dev_has_feature(dev, VIRTIO_BLK_F_WRITE_ZEROES));

	g = dwz_segs(one_discard, 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_DISCARD, 0, g, 16), VIRTIO_BLK_S_OK);
	g = dwz_segs(wz_multi, 3);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_WRITE_ZEROES, 0, g, 48), VIRTIO_BLK_S_OK);

	memset(expect, 0xAA, sizeof(expect));
	memset(expect + 8 * 512, 0, 8 * 512);
	memset(expect + 24 * 512, 0, 8 * 512);
	memset(expect + 40 * 512, 0, 8 * 512);
	memset(expect + 100 * 512, 0, 512);
	rd = mock_mem_alloc(&mem, sizeof(data), 4096);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, 0, rd, sizeof(data)), VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(mock_mem_ptr(&mem, rd, sizeof(data)), expect, sizeof(data));
	file_read(0, data, sizeof(data));
	ck_assert_mem_eq(data, expect, sizeof(data));

	/* Bad segment lists. */
	g = dwz_segs(bad_unmap, 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_DISCARD, 0, g, 16), VIRTIO_BLK_S_UNSUPP);
	g = dwz_segs(bad_flag, 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_WRITE_ZEROES, 0, g, 16), VIRTIO_BLK_S_UNSUPP);
	g = dwz_segs(past_end, 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_DISCARD, 0, g, 16), VIRTIO_BLK_S_IOERR);
	g = dwz_segs(overflow, 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_WRITE_ZEROES, 0, g, 16), VIRTIO_BLK_S_IOERR);
	for (unsigned i = 0; i <= BLK_DWZ_SEG_MAX; i++) {
		many[i][0] = i * 8;
		many[i][1] = 1;
		many[i][2] = 0;
	}
	g = dwz_segs((const uint64_t (*)[3])many, BLK_DWZ_SEG_MAX + 1);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_DISCARD, 0, g, 16 * (BLK_DWZ_SEG_MAX + 1)),
			  VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_DISCARD, 0, g, 20), VIRTIO_BLK_S_IOERR);
	/* A write-zeroes range longer than max_write_zeroes_sectors. */
	{
		const uint64_t wz_long[][3] = { { 0, BLK_WZ_SECTORS_MAX + 1, 0 } };
		const uint64_t wz_max[][3] = { { 8192 - BLK_WZ_SECTORS_MAX, BLK_WZ_SECTORS_MAX, 0 } };

		g = dwz_segs(wz_long, 1);
		ck_assert_uint_eq(do_io(VIRTIO_BLK_T_WRITE_ZEROES, 0, g, 16), VIRTIO_BLK_S_IOERR);
		g = dwz_segs(wz_max, 1);
		ck_assert_uint_eq(do_io(VIRTIO_BLK_T_WRITE_ZEROES, 0, g, 16), VIRTIO_BLK_S_OK);
	}
	/* The file is unchanged by the rejected requests. */
	file_read(0, data, sizeof(data));
	ck_assert_mem_eq(data, expect, sizeof(data));
}
END_TEST

START_TEST(test_short_header_is_ioerr)
{
	struct mock_buf b[2];
	uint64_t st = alloc_status();

	start_dev("", ALL_FEATURES);
	b[0] = (struct mock_buf){ alloc_hdr(VIRTIO_BLK_T_IN, 0), 8, false };
	b[1] = (struct mock_buf){ st, 1, true };
	mock_vq_add_chain(&mq, b, 2);
	virtio_dev_queue_notify(dev, 0);
	wait_used(1);
	ck_assert_uint_eq(status_at(st), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 0).len, 1);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
END_TEST

START_TEST(test_no_status_byte_needs_reset)
{
	struct mock_buf b = { alloc_hdr(VIRTIO_BLK_T_FLUSH, 0), 16, false };
	uint64_t st;

	start_dev("", ALL_FEATURES);
	mock_vq_add_chain(&mq, &b, 1);
	virtio_dev_queue_notify(dev, 0);
	wait_used(1);
	wait_needs_reset();
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 0).len, 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET,
			  VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_eq(__atomic_load_n(&config_irqs, __ATOMIC_SEQ_CST), 1);
	/* The queue is stopped: later requests are not served. */
	st = queue_req(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
	virtio_dev_queue_notify(dev, 0);
	usleep(100 * 1000);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert_uint_eq(status_at(st), 0xEE);
	/* A reset brings it back. */
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
	mock_vq_init(&mq, &mem, 256);
	ck_assert_int_eq(mock_virtio_bring_up(dev, &mq, ALL_FEATURES), 0);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(test_malformed_chain_needs_reset)
{
	uint64_t a = mock_mem_alloc(&mem, 16, 16);

	start_dev("", ALL_FEATURES);
	mock_vq_set_desc(&mq, 0, a, 16, VIRTQ_DESC_F_NEXT, 1);
	mock_vq_set_desc(&mq, 1, a, 16, VIRTQ_DESC_F_NEXT, 0);
	mock_vq_publish(&mq, 0);
	virtio_dev_queue_notify(dev, 0);
	wait_used(1);
	wait_needs_reset();
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 0).id, 0);
	ck_assert_uint_eq(mock_vq_used_elem(&mq, 0).len, 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET,
			  VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_eq(__atomic_load_n(&config_irqs, __ATOMIC_SEQ_CST), 1);
	ck_assert_uint_ge(__atomic_load_n(&used_irqs, __ATOMIC_SEQ_CST), 1);
}
END_TEST

START_TEST(test_bad_requests)
{
	uint64_t b;
	struct mock_buf segs[BLK_SEG_MAX + 1];

	start_dev("", ALL_FEATURES);
	b = mock_mem_alloc(&mem, BLK_SIZE_MAX + 4096, 4096);
	/* Unknown type. */
	ck_assert_uint_eq(do_io(99, 0, b, 512), VIRTIO_BLK_S_UNSUPP);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_GET_LIFETIME, 0, b, 512), VIRTIO_BLK_S_UNSUPP);
	/* Not a multiple of 512. */
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, 0, b, 513), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_OUT, 0, b, 100), VIRTIO_BLK_S_IOERR);
	/* size_max: one segment bigger than 1 MiB. */
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, 0, b, BLK_SIZE_MAX + 512), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_IN, 0, b, BLK_SIZE_MAX), VIRTIO_BLK_S_OK);
	/* seg_max: 128 data segments are fine, 129 are not. */
	for (unsigned i = 0; i <= BLK_SEG_MAX; i++)
		segs[i] = (struct mock_buf){ b + 512ULL * i, 512, true };
	ck_assert_uint_eq(do_req(VIRTIO_BLK_T_IN, 0, segs, BLK_SEG_MAX), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(do_req(VIRTIO_BLK_T_IN, 0, segs, BLK_SEG_MAX + 1), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
END_TEST

START_TEST(test_pause_resume)
{
	uint64_t st;

	start_dev("aio=threads", ALL_FEATURES);
	blk_pause(blk);
	st = queue_req(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
	virtio_dev_queue_notify(dev, 0);
	usleep(100 * 1000);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 0);
	blk_resume(blk);
	wait_used(1);
	ck_assert_uint_eq(status_at(st), VIRTIO_BLK_S_OK);
	blk_stop(blk);
	blk_stop(blk);	/* idempotent */
}
END_TEST

/* Pauses nest: the device stays paused until the last resume. Before they
 * were counted, a second pauser's resume (QMP statistics) restarted the I/O
 * thread under a vCPU resetting the device, which then freed requests the
 * backend still held. */
START_TEST(test_pause_nests)
{
	uint64_t st;

	start_dev("aio=threads", ALL_FEATURES);
	blk_pause(blk);
	blk_pause(blk);
	blk_resume(blk);
	st = queue_req(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
	virtio_dev_queue_notify(dev, 0);
	usleep(100 * 1000);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 0);
	blk_resume(blk);
	wait_used(1);
	ck_assert_uint_eq(status_at(st), VIRTIO_BLK_S_OK);
	blk_resume(blk);	/* unbalanced: ignored */
	blk_pause(blk);
	st = queue_req(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
	virtio_dev_queue_notify(dev, 0);
	usleep(50 * 1000);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	blk_resume(blk);
	wait_used(2);
}
END_TEST

/* Statistics are read without pausing the device: reading them while it
 * is paused neither blocks nor resumes it. */
START_TEST(test_stats_do_not_pause)
{
	struct blk_stats s;
	uint64_t st;

	start_dev("aio=threads", ALL_FEATURES);
	ck_assert_uint_eq(do_req(VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	blk_pause(blk);
	st = queue_req(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
	virtio_dev_queue_notify(dev, 0);
	blk_get_stats(blk, &s);
	ck_assert_uint_eq(s.flushes, 1);
	usleep(100 * 1000);
	blk_get_stats(blk, &s);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert_uint_eq(s.flushes, 1);
	blk_resume(blk);
	wait_used(2);
	ck_assert_uint_eq(status_at(st), VIRTIO_BLK_S_OK);
	blk_get_stats(blk, &s);
	ck_assert_uint_eq(s.flushes, 2);
	ck_assert_uint_eq(s.requests, 2);
}
END_TEST

/* However many big requests the guest queues, at most
 * BLK_INFLIGHT_BYTES_MAX of them are at the backend at once, so a pause or
 * reset waits for a bounded amount of I/O. */
START_TEST(test_inflight_bytes_bounded)
{
	enum { REQ = 4 << 20, NREQ = 40 };
	struct mock_buf segs[REQ / BLK_SIZE_MAX];
	uint64_t buf, st[NREQ];
	struct blk_stats s;

	if (strstr(backends[_i], "native") && !tmp_supports_odirect()) {
		printf("skipping %s: /tmp does not support O_DIRECT\n", backends[_i]);
		return;
	}
	start_dev(backends[_i], ALL_FEATURES);
	buf = mock_mem_alloc(&mem, REQ, 4096);
	for (unsigned i = 0; i < REQ / BLK_SIZE_MAX; i++)
		segs[i] = (struct mock_buf){ buf + (uint64_t)i * BLK_SIZE_MAX, BLK_SIZE_MAX, false };
	for (unsigned r = 0; r < 4; r++) {
		for (unsigned i = 0; i < NREQ; i++)
			st[i] = queue_req(VIRTIO_BLK_T_OUT, 0, segs, REQ / BLK_SIZE_MAX, true);
		virtio_dev_queue_notify(dev, 0);
		/* A pause in the middle waits only for what is at the backend. */
		blk_pause(blk);
		blk_resume(blk);
		wait_used((uint16_t)((r + 1) * NREQ));
		for (unsigned i = 0; i < NREQ; i++)
			ck_assert_uint_eq(status_at(st[i]), VIRTIO_BLK_S_OK);
	}
	blk_get_stats(blk, &s);
	ck_assert_uint_eq(s.writes, 4 * NREQ);
	ck_assert_uint_le((uint64_t)s.max_inflight * REQ, BLK_INFLIGHT_BYTES_MAX);
}
END_TEST

START_TEST(test_no_event_idx_notifies)
{
	start_dev("", NO_EVENT_IDX);
	ck_assert(!virtio_dev_has_feature(dev, VIRTIO_RING_F_EVENT_IDX));
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(__atomic_load_n(&used_irqs, __ATOMIC_SEQ_CST), 1);
	mock_vq_set_avail_flags(&mq, VIRTQ_AVAIL_F_NO_INTERRUPT);
	ck_assert_uint_eq(do_io(VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(__atomic_load_n(&used_irqs, __ATOMIC_SEQ_CST), 1);
}
END_TEST

START_TEST(test_config_space)
{
	uint64_t cap;
	uint32_t v;
	uint8_t z[8];
	uint64_t f;

	start_dev("", ALL_FEATURES);
	f = virtio_dev_host_features(dev);
	ck_assert(f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert(f & VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC));
	ck_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX));
	ck_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX));
	ck_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE));
	ck_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_BLK_F_RO)));
	ck_assert_uint_eq(dev->ops->device_id, VIRTIO_ID_BLOCK);

	virtio_dev_config_read(dev, 0, &cap, 8);
	ck_assert_uint_eq(le64toh(cap), DISK_SECTORS);
	virtio_dev_config_read(dev, 8, &v, 4);
	ck_assert_uint_eq(le32toh(v), BLK_SIZE_MAX);
	virtio_dev_config_read(dev, 12, &v, 4);
	ck_assert_uint_eq(le32toh(v), BLK_SEG_MAX);
	virtio_dev_config_read(dev, 20, &v, 4);
	ck_assert_uint_eq(le32toh(v), 512);
	virtio_dev_config_read(dev, 40, &v, 4);
	ck_assert_uint_eq(le32toh(v), BLK_DWZ_SEG_MAX);
	virtio_dev_config_read(dev, 36, &v, 4);
	ck_assert_uint_eq(le32toh(v), BLK_DWZ_SECTORS_MAX);
	/* Write-zeroes may fall back to writing: its ranges are small. */
	virtio_dev_config_read(dev, 48, &v, 4);
	ck_assert_uint_eq(le32toh(v), BLK_WZ_SECTORS_MAX);
	ck_assert_uint_le((uint64_t)BLK_WZ_SECTORS_MAX * 512 * BLK_DWZ_SEG_MAX,
			  BLK_INFLIGHT_BYTES_MAX);
	/* Outside (or straddling the end of) config space: zeros. */
	memset(z, 0xff, sizeof(z));
	virtio_dev_config_read(dev, sizeof(struct virtio_blk_config) - 2, z, 4);
	ck_assert_mem_eq(z, "\0\0\0\0", 4);
	memset(z, 0xff, sizeof(z));
	virtio_dev_config_read(dev, UINT64_MAX - 2, z, 8);
	ck_assert_mem_eq(z, "\0\0\0\0\0\0\0\0", 8);
	/* Read-only config: writes are ignored. */
	v = 0;
	virtio_dev_config_write(dev, 0, &v, 4);
	virtio_dev_config_read(dev, 0, &cap, 8);
	ck_assert_uint_eq(le64toh(cap), DISK_SECTORS);
}
END_TEST

START_TEST(test_status_machine)
{
	char err[128];
	struct blk_opts o;
	uint8_t st;

	snprintf(err, sizeof(err), "path=%s", path);
	ck_assert_int_eq(blk_parse_opts(err, &o, NULL, 0), 0);
	ck_assert_int_eq(blk_create(&blk, &o, &mem.gm), 0);
	dev = blk_virtio(blk);
	/* Everything at once from 0, FAILED included: refused, nothing set. */
	st = VIRTIO_STATUS_FAILED | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), -EINVAL);
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
	ck_assert(!dev->active);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_FAILED | VIRTIO_STATUS_DRIVER),
			 -EINVAL);
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
	/* FAILED alone is accepted; then only a reset. */
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_FAILED), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_FAILED |
						     VIRTIO_STATUS_ACKNOWLEDGE), -EINVAL);
	ck_assert_uint_eq(virtio_dev_get_status(dev), VIRTIO_STATUS_FAILED);
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	/* A guest repeating refused writes cannot flood the log. */
	stderr_capture_begin();
	for (int i = 0; i < 1000; i++) {
		(void)virtio_dev_set_status(dev, VIRTIO_STATUS_DRIVER_OK);
		virtio_dev_set_driver_features(dev, 0);
	}
	ck_assert_uint_le(stderr_capture_end(), 12);
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
	/* DRIVER before ACKNOWLEDGE, DRIVER_OK before FEATURES_OK: refused. */
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_DRIVER), -EINVAL);
	st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK), -EINVAL);
	/* FEATURES_OK needs VERSION_1; features are masked to what's offered. */
	virtio_dev_set_driver_features(dev, VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(63));
	ck_assert_uint_eq(dev->driver_features, VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	ck_assert_int_eq(virtio_dev_set_status(dev, st | VIRTIO_STATUS_FEATURES_OK), -EINVAL);
	ck_assert_uint_eq(virtio_dev_get_status(dev), st);
	virtio_dev_set_driver_features(dev, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	/* Clearing a bit without a reset: refused. */
	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE), -EINVAL);
	/* DRIVER_OK with a ring outside guest memory: NEEDS_RESET. */
	mock_vq_init(&mq, &mem, 256);
	mock_vq_attach(&mq, virtio_dev_queue(dev, 0));
	virtio_dev_queue(dev, 0)->used_gpa = MEM_BASE + MEM_SIZE - 8;
	ck_assert_int_ne(virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK), 0);
	ck_assert(virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
	ck_assert_uint_eq(dev->driver_features, 0);
}
END_TEST

/* ---- --disk option parser ---- */

static int parse(const char *s, struct blk_opts *o, char *err)
{
	return blk_parse_opts(s, o, err, 256);
}

START_TEST(test_opts_valid)
{
	struct blk_opts o;
	char err[256];

	ck_assert_int_eq(parse("path=/img/a.raw", &o, err), 0);
	ck_assert_str_eq(o.path, "/img/a.raw");
	ck_assert(!o.readonly);
	ck_assert_int_eq(o.aio, BLK_AIO_IO_URING);
	ck_assert_int_eq(o.cache, BLK_CACHE_WRITEBACK);
	ck_assert_str_eq(o.serial, "");

	ck_assert_int_eq(parse("path=/x,readonly=on,serial=ABC-123,aio=native,cache=none", &o, err), 0);
	ck_assert(o.readonly);
	ck_assert_str_eq(o.serial, "ABC-123");
	ck_assert_int_eq(o.aio, BLK_AIO_NATIVE);
	ck_assert_int_eq(o.cache, BLK_CACHE_NONE);

	ck_assert_int_eq(parse("aio=threads,path=/x,readonly=off,cache=writeback", &o, err), 0);
	ck_assert_int_eq(o.aio, BLK_AIO_THREADS);
	ck_assert(!o.readonly);

	ck_assert_int_eq(parse("path=/x,serial=12345678901234567890", &o, err), 0);
	ck_assert_str_eq(blk_aio_name(BLK_AIO_IO_URING), "io_uring");
}
END_TEST

static void expect_err(const char *s, const char *needle)
{
	struct blk_opts o;
	char err[256];

	ck_assert_int_eq(parse(s, &o, err), -EINVAL);
	ck_assert_msg(strstr(err, needle) != NULL, "'%s': error '%s' lacks '%s'", s, err, needle);
	ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(test_opts_errors)
{
	/* The --disk options table, through the generic parser. */
	expect_err("", "path: required");
	expect_err("readonly=on", "path: required");
	expect_err("path=/x,bogus=1", "unknown option 'bogus' (valid: path, readonly, serial, aio, cache)");
	expect_err("path=/x,readonly=maybe", "readonly: expected on or off");
	expect_err("path=/x,aio=posix", "aio: expected io_uring, native or threads");
	expect_err("path=/x,cache=directsync", "cache: expected none or writeback");
	expect_err("path=/x,aio=native", "aio=native requires cache=none");
	expect_err("path=/x,aio=native,cache=writeback", "aio=native requires cache=none");
	expect_err("path=/x,path=/y", "path: given twice");
	expect_err("path=", "path: must not be empty");
	expect_err("path=/x,", "trailing ','");
	expect_err("/x", "expected key=value");
	expect_err("path=/x,readonly", "expected key=value");
	expect_err("path=/x,=1", "empty option name");
	expect_err("path=/x,serial=123456789012345678901", "longer than 20");
	expect_err("path=/x,serial=a\tb", "printable");
	expect_err("path=/x,averyveryverylongkey=1", "unknown option");
	expect_err("path=/a,,b", "stray ','");
}
END_TEST

START_TEST(test_opts_null_and_create_errors)
{
	struct blk_opts o;
	char err[256];

	ck_assert_int_eq(blk_parse_opts(NULL, &o, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(blk_parse_opts("bogus", &o, NULL, 0), -EINVAL);
	ck_assert_int_eq(parse("path=/nonexistent/ember/disk.img", &o, err), 0);
	ck_assert_int_eq(blk_create(&blk, &o, &mem.gm), -ENOENT);
	ck_assert_ptr_null(blk);
}
END_TEST

/* ---- --disk through the virtio registry: realize, QMP, save/load ---- */

static void sink_fire(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a,
		      uint32_t data)
{
	(void)h; (void)d; (void)v; (void)a; (void)data;
}

static void sink_intx(struct pci_host *h, struct pci_device *d, bool level)
{
	(void)h; (void)d; (void)level;
}

static const struct pci_irq_ops sink = { .msi_fire = sink_fire, .intx_set = sink_intx };
static struct pci_host host;
static struct vm_config vcfg;
static struct device_ctx ctx;
static const struct device_desc *blk_dd;
static void *disks;
static char disk_args[2][160];
static char path2[64];

static void reg_setup(void)
{
	struct pci_host_params p = {
		.mmio32_base = 0xC0000000ULL, .mmio32_size = 0x10000000ULL, .irq = &sink,
	};
	int fd;

	setup();
	ck_assert_int_eq(pci_host_init(&host, &p), 0);
	config_defaults(&vcfg);
	ctx = (struct device_ctx){ .cfg = &vcfg, .mem = &mem.gm, .pci = &host };
	blk_dd = device_find("virtio-blk");
	ck_assert_ptr_nonnull(blk_dd);
	disks = NULL;
	strcpy(path2, "/tmp/ember-test-blk2-XXXXXX");
	fd = mkstemp(path2);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, DISK_SIZE / 2), 0);
	close(fd);
	snprintf(disk_args[0], sizeof(disk_args[0]), "path=%s,serial=S0", path);
	snprintf(disk_args[1], sizeof(disk_args[1]), "path=%s,readonly=on,aio=threads", path2);
}

static void reg_teardown(void)
{
	if (disks)
		blk_dd->destroy(disks);
	pci_host_destroy(&host);
	unlink(path2);
	teardown();
}

static void add_disk(const char *args)
{
	vcfg.devices[vcfg.nr_devices++] = (struct device_spec){ "virtio-blk", args };
}

static json_t *qmp(const char *name)
{
	json_t *ret = NULL;
	char err[128];

	for (const struct device_qmp_command *c = blk_dd->qmp; c->name; c++)
		if (!strcmp(c->name, name)) {
			ck_assert_int_eq(c->fn(disks, NULL, &ret, err, sizeof(err)), 0);
			return ret;
		}
	ck_abort_msg("no QMP command %s", name);
	return NULL;
}

START_TEST(test_registry_realize_and_qmp)
{
	const struct virtio_device_desc *vd = virtio_device_find("virtio-blk");
	json_t *r, *e, *ins, *st;

	ck_assert_ptr_nonnull(vd);
	ck_assert_int_eq(vd->io, VIRTIO_IO_OWN);
	ck_assert_ptr_eq(dev_option_table_by_flag("disk"), &blk_option_table);
	/* No disks: the commands answer [] (also with no state at all). */
	ck_assert_int_eq(blk_dd->realize(blk_dd, &ctx, &disks), 0);
	r = qmp("query-block");
	ck_assert(json_is_array(r) && json_array_size(r) == 0);
	json_decref(r);
	blk_dd->destroy(disks);

	add_disk(disk_args[0]);
	add_disk(disk_args[1]);
	disks = NULL;
	ck_assert_int_eq(blk_dd->realize(blk_dd, &ctx, &disks), 0);
	ck_assert_uint_eq(virtio_set_count(disks), 2);
	/* Mass storage, the class it had before. */
	ck_assert_uint_eq(pci_host_config_read(&host, 0, 1, 0, PCI_REVISION_ID, 4) >> 8, 0x018000);

	r = qmp("query-block");
	ck_assert_uint_eq(json_array_size(r), 2);
	e = json_array_get(r, 1);
	ck_assert_str_eq(json_string_value(json_object_get(e, "device")), "virtio1");
	ck_assert_str_eq(json_string_value(json_object_get(e, "qdev")),
			 "/machine/peripheral/virtio1/virtio-backend");
	ck_assert_uint_eq(json_object_size(e), 7);
	ins = json_object_get(e, "inserted");
	ck_assert_uint_eq(json_object_size(ins), 16);
	ck_assert_str_eq(json_string_value(json_object_get(ins, "file")), path2);
	ck_assert(json_is_true(json_object_get(ins, "ro")));
	ck_assert(json_is_false(json_object_get(json_object_get(ins, "cache"), "direct")));
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(ins, "image"),
							    "virtual-size")), DISK_SIZE / 2);
	ck_assert(json_is_false(json_object_get(json_array_get(r, 0), "inserted") ?
				json_object_get(json_object_get(json_array_get(r, 0), "inserted"),
						"ro") : NULL));
	json_decref(r);

	r = qmp("query-blockstats");
	ck_assert_uint_eq(json_array_size(r), 2);
	e = json_array_get(r, 0);
	ck_assert_str_eq(json_string_value(json_object_get(e, "node-name")), "virtio0");
	st = json_object_get(e, "stats");
	ck_assert_uint_eq(json_object_size(st), 26);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "rd_operations")), 0);
	ck_assert(json_is_true(json_object_get(st, "account_failed")));
	json_decref(r);

	r = qmp("x-query-disks");
	ck_assert_uint_eq(json_array_size(r), 2);
	ck_assert_uint_eq(json_object_size(json_array_get(r, 1)), 7);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(r, 1),
							    "failed_operations")), 0);
	json_decref(r);
}
END_TEST

START_TEST(test_registry_errors_one_line)
{
	char missing[96];
	int ret;

	snprintf(missing, sizeof(missing), "path=%s.missing", path);
	add_disk(disk_args[0]);
	add_disk(missing);
	stderr_capture_begin();
	ret = blk_dd->realize(blk_dd, &ctx, &disks);
	ck_assert_uint_eq(stderr_capture_end(), 1);
	ck_assert_int_eq(ret, -ENOENT);
	ck_assert_ptr_null(disks);
	ck_assert_ptr_null(pci_host_device(&host, 1));	/* the first disk is gone too */
	/* The image is not locked any more: it can be opened again. */
	vcfg.nr_devices = 0;
	add_disk(disk_args[0]);
	ck_assert_int_eq(blk_dd->realize(blk_dd, &ctx, &disks), 0);
}
END_TEST

START_TEST(test_registry_save_load)
{
	char err[256] = "";
	json_t *saved, *d;

	add_disk(disk_args[0]);
	ck_assert_int_eq(blk_dd->realize(blk_dd, &ctx, &disks), 0);
	dev = virtio_set_device(disks, 0);
	blk = blk_of(dev);
	ck_assert_ptr_eq(blk_virtio(blk), dev);
	mock_vq_init(&mq, &mem, 256);
	ck_assert_int_eq(mock_virtio_bring_up(dev, &mq, ALL_FEATURES), 0);
	blk_dd->pause(disks);
	saved = blk_dd->save(disks);
	ck_assert_ptr_nonnull(saved);
	d = json_object_get(json_array_get(json_object_get(saved, "instances"), 0), "device");
	ck_assert_int_eq(json_integer_value(json_object_get(d, "capacity")), DISK_SECTORS);
	blk_dd->reset(disks);
	ck_assert_int_eq(blk_dd->load(disks, saved, err, sizeof(err)), 0);
	ck_assert(dev->active);
	/* Another image size: refused. */
	json_object_set_new(d, "capacity", json_integer(DISK_SECTORS + 8));
	ck_assert_int_eq(blk_dd->load(disks, saved, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "sectors saved"));
	blk_dd->resume(disks);
	blk = NULL;	/* the registry owns it */
	json_decref(saved);
}
END_TEST

static Suite *blk_suite(void)
{
	Suite *s = suite_create("virtio-blk");
	TCase *be = tcase_create("backends");
	TCase *req = tcase_create("requests");
	TCase *dv = tcase_create("device");
	TCase *opts = tcase_create("options");
	TCase *reg = tcase_create("registry");
	int nb = (int)(sizeof(backends) / sizeof(backends[0]));

	tcase_add_checked_fixture(be, setup, teardown);
	tcase_set_timeout(be, 60);
	tcase_add_loop_test(be, test_backend_write_flush_read, 0, nb);
	tcase_add_loop_test(be, test_backend_many_in_flight_one_irq, 0, nb);
	tcase_add_loop_test(be, test_inflight_bytes_bounded, 0, nb);
	suite_add_tcase(s, be);

	tcase_add_checked_fixture(req, setup, teardown);
	tcase_set_timeout(req, 60);
	tcase_add_test(req, test_get_id);
	tcase_add_test(req, test_get_id_no_serial);
	tcase_add_test(req, test_readonly);
	tcase_add_test(req, test_past_end);
	tcase_add_test(req, test_sector_overflow);
	tcase_add_test(req, test_discard_write_zeroes);
	tcase_add_test(req, test_short_header_is_ioerr);
	tcase_add_test(req, test_bad_requests);
	suite_add_tcase(s, req);

	tcase_add_checked_fixture(dv, setup, teardown);
	tcase_set_timeout(dv, 60);
	tcase_add_test(dv, test_no_status_byte_needs_reset);
	tcase_add_test(dv, test_malformed_chain_needs_reset);
	tcase_add_test(dv, test_pause_resume);
	tcase_add_test(dv, test_pause_nests);
	tcase_add_test(dv, test_stats_do_not_pause);
	tcase_add_test(dv, test_no_event_idx_notifies);
	tcase_add_test(dv, test_config_space);
	tcase_add_test(dv, test_status_machine);
	suite_add_tcase(s, dv);

	tcase_add_checked_fixture(opts, setup, teardown);
	tcase_add_test(opts, test_opts_valid);
	tcase_add_test(opts, test_opts_errors);
	tcase_add_test(opts, test_opts_null_and_create_errors);
	suite_add_tcase(s, opts);

	tcase_add_checked_fixture(reg, reg_setup, reg_teardown);
	tcase_set_timeout(reg, 60);
	tcase_add_test(reg, test_registry_realize_and_qmp);
	tcase_add_test(reg, test_registry_errors_one_line);
	tcase_add_test(reg, test_registry_save_load);
	suite_add_tcase(s, reg);
	return s;
}

int main(void)
{
	return ck_run_suite(blk_suite());
}
