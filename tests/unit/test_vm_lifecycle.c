/* VM pause and reset against the device lifecycle, on a machine without
 * vCPUs (no /dev/kvm needed): vm_pause quiesces every device after the
 * vCPUs park, vm_reset resets devices before it zeroes RAM, and a paused
 * VM's virtio-blk neither writes guest memory nor its image. */
#include <check.h>
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/device.h"
#include "devices/virtio/blk.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"
#include "vmm/vm.h"

#define MARK_GPA 0x200000ULL

struct fake_dev {
	struct vm *vm;
	char log[64];
	size_t n;
	bool paused;
	bool saw_mark_at_reset;
	struct blk_dev *blk;
};

static void fake_note(struct fake_dev *f, char c)
{
	ck_assert_uint_lt(f->n, sizeof(f->log) - 1);
	f->log[f->n++] = c;
	f->log[f->n] = 0;
}

static void fake_pause(void *state)
{
	struct fake_dev *f = state;

	fake_note(f, 'p');
	f->paused = true;
	if (f->blk)
		blk_pause(f->blk);
}

static void fake_resume(void *state)
{
	struct fake_dev *f = state;

	fake_note(f, 'r');
	f->paused = false;
	if (f->blk)
		blk_resume(f->blk);
}

static void fake_reset(void *state)
{
	struct fake_dev *f = state;
	uint32_t mark = 0;

	fake_note(f, 'R');
	ck_assert_int_eq(gm_read(&f->vm->mem, MARK_GPA, &mark, sizeof(mark)), 0);
	f->saw_mark_at_reset = mark == 0xfeedface && f->paused;
}

static struct device_desc fake_desc = {
	.name = "fake",
	.reset = fake_reset,
	.pause = fake_pause,
	.resume = fake_resume,
};

static struct vm vm;
static struct fake_dev fake;
static struct vm_device_inst inst;

static void setup(void)
{
	memset(&vm, 0, sizeof(vm));
	memset(&fake, 0, sizeof(fake));
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	pthread_mutex_init(&vm.coalesced_lock, NULL);
	ck_assert_int_eq(gm_init(&vm.mem, 16 << 20, false), 0);
	fake.vm = &vm;
	inst = (struct vm_device_inst){ &fake_desc, &fake };
	vm.devices = &inst;
	vm.nr_devices = 1;
	vm.state = VM_STATE_RUNNING;
}

static void teardown(void)
{
	gm_destroy(&vm.mem);
}

START_TEST(test_pause_quiesces_devices)
{
	ck_assert_int_eq(vm_pause(&vm), 0);
	ck_assert_int_eq(vm.state, VM_STATE_PAUSED);
	ck_assert_str_eq(fake.log, "p");
	ck_assert_int_eq(vm_pause(&vm), 0);	/* already paused: not twice */
	ck_assert_str_eq(fake.log, "p");
	ck_assert_int_eq(vm_resume(&vm), 0);
	ck_assert_int_eq(vm.state, VM_STATE_RUNNING);
	ck_assert_str_eq(fake.log, "pr");
	ck_assert_int_eq(vm_resume(&vm), 0);
	ck_assert_str_eq(fake.log, "pr");
}
END_TEST

/* Devices reset while paused and before RAM is zeroed: anything they
 * still held cannot land in the next boot's memory. */
START_TEST(test_reset_order)
{
	const uint32_t mark = 0xfeedface;
	uint32_t v = 1;

	ck_assert_int_eq(gm_write(&vm.mem, MARK_GPA, &mark, sizeof(mark)), 0);
	ck_assert_int_eq(vm_pause(&vm), 0);
	vm_reset_devices_and_memory(&vm);
	ck_assert(fake.saw_mark_at_reset);
	ck_assert_int_eq(gm_read(&vm.mem, MARK_GPA, &v, sizeof(v)), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(vm_resume(&vm), 0);
	ck_assert_str_eq(fake.log, "pRr");
}
END_TEST

/* A paused VM's disk: a request the guest queued before the pause is not
 * performed (no image write, no used-ring write) until vm_resume. */
START_TEST(test_paused_vm_blk_is_quiet)
{
	char path[] = "/tmp/ember-test-vmblk-XXXXXX", opts[128];
	struct mock_mem mem;
	struct mock_vq mq;
	struct blk_opts o;
	struct {
		uint32_t type, ioprio;
		uint64_t sector;
	} h = { htole32(VIRTIO_BLK_T_OUT), 0, 0 };
	struct mock_buf b[3];
	uint8_t disk[512];
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
	mock_mem_init(&mem, 0x100000, 8 << 20);
	snprintf(opts, sizeof(opts), "path=%s,aio=threads", path);
	ck_assert_int_eq(blk_parse_opts(opts, &o, NULL, 0), 0);
	ck_assert_int_eq(blk_create(&fake.blk, &o, &mem.gm), 0);
	ck_assert_int_eq(blk_start(fake.blk), 0);
	mock_vq_init(&mq, &mem, 256);
	ck_assert_int_eq(mock_virtio_bring_up(blk_virtio(fake.blk), &mq, ~0ULL), 0);

	b[0] = (struct mock_buf){ mock_mem_alloc(&mem, 16, 16), 16, false };
	mock_mem_write(&mem, b[0].gpa, &h, sizeof(h));
	b[1] = (struct mock_buf){ mock_mem_alloc(&mem, 512, 512), 512, false };
	memset(mock_mem_ptr(&mem, b[1].gpa, 512), 0x5a, 512);
	b[2] = (struct mock_buf){ mock_mem_alloc(&mem, 1, 1), 1, true };
	*(uint8_t *)mock_mem_ptr(&mem, b[2].gpa, 1) = 0xee;

	ck_assert_int_eq(vm_pause(&vm), 0);
	mock_vq_add_chain(&mq, b, 3);
	virtio_dev_queue_notify(blk_virtio(fake.blk), 0);
	usleep(150 * 1000);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 0);
	ck_assert_uint_eq(*(uint8_t *)mock_mem_ptr(&mem, b[2].gpa, 1), 0xee);
	ck_assert_int_eq(pread(fd, disk, sizeof(disk), 0), (ssize_t)sizeof(disk));
	ck_assert_uint_eq(disk[0], 0);
	ck_assert_int_eq(vm_resume(&vm), 0);
	for (int i = 0; i < 2000 && mock_vq_used_idx(&mq) == 0; i++)
		usleep(1000);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert_uint_eq(*(uint8_t *)mock_mem_ptr(&mem, b[2].gpa, 1), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(pread(fd, disk, sizeof(disk), 0), (ssize_t)sizeof(disk));
	ck_assert_uint_eq(disk[0], 0x5a);

	blk_destroy(fake.blk);
	fake.blk = NULL;
	mock_mem_destroy(&mem);
	close(fd);
	unlink(path);
}
END_TEST

static Suite *vm_lifecycle_suite(void)
{
	Suite *s = suite_create("vm_lifecycle");
	TCase *tc = tcase_create("pause_reset");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pause_quiesces_devices);
	tcase_add_test(tc, test_reset_order);
	tcase_add_test(tc, test_paused_vm_blk_is_quiet);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(vm_lifecycle_suite());
}
