/*
 * A hostile virtio-net driver. On a NIC with CSUM, HOST_TSO4 and CTRL_VQ:
 *  - transmit headers that lie (garbage gso_type, GSO with gso_size 0,
 *    hdr_len past the frame, csum_start/offset past the frame): each frame is
 *    dropped and its buffer returned, the device keeps working;
 *  - control commands of an unknown class and with a wrong length: ack ERR;
 *  - a control command with no writable ack byte, a transmit chain shorter
 *    than the virtio-net header, and a looping transmit chain: each marks the
 *    device DEVICE_NEEDS_RESET with a configuration interrupt, and after a
 *    reset the device transmits again.
 * Exit: rt_exit(0) after "virtio_net_bad: all ok", else a code below.
 */
#include "rt/rt.h"
#include "rt/apic.h"
#include "rt/virtio.h"

enum {
	E_PROBE = 2, E_SETUP, E_TX_GOOD, E_TX_BAD_DROPPED, E_CTRL_ACK, E_NO_NEEDS_RESET,
	E_NO_CONFIG_IRQ, E_AFTER_RESET,
};

#define NET_F_CSUM 0
#define NET_F_MAC 5
#define NET_F_HOST_TSO4 11
#define NET_F_CTRL_VQ 17
#define NET_F_CTRL_RX 18
#define NET_HDR_LEN 12
#define GSO_NONE 0
#define GSO_TCPV4 1
#define HDR_F_NEEDS_CSUM 1

#define VEC_CONFIG 0x40
#define VEC_RX 0x41
#define VEC_TX 0x42
#define VEC_CTRL 0x43
enum { RXQ = 0, TXQ = 1, CTRLQ = 2 };

static uint8_t hdr[NET_HDR_LEN], frame[64], rxbuf[1526], ctrl_hdr[2], ctrl_data[8], ack;

RT_PRINTF(2, 3) static RT_NORETURN void fail(int code, const char *fmt, ...)
{
	va_list ap;
	rt_printf("virtio_net_bad: FAIL(%d): ", code);
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_putc('\n');
	rt_exit(code);
}

static int setup(struct virtio_dev *net)
{
	int r = virtio_start(net, VIRTIO_F(NET_F_CSUM) | VIRTIO_F(NET_F_MAC) |
				  VIRTIO_F(NET_F_HOST_TSO4) | VIRTIO_F(NET_F_CTRL_VQ) |
				  VIRTIO_F(NET_F_CTRL_RX));
	if (!r && !(virtio_has(net, NET_F_CTRL_VQ) && virtio_has(net, NET_F_CTRL_RX) &&
		    virtio_has(net, NET_F_HOST_TSO4)))
		r = VIRTIO_E_FEATURES_OK;
	if (!r)
		r = virtio_config_irq(net, VEC_CONFIG);
	if (!r)
		r = virtio_queue_setup(net, RXQ, 8, VEC_RX);
	if (!r)
		r = virtio_queue_setup(net, TXQ, 8, VEC_TX);
	if (!r)
		r = virtio_queue_setup(net, CTRLQ, 8, VEC_CTRL);
	if (!r) {
		struct virtq_buf b = {rxbuf, sizeof(rxbuf)};
		r = virtq_add(&net->vq[RXQ], &b, 0, 1, false);
		r = r < 0 ? r : 0;
	}
	if (!r)
		virtio_driver_ok(net);
	return r;
}

/* A broadcast ARP-sized frame with the given header; waits for the device
 * to hand the buffer back. Returns 0 or a VIRTIO_E_* error. */
static int tx(struct virtio_dev *net, uint8_t flags, uint8_t gso, uint16_t hdr_len, uint16_t gso_size,
	      uint16_t csum_start, uint16_t csum_off)
{
	struct virtq_buf b[2] = {{hdr, sizeof(hdr)}, {frame, sizeof(frame)}};
	uint32_t len;
	int r;

	hdr[0] = flags;
	hdr[1] = gso;
	hdr[2] = hdr_len & 0xff, hdr[3] = hdr_len >> 8;
	hdr[4] = gso_size & 0xff, hdr[5] = gso_size >> 8;
	hdr[6] = csum_start & 0xff, hdr[7] = csum_start >> 8;
	hdr[8] = csum_off & 0xff, hdr[9] = csum_off >> 8;
	hdr[10] = hdr[11] = 0;
	for (unsigned i = 0; i < 6; i++)
		frame[i] = 0xff;
	frame[6] = 0x52, frame[7] = 0x54, frame[8] = 0, frame[9] = 1, frame[10] = 2, frame[11] = 3;
	frame[12] = 0x88, frame[13] = 0xb5;	/* local experimental ethertype */
	r = virtq_add(&net->vq[TXQ], b, 2, 0, false);
	if (r < 0)
		return r;
	virtq_kick(&net->vq[TXQ]);
	r = virtq_wait(&net->vq[TXQ], &len, 5000);
	return r < 0 ? r : 0;
}

/* data_len >= 1: class and command, data_len bytes, then the ack byte. */
static int ctrl(struct virtio_dev *net, uint8_t class, uint8_t cmd, uint32_t data_len)
{
	struct virtq_buf b[3] = {{ctrl_hdr, 2}, {ctrl_data, data_len}, {&ack, 1}};
	uint32_t len;
	int r;

	ctrl_hdr[0] = class;
	ctrl_hdr[1] = cmd;
	ack = 0xee;
	r = virtq_add(&net->vq[CTRLQ], b, 2, 1, false);
	if (r < 0)
		return r;
	virtq_kick(&net->vq[CTRLQ]);
	r = virtq_wait(&net->vq[CTRLQ], &len, 5000);
	return r < 0 ? r : ack;
}

struct broken_wait {
	struct virtio_dev *net;
	uint32_t irqs0;
};

static bool broken(void *arg)
{
	struct broken_wait *w = arg;
	return w->net->config_irqs != w->irqs0 && (virtio_status(w->net) & VIRTIO_S_NEEDS_RESET);
}

/* After a malformed chain: NEEDS_RESET and a config interrupt, then reset,
 * set up again and transmit a good frame. */
static void expect_broken_then_recover(struct virtio_dev *net, uint32_t irqs0, const char *what)
{
	struct broken_wait w = {net, irqs0};
	bool ok = apic_wait(broken, &w, 5000);
	uint8_t st = virtio_status(net);
	int r;

	if (!(st & VIRTIO_S_NEEDS_RESET))
		fail(E_NO_NEEDS_RESET, "%s: status 0x%x, no NEEDS_RESET", what, st);
	if (!ok)
		fail(E_NO_CONFIG_IRQ, "%s: NEEDS_RESET but no config interrupt", what);
	if ((r = setup(net)) || (r = tx(net, 0, GSO_NONE, 0, 0, 0, 0)))
		fail(E_AFTER_RESET, "%s: after reset: %s", what, virtio_strerror(r));
	rt_printf("virtio_net_bad: %s: needs_reset, then reset ok\n", what);
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	struct virtio_dev net;
	int r;

	if ((r = virtio_probe(&net, VIRTIO_ID_NET, 0)))
		fail(E_PROBE, "probe: %s", virtio_strerror(r));
	if ((r = setup(&net)))
		fail(E_SETUP, "setup: %s", virtio_strerror(r));
	if ((r = tx(&net, 0, GSO_NONE, 0, 0, 0, 0)))
		fail(E_TX_GOOD, "good frame: %s", virtio_strerror(r));

	/* Lying headers: dropped, buffer back, device still fine. */
	static const struct { uint8_t flags, gso; uint16_t hdr_len, gso_size, cs, co; const char *what; } bad[] = {
		{0, 0x7f, 0, 0, 0, 0, "garbage gso_type"},
		{0, GSO_TCPV4, 54, 0, 0, 0, "TCPv4 GSO with gso_size 0"},
		{0, GSO_TCPV4, 0xffff, 1448, 0, 0, "hdr_len past the frame"},
		{HDR_F_NEEDS_CSUM, GSO_NONE, 0, 0, 0xfff0, 16, "csum_start past the frame"},
		{HDR_F_NEEDS_CSUM, GSO_NONE, 0, 0, 34, 0xfffe, "csum_offset past the frame"},
		{0xfe, GSO_NONE, 0, 0, 0, 0, "unknown header flags"},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if ((r = tx(&net, bad[i].flags, bad[i].gso, bad[i].hdr_len, bad[i].gso_size, bad[i].cs, bad[i].co)))
			fail(E_TX_BAD_DROPPED, "%s: %s", bad[i].what, virtio_strerror(r));
		if (virtio_status(&net) & VIRTIO_S_NEEDS_RESET)
			fail(E_TX_BAD_DROPPED, "%s: the device wants a reset", bad[i].what);
	}
	if ((r = tx(&net, 0, GSO_NONE, 0, 0, 0, 0)))
		fail(E_TX_GOOD, "good frame after bad headers: %s", virtio_strerror(r));
	rt_puts("virtio_net_bad: lying transmit headers dropped, device ok");

	/* Control commands: unknown class, MAC_ADDR_SET (class 1, cmd 1) with
	 * 3 bytes instead of 6, RX promisc (class 0, cmd 0) with 8 bytes. */
	if ((r = ctrl(&net, 0xff, 0, 1)) != 1)
		fail(E_CTRL_ACK, "unknown class: ack %d, want 1 (ERR)", r);
	if ((r = ctrl(&net, 1, 1, 3)) != 1)
		fail(E_CTRL_ACK, "MAC_ADDR_SET with 3 bytes: ack %d, want 1 (ERR)", r);
	if ((r = ctrl(&net, 0, 0, 8)) != 1)
		fail(E_CTRL_ACK, "RX_PROMISC with 8 bytes: ack %d, want 1 (ERR)", r);
	if ((r = ctrl(&net, 0, 0, 1)) != 0)
		fail(E_CTRL_ACK, "RX_PROMISC with 1 byte: ack %d, want 0 (OK)", r);
	rt_puts("virtio_net_bad: bad control commands answered ERR");

	/* A control command with no writable ack byte. */
	uint32_t irqs0 = net.config_irqs;
	struct virtq *q = &net.vq[CTRLQ];
	q->desc[0] = (struct vring_desc){(uintptr_t)ctrl_hdr, 2, 0, 0};
	virtq_publish_raw(q, 0);
	virtq_kick(q);
	expect_broken_then_recover(&net, irqs0, "control command without an ack byte");

	/* A transmit chain shorter than the virtio-net header. */
	irqs0 = net.config_irqs;
	q = &net.vq[TXQ];
	q->desc[0] = (struct vring_desc){(uintptr_t)hdr, 4, 0, 0};
	virtq_publish_raw(q, 0);
	virtq_kick(q);
	expect_broken_then_recover(&net, irqs0, "4-byte transmit header");

	/* desc 0 -> desc 1 -> desc 0 on the transmit queue. */
	irqs0 = net.config_irqs;
	q = &net.vq[TXQ];
	q->desc[0] = (struct vring_desc){(uintptr_t)hdr, sizeof(hdr), VRING_DESC_F_NEXT, 1};
	q->desc[1] = (struct vring_desc){(uintptr_t)frame, sizeof(frame), VRING_DESC_F_NEXT, 0};
	virtq_publish_raw(q, 0);
	virtq_kick(q);
	expect_broken_then_recover(&net, irqs0, "looping transmit chain");

	rt_puts("virtio_net_bad: all ok");
	return 0;
}
