/* The tap backend: one /dev/net/tun queue per queue pair, opened with
 * IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (and IFF_MULTI_QUEUE for several), a
 * 12-byte virtio_net_hdr_v1 in front of every frame (TUNSETVNETHDRSZ), the
 * receive offloads following what the guest negotiated (TUNSETOFFLOAD),
 * and queues of inactive pairs detached (TUNSETQUEUE). Or fds passed by a
 * management layer, checked for the same flags; then Ember needs no
 * CAP_NET_ADMIN. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "devices/virtio/net/net.h"

#define TUN_PATH "/dev/net/tun"

unsigned net_tap_offload_flags(uint64_t f)
{
	unsigned t = 0;

	/* Every segmentation offload builds on the checksum one (the tap
	 * refuses TSO without TUN_F_CSUM). */
	if (!(f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	t |= TUN_F_CSUM;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4))
		t |= TUN_F_TSO4;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6))
		t |= TUN_F_TSO6;
	if ((f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN)) && (t & (TUN_F_TSO4 | TUN_F_TSO6)))
		t |= TUN_F_TSO_ECN;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO))
		t |= TUN_F_UFO;
	return t;
}

static int tap_set_offload(struct net_backend *be, uint64_t guest_features)
{
	unsigned flags = net_tap_offload_flags(guest_features);

	/* The offloads belong to the interface: one queue sets them all. */
	if (be->nr && ioctl(be->fds[0], TUNSETOFFLOAD, (unsigned long)flags) < 0) {
		int ret = -errno;

		log_warn("tap %s: TUNSETOFFLOAD 0x%x: %s", be->ifname, flags, strerror(errno));
		return ret;
	}
	be->offload_features = guest_features;
	return 0;
}

static int tap_set_queue_enabled(struct net_backend *be, unsigned q, bool on)
{
	struct ifreq ifr = { .ifr_flags = on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE };

	if (be->nr < 2 || q >= be->nr)
		return 0;
	if (ioctl(be->fds[q], TUNSETQUEUE, &ifr) < 0) {
		/* Already in that state. */
		if (errno == EINVAL)
			return 0;
		return -errno;
	}
	return 0;
}

static void tap_close(struct net_backend *be)
{
	for (unsigned i = 0; i < be->nr; i++) {
		if (be->fds[i] >= 0)
			close(be->fds[i]);
		be->fds[i] = -1;
	}
	be->nr = 0;
}

static const struct net_backend_ops tap_ops = {
	.set_offload = tap_set_offload,
	.set_queue_enabled = tap_set_queue_enabled,
	.close = tap_close,
};

static void backend_init(struct net_backend *be)
{
	memset(be, 0, sizeof(*be));
	be->ops = &tap_ops;
	for (unsigned i = 0; i < NET_MAX_PAIRS; i++)
		be->fds[i] = -1;
}

/* Common set-up of one queue fd: the header size and no offloads yet. */
static int tap_queue_setup(int fd, const char *ifname, char *err, size_t errlen)
{
	int hdr = VIRTIO_NET_HDR_LEN;

	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		snprintf(err, errlen, "tap %s: TUNSETVNETHDRSZ %d: %s", ifname, hdr,
			 strerror(errno));
		return -errno;
	}
	if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
		snprintf(err, errlen, "tap %s: TUNSETOFFLOAD: %s", ifname, strerror(errno));
		return -errno;
	}
	return 0;
}

int net_tap_open(struct net_backend *be, const char *ifname, unsigned queues, char *err,
		 size_t errlen)
{
	unsigned features = 0;
	int ret;

	backend_init(be);
	be->owned_name = true;
	snprintf(be->ifname, sizeof(be->ifname), "%s", ifname);
	for (unsigned q = 0; q < queues; q++) {
		struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
		int fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);

		if (fd < 0) {
			ret = -errno;
			snprintf(err, errlen, "tap %s: cannot open " TUN_PATH ": %s%s", ifname,
				 strerror(errno),
				 errno == ENOENT || errno == ENODEV ? " (is the tun module loaded?)" :
				 errno == EACCES || errno == EPERM ?
				 " (pass open tap fds with fd=N / fds=a:b instead)" : "");
			goto err;
		}
		be->fds[be->nr++] = fd;
		if (q == 0) {
			if (ioctl(fd, TUNGETFEATURES, &features) < 0)
				features = 0;
			if (!(features & IFF_VNET_HDR) ||
			    (queues > 1 && !(features & IFF_MULTI_QUEUE))) {
				ret = -EOPNOTSUPP;
				snprintf(err, errlen, "tap %s: the kernel's tun lacks %s", ifname,
					 !(features & IFF_VNET_HDR) ? "IFF_VNET_HDR" :
					 "IFF_MULTI_QUEUE");
				goto err;
			}
		}
		if (queues > 1)
			ifr.ifr_flags |= IFF_MULTI_QUEUE;
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", be->ifname);
		if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
			ret = -errno;
			if (errno == EPERM)
				snprintf(err, errlen, "tap %s: TUNSETIFF: %s: creating or attaching a "
					 "tap needs CAP_NET_ADMIN (or pass open tap fds with fd=N / "
					 "fds=a:b)", ifname, strerror(errno));
			else if (errno == EINVAL)
				snprintf(err, errlen, "tap %s: TUNSETIFF: %s: the interface exists "
					 "but is not a %s tap (its multi_queue flag must match "
					 "queues=%u)", ifname, strerror(errno),
					 queues > 1 ? "multiqueue" : "single-queue", queues);
			else if (errno == EBUSY)
				snprintf(err, errlen, "tap %s: TUNSETIFF: %s: another process has "
					 "it open", ifname, strerror(errno));
			else
				snprintf(err, errlen, "tap %s: TUNSETIFF: %s", ifname,
					 strerror(errno));
			goto err;
		}
		/* The kernel may have expanded a %d in the name. */
		snprintf(be->ifname, sizeof(be->ifname), "%s", ifr.ifr_name);
		ret = tap_queue_setup(fd, be->ifname, err, errlen);
		if (ret)
			goto err;
	}
	return 0;
err:
	tap_close(be);
	return ret;
}

int net_tap_adopt(struct net_backend *be, const int *fds, unsigned n, char *err, size_t errlen)
{
	int ret;

	backend_init(be);
	for (unsigned q = 0; q < n; q++) {
		struct ifreq ifr = { 0 };
		int fd = fds[q], fl;

		fl = fcntl(fd, F_GETFL);
		if (fl < 0) {
			ret = -errno;
			snprintf(err, errlen, "fd %d: %s (not passed to Ember?)", fd, strerror(errno));
			goto err;
		}
		if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
			ret = -errno;
			snprintf(err, errlen, "fd %d is not an attached tap (TUNGETIFF: %s)", fd,
				 strerror(errno));
			goto err;
		}
		ret = -EINVAL;
		if (!(ifr.ifr_flags & IFF_TAP)) {
			snprintf(err, errlen, "fd %d (%.16s) is a tun, not a tap (IFF_TAP)", fd,
				 ifr.ifr_name);
			goto err;
		}
		if (!(ifr.ifr_flags & IFF_NO_PI) || !(ifr.ifr_flags & IFF_VNET_HDR)) {
			snprintf(err, errlen, "fd %d (tap %.16s) was opened without %s", fd,
				 ifr.ifr_name, !(ifr.ifr_flags & IFF_NO_PI) ? "IFF_NO_PI" :
				 "IFF_VNET_HDR");
			goto err;
		}
		if (n > 1 && !(ifr.ifr_flags & IFF_MULTI_QUEUE)) {
			snprintf(err, errlen, "fds: tap %.16s is not a multiqueue tap "
				 "(IFF_MULTI_QUEUE)", ifr.ifr_name);
			goto err;
		}
		if (q == 0) {
			snprintf(be->ifname, sizeof(be->ifname), "%s", ifr.ifr_name);
		} else if (strncmp(be->ifname, ifr.ifr_name, sizeof(be->ifname))) {
			snprintf(err, errlen, "fds: fd %d is tap %.16s, fd %d is tap %.16s", fds[0],
				 be->ifname, fd, ifr.ifr_name);
			goto err;
		}
		if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			ret = -errno;
			snprintf(err, errlen, "fd %d: fcntl: %s", fd, strerror(errno));
			goto err;
		}
		ret = tap_queue_setup(fd, be->ifname, err, errlen);
		if (ret)
			goto err;
		be->fds[be->nr++] = fd;
	}
	return 0;
err:
	/* The fds stay the caller's on failure. */
	be->nr = 0;
	return ret;
}

int net_tap_set_mtu(struct net_backend *be, unsigned mtu)
{
	struct ifreq ifr = { .ifr_mtu = (int)mtu };
	int s, ret = 0;

	if (!be->ifname[0])
		return -ENODEV;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", be->ifname);
	if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
		ret = -errno;
	close(s);
	return ret;
}
