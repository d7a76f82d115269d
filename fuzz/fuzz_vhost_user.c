/* libFuzzer target: the vhost-user frontend's reply parser
 * (devices/vhost/vhost_user.c). The input is everything a backend says on
 * the socket, queued on a socketpair whose far end then stops writing;
 * Ember's side runs a whole set-up against it: the handshake (whose
 * protocol features decide which later requests want a REPLY_ACK), the
 * queue count, the config space, ring set-up, GET_VRING_BASE and the
 * inflight region. The first byte picks the order of the later calls.
 * Every call must end in 0 or a negative errno with a reason, never a
 * crash, a hang (the deadline is 20 ms and the stream ends) or a leaked fd. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/vhost/vhost_user.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(struct vhost_user *vu, int ret)
{
	/* A failure leaves a reason and, for protocol errors, a closed socket. */
	if (ret > 0 || (ret < 0 && !vu->err[0] && ret != -ENOTCONN))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vhost_user vu;
	struct vhost_user_inflight inf = { .fd = -1 };
	uint8_t cfg[VHOST_USER_CONFIG_MAX];
	uint64_t v;
	uint16_t base;
	int sv[2], order;
	size_t off = 0;

	if (size < 1 || size > 1 << 16)
		return 0;
	order = data[0];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	/* Queue the backend's whole say; what does not fit is cut (64 KiB
	 * fits a unix socket's buffer). */
	while (off < size - 1) {
		ssize_t n = send(sv[1], data + 1 + off, size - 1 - off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(sv[1], SHUT_WR);
	vhost_user_init(&vu, sv[0]);
	vu.timeout_ms = 20;
	check(&vu, vhost_user_handshake(&vu));
	for (int i = 0; i < 6; i++) {
		switch ((order + i) % 6) {
		case 0:
			check(&vu, vhost_user_get_queue_num(&vu, &v));
			break;
		case 1:
			check(&vu, vhost_user_get_config(&vu, 0, cfg, 60));
			break;
		case 2:
			check(&vu, vhost_user_set_vring_num(&vu, 0, 256));
			check(&vu, vhost_user_set_vring_kick(&vu, 0, -1));
			break;
		case 3:
			check(&vu, vhost_user_get_vring_base(&vu, 0, &base));
			break;
		case 4:
			check(&vu, vhost_user_get_inflight_fd(&vu, 1, 256, &inf));
			if (inf.fd >= 0) {
				check(&vu, vhost_user_set_inflight_fd(&vu, &inf));
				close(inf.fd);
				inf.fd = -1;
			}
			break;
		default:
			check(&vu, vhost_user_get_features(&vu, &v));
			check(&vu, vhost_user_set_features(&vu, v));
			break;
		}
	}
	vhost_user_close(&vu);
	close(sv[1]);
	return 0;
}
