/* virtio-console: the core (see console.h) and its device type,
 * --virtio-console BACKEND, an alternative console whose backend is a
 * chardev chosen like --console's.
 *
 * In the VMM everything runs on the main event loop: the registry watches
 * the queues' kick eventfds, the chardev delivers input, which the device
 * pauses while its input buffer is nearly full. Note that only the first
 * stdio chardev reads stdin: with the serial console also on stdio, this
 * one is output only. */
#include "devices/virtio/console/console.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "base/byteorder.h"
#include "base/log.h"
#include "devices/chardev/chardev.h"
#include "devices/virtio/registry.h"
#include "vmm/config.h"

#define CONS_INBUF		VIRTIO_CONSOLE_INBUF

struct virtio_console {
	struct virtio_device vdev;
	struct virtio_console_io io;
	pthread_mutex_t lock;
	bool active;
	bool paused;		/* VM paused: queues and guest memory left alone */
	uint8_t cfg[sizeof(struct virtio_console_config)];	/* as the driver reads it */

	/* Host input not yet in a guest buffer (ring). */
	uint8_t *in;
	size_t in_head, in_len;
	bool in_paused;

	struct vq_chain chain;		/* receiveq scratch */
	/* Transmit: the chain being sent (possibly across kicks) and bytes
	 * read from it that the backend has not taken yet. */
	struct vq_chain tx_chain;
	bool tx_busy;
	/* Bytes of the next transmit chain already sent: it was handed back
	 * to the ring by a snapshot after being partly sent. */
	size_t tx_skip;
	uint8_t tx_buf[4096];
	size_t tx_off, tx_len;
};

static struct virtio_console *to_cons(struct virtio_device *dev)
{
	return container_of(dev, struct virtio_console, vdev);
}

static size_t backend_write(struct virtio_console *c, const void *buf, size_t len)
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
			size_t w = backend_write(c, c->tx_buf + c->tx_off, c->tx_len);

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
		if (c->tx_skip) {
			vq_reader_skip(&c->tx_chain, c->tx_skip);
			c->tx_skip = 0;
		}
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
	memcpy(data, to_cons(dev)->cfg + off, len);
}

static void cons_config_write(struct virtio_device *dev, size_t off, const void *data, size_t len)
{
	struct virtio_console *c = to_cons(dev);

	/* emerg_wr: the low byte is the character. */
	if (off == VIRTIO_CONSOLE_CFG_EMERG_WR && len >= 1 &&
	    virtio_dev_has_feature(dev, VIRTIO_CONSOLE_F_EMERG_WRITE)) {
		pthread_mutex_lock(&c->lock);
		(void)backend_write(c, data, 1);	/* dropped if the backend is full */
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
	c->tx_skip = 0;
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
	wr32(c->cfg + VIRTIO_CONSOLE_CFG_MAX_NR_PORTS, 1);
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

/* ---- The device type: --virtio-console BACKEND ---- */

struct console_options {
	char *backend;		/* stdio | file:PATH | none */
};

/* The host side: the core and its chardev. */
struct console_host {
	struct virtio_console *cons;
	struct chardev *chr;
	const struct device_ctx *ctx;
};

static int parse_backend(const char *s, enum console_kind *kind, const char **path)
{
	*path = NULL;
	if (!strcmp(s, "stdio"))
		*kind = CONSOLE_STDIO;
	else if (!strcmp(s, "none"))
		*kind = CONSOLE_NONE;
	else if (!strncmp(s, "file:", 5) && s[5])
		*kind = CONSOLE_FILE, *path = s + 5;
	else
		return -EINVAL;
	return 0;
}

static int console_check(void *opts, char *err, size_t errlen)
{
	const struct console_options *o = opts;
	enum console_kind kind;
	const char *path;

	if (!o->backend || parse_backend(o->backend, &kind, &path)) {
		snprintf(err, errlen, "backend: '%s' is not stdio, none or file:PATH",
			 o->backend ? o->backend : "");
		return -EINVAL;
	}
	return 0;
}

static size_t host_write(void *opaque, const void *buf, size_t len)
{
	return chardev_write_nb(((struct console_host *)opaque)->chr, buf, len);
}

/* Main thread: the backend drained what it had refused; send the rest. */
static void host_writable(void *opaque)
{
	virtio_dev_queue_notify(virtio_console_virtio(((struct console_host *)opaque)->cons),
				VIRTIO_CONSOLE_TXQ);
}

static void host_pause_input(void *opaque)
{
	chardev_pause_input(((struct console_host *)opaque)->chr);
}

static void host_resume_input(void *opaque)
{
	chardev_resume_input(((struct console_host *)opaque)->chr);
}

/* Main thread: host input. */
static void host_input(void *opaque, const uint8_t *buf, size_t len)
{
	virtio_console_input(((struct console_host *)opaque)->cons, buf, len);
}

static void host_quit(void *opaque)
{
	device_request(((struct console_host *)opaque)->ctx, DEVICE_REQ_QUIT, 0,
		       "console escape C-a x");
}

static struct console_host *host_of(struct virtio_device *dev)
{
	return to_cons(dev)->io.opaque;
}

static void console_destroy(struct virtio_device *dev)
{
	struct console_host *h = host_of(dev);

	chardev_destroy(h->chr);
	virtio_console_destroy(h->cons);
	free(h);
}

static int console_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	const struct console_options *o = opts;
	struct virtio_console_io io;
	struct console_host *h;
	enum console_kind kind;
	const char *path;
	unsigned errors;
	int ret;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ctx = ctx;
	io = (struct virtio_console_io){
		.write = host_write,
		.pause_input = host_pause_input,
		.resume_input = host_resume_input,
		.opaque = h,
	};
	ret = virtio_console_create(&h->cons, ctx->mem, &io);
	if (ret) {
		free(h);
		return ret;
	}
	if (parse_backend(o->backend, &kind, &path)) {
		ret = -EINVAL;
		goto err;
	}
	errors = log_error_count();
	h->chr = chardev_open(kind, path, ctx->loop, host_input, host_quit, h, &ret);
	if (!h->chr) {
		if (log_error_count() == errors)	/* else the chardev said why */
			virtio_create_error("backend %s: %s", o->backend, strerror(-ret));
		goto err;
	}
	chardev_set_writable_cb(h->chr, host_writable, h);
	*out = virtio_console_virtio(h->cons);
	return 0;
err:
	console_destroy(virtio_console_virtio(h->cons));
	return ret;
}

static void console_kick(struct virtio_device *dev, unsigned q)
{
	(void)virtio_console_kick(to_cons(dev), q);
}

static void console_pause(struct virtio_device *dev)
{
	virtio_console_pause(to_cons(dev));
}

static void console_resume(struct virtio_device *dev)
{
	virtio_console_resume(to_cons(dev));
}

/* Paused. A transmit chain the device holds (the backend was full) goes
 * back to the ring, with how much of it was sent, so nothing is in flight
 * and nothing is sent twice. Host input not yet delivered is not saved. */
static json_t *console_save(struct virtio_device *dev)
{
	struct virtio_console *c = to_cons(dev);
	json_t *o;

	pthread_mutex_lock(&c->lock);
	if (c->tx_busy) {
		c->tx_skip = c->tx_chain.rd.done - c->tx_len;
		virtqueue_unpop(virtio_dev_queue(dev, VIRTIO_CONSOLE_TXQ), 1);
		c->tx_busy = false;
		c->tx_off = c->tx_len = 0;
	}
	o = json_pack("{s:I}", "tx_skip", (json_int_t)c->tx_skip);
	pthread_mutex_unlock(&c->lock);
	return o;
}

static int console_load(struct virtio_device *dev, json_t *saved, char *err, size_t errlen)
{
	struct virtio_console *c = to_cons(dev);
	json_t *skip = json_object_get(saved, "tx_skip");

	if (!json_is_integer(skip) || json_integer_value(skip) < 0 ||
	    json_integer_value(skip) > UINT32_MAX) {
		snprintf(err, errlen, "virtio-console: tx_skip: expected a byte count");
		return -EINVAL;
	}
	pthread_mutex_lock(&c->lock);
	c->tx_skip = (size_t)json_integer_value(skip);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static const struct dev_option console_opts[] = {
	{ .name = "backend", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct console_options, backend),
	  .help = "stdio, file:PATH or none", .required = true },
};

static struct dev_option_table console_options = {
	.flag = "virtio-console",
	.json_key = "virtio-console",
	.summary = "a virtio-console device (single port) and its backend",
	.positional = "backend",
	.max_instances = 1,
	.size = sizeof(struct console_options),
	.opts = console_opts,
	.nr_opts = DEV_OPT_COUNT(console_opts),
	.check = console_check,
};

static struct virtio_device_desc console_desc = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.pci_class = 0x078000,	/* communication, other */
	.options = &console_options,
	.io = VIRTIO_IO_MAIN_LOOP,
	.create = console_create,
	.destroy = console_destroy,
	.kick = console_kick,
	.pause = console_pause,
	.resume = console_resume,
	.save = console_save,
	.load = console_load,
};
VIRTIO_DEVICE_REGISTER(console_desc);
