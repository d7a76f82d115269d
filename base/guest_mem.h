/* Guest physical memory: the only module that turns a guest-physical
 * address into a host pointer. Every access names the whole range
 * [gpa, gpa+len) and is checked for overflow and containment. */
#ifndef EMBER_GUEST_MEM_H
#define EMBER_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GM_MAX_REGIONS 8

/* The 32-bit hole for PCI/MMIO, LAPIC and IOAPIC. RAM above it starts at 4G. */
#define GM_MMIO_HOLE_START 0xC0000000ULL
#define GM_MMIO_HOLE_END   0x100000000ULL

struct gm_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	uint64_t fd_offset;	/* offset of this region in the memfd */
};

struct guest_mem {
	struct gm_region regions[GM_MAX_REGIONS];
	unsigned nr;
	uint64_t ram_size;	/* total bytes of RAM */
	int memfd;		/* -1 when regions were added by hand (tests) */
	void *map;
	size_t map_size;
	bool hugepages;
};

/* Allocate `ram_size` bytes in a memfd (MAP_SHARED) and lay it out around
 * the MMIO hole. */
int gm_init(struct guest_mem *gm, uint64_t ram_size, bool hugepages)
	__attribute__((warn_unused_result));
void gm_destroy(struct guest_mem *gm);

/* Add a region backed by caller memory (unit tests, fuzzers). Regions must
 * be added in ascending order and must not overlap. */
int gm_add_region(struct guest_mem *gm, uint64_t gpa, uint64_t size, void *hva)
	__attribute__((warn_unused_result));

/* Host pointer for [gpa, gpa+len) if it lies wholly in one region, else NULL.
 * len == 0 is rejected. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
bool gm_range_valid(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Copy to/from guest memory. The range may span adjacent regions but every
 * byte must be backed. Return 0 or -EFAULT. */
int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len);
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len);
int gm_fill(const struct guest_mem *gm, uint64_t gpa, int byte, size_t len);

/* Top of RAM below the hole, and end of all RAM (as a guest address). */
uint64_t gm_low_ram_end(const struct guest_mem *gm);
uint64_t gm_ram_end(const struct guest_mem *gm);

/* Zero all RAM cheaply (hole punch on the memfd), used on VM reset. */
int gm_zero_all(struct guest_mem *gm);

/* Give guest RAM back to the host (virtio-balloon inflate, free page
 * reporting). [hva, hva+len) is a host range from gm_ptr() or a virtqueue
 * chain and must lie wholly in one region. The whole backing pages inside it
 * (4 KiB; 2 MiB with hugepages) are punched out of the memfd, so the host
 * frees them and they read as zeros afterwards; partial pages at either end
 * are left alone. Regions added by hand (no memfd) are zeroed instead.
 * Returns the bytes discarded (possibly 0), or -EFAULT / -errno. */
int64_t gm_discard(const struct guest_mem *gm, const void *hva, uint64_t len);

#endif
