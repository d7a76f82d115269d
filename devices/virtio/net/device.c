/* virtio-net: features, configuration space, activation and reset, link
 * state, pause and resume, save and load, and the registry entry. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "base/byteorder.h"
#include "base/evloop.h"
#include "base/log.h"
#include "devices/virtio/net/net.h"
#include "devices/virtio/registry.h"
#include "devices/worker.h"

#define NET_OFFLOAD_FEATURES                                                           \
	(VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |         \
	 VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |     \
	 VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |     \
	 VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN) |    \
	 VIRTIO_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS))

#define NET_BASE_FEATURES                                                              \
	(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |              \
	 VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) |       \
	 VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) |   \
	 VIRTIO_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) | \
	 VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC))

/* ---- workers ---- */

static void pause_workers(struct net_dev *n)
{
	for (unsigned i = 0; i < n->max_pairs; i++)
		if (n->pairs[i].worker)
			dev_worker_pause(n->pairs[i].worker);
}

static void resume_workers(struct net_dev *n)
{
	for (unsigned i = 0; i < n->max_pairs; i++)
		if (n->pairs[i].worker)
			dev_worker_resume(n->pairs[i].worker);
}

static void kick_pair(struct net_dev *n, unsigned i)
{
	virtio_dev_queue_notify(&n->vdev, 2 * i);
	virtio_dev_queue_notify(&n->vdev, 2 * i + 1);
}

/* ---- configuration space ---- */

static void net_config_read(struct virtio_device *dev, size_t off, void *data, size_t len)
{
	struct net_dev *n = net_of(dev);
	uint8_t cfg[NET_CFG_SIZE] = { 0 };

	pthread_mutex_lock(&n->filter_lock);
	memcpy(cfg + NET_CFG_MAC, n->filter.mac, ETH_ALEN_);
	pthread_mutex_unlock(&n->filter_lock);
	wr16(cfg + NET_CFG_STATUS, net_link_up(n) ? VIRTIO_NET_S_LINK_UP : 0);
	wr16(cfg + NET_CFG_MAX_PAIRS, (uint16_t)n->max_pairs);
	wr16(cfg + NET_CFG_MTU, n->mtu);
	memcpy(data, cfg + off, len);
}

/* ---- activation and reset (vCPU threads, the transport's lock held) ---- */

/* ctrl_lock held, workers paused. */
static void apply_pairs(struct net_dev *n, unsigned pairs)
{
	/* Attach the new queues before detaching old ones, so the tap never
	 * has none. */
	for (unsigned i = 0; i < pairs && i < n->be.nr; i++)
		if (n->be.ops && n->be.ops->set_queue_enabled(&n->be, i, true))
			log_warn("net %s: tap %s: cannot attach queue %u", n->name, n->be.ifname,
				 i);
	for (unsigned i = pairs; i < n->be.nr; i++)
		if (n->be.ops && n->be.ops->set_queue_enabled(&n->be, i, false))
			log_warn("net %s: tap %s: cannot detach queue %u", n->name, n->be.ifname,
				 i);
	__atomic_store_n(&n->pairs_active, pairs, __ATOMIC_RELEASE);
}

static int net_activate(struct virtio_device *dev)
{
	struct net_dev *n = net_of(dev);
	uint64_t offloads = dev->driver_features & NET_GUEST_OFFLOADS;
	int ret = 0;

	pthread_mutex_lock(&n->ctrl_lock);
	pause_workers(n);
	n->mrg_rxbuf = virtio_dev_has_feature(dev, VIRTIO_NET_F_MRG_RXBUF);
	if (n->be.ops && n->be.ops->set_offload(&n->be, offloads))
		offloads = n->be.offload_features;	/* the tap keeps the old ones */
	__atomic_store_n(&n->guest_offloads, offloads, __ATOMIC_RELEASE);
	/* Only the first pair until the driver asks for more (5.1.6.5.5). */
	apply_pairs(n, 1);
	__atomic_store_n(&n->active, true, __ATOMIC_RELEASE);
	if (n->vhost && !n->paused)
		ret = net_vhost_start(n);
	if (ret)
		__atomic_store_n(&n->active, false, __ATOMIC_RELEASE);
	resume_workers(n);
	pthread_mutex_unlock(&n->ctrl_lock);
	if (ret)
		return ret;
	/* Buffers the driver made available before DRIVER_OK. */
	if (!n->vhost)
		kick_pair(n, 0);
	virtio_dev_queue_notify(dev, n->ctrl_q);
	return 0;
}

static void net_reset(struct virtio_device *dev)
{
	struct net_dev *n = net_of(dev);
	struct net_filter f;

	pthread_mutex_lock(&n->ctrl_lock);
	pause_workers(n);
	net_vhost_stop(n);
	__atomic_store_n(&n->active, false, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < n->max_pairs; i++) {
		struct net_pair *p = &n->pairs[i];

		net_rx_drop_stash(p, false);
		p->rx.pending = 0;
		p->tx_blocked = false;
	}
	if (n->be.ops && n->be.ops->set_offload(&n->be, 0))
		log_warn("net %s: cannot turn the tap's offloads off", n->name);
	__atomic_store_n(&n->guest_offloads, 0, __ATOMIC_RELEASE);
	apply_pairs(n, 1);
	n->mrg_rxbuf = false;
	net_filter_reset(&f, n->conf_mac);
	pthread_mutex_lock(&n->filter_lock);
	n->filter = f;
	__atomic_fetch_add(&n->filter_gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&n->filter_lock);
	resume_workers(n);
	pthread_mutex_unlock(&n->ctrl_lock);
}

static const struct virtio_device_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.config_size = NET_CFG_SIZE,
	.config_read = net_config_read,
	.activate = net_activate,
	.reset = net_reset,
};

/* ---- control-plane changes (ctrl_lock held) ---- */

int net_set_pairs(struct net_dev *n, unsigned pairs)
{
	unsigned old = __atomic_load_n(&n->pairs_active, __ATOMIC_ACQUIRE);

	if (pairs < 1 || pairs > n->max_pairs)
		return -EINVAL;
	apply_pairs(n, pairs);
	if (n->vhost) {
		if (net_vhost_set_pairs(n, pairs))
			return -EIO;
		return 0;
	}
	for (unsigned i = old; i < pairs; i++)
		kick_pair(n, i);
	return 0;
}

int net_set_guest_offloads(struct net_dev *n, uint64_t offloads)
{
	int ret = n->be.ops ? n->be.ops->set_offload(&n->be, offloads) : 0;

	if (ret)
		return ret;
	__atomic_store_n(&n->guest_offloads, offloads, __ATOMIC_RELEASE);
	return 0;
}

bool net_link_up(const struct net_dev *n)
{
	return __atomic_load_n(&n->link_up, __ATOMIC_ACQUIRE);
}

void net_set_link(struct net_dev *n, bool up)
{
	struct virtio_device *dev = &n->vdev;
	bool old;

	pthread_mutex_lock(&n->ctrl_lock);
	old = __atomic_exchange_n(&n->link_up, up, __ATOMIC_ACQ_REL);
	if (old != up) {
		__atomic_fetch_add(&dev->config_generation, 1, __ATOMIC_RELEASE);
		if (n->vhost)
			net_vhost_set_link(n, up);
		if (n->active && virtio_dev_has_feature(dev, VIRTIO_NET_F_STATUS) &&
		    dev->notify_config)
			dev->notify_config(dev);
		/* Receive drains the tap while down; look again either way. */
		if (n->active && !n->vhost)
			for (unsigned i = 0; i < __atomic_load_n(&n->pairs_active, __ATOMIC_ACQUIRE);
			     i++)
				virtio_dev_queue_notify(dev, 2 * i);
	}
	pthread_mutex_unlock(&n->ctrl_lock);
}

uint64_t net_host_features(const struct net_dev *n)
{
	return n->vdev.host_features;
}

/* ---- life cycle ---- */

static void on_ctrl_kick(void *opaque, uint32_t events)
{
	struct net_dev *n = opaque;
	eventfd_t v;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(&n->vdev, n->ctrl_q), &v);
	net_ctrl_process(n);
}

int net_dev_create(struct net_dev **out, const struct device_ctx *ctx, const struct net_opts *o,
		   struct net_backend *be)
{
	uint64_t features = NET_BASE_FEATURES;
	struct net_dev *n;
	char err[256] = "";
	int ret;

	*out = NULL;
	if (o->queues < 1 || o->queues > NET_MAX_PAIRS)
		return -EINVAL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		n->vdev.kick_fd[q] = -1;	/* destroy before virtio_dev_init */
	n->ctx = *ctx;
	n->be = *be;
	memset(be, 0, sizeof(*be));	/* the device owns the fds now */
	n->max_pairs = (unsigned)o->queues;
	n->ctrl_q = 2 * n->max_pairs;
	n->mtu = (uint16_t)o->mtu;
	snprintf(n->name, sizeof(n->name), "%s",
		 o->id ? o->id : n->be.ifname[0] ? n->be.ifname : "net0");
	if (o->has_mac)
		memcpy(n->conf_mac, o->mac_addr, ETH_ALEN_);
	else
		net_default_mac(n->be.ifname[0] ? n->be.ifname : n->name, n->conf_mac);
	n->link_up = true;
	n->pairs_active = 1;
	n->rx_filter_event = true;
	net_filter_reset(&n->filter, n->conf_mac);
	pthread_mutex_init(&n->filter_lock, NULL);
	pthread_mutex_init(&n->ctrl_lock, NULL);

	if (o->vhost != NET_VHOST_OFF) {
		ret = net_vhost_open(n, o, o->vhost == NET_VHOST_ON, err, sizeof(err));
		if (ret && o->vhost == NET_VHOST_ON) {
			virtio_create_error("vhost=on: %s", err);
			goto fail;
		}
		if (ret)
			log_info("net %s: vhost-net unavailable (%s); datapath in Ember", n->name,
				 err);
	}
	if (o->offloads)
		features |= NET_OFFLOAD_FEATURES;
	if (n->max_pairs > 1)
		features |= VIRTIO_BIT(VIRTIO_NET_F_MQ);
	if (n->mtu)
		features |= VIRTIO_BIT(VIRTIO_NET_F_MTU);
	if (n->vhost)
		features = net_vhost_mask_features(n, features);
	ret = virtio_dev_init(&n->vdev, &net_ops, ctx->mem, 2 * n->max_pairs + 1, NET_QUEUE_SIZE,
			      features);
	if (ret)
		goto fail;
	if (n->vhost)
		n->vdev.call_fd_changed = net_vhost_call_changed;
	n->ctrl_chain = malloc(sizeof(*n->ctrl_chain));
	n->ctrl_buf = malloc(NET_CTRL_MAX);
	if (!n->ctrl_chain || !n->ctrl_buf) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n->max_pairs; i++) {
		ret = net_pair_init(&n->pairs[i], n, i);
		if (ret)
			goto fail;
	}
	*out = n;
	return 0;
fail:
	net_dev_destroy(n);
	return ret;
}

int net_dev_start(struct net_dev *n)
{
	int ret;

	if (n->started)
		return 0;
	if (n->ctx.loop) {
		ret = evloop_add(n->ctx.loop, virtio_dev_kick_fd(&n->vdev, n->ctrl_q), EPOLLIN,
				 on_ctrl_kick, n);
		if (ret)
			return ret;
		n->ctrl_watched = true;
	}
	ret = net_vhost_watch(n);
	if (ret)
		goto fail;
	for (unsigned i = 0; i < n->max_pairs; i++) {
		if (!n->pairs[i].worker)
			continue;
		ret = dev_worker_start(n->pairs[i].worker);
		if (ret)
			goto fail;
	}
	n->started = true;
	return 0;
fail:
	n->started = true;
	net_dev_stop(n);
	return ret;
}

void net_dev_stop(struct net_dev *n)
{
	if (!n->started)
		return;
	for (unsigned i = 0; i < n->max_pairs; i++)
		dev_worker_stop(n->pairs[i].worker);
	pthread_mutex_lock(&n->ctrl_lock);
	net_vhost_stop(n);
	pthread_mutex_unlock(&n->ctrl_lock);
	net_vhost_unwatch(n);
	if (n->ctrl_watched)
		evloop_del(n->ctx.loop, virtio_dev_kick_fd(&n->vdev, n->ctrl_q));
	n->ctrl_watched = false;
	n->started = false;
}

void net_dev_destroy(struct net_dev *n)
{
	if (!n)
		return;
	net_dev_stop(n);
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		net_pair_fini(&n->pairs[i]);
	net_vhost_close(n);
	if (n->be.ops && n->be.ops->close)
		n->be.ops->close(&n->be);
	virtio_dev_destroy(&n->vdev);
	free(n->ctrl_chain);
	free(n->ctrl_buf);
	pthread_mutex_destroy(&n->filter_lock);
	pthread_mutex_destroy(&n->ctrl_lock);
	free(n);
}

/* VM pause (main thread): nothing in flight, no guest memory touched. */
void net_dev_pause(struct net_dev *n)
{
	pthread_mutex_lock(&n->ctrl_lock);
	n->paused = true;
	pause_workers(n);
	net_vhost_stop(n);
	pthread_mutex_unlock(&n->ctrl_lock);
}

void net_dev_resume(struct net_dev *n)
{
	bool active;
	int ret = 0;

	pthread_mutex_lock(&n->ctrl_lock);
	n->paused = false;
	active = n->active;
	if (n->vhost && active)
		ret = net_vhost_start(n);
	resume_workers(n);
	pthread_mutex_unlock(&n->ctrl_lock);
	if (ret)
		virtio_dev_set_needs_reset(&n->vdev);
	if (active)
		virtio_dev_queue_notify(&n->vdev, n->ctrl_q);	/* kicks that came while paused */
}

/* ---- save and load: what the registry's virtio state does not carry ---- */

static json_t *mac_json(const uint8_t *mac)
{
	char s[18];

	net_format_mac(mac, s);
	return json_string(s);
}

static json_t *table_json(const uint8_t (*t)[ETH_ALEN_], unsigned nr)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < nr; i++)
		json_array_append_new(a, mac_json(t[i]));
	return a;
}

static json_t *net_save(struct virtio_device *dev)
{
	struct net_dev *n = net_of(dev);
	struct net_filter f;

	net_filter_get(n, &f);
	return json_pack("{s:o, s:b, s:i, s:I, s:{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:o, s:o}}",
			 "mac", mac_json(f.mac),
			 "link", net_link_up(n),
			 "pairs", (int)__atomic_load_n(&n->pairs_active, __ATOMIC_ACQUIRE),
			 "guest-offloads", (json_int_t)__atomic_load_n(&n->guest_offloads,
								      __ATOMIC_ACQUIRE),
			 "rx-filter",
			 "promisc", f.promisc, "allmulti", f.allmulti, "alluni", f.alluni,
			 "nomulti", f.nomulti, "nouni", f.nouni, "nobcast", f.nobcast,
			 "uni-overflow", f.uni_overflow, "multi-overflow", f.multi_overflow,
			 "unicast", table_json(f.uni, f.nr_uni),
			 "multicast", table_json(f.multi, f.nr_multi));
}

static int load_table(json_t *a, uint8_t (*t)[ETH_ALEN_], unsigned *nr, const char *what,
		      char *err, size_t errlen)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a) || json_array_size(a) > NET_MAC_TABLE_MAX) {
		snprintf(err, errlen, "rx-filter.%s: an array of at most %u addresses", what,
			 NET_MAC_TABLE_MAX);
		return -EINVAL;
	}
	json_array_foreach(a, i, v) {
		if (!json_is_string(v) || net_parse_mac(json_string_value(v), t[i])) {
			snprintf(err, errlen, "rx-filter.%s[%zu]: not a MAC address", what, i);
			return -EINVAL;
		}
	}
	*nr = (unsigned)json_array_size(a);
	return 0;
}

static int net_load(struct virtio_device *dev, json_t *saved, char *err, size_t errlen)
{
	struct net_dev *n = net_of(dev);
	struct net_filter f;
	const char *mac;
	int link, pairs, bits[8];
	json_int_t offloads;
	json_t *uni, *multi;
	json_error_t jerr;

	memset(&f, 0, sizeof(f));
	if (json_unpack_ex(saved, &jerr, JSON_STRICT,
			   "{s:s, s:b, s:i, s:I, s:{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:o, s:o}}",
			   "mac", &mac, "link", &link, "pairs", &pairs, "guest-offloads", &offloads,
			   "rx-filter",
			   "promisc", &bits[0], "allmulti", &bits[1], "alluni", &bits[2],
			   "nomulti", &bits[3], "nouni", &bits[4], "nobcast", &bits[5],
			   "uni-overflow", &bits[6], "multi-overflow", &bits[7],
			   "unicast", &uni, "multicast", &multi)) {
		snprintf(err, errlen, "virtio-net state: %s", jerr.text);
		return -EINVAL;
	}
	if (net_parse_mac(mac, f.mac) || (f.mac[0] & 1)) {
		snprintf(err, errlen, "mac: '%.32s' is not a unicast MAC address", mac);
		return -EINVAL;
	}
	if (pairs < 1 || (unsigned)pairs > n->max_pairs) {
		snprintf(err, errlen, "pairs: %d not in 1..%u", pairs, n->max_pairs);
		return -EINVAL;
	}
	if ((uint64_t)offloads & ~(dev->driver_features & NET_GUEST_OFFLOADS)) {
		snprintf(err, errlen, "guest-offloads: 0x%llx not negotiated",
			 (unsigned long long)offloads);
		return -EINVAL;
	}
	if (load_table(uni, f.uni, &f.nr_uni, "unicast", err, errlen) ||
	    load_table(multi, f.multi, &f.nr_multi, "multicast", err, errlen))
		return -EINVAL;
	f.promisc = bits[0];
	f.allmulti = bits[1];
	f.alluni = bits[2];
	f.nomulti = bits[3];
	f.nouni = bits[4];
	f.nobcast = bits[5];
	f.uni_overflow = bits[6];
	f.multi_overflow = bits[7];

	pthread_mutex_lock(&n->ctrl_lock);
	pthread_mutex_lock(&n->filter_lock);
	n->filter = f;
	__atomic_fetch_add(&n->filter_gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&n->filter_lock);
	__atomic_store_n(&n->link_up, link != 0, __ATOMIC_RELEASE);
	n->mrg_rxbuf = virtio_dev_has_feature(dev, VIRTIO_NET_F_MRG_RXBUF);
	(void)net_set_guest_offloads(n, (uint64_t)offloads);
	apply_pairs(n, (unsigned)pairs);
	pthread_mutex_unlock(&n->ctrl_lock);
	return 0;
}

/* ---- the registry entry ---- */

static int net_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	const struct net_opts *o = opts;
	struct net_backend be;
	struct net_dev *n;
	char err[256];
	int ret;

	*out = NULL;
	if (o->tap)
		ret = net_tap_open(&be, o->tap, (unsigned)o->queues, err, sizeof(err));
	else
		ret = net_tap_adopt(&be, o->fd_list, o->nr_fds, err, sizeof(err));
	if (ret) {
		virtio_create_error("%s", err);
		return ret;
	}
	if (o->mtu && be.owned_name) {
		ret = net_tap_set_mtu(&be, (unsigned)o->mtu);
		if (ret)
			log_warn("--net: tap %s: cannot set MTU %u: %s", be.ifname,
				 (unsigned)o->mtu, strerror(-ret));
	}
	ret = net_dev_create(&n, ctx, o, &be);
	if (ret) {
		if (be.ops)
			be.ops->close(&be);
		return ret;
	}
	log_info("net %s: tap %s, MAC %02x:%02x:%02x:%02x:%02x:%02x, %u queue pair%s, %s datapath",
		 n->name, n->be.ifname, n->conf_mac[0], n->conf_mac[1], n->conf_mac[2],
		 n->conf_mac[3], n->conf_mac[4], n->conf_mac[5], n->max_pairs,
		 n->max_pairs > 1 ? "s" : "", n->vhost ? "vhost-net" : "userspace");
	*out = &n->vdev;
	return 0;
}

static int net_start(struct virtio_device *dev)
{
	return net_dev_start(net_of(dev));
}

static void net_stop(struct virtio_device *dev)
{
	net_dev_stop(net_of(dev));
}

static void net_destroy(struct virtio_device *dev)
{
	net_dev_destroy(net_of(dev));
}

static void net_pause(struct virtio_device *dev)
{
	net_dev_pause(net_of(dev));
}

static void net_resume(struct virtio_device *dev)
{
	net_dev_resume(net_of(dev));
}

static struct virtio_device_desc net_desc = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.pci_class = 0x020000,	/* network, Ethernet */
	.options = &net_option_table,
	.io = VIRTIO_IO_OWN,
	.create = net_create,
	.start = net_start,
	.stop = net_stop,
	.destroy = net_destroy,
	.pause = net_pause,
	.resume = net_resume,
	.save = net_save,
	.load = net_load,
	.qmp = net_qmp_commands,
};
VIRTIO_DEVICE_REGISTER(net_desc);
