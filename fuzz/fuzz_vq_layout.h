/* Shared by the virtqueue fuzzers: lay a queue out in fuzzed guest memory
 * from the first 9 input bytes (size, features, ring offsets, pop budget). */
#ifndef EMBER_FUZZ_VQ_LAYOUT_H
#define EMBER_FUZZ_VQ_LAYOUT_H

#include <stdint.h>

#include "devices/virtio/virtqueue.h"

/* Returns the number of pops to attempt, or 0 when the layout is invalid. */
static inline unsigned fuzz_vq_setup(struct virtqueue *vq, const struct guest_mem *gm,
				     uint64_t mem_base, const uint8_t *data)
{
	virtqueue_init(vq, gm, 256);
	vq->size = (uint16_t)(1U << (data[0] % 9));
	vq->event_idx = data[1] & 1;
	vq->indirect = data[1] & 2;
	vq->desc_gpa = mem_base + (data[2] | (uint32_t)data[3] << 8);
	vq->avail_gpa = mem_base + (data[4] | (uint32_t)data[5] << 8);
	vq->used_gpa = mem_base + (data[6] | (uint32_t)data[7] << 8);
	vq->enabled = true;
	if (virtqueue_validate(vq))
		return 0;
	return data[8] ? data[8] : 1;
}

#endif
