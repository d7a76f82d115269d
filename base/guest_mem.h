/* Guest physical memory: the only module that turns a guest-physical
 * address into a host pointer. Every access names the whole range
 * [gpa, gpa+len) and is checked for overflow and containment. */
#ifndef EMBER_GUEST_MEM_H
#define EMBER_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define GM_MAX_REGIONS 8

/* The 32-bit hole for PCI/MMIO, LAPIC and IOAPIC. RAM above it starts at 4G. */
#define GM_MMIO_HOLE_START 0xC0000000ULL
#define GM_MMIO_HOLE_END   0x100000000ULL

struct gm_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	uint64_t fd_offset;	/* offset of this region in the memfd */
	uint64_t *dirty;	/* device-write bitmap, a bit per page (atomic); NULL: never logged */
};

struct guest_mem {
	struct gm_region regions[GM_MAX_REGIONS];
	unsigned nr;
	uint64_t ram_size;	/* total bytes of RAM */
	int memfd;		/* -1 when regions were added by hand (tests) */
	void *map;
	size_t map_size;
	bool hugepages;
	int dirty_logging;	/* atomic: device writes mark pages dirty */
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
 * len == 0 is rejected. A device that writes through it calls
 * guest_mem_mark_dirty() for what it wrote. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
bool gm_range_valid(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Copy to/from guest memory. The range may span adjacent regions but every
 * byte must be backed. Return 0 or -EFAULT. Writes mark pages dirty while
 * dirty logging is on. */
int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len);
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len);
int gm_fill(const struct guest_mem *gm, uint64_t gpa, int byte, size_t len);

/* ---- Dirty logging of device writes (for migration) ----
 *
 * The one place where device writes to guest memory mark pages dirty. Off
 * by default. guest_mem_dirty_log_start() gives every region a bitmap (one
 * bit per GM_DIRTY_PAGE_SIZE page, cleared); from then on gm_write(),
 * gm_fill() and gm_zero_all() mark the pages they write, and so must every
 * device that writes through a gm_ptr() pointer, with
 * guest_mem_mark_dirty() after the write. guest_mem_dirty_log_fetch()
 * returns and clears a region's bits (one atomic exchange per word, so
 * marks made meanwhile are never lost). Bitmaps stay allocated until
 * gm_destroy(), so all of this is safe while devices run. vCPU writes are
 * KVM's dirty log (KVM_GET_DIRTY_LOG per memslot, one per region). */
#define GM_DIRTY_PAGE_SHIFT 12
#define GM_DIRTY_PAGE_SIZE  (1ULL << GM_DIRTY_PAGE_SHIFT)

/* 0 or -ENOMEM. Starting again clears the bitmaps. */
int guest_mem_dirty_log_start(struct guest_mem *gm) __attribute__((warn_unused_result));
void guest_mem_dirty_log_stop(struct guest_mem *gm);
bool guest_mem_dirty_logging(const struct guest_mem *gm);
/* Mark the pages of [gpa, gpa+len) that lie in RAM (a no-op while not
 * logging). Thread-safe, lock-free. */
void guest_mem_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* The same by host address, for devices holding gm_ptr() pointers or the
 * iovecs built from them: marks the part of [hva, hva+len) that lies in
 * guest RAM. The iov form marks the first `len` bytes of the vector
 * (what a device reports as written into a chain's writable part). */
void guest_mem_mark_dirty_hva(const struct guest_mem *gm, const void *hva, size_t len);
void guest_mem_mark_dirty_iov(const struct guest_mem *gm, const struct iovec *iov, unsigned n,
			      size_t len);
/* Words of bitmap that region `region` needs. */
size_t guest_mem_dirty_log_words(const struct guest_mem *gm, unsigned region);
/* Copy region `region`'s bits (bit i: the page at gpa + i pages) into
 * bitmap, nwords of them, and clear them. Returns the number of dirty
 * pages, -ENOENT for no such region, -EINVAL when nwords is too small,
 * -ENODATA when logging was never started. */
long guest_mem_dirty_log_fetch(const struct guest_mem *gm, unsigned region, uint64_t *bitmap,
			       size_t nwords);

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
