/* libFuzzer target: virtio-balloon (devices/virtio/balloon/) on a real memfd
 * (so inflate and free page reports punch holes), driven through the mock
 * driver queue of the unit tests (tests/unit/helpers/mock_vq): PFN arrays
 * of any length and value, stats buffers of any bytes, free page reports
 * over any range (the rings included), kicks to any queue, config writes,
 * targets, queries, pauses, save/load, resets and hostile status writes.
 *
 * Input: [0] bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 STATS_VQ, bit 3
 * REPORTING (driver side), bit 4 deflate-on-oom, bit 5 free-page-reporting
 * (device options); then 8-byte operations:
 *   [0] op % 10: 0 inflate, 1 deflate, 2 stats buffer, 3 free page report,
 *       4 kick queue [1], 5 target, 6 config write, 7 pause (+ save/load)
 *       and resume, 8 query-balloon, 9 reset and bring up / raw status
 *   [1] count / queue / length
 *   [2..5] LE32 first PFN, gpa or value
 *   [6] PFN stride / segment count
 *   [7] flags: bit 0 indirect, bits 1-2 trailing bytes, bit 3 wild PFNs */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/byteorder.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "devices/device.h"
#include "devices/virtio/balloon/balloon.h"
#include "devices/virtio/virtio.h"
#include "helpers/mock_vq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM_SIZE	(2ULL << 20)
#define QSIZE		16
#define MAX_OPS		64
#define MAX_PFNS	300

static struct mock_mem mem;
static struct mock_vq mq[4];
static uint64_t ring_end;

static void nop_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
}

static void nop_config(struct virtio_device *d)
{
	(void)d;
}

static void drop_event(void *machine, const char *name, json_t *data)
{
	(void)machine;
	(void)name;
	json_decref(data);
}

static const struct device_machine_ops machine_ops = { .emit_event = drop_event };

static void setup(void)
{
	if (mem.size)
		return;
	log_set_level(LOG_ERR);
	if (gm_init(&mem.gm, MEM_SIZE, false))
		abort();
	mem.base = 0;
	mem.size = MEM_SIZE;
}

/* The bump allocator, wrapping back past the rings when full. */
static uint64_t alloc(uint64_t len, uint64_t align)
{
	uint64_t gpa = (mem.next + align - 1) & ~(align - 1);

	if (gpa > mem.base + mem.size || len > mem.base + mem.size - gpa)
		mem.next = ring_end;
	return mock_mem_alloc(&mem, len, align);
}

static void bring_up(struct virtio_device *dev, uint64_t want)
{
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	(void)gm_zero_all(&mem.gm);
	mem.next = 0x1000;
	(void)virtio_dev_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE);
	(void)virtio_dev_set_status(dev, st);
	virtio_dev_set_driver_features(dev, want);
	st |= VIRTIO_STATUS_FEATURES_OK;
	(void)virtio_dev_set_status(dev, st);
	for (unsigned q = 0; q < dev->nr_queues && q < 4; q++) {
		mock_vq_init(&mq[q], &mem, QSIZE);
		mock_vq_attach(&mq[q], virtio_dev_queue(dev, q));
	}
	ring_end = mem.next;
	(void)virtio_dev_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK);
}

static bool driver_ok(struct virtio_device *dev)
{
	return virtio_dev_get_status(dev) & VIRTIO_STATUS_DRIVER_OK;
}

static void add(unsigned q, struct mock_buf *bufs, unsigned n, bool indirect)
{
	if (indirect)
		mock_vq_add_indirect(&mq[q], bufs, n);
	else
		mock_vq_add_chain(&mq[q], bufs, n);
}

static void pfn_chain(struct virtio_device *dev, unsigned q, const uint8_t *op)
{
	unsigned n = op[1] % MAX_PFNS + 1;
	uint32_t pfn = rd32(op + 2), stride = op[6];
	struct mock_buf buf;
	uint8_t *p;

	if (!driver_ok(dev))
		return;
	if (!(op[7] & 8))
		pfn %= (uint32_t)(MEM_SIZE >> BALLOON_PAGE_SHIFT);	/* mostly in RAM */
	buf.len = 4 * n + ((op[7] >> 1) & 3);
	buf.gpa = alloc(buf.len, 4);
	buf.write = false;
	p = mock_mem_ptr(&mem, buf.gpa, buf.len);
	for (unsigned i = 0; i < n; i++, pfn += stride)
		wr32(p + 4 * i, pfn);
	add(q, &buf, 1, op[7] & 1);
}

static void stats_buffer(struct virtio_device *dev, const uint8_t *op)
{
	struct mock_buf buf = { .len = op[1] % 200 + 1 };
	uint8_t *p;

	if (!driver_ok(dev) || dev->nr_queues < 3)
		return;
	buf.gpa = alloc(buf.len, 2);
	p = mock_mem_ptr(&mem, buf.gpa, buf.len);
	for (unsigned i = 0; i < buf.len; i++)
		p[i] = i % BALLOON_STAT_SIZE == 0 ? op[2 + i % 4] % 20 : op[2 + i % 6];
	add(2, &buf, 1, op[7] & 1);
}

/* Anywhere in RAM, rings included: a guest may report what it likes. */
static void report(struct virtio_device *dev, const uint8_t *op)
{
	struct mock_buf bufs[4];
	unsigned n = op[6] % 4 + 1, q = dev->nr_queues - 1;

	if (!driver_ok(dev))
		return;
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = (rd32(op + 2) + i * 0x21000ULL) % MEM_SIZE;
		uint64_t len = ((uint64_t)op[1] << 12 | op[7]) + 1;

		if (len > MEM_SIZE - gpa)
			len = MEM_SIZE - gpa;
		bufs[i] = (struct mock_buf){ .gpa = gpa, .len = (uint32_t)len, .write = true };
	}
	add(q, bufs, n, op[7] & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct balloon_options o = { 0 };
	struct device_ctx ctx = { .ops = &machine_ops };
	struct virtio_device *dev;
	unsigned ops = 0;
	uint64_t want;

	if (size < 1)
		return 0;
	setup();
	ctx.mem = &mem.gm;
	o.deflate_on_oom = data[0] & 16;
	o.free_page_reporting = data[0] & 32;
	want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	if (data[0] & 1)
		want |= VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
	if (data[0] & 2)
		want |= VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
	if (data[0] & 4)
		want |= VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ);
	if (data[0] & 8)
		want |= VIRTIO_BIT(VIRTIO_BALLOON_F_REPORTING);
	if (balloon_create(&ctx, &o, &dev))
		abort();
	dev->notify_used = nop_used;
	dev->notify_config = nop_config;
	bring_up(dev, want);

	for (size_t i = 1; i + 8 <= size && ops < MAX_OPS; i += 8, ops++) {
		const uint8_t *op = data + i;

		switch (op[0] % 10) {
		case 0:
		case 1:
			pfn_chain(dev, op[0] % 10, op);
			break;
		case 2:
			stats_buffer(dev, op);
			break;
		case 3:
			report(dev, op);
			break;
		case 4:
			/* What the main loop does after reading the kick eventfd;
			 * a re-kick is served by a later op (or not at all). */
			balloon_kick(dev, op[1] % (dev->nr_queues + 1));
			break;
		case 5:
			(void)balloon_set_target(dev, (uint64_t)rd32(op + 2) << (op[1] % 16));
			break;
		case 6: {
			uint8_t v[4];

			memcpy(v, op + 2, 4);
			virtio_dev_config_write(dev, op[1] % 9, v, op[6] % 5);
			break;
		}
		case 7: {
			char err[128];
			json_t *s;

			balloon_pause(dev);
			if (op[1] & 1) {
				s = balloon_save(dev);
				if (!s || balloon_load(dev, s, err, sizeof(err)))
					abort();
				json_decref(s);
			}
			balloon_resume(dev);
			break;
		}
		case 8:
			json_decref(balloon_query(dev));
			break;
		case 9:
			if (op[1] & 1) {
				(void)virtio_dev_set_status(dev, op[2]);
			} else {
				(void)virtio_dev_set_status(dev, 0);
				bring_up(dev, want);
			}
			break;
		}
	}
	balloon_destroy(dev);
	return 0;
}
