/* A virtio device served by a vhost-user backend (see vhost_user_dev.h). */
#include "devices/vhost/vhost_user_dev.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/evloop.h"
#include "base/log.h"
#include "devices/vhost/vhost_user.h"
#include "devices/virtio/registry.h"

#define VU_QUEUE_SIZE		256
#define VU_CONFIG_MAX		VHOST_USER_CONFIG_MAX
/* Failed reconnects back off to this: an attempt on a backend that accepts
 * and never answers holds the main loop for the protocol's deadline. */
#define VU_RETRY_MAX_MS		30000

/* Ring-layout bits a backend may serve; packed rings are not offered (the
 * transport and Ember's own checks know split rings only). */
#define VU_RING_FEATURES                                                              \
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |       \
	 VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC))
#define VU_PROTOCOL_FEATURES_BIT	VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES)

enum vu_state {
	VU_DISCONNECTED,	/* no backend; reconnecting when allowed */
	VU_CONNECTED,		/* handshake done, rings not served */
	VU_RUNNING,		/* the backend serves the rings */
	VU_FAILED,		/* protocol error: NEEDS_RESET until a driver reset */
};

static const char *const state_names[] = {
	[VU_DISCONNECTED] = "disconnected", [VU_CONNECTED] = "connected",
	[VU_RUNNING] = "running", [VU_FAILED] = "failed",
};

struct vu_fallback {
	struct vhost_user_dev *d;
	unsigned q;
};

struct vhost_user_dev {
	struct virtio_device vdev;
	const struct vhost_user_dev_type *type;
	struct evloop *loop;
	char id[40];			/* "vhost-user-blk0" */
	char *socket;
	unsigned queues, nr_rings, reconnect_ms;
	unsigned retry_ms;		/* next wait: reconnect_ms, doubling to VU_RETRY_MAX_MS */
	void *priv;
	bool started;			/* main-loop watches registered */
	int timer_fd;			/* reconnect / deferred NEEDS_RESET */
	int fallback[VIRTIO_MAX_QUEUES];
	struct vu_fallback fb[VIRTIO_MAX_QUEUES];
	uint64_t relayed;		/* interrupts the main loop passed on (atomic) */
	struct vhost_user_dev *next;	/* the process-wide list (QMP) */

	pthread_mutex_t lock;		/* everything below */
	struct vhost_user vu;
	enum vu_state state;
	int watch_fd;			/* dup of vu.fd the main loop watches; main loop only */
	bool active, paused;
	bool reset_due;			/* raise NEEDS_RESET from the main loop */
	uint64_t reconnects;
	uint64_t acked;			/* sent with SET_FEATURES */
	struct vhost_user_inflight inflight;
	int call_cur[VIRTIO_MAX_QUEUES];
	uint8_t config[VU_CONFIG_MAX];
	char err[300];			/* the last failure, for QMP */
	struct ratelimit log_rl;	/* a backend that crash-loops logs a few lines */
};

static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vhost_user_dev *all_devs;

static struct vhost_user_dev *to_vu(struct virtio_device *vdev)
{
	return container_of(vdev, struct vhost_user_dev, vdev);
}

struct vhost_user_dev *vhost_user_dev_of(struct virtio_device *vdev)
{
	return to_vu(vdev);
}

struct virtio_device *vhost_user_dev_virtio(struct vhost_user_dev *d)
{
	return &d->vdev;
}

void *vhost_user_dev_priv(struct vhost_user_dev *d)
{
	return d->priv;
}

unsigned vhost_user_dev_queues(const struct vhost_user_dev *d)
{
	return d->queues;
}

/* ---- the connection (lock held) ---- */

static void arm_timer(struct vhost_user_dev *d, unsigned ms)
{
	struct itimerspec its = { .it_value = { .tv_sec = ms / 1000,
						.tv_nsec = (long)(ms % 1000) * 1000000 + 1 } };

	if (d->timer_fd >= 0)
		(void)timerfd_settime(d->timer_fd, 0, &its, NULL);
}

/* A failed exchange: a closed socket means the backend went away (wait
 * for it to come back); anything else is a broken backend. */
static void lost(struct vhost_user_dev *d, int ret, const char *what)
{
	bool gone = ret == -EPIPE || ret == -ECONNRESET || ret == -ENOTCONN;

	/* The protocol layer's reason names the request already. */
	if (d->vu.err[0])
		snprintf(d->err, sizeof(d->err), "%.256s", d->vu.err);
	else
		snprintf(d->err, sizeof(d->err), "%s: %s", what, strerror(-ret));
	vhost_user_close(&d->vu);
	if (gone && d->reconnect_ms) {
		d->state = VU_DISCONNECTED;
		if (ratelimit_allow(&d->log_rl))
				log_warn("%s: backend %s went away (%s); reconnecting every %u ms", d->id,
				 d->socket, d->err, d->reconnect_ms);
		d->retry_ms = d->reconnect_ms;
		arm_timer(d, d->reconnect_ms);
	} else {
		d->state = VU_FAILED;
		d->reset_due = true;
		log_err("%s: backend %s: %s; device needs reset", d->id, d->socket, d->err);
		arm_timer(d, 0);
	}
}

/* Connect and agree on features and queues; fills the config space. */
static int handshake(struct vhost_user_dev *d, char *err, size_t errlen)
{
	const struct vhost_user_dev_type *t = d->type;
	uint64_t max_queues = 1;
	const char *e;
	size_t n;
	int ret;

	ret = vhost_user_connect(&d->vu, d->socket);
	if (!ret)
		ret = vhost_user_handshake(&d->vu);
	if (ret)
		goto fail;
	if (!(d->vu.features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		snprintf(d->vu.err, sizeof(d->vu.err), "the backend lacks VIRTIO_F_VERSION_1");
		ret = -EOPNOTSUPP;
		goto fail;
	}
	if (d->vu.protocol_features & (1ULL << VHOST_USER_PROTOCOL_F_MQ)) {
		ret = vhost_user_get_queue_num(&d->vu, &max_queues);
		if (ret)
			goto fail;
	}
	if (d->queues > max_queues) {
		snprintf(d->vu.err, sizeof(d->vu.err), "queues=%u, but the backend serves %llu",
			 d->queues, (unsigned long long)max_queues);
		ret = -EINVAL;
		goto fail;
	}
	if (t->backend_config) {
		if (!(d->vu.protocol_features & (1ULL << VHOST_USER_PROTOCOL_F_CONFIG))) {
			snprintf(d->vu.err, sizeof(d->vu.err),
				 "the backend does not offer its config space (CONFIG)");
			ret = -EOPNOTSUPP;
			goto fail;
		}
		ret = vhost_user_get_config(&d->vu, 0, d->config, (uint32_t)t->ops->config_size);
		if (ret)
			goto fail;
	}
	if (t->fill_config)
		t->fill_config(d, d->config);
	return 0;
fail:
	/* The caller names the socket (the flag's options, the QMP entry). */
	e = d->vu.err[0] ? d->vu.err : strerror(-ret);
	n = strlen(d->socket);
	if (!strncmp(e, d->socket, n) && e[n] == ':' && e[n + 1] == ' ')
		e += n + 2;
	snprintf(err, errlen, "%s", e);
	vhost_user_close(&d->vu);
	return ret;
}

static int pick_call(struct vhost_user_dev *d, unsigned q)
{
	int fd = d->vdev.call_fd ? d->vdev.call_fd(&d->vdev, q) : -1;

	return fd >= 0 ? fd : d->fallback[q];
}

static bool protocol_features_acked(const struct vhost_user_dev *d)
{
	return d->acked & VU_PROTOCOL_FEATURES_BIT;
}

/* Take the rings back. With the backend there, it stops them and says
 * where it is; without, the used index is the best there is (a backend
 * with an inflight region resubmits what lies beyond it). */
static void stop_rings(struct vhost_user_dev *d)
{
	if (d->state != VU_RUNNING) {
		for (unsigned q = 0; q < d->nr_rings; q++)
			d->call_cur[q] = -1;
		return;
	}
	for (unsigned q = 0; q < d->nr_rings; q++) {
		struct virtqueue *vq = virtio_dev_queue(&d->vdev, q);
		uint16_t base = 0;
		int ret = -ENOTCONN;

		d->call_cur[q] = -1;
		if (!vq->ready)
			continue;
		if (d->vu.fd >= 0) {
			ret = protocol_features_acked(d) ?
			      vhost_user_set_vring_enable(&d->vu, q, false) : 0;
			if (!ret)
				ret = vhost_user_get_vring_base(&d->vu, q, &base);
			if (ret)
				lost(d, ret, "stopping the rings");
		}
		vq->used_idx = rd16(vq->used + 2);
		vq->last_avail_idx = ret ? vq->used_idx : base;
		vq->inflight = 0;
	}
	if (d->state == VU_RUNNING)
		d->state = d->vu.fd >= 0 ? VU_CONNECTED : VU_DISCONNECTED;
}

static int start_rings(struct vhost_user_dev *d)
{
	struct virtio_device *vdev = &d->vdev;
	const char *what = "SET_FEATURES";
	int ret;

	if (d->state != VU_CONNECTED || !d->active || d->paused)
		return 0;
	d->acked = (vdev->driver_features & d->vu.features & ~d->type->own_features) |
		   (d->vu.features & VU_PROTOCOL_FEATURES_BIT);
	if (d->type->inflight &&
	    (d->vu.protocol_features & (1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD))) {
		what = "GET_INFLIGHT_FD";
		if (d->inflight.fd < 0 &&
		    (ret = vhost_user_get_inflight_fd(&d->vu, (uint16_t)d->nr_rings,
						      VU_QUEUE_SIZE, &d->inflight)))
			goto fail;
		what = "SET_INFLIGHT_FD";
		if ((ret = vhost_user_set_inflight_fd(&d->vu, &d->inflight)))
			goto fail;
	}
	what = "SET_FEATURES";
	if ((ret = vhost_user_set_features(&d->vu, d->acked)))
		goto fail;
	what = "SET_MEM_TABLE";
	if ((ret = vhost_user_set_mem_table(&d->vu, vdev->gm)))
		goto fail;
	for (unsigned q = 0; q < d->nr_rings; q++) {
		struct virtqueue *vq = virtio_dev_queue(vdev, q);
		int call = pick_call(d, q);

		if (!vq->ready)
			continue;
		what = "ring set-up";
		if ((ret = vhost_user_set_vring_num(&d->vu, q, vq->size)) ||
		    (ret = vhost_user_set_vring_base(&d->vu, q, vq->last_avail_idx)) ||
		    (ret = vhost_user_set_vring_addr(&d->vu, q, (uintptr_t)vq->desc,
						     (uintptr_t)vq->used, (uintptr_t)vq->avail, 0)) ||
		    (ret = vhost_user_set_vring_kick(&d->vu, q, virtio_dev_kick_fd(vdev, q))) ||
		    (ret = vhost_user_set_vring_call(&d->vu, q, call)))
			goto fail;
		d->call_cur[q] = call;
	}
	for (unsigned q = 0; q < d->nr_rings && protocol_features_acked(d); q++) {
		what = "SET_VRING_ENABLE";
		if (virtio_dev_queue(vdev, q)->ready &&
		    (ret = vhost_user_set_vring_enable(&d->vu, q, true)))
			goto fail;
	}
	/* A kick the old backend took but never served, or one that came
	 * while there was no backend, would leave the ring idle: look again. */
	for (unsigned q = 0; q < d->nr_rings; q++)
		if (virtio_dev_queue(vdev, q)->ready)
			(void)eventfd_write(virtio_dev_kick_fd(vdev, q), 1);
	d->state = VU_RUNNING;
	d->err[0] = 0;
	return 0;
fail:
	if (d->vu.fd >= 0)	/* a refusal (-EIO) leaves the socket up */
		vhost_user_close(&d->vu);
	lost(d, ret, what);
	for (unsigned q = 0; q < d->nr_rings; q++)
		d->call_cur[q] = -1;
	return d->state == VU_FAILED ? -EIO : 0;
}

/* ---- the main loop: socket watch, reconnect, fallback interrupts ---- */

static void on_socket(void *opaque, uint32_t events);

static void watch_drop(struct vhost_user_dev *d)
{
	if (d->watch_fd < 0)
		return;
	evloop_del(d->loop, d->watch_fd);
	close(d->watch_fd);
	d->watch_fd = -1;
}

static void watch_add(struct vhost_user_dev *d)
{
	watch_drop(d);
	if (!d->started || d->vu.fd < 0)
		return;
	d->watch_fd = fcntl(d->vu.fd, F_DUPFD_CLOEXEC, 3);
	if (d->watch_fd < 0)
		return;
	if (evloop_add(d->loop, d->watch_fd, EPOLLIN | EPOLLRDHUP, on_socket, d)) {
		close(d->watch_fd);
		d->watch_fd = -1;
	}
}

/* The backend never speaks unasked on this socket: readable means it
 * closed (or broke the protocol), unless a request's reply was read by
 * the thread that made it while we waited for the lock. */
static void on_socket(void *opaque, uint32_t events)
{
	struct vhost_user_dev *d = opaque;
	bool reset = false;
	char c;
	ssize_t n;

	(void)events;
	pthread_mutex_lock(&d->lock);
	if (d->vu.fd < 0) {
		watch_drop(d);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	n = recv(d->watch_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	vhost_user_close(&d->vu);
	stop_rings(d);	/* the rings come back at the used index: no one to ask */
	if (n > 0) {
		snprintf(d->vu.err, sizeof(d->vu.err), "the backend sent an unasked message");
		lost(d, -EPROTO, "socket");
	} else {
		snprintf(d->vu.err, sizeof(d->vu.err), "the backend closed the connection");
		lost(d, -EPIPE, "socket");
	}
	reset = d->reset_due;
	d->reset_due = false;
	watch_drop(d);
	pthread_mutex_unlock(&d->lock);
	if (reset)
		virtio_dev_set_needs_reset(&d->vdev);
}

static void try_reconnect(struct vhost_user_dev *d)
{
	uint64_t offered = d->vu.features;
	uint8_t old_cfg[VU_CONFIG_MAX];
	char err[256];
	int ret;

	memcpy(old_cfg, d->config, sizeof(old_cfg));
	ret = handshake(d, err, sizeof(err));
	if (!ret && d->active && (d->vdev.driver_features & ~d->type->own_features &
				  ~d->vu.features)) {
		snprintf(err, sizeof(err), "%s: the new backend lacks features the driver "
			 "uses (offers %#llx)", d->socket, (unsigned long long)d->vu.features);
		vhost_user_close(&d->vu);
		ret = -EOPNOTSUPP;
	}
	if (ret) {
		memcpy(d->config, old_cfg, sizeof(old_cfg));
		d->vu.features = offered;
		/* Once per kind of failure, not once per attempt. */
		if (strncmp(d->err, "reconnect: ", 11) || strcmp(d->err + 11, err))
			log_warn("%s: reconnect: %s", d->id, err);
		snprintf(d->err, sizeof(d->err), "reconnect: %.256s", err);
		arm_timer(d, d->retry_ms);
		d->retry_ms = d->retry_ms >= VU_RETRY_MAX_MS / 2 ? VU_RETRY_MAX_MS : d->retry_ms * 2;
		return;
	}
	d->retry_ms = d->reconnect_ms;
	d->reconnects++;
	d->state = VU_CONNECTED;
	watch_add(d);
	if (start_rings(d) == 0 && d->state != VU_DISCONNECTED && ratelimit_allow(&d->log_rl))
		log_info("%s: reconnected to %s (reconnect %llu)%s", d->id, d->socket,
			 (unsigned long long)d->reconnects,
			 d->state == VU_RUNNING ? "; rings restarted" : "");
}

static void on_timer(void *opaque, uint32_t events)
{
	struct vhost_user_dev *d = opaque;
	uint64_t ticks;
	bool reset;

	(void)events;
	(void)!read(d->timer_fd, &ticks, sizeof(ticks));
	pthread_mutex_lock(&d->lock);
	if (d->vu.fd < 0)
		watch_drop(d);
	if (d->state == VU_DISCONNECTED && d->reconnect_ms)
		try_reconnect(d);
	reset = d->reset_due;
	d->reset_due = false;
	pthread_mutex_unlock(&d->lock);
	if (reset)
		virtio_dev_set_needs_reset(&d->vdev);
}

static void on_fallback(void *opaque, uint32_t events)
{
	struct vu_fallback *fb = opaque;
	struct virtio_device *vdev = &fb->d->vdev;
	eventfd_t val = 0;

	(void)events;
	if (eventfd_read(fb->d->fallback[fb->q], &val) == 0 && val && vdev->notify_used) {
		__atomic_fetch_add(&fb->d->relayed, 1, __ATOMIC_RELAXED);
		vdev->notify_used(vdev, fb->q);
	}
}

/* ---- virtio ops (vCPU threads, the transport's lock held) ---- */

void vhost_user_dev_config_read(struct virtio_device *vdev, size_t off, void *data, size_t len)
{
	struct vhost_user_dev *d = to_vu(vdev);

	pthread_mutex_lock(&d->lock);
	memcpy(data, d->config + off, len);
	pthread_mutex_unlock(&d->lock);
}

void vhost_user_dev_config_write(struct virtio_device *vdev, size_t off, const void *data, size_t len)
{
	struct vhost_user_dev *d = to_vu(vdev);
	int ret;

	pthread_mutex_lock(&d->lock);
	if (d->type->backend_config && d->vu.fd >= 0) {
		ret = vhost_user_set_config(&d->vu, (uint32_t)off, data, (uint32_t)len);
		if (!ret)
			memcpy(d->config + off, data, len);
		else if (ret == -EIO)	/* refused: the field is read-only to it */
			log_warn("%s: config write of %zu bytes at %zu: %s", d->id, len, off,
				 d->vu.err);
		else
			lost(d, ret, "SET_CONFIG");
	}
	pthread_mutex_unlock(&d->lock);
}

int vhost_user_dev_activate(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev);
	int ret;

	pthread_mutex_lock(&d->lock);
	d->active = true;
	ret = d->state == VU_FAILED ? -EIO : start_rings(d);
	if (ret)
		d->active = false;
	d->reset_due = false;	/* the failed activation raises it */
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void vhost_user_dev_reset(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev);

	pthread_mutex_lock(&d->lock);
	stop_rings(d);
	d->active = false;
	/* A new driver starts from empty rings: nothing to resubmit. */
	if (d->inflight.fd >= 0)
		close(d->inflight.fd);
	d->inflight.fd = -1;
	if (d->state == VU_FAILED) {	/* a new driver: try the backend again */
		d->state = VU_DISCONNECTED;
		if (d->reconnect_ms)
			arm_timer(d, 1);
	}
	pthread_mutex_unlock(&d->lock);
}

static void vu_call_changed(struct virtio_device *vdev, unsigned q)
{
	struct vhost_user_dev *d = to_vu(vdev);
	eventfd_t val = 0;
	int fd, ret;

	if (q >= d->nr_rings)
		return;
	pthread_mutex_lock(&d->lock);
	fd = pick_call(d, q);
	if (d->state == VU_RUNNING && virtio_dev_queue(vdev, q)->ready && fd != d->call_cur[q]) {
		ret = vhost_user_set_vring_call(&d->vu, q, fd);
		if (ret) {
			lost(d, ret, "SET_VRING_CALL");	/* NEEDS_RESET from the main loop */
		} else {
			bool was_fallback = d->call_cur[q] == d->fallback[q];

			d->call_cur[q] = fd;
			/* A signal the main loop has not turned into an
			 * interrupt yet goes to the vector now. */
			if (was_fallback && fd != d->fallback[q] &&
			    eventfd_read(d->fallback[q], &val) == 0 && val)
				(void)eventfd_write(fd, 1);
		}
	}
	pthread_mutex_unlock(&d->lock);
}

/* ---- life cycle ---- */

int vhost_user_dev_create(struct vhost_user_dev **out, const struct device_ctx *ctx,
			  const struct vhost_user_dev_type *type,
			  const struct vhost_user_dev_params *p, char *err, size_t errlen)
{
	struct vhost_user_dev *d, *o;
	uint64_t features;
	unsigned n = 0;
	int ret;

	*out = NULL;
	if (!p->queues || p->queues * type->rings_per_queue > VIRTIO_MAX_QUEUES ||
	    type->ops->config_size > VU_CONFIG_MAX) {
		snprintf(err, errlen, "queues=%u: 1..%u", p->queues,
			 VIRTIO_MAX_QUEUES / type->rings_per_queue);
		return -EINVAL;
	}
	if (!ctx->mem || ctx->mem->memfd < 0) {
		snprintf(err, errlen, "guest RAM is not a shared memfd the backend could map");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		d->vdev.kick_fd[q] = -1;	/* destroy before virtio_dev_init */
		d->fallback[q] = -1;
		d->call_cur[q] = -1;
	}
	pthread_mutex_init(&d->lock, NULL);
	vhost_user_init(&d->vu, -1);
	d->type = type;
	d->loop = ctx->loop;
	d->queues = p->queues;
	d->nr_rings = p->queues * type->rings_per_queue;
	d->reconnect_ms = p->reconnect_ms;
	d->retry_ms = p->reconnect_ms;
	d->priv = p->priv;
	d->watch_fd = -1;
	d->inflight.fd = -1;
	d->log_rl = (struct ratelimit)RATELIMIT_INIT(10000, 6);
	d->state = VU_DISCONNECTED;
	d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	d->socket = strdup(p->socket);
	if (d->timer_fd < 0 || !d->socket) {
		ret = d->socket ? -errno : -ENOMEM;
		snprintf(err, errlen, "%s", strerror(-ret));
		goto fail;
	}
	for (unsigned q = 0; q < d->nr_rings; q++) {
		d->fb[q] = (struct vu_fallback){ .d = d, .q = q };
		d->fallback[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (d->fallback[q] < 0) {
			ret = -errno;
			snprintf(err, errlen, "eventfd: %s", strerror(errno));
			goto fail;
		}
	}
	ret = handshake(d, err, errlen);
	if (ret)
		goto fail;
	d->state = VU_CONNECTED;
	features = (d->vu.features & (type->backend_features | VU_RING_FEATURES)) |
		   type->own_features;
	ret = virtio_dev_init(&d->vdev, type->ops, ctx->mem, d->nr_rings, VU_QUEUE_SIZE,
			      features & ~VIRTIO_BIT(VIRTIO_F_VERSION_1));
	if (ret) {
		snprintf(err, errlen, "virtio set-up: %s", strerror(-ret));
		goto fail;
	}
	d->vdev.call_fd_changed = vu_call_changed;

	pthread_mutex_lock(&all_lock);
	for (o = all_devs; o; o = o->next)
		n += o->type == type;
	snprintf(d->id, sizeof(d->id), "%s%u", type->kind, n);
	d->next = all_devs;
	all_devs = d;
	pthread_mutex_unlock(&all_lock);
	log_info("%s: backend %s: features %#llx, protocol features %#llx, %u ring%s", d->id,
		 d->socket, (unsigned long long)d->vu.features,
		 (unsigned long long)d->vu.protocol_features, d->nr_rings,
		 d->nr_rings == 1 ? "" : "s");
	*out = d;
	return 0;
fail:
	d->vdev.ops = NULL;
	vhost_user_dev_destroy(&d->vdev);
	return ret;
}

int vhost_user_dev_start(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev);
	int ret;

	if (d->started || !d->loop)
		return 0;
	ret = evloop_add(d->loop, d->timer_fd, EPOLLIN, on_timer, d);
	if (ret)
		return ret;
	for (unsigned q = 0; q < d->nr_rings; q++) {
		ret = evloop_add(d->loop, d->fallback[q], EPOLLIN, on_fallback, &d->fb[q]);
		if (ret) {
			while (q-- > 0)
				evloop_del(d->loop, d->fallback[q]);
			evloop_del(d->loop, d->timer_fd);
			return ret;
		}
	}
	d->started = true;
	pthread_mutex_lock(&d->lock);
	watch_add(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void vhost_user_dev_stop(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev);

	pthread_mutex_lock(&d->lock);
	stop_rings(d);
	d->active = false;
	if (d->started)
		watch_drop(d);
	pthread_mutex_unlock(&d->lock);
	if (!d->started)
		return;
	evloop_del(d->loop, d->timer_fd);
	for (unsigned q = 0; q < d->nr_rings; q++)
		evloop_del(d->loop, d->fallback[q]);
	d->started = false;
}

void vhost_user_dev_destroy(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev), **pp;

	if (!vdev)
		return;
	if (d->vdev.ops)
		vhost_user_dev_stop(vdev);
	pthread_mutex_lock(&all_lock);
	for (pp = &all_devs; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	pthread_mutex_unlock(&all_lock);
	vhost_user_close(&d->vu);
	if (d->watch_fd >= 0)
		close(d->watch_fd);
	if (d->inflight.fd >= 0)
		close(d->inflight.fd);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (d->fallback[q] >= 0)
			close(d->fallback[q]);
	if (d->timer_fd >= 0)
		close(d->timer_fd);
	virtio_dev_destroy(&d->vdev);
	pthread_mutex_destroy(&d->lock);
	free(d->socket);
	free(d);
}

void vhost_user_dev_pause(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev);

	pthread_mutex_lock(&d->lock);
	d->paused = true;
	stop_rings(d);
	pthread_mutex_unlock(&d->lock);
}

void vhost_user_dev_resume(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev);
	int ret;

	pthread_mutex_lock(&d->lock);
	d->paused = false;
	ret = start_rings(d);
	d->reset_due = false;
	pthread_mutex_unlock(&d->lock);
	if (ret)
		virtio_dev_set_needs_reset(vdev);
}

int vhost_user_common_check(const struct vhost_user_common_opts *o, char *err, size_t errlen)
{
	if (!o->socket || !*o->socket) {
		snprintf(err, errlen, "socket=PATH is required");
		return -EINVAL;
	}
	return 0;
}

int vhost_user_dev_create_virtio(struct device_ctx *ctx, const struct vhost_user_dev_type *type,
				 const struct vhost_user_common_opts *o, unsigned queues,
				 void *priv, struct virtio_device **out)
{
	struct vhost_user_dev_params p = {
		.socket = o->socket, .queues = queues, .reconnect_ms = (unsigned)o->reconnect_ms,
		.priv = priv,
	};
	struct vhost_user_dev *d;
	char err[320] = "";
	int ret;

	*out = NULL;
	ret = vhost_user_dev_create(&d, ctx, type, &p, err, sizeof(err));
	if (ret) {
		virtio_create_error("%s", err);
		return ret;
	}
	*out = &d->vdev;
	return 0;
}

/* The rings' positions are saved by the registry; the backend keeps the
 * disk or the network. A restored VM needs the same kind of backend. */
json_t *vhost_user_dev_save(struct virtio_device *vdev)
{
	struct vhost_user_dev *d = to_vu(vdev);

	return json_pack("{s:s, s:i}", "kind", d->type->kind, "queues", (int)d->queues);
}

int vhost_user_dev_load(struct virtio_device *vdev, json_t *saved, char *err, size_t errlen)
{
	struct vhost_user_dev *d = to_vu(vdev);
	json_error_t jerr;
	const char *kind;
	int queues;

	if (json_unpack_ex(saved, &jerr, JSON_STRICT, "{s:s, s:i}", "kind", &kind, "queues",
			   &queues)) {
		snprintf(err, errlen, "%s state: %s", d->id, jerr.text);
		return -EINVAL;
	}
	if (strcmp(kind, d->type->kind) || queues != (int)d->queues) {
		snprintf(err, errlen, "%s: saved as %s with %d queues, this VM has %u", d->id,
			 kind, queues, d->queues);
		return -EINVAL;
	}
	return 0;
}

/* ---- QMP ---- */

static json_t *dev_json(struct vhost_user_dev *d)
{
	json_t *o;

	pthread_mutex_lock(&d->lock);
	o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:I, s:b}",
		      "id", d->id, "type", d->type->kind, "socket", d->socket,
		      "state", state_names[d->state],
		      "features", (json_int_t)d->vu.features,
		      "acked-features", (json_int_t)d->acked,
		      "protocol-features", (json_int_t)d->vu.protocol_features,
		      "queues", (int)d->queues, "rings", (int)d->nr_rings,
		      "reconnects", (json_int_t)d->reconnects,
		      "inflight", d->inflight.fd >= 0);
	/* Interrupts that went through Ember (no irqfd for the vector yet, or
	 * masked): normally a handful at driver start. */
	if (o)
		json_object_set_new(o, "relayed-interrupts",
				    json_integer((json_int_t)__atomic_load_n(&d->relayed,
									  __ATOMIC_RELAXED)));
	if (o && d->err[0])
		json_object_set_new(o, "error", json_string(d->err));
	pthread_mutex_unlock(&d->lock);
	return o;
}

static int qmp_query_vhost_user(void *state, json_t *args, json_t **ret, char *err,
				size_t errlen)
{
	json_t *list = json_array();

	(void)state;
	(void)args;
	(void)err;
	(void)errlen;
	pthread_mutex_lock(&all_lock);
	for (struct vhost_user_dev *d = all_devs; d; d = d->next)
		json_array_insert_new(list, 0, dev_json(d));	/* command-line order */
	pthread_mutex_unlock(&all_lock);
	*ret = list;
	return 0;
}

const struct device_qmp_command vhost_user_qmp_commands[] = {
	{ "query-vhost-user", qmp_query_vhost_user },
	{ NULL, NULL },
};
