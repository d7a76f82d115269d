/* libFuzzer target: the virtio-blk device state machine (devices/virtio/blk.c)
 * with its I/O thread and the threads backend on a temporary image, driven
 * through the mock driver queue of the unit tests (tests/unit/helpers/mock_vq):
 * requests with fuzzed headers, segment counts, lengths and directions,
 * direct or indirect, kicks, pauses, resets and re-activation in between,
 * hostile status writes, config-space reads.
 *
 * Input: [0] driver features (bit 0 EVENT_IDX, bit 1 INDIRECT_DESC,
 * bit 2 FLUSH, bit 3 DISCARD, bit 4 WRITE_ZEROES, bit 5 readonly image),
 * then 8-byte operations:
 *   [0] op % 8: 0-2 queue a request, 3 kick, 4 pause+resume, 5 reset and
 *       bring up again, 6 raw status write, 7 config read
 *   [1] request type (index into a table, or raw when >= 0x80)
 *   [2] sector (low byte, scaled) / status value / config offset
 *   [3] bits 0-2 data segments (0-5), bit 3 indirect, bit 4 short header,
 *       bit 5 no status byte, bit 6 status merged into last data segment
 *   [4..5] data segment length (LE16, bounded)
 *   [6] direction bits per segment (1 = device-writable)
 *   [7] sector (high bits) */
#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio/blk/blk.h"
#include "devices/virtio/virtio.h"
#include "helpers/mock_vq.h"
#include "base/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM_BASE	0x100000ULL
#define MEM_SIZE	(1ULL << 20)
#define DISK_SIZE	(256ULL << 10)
#define QSIZE		16
#define MAX_OPS		64

static struct mock_mem mem;
static struct mock_vq mq;
static char path[2][64];
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

static void cleanup(void)
{
	unlink(path[0]);
	unlink(path[1]);
}

static void setup(void)
{
	if (path[0][0])
		return;
	log_set_level(LOG_ERR);
	for (int i = 0; i < 2; i++) {
		int fd;

		strcpy(path[i], "/tmp/ember-fuzz-blk-XXXXXX");
		fd = mkstemp(path[i]);
		if (fd < 0 || ftruncate(fd, DISK_SIZE))
			abort();
		close(fd);
	}
	atexit(cleanup);
	mock_mem_init(&mem, MEM_BASE, MEM_SIZE);
}

/* The bump allocator, wrapping back past the ring when full: reusing a
 * buffer still in flight is what a hostile driver does anyway. */
static uint64_t alloc(uint64_t len, uint64_t align)
{
	uint64_t gpa = (mem.next + align - 1) & ~(align - 1);

	if (gpa > mem.base + mem.size || len > mem.base + mem.size - gpa)
		mem.next = ring_end;
	return mock_mem_alloc(&mem, len, align);
}

static void ring_reset(void)
{
	memset(mem.buf, 0, mem.size);
	mem.next = mem.base;
	mock_vq_init(&mq, &mem, QSIZE);
	ring_end = mem.next;
}

static void bring_up(struct virtio_device *dev, uint64_t want)
{
	ring_reset();
	(void)mock_virtio_bring_up(dev, &mq, want);
}

static void queue_request(struct virtio_device *dev, const uint8_t *op)
{
	static const uint32_t types[] = {
		VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
		VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_GET_LIFETIME,
		VIRTIO_BLK_T_SECURE_ERASE,
	};
	struct mock_buf bufs[8];
	struct {
		uint32_t type, ioprio;
		uint64_t sector;
	} h;
	unsigned n = 0, nseg = (op[3] & 7) % 6;
	uint32_t seglen = (op[4] | (uint32_t)op[5] << 8) % 9000;
	uint64_t gpa;

	if (!(virtio_dev_get_status(dev) & VIRTIO_STATUS_DRIVER_OK))
		return;
	h.type = htole32(op[1] & 0x80 ? op[1] : types[op[1] % 8]);
	h.ioprio = 0;
	h.sector = htole64(((uint64_t)op[7] << 8 | op[2]) * (op[7] & 0x80 ? 0x100000 : 1) %
			   (op[7] & 0x40 ? ~0ULL : 1024));
	gpa = alloc(sizeof(h), 16);
	mock_mem_write(&mem, gpa, &h, sizeof(h));
	bufs[n++] = (struct mock_buf){ gpa, op[3] & 0x10 ? op[4] % 16 : 16, false };
	for (unsigned i = 0; i < nseg; i++) {
		bool w = (op[6] >> i) & 1;
		uint32_t len = i == 0 && (h.type == htole32(VIRTIO_BLK_T_DISCARD) ||
					  h.type == htole32(VIRTIO_BLK_T_WRITE_ZEROES)) ?
				       16 * (1 + op[5] % 3) : seglen;

		gpa = alloc(len ? len : 1, 512);
		if (!w && len >= 16 && i == 0) {
			/* A plausible discard / write-zeroes range. */
			uint64_t s = htole64(op[2]);
			uint32_t ns = htole32(op[6] | 1), fl = htole32(op[7] & 1);

			mock_mem_write(&mem, gpa, &s, 8);
			mock_mem_write(&mem, gpa + 8, &ns, 4);
			mock_mem_write(&mem, gpa + 12, &fl, 4);
		}
		bufs[n++] = (struct mock_buf){ gpa, len, w };
	}
	if (op[3] & 0x40 && n > 1 && bufs[n - 1].write) {
		bufs[n - 1].len++;	/* status in the last data buffer */
	} else if (!(op[3] & 0x20)) {
		gpa = alloc(1, 1);
		*(uint8_t *)mock_mem_ptr(&mem, gpa, 1) = 0xEE;
		bufs[n++] = (struct mock_buf){ gpa, 1, true };
	}
	if (op[3] & 8)
		mock_vq_add_indirect(&mq, bufs, n);
	else
		mock_vq_add_chain(&mq, bufs, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtio_device *dev;
	struct blk_dev *blk = NULL;
	struct blk_opts o;
	char opts[160], err[256];
	uint64_t want;
	unsigned ops = 0;

	if (size < 1)
		return 0;
	setup();
	want = VIRTIO_BIT(VIRTIO_F_VERSION_1);
	if (data[0] & 1)
		want |= VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
	if (data[0] & 2)
		want |= VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
	if (data[0] & 4)
		want |= VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
	if (data[0] & 8)
		want |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD);
	if (data[0] & 16)
		want |= VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	snprintf(opts, sizeof(opts), "path=%s,aio=threads,serial=fuzz%s", path[data[0] >> 7],
		 data[0] & 32 ? ",readonly=on" : "");
	if (blk_parse_opts(opts, &o, err, sizeof(err)))
		abort();
	ring_reset();
	if (blk_create(&blk, &o, &mem.gm))
		abort();
	dev = blk_virtio(blk);
	dev->notify_used = nop_used;
	dev->notify_config = nop_config;
	if (blk_start(blk))
		abort();
	bring_up(dev, want);

	for (size_t i = 1; i + 8 <= size && ops < MAX_OPS; i += 8, ops++) {
		const uint8_t *op = data + i;

		switch (op[0] % 8) {
		case 0: case 1: case 2:
			queue_request(dev, op);
			break;
		case 3:
			virtio_dev_queue_notify(dev, 0);
			break;
		case 4:
			blk_pause(blk);
			blk_resume(blk);
			break;
		case 5:
			(void)virtio_dev_set_status(dev, 0);
			bring_up(dev, want);
			break;
		case 6:
			(void)virtio_dev_set_status(dev, op[2]);
			break;
		case 7: {
			uint8_t cfg[8];

			virtio_dev_config_read(dev, op[2] % 64, cfg, 1u << (op[1] % 4));
			break;
		}
		}
	}
	/* Let the last kick be seen before the teardown drains. */
	virtio_dev_queue_notify(dev, 0);
	blk_destroy(blk);
	return 0;
}
