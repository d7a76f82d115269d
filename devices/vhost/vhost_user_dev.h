/* A virtio device whose rings a vhost-user backend serves (a separate
 * process on a unix socket: qemu-storage-daemon, DPDK, ...). The device
 * types (devices/virtio/vhost_user_blk, vhost_user_net) are a small type
 * table each; this is the part they share:
 *
 *   create     connect, handshake (features, protocol features, queue
 *              count, config space), all bounded by the protocol layer's
 *              timeouts; a failure is one line and the VM does not start.
 *   DRIVER_OK  SET_FEATURES, SET_MEM_TABLE (guest RAM's memfd), the
 *              inflight region (INFLIGHT_SHMFD), then per ring NUM, BASE,
 *              ADDR, KICK (the queue's ioeventfd), CALL (the vector's
 *              irqfd, or a fallback eventfd the main loop turns into an
 *              interrupt) and ENABLE.
 *   reset,     SET_VRING_ENABLE 0 and GET_VRING_BASE: the backend stops,
 *   pause      and the ring positions are Ember's again (saved state, the
 *              next start).
 *   hang-up    the main loop watches the socket. When the backend goes,
 *              the rings are taken back (last_avail_idx = used_idx, as the
 *              backend can no longer say) and Ember reconnects every
 *              reconnect_ms; on success it redoes the handshake, hands the
 *              kept inflight region to the new backend (which resubmits
 *              what was in flight) and restarts the rings. The guest only
 *              sees its requests wait.
 *   garbage    a backend that replies wrongly or not at all (a protocol
 *              error) leaves the device FAILED and NEEDS_RESET; a driver
 *              reset makes Ember try again.
 *
 * Threads: `lock` (in the .c) guards the connection and the ring state;
 * virtio ops take it on vCPU threads, the socket watch, the reconnect
 * timer and the fallback eventfds run on the main loop. Exchanges with the
 * backend happen under the lock and are bounded by VHOST_USER_TIMEOUT_MS.
 * NEEDS_RESET is raised outside the lock. */
#ifndef EMBER_VHOST_USER_DEV_H
#define EMBER_VHOST_USER_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/options.h"
#include "devices/virtio/virtio.h"

struct json_t;
struct vhost_user_dev;

struct vhost_user_dev_type {
	const char *kind;		/* "vhost-user-blk": QMP type, id and log prefix */
	/* The type's virtio ops: its name, device ID and config size, and the
	 * vhost_user_dev_* functions below for the rest. */
	const struct virtio_device_ops *ops;
	/* Device-type feature bits the guest sees when the backend offers them. */
	uint64_t backend_features;
	/* Bits Ember serves itself: always offered, never sent to the backend. */
	uint64_t own_features;
	unsigned rings_per_queue;	/* blk 1, net 2 (rx, tx) */
	bool backend_config;		/* config space via GET_CONFIG / SET_CONFIG */
	bool inflight;			/* keep an inflight region (INFLIGHT_SHMFD) */
	/* Optional: fill or fix the config space (Ember's fields: the queue
	 * count, a MAC); called at create and after each reconnect. */
	void (*fill_config)(struct vhost_user_dev *d, uint8_t *cfg);
};

struct vhost_user_dev_params {
	const char *socket;
	unsigned queues;		/* asked for; the backend may allow fewer */
	unsigned reconnect_ms;		/* 0: a lost backend leaves NEEDS_RESET */
	void *priv;			/* the type's, see vhost_user_dev_priv() */
};

int vhost_user_dev_create(struct vhost_user_dev **out, const struct device_ctx *ctx,
			  const struct vhost_user_dev_type *type,
			  const struct vhost_user_dev_params *p, char *err, size_t errlen)
	__attribute__((warn_unused_result));

struct vhost_user_dev *vhost_user_dev_of(struct virtio_device *vdev);
struct virtio_device *vhost_user_dev_virtio(struct vhost_user_dev *d);
void *vhost_user_dev_priv(struct vhost_user_dev *d);
unsigned vhost_user_dev_queues(const struct vhost_user_dev *d);

/* The virtio ops every type's table points at. */
void vhost_user_dev_config_read(struct virtio_device *vdev, size_t off, void *data, size_t len);
void vhost_user_dev_config_write(struct virtio_device *vdev, size_t off, const void *data,
				 size_t len);
int vhost_user_dev_activate(struct virtio_device *vdev);
void vhost_user_dev_reset(struct virtio_device *vdev);

/* The options every type has, first in its options struct, and their
 * table entries (devices/options.h). */
struct vhost_user_common_opts {
	char *socket;
	uint64_t reconnect_ms;
};

#define VHOST_USER_COMMON_OPTIONS(opts_struct)                                                  \
	{ .name = "socket", .type = DEV_OPT_STRING,                                      \
	  .offset = DEV_OPT_FIELD(opts_struct, common.socket), .required = true,               \
	  .help = "the backend's unix socket (it listens, Ember connects)" },            \
	{ .name = "reconnect", .type = DEV_OPT_UINT,                                     \
	  .offset = DEV_OPT_FIELD(opts_struct, common.reconnect_ms), .def = "1000",            \
	  .max = 3600000,                                                                \
	  .help = "ms before reconnecting to a backend that went away, doubling to 30 s " \
		  "(0: never; the device then needs a reset)" }

/* The part of a type's options check they share. */
int vhost_user_common_check(const struct vhost_user_common_opts *o, char *err, size_t errlen);

/* A type's create(): vhost_user_dev_create() with a failure logged as the
 * instance's one line (virtio_create_error). */
int vhost_user_dev_create_virtio(struct device_ctx *ctx, const struct vhost_user_dev_type *type,
				 const struct vhost_user_common_opts *o, unsigned queues,
				 void *priv, struct virtio_device **out);

/* The registry's hooks (struct virtio_device_desc), shared by the types. */
int vhost_user_dev_start(struct virtio_device *vdev);
void vhost_user_dev_stop(struct virtio_device *vdev);
void vhost_user_dev_destroy(struct virtio_device *vdev);
void vhost_user_dev_pause(struct virtio_device *vdev);
void vhost_user_dev_resume(struct virtio_device *vdev);
struct json_t *vhost_user_dev_save(struct virtio_device *vdev);
int vhost_user_dev_load(struct virtio_device *vdev, struct json_t *saved, char *err,
			size_t errlen);

/* query-vhost-user: every vhost-user device of this process. */
extern const struct device_qmp_command vhost_user_qmp_commands[];

/* The hooks of every vhost-user virtio_device_desc. */
#define VHOST_USER_DESC_HOOKS                                                  \
	.io = VIRTIO_IO_OWN, .start = vhost_user_dev_start, .stop = vhost_user_dev_stop, \
	.destroy = vhost_user_dev_destroy, .pause = vhost_user_dev_pause,      \
	.resume = vhost_user_dev_resume, .save = vhost_user_dev_save,          \
	.load = vhost_user_dev_load, .qmp = vhost_user_qmp_commands

#endif
