/* virtio-console: the core (see console.h) and its virtio-pci glue, an
 * alternative console enabled by cfg->virtio_console_enabled with the
 * backend cfg->virtio_console / virtio_console_path (a chardev, like
 * --console).
 *
 * In the VMM everything runs on the main event loop: kicks arrive on the
 * queues' eventfds, input from the chardev, which the device pauses while
 * its input buffer is nearly full. Note that only the first stdio chardev
 * reads stdin: with the serial console also on stdio, this one is output
 * only. */
#include "devices/virtio/console.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "devices/chardev/chardev.h"
#include "devices/device.h"
#include "devices/virtio/virtio_pci.h"
#include "base/evloop.h"
#include "base/log.h"
#include "vmm/vm.h"

#define CONS_INBUF		VIRTIO_CONSOLE_INBUF

struct virtio_console {
	struct virtio_device vdev;
	struct virtio_console_io io;
	pthread_mutex_t lock;
	bool active;
	bool paused;		/* VM paused: queues and guest memory left alone */
	struct virtio_console_config cfg;

	/* Host input not yet in a guest buffer (ring). */
	uint8_t *in;
	size_t in_head, in_len;
	bool in_paused;

	struct vq_chain chain;		/* receiveq scratch */
	/* Transmit: the chain being sent (possibly across kicks) and bytes
	 * read from it that the backend has not taken yet. */
	struct vq_chain tx_chain;
	bool tx_busy;
	uint8_t tx_buf[4096];
	size_t tx_off, tx_len;
};

static struct virtio_console *to_cons(struct virtio_device *dev)
{
	return (struct virtio_console *)((char *)dev - offsetof(struct virtio_console, vdev));
}

static size_t io_write(struct virtio_console *c, const void *buf, size_t len)
{
	size_t n;

	if (!c->io.write)
		return len;
	n = c->io.write(c->io.opaque, buf, len);
	return n < len ? n : len;
}

/* Lock held. The chain just popped goes the wrong way for queue q: hand it
 * back untouched and break the device. */
static void reject_chain(struct virtio_console *c, unsigned q, const struct vq_chain *chain)
{
	static struct ratelimit rl = RATELIMIT_INIT(5000, 10);
	struct virtqueue *vq = virtio_dev_queue(&c->vdev, q);

	if (ratelimit_allow(&rl))
		log_warn("virtio-console: %s chain on the %s; device needs reset",
			 q == VIRTIO_CONSOLE_TXQ ? "device-writable" : "device-readable",
			 q == VIRTIO_CONSOLE_TXQ ? "transmitq" : "receiveq");
	virtqueue_push(vq, chain->head, 0);
	virtqueue_mark_broken(vq, -EINVAL);
	virtio_dev_notify_if_needed(&c->vdev, q);
	virtio_dev_set_needs_reset(&c->vdev);
}

/* Lock held. Move buffered input into receive buffers. */
static void rx_flush(struct virtio_console *c)
{
	struct virtqueue *vq = virtio_dev_queue(&c->vdev, VIRTIO_CONSOLE_RXQ);
	bool pushed = false;
	int ret;

	while (c->active && !c->paused && vq->ready && !vq->error && c->in_len) {
		size_t n = 0;

		ret = virtqueue_pop(vq, &c->chain);
		if (ret == 0) {
			if (!virtqueue_enable_notify(vq))
				break;
			continue;
		}
		if (ret < 0) {
			virtio_dev_queue_error(&c->vdev, VIRTIO_CONSOLE_RXQ, ret);
			pushed = false;	/* that notified */
			break;
		}
		if (c->chain.nr_out) {
			reject_chain(c, VIRTIO_CONSOLE_RXQ, &c->chain);
			pushed = false;	/* that notified */
			break;
		}
		while (c->in_len && vq_writer_remaining(&c->chain)) {
			size_t chunk = CONS_INBUF - c->in_head;
			size_t w;

			if (chunk > c->in_len)
				chunk = c->in_len;
			w = vq_writer_write(&c->chain, c->in + c->in_head, chunk);
			c->in_head = (c->in_head + w) % CONS_INBUF;
			c->in_len -= w;
			n += w;
			if (w < chunk)
				break;
		}
		virtqueue_push(vq, c->chain.head, (uint32_t)n);
		pushed = true;
	}
	if (pushed)
		virtio_dev_notify_if_needed(&c->vdev, VIRTIO_CONSOLE_RXQ);
	if (c->in_paused && c->in_len <= CONS_INBUF / 2) {
		c->in_paused = false;
		if (c->io.resume_input)
			c->io.resume_input(c->io.opaque);
	}
}

/* Lock held. Returns true when the budget ran out with work left. The
 * budget is counted per copy (at most sizeof(tx_buf) bytes), so one chain,
 * however long, cannot overrun it: the rest of it goes out on later kicks.
 * When the backend takes less than offered, transmission stops (returning
 * false) until the backend says it is writable and the queue is kicked. */
static bool tx_process(struct virtio_console *c)
{
	struct virtqueue *vq = virtio_dev_queue(&c->vdev, VIRTIO_CONSOLE_TXQ);
	size_t budget = VIRTIO_CONSOLE_TX_BUDGET;
	unsigned chains = VIRTIO_CONSOLE_TX_CHAINS;
	bool more = false, pushed = false;
	int ret;

	if (!c->active || c->paused || !vq->ready)
		return false;
	for (;;) {
		if (c->tx_len) {
			size_t w = io_write(c, c->tx_buf + c->tx_off, c->tx_len);

			c->tx_off += w;
			c->tx_len -= w;
			if (c->tx_len)
				goto out;	/* the backend is full: wait for it */
		}
		if (c->tx_busy) {
			if (!vq_reader_remaining(&c->tx_chain)) {
				virtqueue_push(vq, c->tx_chain.head, 0);
				pushed = true;
				c->tx_busy = false;
				continue;
			}
			if (!budget) {
				more = true;
				goto out;
			}
			c->tx_off = 0;
			c->tx_len = vq_reader_read(&c->tx_chain, c->tx_buf,
						   budget < sizeof(c->tx_buf) ? budget
									    : sizeof(c->tx_buf));
			budget -= c->tx_len;
			continue;
		}
		if (vq->error)
			break;
		if (!budget || !chains) {
			more = true;
			goto out;
		}
		ret = virtqueue_pop(vq, &c->tx_chain);
		if (ret == 0) {
			if (!virtqueue_enable_notify(vq))
				break;
			continue;
		}
		if (ret < 0) {
			virtio_dev_queue_error(&c->vdev, VIRTIO_CONSOLE_TXQ, ret);
			pushed = false;	/* that notified */
			goto out;
		}
		if (c->tx_chain.nr_in) {
			reject_chain(c, VIRTIO_CONSOLE_TXQ, &c->tx_chain);
			pushed = false;	/* that notified */
			goto out;
		}
		chains--;
		c->tx_busy = true;
	}
out:
	/* Without EVENT_IDX should_notify() says yes whenever the driver has
	 * not set NO_INTERRUPT, pushed or not: ask only after a push. */
	if (pushed)
		virtio_dev_notify_if_needed(&c->vdev, VIRTIO_CONSOLE_TXQ);
	return more;
}

bool virtio_console_kick(struct virtio_console *c, unsigned q)
{
	eventfd_t v;
	bool more = false;

	if (q != VIRTIO_CONSOLE_RXQ && q != VIRTIO_CONSOLE_TXQ)
		return false;
	(void)eventfd_read(virtio_dev_kick_fd(&c->vdev, q), &v);
	pthread_mutex_lock(&c->lock);
	if (q == VIRTIO_CONSOLE_RXQ)
		rx_flush(c);
	else
		more = tx_process(c);
	pthread_mutex_unlock(&c->lock);
	if (more)
		virtio_dev_queue_notify(&c->vdev, q);
	return more;
}

void virtio_console_input(struct virtio_console *c, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	while (len) {
		size_t tail = (c->in_head + c->in_len) % CONS_INBUF;
		size_t chunk = CONS_INBUF - tail;

		if (chunk > CONS_INBUF - c->in_len)
			chunk = CONS_INBUF - c->in_len;
		if (chunk > len)
			chunk = len;
		if (!chunk) {
			log_warn("virtio-console: input buffer full, %zu bytes dropped", len);
			break;
		}
		memcpy(c->in + tail, buf, chunk);
		c->in_len += chunk;
		buf += chunk;
		len -= chunk;
	}
	rx_flush(c);
	if (!c->in_paused && CONS_INBUF - c->in_len < CHARDEV_READ_MAX) {
		c->in_paused = true;
		if (c->io.pause_input)
			c->io.pause_input(c->io.opaque);
	}
	pthread_mutex_unlock(&c->lock);
}

void virtio_console_pause(struct virtio_console *c)
{
	pthread_mutex_lock(&c->lock);
	c->paused = true;
	pthread_mutex_unlock(&c->lock);
}

void virtio_console_resume(struct virtio_console *c)
{
	pthread_mutex_lock(&c->lock);
	c->paused = false;
	pthread_mutex_unlock(&c->lock);
	virtio_dev_queue_notify(&c->vdev, VIRTIO_CONSOLE_RXQ);
	virtio_dev_queue_notify(&c->vdev, VIRTIO_CONSOLE_TXQ);
}

size_t virtio_console_input_pending(struct virtio_console *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->in_len;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static void cons_config_read(struct virtio_device *dev, size_t off, void *data, size_t len)
{
	memcpy(data, (const uint8_t *)&to_cons(dev)->cfg + off, len);
}

static void cons_config_write(struct virtio_device *dev, size_t off, const void *data, size_t len)
{
	struct virtio_console *c = to_cons(dev);

	/* emerg_wr: the low byte is the character. */
	if (off == VIRTIO_CONSOLE_CFG_EMERG_WR && len >= 1 &&
	    virtio_dev_has_feature(dev, VIRTIO_CONSOLE_F_EMERG_WRITE)) {
		pthread_mutex_lock(&c->lock);
		(void)io_write(c, data, 1);	/* dropped if the backend is full */
		pthread_mutex_unlock(&c->lock);
	}
}

static int cons_activate(struct virtio_device *dev)
{
	struct virtio_console *c = to_cons(dev);

	pthread_mutex_lock(&c->lock);
	c->active = true;
	pthread_mutex_unlock(&c->lock);
	virtio_dev_queue_notify(dev, VIRTIO_CONSOLE_RXQ);
	virtio_dev_queue_notify(dev, VIRTIO_CONSOLE_TXQ);
	return 0;
}

static void cons_reset(struct virtio_device *dev)
{
	struct virtio_console *c = to_cons(dev);

	pthread_mutex_lock(&c->lock);
	c->active = false;
	c->tx_busy = false;
	c->tx_off = c->tx_len = 0;
	pthread_mutex_unlock(&c->lock);
}

static const struct virtio_device_ops cons_ops = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.config_size = sizeof(struct virtio_console_config),
	.config_read = cons_config_read,
	.config_write = cons_config_write,
	.activate = cons_activate,
	.reset = cons_reset,
};

int virtio_console_create(struct virtio_console **out, const struct guest_mem *gm,
			  const struct virtio_console_io *io)
{
	struct virtio_console *c;
	int ret;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	if (io)
		c->io = *io;
	c->cfg.max_nr_ports = htole32(1);
	/* First: it marks the kick eventfds absent even when it fails. */
	ret = virtio_dev_init(&c->vdev, &cons_ops, gm, 2, VIRTIO_CONSOLE_QUEUE_SIZE,
			      VIRTIO_BIT(VIRTIO_CONSOLE_F_EMERG_WRITE) |
			      VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
			      VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC));
	if (ret)
		goto err;
	c->in = malloc(CONS_INBUF);
	if (!c->in) {
		ret = -ENOMEM;
		goto err;
	}
	*out = c;
	return 0;
err:
	virtio_console_destroy(c);
	return ret;
}

void virtio_console_destroy(struct virtio_console *c)
{
	if (!c)
		return;
	virtio_dev_destroy(&c->vdev);
	pthread_mutex_destroy(&c->lock);
	free(c->in);
	free(c);
}

struct virtio_device *virtio_console_virtio(struct virtio_console *c)
{
	return &c->vdev;
}

/* ---- virtio-pci glue ---- */

struct cons_pci {
	struct vm *vm;
	struct virtio_console *cons;
	struct virtio_pci *vp;
	struct chardev *chr;
	bool on_loop[2];
};

static size_t glue_write(void *opaque, const void *buf, size_t len)
{
	return chardev_write_nb(((struct cons_pci *)opaque)->chr, buf, len);
}

/* Main thread: the backend drained what it had refused; send the rest. */
static void glue_writable(void *opaque)
{
	virtio_dev_queue_notify(virtio_console_virtio(((struct cons_pci *)opaque)->cons),
				VIRTIO_CONSOLE_TXQ);
}

static void glue_pause(void *opaque)
{
	chardev_pause_input(((struct cons_pci *)opaque)->chr);
}

static void glue_resume(void *opaque)
{
	chardev_resume_input(((struct cons_pci *)opaque)->chr);
}

/* Main thread: host input. */
static void on_input(void *opaque, const uint8_t *buf, size_t len)
{
	virtio_console_input(((struct cons_pci *)opaque)->cons, buf, len);
}

static void on_quit(void *opaque)
{
	vm_request_quit(((struct cons_pci *)opaque)->vm, "console escape C-a x");
}

static void on_rx_kick(void *opaque, uint32_t events)
{
	(void)events;
	(void)virtio_console_kick(((struct cons_pci *)opaque)->cons, VIRTIO_CONSOLE_RXQ);
}

static void on_tx_kick(void *opaque, uint32_t events)
{
	(void)events;
	(void)virtio_console_kick(((struct cons_pci *)opaque)->cons, VIRTIO_CONSOLE_TXQ);
}

static void cons_pci_destroy(void *state)
{
	struct cons_pci *p = state;

	if (!p)
		return;
	for (unsigned q = 0; q < 2; q++)
		if (p->on_loop[q])
			evloop_del(p->vm->loop, virtio_dev_kick_fd(virtio_console_virtio(p->cons), q));
	virtio_pci_destroy(p->vp);
	chardev_destroy(p->chr);
	virtio_console_destroy(p->cons);
	free(p);
}

static int cons_pci_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct vm *vm = ctx->machine;	/* transitional */

	(void)desc;
	static const evloop_cb kick_cb[2] = { on_rx_kick, on_tx_kick };
	struct pci_host *h = ctx->pci;
	struct virtio_console_io io;
	struct vm_config ccfg;
	struct cons_pci *p;
	int ret;

	*state = NULL;
	if (!vm->cfg->virtio_console_enabled)
		return 0;
	if (!h)
		return -ENODEV;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->vm = vm;
	io = (struct virtio_console_io){
		.write = glue_write,
		.pause_input = glue_pause,
		.resume_input = glue_resume,
		.opaque = p,
	};
	ret = virtio_console_create(&p->cons, &vm->mem, &io);
	if (ret)
		goto err;
	ccfg = *vm->cfg;
	ccfg.console = vm->cfg->virtio_console;
	ccfg.console_path = vm->cfg->virtio_console_path;
	p->chr = chardev_create(&ccfg, vm->loop, on_input, on_quit, p, &ret);
	if (!p->chr)
		goto err;
	chardev_set_writable_cb(p->chr, glue_writable, p);
	for (unsigned q = 0; q < 2; q++) {
		ret = evloop_add(vm->loop, virtio_dev_kick_fd(virtio_console_virtio(p->cons), q),
				 EPOLLIN, kick_cb[q], p);
		if (ret)
			goto err;
		p->on_loop[q] = true;
	}
	ret = virtio_pci_create(h, virtio_console_virtio(p->cons), 0x078000, &p->vp);
	if (ret)
		goto err;
	*state = p;
	return 0;
err:
	cons_pci_destroy(p);
	return ret;
}

static void cons_pci_reset(void *state)
{
	virtio_pci_reset(((struct cons_pci *)state)->vp);
}

static void cons_pci_pause(void *state)
{
	virtio_console_pause(((struct cons_pci *)state)->cons);
}

static void cons_pci_resume(void *state)
{
	virtio_console_resume(((struct cons_pci *)state)->cons);
}

static struct device_desc cons_desc = {
	.name = "virtio-console",
	.level = DEVICE_LEVEL_VIRTIO,
	.realize = cons_pci_realize,
	.reset = cons_pci_reset,
	.pause = cons_pci_pause,
	.resume = cons_pci_resume,
	.destroy = cons_pci_destroy,
};
DEVICE_REGISTER(cons_desc);
