/* virtio-blk backend: Linux native AIO (libaio), aio=native. Only
 * asynchronous with O_DIRECT, so it requires cache=none; the device core
 * bounces guest buffers that aren't 512-byte aligned. Reads, writes and
 * flushes go through io_submit; discard and write-zeroes (no AIO opcode) run
 * synchronously and complete through the same eventfd. */
#include "devices/virtio/blk/blk.h"

#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

_Static_assert(sizeof(struct iocb) <= sizeof(((struct blk_req *)0)->be_priv),
	       "struct iocb must fit in blk_req.be_priv");

struct aio_be {
	io_context_t ctx;
	struct iocb **queued;		/* prepared, not yet given to io_submit */
	unsigned nqueued;
	unsigned in_kernel;		/* submitted, not yet reaped */
	struct blk_req *sync_done;	/* completed without the kernel */
	struct io_event *events;
};

static int aio_init(struct blk_backend *be)
{
	struct aio_be *a;
	int ret;

	if (!be->direct)
		return -EINVAL;	/* buffered libaio would block in io_submit */
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->queued = calloc(be->depth, sizeof(*a->queued));
	a->events = calloc(be->depth, sizeof(*a->events));
	if (!a->queued || !a->events) {
		ret = -ENOMEM;
		goto err;
	}
	ret = io_setup((int)be->depth, &a->ctx);
	if (ret < 0)
		goto err;
	be->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (be->efd < 0) {
		ret = -errno;
		io_destroy(a->ctx);
		goto err;
	}
	be->priv = a;
	return 0;

err:
	free(a->queued);
	free(a->events);
	free(a);
	return ret;
}

static void aio_destroy(struct blk_backend *be)
{
	struct aio_be *a = be->priv;

	if (!a)
		return;
	io_destroy(a->ctx);
	free(a->queued);
	free(a->events);
	free(a);
	be->priv = NULL;
	if (be->efd >= 0)
		close(be->efd);
	be->efd = -1;
}

static void sync_complete(struct blk_backend *be, struct blk_req *req, int result)
{
	struct aio_be *a = be->priv;

	req->result = result;
	req->next = a->sync_done;
	a->sync_done = req;
	(void)eventfd_write(be->efd, 1);
}

static int aio_submit(struct blk_backend *be, struct blk_req *req)
{
	struct aio_be *a = be->priv;
	struct iocb *cb = (struct iocb *)(void *)req->be_priv;

	switch (req->op) {
	case BLK_OP_READ:
		io_prep_preadv(cb, be->fd, req->io_iov, (int)req->io_niov, (long long)req->off);
		break;
	case BLK_OP_WRITE:
		io_prep_pwritev(cb, be->fd, req->io_iov, (int)req->io_niov, (long long)req->off);
		break;
	case BLK_OP_FLUSH:
		io_prep_fdsync(cb, be->fd);
		break;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		sync_complete(be, req, blk_exec_sync(be->fd, req));
		return 0;
	default:
		return -EINVAL;
	}
	if (a->nqueued + a->in_kernel >= be->depth)
		return -EAGAIN;
	cb->data = req;
	io_set_eventfd(cb, be->efd);
	a->queued[a->nqueued++] = cb;
	return 0;
}

static void aio_kick(struct blk_backend *be)
{
	struct aio_be *a = be->priv;
	unsigned done = 0;

	while (done < a->nqueued) {
		int n = io_submit(a->ctx, (long)(a->nqueued - done), a->queued + done);

		if (n > 0) {
			a->in_kernel += (unsigned)n;
			done += (unsigned)n;
			continue;
		}
		if (n == -EAGAIN && a->in_kernel)
			break;	/* retried on the next kick, after a completion */
		/* The first iocb failed (or the kernel is out of AIO resources with
		 * nothing of ours in flight): complete it another way. */
		struct iocb *cb = a->queued[done++];
		struct blk_req *req = cb->data;

		if (req->op == BLK_OP_FLUSH && n == -EINVAL)
			sync_complete(be, req, blk_exec_sync(be->fd, req));	/* no AIO fsync here */
		else if (n == -EAGAIN || n == 0)
			sync_complete(be, req, blk_exec_sync(be->fd, req));
		else
			sync_complete(be, req, n);
	}
	memmove(a->queued, a->queued + done, (a->nqueued - done) * sizeof(*a->queued));
	a->nqueued -= done;
}

static unsigned aio_reap(struct blk_backend *be, struct blk_req **done, unsigned max)
{
	struct aio_be *a = be->priv;
	struct timespec zero = { 0, 0 };
	eventfd_t v;
	unsigned n = 0;
	int got;

	(void)eventfd_read(be->efd, &v);
	while (n < max && a->sync_done) {
		struct blk_req *req = a->sync_done;

		a->sync_done = req->next;
		done[n++] = req;
	}
	if (n == max || !a->in_kernel)
		return n;
	got = io_getevents(a->ctx, 0, (long)(max - n), a->events, &zero);
	for (int i = 0; i < got; i++) {
		struct blk_req *req = a->events[i].data;
		long res = (long)a->events[i].res;

		a->in_kernel--;
		if (res < 0)
			req->result = (int)res;
		else if ((req->op == BLK_OP_READ || req->op == BLK_OP_WRITE) &&
			 (uint64_t)res < req->len)
			req->result = blk_exec_rw_from(be->fd, req, (uint64_t)res);
		else
			req->result = 0;
		done[n++] = req;
	}
	return n;
}

const struct blk_backend_ops blk_aio_ops = {
	.name = "native",
	.init = aio_init,
	.destroy = aio_destroy,
	.submit = aio_submit,
	.kick = aio_kick,
	.reap = aio_reap,
};
