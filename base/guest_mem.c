#include "base/guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

static int gm_push_region(struct guest_mem *gm, uint64_t gpa, uint64_t size,
			  void *hva, uint64_t fd_offset)
{
	struct gm_region *prev;

	if (size == 0 || gpa + size < gpa || gm->nr >= GM_MAX_REGIONS)
		return -EINVAL;
	if (gm->nr) {
		prev = &gm->regions[gm->nr - 1];
		if (gpa < prev->gpa + prev->size)
			return -EINVAL;	/* out of order or overlapping */
	}
	gm->regions[gm->nr++] = (struct gm_region){
		.gpa = gpa, .size = size, .hva = hva, .fd_offset = fd_offset,
	};
	return 0;
}

int gm_add_region(struct guest_mem *gm, uint64_t gpa, uint64_t size, void *hva)
{
	if (gm->nr == 0)
		gm->memfd = -1;
	int ret = gm_push_region(gm, gpa, size, hva, 0);
	if (!ret)
		gm->ram_size += size;
	return ret;
}

int gm_init(struct guest_mem *gm, uint64_t ram_size, bool hugepages)
{
	uint64_t low, high, align = hugepages ? (2ULL << 20) : 4096;
	unsigned flags = MFD_CLOEXEC;
	int ret;

	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
	if (ram_size < (1ULL << 20) || ram_size % align)
		return -EINVAL;
	if (hugepages)
		flags |= MFD_HUGETLB;

	gm->memfd = memfd_create("ember-guest-ram", flags);
	if (gm->memfd < 0)
		return -errno;
	if (ftruncate(gm->memfd, (off_t)ram_size) < 0) {
		ret = -errno;
		goto err_close;
	}
	/* Hugepages are reserved at mmap time (so a shortage is an error now,
	 * not a SIGBUS later); ordinary RAM is overcommitted like any VMM's. */
	gm->map = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | (hugepages ? 0 : MAP_NORESERVE), gm->memfd, 0);
	if (gm->map == MAP_FAILED) {
		ret = -errno;
		gm->map = NULL;
		goto err_close;
	}
	gm->map_size = ram_size;
	gm->hugepages = hugepages;
	/* Guest RAM is not worth dumping and must not be inherited. */
	madvise(gm->map, ram_size, MADV_DONTDUMP);
	madvise(gm->map, ram_size, MADV_DONTFORK);

	low = ram_size < GM_MMIO_HOLE_START ? ram_size : GM_MMIO_HOLE_START;
	high = ram_size - low;
	ret = gm_push_region(gm, 0, low, gm->map, 0);
	if (!ret && high)
		ret = gm_push_region(gm, GM_MMIO_HOLE_END, high, (uint8_t *)gm->map + low, low);
	if (ret)
		goto err_unmap;
	gm->ram_size = ram_size;
	return 0;

err_unmap:
	munmap(gm->map, ram_size);
	gm->map = NULL;
err_close:
	close(gm->memfd);
	gm->memfd = -1;
	return ret;
}

void gm_destroy(struct guest_mem *gm)
{
	for (unsigned i = 0; i < gm->nr; i++)
		free(gm->regions[i].dirty);
	if (gm->map)
		munmap(gm->map, gm->map_size);
	if (gm->memfd >= 0)
		close(gm->memfd);
	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
}

/* Region containing gpa, by binary search; NULL if none. */
static const struct gm_region *gm_find(const struct guest_mem *gm, uint64_t gpa)
{
	unsigned lo = 0, hi = gm->nr;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct gm_region *r = &gm->regions[mid];

		if (gpa < r->gpa)
			hi = mid;
		else if (gpa - r->gpa >= r->size)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	const struct gm_region *r;
	uint64_t off;

	if (len == 0 || gpa + len < gpa)
		return NULL;
	r = gm_find(gm, gpa);
	if (!r)
		return NULL;
	off = gpa - r->gpa;
	if (len > r->size - off)
		return NULL;
	return r->hva + off;
}

bool gm_range_valid(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	return gm_ptr(gm, gpa, len) != NULL;
}

/* Walk [gpa, gpa+len) region by region; fn gets each host piece. */
static int gm_walk(const struct guest_mem *gm, uint64_t gpa, size_t len,
		   void (*fn)(uint8_t *hva, size_t n, size_t done, void *arg), void *arg)
{
	size_t done = 0;

	if (gpa + len < gpa)
		return -EFAULT;
	while (done < len) {
		const struct gm_region *r = gm_find(gm, gpa + done);
		uint64_t off, n;

		if (!r)
			return -EFAULT;
		off = gpa + done - r->gpa;
		n = r->size - off;
		if (n > len - done)
			n = len - done;
		/* Only test that the rest is backed before touching anything. */
		if (fn)
			fn(r->hva + off, n, done, arg);
		done += n;
	}
	return 0;
}

static void copy_out(uint8_t *hva, size_t n, size_t done, void *arg)
{
	memcpy((uint8_t *)arg + done, hva, n);
}

static void copy_in(uint8_t *hva, size_t n, size_t done, void *arg)
{
	memcpy(hva, (const uint8_t *)arg + done, n);
}

static void fill(uint8_t *hva, size_t n, size_t done, void *arg)
{
	(void)done;
	memset(hva, *(int *)arg, n);
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len)
{
	int ret = gm_walk(gm, gpa, len, NULL, NULL);

	return ret ? ret : gm_walk(gm, gpa, len, copy_out, dst);
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len)
{
	int ret = gm_walk(gm, gpa, len, NULL, NULL);

	if (ret)
		return ret;
	ret = gm_walk(gm, gpa, len, copy_in, (void *)src);
	guest_mem_mark_dirty(gm, gpa, len);
	return ret;
}

int gm_fill(const struct guest_mem *gm, uint64_t gpa, int byte, size_t len)
{
	int ret = gm_walk(gm, gpa, len, NULL, NULL);

	if (ret)
		return ret;
	ret = gm_walk(gm, gpa, len, fill, &byte);
	guest_mem_mark_dirty(gm, gpa, len);
	return ret;
}

uint64_t gm_low_ram_end(const struct guest_mem *gm)
{
	return gm->nr ? gm->regions[0].gpa + gm->regions[0].size : 0;
}

uint64_t gm_ram_end(const struct guest_mem *gm)
{
	const struct gm_region *r;

	if (!gm->nr)
		return 0;
	r = &gm->regions[gm->nr - 1];
	return r->gpa + r->size;
}

/* RAM mapped from a file (a snapshot's memory, MAP_PRIVATE: memfd -1, map
 * ours): zeroing [addr, addr+len) replaces it with fresh anonymous pages,
 * so the host frees the copies and nothing is touched. */
static int remap_zero(const struct guest_mem *gm, void *addr, size_t len)
{
	if (gm->memfd >= 0 || !gm->map ||
	    mmap(addr, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
		return -1;
	madvise(addr, len, MADV_DONTDUMP);
	madvise(addr, len, MADV_DONTFORK);
	return 0;
}

int gm_zero_all(struct guest_mem *gm)
{
	for (unsigned i = 0; i < gm->nr; i++)
		guest_mem_mark_dirty(gm, gm->regions[i].gpa, gm->regions[i].size);
	if (gm->memfd >= 0 &&
	    fallocate(gm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      (off_t)gm->map_size) == 0)
		return 0;
	if (remap_zero(gm, gm->map, gm->map_size) == 0)
		return 0;
	for (unsigned i = 0; i < gm->nr; i++)
		memset(gm->regions[i].hva, 0, gm->regions[i].size);
	return 0;
}

int64_t gm_discard(const struct guest_mem *gm, const void *hva, uint64_t len)
{
	uint64_t page = gm->hugepages ? (2ULL << 20) : 4096;
	uintptr_t p = (uintptr_t)hva;

	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->regions[i];
		uint64_t off, start, end;

		if (p < (uintptr_t)r->hva || p - (uintptr_t)r->hva >= r->size)
			continue;
		off = p - (uintptr_t)r->hva;
		if (len == 0 || len > r->size - off)
			return -EFAULT;
		/* Offsets in the memfd (regions added by hand: in the region). */
		start = (r->fd_offset + off + page - 1) & ~(page - 1);
		end = (r->fd_offset + off + len) & ~(page - 1);
		if (end <= start)
			return 0;
		if (gm->memfd < 0) {
			if (remap_zero(gm, r->hva + (start - r->fd_offset), end - start))
				memset(r->hva + (start - r->fd_offset), 0, end - start);
			return (int64_t)(end - start);
		}
		if (fallocate(gm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)start,
			      (off_t)(end - start)) < 0)
			return -errno;
		return (int64_t)(end - start);
	}
	return -EFAULT;
}

/* ---- Dirty logging ---- */

static uint64_t region_pages(const struct gm_region *r)
{
	return (r->size + GM_DIRTY_PAGE_SIZE - 1) >> GM_DIRTY_PAGE_SHIFT;
}

size_t guest_mem_dirty_log_words(const struct guest_mem *gm, unsigned region)
{
	return region < gm->nr ? (size_t)((region_pages(&gm->regions[region]) + 63) / 64) : 0;
}

int guest_mem_dirty_log_start(struct guest_mem *gm)
{
	for (unsigned i = 0; i < gm->nr; i++) {
		struct gm_region *r = &gm->regions[i];
		size_t words = guest_mem_dirty_log_words(gm, i);
		uint64_t *b = __atomic_load_n(&r->dirty, __ATOMIC_ACQUIRE);

		if (b) {
			for (size_t w = 0; w < words; w++)
				__atomic_store_n(&b[w], 0, __ATOMIC_RELAXED);
			continue;
		}
		b = calloc(words, sizeof(*b));
		if (!b)
			return -ENOMEM;
		__atomic_store_n(&r->dirty, b, __ATOMIC_RELEASE);
	}
	/* Bitmaps first: a writer that sees the flag sees them. */
	__atomic_store_n(&gm->dirty_logging, 1, __ATOMIC_RELEASE);
	return 0;
}

void guest_mem_dirty_log_stop(struct guest_mem *gm)
{
	__atomic_store_n(&gm->dirty_logging, 0, __ATOMIC_RELEASE);
}

bool guest_mem_dirty_logging(const struct guest_mem *gm)
{
	return __atomic_load_n(&gm->dirty_logging, __ATOMIC_ACQUIRE);
}

/* Set bits [first, last] of b. */
static void set_bits(uint64_t *b, uint64_t first, uint64_t last)
{
	while (first <= last) {
		uint64_t w = first / 64, lo = first % 64;
		uint64_t hi = last / 64 == w ? last % 64 : 63;
		uint64_t mask = (hi == 63 ? ~0ULL : (1ULL << (hi + 1)) - 1) & ~((1ULL << lo) - 1);

		__atomic_fetch_or(&b[w], mask, __ATOMIC_RELAXED);
		first = (w + 1) * 64;
	}
}

void guest_mem_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	uint64_t end;

	if (!len || !__atomic_load_n(&gm->dirty_logging, __ATOMIC_ACQUIRE))
		return;
	end = gpa + len - 1 < gpa ? UINT64_MAX : gpa + len - 1;	/* last byte */
	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->regions[i];
		uint64_t *b = __atomic_load_n(&r->dirty, __ATOMIC_ACQUIRE);
		uint64_t last = r->gpa + (r->size - 1), lo, hi;

		if (!b || end < r->gpa || gpa > last)
			continue;
		lo = gpa > r->gpa ? gpa - r->gpa : 0;
		hi = (end < last ? end : last) - r->gpa;
		set_bits(b, lo >> GM_DIRTY_PAGE_SHIFT, hi >> GM_DIRTY_PAGE_SHIFT);
	}
}

void guest_mem_mark_dirty_hva(const struct guest_mem *gm, const void *hva, size_t len)
{
	uintptr_t a = (uintptr_t)hva, end;

	if (!len || !__atomic_load_n(&gm->dirty_logging, __ATOMIC_ACQUIRE))
		return;
	end = a + len - 1 < a ? UINTPTR_MAX : a + len - 1;
	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->regions[i];
		uintptr_t base = (uintptr_t)r->hva, last = base + (r->size - 1), lo, hi;

		if (end < base || a > last)
			continue;
		lo = a > base ? a : base;
		hi = end < last ? end : last;
		guest_mem_mark_dirty(gm, r->gpa + (lo - base), (uint64_t)(hi - lo) + 1);
	}
}

void guest_mem_mark_dirty_iov(const struct guest_mem *gm, const struct iovec *iov, unsigned n,
			      size_t len)
{
	if (!__atomic_load_n(&gm->dirty_logging, __ATOMIC_ACQUIRE))
		return;
	for (unsigned i = 0; i < n && len; i++) {
		size_t k = iov[i].iov_len < len ? iov[i].iov_len : len;

		guest_mem_mark_dirty_hva(gm, iov[i].iov_base, k);
		len -= k;
	}
}

long guest_mem_dirty_log_fetch(const struct guest_mem *gm, unsigned region, uint64_t *bitmap,
			       size_t nwords)
{
	size_t words;
	uint64_t *b;
	long n = 0;

	if (region >= gm->nr)
		return -ENOENT;
	words = guest_mem_dirty_log_words(gm, region);
	if (nwords < words)
		return -EINVAL;
	b = __atomic_load_n(&gm->regions[region].dirty, __ATOMIC_ACQUIRE);
	if (!b)
		return -ENODATA;
	for (size_t w = 0; w < words; w++) {
		bitmap[w] = __atomic_exchange_n(&b[w], 0, __ATOMIC_ACQ_REL);
		n += __builtin_popcountll(bitmap[w]);
	}
	memset(bitmap + words, 0, (nwords - words) * sizeof(*bitmap));
	return n;
}
