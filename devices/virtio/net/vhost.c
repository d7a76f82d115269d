/* The vhost-net datapath: one /dev/vhost-net instance per queue pair (ring
 * 0 receive, ring 1 transmit) attached to that pair's tap queue. Kicks go
 * from KVM's ioeventfd straight to the kernel; interrupts go from the
 * kernel straight to the MSI-X vector's irqfd (virtio_device.call_fd).
 * While a vector has no irqfd (masked, INTx, none assigned) the ring
 * signals a fallback eventfd that the main loop turns into notify_used(),
 * which lets the transport set the pending bit or raise INTx; QEMU does
 * the same with its masked notifier. The control queue stays in Ember. */
#include <errno.h>
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
#include "devices/virtio/net/net.h"

#define VHOST_NET_PATH	"/dev/vhost-net"
#define NQ		(2 * NET_MAX_PAIRS)

/* Ring features vhost implements; the rest of virtio-net is the tap's
 * (offloads) or Ember's (control queue, config space). */
#define VHOST_RING_FEATURES                                                             \
	(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |     \
	 VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_VERSION_1))

struct vhost_net;

struct fallback_ctx {
	struct vhost_net *vh;
	unsigned q;
};

struct vhost_net {
	struct net_dev *net;
	pthread_mutex_t lock;		/* the call fds against start and stop */
	struct vhost_dev dev[NET_MAX_PAIRS];
	int fallback[NQ];		/* eventfds the main loop watches */
	int call_cur[NQ];		/* what the ring signals now, -1: not started */
	bool running[NET_MAX_PAIRS];
	bool attached[NET_MAX_PAIRS];
	bool watched;
	struct fallback_ctx fb[NQ];	/* main-loop callback arguments */
	uint64_t fallback_signals;	/* interrupts that went through Ember */
};

static int pick_call(struct vhost_net *vh, unsigned q)
{
	struct virtio_device *dev = &vh->net->vdev;
	int fd = dev->call_fd ? dev->call_fd(dev, q) : -1;

	return fd >= 0 ? fd : vh->fallback[q];
}

static void fallback_fired(struct vhost_net *vh, unsigned q)
{
	struct virtio_device *dev = &vh->net->vdev;
	eventfd_t v = 0;

	if (eventfd_read(vh->fallback[q], &v) == 0 && v && dev->notify_used) {
		__atomic_add_fetch(&vh->fallback_signals, 1, __ATOMIC_RELAXED);
		dev->notify_used(dev, q);
	}
}

uint64_t net_vhost_fallback_signals(const struct net_dev *n)
{
	return n->vhost ? __atomic_load_n(&n->vhost->fallback_signals, __ATOMIC_RELAXED) : 0;
}

void net_vhost_call_changed(struct virtio_device *dev, unsigned q)
{
	struct net_dev *n = net_of(dev);
	struct vhost_net *vh = n->vhost;
	int fd, ret;

	if (!vh || q >= 2 * n->max_pairs)
		return;
	pthread_mutex_lock(&vh->lock);
	if (vh->running[q / 2]) {
		fd = pick_call(vh, q);
		if (fd != vh->call_cur[q]) {
			ret = vhost_vring_set_call(&vh->dev[q / 2], q % 2, fd);
			if (ret) {
				log_warn("net %s: vhost queue %u: VHOST_SET_VRING_CALL: %s", n->name,
					 q, strerror(-ret));
			} else {
				bool was_fallback = vh->call_cur[q] == vh->fallback[q];
				eventfd_t v = 0;

				vh->call_cur[q] = fd;
				/* A signal the main loop has not seen yet goes to the
				 * vector directly: the transport may hold its own locks
				 * here, so no notify_used(). */
				if (was_fallback && fd != vh->fallback[q] &&
				    eventfd_read(vh->fallback[q], &v) == 0 && v)
					(void)eventfd_write(fd, 1);
			}
		}
	}
	pthread_mutex_unlock(&vh->lock);
}

static void on_fallback(void *opaque, uint32_t events)
{
	struct fallback_ctx *fb = opaque;

	(void)events;
	fallback_fired(fb->vh, fb->q);
}

int net_vhost_open(struct net_dev *n, const struct net_opts *o, bool required, char *err,
		   size_t errlen)
{
	struct vhost_net *vh = calloc(1, sizeof(*vh));
	int ret = 0;

	if (!vh)
		return -ENOMEM;
	vh->net = n;
	pthread_mutex_init(&vh->lock, NULL);
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		vh->dev[i].fd = -1;
	for (unsigned q = 0; q < NQ; q++) {
		vh->fallback[q] = -1;
		vh->call_cur[q] = -1;
		vh->fb[q] = (struct fallback_ctx){ .vh = vh, .q = q };
	}
	for (unsigned i = 0; i < n->max_pairs; i++) {
		int fd = i < o->nr_vhostfds ? o->vhostfd_list[i] : -1;

		ret = vhost_dev_open(&vh->dev[i], VHOST_NET_PATH, fd, err, errlen);
		if (ret)
			goto fail;
		if (!(vh->dev[i].features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
			snprintf(err, errlen, VHOST_NET_PATH ": the kernel's vhost-net lacks "
				 "VIRTIO_F_VERSION_1");
			ret = -EOPNOTSUPP;
			goto fail;
		}
	}
	for (unsigned q = 0; q < 2 * n->max_pairs; q++) {
		vh->fallback[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (vh->fallback[q] < 0) {
			ret = -errno;
			snprintf(err, errlen, "eventfd: %s", strerror(errno));
			goto fail;
		}
	}
	n->vhost = vh;
	return 0;
fail:
	(void)required;
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		if (i >= o->nr_vhostfds)	/* passed fds stay the caller's */
			vhost_dev_close(&vh->dev[i]);
	for (unsigned q = 0; q < NQ; q++)
		if (vh->fallback[q] >= 0)
			close(vh->fallback[q]);
	pthread_mutex_destroy(&vh->lock);
	free(vh);
	return ret;
}

void net_vhost_close(struct net_dev *n)
{
	struct vhost_net *vh = n->vhost;

	if (!vh)
		return;
	net_vhost_stop(n);
	net_vhost_unwatch(n);
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		vhost_dev_close(&vh->dev[i]);
	for (unsigned q = 0; q < NQ; q++)
		if (vh->fallback[q] >= 0)
			close(vh->fallback[q]);
	pthread_mutex_destroy(&vh->lock);
	free(vh);
	n->vhost = NULL;
}

/* Main thread, at start: watch the fallback eventfds. */
int net_vhost_watch(struct net_dev *n)
{
	struct vhost_net *vh = n->vhost;
	int ret;

	if (!vh || vh->watched || !n->ctx.loop)
		return 0;
	for (unsigned q = 0; q < 2 * n->max_pairs; q++) {
		ret = evloop_add(n->ctx.loop, vh->fallback[q], EPOLLIN, on_fallback, &vh->fb[q]);
		if (ret) {
			while (q-- > 0)
				evloop_del(n->ctx.loop, vh->fallback[q]);
			return ret;
		}
	}
	vh->watched = true;
	return 0;
}

void net_vhost_unwatch(struct net_dev *n)
{
	struct vhost_net *vh = n->vhost;

	if (!vh || !vh->watched)
		return;
	for (unsigned q = 0; q < 2 * n->max_pairs; q++)
		evloop_del(n->ctx.loop, vh->fallback[q]);
	vh->watched = false;
}

uint64_t net_vhost_mask_features(struct net_dev *n, uint64_t features)
{
	uint64_t kernel = VHOST_RING_FEATURES;

	for (unsigned i = 0; n->vhost && i < n->max_pairs; i++)
		kernel &= n->vhost->dev[i].features;
	return features & ~(VHOST_RING_FEATURES & ~kernel);
}

static bool want_attached(const struct net_dev *n, unsigned pair)
{
	return pair < __atomic_load_n(&n->pairs_active, __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&n->link_up, __ATOMIC_ACQUIRE);
}

/* vh->lock held. */
static int set_attached(struct net_dev *n, unsigned pair, bool on)
{
	struct vhost_net *vh = n->vhost;
	int fd = on ? n->be.fds[pair] : -1, ret = 0;

	if (!vh->running[pair] || vh->attached[pair] == on)
		return 0;
	for (unsigned r = 0; r < 2 && !ret; r++)
		ret = vhost_net_set_backend(&vh->dev[pair], r, fd);
	if (ret) {
		log_err("net %s: vhost pair %u: VHOST_NET_SET_BACKEND %d: %s", n->name, pair, fd,
			strerror(-ret));
		return ret;
	}
	vh->attached[pair] = on;
	if (on) {
		/* Buffers the guest added while detached. */
		virtio_dev_queue_notify(&n->vdev, 2 * pair);
		virtio_dev_queue_notify(&n->vdev, 2 * pair + 1);
	}
	return 0;
}

/* vh->lock held. */
static void stop_pair(struct net_dev *n, unsigned pair)
{
	struct vhost_net *vh = n->vhost;

	if (!vh->running[pair])
		return;
	(void)set_attached(n, pair, false);
	for (unsigned r = 0; r < 2; r++) {
		unsigned q = 2 * pair + r;
		struct virtqueue *vq = virtio_dev_queue(&n->vdev, q);
		uint16_t base;
		int ret = vhost_vring_get_base(&vh->dev[pair], r, &base);

		if (ret) {
			log_warn("net %s: vhost queue %u: VHOST_GET_VRING_BASE: %s", n->name, q,
				 strerror(-ret));
			continue;
		}
		/* The ring state is Ember's again (pause, save, reset). */
		vq->last_avail_idx = base;
		vq->used_idx = rd16(vq->used + 2);
		vq->inflight = 0;
		vh->call_cur[q] = -1;
	}
	vh->running[pair] = false;
	vh->attached[pair] = false;
}

/* vh->lock held. */
static int start_pair(struct net_dev *n, unsigned pair, uint64_t features)
{
	struct vhost_net *vh = n->vhost;
	struct vhost_dev *d = &vh->dev[pair];
	int ret;

	for (unsigned r = 0; r < 2; r++) {
		struct virtqueue *vq = virtio_dev_queue(&n->vdev, 2 * pair + r);

		if (!vq || !vq->ready)
			return 0;	/* the driver did not enable this pair */
	}
	if ((ret = vhost_dev_set_features(d, features)) ||
	    (ret = vhost_dev_set_mem_table(d, n->vdev.gm))) {
		log_err("net %s: vhost pair %u: set-up: %s", n->name, pair, strerror(-ret));
		return ret;
	}
	for (unsigned r = 0; r < 2; r++) {
		unsigned q = 2 * pair + r;
		struct virtqueue *vq = virtio_dev_queue(&n->vdev, q);
		struct vhost_ring ring = {
			.size = vq->size, .last_avail_idx = vq->last_avail_idx,
			.desc = vq->desc, .avail = vq->avail, .used = vq->used,
			.used_gpa = vq->used_gpa,
		};
		int call = pick_call(vh, q);

		ret = vhost_vring_start(d, r, &ring, virtio_dev_kick_fd(&n->vdev, q), call);
		if (ret) {
			log_err("net %s: vhost queue %u: ring set-up: %s", n->name, q,
				strerror(-ret));
			return ret;
		}
		vh->call_cur[q] = call;
	}
	vh->running[pair] = true;
	return set_attached(n, pair, want_attached(n, pair));
}

int net_vhost_start(struct net_dev *n)
{
	struct vhost_net *vh = n->vhost;
	uint64_t features = n->vdev.driver_features & VHOST_RING_FEATURES;
	int ret = 0;

	if (!vh)
		return 0;
	pthread_mutex_lock(&vh->lock);
	for (unsigned i = 0; i < n->max_pairs && !ret; i++)
		ret = start_pair(n, i, features);
	if (ret)
		for (unsigned i = 0; i < n->max_pairs; i++)
			stop_pair(n, i);
	pthread_mutex_unlock(&vh->lock);
	return ret;
}

void net_vhost_stop(struct net_dev *n)
{
	struct vhost_net *vh = n->vhost;

	if (!vh)
		return;
	pthread_mutex_lock(&vh->lock);
	for (unsigned i = 0; i < n->max_pairs; i++)
		stop_pair(n, i);
	pthread_mutex_unlock(&vh->lock);
}

int net_vhost_set_pairs(struct net_dev *n, unsigned pairs)
{
	struct vhost_net *vh = n->vhost;
	int ret = 0;

	(void)pairs;	/* pairs_active is already stored */
	if (!vh)
		return 0;
	pthread_mutex_lock(&vh->lock);
	for (unsigned i = 0; i < n->max_pairs; i++) {
		int r = set_attached(n, i, want_attached(n, i));

		if (r && !ret)
			ret = r;
	}
	pthread_mutex_unlock(&vh->lock);
	return ret;
}

void net_vhost_set_link(struct net_dev *n, bool up)
{
	(void)up;	/* link_up is already stored */
	(void)net_vhost_set_pairs(n, __atomic_load_n(&n->pairs_active, __ATOMIC_ACQUIRE));
}
