/* virtio-console (virtio 1.2 section 5.3) on virtio-pci: one port, no
 * multiport, an alternative console enabled by cfg->virtio_console_enabled
 * with the backend cfg->virtio_console / virtio_console_path (a chardev,
 * like --console). Queue 0 (receiveq) carries host input to the guest,
 * queue 1 (transmitq) guest output to the backend. VIRTIO_CONSOLE_F_EMERG_WRITE
 * is offered: a write to emerg_wr prints one character.
 *
 * Everything runs on the main event loop: kicks arrive on the queues'
 * eventfds, input from the chardev. Host input the guest has no buffers for
 * waits here; when that buffer fills, the chardev's input is paused until
 * the guest posts receive buffers again. Note that only the first stdio
 * chardev reads stdin: with the serial console also on stdio, this one is
 * output only. */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "devices/chardev/chardev.h"
#include "devices/device.h"
#include "devices/virtio/virtio.h"
#include "devices/virtio/virtio_pci.h"
#include "vmm/evloop.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define VIRTIO_CONSOLE_F_SIZE		0
#define VIRTIO_CONSOLE_F_MULTIPORT	1
#define VIRTIO_CONSOLE_F_EMERG_WRITE	2

#define CONS_RXQ		0
#define CONS_TXQ		1
#define CONS_QUEUE_SIZE		64
#define CONS_INBUF		(64 * 1024)
#define CONS_BUDGET		(256 * 1024)	/* TX bytes per callback */
#define CONS_EMERG_WR_OFF	8

struct virtio_console_config {
	uint16_t cols;
	uint16_t rows;
	uint32_t max_nr_ports;
	uint32_t emerg_wr;
} __attribute__((packed));

struct virtio_cons {
	struct virtio_device vdev;
	struct vm *vm;
	struct virtio_pci *vp;
	struct chardev *chr;
	pthread_mutex_t lock;
	bool active;
	bool on_loop[2];
	struct virtio_console_config cfg;

	/* Host input not yet in a guest buffer (ring). */
	uint8_t *in;
	size_t in_head, in_len;
	bool in_paused;

	struct vq_chain chain;
};

static struct virtio_cons *to_cons(struct virtio_device *dev)
{
	return (struct virtio_cons *)((char *)dev - offsetof(struct virtio_cons, vdev));
}

/* Lock held. Move buffered input into receive buffers. */
static void rx_flush(struct virtio_cons *c)
{
	struct virtqueue *vq = virtio_dev_queue(&c->vdev, CONS_RXQ);
	bool pushed = false;
	int ret;

	while (c->active && vq->ready && !vq->error && c->in_len) {
		size_t n = 0;

		ret = virtqueue_pop(vq, &c->chain);
		if (ret == 0) {
			if (!virtqueue_enable_notify(vq))
				break;
			continue;
		}
		if (ret < 0) {
			virtio_dev_queue_error(&c->vdev, CONS_RXQ, ret);
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
		virtio_dev_notify_if_needed(&c->vdev, CONS_RXQ);
	if (c->in_paused && c->in_len <= CONS_INBUF / 2) {
		c->in_paused = false;
		chardev_resume_input(c->chr);
	}
}

/* Lock held. Returns true when the budget ran out with work left. */
static bool tx_process(struct virtio_cons *c)
{
	struct virtqueue *vq = virtio_dev_queue(&c->vdev, CONS_TXQ);
	size_t budget = CONS_BUDGET;
	bool more = false;
	uint8_t buf[4096];
	int ret;

	if (!c->active || !vq->ready)
		return false;
	for (;;) {
		while (!vq->error) {
			size_t n;

			if (!budget) {
				more = true;
				goto out;
			}
			ret = virtqueue_pop(vq, &c->chain);
			if (ret == 0)
				break;
			if (ret < 0) {
				virtio_dev_queue_error(&c->vdev, CONS_TXQ, ret);
				goto out;
			}
			while ((n = vq_reader_read(&c->chain, buf, sizeof(buf))) > 0) {
				chardev_write(c->chr, buf, n);
				budget = budget > n ? budget - n : 0;
			}
			virtqueue_push(vq, c->chain.head, 0);
		}
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	virtio_dev_notify_if_needed(&c->vdev, CONS_TXQ);
	return more;
}

static void on_rx_kick(void *opaque, uint32_t events)
{
	struct virtio_cons *c = opaque;
	eventfd_t v;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(&c->vdev, CONS_RXQ), &v);
	pthread_mutex_lock(&c->lock);
	rx_flush(c);
	pthread_mutex_unlock(&c->lock);
}

static void on_tx_kick(void *opaque, uint32_t events)
{
	struct virtio_cons *c = opaque;
	eventfd_t v;
	bool more;

	(void)events;
	(void)eventfd_read(virtio_dev_kick_fd(&c->vdev, CONS_TXQ), &v);
	pthread_mutex_lock(&c->lock);
	more = tx_process(c);
	pthread_mutex_unlock(&c->lock);
	if (more)
		virtio_dev_queue_notify(&c->vdev, CONS_TXQ);
}

/* Main thread: host input. */
static void on_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct virtio_cons *c = opaque;

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
		chardev_pause_input(c->chr);
	}
	pthread_mutex_unlock(&c->lock);
}

static void on_quit(void *opaque)
{
	struct virtio_cons *c = opaque;

	vm_request_quit(c->vm, "console escape C-a x");
}

static void cons_config_read(struct virtio_device *dev, size_t off, void *data, size_t len)
{
	memcpy(data, (const uint8_t *)&to_cons(dev)->cfg + off, len);
}

static void cons_config_write(struct virtio_device *dev, size_t off, const void *data, size_t len)
{
	struct virtio_cons *c = to_cons(dev);

	/* emerg_wr: the low byte is the character. */
	if (off == CONS_EMERG_WR_OFF && len >= 1 &&
	    virtio_dev_has_feature(dev, VIRTIO_CONSOLE_F_EMERG_WRITE))
		chardev_write(c->chr, data, 1);
}

static int cons_activate(struct virtio_device *dev)
{
	struct virtio_cons *c = to_cons(dev);

	pthread_mutex_lock(&c->lock);
	c->active = true;
	pthread_mutex_unlock(&c->lock);
	virtio_dev_queue_notify(dev, CONS_RXQ);
	virtio_dev_queue_notify(dev, CONS_TXQ);
	return 0;
}

/* Buffered host input survives a reset: it was typed, the next driver gets it. */
static void cons_reset(struct virtio_device *dev)
{
	struct virtio_cons *c = to_cons(dev);

	pthread_mutex_lock(&c->lock);
	c->active = false;
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

static void cons_destroy(void *state)
{
	struct virtio_cons *c = state;

	if (!c)
		return;
	for (unsigned q = 0; q < 2; q++)
		if (c->on_loop[q])
			evloop_del(c->vm->loop, virtio_dev_kick_fd(&c->vdev, q));
	virtio_pci_destroy(c->vp);
	chardev_destroy(c->chr);
	virtio_dev_destroy(&c->vdev);
	pthread_mutex_destroy(&c->lock);
	free(c->in);
	free(c);
}

static int cons_realize(struct vm *vm, void **state)
{
	static const evloop_cb kick_cb[2] = { on_rx_kick, on_tx_kick };
	struct pci_host *h = pci_host_of(vm);
	struct vm_config ccfg;
	struct virtio_cons *c;
	int ret;

	*state = NULL;
	if (!vm->cfg->virtio_console_enabled)
		return 0;
	if (!h)
		return -ENODEV;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->vm = vm;
	pthread_mutex_init(&c->lock, NULL);
	c->cfg.max_nr_ports = htole32(1);
	/* First: it marks the kick eventfds absent even when it fails. */
	ret = virtio_dev_init(&c->vdev, &cons_ops, &vm->mem, 2, CONS_QUEUE_SIZE,
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
	ccfg = *vm->cfg;
	ccfg.console = vm->cfg->virtio_console;
	ccfg.console_path = vm->cfg->virtio_console_path;
	c->chr = chardev_create(&ccfg, vm->loop, on_input, on_quit, c, &ret);
	if (!c->chr)
		goto err;
	for (unsigned q = 0; q < 2; q++) {
		ret = evloop_add(vm->loop, virtio_dev_kick_fd(&c->vdev, q), EPOLLIN, kick_cb[q], c);
		if (ret)
			goto err;
		c->on_loop[q] = true;
	}
	ret = virtio_pci_create(h, &c->vdev, &c->vp);
	if (ret)
		goto err;
	*state = c;
	return 0;
err:
	cons_destroy(c);
	return ret;
}

static void cons_vm_reset(void *state)
{
	virtio_pci_reset(((struct virtio_cons *)state)->vp);
}

static struct device_desc cons_desc = {
	.name = "virtio-console",
	.level = DEVICE_LEVEL_VIRTIO,
	.realize = cons_realize,
	.reset = cons_vm_reset,
	.destroy = cons_destroy,
};
DEVICE_REGISTER(cons_desc);
