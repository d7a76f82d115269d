#include "base/evloop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct evloop_entry {
	int fd;
	bool dead;		/* deleted during a dispatch round */
	evloop_cb cb;
	void *opaque;
	struct evloop_entry *next;
};

struct evloop {
	int epfd;
	struct evloop_entry *entries;
	/* Entries deleted while dispatching: freed when the round ends, so an
	 * event already fetched for them is recognised as stale. */
	struct evloop_entry *graveyard;
	bool dispatching;
};

struct evloop *evloop_create(void)
{
	struct evloop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		free(loop);
		return NULL;
	}
	return loop;
}

void evloop_destroy(struct evloop *loop)
{
	struct evloop_entry *e, *n;

	if (!loop)
		return;
	for (e = loop->entries; e; e = n) {
		n = e->next;
		free(e);
	}
	close(loop->epfd);
	free(loop);
}

int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_cb cb, void *opaque)
{
	struct evloop_entry *e = calloc(1, sizeof(*e));
	struct epoll_event ev = { .events = events };

	if (!e)
		return -ENOMEM;
	e->fd = fd;
	e->cb = cb;
	e->opaque = opaque;
	ev.data.ptr = e;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int ret = -errno;

		free(e);
		return ret;
	}
	e->next = loop->entries;
	loop->entries = e;
	return 0;
}

static struct evloop_entry *evloop_find(struct evloop *loop, int fd, struct evloop_entry ***link)
{
	struct evloop_entry **pp;

	for (pp = &loop->entries; *pp; pp = &(*pp)->next) {
		if ((*pp)->fd == fd) {
			if (link)
				*link = pp;
			return *pp;
		}
	}
	return NULL;
}

int evloop_mod(struct evloop *loop, int fd, uint32_t events)
{
	struct evloop_entry *e = evloop_find(loop, fd, NULL);
	struct epoll_event ev = { .events = events };

	if (!e)
		return -ENOENT;
	ev.data.ptr = e;
	return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int evloop_del(struct evloop *loop, int fd)
{
	struct evloop_entry **link, *e = evloop_find(loop, fd, &link);

	if (!e)
		return -ENOENT;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	*link = e->next;
	if (loop->dispatching) {
		e->dead = true;
		e->next = loop->graveyard;
		loop->graveyard = e;
	} else {
		free(e);
	}
	return 0;
}

int evloop_run_once(struct evloop *loop, int timeout_ms)
{
	struct epoll_event evs[32];
	int n;

	n = epoll_wait(loop->epfd, evs, 32, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	loop->dispatching = true;
	for (int i = 0; i < n; i++) {
		struct evloop_entry *e = evs[i].data.ptr;

		/* A callback earlier in this round may have removed this entry. */
		if (!e->dead)
			e->cb(e->opaque, evs[i].events);
	}
	loop->dispatching = false;
	while (loop->graveyard) {
		struct evloop_entry *e = loop->graveyard;

		loop->graveyard = e->next;
		free(e);
	}
	return n;
}
