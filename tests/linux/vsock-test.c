/* The Linux suite's guest vsock tool (static, in the initramfs):
 *   vsock-test send CID PORT   connect, copy stdin to the socket, close
 *   vsock-test recv PORT       accept one connection, copy it to stdout
 * Exit status 0 when every byte went through. */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int copy(int in, int out)
{
	char buf[65536];

	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf)), off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("read");
			return 1;
		}
		if (n == 0)
			return 0;
		while (off < n) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				perror("write");
				return 1;
			}
			off += w;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK };
	int s = socket(AF_VSOCK, SOCK_STREAM, 0), c, ret;

	if (s < 0) {
		perror("socket(AF_VSOCK)");
		return 1;
	}
	if (argc == 4 && !strcmp(argv[1], "send")) {
		a.svm_cid = (unsigned)strtoul(argv[2], NULL, 0);
		a.svm_port = (unsigned)strtoul(argv[3], NULL, 0);
		if (connect(s, (struct sockaddr *)&a, sizeof(a))) {
			perror("connect");
			return 1;
		}
		ret = copy(0, s);
		shutdown(s, SHUT_WR);
		/* Wait for the peer to close, so nothing is cut off. */
		while (!ret && read(s, &c, sizeof(c)) > 0)
			;
		close(s);
		return ret;
	}
	if (argc == 3 && !strcmp(argv[1], "recv")) {
		a.svm_cid = VMADDR_CID_ANY;
		a.svm_port = (unsigned)strtoul(argv[2], NULL, 0);
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1)) {
			perror("bind/listen");
			return 1;
		}
		c = accept(s, NULL, NULL);
		if (c < 0) {
			perror("accept");
			return 1;
		}
		ret = copy(c, 1);
		close(c);
		close(s);
		return ret;
	}
	fprintf(stderr, "usage: vsock-test send CID PORT | recv PORT\n");
	return 2;
}
