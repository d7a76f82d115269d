/* virtio-balloon: the device (see balloon.h), its options table and its one
 * registration line. Queues, in the order the driver finds them: inflate,
 * deflate, stats (VIRTIO_BALLOON_F_STATS_VQ), free page reporting
 * (VIRTIO_BALLOON_F_REPORTING; its index depends on whether stats were
 * negotiated). All are served on the main loop. */
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
#include "devices/device.h"
#include "devices/options.h"
#include "devices/virtio/registry.h"
#include "devices/virtio/virtio.h"

/* Most stats entries read from one buffer (Linux sends about 16). */
#define BALLOON_STATS_MAX	1024

enum balloon_role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORTING };

/* A PFN chain popped but cut short by the budget; resumed on the next kick. */
struct pfn_chain {
	bool held;
	struct vq_chain chain;
};

/* Host-contiguous 4 KiB pages waiting for one discard. */
struct pfn_run {
	uint64_t gpa;
	uint8_t *hva;
	uint64_t pages;
};

struct virtio_balloon {
	struct virtio_device vdev;
	struct device_ctx ctx;
	struct balloon_options opts;
	uint64_t ram_size;
	bool discard;		/* false with hugepages: a re-fault could SIGBUS */

	/* Config space, read and written by vCPUs: atomics. num_pages is
	 * written by QMP on the main loop, actual by the guest. */
	uint32_t num_pages;
	uint32_t actual;

	/* Everything below: `lock` (main loop; activate/reset from vCPUs). */
	pthread_mutex_t lock;
	bool active;
	bool paused;
	bool stats_wanted;	/* asked for while paused: do it on resume */
	bool stats_held;	/* the guest's stats buffer, kept until we want more */
	uint16_t stats_head;
	struct balloon_stats stats;
	struct balloon_counters cnt;
	struct pfn_chain inflate, deflate;
	struct vq_chain scratch;	/* stats and reporting pops */

	/* Main loop only. */
	int timer_fd;
	bool timer_on_loop;
};

static struct ratelimit guest_rl = RATELIMIT_INIT(5000, 5);	/* under `lock` */

struct virtio_balloon *balloon_of(struct virtio_device *dev)
{
	return container_of(dev, struct virtio_balloon, vdev);
}

struct virtio_device *balloon_virtio(struct virtio_balloon *b)
{
	return &b->vdev;
}

/* Queue index -> role, from the negotiated features (5.5.2): the stats
 * queue exists only with STATS_VQ, and reporting comes after it (after
 * free_page_vq too, which is never offered). */
static enum balloon_role queue_role(const struct virtio_balloon *b, unsigned q)
{
	unsigned next = 2;

	if (q == 0)
		return ROLE_INFLATE;
	if (q == 1)
		return ROLE_DEFLATE;
	if (virtio_dev_has_feature(&b->vdev, VIRTIO_BALLOON_F_STATS_VQ) && q == next++)
		return ROLE_STATS;
	if (virtio_dev_has_feature(&b->vdev, VIRTIO_BALLOON_F_REPORTING) && q == next)
		return ROLE_REPORTING;
	return ROLE_NONE;
}

static int stats_queue(const struct virtio_balloon *b)
{
	return virtio_dev_has_feature(&b->vdev, VIRTIO_BALLOON_F_STATS_VQ) ? 2 : -1;
}

static uint64_t actual_bytes(const struct virtio_balloon *b, uint32_t pages)
{
	uint64_t held = (uint64_t)pages << BALLOON_PAGE_SHIFT;

	return held < b->ram_size ? b->ram_size - held : 0;
}

/* ---- inflate and deflate ---- */

static void discard(struct virtio_balloon *b, uint8_t *hva, uint64_t len)
{
	int64_t n = gm_discard(b->vdev.gm, hva, len);

	if (n >= 0) {
		b->cnt.discarded_bytes += (uint64_t)n;
		return;
	}
	b->cnt.discard_errors++;
	if (ratelimit_allow(&guest_rl))
		log_warn("virtio-balloon: discarding %llu bytes: %s", (unsigned long long)len,
			 strerror((int)-n));
}

static void run_flush(struct virtio_balloon *b, struct pfn_run *run)
{
	int64_t n;

	if (!run->pages)
		return;
	/* A run host- and guest-contiguous across two regions added by hand
	 * is refused as a whole: go page by page then. */
	n = gm_discard(b->vdev.gm, run->hva, run->pages << BALLOON_PAGE_SHIFT);
	if (n == -EFAULT && run->pages > 1) {
		for (uint64_t i = 0; i < run->pages; i++)
			discard(b, run->hva + (i << BALLOON_PAGE_SHIFT), BALLOON_PAGE_SIZE);
	} else if (n < 0) {
		discard(b, run->hva, run->pages << BALLOON_PAGE_SHIFT);
	} else {
		b->cnt.discarded_bytes += (uint64_t)n;
	}
	run->pages = 0;
}

static void take_pfn(struct virtio_balloon *b, struct pfn_run *run, uint32_t pfn, bool inflate)
{
	uint64_t gpa = (uint64_t)pfn << BALLOON_PAGE_SHIFT;
	uint8_t *hva = gm_ptr(b->vdev.gm, gpa, BALLOON_PAGE_SIZE);
	uint64_t run_len = run->pages << BALLOON_PAGE_SHIFT;

	if (!hva) {
		b->cnt.ignored_pfns++;
		return;
	}
	if (!inflate) {
		b->cnt.deflated_pages++;	/* the pages come back on touch */
		return;
	}
	b->cnt.inflated_pages++;
	if (!b->discard)
		return;
	if (run->pages && gpa == run->gpa + run_len && hva == run->hva + run_len) {
		run->pages++;
		return;
	}
	run_flush(b, run);
	*run = (struct pfn_run){ .gpa = gpa, .hva = hva, .pages = 1 };
}

/* Consume up to `budget` PFNs of c; returns how many were read. */
static unsigned walk_pfns(struct virtio_balloon *b, struct vq_chain *c, bool inflate,
			  unsigned budget)
{
	uint8_t buf[256 * 4];
	struct pfn_run run = { 0 };
	unsigned done = 0;

	while (done < budget) {
		size_t want = budget - done < 256 ? budget - done : 256;
		size_t n = vq_reader_read(c, buf, want * 4) / 4;

		if (!n)
			break;	/* end of the chain (a trailing partial PFN is dropped) */
		for (size_t i = 0; i < n; i++)
			take_pfn(b, &run, rd32(buf + 4 * i), inflate);
		done += (unsigned)n;
	}
	run_flush(b, &run);
	return done;
}

/* Lock held. Returns true when the budget ran out with work left. */
static bool serve_pfns(struct virtio_balloon *b, unsigned q, bool inflate)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);
	struct pfn_chain *pc = inflate ? &b->inflate : &b->deflate;
	unsigned budget = BALLOON_PFN_BUDGET;
	bool pushed = false, more = false;
	int ret;

	for (;;) {
		while (!vq->error) {
			if (!pc->held) {
				ret = virtqueue_pop(vq, &pc->chain);
				if (ret == 0)
					break;
				if (ret < 0) {
					virtio_dev_queue_error(&b->vdev, q, ret);
					return false;
				}
				pc->held = true;
			}
			budget -= walk_pfns(b, &pc->chain, inflate, budget);
			if (vq_reader_remaining(&pc->chain) >= 4) {
				more = true;	/* resumed on the next kick */
				goto out;
			}
			virtqueue_push(vq, pc->chain.head, 0);
			pc->held = false;
			pushed = true;
			if (!budget) {
				more = true;
				goto out;
			}
		}
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	if (pushed)
		virtio_dev_notify_if_needed(&b->vdev, q);
	return more;
}

/* Hand back a chain cut short: the PFNs not yet read are simply not
 * discarded (the guest loses nothing; the host frees less). */
static bool cut_chain(struct virtio_balloon *b, struct pfn_chain *pc, unsigned q)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);

	if (!pc->held)
		return false;
	pc->held = false;
	b->cnt.cut_chains++;
	if (!vq || !vq->ready || vq->error)
		return false;
	virtqueue_push(vq, pc->chain.head, 0);
	return true;
}

/* ---- stats ---- */

/* Lock held. Give the held buffer back: the guest refills it and kicks. */
static void request_stats_locked(struct virtio_balloon *b)
{
	int q = stats_queue(b);
	struct virtqueue *vq = q >= 0 ? virtio_dev_queue(&b->vdev, (unsigned)q) : NULL;

	if (b->paused) {
		b->stats_wanted = true;
		return;
	}
	b->stats_wanted = false;
	if (!b->active || !b->stats_held || !vq || !vq->ready || vq->error)
		return;
	b->stats_held = false;
	virtqueue_push(vq, b->stats_head, 0);
	virtio_dev_notify_if_needed(&b->vdev, (unsigned)q);
}

static void read_stats(struct virtio_balloon *b, struct vq_chain *c)
{
	uint8_t buf[16 * BALLOON_STAT_SIZE];
	size_t total = 0, n;

	while (total < BALLOON_STATS_MAX * BALLOON_STAT_SIZE &&
	       (n = vq_reader_read(c, buf, sizeof(buf))) > 0) {
		balloon_stats_parse(&b->stats, buf, n);
		total += n;
		if (n < sizeof(buf))
			break;
	}
	b->stats.last_update = time(NULL);
	b->cnt.stats_updates++;
}

static void serve_stats(struct virtio_balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);
	unsigned chains = BALLOON_CHAIN_BUDGET;
	bool pushed = false;
	int ret;

	while (chains-- && !vq->error) {
		ret = virtqueue_pop(vq, &b->scratch);
		if (ret == 0)
			break;
		if (ret < 0) {
			virtio_dev_queue_error(&b->vdev, q, ret);
			return;
		}
		/* A driver keeps one buffer in the queue; a second one means
		 * the first is done with. */
		if (b->stats_held) {
			virtqueue_push(vq, b->stats_head, 0);
			pushed = true;
		}
		read_stats(b, &b->scratch);
		b->stats_held = true;
		b->stats_head = b->scratch.head;
	}
	if (pushed)
		virtio_dev_notify_if_needed(&b->vdev, q);
	if (b->stats_wanted)
		request_stats_locked(b);
}

/* ---- free page reporting ---- */

/* Returns true when the budget ran out. */
static bool serve_reports(struct virtio_balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);
	struct vq_chain *c = &b->scratch;
	unsigned chains = BALLOON_CHAIN_BUDGET;
	bool pushed = false, more = false;
	int ret;

	for (;;) {
		while (!vq->error) {
			if (!chains) {
				more = true;
				goto out;
			}
			ret = virtqueue_pop(vq, c);
			if (ret == 0)
				break;
			if (ret < 0) {
				virtio_dev_queue_error(&b->vdev, q, ret);
				return false;
			}
			chains--;
			/* The reported ranges are the device-writable buffers
			 * themselves; nothing is written into them. */
			for (unsigned i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
				b->cnt.reported_bytes += c->iov[i].iov_len;
				if (b->discard)
					discard(b, c->iov[i].iov_base, c->iov[i].iov_len);
			}
			virtqueue_push(vq, c->head, 0);
			pushed = true;
		}
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	if (pushed)
		virtio_dev_notify_if_needed(&b->vdev, q);
	return more;
}

bool balloon_kick(struct virtio_balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);
	bool more = false;

	if (!vq)
		return false;
	pthread_mutex_lock(&b->lock);
	if (b->active && !b->paused && vq->ready) {
		switch (queue_role(b, q)) {
		case ROLE_INFLATE:
			more = serve_pfns(b, q, true);
			break;
		case ROLE_DEFLATE:
			more = serve_pfns(b, q, false);
			break;
		case ROLE_STATS:
			serve_stats(b, q);
			break;
		case ROLE_REPORTING:
			more = serve_reports(b, q);
			break;
		case ROLE_NONE:
			break;
		}
	}
	pthread_mutex_unlock(&b->lock);
	if (more)
		virtio_dev_queue_notify(&b->vdev, q);
	return more;
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

void balloon_pause(struct virtio_balloon *b)
{
	bool in = false, de = false;

	pthread_mutex_lock(&b->lock);
	/* Nothing half-done may stay in flight across a pause (or a save). */
	if (b->active) {
		in = cut_chain(b, &b->inflate, 0);
		de = cut_chain(b, &b->deflate, 1);
	}
	b->paused = true;
	pthread_mutex_unlock(&b->lock);
	if (in)
		virtio_dev_notify_if_needed(&b->vdev, 0);
	if (de)
		virtio_dev_notify_if_needed(&b->vdev, 1);
}

void balloon_resume(struct virtio_balloon *b)
{
	pthread_mutex_lock(&b->lock);
	b->paused = false;
	if (b->stats_wanted)
		request_stats_locked(b);
	pthread_mutex_unlock(&b->lock);
	for (unsigned q = 0; q < b->vdev.nr_queues; q++)
		virtio_dev_queue_notify(&b->vdev, q);	/* kicks that came while paused */
}

int balloon_set_target(struct virtio_balloon *b, uint64_t bytes)
{
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
	__atomic_fetch_add(&b->vdev.config_generation, 1, __ATOMIC_RELEASE);
	st = virtio_dev_get_status(&b->vdev);
	if ((st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_NEEDS_RESET) &&
	    b->vdev.notify_config)
		b->vdev.notify_config(&b->vdev);
	return 0;
}

void balloon_request_stats(struct virtio_balloon *b)
{
	pthread_mutex_lock(&b->lock);
	request_stats_locked(b);
	pthread_mutex_unlock(&b->lock);
}

uint32_t balloon_target_pages(struct virtio_balloon *b)
{
	return __atomic_load_n(&b->num_pages, __ATOMIC_ACQUIRE);
}

uint32_t balloon_actual_pages(struct virtio_balloon *b)
{
	return __atomic_load_n(&b->actual, __ATOMIC_ACQUIRE);
}

uint64_t balloon_actual_bytes(struct virtio_balloon *b)
{
	return actual_bytes(b, balloon_actual_pages(b));
}

void balloon_get_counters(struct virtio_balloon *b, struct balloon_counters *c)
{
	pthread_mutex_lock(&b->lock);
	*c = b->cnt;
	pthread_mutex_unlock(&b->lock);
}

void balloon_get_stats(struct virtio_balloon *b, struct balloon_stats *s)
{
	pthread_mutex_lock(&b->lock);
	*s = b->stats;
	pthread_mutex_unlock(&b->lock);
}

json_t *balloon_query(struct virtio_balloon *b)
{
	json_t *r = json_pack("{s:I}", "actual", (json_int_t)balloon_actual_bytes(b));
	struct balloon_counters c;

	if (!r)
		return NULL;
	pthread_mutex_lock(&b->lock);
	if (b->stats.last_update) {
		json_object_set_new(r, "stats", balloon_stats_json(&b->stats));
		json_object_set_new(r, "last-update", json_integer((json_int_t)b->stats.last_update));
	}
	c = b->cnt;
	request_stats_locked(b);
	pthread_mutex_unlock(&b->lock);
	json_object_set_new(r, "x-accounting",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
				      "target-pages", (json_int_t)balloon_target_pages(b),
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
json_t *balloon_save(struct virtio_balloon *b)
{
	int q;

	pthread_mutex_lock(&b->lock);
	q = stats_queue(b);
	if (b->stats_held && q >= 0)
		virtqueue_unpop(virtio_dev_queue(&b->vdev, (unsigned)q), 1);
	b->stats_held = false;
	pthread_mutex_unlock(&b->lock);
	return json_pack("{s:I, s:I}", "num-pages", (json_int_t)balloon_target_pages(b),
			 "actual", (json_int_t)balloon_actual_pages(b));
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

int balloon_load(struct virtio_balloon *b, json_t *saved, char *err, size_t errlen)
{
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
	balloon_request_stats(b);
}

int balloon_start(struct virtio_balloon *b)
{
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
		balloon_stop(b);
		return ret;
	}
	return 0;
}

void balloon_stop(struct virtio_balloon *b)
{
	struct itimerspec off = { 0 };

	if (!b->timer_on_loop)
		return;
	(void)timerfd_settime(b->timer_fd, 0, &off, NULL);
	evloop_del(b->ctx.loop, b->timer_fd);
	b->timer_on_loop = false;
}

/* ---- create, destroy ---- */

int balloon_create(const struct device_ctx *ctx, const struct balloon_options *opts,
		   struct virtio_balloon **out)
{
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
	if (opts->free_page_reporting && !b->discard)
		log_warn("virtio-balloon: free-page-reporting is off with hugepages");
	else if (opts->free_page_reporting) {
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
	*out = b;
	return 0;
err:
	balloon_destroy(b);
	return ret;
}

void balloon_destroy(struct virtio_balloon *b)
{
	if (!b)
		return;
	balloon_stop(b);
	if (b->timer_fd >= 0)
		close(b->timer_fd);
	virtio_dev_destroy(&b->vdev);
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

static int dev_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	struct virtio_balloon *b;
	int ret = balloon_create(ctx, opts, &b);

	*out = ret ? NULL : &b->vdev;
	return ret;
}

static int dev_start(struct virtio_device *dev)
{
	return balloon_start(balloon_of(dev));
}

static void dev_stop(struct virtio_device *dev)
{
	balloon_stop(balloon_of(dev));
}

static void dev_destroy(struct virtio_device *dev)
{
	balloon_destroy(balloon_of(dev));
}

static void dev_kick(struct virtio_device *dev, unsigned q)
{
	(void)balloon_kick(balloon_of(dev), q);
}

static void dev_pause(struct virtio_device *dev)
{
	balloon_pause(balloon_of(dev));
}

static void dev_resume(struct virtio_device *dev)
{
	balloon_resume(balloon_of(dev));
}

static json_t *dev_save(struct virtio_device *dev)
{
	return balloon_save(balloon_of(dev));
}

static int dev_load(struct virtio_device *dev, json_t *saved, char *err, size_t errlen)
{
	return balloon_load(balloon_of(dev), saved, err, errlen);
}

static struct virtio_device_desc balloon_desc = {
	.name = "virtio-balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.pci_class = VIRTIO_BALLOON_PCI_CLASS,
	.options = &balloon_table,
	.io = VIRTIO_IO_MAIN_LOOP,
	.create = dev_create,
	.start = dev_start,
	.stop = dev_stop,
	.destroy = dev_destroy,
	.kick = dev_kick,
	.pause = dev_pause,
	.resume = dev_resume,
	.save = dev_save,
	.load = dev_load,
	.qmp = balloon_qmp_commands,
};
VIRTIO_DEVICE_REGISTER(balloon_desc);
