/* The virtio device registry (see registry.h): one generic realize, reset,
 * pause, resume, save, load and destroy for every registered virtio device,
 * serving all instances of one type as a struct virtio_set. */
#include "devices/virtio/registry.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "base/evloop.h"
#include "base/log.h"
#include "devices/virtio/virtio_pci.h"
#include "vmm/config.h"

struct virtio_instance;

/* A main-loop device's queue, as the kick callback's opaque. */
struct queue_watch {
	struct virtio_instance *inst;
	unsigned q;
	bool on_loop;
};

struct virtio_instance {
	struct virtio_set *set;
	const char *args;		/* the option string, as given */
	void *opts;			/* parsed (desc->options->size bytes) */
	bool opts_parsed;
	struct virtio_device *dev;
	struct virtio_pci *vp;
	bool started;
	struct queue_watch watch[VIRTIO_MAX_QUEUES];
};

struct virtio_set {
	const struct virtio_device_desc *desc;
	struct device_ctx *ctx;
	unsigned n;			/* instances realized */
	struct virtio_instance *inst;	/* room for every spec of this type */
};

unsigned virtio_set_count(const struct virtio_set *s)
{
	return s ? s->n : 0;
}

struct virtio_device *virtio_set_device(const struct virtio_set *s, unsigned i)
{
	return s && i < s->n ? s->inst[i].dev : NULL;
}

const void *virtio_set_options(const struct virtio_set *s, unsigned i)
{
	return s && i < s->n ? s->inst[i].opts : NULL;
}

/* ---- Error reporting: one line naming the flag and the instance ---- */

/* The instance being created, so create() can report through
 * virtio_create_error(). Realize runs on one thread. */
static __thread const struct virtio_instance *creating;

static void instance_label(const struct virtio_instance *inst, char *buf, size_t len)
{
	const struct virtio_device_desc *desc = inst->set->desc;
	const struct dev_option_table *t = desc->options;

	if (t && t->flag)
		snprintf(buf, len, "--%s%s%s", t->flag, inst->args[0] ? " " : "", inst->args);
	else
		snprintf(buf, len, "%s%s%s", desc->name, inst->args[0] ? " " : "", inst->args);
}

static void instance_error(const struct virtio_instance *inst, const char *fmt, va_list ap)
{
	char label[320], msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	instance_label(inst, label, sizeof(label));
	log_err("%s: %s", label, msg);
}

static void inst_err(const struct virtio_instance *inst, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void inst_err(const struct virtio_instance *inst, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	instance_error(inst, fmt, ap);
	va_end(ap);
}

void virtio_create_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (creating) {
		instance_error(creating, fmt, ap);
	} else {
		char msg[512];

		vsnprintf(msg, sizeof(msg), fmt, ap);
		log_err("%s", msg);
	}
	va_end(ap);
}

/* ---- Main-loop kicks ---- */

static void on_kick(void *opaque, uint32_t events)
{
	struct queue_watch *w = opaque;
	struct virtio_device *dev = w->inst->dev;
	eventfd_t v;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(dev, w->q), &v);
	w->inst->set->desc->kick(dev, w->q);
}

static void unwatch_queues(struct virtio_instance *inst)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (!inst->watch[q].on_loop)
			continue;
		evloop_del(inst->set->ctx->loop, virtio_dev_kick_fd(inst->dev, q));
		inst->watch[q].on_loop = false;
	}
}

static int watch_queues(struct virtio_instance *inst)
{
	struct virtio_device *dev = inst->dev;
	int ret;

	if (!inst->set->ctx->loop)
		return -EINVAL;
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		inst->watch[q] = (struct queue_watch){ .inst = inst, .q = q };
		ret = evloop_add(inst->set->ctx->loop, virtio_dev_kick_fd(dev, q), EPOLLIN, on_kick,
				 &inst->watch[q]);
		if (ret) {
			unwatch_queues(inst);
			return ret;
		}
		inst->watch[q].on_loop = true;
	}
	return 0;
}

/* ---- Realize and destroy ---- */

/* Undo whatever realize_one() got to, in reverse. */
static void destroy_instance(struct virtio_instance *inst)
{
	const struct virtio_device_desc *desc = inst->set->desc;

	if (inst->started && desc->stop)
		desc->stop(inst->dev);
	inst->started = false;
	if (inst->dev)
		unwatch_queues(inst);
	virtio_pci_destroy(inst->vp);
	inst->vp = NULL;
	if (inst->dev && desc->destroy)
		desc->destroy(inst->dev);
	inst->dev = NULL;
	if (inst->opts_parsed)
		dev_options_free(desc->options, inst->opts);
	free(inst->opts);
	inst->opts = NULL;
	inst->opts_parsed = false;
}

static int realize_one(struct virtio_instance *inst)
{
	const struct virtio_device_desc *desc = inst->set->desc;
	struct device_ctx *ctx = inst->set->ctx;
	const struct dev_option_table *t = desc->options;
	unsigned errors;
	char err[256];
	int ret;

	inst->opts = calloc(1, t && t->size ? t->size : 1);
	if (!inst->opts)
		return -ENOMEM;
	if (t) {
		ret = dev_options_parse(t, inst->args, inst->opts, err, sizeof(err));
		if (ret) {
			inst_err(inst, "%s", err);
			return ret;
		}
		inst->opts_parsed = true;
	}
	if (!ctx->pci) {
		inst_err(inst, "no PCI host bridge to put %s on", desc->name);
		return -ENODEV;
	}
	errors = log_error_count();
	creating = inst;
	ret = desc->create(ctx, inst->opts, &inst->dev);
	creating = NULL;
	if (ret || !inst->dev) {
		inst->dev = NULL;
		ret = ret ? ret : -EINVAL;
		/* One line: the device's own reason if it gave one. */
		if (log_error_count() == errors)
			inst_err(inst, "%s", strerror(-ret));
		return ret;
	}
	if (desc->io == VIRTIO_IO_MAIN_LOOP) {
		ret = watch_queues(inst);
		if (ret) {
			inst_err(inst, "cannot watch its queues on the main loop: %s", strerror(-ret));
			return ret;
		}
	}
	ret = virtio_pci_create(ctx->pci, inst->dev, desc->pci_class, &inst->vp);
	if (ret) {
		inst_err(inst, "cannot add the PCI function: %s", strerror(-ret));
		return ret;
	}
	if (desc->start) {
		ret = desc->start(inst->dev);
		if (ret) {
			inst_err(inst, "cannot start: %s", strerror(-ret));
			return ret;
		}
	}
	inst->started = true;
	return 0;

}

static void virtio_registry_destroy(void *state)
{
	struct virtio_set *set = state;

	if (!set)
		return;
	for (unsigned i = set->n; i-- > 0;)
		destroy_instance(&set->inst[i]);
	free(set->inst);
	free(set);
}

static int virtio_registry_realize(const struct device_desc *dd, struct device_ctx *ctx,
				   void **state)
{
	const struct virtio_device_desc *desc = dd->priv;
	const struct vm_config *cfg = ctx->cfg;
	struct virtio_set *set;
	unsigned count = 0;
	int ret;

	*state = NULL;
	for (unsigned i = 0; cfg && i < cfg->nr_devices; i++)
		if (cfg->devices[i].type && !strcmp(cfg->devices[i].type, desc->name))
			count++;
	/* With QMP commands an empty set still answers them ([] for none). */
	if (!count && !desc->qmp)
		return 0;
	set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	set->inst = calloc(count ? count : 1, sizeof(*set->inst));
	if (!set->inst) {
		free(set);
		return -ENOMEM;
	}
	set->desc = desc;
	set->ctx = ctx;
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		struct virtio_instance *inst = &set->inst[set->n];

		if (!cfg->devices[i].type || strcmp(cfg->devices[i].type, desc->name))
			continue;
		inst->set = set;
		inst->args = cfg->devices[i].args ? cfg->devices[i].args : "";
		if (desc->options && desc->options->max_instances &&
		    set->n >= desc->options->max_instances) {
			inst_err(inst, "at most %u", desc->options->max_instances);
			ret = -EINVAL;
			goto err;
		}
		ret = realize_one(inst);
		if (ret) {
			destroy_instance(inst);
			goto err;
		}
		set->n++;
	}
	*state = set;
	return 0;
err:
	virtio_registry_destroy(set);
	return ret;
}

/* ---- Lifecycle ---- */

static void virtio_registry_reset(void *state)
{
	struct virtio_set *set = state;

	for (unsigned i = 0; i < set->n; i++)
		virtio_pci_reset(set->inst[i].vp);
}

static void virtio_registry_pause(void *state)
{
	struct virtio_set *set = state;

	if (!set->desc->pause)
		return;
	for (unsigned i = set->n; i-- > 0;)
		set->desc->pause(set->inst[i].dev);
}

static void virtio_registry_resume(void *state)
{
	struct virtio_set *set = state;

	if (!set->desc->resume)
		return;
	for (unsigned i = 0; i < set->n; i++)
		set->desc->resume(set->inst[i].dev);
}

/* ---- Save and load ---- */

static json_t *save_queue(const struct virtqueue *vq)
{
	struct virtqueue_state st;

	virtqueue_export(vq, &st);
	return json_pack("{s:i, s:b, s:I, s:I, s:I, s:i, s:i, s:I, s:i}",
			 "size", st.size, "enabled", st.enabled,
			 "desc", (json_int_t)st.desc_gpa, "avail", (json_int_t)st.avail_gpa,
			 "used", (json_int_t)st.used_gpa,
			 "last_avail_idx", st.last_avail_idx, "used_idx", st.used_idx,
			 "inflight", (json_int_t)st.inflight, "error", st.error);
}

static json_t *save_instance(struct virtio_instance *inst)
{
	const struct virtio_device_desc *desc = inst->set->desc;
	struct virtio_device *dev = inst->dev;
	json_t *queues, *device = NULL, *transport, *o;

	/* The device first: it may hand back chains it holds (virtqueue_unpop)
	 * so that no queue has any in flight. */
	if (desc->save) {
		device = desc->save(dev);
		if (!device) {
			inst_err(inst, "cannot save the device state");
			return NULL;
		}
	}
	queues = json_array();
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		if (dev->queues[q].inflight) {
			inst_err(inst, "cannot save: queue %u has %u chains in flight", q,
				 dev->queues[q].inflight);
			json_decref(queues);
			json_decref(device);
			return NULL;
		}
		json_array_append_new(queues, save_queue(&dev->queues[q]));
	}
	transport = virtio_pci_save(inst->vp);
	o = json_pack("{s:i, s:I, s:I, s:i, s:I, s:o, s:o}",
		      "device_id", (int)desc->device_id,
		      "host_features", (json_int_t)virtio_dev_host_features(dev),
		      "driver_features", (json_int_t)dev->driver_features,
		      "status", virtio_dev_get_status(dev),
		      "config_generation",
		      (json_int_t)__atomic_load_n(&dev->config_generation, __ATOMIC_ACQUIRE),
		      "queues", queues, "transport", transport);
	if (o && device)
		json_object_set_new(o, "device", device);
	else
		json_decref(device);
	return o;
}

static json_t *virtio_registry_save(void *state)
{
	struct virtio_set *set = state;
	json_t *list = json_array();

	for (unsigned i = 0; i < set->n; i++) {
		json_t *o = save_instance(&set->inst[i]);

		if (!o) {
			json_decref(list);
			return NULL;
		}
		json_array_append_new(list, o);
	}
	return json_pack("{s:s, s:o}", "type", set->desc->name, "instances", list);
}

/* What one instance's saved object says, checked before anything changes. */
struct saved_instance {
	uint64_t driver_features;
	uint8_t status;
	uint32_t config_generation;
	struct virtqueue_state q[VIRTIO_MAX_QUEUES];
	json_t *transport, *device;
};

static int get_uint(json_t *o, const char *key, uint64_t max, uint64_t *out, char *err,
		    size_t errlen, const char *where)
{
	json_t *v = json_object_get(o, key);

	/* 64-bit values are saved as their two's-complement json_int_t. */
	if (!json_is_integer(v) ||
	    (max != UINT64_MAX && (json_integer_value(v) < 0 ||
				   (uint64_t)json_integer_value(v) > max))) {
		snprintf(err, errlen, "%s%s: expected an integer from 0 to %llu", where, key,
			 (unsigned long long)max);
		return -EINVAL;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static bool status_valid(uint8_t st, uint64_t driver_features)
{
	const uint8_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK |
			      VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED;

	if (st & ~known)
		return false;
	if ((st & VIRTIO_STATUS_DRIVER) && !(st & VIRTIO_STATUS_ACKNOWLEDGE))
		return false;
	if ((st & VIRTIO_STATUS_FEATURES_OK) &&
	    (!(st & VIRTIO_STATUS_DRIVER) || !(driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))))
		return false;
	if ((st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_FEATURES_OK))
		return false;
	if ((st & VIRTIO_STATUS_NEEDS_RESET) && !(st & VIRTIO_STATUS_DRIVER_OK))
		return false;
	return true;
}

static int parse_queue(json_t *o, const struct virtqueue *vq, struct virtqueue_state *st,
		       char *err, size_t errlen, const char *where)
{
	json_t *enabled = json_object_get(o, "enabled"), *e = json_object_get(o, "error");
	uint64_t v[8];
	int ret;

	if (!json_is_object(o) || !json_is_boolean(enabled)) {
		snprintf(err, errlen, "%sexpected an object with enabled: true|false", where);
		return -EINVAL;
	}
	if ((ret = get_uint(o, "size", vq->max_size, &v[0], err, errlen, where)) ||
	    (ret = get_uint(o, "desc", UINT64_MAX, &v[1], err, errlen, where)) ||
	    (ret = get_uint(o, "avail", UINT64_MAX, &v[2], err, errlen, where)) ||
	    (ret = get_uint(o, "used", UINT64_MAX, &v[3], err, errlen, where)) ||
	    (ret = get_uint(o, "last_avail_idx", UINT16_MAX, &v[4], err, errlen, where)) ||
	    (ret = get_uint(o, "used_idx", UINT16_MAX, &v[5], err, errlen, where)) ||
	    (ret = get_uint(o, "inflight", 0, &v[6], err, errlen, where)))
		return ret;
	if (!json_is_integer(e) || json_integer_value(e) > 0 || json_integer_value(e) < -4095) {
		snprintf(err, errlen, "%serror: expected 0 or a negative errno", where);
		return -EINVAL;
	}
	if (v[0] == 0 || (v[0] & (v[0] - 1))) {
		snprintf(err, errlen, "%ssize: %llu is not a power of 2", where,
			 (unsigned long long)v[0]);
		return -EINVAL;
	}
	if ((uint16_t)(v[4] - v[5]) > v[0]) {
		snprintf(err, errlen, "%slast_avail_idx %llu and used_idx %llu are more than a "
			 "queue apart", where, (unsigned long long)v[4], (unsigned long long)v[5]);
		return -EINVAL;
	}
	*st = (struct virtqueue_state){
		.size = (uint16_t)v[0], .enabled = json_is_true(enabled),
		.desc_gpa = v[1], .avail_gpa = v[2], .used_gpa = v[3],
		.last_avail_idx = (uint16_t)v[4], .used_idx = (uint16_t)v[5],
		.error = (int)json_integer_value(e),
	};
	return 0;
}

static int parse_instance(const struct virtio_instance *inst, json_t *o,
			  struct saved_instance *si, char *err, size_t errlen)
{
	const struct virtio_device_desc *desc = inst->set->desc;
	struct virtio_device *dev = inst->dev;
	json_t *queues = json_object_get(o, "queues");
	char where[64];
	uint64_t v;
	int ret;

	snprintf(where, sizeof(where), "%s #%u: ", desc->name, (unsigned)(inst - inst->set->inst));
	memset(si, 0, sizeof(*si));
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%sexpected an object", where);
		return -EINVAL;
	}
	if ((ret = get_uint(o, "device_id", UINT32_MAX, &v, err, errlen, where)))
		return ret;
	if (v != desc->device_id) {
		snprintf(err, errlen, "%sdevice_id %llu, expected %u", where,
			 (unsigned long long)v, desc->device_id);
		return -EINVAL;
	}
	if ((ret = get_uint(o, "host_features", UINT64_MAX, &v, err, errlen, where)))
		return ret;
	if (v != virtio_dev_host_features(dev)) {
		snprintf(err, errlen, "%shost_features 0x%llx, but this device offers 0x%llx",
			 where, (unsigned long long)v,
			 (unsigned long long)virtio_dev_host_features(dev));
		return -EINVAL;
	}
	if ((ret = get_uint(o, "driver_features", UINT64_MAX, &si->driver_features, err, errlen,
			    where)))
		return ret;
	if (si->driver_features & ~virtio_dev_host_features(dev)) {
		snprintf(err, errlen, "%sdriver_features 0x%llx not all offered", where,
			 (unsigned long long)si->driver_features);
		return -EINVAL;
	}
	if ((ret = get_uint(o, "status", UINT8_MAX, &v, err, errlen, where)))
		return ret;
	si->status = (uint8_t)v;
	if (!status_valid(si->status, si->driver_features)) {
		snprintf(err, errlen, "%sstatus 0x%x is not a state the driver can reach", where,
			 si->status);
		return -EINVAL;
	}
	if ((ret = get_uint(o, "config_generation", UINT32_MAX, &v, err, errlen, where)))
		return ret;
	si->config_generation = (uint32_t)v;
	if (!json_is_array(queues) || json_array_size(queues) != dev->nr_queues) {
		snprintf(err, errlen, "%squeues: expected %u", where, dev->nr_queues);
		return -EINVAL;
	}
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		char qwhere[96];

		snprintf(qwhere, sizeof(qwhere), "%squeue %u: ", where, q);
		ret = parse_queue(json_array_get(queues, q), &dev->queues[q], &si->q[q], err,
				  errlen, qwhere);
		if (ret)
			return ret;
	}
	si->transport = json_object_get(o, "transport");
	si->device = json_object_get(o, "device");
	if (si->device && !desc->load) {
		snprintf(err, errlen, "%sdevice: this device has no state to load", where);
		return -EINVAL;
	}
	return 0;
}

static int load_instance(struct virtio_instance *inst, const struct saved_instance *si,
			 char *err, size_t errlen)
{
	const struct virtio_device_desc *desc = inst->set->desc;
	struct virtio_device *dev = inst->dev;
	int ret;

	virtio_dev_reset(dev);
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		ret = virtqueue_import_regs(&dev->queues[q], &si->q[q]);
		if (ret) {
			snprintf(err, errlen, "%s: queue %u: bad size", desc->name, q);
			goto fail;
		}
	}
	dev->driver_features = si->driver_features;
	__atomic_store_n(&dev->config_generation, si->config_generation, __ATOMIC_RELEASE);
	ret = virtio_pci_load(inst->vp, si->transport, err, errlen);
	if (ret)
		goto fail;
	if (si->status & VIRTIO_STATUS_DRIVER_OK) {
		/* Activation validates the rings and starts them at 0 ... */
		__atomic_store_n(&dev->status, si->status, __ATOMIC_RELEASE);
		ret = virtio_dev_activate(dev);
		if (ret) {
			snprintf(err, errlen, "%s: activation failed: %s", desc->name, strerror(-ret));
			ret = -EINVAL;	/* the saved rings are out of range */
			goto fail;
		}
		/* ... then they continue where they were. */
		for (unsigned q = 0; q < dev->nr_queues; q++) {
			if (!dev->queues[q].ready)
				continue;
			ret = virtqueue_import_indices(&dev->queues[q], &si->q[q]);
			if (ret) {
				snprintf(err, errlen, "%s: queue %u: bad ring position", desc->name, q);
				goto fail;
			}
		}
	}
	__atomic_store_n(&dev->status, si->status, __ATOMIC_RELEASE);
	if (si->device) {
		ret = desc->load(dev, si->device, err, errlen);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	virtio_dev_reset(dev);
	return ret < 0 ? ret : -EINVAL;
}

static int virtio_registry_load(void *state, json_t *saved, char *err, size_t errlen)
{
	struct virtio_set *set = state;
	json_t *list = json_object_get(saved, "instances");
	struct saved_instance *si;
	int ret = 0;

	if (!json_is_array(list) || json_array_size(list) != set->n) {
		snprintf(err, errlen, "%s: expected %u instances", set->desc->name, set->n);
		return -EINVAL;
	}
	si = calloc(set->n ? set->n : 1, sizeof(*si));
	if (!si)
		return -ENOMEM;
	for (unsigned i = 0; i < set->n && !ret; i++)
		ret = parse_instance(&set->inst[i], json_array_get(list, i), &si[i], err, errlen);
	for (unsigned i = 0; i < set->n && !ret; i++)
		ret = load_instance(&set->inst[i], &si[i], err, errlen);
	free(si);
	return ret;
}

/* ---- Registration ---- */

void virtio_device_register(struct virtio_device_desc *desc)
{
	desc->dev_desc = (struct device_desc){
		.name = desc->name,
		.level = DEVICE_LEVEL_VIRTIO,
		.realize = virtio_registry_realize,
		.reset = virtio_registry_reset,
		.pause = virtio_registry_pause,
		.resume = virtio_registry_resume,
		.save = virtio_registry_save,
		.load = virtio_registry_load,
		.destroy = virtio_registry_destroy,
		.qmp = desc->qmp,
		.priv = desc,
	};
	device_register(&desc->dev_desc);
	if (desc->options) {
		if (!desc->options->type)
			desc->options->type = desc->name;
		dev_option_table_register(desc->options);
	}
}

const struct virtio_device_desc *virtio_device_find(const char *name)
{
	const struct device_desc *d = device_find(name);

	return d && d->realize == virtio_registry_realize ? d->priv : NULL;
}
