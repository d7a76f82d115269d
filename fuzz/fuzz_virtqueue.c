/* libFuzzer target: the split-virtqueue chain walker over a fuzzed guest
 * memory image and queue layout.
 *
 * Input: a 16-byte header, then the guest memory image.
 *   [0]     log2 of the queue size (mod 9: 1..256 entries)
 *   [1]     bit 0 EVENT_IDX, bit 1 INDIRECT_DESC negotiated
 *   [2..7]  desc / avail / used ring offsets into the image (LE16)
 *   [8]     most chains to pop
 *   [9..15] unused
 * The image is copied into a 64 KiB region at MEM_BASE, followed by an
 * adjacent 4 KiB region, so buffers can straddle region boundaries and the
 * end of memory. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtqueue.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "fuzz/fuzz_vq_layout.h"

#define MEM_BASE	0x10000ULL
#define MEM_SIZE	(64U << 10)
#define MEM2_SIZE	(4U << 10)
#define HDR		16

static uint8_t mem1[MEM_SIZE] __attribute__((aligned(4096)));
static uint8_t mem2[MEM2_SIZE] __attribute__((aligned(4096)));
static uint8_t scratch[1 << 16];
static struct vq_chain chain;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem gm;
	struct virtqueue vq;
	size_t img;
	unsigned max_pops;

	if (size < HDR)
		return 0;
	log_set_level(LOG_ERR);
	img = size - HDR < MEM_SIZE ? size - HDR : MEM_SIZE;
	memcpy(mem1, data + HDR, img);
	memset(mem1 + img, 0, MEM_SIZE - img);
	memset(mem2, 0, sizeof(mem2));
	memset(&gm, 0, sizeof(gm));
	if (gm_add_region(&gm, MEM_BASE, MEM_SIZE, mem1) ||
	    gm_add_region(&gm, MEM_BASE + MEM_SIZE, MEM2_SIZE, mem2))
		abort();

	max_pops = fuzz_vq_setup(&vq, &gm, MEM_BASE, data);
	if (!max_pops)
		return 0;

	for (unsigned i = 0; i < max_pops; i++) {
		int ret = virtqueue_pop(&vq, &chain);
		size_t got, put;

		if (ret <= 0) {
			if (ret < 0 && virtqueue_pop(&vq, &chain) != ret)
				abort();	/* a broken queue must stay broken */
			break;
		}
		if (chain.nr_out + chain.nr_in > VQ_CHAIN_MAX_SEGS || chain.head >= vq.size)
			abort();
		got = vq_reader_read(&chain, scratch, sizeof(scratch));
		if (got != (chain.out_len < sizeof(scratch) ? chain.out_len : sizeof(scratch)))
			abort();
		put = vq_writer_write(&chain, scratch, got < chain.in_len ? got : chain.in_len);
		if (vq_writer_remaining(&chain) + put != chain.in_len)
			abort();
		if (chain.in_len && !vq_chain_last_writable(&chain))
			abort();
		virtqueue_push(&vq, chain.head, (uint32_t)vq_writer_written(&chain));
		if (i % 4 == 3)
			(void)virtqueue_should_notify(&vq);
	}
	(void)virtqueue_should_notify(&vq);
	virtqueue_disable_notify(&vq);
	(void)virtqueue_enable_notify(&vq);
	return 0;
}
