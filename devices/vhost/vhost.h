/* The kernel's vhost interface (drivers/vhost): a virtio device's rings
 * served by a kernel thread. Ember hands it the guest memory table, each
 * ring's size, addresses and start index, the ring's kick eventfd (the
 * same one KVM signals on the guest's notify write, so kicks reach the
 * kernel without Ember) and a call eventfd (the MSI-X vector's irqfd, so
 * interrupts reach the guest without Ember). Device-specific set-up
 * (VHOST_NET_SET_BACKEND, vsock's guest CID) sits next to the generic
 * calls. Every function returns 0 or -errno. */
#ifndef EMBER_VHOST_H
#define EMBER_VHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/guest_mem.h"

struct vhost_memory;

struct vhost_dev {
	int fd;			/* -1: closed */
	uint64_t features;	/* offered by the kernel (VHOST_GET_FEATURES) */
};

/* Open path (or adopt fd >= 0, e.g. passed by a management layer), take
 * ownership (VHOST_SET_OWNER) and read the features. On failure err says
 * why, naming the path. */
int vhost_dev_open(struct vhost_dev *v, const char *path, int fd, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void vhost_dev_close(struct vhost_dev *v);

int vhost_dev_set_features(struct vhost_dev *v, uint64_t features);

/* The guest-memory table: one region per guest_mem region. */
size_t vhost_mem_table_size(const struct guest_mem *gm);
void vhost_mem_table_fill(const struct guest_mem *gm, struct vhost_memory *m);
int vhost_dev_set_mem_table(struct vhost_dev *v, const struct guest_mem *gm);

/* A split ring as vhost takes it: host views of its three parts (already
 * checked to lie in guest memory), its size and where to start. */
struct vhost_ring {
	unsigned size;
	uint16_t last_avail_idx;
	void *desc, *avail, *used;
	uint64_t used_gpa;	/* for dirty logging */
};

/* Start ring idx: VHOST_SET_VRING_NUM, _BASE, _ADDR, _KICK and _CALL. */
int vhost_vring_start(struct vhost_dev *v, unsigned idx, const struct vhost_ring *r,
		      int kick_fd, int call_fd);
int vhost_vring_set_call(struct vhost_dev *v, unsigned idx, int fd);
/* VHOST_GET_VRING_BASE: the next available index the kernel would serve
 * (call with the backend detached, so the ring is quiet). */
int vhost_vring_get_base(struct vhost_dev *v, unsigned idx, uint16_t *last_avail);

/* vhost-net: attach ring idx to a tap fd, or detach it (fd -1). */
int vhost_net_set_backend(struct vhost_dev *v, unsigned idx, int fd);

/* vhost-vsock: the guest's CID (-EADDRINUSE: another VM has it), and
 * start/stop serving the rings (stop before VHOST_GET_VRING_BASE). */
int vhost_vsock_set_guest_cid(struct vhost_dev *v, uint64_t cid);
int vhost_vsock_set_running(struct vhost_dev *v, bool running);

#endif
