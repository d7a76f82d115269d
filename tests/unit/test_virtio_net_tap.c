/* virtio-net on a real tap, with its worker threads running. Each test
 * forks (Check's default) into a network namespace of its own, so the
 * taps it creates vanish with it; without the rights for that (no
 * CAP_SYS_ADMIN / CAP_NET_ADMIN, no /dev/net/tun) they fail saying so:
 * tests never skip silently. The
 * "host" end is a packet socket on the tap. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/log.h"
#include "devices/virtio/net/net.h"
#include "helpers/ck_run.h"
#include "helpers/mock_vq.h"

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(16ULL << 20)
#define QSIZE		256
#define HDR		VIRTIO_NET_HDR_LEN

static const uint8_t dev_mac[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
static const uint8_t host_mac[6] = { 0x52, 0x54, 0x00, 0x11, 0x22, 0x33 };

static struct mock_mem mem;
static struct mock_vq rxq[2], txq[2], ctrlq;
static struct net_dev *net;
static struct virtio_device *dev;
static unsigned used_irqs;

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
	__atomic_add_fetch(&used_irqs, 1, __ATOMIC_RELAXED);
}

static void on_config(struct virtio_device *d)
{
	(void)d;
}

/* In the forked test process: a network namespace of our own. */
static bool own_netns(void)
{
	FILE *f;

	if (access("/dev/net/tun", R_OK | W_OK))
		ck_abort_msg("/dev/net/tun: %s (these tests need it, and root)", strerror(errno));
	if (unshare(CLONE_NEWNET))
		ck_abort_msg("unshare(CLONE_NEWNET): %s (these tests need CAP_SYS_ADMIN and "
			     "CAP_NET_ADMIN: run them as root)", strerror(errno));
	/* No IPv6 chatter (router solicitations, MLD) on the taps. */
	f = fopen("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w");
	if (f) {
		fputs("1", f);
		fclose(f);
	}
	return true;
}

static void if_up(const char *ifname)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(s, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	ck_assert_int_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
}

static int packet_socket(const char *ifname)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));

	ck_assert_int_ge(s, 0);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	ck_assert_int_gt(sll.sll_ifindex, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

static void create_on(struct net_backend *be, unsigned pairs)
{
	struct device_ctx ctx = { .mem = &mem.gm };
	struct net_opts o;
	char err[256];

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(&net_option_table, "fd=99,mac=52:54:00:aa:bb:cc", &o,
					   err, sizeof(err)), 0);
	o.queues = pairs;
	ck_assert_int_eq(net_dev_create(&net, &ctx, &o, be), 0);
	dev_options_free(&net_option_table, &o);
	dev = &net->vdev;
	dev->notify_used = on_used;
	dev->notify_config = on_config;
}

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

static void setup(void)
{
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
	net = NULL;
	used_irqs = 0;
}

static void teardown(void)
{
	net_dev_destroy(net);
	net = NULL;
	mock_mem_destroy(&mem);
}

static bool wait_used(struct mock_vq *mq, uint16_t want)
{
	for (int i = 0; i < 2000; i++) {
		if (mock_vq_used_idx(mq) == want)
			return true;
		usleep(1000);
	}
	return false;
}

static ssize_t wait_packet(int s, uint8_t *buf, size_t len)
{
	struct pollfd p = { .fd = s, .events = POLLIN };

	for (;;) {
		ssize_t n;

		if (poll(&p, 1, 2000) <= 0)
			return -ETIMEDOUT;
		n = recv(s, buf, len, 0);
		/* Skip the kernel's own chatter (IPv6 router solicitations). */
		if (n >= 14 && buf[12] == 0x88 && buf[13] == 0xb5)
			return n;
	}
}

static size_t test_frame(uint8_t *buf, const uint8_t *dst, const uint8_t *src, size_t payload)
{
	memcpy(buf, dst, 6);
	memcpy(buf + 6, src, 6);
	buf[12] = 0x88;	/* local experimental ethertype */
	buf[13] = 0xb5;
	for (size_t i = 0; i < payload; i++)
		buf[14 + i] = (uint8_t)(i * 7);
	return 14 + payload;
}

START_TEST(test_tap_datapath)
{
	struct net_backend be;
	char err[256];
	uint8_t frame[2048], got[2048];
	uint64_t tx_hdr, tx_buf, rx_buf[4];
	struct mock_buf b[2];
	size_t len;
	int ps;

	if (!own_netns())
		return;
	ck_assert_msg(net_tap_open(&be, "embt%d", 1, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(be.ifname, "embt0");
	if_up(be.ifname);
	ps = packet_socket(be.ifname);
	create_on(&be, 1);
	ck_assert_int_eq(net_dev_start(net), 0);
	bring_up(VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_CSUM) |
		 VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
		 VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
		 VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX), 1);
	ck_assert_uint_eq(net->be.offload_features,
			  VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
			  VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6));

	/* Guest to host: the worker picks the chain up on the kick. */
	len = test_frame(frame, host_mac, dev_mac, 300);
	tx_hdr = mock_mem_alloc(&mem, HDR, 16);
	tx_buf = mock_mem_alloc(&mem, len, 16);
	mock_mem_write(&mem, tx_buf, frame, len);
	b[0] = (struct mock_buf){ .gpa = tx_hdr, .len = HDR };
	b[1] = (struct mock_buf){ .gpa = tx_buf, .len = (uint32_t)len };
	mock_vq_add_chain(&txq[0], b, 2);
	virtio_dev_queue_notify(dev, 1);
	ck_assert(wait_used(&txq[0], 1));
	ck_assert_int_eq(wait_packet(ps, got, sizeof(got)), (ssize_t)len);
	ck_assert_mem_eq(got, frame, len);

	/* Host to guest, into mergeable buffers. */
	for (unsigned i = 0; i < 4; i++) {
		rx_buf[i] = mock_mem_alloc(&mem, 1024, 16);
		b[0] = (struct mock_buf){ .gpa = rx_buf[i], .len = 1024, .write = true };
		mock_vq_add_chain(&rxq[0], b, 1);
	}
	virtio_dev_queue_notify(dev, 0);
	len = test_frame(frame, dev_mac, host_mac, 1400);
	ck_assert_int_eq(send(ps, frame, len, 0), (ssize_t)len);
	ck_assert(wait_used(&rxq[0], 2));
	ck_assert_uint_eq(mock_vq_used_elem(&rxq[0], 0).len, 1024);
	ck_assert_uint_eq(mock_vq_used_elem(&rxq[0], 1).len, HDR + len - 1024);
	mock_mem_read(&mem, rx_buf[0], got, 1024);
	mock_mem_read(&mem, rx_buf[1], got + 1024, HDR + len - 1024);
	ck_assert_uint_eq(rd16(got + VNET_HDR_NUM_BUFFERS), 2);
	ck_assert_mem_eq(got + HDR, frame, len);
	ck_assert_uint_ge(__atomic_load_n(&used_irqs, __ATOMIC_RELAXED), 2);
	ck_assert_uint_eq(__atomic_load_n(&net->pairs[0].rx_stats.packets, __ATOMIC_RELAXED), 1);

	/* Pause hands the stashed buffers back; resume takes them again. */
	net_dev_pause(net);
	ck_assert_uint_eq(virtio_dev_queue(dev, 0)->inflight, 0);
	net_dev_resume(net);
	len = test_frame(frame, dev_mac, host_mac, 100);
	ck_assert_int_eq(send(ps, frame, len, 0), (ssize_t)len);
	ck_assert(wait_used(&rxq[0], 3));

	/* Link down: the guest's frames go nowhere. */
	net_set_link(net, false);
	len = test_frame(frame, host_mac, dev_mac, 60);
	mock_mem_write(&mem, tx_buf, frame, len);
	b[0] = (struct mock_buf){ .gpa = tx_hdr, .len = HDR };
	b[1] = (struct mock_buf){ .gpa = tx_buf, .len = (uint32_t)len };
	mock_vq_add_chain(&txq[0], b, 2);
	virtio_dev_queue_notify(dev, 1);
	ck_assert(wait_used(&txq[0], 2));
	ck_assert_int_eq(wait_packet(ps, got, sizeof(got)), -ETIMEDOUT);
	close(ps);
}
END_TEST

START_TEST(test_tap_multiqueue_and_adopt)
{
	struct net_backend be, be2;
	char err[256];
	int fds[2], pipefd[2];

	if (!own_netns())
		return;
	ck_assert_msg(net_tap_open(&be, "embmq", 2, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(be.nr, 2);
	/* Detach and attach a queue; doing either twice is harmless. */
	ck_assert_int_eq(be.ops->set_queue_enabled(&be, 1, false), 0);
	ck_assert_int_eq(be.ops->set_queue_enabled(&be, 1, false), 0);
	ck_assert_int_eq(be.ops->set_queue_enabled(&be, 1, true), 0);
	ck_assert_int_eq(be.ops->set_offload(&be, VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
					     VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
					     VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN)), 0);
	/* A single-queue open of a multiqueue tap is refused, with the reason. */
	ck_assert_int_eq(net_tap_open(&be2, "embmq", 1, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "queues=1"));

	/* Passed fds: the same tap, checked and adopted. */
	fds[0] = be.fds[0];
	fds[1] = be.fds[1];
	be.nr = 0;
	ck_assert_msg(net_tap_adopt(&be2, fds, 2, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(be2.ifname, "embmq");
	ck_assert_int_eq(fcntl(fds[0], F_GETFL) & O_NONBLOCK, O_NONBLOCK);
	be2.ops->close(&be2);

	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(net_tap_adopt(&be2, pipefd, 1, err, sizeof(err)), -ENOTTY);
	ck_assert_ptr_nonnull(strstr(err, "is not an attached tap"));
	ck_assert_int_eq(net_tap_adopt(&be2, (int[]){ 1000 }, 1, err, sizeof(err)), -EBADF);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

START_TEST(test_tap_needs_cap_net_admin)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	struct net_backend be;
	char err[256];

	if (!own_netns())
		return;
	ck_assert_int_eq(syscall(SYS_capget, &h, d), 0);
	d[0].effective &= ~(1u << CAP_NET_ADMIN);
	ck_assert_int_eq(syscall(SYS_capset, &h, d), 0);
	ck_assert_int_eq(net_tap_open(&be, "embcap", 1, err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "CAP_NET_ADMIN"));
	ck_assert_ptr_nonnull(strstr(err, "fd=N"));
}
END_TEST

START_TEST(test_tap_gone)
{
	struct net_backend be;
	char err[256];
	uint8_t frame[128];
	uint64_t g;
	struct mock_buf b;
	unsigned errors;

	if (!own_netns())
		return;
	ck_assert_msg(net_tap_open(&be, "embgone", 1, err, sizeof(err)) == 0, "%s", err);
	if_up(be.ifname);
	create_on(&be, 1);
	bring_up(VIRTIO_BIT(VIRTIO_NET_F_MAC), 1);
	ck_assert_int_eq(system("ip link del embgone"), 0);
	g = mock_mem_alloc(&mem, HDR + 60, 16);
	memset(frame, 0, sizeof(frame));
	test_frame(frame + HDR, dev_mac, host_mac, 46);
	mock_mem_write(&mem, g, frame, HDR + 60);
	b = (struct mock_buf){ .gpa = g, .len = HDR + 60 };
	mock_vq_add_chain(&txq[0], &b, 1);
	errors = log_error_count();
	net_tx_process(&net->pairs[0]);
	ck_assert(net->pairs[0].gone);
	ck_assert_uint_eq(log_error_count(), errors + 1);
	ck_assert_uint_eq(mock_vq_used_idx(&txq[0]), 1);
	/* Receive gives up quietly too. */
	net_rx_process(&net->pairs[0]);
	ck_assert_uint_eq(log_error_count(), errors + 1);
}
END_TEST

static Suite *tap_suite(void)
{
	Suite *s = suite_create("virtio-net-tap");
	TCase *tc = tcase_create("tap");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_tap_datapath);
	tcase_add_test(tc, test_tap_multiqueue_and_adopt);
	tcase_add_test(tc, test_tap_needs_cap_net_admin);
	tcase_add_test(tc, test_tap_gone);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(tap_suite());
}
