#include "cli/ctl.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CTL_DEFAULT_TIMEOUT_S 60
#define CTL_MAX_LINE (64u << 20)

struct ctl_conn {
	int fd;
	char *buf;
	size_t len, cap;
	int timeout_ms;		/* per message; -1 waits forever */
	const sigset_t *waitmask;	/* for ppoll in --events mode */
};

static volatile sig_atomic_t ctl_stop;

static void ctl_on_signal(int sig)
{
	(void)sig;
	ctl_stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ember ctl [--timeout SEC] SOCKET COMMAND [key=value | key:=JSON ...]\n"
		"       ember ctl SOCKET --events\n"
		"Values true/false become booleans, integers numbers, anything else strings;\n"
		"key:=JSON passes raw JSON. Examples:\n"
		"  ember ctl /run/ember/vm.sock query-status\n"
		"  ember ctl /run/ember/vm.sock stop\n"
		"  ember ctl /run/ember/vm.sock --events\n");
}

json_t *ctl_parse_args(int argc, char **argv, char *err, size_t errlen)
{
	json_t *args = json_object();
	int i;

	for (i = 0; args && i < argc; i++) {
		char *eq = strchr(argv[i], '='), *end, *key;
		bool raw;
		json_t *v;
		long long n;

		if (!eq || eq == argv[i] || (eq == argv[i] + 1 && argv[i][0] == ':')) {
			snprintf(err, errlen, "bad argument '%s': expected key=value or key:=JSON",
				 argv[i]);
			goto fail;
		}
		raw = eq[-1] == ':';
		key = strndup(argv[i], (size_t)(eq - argv[i]) - raw);
		if (!key) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (raw) {
			json_error_t jerr;

			v = json_loads(eq + 1, JSON_DECODE_ANY, &jerr);
			if (!v) {
				snprintf(err, errlen, "bad JSON for '%s': %s", key, jerr.text);
				free(key);
				goto fail;
			}
		} else if (!strcmp(eq + 1, "true") || !strcmp(eq + 1, "false")) {
			v = json_boolean(eq[1] == 't');
		} else {
			const char *d = eq[1] == '-' ? eq + 2 : eq + 1;

			/* -?(0|[1-9][0-9]*) that fits: an integer; else a string. */
			errno = 0;
			n = strtoll(eq + 1, &end, 10);
			if (*d >= '0' && *d <= '9' && !(d[0] == '0' && d[1]) && !*end && !errno)
				v = json_integer(n);
			else
				v = json_string(eq + 1);
			if (!v) {
				snprintf(err, errlen, "bad value for '%s' (not UTF-8?)", key);
				free(key);
				goto fail;
			}
		}
		json_object_set_new(args, key, v);
		free(key);
	}
	return args;
fail:
	json_decref(args);
	return NULL;
}

static int ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int ctl_send(struct ctl_conn *c, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	size_t len, off = 0;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	text[len++] = '\n';	/* overwrites the NUL; the length is explicit */
	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);

		if (n < 0) {
			int e = errno;

			if (e == EINTR && !ctl_stop)
				continue;
			free(text);
			return -e;
		}
		off += (size_t)n;
	}
	free(text);
	return 0;
}

/* Next message; NULL on EOF (errno 0), timeout (ETIMEDOUT), interruption
 * (EINTR) or error. */
static json_t *ctl_recv(struct ctl_conn *c)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		struct timespec ts, *tsp = NULL;
		ssize_t n;
		int r;

		if (nl) {
			size_t line = (size_t)(nl - c->buf) + 1;
			json_error_t jerr;
			json_t *msg = json_loadb(c->buf, line, 0, &jerr);

			memmove(c->buf, c->buf + line, c->len - line);
			c->len -= line;
			if (!msg) {
				errno = EPROTO;
				return NULL;
			}
			return msg;
		}
		if (c->len == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *b;

			if (cap > CTL_MAX_LINE) {
				errno = EMSGSIZE;
				return NULL;
			}
			b = realloc(c->buf, cap);
			if (!b)
				return NULL;
			c->buf = b;
			c->cap = cap;
		}
		if (c->timeout_ms >= 0) {
			ts.tv_sec = c->timeout_ms / 1000;
			ts.tv_nsec = (long)(c->timeout_ms % 1000) * 1000000;
			tsp = &ts;
		}
		r = ppoll(&pfd, 1, tsp, c->waitmask);
		if (r < 0) {
			if (errno == EINTR && !ctl_stop)
				continue;
			return NULL;
		}
		if (ctl_stop) {
			errno = EINTR;
			return NULL;
		}
		if (r == 0) {
			errno = ETIMEDOUT;
			return NULL;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (n == 0) {
			errno = c->len ? EPROTO : 0;
			return NULL;
		}
		c->len += (size_t)n;
	}
}

/* Wait for the reply carrying `id`, skipping events. */
static json_t *ctl_wait_reply(struct ctl_conn *c, const char *id)
{
	for (;;) {
		json_t *msg = ctl_recv(c), *mid;

		if (!msg)
			return NULL;
		mid = json_object_get(msg, "id");
		if (json_is_string(mid) && !strcmp(json_string_value(mid), id))
			return msg;
		json_decref(msg);
	}
}

static int conn_error(const char *what, const char *path)
{
	if (errno == 0)
		fprintf(stderr, "ember ctl: %s: %s: connection closed by the server\n",
			path, what);
	else
		fprintf(stderr, "ember ctl: %s: %s: %s\n", path, what, strerror(errno));
	return CTL_EXIT_CONNECT;
}

static int report_error(json_t *reply)
{
	json_t *e = json_object_get(reply, "error");
	const char *cls = json_string_value(json_object_get(e, "class"));
	const char *desc = json_string_value(json_object_get(e, "desc"));

	fprintf(stderr, "ember ctl: %s: %s\n", cls ? cls : "Error",
		desc ? desc : "(no description)");
	return CTL_EXIT_ERROR;
}

static int run_events(struct ctl_conn *c)
{
	for (;;) {
		json_t *msg = ctl_recv(c);
		char *text;

		if (!msg)
			return (errno == 0 || errno == EINTR) ? CTL_EXIT_OK : CTL_EXIT_CONNECT;
		if (json_object_get(msg, "event")) {
			text = json_dumps(msg, JSON_COMPACT);
			if (text) {
				printf("%s\n", text);
				fflush(stdout);
				free(text);
			}
		}
		json_decref(msg);
	}
}

int ctl_main(int argc, char **argv)
{
	struct ctl_conn c = { .fd = -1 };
	const char *path, *cmd;
	json_t *msg = NULL, *args = NULL, *ret;
	bool events;
	long timeout_s = CTL_DEFAULT_TIMEOUT_S;
	sigset_t block, waitmask;
	char err[256];
	int i = 1, rc;

	while (i < argc && argv[i][0] == '-' && argv[i][1] == '-' && strcmp(argv[i], "--events")) {
		if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return CTL_EXIT_OK;
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;

			timeout_s = strtol(argv[i + 1], &end, 10);
			if (*end || end == argv[i + 1] || timeout_s < 0 || timeout_s > 86400) {
				fprintf(stderr, "ember ctl: bad --timeout '%s'\n", argv[i + 1]);
				return CTL_EXIT_USAGE;
			}
			i += 2;
		} else {
			usage(stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (argc - i < 2) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	path = argv[i];
	cmd = argv[i + 1];
	events = !strcmp(cmd, "--events");
	if (events && argc - i > 2) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if (!events) {
		args = ctl_parse_args(argc - i - 2, argv + i + 2, err, sizeof(err));
		if (!args) {
			fprintf(stderr, "ember ctl: %s\n", err);
			return CTL_EXIT_USAGE;
		}
	}

	/* SIGINT/SIGTERM only interrupt the wait (ppoll), never a half-written
	 * line. */
	ctl_stop = 0;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	if (events) {
		struct sigaction sa = { .sa_handler = ctl_on_signal };

		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		c.waitmask = &waitmask;
	} else {
		/* Default dispositions: a signal just ends the client. */
		sigprocmask(SIG_UNBLOCK, &block, NULL);
	}
	c.timeout_ms = timeout_s ? (int)(timeout_s * 1000) : -1;

	c.fd = ctl_connect(path);
	if (c.fd < 0) {
		rc = conn_error("connect", path);
		goto out;
	}
	msg = ctl_recv(&c);
	if (!msg || !json_object_get(msg, "QMP")) {
		if (msg)
			errno = EPROTO;
		rc = conn_error("reading the greeting", path);
		goto out;
	}
	json_decref(msg);

	msg = json_pack("{s:s, s:s}", "execute", "qmp_capabilities", "id", "ctl-caps");
	if (ctl_send(&c, msg) < 0) {
		rc = conn_error("send", path);
		goto out;
	}
	json_decref(msg);
	msg = ctl_wait_reply(&c, "ctl-caps");
	if (!msg) {
		rc = conn_error("negotiating capabilities", path);
		goto out;
	}
	if (json_object_get(msg, "error")) {
		rc = report_error(msg);
		goto out;
	}
	json_decref(msg);
	msg = NULL;

	if (events) {
		c.timeout_ms = -1;
		rc = run_events(&c);
		goto out;
	}

	msg = json_pack("{s:s, s:s}", "execute", cmd, "id", "ctl-1");
	if (json_object_size(args))
		json_object_set(msg, "arguments", args);
	if (ctl_send(&c, msg) < 0) {
		rc = conn_error("send", path);
		goto out;
	}
	json_decref(msg);
	msg = ctl_wait_reply(&c, "ctl-1");
	if (!msg) {
		rc = conn_error(cmd, path);
		goto out;
	}
	ret = json_object_get(msg, "return");
	if (!ret) {
		rc = report_error(msg);
		goto out;
	}
	{
		char *text = json_dumps(ret, JSON_INDENT(2) | JSON_ENCODE_ANY);

		if (text) {
			printf("%s\n", text);
			free(text);
		}
	}
	rc = fflush(stdout) == 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
out:
	json_decref(msg);
	json_decref(args);
	free(c.buf);
	if (c.fd >= 0)
		close(c.fd);
	return rc;
}
