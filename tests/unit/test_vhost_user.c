/* The vhost-user frontend protocol against a fake backend on a socketpair
 * (a thread): the handshake, the memory table's fds, ring set-up, config,
 * and bad backends (closes mid set-up, bad sizes, wrong request ids,
 * unexpected fds, never replies): each gives an error and a dead
 * connection, never a hang. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/vhost/vhost_user.h"
#include "helpers/ck_run.h"

enum mode { GOOD, CLOSE_AFTER_FIRST, BAD_SIZE, BAD_ID, SILENT, SEND_FD, NO_REPLY_FLAG };

struct backend {
	int fd;
	enum mode mode;
	unsigned msgs, fds_got, mem_regions;
	uint64_t acked_features, protocol;
	pthread_t thr;
};

struct hdr {
	uint32_t request, flags, size;
} __attribute__((packed));

static int recv_msg(int fd, struct hdr *h, uint8_t *p, unsigned *nfds)
{
	char ctl[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { h, sizeof(*h) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	ssize_t n = recvmsg(fd, &m, MSG_WAITALL);

	if (n != (ssize_t)sizeof(*h))
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		for (unsigned i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(f);
		}
		*nfds += k;
	}
	if (h->size > 4096 || (h->size && recv(fd, p, h->size, MSG_WAITALL) != (ssize_t)h->size))
		return -1;
	return 0;
}

static void reply(struct backend *b, const struct hdr *req, const void *p, uint32_t size)
{
	uint8_t buf[4096 + 12];
	struct hdr h = { req->request, 1 | 4, size };
	int sendfd = -1;

	if (b->mode == BAD_SIZE)
		h.size = size + 4;
	if (b->mode == BAD_ID)
		h.request = req->request + 1;
	if (b->mode == NO_REPLY_FLAG)
		h.flags = 1;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), p, size);
	if (b->mode == SEND_FD) {
		char ctl[CMSG_SPACE(sizeof(int))] = { 0 };
		struct iovec iov = { buf, sizeof(h) + size };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				    .msg_controllen = sizeof(ctl) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);

		sendfd = dup(b->fd);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &sendfd, sizeof(int));
		(void)sendmsg(b->fd, &m, MSG_NOSIGNAL);
		close(sendfd);
		return;
	}
	(void)send(b->fd, buf, sizeof(h) + h.size, MSG_NOSIGNAL);
}

static void *backend_main(void *arg)
{
	struct backend *b = arg;
	uint8_t p[4096];
	struct hdr h;

	while (recv_msg(b->fd, &h, p, &b->fds_got) == 0) {
		uint64_t v = 0;

		b->msgs++;
		if (b->mode == CLOSE_AFTER_FIRST && b->msgs > 1)
			break;
		if (b->mode == SILENT)
			continue;
		switch (h.request) {
		case VHOST_USER_GET_FEATURES:
			v = 1ULL << 32 | 1ULL << VHOST_USER_F_PROTOCOL_FEATURES;
			reply(b, &h, &v, 8);
			continue;
		case VHOST_USER_GET_PROTOCOL_FEATURES:
			v = 1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK |
			    1ULL << VHOST_USER_PROTOCOL_F_CONFIG | 1ULL << 20;
			reply(b, &h, &v, 8);
			continue;
		case VHOST_USER_SET_PROTOCOL_FEATURES:
			memcpy(&b->protocol, p, 8);
			break;
		case VHOST_USER_SET_FEATURES:
			memcpy(&b->acked_features, p, 8);
			break;
		case VHOST_USER_SET_MEM_TABLE:
			memcpy(&b->mem_regions, p, 4);
			break;
		case VHOST_USER_GET_VRING_BASE: {
			uint32_t st[2];

			memcpy(st, p, 4);
			st[1] = 77;
			reply(b, &h, st, 8);
			continue;
		}
		case VHOST_USER_GET_CONFIG: {
			uint32_t len;

			memcpy(&len, p + 4, 4);
			for (uint32_t i = 0; i < len; i++)
				p[12 + i] = (uint8_t)(0xa0 + i);
			reply(b, &h, p, 12 + len);
			continue;
		}
		}
		if (h.flags & VHOST_USER_FLAG_NEED_REPLY)
			reply(b, &h, &(uint64_t){ 0 }, 8);
	}
	close(b->fd);
	return NULL;
}

static struct backend be;
static struct vhost_user vu;

static void start(enum mode mode)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(&be, 0, sizeof(be));
	be.fd = sv[1];
	be.mode = mode;
	vhost_user_init(&vu, sv[0]);
	vu.timeout_ms = 300;
	ck_assert_int_eq(pthread_create(&be.thr, NULL, backend_main, &be), 0);
}

static void finish(void)
{
	vhost_user_close(&vu);
	pthread_join(be.thr, NULL);
}

START_TEST(test_good_setup)
{
	uint8_t cfg[8];
	uint16_t base;
	uint8_t ram[8192];
	struct guest_mem gm = { 0 };
	int efd[2];

	start(GOOD);
	ck_assert_int_eq(vhost_user_handshake(&vu), 0);
	ck_assert(vu.features & (1ULL << 32));
	/* Ours masked by theirs: REPLY_ACK and CONFIG, not their bit 20. */
	ck_assert_uint_eq(vu.protocol_features, 1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK |
			  1ULL << VHOST_USER_PROTOCOL_F_CONFIG);
	ck_assert_int_eq(vhost_user_set_features(&vu, 1ULL << 32), 0);
	gm.memfd = -1;
	ck_assert_int_eq(vhost_user_set_mem_table(&vu, &gm), -EINVAL);	/* no memfd */
	ck_assert_int_eq(pipe(efd), 0);
	gm.memfd = efd[0];
	gm.nr = 1;
	gm.regions[0].gpa = 0;
	gm.regions[0].size = sizeof(ram);
	gm.regions[0].hva = ram;
	ck_assert_int_eq(vhost_user_set_mem_table(&vu, &gm), 0);
	ck_assert_int_eq(vhost_user_set_vring_num(&vu, 0, 256), 0);
	ck_assert_int_eq(vhost_user_set_vring_base(&vu, 0, 5), 0);
	ck_assert_int_eq(vhost_user_set_vring_addr(&vu, 0, 1, 2, 3, 0), 0);
	ck_assert_int_eq(vhost_user_set_vring_kick(&vu, 0, efd[1]), 0);
	ck_assert_int_eq(vhost_user_set_vring_call(&vu, 0, efd[1]), 0);
	ck_assert_int_eq(vhost_user_set_vring_err(&vu, 0, -1), 0);
	ck_assert_int_eq(vhost_user_get_vring_base(&vu, 0, &base), 0);
	ck_assert_uint_eq(base, 77);
	ck_assert_int_eq(vhost_user_get_config(&vu, 0, cfg, sizeof(cfg)), 0);
	ck_assert_uint_eq(cfg[0], 0xa0);
	ck_assert_uint_eq(cfg[7], 0xa7);
	ck_assert_int_eq(vhost_user_set_config(&vu, 0, cfg, sizeof(cfg)), 0);
	ck_assert_int_ge(vu.fd, 0);
	finish();
	ck_assert_uint_eq(be.acked_features, 1ULL << 32);
	ck_assert_uint_eq(be.mem_regions, 1);
	ck_assert_uint_eq(be.fds_got, 3);	/* memfd, kick, call */
	close(efd[0]);
	close(efd[1]);
}
END_TEST

static void expect_dead(int ret, int want, const char *words)
{
	ck_assert_int_eq(ret, want);
	ck_assert_int_lt(vu.fd, 0);
	ck_assert_msg(strstr(vu.err, words), "err '%s' lacks '%s'", vu.err, words);
	/* Every later call fails at once. */
	ck_assert_int_eq(vhost_user_set_owner(&vu), -ENOTCONN);
}

START_TEST(test_closes_mid_setup)
{
	start(CLOSE_AFTER_FIRST);
	expect_dead(vhost_user_handshake(&vu), -EPIPE, "closed");
	finish();
}
END_TEST

START_TEST(test_bad_size)
{
	start(BAD_SIZE);
	expect_dead(vhost_user_handshake(&vu), -EPROTO, "bad reply");
	finish();
}
END_TEST

START_TEST(test_bad_request_id)
{
	start(BAD_ID);
	expect_dead(vhost_user_handshake(&vu), -EPROTO, "bad reply");
	finish();
}
END_TEST

START_TEST(test_no_reply_flag)
{
	start(NO_REPLY_FLAG);
	expect_dead(vhost_user_handshake(&vu), -EPROTO, "REPLY flag");
	finish();
}
END_TEST

START_TEST(test_unexpected_fd)
{
	start(SEND_FD);
	expect_dead(vhost_user_handshake(&vu), -EPROTO, "unexpected fds");
	finish();
}
END_TEST

START_TEST(test_never_replies)
{
	start(SILENT);
	expect_dead(vhost_user_handshake(&vu), -ETIMEDOUT, "no reply within 300 ms");
	finish();
}
END_TEST

static Suite *vu_suite(void)
{
	Suite *s = suite_create("vhost-user");
	TCase *tc = tcase_create("protocol");

	tcase_add_test(tc, test_good_setup);
	tcase_add_test(tc, test_closes_mid_setup);
	tcase_add_test(tc, test_bad_size);
	tcase_add_test(tc, test_bad_request_id);
	tcase_add_test(tc, test_no_reply_flag);
	tcase_add_test(tc, test_unexpected_fd);
	tcase_add_test(tc, test_never_replies);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(vu_suite());
}
