/* The vsock <-> unix socket bridge: see conn.h. */
#include "devices/virtio/vsock/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

#define CONNECT_LINE_MAX	32	/* "CONNECT 4294967295\n" and some slack */
#define MAX_IOV			64
#define HOST_PORT_FIRST		(1u << 30)	/* where host-initiated local ports start */

enum conn_state {
	CONN_FREE,
	CONN_CONNECT_LINE,	/* host-initiated: waiting for "CONNECT <port>\n" */
	CONN_REQUEST_SENT,	/* host-initiated: REQUEST queued or sent, no RESPONSE yet */
	CONN_ESTABLISHED,
	CONN_DYING,		/* host socket closed; only the RST to the guest is left */
};

/* Tokens handed to watch(): every fd the bridge watches starts with one. */
struct watch_token {
	struct vsock_bridge *b;
};

struct vsock_conn {
	struct watch_token tok;		/* first: the token of fd */
	enum conn_state state;
	int fd;				/* host unix socket, -1 once closed */
	uint32_t watched;
	uint32_t local_port;		/* the host side's vsock port */
	uint32_t peer_port;		/* the guest's */

	/* Control packets owed to the guest. */
	bool want_request, want_response, want_credit_update, want_rst;
	uint32_t want_shutdown;		/* VSOCK_SHUTDOWN_* flags still to send */

	int64_t deadline_ms;		/* CONNECT line or RESPONSE due by then; 0: none */
	char line[CONNECT_LINE_MAX];	/* CONN_CONNECT_LINE: what came so far */
	unsigned line_len;
	bool readable;			/* the host socket has data (or EOF) to read */
	bool host_eof;			/* read returned 0: SHUTDOWN(SEND) owed/sent */
	bool guest_no_send, guest_no_rcv;	/* the guest's SHUTDOWN flags */
	bool host_wr_shut;		/* shutdown(SHUT_WR) done */

	/* Guest -> host: our receive side. */
	uint32_t rx_cnt;		/* payload bytes the guest sent */
	uint32_t fwd_cnt;		/* of those, written to the host socket */
	uint32_t fwd_cnt_sent;		/* fwd_cnt as last told to the guest */
	uint8_t *buf;			/* ring of VSOCK_CONN_BUF_ALLOC, NULL while empty */
	uint32_t buf_head, buf_len;

	/* Host -> guest: the guest's receive side. */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t tx_cnt;		/* payload bytes sent to the guest */
};

struct rst_entry {
	uint32_t src_port, dst_port;	/* as the guest will see them */
};

struct vsock_bridge {
	uint64_t guest_cid;
	const struct vsock_bridge_ops *ops;
	void *opaque;
	bool active;
	char *path;
	int listen_fd;
	uint32_t listen_watched;
	struct watch_token listen_tok;
	uint32_t next_port;
	unsigned rr;			/* round-robin cursor for rx */
	unsigned nr_conns;
	uint64_t expired;		/* connections closed by a deadline */
	struct vsock_conn conns[VSOCK_MAX_CONNS];
	struct rst_entry rst[VSOCK_RST_BACKLOG];
	unsigned rst_head, rst_len;
};

/* ---- helpers ---- */

static void set_watch(struct vsock_bridge *b, int fd, uint32_t *cur, uint32_t want, void *tok)
{
	if (fd < 0 || *cur == want)
		return;
	if (b->ops && b->ops->watch && b->ops->watch(b->opaque, fd, *cur, want, tok)) {
		log_warn("vsock: cannot watch a host socket");
		return;
	}
	*cur = want;
}

static uint32_t peer_credit(const struct vsock_conn *c)
{
	return vsock_peer_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->tx_cnt);
}

static bool wants_control(const struct vsock_conn *c)
{
	return c->want_rst || c->want_request || c->want_response || c->want_shutdown ||
	       c->want_credit_update;
}

static bool can_read_host(const struct vsock_conn *c)
{
	return c->state == CONN_ESTABLISHED && !c->host_eof && !c->guest_no_rcv &&
	       peer_credit(c) > 0;
}

static void update_watch(struct vsock_bridge *b, struct vsock_conn *c)
{
	uint32_t ev = 0;

	if (c->state == CONN_CONNECT_LINE)
		ev = EPOLLIN;
	else if (c->state == CONN_ESTABLISHED) {
		if (!c->readable && can_read_host(c))
			ev |= EPOLLIN;
		if (c->buf_len)
			ev |= EPOLLOUT;
	}
	set_watch(b, c->fd, &c->watched, ev, &c->tok);
}

static void close_host(struct vsock_bridge *b, struct vsock_conn *c)
{
	if (c->fd < 0)
		return;
	set_watch(b, c->fd, &c->watched, 0, &c->tok);
	close(c->fd);
	c->fd = -1;
	c->readable = false;
}

static void free_conn(struct vsock_bridge *b, struct vsock_conn *c)
{
	if (c->state == CONN_FREE)
		return;
	close_host(b, c);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->tok.b = b;
	b->nr_conns--;
}

/* Close the host side and owe the guest an RST (unless it never heard of
 * the connection); the slot goes when the RST is out. */
static void kill_conn(struct vsock_bridge *b, struct vsock_conn *c)
{
	bool guest_knows = c->state == CONN_ESTABLISHED || c->state == CONN_REQUEST_SENT;

	if (!guest_knows || (c->state == CONN_REQUEST_SENT && c->want_request)) {
		free_conn(b, c);
		return;
	}
	close_host(b, c);
	c->state = CONN_DYING;
	c->want_rst = true;
	c->want_request = c->want_response = c->want_credit_update = false;
	c->want_shutdown = 0;
	free(c->buf);
	c->buf = NULL;
	c->buf_len = 0;
}

static struct vsock_conn *find_conn(struct vsock_bridge *b, uint32_t local, uint32_t peer)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &b->conns[i];

		if (c->state != CONN_FREE && c->state != CONN_CONNECT_LINE &&
		    c->local_port == local && c->peer_port == peer)
			return c;
	}
	return NULL;
}

static struct vsock_conn *alloc_conn(struct vsock_bridge *b)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &b->conns[i];

		if (c->state == CONN_FREE) {
			b->nr_conns++;
			c->fd = -1;
			return c;
		}
	}
	return NULL;
}

static void queue_rst(struct vsock_bridge *b, uint32_t src_port, uint32_t dst_port)
{
	if (b->rst_len == VSOCK_RST_BACKLOG)
		return;		/* the guest times out instead */
	b->rst[(b->rst_head + b->rst_len) % VSOCK_RST_BACKLOG] =
		(struct rst_entry){ .src_port = src_port, .dst_port = dst_port };
	b->rst_len++;
}

static size_t iov_total(const struct iovec *iov, unsigned n)
{
	size_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* Describe [off, off+len) of iov as up to max entries of out; returns the count. */
static unsigned iov_slice(struct iovec *out, unsigned max, const struct iovec *iov, unsigned n,
			  size_t off, size_t len)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && k < max && len; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		out[k++] = (struct iovec){ .iov_base = (uint8_t *)iov[i].iov_base + off, .iov_len = l };
		len -= l;
		off = 0;
	}
	return k;
}

static void iov_put(const struct iovec *iov, unsigned n, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (unsigned i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len < len ? iov[i].iov_len : len;

		memcpy(iov[i].iov_base, p, l);
		p += l;
		len -= l;
	}
}

/* ---- guest -> host bytes ---- */

/* writev without SIGPIPE: a host peer that went away is an error here. */
static ssize_t send_iov(int fd, struct iovec *iov, unsigned n)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = n };

	return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void maybe_credit_update(struct vsock_conn *c)
{
	uint32_t unreported = c->fwd_cnt - c->fwd_cnt_sent;
	uint32_t guest_view = VSOCK_CONN_BUF_ALLOC - (c->rx_cnt - c->fwd_cnt_sent);

	if (c->state != CONN_ESTABLISHED || !unreported)
		return;
	if (unreported >= VSOCK_CREDIT_THRESH || guest_view < VSOCK_CREDIT_THRESH)
		c->want_credit_update = true;
}

/* Guest-shut writing and everything written: pass the half-close on. */
static void maybe_shut_host(struct vsock_bridge *b, struct vsock_conn *c)
{
	if (c->guest_no_send && !c->buf_len && !c->host_wr_shut && c->fd >= 0) {
		(void)shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	if (c->guest_no_send && c->guest_no_rcv && !c->buf_len)
		kill_conn(b, c);	/* the guest closed: RST ends it (5.10.6.6) */
}

/* Write the ring buffer to the host socket; false if the connection died. */
static bool flush_buf(struct vsock_bridge *b, struct vsock_conn *c)
{
	while (c->buf_len) {
		uint32_t first = VSOCK_CONN_BUF_ALLOC - c->buf_head;
		struct iovec iov[2] = {
			{ c->buf + c->buf_head, first < c->buf_len ? first : c->buf_len },
			{ c->buf, first < c->buf_len ? c->buf_len - first : 0 },
		};
		ssize_t n = send_iov(c->fd, iov, iov[1].iov_len ? 2 : 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			kill_conn(b, c);
			return false;
		}
		c->buf_head = (uint32_t)((c->buf_head + (size_t)n) % VSOCK_CONN_BUF_ALLOC);
		c->buf_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (!c->buf_len) {
		free(c->buf);
		c->buf = NULL;
		c->buf_head = 0;
	}
	maybe_credit_update(c);
	return true;
}

static void guest_data(struct vsock_bridge *b, struct vsock_conn *c, const struct iovec *iov,
		       unsigned niov, uint32_t len)
{
	size_t done = 0;

	if (c->state != CONN_ESTABLISHED || c->guest_no_send ||
	    (uint64_t)(c->rx_cnt - c->fwd_cnt) + len > VSOCK_CONN_BUF_ALLOC) {
		kill_conn(b, c);	/* data out of place, or beyond the credit given */
		return;
	}
	c->rx_cnt += len;
	if (!c->buf_len) {
		while (done < len) {
			struct iovec part[MAX_IOV];
			unsigned k = iov_slice(part, MAX_IOV, iov, niov, done, len - done);
			ssize_t n = send_iov(c->fd, part, k);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n <= 0) {
				kill_conn(b, c);
				return;
			}
			done += (size_t)n;
			c->fwd_cnt += (uint32_t)n;
		}
	}
	if (done < len) {
		size_t left = len - done;

		if (!c->buf) {
			c->buf = malloc(VSOCK_CONN_BUF_ALLOC);
			if (!c->buf) {
				kill_conn(b, c);
				return;
			}
			c->buf_head = 0;
		}
		/* Fits: buf_len <= rx_cnt - fwd_cnt <= VSOCK_CONN_BUF_ALLOC. */
		while (left) {
			uint32_t tail = (c->buf_head + c->buf_len) % VSOCK_CONN_BUF_ALLOC;
			uint32_t room = VSOCK_CONN_BUF_ALLOC - tail;
			struct iovec part[1];
			size_t l = left < room ? left : room;

			if (!iov_slice(part, 1, iov, niov, done, l))
				break;
			l = part[0].iov_len;
			memcpy(c->buf + tail, part[0].iov_base, l);
			c->buf_len += (uint32_t)l;
			done += l;
			left -= l;
		}
	}
	maybe_credit_update(c);
}

/* ---- guest-initiated connections ---- */

static int connect_host(struct vsock_bridge *b, uint32_t port)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, n;

	if (!b->path)
		return -ENOENT;
	n = snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", b->path, port);
	if (n < 0 || (size_t)n >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A unix connect completes at once or fails (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void guest_request(struct vsock_bridge *b, const struct vsock_hdr *h)
{
	struct vsock_conn *c;
	int fd;

	if (find_conn(b, h->dst_port, h->src_port)) {
		queue_rst(b, h->dst_port, h->src_port);	/* a duplicate */
		return;
	}
	if (b->nr_conns >= VSOCK_MAX_CONNS) {
		queue_rst(b, h->dst_port, h->src_port);
		return;
	}
	fd = connect_host(b, h->dst_port);
	if (fd < 0) {
		queue_rst(b, h->dst_port, h->src_port);
		return;
	}
	c = alloc_conn(b);
	c->fd = fd;
	c->state = CONN_ESTABLISHED;
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->want_response = true;
	update_watch(b, c);
}

/* ---- packets from the guest ---- */

void vsock_bridge_tx(struct vsock_bridge *b, const struct vsock_hdr *h, const struct iovec *iov,
		     unsigned niov)
{
	struct vsock_conn *c;
	char ok[32];
	int n;

	if (h->op == VSOCK_OP_REQUEST) {
		guest_request(b, h);
		return;
	}
	c = find_conn(b, h->dst_port, h->src_port);
	if (!c) {
		if (h->op != VSOCK_OP_RST)
			queue_rst(b, h->dst_port, h->src_port);
		return;
	}
	if (c->state == CONN_DYING) {
		if (h->op == VSOCK_OP_RST)
			free_conn(b, c);	/* both sides reset: nothing owed */
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state != CONN_REQUEST_SENT || c->want_request) {
			kill_conn(b, c);
			break;
		}
		n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
		/* A fresh socket's send buffer takes a short line whole. */
		if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL) != n) {
			kill_conn(b, c);
			break;
		}
		c->state = CONN_ESTABLISHED;
		c->deadline_ms = 0;
		break;
	case VSOCK_OP_RST:
		free_conn(b, c);
		return;
	case VSOCK_OP_SHUTDOWN:
		if (h->flags & VSOCK_SHUTDOWN_SEND)
			c->guest_no_send = true;
		if (h->flags & VSOCK_SHUTDOWN_RCV)
			c->guest_no_rcv = true;
		if (c->state == CONN_REQUEST_SENT) {
			kill_conn(b, c);
			break;
		}
		maybe_shut_host(b, c);
		break;
	case VSOCK_OP_RW:
		guest_data(b, c, iov, niov, h->len);
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		if (c->state == CONN_ESTABLISHED)
			c->want_credit_update = true;
		break;
	case VSOCK_OP_CREDIT_UPDATE:
	default:
		break;		/* the peer numbers above are the update */
	}
	if (c->state != CONN_FREE)
		update_watch(b, c);
}

void vsock_bridge_tx_refuse(struct vsock_bridge *b, const struct vsock_hdr *h)
{
	struct vsock_conn *c = find_conn(b, h->dst_port, h->src_port);

	if (h->op == VSOCK_OP_RST)
		return;
	if (c && c->state != CONN_DYING)
		kill_conn(b, c);
	else if (c)
		return;
	else
		queue_rst(b, h->dst_port, h->src_port);
}

/* ---- packets to the guest ---- */

static bool conn_has_rx(const struct vsock_conn *c)
{
	return c->state != CONN_FREE && c->state != CONN_CONNECT_LINE &&
	       (wants_control(c) || (c->readable && can_read_host(c)));
}

bool vsock_bridge_rx_pending(const struct vsock_bridge *b)
{
	if (b->rst_len)
		return true;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		if (conn_has_rx(&b->conns[i]))
			return true;
	return false;
}

static void fill_hdr(const struct vsock_bridge *b, struct vsock_hdr *h, uint32_t src,
		     uint32_t dst, uint16_t op)
{
	*h = (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID, .dst_cid = b->guest_cid, .src_port = src, .dst_port = dst,
		.type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = VSOCK_CONN_BUF_ALLOC,
	};
}

static size_t put_hdr(const struct iovec *iov, unsigned niov, const struct vsock_hdr *h)
{
	uint8_t raw[VSOCK_HDR_SIZE];

	vsock_hdr_encode(raw, h);
	iov_put(iov, niov, raw, sizeof(raw));
	return VSOCK_HDR_SIZE;
}

/* One control packet of c, or 0. */
static size_t conn_control(struct vsock_bridge *b, struct vsock_conn *c, struct vsock_hdr *h)
{
	uint16_t op;

	if (c->want_rst)
		op = VSOCK_OP_RST;
	else if (c->want_request)
		op = VSOCK_OP_REQUEST;
	else if (c->want_response)
		op = VSOCK_OP_RESPONSE;
	else if (c->want_shutdown)
		op = VSOCK_OP_SHUTDOWN;
	else if (c->want_credit_update)
		op = VSOCK_OP_CREDIT_UPDATE;
	else
		return 0;
	fill_hdr(b, h, c->local_port, c->peer_port, op);
	h->fwd_cnt = c->fwd_cnt;
	switch (op) {
	case VSOCK_OP_RST:
		c->want_rst = false;
		break;
	case VSOCK_OP_REQUEST:
		c->want_request = false;
		/* The guest has it now: it answers in time or the host hears no. */
		c->deadline_ms = monotonic_ms() + VSOCK_RESPONSE_MS;
		break;
	case VSOCK_OP_RESPONSE:
		c->want_response = false;
		break;
	case VSOCK_OP_SHUTDOWN:
		h->flags = c->want_shutdown;
		c->want_shutdown = 0;
		break;
	default:
		c->want_credit_update = false;
		break;
	}
	c->fwd_cnt_sent = c->fwd_cnt;
	return 1;
}

/* Read host bytes into the buffer after the header: payload length, or 0. */
static size_t conn_data(struct vsock_bridge *b, struct vsock_conn *c, const struct iovec *iov,
			unsigned niov, size_t room, struct vsock_hdr *h)
{
	struct iovec part[MAX_IOV];
	size_t want = room;
	uint32_t credit = peer_credit(c);
	unsigned k;
	ssize_t n;

	if (want > credit)
		want = credit;
	if (want > VSOCK_MAX_PAYLOAD)
		want = VSOCK_MAX_PAYLOAD;
	k = iov_slice(part, MAX_IOV, iov, niov, VSOCK_HDR_SIZE, want);
	if (!k)
		return 0;
	do
		n = readv(c->fd, part, (int)k);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->readable = false;
		update_watch(b, c);
		return 0;
	}
	if (n < 0) {
		kill_conn(b, c);
		return 0;	/* the RST goes on the next call */
	}
	if (n == 0) {
		/* The host will send no more: tell the guest (half-close). */
		c->readable = false;
		c->host_eof = true;
		c->want_shutdown |= VSOCK_SHUTDOWN_SEND;
		update_watch(b, c);
		return 0;
	}
	fill_hdr(b, h, c->local_port, c->peer_port, VSOCK_OP_RW);
	h->len = (uint32_t)n;
	h->fwd_cnt = c->fwd_cnt;
	c->fwd_cnt_sent = c->fwd_cnt;
	c->tx_cnt += (uint32_t)n;
	if (!can_read_host(c))
		update_watch(b, c);
	return (size_t)n;
}

size_t vsock_bridge_rx(struct vsock_bridge *b, const struct iovec *iov, unsigned niov)
{
	size_t cap = iov_total(iov, niov);
	struct vsock_hdr h;

	if (cap < VSOCK_HDR_SIZE)
		return 0;
	if (b->rst_len) {
		struct rst_entry *e = &b->rst[b->rst_head];

		fill_hdr(b, &h, e->src_port, e->dst_port, VSOCK_OP_RST);
		b->rst_head = (b->rst_head + 1) % VSOCK_RST_BACKLOG;
		b->rst_len--;
		return put_hdr(iov, niov, &h);
	}
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &b->conns[(b->rr + i) % VSOCK_MAX_CONNS];
		size_t n;

		if (!conn_has_rx(c))
			continue;
		if (conn_control(b, c, &h)) {
			if (h.op == VSOCK_OP_RST && c->state == CONN_DYING)
				free_conn(b, c);
			else if (c->state != CONN_FREE)
				update_watch(b, c);
			b->rr = (b->rr + i + 1) % VSOCK_MAX_CONNS;
			return put_hdr(iov, niov, &h);
		}
		if (cap == VSOCK_HDR_SIZE)
			continue;
		n = conn_data(b, c, iov, niov, cap - VSOCK_HDR_SIZE, &h);
		if (n) {
			b->rr = (b->rr + i + 1) % VSOCK_MAX_CONNS;
			return put_hdr(iov, niov, &h) + n;
		}
		/* EOF or error queued a control packet: send it now. */
		if (c->state != CONN_FREE && conn_control(b, c, &h)) {
			if (h.op == VSOCK_OP_RST && c->state == CONN_DYING)
				free_conn(b, c);
			b->rr = (b->rr + i + 1) % VSOCK_MAX_CONNS;
			return put_hdr(iov, niov, &h);
		}
	}
	return 0;
}

/* ---- host side events ---- */

static void accept_host(struct vsock_bridge *b)
{
	for (;;) {
		struct vsock_conn *c;
		int fd = accept4(b->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;		/* EAGAIN, or an error the next event retries */
		if (!b->active || b->nr_conns >= VSOCK_MAX_CONNS) {
			close(fd);	/* no guest, or too many: refused */
			continue;
		}
		c = alloc_conn(b);
		c->fd = fd;
		c->state = CONN_CONNECT_LINE;
		c->deadline_ms = monotonic_ms() + VSOCK_CONNECT_LINE_MS;
		update_watch(b, c);
	}
}

static uint32_t fresh_port(struct vsock_bridge *b, uint32_t peer)
{
	for (;;) {
		uint32_t p = b->next_port++;

		if (b->next_port < HOST_PORT_FIRST || b->next_port == UINT32_MAX)
			b->next_port = HOST_PORT_FIRST;
		if (!find_conn(b, p, peer))
			return p;
	}
}

/* "CONNECT <port>\n", read a byte at a time: no byte after the newline is
 * taken, and all that is there is consumed (a level-triggered loop would
 * spin on a partial line left in the socket). */
static void read_connect_line(struct vsock_bridge *b, struct vsock_conn *c)
{
	unsigned long port;
	char *end;

	for (;;) {
		char ch;
		ssize_t n = recv(c->fd, &ch, 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0 || c->line_len == CONNECT_LINE_MAX - 1) {
			free_conn(b, c);	/* gone, or no line: not a client of ours */
			return;
		}
		if (ch == '\n')
			break;
		c->line[c->line_len++] = ch;
	}
	if (c->line_len && c->line[c->line_len - 1] == '\r')
		c->line_len--;
	c->line[c->line_len] = 0;
	errno = 0;
	if (strncmp(c->line, "CONNECT ", 8) ||
	    (port = strtoul(c->line + 8, &end, 10), errno || end == c->line + 8 || *end ||
	     c->line[8] < '0' || c->line[8] > '9' || port > UINT32_MAX)) {
		free_conn(b, c);
		return;
	}
	c->peer_port = (uint32_t)port;
	c->local_port = fresh_port(b, c->peer_port);
	c->state = CONN_REQUEST_SENT;
	c->want_request = true;
	c->deadline_ms = 0;	/* until the REQUEST reaches the guest */
	update_watch(b, c);
}

void *vsock_bridge_token_opaque(void *token)
{
	return ((struct watch_token *)token)->b->opaque;
}

void vsock_bridge_event(void *token, uint32_t events)
{
	struct watch_token *t = token;
	struct vsock_bridge *b = t->b;
	struct vsock_conn *c;

	if (t == &b->listen_tok) {
		accept_host(b);
		return;
	}
	c = (struct vsock_conn *)(void *)t;	/* the token is its first member */
	if (c->state == CONN_FREE || c->fd < 0)
		return;
	if (c->state == CONN_CONNECT_LINE) {
		read_connect_line(b, c);
		return;
	}
	if (c->state != CONN_ESTABLISHED)
		return;
	if ((events & EPOLLOUT) || ((events & (EPOLLERR | EPOLLHUP)) && c->buf_len)) {
		if (!flush_buf(b, c))
			return;
		maybe_shut_host(b, c);
		if (c->state != CONN_ESTABLISHED)
			return;
	}
	/* Readable (or hung up): the rx side reads it when the guest has a
	 * buffer; meanwhile stop watching, so a level-triggered loop idles. */
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && can_read_host(c))
		c->readable = true;
	update_watch(b, c);
}

/* ---- life cycle ---- */

static int listen_on(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path) - 12) {	/* room for "_<port>" */
		snprintf(err, errlen, "uds=%s: the path is too long for a unix socket", path);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	(void)unlink(path);	/* a stale socket of an earlier run */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 64)) {
		int e = errno;

		snprintf(err, errlen, "uds=%s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

int vsock_bridge_create(struct vsock_bridge **out, uint64_t guest_cid, const char *path,
			const struct vsock_bridge_ops *ops, void *opaque, char *err, size_t errlen)
{
	struct vsock_bridge *b = calloc(1, sizeof(*b));
	int ret;

	*out = NULL;
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->guest_cid = guest_cid;
	b->ops = ops;
	b->opaque = opaque;
	b->listen_fd = -1;
	b->listen_tok.b = b;
	b->next_port = HOST_PORT_FIRST;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		b->conns[i].fd = -1;
		b->conns[i].tok.b = b;
	}
	if (path) {
		b->path = strdup(path);
		if (!b->path) {
			ret = -ENOMEM;
			goto fail;
		}
		ret = listen_on(path, err, errlen);
		if (ret < 0)
			goto fail;
		b->listen_fd = ret;
		set_watch(b, b->listen_fd, &b->listen_watched, EPOLLIN, &b->listen_tok);
	}
	*out = b;
	return 0;
fail:
	vsock_bridge_destroy(b);
	return ret;
}

void vsock_bridge_destroy(struct vsock_bridge *b)
{
	if (!b)
		return;
	vsock_bridge_drop_all(b);
	if (b->listen_fd >= 0) {
		set_watch(b, b->listen_fd, &b->listen_watched, 0, &b->listen_tok);
		close(b->listen_fd);
		(void)unlink(b->path);
	}
	free(b->path);
	free(b);
}

void vsock_bridge_set_active(struct vsock_bridge *b, bool active)
{
	b->active = active;
}

void vsock_bridge_drop_all(struct vsock_bridge *b)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		free_conn(b, &b->conns[i]);
	b->rst_head = b->rst_len = 0;
}

unsigned vsock_bridge_nr_conns(const struct vsock_bridge *b)
{
	return b->nr_conns;
}

int vsock_bridge_expire(struct vsock_bridge *b, int64_t now_ms)
{
	int64_t next = -1;

	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &b->conns[i];

		if (!c->deadline_ms ||
		    (c->state != CONN_CONNECT_LINE && c->state != CONN_REQUEST_SENT))
			continue;
		if (now_ms >= c->deadline_ms) {
			/* A silent client is closed; a guest that did not
			 * answer gets an RST for the REQUEST it was sent. */
			b->expired++;
			kill_conn(b, c);
			continue;
		}
		if (next < 0 || c->deadline_ms - now_ms < next)
			next = c->deadline_ms - now_ms;
	}
	return next < 0 ? -1 : (int)(next > INT32_MAX ? INT32_MAX : next);
}

uint64_t vsock_bridge_nr_expired(const struct vsock_bridge *b)
{
	return b->expired;
}
