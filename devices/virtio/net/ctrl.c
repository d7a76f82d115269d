/* The control queue (5.1.6.5) and the receive filter it programs. Served
 * on the main loop under ctrl_lock, which activation and reset take too.
 * Every command is copied out of the chain first and parsed from that
 * copy; a length that does not match the command is VIRTIO_NET_ERR. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/byteorder.h"
#include "base/log.h"
#include "devices/virtio/net/net.h"

void net_filter_reset(struct net_filter *f, const uint8_t mac[ETH_ALEN_])
{
	memset(f, 0, sizeof(*f));
	/* Promiscuous until the driver says otherwise, as QEMU: a driver
	 * without CTRL_RX must still receive everything. */
	f->promisc = true;
	memcpy(f->mac, mac, ETH_ALEN_);
}

static bool in_table(const uint8_t (*t)[ETH_ALEN_], unsigned n, const uint8_t *a)
{
	for (unsigned i = 0; i < n; i++)
		if (!memcmp(t[i], a, ETH_ALEN_))
			return true;
	return false;
}

bool net_filter_accept(const struct net_filter *f, const uint8_t dst[ETH_ALEN_])
{
	static const uint8_t bcast[ETH_ALEN_] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	if (f->promisc)
		return true;
	if (dst[0] & 1) {
		if (!memcmp(dst, bcast, ETH_ALEN_))
			return !f->nobcast;
		if (f->nomulti)
			return false;
		if (f->allmulti || f->multi_overflow)
			return true;
		return in_table(f->multi, f->nr_multi, dst);
	}
	if (f->nouni)
		return false;
	if (f->alluni || f->uni_overflow || !memcmp(dst, f->mac, ETH_ALEN_))
		return true;
	return in_table(f->uni, f->nr_uni, dst);
}

void net_filter_get(struct net_dev *n, struct net_filter *out)
{
	pthread_mutex_lock(&n->filter_lock);
	*out = n->filter;
	pthread_mutex_unlock(&n->filter_lock);
}

/* Publish a new filter to the receive paths, and tell QMP once. */
static void filter_commit(struct net_dev *n, const struct net_filter *f)
{
	bool event;

	pthread_mutex_lock(&n->filter_lock);
	n->filter = *f;
	__atomic_fetch_add(&n->filter_gen, 1, __ATOMIC_RELEASE);
	event = n->rx_filter_event;
	n->rx_filter_event = false;	/* re-armed by query-rx-filter, as QEMU */
	pthread_mutex_unlock(&n->filter_lock);
	if (event) {
		char path[96];

		snprintf(path, sizeof(path), "/machine/peripheral/%s/virtio-backend", n->name);
		device_emit_event(&n->ctx, "NIC_RX_FILTER_CHANGED",
				  json_pack("{s:s, s:s}", "name", n->name, "path", path));
	}
}

static uint8_t ctrl_rx(struct net_dev *n, uint8_t cmd, const uint8_t *data, size_t len)
{
	struct net_filter f;
	bool on;

	if (!virtio_dev_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_RX) || len != 1)
		return VIRTIO_NET_ERR;
	if (cmd > VIRTIO_NET_CTRL_RX_ALLMULTI &&
	    !virtio_dev_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_RX_EXTRA))
		return VIRTIO_NET_ERR;
	on = data[0] != 0;
	net_filter_get(n, &f);
	switch (cmd) {
	case VIRTIO_NET_CTRL_RX_PROMISC: f.promisc = on; break;
	case VIRTIO_NET_CTRL_RX_ALLMULTI: f.allmulti = on; break;
	case VIRTIO_NET_CTRL_RX_ALLUNI: f.alluni = on; break;
	case VIRTIO_NET_CTRL_RX_NOMULTI: f.nomulti = on; break;
	case VIRTIO_NET_CTRL_RX_NOUNI: f.nouni = on; break;
	case VIRTIO_NET_CTRL_RX_NOBCAST: f.nobcast = on; break;
	default: return VIRTIO_NET_ERR;
	}
	filter_commit(n, &f);
	return VIRTIO_NET_OK;
}

/* One table of a TABLE_SET: le32 entries, then entries * 6 bytes. With
 * `exact`, the table must end the data. Returns the bytes consumed, or 0. */
static size_t mac_table(const uint8_t *data, size_t len, bool exact, uint8_t (*t)[ETH_ALEN_],
			unsigned *nr, bool *overflow)
{
	uint64_t entries, bytes;

	if (len < 4)
		return 0;
	entries = rd32(data);
	bytes = entries * ETH_ALEN_;	/* < 2^35: no overflow in 64 bits */
	if (bytes > len - 4 || (exact && bytes != len - 4))
		return 0;
	if (entries <= NET_MAC_TABLE_MAX) {
		memcpy(t, data + 4, (size_t)bytes);
		*nr = (unsigned)entries;
		*overflow = false;
	} else {
		*nr = 0;
		*overflow = true;
	}
	return 4 + (size_t)bytes;
}

static uint8_t ctrl_mac(struct net_dev *n, uint8_t cmd, const uint8_t *data, size_t len)
{
	struct net_filter f;
	size_t used;

	net_filter_get(n, &f);
	switch (cmd) {
	case VIRTIO_NET_CTRL_MAC_TABLE_SET:
		if (!virtio_dev_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_RX))
			return VIRTIO_NET_ERR;
		used = mac_table(data, len, false, f.uni, &f.nr_uni, &f.uni_overflow);
		if (!used || !mac_table(data + used, len - used, true, f.multi, &f.nr_multi,
					&f.multi_overflow))
			return VIRTIO_NET_ERR;
		break;
	case VIRTIO_NET_CTRL_MAC_ADDR_SET:
		if (!virtio_dev_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_MAC_ADDR) ||
		    len != ETH_ALEN_)
			return VIRTIO_NET_ERR;
		memcpy(f.mac, data, ETH_ALEN_);
		break;
	default:
		return VIRTIO_NET_ERR;
	}
	filter_commit(n, &f);
	return VIRTIO_NET_OK;
}

static uint8_t ctrl_mq(struct net_dev *n, uint8_t cmd, const uint8_t *data, size_t len)
{
	unsigned pairs;

	if (!virtio_dev_has_feature(&n->vdev, VIRTIO_NET_F_MQ) ||
	    cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || len != 2)
		return VIRTIO_NET_ERR;
	pairs = rd16(data);
	if (pairs < 1 || pairs > n->max_pairs)
		return VIRTIO_NET_ERR;
	return net_set_pairs(n, pairs) ? VIRTIO_NET_ERR : VIRTIO_NET_OK;
}

static uint8_t ctrl_offloads(struct net_dev *n, uint8_t cmd, const uint8_t *data, size_t len)
{
	uint64_t want, allowed;

	if (!virtio_dev_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) ||
	    cmd != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET || len != 8)
		return VIRTIO_NET_ERR;
	want = rd64(data);
	allowed = n->vdev.driver_features & NET_GUEST_OFFLOADS;
	if (want & ~allowed)
		return VIRTIO_NET_ERR;
	return net_set_guest_offloads(n, want) ? VIRTIO_NET_ERR : VIRTIO_NET_OK;
}

uint8_t net_ctrl_exec(struct net_dev *n, uint8_t class, uint8_t cmd, const uint8_t *data,
		      size_t len)
{
	switch (class) {
	case VIRTIO_NET_CTRL_RX:
		return ctrl_rx(n, cmd, data, len);
	case VIRTIO_NET_CTRL_MAC:
		return ctrl_mac(n, cmd, data, len);
	case VIRTIO_NET_CTRL_MQ:
		return ctrl_mq(n, cmd, data, len);
	case VIRTIO_NET_CTRL_GUEST_OFFLOADS:
		return ctrl_offloads(n, cmd, data, len);
	default:		/* VLAN, ANNOUNCE, RSS: not offered */
		return VIRTIO_NET_ERR;
	}
}

/* ctrl_lock held, active, not paused. */
static void ctrl_serve(struct net_dev *n)
{
	struct virtqueue *vq = virtio_dev_queue(&n->vdev, n->ctrl_q);
	struct vq_chain *c = n->ctrl_chain;
	unsigned budget = NET_BUDGET;
	bool pushed = false;

	for (;;) {
		uint8_t hdr[2], ack;
		size_t len;
		int ret;

		if (!budget--) {
			virtio_dev_queue_notify(&n->vdev, n->ctrl_q);	/* come back */
			break;
		}
		ret = virtqueue_pop(vq, c);
		if (ret == 0) {
			/* Ask for the next kick (with EVENT_IDX: avail_event). */
			if (virtqueue_enable_notify(vq))
				continue;
			break;
		}
		if (ret < 0) {
			virtio_dev_queue_error(&n->vdev, n->ctrl_q, ret);
			return;
		}
		/* class and command readable, the ack writable (5.1.6.5). */
		if (c->out_len < sizeof(hdr) || c->in_len < 1) {
			virtqueue_push(vq, c->head, 0);
			virtqueue_mark_broken(vq, -EINVAL);
			virtio_dev_queue_error(&n->vdev, n->ctrl_q, -EINVAL);
			return;
		}
		(void)vq_reader_read(c, hdr, sizeof(hdr));
		len = vq_reader_remaining(c);
		if (len > NET_CTRL_MAX - sizeof(hdr))
			ack = VIRTIO_NET_ERR;
		else
			ack = net_ctrl_exec(n, hdr[0], hdr[1], n->ctrl_buf,
					    vq_reader_read(c, n->ctrl_buf, len));
		(void)vq_writer_write(c, &ack, 1);
		virtqueue_push(vq, c->head, 1);
		pushed = true;
	}
	if (pushed)
		virtio_dev_notify_if_needed(&n->vdev, n->ctrl_q);
}

void net_ctrl_process(struct net_dev *n)
{
	struct virtqueue *vq;

	pthread_mutex_lock(&n->ctrl_lock);
	vq = virtio_dev_queue(&n->vdev, n->ctrl_q);
	if (n->active && !n->paused && vq && vq->ready && !vq->error)
		ctrl_serve(n);
	pthread_mutex_unlock(&n->ctrl_lock);
}
