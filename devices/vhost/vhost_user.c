/* The vhost-user frontend protocol (see vhost_user.h). */
#include "devices/vhost/vhost_user.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define VRING_NOFD_MASK		(1ULL << 8)
#define VRING_IDX_MASK		0xffULL
#define PAYLOAD_MAX		(8 + 8 + 8 * 32 * 4)	/* a memory table of 8 regions */

struct vu_msg {
	uint32_t request, flags, size;
	union {
		uint64_t u64;
		struct { uint32_t index, num; } state;
		struct { uint32_t index, flags; uint64_t desc, used, avail, log; } addr;
		struct {
			uint32_t nregions, padding;
			struct { uint64_t gpa, size, uaddr, mmap_offset; } regions[VHOST_USER_MAX_FDS];
		} mem;
		struct { uint32_t offset, size, flags; uint8_t region[VHOST_USER_CONFIG_MAX]; } cfg;
		struct {
			uint64_t mmap_size, mmap_offset;
			uint16_t num_queues, queue_size;
		} inflight;
		uint8_t raw[PAYLOAD_MAX];
	} p;
} __attribute__((packed));

/* Requests by name, for errors people read. */
static const char *req_name(uint32_t req)
{
	static const char *const names[] = {
		[VHOST_USER_GET_FEATURES] = "GET_FEATURES", [VHOST_USER_SET_FEATURES] = "SET_FEATURES",
		[VHOST_USER_SET_OWNER] = "SET_OWNER", [VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
		[VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
		[VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
		[VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
		[VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
		[VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
		[VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
		[VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
		[VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
		[VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
		[VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
		[VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
		[VHOST_USER_GET_CONFIG] = "GET_CONFIG", [VHOST_USER_SET_CONFIG] = "SET_CONFIG",
		[VHOST_USER_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
		[VHOST_USER_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD",
	};

	return req < sizeof(names) / sizeof(names[0]) && names[req] ? names[req] : "request";
}

static int fail(struct vhost_user *vu, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The connection is dead after any protocol failure: a reply may still be
 * on its way and would be taken for the next one. */
static int fail(struct vhost_user *vu, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vu->err, sizeof(vu->err), fmt, ap);
	va_end(ap);
	vhost_user_close(vu);
	return ret;
}

void vhost_user_init(struct vhost_user *vu, int fd)
{
	memset(vu, 0, sizeof(*vu));
	vu->fd = fd;
	vu->timeout_ms = VHOST_USER_TIMEOUT_MS;
}

int vhost_user_connect(struct vhost_user *vu, const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, ret;

	vhost_user_init(vu, -1);
	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(vu->err, sizeof(vu->err), "%s: socket path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, path);
	/* Non-blocking: a listener whose backlog is full answers EAGAIN at
	 * once instead of holding the caller (the main loop, on reconnect). */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		ret = -errno;
		snprintf(vu->err, sizeof(vu->err), "%s: connect: %s", path,
			 errno == EAGAIN ? "the backend's listen queue is full" : strerror(errno));
		close(fd);
		return ret;
	}
	vu->fd = fd;
	return 0;
}

void vhost_user_close(struct vhost_user *vu)
{
	if (vu->fd >= 0)
		close(vu->fd);
	vu->fd = -1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on the socket until the deadline. */
static int wait_fd(struct vhost_user *vu, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = vu->fd, .events = events };
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 0;
	}
}

static int send_msg(struct vhost_user *vu, struct vu_msg *m, const int *fds, unsigned nfds)
{
	char ctl[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)] = { 0 };
	int64_t deadline = now_ms() + vu->timeout_ms;
	size_t len = VHOST_USER_HDR_SIZE + m->size, done = 0;

	if (vu->fd < 0) {
		snprintf(vu->err, sizeof(vu->err), "%s: not connected", req_name(m->request));
		return -ENOTCONN;
	}
	while (done < len) {
		struct iovec iov = { (char *)m + done, len - done };
		struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;
		int ret;

		if (!done && nfds) {
			struct cmsghdr *c;

			h.msg_control = ctl;
			h.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			c = CMSG_FIRSTHDR(&h);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
		}
		n = sendmsg(vu->fd, &h, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ret = wait_fd(vu, POLLOUT, deadline);
			if (ret)
				return fail(vu, ret, "%s: backend not reading (%s)", req_name(m->request),
					    strerror(-ret));
			continue;
		}
		if (n < 0)
			return fail(vu, -EPIPE, "%s: send: %s", req_name(m->request), strerror(errno));
		done += (size_t)n;
	}
	return 0;
}

/* Read exactly len bytes (the header, then the payload). With keep, the
 * first fd the backend sends is stored there (the one reply that carries
 * an fd); every other fd is closed and counted in nfds. */
static int recv_all(struct vhost_user *vu, void *buf, size_t len, int64_t deadline,
		    unsigned *nfds, int *keep)
{
	size_t done = 0;

	while (done < len) {
		char ctl[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct iovec iov = { (char *)buf + done, len - done };
		struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				    .msg_controllen = sizeof(ctl) };
		ssize_t n;
		int ret;

		n = recvmsg(vu->fd, &h, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ret = wait_fd(vu, POLLIN, deadline);
			if (ret)
				return ret;
			continue;
		}
		if (n < 0)
			return -errno;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (keep && *keep < 0) {
					*keep = fd;
					continue;
				}
				close(fd);
				(*nfds)++;
			}
		}
		if (h.msg_flags & MSG_CTRUNC)
			(*nfds)++;
		if (n == 0)
			return -EPIPE;
		done += (size_t)n;
	}
	return 0;
}

/* Receive the reply to request req with exactly want payload bytes; with
 * fd_out, exactly one fd must come with it (else none may). */
static int recv_reply_fd(struct vhost_user *vu, uint32_t req, struct vu_msg *r, uint32_t want,
			 int *fd_out)
{
	int64_t deadline = now_ms() + vu->timeout_ms;
	unsigned nfds = 0;
	int ret;

	if (fd_out)
		*fd_out = -1;
	ret = recv_all(vu, r, VHOST_USER_HDR_SIZE, deadline, &nfds, fd_out);
	if (!ret && (r->request != req || r->size != want))
		ret = fail(vu, -EPROTO, "%s: bad reply (request %u, %u payload bytes, "
			   "want %u)", req_name(req), r->request, r->size, want);
	else if (!ret && (r->flags & 3) != VHOST_USER_VERSION)
		ret = fail(vu, -EPROTO, "%s: reply has version %u", req_name(req), r->flags & 3);
	else if (!ret && !(r->flags & VHOST_USER_FLAG_REPLY))
		ret = fail(vu, -EPROTO, "%s: reply without the REPLY flag", req_name(req));
	else if (!ret && (ret = recv_all(vu, &r->p, want, deadline, &nfds, fd_out)) == 0 &&
		 (nfds || (fd_out && *fd_out < 0)))
		ret = fail(vu, -EPROTO, "%s: reply carries unexpected fds (%u, want %u)", req_name(req),
			   nfds + (fd_out && *fd_out >= 0), fd_out ? 1 : 0);
	else if (ret == -ETIMEDOUT)
		ret = fail(vu, ret, "%s: no reply within %u ms", req_name(req), vu->timeout_ms);
	else if (ret == -EPIPE)
		ret = fail(vu, ret, "%s: the backend closed the connection", req_name(req));
	else if (ret && vu->fd >= 0)
		ret = fail(vu, ret, "%s: receive: %s", req_name(req), strerror(-ret));
	if (ret && fd_out && *fd_out >= 0) {
		close(*fd_out);
		*fd_out = -1;
	}
	return ret;
}

static int recv_reply(struct vhost_user *vu, uint32_t req, struct vu_msg *r, uint32_t want)
{
	return recv_reply_fd(vu, req, r, want, NULL);
}

/* Send a request; with need_ack, REPLY_ACK (when negotiated) confirms it. */
static int request(struct vhost_user *vu, struct vu_msg *m, const int *fds, unsigned nfds,
		   bool need_ack)
{
	struct vu_msg r;
	int ret;

	need_ack = need_ack &&
		   (vu->protocol_features & (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	m->flags = VHOST_USER_VERSION | (need_ack ? VHOST_USER_FLAG_NEED_REPLY : 0);
	ret = send_msg(vu, m, fds, nfds);
	if (ret || !need_ack)
		return ret;
	ret = recv_reply(vu, m->request, &r, 8);
	if (ret)
		return ret;
	if (r.p.u64) {
		snprintf(vu->err, sizeof(vu->err), "%s: the backend refused it (%llu)",
			 req_name(m->request), (unsigned long long)r.p.u64);
		return -EIO;
	}
	return 0;
}

static int get_u64(struct vhost_user *vu, uint32_t req, uint64_t *out)
{
	struct vu_msg m = { .request = req }, r;
	int ret;

	m.flags = VHOST_USER_VERSION;
	if ((ret = send_msg(vu, &m, NULL, 0)) || (ret = recv_reply(vu, req, &r, 8)))
		return ret;
	*out = r.p.u64;
	return 0;
}

static int set_u64(struct vhost_user *vu, uint32_t req, uint64_t v, bool ack)
{
	struct vu_msg m = { .request = req, .size = 8 };

	m.p.u64 = v;
	return request(vu, &m, NULL, 0, ack);
}

int vhost_user_get_features(struct vhost_user *vu, uint64_t *f)
{
	return get_u64(vu, VHOST_USER_GET_FEATURES, f);
}

int vhost_user_set_features(struct vhost_user *vu, uint64_t f)
{
	return set_u64(vu, VHOST_USER_SET_FEATURES, f, true);
}

int vhost_user_get_protocol_features(struct vhost_user *vu, uint64_t *f)
{
	return get_u64(vu, VHOST_USER_GET_PROTOCOL_FEATURES, f);
}

int vhost_user_set_protocol_features(struct vhost_user *vu, uint64_t f)
{
	int ret = set_u64(vu, VHOST_USER_SET_PROTOCOL_FEATURES, f, false);

	if (!ret)
		vu->protocol_features = f;
	return ret;
}

int vhost_user_set_owner(struct vhost_user *vu)
{
	struct vu_msg m = { .request = VHOST_USER_SET_OWNER };

	return request(vu, &m, NULL, 0, true);
}

int vhost_user_get_queue_num(struct vhost_user *vu, uint64_t *num)
{
	return get_u64(vu, VHOST_USER_GET_QUEUE_NUM, num);
}

int vhost_user_handshake(struct vhost_user *vu)
{
	const uint64_t ours = 1ULL << VHOST_USER_PROTOCOL_F_MQ |
			      1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK |
			      1ULL << VHOST_USER_PROTOCOL_F_CONFIG |
			      1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD;
	uint64_t pf;
	int ret;

	vu->protocol_features = 0;
	ret = vhost_user_get_features(vu, &vu->features);
	if (ret)
		return ret;
	if (vu->features & (1ULL << VHOST_USER_F_PROTOCOL_FEATURES)) {
		if ((ret = vhost_user_get_protocol_features(vu, &pf)) ||
		    (ret = vhost_user_set_protocol_features(vu, pf & ours)))
			return ret;
	}
	return vhost_user_set_owner(vu);
}

int vhost_user_set_mem_table(struct vhost_user *vu, const struct guest_mem *gm)
{
	struct vu_msg m = { .request = VHOST_USER_SET_MEM_TABLE };
	int fds[VHOST_USER_MAX_FDS], ret;
	unsigned saved;

	if (gm->memfd < 0 || gm->nr > VHOST_USER_MAX_FDS) {
		snprintf(vu->err, sizeof(vu->err), "guest RAM is not shareable (%s)",
			 gm->memfd < 0 ? "no memfd" : "too many regions");
		return -EINVAL;
	}
	m.p.mem.nregions = gm->nr;
	for (unsigned i = 0; i < gm->nr; i++) {
		m.p.mem.regions[i].gpa = gm->regions[i].gpa;
		m.p.mem.regions[i].size = gm->regions[i].size;
		m.p.mem.regions[i].uaddr = (uintptr_t)gm->regions[i].hva;
		m.p.mem.regions[i].mmap_offset = gm->regions[i].fd_offset;
		fds[i] = gm->memfd;
	}
	m.size = 8 + gm->nr * 32;
	saved = vu->timeout_ms;
	if (vu->timeout_ms < VHOST_USER_MEM_TABLE_TIMEOUT_MS)
		vu->timeout_ms = VHOST_USER_MEM_TABLE_TIMEOUT_MS;
	ret = request(vu, &m, fds, gm->nr, true);
	vu->timeout_ms = saved;
	return ret;
}

static int set_state(struct vhost_user *vu, uint32_t req, unsigned idx, unsigned num)
{
	struct vu_msg m = { .request = req, .size = 8 };

	m.p.state.index = idx;
	m.p.state.num = num;
	return request(vu, &m, NULL, 0, true);
}

int vhost_user_set_vring_num(struct vhost_user *vu, unsigned idx, unsigned num)
{
	return set_state(vu, VHOST_USER_SET_VRING_NUM, idx, num);
}

int vhost_user_set_vring_base(struct vhost_user *vu, unsigned idx, unsigned base)
{
	return set_state(vu, VHOST_USER_SET_VRING_BASE, idx, base);
}

int vhost_user_set_vring_enable(struct vhost_user *vu, unsigned idx, bool on)
{
	return set_state(vu, VHOST_USER_SET_VRING_ENABLE, idx, on);
}

int vhost_user_set_vring_addr(struct vhost_user *vu, unsigned idx, uint64_t desc,
			      uint64_t used, uint64_t avail, uint64_t log)
{
	struct vu_msg m = { .request = VHOST_USER_SET_VRING_ADDR, .size = 40 };

	m.p.addr.index = idx;
	m.p.addr.desc = desc;
	m.p.addr.used = used;
	m.p.addr.avail = avail;
	m.p.addr.log = log;
	return request(vu, &m, NULL, 0, true);
}

int vhost_user_get_vring_base(struct vhost_user *vu, unsigned idx, uint16_t *base)
{
	struct vu_msg m = { .request = VHOST_USER_GET_VRING_BASE, .size = 8 }, r;
	int ret;

	m.flags = VHOST_USER_VERSION;
	m.p.state.index = idx;
	if ((ret = send_msg(vu, &m, NULL, 0)) ||
	    (ret = recv_reply(vu, VHOST_USER_GET_VRING_BASE, &r, 8)))
		return ret;
	if (r.p.state.index != idx || r.p.state.num > 0xffff)
		return fail(vu, -EPROTO, "GET_VRING_BASE %u: reply for ring %u, base %u", idx,
			    r.p.state.index, r.p.state.num);
	*base = (uint16_t)r.p.state.num;
	return 0;
}

static int set_vring_fd(struct vhost_user *vu, uint32_t req, unsigned idx, int fd)
{
	struct vu_msg m = { .request = req, .size = 8 };

	m.p.u64 = (idx & VRING_IDX_MASK) | (fd < 0 ? VRING_NOFD_MASK : 0);
	return request(vu, &m, &fd, fd < 0 ? 0 : 1, true);
}

int vhost_user_set_vring_kick(struct vhost_user *vu, unsigned idx, int fd)
{
	return set_vring_fd(vu, VHOST_USER_SET_VRING_KICK, idx, fd);
}

int vhost_user_set_vring_call(struct vhost_user *vu, unsigned idx, int fd)
{
	return set_vring_fd(vu, VHOST_USER_SET_VRING_CALL, idx, fd);
}

int vhost_user_set_vring_err(struct vhost_user *vu, unsigned idx, int fd)
{
	return set_vring_fd(vu, VHOST_USER_SET_VRING_ERR, idx, fd);
}

int vhost_user_get_config(struct vhost_user *vu, uint32_t off, void *buf, uint32_t len)
{
	struct vu_msg m = { .request = VHOST_USER_GET_CONFIG }, r;
	int ret;

	if (len > VHOST_USER_CONFIG_MAX)
		return -EINVAL;
	m.flags = VHOST_USER_VERSION;
	m.size = 12 + len;
	m.p.cfg.offset = off;
	m.p.cfg.size = len;
	if ((ret = send_msg(vu, &m, NULL, 0)) ||
	    (ret = recv_reply(vu, VHOST_USER_GET_CONFIG, &r, 12 + len)))
		return ret;
	if (r.p.cfg.offset != off || r.p.cfg.size != len)
		return fail(vu, -EPROTO, "GET_CONFIG: reply for %u bytes at %u, asked %u at %u",
			    r.p.cfg.size, r.p.cfg.offset, len, off);
	memcpy(buf, r.p.cfg.region, len);
	return 0;
}

int vhost_user_set_config(struct vhost_user *vu, uint32_t off, const void *buf, uint32_t len)
{
	struct vu_msg m = { .request = VHOST_USER_SET_CONFIG };

	if (len > VHOST_USER_CONFIG_MAX)
		return -EINVAL;
	m.size = 12 + len;
	m.p.cfg.offset = off;
	m.p.cfg.size = len;
	memcpy(m.p.cfg.region, buf, len);
	return request(vu, &m, NULL, 0, true);
}

int vhost_user_get_inflight_fd(struct vhost_user *vu, uint16_t num_queues,
			       uint16_t queue_size, struct vhost_user_inflight *inf)
{
	struct vu_msg m = { .request = VHOST_USER_GET_INFLIGHT_FD, .size = 20 }, r;
	int fd, ret;

	m.flags = VHOST_USER_VERSION;
	m.p.inflight.num_queues = num_queues;
	m.p.inflight.queue_size = queue_size;
	if ((ret = send_msg(vu, &m, NULL, 0)) ||
	    (ret = recv_reply_fd(vu, VHOST_USER_GET_INFLIGHT_FD, &r, 20, &fd)))
		return ret;
	/* Sizes the backend chose; bounded so a later mmap of it is sane. */
	if (!r.p.inflight.mmap_size || r.p.inflight.mmap_size > (64ULL << 20) ||
	    r.p.inflight.mmap_offset > (64ULL << 20)) {
		close(fd);
		return fail(vu, -EPROTO, "GET_INFLIGHT_FD: region of %llu bytes at %llu",
			    (unsigned long long)r.p.inflight.mmap_size,
			    (unsigned long long)r.p.inflight.mmap_offset);
	}
	inf->fd = fd;
	inf->mmap_size = r.p.inflight.mmap_size;
	inf->mmap_offset = r.p.inflight.mmap_offset;
	inf->num_queues = num_queues;
	inf->queue_size = queue_size;
	return 0;
}

int vhost_user_set_inflight_fd(struct vhost_user *vu, const struct vhost_user_inflight *inf)
{
	struct vu_msg m = { .request = VHOST_USER_SET_INFLIGHT_FD, .size = 20 };

	if (inf->fd < 0)
		return -EINVAL;
	m.p.inflight.mmap_size = inf->mmap_size;
	m.p.inflight.mmap_offset = inf->mmap_offset;
	m.p.inflight.num_queues = inf->num_queues;
	m.p.inflight.queue_size = inf->queue_size;
	return request(vu, &m, &inf->fd, 1, false);
}
