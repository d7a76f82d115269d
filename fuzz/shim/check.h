/* The few check(3) assertions tests/unit/helpers/mock_vq.c uses, for
 * fuzzers that link it: libcheck's own need a running SRunner, and a failed
 * helper assertion is a fuzzer bug, so it aborts. */
#ifndef EMBER_FUZZ_SHIM_CHECK_H
#define EMBER_FUZZ_SHIM_CHECK_H

#include <stdlib.h>

#define ck_assert(c)			do { if (!(c)) abort(); } while (0)
#define ck_assert_msg(c, ...)		ck_assert(c)
#define ck_assert_int_eq(a, b)		ck_assert((a) == (b))
#define ck_assert_uint_gt(a, b)		ck_assert((a) > (b))
#define ck_assert_uint_le(a, b)		ck_assert((a) <= (b))
#define ck_assert_uint_lt(a, b)		ck_assert((a) < (b))
#define ck_assert_ptr_nonnull(p)	ck_assert((p) != NULL)

#endif
