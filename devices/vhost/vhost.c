/* The vhost ioctls (see vhost.h). */
#include "devices/vhost/vhost.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int vioctl(struct vhost_dev *v, unsigned long req, void *arg)
{
	int ret;

	if (v->fd < 0)
		return -EBADF;
	do
		ret = ioctl(v->fd, req, arg);
	while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : 0;
}

int vhost_dev_open(struct vhost_dev *v, const char *path, int fd, char *err, size_t errlen)
{
	int ret;

	v->features = 0;
	v->fd = fd >= 0 ? fd : open(path, O_RDWR | O_CLOEXEC);
	if (v->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
			 errno == ENOENT ? " (is its kernel module, vhost_net or vhost_vsock, loaded?)" :
			 errno == EACCES ? " (pass open fds with vhostfds=a:b instead)" : "");
		return ret;
	}
	if (fd >= 0)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	ret = vioctl(v, VHOST_SET_OWNER, NULL);
	if (ret) {
		snprintf(err, errlen, "%s: VHOST_SET_OWNER: %s", fd >= 0 ? "vhost fd" : path,
			 strerror(-ret));
		goto fail;
	}
	ret = vioctl(v, VHOST_GET_FEATURES, &v->features);
	if (ret) {
		snprintf(err, errlen, "%s: VHOST_GET_FEATURES: %s", fd >= 0 ? "vhost fd" : path,
			 strerror(-ret));
		goto fail;
	}
	return 0;
fail:
	if (fd < 0)
		close(v->fd);
	v->fd = -1;
	return ret;
}

void vhost_dev_close(struct vhost_dev *v)
{
	if (v->fd >= 0)
		close(v->fd);
	v->fd = -1;
}

int vhost_dev_set_features(struct vhost_dev *v, uint64_t features)
{
	return vioctl(v, VHOST_SET_FEATURES, &features);
}

size_t vhost_mem_table_size(const struct guest_mem *gm)
{
	return sizeof(struct vhost_memory) + gm->nr * sizeof(struct vhost_memory_region);
}

void vhost_mem_table_fill(const struct guest_mem *gm, struct vhost_memory *m)
{
	m->nregions = gm->nr;
	m->padding = 0;
	for (unsigned i = 0; i < gm->nr; i++)
		m->regions[i] = (struct vhost_memory_region){
			.guest_phys_addr = gm->regions[i].gpa,
			.memory_size = gm->regions[i].size,
			.userspace_addr = (uintptr_t)gm->regions[i].hva,
		};
}

int vhost_dev_set_mem_table(struct vhost_dev *v, const struct guest_mem *gm)
{
	struct vhost_memory *m = calloc(1, vhost_mem_table_size(gm));
	int ret;

	if (!m)
		return -ENOMEM;
	vhost_mem_table_fill(gm, m);
	ret = vioctl(v, VHOST_SET_MEM_TABLE, m);
	free(m);
	return ret;
}

int vhost_vring_start(struct vhost_dev *v, unsigned idx, const struct vhost_ring *r,
		      int kick_fd, int call_fd)
{
	struct vhost_vring_state num = { .index = idx, .num = r->size };
	struct vhost_vring_state base = { .index = idx, .num = r->last_avail_idx };
	struct vhost_vring_addr addr = {
		.index = idx,
		.desc_user_addr = (uintptr_t)r->desc,
		.avail_user_addr = (uintptr_t)r->avail,
		.used_user_addr = (uintptr_t)r->used,
		.log_guest_addr = r->used_gpa,
	};
	struct vhost_vring_file kick = { .index = idx, .fd = kick_fd };
	int ret;

	if (!r->size || !r->desc || !r->avail || !r->used)
		return -EINVAL;
	if ((ret = vioctl(v, VHOST_SET_VRING_NUM, &num)) ||
	    (ret = vioctl(v, VHOST_SET_VRING_BASE, &base)) ||
	    (ret = vioctl(v, VHOST_SET_VRING_ADDR, &addr)) ||
	    (ret = vioctl(v, VHOST_SET_VRING_KICK, &kick)))
		return ret;
	return vhost_vring_set_call(v, idx, call_fd);
}

int vhost_vring_set_call(struct vhost_dev *v, unsigned idx, int fd)
{
	struct vhost_vring_file call = { .index = idx, .fd = fd };

	return vioctl(v, VHOST_SET_VRING_CALL, &call);
}

int vhost_vring_get_base(struct vhost_dev *v, unsigned idx, uint16_t *last_avail)
{
	struct vhost_vring_state s = { .index = idx };
	int ret = vioctl(v, VHOST_GET_VRING_BASE, &s);

	if (!ret)
		*last_avail = (uint16_t)s.num;
	return ret;
}

int vhost_net_set_backend(struct vhost_dev *v, unsigned idx, int fd)
{
	struct vhost_vring_file b = { .index = idx, .fd = fd };

	return vioctl(v, VHOST_NET_SET_BACKEND, &b);
}

int vhost_vsock_set_guest_cid(struct vhost_dev *v, uint64_t cid)
{
	return vioctl(v, VHOST_VSOCK_SET_GUEST_CID, &cid);
}

int vhost_vsock_set_running(struct vhost_dev *v, bool running)
{
	int on = running;

	return vioctl(v, VHOST_VSOCK_SET_RUNNING, &on);
}
