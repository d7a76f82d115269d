/* --net / "net": the virtio-net options table, and MAC addresses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/net/net.h"

static const char *const vhost_modes[] = { "off", "on", "auto", NULL };

static const struct dev_option net_opts_list[] = {
	{ .name = "tap", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct net_opts, tap),
	  .help = "host tap interface, created if missing (needs CAP_NET_ADMIN)" },
	{ .name = "fd", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct net_opts, fd),
	  .help = "an open tap fd (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) passed by the caller" },
	{ .name = "fds", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct net_opts, fds),
	  .help = "open fds of a multiqueue tap, one per queue pair, as a:b:..." },
	{ .name = "mac", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct net_opts, mac),
	  .help = "MAC address (default: a stable locally administered one from the tap's name)" },
	{ .name = "queues", .type = DEV_OPT_UINT,
	  .offset = DEV_OPT_FIELD(struct net_opts, queues), .min = 1, .max = NET_MAX_PAIRS,
	  .help = "queue pairs (default: the number of fds, else 1)" },
	{ .name = "vhost", .type = DEV_OPT_ENUM, .offset = DEV_OPT_FIELD(struct net_opts, vhost),
	  .choices = vhost_modes, .def = "off",
	  .help = "kernel datapath (vhost-net): auto uses it when /dev/vhost-net opens" },
	{ .name = "vhostfds", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct net_opts, vhostfds),
	  .help = "open /dev/vhost-net fds, one per queue pair, as a:b:... (implies vhost=on)" },
	{ .name = "mtu", .type = DEV_OPT_UINT, .offset = DEV_OPT_FIELD(struct net_opts, mtu),
	  .min = 68, .max = 65535, .help = "MTU offered to the guest (VIRTIO_NET_F_MTU)" },
	{ .name = "offloads", .type = DEV_OPT_BOOL,
	  .offset = DEV_OPT_FIELD(struct net_opts, offloads), .def = "on",
	  .help = "offer checksum and TSO offloads in both directions" },
	{ .name = "id", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct net_opts, id),
	  .help = "name in QMP (set_link, query-rx-filter); default: the tap's name" },
};

int net_parse_mac(const char *s, uint8_t mac[ETH_ALEN_])
{
	unsigned v[ETH_ALEN_];
	char sep[ETH_ALEN_ - 1], end;

	if (!s || strlen(s) != 17)
		return -EINVAL;
	for (unsigned i = 0; i < 17; i++) {
		char c = s[i];
		bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

		if (i % 3 == 2 ? !(c == ':' || c == '-') : !hex)
			return -EINVAL;
	}
	if (sscanf(s, "%2x%c%2x%c%2x%c%2x%c%2x%c%2x%c", &v[0], &sep[0], &v[1], &sep[1], &v[2],
		   &sep[2], &v[3], &sep[3], &v[4], &sep[4], &v[5], &end) != 11)
		return -EINVAL;
	for (unsigned i = 1; i < ETH_ALEN_ - 1; i++)
		if (sep[i] != sep[0])
			return -EINVAL;
	for (unsigned i = 0; i < ETH_ALEN_; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

void net_format_mac(const uint8_t mac[ETH_ALEN_], char buf[18])
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

void net_default_mac(const char *name, uint8_t mac[ETH_ALEN_])
{
	uint64_t h = 0xcbf29ce484222325ULL;	/* FNV-1a */

	for (const char *p = "ember-net:"; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	for (const char *p = name ? name : ""; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	/* 0x52: locally administered, unicast (as QEMU's 52:54:00 prefix). */
	mac[0] = 0x52;
	mac[1] = 0x54;
	for (unsigned i = 2; i < ETH_ALEN_; i++)
		mac[i] = (uint8_t)(h >> (8 * (i - 2)));
}

/* "3" or "3:4:5" into list; err names the option. */
static int parse_fd_list(const char *name, const char *s, int *list, unsigned *nr, char *err,
			 size_t errlen)
{
	const char *p = s;

	*nr = 0;
	while (*p) {
		char *end;
		long v;

		if (*p < '0' || *p > '9')
			goto bad;
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || v < 0 || v > 65535 || end == p)
			goto bad;
		if (*nr >= NET_MAX_PAIRS) {
			snprintf(err, errlen, "%s: at most %u fds", name, NET_MAX_PAIRS);
			return -EINVAL;
		}
		for (unsigned i = 0; i < *nr; i++) {
			if (list[i] == (int)v) {
				snprintf(err, errlen, "%s: fd %ld given twice", name, v);
				return -EINVAL;
			}
		}
		list[(*nr)++] = (int)v;
		p = end;
		if (*p == ':') {
			p++;
			if (!*p)
				goto bad;
		} else if (*p) {
			goto bad;
		}
	}
	if (*nr)
		return 0;
bad:
	snprintf(err, errlen, "%s: expected fd numbers separated by ':', got '%.32s'", name, s);
	return -EINVAL;
}

static int net_opts_check(void *opts, char *err, size_t errlen)
{
	struct net_opts *o = opts;
	unsigned sources = !!o->tap + !!o->fd + !!o->fds;
	int ret;

	if (sources != 1) {
		snprintf(err, errlen, "%s", sources ? "give only one of tap=, fd= and fds=" :
			 "tap=NAME, fd=N or fds=a:b is required");
		return -EINVAL;
	}
	if (o->tap && (!o->tap[0] || strlen(o->tap) >= IFNAMSIZ || strchr(o->tap, '/') ||
		       strchr(o->tap, ' '))) {
		snprintf(err, errlen, "tap: '%.32s' is not an interface name (1 to %d characters)",
			 o->tap, IFNAMSIZ - 1);
		return -EINVAL;
	}
	if (o->fd) {
		ret = parse_fd_list("fd", o->fd, o->fd_list, &o->nr_fds, err, errlen);
		if (ret)
			return ret;
		if (o->nr_fds != 1) {
			snprintf(err, errlen, "fd: one fd (use fds=a:b for several queues)");
			return -EINVAL;
		}
	}
	if (o->fds) {
		ret = parse_fd_list("fds", o->fds, o->fd_list, &o->nr_fds, err, errlen);
		if (ret)
			return ret;
	}
	if (o->nr_fds) {
		if (o->queues && o->queues != o->nr_fds) {
			snprintf(err, errlen, "queues: %u fds given for %u queue pairs", o->nr_fds,
				 (unsigned)o->queues);
			return -EINVAL;
		}
		o->queues = o->nr_fds;
	}
	if (!o->queues)
		o->queues = 1;
	if (o->vhostfds) {
		ret = parse_fd_list("vhostfds", o->vhostfds, o->vhostfd_list, &o->nr_vhostfds, err,
				    errlen);
		if (ret)
			return ret;
		if (o->nr_vhostfds != o->queues) {
			snprintf(err, errlen, "vhostfds: %u fds for %u queue pairs", o->nr_vhostfds,
				 (unsigned)o->queues);
			return -EINVAL;
		}
		if (o->vhost == NET_VHOST_OFF)
			o->vhost = NET_VHOST_ON;
	}
	if (o->mac) {
		if (net_parse_mac(o->mac, o->mac_addr)) {
			snprintf(err, errlen, "mac: '%.32s' is not a MAC address (xx:xx:xx:xx:xx:xx)",
				 o->mac);
			return -EINVAL;
		}
		if (o->mac_addr[0] & 1) {
			snprintf(err, errlen, "mac: %s is a multicast address", o->mac);
			return -EINVAL;
		}
		o->has_mac = true;
	}
	if (o->id && (!o->id[0] || strlen(o->id) >= sizeof(((struct net_dev *)0)->name))) {
		snprintf(err, errlen, "id: 1 to %zu characters",
			 sizeof(((struct net_dev *)0)->name) - 1);
		return -EINVAL;
	}
	return 0;
}

struct dev_option_table net_option_table = {
	.type = "virtio-net",
	.flag = "net",
	.json_key = "net",
	.summary = "a virtio-net NIC on a host tap",
	.positional = "tap",
	.max_instances = 8,
	.size = sizeof(struct net_opts),
	.opts = net_opts_list,
	.nr_opts = DEV_OPT_COUNT(net_opts_list),
	.check = net_opts_check,
};
