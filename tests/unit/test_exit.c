/* handle_exit() with fabricated kvm_run contents. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/exit.h"
#include "helpers/ck_run.h"

#define RUN_SIZE 12288
static struct kvm_run *run;

static void setup(void)
{
	run = aligned_alloc(4096, RUN_SIZE);
	memset(run, 0, RUN_SIZE);
}

static void teardown(void)
{
	free(run);
}

START_TEST(test_pio_out)
{
	struct exit_action a;

	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = KVM_EXIT_IO_OUT;
	run->io.port = 0xf4;
	run->io.size = 1;
	run->io.count = 1;
	run->io.data_offset = 4096;
	((uint8_t *)run)[4096] = 0x31;
	ck_assert_int_eq(handle_exit(run, RUN_SIZE, &a), 0);
	ck_assert_int_eq(a.kind, EXIT_ACT_PIO_OUT);
	ck_assert_uint_eq(a.addr, 0xf4);
	ck_assert_uint_eq(a.size, 1);
	ck_assert_uint_eq(a.data[0], 0x31);
}
END_TEST

START_TEST(test_pio_string_in)
{
	struct exit_action a;

	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = KVM_EXIT_IO_IN;
	run->io.port = 0x3f8;
	run->io.size = 2;
	run->io.count = 100;
	run->io.data_offset = 4096;
	ck_assert_int_eq(handle_exit(run, RUN_SIZE, &a), 0);
	ck_assert_int_eq(a.kind, EXIT_ACT_PIO_IN);
	ck_assert_uint_eq(a.count, 100);
	ck_assert_ptr_eq(a.data, (uint8_t *)run + 4096);
}
END_TEST

START_TEST(test_pio_malformed)
{
	struct exit_action a;

	run->exit_reason = KVM_EXIT_IO;
	run->io.size = 4;
	run->io.count = 0xffffffff;	/* size * count past the mapping */
	run->io.data_offset = 4096;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
	ck_assert_int_eq(a.kind, EXIT_ACT_ERROR);
	run->io.count = 1;
	run->io.data_offset = RUN_SIZE - 2;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
	run->io.data_offset = 4096;
	run->io.size = 3;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
	run->io.size = 1;
	run->io.data_offset = 0xffffffffffffull;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
}
END_TEST

START_TEST(test_mmio)
{
	struct exit_action a;

	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = 0xd0000100;
	run->mmio.len = 4;
	run->mmio.is_write = 0;
	ck_assert_int_eq(handle_exit(run, RUN_SIZE, &a), 0);
	ck_assert_int_eq(a.kind, EXIT_ACT_MMIO_READ);
	ck_assert_uint_eq(a.addr, 0xd0000100);
	ck_assert_ptr_eq(a.data, run->mmio.data);
	run->mmio.is_write = 1;
	ck_assert_int_eq(handle_exit(run, RUN_SIZE, &a), 0);
	ck_assert_int_eq(a.kind, EXIT_ACT_MMIO_WRITE);
	run->mmio.len = 9;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
	run->mmio.len = 0;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
}
END_TEST

START_TEST(test_lifecycle_exits)
{
	struct exit_action a;

	run->exit_reason = KVM_EXIT_SHUTDOWN;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_TRIPLE_FAULT);
	run->exit_reason = KVM_EXIT_HLT;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_HLT);
	run->exit_reason = KVM_EXIT_INTR;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_INTR);
	run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
	run->system_event.type = KVM_SYSTEM_EVENT_RESET;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_RESET);
	run->system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_POWEROFF);
	run->system_event.type = KVM_SYSTEM_EVENT_CRASH;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_CRASH);
	run->system_event.type = 0x1234;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
	ck_assert_int_eq(a.kind, EXIT_ACT_ERROR);
	run->exit_reason = 0xdead;
	ck_assert_int_lt(handle_exit(run, RUN_SIZE, &a), 0);
	ck_assert_int_eq(a.kind, EXIT_ACT_ERROR);
}
END_TEST

START_TEST(test_emulation_failure_with_bytes)
{
	struct exit_action a;

	run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	run->emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
	run->emulation_failure.ndata = 4;
	run->emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
	run->emulation_failure.insn_size = 1;
	run->emulation_failure.insn_bytes[0] = 0xcc;	/* int3 */
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_ERROR);
	ck_assert_uint_eq(a.suberror, 1);
	ck_assert_str_eq(a.what, "emulation failure");
	ck_assert_uint_eq(a.insn_len, 1);
	ck_assert_uint_eq(a.insn[0], 0xcc);
	/* A bogus insn_size is clamped. */
	run->emulation_failure.insn_size = 200;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_uint_le(a.insn_len, EXIT_INSN_MAX);
	/* Without the flag there are no bytes. */
	run->emulation_failure.flags = 0;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_uint_eq(a.insn_len, 0);
}
END_TEST

START_TEST(test_fail_entry)
{
	struct exit_action a;

	run->exit_reason = KVM_EXIT_FAIL_ENTRY;
	run->fail_entry.hardware_entry_failure_reason = 0x80000021;
	handle_exit(run, RUN_SIZE, &a);
	ck_assert_int_eq(a.kind, EXIT_ACT_ERROR);
	ck_assert_uint_eq(a.hw_reason, 0x80000021);
	ck_assert_str_eq(exit_reason_name(KVM_EXIT_FAIL_ENTRY), "FAIL_ENTRY");
	ck_assert_str_eq(exit_reason_name(9999), "OTHER");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("exit");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pio_out);
	tcase_add_test(tc, test_pio_string_in);
	tcase_add_test(tc, test_pio_malformed);
	tcase_add_test(tc, test_mmio);
	tcase_add_test(tc, test_lifecycle_exits);
	tcase_add_test(tc, test_emulation_failure_with_bytes);
	tcase_add_test(tc, test_fail_entry);
	suite_add_tcase(s, tc);
	return ck_run_suite(s);
}
