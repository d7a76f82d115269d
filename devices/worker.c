/* A device worker thread (see worker.h): one epoll with the device's fds
 * and two reserved eventfds, stop and pause.
 *
 * Handlers live in a slot table; an fd's epoll data is its slot and the
 * slot's generation, so an event still queued for an fd that a handler
 * just removed (or whose slot was reused) is recognised and dropped. */
#include "devices/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"

#define TAG_STOP	UINT64_MAX
#define TAG_PAUSE	(UINT64_MAX - 1)
#define EVENTS_PER_WAIT	16

struct worker_slot {
	int fd;			/* -1: free */
	uint32_t gen;
	dev_worker_fn fn;
	void *opaque;
};

struct dev_worker {
	char name[16];
	const struct dev_worker_ops *ops;
	void *opaque;
	int epfd, stop_fd, pause_fd;

	/* Touched before start, by the worker, or while it is parked. */
	struct worker_slot *slots;
	unsigned nr_slots;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running;		/* a thread was created and not yet joined */
	bool stopping;		/* dev_worker_stop() is joining it */
	bool stop_req;
	bool exited;		/* the loop has ended */
	bool paused;		/* the thread is parked */
	unsigned pause_count;	/* dev_worker_pause() calls not yet resumed */
};

static uint64_t slot_tag(const struct dev_worker *w, unsigned i)
{
	return (uint64_t)w->slots[i].gen << 32 | i;
}

int dev_worker_create(struct dev_worker **out, const char *name,
		      const struct dev_worker_ops *ops, void *opaque)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct dev_worker *w;
	int ret;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	snprintf(w->name, sizeof(w->name), "%s", name ? name : "dev-worker");
	w->ops = ops;
	w->opaque = opaque;
	w->stop_fd = w->pause_fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		goto err_errno;
	w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->pause_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->stop_fd < 0 || w->pause_fd < 0)
		goto err_errno;
	ev.data.u64 = TAG_STOP;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stop_fd, &ev))
		goto err_errno;
	ev.data.u64 = TAG_PAUSE;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->pause_fd, &ev))
		goto err_errno;
	*out = w;
	return 0;

err_errno:
	ret = -errno;
	dev_worker_destroy(w);
	return ret;
}

int dev_worker_add_fd(struct dev_worker *w, int fd, uint32_t events, dev_worker_fn fn,
		      void *opaque)
{
	struct epoll_event ev;
	unsigned i;

	if (fd < 0 || !fn)
		return -EINVAL;
	for (i = 0; i < w->nr_slots; i++)
		if (w->slots[i].fd < 0)
			break;
	if (i == w->nr_slots) {
		unsigned n = w->nr_slots ? 2 * w->nr_slots : 4;
		struct worker_slot *s = realloc(w->slots, n * sizeof(*s));

		if (!s)
			return -ENOMEM;
		for (unsigned j = w->nr_slots; j < n; j++)
			s[j] = (struct worker_slot){ .fd = -1 };
		w->slots = s;
		w->nr_slots = n;
	}
	w->slots[i].gen++;
	ev = (struct epoll_event){ .events = events ? events : EPOLLIN,
				   .data.u64 = slot_tag(w, i) };
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	w->slots[i].fd = fd;
	w->slots[i].fn = fn;
	w->slots[i].opaque = opaque;
	return 0;
}

int dev_worker_del_fd(struct dev_worker *w, int fd)
{
	for (unsigned i = 0; i < w->nr_slots; i++) {
		if (w->slots[i].fd != fd)
			continue;
		w->slots[i].fd = -1;
		w->slots[i].gen++;	/* events already fetched for it are dropped */
		return epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) ? -errno : 0;
	}
	return -ENOENT;
}

static void dispatch(struct dev_worker *w, const struct epoll_event *ev)
{
	unsigned i = (uint32_t)ev->data.u64;
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
	struct worker_slot *s;

	if (i >= w->nr_slots)
		return;
	s = &w->slots[i];
	if (s->fd < 0 || s->gen != gen)
		return;	/* removed by an earlier handler of this batch */
	s->fn(s->opaque, ev->events);
}

/* A pause was asked for (or may have been): quiesce and park until the
 * last resume. Returns false when a stop came instead. */
static bool park(struct dev_worker *w)
{
	eventfd_t v;
	bool stop;

	(void)eventfd_read(w->pause_fd, &v);
	pthread_mutex_lock(&w->lock);
	if (!w->pause_count || w->stop_req) {
		stop = w->stop_req;
		pthread_mutex_unlock(&w->lock);
		return !stop;	/* a pause already resumed */
	}
	pthread_mutex_unlock(&w->lock);
	if (w->ops && w->ops->quiesce)
		w->ops->quiesce(w->opaque, false);
	pthread_mutex_lock(&w->lock);
	if (w->pause_count && !w->stop_req) {
		w->paused = true;
		pthread_cond_broadcast(&w->cond);
		while (w->pause_count && !w->stop_req)
			pthread_cond_wait(&w->cond, &w->lock);
		w->paused = false;
	}
	stop = w->stop_req;
	pthread_mutex_unlock(&w->lock);
	if (stop)
		return false;
	if (w->ops && w->ops->resumed)
		w->ops->resumed(w->opaque);
	return true;
}

static void *worker_main(void *arg)
{
	struct dev_worker *w = arg;
	struct epoll_event ev[EVENTS_PER_WAIT];
	bool parked_at_start;

	pthread_setname_np(pthread_self(), w->name);
	/* Pauses taken before the start: park before serving anything. */
	pthread_mutex_lock(&w->lock);
	parked_at_start = w->pause_count > 0;
	pthread_mutex_unlock(&w->lock);
	if (parked_at_start && !park(w))
		goto out;
	for (;;) {
		int n = epoll_wait(w->epfd, ev, EVENTS_PER_WAIT, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("%s: epoll_wait: %s", w->name, strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == TAG_STOP)
				goto out;
			if (ev[i].data.u64 == TAG_PAUSE) {
				if (!park(w))
					goto out;
				/* The rest of this batch may be stale: wait again. */
				break;
			}
			dispatch(w, &ev[i]);
		}
	}
out:
	if (w->ops && w->ops->quiesce)
		w->ops->quiesce(w->opaque, true);
	pthread_mutex_lock(&w->lock);
	w->exited = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int dev_worker_start(struct dev_worker *w)
{
	eventfd_t v;
	int ret;

	pthread_mutex_lock(&w->lock);
	if (w->running) {
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	(void)eventfd_read(w->stop_fd, &v);
	w->stop_req = w->exited = w->paused = false;
	ret = pthread_create(&w->thread, NULL, worker_main, w);
	if (ret) {
		pthread_mutex_unlock(&w->lock);
		return -ret;
	}
	__atomic_store_n(&w->running, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

bool dev_worker_is_self(const struct dev_worker *w)
{
	/* The thread's own view of running is stable; other threads only
	 * compare against a thread id that cannot be theirs. */
	return w && __atomic_load_n(&w->running, __ATOMIC_ACQUIRE) &&
	       pthread_equal(pthread_self(), w->thread);
}

void dev_worker_pause(struct dev_worker *w)
{
	bool self = dev_worker_is_self(w);

	pthread_mutex_lock(&w->lock);
	if (w->pause_count++ == 0 && w->running && eventfd_write(w->pause_fd, 1) < 0)
		log_err("%s: pause: %s", w->name, strerror(errno));
	/* From a handler the thread parks when it returns to its loop. */
	while (w->running && !self && !w->paused && !w->exited)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

void dev_worker_resume(struct dev_worker *w)
{
	pthread_mutex_lock(&w->lock);
	if (w->pause_count && --w->pause_count == 0)
		pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void dev_worker_stop(struct dev_worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	if (!w->running || w->stopping) {
		pthread_mutex_unlock(&w->lock);
		return;
	}
	if (pthread_equal(pthread_self(), w->thread)) {
		pthread_mutex_unlock(&w->lock);
		log_err("%s: a worker cannot stop itself", w->name);
		return;
	}
	w->stopping = true;
	w->stop_req = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (eventfd_write(w->stop_fd, 1) < 0)
		log_err("%s: stop: %s", w->name, strerror(errno));
	pthread_join(w->thread, NULL);
	pthread_mutex_lock(&w->lock);
	__atomic_store_n(&w->running, false, __ATOMIC_RELEASE);
	w->stopping = false;
	pthread_mutex_unlock(&w->lock);
}

void dev_worker_destroy(struct dev_worker *w)
{
	if (!w)
		return;
	dev_worker_stop(w);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->pause_fd >= 0)
		close(w->pause_fd);
	free(w->slots);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}
