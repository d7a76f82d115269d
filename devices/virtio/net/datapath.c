/* The userspace datapath: one worker per queue pair, serving its receive
 * queue, transmit queue and backend fd.
 *
 * Receive: chains are popped ahead of need into a stash (in ring order).
 * When the stash covers the largest frame the guest may get, the frame is
 * read from the tap straight into the chains' writable segments; otherwise
 * it goes to a bounce buffer and waits there for buffers. With MRG_RXBUF a
 * frame spans as many chains as it needs, all published with one used
 * index update. The tap fd is edge-triggered: the loop reads until EAGAIN,
 * runs out of buffers (then it asks for a kick), or spends its budget (then
 * it kicks itself to come back after the transmit side had its turn).
 *
 * Transmit: the guest's header is copied out and checked, and the frame
 * is written from guest memory with the checked copy in front. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "devices/virtio/net/net.h"
#include "devices/worker.h"

#define RXQ(p)	(2 * (p)->index)
#define TXQ(p)	(2 * (p)->index + 1)
#define TX_IOV_MAX	1024	/* the kernel's UIO_MAXIOV */

static struct ratelimit net_rl = RATELIMIT_INIT(5000, 10);
static pthread_mutex_t net_rl_lock = PTHREAD_MUTEX_INITIALIZER;

static bool log_allow(void)
{
	bool ok;

	pthread_mutex_lock(&net_rl_lock);
	ok = ratelimit_allow(&net_rl);
	pthread_mutex_unlock(&net_rl_lock);
	return ok;
}

static void stat_add(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static bool pair_enabled(const struct net_pair *p)
{
	return p->index < __atomic_load_n(&p->net->pairs_active, __ATOMIC_ACQUIRE);
}

static bool link_is_up(const struct net_dev *n)
{
	return __atomic_load_n(&n->link_up, __ATOMIC_ACQUIRE);
}

static uint64_t rx_features(const struct net_dev *n)
{
	/* The negotiated set with the receive offloads the driver currently
	 * wants (CTRL_GUEST_OFFLOADS may narrow them). */
	return (n->vdev.driver_features & ~NET_GUEST_OFFLOADS) |
	       __atomic_load_n(&n->guest_offloads, __ATOMIC_ACQUIRE);
}

size_t net_rx_need(const struct net_dev *n)
{
	uint64_t gso = VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) |
		       VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO);
	size_t mtu = n->mtu > 1500 ? n->mtu : 1500;

	if (rx_features(n) & gso)
		return VIRTIO_NET_HDR_LEN + NET_FRAME_MAX;
	return VIRTIO_NET_HDR_LEN + ETH_HLEN_ + 4 /* VLAN tag */ + mtu;
}

/* Copy between a flat buffer and [off, off+len) of an iovec sequence. */
static size_t iov_copy(const struct iovec *iov, unsigned niov, size_t off, void *buf, size_t len,
		       bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < niov && done < len; i++) {
		size_t seg = iov[i].iov_len, n;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		n = seg - off < len - done ? seg - off : len - done;
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + off, (uint8_t *)buf + done, n);
		else
			memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

/* ---- receive ---- */

/* Top up the stash: until it covers need bytes (MRG_RXBUF) or holds one
 * chain. Returns 0, or -errno when the guest broke the queue. */
static int rx_fill(struct net_pair *p, struct virtqueue *vq, size_t need, bool mrg)
{
	struct net_rx *rx = &p->rx;
	struct vq_chain *c = rx->chain;

	while (rx->bytes < need && (mrg || rx->nbufs == 0) &&
	       rx->nbufs < sizeof(rx->bufs) / sizeof(rx->bufs[0])) {
		int ret = virtqueue_pop(vq, c);

		if (ret == 0)
			return 0;
		if (ret < 0) {
			virtio_dev_queue_error(&p->net->vdev, RXQ(p), ret);
			return ret;
		}
		/* Every receive buffer must hold at least the header
		 * (5.1.6.3.1); device-readable parts are ignored. */
		if (c->in_len < VIRTIO_NET_HDR_LEN) {
			virtqueue_push(vq, c->head, 0);
			virtqueue_mark_broken(vq, -EINVAL);
			virtio_dev_queue_error(&p->net->vdev, RXQ(p), -EINVAL);
			return -EINVAL;
		}
		if (rx->niov + c->nr_in > sizeof(rx->iov) / sizeof(rx->iov[0])) {
			virtqueue_unpop(vq, 1);
			return 0;
		}
		memcpy(&rx->iov[rx->niov], &c->iov[c->nr_out], c->nr_in * sizeof(struct iovec));
		rx->bufs[rx->nbufs++] = (struct net_rx_buf){
			.head = c->head, .len = c->in_len, .niov = c->nr_in,
		};
		rx->niov += c->nr_in;
		rx->bytes += c->in_len;
	}
	return 0;
}

void net_rx_drop_stash(struct net_pair *p, bool unpop)
{
	struct net_rx *rx = &p->rx;
	struct virtqueue *vq = virtio_dev_queue(&p->net->vdev, RXQ(p));

	if (unpop && rx->nbufs && vq && vq->ready)
		virtqueue_unpop(vq, (uint16_t)rx->nbufs);
	rx->nbufs = rx->niov = 0;
	rx->bytes = 0;
}

/* The frame of len bytes (header included) sits at the start of the
 * stash: check, fix its header, hand the chains it covers to the guest.
 * Returns true if it was delivered. */
static bool rx_deliver(struct net_pair *p, struct virtqueue *vq, size_t len)
{
	struct net_rx *rx = &p->rx;
	struct virtq_used_elem elems[sizeof(rx->bufs) / sizeof(rx->bufs[0])];
	uint8_t hdr[VIRTIO_NET_HDR_LEN + ETH_ALEN_];
	unsigned k = 0, iov_used = 0;
	size_t left = len;
	uint64_t consumed = 0;

	if (len < VIRTIO_NET_HDR_LEN + ETH_HLEN_ || len > rx->bytes) {
		stat_add(&p->rx_stats.errors, 1);
		return false;
	}
	(void)iov_copy(rx->iov, rx->niov, 0, hdr, sizeof(hdr), false);
	if (!net_filter_accept(&rx->filter, hdr + VIRTIO_NET_HDR_LEN)) {
		stat_add(&p->rx_stats.dropped, 1);
		return false;
	}
	while (left) {
		uint32_t take = rx->bufs[k].len < left ? rx->bufs[k].len : (uint32_t)left;

		elems[k] = (struct virtq_used_elem){ .id = rx->bufs[k].head, .len = take };
		left -= take;
		consumed += rx->bufs[k].len;
		iov_used += rx->bufs[k].niov;
		k++;
	}
	if (net_rx_hdr_fixup(hdr, rx_features(p->net), (uint16_t)k)) {
		stat_add(&p->rx_stats.dropped, 1);
		return false;
	}
	(void)iov_copy(rx->iov, rx->niov, 0, hdr, VIRTIO_NET_HDR_LEN, true);
	virtqueue_push_batch(vq, elems, k);
	rx->nbufs -= k;
	memmove(rx->bufs, rx->bufs + k, rx->nbufs * sizeof(rx->bufs[0]));
	rx->niov -= iov_used;
	memmove(rx->iov, rx->iov + iov_used, rx->niov * sizeof(rx->iov[0]));
	rx->bytes -= consumed;
	stat_add(&p->rx_stats.packets, 1);
	stat_add(&p->rx_stats.bytes, len - VIRTIO_NET_HDR_LEN);
	return true;
}

/* A read from the backend failed: true if the loop should stop. */
static bool rx_read_error(struct net_pair *p, int err)
{
	struct net_dev *n = p->net;

	switch (err) {
	case EAGAIN:
		return true;
	case EINTR:
		return false;
	case EBADFD:
	case EBADF:
	case ENXIO:
		if (!pair_enabled(p))
			return true;	/* its tap queue is detached (MQ) */
		if (!p->gone)
			log_err("net %s: tap %s queue %u: %s: the tap is gone (interface "
				"deleted?); this queue pair stops", n->name, n->be.ifname,
				p->index, strerror(err));
		p->gone = true;
		return true;
	default:
		stat_add(&p->rx_stats.errors, 1);
		if (log_allow())
			log_warn("net %s: queue %u: read: %s", n->name, p->index, strerror(err));
		return err != EFAULT && err != EINVAL;
	}
}

static void rx_refresh_filter(struct net_pair *p)
{
	struct net_dev *n = p->net;
	unsigned gen = __atomic_load_n(&n->filter_gen, __ATOMIC_ACQUIRE);

	if (gen == p->rx.filter_gen)
		return;
	pthread_mutex_lock(&n->filter_lock);
	p->rx.filter = n->filter;
	p->rx.filter_gen = n->filter_gen;
	pthread_mutex_unlock(&n->filter_lock);
}

void net_rx_process(struct net_pair *p)
{
	struct net_dev *n = p->net;
	struct net_rx *rx = &p->rx;
	struct virtqueue *vq = virtio_dev_queue(&n->vdev, RXQ(p));
	size_t need, cap = VIRTIO_NET_HDR_LEN + NET_FRAME_MAX;
	bool mrg, pushed = false;
	unsigned budget = NET_BUDGET;
	ssize_t got;

	/* Feature and activation state change only while this worker is
	 * paused; read them after the activation check. */
	if (!n->active || p->gone || p->fd < 0 || !vq || !vq->ready || vq->error ||
	    !pair_enabled(p))
		return;
	need = net_rx_need(n);
	mrg = n->mrg_rxbuf;
	rx_refresh_filter(p);
	virtqueue_disable_notify(vq);
	for (;;) {
		if (!budget--) {
			virtio_dev_queue_notify(&n->vdev, RXQ(p));	/* come back */
			break;
		}
		if (!link_is_up(n)) {
			/* Link down: frames are lost, as on a cable pulled out. */
			rx->pending = 0;
			got = read(p->fd, rx->bounce, cap);
			if (got < 0) {
				if (rx_read_error(p, errno))
					break;
				continue;
			}
			stat_add(&p->rx_stats.dropped, 1);
			continue;
		}
		if (rx_fill(p, vq, need, mrg))
			break;
		if (!rx->pending) {
			if (rx->nbufs && rx->bytes >= need) {
				got = readv(p->fd, rx->iov, (int)rx->niov);
				if (got < 0) {
					if (rx_read_error(p, errno))
						break;
					continue;
				}
				/* A longer frame than the buffers: truncated by the
				 * tap (it reports the full length), so dropped. */
				pushed |= rx_deliver(p, vq, (size_t)got);
				continue;
			}
			got = read(p->fd, rx->bounce, cap);
			if (got < 0) {
				if (rx_read_error(p, errno))
					break;
				continue;
			}
			if ((size_t)got < VIRTIO_NET_HDR_LEN + ETH_HLEN_ || (size_t)got > cap) {
				stat_add(&p->rx_stats.errors, 1);
				continue;
			}
			if (!net_filter_accept(&rx->filter, rx->bounce + VIRTIO_NET_HDR_LEN)) {
				stat_add(&p->rx_stats.dropped, 1);
				continue;
			}
			rx->pending = (size_t)got;
		}
		/* A frame waits in the bounce buffer for guest buffers. */
		if (!mrg && rx->nbufs && rx->bufs[0].len < rx->pending) {
			stat_add(&p->rx_stats.dropped, 1);	/* the guest's buffer is too small */
			rx->pending = 0;
			continue;
		}
		if (rx->bytes < rx->pending) {
			if (virtqueue_enable_notify(vq))
				continue;	/* buffers came meanwhile */
			break;			/* the guest kicks when it adds some */
		}
		(void)iov_copy(rx->iov, rx->niov, 0, rx->bounce, rx->pending, true);
		pushed |= rx_deliver(p, vq, rx->pending);
		rx->pending = 0;
	}
	if (pushed)
		virtio_dev_notify_if_needed(&n->vdev, RXQ(p));
}

/* ---- transmit ---- */

static void tx_drop(struct net_pair *p, bool error)
{
	stat_add(error ? &p->tx_stats.errors : &p->tx_stats.dropped, 1);
}

/* Send the frame after the header in c. Returns 0, or -EAGAIN to retry
 * the chain later. */
static int tx_send(struct net_pair *p, struct vq_chain *c, uint8_t *hdr, size_t frame_len)
{
	struct iovec iov[TX_IOV_MAX];
	int cnt;
	ssize_t w;

	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = VIRTIO_NET_HDR_LEN };
	cnt = vq_reader_iov(c, frame_len, iov + 1, TX_IOV_MAX - 1);
	if (cnt == -E2BIG) {
		/* More segments than writev takes: gather. */
		iov[1] = (struct iovec){ .iov_base = p->tx_bounce,
					 .iov_len = vq_reader_read(c, p->tx_bounce, frame_len) };
		cnt = 1;
	} else if (cnt < 0) {
		tx_drop(p, true);
		return 0;
	}
	do
		w = writev(p->fd, iov, cnt + 1);
	while (w < 0 && errno == EINTR);
	if (w >= 0) {
		stat_add(&p->tx_stats.packets, 1);
		stat_add(&p->tx_stats.bytes, frame_len);
		return 0;
	}
	switch (errno) {
	case EAGAIN:
		return -EAGAIN;
	case EIO:		/* the tap is down (not IFF_UP) */
		tx_drop(p, false);
		return 0;
	case EBADFD:
	case EBADF:
		if (pair_enabled(p) && !p->gone) {
			log_err("net %s: tap %s queue %u: %s: the tap is gone (interface "
				"deleted?); this queue pair stops", p->net->name,
				p->net->be.ifname, p->index, strerror(errno));
			p->gone = true;
		}
		tx_drop(p, true);
		return 0;
	default:
		if (log_allow())
			log_warn("net %s: queue %u: write: %s", p->net->name, p->index,
				 strerror(errno));
		tx_drop(p, true);
		return 0;
	}
}

void net_tx_process(struct net_pair *p)
{
	struct net_dev *n = p->net;
	struct virtqueue *vq = virtio_dev_queue(&n->vdev, TXQ(p));
	struct vq_chain *c = p->tx_chain;
	uint64_t features;
	unsigned budget = NET_BUDGET;
	bool pushed = false;

	if (!n->active || p->tx_blocked || !vq || !vq->ready || vq->error)
		return;
	features = n->vdev.driver_features;
	for (;;) {
		virtqueue_disable_notify(vq);
		while (budget) {
			uint8_t hdr[VIRTIO_NET_HDR_LEN];
			size_t frame_len;
			int ret = virtqueue_pop(vq, c);

			if (ret == 0)
				break;
			if (ret < 0) {
				virtio_dev_queue_error(&n->vdev, TXQ(p), ret);
				goto out;
			}
			budget--;
			/* A chain without a whole header is a broken driver
			 * (5.1.6.2), not a bad frame. */
			if (c->out_len < VIRTIO_NET_HDR_LEN) {
				virtqueue_push(vq, c->head, 0);
				virtqueue_mark_broken(vq, -EINVAL);
				virtio_dev_queue_error(&n->vdev, TXQ(p), -EINVAL);
				goto out;
			}
			(void)vq_reader_read(c, hdr, sizeof(hdr));
			frame_len = c->out_len - VIRTIO_NET_HDR_LEN;
			if (!link_is_up(n) || p->gone || p->fd < 0 || !pair_enabled(p)) {
				tx_drop(p, false);
			} else if (net_tx_hdr_check(hdr, frame_len, features)) {
				if (log_allow())
					log_warn("net %s: queue %u: bad transmit header (flags 0x%x "
						 "gso 0x%x, %zu-byte frame); frame dropped",
						 n->name, p->index, hdr[VNET_HDR_FLAGS],
						 hdr[VNET_HDR_GSO_TYPE], frame_len);
				tx_drop(p, true);
			} else if (tx_send(p, c, hdr, frame_len) == -EAGAIN) {
				virtqueue_unpop(vq, 1);
				p->tx_blocked = true;	/* EPOLLOUT resumes */
				goto out;
			}
			virtqueue_push(vq, c->head, 0);
			pushed = true;
		}
		if (!budget) {
			virtio_dev_queue_notify(&n->vdev, TXQ(p));	/* come back */
			break;
		}
		if (!virtqueue_enable_notify(vq))
			break;
	}
out:
	if (pushed)
		virtio_dev_notify_if_needed(&n->vdev, TXQ(p));
}

/* ---- the worker ---- */

static void on_rx_kick(void *opaque, uint32_t events)
{
	struct net_pair *p = opaque;
	eventfd_t v;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(&p->net->vdev, RXQ(p)), &v);
	net_rx_process(p);
}

static void on_tx_kick(void *opaque, uint32_t events)
{
	struct net_pair *p = opaque;
	eventfd_t v;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(&p->net->vdev, TXQ(p)), &v);
	net_tx_process(p);
}

static void on_backend(void *opaque, uint32_t events)
{
	struct net_pair *p = opaque;

	if ((events & EPOLLOUT) && p->tx_blocked) {
		p->tx_blocked = false;
		net_tx_process(p);
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		net_rx_process(p);
}

static void pair_quiesce(void *opaque, bool final)
{
	(void)final;
	/* Nothing is in flight between handler calls; receive buffers taken
	 * ahead go back to the ring so saved indices tell the truth. */
	net_rx_drop_stash(opaque, true);
}

static void pair_resumed(void *opaque)
{
	/* Edges and kicks may have come while parked. */
	net_tx_process(opaque);
	net_rx_process(opaque);
}

static const struct dev_worker_ops pair_worker_ops = {
	.quiesce = pair_quiesce,
	.resumed = pair_resumed,
};

int net_pair_init(struct net_pair *p, struct net_dev *n, unsigned index)
{
	char name[16];
	int ret;

	memset(p, 0, sizeof(*p));
	p->net = n;
	p->index = index;
	p->fd = index < n->be.nr ? n->be.fds[index] : -1;
	p->rx.filter_gen = ~0u;
	p->rx.chain = malloc(sizeof(*p->rx.chain));
	p->tx_chain = malloc(sizeof(*p->tx_chain));
	p->rx.bounce = malloc(VIRTIO_NET_HDR_LEN + NET_FRAME_MAX);
	p->tx_bounce = malloc(NET_FRAME_MAX);
	if (!p->rx.chain || !p->tx_chain || !p->rx.bounce || !p->tx_bounce)
		return -ENOMEM;
	if (n->vhost)
		return 0;	/* the kernel serves the queues */
	snprintf(name, sizeof(name), "net-%.6s-q%u", n->name, index);
	ret = dev_worker_create(&p->worker, name, &pair_worker_ops, p);
	if (ret)
		return ret;
	if ((ret = dev_worker_add_fd(p->worker, virtio_dev_kick_fd(&n->vdev, RXQ(p)), EPOLLIN,
				     on_rx_kick, p)) ||
	    (ret = dev_worker_add_fd(p->worker, virtio_dev_kick_fd(&n->vdev, TXQ(p)), EPOLLIN,
				     on_tx_kick, p)))
		return ret;
	if (p->fd >= 0)
		ret = dev_worker_add_fd(p->worker, p->fd, EPOLLIN | EPOLLOUT | EPOLLET, on_backend,
					p);
	return ret;
}

void net_pair_fini(struct net_pair *p)
{
	dev_worker_destroy(p->worker);
	p->worker = NULL;
	free(p->rx.chain);
	free(p->tx_chain);
	free(p->rx.bounce);
	free(p->tx_bounce);
	p->rx.chain = p->tx_chain = NULL;
	p->rx.bounce = p->tx_bounce = NULL;
}
