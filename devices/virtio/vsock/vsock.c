/* virtio-vsock on vhost-vsock (see vsock.h), and its device type, --vsock.
 *
 * The kernel serves the receive and transmit rings: kicks reach it through
 * the queues' kick eventfds (KVM's ioeventfds), interrupts leave it through
 * the vectors' irqfds (virtio_device.call_fd). While a vector has no irqfd
 * (masked, INTx) the ring signals a fallback eventfd that the main loop
 * turns into notify_used(), as virtio-net's vhost does. Pause, stop and
 * reset turn the kernel off (VHOST_VSOCK_SET_RUNNING 0) and read the ring
 * positions back, so saved state and a later start continue exactly. */
#include "devices/virtio/vsock/vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/evloop.h"
#include "base/log.h"
#include "devices/vhost/vhost.h"
#include "devices/virtio/registry.h"
#include "devices/virtio/vsock/uds.h"

#define VHOST_VSOCK_PATH	"/dev/vhost-vsock"
#define VSOCK_CFG_SIZE		8	/* le64 guest_cid */
#define NR_KERNEL_RINGS		2	/* rx, tx */

/* What the kernel may serve; the rest is Ember's. */
#define VSOCK_RING_FEATURES                                                             \
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |         \
	 VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_VSOCK_F_SEQPACKET))

struct vsock_fallback {
	struct virtio_vsock *v;
	unsigned q;
};

struct virtio_vsock {
	struct virtio_device vdev;
	struct device_ctx ctx;
	uint64_t cid;
	pthread_mutex_t lock;		/* everything below */
	struct vhost_dev vhost;		/* fd -1: no kernel backend (tests) */
	bool active, paused, running, started;
	bool reset_pending;		/* a TRANSPORT_RESET waits for a buffer */
	uint64_t resets_sent;
	int fallback[NR_KERNEL_RINGS];
	int call_cur[NR_KERNEL_RINGS];
	struct vsock_fallback fb[NR_KERNEL_RINGS];
	struct vq_chain chain;
	struct vsock_uds *uds;		/* uds=PATH: Ember serves rx/tx (uds.h) */
};

static struct virtio_vsock *to_vsock(struct virtio_device *dev)
{
	return container_of(dev, struct virtio_vsock, vdev);
}

/* ---- the kernel rings ---- */

static int pick_call(struct virtio_vsock *v, unsigned q)
{
	struct virtio_device *dev = &v->vdev;
	int fd = dev->call_fd ? dev->call_fd(dev, q) : -1;

	return fd >= 0 ? fd : v->fallback[q];
}

static void vsock_call_changed(struct virtio_device *dev, unsigned q)
{
	struct virtio_vsock *v = to_vsock(dev);
	eventfd_t val = 0;
	int fd, ret;

	if (q >= NR_KERNEL_RINGS)
		return;
	pthread_mutex_lock(&v->lock);
	if (v->running) {
		fd = pick_call(v, q);
		if (fd != v->call_cur[q]) {
			ret = vhost_vring_set_call(&v->vhost, q, fd);
			if (ret) {
				log_warn("vsock: queue %u: VHOST_SET_VRING_CALL: %s", q,
					 strerror(-ret));
			} else {
				bool was_fallback = v->call_cur[q] == v->fallback[q];

				v->call_cur[q] = fd;
				/* A signal the main loop has not seen goes to the
				 * vector directly (transport locks may be held). */
				if (was_fallback && fd != v->fallback[q] &&
				    eventfd_read(v->fallback[q], &val) == 0 && val)
					(void)eventfd_write(fd, 1);
			}
		}
	}
	pthread_mutex_unlock(&v->lock);
}

static void on_fallback(void *opaque, uint32_t events)
{
	struct vsock_fallback *fb = opaque;
	struct virtio_device *dev = &fb->v->vdev;
	eventfd_t val = 0;

	(void)events;
	if (eventfd_read(fb->v->fallback[fb->q], &val) == 0 && val && dev->notify_used)
		dev->notify_used(dev, fb->q);
}

/* Lock held. */
static void stop_kernel(struct virtio_vsock *v)
{
	int ret;

	if (!v->running)
		return;
	ret = vhost_vsock_set_running(&v->vhost, false);
	if (ret)
		log_warn("vsock: VHOST_VSOCK_SET_RUNNING 0: %s", strerror(-ret));
	for (unsigned q = 0; q < NR_KERNEL_RINGS; q++) {
		struct virtqueue *vq = virtio_dev_queue(&v->vdev, q);
		uint16_t base;

		v->call_cur[q] = -1;
		if (!vq->ready)
			continue;
		ret = vhost_vring_get_base(&v->vhost, q, &base);
		if (ret) {
			log_warn("vsock: queue %u: VHOST_GET_VRING_BASE: %s", q, strerror(-ret));
			continue;
		}
		/* The ring state is Ember's again (pause, save, reset). */
		vq->last_avail_idx = base;
		vq->used_idx = rd16(vq->used + 2);
		vq->inflight = 0;
	}
	v->running = false;
}

/* Lock held. */
static int start_kernel(struct virtio_vsock *v)
{
	uint64_t features = v->vdev.driver_features & VSOCK_RING_FEATURES;
	int ret;

	if (v->running || v->vhost.fd < 0)
		return 0;
	if ((ret = vhost_dev_set_features(&v->vhost, features)) ||
	    (ret = vhost_dev_set_mem_table(&v->vhost, v->vdev.gm))) {
		log_err("vsock: vhost set-up: %s", strerror(-ret));
		return ret;
	}
	for (unsigned q = 0; q < NR_KERNEL_RINGS; q++) {
		struct virtqueue *vq = virtio_dev_queue(&v->vdev, q);
		struct vhost_ring ring = {
			.size = vq->size, .last_avail_idx = vq->last_avail_idx,
			.desc = vq->desc, .avail = vq->avail, .used = vq->used,
			.used_gpa = vq->used_gpa,
		};
		int call = pick_call(v, q);

		if (!vq->ready)
			continue;	/* the driver did not enable it: nothing to serve */
		ret = vhost_vring_start(&v->vhost, q, &ring, virtio_dev_kick_fd(&v->vdev, q), call);
		if (ret) {
			log_err("vsock: queue %u: vhost ring set-up: %s", q, strerror(-ret));
			return ret;
		}
		v->call_cur[q] = call;
	}
	ret = vhost_vsock_set_running(&v->vhost, true);
	if (ret) {
		log_err("vsock: VHOST_VSOCK_SET_RUNNING 1: %s", strerror(-ret));
		return ret;
	}
	v->running = true;
	return 0;
}

/* ---- the event queue ---- */

/* Lock held. */
static void deliver_events(struct virtio_vsock *v)
{
	struct virtqueue *vq = virtio_dev_queue(&v->vdev, VSOCK_QUEUE_EVENT);
	uint8_t ev[4];
	int ret;

	if (!v->reset_pending || !v->active || v->paused || !vq->ready || vq->error)
		return;
	ret = virtqueue_pop(vq, &v->chain);
	if (ret == 0)
		return;		/* held until the driver adds a buffer */
	if (ret < 0) {
		virtio_dev_queue_error(&v->vdev, VSOCK_QUEUE_EVENT, ret);
		return;
	}
	wr32(ev, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	if (vq_writer_remaining(&v->chain) < sizeof(ev)) {
		/* Too small for an event: hand it back empty, keep the event. */
		virtqueue_push(vq, v->chain.head, 0);
	} else {
		virtqueue_push(vq, v->chain.head, (uint32_t)vq_writer_write(&v->chain, ev,
									      sizeof(ev)));
		v->reset_pending = false;
		v->resets_sent++;
	}
	virtio_dev_notify_if_needed(&v->vdev, VSOCK_QUEUE_EVENT);
}

void vsock_transport_reset(struct virtio_vsock *v)
{
	pthread_mutex_lock(&v->lock);
	v->reset_pending = true;
	deliver_events(v);
	pthread_mutex_unlock(&v->lock);
}

void vsock_event_kick(struct virtio_vsock *v)
{
	eventfd_t val;

	(void)eventfd_read(virtio_dev_kick_fd(&v->vdev, VSOCK_QUEUE_EVENT), &val);
	pthread_mutex_lock(&v->lock);
	deliver_events(v);
	pthread_mutex_unlock(&v->lock);
}

bool vsock_event_pending(struct virtio_vsock *v)
{
	bool p;

	pthread_mutex_lock(&v->lock);
	p = v->reset_pending;
	pthread_mutex_unlock(&v->lock);
	return p;
}

static void on_event_kick(void *opaque, uint32_t events)
{
	(void)events;
	vsock_event_kick(opaque);
}

/* ---- virtio ops (vCPU threads, the transport's lock held) ---- */

static void vsock_config_read(struct virtio_device *dev, size_t off, void *data, size_t len)
{
	uint8_t cfg[VSOCK_CFG_SIZE];

	wr64(cfg, to_vsock(dev)->cid);
	memcpy(data, cfg + off, len);
}

static int vsock_activate(struct virtio_device *dev)
{
	struct virtio_vsock *v = to_vsock(dev);
	int ret = 0;

	pthread_mutex_lock(&v->lock);
	v->active = true;
	if (!v->paused)
		ret = start_kernel(v);
	if (ret) {
		stop_kernel(v);
		v->active = false;
	}
	if (v->uds)
		vsock_uds_set_running(v->uds, v->active, v->active && !v->paused);
	pthread_mutex_unlock(&v->lock);
	return ret;
}

static void vsock_reset(struct virtio_device *dev)
{
	struct virtio_vsock *v = to_vsock(dev);

	pthread_mutex_lock(&v->lock);
	stop_kernel(v);
	v->active = false;
	/* A new driver has no connections to forget. */
	v->reset_pending = false;
	if (v->uds) {
		vsock_uds_set_running(v->uds, false, false);
		vsock_uds_drop(v->uds);
	}
	pthread_mutex_unlock(&v->lock);
}

static const struct virtio_device_ops vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.config_size = VSOCK_CFG_SIZE,
	.config_read = vsock_config_read,
	.activate = vsock_activate,
	.reset = vsock_reset,
};

/* ---- life cycle ---- */

static int dev_create(struct virtio_vsock **out, const struct device_ctx *ctx, uint64_t cid,
		      int vhost_fd, const char *uds_path, char *err, size_t errlen)
{
	uint64_t features = VSOCK_RING_FEATURES;
	struct virtio_vsock *v;
	int ret;

	*out = NULL;
	if (cid < VSOCK_CID_MIN || cid > VSOCK_CID_MAX) {
		snprintf(err, errlen, "cid %llu is reserved (use %u..%llu)",
			 (unsigned long long)cid, VSOCK_CID_MIN, VSOCK_CID_MAX);
		if (vhost_fd >= 0)
			close(vhost_fd);
		return -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		if (vhost_fd >= 0)
			close(vhost_fd);
		return -ENOMEM;
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		v->vdev.kick_fd[q] = -1;	/* destroy before virtio_dev_init */
	v->ctx = *ctx;
	v->cid = cid;
	v->vhost.fd = vhost_fd;
	pthread_mutex_init(&v->lock, NULL);
	for (unsigned q = 0; q < NR_KERNEL_RINGS; q++)
		v->fallback[q] = -1;
	for (unsigned q = 0; q < NR_KERNEL_RINGS; q++) {
		v->call_cur[q] = -1;
		v->fb[q] = (struct vsock_fallback){ .v = v, .q = q };
		v->fallback[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (v->fallback[q] < 0) {
			ret = -errno;
			snprintf(err, errlen, "eventfd: %s", strerror(errno));
			goto fail;
		}
	}
	if (vhost_fd >= 0) {
		(void)fcntl(vhost_fd, F_SETFD, FD_CLOEXEC);
		ret = vhost_dev_open(&v->vhost, VHOST_VSOCK_PATH, vhost_fd, err, errlen);
		if (ret)
			goto fail;
		features &= v->vhost.features;
		if (!(features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
			snprintf(err, errlen, VHOST_VSOCK_PATH ": the kernel's vhost-vsock lacks "
				 "VIRTIO_F_VERSION_1");
			ret = -EOPNOTSUPP;
			goto fail;
		}
		ret = vhost_vsock_set_guest_cid(&v->vhost, cid);
		if (ret) {
			snprintf(err, errlen, "VHOST_VSOCK_SET_GUEST_CID %llu: %s%s",
				 (unsigned long long)cid, strerror(-ret),
				 ret == -EADDRINUSE ? " (another VM has this CID)" : "");
			goto fail;
		}
	}
	if (uds_path)	/* the bridge is stream-only */
		features &= ~VIRTIO_BIT(VIRTIO_VSOCK_F_SEQPACKET);
	ret = virtio_dev_init(&v->vdev, &vsock_ops, ctx->mem, VSOCK_NR_QUEUES, VSOCK_QUEUE_SIZE,
			      features & ~VIRTIO_BIT(VIRTIO_F_VERSION_1));
	if (ret) {
		snprintf(err, errlen, "virtio set-up: %s", strerror(-ret));
		goto fail;
	}
	v->vdev.call_fd_changed = vsock_call_changed;
	if (uds_path) {
		ret = vsock_uds_create(&v->uds, &v->vdev, ctx->loop, &v->lock, cid, uds_path, err,
				       errlen);
		if (ret)
			goto fail;
	}
	*out = v;
	return 0;
fail:
	vsock_dev_destroy(v);
	return ret;
}

int vsock_dev_create(struct virtio_vsock **out, const struct device_ctx *ctx, uint64_t cid,
		     int vhost_fd, char *err, size_t errlen)
{
	return dev_create(out, ctx, cid, vhost_fd, NULL, err, errlen);
}

int vsock_dev_create_uds(struct virtio_vsock **out, const struct device_ctx *ctx, uint64_t cid,
			 const char *path, char *err, size_t errlen)
{
	return dev_create(out, ctx, cid, -1, path, err, errlen);
}

unsigned vsock_dev_nr_conns(struct virtio_vsock *v)
{
	unsigned n = 0;

	pthread_mutex_lock(&v->lock);
	if (v->uds)
		n = vsock_uds_nr_conns(v->uds);
	pthread_mutex_unlock(&v->lock);
	return n;
}

int vsock_dev_start(struct virtio_vsock *v)
{
	int ret;

	if (v->started || !v->ctx.loop)
		return 0;
	if (v->uds && (ret = vsock_uds_start(v->uds)))
		return ret;
	ret = evloop_add(v->ctx.loop, virtio_dev_kick_fd(&v->vdev, VSOCK_QUEUE_EVENT), EPOLLIN,
			 on_event_kick, v);
	if (ret)
		return ret;
	for (unsigned q = 0; q < NR_KERNEL_RINGS; q++) {
		ret = evloop_add(v->ctx.loop, v->fallback[q], EPOLLIN, on_fallback, &v->fb[q]);
		if (ret) {
			while (q-- > 0)
				evloop_del(v->ctx.loop, v->fallback[q]);
			evloop_del(v->ctx.loop, virtio_dev_kick_fd(&v->vdev, VSOCK_QUEUE_EVENT));
			return ret;
		}
	}
	v->started = true;
	return 0;
}

void vsock_dev_stop(struct virtio_vsock *v)
{
	pthread_mutex_lock(&v->lock);
	stop_kernel(v);
	pthread_mutex_unlock(&v->lock);
	vsock_uds_stop(v->uds);
	if (!v->started)
		return;
	evloop_del(v->ctx.loop, virtio_dev_kick_fd(&v->vdev, VSOCK_QUEUE_EVENT));
	for (unsigned q = 0; q < NR_KERNEL_RINGS; q++)
		evloop_del(v->ctx.loop, v->fallback[q]);
	v->started = false;
}

void vsock_dev_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	vsock_dev_stop(v);
	vsock_uds_destroy(v->uds);
	vhost_dev_close(&v->vhost);
	for (unsigned q = 0; q < NR_KERNEL_RINGS; q++)
		if (v->fallback[q] >= 0)
			close(v->fallback[q]);
	virtio_dev_destroy(&v->vdev);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

struct virtio_device *vsock_virtio(struct virtio_vsock *v)
{
	return &v->vdev;
}

uint64_t vsock_cid(const struct virtio_vsock *v)
{
	return v->cid;
}

void vsock_dev_pause(struct virtio_vsock *v)
{
	pthread_mutex_lock(&v->lock);
	v->paused = true;
	stop_kernel(v);
	if (v->uds)
		vsock_uds_set_running(v->uds, v->active, false);
	pthread_mutex_unlock(&v->lock);
}

void vsock_dev_resume(struct virtio_vsock *v)
{
	int ret = 0;

	pthread_mutex_lock(&v->lock);
	v->paused = false;
	if (v->active)
		ret = start_kernel(v);
	if (ret)
		stop_kernel(v);
	else
		deliver_events(v);
	if (v->uds)
		vsock_uds_set_running(v->uds, v->active, v->active && !ret);
	pthread_mutex_unlock(&v->lock);
	if (ret)
		virtio_dev_set_needs_reset(&v->vdev);
}

/* ---- the device type: --vsock cid=N ---- */

static const struct dev_option vsock_opts_list[] = {
	{ .name = "cid", .type = DEV_OPT_UINT, .offset = DEV_OPT_FIELD(struct vsock_opts, cid),
	  .min = VSOCK_CID_MIN, .max = VSOCK_CID_MAX,
	  .help = "the guest's context ID (required; unique on this host)" },
	{ .name = "vhostfd", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct vsock_opts, vhostfd),
	  .help = "an open /dev/vhost-vsock fd passed by the caller" },
	{ .name = "uds", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct vsock_opts, uds),
	  .help = "serve the guest in Ember, bridged to unix sockets: host programs connect "
		  "to PATH and write \"CONNECT <port>\\n\"; guest connections to port P go "
		  "to PATH_P (no /dev/vhost-vsock needed)" },
};

static int vsock_opts_check(void *opts, char *err, size_t errlen)
{
	struct vsock_opts *o = opts;
	char *end;
	long fd;

	if (!o->cid) {
		snprintf(err, errlen, "cid=N is required");
		return -EINVAL;
	}
	o->vhost_fd = -1;
	if (o->vhostfd) {
		errno = 0;
		fd = strtol(o->vhostfd, &end, 10);
		if (errno || end == o->vhostfd || *end || fd < 0 || fd > 65535) {
			snprintf(err, errlen, "vhostfd: '%.32s' is not an fd number", o->vhostfd);
			return -EINVAL;
		}
		o->vhost_fd = (int)fd;
	}
	if (o->uds && o->vhostfd) {
		snprintf(err, errlen, "uds= and vhostfd= exclude each other");
		return -EINVAL;
	}
	if (o->uds && !*o->uds) {
		snprintf(err, errlen, "uds: empty path");
		return -EINVAL;
	}
	return 0;
}

static struct dev_option_table vsock_options = {
	.type = "virtio-vsock",
	.flag = "vsock",
	.json_key = "vsock",
	.summary = "a virtio-vsock device on the kernel's vhost-vsock, or bridged to unix sockets",
	.positional = "cid",
	.max_instances = 1,
	.size = sizeof(struct vsock_opts),
	.opts = vsock_opts_list,
	.nr_opts = DEV_OPT_COUNT(vsock_opts_list),
	.check = vsock_opts_check,
};

static int vsock_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	const struct vsock_opts *o = opts;
	struct virtio_vsock *v;
	char err[256] = "";
	int fd = o->vhost_fd, ret;

	*out = NULL;
	if (o->uds) {
		ret = vsock_dev_create_uds(&v, ctx, o->cid, o->uds, err, sizeof(err));
		if (ret) {
			virtio_create_error("%s", err);
			return ret;
		}
		log_info("vsock: guest CID %llu bridged to unix sockets at %s",
			 (unsigned long long)o->cid, o->uds);
		*out = &v->vdev;
		return 0;
	}
	if (fd < 0) {
		fd = open(VHOST_VSOCK_PATH, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			virtio_create_error(VHOST_VSOCK_PATH ": %s%s", strerror(errno),
					    errno == ENOENT ? " (load the vhost_vsock module)" :
					    errno == EACCES ? " (pass an open fd with vhostfd=N)" : "");
			return ret;
		}
	} else {
		fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);	/* the caller's fd stays theirs */
		if (fd < 0) {
			ret = -errno;
			virtio_create_error("vhostfd=%d: %s", o->vhost_fd, strerror(errno));
			return ret;
		}
	}
	ret = vsock_dev_create(&v, ctx, o->cid, fd, err, sizeof(err));
	if (ret) {
		virtio_create_error("%s", err);
		return ret;
	}
	log_info("vsock: guest CID %llu on vhost-vsock", (unsigned long long)o->cid);
	*out = &v->vdev;
	return 0;
}

static int vsock_start(struct virtio_device *dev)
{
	return vsock_dev_start(to_vsock(dev));
}

static void vsock_stop(struct virtio_device *dev)
{
	vsock_dev_stop(to_vsock(dev));
}

static void vsock_destroy(struct virtio_device *dev)
{
	vsock_dev_destroy(to_vsock(dev));
}

static void vsock_pause(struct virtio_device *dev)
{
	vsock_dev_pause(to_vsock(dev));
}

static void vsock_resume(struct virtio_device *dev)
{
	vsock_dev_resume(to_vsock(dev));
}

static json_t *vsock_save(struct virtio_device *dev)
{
	return json_pack("{s:I}", "cid", (json_int_t)to_vsock(dev)->cid);
}

static int vsock_load(struct virtio_device *dev, json_t *saved, char *err, size_t errlen)
{
	struct virtio_vsock *v = to_vsock(dev);
	json_int_t cid;
	json_error_t jerr;

	if (json_unpack_ex(saved, &jerr, JSON_STRICT, "{s:I}", "cid", &cid)) {
		snprintf(err, errlen, "virtio-vsock state: %s", jerr.text);
		return -EINVAL;
	}
	if ((uint64_t)cid != v->cid) {
		snprintf(err, errlen, "virtio-vsock: saved with cid %lld, this VM has cid %llu",
			 (long long)cid, (unsigned long long)v->cid);
		return -EINVAL;
	}
	/* The host's side of every connection is gone: tell the driver on
	 * resume, so it drops its sockets (5.10.6.7). */
	pthread_mutex_lock(&v->lock);
	v->reset_pending = v->active;
	if (v->uds)
		vsock_uds_drop(v->uds);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

/* x-query-vsock: the device, its backend and, for the bridge, the
 * connection table's size and how many connections a deadline closed. */
static int qmp_query_vsock(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	const struct virtio_set *set = state;
	json_t *list = json_array();

	(void)args;
	(void)err;
	(void)errlen;
	for (unsigned i = 0; set && i < virtio_set_count(set); i++) {
		struct virtio_vsock *v = to_vsock(virtio_set_device(set, i));
		const struct vsock_opts *o = virtio_set_options(set, i);
		json_t *d;

		pthread_mutex_lock(&v->lock);
		d = json_pack("{s:I, s:s, s:b, s:I}", "cid", (json_int_t)v->cid,
			      "backend", v->uds ? "uds" : "vhost-vsock", "active", v->active,
			      "transport-resets", (json_int_t)v->resets_sent);
		if (d && v->uds) {
			json_object_set_new(d, "path", json_string(o->uds));
			json_object_set_new(d, "connections",
					    json_integer(vsock_uds_nr_conns(v->uds)));
			json_object_set_new(d, "expired",
					    json_integer((json_int_t)vsock_uds_nr_expired(v->uds)));
		}
		pthread_mutex_unlock(&v->lock);
		json_array_append_new(list, d);
	}
	*ret = list;
	return 0;
}

static const struct device_qmp_command vsock_qmp[] = {
	{ "x-query-vsock", qmp_query_vsock },
	{ NULL, NULL },
};

static struct virtio_device_desc vsock_desc = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.pci_class = 0xff0000,	/* unassigned class, as QEMU */
	.options = &vsock_options,
	.io = VIRTIO_IO_OWN,
	.create = vsock_create,
	.start = vsock_start,
	.stop = vsock_stop,
	.destroy = vsock_destroy,
	.pause = vsock_pause,
	.resume = vsock_resume,
	.save = vsock_save,
	.load = vsock_load,
	.qmp = vsock_qmp,
};
VIRTIO_DEVICE_REGISTER(vsock_desc);
