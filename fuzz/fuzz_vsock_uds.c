/* libFuzzer target: the vsock unix-socket bridge (devices/virtio/vsock/
 * packet.c, conn.c) with real unix sockets: raw guest headers through
 * vsock_hdr_check() and into the connection table, guest rx buffers of any
 * size, and host programs that connect (with good or bad CONNECT lines),
 * write, read and close at any time. Checks: the connection count never
 * passes the cap, every packet to the guest is a well-formed STREAM packet
 * from CID 2 that fits its buffer, and nothing leaks (ASan).
 *
 * Input: 8-byte operations:
 *   [0] op % 8: 0 guest packet, 1 raw guest header (needs 44 more bytes),
 *       2 guest rx buffer, 3 host write, 4 host read, 5 host close,
 *       6 host connect, 7 main loop round (poll)
 *   [1..7] arguments */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/log.h"
#include "devices/virtio/vsock/conn.h"
#include "devices/virtio/vsock/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CID		3
#define NPORTS		4		/* PATH_5000 .. PATH_5003 */
#define MAX_HOST	16
#define MAX_WATCH	(VSOCK_MAX_CONNS + 2)

struct watched {
	int fd;
	uint32_t events;
	void *token;
};

static struct watched watches[MAX_WATCH];
static char path[64];
static int listeners[NPORTS] = { -1, -1, -1, -1 };
static int host[MAX_HOST];

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
	abort();	/* the bridge watches more fds than it has connections */
}

static const struct vsock_bridge_ops ops = { .watch = fake_watch };

static void init_once(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	log_set_level(LOG_ERR);
	snprintf(path, sizeof(path), "/tmp/ember-fuzz-vsock-%d", (int)getpid());
	for (unsigned p = 0; p < NPORTS; p++) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };

		snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", path, 5000 + p);
		unlink(a.sun_path);
		listeners[p] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (listeners[p] < 0 || bind(listeners[p], (struct sockaddr *)&a, sizeof(a)) ||
		    listen(listeners[p], 128))
			abort();
	}
}

static void host_add(int fd)
{
	for (unsigned i = 0; i < MAX_HOST; i++) {
		if (host[i] < 0) {
			host[i] = fd;
			return;
		}
	}
	close(fd);
}

static void accept_all(void)
{
	for (unsigned p = 0; p < NPORTS; p++) {
		int fd;

		while ((fd = accept4(listeners[p], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
			host_add(fd);
	}
}

static void loop_round(void)
{
	struct pollfd p[MAX_WATCH];
	struct watched w[MAX_WATCH];
	unsigned n = 0;

	for (unsigned i = 0; i < MAX_WATCH; i++) {
		if (!watches[i].token)
			continue;
		w[n] = watches[i];
		p[n++] = (struct pollfd){ .fd = watches[i].fd,
					  .events = (short)((watches[i].events & EPOLLIN ? POLLIN : 0) |
							    (watches[i].events & EPOLLOUT ? POLLOUT : 0)) };
	}
	if (!n || poll(p, n, 0) <= 0)
		return;
	for (unsigned i = 0; i < n; i++) {
		uint32_t ev = (p[i].revents & POLLIN ? EPOLLIN : 0) |
			      (p[i].revents & POLLOUT ? EPOLLOUT : 0) |
			      (p[i].revents & POLLHUP ? EPOLLHUP : 0) |
			      (p[i].revents & POLLERR ? EPOLLERR : 0);

		if (ev)
			vsock_bridge_event(w[i].token, ev);
	}
}

static uint8_t payload[VSOCK_MAX_PAYLOAD];

static void guest_packet(struct vsock_bridge *b, struct vsock_hdr *h, size_t chain_len)
{
	struct iovec iov[3];
	size_t plen;

	switch (vsock_hdr_check(h, chain_len, CID)) {
	case VSOCK_PKT_OK:
		/* The payload split over up to three segments, as a chain may be. */
		plen = h->len;
		iov[0] = (struct iovec){ payload, plen / 3 };
		iov[1] = (struct iovec){ payload + plen / 3, plen / 3 };
		iov[2] = (struct iovec){ payload + 2 * (plen / 3), plen - 2 * (plen / 3) };
		vsock_bridge_tx(b, h, iov, plen ? 3 : 0);
		break;
	case VSOCK_PKT_RST:
		vsock_bridge_tx_refuse(b, h);
		break;
	case VSOCK_PKT_DROP:
		break;
	}
}

static void guest_rx(struct vsock_bridge *b, size_t cap, unsigned split)
{
	static uint8_t buf[VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD];
	struct iovec iov[2];
	struct vsock_hdr h;
	size_t n;

	if (cap > sizeof(buf))
		cap = sizeof(buf);
	split = split < cap ? split : (unsigned)cap;
	iov[0] = (struct iovec){ buf, split };
	iov[1] = (struct iovec){ buf + split, cap - split };
	n = vsock_bridge_rx(b, iov, 2);
	if (!n)
		return;
	if (n < VSOCK_HDR_SIZE || n > cap)
		abort();
	vsock_hdr_decode(&h, buf);
	if (h.src_cid != VSOCK_HOST_CID || h.dst_cid != CID || h.type != VSOCK_TYPE_STREAM ||
	    h.len != n - VSOCK_HDR_SIZE || h.len > VSOCK_MAX_PAYLOAD ||
	    (h.op != VSOCK_OP_RW && h.len) || h.op < VSOCK_OP_REQUEST || h.op > VSOCK_OP_CREDIT_UPDATE)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vsock_bridge *b;
	char err[256];

	init_once();
	for (unsigned i = 0; i < MAX_WATCH; i++)
		watches[i] = (struct watched){ .fd = -1 };
	for (unsigned i = 0; i < MAX_HOST; i++)
		host[i] = -1;
	if (vsock_bridge_create(&b, CID, path, &ops, NULL, err, sizeof(err)))
		abort();
	vsock_bridge_set_active(b, true);
	while (size >= 8) {
		const uint8_t *o = data;
		struct vsock_hdr h;
		uint8_t raw[VSOCK_HDR_SIZE];
		int fd = host[o[1] % MAX_HOST];

		data += 8;
		size -= 8;
		switch (o[0] % 8) {
		case 0:
			h = (struct vsock_hdr){
				.src_cid = o[7] & 0x80 ? CID + 1 : CID,
				.dst_cid = o[7] & 0x40 ? 1 : VSOCK_HOST_CID,
				.src_port = o[1] & 7, .dst_port = 5000 + (o[2] & 7),
				.len = (uint32_t)(o[3] | o[4] << 8) << (o[7] & 1),
				.type = o[7] & 0x20 ? VSOCK_TYPE_SEQPACKET : VSOCK_TYPE_STREAM,
				.op = o[5] % 9, .flags = o[6] & 3,
				.buf_alloc = (uint32_t)o[6] << 12, .fwd_cnt = (uint32_t)o[2] << 10,
			};
			if (o[1] & 0x80)	/* a host-initiated connection's port */
				h.dst_port = (1u << 30) + (o[2] & 3);
			guest_packet(b, &h, VSOCK_HDR_SIZE + (o[7] & 2 ? h.len / 2 : h.len));
			break;
		case 1:
			if (size < VSOCK_HDR_SIZE)
				break;
			memcpy(raw, data, sizeof(raw));
			data += sizeof(raw);
			size -= sizeof(raw);
			vsock_hdr_decode(&h, raw);
			guest_packet(b, &h, rd16(o + 2) + (size_t)o[4] * 65536);
			break;
		case 2:
			guest_rx(b, (size_t)rd16(o + 1) * (o[3] & 3), o[4]);
			break;
		case 3:
			if (fd >= 0)
				(void)send(fd, payload, ((size_t)rd16(o + 2) * (o[4] & 7)) % sizeof(payload),
					   MSG_NOSIGNAL);
			break;
		case 4:
			if (fd >= 0)
				(void)recv(fd, payload, sizeof(payload), MSG_DONTWAIT);
			break;
		case 5:
			if (fd >= 0) {
				if (o[2] & 1)
					(void)shutdown(fd, SHUT_WR);
				else {
					close(fd);
					host[o[1] % MAX_HOST] = -1;
				}
			}
			break;
		case 6: {
			struct sockaddr_un a = { .sun_family = AF_UNIX };
			static const char *const lines[] = {
				"CONNECT 5\n", "CONNECT 4294967295\n", "CONNECT\n", "CONNECT 99999999999\n",
				"connect 5\n", "CONNECT 5", "CONNECT 7\r\nxyz", "\n",
			};
			const char *l = lines[o[2] % 8];
			int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

			strcpy(a.sun_path, path);
			if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a))) {
				if (c >= 0)
					close(c);
				break;
			}
			(void)send(c, l, strlen(l), MSG_NOSIGNAL);
			host_add(c);
			break;
		}
		case 7:
			loop_round();
			break;
		}
		accept_all();
		if (vsock_bridge_nr_conns(b) > VSOCK_MAX_CONNS)
			abort();
	}
	vsock_bridge_destroy(b);
	for (unsigned i = 0; i < MAX_HOST; i++)
		if (host[i] >= 0)
			close(host[i]);
	accept_all();
	for (unsigned i = 0; i < MAX_HOST; i++)
		if (host[i] >= 0)
			close(host[i]);
	return 0;
}
