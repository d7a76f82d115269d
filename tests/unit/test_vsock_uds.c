/* The vsock unix-socket bridge without KVM: packet header checks, and the
 * connection table driven directly (vsock_bridge_tx for guest packets,
 * vsock_bridge_rx into a plain buffer for packets to the guest) against real
 * unix sockets in a temporary directory, with poll() standing in for the
 * main loop. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/evloop.h"
#include "base/log.h"
#include "devices/virtio/vsock/conn.h"
#include "devices/virtio/vsock/packet.h"
#include "devices/virtio/vsock/vsock.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"

#define CID		42
#define GUEST_PORT	1234
#define MAX_WATCH	(VSOCK_MAX_CONNS + 2)

/* ---- a fake main loop ---- */

struct watched {
	int fd;
	uint32_t events;
	void *token;
};

static struct watched watches[MAX_WATCH];

static int fake_watch(void *opaque, int fd, uint32_t old, uint32_t events, void *token)
{
	(void)opaque;
	(void)old;
	for (unsigned i = 0; i < MAX_WATCH; i++) {
		if (watches[i].token == token && watches[i].fd == fd) {
			watches[i].events = events;
			if (!events)
				watches[i] = (struct watched){ .fd = -1 };
			return 0;
		}
	}
	if (!events)
		return 0;
	for (unsigned i = 0; i < MAX_WATCH; i++) {
		if (!watches[i].token) {
			watches[i] = (struct watched){ .fd = fd, .events = events, .token = token };
			return 0;
		}
	}
	return -ENOSPC;
}

static const struct vsock_bridge_ops fake_ops = { .watch = fake_watch };

static bool watching(int fd, uint32_t ev)
{
	for (unsigned i = 0; i < MAX_WATCH; i++)
		if (watches[i].token && watches[i].fd == fd)
			return (watches[i].events & ev) != 0;
	return false;
}

/* One round of the main loop: dispatch whatever is ready. */
static void pump(void)
{
	struct pollfd p[MAX_WATCH];
	struct watched w[MAX_WATCH];
	unsigned n = 0;

	for (unsigned i = 0; i < MAX_WATCH; i++) {
		if (!watches[i].token)
			continue;
		w[n] = watches[i];
		p[n] = (struct pollfd){ .fd = watches[i].fd,
					.events = (short)((watches[i].events & EPOLLIN ? POLLIN : 0) |
							  (watches[i].events & EPOLLOUT ? POLLOUT : 0)) };
		n++;
	}
	if (poll(p, n, 50) <= 0)
		return;
	for (unsigned i = 0; i < n; i++) {
		uint32_t ev = 0;

		if (p[i].revents & POLLIN)
			ev |= EPOLLIN;
		if (p[i].revents & POLLOUT)
			ev |= EPOLLOUT;
		if (p[i].revents & POLLHUP)
			ev |= EPOLLHUP;
		if (p[i].revents & POLLERR)
			ev |= EPOLLERR;
		if (ev)
			vsock_bridge_event(w[i].token, ev);
	}
}

/* ---- fixture ---- */

static char dir[40], path[64];
static struct vsock_bridge *br;

static void setup(void)
{
	char err[256] = "";

	for (unsigned i = 0; i < MAX_WATCH; i++)
		watches[i] = (struct watched){ .fd = -1 };
	strcpy(dir, "/tmp/ember-vsock-uds-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	ck_assert_int_eq(vsock_bridge_create(&br, CID, path, &fake_ops, NULL, err, sizeof(err)), 0);
	vsock_bridge_set_active(br, true);
}

static void teardown(void)
{
	char p[160];

	vsock_bridge_destroy(br);
	for (unsigned port = 5000; port < 5010; port++) {
		snprintf(p, sizeof(p), "%s_%u", path, port);
		unlink(p);
	}
	rmdir(dir);
}

/* ---- guest side helpers ---- */

static struct vsock_hdr ghdr(uint16_t op, uint32_t dst_port, uint32_t len)
{
	return (struct vsock_hdr){
		.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = GUEST_PORT,
		.dst_port = dst_port, .len = len, .type = VSOCK_TYPE_STREAM, .op = op,
		.buf_alloc = 256 * 1024,
	};
}

static void gsend(uint16_t op, uint32_t dst_port, const void *data, uint32_t len, uint32_t fwd)
{
	struct vsock_hdr h = ghdr(op, dst_port, len);
	struct iovec iov = { (void *)data, len };

	h.fwd_cnt = fwd;
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE + len, CID), VSOCK_PKT_OK);
	vsock_bridge_tx(br, &h, &iov, len ? 1 : 0);
}

static uint8_t rxbuf[VSOCK_HDR_SIZE + 4096];

/* Next packet to the guest (header in *h, payload in rxbuf after it), or false. */
static bool grecv(struct vsock_hdr *h)
{
	struct iovec iov[2] = { { rxbuf, 10 }, { rxbuf + 10, sizeof(rxbuf) - 10 } };	/* split header */
	size_t n;

	for (int i = 0; i < 20 && !vsock_bridge_rx_pending(br); i++)
		pump();
	n = vsock_bridge_rx(br, iov, 2);
	if (!n)
		return false;
	vsock_hdr_decode(h, rxbuf);
	ck_assert_uint_eq(n, VSOCK_HDR_SIZE + h->len);
	ck_assert_uint_eq(h->src_cid, VSOCK_HOST_CID);
	ck_assert_uint_eq(h->dst_cid, CID);
	ck_assert_uint_eq(h->type, VSOCK_TYPE_STREAM);
	return true;
}

static int listen_port(unsigned port)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", path, port);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 128), 0);
	return fd;
}

/* Guest connects to port 5000; returns the host's accepted socket. */
static int guest_connect(int lfd)
{
	struct vsock_hdr h;
	int c;

	gsend(VSOCK_OP_REQUEST, 5000, NULL, 0, 0);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_RESPONSE);
	ck_assert_uint_eq(h.src_port, 5000);
	ck_assert_uint_eq(h.dst_port, GUEST_PORT);
	ck_assert_uint_eq(h.buf_alloc, VSOCK_CONN_BUF_ALLOC);
	c = accept(lfd, NULL, NULL);
	ck_assert_int_ge(c, 0);
	return c;
}

/* ---- tests ---- */

static uint32_t rd_le32_at(const uint8_t *p, unsigned off)
{
	return (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
	       (uint32_t)p[off + 3] << 24;
}

START_TEST(test_header_checks)
{
	struct vsock_hdr h = ghdr(VSOCK_OP_RW, 5000, 100);
	uint8_t raw[VSOCK_HDR_SIZE], raw2[VSOCK_HDR_SIZE];
	struct vsock_hdr back;

	h.flags = 0x01020304;
	h.fwd_cnt = 0xa0b0c0d0;
	vsock_hdr_encode(raw, &h);
	vsock_hdr_decode(&back, raw);
	vsock_hdr_encode(raw2, &back);
	ck_assert(memcmp(raw, raw2, sizeof(raw)) == 0);
	ck_assert_uint_eq(back.src_cid, CID);
	ck_assert_uint_eq(back.fwd_cnt, 0xa0b0c0d0);
	ck_assert_uint_eq(rd_le32_at(raw, 24), 100);	/* len at offset 24 (5.10.6) */
	h.flags = 0;
	h.fwd_cnt = 0;
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE + 100, CID), VSOCK_PKT_OK);
	/* len beyond the chain, short chains, huge len */
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE + 99, CID), VSOCK_PKT_DROP);
	ck_assert_int_eq(vsock_hdr_check(&h, 10, CID), VSOCK_PKT_DROP);
	h.len = 0xffffffff;
	ck_assert_int_eq(vsock_hdr_check(&h, SIZE_MAX, CID), VSOCK_PKT_DROP);
	/* spoofed source, wrong destination */
	h = ghdr(VSOCK_OP_RW, 5000, 0);
	h.src_cid = CID + 1;
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE, CID), VSOCK_PKT_DROP);
	h = ghdr(VSOCK_OP_RW, 5000, 0);
	h.dst_cid = 7;
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE, CID), VSOCK_PKT_DROP);
	/* SEQPACKET and unknown ops: RST; control packets with payload: drop */
	h = ghdr(VSOCK_OP_REQUEST, 5000, 0);
	h.type = VSOCK_TYPE_SEQPACKET;
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE, CID), VSOCK_PKT_RST);
	h = ghdr(99, 5000, 0);
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE, CID), VSOCK_PKT_RST);
	h = ghdr(VSOCK_OP_INVALID, 5000, 0);
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE, CID), VSOCK_PKT_RST);
	h = ghdr(VSOCK_OP_REQUEST, 5000, 4);
	ck_assert_int_eq(vsock_hdr_check(&h, VSOCK_HDR_SIZE + 4, CID), VSOCK_PKT_DROP);
	/* credit arithmetic, wrapping and nonsense */
	ck_assert_uint_eq(vsock_peer_credit(1000, 0, 0), 1000);
	ck_assert_uint_eq(vsock_peer_credit(1000, 100, 600), 500);
	ck_assert_uint_eq(vsock_peer_credit(1000, 0xfffffff0, 0x10), 968);
	ck_assert_uint_eq(vsock_peer_credit(1000, 0, 2000), 0);
	ck_assert_uint_eq(vsock_peer_credit(1000, 500, 100), 0);	/* fwd_cnt ahead */
}
END_TEST

START_TEST(test_guest_initiated_data_both_ways)
{
	int lfd = listen_port(5000), c;
	struct vsock_hdr h;
	char buf[64];

	c = guest_connect(lfd);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 1);
	gsend(VSOCK_OP_RW, 5000, "hello host", 10, 0);
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 10);
	ck_assert(memcmp(buf, "hello host", 10) == 0);
	ck_assert_int_eq(write(c, "hello guest", 11), 11);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_RW);
	ck_assert_uint_eq(h.len, 11);
	ck_assert_uint_eq(h.fwd_cnt, 10);
	ck_assert(memcmp(rxbuf + VSOCK_HDR_SIZE, "hello guest", 11) == 0);
	/* Host half-close: SHUTDOWN(SEND) to the guest. */
	shutdown(c, SHUT_WR);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_SHUTDOWN);
	ck_assert_uint_eq(h.flags, VSOCK_SHUTDOWN_SEND);
	/* The guest still talks, then closes: host sees the bytes, EOF, and RST goes out. */
	gsend(VSOCK_OP_RW, 5000, "bye", 3, 11);
	gsend(VSOCK_OP_SHUTDOWN, 5000, NULL, 0, 11);
	{
		struct vsock_hdr sh = ghdr(VSOCK_OP_SHUTDOWN, 5000, 0);

		sh.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
		vsock_bridge_tx(br, &sh, NULL, 0);
	}
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 3);
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 0);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 0);
	close(c);
	close(lfd);
}
END_TEST

START_TEST(test_host_initiated)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	struct vsock_hdr h, r;
	char buf[64] = "";
	ssize_t n;

	strcpy(a.sun_path, path);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	/* Data after the line waits for the connection. */
	ck_assert_int_eq(write(c, "CONNECT 5001\nearly", 18), 18);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_REQUEST);
	ck_assert_uint_eq(h.dst_port, 5001);
	ck_assert_uint_ge(h.src_port, 1u << 30);
	r = (struct vsock_hdr){ .src_cid = CID, .dst_cid = 2, .src_port = 5001, .dst_port = h.src_port,
				.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RESPONSE, .buf_alloc = 4096 };
	vsock_bridge_tx(br, &r, NULL, 0);
	n = read(c, buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = 0;
	snprintf((char *)rxbuf, 32, "OK %u\n", h.src_port);
	ck_assert_str_eq(buf, (char *)rxbuf);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_RW);
	ck_assert_uint_eq(h.len, 5);
	ck_assert(memcmp(rxbuf + VSOCK_HDR_SIZE, "early", 5) == 0);
	/* Guest RST: the host sees EOF. */
	r.op = VSOCK_OP_RST;
	vsock_bridge_tx(br, &r, NULL, 0);
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 0);
	close(c);
}
END_TEST

START_TEST(test_host_connect_refused_by_guest)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int c = socket(AF_UNIX, SOCK_STREAM, 0), bad = socket(AF_UNIX, SOCK_STREAM, 0);
	struct vsock_hdr h, r;
	char buf[16];

	strcpy(a.sun_path, path);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(connect(bad, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(write(c, "CONN", 4), 4);	/* a line in pieces */
	pump();
	ck_assert(!vsock_bridge_rx_pending(br));
	ck_assert_int_eq(write(c, "ECT 77\n", 7), 7);
	ck_assert_int_eq(write(bad, "HELLO 77\n", 9), 9);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_REQUEST);
	ck_assert(!grecv(&r));		/* the bad line makes nothing */
	ck_assert_int_eq(read(bad, buf, sizeof(buf)), 0);
	r = (struct vsock_hdr){ .src_cid = CID, .dst_cid = 2, .src_port = 77, .dst_port = h.src_port,
				.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST };
	vsock_bridge_tx(br, &r, NULL, 0);
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 0);
	close(c);
	close(bad);
}
END_TEST

START_TEST(test_deadlines)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int silent = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
	struct vsock_hdr h;
	char buf[16];
	int64_t now;

	strcpy(a.sun_path, path);
	ck_assert_int_eq(connect(silent, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(write(c, "CONNECT 78\n", 11), 11);
	ck_assert(grecv(&h));	/* the REQUEST reaches the guest: its clock starts */
	ck_assert_uint_eq(h.op, VSOCK_OP_REQUEST);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 2);
	now = monotonic_ms();
	/* Nothing is due yet; the next deadline is the REQUEST's. */
	ck_assert_int_le(vsock_bridge_expire(br, now), VSOCK_RESPONSE_MS);
	ck_assert_int_gt(vsock_bridge_expire(br, now), 0);
	ck_assert_uint_eq(vsock_bridge_nr_expired(br), 0);
	/* The unanswered REQUEST: host socket closed, the guest gets an RST. */
	ck_assert_int_le(vsock_bridge_expire(br, now + VSOCK_RESPONSE_MS + 10),
			 VSOCK_CONNECT_LINE_MS);
	ck_assert_uint_eq(vsock_bridge_nr_expired(br), 1);
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 0);
	ck_assert(grecv(&h));
	ck_assert_uint_eq(h.op, VSOCK_OP_RST);
	ck_assert_uint_eq(h.dst_port, 78);
	/* The client that never sent its line is closed; nothing is left. */
	ck_assert_int_eq(vsock_bridge_expire(br, now + VSOCK_CONNECT_LINE_MS + 10), -1);
	ck_assert_uint_eq(vsock_bridge_nr_expired(br), 2);
	ck_assert_int_eq(read(silent, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 0);
	close(c);
	close(silent);
}
END_TEST

START_TEST(test_credit_exhaustion_stops_reads)
{
	int lfd = listen_port(5000), c;
	static char big[8192];
	struct vsock_hdr h = ghdr(VSOCK_OP_REQUEST, 5000, 0), p;
	uint32_t got = 0;

	h.buf_alloc = 3000;	/* the guest takes 3000 bytes at most */
	vsock_bridge_tx(br, &h, NULL, 0);
	ck_assert(grecv(&p));
	ck_assert_uint_eq(p.op, VSOCK_OP_RESPONSE);
	c = accept(lfd, NULL, NULL);
	memset(big, 'z', sizeof(big));
	ck_assert_int_eq(write(c, big, sizeof(big)), (ssize_t)sizeof(big));
	while (grecv(&p)) {
		ck_assert_uint_eq(p.op, VSOCK_OP_RW);
		got += p.len;
	}
	ck_assert_uint_eq(got, 3000);
	ck_assert(!vsock_bridge_rx_pending(br));
	ck_assert(!watching(c, EPOLLIN));	/* not even polled: the kernel holds the rest */
	/* CREDIT_UPDATE: the guest consumed 2000. */
	h = ghdr(VSOCK_OP_CREDIT_UPDATE, 5000, 0);
	h.buf_alloc = 3000;
	h.fwd_cnt = 2000;
	vsock_bridge_tx(br, &h, NULL, 0);
	ck_assert(vsock_bridge_rx_pending(br) || watching(c, EPOLLIN));
	while (grecv(&p))
		got += p.len;
	ck_assert_uint_eq(got, 5000);
	close(c);
	close(lfd);
}
END_TEST

START_TEST(test_credit_request_and_update)
{
	int lfd = listen_port(5000), c = guest_connect(lfd);
	static char big[VSOCK_MAX_PAYLOAD];
	struct vsock_hdr p;
	char sink[65536];
	uint32_t fwd = 0;

	gsend(VSOCK_OP_CREDIT_REQUEST, 5000, NULL, 0, 0);
	ck_assert(grecv(&p));
	ck_assert_uint_eq(p.op, VSOCK_OP_CREDIT_UPDATE);
	ck_assert_uint_eq(p.buf_alloc, VSOCK_CONN_BUF_ALLOC);
	ck_assert_uint_eq(p.fwd_cnt, 0);
	/* The host reads as the guest sends: after VSOCK_CREDIT_THRESH of
	 * progress the bridge volunteers an update. */
	for (int i = 0; i < 2; i++) {
		gsend(VSOCK_OP_RW, 5000, big, sizeof(big), 0);
		while (fwd < (uint32_t)(i + 1) * sizeof(big)) {
			ssize_t n = read(c, sink, sizeof(sink));

			ck_assert_int_gt(n, 0);
			fwd += (uint32_t)n;
		}
	}
	ck_assert(grecv(&p));
	ck_assert_uint_eq(p.op, VSOCK_OP_CREDIT_UPDATE);
	ck_assert_uint_eq(p.fwd_cnt, 2 * sizeof(big));
	close(c);
	close(lfd);
}
END_TEST

START_TEST(test_guest_overruns_credit)
{
	int lfd = listen_port(5000), c = guest_connect(lfd);
	static char big[VSOCK_MAX_PAYLOAD];
	struct vsock_hdr p;
	int sent = 0;
	char b;

	/* The host never reads: the bridge buffers up to the credit it gave,
	 * and a guest that sends past it (ignoring fwd_cnt) is reset. */
	p.op = VSOCK_OP_INVALID;
	while (p.op != VSOCK_OP_RST) {
		gsend(VSOCK_OP_RW, 5000, big, sizeof(big), 0);
		ck_assert_int_lt(++sent, 64);
		while (vsock_bridge_rx_pending(br) && grecv(&p) && p.op != VSOCK_OP_RST)
			ck_assert_uint_eq(p.op, VSOCK_OP_CREDIT_UPDATE);
	}
	/* Within what the socket took and the 256 KiB credit, plus one packet. */
	ck_assert_int_gt(sent, VSOCK_CONN_BUF_ALLOC / VSOCK_MAX_PAYLOAD);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 0);
	/* The host side was closed (after what the socket took). */
	while (read(c, big, sizeof(big)) > 0)
		;
	ck_assert_int_eq(read(c, &b, 1), 0);
	close(c);
	close(lfd);
}
END_TEST

START_TEST(test_rst_and_refusals)
{
	struct vsock_hdr p, h;

	/* Nobody listens on PATH_5009: RST. */
	gsend(VSOCK_OP_REQUEST, 5009, NULL, 0, 0);
	ck_assert(grecv(&p));
	ck_assert_uint_eq(p.op, VSOCK_OP_RST);
	ck_assert_uint_eq(p.src_port, 5009);
	ck_assert_uint_eq(p.dst_port, GUEST_PORT);
	/* Data for no connection: RST; an RST for none: nothing. */
	gsend(VSOCK_OP_RW, 5008, "x", 1, 0);
	ck_assert(grecv(&p));
	ck_assert_uint_eq(p.op, VSOCK_OP_RST);
	gsend(VSOCK_OP_RST, 5008, NULL, 0, 0);
	ck_assert(!grecv(&p));
	/* SEQPACKET: refused. */
	h = ghdr(VSOCK_OP_REQUEST, 5009, 0);
	h.type = VSOCK_TYPE_SEQPACKET;
	vsock_bridge_tx_refuse(br, &h);
	ck_assert(grecv(&p));
	ck_assert_uint_eq(p.op, VSOCK_OP_RST);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 0);
}
END_TEST

START_TEST(test_connection_cap)
{
	int lfd = listen_port(5000);
	struct vsock_hdr h, p;
	int nresp = 0, nrst = 0;

	for (unsigned i = 0; i < VSOCK_MAX_CONNS + 5; i++) {
		h = ghdr(VSOCK_OP_REQUEST, 5000, 0);
		h.src_port = 2000 + i;
		vsock_bridge_tx(br, &h, NULL, 0);
	}
	while (grecv(&p)) {
		if (p.op == VSOCK_OP_RESPONSE)
			nresp++;
		else if (p.op == VSOCK_OP_RST)
			nrst++;
	}
	ck_assert_int_eq(nresp, VSOCK_MAX_CONNS);
	ck_assert_int_eq(nrst, 5);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), VSOCK_MAX_CONNS);
	vsock_bridge_drop_all(br);
	ck_assert_uint_eq(vsock_bridge_nr_conns(br), 0);
	close(lfd);
}
END_TEST

START_TEST(test_small_rx_buffer)
{
	uint8_t small[VSOCK_HDR_SIZE - 1];
	struct iovec iov = { small, sizeof(small) };

	gsend(VSOCK_OP_RW, 5008, "x", 1, 0);	/* an RST is owed */
	ck_assert_uint_eq(vsock_bridge_rx(br, &iov, 1), 0);
	ck_assert(vsock_bridge_rx_pending(br));
}
END_TEST

/* ---- the device: uds.c serving mock queues on a real evloop ---- */

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(8ULL << 20)

static struct mock_mem mem;
static struct mock_vq rxq, txq, evq;
static struct virtio_vsock *vs;
static struct virtio_device *vdev;
static struct evloop *loop;

static void nop_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
}

static void nop_config(struct virtio_device *d)
{
	(void)d;
}

static void dev_setup(void)
{
	struct device_ctx ctx = { 0 };
	char err[256] = "";
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	strcpy(dir, "/tmp/ember-vsock-dev-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	loop = evloop_create();
	ck_assert_ptr_nonnull(loop);
	ctx.mem = &mem.gm;
	ctx.loop = loop;
	ck_assert_int_eq(vsock_dev_create_uds(&vs, &ctx, CID, path, err, sizeof(err)), 0);
	vdev = vsock_virtio(vs);
	vdev->notify_used = nop_used;
	vdev->notify_config = nop_config;
	ck_assert_int_eq(vsock_dev_start(vs), 0);
	/* Stream only: SEQPACKET is not offered on the bridge. */
	ck_assert(!(virtio_dev_host_features(vdev) & VIRTIO_BIT(VIRTIO_VSOCK_F_SEQPACKET)));
	ck_assert_int_eq(virtio_dev_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	ck_assert_int_eq(virtio_dev_set_status(vdev, st), 0);
	virtio_dev_set_driver_features(vdev, virtio_dev_host_features(vdev));
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(vdev, st), 0);
	mock_vq_init(&rxq, &mem, 16);
	mock_vq_init(&txq, &mem, 16);
	mock_vq_init(&evq, &mem, 16);
	mock_vq_attach(&rxq, virtio_dev_queue(vdev, VSOCK_QUEUE_RX));
	mock_vq_attach(&txq, virtio_dev_queue(vdev, VSOCK_QUEUE_TX));
	mock_vq_attach(&evq, virtio_dev_queue(vdev, VSOCK_QUEUE_EVENT));
	ck_assert_int_eq(virtio_dev_set_status(vdev, st | VIRTIO_STATUS_DRIVER_OK), 0);
}

static void dev_teardown(void)
{
	char p[160];

	vsock_dev_destroy(vs);
	evloop_destroy(loop);
	mock_mem_destroy(&mem);
	snprintf(p, sizeof(p), "%s_5000", path);
	unlink(p);
	rmdir(dir);
}

static void run_loop(void)
{
	for (int i = 0; i < 10; i++)
		if (evloop_run_once(loop, 20) <= 0)
			break;
}

static uint64_t add_rx(void)
{
	uint64_t gpa = mock_mem_alloc(&mem, 4096, 8);
	struct mock_buf b = { .gpa = gpa, .len = 4096, .write = true };

	mock_vq_add_chain(&rxq, &b, 1);
	virtio_dev_queue_notify(vdev, VSOCK_QUEUE_RX);
	return gpa;
}

/* A tx chain: hdr_len bytes of h's encoding, then payload bytes. */
static void add_tx(const struct vsock_hdr *h, uint32_t hdr_len, const void *payload, uint32_t plen)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	struct mock_buf b[2];
	unsigned n = 1;

	vsock_hdr_encode(raw, h);
	b[0] = (struct mock_buf){ .gpa = mock_mem_alloc(&mem, VSOCK_HDR_SIZE, 8), .len = hdr_len };
	mock_mem_write(&mem, b[0].gpa, raw, hdr_len);
	if (plen) {
		b[1] = (struct mock_buf){ .gpa = mock_mem_alloc(&mem, plen, 8), .len = plen };
		mock_mem_write(&mem, b[1].gpa, payload, plen);
		n = 2;
	}
	mock_vq_add_chain(&txq, b, n);
	virtio_dev_queue_notify(vdev, VSOCK_QUEUE_TX);
}

START_TEST(test_device_connect_and_data)
{
	int lfd = listen_port(5000), c;
	struct vsock_hdr h = ghdr(VSOCK_OP_REQUEST, 5000, 0), r;
	uint64_t gpa;
	char buf[16];

	gpa = add_rx();
	add_tx(&h, VSOCK_HDR_SIZE, NULL, 0);
	run_loop();
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 1);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq, 0).len, VSOCK_HDR_SIZE);
	vsock_hdr_decode(&r, mock_mem_ptr(&mem, gpa, VSOCK_HDR_SIZE));
	ck_assert_uint_eq(r.op, VSOCK_OP_RESPONSE);
	ck_assert_uint_eq(vsock_dev_nr_conns(vs), 1);
	c = accept(lfd, NULL, NULL);
	ck_assert_int_ge(c, 0);
	h = ghdr(VSOCK_OP_RW, 5000, 5);
	add_tx(&h, VSOCK_HDR_SIZE, "ember", 5);
	run_loop();
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 5);
	ck_assert(memcmp(buf, "ember", 5) == 0);
	/* Host -> guest: waits for an rx buffer. */
	ck_assert_int_eq(write(c, "hi", 2), 2);
	run_loop();
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 1);
	gpa = add_rx();
	run_loop();
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 2);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq, 1).len, VSOCK_HDR_SIZE + 2);
	ck_assert(memcmp(mock_mem_ptr(&mem, gpa + VSOCK_HDR_SIZE, 2), "hi", 2) == 0);
	/* A driver reset drops the connection: the host sees EOF. */
	virtio_dev_reset(vdev);
	run_loop();
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(vsock_dev_nr_conns(vs), 0);
	close(c);
	close(lfd);
}
END_TEST

START_TEST(test_device_malformed_tx)
{
	struct vsock_hdr h = ghdr(VSOCK_OP_RW, 5000, 1000);

	add_rx();
	add_tx(&h, 10, NULL, 0);		/* no whole header */
	add_tx(&h, VSOCK_HDR_SIZE, "x", 1);	/* len beyond the chain */
	h = ghdr(VSOCK_OP_REQUEST, 5000, 0);
	h.src_cid = 7;				/* spoofed */
	add_tx(&h, VSOCK_HDR_SIZE, NULL, 0);
	run_loop();
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 3);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 0);	/* nothing answered */
	ck_assert(!(virtio_dev_get_status(vdev) & VIRTIO_STATUS_NEEDS_RESET));
	/* A descriptor outside guest memory breaks the queue: NEEDS_RESET. */
	mock_vq_set_desc(&txq, 15, MEM_BASE + MEM_SIZE, 64, 0, 0);
	mock_vq_publish(&txq, 15);
	virtio_dev_queue_notify(vdev, VSOCK_QUEUE_TX);
	run_loop();
	ck_assert(virtio_dev_get_status(vdev) & VIRTIO_STATUS_NEEDS_RESET);
}
END_TEST

START_TEST(test_device_paused_holds_queues)
{
	int lfd = listen_port(5000);
	struct vsock_hdr h = ghdr(VSOCK_OP_REQUEST, 5000, 0);

	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int c = socket(AF_UNIX, SOCK_STREAM, 0);

	add_rx();
	add_rx();
	vsock_dev_pause(vs);
	add_tx(&h, VSOCK_HDR_SIZE, NULL, 0);
	/* A host program connecting while paused is kept; its REQUEST waits. */
	strcpy(a.sun_path, path);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(write(c, "CONNECT 9\n", 10), 10);
	run_loop();
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 0);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 0);
	ck_assert_uint_eq(vsock_dev_nr_conns(vs), 1);
	vsock_dev_resume(vs);
	run_loop();
	ck_assert_uint_eq(mock_vq_used_idx(&txq), 1);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq), 2);	/* the REQUEST and the RESPONSE */
	ck_assert_uint_eq(vsock_dev_nr_conns(vs), 2);
	close(c);
	close(lfd);
}
END_TEST

static Suite *uds_suite(void)
{
	Suite *s = suite_create("vsock-uds");
	TCase *tc = tcase_create("bridge");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_header_checks);
	tcase_add_test(tc, test_guest_initiated_data_both_ways);
	tcase_add_test(tc, test_host_initiated);
	tcase_add_test(tc, test_host_connect_refused_by_guest);
	tcase_add_test(tc, test_deadlines);
	tcase_add_test(tc, test_credit_exhaustion_stops_reads);
	tcase_add_test(tc, test_credit_request_and_update);
	tcase_add_test(tc, test_guest_overruns_credit);
	tcase_add_test(tc, test_rst_and_refusals);
	tcase_add_test(tc, test_connection_cap);
	tcase_add_test(tc, test_small_rx_buffer);
	suite_add_tcase(s, tc);
	tc = tcase_create("device");
	tcase_add_checked_fixture(tc, dev_setup, dev_teardown);
	tcase_add_test(tc, test_device_connect_and_data);
	tcase_add_test(tc, test_device_malformed_tx);
	tcase_add_test(tc, test_device_paused_holds_queues);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(uds_suite());
}
