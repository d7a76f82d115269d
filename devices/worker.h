/* A device worker thread: one epoll, the fds a device registers on it, and
 * stop and pause requests. virtio-blk, virtio-net and virtio-balloon run
 * their queues on one each instead of keeping copies of the same loop.
 *
 * Handlers run on the worker thread only, so state they alone touch needs
 * no lock. Pause is synchronous and nests: dev_worker_pause() returns once
 * the thread has called ops->quiesce(opaque, false) and parked; the thread
 * runs again after the matching number of dev_worker_resume() calls, and
 * then calls ops->resumed(opaque) (e.g. to look at kicks that came while
 * parked: the kick eventfds still hold them). dev_worker_stop() calls
 * ops->quiesce(opaque, true) on the thread and joins it. */
#ifndef EMBER_DEVICE_WORKER_H
#define EMBER_DEVICE_WORKER_H

#include <stdbool.h>
#include <stdint.h>

struct dev_worker;

typedef void (*dev_worker_fn)(void *opaque, uint32_t events);

struct dev_worker_ops {
	/* On the worker thread: finish what is in flight (final: the thread
	 * ends; fail what cannot finish). Optional. */
	void (*quiesce)(void *opaque, bool final);
	/* On the worker thread after the last resume. Optional. */
	void (*resumed)(void *opaque);
};

/* name: the thread's name (15 chars kept). Returns 0 or -errno. */
int dev_worker_create(struct dev_worker **out, const char *name,
		      const struct dev_worker_ops *ops, void *opaque)
	__attribute__((warn_unused_result));
/* Watch fd for EPOLLIN (or `events`); before start or from the worker. */
int dev_worker_add_fd(struct dev_worker *w, int fd, uint32_t events, dev_worker_fn fn,
		      void *opaque) __attribute__((warn_unused_result));
int dev_worker_del_fd(struct dev_worker *w, int fd);
int dev_worker_start(struct dev_worker *w) __attribute__((warn_unused_result));
void dev_worker_pause(struct dev_worker *w);
void dev_worker_resume(struct dev_worker *w);
void dev_worker_stop(struct dev_worker *w);	/* idempotent */
/* Stops it first if running. NULL is fine. */
void dev_worker_destroy(struct dev_worker *w);
/* True on the worker's own thread. */
bool dev_worker_is_self(const struct dev_worker *w);

#endif
