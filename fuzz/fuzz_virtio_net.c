/* libFuzzer target: virtio-net's guest-facing parsing (devices/virtio/net):
 * transmit headers and chains, receive buffers, the control queue and the
 * receive filter, driven through the unit tests' mock driver queue on a
 * socketpair backend (a frame per message, as a tap), with resets, link
 * changes and stash hand-backs in between. No worker threads: the target
 * calls the handlers a worker would.
 *
 * Input: [0] features: bit 0 EVENT_IDX, 1 INDIRECT_DESC, 2 MRG_RXBUF,
 * 3 CSUM + GUEST_CSUM, 4 HOST/GUEST TSO4/6 + ECN, 5 CTRL_RX (+ extra, MAC
 * address), 6 two queue pairs + MQ, 7 CTRL_GUEST_OFFLOADS. Then records
 * [type][len][len bytes]:
 *   0 transmit: header[12], frame length (le16), segments, flags
 *     (bit 0 indirect, 1 short header, 2 a writable segment, 3 pair 1)
 *   1 control chain: flags (bit 0 no ack, 1 split, 2 indirect), class,
 *     command, data...
 *   2 net_ctrl_exec() on: class, command, data...
 *   3 a frame from the host: header[12], destination (0 own, 1 broadcast,
 *     2 multicast, 3 other, else the bytes), length (le16), pair
 *   4 receive buffers: count, size (le16), flags (bit 0 indirect, 1 a
 *     readable segment first, 2 pair 1)
 *   5 serve every queue
 *   6 reset and bring up again
 *   7 raw descriptor: queue, index, offset (le16), length (le16), flags,
 *     next, publish head
 *   8 link down / up
 *   9 hand the receive stashes back (pause)
 *  10 configuration read: offset, width
 *  11 the header checks alone: header[12], frame length (le16), features */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/log.h"
#include "devices/virtio/net/net.h"
#include "helpers/mock_vq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(4ULL << 20)
#define QSIZE		64
#define MAX_RECORDS	96

static struct mock_mem mem;
static struct mock_vq rxq[2], txq[2], ctrlq;
static uint64_t ring_end;
static struct net_dev *net;
static int peer[2] = { -1, -1 };
static uint64_t want;
static unsigned pairs;
static uint8_t scratch[NET_FRAME_MAX + 64];

static const uint8_t dev_mac[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };

static void nop_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
}

static void nop_config(struct virtio_device *d)
{
	(void)d;
}

static int fake_offload(struct net_backend *be, uint64_t f)
{
	be->offload_features = f;
	return 0;
}

static int fake_queue(struct net_backend *be, unsigned q, bool on)
{
	(void)be;
	(void)q;
	(void)on;
	return 0;
}

static void fake_close(struct net_backend *be)
{
	for (unsigned i = 0; i < be->nr; i++)
		close(be->fds[i]);
	be->nr = 0;
}

static const struct net_backend_ops fake_ops = {
	.set_offload = fake_offload, .set_queue_enabled = fake_queue, .close = fake_close,
};

/* The bump allocator, wrapping back past the rings when full. */
static uint64_t alloc(uint64_t len)
{
	uint64_t gpa = (mem.next + 15) & ~15ULL;

	if (len > MEM_SIZE / 2)
		len = MEM_SIZE / 2;
	if (gpa > mem.base + mem.size || len > mem.base + mem.size - gpa)
		mem.next = ring_end;
	return mock_mem_alloc(&mem, len ? len : 1, 16);
}

static void bring_up(void)
{
	struct virtio_device *dev = &net->vdev;
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	memset(mem.buf, 0, mem.size);
	mem.next = mem.base;
	(void)virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE);
	(void)virtio_dev_set_status(dev, st);
	virtio_dev_set_driver_features(dev, want);
	st |= VIRTIO_STATUS_FEATURES_OK;
	(void)virtio_dev_set_status(dev, st);
	for (unsigned i = 0; i < pairs; i++) {
		mock_vq_init(&rxq[i], &mem, QSIZE);
		mock_vq_init(&txq[i], &mem, QSIZE);
		mock_vq_attach(&rxq[i], virtio_dev_queue(dev, 2 * i));
		mock_vq_attach(&txq[i], virtio_dev_queue(dev, 2 * i + 1));
	}
	mock_vq_init(&ctrlq, &mem, QSIZE);
	mock_vq_attach(&ctrlq, virtio_dev_queue(dev, net->ctrl_q));
	ring_end = mem.next;
	(void)virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK);
}

static void drain_peers(void)
{
	for (unsigned i = 0; i < pairs; i++)
		while (read(peer[i], scratch, sizeof(scratch)) > 0)
			;
}

static void serve(void)
{
	for (unsigned i = 0; i < pairs; i++) {
		net_tx_process(&net->pairs[i]);
		drain_peers();
		net->pairs[i].tx_blocked = false;
		net_rx_process(&net->pairs[i]);
	}
	net_ctrl_process(net);
}

static void add(struct mock_vq *q, struct mock_buf *b, unsigned n, bool indirect)
{
	if (indirect)
		mock_vq_add_indirect(q, b, n);
	else
		mock_vq_add_chain(q, b, n);
}

static void op_tx(const uint8_t *p, size_t n)
{
	struct mock_buf b[6];
	unsigned segs, nb = 0, pair;
	size_t len, off = 0;
	uint8_t flags;

	if (n < 16)
		return;
	len = rd16(p + 12) % (NET_FRAME_MAX + 16);
	segs = 1 + p[14] % 4;
	flags = p[15];
	pair = (flags & 8) && pairs > 1;
	b[nb].gpa = alloc(VIRTIO_NET_HDR_LEN);
	b[nb].len = flags & 2 ? p[14] % VIRTIO_NET_HDR_LEN + 1 : VIRTIO_NET_HDR_LEN;
	b[nb].write = false;
	mock_mem_write(&mem, b[nb].gpa, p, b[nb].len);
	nb++;
	for (unsigned i = 0; i < segs && off < len; i++) {
		size_t c = i + 1 == segs ? len - off : (len - off) / 2 + 1;

		b[nb].gpa = alloc(c);
		b[nb].len = (uint32_t)c;
		b[nb].write = (flags & 4) && i + 1 == segs;
		memset(mock_mem_ptr(&mem, b[nb].gpa, c), 0x45, c < 14 ? c : 14);
		off += c;
		nb++;
	}
	add(&txq[pair], b, nb, flags & 1);
}

static void op_ctrl_chain(const uint8_t *p, size_t n)
{
	struct mock_buf b[3];
	unsigned nb = 0;
	size_t half;

	if (n < 1)
		return;
	n--;
	half = n / 2;
	if ((p[0] & 2) && half && n - half) {
		b[nb] = (struct mock_buf){ alloc(half), (uint32_t)half, false };
		mock_mem_write(&mem, b[nb].gpa, p + 1, half);
		nb++;
		b[nb] = (struct mock_buf){ alloc(n - half), (uint32_t)(n - half), false };
		mock_mem_write(&mem, b[nb].gpa, p + 1 + half, n - half);
		nb++;
	} else if (n) {
		b[nb] = (struct mock_buf){ alloc(n), (uint32_t)n, false };
		mock_mem_write(&mem, b[nb].gpa, p + 1, n);
		nb++;
	}
	if (!(p[0] & 1))
		b[nb++] = (struct mock_buf){ alloc(1), 1, true };
	if (nb)
		add(&ctrlq, b, nb, p[0] & 4);
}

static void op_host_frame(const uint8_t *p, size_t n)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
	static const uint8_t other[6] = { 0x52, 0x54, 0x00, 0x01, 0x02, 0x03 };
	size_t len;
	unsigned pair;

	if (n < 16)
		return;
	len = VIRTIO_NET_HDR_LEN + rd16(p + 13) % (NET_FRAME_MAX + 32);
	pair = (p[15] & 1) && pairs > 1;
	memset(scratch, 0x5a, len);
	memcpy(scratch, p, VIRTIO_NET_HDR_LEN);
	if (len >= VIRTIO_NET_HDR_LEN + 6)
		memcpy(scratch + VIRTIO_NET_HDR_LEN,
		       p[12] == 0 ? dev_mac : p[12] == 1 ? bcast : p[12] == 2 ? mcast : other, 6);
	(void)!write(peer[pair], scratch, len);
}

static void op_rx_bufs(const uint8_t *p, size_t n)
{
	unsigned count, pair;
	uint32_t sz;

	if (n < 4)
		return;
	count = 1 + p[0] % 8;
	sz = rd16(p + 1) % 8192;
	pair = (p[3] & 4) && pairs > 1;
	for (unsigned i = 0; i < count; i++) {
		struct mock_buf b[2];
		unsigned nb = 0;

		if (p[3] & 2)
			b[nb++] = (struct mock_buf){ alloc(16), 16, false };
		b[nb++] = (struct mock_buf){ alloc(sz ? sz : 1), sz ? sz : 1, true };
		add(&rxq[pair], b, nb, p[3] & 1);
	}
}

static void op_raw_desc(const uint8_t *p, size_t n)
{
	struct mock_vq *qs[5] = { &rxq[0], &txq[0], &ctrlq, &rxq[1], &txq[1] };
	struct mock_vq *q;

	if (n < 9)
		return;
	q = qs[p[0] % (pairs > 1 ? 5 : 3)];
	mock_vq_set_desc(q, p[1] % QSIZE, MEM_BASE + rd16(p + 2) * 64ULL, rd16(p + 4), p[6] & 7,
			 p[7]);
	mock_vq_publish(q, p[8]);
}

static void op_hdr_checks(const uint8_t *p, size_t n)
{
	uint8_t h[VIRTIO_NET_HDR_LEN];
	uint64_t f;

	if (n < 15)
		return;
	memcpy(h, p, sizeof(h));
	f = (uint64_t)p[14] << 8 | p[14] << 1;
	(void)net_tx_hdr_check(h, rd16(p + 12), f);
	memcpy(h, p, sizeof(h));
	(void)net_rx_hdr_fixup(h, f, p[13]);
	(void)net_tap_offload_flags(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct device_ctx ctx = { 0 };
	struct net_backend be = { .ops = &fake_ops };
	struct net_opts o;
	char err[256];
	unsigned records = 0;
	size_t i;

	if (size < 1)
		return 0;
	if (!mem.buf) {
		log_set_level(LOG_ERR);
		mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	}
	want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |
	       VIRTIO_BIT(VIRTIO_NET_F_STATUS) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ);
	if (data[0] & 1)
		want |= VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
	if (data[0] & 2)
		want |= VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
	if (data[0] & 4)
		want |= VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF);
	if (data[0] & 8)
		want |= VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);
	if (data[0] & 16)
		want |= VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |
			VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) |
			VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN);
	if (data[0] & 32)
		want |= VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) |
			VIRTIO_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR);
	if (data[0] & 64)
		want |= VIRTIO_BIT(VIRTIO_NET_F_MQ);
	if (data[0] & 128)
		want |= VIRTIO_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
	pairs = data[0] & 64 ? 2 : 1;

	memset(&o, 0, sizeof(o));
	if (dev_options_parse(&net_option_table, "fd=99,mac=52:54:00:aa:bb:cc,id=fuzz", &o, err,
			      sizeof(err)))
		abort();
	o.queues = pairs;
	for (unsigned q = 0; q < pairs; q++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv))
			abort();
		be.fds[q] = sv[0];
		peer[q] = sv[1];
	}
	be.nr = pairs;
	ctx.mem = &mem.gm;
	if (net_dev_create(&net, &ctx, &o, &be))
		abort();
	dev_options_free(&net_option_table, &o);
	net->vdev.notify_used = nop_used;
	net->vdev.notify_config = nop_config;
	bring_up();

	for (i = 1; i + 2 <= size && records < MAX_RECORDS; records++) {
		uint8_t type = data[i], len = data[i + 1];
		const uint8_t *p = data + i + 2;
		size_t n = size - i - 2 < len ? size - i - 2 : len;

		i += 2 + n;
		switch (type % 12) {
		case 0: op_tx(p, n); break;
		case 1: op_ctrl_chain(p, n); break;
		case 2:
			if (n >= 2)
				(void)net_ctrl_exec(net, p[0] % 8, p[1] % 8, p + 2, n - 2);
			break;
		case 3: op_host_frame(p, n); break;
		case 4: op_rx_bufs(p, n); break;
		case 5: serve(); break;
		case 6:
			(void)virtio_dev_set_status(&net->vdev, 0);
			bring_up();
			break;
		case 7: op_raw_desc(p, n); break;
		case 8: net_set_link(net, !net_link_up(net)); break;
		case 9:
			for (unsigned q = 0; q < pairs; q++)
				net_rx_drop_stash(&net->pairs[q], true);
			break;
		case 10:
			if (n >= 2) {
				uint8_t cfg[8];

				virtio_dev_config_read(&net->vdev, p[0] % 32, cfg, 1u << (p[1] % 4));
			}
			break;
		case 11: op_hdr_checks(p, n); break;
		}
	}
	serve();
	net_dev_destroy(net);
	net = NULL;
	for (unsigned q = 0; q < pairs; q++) {
		close(peer[q]);
		peer[q] = -1;
	}
	return 0;
}
