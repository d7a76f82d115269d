/* virtio-net (virtio 1.2 section 5.1), modern PCI 0x1041, on a tap.
 *
 * Files:
 *   options.c   the --net / "net" options table
 *   device.c    features, config space, activation and reset, link state,
 *               pause/resume, the registry descriptor
 *   ctrl.c      the control queue: RX mode, MAC table, MAC address, MQ,
 *               guest offloads; the receive filter
 *   datapath.c  receive and transmit on one worker per queue pair
 *   hdr.c       the virtio_net_hdr checks (transmit) and fix-ups (receive)
 *   tap.c       the tap backend (/dev/net/tun)
 *   vhost.c     the vhost-net datapath (devices/vhost/)
 *   qmp.c       set_link, query-rx-filter, x-query-net / query-network
 *
 * Queues: receiveq(i) = 2i, transmitq(i) = 2i + 1, then the control queue.
 * Threads: the datapath of pair i runs on its own struct dev_worker; the
 * control queue, QMP and pause/resume run on the main loop; activate, reset
 * and config access come from vCPU threads (the transport's lock held).
 * Activation and reset pause every worker while they change pair state. */
#ifndef EMBER_VIRTIO_NET_H
#define EMBER_VIRTIO_NET_H

#include <net/if.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/device.h"
#include "devices/options.h"
#include "devices/virtio/virtio.h"

/* Feature bits (5.1.3). */
#define VIRTIO_NET_F_CSUM		0
#define VIRTIO_NET_F_GUEST_CSUM		1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU		3
#define VIRTIO_NET_F_MAC		5
#define VIRTIO_NET_F_GUEST_TSO4		7
#define VIRTIO_NET_F_GUEST_TSO6		8
#define VIRTIO_NET_F_GUEST_ECN		9
#define VIRTIO_NET_F_GUEST_UFO		10
#define VIRTIO_NET_F_HOST_TSO4		11
#define VIRTIO_NET_F_HOST_TSO6		12
#define VIRTIO_NET_F_HOST_ECN		13
#define VIRTIO_NET_F_HOST_UFO		14
#define VIRTIO_NET_F_MRG_RXBUF		15
#define VIRTIO_NET_F_STATUS		16
#define VIRTIO_NET_F_CTRL_VQ		17
#define VIRTIO_NET_F_CTRL_RX		18
#define VIRTIO_NET_F_CTRL_VLAN		19
#define VIRTIO_NET_F_CTRL_RX_EXTRA	20
#define VIRTIO_NET_F_GUEST_ANNOUNCE	21
#define VIRTIO_NET_F_MQ			22
#define VIRTIO_NET_F_CTRL_MAC_ADDR	23

/* The guest offloads CTRL_GUEST_OFFLOADS may switch (5.1.6.5.6.1). */
#define NET_GUEST_OFFLOADS                                                              \
	(VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |    \
	 VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN) |     \
	 VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO))

/* struct virtio_net_hdr_v1 (5.1.6), little-endian; always 12 bytes with
 * VERSION_1. */
#define VIRTIO_NET_HDR_LEN		12
#define VNET_HDR_FLAGS			0
#define VNET_HDR_GSO_TYPE		1
#define VNET_HDR_HDR_LEN		2
#define VNET_HDR_GSO_SIZE		4
#define VNET_HDR_CSUM_START		6
#define VNET_HDR_CSUM_OFFSET		8
#define VNET_HDR_NUM_BUFFERS		10

#define VIRTIO_NET_HDR_F_NEEDS_CSUM	1
#define VIRTIO_NET_HDR_F_DATA_VALID	2
#define VIRTIO_NET_HDR_F_RSC_INFO	4
#define VIRTIO_NET_HDR_GSO_NONE		0
#define VIRTIO_NET_HDR_GSO_TCPV4	1
#define VIRTIO_NET_HDR_GSO_UDP		3
#define VIRTIO_NET_HDR_GSO_TCPV6	4
#define VIRTIO_NET_HDR_GSO_UDP_L4	5
#define VIRTIO_NET_HDR_GSO_ECN		0x80

/* Configuration space (struct virtio_net_config). */
#define NET_CFG_MAC			0
#define NET_CFG_STATUS			6
#define NET_CFG_MAX_PAIRS		8
#define NET_CFG_MTU			10
#define NET_CFG_SIZE			12
#define VIRTIO_NET_S_LINK_UP		1
#define VIRTIO_NET_S_ANNOUNCE		2

/* Control queue (5.1.6.5). */
#define VIRTIO_NET_OK			0
#define VIRTIO_NET_ERR			1
#define VIRTIO_NET_CTRL_RX		0
#define VIRTIO_NET_CTRL_RX_PROMISC	0
#define VIRTIO_NET_CTRL_RX_ALLMULTI	1
#define VIRTIO_NET_CTRL_RX_ALLUNI	2
#define VIRTIO_NET_CTRL_RX_NOMULTI	3
#define VIRTIO_NET_CTRL_RX_NOUNI	4
#define VIRTIO_NET_CTRL_RX_NOBCAST	5
#define VIRTIO_NET_CTRL_MAC		1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET	0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET	1
#define VIRTIO_NET_CTRL_VLAN		2
#define VIRTIO_NET_CTRL_ANNOUNCE	3
#define VIRTIO_NET_CTRL_MQ		4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET	0
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS	5
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET 0

#define ETH_ALEN_			6
#define ETH_HLEN_			14
#define NET_MAX_PAIRS			8
#define NET_QUEUE_SIZE			256
#define NET_MAC_TABLE_MAX		64	/* entries per table, as QEMU */
/* Largest frame a tap hands over or takes: 64 KiB of GSO payload plus
 * headers (the kernel's limit for a tap frame). */
#define NET_FRAME_MAX			65550
/* Largest control command accepted (class, command and data). */
#define NET_CTRL_MAX			65536
/* Work per wake-up before a worker yields to its other queue. */
#define NET_BUDGET			256

/* ---- options ---- */

enum net_vhost_mode { NET_VHOST_OFF, NET_VHOST_ON, NET_VHOST_AUTO };

struct net_opts {
	char *tap;		/* interface name (created if missing) */
	char *fd;		/* one open tap fd */
	char *fds;		/* a:b:...: one open tap fd per queue pair */
	char *vhostfds;		/* a:b:...: open /dev/vhost-net fds, one per pair */
	char *mac;
	char *id;		/* the name in QMP; default: the tap's name */
	uint64_t queues;	/* 0: from fds, else 1 */
	unsigned vhost;		/* enum net_vhost_mode */
	uint64_t mtu;		/* 0: VIRTIO_NET_F_MTU not offered */
	bool offloads;		/* offer the checksum and TSO features */
	/* Filled by the table's check from the strings above. */
	bool has_mac;
	uint8_t mac_addr[ETH_ALEN_];
	unsigned nr_fds;
	int fd_list[NET_MAX_PAIRS];
	unsigned nr_vhostfds;
	int vhostfd_list[NET_MAX_PAIRS];
};

extern struct dev_option_table net_option_table;

/* "52:54:00:12:34:56" (or '-' separators); 0 or -EINVAL. */
int net_parse_mac(const char *s, uint8_t mac[ETH_ALEN_]);
void net_format_mac(const uint8_t mac[ETH_ALEN_], char buf[18]);
/* A stable locally administered unicast address derived from a name. */
void net_default_mac(const char *name, uint8_t mac[ETH_ALEN_]);

/* ---- backend: one fd per queue pair, a frame per read/write, each
 * starting with a 12-byte virtio_net_hdr ---- */

struct net_backend;

struct net_backend_ops {
	/* Which receive offloads the guest takes (TUNSETOFFLOAD). */
	int (*set_offload)(struct net_backend *be, uint64_t guest_features);
	/* Steer traffic to queue q or not (TUNSETQUEUE). */
	int (*set_queue_enabled)(struct net_backend *be, unsigned q, bool on);
	void (*close)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	int fds[NET_MAX_PAIRS];
	unsigned nr;
	char ifname[IFNAMSIZ];	/* "" if not a tap */
	bool owned_name;	/* we named it (tap=): may set its MTU */
	uint64_t offload_features;	/* what set_offload last applied */
};

/* tap.c: open /dev/net/tun queues for ifname, or adopt passed fds. The
 * error names the cause (missing CAP_NET_ADMIN, a tap without
 * IFF_VNET_HDR or IFF_MULTI_QUEUE, ...). */
int net_tap_open(struct net_backend *be, const char *ifname, unsigned queues, char *err,
		 size_t errlen) __attribute__((warn_unused_result));
int net_tap_adopt(struct net_backend *be, const int *fds, unsigned n, char *err, size_t errlen)
	__attribute__((warn_unused_result));
int net_tap_set_mtu(struct net_backend *be, unsigned mtu);
/* TUN_F_* flags for a negotiated feature set (receive offloads). */
unsigned net_tap_offload_flags(uint64_t guest_features);

/* ---- receive filter (ctrl.c) ---- */

struct net_filter {
	bool promisc, allmulti, alluni, nomulti, nouni, nobcast;
	bool uni_overflow, multi_overflow;
	unsigned nr_uni, nr_multi;
	uint8_t mac[ETH_ALEN_];		/* the device's current address */
	uint8_t uni[NET_MAC_TABLE_MAX][ETH_ALEN_];
	uint8_t multi[NET_MAC_TABLE_MAX][ETH_ALEN_];
};

void net_filter_reset(struct net_filter *f, const uint8_t mac[ETH_ALEN_]);
/* Accept a frame whose destination address is dst? */
bool net_filter_accept(const struct net_filter *f, const uint8_t dst[ETH_ALEN_]);

/* ---- the device ---- */

struct net_queue_stats {	/* written by one worker, read with relaxed loads */
	uint64_t packets, bytes, dropped, errors;
};

struct vhost_net;

/* A receive buffer taken from the ring ahead of need. */
struct net_rx_buf {
	uint16_t head;
	uint32_t len;		/* writable bytes */
	unsigned niov;		/* its segments in net_rx.iov */
};

/* Receive state of one pair, the worker's own. The stash holds popped
 * chains in ring order; a frame is read straight into their writable
 * segments when they cover the largest frame, else into the bounce
 * buffer and copied. */
struct net_rx {
	struct vq_chain *chain;		/* pop scratch */
	struct net_rx_buf bufs[VIRTQ_MAX_SIZE > 1024 ? 1024 : VIRTQ_MAX_SIZE];
	unsigned nbufs;
	struct iovec iov[1024];
	unsigned niov;
	uint64_t bytes;			/* writable bytes in the stash */
	uint8_t *bounce;		/* NET_FRAME_MAX + header */
	size_t pending;			/* frame bytes waiting in bounce */
	unsigned filter_gen;		/* of the local filter copy */
	struct net_filter filter;
};

struct net_pair {
	struct net_dev *net;
	unsigned index;
	struct dev_worker *worker;
	int fd;				/* backend fd of this pair */
	struct net_rx rx;
	struct vq_chain *tx_chain;
	uint8_t *tx_bounce;		/* for chains with too many segments */
	bool tx_blocked;		/* the backend said EAGAIN: wait EPOLLOUT */
	bool gone;			/* the backend fd failed for good */
	struct net_queue_stats rx_stats, tx_stats;
};

struct net_dev {
	struct virtio_device vdev;
	struct device_ctx ctx;
	char name[32];			/* QMP name: id= or the tap's name */
	uint8_t conf_mac[ETH_ALEN_];
	uint16_t mtu;
	unsigned max_pairs;
	unsigned ctrl_q;		/* index of the control queue */
	bool want_vhost;		/* opts: on or auto with /dev/vhost-net */
	struct net_backend be;
	struct net_pair pairs[NET_MAX_PAIRS];
	bool started;			/* workers running */

	/* Guest-visible state. pairs_active and link_up are read by the
	 * workers (atomics); the rest changes with the workers paused or
	 * under filter_lock. */
	unsigned pairs_active;
	bool link_up;			/* host side: set_link */
	bool active;			/* DRIVER_OK and activated */
	uint64_t guest_offloads;	/* applied receive offloads */
	bool mrg_rxbuf;
	pthread_mutex_t filter_lock;
	struct net_filter filter;
	unsigned filter_gen;		/* bumped on every filter change */
	bool rx_filter_event;		/* NIC_RX_FILTER_CHANGED armed */

	/* Control queue, on the main loop. */
	pthread_mutex_t ctrl_lock;	/* against activate/reset on vCPUs */
	bool ctrl_watched;
	bool paused;			/* the VM is paused (main thread) */
	struct vq_chain *ctrl_chain;
	uint8_t *ctrl_buf;

	struct vhost_net *vhost;	/* non-NULL: the kernel runs the datapath */
};

static inline struct net_dev *net_of(struct virtio_device *dev)
{
	return (struct net_dev *)(void *)((char *)dev - offsetof(struct net_dev, vdev));
}

/* device.c. Create a device on a backend (tests pass their own). */
int net_dev_create(struct net_dev **out, const struct device_ctx *ctx, const struct net_opts *o,
		   struct net_backend *be) __attribute__((warn_unused_result));
int net_dev_start(struct net_dev *n) __attribute__((warn_unused_result));
void net_dev_stop(struct net_dev *n);
void net_dev_destroy(struct net_dev *n);
void net_dev_pause(struct net_dev *n);
void net_dev_resume(struct net_dev *n);
/* QMP set_link: link up or down, with a config interrupt. */
void net_set_link(struct net_dev *n, bool up);
/* ctrl_lock held: the control queue's MQ and GUEST_OFFLOADS commands. */
int net_set_pairs(struct net_dev *n, unsigned pairs);
int net_set_guest_offloads(struct net_dev *n, uint64_t offloads);
bool net_link_up(const struct net_dev *n);
uint64_t net_host_features(const struct net_dev *n);

/* ctrl.c. Execute one command: class, cmd and its data (len bytes). Returns
 * VIRTIO_NET_OK or VIRTIO_NET_ERR; never trusts len or the contents. */
uint8_t net_ctrl_exec(struct net_dev *n, uint8_t class, uint8_t cmd, const uint8_t *data,
		      size_t len);
/* Serve the control queue (main loop). */
void net_ctrl_process(struct net_dev *n);
/* Snapshot of the filter for QMP. */
void net_filter_get(struct net_dev *n, struct net_filter *out);

/* hdr.c. A transmit header from the guest, copied out: 0 if the frame of
 * frame_len bytes may go to the backend as described (hdr is cleaned in
 * place: flags reduced to NEEDS_CSUM, num_buffers 0), or -EINVAL. */
int net_tx_hdr_check(uint8_t hdr[VIRTIO_NET_HDR_LEN], size_t frame_len, uint64_t features);
/* A receive header from the backend, made fit for the guest: 0, or
 * -EINVAL if the frame must be dropped (GSO the guest did not negotiate). */
int net_rx_hdr_fixup(uint8_t hdr[VIRTIO_NET_HDR_LEN], uint64_t features, uint16_t num_buffers);

/* datapath.c */
int net_pair_init(struct net_pair *p, struct net_dev *n, unsigned index)
	__attribute__((warn_unused_result));
void net_pair_fini(struct net_pair *p);
/* Handlers, for tests driving a pair without its worker thread. */
void net_rx_process(struct net_pair *p);
void net_tx_process(struct net_pair *p);
/* Worker-side: forget (reset) or give back (pause) stashed receive buffers. */
void net_rx_drop_stash(struct net_pair *p, bool unpop);
/* The largest frame plus header a receive may bring for these features. */
size_t net_rx_need(const struct net_dev *n);

/* vhost.c */
int net_vhost_open(struct net_dev *n, const struct net_opts *o, bool required, char *err,
		   size_t errlen);
void net_vhost_close(struct net_dev *n);
int net_vhost_watch(struct net_dev *n);	/* main thread, at start */
void net_vhost_unwatch(struct net_dev *n);	/* and at stop */
uint64_t net_vhost_mask_features(struct net_dev *n, uint64_t features);
int net_vhost_start(struct net_dev *n);		/* all active pairs */
void net_vhost_stop(struct net_dev *n);		/* detach, read ring state back */
int net_vhost_set_pairs(struct net_dev *n, unsigned pairs);
void net_vhost_set_link(struct net_dev *n, bool up);
void net_vhost_call_changed(struct virtio_device *dev, unsigned q);
/* Queue interrupts vhost raised through Ember (vector masked or not
 * direct) rather than straight through the irqfd. */
uint64_t net_vhost_fallback_signals(const struct net_dev *n);

/* qmp.c */
extern const struct device_qmp_command net_qmp_commands[];

#endif
