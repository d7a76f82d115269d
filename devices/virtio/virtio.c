#include "devices/virtio/virtio.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"

int virtio_dev_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
		    const struct guest_mem *gm, unsigned nr_queues, uint16_t queue_max_size,
		    uint64_t host_features)
{
	unsigned q;

	memset(dev, 0, sizeof(*dev));
	for (q = 0; q < VIRTIO_MAX_QUEUES; q++)
		dev->kick_fd[q] = -1;
	if (!ops || nr_queues == 0 || nr_queues > VIRTIO_MAX_QUEUES || queue_max_size == 0 ||
	    queue_max_size > VIRTQ_MAX_SIZE || (queue_max_size & (queue_max_size - 1)))
		return -EINVAL;
	dev->ops = ops;
	dev->gm = gm;
	dev->nr_queues = nr_queues;
	/* Modern only: VERSION_1 is always offered. */
	dev->host_features = host_features | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	for (q = 0; q < nr_queues; q++) {
		virtqueue_init(&dev->queues[q], gm, queue_max_size);
		dev->kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (dev->kick_fd[q] < 0) {
			int ret = -errno;

			virtio_dev_destroy(dev);
			return ret;
		}
	}
	return 0;
}

void virtio_dev_destroy(struct virtio_device *dev)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (dev->kick_fd[q] >= 0)
			close(dev->kick_fd[q]);
		dev->kick_fd[q] = -1;
	}
}

uint64_t virtio_dev_host_features(const struct virtio_device *dev)
{
	return dev->host_features;
}

uint8_t virtio_dev_get_status(const struct virtio_device *dev)
{
	return __atomic_load_n(&dev->status, __ATOMIC_ACQUIRE);
}

/* Guest-triggered warnings: a guest can repeat them at will. */
static struct ratelimit guest_rl = RATELIMIT_INIT(5000, 10);
static pthread_mutex_t guest_rl_lock = PTHREAD_MUTEX_INITIALIZER;

static bool guest_log_allow(void)
{
	bool ok;

	pthread_mutex_lock(&guest_rl_lock);
	ok = ratelimit_allow(&guest_rl);
	pthread_mutex_unlock(&guest_rl_lock);
	return ok;
}

void virtio_dev_set_driver_features(struct virtio_device *dev, uint64_t features)
{
	uint8_t st = virtio_dev_get_status(dev);

	if (!(st & VIRTIO_STATUS_DRIVER) || (st & VIRTIO_STATUS_FEATURES_OK)) {
		if (guest_log_allow())
			log_warn("virtio %s: feature write in status 0x%x ignored", dev->ops->name,
				 st);
		return;
	}
	dev->driver_features = features & dev->host_features;
}

bool virtio_dev_has_feature(const struct virtio_device *dev, unsigned bit)
{
	return bit < 64 && (dev->driver_features & VIRTIO_BIT(bit));
}

struct virtqueue *virtio_dev_queue(struct virtio_device *dev, unsigned q)
{
	return q < dev->nr_queues ? &dev->queues[q] : NULL;
}

bool virtio_dev_queue_writable(const struct virtio_device *dev)
{
	uint8_t st = virtio_dev_get_status(dev);

	return (st & VIRTIO_STATUS_FEATURES_OK) && !(st & VIRTIO_STATUS_DRIVER_OK);
}

int virtio_dev_kick_fd(const struct virtio_device *dev, unsigned q)
{
	return q < dev->nr_queues ? dev->kick_fd[q] : -1;
}

void virtio_dev_queue_notify(struct virtio_device *dev, unsigned q)
{
	if (q >= dev->nr_queues)
		return;
	if (dev->ops->queue_notify) {
		dev->ops->queue_notify(dev, q);
		return;
	}
	if (eventfd_write(dev->kick_fd[q], 1) < 0)
		log_warn("virtio %s: queue %u kick: %s", dev->ops->name, q, strerror(errno));
}

void virtio_dev_config_read(struct virtio_device *dev, uint64_t off, void *data, size_t len)
{
	memset(data, 0, len);
	if (len == 0 || off > dev->ops->config_size || len > dev->ops->config_size - off ||
	    !dev->ops->config_read)
		return;
	dev->ops->config_read(dev, (size_t)off, data, len);
}

void virtio_dev_config_write(struct virtio_device *dev, uint64_t off, const void *data, size_t len)
{
	if (len == 0 || off > dev->ops->config_size || len > dev->ops->config_size - off ||
	    !dev->ops->config_write)
		return;
	dev->ops->config_write(dev, (size_t)off, data, len);
}

void virtio_dev_set_needs_reset(struct virtio_device *dev)
{
	uint8_t old = __atomic_fetch_or(&dev->status, 0, __ATOMIC_ACQUIRE);

	/* Only meaningful to a driver that has finished initialisation. */
	if (!(old & VIRTIO_STATUS_DRIVER_OK) || (old & VIRTIO_STATUS_NEEDS_RESET))
		return;
	__atomic_fetch_or(&dev->status, VIRTIO_STATUS_NEEDS_RESET, __ATOMIC_ACQ_REL);
	__atomic_fetch_add(&dev->config_generation, 1, __ATOMIC_RELEASE);
	if (dev->notify_config)
		dev->notify_config(dev);
}

void virtio_dev_notify_if_needed(struct virtio_device *dev, unsigned q)
{
	if (q < dev->nr_queues && virtqueue_should_notify(&dev->queues[q]) && dev->notify_used)
		dev->notify_used(dev, q);
}

void virtio_dev_queue_error(struct virtio_device *dev, unsigned q, int err)
{
	static struct ratelimit rl = RATELIMIT_INIT(5000, 10);

	if (ratelimit_allow(&rl))
		log_warn("virtio %s: queue %u: %s; device needs reset", dev->ops->name, q,
			 virtqueue_strerror(err));
	virtio_dev_notify_if_needed(dev, q);
	virtio_dev_set_needs_reset(dev);
}

int virtio_dev_activate(struct virtio_device *dev)
{
	bool event_idx = virtio_dev_has_feature(dev, VIRTIO_RING_F_EVENT_IDX);
	bool indirect = virtio_dev_has_feature(dev, VIRTIO_RING_F_INDIRECT_DESC);
	int ret;

	if (dev->active)
		return 0;
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		struct virtqueue *vq = &dev->queues[q];

		vq->event_idx = event_idx;
		vq->indirect = indirect;
		if (!vq->enabled)
			continue;
		ret = virtqueue_validate(vq);
		if (ret) {
			log_warn("virtio %s: queue %u: invalid ring layout (size %u desc 0x%llx "
				 "avail 0x%llx used 0x%llx)", dev->ops->name, q, vq->size,
				 (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
				 (unsigned long long)vq->used_gpa);
			return ret;
		}
	}
	ret = dev->ops->activate ? dev->ops->activate(dev) : 0;
	if (ret) {
		log_warn("virtio %s: activation failed: %s", dev->ops->name, strerror(-ret));
		return ret;
	}
	dev->active = true;
	return 0;
}

void virtio_dev_reset(struct virtio_device *dev)
{
	eventfd_t v;

	if (dev->ops->reset)
		dev->ops->reset(dev);
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		virtqueue_reset(&dev->queues[q]);
		if (dev->kick_fd[q] >= 0)
			(void)eventfd_read(dev->kick_fd[q], &v);	/* drop stale kicks */
	}
	dev->driver_features = 0;
	dev->active = false;
	__atomic_store_n(&dev->status, 0, __ATOMIC_RELEASE);
}

int virtio_dev_set_status(struct virtio_device *dev, uint8_t status)
{
	uint8_t old = virtio_dev_get_status(dev);
	uint8_t cur = old & ~VIRTIO_STATUS_NEEDS_RESET;
	uint8_t want = status & ~VIRTIO_STATUS_NEEDS_RESET;
	uint8_t added = want & ~cur;
	int ret;

	if (status == 0) {
		virtio_dev_reset(dev);
		return 0;
	}
	/* The transitions (2.1.2, 3.1.1): only a reset clears bits; each of
	 * DRIVER, FEATURES_OK and DRIVER_OK needs the one before it; FAILED
	 * may be added at any time but alone, and after it only a reset is
	 * accepted. */
	if (cur & ~want)
		goto refused;
	if (!added)
		return 0;
	if (cur & VIRTIO_STATUS_FAILED)
		goto refused;
	if ((want & VIRTIO_STATUS_DRIVER) && !(want & VIRTIO_STATUS_ACKNOWLEDGE))
		goto refused;
	if ((want & VIRTIO_STATUS_FEATURES_OK) && !(want & VIRTIO_STATUS_DRIVER))
		goto refused;
	if ((want & VIRTIO_STATUS_DRIVER_OK) && !(want & VIRTIO_STATUS_FEATURES_OK))
		goto refused;
	if (added & VIRTIO_STATUS_FAILED) {
		if (added != VIRTIO_STATUS_FAILED)
			goto refused;
		__atomic_fetch_or(&dev->status, added, __ATOMIC_ACQ_REL);
		return 0;
	}
	if ((added & VIRTIO_STATUS_FEATURES_OK) &&
	    !(dev->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		if (guest_log_allow())
			log_warn("virtio %s: driver did not accept VIRTIO_F_VERSION_1",
				 dev->ops->name);
		return -EINVAL;	/* FEATURES_OK stays clear; the driver sees that */
	}
	if (added & VIRTIO_STATUS_DRIVER_OK) {
		/* Status first, so a NEEDS_RESET raised during activation sticks. */
		__atomic_fetch_or(&dev->status, added, __ATOMIC_ACQ_REL);
		ret = virtio_dev_activate(dev);
		if (ret)
			virtio_dev_set_needs_reset(dev);
		return ret;
	}
	__atomic_fetch_or(&dev->status, added, __ATOMIC_ACQ_REL);
	return 0;

refused:
	if (guest_log_allow())
		log_warn("virtio %s: status 0x%x -> 0x%x refused", dev->ops->name, old, status);
	return -EINVAL;
}
