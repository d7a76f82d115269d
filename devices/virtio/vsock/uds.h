/* The userspace backend of virtio-vsock, `--vsock cid=N,uds=PATH`: Ember
 * serves the rx and tx queues itself and bridges guest connections to unix
 * stream sockets (conn.h), for hosts without /dev/vhost-vsock.
 *
 * Owner thread: the main loop. Queue kicks, host socket events and a poke
 * eventfd are all handled there, under the device's lock (vsock.c's
 * v->lock), which the vCPU threads also take for activate and reset; those
 * only flip `running` and ask the main loop (poke) to do the rest, so all
 * connection state is touched on the main loop alone. */
#ifndef EMBER_VSOCK_UDS_H
#define EMBER_VSOCK_UDS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"

struct evloop;
struct vsock_uds;

/* Binds PATH now (a stale socket file there is replaced). loop may be NULL
 * (unit tests: nothing is watched). lock is held by every caller below
 * except create, destroy, start and stop. */
int vsock_uds_create(struct vsock_uds **out, struct virtio_device *vdev, struct evloop *loop,
		     pthread_mutex_t *lock, uint64_t cid, const char *path, char *err,
		     size_t errlen) __attribute__((warn_unused_result));
void vsock_uds_destroy(struct vsock_uds *u);
/* Main thread: watch the queues' kicks; stop closes every socket. */
int vsock_uds_start(struct vsock_uds *u) __attribute__((warn_unused_result));
void vsock_uds_stop(struct vsock_uds *u);

/* Lock held. up: the driver is up (host connections are taken; while
 * paused their REQUESTs wait); running: up and the VM not paused (the
 * queues are served). */
void vsock_uds_set_running(struct vsock_uds *u, bool up, bool running);
/* Lock held: the driver reset (or a restore): every connection goes. */
void vsock_uds_drop(struct vsock_uds *u);
/* Lock held. */
unsigned vsock_uds_nr_conns(const struct vsock_uds *u);
/* Connections closed by a deadline (conn.h: vsock_bridge_expire). */
uint64_t vsock_uds_nr_expired(const struct vsock_uds *u);

#endif
