/* virtio-vsock (virtio 1.2 section 5.10) on the kernel's vhost-vsock.
 *
 * Three queues: 0 receive and 1 transmit, both served by the kernel
 * (/dev/vhost-vsock) straight from guest memory; 2 the event queue, which
 * stays in Ember. Its only event is TRANSPORT_RESET, sent after a snapshot
 * restore (the host's connections are gone): the driver's event buffers
 * are held until then. Config space: the guest CID (le64).
 *
 * With uds=PATH the kernel is not used: Ember serves rx and tx on the main
 * loop and bridges connections to unix sockets (uds.h). Snapshots then drop
 * every bridged connection (TRANSPORT_RESET after restore, as above). */
#ifndef EMBER_VIRTIO_VSOCK_H
#define EMBER_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/virtio/virtio.h"

#define VSOCK_QUEUE_RX		0
#define VSOCK_QUEUE_TX		1
#define VSOCK_QUEUE_EVENT	2
#define VSOCK_NR_QUEUES		3
#define VSOCK_QUEUE_SIZE	256
#define VIRTIO_VSOCK_F_SEQPACKET	1
#define VIRTIO_VSOCK_EVENT_TRANSPORT_RESET	0
/* CIDs 0 (hypervisor), 1 (local), 2 (host) and U32_MAX (any) are reserved. */
#define VSOCK_CID_MIN		3
#define VSOCK_CID_MAX		0xfffffffeULL

struct vsock_opts {
	uint64_t cid;
	char *vhostfd;		/* an open /dev/vhost-vsock fd, as a number */
	char *uds;		/* the unix-socket bridge's path (uds.h), or NULL */
	int vhost_fd;		/* parsed, -1: open /dev/vhost-vsock */
};

struct virtio_vsock;

/* vhost_fd: an open /dev/vhost-vsock (owned by the device from here on),
 * or -1 for no kernel backend (unit tests: the rx/tx queues then sit
 * idle). err says why on failure. */
int vsock_dev_create(struct virtio_vsock **out, const struct device_ctx *ctx, uint64_t cid,
		     int vhost_fd, char *err, size_t errlen) __attribute__((warn_unused_result));
/* The unix-socket bridge instead (uds.h, conn.h): Ember serves rx/tx
 * itself, host programs meet the guest at path (bound now). */
int vsock_dev_create_uds(struct virtio_vsock **out, const struct device_ctx *ctx, uint64_t cid,
			 const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void vsock_dev_destroy(struct virtio_vsock *v);
/* Open bridge connections (0 on vhost-vsock). */
unsigned vsock_dev_nr_conns(struct virtio_vsock *v);
struct virtio_device *vsock_virtio(struct virtio_vsock *v);
uint64_t vsock_cid(const struct virtio_vsock *v);

/* Queue a TRANSPORT_RESET event: delivered now if the driver has an event
 * buffer (and the device is active and not paused), else when it adds one. */
void vsock_transport_reset(struct virtio_vsock *v);
/* The event queue's kick eventfd fired: drain it, deliver a held event. */
void vsock_event_kick(struct virtio_vsock *v);
bool vsock_event_pending(struct virtio_vsock *v);

/* Main thread: watch the event queue (and with uds=, the rx/tx queues and
 * sockets) on ctx->loop; stop undoes it. The registry's start/stop. */
int vsock_dev_start(struct virtio_vsock *v) __attribute__((warn_unused_result));
void vsock_dev_stop(struct virtio_vsock *v);
void vsock_dev_pause(struct virtio_vsock *v);
void vsock_dev_resume(struct virtio_vsock *v);

#endif
