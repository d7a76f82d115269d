/* virtio-blk backend: io_uring (the default). Submissions are batched until
 * kick(); completions signal an eventfd registered with the ring. */
#include "devices/virtio/blk/blk.h"

#include <errno.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct uring_be {
	struct io_uring ring;
	unsigned queued;	/* SQEs prepared since the last submit */
	unsigned entries;	/* SQ size */
};

static int uring_init(struct blk_backend *be)
{
	struct uring_be *u = calloc(1, sizeof(*u));
	unsigned entries = 1;
	int ret;

	if (!u)
		return -ENOMEM;
	while (entries < be->depth * 2 && entries < 4096)
		entries <<= 1;
	ret = io_uring_queue_init(entries, &u->ring, 0);
	if (ret < 0) {
		free(u);
		return ret;
	}
	be->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (be->efd < 0) {
		ret = -errno;
		goto err;
	}
	ret = io_uring_register_eventfd(&u->ring, be->efd);
	if (ret < 0)
		goto err;
	u->entries = entries;
	be->priv = u;
	return 0;

err:
	if (be->efd >= 0)
		close(be->efd);
	be->efd = -1;
	io_uring_queue_exit(&u->ring);
	free(u);
	return ret;
}

static void uring_destroy(struct blk_backend *be)
{
	struct uring_be *u = be->priv;

	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	free(u);
	be->priv = NULL;
	if (be->efd >= 0)
		close(be->efd);
	be->efd = -1;
}

static unsigned sqes_needed(const struct blk_req *req)
{
	return req->op == BLK_OP_DISCARD || req->op == BLK_OP_WRITE_ZEROES ? req->nranges : 1;
}

static int uring_submit(struct blk_backend *be, struct blk_req *req)
{
	struct uring_be *u = be->priv;
	unsigned need = sqes_needed(req);

	if (need == 0 || need > u->entries)
		return -EINVAL;
	if (io_uring_sq_space_left(&u->ring) < need) {
		/* Make room by issuing what's queued. */
		io_uring_submit(&u->ring);
		u->queued = 0;
		if (io_uring_sq_space_left(&u->ring) < need)
			return -EAGAIN;
	}
	req->pending = need;
	for (unsigned i = 0; i < need; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
		const struct blk_range *r = &req->ranges[i];
		int mode;

		switch (req->op) {
		case BLK_OP_READ:
			io_uring_prep_readv(sqe, be->fd, req->io_iov, req->io_niov, req->off);
			break;
		case BLK_OP_WRITE:
			io_uring_prep_writev(sqe, be->fd, req->io_iov, req->io_niov, req->off);
			break;
		case BLK_OP_FLUSH:
			io_uring_prep_fsync(sqe, be->fd, IORING_FSYNC_DATASYNC);
			break;
		case BLK_OP_DISCARD:
		case BLK_OP_WRITE_ZEROES:
			mode = FALLOC_FL_KEEP_SIZE |
			       (req->op == BLK_OP_DISCARD || r->unmap ? FALLOC_FL_PUNCH_HOLE
								      : FALLOC_FL_ZERO_RANGE);
			io_uring_prep_fallocate(sqe, be->fd, mode, r->off, r->len);
			break;
		default:
			return -EINVAL;	/* only reached with i == 0: nothing queued */
		}
		io_uring_sqe_set_data(sqe, req);
		u->queued++;
	}
	return 0;
}

static void uring_kick(struct blk_backend *be)
{
	struct uring_be *u = be->priv;

	if (u->queued) {
		io_uring_submit(&u->ring);
		u->queued = 0;
	}
}

static unsigned uring_reap(struct blk_backend *be, struct blk_req **done, unsigned max)
{
	struct uring_be *u = be->priv;
	struct io_uring_cqe *cqe;
	eventfd_t v;
	unsigned n = 0;

	/* Clear the eventfd first: a CQE posted after this signals it again. */
	(void)eventfd_read(be->efd, &v);
	while (n < max && io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct blk_req *req = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&u->ring, cqe);
		if (!req)
			continue;
		if (res < 0) {
			if (!req->result)
				req->result = res;
		} else if ((req->op == BLK_OP_READ || req->op == BLK_OP_WRITE) &&
			   (uint64_t)res < req->len) {
			/* Rare short transfer: finish the rest here. */
			req->result = blk_exec_rw_from(be->fd, req, (uint64_t)res);
		}
		if (--req->pending == 0)
			done[n++] = req;
	}
	return n;
}

const struct blk_backend_ops blk_io_uring_ops = {
	.name = "io_uring",
	.init = uring_init,
	.destroy = uring_destroy,
	.submit = uring_submit,
	.kick = uring_kick,
	.reap = uring_reap,
};
