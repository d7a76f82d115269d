/* Logging: one line per message to stderr, with an optional syslog <N>
 * prefix when running under journald (JOURNAL_STREAM set). */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR = 3, LOG_WARN = 4, LOG_INFO = 6, LOG_DEBUG = 7 };

void log_init(void);
void log_set_level(enum log_level level);
/* How many LOG_ERR lines have been printed so far. */
unsigned log_error_count(void);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Allows `burst` messages per `interval_ms`; the rest are counted and
 * summarised once the window reopens. Not thread-safe by design: callers
 * hold their own lock or accept an occasional extra line. */
struct ratelimit {
	uint64_t window_start_ms;
	unsigned interval_ms;
	unsigned burst;
	unsigned printed;
	unsigned suppressed;
};

#define RATELIMIT_INIT(ms, n) { .interval_ms = (ms), .burst = (n) }
bool ratelimit_allow(struct ratelimit *rl);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t monotonic_ms(void);

/* The one-line error idiom of functions that take (char *err, size_t
 * errlen): format the reason into err and return ret (a -errno). */
int errf(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
