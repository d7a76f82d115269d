/* Transport-independent virtio device core (virtio 1.2, modern only).
 *
 * A device embeds struct virtio_device and supplies a const ops table; a
 * transport (virtio-pci, virtio-mmio) owns the register file and drives the
 * device only through the virtio_dev_* functions below:
 *
 *   setup:       virtio_dev_init() by the device; the transport then sets
 *                dev->notify_used / dev->notify_config / dev->transport and
 *                registers virtio_dev_kick_fd(dev, q) as an ioeventfd on the
 *                queue's notify address (or calls virtio_dev_queue_notify()
 *                from its MMIO handler if it can't).
 *   features:    virtio_dev_host_features() (offered, 64 bits; the transport
 *                splits them by select word), virtio_dev_set_driver_features()
 *                (masked to what was offered; ignored after FEATURES_OK).
 *   queues:      virtio_dev_queue(dev, q) gives the struct virtqueue whose
 *                size / desc_gpa / avail_gpa / used_gpa / enabled fields the
 *                transport writes, only while virtio_dev_queue_writable().
 *   status:      virtio_dev_set_status() on every status write: it enforces
 *                the status machine, refuses FEATURES_OK without VERSION_1,
 *                activates on DRIVER_OK (validating every enabled ring; a
 *                failure sets DEVICE_NEEDS_RESET and raises a config
 *                interrupt) and resets on 0. virtio_dev_get_status() for reads.
 *   config:      virtio_dev_config_read()/write(): bounds-checked, reads
 *                outside the config space return zeros.
 *   interrupts:  the device calls dev->notify_used(dev, q) from its I/O thread
 *                after virtqueue_should_notify(), and virtio_dev_set_needs_reset()
 *                raises dev->notify_config(dev). Both hooks must be
 *                thread-safe (an irqfd write, typically); the ISR status bits
 *                for INTx are the transport's business.
 */
#ifndef EMBER_VIRTIO_H
#define EMBER_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtqueue.h"
#include "base/guest_mem.h"

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE	1
#define VIRTIO_STATUS_DRIVER		2
#define VIRTIO_STATUS_DRIVER_OK		4
#define VIRTIO_STATUS_FEATURES_OK	8
#define VIRTIO_STATUS_NEEDS_RESET	64
#define VIRTIO_STATUS_FAILED		128

/* Reserved feature bits (6). */
#define VIRTIO_RING_F_INDIRECT_DESC	28
#define VIRTIO_RING_F_EVENT_IDX		29
#define VIRTIO_F_VERSION_1		32
#define VIRTIO_F_ACCESS_PLATFORM	33

#define VIRTIO_BIT(b)	(1ULL << (b))

/* Device IDs (5). */
#define VIRTIO_ID_NET		1
#define VIRTIO_ID_BLOCK		2
#define VIRTIO_ID_CONSOLE	3
#define VIRTIO_ID_RNG		4
#define VIRTIO_ID_VSOCK		19

/* virtio-net with 8 queue pairs and its control queue. */
#define VIRTIO_MAX_QUEUES	17

struct virtio_device;

struct virtio_device_ops {
	const char *name;
	uint32_t device_id;
	/* Bytes of device-specific config space. */
	size_t config_size;
	/* [off, off+len) is already checked to lie within config_size. */
	void (*config_read)(struct virtio_device *dev, size_t off, void *data, size_t len);
	/* Optional; NULL makes the config space read-only. */
	void (*config_write)(struct virtio_device *dev, size_t off, const void *data, size_t len);
	/* DRIVER_OK with validated queues: start processing. Negative errno
	 * puts the device in NEEDS_RESET. */
	int (*activate)(struct virtio_device *dev);
	/* Quiesce: on return no request is in flight and the device will not
	 * touch guest memory or its queues until the next activate. */
	void (*reset)(struct virtio_device *dev);
	/* Optional: a notify that didn't come through the kick eventfd. The
	 * default writes the queue's kick eventfd. */
	void (*queue_notify)(struct virtio_device *dev, unsigned q);
};

struct virtio_device {
	const struct virtio_device_ops *ops;
	const struct guest_mem *gm;
	uint8_t status;			/* accessed atomically */
	uint64_t host_features;		/* offered */
	uint64_t driver_features;	/* acked, always a subset of host_features */
	uint32_t config_generation;
	unsigned nr_queues;
	struct virtqueue queues[VIRTIO_MAX_QUEUES];
	int kick_fd[VIRTIO_MAX_QUEUES];	/* eventfds, owned here */
	bool active;

	/* Set by the transport. */
	void (*notify_used)(struct virtio_device *dev, unsigned q);
	void (*notify_config)(struct virtio_device *dev);
	void *transport;
	/* Optional, set by the transport: an eventfd whose write raises queue
	 * q's interrupt without Ember (an MSI-X vector's irqfd), or -1 while
	 * that interrupt needs Ember (no vector, vector or function masked,
	 * INTx); a kernel backend (vhost) signals it directly. Any thread;
	 * takes no lock (the device calls it under its own). */
	int (*call_fd)(struct virtio_device *dev, unsigned q);
	/* Optional, set by the device: the transport calls it, from the
	 * thread that made the change, whenever call_fd(dev, q) may have
	 * changed (vector assigned, masked, unmasked, MSI-X toggled), maybe
	 * with transport locks held: the device re-reads call_fd and may
	 * write the new fd, but calls no other transport hook from here. */
	void (*call_fd_changed)(struct virtio_device *dev, unsigned q);
};

int virtio_dev_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
		    const struct guest_mem *gm, unsigned nr_queues, uint16_t queue_max_size,
		    uint64_t host_features) __attribute__((warn_unused_result));
void virtio_dev_destroy(struct virtio_device *dev);

uint64_t virtio_dev_host_features(const struct virtio_device *dev);
void virtio_dev_set_driver_features(struct virtio_device *dev, uint64_t features);
bool virtio_dev_has_feature(const struct virtio_device *dev, unsigned bit);

uint8_t virtio_dev_get_status(const struct virtio_device *dev);
/* Returns 0, or negative errno for a refused transition (the status is then
 * left as it was, except a failed activation, which sets NEEDS_RESET). */
int virtio_dev_set_status(struct virtio_device *dev, uint8_t status);
/* The pieces virtio_dev_set_status() uses, for transports that need them. */
int virtio_dev_activate(struct virtio_device *dev) __attribute__((warn_unused_result));
void virtio_dev_reset(struct virtio_device *dev);

struct virtqueue *virtio_dev_queue(struct virtio_device *dev, unsigned q);
/* Queue registers may be written between FEATURES_OK and DRIVER_OK. */
bool virtio_dev_queue_writable(const struct virtio_device *dev);
int virtio_dev_kick_fd(const struct virtio_device *dev, unsigned q);
void virtio_dev_queue_notify(struct virtio_device *dev, unsigned q);

void virtio_dev_config_read(struct virtio_device *dev, uint64_t off, void *data, size_t len);
void virtio_dev_config_write(struct virtio_device *dev, uint64_t off, const void *data, size_t len);

/* Device side. Mark the device broken (once DRIVER_OK) and raise a config
 * interrupt. Thread-safe. */
void virtio_dev_set_needs_reset(struct virtio_device *dev);
/* A virtqueue_pop() error on queue q: log (rate-limited), set NEEDS_RESET,
 * and interrupt for the len-0 element the queue may have pushed. */
void virtio_dev_queue_error(struct virtio_device *dev, unsigned q, int err);
/* Raise queue q's interrupt if virtqueue_should_notify() says so. */
void virtio_dev_notify_if_needed(struct virtio_device *dev, unsigned q);

#endif
