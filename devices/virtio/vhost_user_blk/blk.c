/* vhost-user-blk: a virtio-blk device whose requests a backend process
 * serves (qemu-storage-daemon's vhost-user-blk export, SPDK, ...).
 *
 * --vhost-user-blk socket=PATH[,queues=N][,reconnect=MS]
 *
 * The config space (capacity, limits, write cache) is the backend's,
 * read with GET_CONFIG; Ember fills in the queue count it serves. A
 * restarting backend gets the inflight region, so requests in flight when
 * it died are resubmitted, not lost (vhost_user_dev.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/byteorder.h"
#include "devices/vhost/vhost_user_dev.h"
#include "devices/virtio/blk/blk.h"
#include "devices/virtio/registry.h"

#define VU_BLK_CONFIG_SIZE	60	/* up to write_zeroes_may_unmap */
#define VU_BLK_NUM_QUEUES_OFF	34	/* le16 num_queues */
#define VU_BLK_MAX_QUEUES	16

struct vu_blk_opts {
	struct vhost_user_common_opts common;	/* socket=, reconnect= */
	uint64_t queues;
};

static void vu_blk_fill_config(struct vhost_user_dev *d, uint8_t *cfg)
{
	/* What the guest sees is what Ember serves, whatever the backend has. */
	wr16(cfg + VU_BLK_NUM_QUEUES_OFF, (uint16_t)vhost_user_dev_queues(d));
}

static const struct virtio_device_ops vu_blk_ops = {
	.name = "vhost-user-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.config_size = VU_BLK_CONFIG_SIZE,
	.config_read = vhost_user_dev_config_read,
	.config_write = vhost_user_dev_config_write,
	.activate = vhost_user_dev_activate,
	.reset = vhost_user_dev_reset,
};

static const struct vhost_user_dev_type vu_blk_type = {
	.kind = "vhost-user-blk",
	.ops = &vu_blk_ops,
	.backend_features = VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
			    VIRTIO_BIT(VIRTIO_BLK_F_GEOMETRY) | VIRTIO_BIT(VIRTIO_BLK_F_RO) |
			    VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
			    VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY) | VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE) |
			    VIRTIO_BIT(VIRTIO_BLK_F_MQ) | VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) |
			    VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES),
	.rings_per_queue = 1,
	.backend_config = true,
	.inflight = true,
	.fill_config = vu_blk_fill_config,
};

static const struct dev_option vu_blk_opt_list[] = {
	VHOST_USER_COMMON_OPTIONS(struct vu_blk_opts),
	{ .name = "queues", .type = DEV_OPT_UINT,
	  .offset = DEV_OPT_FIELD(struct vu_blk_opts, queues), .def = "1", .min = 1,
	  .max = VU_BLK_MAX_QUEUES, .help = "request queues (the backend must serve as many)" },
};

static int vu_blk_check(void *opts, char *err, size_t errlen)
{
	return vhost_user_common_check(&((struct vu_blk_opts *)opts)->common, err, errlen);
}

static struct dev_option_table vu_blk_options = {
	.type = "vhost-user-blk",
	.flag = "vhost-user-blk",
	.json_key = "vhost-user-blk",
	.summary = "a virtio-blk device served by a vhost-user backend (qemu-storage-daemon)",
	.positional = "socket",
	.max_instances = 8,
	.size = sizeof(struct vu_blk_opts),
	.opts = vu_blk_opt_list,
	.nr_opts = DEV_OPT_COUNT(vu_blk_opt_list),
	.check = vu_blk_check,
};

static int vu_blk_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	const struct vu_blk_opts *o = opts;

	return vhost_user_dev_create_virtio(ctx, &vu_blk_type, &o->common, (unsigned)o->queues,
					    NULL, out);
}

static struct virtio_device_desc vu_blk_desc = {
	.name = "vhost-user-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x018000,	/* mass storage, other: as virtio-blk */
	.options = &vu_blk_options,
	.create = vu_blk_create,
	VHOST_USER_DESC_HOOKS,
};
VIRTIO_DEVICE_REGISTER(vu_blk_desc);
