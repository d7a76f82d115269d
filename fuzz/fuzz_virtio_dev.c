/* libFuzzer target: the virtio-console and virtio-rng device logic driven
 * as a hostile driver would: status writes in any order (including resets
 * with chains outstanding), queue layouts anywhere in guest memory, kicks,
 * config-space accesses, host input, and VM pause/resume, over a fuzzed
 * guest memory image.
 *
 * Input: a 48-byte header, then the guest memory image (64 KiB at MEM_BASE).
 *   [0]      bit 0: 0 virtio-console, 1 virtio-rng; bits 1-7: backend room
 *            (console: bytes io->write takes per call, 0 = all)
 *   [1]      driver features (low byte; EVENT_IDX and INDIRECT_DESC come
 *            from bits 4 and 5, shifted to 28/29)
 *   [2..15]  queue 0 and 1: log2 size, desc/avail/used offsets (LE16)
 *   [16..47] operations, two bytes each: op, argument */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/console/console.h"
#include "devices/virtio/rng/rng.h"
#include "devices/virtio/virtio.h"
#include "base/guest_mem.h"
#include "base/log.h"

#define MEM_BASE	0x10000ULL
#define MEM_SIZE	(64U << 10)
#define HDR		48

static uint8_t mem[MEM_SIZE] __attribute__((aligned(4096)));
static size_t room;
static uint64_t out_total;

static size_t sink(void *opaque, const void *buf, size_t len)
{
	(void)opaque;
	/* Touch every byte: ASan checks the device handed us valid memory. */
	for (size_t i = 0; i < len; i++)
		out_total += ((const uint8_t *)buf)[i];
	return room && len > room ? room : len;
}

static void nop_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
}

static void nop_config(struct virtio_device *d)
{
	(void)d;
}

static void attach(struct virtio_device *dev, unsigned q, const uint8_t *h)
{
	struct virtqueue *vq = virtio_dev_queue(dev, q);

	if (!vq)
		return;
	vq->size = (uint16_t)(1U << (h[0] % 8));
	vq->desc_gpa = MEM_BASE + (h[1] | (uint32_t)h[2] << 8);
	vq->avail_gpa = MEM_BASE + (h[3] | (uint32_t)h[4] << 8);
	vq->used_gpa = MEM_BASE + (h[5] | (uint32_t)h[6] << 8);
	vq->enabled = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct virtio_console_io io = { .write = sink };
	struct virtio_console *cons = NULL;
	struct virtio_rng *rng = NULL;
	struct virtio_device *dev;
	struct guest_mem gm;
	bool is_rng;
	unsigned nq, paused = 0;
	uint64_t feat;
	size_t img;

	if (size < HDR)
		return 0;
	log_set_level(LOG_ERR);
	img = size - HDR < MEM_SIZE ? size - HDR : MEM_SIZE;
	memcpy(mem, data + HDR, img);
	memset(mem + img, 0, MEM_SIZE - img);
	memset(&gm, 0, sizeof(gm));
	if (gm_add_region(&gm, MEM_BASE, MEM_SIZE, mem))
		return 0;
	is_rng = data[0] & 1;
	room = data[0] >> 1;
	if (is_rng ? virtio_rng_create(&rng, &gm) : virtio_console_create(&cons, &gm, &io))
		return 0;
	dev = is_rng ? virtio_rng_virtio(rng) : virtio_console_virtio(cons);
	dev->notify_used = nop_used;
	dev->notify_config = nop_config;
	nq = is_rng ? 1 : 2;
	feat = (data[1] & 0x0f) | (uint64_t)((data[1] >> 4) & 3) << 28 | 1ULL << 32;

	for (unsigned i = 16; i + 1 < HDR; i += 2) {
		uint8_t op = data[i], arg = data[i + 1];
		uint32_t v = arg;
		uint8_t st;

		switch (op % 10) {
		case 0:	/* a driver brings the device up */
			virtio_dev_set_status(dev, 0);
			virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE);
			virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
			virtio_dev_set_driver_features(dev, virtio_dev_host_features(dev) & feat);
			st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
			virtio_dev_set_status(dev, st);
			for (unsigned q = 0; q < nq; q++)
				attach(dev, q, data + 2 + 7 * q);
			virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK);
			break;
		case 1:
			virtio_dev_set_status(dev, arg);
			break;
		case 2:
		case 3:
			virtio_dev_queue_notify(dev, arg % 2);
			for (unsigned k = 0; k < 64; k++)
				if (!(is_rng ? virtio_rng_kick(rng) : virtio_console_kick(cons, arg % 2)))
					break;
			break;
		case 4:
			if (!is_rng)
				virtio_console_input(cons, mem + arg * 16, arg * 16u);
			break;
		case 5:
			paused++;
			if (is_rng)
				virtio_rng_pause(rng);
			else
				virtio_console_pause(cons);
			break;
		case 6:
			if (!paused)
				break;
			paused--;
			if (is_rng)
				virtio_rng_resume(rng);
			else
				virtio_console_resume(cons);
			break;
		case 7:
			virtio_dev_config_write(dev, arg % 16, &v, 1 + (arg >> 6));
			break;
		case 8:
			virtio_dev_config_read(dev, arg % 16, &v, 1 + (arg >> 6));
			break;
		case 9:	/* queue registers written at any time */
			attach(dev, arg % 2, data + 2 + 7 * (arg % 2));
			break;
		}
	}
	if (is_rng)
		virtio_rng_destroy(rng);
	else
		virtio_console_destroy(cons);
	return 0;
}
