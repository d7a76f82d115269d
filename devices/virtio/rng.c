/* virtio-rng (virtio 1.2 section 5.4) on virtio-pci, enabled by
 * cfg->virtio_rng. One request queue; every device-writable buffer is
 * filled from getrandom(2), up to RNG_REQ_MAX bytes per request. Requests
 * are served on the main event loop, which watches the queue's kick
 * eventfd; a callback handles at most RNG_BUDGET bytes and re-kicks itself
 * for the rest, so a guest cannot monopolise the loop. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>

#include "devices/device.h"
#include "devices/virtio/virtio.h"
#include "devices/virtio/virtio_pci.h"
#include "vmm/evloop.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define RNG_QUEUE_SIZE	64
#define RNG_REQ_MAX	(64 * 1024)
#define RNG_BUDGET	(1024 * 1024)
#define RNG_CHUNK	4096

struct virtio_rng {
	struct virtio_device vdev;
	struct vm *vm;
	struct virtio_pci *vp;
	pthread_mutex_t lock;
	bool active;
	bool on_loop;
	uint64_t bytes;
	struct vq_chain chain;
};

static struct virtio_rng *to_rng(struct virtio_device *dev)
{
	return (struct virtio_rng *)((char *)dev - offsetof(struct virtio_rng, vdev));
}

static size_t fill(struct vq_chain *c, size_t want)
{
	uint8_t buf[RNG_CHUNK];
	size_t done = 0;

	while (done < want) {
		size_t n = want - done < sizeof(buf) ? want - done : sizeof(buf);
		ssize_t got = getrandom(buf, n, 0);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			log_warn("virtio-rng: getrandom: %s", strerror(errno));
			break;
		}
		done += vq_writer_write(c, buf, (size_t)got);
	}
	return done;
}

/* Lock held. Returns true when the budget ran out with work left. */
static bool process(struct virtio_rng *r)
{
	struct virtqueue *vq = virtio_dev_queue(&r->vdev, 0);
	size_t budget = RNG_BUDGET;
	bool more = false;
	int ret;

	if (!r->active || !vq->ready)
		return false;
	for (;;) {
		while (!vq->error) {
			size_t want, n;

			if (!budget) {
				more = true;
				goto out;
			}
			ret = virtqueue_pop(vq, &r->chain);
			if (ret == 0)
				break;
			if (ret < 0) {
				virtio_dev_queue_error(&r->vdev, 0, ret);
				goto out;
			}
			want = vq_writer_remaining(&r->chain);
			if (want > RNG_REQ_MAX)
				want = RNG_REQ_MAX;
			if (want > budget)
				want = budget;
			n = fill(&r->chain, want);
			budget -= want;
			r->bytes += n;
			virtqueue_push(vq, r->chain.head, (uint32_t)n);
		}
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	virtio_dev_notify_if_needed(&r->vdev, 0);
	return more;
}

static void rng_kick(void *opaque, uint32_t events)
{
	struct virtio_rng *r = opaque;
	eventfd_t v;
	bool more;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(&r->vdev, 0), &v);
	pthread_mutex_lock(&r->lock);
	more = process(r);
	pthread_mutex_unlock(&r->lock);
	if (more)
		virtio_dev_queue_notify(&r->vdev, 0);
}

static int rng_activate(struct virtio_device *dev)
{
	struct virtio_rng *r = to_rng(dev);

	pthread_mutex_lock(&r->lock);
	r->active = true;
	pthread_mutex_unlock(&r->lock);
	virtio_dev_queue_notify(dev, 0);	/* buffers made available before DRIVER_OK */
	return 0;
}

static void rng_reset(struct virtio_device *dev)
{
	struct virtio_rng *r = to_rng(dev);

	pthread_mutex_lock(&r->lock);
	r->active = false;
	pthread_mutex_unlock(&r->lock);
}

static const struct virtio_device_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.config_size = 0,
	.activate = rng_activate,
	.reset = rng_reset,
};

static void rng_destroy(void *state)
{
	struct virtio_rng *r = state;

	if (!r)
		return;
	if (r->on_loop)
		evloop_del(r->vm->loop, virtio_dev_kick_fd(&r->vdev, 0));
	virtio_pci_destroy(r->vp);
	virtio_dev_destroy(&r->vdev);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static int rng_realize(struct vm *vm, void **state)
{
	struct pci_host *h = pci_host_of(vm);
	struct virtio_rng *r;
	int ret;

	*state = NULL;
	if (!vm->cfg->virtio_rng)
		return 0;
	if (!h)
		return -ENODEV;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->vm = vm;
	pthread_mutex_init(&r->lock, NULL);
	ret = virtio_dev_init(&r->vdev, &rng_ops, &vm->mem, 1, RNG_QUEUE_SIZE,
			      VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
			      VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC));
	if (ret)
		goto err;
	ret = evloop_add(vm->loop, virtio_dev_kick_fd(&r->vdev, 0), EPOLLIN, rng_kick, r);
	if (ret)
		goto err;
	r->on_loop = true;
	ret = virtio_pci_create(h, &r->vdev, &r->vp);
	if (ret)
		goto err;
	*state = r;
	return 0;
err:
	rng_destroy(r);
	return ret;
}

static void rng_vm_reset(void *state)
{
	virtio_pci_reset(((struct virtio_rng *)state)->vp);
}

static struct device_desc rng_desc = {
	.name = "virtio-rng",
	.level = DEVICE_LEVEL_VIRTIO,
	.realize = rng_realize,
	.reset = rng_vm_reset,
	.destroy = rng_destroy,
};
DEVICE_REGISTER(rng_desc);
