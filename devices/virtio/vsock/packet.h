/* virtio-vsock packets (virtio 1.2 section 5.10.6): the 44-byte
 * little-endian header every rx/tx buffer starts with, and the checks a
 * guest's header must pass before the userspace backend (uds.c, conn.c)
 * acts on it. Pure functions: no I/O, no allocation. */
#ifndef EMBER_VSOCK_PACKET_H
#define EMBER_VSOCK_PACKET_H

#include <stddef.h>
#include <stdint.h>

#define VSOCK_HDR_SIZE		44
#define VSOCK_HOST_CID		2

#define VSOCK_TYPE_STREAM	1
#define VSOCK_TYPE_SEQPACKET	2

#define VSOCK_OP_INVALID	0
#define VSOCK_OP_REQUEST	1
#define VSOCK_OP_RESPONSE	2
#define VSOCK_OP_RST		3
#define VSOCK_OP_SHUTDOWN	4
#define VSOCK_OP_RW		5
#define VSOCK_OP_CREDIT_UPDATE	6
#define VSOCK_OP_CREDIT_REQUEST	7

#define VSOCK_SHUTDOWN_RCV	1	/* the sender will receive no more */
#define VSOCK_SHUTDOWN_SEND	2	/* the sender will send no more */

/* Largest payload one packet may carry: Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE. */
#define VSOCK_MAX_PAYLOAD	(64 * 1024)

struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags;
	uint32_t buf_alloc, fwd_cnt;
};

void vsock_hdr_decode(struct vsock_hdr *h, const uint8_t raw[VSOCK_HDR_SIZE]);
void vsock_hdr_encode(uint8_t raw[VSOCK_HDR_SIZE], const struct vsock_hdr *h);

/* What to do with a packet the guest put on the tx queue. */
enum vsock_verdict {
	VSOCK_PKT_OK,		/* act on it */
	VSOCK_PKT_DROP,		/* ignore it (bad addresses, short chain, bad length) */
	VSOCK_PKT_RST,		/* answer with RST (unsupported type or op) */
};

/* Check a header against the chain that carried it: chain_len is the
 * chain's device-readable byte count (header included), guest_cid the
 * device's CID. */
enum vsock_verdict vsock_hdr_check(const struct vsock_hdr *h, size_t chain_len,
				   uint64_t guest_cid);

/* Credit the sender of peer's header has for us: how many more bytes we
 * may send (buf_alloc - (tx_cnt - fwd_cnt)), 0 if the peer's numbers make
 * no sense (fwd_cnt ahead of what we sent, or more in flight than buf_alloc). */
uint32_t vsock_peer_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt);

const char *vsock_op_name(uint16_t op);

#endif
