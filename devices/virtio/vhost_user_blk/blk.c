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
	char *socket;
	uint64_t queues;
	uint64_t reconnect_ms;
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
	{ .name = "socket", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct vu_blk_opts, socket), .required = true,
	  .help = "the backend's unix socket (it listens, Ember connects)" },
	{ .name = "queues", .type = DEV_OPT_UINT,
	  .offset = DEV_OPT_FIELD(struct vu_blk_opts, queues), .def = "1", .min = 1,
	  .max = VU_BLK_MAX_QUEUES, .help = "request queues (the backend must serve as many)" },
	{ .name = "reconnect", .type = DEV_OPT_UINT,
	  .offset = DEV_OPT_FIELD(struct vu_blk_opts, reconnect_ms), .def = "1000",
	  .max = 3600000,
	  .help = "ms between reconnect attempts when the backend goes away (0: never; the "
		  "device then needs a reset)" },
};

static int vu_blk_check(void *opts, char *err, size_t errlen)
{
	const struct vu_blk_opts *o = opts;

	if (!o->socket || !*o->socket) {
		snprintf(err, errlen, "socket=PATH is required");
		return -EINVAL;
	}
	return 0;
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
	struct vhost_user_dev_params p = {
		.socket = o->socket, .queues = (unsigned)o->queues,
		.reconnect_ms = (unsigned)o->reconnect_ms,
	};
	struct vhost_user_dev *d;
	char err[320] = "";
	int ret;

	*out = NULL;
	ret = vhost_user_dev_create(&d, ctx, &vu_blk_type, &p, err, sizeof(err));
	if (ret) {
		virtio_create_error("%s", err);
		return ret;
	}
	*out = vhost_user_dev_virtio(d);
	return 0;
}

static struct virtio_device_desc vu_blk_desc = {
	.name = "vhost-user-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x018000,	/* mass storage, other: as virtio-blk */
	.options = &vu_blk_options,
	.io = VIRTIO_IO_OWN,
	.create = vu_blk_create,
	.start = vhost_user_dev_start,
	.stop = vhost_user_dev_stop,
	.destroy = vhost_user_dev_destroy,
	.pause = vhost_user_dev_pause,
	.resume = vhost_user_dev_resume,
	.save = vhost_user_dev_save,
	.load = vhost_user_dev_load,
	.qmp = vhost_user_qmp_commands,
};
VIRTIO_DEVICE_REGISTER(vu_blk_desc);
