/* virtio-blk backend: a pool of threads doing preadv/pwritev/fdatasync/
 * fallocate (aio=threads). Completed requests go on a list and an eventfd
 * wakes the device's I/O thread. Workers are stopped with a flag and a
 * broadcast, never cancelled.
 *
 * The pool starts with BLK_THREADS_MIN workers and grows on demand, one
 * worker per queued request that no idle worker can take, up to
 * BLK_THREADS_MAX (QEMU's thread pool does the same, max 64): each worker
 * holds one synchronous request, so a fixed pool of N caps the requests at
 * the disk at N whatever the guest's queue depth. Workers, once started,
 * stay until the backend is destroyed. */
#include "devices/virtio/blk/blk.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define BLK_THREADS_MIN 4
#define BLK_THREADS_MAX 64

struct threads_be {
	pthread_t th[BLK_THREADS_MAX];
	unsigned nthreads;		/* written only by init/submit/destroy */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned nidle;			/* workers waiting for work (lock) */
	unsigned ntodo;			/* requests queued, not yet taken (lock) */
	struct blk_req *todo, *todo_tail;
	struct blk_req *done;
	bool stop;
	int fd;
	int efd;
};

static void *pool_worker(void *arg)
{
	struct threads_be *t = arg;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		struct blk_req *req;

		while (!t->stop && !t->todo) {
			t->nidle++;
			pthread_cond_wait(&t->cond, &t->lock);
			t->nidle--;
		}
		if (t->stop)
			break;
		req = t->todo;
		t->ntodo--;
		t->todo = req->next;
		if (!t->todo)
			t->todo_tail = NULL;
		pthread_mutex_unlock(&t->lock);

		req->result = blk_exec_sync(t->fd, req);

		pthread_mutex_lock(&t->lock);
		req->next = t->done;
		t->done = req;
		(void)eventfd_write(t->efd, 1);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void threads_destroy(struct blk_backend *be)
{
	struct threads_be *t = be->priv;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	for (unsigned i = 0; i < t->nthreads; i++)
		pthread_join(t->th[i], NULL);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t);
	be->priv = NULL;
	if (be->efd >= 0)
		close(be->efd);
	be->efd = -1;
}

static int threads_init(struct blk_backend *be)
{
	struct threads_be *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	be->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (be->efd < 0) {
		free(t);
		return -errno;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->fd = be->fd;
	t->efd = be->efd;
	be->priv = t;
	for (unsigned i = 0; i < BLK_THREADS_MIN; i++) {
		ret = pthread_create(&t->th[i], NULL, pool_worker, t);
		if (ret) {
			threads_destroy(be);
			return -ret;
		}
		t->nthreads++;
	}
	return 0;
}

static int threads_submit(struct blk_backend *be, struct blk_req *req)
{
	struct threads_be *t = be->priv;
	bool grow;

	if (req->op == BLK_OP_NONE)
		return -EINVAL;
	req->next = NULL;
	pthread_mutex_lock(&t->lock);
	if (t->todo_tail)
		t->todo_tail->next = req;
	else
		t->todo = req;
	t->todo_tail = req;
	t->ntodo++;
	/* Idle workers already signalled still count as idle until they wake
	 * and take a request, so this spawns exactly one worker per request
	 * that would otherwise wait. */
	grow = t->ntodo > t->nidle && t->nthreads < BLK_THREADS_MAX;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	/* A failed spawn is harmless: the request waits for a busy worker. */
	if (grow && pthread_create(&t->th[t->nthreads], NULL, pool_worker, t) == 0)
		t->nthreads++;
	return 0;
}

static unsigned threads_reap(struct blk_backend *be, struct blk_req **done, unsigned max)
{
	struct threads_be *t = be->priv;
	eventfd_t v;
	unsigned n = 0;

	(void)eventfd_read(be->efd, &v);
	pthread_mutex_lock(&t->lock);
	while (n < max && t->done) {
		done[n++] = t->done;
		t->done = t->done->next;
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

const struct blk_backend_ops blk_threads_ops = {
	.name = "threads",
	.init = threads_init,
	.destroy = threads_destroy,
	.submit = threads_submit,
	.reap = threads_reap,
};
