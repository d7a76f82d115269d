/* The vhost-user device core (devices/vhost/vhost_user_dev.c) through the
 * registered vhost-user-blk type, against a fake backend thread on a unix
 * socket, with real memfd guest RAM and a real main loop: the features the
 * guest is offered, the config space, the set-up sent at DRIVER_OK, the
 * ring positions taken back on reset, reconnect with the same inflight
 * region and the used index as the base, and a backend that breaks the
 * protocol at DRIVER_OK (FAILED, NEEDS_RESET, no hang). */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/evloop.h"
#include "base/guest_mem.h"
#include "devices/options.h"
#include "devices/vhost/vhost_user.h"
#include "devices/vhost/vhost_user_dev.h"
#include "devices/virtio/registry.h"
#include "helpers/ck_run.h"

#define CAPACITY	123456ULL
#define BACKEND_BASE	42
#define MAXLOG		256

/* ---- the fake backend ---- */

struct logged {
	unsigned conn;		/* which connection (1, 2, ...) */
	uint32_t req, size;
	uint8_t p[64];
	ino_t fd_ino;		/* of the first fd that came with it, 0: none */
};

static struct {
	pthread_t thr;
	int lfd, cfd;
	pthread_mutex_t lock;
	bool bad_vring_num;	/* reply to SET_VRING_NUM's ack with a wrong size */
	bool hang_up;		/* close the current connection */
	unsigned conns;
	struct logged log[MAXLOG];
	unsigned nlog;
	int inflight_fd;
	bool stop;
} be;

static char dir[64], sock_path[128];

static int be_recv(int fd, uint8_t *buf, int *fds, unsigned *nfds)
{
	char ctl[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { buf, 12 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	uint32_t size;

	*nfds = 0;
	if (recvmsg(fd, &m, MSG_WAITALL) != 12)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && *nfds < 8; i++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	memcpy(&size, buf + 8, 4);
	if (size > 4096 || (size && recv(fd, buf + 12, size, MSG_WAITALL) != (ssize_t)size))
		return -1;
	return 0;
}

static void be_reply(int fd, uint32_t req, const void *p, uint32_t size)
{
	uint8_t buf[512];
	uint32_t h[3] = { req, 1 | 4, size };

	memcpy(buf, h, 12);
	memcpy(buf + 12, p, size);
	(void)!send(fd, buf, 12 + size, MSG_NOSIGNAL);
}

static void be_reply_fd(int fd, uint32_t req, const void *p, uint32_t size, int sendfd)
{
	char ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	uint8_t buf[64];
	uint32_t h[3] = { req, 1 | 4, size };
	struct iovec iov = { buf, 12 + size };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	memcpy(buf, h, 12);
	memcpy(buf + 12, p, size);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &sendfd, sizeof(int));
	(void)!sendmsg(fd, &m, MSG_NOSIGNAL);
}

/* One connection: answer until the frontend goes or the test says hang up. */
static void be_serve(int fd, unsigned conn)
{
	uint8_t buf[4096 + 12];
	uint64_t protocol = 0;

	for (;;) {
		struct logged *l;
		int fds[8];
		unsigned nfds;
		uint32_t req, flags, size;
		uint64_t v;
		struct timeval tv = { 0, 50000 };
		fd_set rs;

		pthread_mutex_lock(&be.lock);
		if (be.hang_up || be.stop) {
			be.hang_up = false;
			pthread_mutex_unlock(&be.lock);
			return;
		}
		pthread_mutex_unlock(&be.lock);
		FD_ZERO(&rs);
		FD_SET(fd, &rs);
		if (select(fd + 1, &rs, NULL, NULL, &tv) <= 0)
			continue;
		if (be_recv(fd, buf, fds, &nfds))
			return;
		memcpy(&req, buf, 4);
		memcpy(&flags, buf + 4, 4);
		memcpy(&size, buf + 8, 4);
		pthread_mutex_lock(&be.lock);
		if (be.nlog < MAXLOG) {
			struct stat st;

			l = &be.log[be.nlog++];
			l->conn = conn;
			l->req = req;
			l->size = size;
			memcpy(l->p, buf + 12, size < sizeof(l->p) ? size : sizeof(l->p));
			l->fd_ino = nfds && fstat(fds[0], &st) == 0 ? st.st_ino : 0;
		}
		pthread_mutex_unlock(&be.lock);
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		switch (req) {
		case VHOST_USER_GET_FEATURES:
			v = VIRTIO_BIT(VIRTIO_F_VERSION_1) | (1ULL << VHOST_USER_F_PROTOCOL_FEATURES) |
			    (1ULL << 34) /* packed */ | (1ULL << 9) /* FLUSH */ | (1ULL << 6);
			be_reply(fd, req, &v, 8);
			continue;
		case VHOST_USER_GET_PROTOCOL_FEATURES:
			v = 1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK | 1ULL << VHOST_USER_PROTOCOL_F_CONFIG |
			    1ULL << VHOST_USER_PROTOCOL_F_MQ | 1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD;
			be_reply(fd, req, &v, 8);
			continue;
		case VHOST_USER_SET_PROTOCOL_FEATURES:
			memcpy(&protocol, buf + 12, 8);
			continue;
		case VHOST_USER_GET_QUEUE_NUM:
			v = 4;
			be_reply(fd, req, &v, 8);
			continue;
		case VHOST_USER_GET_CONFIG: {
			uint8_t r[12 + 60] = { 0 };

			memcpy(r, buf + 12, 8);	/* offset, size */
			wr64(r + 12, CAPACITY);
			be_reply(fd, req, r, 12 + 60);
			continue;
		}
		case VHOST_USER_GET_INFLIGHT_FD: {
			uint8_t r[20];

			memcpy(r, buf + 12, 20);
			wr64(r, 8192);		/* mmap_size */
			wr64(r + 8, 0);		/* mmap_offset */
			be_reply_fd(fd, req, r, 20, be.inflight_fd);
			continue;
		}
		case VHOST_USER_GET_VRING_BASE: {
			uint32_t st[2];

			memcpy(st, buf + 12, 4);
			st[1] = BACKEND_BASE;
			be_reply(fd, req, st, 8);
			continue;
		}
		default:
			break;
		}
		if ((flags & VHOST_USER_FLAG_NEED_REPLY) &&
		    (protocol & (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK))) {
			v = 0;
			pthread_mutex_lock(&be.lock);
			if (req == VHOST_USER_SET_VRING_NUM && be.bad_vring_num) {
				pthread_mutex_unlock(&be.lock);
				be_reply(fd, req, &v, 4);	/* 4 bytes, not 8 */
				continue;
			}
			pthread_mutex_unlock(&be.lock);
			be_reply(fd, req, &v, 8);
		}
	}
}

static void *be_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct timeval tv = { 0, 50000 };
		fd_set rs;
		int fd;

		pthread_mutex_lock(&be.lock);
		if (be.stop) {
			pthread_mutex_unlock(&be.lock);
			return NULL;
		}
		pthread_mutex_unlock(&be.lock);
		FD_ZERO(&rs);
		FD_SET(be.lfd, &rs);
		if (select(be.lfd + 1, &rs, NULL, NULL, &tv) <= 0)
			continue;
		fd = accept(be.lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&be.lock);
		be.conns++;
		pthread_mutex_unlock(&be.lock);
		be_serve(fd, be.conns);
		close(fd);
	}
}

/* ---- fixture ---- */

static struct guest_mem gm;
static struct evloop *loop;
static struct device_ctx ctx;
static const struct virtio_device_desc *desc;
static void *opts;
static struct virtio_device *vdev;
static unsigned config_irqs;

static void on_config(struct virtio_device *d)
{
	(void)d;
	__atomic_fetch_add(&config_irqs, 1, __ATOMIC_RELAXED);
}

static void on_used(struct virtio_device *d, unsigned q)
{
	(void)d;
	(void)q;
}

static void setup(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char o[200], err[256] = "";

	memset(&be, 0, sizeof(be));
	pthread_mutex_init(&be.lock, NULL);
	strcpy(dir, "/tmp/ember-vu-dev-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/vu.sock", dir);
	strcpy(a.sun_path, sock_path);
	be.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(be.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(be.lfd, 4), 0);
	be.inflight_fd = memfd_create("inflight", MFD_CLOEXEC);
	ck_assert_int_ge(be.inflight_fd, 0);
	ck_assert_int_eq(ftruncate(be.inflight_fd, 8192), 0);
	ck_assert_int_eq(pthread_create(&be.thr, NULL, be_main, NULL), 0);

	ck_assert_int_eq(gm_init(&gm, 16 << 20, false), 0);
	ck_assert_int_ge(gm.memfd, 0);
	loop = evloop_create();
	ck_assert_ptr_nonnull(loop);
	ctx = (struct device_ctx){ .mem = &gm, .loop = loop };
	desc = virtio_device_find("vhost-user-blk");
	ck_assert_ptr_nonnull(desc);
	opts = calloc(1, desc->options->size);
	snprintf(o, sizeof(o), "socket=%s,queues=2,reconnect=50", sock_path);
	ck_assert_msg(dev_options_parse(desc->options, o, opts, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(desc->create(&ctx, opts, &vdev), 0);
	vdev->notify_config = on_config;
	vdev->notify_used = on_used;
	ck_assert_int_eq(desc->start(vdev), 0);
	config_irqs = 0;
}

static void teardown(void)
{
	desc->stop(vdev);
	desc->destroy(vdev);
	dev_options_free(desc->options, opts);
	free(opts);
	pthread_mutex_lock(&be.lock);
	be.stop = true;
	pthread_mutex_unlock(&be.lock);
	pthread_join(be.thr, NULL);
	close(be.lfd);
	close(be.inflight_fd);
	unlink(sock_path);
	rmdir(dir);
	evloop_destroy(loop);
	gm_destroy(&gm);
}

/* ---- helpers ---- */

static json_t *query(void)
{
	json_t *ret = NULL, *args = json_object();
	char err[128];

	ck_assert_int_eq(vhost_user_qmp_commands[0].fn(NULL, args, &ret, err, sizeof(err)), 0);
	json_decref(args);
	ck_assert_int_eq(json_array_size(ret), 1);
	return ret;
}

static const char *state(void)
{
	static char s[32];
	json_t *q = query();

	snprintf(s, sizeof(s), "%s", json_string_value(json_object_get(json_array_get(q, 0), "state")));
	json_decref(q);
	return s;
}

static json_int_t query_int(const char *key)
{
	json_t *q = query();
	json_int_t v = json_integer_value(json_object_get(json_array_get(q, 0), key));

	json_decref(q);
	return v;
}

static bool query_bool(const char *key)
{
	json_t *q = query();
	bool v = json_is_true(json_object_get(json_array_get(q, 0), key));

	json_decref(q);
	return v;
}

/* Rings at 1 MiB (queue 0) and 2 MiB (queue 1), then DRIVER_OK. */
static int driver_ok(void)
{
	for (unsigned q = 0; q < 2; q++) {
		struct virtqueue *vq = virtio_dev_queue(vdev, q);

		vq->size = 256;
		vq->desc_gpa = (1 + q) << 20;
		vq->avail_gpa = vq->desc_gpa + 4096;
		vq->used_gpa = vq->desc_gpa + 8192;
		vq->enabled = true;
	}
	virtio_dev_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_dev_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_dev_set_driver_features(vdev, virtio_dev_host_features(vdev));
	virtio_dev_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK);
	return virtio_dev_set_status(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

/* Index in the log of the first `req` on connection conn at or after from, or -1. */
static int find(unsigned conn, uint32_t req, int from)
{
	int r = -1;

	pthread_mutex_lock(&be.lock);
	for (unsigned i = (unsigned)from; i < be.nlog; i++)
		if (be.log[i].conn == conn && be.log[i].req == req) {
			r = (int)i;
			break;
		}
	pthread_mutex_unlock(&be.lock);
	return r;
}

static void run_loop_until(const char *want, json_int_t reconnects)
{
	for (int i = 0; i < 200; i++) {
		if (!strcmp(state(), want) && (reconnects < 0 || query_int("reconnects") == reconnects))
			return;
		evloop_run_once(loop, 20);
	}
	ck_abort_msg("state %s (reconnects %lld), want %s", state(), (long long)query_int("reconnects"),
		     want);
}

/* ---- tests ---- */

START_TEST(test_create_features_config)
{
	uint64_t f = virtio_dev_host_features(vdev), cap = 0;
	uint16_t nq = 0;

	ck_assert(f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert(f & (1ULL << 9));			/* FLUSH, offered by the backend */
	ck_assert(!(f & (1ULL << VHOST_USER_F_PROTOCOL_FEATURES)));	/* protocol only */
	ck_assert(!(f & (1ULL << 34)));		/* packed rings are not offered */
	virtio_dev_config_read(vdev, 0, &cap, 8);
	ck_assert_uint_eq(cap, CAPACITY);
	virtio_dev_config_read(vdev, 34, &nq, 2);
	ck_assert_uint_eq(nq, 2);			/* what Ember serves, not the backend's 4 */
	ck_assert_str_eq(state(), "connected");
	ck_assert_int_eq(find(1, VHOST_USER_SET_OWNER, 0) >= 0, 1);
}
END_TEST

START_TEST(test_driver_ok_sets_up_rings)
{
	int inf, setinf, feat, mem, num, addr, kick, call, en;
	uint64_t acked;

	ck_assert_int_eq(driver_ok(), 0);
	ck_assert_str_eq(state(), "running");
	inf = find(1, VHOST_USER_GET_INFLIGHT_FD, 0);
	setinf = find(1, VHOST_USER_SET_INFLIGHT_FD, 0);
	feat = find(1, VHOST_USER_SET_FEATURES, 0);
	mem = find(1, VHOST_USER_SET_MEM_TABLE, 0);
	num = find(1, VHOST_USER_SET_VRING_NUM, 0);
	addr = find(1, VHOST_USER_SET_VRING_ADDR, 0);
	kick = find(1, VHOST_USER_SET_VRING_KICK, 0);
	call = find(1, VHOST_USER_SET_VRING_CALL, 0);
	en = find(1, VHOST_USER_SET_VRING_ENABLE, 0);
	ck_assert(inf >= 0 && inf < setinf && setinf < feat && feat < mem && mem < num &&
		  num < addr && addr < kick && kick < call && call < en);
	memcpy(&acked, be.log[feat].p, 8);
	ck_assert(acked & (1ULL << VHOST_USER_F_PROTOCOL_FEATURES));
	ck_assert(acked & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	ck_assert(!(acked & (1ULL << 34)));
	ck_assert_uint_ne(be.log[mem].fd_ino, 0);	/* guest RAM's memfd */
	ck_assert_uint_ne(be.log[setinf].fd_ino, 0);
	ck_assert(query_bool("inflight"));
	/* Both rings enabled. */
	ck_assert_int_ge(find(1, VHOST_USER_SET_VRING_ENABLE, en + 1), 0);
}
END_TEST

START_TEST(test_pause_takes_rings_back)
{
	int dis, base, set;
	uint32_t v;

	ck_assert_int_eq(driver_ok(), 0);
	desc->pause(vdev);
	dis = find(1, VHOST_USER_SET_VRING_ENABLE, 0);
	dis = find(1, VHOST_USER_SET_VRING_ENABLE, dis + 1);
	dis = find(1, VHOST_USER_SET_VRING_ENABLE, dis + 1);	/* the first disable */
	base = find(1, VHOST_USER_GET_VRING_BASE, 0);
	ck_assert(dis >= 0 && base > dis);
	ck_assert_uint_eq(be.log[dis].p[4], 0);
	/* The backend's position is Ember's now (what a snapshot saves). */
	ck_assert_uint_eq(virtio_dev_queue(vdev, 0)->last_avail_idx, BACKEND_BASE);
	ck_assert_str_eq(state(), "connected");
	desc->resume(vdev);
	ck_assert_str_eq(state(), "running");
	set = find(1, VHOST_USER_SET_VRING_BASE, base);
	ck_assert_int_ge(set, 0);
	memcpy(&v, be.log[set].p + 4, 4);
	ck_assert_uint_eq(v, BACKEND_BASE);
	/* A driver reset drops the inflight region: a new driver starts afresh. */
	virtio_dev_set_status(vdev, 0);
	ck_assert_str_eq(state(), "connected");
	ck_assert(!query_bool("inflight"));
}
END_TEST

START_TEST(test_reconnect_resumes_with_inflight)
{
	struct virtqueue *vq;
	int setinf, base;
	uint32_t v;
	struct stat st;

	ck_assert_int_eq(driver_ok(), 0);
	vq = virtio_dev_queue(vdev, 0);
	wr16(vq->used + 2, 5);		/* five requests completed before the crash */
	pthread_mutex_lock(&be.lock);
	be.hang_up = true;
	pthread_mutex_unlock(&be.lock);
	run_loop_until("disconnected", -1);
	run_loop_until("running", 1);
	setinf = find(2, VHOST_USER_SET_INFLIGHT_FD, 0);
	ck_assert_int_ge(setinf, 0);
	ck_assert_int_lt(find(2, VHOST_USER_GET_INFLIGHT_FD, 0), 0);	/* kept, not new */
	ck_assert_int_eq(fstat(be.inflight_fd, &st), 0);
	ck_assert_uint_eq(be.log[setinf].fd_ino, st.st_ino);
	base = find(2, VHOST_USER_SET_VRING_BASE, 0);
	ck_assert_int_ge(base, 0);
	memcpy(&v, be.log[base].p + 4, 4);
	ck_assert_uint_eq(v, 5);		/* the used index: the backend could not say */
	ck_assert_int_eq(query_int("reconnects"), 1);
}
END_TEST

START_TEST(test_bad_reply_at_driver_ok)
{
	json_t *q;
	const char *e;

	pthread_mutex_lock(&be.lock);
	be.bad_vring_num = true;
	pthread_mutex_unlock(&be.lock);
	ck_assert_int_ne(driver_ok(), 0);
	ck_assert(virtio_dev_get_status(vdev) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_uint_ge(config_irqs, 1);
	ck_assert_str_eq(state(), "failed");
	q = query();
	e = json_string_value(json_object_get(json_array_get(q, 0), "error"));
	ck_assert_ptr_nonnull(e);
	ck_assert_msg(strstr(e, "SET_VRING_NUM") && strstr(e, "bad reply"), "error: %s", e);
	json_decref(q);
	/* A driver reset tries the backend again. */
	pthread_mutex_lock(&be.lock);
	be.bad_vring_num = false;
	pthread_mutex_unlock(&be.lock);
	virtio_dev_set_status(vdev, 0);
	run_loop_until("connected", 1);
	ck_assert_int_eq(driver_ok(), 0);
	ck_assert_str_eq(state(), "running");
}
END_TEST

static Suite *vu_dev_suite(void)
{
	Suite *s = suite_create("vhost-user-dev");
	TCase *tc = tcase_create("device");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_create_features_config);
	tcase_add_test(tc, test_driver_ok_sets_up_rings);
	tcase_add_test(tc, test_pause_takes_rings_back);
	tcase_add_test(tc, test_reconnect_resumes_with_inflight);
	tcase_add_test(tc, test_bad_reply_at_driver_ok);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(vu_dev_suite());
}
