/* libFuzzer target: the QMP server (vmm/control/qmp_server.c) on a real
 * evloop and a real listening unix socket (abstract, autobound), with up to
 * MAX_CLIENTS clients connecting, sending fuzzed bytes in fuzzed splits,
 * half-closing, closing, reading or never reading their replies, while
 * events are raised and limits change. The backend is fuzz_qmp's fake one.
 * Every server-side object is freed by qmp_server_destroy (ASan's leak
 * check runs at exit).
 *
 * Input: operations, one selector byte each (low 3 bits the kind, the rest
 * the client index or an argument):
 *   0 connect   1-3 send: next byte the length, then that many bytes
 *   4 shutdown(SHUT_WR)   5 close   6 read (drain) a client's replies
 *   7 arg % 4: 0 emit an event, 1 set tight limits (2 clients, no idle
 *     timeout / evictable at once), 2 default limits, 3 extra loop turns */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/control/qmp.h"
#include "base/evloop.h"
#include "base/log.h"
#include "fuzz/fuzz_qmp_backend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CLIENTS	6
#define MAX_OPS		256

static int cl[MAX_CLIENTS];
static unsigned ncl;

static int listener(struct sockaddr_un *sa, socklen_t *salen)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* Bind with only the family: the kernel picks an abstract name. */
	if (fd < 0 || bind(fd, (struct sockaddr *)sa, sizeof(sa_family_t)) ||
	    listen(fd, 16) || getsockname(fd, (struct sockaddr *)sa, salen))
		abort();
	return fd;
}

static void turn(struct evloop *loop)
{
	for (int i = 0; i < 4 && evloop_run_once(loop, 0) > 0; i++)
		;
}

static void drain(int fd)
{
	char buf[4096];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static void drop(unsigned i)
{
	close(cl[i]);
	cl[i] = cl[--ncl];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t salen = sizeof(sa);
	struct qmp_server *srv;
	struct evloop *loop;
	unsigned ops = 0;
	size_t i = 0;
	int lfd;

	log_set_level(LOG_ERR);
	loop = evloop_create();
	if (!loop)
		abort();
	lfd = listener(&sa, &salen);
	if (qmp_server_create(&srv, loop, NULL, lfd, &ops_backend, NULL))
		abort();
	ncl = 0;

	while (i < size && ops++ < MAX_OPS) {
		uint8_t sel = data[i++];
		unsigned kind = sel & 7, arg = sel >> 3;
		unsigned c = ncl ? arg % ncl : 0;

		switch (kind) {
		case 0:
			if (ncl < MAX_CLIENTS) {
				int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

				if (fd < 0 || connect(fd, (struct sockaddr *)&sa, salen))
					abort();
				cl[ncl++] = fd;
			}
			break;
		case 1: case 2: case 3: {
			size_t len = i < size ? data[i++] : 0;

			if (len > size - i)
				len = size - i;
			if (ncl && len &&
			    send(cl[c], data + i, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
			    errno != EAGAIN && errno != EPIPE && errno != ECONNRESET)
				abort();
			i += len;
			break;
		}
		case 4:
			if (ncl)
				shutdown(cl[c], SHUT_WR);
			break;
		case 5:
			if (ncl)
				drop(c);
			break;
		case 6:
			if (ncl)
				drain(cl[c]);
			break;
		case 7:
			switch (arg % 4) {
			case 0:
				qmp_server_emit_event(srv, "FUZZ", json_pack("{s:i}", "n", (int)arg));
				break;
			case 1: {
				struct qmp_limits lim = { .max_clients = 2,
							  .handshake_timeout_ms = arg & 4 ? 1 : 0,
							  .idle_timeout_ms = arg & 8 ? 1 : 0 };

				if (qmp_server_set_limits(srv, &lim))
					abort();
				break;
			}
			case 2:
				if (qmp_server_set_limits(srv, &QMP_LIMITS_DEFAULT))
					abort();
				break;
			case 3:
				turn(loop);
				break;
			}
			break;
		}
		turn(loop);
		if (qmp_server_nr_clients(srv) > QMP_MAX_CLIENTS + MAX_CLIENTS)
			abort();
	}

	/* Let the server see the last closes, then tear it down with the
	 * clients still connected (destroy's flush path, which waits for
	 * clients that do not read: drained ones only) or already gone. The
	 * server closes the listener it adopted. */
	turn(loop);
	for (unsigned k = 0; k < ncl; k++)
		drain(cl[k]);
	if (size && (data[size - 1] & 1))
		while (ncl)
			drop(0);
	qmp_server_destroy(srv);
	while (ncl)
		drop(0);
	evloop_destroy(loop);
	return 0;
}
