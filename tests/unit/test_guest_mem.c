#include <check.h>
#include <errno.h>
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
	return ck_run_suite(s);
}
