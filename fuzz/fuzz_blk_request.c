/* libFuzzer target: virtio-blk request parsing over fuzzed chains, and the
 * synchronous executor against a small memfd "disk".
 *
 * Input: a 16-byte header, then the guest memory image (see fuzz_virtqueue.c
 * for the ring layout bytes [0..8]).
 *   [9]     bit 0 read-only; bit 1 execute parsed requests on the memfd
 *   [10,11] capacity in sectors (LE16, mod 257)
 *   [12]    seg_max (0 means BLK_SEG_MAX)
 *   [13]    discard/write-zeroes segment limit (mod BLK_DWZ_SEG_MAX + 1)
 *   [14..15] unused */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/virtio/blk/blk.h"
#include "devices/virtio/virtqueue.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "fuzz/fuzz_vq_layout.h"

#define MEM_BASE	0x10000ULL
#define MEM_SIZE	(64U << 10)
#define HDR		16
#define DISK_BYTES	(64U << 10)

static uint8_t mem[MEM_SIZE] __attribute__((aligned(4096)));
static struct vq_chain chain;
static struct blk_req req;
static int disk = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem gm;
	struct virtqueue vq;
	struct blk_geom g;
	size_t img;
	unsigned max_pops;
	bool exec;

	if (size < HDR)
		return 0;
	log_set_level(LOG_ERR);
	if (disk < 0) {
		disk = memfd_create("fuzz-disk", MFD_CLOEXEC);
		if (disk < 0)
			abort();
	}
	img = size - HDR < MEM_SIZE ? size - HDR : MEM_SIZE;
	memcpy(mem, data + HDR, img);
	memset(mem + img, 0, MEM_SIZE - img);
	memset(&gm, 0, sizeof(gm));
	if (gm_add_region(&gm, MEM_BASE, MEM_SIZE, mem))
		abort();

	max_pops = fuzz_vq_setup(&vq, &gm, MEM_BASE, data);
	if (!max_pops)
		return 0;

	memset(&g, 0, sizeof(g));
	g.readonly = data[9] & 1;
	exec = data[9] & 2;
	g.capacity = (data[10] | (uint32_t)data[11] << 8) % 257;
	memcpy(g.serial, "fuzz-serial", 11);
	g.seg_max = data[12] ? data[12] : BLK_SEG_MAX;
	g.size_max = BLK_SIZE_MAX;
	g.dwz_seg_max = data[13] % (BLK_DWZ_SEG_MAX + 1);
	g.dwz_sectors_max = BLK_DWZ_SECTORS_MAX;
	g.wz_sectors_max = BLK_WZ_SECTORS_MAX;
	if (exec && ftruncate(disk, DISK_BYTES))
		abort();

	for (unsigned i = 0; i < max_pops; i++) {
		int ret = virtqueue_pop(&vq, &chain);
		uint64_t total = 0;

		if (ret <= 0)
			break;
		ret = blk_parse_request(&g, &chain, &req);
		if (ret < 0) {
			if (chain.nr_in)
				abort();	/* only a chain with no writable byte is refused */
			virtqueue_push(&vq, chain.head, 0);
			continue;
		}
		if (ret == 0) {
			/* Whatever the parser accepted must be in range and well formed. */
			switch (req.op) {
			case BLK_OP_READ:
			case BLK_OP_WRITE:
				for (unsigned s = 0; s < req.niov; s++) {
					if (!req.iov[s].iov_len || req.iov[s].iov_len > g.size_max)
						abort();
					total += req.iov[s].iov_len;
				}
				if (req.niov > g.seg_max || total != req.len || req.len % 512 ||
				    req.off % 512 || req.off + req.len > g.capacity * 512 ||
				    (req.op == BLK_OP_WRITE && g.readonly))
					abort();
				break;
			case BLK_OP_DISCARD:
			case BLK_OP_WRITE_ZEROES:
				if (g.readonly || !req.nranges || req.nranges > g.dwz_seg_max)
					abort();
				for (unsigned r = 0; r < req.nranges; r++)
					if (req.ranges[r].off + req.ranges[r].len > g.capacity * 512)
						abort();
				break;
			case BLK_OP_FLUSH:
				break;
			default:
				abort();
			}
			req.io_iov = req.iov;
			req.io_niov = req.niov;
			req.status = VIRTIO_BLK_S_OK;
			if (exec && blk_exec_sync(disk, &req))
				req.status = VIRTIO_BLK_S_IOERR;
		}
		virtqueue_push(&vq, chain.head, blk_req_finish(&req));
	}
	(void)virtqueue_should_notify(&vq);
	return 0;
}
