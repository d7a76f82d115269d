#include "devices/legacy/i8042.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bus.h"
#include "base/log.h"
#include "devices/device.h"

/* Output port bits: bit 0 low holds the CPU in reset, bit 1 is A20. */
#define I8042_OUTPORT_RESET	0x01
#define I8042_OUTPORT_A20	0x02

void i8042_reset(struct i8042 *k)
{
	k->ctr = I8042_CTR_KBDINT | I8042_CTR_SYS | I8042_CTR_XLATE;
	k->last_was_cmd = true;
	k->pending = 0;
	k->out_head = 0;
	k->out_count = 0;
	k->last_out = 0;
}

void i8042_init(struct i8042 *k, i8042_reset_fn request_reset, void *opaque)
{
	memset(k, 0, sizeof(*k));
	k->request_reset = request_reset;
	k->opaque = opaque;
	i8042_reset(k);
}

static void out_push(struct i8042 *k, uint8_t val)
{
	if (k->out_count == I8042_OUT_SIZE)
		return;	/* the guest is not reading replies; keep the oldest */
	k->out[(k->out_head + k->out_count) % I8042_OUT_SIZE] = val;
	k->out_count++;
}

static void request_reset(struct i8042 *k, const char *cause)
{
	if (k->request_reset)
		k->request_reset(k->opaque, cause);
}

uint8_t i8042_read_status(const struct i8042 *k)
{
	uint8_t st = I8042_STR_UNLOCKED;

	if (k->out_count)
		st |= I8042_STR_OBF;
	if (k->ctr & I8042_CTR_SYS)
		st |= I8042_STR_SYS;
	if (k->last_was_cmd)
		st |= I8042_STR_CMD;
	return st;
}

uint8_t i8042_read_data(struct i8042 *k)
{
	if (k->out_count) {
		k->last_out = k->out[k->out_head];
		k->out_head = (k->out_head + 1) % I8042_OUT_SIZE;
		k->out_count--;
	}
	return k->last_out;
}

void i8042_write_data(struct i8042 *k, uint8_t val)
{
	uint8_t cmd = k->pending;

	k->last_was_cmd = false;
	k->pending = 0;
	switch (cmd) {
	case I8042_CMD_WRITE_CTR:
		k->ctr = val;
		break;
	case I8042_CMD_WRITE_OUTPORT:
		if (!(val & I8042_OUTPORT_RESET))
			request_reset(k, "i8042 reset (output port)");
		break;
	default:
		/* Bytes for the keyboard or mouse, or for D2/D3/D4: there is
		 * no device behind the controller, so nothing answers. */
		break;
	}
}

bool i8042_write_command(struct i8042 *k, uint8_t cmd)
{
	k->last_was_cmd = true;
	k->pending = 0;

	switch (cmd) {
	case I8042_CMD_READ_CTR:
		out_push(k, k->ctr);
		return true;
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUTPORT:
	case I8042_CMD_WRITE_KBD_OUT:
	case I8042_CMD_WRITE_AUX_OUT:
	case I8042_CMD_WRITE_AUX:
		k->pending = cmd;
		return true;
	case I8042_CMD_AUX_DISABLE:
		k->ctr |= I8042_CTR_AUXDIS;
		return true;
	case I8042_CMD_AUX_ENABLE:
		k->ctr &= ~I8042_CTR_AUXDIS;
		return true;
	case I8042_CMD_KBD_DISABLE:
		k->ctr |= I8042_CTR_KBDDIS;
		return true;
	case I8042_CMD_KBD_ENABLE:
		k->ctr &= ~I8042_CTR_KBDDIS;
		return true;
	case I8042_CMD_SELF_TEST:
		out_push(k, 0x55);
		return true;
	case I8042_CMD_AUX_TEST:
	case I8042_CMD_KBD_TEST:
		out_push(k, 0x00);
		return true;
	case I8042_CMD_READ_OUTPORT:
		out_push(k, I8042_OUTPORT_RESET | I8042_OUTPORT_A20);
		return true;
	default:
		break;
	}
	/* 0xF0-0xFF pulse the output lines whose mask bit is 0; bit 0 is
	 * the CPU reset line, so 0xFE (and the other even ones) reset. */
	if (cmd >= 0xF0) {
		if (!(cmd & 0x01))
			request_reset(k, "i8042 reset (0xFE)");
		return true;
	}
	return false;
}

/* The device. */

struct i8042_dev {
	pthread_mutex_t lock;
	struct device_ctx ctx;
	struct i8042 k;
	struct ratelimit rl;
};

static void i8042_dev_reset_request(void *opaque, const char *cause)
{
	struct i8042_dev *d = opaque;

	device_request(&d->ctx, DEVICE_REQ_RESET, 0, cause);
}

static void i8042_io_read(void *opaque, uint64_t offset, void *data, unsigned len,
			  bool is_cmd_port)
{
	struct i8042_dev *d = opaque;
	uint8_t *p = data;

	if (!len)
		return;
	memset(p, 0xff, len);
	if (offset != 0)
		return;
	pthread_mutex_lock(&d->lock);
	p[0] = is_cmd_port ? i8042_read_status(&d->k) : i8042_read_data(&d->k);
	pthread_mutex_unlock(&d->lock);
}

static void i8042_data_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	i8042_io_read(opaque, offset, data, len, false);
}

static void i8042_cmd_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	i8042_io_read(opaque, offset, data, len, true);
}

static void i8042_data_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	struct i8042_dev *d = opaque;

	if (!len || offset != 0)
		return;
	pthread_mutex_lock(&d->lock);
	i8042_write_data(&d->k, *(const uint8_t *)data);
	pthread_mutex_unlock(&d->lock);
}

static void i8042_cmd_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	struct i8042_dev *d = opaque;
	uint8_t cmd;

	if (!len || offset != 0)
		return;
	cmd = *(const uint8_t *)data;
	pthread_mutex_lock(&d->lock);
	if (!i8042_write_command(&d->k, cmd) && ratelimit_allow(&d->rl))
		log_debug("i8042: ignoring unknown command 0x%02x", cmd);
	pthread_mutex_unlock(&d->lock);
}

static const struct bus_dev_ops i8042_data_ops = {
	.read = i8042_data_read,
	.write = i8042_data_write,
};

static const struct bus_dev_ops i8042_cmd_ops = {
	.read = i8042_cmd_read,
	.write = i8042_cmd_write,
};

static int i8042_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct i8042_dev *d;
	int ret;

	(void)desc;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->ctx = *ctx;
	d->rl = (struct ratelimit)RATELIMIT_INIT(5000, 5);
	i8042_init(&d->k, i8042_dev_reset_request, d);
	ret = -pthread_mutex_init(&d->lock, NULL);
	if (ret)
		goto err_free;
	ret = bus_register(ctx->pio_bus, I8042_DATA_PORT, 1, &i8042_data_ops, d, "i8042-data");
	if (ret)
		goto err_mutex;
	ret = bus_register(ctx->pio_bus, I8042_CMD_PORT, 1, &i8042_cmd_ops, d, "i8042-cmd");
	if (ret)
		goto err_data;
	*state = d;
	return 0;

err_data:
	bus_unregister(ctx->pio_bus, I8042_DATA_PORT);
err_mutex:
	pthread_mutex_destroy(&d->lock);
err_free:
	free(d);
	return ret;
}

static void i8042_dev_reset(void *state)
{
	struct i8042_dev *d = state;

	pthread_mutex_lock(&d->lock);
	i8042_reset(&d->k);
	pthread_mutex_unlock(&d->lock);
}

static void i8042_destroy(void *state)
{
	struct i8042_dev *d = state;

	if (!d)
		return;
	bus_unregister(d->ctx.pio_bus, I8042_CMD_PORT);
	bus_unregister(d->ctx.pio_bus, I8042_DATA_PORT);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* Snapshots: the command byte, a command awaiting its data byte and the
 * output buffer (oldest first). */
static json_t *i8042_save(void *state)
{
	struct i8042_dev *d = state;
	json_t *out = json_array(), *o;

	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; out && i < d->k.out_count; i++)
		json_array_append_new(out, json_integer(d->k.out[(d->k.out_head + i) %
								  I8042_OUT_SIZE]));
	o = json_pack("{s:i, s:b, s:i, s:o, s:i}", "ctr", d->k.ctr, "last_was_cmd",
		      d->k.last_was_cmd, "pending", d->k.pending, "out", out, "last_out",
		      d->k.last_out);
	pthread_mutex_unlock(&d->lock);
	return o;
}

static bool byte_value(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 255;
}

static int i8042_load(void *state, json_t *saved, char *err, size_t errlen)
{
	struct i8042_dev *d = state;
	json_t *out = json_object_get(saved, "out"), *cmd = json_object_get(saved, "last_was_cmd");
	json_t *ctr = json_object_get(saved, "ctr"), *pending = json_object_get(saved, "pending");
	json_t *last = json_object_get(saved, "last_out");

	if (!byte_value(ctr) || !byte_value(pending) || !byte_value(last) ||
	    !json_is_boolean(cmd) || !json_is_array(out) || json_array_size(out) > I8042_OUT_SIZE) {
		snprintf(err, errlen, "ctr, pending, last_out, last_was_cmd or out missing or out of "
			 "range");
		return -EINVAL;
	}
	for (size_t i = 0; i < json_array_size(out); i++) {
		if (!byte_value(json_array_get(out, i))) {
			snprintf(err, errlen, "out[%zu]: expected a byte", i);
			return -EINVAL;
		}
	}
	pthread_mutex_lock(&d->lock);
	d->k.ctr = (uint8_t)json_integer_value(ctr);
	d->k.pending = (uint8_t)json_integer_value(pending);
	d->k.last_out = (uint8_t)json_integer_value(last);
	d->k.last_was_cmd = json_is_true(cmd);
	d->k.out_head = 0;
	d->k.out_count = (unsigned)json_array_size(out);
	for (unsigned i = 0; i < d->k.out_count; i++)
		d->k.out[i] = (uint8_t)json_integer_value(json_array_get(out, i));
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static struct device_desc i8042_desc = {
	.name = "i8042",
	.level = DEVICE_LEVEL_LEGACY,
	.realize = i8042_realize,
	.reset = i8042_dev_reset,
	.save = i8042_save,
	.load = i8042_load,
	.destroy = i8042_destroy,
};
DEVICE_REGISTER(i8042_desc);
