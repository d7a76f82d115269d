#include "base/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

int bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	return -pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
	memset(bus, 0, sizeof(*bus));
}

/* Index of the first range whose end is above addr (ranges are sorted). */
static unsigned bus_lower_bound(const struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nr;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];

		if (r->base + (r->len - 1) < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_dev_ops *ops, void *opaque, const char *name)
{
	unsigned idx;
	int ret = 0;

	/* The last byte must not wrap; a range may end exactly at 2^64. */
	if (len == 0 || base + (len - 1) < base || !ops)
		return -EINVAL;

	pthread_rwlock_wrlock(&bus->lock);
	idx = bus_lower_bound(bus, base);
	/* Overlap with the range at idx (which ends above base), if it starts
	 * before our end. */
	if (idx < bus->nr && bus->ranges[idx].base <= base + (len - 1)) {
		ret = -EEXIST;
		goto out;
	}
	if (bus->nr == bus->cap) {
		unsigned cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));

		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[idx + 1], &bus->ranges[idx],
		(bus->nr - idx) * sizeof(bus->ranges[0]));
	bus->ranges[idx] = (struct bus_range){
		.base = base, .len = len, .ops = ops, .opaque = opaque, .name = name,
	};
	bus->nr++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&bus->lock);
	for (unsigned i = 0; i < bus->nr; i++) {
		if (bus->ranges[i].base != base)
			continue;
		memmove(&bus->ranges[i], &bus->ranges[i + 1],
			(bus->nr - i - 1) * sizeof(bus->ranges[0]));
		bus->nr--;
		ret = 0;
		break;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

/* The range wholly containing [addr, addr+len), or NULL. Caller holds lock. */
static struct bus_range *bus_find(struct bus *bus, uint64_t addr, unsigned len)
{
	unsigned idx = bus_lower_bound(bus, addr);
	struct bus_range *r;

	if (idx >= bus->nr || len == 0)
		return NULL;
	r = &bus->ranges[idx];
	if (addr < r->base || addr - r->base >= r->len || len > r->len - (addr - r->base))
		return NULL;
	return r;
}

static struct ratelimit unhandled_rl = RATELIMIT_INIT(5000, 10);

/* The handler is copied out and called after the lock is dropped, so a
 * handler may itself register or unregister ranges on this bus (a PCI
 * config write through ECAM that moves a BAR). */
struct bus_hit {
	const struct bus_dev_ops *ops;
	void *opaque;
	uint64_t off;
};

bool bus_read(struct bus *bus, uint64_t addr, void *data, unsigned len)
{
	struct bus_range *r;
	struct bus_hit h = { 0 };

	pthread_rwlock_rdlock(&bus->lock);
	r = bus_find(bus, addr, len);
	if (r && r->ops->read) {
		__atomic_fetch_add(&r->reads, 1, __ATOMIC_RELAXED);
		h = (struct bus_hit){ r->ops, r->opaque, addr - r->base };
	}
	pthread_rwlock_unlock(&bus->lock);
	if (h.ops) {
		h.ops->read(h.opaque, h.off, data, len);
		return true;
	}
	memset(data, 0xff, len);
	if (!r) {
		__atomic_fetch_add(&bus->unhandled_reads, 1, __ATOMIC_RELAXED);
		if (ratelimit_allow(&unhandled_rl))
			log_debug("%s: unhandled read of %u bytes at 0x%llx", bus->name, len,
				  (unsigned long long)addr);
	}
	return r != NULL;
}

bool bus_write(struct bus *bus, uint64_t addr, const void *data, unsigned len)
{
	struct bus_range *r;
	struct bus_hit h = { 0 };

	pthread_rwlock_rdlock(&bus->lock);
	r = bus_find(bus, addr, len);
	if (r) {
		__atomic_fetch_add(&r->writes, 1, __ATOMIC_RELAXED);
		h = (struct bus_hit){ r->ops, r->opaque, addr - r->base };
	}
	pthread_rwlock_unlock(&bus->lock);
	if (r) {
		if (h.ops->write)
			h.ops->write(h.opaque, h.off, data, len);
		return true;
	}
	__atomic_fetch_add(&bus->unhandled_writes, 1, __ATOMIC_RELAXED);
	if (ratelimit_allow(&unhandled_rl))
		log_debug("%s: unhandled write of %u bytes at 0x%llx", bus->name, len,
			  (unsigned long long)addr);
	return false;
}

void bus_for_each(struct bus *bus, void (*fn)(const struct bus_range *r, void *arg), void *arg)
{
	pthread_rwlock_rdlock(&bus->lock);
	for (unsigned i = 0; i < bus->nr; i++)
		fn(&bus->ranges[i], arg);
	pthread_rwlock_unlock(&bus->lock);
}
