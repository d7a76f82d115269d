/* An address bus (PIO or MMIO): sorted, non-overlapping ranges, looked up
 * by binary search. Handlers receive the offset into their range, never the
 * absolute address. */
#ifndef EMBER_BUS_H
#define EMBER_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct bus_dev_ops {
	void (*read)(void *opaque, uint64_t offset, void *data, unsigned len);
	void (*write)(void *opaque, uint64_t offset, const void *data, unsigned len);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_dev_ops *ops;
	void *opaque;
	const char *name;
	uint64_t reads;
	uint64_t writes;
};

struct bus {
	const char *name;
	pthread_rwlock_t lock;
	struct bus_range *ranges;
	unsigned nr;
	unsigned cap;
	uint64_t unhandled_reads;
	uint64_t unhandled_writes;
};

int bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/* -EINVAL for zero length or base+len overflow, -EEXIST on overlap. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_dev_ops *ops, void *opaque, const char *name)
	__attribute__((warn_unused_result));
int bus_unregister(struct bus *bus, uint64_t base);

/* Dispatch an access. The access must lie wholly inside one range.
 * Unhandled reads fill `data` with all ones; unhandled writes are dropped.
 * Returns true when a device handled the access.
 *
 * The handler runs without the bus lock, so it may register and unregister
 * ranges itself; in exchange an access that found a range just before
 * bus_unregister() may still be running its handler after it returns. Free
 * a range's opaque only when no vCPU can be dispatching (vCPUs parked or
 * gone), as device destruction does. */
bool bus_read(struct bus *bus, uint64_t addr, void *data, unsigned len);
bool bus_write(struct bus *bus, uint64_t addr, const void *data, unsigned len);

/* Iterate ranges under the read lock (for statistics). */
void bus_for_each(struct bus *bus, void (*fn)(const struct bus_range *r, void *arg),
		  void *arg);

#endif
