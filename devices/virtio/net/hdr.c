/* The virtio_net_hdr in both directions. Transmit headers come from the
 * guest: they are checked on a private copy against what was negotiated,
 * and only that copy reaches the tap. Receive headers come from the tap and
 * are made to say only what the guest negotiated. */
#include <errno.h>

#include "base/byteorder.h"
#include "devices/virtio/net/net.h"

int net_tx_hdr_check(uint8_t hdr[VIRTIO_NET_HDR_LEN], size_t frame_len, uint64_t features)
{
	uint8_t flags = hdr[VNET_HDR_FLAGS];
	uint8_t gso = hdr[VNET_HDR_GSO_TYPE];
	uint16_t hdr_len = rd16(hdr + VNET_HDR_HDR_LEN);
	uint16_t gso_size = rd16(hdr + VNET_HDR_GSO_SIZE);
	uint32_t csum_start = rd16(hdr + VNET_HDR_CSUM_START);
	uint32_t csum_offset = rd16(hdr + VNET_HDR_CSUM_OFFSET);
	bool has_csum = features & VIRTIO_BIT(VIRTIO_NET_F_CSUM);

	if (frame_len < ETH_HLEN_ || frame_len > NET_FRAME_MAX)
		return -EINVAL;
	/* DATA_VALID and RSC_INFO mean nothing on transmit (5.1.6.2): drop
	 * them rather than pass them on. */
	flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
	if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!has_csum)
			return -EINVAL;
		/* The checksum field must lie inside the frame, past the
		 * Ethernet header. */
		if (csum_start < ETH_HLEN_ || csum_offset > NET_FRAME_MAX ||
		    csum_start + csum_offset + 2 > frame_len)
			return -EINVAL;
	} else {
		csum_start = csum_offset = 0;
	}
	switch (gso & ~VIRTIO_NET_HDR_GSO_ECN) {
	case VIRTIO_NET_HDR_GSO_NONE:
		if (gso & VIRTIO_NET_HDR_GSO_ECN)
			return -EINVAL;
		gso_size = 0;
		hdr_len = 0;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!(features & VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4)))
			return -EINVAL;
		goto tso;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!(features & VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6)))
			return -EINVAL;
tso:
		if ((gso & VIRTIO_NET_HDR_GSO_ECN) &&
		    !(features & VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN)))
			return -EINVAL;
		/* Segmentation needs the checksum offload and a segment size. */
		if (!(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || gso_size == 0 ||
		    hdr_len > frame_len)
			return -EINVAL;
		break;
	default:		/* UDP (UFO) and UDP_L4 are not offered */
		return -EINVAL;
	}
	hdr[VNET_HDR_FLAGS] = flags;
	wr16(hdr + VNET_HDR_HDR_LEN, hdr_len);
	wr16(hdr + VNET_HDR_GSO_SIZE, gso_size);
	wr16(hdr + VNET_HDR_CSUM_START, (uint16_t)csum_start);
	wr16(hdr + VNET_HDR_CSUM_OFFSET, (uint16_t)csum_offset);
	wr16(hdr + VNET_HDR_NUM_BUFFERS, 0);
	return 0;
}

int net_rx_hdr_fixup(uint8_t hdr[VIRTIO_NET_HDR_LEN], uint64_t features, uint16_t num_buffers)
{
	uint8_t gso = hdr[VNET_HDR_GSO_TYPE] & ~VIRTIO_NET_HDR_GSO_ECN;
	bool gso_ok;

	/* Without GUEST_CSUM the flags must be 0 (5.1.6.4.1); the tap may
	 * still say DATA_VALID. */
	if (!(features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM)))
		hdr[VNET_HDR_FLAGS] = 0;
	else
		hdr[VNET_HDR_FLAGS] &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
	/* TUNSETOFFLOAD keeps GSO frames the guest did not ask for away;
	 * this only guards against a tap configured behind our back: such a
	 * frame is too large for the guest, so it is dropped. */
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		gso_ok = !(hdr[VNET_HDR_GSO_TYPE] & VIRTIO_NET_HDR_GSO_ECN);
		break;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		gso_ok = features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4);
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		gso_ok = features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
		break;
	case VIRTIO_NET_HDR_GSO_UDP:
		gso_ok = features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO);
		break;
	default:
		gso_ok = false;
	}
	if ((hdr[VNET_HDR_GSO_TYPE] & VIRTIO_NET_HDR_GSO_ECN) &&
	    !(features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN)))
		gso_ok = false;
	if (!gso_ok)
		return -EINVAL;
	wr16(hdr + VNET_HDR_NUM_BUFFERS, num_buffers);
	return 0;
}
