/* Draining KVM's coalesced MMIO/PIO ring with indexes that cannot be
 * trusted: first or last at or past the ring size must neither index past
 * the page nor loop forever (the drain holds coalesced_lock). */
#include <check.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/ck_run.h"
#include "vmm/vcpu.h"

#define RING_MAX ((4096 - sizeof(struct kvm_coalesced_mmio_ring)) / sizeof(struct kvm_coalesced_mmio))

static unsigned writes;
static uint64_t last_addr;

static void on_write(void *opaque, bool pio, uint64_t addr, const void *data, unsigned len)
{
	(void)opaque;
	(void)pio;
	(void)data;
	ck_assert_uint_le(len, 8);
	writes++;
	last_addr = addr;
}

static struct kvm_coalesced_mmio_ring *new_ring(void)
{
	struct kvm_coalesced_mmio_ring *r = aligned_alloc(4096, 4096);

	ck_assert_ptr_nonnull(r);
	memset(r, 0, 4096);
	for (uint32_t i = 0; i < RING_MAX; i++) {
		r->coalesced_mmio[i].phys_addr = 0x1000 + i;
		r->coalesced_mmio[i].len = 4;
		r->coalesced_mmio[i].pio = 1;
	}
	writes = 0;
	return r;
}

START_TEST(test_normal_and_wrapping)
{
	struct kvm_coalesced_mmio_ring *r = new_ring();

	r->first = 2;
	r->last = 5;
	ck_assert_uint_eq(coalesced_ring_drain(r, RING_MAX, on_write, NULL), 3);
	ck_assert_uint_eq(r->first, 5);
	ck_assert_uint_eq(last_addr, 0x1004);
	r->first = RING_MAX - 2;
	r->last = 1;
	ck_assert_uint_eq(coalesced_ring_drain(r, RING_MAX, on_write, NULL), 3);
	ck_assert_uint_eq(r->first, 1);
	ck_assert_uint_eq(coalesced_ring_drain(r, RING_MAX, on_write, NULL), 0);
	free(r);
}
END_TEST

START_TEST(test_last_out_of_range)
{
	struct kvm_coalesced_mmio_ring *r = new_ring();

	r->first = 0;
	r->last = RING_MAX;	/* never equal to a wrapped first */
	ck_assert_uint_eq(coalesced_ring_drain(r, RING_MAX, on_write, NULL), 0);
	ck_assert_uint_eq(writes, 0);
	r->last = 0xffffffff;
	r->first = 7;
	ck_assert_uint_eq(coalesced_ring_drain(r, RING_MAX, on_write, NULL), 0);
	ck_assert_uint_lt(r->first, RING_MAX);
	free(r);
}
END_TEST

START_TEST(test_first_out_of_range)
{
	struct kvm_coalesced_mmio_ring *r = new_ring();

	r->first = RING_MAX + 3;
	r->last = 4;
	ck_assert_uint_eq(coalesced_ring_drain(r, RING_MAX, on_write, NULL), 0);
	ck_assert_uint_eq(r->first, 4);
	ck_assert_uint_eq(writes, 0);
	free(r);
}
END_TEST

START_TEST(test_entry_len_clamped)
{
	struct kvm_coalesced_mmio_ring *r = new_ring();

	r->coalesced_mmio[0].len = 0xffffffff;
	r->first = 0;
	r->last = 1;
	ck_assert_uint_eq(coalesced_ring_drain(r, RING_MAX, on_write, NULL), 1);
	free(r);
}
END_TEST

static Suite *coalesced_suite(void)
{
	Suite *s = suite_create("coalesced");
	TCase *tc = tcase_create("ring");

	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_normal_and_wrapping);
	tcase_add_test(tc, test_last_out_of_range);
	tcase_add_test(tc, test_first_out_of_range);
	tcase_add_test(tc, test_entry_len_clamped);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(coalesced_suite());
}
