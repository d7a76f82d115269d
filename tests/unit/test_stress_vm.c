/* vm_pause/vm_resume storms (QMP stop/cont) on a VM without vCPUs (no
 * /dev/kvm needed) whose virtio-blk is, at the same time, driven by a
 * "guest" thread that queues I/O and resets and re-activates the device
 * (what a vCPU does through the transport) and polled by a "monitor"
 * thread (query-blockstats). While the VM is paused the disk must do
 * nothing at all, whatever the guest's resets do to the pause count; after
 * the storm it must work. Built for ThreadSanitizer (make test-tsan). */
#include <check.h>
#include <endian.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "devices/device.h"
#include "devices/virtio/blk/blk.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"
#include "vmm/vm.h"

#define STRESS_MS 1500

static struct vm vm;
static struct blk_dev *blk;
static struct virtio_device *dev;
static struct mock_mem mem;
static struct mock_vq mq;
static int stop_flag;

static void dev_pause(void *state)
{
	blk_pause(state);
}

static void dev_resume(void *state)
{
	blk_resume(state);
}

static struct device_desc blk_desc = {
	.name = "blk",
	.pause = dev_pause,
	.resume = dev_resume,
};

static bool stopping(void)
{
	return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE);
}

static void bring_up(uint64_t mark)
{
	mem.next = mark;
	mock_vq_init(&mq, &mem, 256);
	memset(mock_mem_ptr(&mem, mark, mem.next - mark), 0, mem.next - mark);
	ck_assert_int_eq(mock_virtio_bring_up(dev, &mq, ~0ULL), 0);
}

static uint64_t queue_req(uint32_t type, uint64_t sector)
{
	struct {
		uint32_t type, ioprio;
		uint64_t sector;
	} h = { htole32(type), 0, htole64(sector) };
	struct mock_buf b[3] = {
		{ mock_mem_alloc(&mem, 16, 16), 16, false },
		{ mock_mem_alloc(&mem, 4096, 512), 4096, type == VIRTIO_BLK_T_IN },
		{ mock_mem_alloc(&mem, 1, 1), 1, true },
	};

	mock_mem_write(&mem, b[0].gpa, &h, sizeof(h));
	memset(mock_mem_ptr(&mem, b[1].gpa, 4096), 0x77, 4096);
	*(uint8_t *)mock_mem_ptr(&mem, b[2].gpa, 1) = 0xEE;
	mock_vq_add_chain(&mq, b, 3);
	return b[2].gpa;
}

/* The guest: bring the disk up, queue I/O, reset it under the I/O. */
static void *guest(void *arg)
{
	uint64_t mark = *(uint64_t *)arg;
	unsigned iter = 0;

	while (!stopping()) {
		bring_up(mark);
		for (unsigned i = 0; i < 8; i++)
			queue_req(i & 1 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, i * 8);
		virtio_dev_queue_notify(dev, 0);
		usleep(iter++ % 500);
		ck_assert_int_eq(virtio_dev_set_status(dev, 0), 0);
	}
	return NULL;
}

static void *monitor(void *arg)
{
	struct blk_stats st;

	(void)arg;
	while (!stopping())
		blk_get_stats(blk, &st);
	return NULL;
}

START_TEST(test_stop_cont_storm)
{
	char path[] = "/tmp/ember-stress-vm-XXXXXX", opts[128];
	struct vm_device_inst inst;
	struct blk_opts o;
	struct blk_stats a, b;
	pthread_t tg, tm;
	uint64_t mark, st;
	unsigned cycles = 0, quiet_checks = 0;
	int64_t end;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
	memset(&vm, 0, sizeof(vm));
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	pthread_mutex_init(&vm.coalesced_lock, NULL);
	vm.state = VM_STATE_RUNNING;
	mock_mem_init(&mem, 0x100000, 8 << 20);
	snprintf(opts, sizeof(opts), "path=%s,aio=threads", path);
	ck_assert_int_eq(blk_parse_opts(opts, &o, NULL, 0), 0);
	ck_assert_int_eq(blk_create(&blk, &o, &mem.gm), 0);
	ck_assert_int_eq(blk_start(blk), 0);
	dev = blk_virtio(blk);
	inst = (struct vm_device_inst){ &blk_desc, blk };
	vm.devices = &inst;
	vm.nr_devices = 1;
	mark = mem.next;

	ck_assert_int_eq(pthread_create(&tg, NULL, guest, &mark), 0);
	ck_assert_int_eq(pthread_create(&tm, NULL, monitor, NULL), 0);
	end = monotonic_ms() + STRESS_MS;
	while (monotonic_ms() < end) {
		ck_assert_int_eq(vm_pause(&vm), 0);
		ck_assert_int_eq(vm.state, VM_STATE_PAUSED);
		/* Paused: not one request served, whatever the guest does. */
		if (cycles % 4 == 0) {
			blk_get_stats(blk, &a);
			usleep(2000);
			blk_get_stats(blk, &b);
			ck_assert_msg(a.requests == b.requests && a.batches == b.batches &&
				      a.wr_bytes == b.wr_bytes && a.rd_bytes == b.rd_bytes,
				      "the disk served requests while the VM was paused");
			quiet_checks++;
		}
		ck_assert_int_eq(vm_resume(&vm), 0);
		ck_assert_int_eq(vm.state, VM_STATE_RUNNING);
		usleep(cycles++ % 700);
	}
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	pthread_join(tg, NULL);
	pthread_join(tm, NULL);
	ck_assert_uint_ge(cycles, 10);
	ck_assert_uint_ge(quiet_checks, 3);
	blk_get_stats(blk, &a);
	ck_assert_uint_gt(a.requests, 0);

	/* Every pause was matched: the disk serves requests again. */
	bring_up(mark);
	st = queue_req(VIRTIO_BLK_T_OUT, 0);
	virtio_dev_queue_notify(dev, 0);
	for (int i = 0; i < 5000 && mock_vq_used_idx(&mq) == 0; i++)
		usleep(1000);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 1);
	ck_assert_uint_eq(*(uint8_t *)mock_mem_ptr(&mem, st, 1), VIRTIO_BLK_S_OK);

	blk_destroy(blk);
	mock_mem_destroy(&mem);
	close(fd);
	unlink(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_vm");
	TCase *tc = tcase_create("stop_cont");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_stop_cont_storm);
	suite_add_tcase(s, tc);
	return ck_run_suite(s);
}
