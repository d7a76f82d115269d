#include "devices/chardev/chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/config.h"
#include "base/evloop.h"
#include "base/log.h"

struct chardev {
	enum console_kind kind;
	int out_fd;		/* -1: discard */
	bool own_out_fd;

	/* Input (stdio owner only). Everything but `paused` is main-thread. */
	bool has_input;
	bool raw;		/* stdin is our raw terminal: escapes apply */
	bool pollable;		/* stdin works with epoll (not a regular file) */
	bool in_registered;
	bool in_eof;
	bool escaped;
	bool paused;		/* atomic: set by the consumer, any thread */
	int wake_efd;		/* resumes input from any thread */
	struct evloop *loop;

	int out_dead;		/* atomic: output failed, drop from now on */

	/* Non-blocking output (chardev_write_nb): a private O_NONBLOCK file
	 * description of the output, a bounded buffer in front of it, and an
	 * edge-triggered EPOLLOUT watch on the loop that drains it. */
	pthread_mutex_t out_lock;
	int nb_fd;		/* -1: no non-blocking path, out_fd is used */
	bool own_nb_fd;
	bool nb_watched;	/* on the loop */
	uint8_t *obuf;
	size_t ohead, olen;
	bool want_writable;	/* a caller was refused: call writable_cb */
	chardev_writable_fn writable_cb;
	void *writable_opaque;

	chardev_input_fn on_input;
	chardev_quit_fn on_quit;
	void *opaque;
};

/* The terminal state to restore. Read from signal handlers, hence the
 * volatile flag written last on save and first on restore. */
static struct termios saved_tio;
static volatile sig_atomic_t tio_saved;
static pthread_mutex_t stdin_lock = PTHREAD_MUTEX_INITIALIZER;
static bool stdin_claimed;

static const int fatal_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGSEGV, SIGABRT };

void chardev_restore_all(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
		tio_saved = 0;
	}
}

static void chardev_fatal_signal(int sig)
{
	chardev_restore_all();
	/* SA_RESETHAND put back the default action and SA_NODEFER lets it be
	 * delivered now. A fault returning here would re-fault anyway. */
	raise(sig);
}

/* Install restore-then-die handlers, but never replace a handler someone
 * else (the VMM's shutdown logic, a sanitizer) already put in place. */
static void install_signal_handlers(void)
{
	for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
		struct sigaction old, sa;

		if (sigaction(fatal_signals[i], NULL, &old) < 0)
			continue;
		if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = chardev_fatal_signal;
		sa.sa_flags = SA_RESETHAND | SA_NODEFER;
		sigemptyset(&sa.sa_mask);
		sigaction(fatal_signals[i], &sa, NULL);
	}
}

static void ignore_sigpipe(void)
{
	struct sigaction old, sa;

	/* A closed stdout pipe must surface as EPIPE, not kill the VMM. */
	if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
	    old.sa_handler == SIG_DFL) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_IGN;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGPIPE, &sa, NULL);
	}
}

/* Like cfmakeraw, but output post-processing stays on (as in QEMU) so
 * host-side messages written with a bare \n still return the carriage. */
static int stdin_make_raw(void)
{
	static bool atexit_done;
	struct termios tio;

	if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return -errno;
	tio = saved_tio;
	tio.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	tio.c_oflag |= OPOST;
	tio.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	tio.c_cflag &= ~(CSIZE | PARENB);
	tio.c_cflag |= CS8;
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;

	install_signal_handlers();
	if (!atexit_done && atexit(chardev_restore_all) == 0)
		atexit_done = true;
	tio_saved = 1;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &tio) < 0) {
		int err = -errno;

		tio_saved = 0;
		return err;
	}
	return 0;
}

size_t chardev_filter_escapes(bool *escaped, const uint8_t *in, size_t len,
			      uint8_t *out, unsigned *events)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		uint8_t c = in[i];

		if (!*escaped) {
			if (c == CHARDEV_ESCAPE_CHAR)
				*escaped = true;
			else
				out[n++] = c;
			continue;
		}
		*escaped = false;
		switch (c) {
		case CHARDEV_ESCAPE_CHAR:
			out[n++] = c;
			break;
		case 'x':
		case 'X':
			*events |= CHARDEV_ESC_QUIT;
			return n;
		case 'h':
		case '?':
			*events |= CHARDEV_ESC_HELP;
			break;
		default:
			break;	/* unknown escapes are swallowed, as in QEMU */
		}
	}
	return n;
}

static void out_failed(struct chardev *chr, int err);

void chardev_write(struct chardev *chr, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	if (!chr || chr->out_fd < 0 || __atomic_load_n(&chr->out_dead, __ATOMIC_RELAXED))
		return;
	while (len) {
		ssize_t n = write(chr->out_fd, p, len);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = chr->out_fd, .events = POLLOUT };

			if (poll(&pfd, 1, -1) >= 0 || errno == EINTR)
				continue;
		}
		out_failed(chr, n < 0 ? errno : 0);
		return;
	}
}

static void out_failed(struct chardev *chr, int err)
{
	if (!__atomic_exchange_n(&chr->out_dead, 1, __ATOMIC_RELAXED))
		log_warn("console output failed (%s); further output is dropped",
			 err ? strerror(err) : "short write");
}

/* One non-blocking write: bytes written, 0 when the reader is full, -1 when
 * the output is dead (reported). */
static ssize_t nb_write(struct chardev *chr, const void *buf, size_t len)
{
	for (;;) {
		ssize_t n = write(chr->nb_fd, buf, len);

		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		out_failed(chr, n < 0 ? errno : 0);
		return -1;
	}
}

/* out_lock held. Write out as much of the buffer as the reader takes. */
static void nb_flush(struct chardev *chr)
{
	while (chr->olen) {
		size_t chunk = CHARDEV_OUT_BUF - chr->ohead;
		ssize_t n;

		if (chunk > chr->olen)
			chunk = chr->olen;
		n = nb_write(chr, chr->obuf + chr->ohead, chunk);
		if (n < 0) {
			chr->olen = 0;
			return;
		}
		if (n == 0)
			return;
		chr->ohead = (chr->ohead + (size_t)n) % CHARDEV_OUT_BUF;
		chr->olen -= (size_t)n;
	}
	chr->ohead = 0;
}

size_t chardev_write_nb(struct chardev *chr, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t done = 0;

	if (!chr || chr->out_fd < 0 || __atomic_load_n(&chr->out_dead, __ATOMIC_RELAXED))
		return len;	/* discarded */
	if (chr->nb_fd < 0) {
		chardev_write(chr, buf, len);
		return len;
	}
	pthread_mutex_lock(&chr->out_lock);
	nb_flush(chr);
	if (!chr->olen && len) {
		ssize_t n = nb_write(chr, p, len);

		done = n < 0 ? len : (size_t)n;
	}
	while (done < len && chr->olen < CHARDEV_OUT_BUF) {
		size_t tail = (chr->ohead + chr->olen) % CHARDEV_OUT_BUF;
		size_t chunk = tail >= chr->ohead ? CHARDEV_OUT_BUF - tail : chr->ohead - tail;

		if (chunk > len - done)
			chunk = len - done;
		memcpy(chr->obuf + tail, p + done, chunk);
		chr->olen += chunk;
		done += chunk;
	}
	if (done < len)
		chr->want_writable = true;
	pthread_mutex_unlock(&chr->out_lock);
	return done;
}

void chardev_set_writable_cb(struct chardev *chr, chardev_writable_fn cb, void *opaque)
{
	if (!chr)
		return;
	pthread_mutex_lock(&chr->out_lock);
	chr->writable_cb = cb;
	chr->writable_opaque = opaque;
	pthread_mutex_unlock(&chr->out_lock);
}

size_t chardev_out_pending(struct chardev *chr)
{
	size_t n;

	if (!chr)
		return 0;
	pthread_mutex_lock(&chr->out_lock);
	n = chr->olen;
	pthread_mutex_unlock(&chr->out_lock);
	return n;
}

/* Main loop: the reader made room. */
static void chardev_out_ready(void *opaque, uint32_t events)
{
	struct chardev *chr = opaque;
	chardev_writable_fn cb = NULL;
	void *cb_opaque = NULL;

	(void)events;
	pthread_mutex_lock(&chr->out_lock);
	nb_flush(chr);
	if (!chr->olen && chr->want_writable) {
		chr->want_writable = false;
		cb = chr->writable_cb;
		cb_opaque = chr->writable_opaque;
	}
	pthread_mutex_unlock(&chr->out_lock);
	if (cb)
		cb(cb_opaque);
}

/* Set up chardev_write_nb() for a loop-driven chardev. Regular files never
 * make a writer wait, so they keep plain writes; pipes, terminals and FIFOs
 * get a private non-blocking description (reopened through /proc for
 * stdout, whose description is shared with other processes). Anything else
 * falls back to blocking writes. */
static void nb_setup(struct chardev *chr, bool own_fd)
{
	struct stat st;
	int fd = -1, ret;
	char path[64];

	if (!chr->loop || chr->out_fd < 0 || fstat(chr->out_fd, &st) < 0 ||
	    S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
		return;
	if (own_fd) {
		int fl = fcntl(chr->out_fd, F_GETFL);

		if (fl < 0 || fcntl(chr->out_fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return;
		fd = chr->out_fd;
	} else {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", chr->out_fd);
		fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return;
	}
	chr->obuf = malloc(CHARDEV_OUT_BUF);
	if (!chr->obuf)
		goto err;
	ret = evloop_add(chr->loop, fd, EPOLLOUT | EPOLLET, chardev_out_ready, chr);
	if (ret < 0)
		goto err;
	chr->nb_fd = fd;
	chr->own_nb_fd = !own_fd;
	chr->nb_watched = true;
	return;
err:
	free(chr->obuf);
	chr->obuf = NULL;
	if (!own_fd)
		close(fd);
}

static void input_unregister(struct chardev *chr)
{
	if (chr->in_registered) {
		evloop_del(chr->loop, STDIN_FILENO);
		chr->in_registered = false;
	}
}

static void input_kick(struct chardev *chr)
{
	uint64_t one = 1;

	/* Only fails with EAGAIN when the counter is saturated: still woken. */
	if (write(chr->wake_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("console: eventfd write: %s", strerror(errno));
}

static void input_stop(struct chardev *chr, const char *why)
{
	log_debug("console: stdin %s; input stopped", why);
	chr->in_eof = true;
	input_unregister(chr);
}

static const char escape_help[] =
	"\n"
	"C-a x    exit\n"
	"C-a C-a  send C-a\n"
	"C-a h    print this help\n";

/* One read of what is available. Returns true when bytes were consumed. */
static bool input_read_once(struct chardev *chr)
{
	uint8_t buf[CHARDEV_READ_MAX], out[CHARDEV_READ_MAX];
	unsigned events = 0;
	ssize_t n;
	size_t m;

	n = read(STDIN_FILENO, buf, sizeof(buf));
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return false;
		input_stop(chr, strerror(errno));
		return false;
	}
	if (n == 0) {
		input_stop(chr, "reached end of file");
		return false;
	}
	if (!chr->raw) {
		chr->on_input(chr->opaque, buf, (size_t)n);
		return true;
	}
	m = chardev_filter_escapes(&chr->escaped, buf, (size_t)n, out, &events);
	if (m)
		chr->on_input(chr->opaque, out, m);
	if (events & CHARDEV_ESC_HELP)
		chardev_write(chr, escape_help, sizeof(escape_help) - 1);
	if (events & CHARDEV_ESC_QUIT) {
		if (chr->on_quit)
			chr->on_quit(chr->opaque);
		input_stop(chr, "closed by C-a x");
	}
	return true;
}

static bool input_paused(const struct chardev *chr)
{
	return __atomic_load_n(&chr->paused, __ATOMIC_ACQUIRE);
}

static void chardev_stdin_ready(void *opaque, uint32_t events)
{
	struct chardev *chr = opaque;

	(void)events;
	if (input_paused(chr)) {
		input_unregister(chr);
		return;
	}
	input_read_once(chr);
}

/* Resume, and the read pump for a stdin epoll cannot watch (a file). */
static void chardev_wake(void *opaque, uint32_t events)
{
	struct chardev *chr = opaque;
	uint64_t v;

	(void)events;
	if (read(chr->wake_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("console: eventfd read: %s", strerror(errno));
	if (chr->in_eof || input_paused(chr))
		return;
	if (chr->pollable) {
		if (!chr->in_registered) {
			int ret = evloop_add(chr->loop, STDIN_FILENO, EPOLLIN,
					     chardev_stdin_ready, chr);

			if (ret < 0)
				input_stop(chr, "could not be watched");
			else
				chr->in_registered = true;
		}
		return;
	}
	if (input_read_once(chr) && !chr->in_eof && !input_paused(chr))
		input_kick(chr);
}

void chardev_pause_input(struct chardev *chr)
{
	if (chr)
		__atomic_store_n(&chr->paused, true, __ATOMIC_RELEASE);
}

void chardev_resume_input(struct chardev *chr)
{
	if (chr && chr->has_input && __atomic_exchange_n(&chr->paused, false, __ATOMIC_ACQ_REL))
		input_kick(chr);
}

bool chardev_has_input(const struct chardev *chr)
{
	return chr && chr->has_input;
}

/* Take stdin for input. Returns 0, or negative errno for a real failure;
 * "no usable input" is not an error. Called with stdin_lock held. */
static int stdin_input_setup(struct chardev *chr)
{
	int ret;

	if (isatty(STDIN_FILENO)) {
		if (tcgetpgrp(STDIN_FILENO) != getpgrp()) {
			/* Reading a terminal from the background would stop us. */
			log_debug("console: stdin is a terminal we do not own; no input");
			return 0;
		}
		ret = stdin_make_raw();
		if (ret < 0) {
			log_warn("console: cannot set raw mode on stdin: %s", strerror(-ret));
			return 0;
		}
		chr->raw = true;
	}

	chr->wake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (chr->wake_efd < 0) {
		ret = -errno;
		goto err_raw;
	}
	ret = evloop_add(chr->loop, chr->wake_efd, EPOLLIN, chardev_wake, chr);
	if (ret < 0)
		goto err_efd;

	ret = evloop_add(chr->loop, STDIN_FILENO, EPOLLIN, chardev_stdin_ready, chr);
	if (ret == 0) {
		chr->pollable = true;
		chr->in_registered = true;
	} else if (ret == -EPERM) {
		/* A regular file or /dev/null: always readable, pumped by the
		 * eventfd so a large file cannot monopolise the main loop. */
		chr->pollable = false;
		input_kick(chr);
	} else {
		goto err_loop;
	}
	chr->has_input = true;
	stdin_claimed = true;
	return 0;

err_loop:
	evloop_del(chr->loop, chr->wake_efd);
err_efd:
	close(chr->wake_efd);
	chr->wake_efd = -1;
err_raw:
	if (chr->raw) {
		chardev_restore_all();
		chr->raw = false;
	}
	return ret;
}

static void chardev_nb_teardown(struct chardev *chr)
{
	if (chr->nb_watched)
		evloop_del(chr->loop, chr->nb_fd);
	chr->nb_watched = false;
	if (chr->olen && chr->nb_fd >= 0) {
		/* Last chance for buffered output, without waiting for a reader. */
		pthread_mutex_lock(&chr->out_lock);
		nb_flush(chr);
		pthread_mutex_unlock(&chr->out_lock);
	}
	if (chr->own_nb_fd)
		close(chr->nb_fd);
	chr->nb_fd = -1;
	free(chr->obuf);
	chr->obuf = NULL;
}

struct chardev *chardev_create(const struct vm_config *cfg, struct evloop *loop,
			       chardev_input_fn on_input, chardev_quit_fn on_quit,
			       void *opaque, int *err)
{
	return chardev_open(cfg->console, cfg->console_path, loop, on_input, on_quit, opaque, err);
}

struct chardev *chardev_open(enum console_kind kind, const char *path, struct evloop *loop,
			     chardev_input_fn on_input, chardev_quit_fn on_quit, void *opaque,
			     int *err)
{
	struct chardev *chr;
	int ret;

	chr = calloc(1, sizeof(*chr));
	if (!chr) {
		ret = -ENOMEM;
		goto err;
	}
	chr->kind = kind;
	chr->out_fd = -1;
	chr->nb_fd = -1;
	pthread_mutex_init(&chr->out_lock, NULL);
	chr->wake_efd = -1;
	chr->loop = loop;
	chr->on_input = on_input;
	chr->on_quit = on_quit;
	chr->opaque = opaque;

	switch (kind) {
	case CONSOLE_NONE:
		break;
	case CONSOLE_FILE:
		if (!path) {
			ret = -EINVAL;
			goto err_free;
		}
		chr->out_fd = open(path,
				   O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOCTTY,
				   0644);
		if (chr->out_fd < 0) {
			ret = -errno;
			log_err("console: cannot open %s: %s", path, strerror(errno));
			goto err_free;
		}
		chr->own_out_fd = true;
		nb_setup(chr, true);
		break;
	case CONSOLE_STDIO:
		chr->out_fd = STDOUT_FILENO;
		ignore_sigpipe();
		nb_setup(chr, false);
		if (!loop || !on_input)
			break;
		pthread_mutex_lock(&stdin_lock);
		ret = stdin_claimed ? 0 : stdin_input_setup(chr);
		pthread_mutex_unlock(&stdin_lock);
		if (ret < 0)
			goto err_free;
		break;
	default:
		ret = -EINVAL;
		goto err_free;
	}
	return chr;

err_free:
	chardev_nb_teardown(chr);
	pthread_mutex_destroy(&chr->out_lock);
	free(chr);
err:
	if (err)
		*err = ret;
	return NULL;
}

void chardev_destroy(struct chardev *chr)
{
	if (!chr)
		return;
	if (chr->has_input) {
		input_unregister(chr);
		evloop_del(chr->loop, chr->wake_efd);
		close(chr->wake_efd);
		pthread_mutex_lock(&stdin_lock);
		if (chr->raw)
			chardev_restore_all();
		stdin_claimed = false;
		pthread_mutex_unlock(&stdin_lock);
	}
	chardev_nb_teardown(chr);
	if (chr->own_out_fd)
		close(chr->out_fd);
	pthread_mutex_destroy(&chr->out_lock);
	free(chr);
}
