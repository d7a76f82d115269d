/* virtio-net through the mock driver queue, on a fake backend: one
 * SOCK_SEQPACKET socketpair per queue pair stands in for the tap (a frame
 * per read or write, each with its 12-byte virtio_net_hdr). The workers
 * are not started: the test calls the receive and transmit handlers the
 * way a worker would. */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "devices/vhost/vhost.h"
#include "devices/virtio/net/net.h"
#include "devices/virtio/registry.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(16ULL << 20)
#define QSIZE		256
#define HDR		VIRTIO_NET_HDR_LEN

static const uint8_t dev_mac[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
static const uint8_t other_mac[6] = { 0x52, 0x54, 0x00, 0x11, 0x22, 0x33 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };

static struct mock_mem mem;
static struct mock_vq rxq[2], txq[2], ctrlq;
static struct net_dev *net;
static struct virtio_device *dev;
static int peer[NET_MAX_PAIRS];		/* the "host" side of each pair */
static unsigned used_irqs, config_irqs, events;
static uint64_t last_offload;
static unsigned queue_enables[NET_MAX_PAIRS], queue_disables[NET_MAX_PAIRS];
static char last_event[64];

/* ---- fake backend and machine ---- */

static int fake_set_offload(struct net_backend *be, uint64_t f)
{
	last_offload = f;
	be->offload_features = f;
	return 0;
}

static int fake_set_queue_enabled(struct net_backend *be, unsigned q, bool on)
{
	(void)be;
	if (on)
		queue_enables[q]++;
	else
		queue_disables[q]++;
	return 0;
}

static void fake_close(struct net_backend *be)
{
	for (unsigned i = 0; i < be->nr; i++)
		close(be->fds[i]);
	be->nr = 0;
}

static const struct net_backend_ops fake_ops = {
	.set_offload = fake_set_offload,
	.set_queue_enabled = fake_set_queue_enabled,
	.close = fake_close,
};

static void fake_emit(void *machine, const char *name, json_t *data)
{
	(void)machine;
	events++;
	snprintf(last_event, sizeof(last_event), "%s", name);
	json_decref(data);
}

static const struct device_machine_ops machine_ops = { .emit_event = fake_emit };

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
	used_irqs++;
}

static void on_config(struct virtio_device *d)
{
	(void)d;
	config_irqs++;
}

static void create(unsigned pairs, const char *extra)
{
	struct device_ctx ctx = { .mem = &mem.gm, .ops = &machine_ops };
	struct net_opts o;
	struct net_backend be = { .ops = &fake_ops };
	char args[256], err[256];

	snprintf(args, sizeof(args), "fd=99,mac=52:54:00:aa:bb:cc,id=net0%s%s", extra ? "," : "",
		 extra ? extra : "");
	memset(&o, 0, sizeof(o));
	ck_assert_msg(dev_options_parse(&net_option_table, args, &o, err, sizeof(err)) == 0, "%s",
		      err);
	o.queues = pairs;
	for (unsigned i = 0; i < pairs; i++) {
		int sv[2];

		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
		be.fds[i] = sv[0];
		peer[i] = sv[1];
	}
	be.nr = pairs;
	snprintf(be.ifname, sizeof(be.ifname), "faketap");
	ck_assert_int_eq(net_dev_create(&net, &ctx, &o, &be), 0);
	dev_options_free(&net_option_table, &o);
	dev = &net->vdev;
	dev->notify_used = on_used;
	dev->notify_config = on_config;
}

static void setup(void)
{
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	used_irqs = config_irqs = events = 0;
	last_offload = ~0ULL;
	memset(queue_enables, 0, sizeof(queue_enables));
	memset(queue_disables, 0, sizeof(queue_disables));
	last_event[0] = '\0';
	net = NULL;
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		peer[i] = -1;
}

static void teardown(void)
{
	net_dev_destroy(net);
	net = NULL;
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		if (peer[i] >= 0)
			close(peer[i]);
	mock_mem_destroy(&mem);
}

/* ACKNOWLEDGE .. DRIVER_OK with `want` (masked to what is offered) and the
 * rings of `pairs` queue pairs plus the control queue. */
static void bring_up(uint64_t want, unsigned pairs)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	ck_assert_int_eq(virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	virtio_dev_set_driver_features(dev, want | VIRTIO_BIT(VIRTIO_F_VERSION_1));
	st |= VIRTIO_STATUS_FEATURES_OK;
	ck_assert_int_eq(virtio_dev_set_status(dev, st), 0);
	for (unsigned i = 0; i < pairs; i++) {
		mock_vq_init(&rxq[i], &mem, QSIZE);
		mock_vq_init(&txq[i], &mem, QSIZE);
		mock_vq_attach(&rxq[i], virtio_dev_queue(dev, 2 * i));
		mock_vq_attach(&txq[i], virtio_dev_queue(dev, 2 * i + 1));
	}
	mock_vq_init(&ctrlq, &mem, QSIZE);
	mock_vq_attach(&ctrlq, virtio_dev_queue(dev, net->ctrl_q));
	ck_assert_int_eq(virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK), 0);
}

static bool needs_reset(void)
{
	return virtio_dev_get_status(dev) & VIRTIO_STATUS_NEEDS_RESET;
}

/* ---- frames ---- */

static size_t make_frame(uint8_t *buf, const uint8_t *dst, size_t payload, uint8_t fill)
{
	memset(buf, 0, HDR);
	memcpy(buf + HDR, dst, 6);
	memcpy(buf + HDR + 6, other_mac, 6);
	buf[HDR + 12] = 0x08;
	buf[HDR + 13] = 0x00;
	memset(buf + HDR + 14, fill, payload);
	return HDR + 14 + payload;
}

static void inject(unsigned pair, const uint8_t *frame, size_t len)
{
	ck_assert_int_eq(write(peer[pair], frame, len), (ssize_t)len);
}

static ssize_t take(unsigned pair, uint8_t *buf, size_t len)
{
	ssize_t n = read(peer[pair], buf, len);

	return n < 0 ? -errno : n;
}

/* A receive buffer: len writable bytes. */
static uint64_t post_rx(unsigned pair, uint32_t len)
{
	uint64_t gpa = mock_mem_alloc(&mem, len, 16);
	struct mock_buf b = { .gpa = gpa, .len = len, .write = true };

	mock_vq_add_chain(&rxq[pair], &b, 1);
	return gpa;
}

/* A transmit chain: the header, then the frame in `pieces` descriptors. */
static uint16_t post_tx(unsigned pair, const uint8_t *frame, size_t len, unsigned pieces)
{
	struct mock_buf b[8];
	size_t off = HDR, chunk;
	unsigned n = 1;

	b[0].gpa = mock_mem_alloc(&mem, HDR, 16);
	b[0].len = HDR;
	b[0].write = false;
	mock_mem_write(&mem, b[0].gpa, frame, HDR);
	chunk = (len - HDR + pieces - 1) / pieces;
	while (off < len) {
		size_t c = len - off < chunk ? len - off : chunk;

		b[n].gpa = mock_mem_alloc(&mem, c, 16);
		b[n].len = (uint32_t)c;
		b[n].write = false;
		mock_mem_write(&mem, b[n].gpa, frame + off, c);
		off += c;
		n++;
	}
	return mock_vq_add_chain(&txq[pair], b, n);
}

/* A control command; returns the ack (0xEE if none written). */
static uint8_t ctrl(uint8_t class, uint8_t cmd, const void *data, size_t len)
{
	uint64_t h = mock_mem_alloc(&mem, 2 + len, 16), a = mock_mem_alloc(&mem, 1, 16);
	uint8_t hdr[2] = { class, cmd }, ack = 0xEE;
	struct mock_buf b[3] = {
		{ .gpa = h, .len = (uint32_t)(2 + len) },
		{ .gpa = a, .len = 1, .write = true },
	};
	uint16_t before = mock_vq_used_idx(&ctrlq);

	mock_mem_write(&mem, h, hdr, 2);
	if (len)
		mock_mem_write(&mem, h + 2, data, len);
	mock_mem_write(&mem, a, &ack, 1);
	mock_vq_add_chain(&ctrlq, b, 2);
	net_ctrl_process(net);
	ck_assert_uint_eq(mock_vq_used_idx(&ctrlq), (uint16_t)(before + 1));
	ck_assert_uint_eq(mock_vq_used_elem(&ctrlq, before).len, 1);
	mock_mem_read(&mem, a, &ack, 1);
	return ack;
}

static uint8_t ctrl_rx_mode(uint8_t cmd, bool on)
{
	uint8_t v = on;

	return ctrl(VIRTIO_NET_CTRL_RX, cmd, &v, 1);
}

#define BASIC	(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) | \
		 VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX) | \
		 VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR))
#define CSUM	(VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM))
#define TSO	(VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) | \
		 VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6))
#define MRG	VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)

/* ---- features and configuration ---- */

START_TEST(test_features)
{
	uint64_t f;

	create(1, NULL);
	f = virtio_dev_host_features(dev);
	ck_assert(f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert((f & BASIC) == BASIC);
	ck_assert((f & (CSUM | TSO | MRG)) == (CSUM | TSO | MRG));
	ck_assert(f & VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX));
	ck_assert(f & VIRTIO_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_NET_F_MQ)));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_NET_F_MTU)));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO)));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO)));
	ck_assert_uint_eq(dev->nr_queues, 3);
	net_dev_destroy(net);
	close(peer[0]);

	create(2, "offloads=off,mtu=9000");
	f = virtio_dev_host_features(dev);
	ck_assert(f & VIRTIO_BIT(VIRTIO_NET_F_MQ));
	ck_assert(f & VIRTIO_BIT(VIRTIO_NET_F_MTU));
	ck_assert(!(f & (CSUM | TSO)));
	ck_assert(!(f & VIRTIO_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)));
	ck_assert_uint_eq(dev->nr_queues, 5);
	ck_assert_uint_eq(net->ctrl_q, 4);
}
END_TEST

START_TEST(test_config_space)
{
	uint8_t cfg[NET_CFG_SIZE + 4];
	uint32_t gen;

	create(2, "mtu=1400");
	bring_up(BASIC | VIRTIO_BIT(VIRTIO_NET_F_MQ), 2);
	virtio_dev_config_read(dev, 0, cfg, NET_CFG_SIZE);
	ck_assert_mem_eq(cfg, dev_mac, 6);
	ck_assert_uint_eq(rd16(cfg + NET_CFG_STATUS), VIRTIO_NET_S_LINK_UP);
	ck_assert_uint_eq(rd16(cfg + NET_CFG_MAX_PAIRS), 2);
	ck_assert_uint_eq(rd16(cfg + NET_CFG_MTU), 1400);
	/* Reads past the end are zeros. */
	memset(cfg, 0xff, sizeof(cfg));
	virtio_dev_config_read(dev, NET_CFG_SIZE - 2, cfg, 4);
	ck_assert_uint_eq(rd32(cfg), 0);
	/* Writes are ignored (modern: the MAC is read-only). */
	virtio_dev_config_write(dev, 0, other_mac, 6);
	virtio_dev_config_read(dev, 0, cfg, 6);
	ck_assert_mem_eq(cfg, dev_mac, 6);

	gen = dev->config_generation;
	net_set_link(net, false);
	ck_assert_uint_eq(config_irqs, 1);
	ck_assert_uint_ne(dev->config_generation, gen);
	virtio_dev_config_read(dev, NET_CFG_STATUS, cfg, 2);
	ck_assert_uint_eq(rd16(cfg), 0);
	net_set_link(net, false);	/* no change, no interrupt */
	ck_assert_uint_eq(config_irqs, 1);
	net_set_link(net, true);
	ck_assert_uint_eq(config_irqs, 2);
	virtio_dev_config_read(dev, NET_CFG_STATUS, cfg, 2);
	ck_assert_uint_eq(rd16(cfg), VIRTIO_NET_S_LINK_UP);
}
END_TEST

START_TEST(test_default_mac_and_options)
{
	uint8_t a[6], b[6], c[6];
	struct net_opts o;
	char err[256];

	net_default_mac("tap0", a);
	net_default_mac("tap0", b);
	net_default_mac("tap1", c);
	ck_assert_mem_eq(a, b, 6);
	ck_assert(memcmp(a, c, 6) != 0);
	ck_assert_uint_eq(a[0] & 3, 2);	/* locally administered, unicast */

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(&net_option_table, "tap0,queues=4,vhost=auto", &o, err,
					   sizeof(err)), 0);
	ck_assert_str_eq(o.tap, "tap0");
	ck_assert_uint_eq(o.queues, 4);
	ck_assert_uint_eq(o.vhost, NET_VHOST_AUTO);
	ck_assert(o.offloads);
	dev_options_free(&net_option_table, &o);

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(&net_option_table, "fds=3:4:5", &o, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(o.queues, 3);
	ck_assert_uint_eq(o.nr_fds, 3);
	ck_assert_int_eq(o.fd_list[2], 5);
	dev_options_free(&net_option_table, &o);

	static const char *const bad[] = {
		"", "tap=a,fd=3", "fd=3:4", "fds=3:", "fds=3:3", "fds=a", "fds=3:4,queues=3",
		"tap=tap0,mac=01:02:03:04:05:06", "tap=tap0,mac=52:54:00:12:34", "tap=tap0,mtu=20",
		"tap=0123456789abcdefX", "tap=tap0,queues=9", "tap=tap0,vhost=maybe",
		"tap=tap0,queues=2,vhostfds=7", "tap=tap0,mac=52:54-00:12:34:56",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&o, 0, sizeof(o));
		ck_assert_msg(dev_options_parse(&net_option_table, bad[i], &o, err, sizeof(err)) ==
			      -EINVAL, "accepted '%s'", bad[i]);
		ck_assert_msg(err[0], "no reason for '%s'", bad[i]);
	}
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(&net_option_table, "fd=7,vhostfds=8", &o, err,
					   sizeof(err)), 0);
	ck_assert_uint_eq(o.vhost, NET_VHOST_ON);
	dev_options_free(&net_option_table, &o);
}
END_TEST

/* ---- transmit ---- */

START_TEST(test_tx_frame)
{
	uint8_t frame[2048], got[2048];
	uint16_t head;
	ssize_t n;
	size_t len;

	create(1, NULL);
	bring_up(BASIC | CSUM | TSO, 1);
	len = make_frame(frame, other_mac, 1000, 0x5a);
	frame[VNET_HDR_NUM_BUFFERS] = 7;	/* junk the device must clear */
	frame[VNET_HDR_FLAGS] = VIRTIO_NET_HDR_F_DATA_VALID;	/* meaningless on transmit */
	head = post_tx(0, frame, len, 3);
	net_tx_process(&net->pairs[0]);
	n = take(0, got, sizeof(got));
	ck_assert_int_eq(n, (ssize_t)len);
	ck_assert_uint_eq(got[VNET_HDR_FLAGS], 0);
	ck_assert_uint_eq(rd16(got + VNET_HDR_NUM_BUFFERS), 0);
	ck_assert_mem_eq(got + HDR, frame + HDR, len - HDR);
	ck_assert_uint_eq(mock_vq_used_idx(&txq[0]), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&txq[0], 0).id, head);
	ck_assert_uint_eq(mock_vq_used_elem(&txq[0], 0).len, 0);
	ck_assert_uint_eq(net->pairs[0].tx_stats.packets, 1);
	ck_assert_uint_eq(net->pairs[0].tx_stats.bytes, len - HDR);
	ck_assert_uint_ge(used_irqs, 1);
	ck_assert(!needs_reset());

	/* Checksum offload: the header goes through as written. */
	len = make_frame(frame, other_mac, 100, 1);
	frame[VNET_HDR_FLAGS] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	wr16(frame + VNET_HDR_CSUM_START, 34);
	wr16(frame + VNET_HDR_CSUM_OFFSET, 16);
	post_tx(0, frame, len, 1);
	net_tx_process(&net->pairs[0]);
	ck_assert_int_eq(take(0, got, sizeof(got)), (ssize_t)len);
	ck_assert_uint_eq(got[VNET_HDR_FLAGS], VIRTIO_NET_HDR_F_NEEDS_CSUM);
	ck_assert_uint_eq(rd16(got + VNET_HDR_CSUM_START), 34);
	ck_assert_uint_eq(rd16(got + VNET_HDR_CSUM_OFFSET), 16);
}
END_TEST

START_TEST(test_tx_bad_header_dropped)
{
	uint8_t frame[256], got[256];
	size_t len;

	create(1, NULL);
	bring_up(BASIC, 1);	/* no CSUM, no TSO */
	len = make_frame(frame, other_mac, 100, 1);
	frame[VNET_HDR_FLAGS] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	wr16(frame + VNET_HDR_CSUM_START, 34);
	post_tx(0, frame, len, 1);
	memset(frame, 0, HDR);
	frame[VNET_HDR_GSO_TYPE] = VIRTIO_NET_HDR_GSO_TCPV4;
	wr16(frame + VNET_HDR_GSO_SIZE, 1400);
	post_tx(0, frame, len, 1);
	memset(frame, 0, HDR);
	post_tx(0, frame, HDR + 10, 1);	/* shorter than an Ethernet header */
	memset(frame, 0, HDR);
	post_tx(0, frame, len, 2);	/* a good one after them */
	net_tx_process(&net->pairs[0]);
	ck_assert_int_eq(take(0, got, sizeof(got)), (ssize_t)len);
	ck_assert_int_eq(take(0, got, sizeof(got)), -EAGAIN);
	ck_assert_uint_eq(mock_vq_used_idx(&txq[0]), 4);
	ck_assert_uint_eq(net->pairs[0].tx_stats.errors, 3);
	ck_assert_uint_eq(net->pairs[0].tx_stats.packets, 1);
	ck_assert(!needs_reset());
}
END_TEST

START_TEST(test_tx_hdr_check)
{
	const uint64_t all = CSUM | TSO | VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN);
	uint8_t h[HDR];

#define HDRSET(fl, gso, hl, gs, cs, co)                                                        \
	do {                                                                                   \
		memset(h, 0, sizeof(h));                                                       \
		h[0] = (fl);                                                                   \
		h[1] = (gso);                                                                  \
		wr16(h + 2, (hl));                                                             \
		wr16(h + 4, (gs));                                                             \
		wr16(h + 6, (cs));                                                             \
		wr16(h + 8, (co));                                                             \
	} while (0)

	HDRSET(0, 0, 0, 0, 0, 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, 0), 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 13, all), -EINVAL);
	ck_assert_int_eq(net_tx_hdr_check(h, NET_FRAME_MAX + 1, all), -EINVAL);
	HDRSET(1, 0, 0, 0, 34, 16);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, all), 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, 0), -EINVAL);
	HDRSET(1, 0, 0, 0, 34, 16);
	ck_assert_int_eq(net_tx_hdr_check(h, 51, all), -EINVAL);	/* field past the end */
	HDRSET(1, 0, 0, 0, 65535, 65535);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, all), -EINVAL);
	HDRSET(1, 0, 0, 0, 2, 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, all), -EINVAL);	/* inside the MAC header */
	HDRSET(1, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, all), 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, CSUM), -EINVAL);
	HDRSET(0, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1448, 0, 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, all), -EINVAL);	/* GSO needs NEEDS_CSUM */
	HDRSET(1, VIRTIO_NET_HDR_GSO_TCPV6, 74, 0, 54, 16);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, all), -EINVAL);	/* no segment size */
	HDRSET(1, VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN, 74, 1400, 54, 16);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, all), 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, CSUM | TSO), -EINVAL);
	HDRSET(1, VIRTIO_NET_HDR_GSO_UDP, 42, 1400, 34, 6);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, all), -EINVAL);
	HDRSET(1, VIRTIO_NET_HDR_GSO_TCPV4, 4000, 1400, 34, 16);
	ck_assert_int_eq(net_tx_hdr_check(h, 3000, all), -EINVAL);	/* hdr_len past the end */
	HDRSET(0, VIRTIO_NET_HDR_GSO_ECN, 0, 0, 0, 0);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, all), -EINVAL);
	HDRSET(0x7, 0, 99, 77, 55, 33);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, 0), -EINVAL);	/* NEEDS_CSUM without CSUM */
	HDRSET(0x6, 0, 99, 77, 55, 33);
	ck_assert_int_eq(net_tx_hdr_check(h, 60, 0), 0);
	ck_assert_uint_eq(h[0], 0);	/* cleaned */
	ck_assert_uint_eq(rd16(h + 2) | rd16(h + 4) | rd16(h + 6) | rd16(h + 8), 0);
#undef HDRSET
}
END_TEST

START_TEST(test_tx_short_header_needs_reset)
{
	uint8_t hdr[8] = { 0 };
	uint64_t g = mock_mem_alloc(&mem, sizeof(hdr), 16);
	struct mock_buf b = { .gpa = g, .len = sizeof(hdr) };

	create(1, NULL);
	bring_up(BASIC, 1);
	mock_mem_write(&mem, g, hdr, sizeof(hdr));
	mock_vq_add_chain(&txq[0], &b, 1);
	net_tx_process(&net->pairs[0]);
	ck_assert(needs_reset());
	ck_assert_uint_eq(mock_vq_used_idx(&txq[0]), 1);	/* returned, len 0 */
	ck_assert_uint_ge(config_irqs, 1);
}
END_TEST

START_TEST(test_tx_link_down_drops)
{
	uint8_t frame[256], got[256];
	size_t len;

	create(1, NULL);
	bring_up(BASIC, 1);
	net_set_link(net, false);
	len = make_frame(frame, other_mac, 50, 2);
	post_tx(0, frame, len, 1);
	net_tx_process(&net->pairs[0]);
	ck_assert_int_eq(take(0, got, sizeof(got)), -EAGAIN);
	ck_assert_uint_eq(mock_vq_used_idx(&txq[0]), 1);
	ck_assert_uint_eq(net->pairs[0].tx_stats.dropped, 1);
}
END_TEST

/* ---- receive ---- */

START_TEST(test_rx_single_buffer)
{
	uint8_t frame[2048], got[2048];
	uint64_t g;
	size_t len;

	create(1, NULL);
	bring_up(BASIC | CSUM, 1);
	g = post_rx(0, 1600);
	len = make_frame(frame, dev_mac, 200, 0x33);
	frame[VNET_HDR_FLAGS] = VIRTIO_NET_HDR_F_DATA_VALID;
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 1);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq[0], 0).len, len);
	mock_mem_read(&mem, g, got, len);
	ck_assert_uint_eq(got[VNET_HDR_FLAGS], VIRTIO_NET_HDR_F_DATA_VALID);
	ck_assert_uint_eq(rd16(got + VNET_HDR_NUM_BUFFERS), 1);
	ck_assert_mem_eq(got + HDR, frame + HDR, len - HDR);
	ck_assert_uint_eq(net->pairs[0].rx_stats.packets, 1);
	ck_assert_uint_eq(net->pairs[0].rx_stats.bytes, len - HDR);
	ck_assert_uint_ge(used_irqs, 1);

	/* No buffer left: the frame waits, and goes once one is posted. */
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 1);
	post_rx(0, 1600);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 2);
}
END_TEST

START_TEST(test_rx_flags_cleared_without_guest_csum)
{
	uint8_t frame[512], got[512];
	uint64_t g;
	size_t len;

	create(1, NULL);
	bring_up(BASIC, 1);
	g = post_rx(0, 1600);
	len = make_frame(frame, dev_mac, 60, 1);
	frame[VNET_HDR_FLAGS] = VIRTIO_NET_HDR_F_DATA_VALID;
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 1);
	mock_mem_read(&mem, g, got, HDR);
	ck_assert_uint_eq(got[VNET_HDR_FLAGS], 0);
	/* A GSO frame the guest did not negotiate is dropped. */
	post_rx(0, 1600);
	frame[VNET_HDR_GSO_TYPE] = VIRTIO_NET_HDR_GSO_TCPV4;
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 1);
	ck_assert_uint_eq(net->pairs[0].rx_stats.dropped, 1);
}
END_TEST

START_TEST(test_rx_too_small_buffer_drops)
{
	uint8_t frame[2048];
	size_t len;

	create(1, NULL);
	bring_up(BASIC, 1);
	post_rx(0, 100);	/* less than a full frame, without MRG_RXBUF */
	len = make_frame(frame, dev_mac, 500, 1);
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 0);
	ck_assert_uint_eq(net->pairs[0].rx_stats.dropped, 1);
	/* The buffer is kept for a frame that fits. */
	len = make_frame(frame, dev_mac, 40, 1);
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 1);
	ck_assert(!needs_reset());
}
END_TEST

START_TEST(test_rx_mergeable)
{
	uint8_t frame[4096], got[4096];
	uint64_t g[4];
	struct virtq_used_elem e;
	size_t len;

	create(1, NULL);
	bring_up(BASIC | CSUM | MRG, 1);
	for (unsigned i = 0; i < 4; i++)
		g[i] = post_rx(0, 1024);
	len = make_frame(frame, dev_mac, 1500, 0x77);	/* 1526 bytes: two buffers */
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 2);
	e = mock_vq_used_elem(&rxq[0], 0);
	ck_assert_uint_eq(e.len, 1024);
	e = mock_vq_used_elem(&rxq[0], 1);
	ck_assert_uint_eq(e.len, len - 1024);
	mock_mem_read(&mem, g[0], got, 1024);
	mock_mem_read(&mem, g[1], got + 1024, len - 1024);
	ck_assert_uint_eq(rd16(got + VNET_HDR_NUM_BUFFERS), 2);
	ck_assert_mem_eq(got + HDR, frame + HDR, len - HDR);

	/* A small one takes one buffer. */
	len = make_frame(frame, dev_mac, 100, 0x11);
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 3);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq[0], 2).len, len);
	mock_mem_read(&mem, g[2], got, HDR);
	ck_assert_uint_eq(rd16(got + VNET_HDR_NUM_BUFFERS), 1);
}
END_TEST

START_TEST(test_rx_mergeable_gso_direct_and_bounce)
{
	uint8_t *frame = malloc(70000);
	size_t len;

	create(1, NULL);
	bring_up(BASIC | CSUM | TSO | MRG, 1);
	/* 80 x 1 KiB covers the largest frame: frames go straight in. */
	for (unsigned i = 0; i < 80; i++)
		post_rx(0, 1024);
	len = make_frame(frame, dev_mac, 3000, 0x42);
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 3);
	ck_assert_uint_eq(net->pairs[0].rx.pending, 0);
	/* A 60000-byte GSO frame. */
	len = make_frame(frame, dev_mac, 60000, 0x43);
	frame[VNET_HDR_FLAGS] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	frame[VNET_HDR_GSO_TYPE] = VIRTIO_NET_HDR_GSO_TCPV4;
	wr16(frame + VNET_HDR_GSO_SIZE, 1448);
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 3 + 59);
	ck_assert_uint_eq(net->pairs[0].rx_stats.packets, 2);
	/* 18 KiB left: less than the largest frame, so the next frame goes
	 * through the bounce buffer; one too large waits for buffers. */
	len = make_frame(frame, dev_mac, 30000, 0x44);
	inject(0, frame, len);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 62);
	ck_assert_uint_eq(net->pairs[0].rx.pending, len);
	for (unsigned i = 0; i < 20; i++)
		post_rx(0, 1024);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 62 + 30);
	ck_assert_uint_eq(net->pairs[0].rx.pending, 0);
	ck_assert_uint_eq(net->pairs[0].rx_stats.packets, 3);
	ck_assert(!needs_reset());
	free(frame);
}
END_TEST

START_TEST(test_rx_stash_given_back)
{
	struct virtqueue *vq;

	create(1, NULL);
	bring_up(BASIC | MRG, 1);
	for (unsigned i = 0; i < 4; i++)
		post_rx(0, 1024);
	net_rx_process(&net->pairs[0]);	/* nothing to read, buffers stashed */
	vq = virtio_dev_queue(dev, 0);
	ck_assert_uint_eq(vq->last_avail_idx, 2);
	ck_assert_uint_eq(vq->inflight, 2);
	net_rx_drop_stash(&net->pairs[0], true);
	ck_assert_uint_eq(vq->last_avail_idx, 0);
	ck_assert_uint_eq(vq->inflight, 0);
}
END_TEST

START_TEST(test_rx_bad_buffers_need_reset)
{
	uint64_t g = mock_mem_alloc(&mem, 64, 16);
	struct mock_buf ro = { .gpa = g, .len = 64 };
	struct mock_buf small = { .gpa = g, .len = 8, .write = true };
	uint8_t frame[256];

	create(1, NULL);
	bring_up(BASIC, 1);
	inject(0, frame, make_frame(frame, dev_mac, 50, 1));
	mock_vq_add_chain(&rxq[0], &ro, 1);	/* nothing writable */
	net_rx_process(&net->pairs[0]);
	ck_assert(needs_reset());
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 1);

	virtio_dev_set_status(dev, 0);
	bring_up(BASIC, 1);
	ck_assert(!needs_reset());
	mock_vq_add_chain(&rxq[0], &small, 1);	/* smaller than the header */
	net_rx_process(&net->pairs[0]);
	ck_assert(needs_reset());
}
END_TEST

START_TEST(test_rx_loop_descriptor_needs_reset)
{
	uint64_t g = mock_mem_alloc(&mem, 2048, 16);
	uint8_t frame[256];

	create(1, NULL);
	bring_up(BASIC, 1);
	mock_vq_set_desc(&rxq[0], 0, g, 1024, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	mock_vq_set_desc(&rxq[0], 1, g + 1024, 1024, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	mock_vq_publish(&rxq[0], 0);
	inject(0, frame, make_frame(frame, dev_mac, 50, 1));
	net_rx_process(&net->pairs[0]);
	ck_assert(needs_reset());
	/* Broken until reset: nothing more is read. */
	post_rx(0, 2048);
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(net->pairs[0].rx_stats.packets, 0);
}
END_TEST

START_TEST(test_rx_link_down_drains)
{
	uint8_t frame[256];

	create(1, NULL);
	bring_up(BASIC, 1);
	post_rx(0, 1600);
	net_set_link(net, false);
	inject(0, frame, make_frame(frame, dev_mac, 50, 1));
	inject(0, frame, make_frame(frame, dev_mac, 50, 1));
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 0);
	ck_assert_uint_eq(net->pairs[0].rx_stats.dropped, 2);
	net_set_link(net, true);
	inject(0, frame, make_frame(frame, dev_mac, 50, 1));
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[0]), 1);
}
END_TEST

/* ---- control queue and receive filter ---- */

/* Frames to dst that reach the guest: 0 or 1. One buffer is kept
 * available (a filtered frame leaves its buffer stashed for the next). */
static unsigned rx_count(const uint8_t *dst)
{
	struct virtqueue *vq = virtio_dev_queue(dev, 0);
	uint64_t before = net->pairs[0].rx_stats.packets;
	uint8_t frame[256];

	if (!net->pairs[0].rx.nbufs && rxq[0].avail_idx == vq->last_avail_idx)
		post_rx(0, 1600);
	inject(0, frame, make_frame(frame, dst, 50, 1));
	net_rx_process(&net->pairs[0]);
	return (unsigned)(net->pairs[0].rx_stats.packets - before);
}

START_TEST(test_ctrl_rx_filter)
{
	uint8_t table[4 + 6 + 4 + 12];
	uint8_t addr[6];

	create(1, NULL);
	bring_up(BASIC, 1);
	/* Promiscuous after reset. */
	ck_assert_uint_eq(rx_count(other_mac), 1);
	ck_assert_uint_eq(ctrl_rx_mode(VIRTIO_NET_CTRL_RX_PROMISC, false), VIRTIO_NET_OK);
	ck_assert_uint_eq(events, 1);
	ck_assert_str_eq(last_event, "NIC_RX_FILTER_CHANGED");
	ck_assert_uint_eq(rx_count(other_mac), 0);
	ck_assert_uint_eq(rx_count(dev_mac), 1);
	ck_assert_uint_eq(rx_count(bcast), 1);
	ck_assert_uint_eq(rx_count(mcast), 0);
	/* MAC table: one unicast, two multicast entries. */
	wr32(table, 1);
	memcpy(table + 4, other_mac, 6);
	wr32(table + 10, 2);
	memcpy(table + 14, mcast, 6);
	memcpy(table + 20, bcast, 6);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table,
			       sizeof(table)), VIRTIO_NET_OK);
	ck_assert_uint_eq(events, 1);	/* not re-armed: no query-rx-filter yet */
	ck_assert_uint_eq(rx_count(other_mac), 1);
	ck_assert_uint_eq(rx_count(mcast), 1);
	ck_assert_uint_eq(ctrl_rx_mode(VIRTIO_NET_CTRL_RX_NOBCAST, true), VIRTIO_NET_OK);
	ck_assert_uint_eq(rx_count(bcast), 0);
	ck_assert_uint_eq(ctrl_rx_mode(VIRTIO_NET_CTRL_RX_NOMULTI, true), VIRTIO_NET_OK);
	ck_assert_uint_eq(rx_count(mcast), 0);
	ck_assert_uint_eq(ctrl_rx_mode(VIRTIO_NET_CTRL_RX_NOUNI, true), VIRTIO_NET_OK);
	ck_assert_uint_eq(rx_count(dev_mac), 0);
	ck_assert_uint_eq(ctrl_rx_mode(VIRTIO_NET_CTRL_RX_NOUNI, false), VIRTIO_NET_OK);
	/* Changing the address moves the filter with it. */
	memcpy(addr, other_mac, 6);
	addr[5] = 0x99;
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, addr, 6),
			  VIRTIO_NET_OK);
	virtio_dev_config_read(dev, 0, table, 6);
	ck_assert_mem_eq(table, addr, 6);
	ck_assert_uint_eq(rx_count(addr), 1);
	/* Reset: back to promiscuous and the configured address. */
	virtio_dev_set_status(dev, 0);
	bring_up(BASIC, 1);
	virtio_dev_config_read(dev, 0, table, 6);
	ck_assert_mem_eq(table, dev_mac, 6);
	ck_assert(net->filter.promisc);
}
END_TEST

START_TEST(test_ctrl_bad_commands)
{
	uint8_t buf[64] = { 0 };
	uint8_t big[4 + 6 * 65 + 4];

	create(1, NULL);
	bring_up(BASIC, 1);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_RX, 9, buf, 1), VIRTIO_NET_ERR);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_RX, 0, buf, 0), VIRTIO_NET_ERR);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_RX, 0, buf, 2), VIRTIO_NET_ERR);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_VLAN, 0, buf, 2), VIRTIO_NET_ERR);
	ck_assert_uint_eq(ctrl(77, 0, buf, 2), VIRTIO_NET_ERR);
	/* MQ not negotiated. */
	wr16(buf, 1);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MQ, 0, buf, 2), VIRTIO_NET_ERR);
	/* Tables whose counts disagree with the length. */
	wr32(buf, 3);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, buf, 10), VIRTIO_NET_ERR);
	wr32(buf, 0xffffffff);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, buf, 16), VIRTIO_NET_ERR);
	wr32(buf, 0);
	wr32(buf + 4, 1);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, buf, 13), VIRTIO_NET_ERR);	/* short */
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, buf, 15), VIRTIO_NET_ERR);	/* long */
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, buf, 14), VIRTIO_NET_OK);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, buf, 8), VIRTIO_NET_ERR);
	wr32(buf + 4, 0);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, buf, 8), VIRTIO_NET_OK);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, buf, 5),
			  VIRTIO_NET_ERR);
	/* More entries than the table holds: overflow, accept all. */
	memset(big, 0, sizeof(big));
	wr32(big, 65);
	wr32(big + 4 + 6 * 65, 0);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, big, sizeof(big)), VIRTIO_NET_OK);
	ck_assert(net->filter.uni_overflow);
	ck_assert_uint_eq(net->filter.nr_uni, 0);
	/* Guest offloads beyond what was negotiated. */
	wr64(buf, VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM));
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_GUEST_OFFLOADS, 0, buf, 8), VIRTIO_NET_ERR);
	ck_assert(!needs_reset());
}
END_TEST

/* With EVENT_IDX the driver kicks only past avail_event: the device must
 * move it forward after every batch, or the second command never comes. */
START_TEST(test_ctrl_event_idx_kicks)
{
	uint8_t on = 0;

	create(1, NULL);
	bring_up(BASIC | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX), 1);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1),
				  VIRTIO_NET_OK);
		ck_assert_uint_eq(mock_vq_avail_event(&ctrlq), i + 1);
	}
}
END_TEST

START_TEST(test_ctrl_malformed_chain)
{
	uint64_t h = mock_mem_alloc(&mem, 2, 16);
	struct mock_buf b = { .gpa = h, .len = 2 };	/* no ack byte */

	create(1, NULL);
	bring_up(BASIC, 1);
	mock_vq_add_chain(&ctrlq, &b, 1);
	net_ctrl_process(net);
	ck_assert(needs_reset());
	ck_assert_uint_eq(mock_vq_used_idx(&ctrlq), 1);
}
END_TEST

START_TEST(test_ctrl_guest_offloads)
{
	uint8_t buf[8];

	create(1, NULL);
	bring_up(BASIC | CSUM | TSO | VIRTIO_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS), 1);
	ck_assert_uint_eq(last_offload, VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			  VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6));
	ck_assert_uint_eq(net_rx_need(net), HDR + NET_FRAME_MAX);
	wr64(buf, VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM));
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_GUEST_OFFLOADS, 0, buf, 8), VIRTIO_NET_OK);
	ck_assert_uint_eq(last_offload, VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM));
	ck_assert_uint_lt(net_rx_need(net), 2000);
	virtio_dev_set_status(dev, 0);
	ck_assert_uint_eq(last_offload, 0);
}
END_TEST

START_TEST(test_multiqueue)
{
	uint8_t frame[256], got[256];
	uint16_t pairs;

	create(2, NULL);
	bring_up(BASIC | VIRTIO_BIT(VIRTIO_NET_F_MQ), 2);
	ck_assert_uint_eq(net->pairs_active, 1);
	ck_assert_uint_ge(queue_disables[1], 1);	/* only the first pair after DRIVER_OK */
	wr16((uint8_t *)&pairs, 3);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MQ, 0, &pairs, 2), VIRTIO_NET_ERR);
	wr16((uint8_t *)&pairs, 0);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MQ, 0, &pairs, 2), VIRTIO_NET_ERR);
	/* Pair 1 is not served yet. */
	post_rx(1, 1600);
	inject(1, frame, make_frame(frame, dev_mac, 50, 1));
	net_rx_process(&net->pairs[1]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[1]), 0);
	wr16((uint8_t *)&pairs, 2);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MQ, 0, &pairs, 2), VIRTIO_NET_OK);
	ck_assert_uint_eq(net->pairs_active, 2);
	ck_assert_uint_ge(queue_enables[1], 1);
	net_rx_process(&net->pairs[1]);
	ck_assert_uint_eq(mock_vq_used_idx(&rxq[1]), 1);
	ck_assert_uint_eq(net->pairs[1].rx_stats.packets, 1);
	post_tx(1, frame, make_frame(frame, other_mac, 70, 2), 1);
	net_tx_process(&net->pairs[1]);
	ck_assert_int_eq(take(1, got, sizeof(got)), HDR + 14 + 70);
	ck_assert_int_eq(take(0, got, sizeof(got)), -EAGAIN);
	ck_assert_uint_eq(net->pairs[1].tx_stats.packets, 1);
	ck_assert_uint_eq(net->pairs[0].tx_stats.packets, 0);
}
END_TEST

START_TEST(test_save_load)
{
	uint8_t table[4 + 4 + 6];
	json_t *saved;
	char err[256];

	create(1, NULL);
	bring_up(BASIC, 1);
	ck_assert_uint_eq(ctrl_rx_mode(VIRTIO_NET_CTRL_RX_PROMISC, false), VIRTIO_NET_OK);
	wr32(table, 0);
	wr32(table + 4, 1);
	memcpy(table + 8, mcast, 6);
	ck_assert_uint_eq(ctrl(VIRTIO_NET_CTRL_MAC, 0, table, sizeof(table)), VIRTIO_NET_OK);
	saved = virtio_device_find("virtio-net")->save(dev);
	ck_assert_ptr_nonnull(saved);
	virtio_dev_set_status(dev, 0);
	ck_assert(net->filter.promisc);
	bring_up(BASIC, 1);
	ck_assert_int_eq(virtio_device_find("virtio-net")->load(dev, saved, err, sizeof(err)), 0);
	ck_assert(!net->filter.promisc);
	ck_assert_uint_eq(net->filter.nr_multi, 1);
	ck_assert_mem_eq(net->filter.multi[0], mcast, 6);
	/* Bad state is refused with a reason. */
	json_object_set_new(saved, "pairs", json_integer(5));
	ck_assert_int_eq(virtio_device_find("virtio-net")->load(dev, saved, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "pairs"));
	json_decref(saved);
}
END_TEST

START_TEST(test_qmp_without_devices)
{
	const struct device_qmp_command *c;
	json_t *args = json_pack("{s:s, s:b}", "name", "nope", "up", 0), *ret = NULL;
	char err[128];
	unsigned found = 0;

	for (c = net_qmp_commands; c->name; c++) {
		found++;
		if (!strcmp(c->name, "set_link")) {
			ck_assert_int_eq(c->fn(NULL, args, &ret, err, sizeof(err)), -ENODEV);
			ck_assert_ptr_nonnull(strstr(err, "nope"));
		} else {
			json_t *empty = json_object();

			ck_assert_int_eq(c->fn(NULL, empty, &ret, err, sizeof(err)), 0);
			ck_assert(json_is_array(ret) && json_array_size(ret) == 0);
			json_decref(ret);
			json_decref(empty);
		}
	}
	ck_assert_uint_eq(found, 4);
	json_decref(args);
}
END_TEST

START_TEST(test_vhost_mem_table)
{
	struct mock_mem two;
	uint8_t *hi = aligned_alloc(4096, 1 << 20);
	uint64_t *m;

	/* struct vhost_memory: u32 nregions, u32 padding, then per region
	 * guest_phys_addr, memory_size, userspace_addr, flags_padding. */
	mock_mem_init(&two, 0, 1 << 20);
	ck_assert_int_eq(gm_add_region(&two.gm, 1ULL << 32, 1 << 20, hi), 0);
	ck_assert_uint_eq(vhost_mem_table_size(&two.gm), 8 + 2 * 32);
	m = calloc(1, vhost_mem_table_size(&two.gm));
	vhost_mem_table_fill(&two.gm, (struct vhost_memory *)m);
	ck_assert_uint_eq((uint32_t)m[0], 2);
	ck_assert_uint_eq(m[1], 0);
	ck_assert_uint_eq(m[2], 1 << 20);
	ck_assert_uint_eq(m[3], (uintptr_t)two.buf);
	ck_assert_uint_eq(m[5], 1ULL << 32);
	ck_assert_uint_eq(m[7], (uintptr_t)hi);
	free(m);
	free(hi);
	mock_mem_destroy(&two);
}
END_TEST

static Suite *net_suite(void)
{
	Suite *s = suite_create("virtio-net");
	TCase *tc = tcase_create("device");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_features);
	tcase_add_test(tc, test_config_space);
	tcase_add_test(tc, test_default_mac_and_options);
	tcase_add_test(tc, test_tx_frame);
	tcase_add_test(tc, test_tx_bad_header_dropped);
	tcase_add_test(tc, test_tx_hdr_check);
	tcase_add_test(tc, test_tx_short_header_needs_reset);
	tcase_add_test(tc, test_tx_link_down_drops);
	tcase_add_test(tc, test_rx_single_buffer);
	tcase_add_test(tc, test_rx_flags_cleared_without_guest_csum);
	tcase_add_test(tc, test_rx_too_small_buffer_drops);
	tcase_add_test(tc, test_rx_mergeable);
	tcase_add_test(tc, test_rx_mergeable_gso_direct_and_bounce);
	tcase_add_test(tc, test_rx_stash_given_back);
	tcase_add_test(tc, test_rx_bad_buffers_need_reset);
	tcase_add_test(tc, test_rx_loop_descriptor_needs_reset);
	tcase_add_test(tc, test_rx_link_down_drains);
	tcase_add_test(tc, test_ctrl_rx_filter);
	tcase_add_test(tc, test_ctrl_bad_commands);
	tcase_add_test(tc, test_ctrl_event_idx_kicks);
	tcase_add_test(tc, test_ctrl_malformed_chain);
	tcase_add_test(tc, test_ctrl_guest_offloads);
	tcase_add_test(tc, test_multiqueue);
	tcase_add_test(tc, test_save_load);
	tcase_add_test(tc, test_qmp_without_devices);
	tcase_add_test(tc, test_vhost_mem_table);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(net_suite());
}
