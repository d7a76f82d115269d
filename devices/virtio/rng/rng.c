/* virtio-rng: the core (see rng.h) and its device type, --rng. The
 * registry serves it on the main event loop, which watches the queue's kick
 * eventfd. */
#include "devices/virtio/rng/rng.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>

#include "base/log.h"
#include "devices/virtio/registry.h"

#define RNG_CHUNK	4096

struct virtio_rng {
	struct virtio_device vdev;
	pthread_mutex_t lock;
	bool active;
	bool paused;		/* VM paused: the queue is left alone */
	uint64_t bytes;
	struct vq_chain chain;
};

static struct virtio_rng *to_rng(struct virtio_device *dev)
{
	return container_of(dev, struct virtio_rng, vdev);
}

/* Fill up to want writable bytes of c from getrandom(); returns how many. */
static size_t fill_random(struct vq_chain *c, size_t want)
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
static bool serve_queue(struct virtio_rng *r)
{
	struct virtqueue *vq = virtio_dev_queue(&r->vdev, 0);
	size_t budget = VIRTIO_RNG_BUDGET;
	unsigned chains = VIRTIO_RNG_CHAINS_MAX;
	bool more = false, pushed = false;
	int ret;

	if (!r->active || r->paused || !vq->ready)
		return false;
	for (;;) {
		while (!vq->error) {
			size_t want, n;

			/* Chains count too: one without writable bytes costs
			 * no budget bytes but still costs a walk. */
			if (!budget || !chains) {
				more = true;
				goto out;
			}
			ret = virtqueue_pop(vq, &r->chain);
			if (ret == 0)
				break;
			if (ret < 0) {
				virtio_dev_queue_error(&r->vdev, 0, ret);	/* notifies */
				pushed = false;
				goto out;
			}
			chains--;
			want = vq_writer_remaining(&r->chain);
			if (want > VIRTIO_RNG_REQ_MAX)
				want = VIRTIO_RNG_REQ_MAX;
			if (want > budget)
				want = budget;
			n = fill_random(&r->chain, want);
			budget -= want;
			r->bytes += n;
			virtqueue_push(vq, r->chain.head, (uint32_t)n);
			pushed = true;
		}
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	/* Without EVENT_IDX should_notify() says yes whenever the driver has
	 * not set NO_INTERRUPT, pushed or not: ask only after a push. */
	if (pushed)
		virtio_dev_notify_if_needed(&r->vdev, 0);
	return more;
}

bool virtio_rng_kick(struct virtio_rng *r)
{
	eventfd_t v;
	bool more;

	(void)eventfd_read(virtio_dev_kick_fd(&r->vdev, 0), &v);
	pthread_mutex_lock(&r->lock);
	more = serve_queue(r);
	pthread_mutex_unlock(&r->lock);
	if (more)
		virtio_dev_queue_notify(&r->vdev, 0);
	return more;
}

void virtio_rng_pause(struct virtio_rng *r)
{
	pthread_mutex_lock(&r->lock);
	r->paused = true;
	pthread_mutex_unlock(&r->lock);
}

void virtio_rng_resume(struct virtio_rng *r)
{
	pthread_mutex_lock(&r->lock);
	r->paused = false;
	pthread_mutex_unlock(&r->lock);
	virtio_dev_queue_notify(&r->vdev, 0);	/* kicks that came while paused */
}

uint64_t virtio_rng_bytes(struct virtio_rng *r)
{
	uint64_t n;

	pthread_mutex_lock(&r->lock);
	n = r->bytes;
	pthread_mutex_unlock(&r->lock);
	return n;
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

int virtio_rng_create(struct virtio_rng **out, const struct guest_mem *gm)
{
	struct virtio_rng *r;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	ret = virtio_dev_init(&r->vdev, &rng_ops, gm, 1, VIRTIO_RNG_QUEUE_SIZE,
			      VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
			      VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC));
	if (ret) {
		virtio_rng_destroy(r);
		return ret;
	}
	*out = r;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *r)
{
	if (!r)
		return;
	virtio_dev_destroy(&r->vdev);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

struct virtio_device *virtio_rng_virtio(struct virtio_rng *r)
{
	return &r->vdev;
}

/* ---- The device type: --rng ---- */

static int rng_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	struct virtio_rng *r;
	int ret;

	(void)opts;
	ret = virtio_rng_create(&r, ctx->mem);
	if (ret)
		return ret;
	*out = &r->vdev;
	return 0;
}

static void rng_destroy(struct virtio_device *dev)
{
	virtio_rng_destroy(to_rng(dev));
}

static void rng_kick(struct virtio_device *dev, unsigned q)
{
	(void)q;
	(void)virtio_rng_kick(to_rng(dev));
}

static void rng_pause(struct virtio_device *dev)
{
	virtio_rng_pause(to_rng(dev));
}

static void rng_resume(struct virtio_device *dev)
{
	virtio_rng_resume(to_rng(dev));
}

static struct dev_option_table rng_options = {
	.flag = "rng",
	.json_key = "rng",
	.summary = "a virtio-rng device fed from getrandom()",
	.arg_optional = true,
	.max_instances = 1,
};

static struct virtio_device_desc rng_desc = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.pci_class = 0xff0000,	/* unassigned class */
	.options = &rng_options,
	.io = VIRTIO_IO_MAIN_LOOP,
	.create = rng_create,
	.destroy = rng_destroy,
	.kick = rng_kick,
	.pause = rng_pause,
	.resume = rng_resume,
};
VIRTIO_DEVICE_REGISTER(rng_desc);
