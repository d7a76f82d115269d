/* Guest side of the vsock unix-socket bridge test (cases/vsock_uds.py):
 *   vsock-bridge dial CID PORT     connect; stdin -> socket (then SHUT_WR) and
 *                                  socket -> stdout, both to EOF
 *   vsock-bridge accept PORT       the same on the first connection to PORT
 *   vsock-bridge hold CID PORT N RELEASE
 *                                  open N connections to CID:PORT and never
 *                                  read them; exit when someone connects to
 *                                  port RELEASE
 * Exit status 0 when every byte went through. */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int vsock_connect(unsigned cid, unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);

	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
		perror("vsock connect");
		return -1;
	}
	return s;
}

static int vsock_accept(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int s = socket(AF_VSOCK, SOCK_STREAM, 0), c;

	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1)) {
		perror("vsock bind/listen");
		return -1;
	}
	c = accept(s, NULL, NULL);
	if (c < 0)
		perror("accept");
	close(s);
	return c;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* stdin -> s and s -> stdout until both reach EOF. */
static int pump(int s)
{
	static char buf[65536];
	struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = s, .events = POLLIN } };
	bool in_open = true, sock_open = true;

	while (in_open || sock_open) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		if (in_open && p[0].revents) {
			ssize_t n = read(0, buf, sizeof(buf));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				in_open = false;
				p[0].fd = -1;
				shutdown(s, SHUT_WR);
			} else if (write_all(s, buf, (size_t)n)) {
				perror("write socket");
				return 1;
			}
		}
		if (sock_open && p[1].revents) {
			ssize_t n = read(s, buf, sizeof(buf));

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				perror("read socket");
				return 1;
			}
			if (n == 0) {
				sock_open = false;
				p[1].fd = -1;
			} else if (write_all(1, buf, (size_t)n)) {
				perror("write stdout");
				return 1;
			}
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	int s, ret;

	if (argc == 4 && !strcmp(argv[1], "dial")) {
		s = vsock_connect((unsigned)strtoul(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0));
		if (s < 0)
			return 1;
		ret = pump(s);
		close(s);
		return ret;
	}
	if (argc == 3 && !strcmp(argv[1], "accept")) {
		s = vsock_accept((unsigned)strtoul(argv[2], NULL, 0));
		if (s < 0)
			return 1;
		ret = pump(s);
		close(s);
		return ret;
	}
	if (argc == 6 && !strcmp(argv[1], "hold")) {
		unsigned cid = (unsigned)strtoul(argv[2], NULL, 0), port = (unsigned)strtoul(argv[3], NULL, 0);
		int n = atoi(argv[4]), got = 0;

		for (int i = 0; i < n; i++)
			if (vsock_connect(cid, port) >= 0)
				got++;
		printf("EMBER-INFO vsock_uds_held=%d\n", got);
		fflush(stdout);
		s = vsock_accept((unsigned)strtoul(argv[5], NULL, 0));
		return s < 0 || got != n;
	}
	fprintf(stderr, "usage: vsock-bridge dial CID PORT | accept PORT | hold CID PORT N RELEASE\n");
	return 2;
}
