/* virtio-vsock's userspace backend: the rx/tx queues on the main loop,
 * bridged to unix sockets by conn.c. See uds.h. */
#include "devices/virtio/vsock/uds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "base/evloop.h"
#include "base/log.h"
#include "devices/virtio/vsock/conn.h"
#include "devices/virtio/vsock/packet.h"
#include "devices/virtio/vsock/vsock.h"

#define TX_IOV_MAX	64

struct vsock_uds {
	struct virtio_device *vdev;
	struct evloop *loop;
	pthread_mutex_t *lock;
	uint64_t cid;
	struct vsock_bridge *bridge;	/* NULL once stopped */
	int poke_fd;			/* eventfd: look at the queues again */
	int timer_fd;			/* the bridge's next connection deadline */
	bool started, up, running, drop_pending;
	uint64_t dropped_pkts;
	struct vq_chain chain;
};

/* ---- the queues (main loop, lock held) ---- */

static void process_tx(struct vsock_uds *u)
{
	struct virtqueue *vq = virtio_dev_queue(u->vdev, VSOCK_QUEUE_TX);
	struct vq_chain *ch = &u->chain;
	bool pushed = false;
	int ret;

	if (!vq->ready || vq->error)
		return;
	for (;;) {
		uint8_t raw[VSOCK_HDR_SIZE];
		struct iovec iov[TX_IOV_MAX];
		struct vsock_hdr h;
		int n = 0;

		ret = virtqueue_pop(vq, ch);
		if (ret < 0) {
			virtio_dev_queue_error(u->vdev, VSOCK_QUEUE_TX, ret);
			return;
		}
		if (ret == 0) {
			if (virtqueue_enable_notify(vq))
				continue;
			break;
		}
		pushed = true;
		if (vq_reader_read(ch, raw, sizeof(raw)) < sizeof(raw)) {
			u->dropped_pkts++;	/* no whole header: nothing to answer */
			virtqueue_push(vq, ch->head, 0);
			continue;
		}
		vsock_hdr_decode(&h, raw);
		switch (vsock_hdr_check(&h, ch->out_len, u->cid)) {
		case VSOCK_PKT_OK:
			if (h.len)
				n = vq_reader_iov(ch, h.len, iov, TX_IOV_MAX);
			if (n < 0)
				vsock_bridge_tx_refuse(u->bridge, &h);
			else
				vsock_bridge_tx(u->bridge, &h, iov, (unsigned)n);
			break;
		case VSOCK_PKT_RST:
			vsock_bridge_tx_refuse(u->bridge, &h);
			break;
		case VSOCK_PKT_DROP:
			u->dropped_pkts++;
			break;
		}
		virtqueue_push(vq, ch->head, 0);
	}
	if (pushed)
		virtio_dev_notify_if_needed(u->vdev, VSOCK_QUEUE_TX);
}

static void process_rx(struct vsock_uds *u)
{
	struct virtqueue *vq = virtio_dev_queue(u->vdev, VSOCK_QUEUE_RX);
	struct vq_chain *ch = &u->chain;
	bool pushed = false;
	int ret;

	if (!vq->ready || vq->error)
		return;
	while (vsock_bridge_rx_pending(u->bridge)) {
		size_t n;

		ret = virtqueue_pop(vq, ch);
		if (ret < 0) {
			virtio_dev_queue_error(u->vdev, VSOCK_QUEUE_RX, ret);
			return;
		}
		if (ret == 0) {
			/* Out of buffers: the guest's next kick brings us back. */
			if (virtqueue_enable_notify(vq))
				continue;
			break;
		}
		if (ch->in_len < VSOCK_HDR_SIZE || ch->nr_out) {
			/* Not a receive buffer: give it back unused. */
			u->dropped_pkts++;
			virtqueue_push(vq, ch->head, 0);
			pushed = true;
			continue;
		}
		n = vsock_bridge_rx(u->bridge, &ch->iov[ch->nr_out], ch->nr_in);
		if (!n) {
			virtqueue_unpop(vq, 1);
			break;
		}
		virtqueue_push(vq, ch->head, (uint32_t)n);
		pushed = true;
	}
	if (pushed)
		virtio_dev_notify_if_needed(u->vdev, VSOCK_QUEUE_RX);
}

/* Every main-loop entry: a reset asked for the connections to go. */
static bool enter(struct vsock_uds *u)
{
	if (!u->bridge)
		return false;
	if (u->drop_pending) {
		vsock_bridge_drop_all(u->bridge);
		u->drop_pending = false;
	}
	vsock_bridge_set_active(u->bridge, u->up);
	return true;
}

/* Deadlines count only while the guest runs; the timer is re-armed for
 * the next one after every pass. */
static void arm_deadline(struct vsock_uds *u, int ms)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };

	if (ms >= 0) {
		its.it_value.tv_sec = ms / 1000;
		its.it_value.tv_nsec = (long)(ms % 1000) * 1000000 + 1;
	}
	(void)timerfd_settime(u->timer_fd, 0, &its, NULL);
}

static void serve(struct vsock_uds *u)
{
	uint64_t expired;
	int ms;

	if (!u->running)
		return;
	process_tx(u);
	process_rx(u);
	expired = vsock_bridge_nr_expired(u->bridge);
	ms = vsock_bridge_expire(u->bridge, monotonic_ms());
	if (vsock_bridge_nr_expired(u->bridge) != expired) {
		process_rx(u);	/* the RSTs the expired connections owe */
		ms = vsock_bridge_expire(u->bridge, monotonic_ms());
	}
	arm_deadline(u, ms);
}

static void on_kick(void *opaque, uint32_t events)
{
	struct vsock_uds *u = opaque;
	eventfd_t val;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(u->vdev, VSOCK_QUEUE_RX), &val);
	(void)eventfd_read(virtio_dev_kick_fd(u->vdev, VSOCK_QUEUE_TX), &val);
	(void)eventfd_read(u->poke_fd, &val);
	pthread_mutex_lock(u->lock);
	if (enter(u))
		serve(u);
	pthread_mutex_unlock(u->lock);
}

static void on_deadline(void *opaque, uint32_t events)
{
	struct vsock_uds *u = opaque;
	uint64_t ticks;

	(void)events;
	(void)!read(u->timer_fd, &ticks, sizeof(ticks));
	pthread_mutex_lock(u->lock);
	if (enter(u))
		serve(u);
	pthread_mutex_unlock(u->lock);
}

static void on_host_fd(void *token, uint32_t events)
{
	struct vsock_uds *u = vsock_bridge_token_opaque(token);

	pthread_mutex_lock(u->lock);
	if (enter(u)) {
		vsock_bridge_event(token, events);
		serve(u);
	}
	pthread_mutex_unlock(u->lock);
}

static int watch(void *opaque, int fd, uint32_t old, uint32_t events, void *token)
{
	struct vsock_uds *u = opaque;

	if (!u->loop)
		return 0;
	if (!events)
		return evloop_del(u->loop, fd);
	if (!old)
		return evloop_add(u->loop, fd, events, on_host_fd, token);
	return evloop_mod(u->loop, fd, events);
}

static const struct vsock_bridge_ops bridge_ops = { .watch = watch };

/* ---- life cycle ---- */

int vsock_uds_create(struct vsock_uds **out, struct virtio_device *vdev, struct evloop *loop,
		     pthread_mutex_t *lock, uint64_t cid, const char *path, char *err,
		     size_t errlen)
{
	struct vsock_uds *u = calloc(1, sizeof(*u));
	int ret;

	*out = NULL;
	if (!u)
		return -ENOMEM;
	u->vdev = vdev;
	u->loop = loop;
	u->lock = lock;
	u->cid = cid;
	u->poke_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	u->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (u->poke_fd < 0 || u->timer_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ret = vsock_bridge_create(&u->bridge, cid, path, &bridge_ops, u, err, errlen);
	if (ret)
		goto fail;
	*out = u;
	return 0;
fail:
	vsock_uds_destroy(u);
	return ret;
}

int vsock_uds_start(struct vsock_uds *u)
{
	static const unsigned qs[] = { VSOCK_QUEUE_RX, VSOCK_QUEUE_TX };
	int ret;

	if (u->started || !u->loop)
		return 0;
	ret = evloop_add(u->loop, u->poke_fd, EPOLLIN, on_kick, u);
	if (ret)
		return ret;
	ret = evloop_add(u->loop, u->timer_fd, EPOLLIN, on_deadline, u);
	if (ret) {
		evloop_del(u->loop, u->poke_fd);
		return ret;
	}
	for (unsigned i = 0; i < 2; i++) {
		ret = evloop_add(u->loop, virtio_dev_kick_fd(u->vdev, qs[i]), EPOLLIN, on_kick, u);
		if (ret) {
			while (i-- > 0)
				evloop_del(u->loop, virtio_dev_kick_fd(u->vdev, qs[i]));
			evloop_del(u->loop, u->timer_fd);
			evloop_del(u->loop, u->poke_fd);
			return ret;
		}
	}
	u->started = true;
	return 0;
}

void vsock_uds_stop(struct vsock_uds *u)
{
	if (!u)
		return;
	pthread_mutex_lock(u->lock);
	u->running = false;
	vsock_bridge_destroy(u->bridge);	/* closes and unwatches every socket */
	u->bridge = NULL;
	pthread_mutex_unlock(u->lock);
	if (!u->started)
		return;
	evloop_del(u->loop, virtio_dev_kick_fd(u->vdev, VSOCK_QUEUE_RX));
	evloop_del(u->loop, virtio_dev_kick_fd(u->vdev, VSOCK_QUEUE_TX));
	evloop_del(u->loop, u->poke_fd);
	evloop_del(u->loop, u->timer_fd);
	u->started = false;
}

void vsock_uds_destroy(struct vsock_uds *u)
{
	if (!u)
		return;
	vsock_uds_stop(u);
	if (u->poke_fd >= 0)
		close(u->poke_fd);
	if (u->timer_fd >= 0)
		close(u->timer_fd);
	free(u);
}

void vsock_uds_set_running(struct vsock_uds *u, bool up, bool running)
{
	u->up = up;
	u->running = running;
	if (running)
		(void)eventfd_write(u->poke_fd, 1);	/* kicks seen while stopped */
}

void vsock_uds_drop(struct vsock_uds *u)
{
	u->drop_pending = true;
	(void)eventfd_write(u->poke_fd, 1);
}

uint64_t vsock_uds_nr_expired(const struct vsock_uds *u)
{
	return u->bridge ? vsock_bridge_nr_expired(u->bridge) : 0;
}

unsigned vsock_uds_nr_conns(const struct vsock_uds *u)
{
	return u->bridge && !u->drop_pending ? vsock_bridge_nr_conns(u->bridge) : 0;
}
