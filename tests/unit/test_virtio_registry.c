/* The virtio device registry (devices/virtio/registry.c) with a fake device
 * registered only in this binary: realize from cfg->devices (options
 * parsed, PCI function, start, main-loop kicks), errors as one line naming
 * the flag and instance with everything unwound, the lifecycle hooks, QMP
 * state, and save/load of the virtio state with its validation. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/evloop.h"
#include "devices/pci/pci.h"
#include "devices/virtio/registry.h"
#include "devices/virtio/virtio_pci.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"
#include "vmm/config.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(4ULL << 20)
#define FAKE_QSIZE	16
#define FAKE_CLASS	0x0a0b0cU

/* ---- The fake device ---- */

struct fake_opts {
	char *name;
	bool fail;
	uint64_t queues;
};

struct fake {
	struct virtio_device vdev;
	const struct fake_opts *opts;
	unsigned kicks[2];
	unsigned served;
	unsigned pauses, resumes;
	bool hold;		/* keep popped chains (in flight) */
	bool unpop_on_save;	/* hand them back in save() */
	struct vq_chain chain;
};

static unsigned created, destroyed, started, stopped;
static bool fail_start;

static struct fake *to_fake(struct virtio_device *dev)
{
	return container_of(dev, struct fake, vdev);
}

static int f_activate(struct virtio_device *dev)
{
	(void)dev;
	return 0;
}

static void f_reset(struct virtio_device *dev)
{
	(void)dev;
}

static const struct virtio_device_ops fake_ops = {
	.name = "virtio-fake",
	.device_id = 42,
	.activate = f_activate,
	.reset = f_reset,
};

static int fake_create(struct device_ctx *ctx, const void *o, struct virtio_device **out)
{
	const struct fake_opts *opts = o;
	struct fake *f;
	int ret;

	if (opts->fail) {
		virtio_create_error("told to fail (name %s)", opts->name ? opts->name : "-");
		return -EIO;
	}
	f = calloc(1, sizeof(*f));
	ck_assert_ptr_nonnull(f);
	f->opts = opts;
	ret = virtio_dev_init(&f->vdev, &fake_ops, ctx->mem, (unsigned)opts->queues, FAKE_QSIZE,
			      VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX));
	if (ret) {
		free(f);
		return ret;
	}
	created++;
	*out = &f->vdev;
	return 0;
}

static int fake_start(struct virtio_device *dev)
{
	(void)dev;
	if (fail_start)
		return -EAGAIN;
	started++;
	return 0;
}

static void fake_stop(struct virtio_device *dev)
{
	(void)dev;
	stopped++;
}

static void fake_destroy(struct virtio_device *dev)
{
	struct fake *f = to_fake(dev);

	virtio_dev_destroy(dev);
	free(f);
	destroyed++;
}

/* Serve queue q: every chain back with len 0 (unless holding them). */
static void fake_kick(struct virtio_device *dev, unsigned q)
{
	struct fake *f = to_fake(dev);
	struct virtqueue *vq = virtio_dev_queue(dev, q);

	f->kicks[q]++;
	if (!vq->ready)
		return;
	while (virtqueue_pop(vq, &f->chain) == 1) {
		f->served++;
		if (!f->hold)
			virtqueue_push(vq, f->chain.head, 0);
	}
}

static void fake_pause(struct virtio_device *dev)
{
	to_fake(dev)->pauses++;
}

static void fake_resume(struct virtio_device *dev)
{
	to_fake(dev)->resumes++;
}

static json_t *fake_save(struct virtio_device *dev)
{
	struct fake *f = to_fake(dev);

	if (f->unpop_on_save) {
		virtqueue_unpop(&dev->queues[0], (uint16_t)dev->queues[0].inflight);
		f->served = 0;
	}
	return json_pack("{s:i}", "served", f->served);
}

static int fake_load(struct virtio_device *dev, json_t *saved, char *err, size_t errlen)
{
	json_t *v = json_object_get(saved, "served");

	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(err, errlen, "served: expected a count");
		return -EINVAL;
	}
	to_fake(dev)->served = (unsigned)json_integer_value(v);
	return 0;
}

static int qmp_count(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	struct virtio_set *set = state;
	json_t *names = json_array();

	(void)args; (void)err; (void)errlen;
	for (unsigned i = 0; i < virtio_set_count(set); i++) {
		const struct fake_opts *o = virtio_set_options(set, i);

		ck_assert_ptr_eq(to_fake(virtio_set_device(set, i))->opts, o);
		json_array_append_new(names, json_string(o->name ? o->name : ""));
	}
	*ret = json_pack("{s:i, s:o}", "count", virtio_set_count(set), "names", names);
	return 0;
}

static const struct device_qmp_command fake_qmp[] = {
	{ "x-fake-count", qmp_count },
	{ NULL, NULL },
};

static const struct dev_option fake_opt_list[] = {
	{ .name = "name", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct fake_opts, name),
	  .help = "a label" },
	{ .name = "fail", .type = DEV_OPT_BOOL, .offset = DEV_OPT_FIELD(struct fake_opts, fail),
	  .help = "make create() fail" },
	{ .name = "queues", .type = DEV_OPT_UINT, .offset = DEV_OPT_FIELD(struct fake_opts, queues),
	  .help = "queues", .def = "2", .min = 1, .max = 2 },
};

static struct dev_option_table fake_table = {
	.flag = "fake",
	.json_key = "fake",
	.summary = "a fake virtio device for the registry's unit test",
	.max_instances = 3,
	.size = sizeof(struct fake_opts),
	.opts = fake_opt_list,
	.nr_opts = DEV_OPT_COUNT(fake_opt_list),
};

static struct virtio_device_desc fake_desc = {
	.name = "virtio-fake",
	.device_id = 42,
	.pci_class = FAKE_CLASS,
	.options = &fake_table,
	.io = VIRTIO_IO_MAIN_LOOP,
	.create = fake_create,
	.start = fake_start,
	.stop = fake_stop,
	.destroy = fake_destroy,
	.kick = fake_kick,
	.pause = fake_pause,
	.resume = fake_resume,
	.save = fake_save,
	.load = fake_load,
	.qmp = fake_qmp,
};
VIRTIO_DEVICE_REGISTER(fake_desc);

/* ---- Fixture: a context with memory, a main loop and a PCI host ---- */

static void s_fire(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a, uint32_t data)
{
	(void)h; (void)d; (void)v; (void)a; (void)data;
}

static void s_intx(struct pci_host *h, struct pci_device *d, bool level)
{
	(void)h; (void)d; (void)level;
}

static const struct pci_irq_ops sink = { .msi_fire = s_fire, .intx_set = s_intx };

static struct mock_mem mem;
static struct pci_host host;
static struct vm_config cfg;
static struct device_ctx ctx;
static const struct device_desc *dd;
static void *state;

static void setup(void)
{
	struct pci_host_params p = {
		.mmio32_base = 0xC0000000ULL, .mmio32_size = 0x10000000ULL, .irq = &sink,
	};

	created = destroyed = started = stopped = 0;
	fail_start = false;
	state = NULL;
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	ck_assert_int_eq(pci_host_init(&host, &p), 0);
	config_defaults(&cfg);
	ctx = (struct device_ctx){ .cfg = &cfg, .mem = &mem.gm, .pci = &host };
	ctx.loop = evloop_create();
	ck_assert_ptr_nonnull(ctx.loop);
	dd = device_find("virtio-fake");
	ck_assert_ptr_nonnull(dd);
}

static void teardown(void)
{
	if (state)
		dd->destroy(state);
	ck_assert_uint_eq(created, destroyed);
	ck_assert_uint_eq(started, stopped);
	evloop_destroy(ctx.loop);
	pci_host_destroy(&host);
	mock_mem_destroy(&mem);
}

static void add_spec(const char *type, const char *args)
{
	ck_assert_uint_lt(cfg.nr_devices, CONFIG_MAX_DEVICES);
	cfg.devices[cfg.nr_devices++] = (struct device_spec){ type, args };
}

static uint32_t cfg_rd(unsigned slot, unsigned off, unsigned len)
{
	return pci_host_config_read(&host, 0, slot, 0, off, len);
}

/* Run fn with stderr going to a file; returns what was written (static). */
static const char *captured(int (*fn)(void), int *ret)
{
	static char buf[4096];
	FILE *tmp = tmpfile();
	int saved;
	size_t n;

	ck_assert_ptr_nonnull(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ge(dup2(fileno(tmp), STDERR_FILENO), 0);
	*ret = fn();
	fflush(stderr);
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, sizeof(buf) - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return buf;
}

static int realize(void)
{
	return dd->realize(dd, &ctx, &state);
}

static unsigned lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static struct fake *inst(unsigned i)
{
	struct virtio_device *dev = virtio_set_device(state, i);

	ck_assert_ptr_nonnull(dev);
	return to_fake(dev);
}

/* ---- Tests ---- */

START_TEST(test_registration)
{
	const struct virtio_device_desc *v = virtio_device_find("virtio-fake");

	ck_assert_ptr_eq(v, &fake_desc);
	ck_assert_str_eq(dd->name, "virtio-fake");
	ck_assert_int_eq(dd->level, DEVICE_LEVEL_VIRTIO);
	ck_assert_ptr_eq(dd->priv, &fake_desc);
	ck_assert_ptr_eq(dd->qmp, fake_qmp);
	ck_assert(dd->reset && dd->pause && dd->resume && dd->save && dd->load && dd->destroy);
	/* The options table is registered under the device's name. */
	ck_assert_ptr_eq(dev_option_table_find("virtio-fake"), &fake_table);
	ck_assert_ptr_eq(dev_option_table_by_flag("fake"), &fake_table);
	ck_assert_ptr_null(virtio_device_find("no-such-device"));
}
END_TEST

START_TEST(test_realize_instances)
{
	json_t *ret = NULL;
	char err[128];

	add_spec("virtio-other", "");
	add_spec("virtio-fake", "name=a");
	add_spec("virtio-fake", "name=b,queues=1");
	ck_assert_int_eq(realize(), 0);
	ck_assert_ptr_nonnull(state);
	ck_assert_uint_eq(virtio_set_count(state), 2);
	ck_assert_uint_eq(created, 2);
	ck_assert_uint_eq(started, 2);
	ck_assert_str_eq(inst(0)->opts->name, "a");
	ck_assert_uint_eq(inst(0)->opts->queues, 2);
	ck_assert_uint_eq(inst(1)->vdev.nr_queues, 1);
	ck_assert_ptr_null(virtio_set_device(state, 2));
	/* One PCI function each, in command-line order, with the class. */
	for (unsigned slot = 1; slot <= 2; slot++) {
		ck_assert_uint_eq(cfg_rd(slot, PCI_VENDOR_ID, 2), VIRTIO_PCI_VENDOR);
		ck_assert_uint_eq(cfg_rd(slot, PCI_DEVICE_ID, 2), VIRTIO_PCI_DEVICE_BASE + 42);
		ck_assert_uint_eq(cfg_rd(slot, PCI_REVISION_ID, 4) >> 8, FAKE_CLASS);
	}
	ck_assert_ptr_eq(inst(0)->vdev.transport, virtio_pci_dev(inst(0)->vdev.transport)->opaque);
	/* QMP commands get the set. */
	ck_assert_int_eq(fake_qmp[0].fn(state, NULL, &ret, err, sizeof(err)), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(ret, "count")), 2);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(ret, "names"), 1)), "b");
	json_decref(ret);
}
END_TEST

START_TEST(test_kicks_on_main_loop)
{
	add_spec("virtio-fake", "");
	ck_assert_int_eq(realize(), 0);
	virtio_dev_queue_notify(&inst(0)->vdev, 1);
	ck_assert_int_eq(evloop_run_once(ctx.loop, 100), 1);
	ck_assert_uint_eq(inst(0)->kicks[0], 0);
	ck_assert_uint_eq(inst(0)->kicks[1], 1);
	/* The registry read the eventfd: no second call. */
	ck_assert_int_eq(evloop_run_once(ctx.loop, 0), 0);
	ck_assert_uint_eq(inst(0)->kicks[1], 1);
	virtio_dev_queue_notify(&inst(0)->vdev, 0);
	ck_assert_int_eq(evloop_run_once(ctx.loop, 100), 1);
	ck_assert_uint_eq(inst(0)->kicks[0], 1);
}
END_TEST

START_TEST(test_no_instances)
{
	json_t *ret = NULL;
	char err[64];

	/* With QMP commands: an empty set that answers them. */
	ck_assert_int_eq(realize(), 0);
	ck_assert_ptr_nonnull(state);
	ck_assert_uint_eq(virtio_set_count(state), 0);
	ck_assert_uint_eq(created, 0);
	dd->reset(state);
	dd->pause(state);
	dd->resume(state);
	ck_assert_int_eq(fake_qmp[0].fn(state, NULL, &ret, err, sizeof(err)), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(ret, "count")), 0);
	json_decref(ret);
	ck_assert_uint_eq(virtio_set_count(NULL), 0);
	ck_assert_ptr_null(virtio_set_device(NULL, 0));
}
END_TEST

START_TEST(test_bad_option_one_line)
{
	const char *out;
	int ret;

	add_spec("virtio-fake", "name=a");
	add_spec("virtio-fake", "bogus=1");
	out = captured(realize, &ret);
	ck_assert_int_eq(ret, -EINVAL);
	ck_assert_ptr_null(state);
	ck_assert_uint_eq(lines(out), 1);
	ck_assert_msg(strstr(out, "--fake bogus=1: ") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "bogus") != NULL, "%s", out);
	/* The first instance was unwound, PCI slot and all. */
	ck_assert_uint_eq(created, 1);
	ck_assert_uint_eq(destroyed, 1);
	ck_assert_uint_eq(stopped, 1);
	ck_assert_ptr_null(pci_host_device(&host, 1));
}
END_TEST

START_TEST(test_create_error_one_line)
{
	const char *out;
	int ret;

	add_spec("virtio-fake", "name=a");
	add_spec("virtio-fake", "name=x,fail=on");
	out = captured(realize, &ret);
	ck_assert_int_eq(ret, -EIO);
	ck_assert_ptr_null(state);
	ck_assert_uint_eq(lines(out), 1);
	ck_assert_msg(strstr(out, "--fake name=x,fail=on: told to fail (name x)") != NULL, "%s",
		      out);
	ck_assert_uint_eq(created, destroyed);
	ck_assert_ptr_null(pci_host_device(&host, 1));
}
END_TEST

START_TEST(test_start_error_unwinds)
{
	const char *out;
	int ret;

	fail_start = true;
	add_spec("virtio-fake", "");
	out = captured(realize, &ret);
	ck_assert_int_eq(ret, -EAGAIN);
	ck_assert_uint_eq(lines(out), 1);
	ck_assert_msg(strstr(out, "--fake: cannot start") != NULL, "%s", out);
	ck_assert_uint_eq(created, 1);
	ck_assert_uint_eq(destroyed, 1);
	ck_assert_uint_eq(stopped, 0);	/* never started */
	ck_assert_ptr_null(pci_host_device(&host, 1));
}
END_TEST

START_TEST(test_max_instances)
{
	const char *out;
	int ret;

	for (unsigned i = 0; i < 4; i++)
		add_spec("virtio-fake", "");
	out = captured(realize, &ret);
	ck_assert_int_eq(ret, -EINVAL);
	ck_assert_uint_eq(lines(out), 1);
	ck_assert_msg(strstr(out, "at most 3") != NULL, "%s", out);
	ck_assert_uint_eq(created, 3);
}
END_TEST

START_TEST(test_no_pci_host)
{
	const char *out;
	int ret;

	ctx.pci = NULL;
	add_spec("virtio-fake", "");
	out = captured(realize, &ret);
	ck_assert_int_eq(ret, -ENODEV);
	ck_assert_uint_eq(lines(out), 1);
	ck_assert_uint_eq(created, 0);
}
END_TEST

START_TEST(test_lifecycle)
{
	struct mock_vq mq;

	add_spec("virtio-fake", "name=a");
	add_spec("virtio-fake", "name=b");
	ck_assert_int_eq(realize(), 0);
	dd->pause(state);
	ck_assert_uint_eq(inst(0)->pauses, 1);
	ck_assert_uint_eq(inst(1)->pauses, 1);
	dd->resume(state);
	ck_assert_uint_eq(inst(1)->resumes, 1);
	mock_vq_init(&mq, &mem, FAKE_QSIZE);
	ck_assert_int_eq(mock_virtio_bring_up(&inst(1)->vdev, &mq, ~0ULL), 0);
	ck_assert(virtio_dev_get_status(&inst(1)->vdev) & VIRTIO_STATUS_DRIVER_OK);
	dd->reset(state);
	ck_assert_uint_eq(virtio_dev_get_status(&inst(1)->vdev), 0);
	ck_assert(!inst(1)->vdev.queues[0].ready);
}
END_TEST

/* ---- Save and load ---- */

static struct mock_vq mq;

/* Instance 0 up on queue 0, with n chains served. */
static void up_and_serve(unsigned n)
{
	struct mock_buf b = { .len = 8, .write = true };

	mock_vq_init(&mq, &mem, FAKE_QSIZE);
	ck_assert_int_eq(mock_virtio_bring_up(&inst(0)->vdev, &mq, ~0ULL), 0);
	for (unsigned i = 0; i < n; i++) {
		b.gpa = mock_mem_alloc(&mem, 8, 8);
		mock_vq_add_chain(&mq, &b, 1);
	}
	fake_kick(&inst(0)->vdev, 0);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), inst(0)->hold ? 0 : n);
}

static json_t *saved_instance0(json_t *saved)
{
	return json_array_get(json_object_get(saved, "instances"), 0);
}

START_TEST(test_save_load_round_trip)
{
	struct mock_buf b = { .len = 8, .write = true };
	struct virtio_device *dev;
	json_t *saved, *q0;
	char err[256] = "";

	add_spec("virtio-fake", "name=a");
	ck_assert_int_eq(realize(), 0);
	dev = &inst(0)->vdev;
	up_and_serve(5);
	dd->pause(state);
	saved = dd->save(state);
	ck_assert_ptr_nonnull(saved);
	ck_assert_str_eq(json_string_value(json_object_get(saved, "type")), "virtio-fake");
	q0 = json_array_get(json_object_get(saved_instance0(saved), "queues"), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(q0, "last_avail_idx")), 5);
	ck_assert_int_eq(json_integer_value(json_object_get(q0, "used_idx")), 5);
	ck_assert_int_eq(json_integer_value(json_object_get(q0, "size")), FAKE_QSIZE);
	ck_assert(json_is_true(json_object_get(q0, "enabled")));
	ck_assert_int_eq(json_integer_value(json_object_get(
		json_object_get(saved_instance0(saved), "device"), "served")), 5);

	/* A reset loses it all; load brings it back. */
	dd->reset(state);
	inst(0)->served = 0;
	ck_assert_uint_eq(virtio_dev_get_status(dev), 0);
	ck_assert_int_eq(dd->load(state, saved, err, sizeof(err)), 0);
	ck_assert_msg(!err[0], "%s", err);
	dd->resume(state);
	ck_assert_uint_eq(virtio_dev_get_status(dev),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	ck_assert(virtio_dev_has_feature(dev, VIRTIO_F_VERSION_1));
	ck_assert(dev->queues[0].ready);
	ck_assert(dev->queues[0].event_idx);
	ck_assert_uint_eq(dev->queues[0].last_avail_idx, 5);
	ck_assert_uint_eq(dev->queues[0].used_idx, 5);
	ck_assert_uint_eq(inst(0)->served, 5);
	/* The ring carries on where it was. */
	b.gpa = mock_mem_alloc(&mem, 8, 8);
	mock_vq_add_chain(&mq, &b, 1);
	fake_kick(dev, 0);
	ck_assert_uint_eq(mock_vq_used_idx(&mq), 6);
	json_decref(saved);
}
END_TEST

static json_t *saved_by_fn;

static int save_into_saved(void)
{
	saved_by_fn = dd->save(state);
	return 0;
}

START_TEST(test_save_inflight_refused)
{
	json_t *saved;
	const char *out;
	int ret;

	add_spec("virtio-fake", "");
	ck_assert_int_eq(realize(), 0);
	inst(0)->hold = true;
	up_and_serve(3);
	ck_assert_uint_eq(inst(0)->vdev.queues[0].inflight, 3);
	out = captured(save_into_saved, &ret);
	ck_assert_ptr_null(saved_by_fn);
	ck_assert_msg(strstr(out, "3 chains in flight") != NULL, "%s", out);
	/* A device that hands them back can be saved. */
	inst(0)->unpop_on_save = true;
	saved = dd->save(state);
	ck_assert_ptr_nonnull(saved);
	ck_assert_int_eq(json_integer_value(json_object_get(
		json_array_get(json_object_get(saved_instance0(saved), "queues"), 0),
		"last_avail_idx")), 0);
	json_decref(saved);
}
END_TEST

/* Load a copy of saved with one field of instance 0 replaced. */
static int load_with(json_t *saved, const char *path, json_t *value, char *err, size_t errlen)
{
	json_t *copy = json_deep_copy(saved), *o = saved_instance0(copy);
	char key[64];
	const char *p = path;
	int ret;

	/* path: "key" or "queues.N.key" or "transport.key" */
	while (strchr(p, '.')) {
		size_t n = strcspn(p, ".");

		snprintf(key, sizeof(key), "%.*s", (int)n, p);
		o = json_is_array(o) ? json_array_get(o, (size_t)atoi(key)) : json_object_get(o, key);
		p += n + 1;
	}
	if (value)
		json_object_set_new(o, p, value);
	else
		json_object_del(o, p);
	err[0] = '\0';
	ret = dd->load(state, copy, err, errlen);
	json_decref(copy);
	return ret;
}

START_TEST(test_load_validates)
{
	static const struct {
		const char *path;
		const char *json;	/* NULL: delete the field */
		const char *want;	/* in err */
	} bad[] = {
		{ "device_id", "4", "device_id" },
		{ "host_features", "1", "host_features" },
		{ "driver_features", "4294967296000", "not all offered" },
		{ "status", "256", "status" },
		{ "status", "4", "status 0x4" },		/* DRIVER_OK alone */
		{ "status", "64", "status 0x40" },		/* NEEDS_RESET alone */
		{ "config_generation", "-1", "config_generation" },
		{ "queues", "[]", "queues" },
		{ "queues.0.size", "3", "power of 2" },
		{ "queues.0.size", "1024", "size" },
		{ "queues.0.enabled", "1", "enabled" },
		{ "queues.0.last_avail_idx", "65536", "last_avail_idx" },
		{ "queues.0.last_avail_idx", "100", "apart" },
		{ "queues.0.used_idx", NULL, "used_idx" },
		{ "queues.0.inflight", "2", "inflight" },
		{ "queues.0.error", "5", "error" },
		{ "queues.0.desc", "\"x\"", "desc" },
		{ "transport.msix_config", "99", "msix_config" },
		{ "transport.queue_vectors", "[0]", "queue_vectors" },
		{ "transport.isr", "8", "isr" },
		{ "transport", "null", "transport" },
		{ "device.served", "-1", "served" },
	};
	json_t *saved, *instances;
	char err[256];

	add_spec("virtio-fake", "");
	ck_assert_int_eq(realize(), 0);
	up_and_serve(2);
	dd->pause(state);
	saved = dd->save(state);
	ck_assert_ptr_nonnull(saved);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *v = bad[i].json ? json_loads(bad[i].json, JSON_DECODE_ANY, NULL) : NULL;

		ck_assert_msg(!bad[i].json || v, "%s", bad[i].json);
		ck_assert_msg(load_with(saved, bad[i].path, v, err, sizeof(err)) == -EINVAL,
			      "%s = %s loaded", bad[i].path, bad[i].json);
		ck_assert_msg(strstr(err, bad[i].want) != NULL, "%s: '%s' lacks '%s'",
			      bad[i].path, err, bad[i].want);
	}
	/* Rings outside guest memory: activation fails, the device ends reset. */
	ck_assert_int_eq(load_with(saved, "queues.0.desc", json_integer(1ULL << 40), err,
				   sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "activation") != NULL, "%s", err);
	ck_assert_uint_eq(virtio_dev_get_status(&inst(0)->vdev), 0);
	/* The wrong number of instances. */
	instances = json_object_get(saved, "instances");
	json_array_append(instances, json_array_get(instances, 0));
	ck_assert_int_eq(dd->load(state, saved, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "expected 1 instances") != NULL, "%s", err);
	json_array_remove(instances, 1);
	/* And the original still loads. */
	ck_assert_int_eq(dd->load(state, saved, err, sizeof(err)), 0);
	ck_assert_uint_eq(inst(0)->vdev.queues[0].used_idx, 2);
	dd->resume(state);
	json_decref(saved);
}
END_TEST

static Suite *registry_suite(void)
{
	Suite *s = suite_create("virtio-registry");
	TCase *tc = tcase_create("registry");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_registration);
	tcase_add_test(tc, test_realize_instances);
	tcase_add_test(tc, test_kicks_on_main_loop);
	tcase_add_test(tc, test_no_instances);
	tcase_add_test(tc, test_bad_option_one_line);
	tcase_add_test(tc, test_create_error_one_line);
	tcase_add_test(tc, test_start_error_unwinds);
	tcase_add_test(tc, test_max_instances);
	tcase_add_test(tc, test_no_pci_host);
	tcase_add_test(tc, test_lifecycle);
	tcase_add_test(tc, test_save_load_round_trip);
	tcase_add_test(tc, test_save_inflight_refused);
	tcase_add_test(tc, test_load_validates);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(registry_suite());
}
