/* libFuzzer target: draining KVM's coalesced MMIO/PIO ring, whose page the
 * guest's accesses fill and whose indexes a hostile or buggy kernel side
 * could leave anywhere. coalesced_ring_drain() must end, never read outside
 * the page, hand out lengths of at most 8 bytes, and leave ring->first in
 * range.
 *
 * Input: [0..1] ring capacity (LE16, 1 .. what fits in the page), then the
 * ring page itself (first, last, entries). */
#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vcpu.h"

#define PAGE 4096

static uint8_t page[PAGE] __attribute__((aligned(PAGE)));
static unsigned calls;
static volatile uint8_t sink;

static void on_write(void *opaque, bool pio, uint64_t addr, const void *data, unsigned len)
{
	(void)opaque;
	(void)pio;
	(void)addr;
	if (!len || len > 8)
		abort();
	for (unsigned i = 0; i < len; i++)
		sink ^= ((const uint8_t *)data)[i];
	calls++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvm_coalesced_mmio_ring *ring = (struct kvm_coalesced_mmio_ring *)page;
	const uint32_t fit = (PAGE - sizeof(*ring)) / sizeof(struct kvm_coalesced_mmio);
	uint32_t max;
	unsigned n;

	if (size < 2)
		return 0;
	max = (data[0] | (uint32_t)data[1] << 8) % fit + 1;
	memset(page, 0, sizeof(page));
	memcpy(page, data + 2, size - 2 < PAGE ? size - 2 : PAGE);
	calls = 0;
	for (int round = 0; round < 3; round++) {
		n = coalesced_ring_drain(ring, max, on_write, NULL);
		if (n >= max || ring->first >= max)
			abort();
	}
	return 0;
}
