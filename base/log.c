#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static enum log_level log_threshold = LOG_INFO;
static int log_journal;
static unsigned log_errors;

unsigned log_error_count(void)
{
	return __atomic_load_n(&log_errors, __ATOMIC_RELAXED);
}

void log_init(void)
{
	const char *lvl = getenv("EMBER_LOG");

	log_journal = getenv("JOURNAL_STREAM") != NULL;
	if (lvl && lvl[0] == 'd')
		log_threshold = LOG_DEBUG;
	else if (lvl && lvl[0] == 'w')
		log_threshold = LOG_WARN;
}

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = 0;

	if (level == LOG_ERR)
		__atomic_add_fetch(&log_errors, 1, __ATOMIC_RELAXED);
	if (level > log_threshold)
		return;
	if (log_journal)
		n = snprintf(buf, sizeof(buf), "<%d>", (int)level);
	n += snprintf(buf + n, sizeof(buf) - n, "ember: ");
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	/* One write per line so concurrent threads don't interleave. */
	fprintf(stderr, "%s\n", buf);
}

int errf(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool ratelimit_allow(struct ratelimit *rl)
{
	uint64_t now = (uint64_t)monotonic_ms();

	if (now - rl->window_start_ms >= rl->interval_ms) {
		if (rl->suppressed)
			log_warn("%u similar messages suppressed", rl->suppressed);
		rl->window_start_ms = now;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	if (rl->printed < rl->burst) {
		rl->printed++;
		return true;
	}
	rl->suppressed++;
	return false;
}
