/* vu-test-backend: a small vhost-user-net backend written for Ember's tests
 * (the backend side of QEMU's docs/interop/vhost-user.rst, split rings only).
 *
 *   vu-test-backend --socket PATH [--tap IFNAME] [--mode MODE]
 *
 * It listens on PATH and serves one frontend at a time (after a hang-up it
 * takes the next). Ring 0 (rx) and ring 1 (tx) are bridged to the tap
 * IFNAME (IFF_TAP|IFF_NO_PI, created if missing): transmitted frames lose
 * their 12-byte virtio-net header and go to the tap; frames from the tap go
 * to the guest behind a zero header. Without --tap, transmitted frames are
 * dropped. Every descriptor is checked against the memory table.
 *
 * MODE (for the bad-backend tests):
 *   good              the default
 *   close-mid-setup   close the connection when SET_MEM_TABLE arrives
 *   hang-mid-setup    never answer SET_MEM_TABLE (nor anything after it)
 *   bad-size          answer GET_FEATURES with a payload 4 bytes too long
 *   silent            never answer GET_FEATURES
 *   die-after=N       exit(3) after forwarding N frames
 * Prints "vu-backend: listening on PATH" when ready; logs to stderr. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REGIONS	8
#define MAX_FRAME	65550
#define NET_HDR_LEN	12	/* virtio_net_hdr with num_buffers (VERSION_1) */

#define F_VERSION_1		(1ULL << 32)
#define F_PROTOCOL_FEATURES	(1ULL << 30)
#define PF_REPLY_ACK		(1ULL << 3)
#define FLAG_REPLY		(1u << 2)
#define FLAG_NEED_REPLY		(1u << 3)
#define VRING_NOFD		(1ULL << 8)
#define DESC_F_NEXT		1
#define DESC_F_WRITE		2
#define AVAIL_F_NO_INTERRUPT	1

enum { GET_FEATURES = 1, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE,
       SET_VRING_NUM = 8, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK,
       SET_VRING_CALL, SET_VRING_ERR, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES,
       GET_QUEUE_NUM, SET_VRING_ENABLE };

struct msg {
	uint32_t request, flags, size;
	union {
		uint64_t u64;
		struct { uint32_t index, num; } state;
		struct { uint32_t index, flags; uint64_t desc, used, avail, log; } addr;
		struct {
			uint32_t nregions, padding;
			struct { uint64_t gpa, size, uaddr, offset; } r[MAX_REGIONS];
		} mem;
		uint8_t raw[4096];
	} p;
} __attribute__((packed));

struct region {
	uint64_t gpa, size, uaddr;
	uint8_t *host;		/* gpa's bytes */
	void *map;
	size_t map_len;
};

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct ring {
	unsigned num;
	struct desc *desc;
	volatile uint16_t *avail;	/* flags, idx, ring[num] */
	volatile uint16_t *used;	/* flags, idx, then {u32 id, u32 len}[num] */
	uint16_t last_avail, used_idx;
	int kick, call;
	bool enabled, started;
	uint64_t ua_desc, ua_avail, ua_used;
};

static struct {
	const char *mode;
	unsigned long die_after, frames;
	int tap;
	uint64_t features, protocol;
	struct region reg[MAX_REGIONS];
	unsigned nreg;
	struct ring vq[2];
} B = { .tap = -1 };

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vu-backend: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- guest memory ---- */

static void *gpa_to_host(uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < B.nreg; i++) {
		struct region *r = &B.reg[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

static void *ua_to_host(uint64_t ua, uint64_t len)
{
	for (unsigned i = 0; i < B.nreg; i++) {
		struct region *r = &B.reg[i];

		if (ua >= r->uaddr && ua - r->uaddr <= r->size && len <= r->size - (ua - r->uaddr))
			return r->host + (ua - r->uaddr);
	}
	return NULL;
}

static void unmap_all(void)
{
	for (unsigned i = 0; i < B.nreg; i++)
		munmap(B.reg[i].map, B.reg[i].map_len);
	B.nreg = 0;
}

static void reset_rings(void)
{
	for (unsigned q = 0; q < 2; q++) {
		struct ring *r = &B.vq[q];

		if (r->kick >= 0)
			close(r->kick);
		if (r->call >= 0)
			close(r->call);
		memset(r, 0, sizeof(*r));
		r->kick = r->call = -1;
	}
}

/* Ring pointers from the frontend's addresses, once the table and size are known. */
static bool map_ring(struct ring *r)
{
	if (!r->num || r->num > 32768 || (r->num & (r->num - 1)))
		return false;
	r->desc = ua_to_host(r->ua_desc, 16ULL * r->num);
	r->avail = ua_to_host(r->ua_avail, 4 + 2ULL * r->num);
	r->used = ua_to_host(r->ua_used, 4 + 8ULL * r->num);
	return r->desc && r->avail && r->used;
}

/* ---- the rings ---- */

static void used_push(struct ring *r, uint16_t head, uint32_t len)
{
	volatile uint32_t *e = (volatile uint32_t *)(r->used + 2) + 2 * (r->used_idx % r->num);

	e[0] = head;
	e[1] = len;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	r->used_idx++;
	r->used[1] = r->used_idx;
}

static void notify(struct ring *r)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (r->call >= 0 && !(r->avail[0] & AVAIL_F_NO_INTERRUPT))
		(void)eventfd_write(r->call, 1);
}

/* Walk the chain at head: readable bytes gathered into buf (up to cap),
 * or writable bytes filled from buf (len). Returns bytes moved, or -1 for
 * a malformed chain. */
static long walk(struct ring *r, uint16_t head, bool write, uint8_t *buf, size_t len, size_t cap)
{
	size_t done = 0;
	unsigned idx = head, n = 0;

	for (;;) {
		struct desc d;
		uint8_t *p;

		if (idx >= r->num || n++ >= r->num)
			return -1;
		d = r->desc[idx];
		if (!!(d.flags & DESC_F_WRITE) != write)
			return -1;	/* this backend wants one direction per chain */
		p = gpa_to_host(d.addr, d.len);
		if (!p)
			return -1;
		if (write) {
			size_t k = len - done < d.len ? len - done : d.len;

			memcpy(p, buf + done, k);
			done += k;
		} else {
			size_t k = cap - done < d.len ? cap - done : d.len;

			memcpy(buf + done, p, k);
			done += k;
		}
		if (!(d.flags & DESC_F_NEXT))
			return (long)done;
		idx = d.next;
	}
}

static bool ring_live(const struct ring *r)
{
	return r->started && r->enabled && r->desc;
}

static void count_frame(void)
{
	if (B.die_after && ++B.frames >= B.die_after) {
		logf_("die-after=%lu: exiting", B.die_after);
		exit(3);
	}
}

static int process_tx(void)
{
	static uint8_t frame[MAX_FRAME];
	struct ring *r = &B.vq[1];
	bool pushed = false;

	while (ring_live(r) && r->avail[1] != r->last_avail) {
		uint16_t head;
		long n;

		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		head = r->avail[2 + r->last_avail % r->num];
		n = walk(r, head, false, frame, 0, sizeof(frame));
		if (n < 0) {
			logf_("tx: malformed chain at head %u", head);
			return -1;
		}
		if (n > NET_HDR_LEN && B.tap >= 0 && write(B.tap, frame + NET_HDR_LEN, (size_t)n - NET_HDR_LEN) < 0)
			logf_("tap write: %s", strerror(errno));
		r->last_avail++;
		used_push(r, head, 0);
		pushed = true;
		count_frame();
	}
	if (pushed)
		notify(r);
	return 0;
}

static bool rx_has_buffer(void)
{
	struct ring *r = &B.vq[0];

	return ring_live(r) && r->avail[1] != r->last_avail;
}

static int process_rx(void)
{
	static uint8_t frame[MAX_FRAME];
	struct ring *r = &B.vq[0];
	bool pushed = false;

	while (rx_has_buffer()) {
		ssize_t n = read(B.tap, frame + NET_HDR_LEN, sizeof(frame) - NET_HDR_LEN);
		uint16_t head;
		long w;

		if (n <= 0)
			break;
		memset(frame, 0, NET_HDR_LEN);
		frame[10] = 1;	/* num_buffers */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		head = r->avail[2 + r->last_avail % r->num];
		w = walk(r, head, true, frame, (size_t)n + NET_HDR_LEN, 0);
		if (w < 0) {
			logf_("rx: malformed chain at head %u", head);
			return -1;
		}
		r->last_avail++;
		used_push(r, head, (uint32_t)w);
		pushed = true;
		count_frame();
	}
	if (pushed)
		notify(r);
	return 0;
}

/* ---- the protocol ---- */

static int recv_msg(int fd, struct msg *m, int *fds, unsigned *nfds)
{
	char ctl[CMSG_SPACE(sizeof(int) * MAX_REGIONS)];
	struct iovec iov = { m, 12 };
	struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	ssize_t n = recvmsg(fd, &h, MSG_WAITALL | MSG_CMSG_CLOEXEC);

	*nfds = 0;
	if (n != 12)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < MAX_REGIONS)
				fds[(*nfds)++] = f;
			else
				close(f);
		}
	}
	if (m->size > sizeof(m->p))
		return -1;
	if (m->size && recv(fd, &m->p, m->size, MSG_WAITALL) != (ssize_t)m->size)
		return -1;
	return 0;
}

static int reply(int fd, const struct msg *req, const void *p, uint32_t size)
{
	struct msg r = { .request = req->request, .flags = 1 | FLAG_REPLY, .size = size };

	if (!strcmp(B.mode, "bad-size") && req->request == GET_FEATURES)
		r.size = size + 4;
	memcpy(&r.p, p, size);
	return send(fd, &r, 12 + r.size, MSG_NOSIGNAL) == (ssize_t)(12 + r.size) ? 0 : -1;
}

static int ack(int fd, const struct msg *req, uint64_t status)
{
	if (!(req->flags & FLAG_NEED_REPLY) || !(B.protocol & PF_REPLY_ACK))
		return 0;
	return reply(fd, req, &status, 8);
}

static int set_mem_table(const struct msg *m, const int *fds, unsigned nfds)
{
	unsigned n = m->p.mem.nregions;

	unmap_all();
	if (n > MAX_REGIONS || n != nfds || m->size < 8 + 32 * n)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		size_t len = m->p.mem.r[i].size + m->p.mem.r[i].offset;
		void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);

		if (map == MAP_FAILED) {
			logf_("mmap region %u: %s", i, strerror(errno));
			return -1;
		}
		B.reg[i] = (struct region){ .gpa = m->p.mem.r[i].gpa, .size = m->p.mem.r[i].size,
					    .uaddr = m->p.mem.r[i].uaddr, .map = map, .map_len = len,
					    .host = (uint8_t *)map + m->p.mem.r[i].offset };
		B.nreg = i + 1;
	}
	return 0;
}

/* One message: 0, or -1 to drop the connection. */
static int handle(int fd)
{
	struct msg m;
	int fds[MAX_REGIONS], ret = 0;
	unsigned nfds, q;
	uint64_t v;

	if (recv_msg(fd, &m, fds, &nfds))
		return -1;
	q = (unsigned)(m.p.u64 & 0xff);
	switch (m.request) {
	case GET_FEATURES:
		if (!strcmp(B.mode, "silent"))
			return 0;
		v = F_VERSION_1 | F_PROTOCOL_FEATURES;
		return reply(fd, &m, &v, 8);
	case SET_FEATURES:
		B.features = m.p.u64;
		break;
	case GET_PROTOCOL_FEATURES:
		v = PF_REPLY_ACK;
		return reply(fd, &m, &v, 8);
	case SET_PROTOCOL_FEATURES:
		B.protocol = m.p.u64;
		break;
	case GET_QUEUE_NUM:
		v = 1;
		return reply(fd, &m, &v, 8);
	case SET_OWNER:
	case RESET_OWNER:
		break;
	case SET_MEM_TABLE:
		if (!strcmp(B.mode, "close-mid-setup")) {
			logf_("close-mid-setup: hanging up at SET_MEM_TABLE");
			ret = -1;
			break;
		}
		if (!strcmp(B.mode, "hang-mid-setup")) {
			logf_("hang-mid-setup: no answer to SET_MEM_TABLE, or anything after");
			for (unsigned i = 0; i < nfds; i++)
				close(fds[i]);
			while (recv_msg(fd, &m, fds, &nfds) == 0)
				for (unsigned i = 0; i < nfds; i++)
					close(fds[i]);
			return -1;
		}
		ret = set_mem_table(&m, fds, nfds);
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		nfds = 0;
		for (unsigned i = 0; i < 2 && !ret; i++)
			if (B.vq[i].num && B.vq[i].ua_desc)
				map_ring(&B.vq[i]);
		break;
	case SET_VRING_NUM:
	case SET_VRING_BASE:
	case SET_VRING_ENABLE:
	case GET_VRING_BASE:
		q = m.p.state.index;
		if (q >= 2)
			return -1;
		if (m.request == SET_VRING_NUM)
			B.vq[q].num = m.p.state.num;
		else if (m.request == SET_VRING_BASE)
			B.vq[q].last_avail = (uint16_t)m.p.state.num;
		else if (m.request == SET_VRING_ENABLE)
			B.vq[q].enabled = m.p.state.num != 0;
		else {
			B.vq[q].started = false;
			if (B.vq[q].kick >= 0)
				close(B.vq[q].kick);
			B.vq[q].kick = -1;
			m.p.state.num = B.vq[q].last_avail;
			return reply(fd, &m, &m.p.state, 8);
		}
		break;
	case SET_VRING_ADDR:
		q = m.p.addr.index;
		if (q >= 2)
			return -1;
		B.vq[q].ua_desc = m.p.addr.desc;
		B.vq[q].ua_avail = m.p.addr.avail;
		B.vq[q].ua_used = m.p.addr.used;
		if (!map_ring(&B.vq[q])) {
			logf_("ring %u: addresses outside the memory table", q);
			ret = -1;
			break;
		}
		B.vq[q].used_idx = B.vq[q].used[1];
		break;
	case SET_VRING_KICK:
	case SET_VRING_CALL:
	case SET_VRING_ERR:
		if (q >= 2 || nfds > 1 || (!(m.p.u64 & VRING_NOFD) && nfds != 1))
			return -1;
		if (m.request == SET_VRING_ERR) {
			if (nfds)
				close(fds[0]);
		} else {
			int *slot = m.request == SET_VRING_KICK ? &B.vq[q].kick : &B.vq[q].call;

			if (*slot >= 0)
				close(*slot);
			*slot = nfds ? fds[0] : -1;
			if (m.request == SET_VRING_KICK)
				B.vq[q].started = true;
		}
		nfds = 0;
		break;
	default:
		logf_("request %u not handled", m.request);
		break;
	}
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (ret)
		return ret;
	return ack(fd, &m, 0);
}

static void serve(int fd)
{
	B.features = B.protocol = 0;
	reset_rings();
	for (;;) {
		struct pollfd p[4] = { { .fd = fd, .events = POLLIN } };
		unsigned n = 1;
		eventfd_t v;

		for (unsigned q = 0; q < 2; q++)
			if (B.vq[q].kick >= 0)
				p[n++] = (struct pollfd){ .fd = B.vq[q].kick, .events = POLLIN };
		if (B.tap >= 0 && rx_has_buffer())
			p[n++] = (struct pollfd){ .fd = B.tap, .events = POLLIN };
		if (poll(p, n, 1000) < 0 && errno != EINTR)
			break;
		if (p[0].revents && handle(fd))
			break;
		for (unsigned i = 1; i < n; i++)
			if (p[i].fd != B.tap && (p[i].revents & POLLIN))
				(void)eventfd_read(p[i].fd, &v);
		if (process_tx() || (B.tap >= 0 && process_rx()))
			break;
	}
	reset_rings();
	unmap_all();
}

static int open_tap(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	const char *path = NULL, *tap = NULL;
	int lfd;

	B.mode = "good";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--socket"))
			path = argv[i + 1];
		else if (!strcmp(argv[i], "--tap"))
			tap = argv[i + 1];
		else if (!strcmp(argv[i], "--mode"))
			B.mode = argv[i + 1];
	}
	if (!path || strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "usage: vu-test-backend --socket PATH [--tap IFNAME] [--mode MODE]\n");
		return 2;
	}
	if (!strncmp(B.mode, "die-after=", 10))
		B.die_after = strtoul(B.mode + 10, NULL, 10);
	signal(SIGPIPE, SIG_IGN);
	for (unsigned q = 0; q < 2; q++)
		B.vq[q].kick = B.vq[q].call = -1;
	if (tap && (B.tap = open_tap(tap)) < 0) {
		fprintf(stderr, "vu-backend: tap %s: %s\n", tap, strerror(errno));
		return 1;
	}
	strcpy(a.sun_path, path);
	unlink(path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4)) {
		fprintf(stderr, "vu-backend: %s: %s\n", path, strerror(errno));
		return 1;
	}
	printf("vu-backend: listening on %s\n", path);
	fflush(stdout);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("accept");
			return 1;
		}
		logf_("frontend connected");
		serve(fd);
		close(fd);
		logf_("frontend gone");
	}
}
