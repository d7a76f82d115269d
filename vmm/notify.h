/* systemd integration without libsystemd: the sd_notify datagram protocol
 * (NOTIFY_SOCKET), the service watchdog (WATCHDOG_USEC / WATCHDOG_PID) and
 * socket activation (LISTEN_FDS / LISTEN_PID). Everything is a no-op when
 * not running under systemd. */
#ifndef EMBER_NOTIFY_H
#define EMBER_NOTIFY_H

#include <stdint.h>

/* The first socket-activated fd. */
#define NOTIFY_LISTEN_FDS_START 3

/* Send a raw state string ("READY=1", "STATUS=...\nX=Y", ...) to
 * $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace).
 * Returns 1 if sent, 0 if NOTIFY_SOCKET is unset, or -errno. */
int notify_send(const char *state);
int notify_ready(void);		/* READY=1 */
int notify_stopping(void);	/* STOPPING=1 */
int notify_watchdog(void);	/* WATCHDOG=1 */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ask the service manager for more time (EXTEND_TIMEOUT_USEC), e.g. while
 * a guest shuts down. */
int notify_extend_timeout(uint64_t usec);

/* The watchdog interval in microseconds when systemd expects keep-alives
 * from this process (WATCHDOG_USEC set, WATCHDOG_PID unset or ours), else 0. */
uint64_t notify_watchdog_usec(void);

/* A CLOCK_MONOTONIC timerfd (non-blocking, close-on-exec) that fires every
 * half watchdog interval; add it to the evloop with EPOLLIN and call
 * notify_watchdog_timer_fired() from the callback. Returns the fd, -ENOENT
 * when no watchdog is configured, or -errno. */
int notify_watchdog_timerfd(void);
/* Drains the timerfd and sends WATCHDOG=1. */
void notify_watchdog_timer_fired(int fd);

/* Socket activation: when LISTEN_PID is our pid and LISTEN_FDS >= 1, return
 * the first fd (3), marked close-on-exec, and unset LISTEN_PID, LISTEN_FDS
 * and LISTEN_FDNAMES so children don't inherit them. Otherwise -1. Extra
 * fds beyond the first are ignored (a warning is logged). */
int notify_listen_fd(void);

#endif
