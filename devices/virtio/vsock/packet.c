/* virtio-vsock packet headers: see packet.h. */
#include "devices/virtio/vsock/packet.h"

#include "base/byteorder.h"

void vsock_hdr_decode(struct vsock_hdr *h, const uint8_t raw[VSOCK_HDR_SIZE])
{
	h->src_cid = rd64(raw + 0);
	h->dst_cid = rd64(raw + 8);
	h->src_port = rd32(raw + 16);
	h->dst_port = rd32(raw + 20);
	h->len = rd32(raw + 24);
	h->type = rd16(raw + 28);
	h->op = rd16(raw + 30);
	h->flags = rd32(raw + 32);
	h->buf_alloc = rd32(raw + 36);
	h->fwd_cnt = rd32(raw + 40);
}

void vsock_hdr_encode(uint8_t raw[VSOCK_HDR_SIZE], const struct vsock_hdr *h)
{
	wr64(raw + 0, h->src_cid);
	wr64(raw + 8, h->dst_cid);
	wr32(raw + 16, h->src_port);
	wr32(raw + 20, h->dst_port);
	wr32(raw + 24, h->len);
	wr16(raw + 28, h->type);
	wr16(raw + 30, h->op);
	wr32(raw + 32, h->flags);
	wr32(raw + 36, h->buf_alloc);
	wr32(raw + 40, h->fwd_cnt);
}

enum vsock_verdict vsock_hdr_check(const struct vsock_hdr *h, size_t chain_len,
				   uint64_t guest_cid)
{
	if (chain_len < VSOCK_HDR_SIZE)
		return VSOCK_PKT_DROP;
	/* A spoofed source or a packet for someone else: never answer it. */
	if (h->src_cid != guest_cid || h->dst_cid != VSOCK_HOST_CID)
		return VSOCK_PKT_DROP;
	if (h->len > VSOCK_MAX_PAYLOAD || h->len > chain_len - VSOCK_HDR_SIZE)
		return VSOCK_PKT_DROP;
	if (h->op == VSOCK_OP_RST)
		return h->type == VSOCK_TYPE_STREAM ? VSOCK_PKT_OK : VSOCK_PKT_DROP;
	if (h->type != VSOCK_TYPE_STREAM)
		return VSOCK_PKT_RST;	/* SEQPACKET is not offered on this backend */
	switch (h->op) {
	case VSOCK_OP_REQUEST:
	case VSOCK_OP_RESPONSE:
	case VSOCK_OP_SHUTDOWN:
	case VSOCK_OP_CREDIT_UPDATE:
	case VSOCK_OP_CREDIT_REQUEST:
		return h->len ? VSOCK_PKT_DROP : VSOCK_PKT_OK;	/* control: no payload */
	case VSOCK_OP_RW:
		return VSOCK_PKT_OK;
	default:
		return VSOCK_PKT_RST;
	}
}

uint32_t vsock_peer_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt)
{
	uint32_t in_flight = tx_cnt - peer_fwd_cnt;	/* wraps like the counters */

	if (in_flight > peer_buf_alloc)
		return 0;
	return peer_buf_alloc - in_flight;
}

const char *vsock_op_name(uint16_t op)
{
	static const char *const names[] = {
		"INVALID", "REQUEST", "RESPONSE", "RST", "SHUTDOWN", "RW", "CREDIT_UPDATE",
		"CREDIT_REQUEST",
	};

	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}
