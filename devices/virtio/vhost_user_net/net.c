/* vhost-user-net: a virtio-net device whose rx and tx rings a backend
 * process serves (DPDK's vhost PMD, a software switch, ...).
 *
 * --vhost-user-net socket=PATH[,mac=XX:XX:XX:XX:XX:XX][,reconnect=MS]
 *
 * The config space is Ember's: the MAC, link up, one queue pair. The
 * backend serves the data rings and whichever offloads it offers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/byteorder.h"
#include "devices/vhost/vhost_user_dev.h"
#include "devices/virtio/net/net.h"
#include "devices/virtio/registry.h"

#define VU_NET_CONFIG_SIZE	10	/* mac, status, max_virtqueue_pairs */
#define VU_NET_S_LINK_UP	1

struct vu_net_opts {
	struct vhost_user_common_opts common;	/* socket=, reconnect= */
	char *mac;
	uint8_t mac_addr[ETH_ALEN_];	/* from mac=, or derived from the socket path */
};

static void vu_net_fill_config(struct vhost_user_dev *d, uint8_t *cfg)
{
	const struct vu_net_opts *o = vhost_user_dev_priv(d);

	memcpy(cfg, o->mac_addr, ETH_ALEN_);
	wr16(cfg + 6, VU_NET_S_LINK_UP);
	wr16(cfg + 8, (uint16_t)vhost_user_dev_queues(d));
}

static const struct virtio_device_ops vu_net_ops = {
	.name = "vhost-user-net",
	.device_id = VIRTIO_ID_NET,
	.config_size = VU_NET_CONFIG_SIZE,
	.config_read = vhost_user_dev_config_read,
	.activate = vhost_user_dev_activate,
	.reset = vhost_user_dev_reset,
};

static const struct vhost_user_dev_type vu_net_type = {
	.kind = "vhost-user-net",
	.ops = &vu_net_ops,
	/* Offloads as the backend offers them; no control queue (one pair). */
	.backend_features = VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			    VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
			    VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) |
			    VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO) |
			    VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |
			    VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN) | VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO) |
			    VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF),
	.own_features = VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS),
	.rings_per_queue = 2,
	.fill_config = vu_net_fill_config,
};

static const struct dev_option vu_net_opt_list[] = {
	VHOST_USER_COMMON_OPTIONS(struct vu_net_opts),
	{ .name = "mac", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct vu_net_opts, mac),
	  .help = "the guest's MAC address (default: derived from the socket path)" },
};

static int vu_net_check(void *opts, char *err, size_t errlen)
{
	struct vu_net_opts *o = opts;
	int ret = vhost_user_common_check(&o->common, err, errlen);

	if (ret)
		return ret;
	if (!o->mac) {
		net_default_mac(o->common.socket, o->mac_addr);
	} else if (net_parse_mac(o->mac, o->mac_addr)) {
		snprintf(err, errlen, "mac: '%.32s' is not a MAC address (xx:xx:xx:xx:xx:xx)",
			 o->mac);
		return -EINVAL;
	} else if (o->mac_addr[0] & 1) {
		snprintf(err, errlen, "mac: %s is a multicast address", o->mac);
		return -EINVAL;
	}
	return 0;
}

static struct dev_option_table vu_net_options = {
	.type = "vhost-user-net",
	.flag = "vhost-user-net",
	.json_key = "vhost-user-net",
	.summary = "a virtio-net device served by a vhost-user backend (DPDK, a switch)",
	.positional = "socket",
	.max_instances = 8,
	.size = sizeof(struct vu_net_opts),
	.opts = vu_net_opt_list,
	.nr_opts = DEV_OPT_COUNT(vu_net_opt_list),
	.check = vu_net_check,
};

static int vu_net_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	const struct vu_net_opts *o = opts;

	/* The options live until destroy: the config reads the MAC there. */
	return vhost_user_dev_create_virtio(ctx, &vu_net_type, &o->common, 1, (void *)o, out);
}

static struct virtio_device_desc vu_net_desc = {
	.name = "vhost-user-net",
	.device_id = VIRTIO_ID_NET,
	.pci_class = 0x020000,	/* network, Ethernet */
	.options = &vu_net_options,
	.create = vu_net_create,
	VHOST_USER_DESC_HOOKS,
};
VIRTIO_DEVICE_REGISTER(vu_net_desc);
