/* The vhost-user frontend protocol (QEMU's docs/interop/vhost-user.rst):
 * a backend process serves a virtio device's rings straight out of guest
 * memory, which Ember shares as the memfd of each RAM region. Messages go
 * over a unix stream socket with SCM_RIGHTS for fds.
 *
 * Every reply is validated (request id, REPLY flag, payload size, no
 * unexpected fds) and every exchange has a deadline (VHOST_USER_TIMEOUT_MS):
 * a backend that hangs, dies or sends garbage gives -ETIMEDOUT, -EPIPE or
 * -EPROTO and a reason in vu->err; the connection is then dead (fd closed)
 * and the caller marks the device NEEDS_RESET. Not thread-safe: one
 * caller at a time. */
#ifndef EMBER_VHOST_USER_H
#define EMBER_VHOST_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/guest_mem.h"

#define VHOST_USER_TIMEOUT_MS	5000
/* SET_MEM_TABLE: a backend may map and populate all of guest RAM before it
 * answers (DPDK does, MAP_POPULATE), seconds for large or emulated guests. */
#define VHOST_USER_MEM_TABLE_TIMEOUT_MS	30000
#define VHOST_USER_MAX_FDS	8
#define VHOST_USER_CONFIG_MAX	256

enum vhost_user_request {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
};

/* Protocol feature bits. */
#define VHOST_USER_PROTOCOL_F_MQ		0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK		3
#define VHOST_USER_PROTOCOL_F_CONFIG		9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD	12
#define VHOST_USER_F_PROTOCOL_FEATURES		30

/* Message header flags. */
#define VHOST_USER_VERSION		1
#define VHOST_USER_FLAG_REPLY		(1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY	(1u << 3)
#define VHOST_USER_HDR_SIZE		12

struct vhost_user {
	int fd;				/* -1: not connected / dead */
	unsigned timeout_ms;
	uint64_t features;		/* offered by the backend */
	uint64_t protocol_features;	/* negotiated */
	char err[256];			/* why the last call failed */
};

void vhost_user_init(struct vhost_user *vu, int fd);
/* Connect to a unix socket path. */
int vhost_user_connect(struct vhost_user *vu, const char *path);
void vhost_user_close(struct vhost_user *vu);

/* GET_FEATURES, SET_OWNER, and when offered, the protocol features: ours
 * (MQ, REPLY_ACK, CONFIG, INFLIGHT_SHMFD) masked by the backend's. */
int vhost_user_handshake(struct vhost_user *vu);
int vhost_user_get_features(struct vhost_user *vu, uint64_t *features);
int vhost_user_set_features(struct vhost_user *vu, uint64_t features);
int vhost_user_get_protocol_features(struct vhost_user *vu, uint64_t *features);
int vhost_user_set_protocol_features(struct vhost_user *vu, uint64_t features);
int vhost_user_set_owner(struct vhost_user *vu);
int vhost_user_get_queue_num(struct vhost_user *vu, uint64_t *num);
/* One memfd per region; -EINVAL if guest RAM has no memfd. */
int vhost_user_set_mem_table(struct vhost_user *vu, const struct guest_mem *gm);
int vhost_user_set_vring_num(struct vhost_user *vu, unsigned idx, unsigned num);
int vhost_user_set_vring_base(struct vhost_user *vu, unsigned idx, unsigned base);
/* Ring addresses as the backend sees them: Ember's host addresses, which
 * the memory table maps. */
int vhost_user_set_vring_addr(struct vhost_user *vu, unsigned idx, uint64_t desc,
			      uint64_t used, uint64_t avail, uint64_t log);
int vhost_user_get_vring_base(struct vhost_user *vu, unsigned idx, uint16_t *base);
/* fd -1 sends the "no fd" (polling) flag. */
int vhost_user_set_vring_kick(struct vhost_user *vu, unsigned idx, int fd);
int vhost_user_set_vring_call(struct vhost_user *vu, unsigned idx, int fd);
int vhost_user_set_vring_err(struct vhost_user *vu, unsigned idx, int fd);
int vhost_user_set_vring_enable(struct vhost_user *vu, unsigned idx, bool on);
int vhost_user_get_config(struct vhost_user *vu, uint32_t off, void *buf, uint32_t len);
int vhost_user_set_config(struct vhost_user *vu, uint32_t off, const void *buf, uint32_t len);

/* The inflight region (INFLIGHT_SHMFD): shared memory where the backend
 * records the requests it has taken but not completed, so a restarted
 * backend resubmits them. The frontend keeps it across reconnects. */
struct vhost_user_inflight {
	int fd;			/* -1: none */
	uint64_t mmap_size, mmap_offset;
	uint16_t num_queues, queue_size;
};

/* GET_INFLIGHT_FD: the backend allocates the region for num_queues rings
 * of queue_size; the reply's one fd lands in inf->fd (the caller's). */
int vhost_user_get_inflight_fd(struct vhost_user *vu, uint16_t num_queues,
			       uint16_t queue_size, struct vhost_user_inflight *inf);
/* SET_INFLIGHT_FD: hand a (kept) region to a backend. */
int vhost_user_set_inflight_fd(struct vhost_user *vu, const struct vhost_user_inflight *inf);

#endif
