/* COM1: a 16550A at 0x3f8, IRQ 4, wired to the console chardev.
 *
 * Host input goes into the UART's receiver as far as it has room; the rest
 * waits here and is fed in as the guest drains the FIFO, so typed input is
 * never dropped. When this buffer is nearly full, stdin is taken off the
 * event loop until the guest has read half of it. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bus.h"
#include "base/log.h"
#include "devices/chardev/chardev.h"
#include "devices/device.h"
#include "devices/legacy/uart_16550.h"
#include "irqchip/irqchip.h"

#define SERIAL_BASE	0x3f8
#define SERIAL_IRQ	4
#define SERIAL_INBUF	(64 * 1024)

struct serial {
	pthread_mutex_t lock;
	struct device_ctx ctx;
	struct uart16550 uart;
	struct chardev *chr;

	/* Host input the receiver had no room for (ring buffer). */
	uint8_t *in;
	size_t in_head, in_len;
	bool in_paused;

	/* A byte the backend's buffer had no room for: sent first when it
	 * drains, while the UART reports THR full. */
	bool tx_held;
	uint8_t tx_byte;

	struct ratelimit rl;
};

/* vCPU thread, lock held. Never waits for the reader: a full backend makes
 * the UART busy (THRE clear) until the main loop has drained it. */
static void serial_tx(void *opaque, uint8_t byte)
{
	struct serial *s = opaque;

	if (s->tx_held) {
		/* The guest ignored THRE: the byte does not fit anywhere. */
		if (ratelimit_allow(&s->rl))
			log_warn("serial: output backend full and the guest ignores THRE; byte dropped");
		return;
	}
	if (chardev_write_nb(s->chr, &byte, 1) == 1)
		return;
	s->tx_held = true;
	s->tx_byte = byte;
	uart16550_set_tx_busy(&s->uart, true);
}

/* Main thread: the backend drained its buffer. */
static void serial_writable(void *opaque)
{
	struct serial *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (s->tx_held && chardev_write_nb(s->chr, &s->tx_byte, 1) == 1) {
		s->tx_held = false;
		uart16550_set_tx_busy(&s->uart, false);
	}
	pthread_mutex_unlock(&s->lock);
}

static void serial_set_irq(void *opaque, bool level)
{
	struct serial *s = opaque;
	int ret = irqchip_set_line(s->ctx.irqchip, SERIAL_IRQ, level);

	if (ret < 0 && ratelimit_allow(&s->rl))
		log_warn("serial: cannot set IRQ %d: %s", SERIAL_IRQ, strerror(-ret));
}

/* Move buffered input into the receiver. Called with the lock held. */
static void serial_feed(struct serial *s)
{
	while (s->in_len) {
		size_t chunk = SERIAL_INBUF - s->in_head;
		size_t n;

		if (chunk > s->in_len)
			chunk = s->in_len;
		n = uart16550_receive(&s->uart, s->in + s->in_head, chunk);
		if (!n)
			break;
		s->in_head = (s->in_head + n) % SERIAL_INBUF;
		s->in_len -= n;
	}
	if (s->in_paused && s->in_len <= SERIAL_INBUF / 2) {
		s->in_paused = false;
		chardev_resume_input(s->chr);
	}
}

/* Main thread: bytes typed on the host. */
static void serial_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct serial *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (!s->in_len) {
		size_t n = uart16550_receive(&s->uart, buf, len);

		buf += n;
		len -= n;
	}
	while (len) {
		size_t tail = (s->in_head + s->in_len) % SERIAL_INBUF;
		size_t room = SERIAL_INBUF - s->in_len;
		size_t chunk = SERIAL_INBUF - tail;

		if (chunk > room)
			chunk = room;
		if (chunk > len)
			chunk = len;
		if (!chunk) {
			/* Cannot happen: input pauses with CHARDEV_READ_MAX
			 * bytes of room left. */
			log_warn("serial: input buffer full, %zu bytes dropped", len);
			break;
		}
		memcpy(s->in + tail, buf, chunk);
		s->in_len += chunk;
		buf += chunk;
		len -= chunk;
	}
	if (!s->in_paused && SERIAL_INBUF - s->in_len < CHARDEV_READ_MAX) {
		s->in_paused = true;
		chardev_pause_input(s->chr);
	}
	pthread_mutex_unlock(&s->lock);
}

static void serial_quit(void *opaque)
{
	struct serial *s = opaque;

	device_request(&s->ctx, DEVICE_REQ_QUIT, 0, "console escape C-a x");
}

static void serial_io_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	struct serial *s = opaque;

	pthread_mutex_lock(&s->lock);
	uart16550_io_read(&s->uart, offset, data, len);
	if (s->in_len)
		serial_feed(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_io_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	struct serial *s = opaque;

	pthread_mutex_lock(&s->lock);
	uart16550_io_write(&s->uart, offset, data, len);
	if (s->in_len)
		serial_feed(s);
	pthread_mutex_unlock(&s->lock);
}

static const struct bus_dev_ops serial_ops = {
	.read = serial_io_read,
	.write = serial_io_write,
};

static int serial_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct serial *s;
	int ret;

	(void)desc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = *ctx;
	s->rl = (struct ratelimit)RATELIMIT_INIT(5000, 5);
	ret = -pthread_mutex_init(&s->lock, NULL);
	if (ret)
		goto err_free;
	s->in = malloc(SERIAL_INBUF);
	if (!s->in) {
		ret = -ENOMEM;
		goto err_mutex;
	}
	uart16550_init(&s->uart, serial_tx, serial_set_irq, s);

	s->chr = chardev_create(ctx->cfg, ctx->loop, serial_input, serial_quit, s, &ret);
	if (!s->chr)
		goto err_in;
	chardev_set_writable_cb(s->chr, serial_writable, s);

	ret = bus_register(ctx->pio_bus, SERIAL_BASE, UART_NR_REGS, &serial_ops, s, "serial");
	if (ret)
		goto err_chr;

	*state = s;
	return 0;

err_chr:
	chardev_destroy(s->chr);
err_in:
	free(s->in);
err_mutex:
	pthread_mutex_destroy(&s->lock);
err_free:
	free(s);
	return ret;
}

/* Buffered host input survives: it was typed, the rebooted guest gets it. */
static void serial_reset(void *state)
{
	struct serial *s = state;

	pthread_mutex_lock(&s->lock);
	uart16550_reset(&s->uart);
	pthread_mutex_unlock(&s->lock);
}

static void serial_destroy(void *state)
{
	struct serial *s = state;

	if (!s)
		return;
	bus_unregister(s->ctx.pio_bus, SERIAL_BASE);
	chardev_destroy(s->chr);
	free(s->in);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Snapshots: the UART and a byte the old backend had no room for (sent
 * to this one). Host input not yet in the FIFO stays with the old process. */
static json_t *serial_save(void *state)
{
	struct serial *s = state;
	struct uart16550_state u;
	json_t *rx = json_array();
	int held;

	pthread_mutex_lock(&s->lock);
	uart16550_save(&s->uart, &u);
	held = s->tx_held ? s->tx_byte : -1;
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; rx && i < u.rx_count; i++)
		json_array_append_new(rx, json_integer(u.rx[i]));
	return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:o, s:i}",
			 "ier", u.ier, "fcr", u.fcr, "lcr", u.lcr, "mcr", u.mcr, "msr", u.msr,
			 "scr", u.scr, "dll", u.dll, "dlm", u.dlm, "lsr_err", u.lsr_err, "rbr", u.rbr,
			 "thr_ipending", u.thr_ipending, "rx", rx,
			 "tx_held", held);
}

static int get_u8(json_t *o, const char *key, uint8_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 255) {
		snprintf(err, errlen, "%s: expected an integer from 0 to 255", key);
		return -EINVAL;
	}
	*out = (uint8_t)json_integer_value(v);
	return 0;
}

static int serial_load(void *state, json_t *saved, char *err, size_t errlen)
{
	static const char *const keys[] = { "ier", "fcr", "lcr", "mcr", "msr", "scr", "dll",
					    "dlm", "lsr_err", "rbr" };
	struct serial *s = state;
	struct uart16550_state u = { 0 };
	uint8_t *regs[] = { &u.ier, &u.fcr, &u.lcr, &u.mcr, &u.msr, &u.scr, &u.dll, &u.dlm,
			    &u.lsr_err, &u.rbr };
	json_t *rx = json_object_get(saved, "rx"), *th = json_object_get(saved, "thr_ipending");
	json_t *held = json_object_get(saved, "tx_held");
	int ret;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if ((ret = get_u8(saved, keys[i], regs[i], err, errlen)))
			return ret;
	if (!json_is_boolean(th) || !json_is_array(rx) || json_array_size(rx) > UART_FIFO_SIZE ||
	    !json_is_integer(held) || json_integer_value(held) < -1 ||
	    json_integer_value(held) > 255) {
		snprintf(err, errlen, "thr_ipending, rx or tx_held missing or out of range");
		return -EINVAL;
	}
	u.thr_ipending = json_is_true(th);
	u.rx_count = (unsigned)json_array_size(rx);
	for (unsigned i = 0; i < u.rx_count; i++) {
		json_t *b = json_array_get(rx, i);

		if (!json_is_integer(b) || json_integer_value(b) < 0 || json_integer_value(b) > 255) {
			snprintf(err, errlen, "rx[%u]: expected a byte", i);
			return -EINVAL;
		}
		u.rx[i] = (uint8_t)json_integer_value(b);
	}
	pthread_mutex_lock(&s->lock);
	ret = uart16550_load(&s->uart, &u);
	if (!ret && json_integer_value(held) >= 0) {
		uint8_t byte = (uint8_t)json_integer_value(held);

		if (chardev_write_nb(s->chr, &byte, 1) != 1)
			log_warn("serial: one byte of output from before the snapshot dropped");
	}
	pthread_mutex_unlock(&s->lock);
	if (ret)
		snprintf(err, errlen, "UART registers hold values a 16550A cannot");
	return ret;
}

static struct device_desc serial_desc = {
	.name = "serial",
	.level = DEVICE_LEVEL_LEGACY,
	.realize = serial_realize,
	.reset = serial_reset,
	.save = serial_save,
	.load = serial_load,
	.destroy = serial_destroy,
};
DEVICE_REGISTER(serial_desc);
