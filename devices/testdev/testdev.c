/* The test device (--test-device): an MMIO sink in a coalesced zone that
 * checks writes arrive complete and in order, plus status registers that
 * are ordinary MMIO exits. Test guests use it; no real guest sees it. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/bus.h"
#include "base/log.h"
#include "devices/device.h"
#include "vmm/config.h"

#define TESTDEV_BASE		0xD0000000ULL
#define TESTDEV_SIZE		0x200
#define TESTDEV_COALESCED_SIZE	0x100	/* [base, base+0x100) is coalesced */
#define TESTDEV_SINK		0x000
#define TESTDEV_RECEIVED	0x100
#define TESTDEV_OUT_OF_ORDER	0x104
#define TESTDEV_RESET		0x108

struct testdev {
	struct bus *mmio_bus;
	pthread_mutex_t lock;
	uint32_t received;
	uint32_t out_of_order;
};

static void testdev_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct testdev *t = opaque;
	uint32_t v = 0xffffffff;

	pthread_mutex_lock(&t->lock);
	if (off == TESTDEV_RECEIVED)
		v = t->received;
	else if (off == TESTDEV_OUT_OF_ORDER)
		v = t->out_of_order;
	pthread_mutex_unlock(&t->lock);
	memset(data, 0xff, len);
	memcpy(data, &v, len < 4 ? len : 4);
}

static void testdev_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct testdev *t = opaque;
	uint32_t v = 0;

	memcpy(&v, data, len < 4 ? len : 4);
	pthread_mutex_lock(&t->lock);
	if (off == TESTDEV_SINK && len == 4) {
		if (v != t->received)
			t->out_of_order++;
		t->received++;
	} else if (off == TESTDEV_RESET) {
		t->received = 0;
		t->out_of_order = 0;
	}
	pthread_mutex_unlock(&t->lock);
}

static const struct bus_dev_ops testdev_ops = {
	.read = testdev_read,
	.write = testdev_write,
};

static int testdev_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct testdev *t;
	int ret;

	(void)desc;
	*state = NULL;
	if (!ctx->cfg->test_device)
		return 0;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->mmio_bus = ctx->mmio_bus;
	pthread_mutex_init(&t->lock, NULL);
	ret = bus_register(ctx->mmio_bus, TESTDEV_BASE, TESTDEV_SIZE, &testdev_ops, t, "testdev");
	if (ret)
		goto err_free;
	ret = device_coalesced_zone(ctx, TESTDEV_BASE, TESTDEV_COALESCED_SIZE, false, true);
	if (ret) {
		log_err("testdev: cannot register coalesced MMIO zone: %s", strerror(-ret));
		goto err_unregister;
	}
	*state = t;
	return 0;

err_unregister:
	bus_unregister(ctx->mmio_bus, TESTDEV_BASE);
err_free:
	free(t);
	return ret;
}

static void testdev_reset(void *state)
{
	struct testdev *t = state;

	pthread_mutex_lock(&t->lock);
	t->received = 0;
	t->out_of_order = 0;
	pthread_mutex_unlock(&t->lock);
}

static void testdev_destroy(void *state)
{
	struct testdev *t = state;

	if (!t)
		return;
	bus_unregister(t->mmio_bus, TESTDEV_BASE);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct device_desc testdev_desc = {
	.name = "testdev",
	.level = DEVICE_LEVEL_LATE,
	.realize = testdev_realize,
	.reset = testdev_reset,
	.destroy = testdev_destroy,
};
DEVICE_REGISTER(testdev_desc);
