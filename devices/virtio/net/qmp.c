/* virtio-net's QMP commands: set_link and query-rx-filter as QEMU has them,
 * and x-query-net (alias query-network) for what QEMU spreads over
 * x-query-virtio and info network: MAC, link, queues, vhost and per-queue
 * counters. The state handed in is the registry's struct virtio_set. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "devices/virtio/net/net.h"
#include "devices/virtio/registry.h"

static struct net_dev *find(struct virtio_set *s, const char *name)
{
	for (unsigned i = 0; i < virtio_set_count(s); i++) {
		struct net_dev *n = net_of(virtio_set_device(s, i));

		if (!strcmp(n->name, name))
			return n;
	}
	return NULL;
}

static int qmp_set_link(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	const char *name;
	int up;
	struct net_dev *n;

	if (!args || json_unpack(args, "{s:s, s:b}", "name", &name, "up", &up)) {
		snprintf(err, errlen, "set_link: expected {\"name\": string, \"up\": bool}");
		return -EINVAL;
	}
	n = find(state, name);
	if (!n) {
		snprintf(err, errlen, "Device '%.64s' not found", name);
		return -ENODEV;
	}
	net_set_link(n, up != 0);
	*ret = NULL;
	return 0;
}

static json_t *macs(const uint8_t (*t)[ETH_ALEN_], unsigned nr)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < nr; i++) {
		char s[18];

		net_format_mac(t[i], s);
		json_array_append_new(a, json_string(s));
	}
	return a;
}

static const char *rx_state(bool none, bool all)
{
	return none ? "none" : all ? "all" : "normal";
}

static json_t *rx_filter_info(struct net_dev *n)
{
	struct net_filter f;
	char mac[18];

	pthread_mutex_lock(&n->filter_lock);
	f = n->filter;
	n->rx_filter_event = true;	/* the next change is reported again */
	pthread_mutex_unlock(&n->filter_lock);
	net_format_mac(f.mac, mac);
	return json_pack("{s:s, s:b, s:s, s:s, s:s, s:b, s:b, s:b, s:s, s:[], s:o, s:o}",
			 "name", n->name,
			 "promiscuous", f.promisc,
			 "multicast", rx_state(f.nomulti, f.allmulti),
			 "unicast", rx_state(f.nouni, f.alluni),
			 "vlan", "all",	/* CTRL_VLAN is not offered: no VLAN filter */
			 "broadcast-allowed", !f.nobcast,
			 "multicast-overflow", f.multi_overflow,
			 "unicast-overflow", f.uni_overflow,
			 "main-mac", mac,
			 "vlan-table",
			 "unicast-table", macs(f.uni, f.nr_uni),
			 "multicast-table", macs(f.multi, f.nr_multi));
}

static int qmp_query_rx_filter(void *state, json_t *args, json_t **ret, char *err,
			       size_t errlen)
{
	struct virtio_set *s = state;
	const char *name = NULL;
	json_t *list;

	if (args && json_unpack(args, "{s?s}", "name", &name)) {
		snprintf(err, errlen, "query-rx-filter: 'name' must be a string");
		return -EINVAL;
	}
	if (name && !find(s, name)) {
		snprintf(err, errlen, "Invalid net client name: %.64s", name);
		return -ENODEV;
	}
	list = json_array();
	if (!list)
		return -ENOMEM;
	for (unsigned i = 0; i < virtio_set_count(s); i++) {
		struct net_dev *n = net_of(virtio_set_device(s, i));

		if (!name || !strcmp(n->name, name))
			json_array_append_new(list, rx_filter_info(n));
	}
	*ret = list;
	return 0;
}

static uint64_t ld(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static json_t *queue_stats(struct net_dev *n)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < n->max_pairs; i++) {
		const struct net_pair *p = &n->pairs[i];

		json_array_append_new(a, json_pack(
			"{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "queue", (int)i,
			"rx-packets", (json_int_t)ld(&p->rx_stats.packets),
			"rx-bytes", (json_int_t)ld(&p->rx_stats.bytes),
			"rx-dropped", (json_int_t)ld(&p->rx_stats.dropped),
			"rx-errors", (json_int_t)ld(&p->rx_stats.errors),
			"tx-packets", (json_int_t)ld(&p->tx_stats.packets),
			"tx-bytes", (json_int_t)ld(&p->tx_stats.bytes),
			"tx-dropped", (json_int_t)ld(&p->tx_stats.dropped),
			"tx-errors", (json_int_t)ld(&p->tx_stats.errors)));
	}
	return a;
}

/* The tap's own counters (host view: tx is towards the guest), which
 * are the only ones with vhost. Missing files read as 0. */
static json_t *host_counters(const char *ifname)
{
	static const char *const names[] = { "rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
					     "rx_dropped", "tx_dropped" };
	json_t *o = json_object();

	for (size_t i = 0; o && ifname[0] && i < sizeof(names) / sizeof(names[0]); i++) {
		char path[128], key[16];
		unsigned long long v = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname, names[i]);
		f = fopen(path, "re");
		if (f) {
			if (fscanf(f, "%llu", &v) != 1)
				v = 0;
			fclose(f);
		}
		snprintf(key, sizeof(key), "%s", names[i]);
		key[2] = '-';
		json_object_set_new(o, key, json_integer((json_int_t)v));
	}
	return o;
}

static json_t *net_info(struct net_dev *n)
{
	struct net_filter f;
	char mac[18], perm[18], feat[20], host[20];
	json_t *o;

	net_filter_get(n, &f);
	net_format_mac(f.mac, mac);
	net_format_mac(n->conf_mac, perm);
	snprintf(feat, sizeof(feat), "0x%016" PRIx64, n->vdev.driver_features);
	snprintf(host, sizeof(host), "0x%016" PRIx64, n->vdev.host_features);
	o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:i, s:i, s:i, s:s, s:s, s:o, s:o}",
			 "name", n->name,
			 "tap", n->be.ifname,
			 "mac", mac,
			 "permanent-mac", perm,
			 "link-up", net_link_up(n),
			 "driver-ok", __atomic_load_n(&n->active, __ATOMIC_ACQUIRE),
			 "vhost", n->vhost != NULL,
			 "queues", (int)n->max_pairs,
			 "active-queues", (int)__atomic_load_n(&n->pairs_active, __ATOMIC_ACQUIRE),
			 "mtu", (int)n->mtu,
			 "features", feat,
			 "host-features", host,
			 "queue-stats", queue_stats(n),
			 "host-interface", host_counters(n->be.ifname));
	/* With vhost the per-queue counters stay 0 (the kernel moves the
	 * frames); this says how many interrupts still needed Ember. */
	if (o && n->vhost)
		json_object_set_new(o, "vhost-fallback-interrupts",
				    json_integer((json_int_t)net_vhost_fallback_signals(n)));
	return o;
}

static int qmp_query_net(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	struct virtio_set *s = state;
	const char *name = NULL;
	json_t *list;

	if (args && json_unpack(args, "{s?s}", "name", &name)) {
		snprintf(err, errlen, "'name' must be a string");
		return -EINVAL;
	}
	if (name && !find(s, name)) {
		snprintf(err, errlen, "Device '%.64s' not found", name);
		return -ENODEV;
	}
	list = json_array();
	if (!list)
		return -ENOMEM;
	for (unsigned i = 0; i < virtio_set_count(s); i++) {
		struct net_dev *n = net_of(virtio_set_device(s, i));

		if (!name || !strcmp(n->name, name))
			json_array_append_new(list, net_info(n));
	}
	*ret = list;
	return 0;
}

const struct device_qmp_command net_qmp_commands[] = {
	{ .name = "set_link", .fn = qmp_set_link },
	{ .name = "query-rx-filter", .fn = qmp_query_rx_filter },
	{ .name = "x-query-net", .fn = qmp_query_net },
	{ .name = "query-network", .fn = qmp_query_net },
	{ .name = NULL },
};
