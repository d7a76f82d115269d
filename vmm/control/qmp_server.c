/* The QMP server: a listening unix socket and its clients on the main
 * evloop. Sockets are non-blocking; output is buffered per client and
 * written as the peer drains it, so a slow client never blocks the loop.
 * Events may be raised on any thread: they are serialised there, queued,
 * and the main loop is woken through an eventfd.
 *
 * A client is freed only from its own callback (or by destroy). Anything
 * else that needs it gone marks it dead and shuts the socket down, which
 * makes epoll report EPOLLHUP for it on the next iteration. */
#include "vmm/control/qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/evloop.h"
#include "base/log.h"

/* Stop reading a client's commands while this much output is unsent. */
#define QMP_INPUT_PAUSE  (1u << 20)
#define QMP_READ_CHUNK   (64 * 1024)
#define QMP_READS_PER_CB 16
#define QMP_FLUSH_MS     200	/* destroy: time allowed to flush output */
#define QMP_MAX_PASSED_FDS 4	/* fds read per message; one is kept (getfd) */

struct qmp_client {
	struct qmp_server *srv;
	struct qmp_client *prev, *next;
	int fd;
	struct qmp_session *session;
	char *out;
	size_t out_off, out_len, out_cap;
	uint32_t events;
	int64_t connected_ms;	/* CLOCK_MONOTONIC */
	int64_t last_input_ms;
	bool eof;	/* peer shut its write side: flush, then free */
	bool dead;
};

struct qmp_event_item {
	struct qmp_event_item *next;
	size_t len;
	char text[];
};

struct qmp_server {
	struct evloop *loop;
	int listen_fd;
	int spare_fd;		/* released to shed a connection at EMFILE */
	char *path;
	dev_t dev;
	ino_t ino;
	const struct qmp_backend_ops *ops;
	void *backend;
	struct qmp_client *clients;
	unsigned nr_clients;
	struct qmp_limits lim;
	int timer_fd;		/* next handshake deadline */

	int event_fd;
	pthread_mutex_t lock;	/* protects the event queue */
	struct qmp_event_item *ev_head, **ev_tail;
	unsigned ev_count, ev_dropped;
};

static struct ratelimit qmp_rl = RATELIMIT_INIT(5000, 5);

static size_t pending(const struct qmp_client *c)
{
	return c->out_len - c->out_off;
}

static void client_kill(struct qmp_client *c, const char *why)
{
	if (c->dead)
		return;
	if (why && ratelimit_allow(&qmp_rl))
		log_warn("qmp: dropping client fd %d: %s", c->fd, why);
	c->dead = true;
	qmp_session_close(c->session);	/* the rest of its input is not run */
	shutdown(c->fd, SHUT_RDWR);
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = c->out_cap = 0;
}

static void client_update_events(struct qmp_client *c)
{
	uint32_t want = 0;

	if (c->dead)
		return;
	if (!c->eof && pending(c) < QMP_INPUT_PAUSE)
		want |= EPOLLIN;
	if (pending(c))
		want |= EPOLLOUT;
	if (want != c->events && evloop_mod(c->srv->loop, c->fd, want) == 0)
		c->events = want;
}

static void client_flush(struct qmp_client *c)
{
	while (!c->dead && pending(c)) {
		ssize_t n = send(c->fd, c->out + c->out_off, pending(c),
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				client_kill(c, NULL);
			break;
		}
		c->out_off += (size_t)n;
	}
	if (!c->dead && !pending(c)) {
		c->out_off = c->out_len = 0;
		/* Give back what a burst (a big reply, an event storm) grew. */
		if (c->out_cap > 256 * 1024) {
			free(c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
	}
}

static void client_append(struct qmp_client *c, const char *text, size_t len)
{
	if (c->dead)
		return;
	if (pending(c) + len > QMP_MAX_BACKLOG) {
		client_kill(c, "output backlog limit exceeded");
		return;
	}
	if (c->out_len + len > c->out_cap) {
		size_t keep = pending(c), cap = c->out_cap ? c->out_cap : 4096;
		char *b;

		/* Slide the unsent tail to the front before growing. */
		if (c->out_off)
			memmove(c->out, c->out + c->out_off, keep);
		c->out_off = 0;
		c->out_len = keep;
		while (cap < keep + len)
			cap *= 2;
		if (cap != c->out_cap) {
			b = realloc(c->out, cap);
			if (!b) {
				client_kill(c, "out of memory");
				return;
			}
			c->out = b;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, text, len);
	c->out_len += len;
	if (!(c->events & EPOLLOUT))
		client_flush(c);
	client_update_events(c);
}

static void client_send_json(void *opaque, json_t *msg)
{
	struct qmp_client *c = opaque;
	char *text;

	if (c->dead)
		return;
	text = json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!text) {
		client_kill(c, "cannot serialise a reply");
		return;
	}
	/* json_dumps output has no newlines; add the CRLF terminator. */
	{
		size_t n = strlen(text);
		char *t = realloc(text, n + 3);

		if (!t) {
			free(text);
			client_kill(c, "out of memory");
			return;
		}
		memcpy(t + n, "\r\n", 3);
		client_append(c, t, n + 2);
		free(t);
	}
}

/* An unsolicited GenericError, the last thing a client we close hears. */
__attribute__((format(printf, 2, 3)))
static void client_send_error(struct qmp_client *c, const char *fmt, ...)
{
	char desc[160];
	json_t *e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	e = qmp_error_new("GenericError", "%s", desc);
	if (e)
		client_send_json(c, e);
	json_decref(e);
}

static void client_free(struct qmp_client *c)
{
	struct qmp_server *srv = c->srv;

	evloop_del(srv->loop, c->fd);
	close(c->fd);
	qmp_session_destroy(c->session);
	free(c->out);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	__atomic_sub_fetch(&srv->nr_clients, 1, __ATOMIC_RELAXED);
	free(c);
}

/* Fds that came with the input (getfd): the first goes to the session,
 * which keeps it for the next getfd; extras and truncated sets are closed,
 * so a client cannot make Ember leak descriptors. */
static void client_take_fds(struct qmp_client *c, struct msghdr *mh)
{
	bool given = false;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n;
		int fds[QMP_MAX_PASSED_FDS];

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len < CMSG_LEN(sizeof(int)))
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (n > QMP_MAX_PASSED_FDS)
			n = QMP_MAX_PASSED_FDS;
		memcpy(fds, CMSG_DATA(cm), n * sizeof(int));
		for (size_t i = 0; i < n; i++) {
			if (!given && !(mh->msg_flags & MSG_CTRUNC)) {
				qmp_session_give_fd(c->session, fds[i]);
				given = true;
			} else {
				close(fds[i]);
			}
		}
	}
}

static void client_read(struct qmp_client *c)
{
	char buf[QMP_READ_CHUNK];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(QMP_MAX_PASSED_FDS * sizeof(int))];
	} control;
	int i;

	for (i = 0; i < QMP_READS_PER_CB && !c->dead; i++) {
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
		ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n >= 0 && mh.msg_controllen)
			client_take_fds(c, &mh);

		if (n == 0) {
			c->eof = true;
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				c->dead = true;
			return;
		}
		c->last_input_ms = monotonic_ms();
		qmp_session_feed(c->session, buf, (size_t)n, client_send_json, c);
		if (pending(c) >= QMP_INPUT_PAUSE)
			return;
	}
}

static void client_cb(void *opaque, uint32_t events)
{
	struct qmp_client *c = opaque;

	if (!c->dead && (events & EPOLLOUT))
		client_flush(c);
	if (!c->dead && !c->eof && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		client_read(c);
	else if (c->eof && (events & (EPOLLHUP | EPOLLERR)))
		c->dead = true;
	if (c->dead || (c->eof && !pending(c))) {
		client_free(c);
		return;
	}
	client_update_events(c);
}

static void session_event(void *opaque, const char *name, json_t *data)
{
	qmp_server_emit_event(opaque, name, data);
}

/* Say why on a connection we will not serve, then close it. The socket
 * is new and its buffer empty, so the short reply fits without waiting. */
static void refuse(struct qmp_server *srv, int fd)
{
	char msg[160];
	int n;

	if (ratelimit_allow(&qmp_rl))
		log_warn("qmp: too many clients (limit %u), refusing one", srv->lim.max_clients);
	n = snprintf(msg, sizeof(msg),
		     "{\"error\": {\"class\": \"GenericError\", \"desc\": "
		     "\"too many QMP clients (limit %u)\"}}\r\n", srv->lim.max_clients);
	if (n > 0 && send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		n = 0;
	close(fd);
}

/* The server is full: evict the negotiated client that has been idle
 * longest, if that is at least idle_timeout_ms. Clients killed but not
 * yet freed do not count. Returns whether a new client may come in. */
static bool make_room(struct qmp_server *srv)
{
	struct qmp_client *c, *victim = NULL;
	unsigned live = 0;
	int64_t now = monotonic_ms();

	for (c = srv->clients; c; c = c->next) {
		if (c->dead)
			continue;
		live++;
		if (!srv->lim.idle_timeout_ms || !qmp_session_negotiated(c->session) ||
		    now - c->last_input_ms < (int64_t)srv->lim.idle_timeout_ms)
			continue;
		if (!victim || c->last_input_ms < victim->last_input_ms)
			victim = c;
	}
	if (live < srv->lim.max_clients)
		return true;
	if (!victim)
		return false;
	client_send_error(victim, "idle for %lld s; closed to make room for a new client",
			  (long long)((now - victim->last_input_ms) / 1000));
	client_kill(victim, "idle, evicted for a new client");
	return true;
}

static void arm_handshake_timer(struct qmp_server *srv)
{
	struct itimerspec its = { 0 };
	struct qmp_client *c;
	int64_t next = INT64_MAX, now;

	if (srv->timer_fd < 0)
		return;
	if (srv->lim.handshake_timeout_ms)
		for (c = srv->clients; c; c = c->next)
			if (!c->dead && !qmp_session_negotiated(c->session) &&
			    c->connected_ms + srv->lim.handshake_timeout_ms < next)
				next = c->connected_ms + srv->lim.handshake_timeout_ms;
	if (next != INT64_MAX) {
		now = monotonic_ms();
		next = next > now ? next - now : 1;
		its.it_value.tv_sec = next / 1000;
		its.it_value.tv_nsec = (next % 1000) * 1000000;
	}
	if (timerfd_settime(srv->timer_fd, 0, &its, NULL) < 0 && ratelimit_allow(&qmp_rl))
		log_warn("qmp: timerfd_settime: %s", strerror(errno));
}

static void timer_cb(void *opaque, uint32_t events)
{
	struct qmp_server *srv = opaque;
	struct qmp_client *c;
	uint64_t ticks;
	int64_t now = monotonic_ms();

	(void)events;
	while (read(srv->timer_fd, &ticks, sizeof(ticks)) < 0 && errno == EINTR)
		;
	for (c = srv->clients; c; c = c->next) {
		if (c->dead || qmp_session_negotiated(c->session) || !srv->lim.handshake_timeout_ms ||
		    now - c->connected_ms < (int64_t)srv->lim.handshake_timeout_ms)
			continue;
		client_send_error(c, "no qmp_capabilities within %u ms of connecting",
				  srv->lim.handshake_timeout_ms);
		client_kill(c, "capabilities negotiation timed out");
	}
	arm_handshake_timer(srv);
}

static void accept_cb(void *opaque, uint32_t events)
{
	struct qmp_server *srv = opaque;
	int i;

	(void)events;
	for (i = 0; i < 32; i++) {
		struct qmp_client *c;
		json_t *greeting;
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && srv->spare_fd >= 0) {
				/* Out of fds: the listener would stay readable and
				 * spin the loop. Shed the connection with the spare. */
				close(srv->spare_fd);
				fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0) {
					close(fd);
					if (ratelimit_allow(&qmp_rl))
						log_warn("qmp: out of file descriptors; refusing a client");
				}
				srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				/* accept() fails EMFILE even with nobody waiting. */
				if (fd < 0)
					return;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK && ratelimit_allow(&qmp_rl))
				log_warn("qmp: accept: %s", strerror(errno));
			return;
		}
		if (srv->nr_clients >= srv->lim.max_clients && !make_room(srv)) {
			refuse(srv, fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c)
			c->session = qmp_session_create(srv->ops, srv->backend,
							session_event, srv);
		if (!c || !c->session) {
			free(c);
			close(fd);
			continue;
		}
		c->srv = srv;
		c->fd = fd;
		c->events = EPOLLIN;
		c->connected_ms = c->last_input_ms = monotonic_ms();
		if (evloop_add(srv->loop, fd, EPOLLIN, client_cb, c) < 0) {
			qmp_session_destroy(c->session);
			free(c);
			close(fd);
			continue;
		}
		c->next = srv->clients;
		if (c->next)
			c->next->prev = c;
		srv->clients = c;
		__atomic_add_fetch(&srv->nr_clients, 1, __ATOMIC_RELAXED);
		log_debug("qmp: client connected (fd %d, %u clients)", fd, srv->nr_clients);

		greeting = qmp_greeting();
		client_send_json(c, greeting);
		json_decref(greeting);
		/* A failed greeting leaves c dead; its EPOLLHUP frees it. */
		if (!c->dead)
			arm_handshake_timer(srv);
	}
}

static struct qmp_event_item *take_events(struct qmp_server *srv, unsigned *dropped)
{
	struct qmp_event_item *list;

	pthread_mutex_lock(&srv->lock);
	list = srv->ev_head;
	srv->ev_head = NULL;
	srv->ev_tail = &srv->ev_head;
	srv->ev_count = 0;
	*dropped = srv->ev_dropped;
	srv->ev_dropped = 0;
	pthread_mutex_unlock(&srv->lock);
	return list;
}

static void deliver_events(struct qmp_server *srv)
{
	unsigned dropped;
	struct qmp_event_item *it = take_events(srv, &dropped), *next;
	struct qmp_client *c;

	if (dropped && ratelimit_allow(&qmp_rl))
		log_warn("qmp: %u events dropped (queue full)", dropped);
	for (; it; it = next) {
		next = it->next;
		for (c = srv->clients; c; c = c->next)
			if (!c->dead && qmp_session_negotiated(c->session))
				client_append(c, it->text, it->len);
		free(it);
	}
}

static void event_cb(void *opaque, uint32_t events)
{
	struct qmp_server *srv = opaque;
	uint64_t v;

	(void)events;
	while (read(srv->event_fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	deliver_events(srv);
}

void qmp_server_emit_event(struct qmp_server *srv, const char *name, json_t *data)
{
	struct qmp_event_item *it;
	json_t *ev;
	char *text;
	size_t n;
	uint64_t one = 1;

	if (!srv) {
		json_decref(data);
		return;
	}
	ev = qmp_event_new(name, data);
	text = ev ? json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(ev);
	if (!text)
		return;
	n = strlen(text);
	it = malloc(sizeof(*it) + n + 3);
	if (!it) {
		free(text);
		return;
	}
	memcpy(it->text, text, n);
	memcpy(it->text + n, "\r\n", 3);
	it->len = n + 2;
	it->next = NULL;
	free(text);

	pthread_mutex_lock(&srv->lock);
	if (srv->ev_count >= QMP_MAX_EVENTS) {
		srv->ev_dropped++;
		free(it);
		it = NULL;
	} else {
		*srv->ev_tail = it;
		srv->ev_tail = &it->next;
		srv->ev_count++;
	}
	pthread_mutex_unlock(&srv->lock);
	if (it && write(srv->event_fd, &one, sizeof(one)) < 0 && errno != EAGAIN &&
	    ratelimit_allow(&qmp_rl))
		log_warn("qmp: eventfd write: %s", strerror(errno));
}

/* Bind a fresh socket at path with mode 0600. A stale socket file (nobody
 * listening) is replaced; a live one or a non-socket is left alone. */
static int listen_path(const char *path, dev_t *dev, ino_t *ino)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);

	if (lstat(path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0)
			return -errno;
		r = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
		close(probe);
		if (r == 0)
			return -EADDRINUSE;
		if (errno != ECONNREFUSED)
			return -errno;
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The file is created with 0777 & ~umask; nobody can connect before
	 * listen() anyway, but don't leave a window with a wider mode. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = -errno;
		goto err;
	}
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
		r = -errno;
		goto err_unlink;
	}
	*dev = st.st_dev;
	*ino = st.st_ino;
	if (listen(fd, 64) < 0) {
		r = -errno;
		goto err_unlink;
	}
	return fd;

err_unlink:
	unlink(path);
err:
	close(fd);
	return r;
}

static int adopt_listener(int fd)
{
	int on = 0, fl;
	socklen_t len = sizeof(on);

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0)
		return -errno;
	if (!on)
		return -EINVAL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return fd;
}

int qmp_server_create(struct qmp_server **out, struct evloop *loop,
		      const char *path, int listen_fd,
		      const struct qmp_backend_ops *ops, void *backend)
{
	struct qmp_server *srv;
	int r;

	*out = NULL;
	if (!loop || (!path && listen_fd < 0))
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->ops = ops;
	srv->backend = backend;
	srv->listen_fd = -1;
	srv->event_fd = -1;
	srv->timer_fd = -1;
	srv->lim = QMP_LIMITS_DEFAULT;
	srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	srv->ev_tail = &srv->ev_head;
	r = -pthread_mutex_init(&srv->lock, NULL);
	if (r < 0) {
		free(srv);
		return r;
	}

	if (path) {
		srv->path = strdup(path);
		if (!srv->path) {
			r = -ENOMEM;
			goto err;
		}
		r = listen_path(path, &srv->dev, &srv->ino);
		if (r < 0) {
			free(srv->path);
			srv->path = NULL;
			goto err;
		}
		srv->listen_fd = r;
	} else {
		r = adopt_listener(listen_fd);
		if (r < 0)
			goto err;
		srv->listen_fd = listen_fd;
	}

	srv->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->event_fd < 0) {
		r = -errno;
		goto err;
	}
	r = evloop_add(loop, srv->listen_fd, EPOLLIN, accept_cb, srv);
	if (r < 0)
		goto err;
	r = evloop_add(loop, srv->event_fd, EPOLLIN, event_cb, srv);
	if (r < 0) {
		evloop_del(loop, srv->listen_fd);
		goto err;
	}
	srv->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (srv->timer_fd < 0) {
		r = -errno;
		goto err_del;
	}
	r = evloop_add(loop, srv->timer_fd, EPOLLIN, timer_cb, srv);
	if (r < 0)
		goto err_del;
	*out = srv;
	return 0;

err_del:
	evloop_del(loop, srv->event_fd);
	evloop_del(loop, srv->listen_fd);
err:
	if (srv->timer_fd >= 0)
		close(srv->timer_fd);
	if (srv->event_fd >= 0)
		close(srv->event_fd);
	/* A socket-activated fd stays the caller's on failure. */
	if (srv->listen_fd >= 0 && srv->path)
		close(srv->listen_fd);
	if (srv->path) {
		unlink(srv->path);
		free(srv->path);
	}
	if (srv->spare_fd >= 0)
		close(srv->spare_fd);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
	return r;
}

/* Give clients a short, bounded chance to read their last replies (the
 * answer to `quit` and the SHUTDOWN event). */
static void flush_all(struct qmp_server *srv)
{
	int64_t deadline = monotonic_ms() + QMP_FLUSH_MS;
	struct pollfd *pfd;
	struct qmp_client *c, **who;

	pfd = calloc(srv->nr_clients + 1, sizeof(*pfd));
	who = calloc(srv->nr_clients + 1, sizeof(*who));
	if (!pfd || !who)
		goto out;
	for (;;) {
		int64_t left = deadline - monotonic_ms();
		unsigned n = 0, i;

		for (c = srv->clients; c; c = c->next) {
			client_flush(c);
			if (!c->dead && pending(c)) {
				pfd[n] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
				who[n++] = c;
			}
		}
		if (!n || left <= 0)
			break;
		if (poll(pfd, n, (int)left) < 0 && errno != EINTR)
			break;
		for (i = 0; i < n; i++)
			if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL))
				client_kill(who[i], NULL);
	}
out:
	free(pfd);
	free(who);
}

void qmp_server_destroy(struct qmp_server *srv)
{
	struct qmp_event_item *it, *next;
	unsigned dropped;
	struct stat st;

	if (!srv)
		return;
	evloop_del(srv->loop, srv->listen_fd);
	evloop_del(srv->loop, srv->event_fd);
	evloop_del(srv->loop, srv->timer_fd);
	close(srv->timer_fd);
	close(srv->listen_fd);
	if (srv->spare_fd >= 0)
		close(srv->spare_fd);
	if (srv->path) {
		/* Only remove the file if it is still ours. */
		if (stat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
		    st.st_ino == srv->ino)
			unlink(srv->path);
		free(srv->path);
	}

	deliver_events(srv);
	flush_all(srv);
	while (srv->clients)
		client_free(srv->clients);

	close(srv->event_fd);
	for (it = take_events(srv, &dropped); it; it = next) {
		next = it->next;
		free(it);
	}
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

int qmp_server_set_limits(struct qmp_server *srv, const struct qmp_limits *lim)
{
	if (!lim->max_clients || lim->max_clients > QMP_LIMIT_CLIENTS_MAX)
		return -EINVAL;
	srv->lim = *lim;
	arm_handshake_timer(srv);
	return 0;
}

unsigned qmp_server_nr_clients(const struct qmp_server *srv)
{
	return srv ? __atomic_load_n(&srv->nr_clients, __ATOMIC_RELAXED) : 0;
}
