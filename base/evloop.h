/* The main thread's epoll loop: stdin for the console, the VM request
 * eventfd, and later the control socket. Callbacks run on the main thread. */
#ifndef EMBER_EVLOOP_H
#define EMBER_EVLOOP_H

#include <stdint.h>

struct evloop;
typedef void (*evloop_cb)(void *opaque, uint32_t events);

struct evloop *evloop_create(void);
void evloop_destroy(struct evloop *loop);
/* events are EPOLLIN / EPOLLOUT etc. One registration per fd. */
int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_cb cb, void *opaque)
	__attribute__((warn_unused_result));
int evloop_mod(struct evloop *loop, int fd, uint32_t events);
int evloop_del(struct evloop *loop, int fd);
/* Wait up to timeout_ms (-1 forever) and dispatch; returns events handled or -errno. */
int evloop_run_once(struct evloop *loop, int timeout_ms);

#endif
