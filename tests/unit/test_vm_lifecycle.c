/* VM pause and reset against the device lifecycle, on a machine without
 * vCPUs (no /dev/kvm needed): vm_pause quiesces every device after the
 * vCPUs park and nests across threads, vm_reset resets devices before it
 * zeroes RAM, device state saves and loads by name, the power button
 * reaches the device that has one, and a paused VM's virtio-blk neither
 * writes guest memory nor its image. */
#include <check.h>
#include <errno.h>
#include <endian.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "accel/kvm.h"
#include "base/bus.h"
#include "base/evloop.h"
#include "devices/acpi/pm.h"
#include "devices/device.h"
#include "devices/virtio/blk/blk.h"
#include "vmm/acpi/acpi.h"
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
	unsigned presses;
	json_int_t reg;		/* what save and load carry */
	bool refuse_load;
	/* For the two-thread test: hooks counted, not logged. */
	bool count_only;
	unsigned pauses, resumes;
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

	if (f->count_only) {
		/* Slow, so a second pauser arrives while this one works. */
		ck_assert(!__atomic_load_n(&f->paused, __ATOMIC_ACQUIRE));
		usleep(200);
		__atomic_add_fetch(&f->pauses, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&f->paused, true, __ATOMIC_RELEASE);
		return;
	}
	fake_note(f, 'p');
	f->paused = true;
	if (f->blk)
		blk_pause(f->blk);
}

static void fake_resume(void *state)
{
	struct fake_dev *f = state;

	if (f->count_only) {
		ck_assert(__atomic_load_n(&f->paused, __ATOMIC_ACQUIRE));
		__atomic_add_fetch(&f->resumes, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&f->paused, false, __ATOMIC_RELEASE);
		return;
	}
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

static void fake_power_button(void *state)
{
	((struct fake_dev *)state)->presses++;
}

static json_t *fake_save(void *state)
{
	struct fake_dev *f = state;

	ck_assert(f->paused);
	return json_pack("{s:I}", "reg", f->reg);
}

static int fake_load(void *state, json_t *saved, char *err, size_t errlen)
{
	struct fake_dev *f = state;
	json_t *reg = json_object_get(saved, "reg");

	ck_assert(f->paused);
	if (f->refuse_load || !json_is_integer(reg) || json_integer_value(reg) < 0) {
		snprintf(err, errlen, "reg: out of range");
		return -EINVAL;
	}
	f->reg = json_integer_value(reg);
	return 0;
}

static int fake_qmp_reg(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	struct fake_dev *f = state;
	json_t *set = json_object_get(args, "set");

	if (set && !json_is_integer(set)) {
		snprintf(err, errlen, "set: expected an integer");
		return -EINVAL;
	}
	if (set)
		f->reg = json_integer_value(set);
	*ret = json_pack("{s:I}", "reg", f->reg);
	return 0;
}

static int fake_qmp_enoent(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	(void)state; (void)args; (void)ret; (void)err; (void)errlen;
	return -ENOENT;
}

/* What virtio-blk answers for x-query-exits. */
static int fake_qmp_disks(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	(void)state; (void)args; (void)err; (void)errlen;
	*ret = json_pack("[{s:s, s:i, s:i}]", "device", "virtio0", "rd_bytes", 4096,
			 "failed_operations", 3);
	return 0;
}

static const struct device_qmp_command fake_qmp[] = {
	{ "x-fake-reg", fake_qmp_reg },
	{ "x-query-disks", fake_qmp_disks },
	{ "x-fake-enoent", fake_qmp_enoent },
	{ "query-status", fake_qmp_enoent },	/* shadowed by the built-in */
	{ NULL, NULL },
};

static struct device_desc fake_desc = {
	.name = "fake",
	.reset = fake_reset,
	.pause = fake_pause,
	.resume = fake_resume,
	.power_button = fake_power_button,
	.save = fake_save,
	.load = fake_load,
	.qmp = fake_qmp,
};

/* A disabled device still answers its commands, as for no instances. */
static int absent_qmp_count(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	(void)args; (void)err; (void)errlen;
	*ret = json_pack("{s:i}", "count", state ? 1 : 0);
	return 0;
}

static const struct device_qmp_command absent_qmp[] = {
	{ "x-absent-count", absent_qmp_count },
	{ "x-fake-reg", absent_qmp_count },	/* the first device offering it wins */
	{ NULL, NULL },
};

/* A second device without state hooks, and one disabled by config. */
static struct device_desc plain_desc = { .name = "plain" };
static struct device_desc absent_desc = { .name = "absent", .save = fake_save, .load = fake_load,
					  .qmp = absent_qmp };
static int plain_state;

static struct vm vm;
static struct fake_dev fake;
static struct vm_device_inst insts[3];

static void setup(void)
{
	memset(&vm, 0, sizeof(vm));
	memset(&fake, 0, sizeof(fake));
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	pthread_mutex_init(&vm.coalesced_lock, NULL);
	ck_assert_int_eq(gm_init(&vm.mem, 16 << 20, false), 0);
	fake.vm = &vm;
	insts[0] = (struct vm_device_inst){ &plain_desc, &plain_state };
	insts[1] = (struct vm_device_inst){ &fake_desc, &fake };
	insts[2] = (struct vm_device_inst){ &absent_desc, NULL };
	vm.devices = insts;
	vm.nr_devices = 3;
	vm.state = VM_STATE_RUNNING;
}

static void teardown(void)
{
	gm_destroy(&vm.mem);
}

/* Pauses nest: devices see one pause and one resume, at the first pause
 * and the last resume. */
START_TEST(test_pause_quiesces_devices)
{
	ck_assert_int_eq(vm_pause(&vm), 0);
	ck_assert_int_eq(vm.state, VM_STATE_PAUSED);
	ck_assert_str_eq(fake.log, "p");
	ck_assert_int_eq(vm_pause(&vm), 0);	/* already paused: not twice */
	ck_assert_str_eq(fake.log, "p");
	ck_assert_int_eq(vm_resume(&vm), 0);	/* one pause still held */
	ck_assert_int_eq(vm.state, VM_STATE_PAUSED);
	ck_assert_str_eq(fake.log, "p");
	ck_assert_int_eq(vm_resume(&vm), 0);
	ck_assert_int_eq(vm.state, VM_STATE_RUNNING);
	ck_assert_str_eq(fake.log, "pr");
	ck_assert_int_eq(vm_resume(&vm), 0);	/* nothing held: nothing to do */
	ck_assert_str_eq(fake.log, "pr");
	ck_assert_int_eq(vm.pause_count, 0);

	vm.state = VM_STATE_STOPPING;
	ck_assert_int_eq(vm_pause(&vm), -EBUSY);
	ck_assert_str_eq(fake.log, "pr");
}
END_TEST

/* Two threads pausing and resuming at once (QMP stop/cont against a
 * snapshot): whenever vm_pause returns, the device is quiesced; its hooks
 * alternate (fake_pause asserts it is not paused twice), and every pause
 * is matched in the end. */
struct pauser {
	unsigned rounds;
	unsigned bad;
};

static void *pause_loop(void *arg)
{
	struct pauser *p = arg;

	for (unsigned i = 0; i < p->rounds; i++) {
		if (vm_pause(&vm))
			p->bad++;
		if (!__atomic_load_n(&fake.paused, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&vm.state, __ATOMIC_ACQUIRE) != VM_STATE_PAUSED)
			p->bad++;
		usleep(i % 3 * 100);
		if (vm_resume(&vm))
			p->bad++;
	}
	return NULL;
}

START_TEST(test_pause_from_two_threads)
{
	struct pauser a = { .rounds = 400 }, b = { .rounds = 400 };
	pthread_t ta, tb;

	fake.count_only = true;
	ck_assert_int_eq(pthread_create(&ta, NULL, pause_loop, &a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, pause_loop, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ck_assert_uint_eq(a.bad, 0);
	ck_assert_uint_eq(b.bad, 0);
	ck_assert_int_eq(vm.state, VM_STATE_RUNNING);
	ck_assert_uint_eq(vm.pause_count, 0);
	ck_assert(!fake.paused);
	ck_assert_uint_ge(fake.pauses, 1);
	ck_assert_uint_eq(fake.pauses, fake.resumes);
	/* Overlapping holders shared pauses: fewer device pauses than calls. */
	ck_assert_uint_le(fake.pauses, a.rounds + b.rounds);
}
END_TEST

/* A reset while paused (QMP stop, then system_reset) leaves the VM paused. */
START_TEST(test_reset_keeps_pause)
{
	ck_assert_int_eq(vm_pause(&vm), 0);
	ck_assert_int_eq(vm_pause(&vm), 0);	/* what vm_reset does first */
	vm_reset_devices_and_memory(&vm);
	ck_assert_int_eq(vm_resume(&vm), 0);
	ck_assert_int_eq(vm.state, VM_STATE_PAUSED);
	ck_assert_str_eq(fake.log, "pR");
	ck_assert_int_eq(vm_resume(&vm), 0);
	ck_assert_str_eq(fake.log, "pRr");
}
END_TEST

START_TEST(test_power_button)
{
	ck_assert_uint_eq(vm_devices_power_button(&vm), 1);
	ck_assert_uint_eq(fake.presses, 1);
}
END_TEST

/* The machine's power button reaches the real ACPI PM device through its
 * hook: PWRBTN_STS is set. */
START_TEST(test_power_button_acpi_pm)
{
	const struct device_desc *d = device_find(ACPI_PM_DEVICE_NAME);
	struct vm_device_inst pm;
	struct kvm_vm kvm = { .vm_fd = -1, .sys_fd = -1 };
	uint16_t sts = 0;

	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(bus_init(&vm.pio_bus, "pio"), 0);
	vm.irqchip.kvm = &kvm;	/* no KVM: the SCI fails quietly */
	vm.dev_ctx = (struct device_ctx){ .pio_bus = &vm.pio_bus, .irqchip = &vm.irqchip };
	pm = (struct vm_device_inst){ (struct device_desc *)d, NULL };
	ck_assert_int_eq(d->realize(d, &vm.dev_ctx, &pm.state), 0);
	vm.devices = &pm;
	vm.nr_devices = 1;
	ck_assert_uint_eq(vm_devices_power_button(&vm), 1);
	ck_assert(bus_read(&vm.pio_bus, ACPI_PM1A_EVT_PORT, &sts, 2));
	ck_assert_uint_eq(sts, 1u << 8);
	d->destroy(pm.state);
	bus_destroy(&vm.pio_bus);
}
END_TEST

START_TEST(test_save_load)
{
	char err[256] = "";
	json_t *saved, *bad;

	fake.reg = 42;
	ck_assert_ptr_null(vm_devices_save(&vm));		/* running */
	ck_assert_int_eq(vm_devices_load(&vm, NULL, err, sizeof(err)), -EBUSY);
	ck_assert_int_eq(vm_pause(&vm), 0);
	saved = vm_devices_save(&vm);
	ck_assert_ptr_nonnull(saved);
	/* Only the device with state and a save hook. */
	ck_assert_uint_eq(json_object_size(saved), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(saved, "fake"), "reg")),
			 42);

	fake.reg = 7;
	ck_assert_int_eq(vm_devices_load(&vm, saved, err, sizeof(err)), 0);
	ck_assert_int_eq(fake.reg, 42);

	/* Nothing changes unless all of it checks out. */
	bad = json_pack("{s:{s:i}, s:{}}", "fake", "reg", 1, "nosuch");
	ck_assert_int_eq(vm_devices_load(&vm, bad, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "nosuch: no such device in this VM");
	ck_assert_int_eq(fake.reg, 42);
	json_decref(bad);
	bad = json_pack("{s:{}}", "absent");
	ck_assert_int_eq(vm_devices_load(&vm, bad, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "absent: no such device in this VM");
	json_decref(bad);
	bad = json_pack("{s:{}}", "plain");
	ck_assert_int_eq(vm_devices_load(&vm, bad, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "plain: the device cannot load state");
	json_decref(bad);
	bad = json_object();
	ck_assert_int_eq(vm_devices_load(&vm, bad, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "fake: no saved state for this device");
	json_decref(bad);
	bad = json_pack("{s:i}", "fake", 3);
	ck_assert_int_eq(vm_devices_load(&vm, bad, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "fake: saved state is not a JSON object");
	json_decref(bad);
	bad = json_array();
	ck_assert_int_eq(vm_devices_load(&vm, bad, err, sizeof(err)), -EINVAL);
	json_decref(bad);
	/* The device's own check, named. */
	bad = json_pack("{s:{s:i}}", "fake", "reg", -1);
	ck_assert_int_eq(vm_devices_load(&vm, bad, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "fake: reg: out of range");
	json_decref(bad);
	ck_assert_int_eq(fake.reg, 42);

	ck_assert_int_eq(vm_resume(&vm), 0);
	json_decref(saved);
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

/* The machine's QMP backend over a socket, the main loop run by hand:
 * device commands reach the first device that offers them (disabled ones
 * too), failures are GenericErrors, query-commands lists them, and QMP
 * stop/cont hold one pause that a snapshot's pause nests with. */
struct qmp_client {
	int fd;
	char buf[65536];
	size_t len;
};

static json_t *qmp_next(struct qmp_client *c)
{
	for (int i = 0; i < 500; i++) {
		char *nl = memchr(c->buf, '\n', c->len);
		ssize_t n;

		if (nl) {
			json_t *msg = json_loadb(c->buf, (size_t)(nl - c->buf), 0, NULL);

			c->len -= (size_t)(nl + 1 - c->buf);
			memmove(c->buf, nl + 1, c->len);
			ck_assert_ptr_nonnull(msg);
			if (json_object_get(msg, "event")) {
				json_decref(msg);
				continue;
			}
			return msg;
		}
		evloop_run_once(vm.loop, 10);
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
		if (n > 0)
			c->len += (size_t)n;
	}
	ck_abort_msg("no QMP reply");
	return NULL;
}

static json_t *qmp_cmd(struct qmp_client *c, const char *msg)
{
	ck_assert_int_eq(send(c->fd, msg, strlen(msg), MSG_NOSIGNAL), (ssize_t)strlen(msg));
	return qmp_next(c);
}

static json_t *qmp_return(struct qmp_client *c, const char *msg)
{
	json_t *r = qmp_cmd(c, msg), *ret = json_incref(json_object_get(r, "return"));

	ck_assert_msg(ret, "%s: %s", msg, json_dumps(r, JSON_COMPACT));
	json_decref(r);
	return ret;
}

static void qmp_expect_error(struct qmp_client *c, const char *msg, const char *cls,
			     const char *desc)
{
	json_t *r = qmp_cmd(c, msg), *e = json_object_get(r, "error");

	ck_assert_msg(e, "%s: %s", msg, json_dumps(r, JSON_COMPACT));
	ck_assert_str_eq(json_string_value(json_object_get(e, "class")), cls);
	ck_assert_str_eq(json_string_value(json_object_get(e, "desc")), desc);
	json_decref(r);
}

START_TEST(test_qmp_backend)
{
	struct vm_config cfg = { .api_sock_fd = -1, .qmp_max_clients = 2 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/ember-test-vmqmp-XXXXXX";
	struct qmp_client *c = calloc(1, sizeof(*c));
	unsigned found = 0, status = 0;
	json_t *r, *e;
	size_t i;

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/qmp.sock", dir);
	cfg.api_sock = sa.sun_path;
	vm.cfg = &cfg;
	ck_assert_int_eq(bus_init(&vm.pio_bus, "pio"), 0);
	ck_assert_int_eq(bus_init(&vm.mmio_bus, "mmio"), 0);
	vm.loop = evloop_create();
	ck_assert_ptr_nonnull(vm.loop);
	ck_assert_int_eq(vm_control_start(&vm), 0);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	r = qmp_next(c);	/* greeting */
	ck_assert_ptr_nonnull(json_object_get(r, "QMP"));
	json_decref(r);
	json_decref(qmp_return(c, "{\"execute\": \"qmp_capabilities\"}"));

	fake.reg = 5;
	r = qmp_return(c, "{\"execute\": \"x-fake-reg\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "reg")), 5);
	json_decref(r);
	r = qmp_return(c, "{\"execute\": \"x-fake-reg\", \"arguments\": {\"set\": 9}}");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "reg")), 9);
	ck_assert_int_eq(fake.reg, 9);
	json_decref(r);
	qmp_expect_error(c, "{\"execute\": \"x-fake-reg\", \"arguments\": {\"set\": \"x\"}}",
			 "GenericError", "set: expected an integer");
	qmp_expect_error(c, "{\"execute\": \"x-fake-enoent\"}", "GenericError",
			 "x-fake-enoent: No such file or directory");
	qmp_expect_error(c, "{\"execute\": \"x-nosuch\"}", "CommandNotFound",
			 "The command x-nosuch has not been found");
	r = qmp_return(c, "{\"execute\": \"x-absent-count\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "count")), 0);
	json_decref(r);
	r = qmp_return(c, "{\"execute\": \"query-status\"}");
	ck_assert_str_eq(json_string_value(json_object_get(r, "status")), "running");
	json_decref(r);

	r = qmp_return(c, "{\"execute\": \"query-commands\"}");
	json_array_foreach(r, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));

		found += !strcmp(n, "x-fake-reg") + !strcmp(n, "x-fake-enoent") +
			 !strcmp(n, "x-absent-count") + !strcmp(n, "x-query-disks");
		status += !strcmp(n, "query-status");
	}
	ck_assert_uint_eq(found, 4);
	ck_assert_uint_eq(status, 1);
	json_decref(r);

	/* stop, then a snapshot's pause, then cont: still paused until the
	 * snapshot lets go. A second stop or cont changes nothing. */
	json_decref(qmp_return(c, "{\"execute\": \"stop\"}"));
	ck_assert_int_eq(vm.state, VM_STATE_PAUSED);
	json_decref(qmp_return(c, "{\"execute\": \"stop\"}"));
	ck_assert_uint_eq(vm.pause_count, 1);
	ck_assert_int_eq(vm_pause(&vm), 0);
	json_decref(qmp_return(c, "{\"execute\": \"cont\"}"));
	ck_assert_int_eq(vm.state, VM_STATE_PAUSED);
	json_decref(qmp_return(c, "{\"execute\": \"cont\"}"));
	ck_assert_uint_eq(vm.pause_count, 1);
	ck_assert_int_eq(vm_resume(&vm), 0);
	ck_assert_int_eq(vm.state, VM_STATE_RUNNING);
	ck_assert_str_eq(fake.log, "pr");

	json_decref(qmp_return(c, "{\"execute\": \"system_powerdown\"}"));
	ck_assert_uint_eq(fake.presses, 1);

	/* x-query-exits: each disk's counters, from the block device. */
	r = qmp_return(c, "{\"execute\": \"x-query-exits\"}");
	e = json_array_get(json_object_get(r, "disks"), 0);
	ck_assert_uint_eq(json_array_size(json_object_get(r, "disks")), 1);
	ck_assert_str_eq(json_string_value(json_object_get(e, "device")), "virtio0");
	ck_assert_int_eq(json_integer_value(json_object_get(e, "rd_bytes")), 4096);
	ck_assert_int_eq(json_integer_value(json_object_get(e, "failed_operations")), 3);
	ck_assert(json_is_object(json_object_get(r, "reasons")));
	json_decref(r);

	close(c->fd);
	vm_control_stop(&vm);
	evloop_destroy(vm.loop);
	vm.loop = NULL;
	bus_destroy(&vm.pio_bus);
	bus_destroy(&vm.mmio_bus);
	rmdir(dir);
	free(c);
}
END_TEST

static Suite *vm_lifecycle_suite(void)
{
	Suite *s = suite_create("vm_lifecycle");
	TCase *tc = tcase_create("pause_reset");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pause_quiesces_devices);
	tcase_add_test(tc, test_pause_from_two_threads);
	tcase_add_test(tc, test_reset_keeps_pause);
	tcase_add_test(tc, test_power_button);
	tcase_add_test(tc, test_power_button_acpi_pm);
	tcase_add_test(tc, test_save_load);
	tcase_add_test(tc, test_qmp_backend);
	tcase_add_test(tc, test_reset_order);
	tcase_add_test(tc, test_paused_vm_blk_is_quiet);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(vm_lifecycle_suite());
}
