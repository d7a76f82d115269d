#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/bus.h"
#include "helpers/ck_run.h"

struct rec {
	uint64_t off;
	unsigned len;
	uint32_t val;
	int writes, reads;
};

static void rec_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct rec *r = opaque;
	uint32_t v = 0xabcd0000u | (uint32_t)off;

	r->reads++;
	r->off = off;
	memcpy(data, &v, len > 4 ? 4 : len);
}

static void rec_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct rec *r = opaque;

	r->writes++;
	r->off = off;
	r->len = len;
	r->val = 0;
	memcpy(&r->val, data, len > 4 ? 4 : len);
}

static const struct bus_dev_ops ops = { rec_read, rec_write };

START_TEST(test_zero_length_and_overflow)
{
	struct bus b;
	struct rec r = { 0 };

	ck_assert_int_eq(bus_init(&b, "t"), 0);
	ck_assert_int_eq(bus_register(&b, 0x100, 0, &ops, &r, "z"), -EINVAL);
	ck_assert_int_eq(bus_register(&b, UINT64_MAX, 2, &ops, &r, "o"), -EINVAL);
	ck_assert_int_eq(bus_register(&b, UINT64_MAX - 0xf, 0x20, &ops, &r, "o"), -EINVAL);
	/* A range that ends exactly at 2^64 is fine. */
	ck_assert_int_eq(bus_register(&b, UINT64_MAX - 0xf, 0x10, &ops, &r, "top"), 0);
	ck_assert_int_eq(bus_register(&b, 0x100, 8, NULL, &r, "noops"), -EINVAL);
	bus_destroy(&b);
}
END_TEST

START_TEST(test_overlap)
{
	struct bus b;
	struct rec r = { 0 };

	ck_assert_int_eq(bus_init(&b, "t"), 0);
	ck_assert_int_eq(bus_register(&b, 0x100, 0x10, &ops, &r, "a"), 0);
	ck_assert_int_eq(bus_register(&b, 0x100, 0x10, &ops, &r, "same"), -EEXIST);
	ck_assert_int_eq(bus_register(&b, 0x10f, 1, &ops, &r, "lastbyte"), -EEXIST);
	ck_assert_int_eq(bus_register(&b, 0xf0, 0x11, &ops, &r, "head"), -EEXIST);
	ck_assert_int_eq(bus_register(&b, 0x80, 0x100, &ops, &r, "cover"), -EEXIST);
	ck_assert_int_eq(bus_register(&b, 0x108, 2, &ops, &r, "inside"), -EEXIST);
	/* Adjacent on both sides is fine. */
	ck_assert_int_eq(bus_register(&b, 0xf0, 0x10, &ops, &r, "below"), 0);
	ck_assert_int_eq(bus_register(&b, 0x110, 0x10, &ops, &r, "above"), 0);
	ck_assert_uint_eq(b.nr, 3);
	ck_assert_int_eq(bus_unregister(&b, 0x100), 0);
	ck_assert_int_eq(bus_unregister(&b, 0x100), -ENOENT);
	ck_assert_int_eq(bus_register(&b, 0x104, 4, &ops, &r, "again"), 0);
	bus_destroy(&b);
}
END_TEST

START_TEST(test_dispatch_offsets_and_unhandled)
{
	struct bus b;
	struct rec a = { 0 }, c = { 0 };
	uint32_t v = 0x11223344, out;
	uint8_t bytes[4];

	ck_assert_int_eq(bus_init(&b, "t"), 0);
	ck_assert_int_eq(bus_register(&b, 0x3f8, 8, &ops, &a, "uart"), 0);
	ck_assert_int_eq(bus_register(&b, 0x60, 1, &ops, &c, "kbd"), 0);
	ck_assert(bus_write(&b, 0x3fb, &v, 1));
	ck_assert_int_eq(a.off, 3);
	ck_assert_int_eq(a.val, 0x44);
	ck_assert(bus_read(&b, 0x3f9, &out, 4));
	ck_assert_uint_eq(out, 0xabcd0001u);
	/* An access crossing the end of a range is not handled. */
	ck_assert(!bus_write(&b, 0x3fe, &v, 4));
	ck_assert_int_eq(a.writes, 1);
	/* Unhandled: reads are all ones, counted. */
	memset(bytes, 0, sizeof(bytes));
	ck_assert(!bus_read(&b, 0x1234, bytes, 4));
	ck_assert_uint_eq(bytes[0] & bytes[1] & bytes[2] & bytes[3], 0xff);
	ck_assert(!bus_write(&b, 0x1234, &v, 2));
	ck_assert_uint_eq(b.unhandled_reads, 1);
	ck_assert_uint_eq(b.unhandled_writes, 2);
	ck_assert_uint_eq(b.ranges[1].writes, 1);	/* uart is ranges[1] (sorted) */
	bus_destroy(&b);
}
END_TEST

START_TEST(test_many_ranges_sorted_lookup)
{
	struct bus b;
	struct rec r[64];
	uint32_t v = 7;

	memset(r, 0, sizeof(r));
	ck_assert_int_eq(bus_init(&b, "t"), 0);
	/* Register in a scrambled order; lookups must still find each. */
	for (int i = 0; i < 64; i++) {
		int k = (i * 37) % 64;

		ck_assert_int_eq(bus_register(&b, 0x1000 + k * 0x10, 0x8, &ops, &r[k], "r"), 0);
	}
	for (int k = 0; k < 64; k++) {
		ck_assert(bus_write(&b, 0x1000 + k * 0x10 + 4, &v, 4));
		ck_assert_int_eq(r[k].writes, 1);
		ck_assert_int_eq(r[k].off, 4);
		ck_assert(!bus_write(&b, 0x1000 + k * 0x10 + 8, &v, 1));	/* the gaps */
	}
	bus_destroy(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_zero_length_and_overflow);
	tcase_add_test(tc, test_overlap);
	tcase_add_test(tc, test_dispatch_offsets_and_unhandled);
	tcase_add_test(tc, test_many_ranges_sorted_lookup);
	suite_add_tcase(s, tc);
	return ck_run_suite(s);
}
