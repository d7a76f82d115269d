/* virtio-balloon: the device (see balloon.h): config space, lifecycle,
 * target and query, snapshot state, the stats timer, its options table and
 * its one registration line. The queues are served in queues.c. */
#include "devices/virtio/balloon/balloon.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/evloop.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "devices/options.h"
#include "devices/virtio/balloon/internal.h"
#include "devices/virtio/registry.h"

static uint64_t actual_bytes(const struct virtio_balloon *b, uint32_t pages)
{
	uint64_t held = (uint64_t)pages << BALLOON_PAGE_SHIFT;

	return held < b->ram_size ? b->ram_size - held : 0;
}

/* ---- config space, lifecycle ---- */

static void config_read(struct virtio_device *dev, size_t off, void *data, size_t len)
{
	struct virtio_balloon *b = balloon_of(dev);
	uint8_t cfg[BALLOON_CONFIG_SIZE];

	wr32(cfg, __atomic_load_n(&b->num_pages, __ATOMIC_ACQUIRE));
	wr32(cfg + 4, __atomic_load_n(&b->actual, __ATOMIC_ACQUIRE));
	memcpy(data, cfg + off, len);
}

static void emit_change(struct virtio_balloon *b, uint32_t pages)
{
	device_emit_event(&b->ctx, "BALLOON_CHANGE",
			  json_pack("{s:I}", "actual", (json_int_t)actual_bytes(b, pages)));
}

/* Only `actual` is the driver's to write; num_pages is the host's. */
static void config_write(struct virtio_device *dev, size_t off, const void *data, size_t len)
{
	struct virtio_balloon *b = balloon_of(dev);
	uint8_t cfg[BALLOON_CONFIG_SIZE];
	uint32_t old = __atomic_load_n(&b->actual, __ATOMIC_ACQUIRE), val;

	do {
		wr32(cfg + 4, old);
		memcpy(cfg + off, data, len);
		val = rd32(cfg + 4);
	} while (val != old && !__atomic_compare_exchange_n(&b->actual, &old, val, false,
							  __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	if (val != old)
		emit_change(b, val);
}

static int balloon_activate(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);

	pthread_mutex_lock(&b->lock);
	b->active = true;
	pthread_mutex_unlock(&b->lock);
	/* Buffers made available before DRIVER_OK (Linux primes the stats
	 * queue then). */
	for (unsigned q = 0; q < dev->nr_queues; q++)
		virtio_dev_queue_notify(dev, q);
	return 0;
}

static void balloon_reset(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);
	uint32_t old;

	pthread_mutex_lock(&b->lock);
	b->active = false;
	b->inflate.held = b->deflate.held = false;	/* the queues go with them */
	b->stats_held = false;
	b->stats_wanted = false;
	pthread_mutex_unlock(&b->lock);
	/* The driver gives its balloon up with the device. */
	old = __atomic_exchange_n(&b->actual, 0, __ATOMIC_ACQ_REL);
	if (old)
		emit_change(b, 0);
}

static const struct virtio_device_ops balloon_ops = {
	.name = "virtio-balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.config_size = BALLOON_CONFIG_SIZE,
	.config_read = config_read,
	.config_write = config_write,
	.activate = balloon_activate,
	.reset = balloon_reset,
};

void balloon_pause(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);
	bool in = false, de = false;

	pthread_mutex_lock(&b->lock);
	/* Nothing half-done may stay in flight across a pause (or a save). */
	if (b->active) {
		in = balloon_cut_chain(b, &b->inflate, 0);
		de = balloon_cut_chain(b, &b->deflate, 1);
	}
	b->paused = true;
	pthread_mutex_unlock(&b->lock);
	if (in)
		virtio_dev_notify_if_needed(dev, 0);
	if (de)
		virtio_dev_notify_if_needed(dev, 1);
}

void balloon_resume(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);

	pthread_mutex_lock(&b->lock);
	b->paused = false;
	if (b->stats_wanted)
		balloon_request_stats_locked(b);
	pthread_mutex_unlock(&b->lock);
	for (unsigned q = 0; q < dev->nr_queues; q++)
		virtio_dev_queue_notify(dev, q);	/* kicks that came while paused */
}

int balloon_set_target(struct virtio_device *dev, uint64_t bytes)
{
	struct virtio_balloon *b = balloon_of(dev);
	uint64_t pages;
	uint8_t st;

	if (!bytes)
		return -EINVAL;
	if (bytes > b->ram_size)
		bytes = b->ram_size;
	pages = (b->ram_size - bytes) >> BALLOON_PAGE_SHIFT;
	if (pages > UINT32_MAX)
		pages = UINT32_MAX;
	__atomic_store_n(&b->num_pages, (uint32_t)pages, __ATOMIC_RELEASE);
	__atomic_fetch_add(&dev->config_generation, 1, __ATOMIC_RELEASE);
	st = virtio_dev_get_status(dev);
	if ((st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_NEEDS_RESET) &&
	    dev->notify_config)
		dev->notify_config(dev);
	return 0;
}

void balloon_request_stats(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);

	pthread_mutex_lock(&b->lock);
	balloon_request_stats_locked(b);
	pthread_mutex_unlock(&b->lock);
}

uint32_t balloon_target_pages(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);

	return __atomic_load_n(&b->num_pages, __ATOMIC_ACQUIRE);
}

uint32_t balloon_actual_pages(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);

	return __atomic_load_n(&b->actual, __ATOMIC_ACQUIRE);
}

uint64_t balloon_actual_bytes(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);

	return actual_bytes(b, balloon_actual_pages(dev));
}

void balloon_get_counters(struct virtio_device *dev, struct balloon_counters *c)
{
	struct virtio_balloon *b = balloon_of(dev);

	pthread_mutex_lock(&b->lock);
	*c = b->cnt;
	pthread_mutex_unlock(&b->lock);
}

void balloon_get_stats(struct virtio_device *dev, struct balloon_stats *s)
{
	struct virtio_balloon *b = balloon_of(dev);

	pthread_mutex_lock(&b->lock);
	*s = b->stats;
	pthread_mutex_unlock(&b->lock);
}

json_t *balloon_query(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);
	json_t *r = json_pack("{s:I}", "actual", (json_int_t)balloon_actual_bytes(dev));
	struct balloon_counters c;

	if (!r)
		return NULL;
	pthread_mutex_lock(&b->lock);
	if (b->stats.last_update) {
		json_object_set_new(r, "stats", balloon_stats_json(&b->stats));
		json_object_set_new(r, "last-update", json_integer((json_int_t)b->stats.last_update));
	}
	c = b->cnt;
	balloon_request_stats_locked(b);
	pthread_mutex_unlock(&b->lock);
	json_object_set_new(r, "x-accounting",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
				      "target-pages", (json_int_t)balloon_target_pages(dev),
				      "inflated-pages", (json_int_t)c.inflated_pages,
				      "deflated-pages", (json_int_t)c.deflated_pages,
				      "ignored-pfns", (json_int_t)c.ignored_pfns,
				      "discarded-bytes", (json_int_t)c.discarded_bytes,
				      "reported-bytes", (json_int_t)c.reported_bytes));
	return r;
}

/* ---- snapshot state ---- */

/* Paused only. The held stats buffer goes back to the avail ring
 * (nothing may be in flight in a snapshot); resume pops it again. */
json_t *balloon_save(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);
	int q;

	pthread_mutex_lock(&b->lock);
	q = balloon_stats_queue(b);
	if (b->stats_held && q >= 0)
		virtqueue_unpop(virtio_dev_queue(dev, (unsigned)q), 1);
	b->stats_held = false;
	pthread_mutex_unlock(&b->lock);
	return json_pack("{s:I, s:I}", "num-pages", (json_int_t)balloon_target_pages(dev),
			 "actual", (json_int_t)balloon_actual_pages(dev));
}

static int saved_u32(json_t *saved, const char *key, uint32_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(saved, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > UINT32_MAX) {
		snprintf(err, errlen, "virtio-balloon: %s: expected an integer from 0 to %u", key,
			 UINT32_MAX);
		return -EINVAL;
	}
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

int balloon_load(struct virtio_device *dev, json_t *saved, char *err, size_t errlen)
{
	struct virtio_balloon *b = balloon_of(dev);
	uint32_t num_pages, actual;

	if (!json_is_object(saved)) {
		snprintf(err, errlen, "virtio-balloon: expected an object");
		return -EINVAL;
	}
	if (saved_u32(saved, "num-pages", &num_pages, err, errlen) ||
	    saved_u32(saved, "actual", &actual, err, errlen))
		return -EINVAL;
	__atomic_store_n(&b->num_pages, num_pages, __ATOMIC_RELEASE);
	__atomic_store_n(&b->actual, actual, __ATOMIC_RELEASE);
	return 0;
}

/* ---- the stats timer ---- */

static void stats_timer(void *opaque, uint32_t events)
{
	struct virtio_balloon *b = opaque;
	uint64_t ticks;

	(void)events;
	if (read(b->timer_fd, &ticks, sizeof(ticks)) < 0)
		return;
	balloon_request_stats(&b->vdev);
}

int balloon_start(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);
	struct itimerspec its = { 0 };
	int ret;

	if (b->timer_fd < 0 || b->timer_on_loop)
		return 0;
	ret = evloop_add(b->ctx.loop, b->timer_fd, EPOLLIN, stats_timer, b);
	if (ret)
		return ret;
	b->timer_on_loop = true;
	its.it_value.tv_sec = its.it_interval.tv_sec = (time_t)b->opts.stats_interval;
	if (timerfd_settime(b->timer_fd, 0, &its, NULL) < 0) {
		ret = -errno;
		balloon_stop(dev);
		return ret;
	}
	return 0;
}

void balloon_stop(struct virtio_device *dev)
{
	struct virtio_balloon *b = balloon_of(dev);
	struct itimerspec off = { 0 };

	if (!b->timer_on_loop)
		return;
	(void)timerfd_settime(b->timer_fd, 0, &off, NULL);
	evloop_del(b->ctx.loop, b->timer_fd);
	b->timer_on_loop = false;
}

/* ---- create, destroy ---- */

int balloon_create(struct device_ctx *ctx, const void *options, struct virtio_device **out)
{
	const struct balloon_options *opts = options;
	uint64_t features = VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
			    VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) |
			    VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ);
	struct virtio_balloon *b;
	unsigned nr_queues = 3;
	int ret;

	*out = NULL;
	if (!ctx->mem || !ctx->mem->ram_size)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->ctx = *ctx;
	b->opts = *opts;
	b->ram_size = ctx->mem->ram_size;
	b->discard = !ctx->mem->hugepages;
	b->timer_fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	if (opts->deflate_on_oom)
		features |= VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	if (opts->free_page_reporting && !b->discard) {
		log_warn("virtio-balloon: free-page-reporting is off with hugepages");
	} else if (opts->free_page_reporting) {
		features |= VIRTIO_BIT(VIRTIO_BALLOON_F_REPORTING);
		nr_queues++;
	}
	ret = virtio_dev_init(&b->vdev, &balloon_ops, ctx->mem, nr_queues, BALLOON_QUEUE_SIZE,
			      features);
	if (ret)
		goto err;
	if (opts->stats_interval) {
		if (!ctx->loop) {
			ret = -EINVAL;
			goto err;
		}
		b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (b->timer_fd < 0) {
			ret = -errno;
			goto err;
		}
	}
	*out = &b->vdev;
	return 0;
err:
	balloon_destroy(&b->vdev);
	return ret;
}

void balloon_destroy(struct virtio_device *dev)
{
	struct virtio_balloon *b;

	if (!dev)
		return;
	b = balloon_of(dev);
	balloon_stop(dev);
	if (b->timer_fd >= 0)
		close(b->timer_fd);
	virtio_dev_destroy(dev);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* ---- registration ---- */

static const struct dev_option balloon_option_list[] = {
	{ .name = "deflate-on-oom", .type = DEV_OPT_BOOL, .def = "off",
	  .offset = DEV_OPT_FIELD(struct balloon_options, deflate_on_oom),
	  .help = "the guest may take pages back from the balloon when it runs out of memory" },
	{ .name = "free-page-reporting", .type = DEV_OPT_BOOL, .def = "off",
	  .offset = DEV_OPT_FIELD(struct balloon_options, free_page_reporting),
	  .help = "the guest reports free pages and the host frees them" },
	{ .name = "stats-interval", .type = DEV_OPT_UINT, .def = "0", .min = 0, .max = 86400,
	  .offset = DEV_OPT_FIELD(struct balloon_options, stats_interval),
	  .help = "ask the guest for memory statistics every N seconds (0: only on query-balloon)" },
};

static struct dev_option_table balloon_table = {
	.type = "virtio-balloon",
	.flag = "balloon",
	.json_key = "balloon",
	.summary = "a virtio-balloon device (QMP balloon, query-balloon)",
	.arg_optional = true,
	.max_instances = 1,
	.size = sizeof(struct balloon_options),
	.opts = balloon_option_list,
	.nr_opts = DEV_OPT_COUNT(balloon_option_list),
};

static struct virtio_device_desc balloon_desc = {
	.name = "virtio-balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.pci_class = VIRTIO_BALLOON_PCI_CLASS,
	.options = &balloon_table,
	.io = VIRTIO_IO_MAIN_LOOP,
	.create = balloon_create,
	.start = balloon_start,
	.stop = balloon_stop,
	.destroy = balloon_destroy,
	.kick = balloon_kick,
	.pause = balloon_pause,
	.resume = balloon_resume,
	.save = balloon_save,
	.load = balloon_load,
	.qmp = balloon_qmp_commands,
};
VIRTIO_DEVICE_REGISTER(balloon_desc);
