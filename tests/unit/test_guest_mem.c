#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/guest_mem.h"
#include "helpers/ck_run.h"

static struct guest_mem gm;
static uint8_t *lo, *hi;

/* Two regions with a hole: [0, 64K) and [1M, 1M+64K). */
static void setup(void)
{
	memset(&gm, 0, sizeof(gm));
	lo = calloc(1, 65536);
	hi = calloc(1, 65536);
	ck_assert_int_eq(gm_add_region(&gm, 0, 65536, lo), 0);
	ck_assert_int_eq(gm_add_region(&gm, 1 << 20, 65536, hi), 0);
}

static void teardown(void)
{
	gm_destroy(&gm);	/* frees dirty bitmaps; the regions are ours */
	free(lo);
	free(hi);
}

START_TEST(test_ptr_inside)
{
	ck_assert_ptr_eq(gm_ptr(&gm, 0, 1), lo);
	ck_assert_ptr_eq(gm_ptr(&gm, 100, 65436), lo + 100);
	ck_assert_ptr_eq(gm_ptr(&gm, (1 << 20) + 8, 8), hi + 8);
}
END_TEST

START_TEST(test_ptr_straddles_edge)
{
	ck_assert_ptr_null(gm_ptr(&gm, 65535, 2));
	ck_assert_ptr_null(gm_ptr(&gm, 65536, 1));		/* in the hole */
	ck_assert_ptr_null(gm_ptr(&gm, (1 << 20) - 1, 2));	/* hole into region */
	ck_assert_ptr_null(gm_ptr(&gm, (1 << 20) + 65535, 2));	/* past the end */
	ck_assert_ptr_null(gm_ptr(&gm, 0, 0));			/* zero length */
	ck_assert_ptr_null(gm_ptr(&gm, 0, 65537));
}
END_TEST

START_TEST(test_wraparound)
{
	ck_assert_ptr_null(gm_ptr(&gm, UINT64_MAX, 2));
	ck_assert_ptr_null(gm_ptr(&gm, UINT64_MAX - 3, 8));
	ck_assert_ptr_null(gm_ptr(&gm, 16, UINT64_MAX));
	ck_assert_int_eq(gm_read(&gm, UINT64_MAX - 1, lo, 4), -EFAULT);
	ck_assert_int_eq(gm_write(&gm, 8, lo, SIZE_MAX), -EFAULT);
}
END_TEST

START_TEST(test_read_write_and_atomicity)
{
	uint8_t buf[16];

	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(gm_write(&gm, 65536 - 8, buf, 8), 0);
	ck_assert_uint_eq(lo[65535], 0x5a);
	/* A write that would cross into the hole fails without writing. */
	memset(buf, 0xa5, sizeof(buf));
	ck_assert_int_eq(gm_write(&gm, 65536 - 8, buf, 16), -EFAULT);
	ck_assert_uint_eq(lo[65535], 0x5a);
	ck_assert_int_eq(gm_read(&gm, (1 << 20) + 65530, buf, 10), -EFAULT);
	ck_assert_int_eq(gm_fill(&gm, 0, 0x11, 65536), 0);
	ck_assert_uint_eq(lo[12345], 0x11);
	ck_assert_int_eq(gm_fill(&gm, 1, 0x11, 65536), -EFAULT);
}
END_TEST

START_TEST(test_adjacent_regions_span)
{
	struct guest_mem g2;
	uint8_t *a = calloc(1, 4096), *b = calloc(1, 4096);
	uint8_t buf[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	memset(&g2, 0, sizeof(g2));
	ck_assert_int_eq(gm_add_region(&g2, 0x1000, 4096, a), 0);
	ck_assert_int_eq(gm_add_region(&g2, 0x2000, 4096, b), 0);
	/* gm_read/gm_write may span adjacent regions; gm_ptr may not. */
	ck_assert_int_eq(gm_write(&g2, 0x1ffc, buf, 8), 0);
	ck_assert_uint_eq(a[4095], 4);
	ck_assert_uint_eq(b[0], 5);
	ck_assert_ptr_null(gm_ptr(&g2, 0x1ffc, 8));
	/* Regions must be ordered and must not overlap. */
	ck_assert_int_eq(gm_add_region(&g2, 0x2800, 4096, a), -EINVAL);
	ck_assert_int_eq(gm_add_region(&g2, 0x0, 4096, a), -EINVAL);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_memfd_layout_around_hole)
{
	struct guest_mem m;
	uint64_t size = GM_MMIO_HOLE_START + (64ULL << 20);

	/* Reserve only: MAP_NORESERVE over a sparse memfd costs nothing. */
	ck_assert_int_eq(gm_init(&m, size, false), 0);
	ck_assert_uint_eq(m.nr, 2);
	ck_assert_uint_eq(gm_low_ram_end(&m), GM_MMIO_HOLE_START);
	ck_assert_uint_eq(m.regions[1].gpa, GM_MMIO_HOLE_END);
	ck_assert_uint_eq(gm_ram_end(&m), GM_MMIO_HOLE_END + (64ULL << 20));
	ck_assert_ptr_null(gm_ptr(&m, GM_MMIO_HOLE_START, 1));
	ck_assert_ptr_nonnull(gm_ptr(&m, GM_MMIO_HOLE_END, 4096));
	ck_assert_int_eq(gm_zero_all(&m), 0);
	gm_destroy(&m);
	ck_assert_int_eq(gm_init(&m, 4096, false), -EINVAL);
	ck_assert_int_eq(gm_init(&m, (16ULL << 20) + 1, false), -EINVAL);
}
END_TEST

/* ---- Dirty logging ---- */

#define PG GM_DIRTY_PAGE_SIZE

/* Region `r`'s dirty pages, fetched (and so cleared), as a bitmask of the
 * first 64 pages; *n gets the count. */
static uint64_t fetch(unsigned r, long *n)
{
	uint64_t bm[4] = { 0 };

	ck_assert_uint_le(guest_mem_dirty_log_words(&gm, r), 4);
	*n = guest_mem_dirty_log_fetch(&gm, r, bm, 4);
	ck_assert_int_ge(*n, 0);
	for (unsigned w = 1; w < 4; w++)
		ck_assert_uint_eq(bm[w], 0);	/* 16 pages per region here */
	return bm[0];
}

START_TEST(test_dirty_off_by_default)
{
	uint64_t bm[1];
	uint8_t buf[8] = { 0 };

	ck_assert(!guest_mem_dirty_logging(&gm));
	ck_assert_int_eq(gm_write(&gm, 0, buf, 8), 0);
	guest_mem_mark_dirty(&gm, 0, 4096);
	ck_assert_int_eq(guest_mem_dirty_log_fetch(&gm, 0, bm, 1), -ENODATA);
	ck_assert_uint_eq(guest_mem_dirty_log_words(&gm, 0), 1);
	ck_assert_uint_eq(guest_mem_dirty_log_words(&gm, 2), 0);
}
END_TEST

START_TEST(test_dirty_accessors_mark)
{
	uint8_t buf[16];
	long n;

	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(guest_mem_dirty_log_start(&gm), 0);
	ck_assert(guest_mem_dirty_logging(&gm));
	ck_assert_uint_eq(fetch(0, &n), 0);
	ck_assert_int_eq(n, 0);
	/* A write across a page boundary marks both pages, once. */
	ck_assert_int_eq(gm_write(&gm, 2 * PG - 8, buf, 16), 0);
	ck_assert_uint_eq(fetch(0, &n), 3ULL << 1);
	ck_assert_int_eq(n, 2);
	ck_assert_uint_eq(fetch(0, &n), 0);	/* fetched means cleared */
	/* gm_fill too; reads do not. */
	ck_assert_int_eq(gm_fill(&gm, (1 << 20) + 5 * PG, 0, PG + 1), 0);
	ck_assert_int_eq(gm_read(&gm, 0, buf, 16), 0);
	ck_assert_uint_eq(fetch(0, &n), 0);
	ck_assert_uint_eq(fetch(1, &n), 3ULL << 5);
	/* A write that fails (into the hole) marks nothing. */
	ck_assert_int_eq(gm_write(&gm, 65536 - 8, buf, 16), -EFAULT);
	ck_assert_uint_eq(fetch(0, &n), 0);
	/* gm_zero_all dirties everything. */
	ck_assert_int_eq(gm_zero_all(&gm), 0);
	ck_assert_uint_eq(fetch(0, &n), 0xffff);
	ck_assert_uint_eq(fetch(1, &n), 0xffff);
	/* Stopped: no more marks; restarting starts clean. */
	guest_mem_dirty_log_stop(&gm);
	ck_assert_int_eq(gm_write(&gm, 0, buf, 1), 0);
	ck_assert_uint_eq(fetch(0, &n), 0);
	ck_assert_int_eq(guest_mem_dirty_log_start(&gm), 0);
	guest_mem_mark_dirty(&gm, 0, 1);
	guest_mem_dirty_log_stop(&gm);
	ck_assert_int_eq(guest_mem_dirty_log_start(&gm), 0);
	ck_assert_uint_eq(fetch(0, &n), 0);
}
END_TEST

START_TEST(test_dirty_mark_raw_ranges)
{
	uint64_t bm[2];
	long n;

	ck_assert_int_eq(guest_mem_dirty_log_start(&gm), 0);
	/* What a device wrote through gm_ptr(). */
	guest_mem_mark_dirty(&gm, 3 * PG, 1);
	guest_mem_mark_dirty(&gm, 7 * PG + 100, 0);		/* nothing */
	ck_assert_uint_eq(fetch(0, &n), 1ULL << 3);
	/* Only RAM is marked: a range over the hole and both regions. */
	guest_mem_mark_dirty(&gm, 15 * PG, (1 << 20) - 15 * PG + 1);
	ck_assert_uint_eq(fetch(0, &n), 1ULL << 15);
	ck_assert_uint_eq(fetch(1, &n), 1ULL);
	/* Wrapping and far-away ranges are clamped, never fatal. */
	guest_mem_mark_dirty(&gm, UINT64_MAX - 10, 100);
	guest_mem_mark_dirty(&gm, 1ULL << 40, 4096);
	guest_mem_mark_dirty(&gm, 8, UINT64_MAX);
	ck_assert_uint_eq(fetch(0, &n), 0xffff);
	ck_assert_uint_eq(fetch(1, &n), 0xffff);
	/* By host address: gm_ptr() pointers and the iovecs built on them. */
	guest_mem_mark_dirty_hva(&gm, lo + 2 * PG + 1, PG);		/* pages 2, 3 */
	guest_mem_mark_dirty_hva(&gm, hi + 9 * PG, 1);
	guest_mem_mark_dirty_hva(&gm, bm, sizeof(bm));			/* not guest RAM */
	ck_assert_uint_eq(fetch(0, &n), 3ULL << 2);
	ck_assert_uint_eq(fetch(1, &n), 1ULL << 9);
	{
		struct iovec iov[3] = {
			{ lo + 4 * PG, PG }, { hi, 2 * PG }, { lo + 12 * PG, PG },
		};

		/* The first PG + 10 bytes were written: page 4 and page 0 of hi. */
		guest_mem_mark_dirty_iov(&gm, iov, 3, PG + 10);
		ck_assert_uint_eq(fetch(0, &n), 1ULL << 4);
		ck_assert_uint_eq(fetch(1, &n), 1ULL);
		guest_mem_mark_dirty_iov(&gm, iov, 3, SIZE_MAX);
		ck_assert_uint_eq(fetch(0, &n), 1ULL << 4 | 1ULL << 12);
		ck_assert_uint_eq(fetch(1, &n), 3ULL);
	}
	/* Bad arguments. */
	ck_assert_int_eq(guest_mem_dirty_log_fetch(&gm, 2, bm, 2), -ENOENT);
	ck_assert_int_eq(guest_mem_dirty_log_fetch(&gm, 0, bm, 0), -EINVAL);
}
END_TEST

START_TEST(test_dirty_bitmap_words)
{
	struct guest_mem g;
	size_t size = 130 * PG + 1;	/* 131 pages: three words */
	uint8_t *ram = calloc(1, size);
	uint64_t bm[3];

	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(gm_add_region(&g, 0, size, ram), 0);
	ck_assert_uint_eq(guest_mem_dirty_log_words(&g, 0), 3);
	ck_assert_int_eq(guest_mem_dirty_log_start(&g), 0);
	guest_mem_mark_dirty(&g, 60 * PG, 10 * PG);	/* pages 60-69, across a word */
	guest_mem_mark_dirty(&g, size - 1, 1);		/* the partial last page */
	ck_assert_int_eq(guest_mem_dirty_log_fetch(&g, 0, bm, 2), -EINVAL);
	ck_assert_int_eq(guest_mem_dirty_log_fetch(&g, 0, bm, 3), 11);
	ck_assert_uint_eq(bm[0], 0xfULL << 60);
	ck_assert_uint_eq(bm[1], 0x3fULL);
	ck_assert_uint_eq(bm[2], 1ULL << 2);
	gm_destroy(&g);
	free(ram);
}
END_TEST

struct marker {
	unsigned id;
};

static void *mark_pages(void *arg)
{
	const struct marker *m = arg;

	/* Four threads, each its own page of every word, many times. */
	for (unsigned rep = 0; rep < 2000; rep++)
		for (unsigned p = m->id; p < 16; p += 4)
			guest_mem_mark_dirty(&gm, p * PG, 1);
	return NULL;
}

START_TEST(test_dirty_concurrent_marks)
{
	pthread_t t[4];
	struct marker m[4];
	long n;

	ck_assert_int_eq(guest_mem_dirty_log_start(&gm), 0);
	for (unsigned i = 0; i < 4; i++) {
		m[i].id = i;
		ck_assert_int_eq(pthread_create(&t[i], NULL, mark_pages, &m[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(fetch(0, &n), 0xffff);	/* no mark lost to a race */
	ck_assert_int_eq(n, 16);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guest_mem");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ptr_inside);
	tcase_add_test(tc, test_ptr_straddles_edge);
	tcase_add_test(tc, test_wraparound);
	tcase_add_test(tc, test_read_write_and_atomicity);
	tcase_add_test(tc, test_adjacent_regions_span);
	tcase_add_test(tc, test_memfd_layout_around_hole);
	suite_add_tcase(s, tc);

	tc = tcase_create("dirty");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_dirty_off_by_default);
	tcase_add_test(tc, test_dirty_accessors_mark);
	tcase_add_test(tc, test_dirty_mark_raw_ranges);
	tcase_add_test(tc, test_dirty_bitmap_words);
	tcase_add_test(tc, test_dirty_concurrent_marks);
	suite_add_tcase(s, tc);
	return ck_run_suite(s);
}
