/* Character backends: non-blocking output to a reader that stalls. The
 * console's transmit path runs on the main loop and must never wait for a
 * slow reader; the chardev takes what fits, says how much, and calls back
 * once the reader has made room. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/chardev/chardev.h"
#include "helpers/ck_run.h"
#include "vmm/config.h"
#include "base/evloop.h"

static unsigned writable_calls;

static void on_writable(void *opaque)
{
	ck_assert_ptr_eq(opaque, &writable_calls);
	writable_calls++;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

START_TEST(test_nb_write_to_stalled_fifo)
{
	enum { TOTAL = 1 << 20 };
	char dir[] = "/tmp/ember-test-chr-XXXXXX", path[64];
	struct evloop *loop = evloop_create();
	struct vm_config cfg;
	struct chardev *chr;
	uint8_t *src = malloc(TOTAL), *dst = malloc(TOTAL);
	size_t sent = 0, got = 0, n;
	int rfd, err = 0;
	double t0;

	ck_assert_ptr_nonnull(loop);
	ck_assert_ptr_nonnull(src);
	ck_assert_ptr_nonnull(dst);
	for (size_t i = 0; i < TOTAL; i++)
		src[i] = (uint8_t)(i * 13 + (i >> 12));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	rfd = open(path, O_RDONLY | O_NONBLOCK);
	ck_assert_int_ge(rfd, 0);

	memset(&cfg, 0, sizeof(cfg));
	cfg.console = CONSOLE_FILE;
	cfg.console_path = path;
	chr = chardev_create(&cfg, loop, NULL, NULL, NULL, &err);
	ck_assert_ptr_nonnull(chr);
	chardev_set_writable_cb(chr, on_writable, &writable_calls);
	writable_calls = 0;

	/* Nobody reads: the pipe fills, then the buffer, then it refuses,
	 * promptly and without blocking. */
	t0 = now();
	n = chardev_write_nb(chr, src, TOTAL);
	ck_assert_uint_lt(n, TOTAL);
	ck_assert_uint_ge(n, CHARDEV_OUT_BUF);
	ck_assert_uint_eq(chardev_out_pending(chr), CHARDEV_OUT_BUF);
	ck_assert_uint_eq(chardev_write_nb(chr, src + n, TOTAL - n), 0);
	ck_assert(now() - t0 < 2.0);
	sent = n;
	ck_assert_uint_eq(writable_calls, 0);

	/* The reader catches up: the loop drains the buffer and calls back. */
	while (got < TOTAL) {
		ssize_t r = read(rfd, dst + got, TOTAL - got);

		if (r > 0)
			got += (size_t)r;
		(void)evloop_run_once(loop, 10);
		if (writable_calls && sent < TOTAL) {
			writable_calls = 0;
			sent += chardev_write_nb(chr, src + sent, TOTAL - sent);
		}
		ck_assert(now() - t0 < 20.0);
	}
	ck_assert_uint_eq(sent, TOTAL);
	ck_assert(memcmp(src, dst, TOTAL) == 0);
	ck_assert_uint_eq(chardev_out_pending(chr), 0);

	chardev_destroy(chr);
	evloop_destroy(loop);
	close(rfd);
	unlink(path);
	rmdir(dir);
	free(src);
	free(dst);
}
END_TEST

/* A regular file and a loop-less chardev take everything. */
START_TEST(test_nb_write_regular_file)
{
	char path[] = "/tmp/ember-test-chr-XXXXXX";
	struct evloop *loop = evloop_create();
	struct vm_config cfg;
	struct chardev *chr;
	char buf[16];
	int fd, err = 0;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.console = CONSOLE_FILE;
	cfg.console_path = path;
	chr = chardev_create(&cfg, loop, NULL, NULL, NULL, &err);
	ck_assert_ptr_nonnull(chr);
	ck_assert_uint_eq(chardev_write_nb(chr, "hello", 5), 5);
	chardev_destroy(chr);
	chr = chardev_create(&cfg, NULL, NULL, NULL, NULL, &err);
	ck_assert_ptr_nonnull(chr);
	ck_assert_uint_eq(chardev_write_nb(chr, "world", 5), 5);
	chardev_destroy(chr);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), 5);
	ck_assert_mem_eq(buf, "world", 5);	/* O_TRUNC on each create */
	ck_assert_uint_eq(chardev_write_nb(NULL, "x", 1), 1);
	/* The same backend by kind and path, without a vm_config. */
	chr = chardev_open(CONSOLE_FILE, path, NULL, NULL, NULL, NULL, &err);
	ck_assert_ptr_nonnull(chr);
	ck_assert_uint_eq(chardev_write_nb(chr, "again", 5), 5);
	chardev_destroy(chr);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), 5);
	ck_assert_mem_eq(buf, "again", 5);
	err = 0;
	ck_assert_ptr_null(chardev_open(CONSOLE_FILE, NULL, NULL, NULL, NULL, NULL, &err));
	ck_assert_int_eq(err, -EINVAL);
	close(fd);
	unlink(path);
	evloop_destroy(loop);
}
END_TEST

static Suite *chardev_suite(void)
{
	Suite *s = suite_create("chardev");
	TCase *tc = tcase_create("nonblocking");

	tcase_add_test(tc, test_nb_write_to_stalled_fifo);
	tcase_add_test(tc, test_nb_write_regular_file);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(chardev_suite());
}
