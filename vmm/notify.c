#include "vmm/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

int notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t salen;
	size_t len;
	ssize_t n;
	int fd, r = 1;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if (path[0] != '/' && path[0] != '@')
		return -EAFNOSUPPORT;	/* e.g. vsock:, not supported */
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@') {
		sa.sun_path[0] = '\0';	/* abstract namespace: no trailing NUL */
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do {
		n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
			   (struct sockaddr *)&sa, salen);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		r = -errno;
	close(fd);
	return r;
}

int notify_ready(void)
{
	return notify_send("READY=1");
}

int notify_stopping(void)
{
	return notify_send("STOPPING=1");
}

int notify_watchdog(void)
{
	return notify_send("WATCHDOG=1");
}

int notify_status(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "STATUS=");
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One status line; a newline would start a new assignment. */
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return notify_send(buf);
}

int notify_extend_timeout(uint64_t usec)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
	return notify_send(buf);
}

uint64_t notify_watchdog_usec(void)
{
	const char *pid = getenv("WATCHDOG_PID");
	uint64_t usec, p;

	if (parse_u64(getenv("WATCHDOG_USEC"), &usec) < 0 || usec == 0)
		return 0;
	if (pid && *pid) {
		if (parse_u64(pid, &p) < 0 || p != (uint64_t)getpid())
			return 0;
	}
	return usec;
}

int notify_watchdog_timerfd(void)
{
	uint64_t half = notify_watchdog_usec() / 2;
	struct itimerspec its;
	int fd;

	if (!half)
		return -ENOENT;
	its.it_interval.tv_sec = (time_t)(half / 1000000);
	its.it_interval.tv_nsec = (long)(half % 1000000) * 1000;
	its.it_value = its.it_interval;
	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (timerfd_settime(fd, 0, &its, NULL) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

void notify_watchdog_timer_fired(int fd)
{
	uint64_t expirations;

	while (read(fd, &expirations, sizeof(expirations)) < 0 && errno == EINTR)
		;
	notify_watchdog();
}

int notify_listen_fd(void)
{
	uint64_t pid, n;
	int fd = NOTIFY_LISTEN_FDS_START;

	if (parse_u64(getenv("LISTEN_PID"), &pid) < 0 || pid != (uint64_t)getpid())
		return -1;
	if (parse_u64(getenv("LISTEN_FDS"), &n) < 0 || n == 0)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n > 1)
		log_warn("socket activation passed %llu fds; using fd %d only",
			 (unsigned long long)n, fd);
	for (uint64_t i = 0; i < n && i < 1024; i++)
		fcntl(fd + (int)i, F_SETFD, FD_CLOEXEC);
	return fd;
}
