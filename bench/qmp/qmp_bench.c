/* bench/qmp: round-trip latency of query-status and throughput with several
 * clients, against any QMP server (Ember's --api-sock or QEMU's -qmp).
 *
 *   qmp_bench SOCKET latency N        -> median and p99 in microseconds
 *   qmp_bench SOCKET throughput CLIENTS SECONDS -> requests per second
 *
 * Each reply is read up to its CRLF and must contain "return". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path;

struct conn {
	int fd;
	char buf[65536];
	size_t len;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Read one CRLF-terminated message into line (NUL-terminated). */
static int read_msg(struct conn *c, char *line, size_t max)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);

		if (nl) {
			size_t n = (size_t)(nl - c->buf) + 1;

			if (n >= max)
				n = max - 1;
			memcpy(line, c->buf, n);
			line[n] = 0;
			memmove(c->buf, nl + 1, c->len - (size_t)(nl + 1 - c->buf));
			c->len -= (size_t)(nl + 1 - c->buf);
			return 0;
		}
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

/* Send cmd and read until its reply (skipping events). */
static int call(struct conn *c, const char *cmd)
{
	char line[4096];
	size_t n = strlen(cmd);

	if (write(c->fd, cmd, n) != (ssize_t)n)
		return -1;
	for (;;) {
		if (read_msg(c, line, sizeof(line)))
			return -1;
		if (strstr(line, "\"return\""))
			return 0;
		if (strstr(line, "\"error\"")) {
			fprintf(stderr, "qmp_bench: error reply: %s", line);
			return -1;
		}
	}
}

static int conn_open(struct conn *c)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char line[4096];

	c->len = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("qmp_bench: connect");
		return -1;
	}
	if (read_msg(c, line, sizeof(line)) || !strstr(line, "\"QMP\"")) {
		fprintf(stderr, "qmp_bench: no greeting\n");
		return -1;
	}
	return call(c, "{\"execute\":\"qmp_capabilities\"}\r\n");
}

static const char *query = "{\"execute\":\"query-status\"}\r\n";

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int latency(long n)
{
	double *t = calloc((size_t)n, sizeof(*t));
	struct conn c;

	if (!t || conn_open(&c))
		return 1;
	for (int i = 0; i < 100; i++)	/* warm up */
		if (call(&c, query))
			return 1;
	for (long i = 0; i < n; i++) {
		double t0 = now_us();

		if (call(&c, query))
			return 1;
		t[i] = now_us() - t0;
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	printf("requests %ld median_us %.1f p99_us %.1f max_us %.1f\n", n, t[n / 2],
	       t[(size_t)(n * 99 / 100)], t[n - 1]);
	close(c.fd);
	free(t);
	return 0;
}

struct worker {
	pthread_t th;
	double seconds;
	long done;
	int failed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct conn *c = malloc(sizeof(*c));
	double end;

	if (!c || conn_open(c)) {
		w->failed = 1;
		free(c);
		return NULL;
	}
	end = now_us() + w->seconds * 1e6;
	while (now_us() < end) {
		if (call(c, query)) {
			w->failed = 1;
			break;
		}
		w->done++;
	}
	close(c->fd);
	free(c);
	return NULL;
}

static int throughput(int clients, double seconds)
{
	struct worker *w = calloc((size_t)clients, sizeof(*w));
	long total = 0;
	int failed = 0;

	for (int i = 0; i < clients; i++) {
		w[i].seconds = seconds;
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < clients; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].done;
		failed |= w[i].failed;
	}
	printf("clients %d seconds %.1f requests %ld rps %.0f\n", clients, seconds, total,
	       total / seconds);
	free(w);
	return failed;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: qmp_bench SOCKET latency N | SOCKET throughput CLIENTS SECONDS\n");
		return 2;
	}
	sock_path = argv[1];
	if (!strcmp(argv[2], "latency"))
		return latency(atol(argv[3]));
	if (!strcmp(argv[2], "throughput") && argc >= 5)
		return throughput(atoi(argv[3]), atof(argv[4]));
	return 2;
}
