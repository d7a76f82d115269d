/* The unix-socket bridge behind `--vsock cid=N,uds=PATH`: the table of
 * connections between guest vsock ports and host unix stream sockets, their
 * credit accounting (virtio 1.2 section 5.10.6.3) and the host socket I/O.
 * The guest side is abstract here: packets come in through
 * vsock_bridge_tx() and go out through vsock_bridge_rx() into a buffer the
 * caller got from the rx queue (uds.c does that; the unit tests call them
 * directly). The bridge only asks its owner to watch fds for it.
 *
 * Host-initiated: a program connects to PATH and writes "CONNECT <port>\n";
 * the bridge sends REQUEST to the guest and on RESPONSE writes
 * "OK <hostport>\n", then bytes flow both ways. Guest-initiated: a REQUEST to
 * (cid 2, port P) connects to PATH_P; success is a RESPONSE, failure an RST.
 *
 * Memory: nothing is read from a host socket unless a guest rx buffer is
 * there to take it and the guest has credit for it; guest -> host bytes the
 * host socket does not take at once wait in a per-connection buffer of at
 * most VSOCK_CONN_BUF_ALLOC bytes (the credit the guest is given, so a guest
 * that overruns it is reset). At most VSOCK_MAX_CONNS connections; more are
 * refused (RST to the guest, close to the host).
 *
 * Threading: none of this locks; one thread owns the bridge. */
#ifndef EMBER_VSOCK_CONN_H
#define EMBER_VSOCK_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/virtio/vsock/packet.h"

#define VSOCK_MAX_CONNS		64
#define VSOCK_CONN_BUF_ALLOC	(256 * 1024)	/* credit given to the guest per connection */
#define VSOCK_CREDIT_THRESH	(64 * 1024)	/* unreported progress worth a CREDIT_UPDATE */
#define VSOCK_RST_BACKLOG	64		/* RSTs for packets without a connection */
#define VSOCK_CONNECT_LINE_MS	5000	/* a host client's "CONNECT <port>" line */
#define VSOCK_RESPONSE_MS	2000	/* the guest's answer to a REQUEST it was given */

struct vsock_bridge;

struct vsock_bridge_ops {
	/* Watch fd for `events` (EPOLLIN/EPOLLOUT), was `old` (0: not
	 * watched); events 0: stop watching. Events found go to
	 * vsock_bridge_event(token, events). Returns 0 or -errno. */
	int (*watch)(void *opaque, int fd, uint32_t old, uint32_t events, void *token);
};

/* path NULL: no listener (guest-initiated connections only). */
int vsock_bridge_create(struct vsock_bridge **out, uint64_t guest_cid, const char *path,
			const struct vsock_bridge_ops *ops, void *opaque, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void vsock_bridge_destroy(struct vsock_bridge *b);

/* Whether the guest side exists (driver up, not paused); host connections
 * made while it does not are closed at once. */
void vsock_bridge_set_active(struct vsock_bridge *b, bool active);
/* Forget every connection (driver reset, restore): close host sockets. */
void vsock_bridge_drop_all(struct vsock_bridge *b);

/* A packet from the guest that passed vsock_hdr_check() as VSOCK_PKT_OK,
 * with its payload (h->len bytes) in iov. Consumed before return. */
void vsock_bridge_tx(struct vsock_bridge *b, const struct vsock_hdr *h, const struct iovec *iov,
		     unsigned niov);
/* A packet the bridge cannot take (VSOCK_PKT_RST, an unreadable payload):
 * reset its connection if any, and answer with RST. */
void vsock_bridge_tx_refuse(struct vsock_bridge *b, const struct vsock_hdr *h);

/* Something may be ready for the guest (a control packet, or host data the
 * guest has credit for). */
bool vsock_bridge_rx_pending(const struct vsock_bridge *b);
/* Fill one guest rx buffer (iov, at least VSOCK_HDR_SIZE bytes): returns
 * the bytes written (header + payload), or 0 if there was nothing to send. */
size_t vsock_bridge_rx(struct vsock_bridge *b, const struct iovec *iov, unsigned niov);

/* A watched fd is ready: token is what watch() was given. */
void vsock_bridge_event(void *token, uint32_t events);
/* The owner's opaque, from a token (for event callbacks). */
void *vsock_bridge_token_opaque(void *token);

unsigned vsock_bridge_nr_conns(const struct vsock_bridge *b);

/* Deadlines: a host client that sends no CONNECT line within
 * VSOCK_CONNECT_LINE_MS is closed; a REQUEST the guest does not answer
 * within VSOCK_RESPONSE_MS of receiving it is reset (the host socket
 * closes, the guest gets an RST). Call with the monotonic clock
 * (base/log.h monotonic_ms); returns the ms until the next deadline, or -1
 * for none. The count of connections closed so: */
int vsock_bridge_expire(struct vsock_bridge *b, int64_t now_ms);
uint64_t vsock_bridge_nr_expired(const struct vsock_bridge *b);

#endif
