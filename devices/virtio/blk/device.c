/* virtio-blk, the device: its request queue served on a struct dev_worker
 * (the kick eventfd and the backend's completion eventfd), completions
 * pushed in batches with at most one interrupt each, the virtio ops, and
 * the registry descriptor for --disk. */
#include "devices/virtio/blk/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/log.h"
#include "devices/virtio/registry.h"
#include "devices/worker.h"
#include "vmm/config.h"

/* O_DIRECT alignment for buffers and lengths, and the bounce limits. */
#define BLK_DIO_ALIGN		512
#define BLK_BOUNCE_REQ_MAX	(4U << 20)
#define BLK_BOUNCE_TOTAL_MAX	(64U << 20)
#define BLK_REAP_BATCH		64

/* ---- The device ---- */

struct blk_dev {
	struct virtio_device vdev;	/* first: container_of is a cast */
	struct blk_opts opts;
	bool lock_pending;	/* opts.defer_lock: the flock is still to take */
	struct blk_geom geom;
	uint8_t cfg[sizeof(struct virtio_blk_config)];	/* as the driver reads it */
	int fd;
	struct blk_backend be;

	/* Worker state: touched only on the worker, or while it is parked. */
	struct blk_req *reqs;
	unsigned nreqs;
	struct blk_req *free;
	struct blk_req *deferred, *deferred_tail;
	unsigned inflight;		/* at the backend */
	uint64_t inflight_bytes;	/* their io_bytes */
	size_t bounce_bytes;
	bool active;
	bool draining;
	bool pushed;			/* used entries since the last notify check */
	struct vq_chain chain;
	struct blk_stats stats;

	struct dev_worker *worker;
};

static struct blk_dev *to_blk(struct virtio_device *dev)
{
	return container_of(dev, struct blk_dev, vdev);
}

struct blk_dev *blk_of(struct virtio_device *dev)
{
	return to_blk(dev);
}

struct virtio_device *blk_virtio(struct blk_dev *blk)
{
	return &blk->vdev;
}

uint64_t blk_capacity(const struct blk_dev *blk)
{
	return blk->geom.capacity;
}

bool blk_is_direct(const struct blk_dev *blk)
{
	return blk->be.direct;
}

static struct ratelimit blk_rl = RATELIMIT_INIT(5000, 10);

/* Only the I/O thread (or a caller holding the device paused) updates the
 * counters; blk_get_stats() reads them from any thread without pausing. */
#define STAT_INC(b, f)		__atomic_fetch_add(&(b)->stats.f, 1, __ATOMIC_RELAXED)
#define STAT_ADD(b, f, n)	__atomic_fetch_add(&(b)->stats.f, (n), __ATOMIC_RELAXED)

static void req_release(struct blk_dev *b, struct blk_req *req)
{
	if (req->bounce) {
		free(req->bounce);
		req->bounce = NULL;
		b->bounce_bytes -= req->len;
	}
	req->next = b->free;
	b->free = req;
}

static void count_done(struct blk_dev *b, const struct blk_req *req)
{
	bool ok = req->status == VIRTIO_BLK_S_OK;

	if (req->status == VIRTIO_BLK_S_IOERR)
		STAT_INC(b, ioerr);
	else if (req->status == VIRTIO_BLK_S_UNSUPP)
		STAT_INC(b, unsupp);
	switch (req->op) {
	case BLK_OP_READ:
		if (ok)
			STAT_ADD(b, rd_bytes, req->len);
		else
			STAT_INC(b, failed_reads);
		break;
	case BLK_OP_WRITE:
		if (ok)
			STAT_ADD(b, wr_bytes, req->len);
		else
			STAT_INC(b, failed_writes);
		break;
	case BLK_OP_FLUSH:
		if (!ok)
			STAT_INC(b, failed_flushes);
		break;
	default:
		break;
	}
}

/* Complete req on the used ring (no interrupt yet) and free it. */
static void req_complete(struct blk_dev *b, struct blk_req *req)
{
	struct virtqueue *vq = &b->vdev.queues[0];

	virtqueue_push(vq, req->head, blk_req_finish(req));
	b->pushed = true;
	count_done(b, req);
	req_release(b, req);
}

static void notify_batch(struct blk_dev *b)
{
	if (!b->pushed)
		return;
	b->pushed = false;
	STAT_INC(b, batches);
	if (virtqueue_should_notify(&b->vdev.queues[0]) && b->vdev.notify_used) {
		STAT_INC(b, notifications);
		b->vdev.notify_used(&b->vdev, 0);
	}
}

static bool iov_aligned(const struct blk_req *req)
{
	for (unsigned i = 0; i < req->niov; i++)
		if ((uintptr_t)req->iov[i].iov_base % BLK_DIO_ALIGN ||
		    req->iov[i].iov_len % BLK_DIO_ALIGN)
			return false;
	return true;
}

static uint64_t req_io_bytes(const struct blk_req *req)
{
	uint64_t n = 0;

	switch (req->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		return req->len;
	case BLK_OP_WRITE_ZEROES:
		for (unsigned i = 0; i < req->nranges; i++)
			n += req->ranges[i].len;
		return n;
	default:
		return 0;
	}
}

/* Bounce, if needed, and hand req to the backend. Returns -EAGAIN when it
 * must wait for resources (it then stays with the caller); otherwise req is
 * either in flight or already completed. */
static int req_issue(struct blk_dev *b, struct blk_req *req)
{
	int ret;

	req->io_bytes = req_io_bytes(req);
	if (b->inflight && b->inflight_bytes + req->io_bytes > BLK_INFLIGHT_BYTES_MAX)
		return -EAGAIN;
	req->io_iov = req->iov;
	req->io_niov = req->niov;
	if (!req->bounce && b->be.direct && (req->op == BLK_OP_READ || req->op == BLK_OP_WRITE) &&
	    !iov_aligned(req)) {
		if (req->len > BLK_BOUNCE_REQ_MAX) {
			if (ratelimit_allow(&blk_rl))
				log_warn("virtio-blk: unaligned %llu-byte request too large to bounce",
					 (unsigned long long)req->len);
			goto fail;
		}
		if (b->bounce_bytes + req->len > BLK_BOUNCE_TOTAL_MAX && b->inflight)
			return -EAGAIN;
		if (posix_memalign(&req->bounce, 4096, req->len)) {
			req->bounce = NULL;
			if (b->inflight)
				return -EAGAIN;
			goto fail;
		}
		b->bounce_bytes += req->len;
		STAT_INC(b, bounced);
		if (req->op == BLK_OP_WRITE) {
			size_t done = 0;

			for (unsigned i = 0; i < req->niov; i++) {
				memcpy((uint8_t *)req->bounce + done, req->iov[i].iov_base,
				       req->iov[i].iov_len);
				done += req->iov[i].iov_len;
			}
		}
		req->bounce_iov = (struct iovec){ .iov_base = req->bounce, .iov_len = req->len };
	}
	if (req->bounce) {
		req->io_iov = &req->bounce_iov;
		req->io_niov = 1;
	}
	req->result = 0;
	ret = b->be.ops->submit(&b->be, req);
	if (ret == -EAGAIN && b->inflight)
		return -EAGAIN;	/* the bounce buffer, if any, is kept */
	if (ret)
		goto fail;
	b->inflight++;
	b->inflight_bytes += req->io_bytes;
	if (b->inflight > __atomic_load_n(&b->stats.max_inflight, __ATOMIC_RELAXED))
		__atomic_store_n(&b->stats.max_inflight, b->inflight, __ATOMIC_RELAXED);
	return 0;

fail:
	req->status = VIRTIO_BLK_S_IOERR;
	req_complete(b, req);
	return 0;
}

static void defer_request(struct blk_dev *b, struct blk_req *req)
{
	req->next = NULL;
	if (b->deferred_tail)
		b->deferred_tail->next = req;
	else
		b->deferred = req;
	b->deferred_tail = req;
}

static void issue_deferred(struct blk_dev *b)
{
	while (b->deferred) {
		struct blk_req *req = b->deferred;

		b->deferred = req->next;
		if (!b->deferred)
			b->deferred_tail = NULL;
		if (req_issue(b, req) == -EAGAIN) {
			req->next = b->deferred;
			b->deferred = req;
			if (!b->deferred_tail)
				b->deferred_tail = req;
			return;
		}
	}
}

static void handle_chain(struct blk_dev *b, struct blk_req *req)
{
	struct virtqueue *vq = &b->vdev.queues[0];
	int ret = blk_parse_request(&b->geom, &b->chain, req);

	STAT_INC(b, requests);
	if (ret < 0) {
		/* No status byte: not a block request we can answer. */
		if (ratelimit_allow(&blk_rl))
			log_warn("virtio-blk: request without a writable status byte; device needs reset");
		virtqueue_push(vq, req->head, 0);
		b->pushed = true;
		req_release(b, req);
		virtqueue_mark_broken(vq, -EINVAL);
		virtio_dev_set_needs_reset(&b->vdev);
		return;
	}
	switch (req->op) {
	case BLK_OP_READ: STAT_INC(b, reads); break;
	case BLK_OP_WRITE: STAT_INC(b, writes); break;
	case BLK_OP_FLUSH: STAT_INC(b, flushes); break;
	case BLK_OP_DISCARD: STAT_INC(b, discards); break;
	case BLK_OP_WRITE_ZEROES: STAT_INC(b, write_zeroes); break;
	case BLK_OP_NONE: break;
	}
	if (ret == 1) {
		if (req->status == VIRTIO_BLK_S_OK && req->used_len > 1)
			STAT_INC(b, get_ids);
		req_complete(b, req);
		return;
	}
	if (b->deferred || req_issue(b, req) == -EAGAIN)
		defer_request(b, req);
}

static void process_queue(struct blk_dev *b)
{
	struct virtqueue *vq = &b->vdev.queues[0];
	unsigned popped = 0;	/* chains popped by this call */
	int ret;

	if (!b->active || !vq->ready)
		return;
	if (b->draining)
		goto out;	/* only what is at the backend is waited for */
	issue_deferred(b);
	for (;;) {
		virtqueue_disable_notify(vq);
		while (!b->deferred && b->free && !vq->error) {
			struct blk_req *req;

			ret = virtqueue_pop(vq, &b->chain);
			if (ret == 0)
				break;
			if (ret < 0) {
				b->pushed = false;	/* queue_error notifies for its len-0 push */
				virtio_dev_queue_error(&b->vdev, 0, ret);
				break;
			}
			req = b->free;
			b->free = req->next;
			handle_chain(b, req);
			/* Issue early: after the 1st, 2nd, 4th, 8th... request
			 * of a pass, not only at its end. The kernel prepares a
			 * whole submission (io_uring_enter, io_submit: ~1 us per
			 * O_DIRECT request, under a block plug) before the first
			 * request of it reaches the disk, so one submit for a
			 * burst of 32 left the disk idle for ~30 us per burst.
			 * Doubling keeps the submits per burst logarithmic. */
			popped++;
			if (!(popped & (popped - 1)) && b->be.ops->kick)
				b->be.ops->kick(&b->be);
		}
		/* Waiting for a completion to free resources: it re-runs us. */
		if (b->deferred || !b->free || vq->error)
			break;
		if (!virtqueue_enable_notify(vq))
			break;
	}
out:
	if (b->be.ops->kick)
		b->be.ops->kick(&b->be);
	notify_batch(b);
}

static void finish_io(struct blk_dev *b, struct blk_req *req)
{
	b->inflight--;
	b->inflight_bytes -= req->io_bytes;
	if (req->op == BLK_OP_WRITE_ZEROES && blk_errno_unsupported(req->result))
		req->result = blk_exec_sync(b->fd, req);
	if (req->op == BLK_OP_DISCARD && blk_errno_unsupported(req->result))
		req->result = 0;
	if (req->result) {
		if (ratelimit_allow(&blk_rl))
			log_warn("virtio-blk: %s I/O error at offset %llu: %s", b->opts.path,
				 (unsigned long long)req->off, strerror(-req->result));
		req->status = VIRTIO_BLK_S_IOERR;
	} else {
		req->status = VIRTIO_BLK_S_OK;
		if (req->bounce && req->op == BLK_OP_READ) {
			size_t done = 0;

			for (unsigned i = 0; i < req->niov; i++) {
				memcpy(req->iov[i].iov_base, (uint8_t *)req->bounce + done,
				       req->iov[i].iov_len);
				done += req->iov[i].iov_len;
			}
		}
	}
	req_complete(b, req);
}

/* Collect every finished request, push them all, then at most one interrupt. */
static void reap_completions(struct blk_dev *b)
{
	struct blk_req *done[BLK_REAP_BATCH];
	unsigned n;

	do {
		n = b->be.ops->reap(&b->be, done, BLK_REAP_BATCH);
		for (unsigned i = 0; i < n; i++)
			finish_io(b, done[i]);
	} while (n == BLK_REAP_BATCH);
	/* Completions freed requests and bounce space: carry on. */
	process_queue(b);
	notify_batch(b);
}

/* Wait for what is at the backend (bounded by BLK_INFLIGHT_BYTES_MAX).
 * Requests not yet issued stay deferred for a pause; when the thread ends
 * (final) they fail. */
static void drain(struct blk_dev *b, bool final)
{
	b->draining = true;
	while (b->inflight) {
		struct pollfd pfd = { .fd = b->be.efd, .events = POLLIN };

		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
			break;
		reap_completions(b);
	}
	while (final && b->deferred) {
		struct blk_req *req = b->deferred;

		b->deferred = req->next;
		req->status = VIRTIO_BLK_S_IOERR;
		req_complete(b, req);
	}
	if (final)
		b->deferred_tail = NULL;
	notify_batch(b);
	b->draining = false;
}

/* ---- On the worker ---- */

static void on_kick(void *opaque, uint32_t events)
{
	struct blk_dev *b = opaque;
	eventfd_t v;

	(void)events;
	(void)eventfd_read(b->vdev.kick_fd[0], &v);
	process_queue(b);
}

static void on_completion(void *opaque, uint32_t events)
{
	(void)events;
	reap_completions(opaque);
}

/* A pause drains what is at the backend; a stop also fails what waited. */
static void worker_quiesce(void *opaque, bool final)
{
	drain(opaque, final);
}

/* What waited during the pause, and kicks that came meanwhile. */
static void worker_resumed(void *opaque)
{
	process_queue(opaque);
}

static const struct dev_worker_ops blk_worker_ops = {
	.quiesce = worker_quiesce,
	.resumed = worker_resumed,
};

int blk_start(struct blk_dev *b)
{
	return dev_worker_start(b->worker);
}

/* Pauses nest: the device runs again only when every blk_pause() has had its
 * blk_resume(). A vCPU resetting the device and the VM pausing can overlap. */
void blk_pause(struct blk_dev *b)
{
	dev_worker_pause(b->worker);
}

/* After an incoming migration the source exits once it has our ACK, which
 * releases its lock: wait for that (bounded), and say so if it never goes.
 * Only from the VM-level resume (disk_resume), never a device reset's. */
static void take_deferred_lock(struct blk_dev *b)
{
	int op = (b->opts.readonly ? LOCK_SH : LOCK_EX) | LOCK_NB;

	b->lock_pending = false;
	for (int i = 0; i < 500; i++) {
		if (flock(b->be.fd, op) == 0)
			return;
		if (errno != EWOULDBLOCK && errno != EINTR)
			break;
		usleep(10000);
	}
	log_err("virtio-blk: %s: still locked by another process after the migration "
		"handover (is the source still running?); running without the lock",
		b->opts.path);
}

void blk_resume(struct blk_dev *b)
{
	dev_worker_resume(b->worker);
}

void blk_stop(struct blk_dev *b)
{
	dev_worker_stop(b->worker);
}

const struct blk_opts *blk_options(const struct blk_dev *b)
{
	return &b->opts;
}

void blk_get_stats(struct blk_dev *b, struct blk_stats *st)
{
#define LD(f) st->f = __atomic_load_n(&b->stats.f, __ATOMIC_RELAXED)
	LD(requests); LD(reads); LD(writes); LD(flushes); LD(discards); LD(write_zeroes);
	LD(get_ids); LD(ioerr); LD(unsupp); LD(notifications); LD(batches); LD(max_inflight);
	LD(bounced); LD(rd_bytes); LD(wr_bytes); LD(failed_reads); LD(failed_writes);
	LD(failed_flushes);
#undef LD
}

/* ---- virtio_device_ops ---- */

static void blk_config_read(struct virtio_device *dev, size_t off, void *data, size_t len)
{
	memcpy(data, to_blk(dev)->cfg + off, len);
}

static void free_reqs(struct blk_dev *b)
{
	free(b->reqs);
	b->reqs = NULL;
	b->nreqs = 0;
	b->free = NULL;
	b->deferred = b->deferred_tail = NULL;
}

static int blk_activate(struct virtio_device *dev)
{
	struct blk_dev *b = to_blk(dev);
	struct virtqueue *vq = &dev->queues[0];
	int ret = 0;

	if (!vq->enabled || !vq->ready)
		return -EINVAL;
	blk_pause(b);
	free_reqs(b);
	b->reqs = calloc(vq->size, sizeof(*b->reqs));
	if (!b->reqs) {
		ret = -ENOMEM;
		goto out;
	}
	b->nreqs = vq->size;
	for (unsigned i = 0; i < b->nreqs; i++)
		req_release(b, &b->reqs[i]);
	b->inflight = 0;
	b->inflight_bytes = 0;
	b->bounce_bytes = 0;
	b->pushed = false;
	b->active = true;
out:
	blk_resume(b);
	/* Pick up anything made available before DRIVER_OK. */
	if (!ret)
		virtio_dev_queue_notify(dev, 0);
	return ret;
}

static void blk_reset(struct virtio_device *dev)
{
	struct blk_dev *b = to_blk(dev);

	blk_pause(b);	/* drains: nothing is in flight after this */
	b->active = false;
	free_reqs(b);
	blk_resume(b);
}

static const struct virtio_device_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.config_size = sizeof(struct virtio_blk_config),
	.config_read = blk_config_read,
	.activate = blk_activate,
	.reset = blk_reset,
};

static int open_image(struct blk_dev *b, const struct blk_opts *o)
{
	int flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	uint64_t size;
	int fd;

	b->be.direct = o->cache == BLK_CACHE_NONE;
	fd = open(o->path, flags | (b->be.direct ? O_DIRECT : 0));
	if (fd < 0 && b->be.direct && errno == EINVAL) {
		if (o->aio == BLK_AIO_NATIVE) {
			virtio_create_error("%s: file system refuses O_DIRECT, which aio=native "
					    "needs", o->path);
			return -EINVAL;
		}
		log_warn("virtio-blk: %s: file system refuses O_DIRECT; using the page cache",
			 o->path);
		b->be.direct = false;
		fd = open(o->path, flags);
	}
	if (fd < 0) {
		int ret = -errno;

		virtio_create_error("cannot open %s: %s", o->path, strerror(errno));
		return ret;
	}
	if (o->defer_lock) {
		b->lock_pending = true;
	} else if (flock(fd, (o->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		virtio_create_error("%s is in use by another process", o->path);
		close(fd);
		return -EBUSY;
	}
	if (fstat(fd, &st) < 0)
		goto err_errno;
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			goto err_errno;
	} else {
		virtio_create_error("%s is not a regular file or block device", o->path);
		close(fd);
		return -EINVAL;
	}
	if (size % BLK_SECTOR_SIZE)
		log_warn("virtio-blk: %s: size is not a multiple of 512; the tail is not visible",
			 o->path);
	b->fd = fd;
	b->geom.capacity = size >> BLK_SECTOR_SHIFT;
	return 0;

err_errno: {
	int ret = -errno;

	virtio_create_error("%s: %s", o->path, strerror(errno));
	close(fd);
	return ret;
}
}

#define CFG(field)	(b->cfg + offsetof(struct virtio_blk_config, field))

static void fill_config(struct blk_dev *b)
{
	memset(b->cfg, 0, sizeof(b->cfg));
	wr64(CFG(capacity), b->geom.capacity);
	wr32(CFG(size_max), b->geom.size_max);
	wr32(CFG(seg_max), b->geom.seg_max);
	wr32(CFG(blk_size), BLK_SECTOR_SIZE);
	wr16(CFG(num_queues), 1);
	wr32(CFG(max_discard_sectors), b->geom.dwz_sectors_max);
	wr32(CFG(max_discard_seg), b->geom.dwz_seg_max);
	wr32(CFG(discard_sector_alignment), 8);
	wr32(CFG(max_write_zeroes_sectors), b->geom.wz_sectors_max);
	wr32(CFG(max_write_zeroes_seg), b->geom.dwz_seg_max);
	*CFG(write_zeroes_may_unmap) = 1;
}

#undef CFG

int blk_create(struct blk_dev **out, const struct blk_opts *o, const struct guest_mem *gm)
{
	uint64_t features;
	struct blk_dev *b;
	int ret;

	*out = NULL;
	if (o->aio == BLK_AIO_NATIVE && o->cache != BLK_CACHE_NONE) {
		virtio_create_error("aio=native requires cache=none");
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->opts = *o;
	b->fd = b->be.efd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		b->vdev.kick_fd[q] = -1;

	b->geom.readonly = o->readonly;
	memcpy(b->geom.serial, o->serial, strnlen(o->serial, sizeof(b->geom.serial)));
	b->geom.seg_max = BLK_SEG_MAX;
	b->geom.size_max = BLK_SIZE_MAX;
	b->geom.dwz_seg_max = BLK_DWZ_SEG_MAX;
	b->geom.dwz_sectors_max = BLK_DWZ_SECTORS_MAX;
	b->geom.wz_sectors_max = BLK_WZ_SECTORS_MAX;

	ret = open_image(b, o);
	if (ret)
		goto err;
	fill_config(b);

	switch (o->aio) {
	case BLK_AIO_NATIVE: b->be.ops = &blk_aio_ops; break;
	case BLK_AIO_THREADS: b->be.ops = &blk_threads_ops; break;
	default: b->be.ops = &blk_io_uring_ops; break;
	}
	b->be.fd = b->fd;
	b->be.depth = BLK_QUEUE_SIZE;
	ret = b->be.ops->init(&b->be);
	if (ret) {
		virtio_create_error("%s: aio=%s backend: %s", o->path, blk_aio_name(o->aio),
			strerror(-ret));
		b->be.ops = NULL;
		goto err;
	}

	features = VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) |
		   VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) |
		   VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
	if (o->readonly)
		features |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	else
		features |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	ret = virtio_dev_init(&b->vdev, &blk_ops, gm, 1, BLK_QUEUE_SIZE, features);
	if (ret)
		goto err;

	ret = dev_worker_create(&b->worker, "virtio-blk", &blk_worker_ops, b);
	if (ret)
		goto err;
	ret = dev_worker_add_fd(b->worker, b->vdev.kick_fd[0], 0, on_kick, b);
	if (!ret)
		ret = dev_worker_add_fd(b->worker, b->be.efd, 0, on_completion, b);
	if (ret)
		goto err;
	log_debug("virtio-blk: %s: %llu sectors%s, aio=%s%s", o->path,
		  (unsigned long long)b->geom.capacity, o->readonly ? ", read-only" : "",
		  blk_aio_name(o->aio), b->be.direct ? ", O_DIRECT" : "");
	*out = b;
	return 0;

err:
	blk_destroy(b);
	return ret;
}

void blk_destroy(struct blk_dev *b)
{
	if (!b)
		return;
	dev_worker_destroy(b->worker);	/* stops it first */
	if (b->be.ops)
		b->be.ops->destroy(&b->be);
	free_reqs(b);
	virtio_dev_destroy(&b->vdev);
	if (b->fd >= 0)
		close(b->fd);
	free(b);
}

/* ---- The device type: --disk ---- */

static int disk_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
{
	struct blk_opts o;
	struct blk_dev *b;
	char err[128];
	int ret;

	if (blk_opts_from_table(opts, &o, err, sizeof(err))) {
		virtio_create_error("%s", err);
		return -EINVAL;
	}
	o.defer_lock = ctx->cfg && ctx->cfg->incoming;
	ret = blk_create(&b, &o, ctx->mem);
	if (ret)
		return ret;
	*out = &b->vdev;
	return 0;
}

static int disk_start(struct virtio_device *dev)
{
	return blk_start(to_blk(dev));
}

static void disk_stop(struct virtio_device *dev)
{
	blk_stop(to_blk(dev));
}

static void disk_destroy(struct virtio_device *dev)
{
	blk_destroy(to_blk(dev));
}

/* VM pause: the worker finishes what is at the backend and parks. */
static void disk_pause(struct virtio_device *dev)
{
	blk_pause(to_blk(dev));
}

/* The VM runs again. After an incoming migration that is after the ACK,
 * so the source is exiting and its lock goes. */
static void disk_resume(struct virtio_device *dev)
{
	struct blk_dev *b = to_blk(dev);

	if (b->lock_pending)
		take_deferred_lock(b);
	blk_resume(b);
}

/* Paused. Requests popped but not yet issued are handed back to the ring
 * (they are always the last ones popped), so the queue has none in flight
 * and a restored device pops them again. */
static json_t *disk_save(struct virtio_device *dev)
{
	struct blk_dev *b = to_blk(dev);
	uint16_t n = 0;

	while (b->deferred) {
		struct blk_req *req = b->deferred;

		b->deferred = req->next;
		req_release(b, req);
		n++;
	}
	b->deferred_tail = NULL;
	if (n)
		virtqueue_unpop(&dev->queues[0], n);
	return json_pack("{s:I, s:b}", "capacity", (json_int_t)b->geom.capacity,
			 "readonly", b->geom.readonly);
}

static int disk_load(struct virtio_device *dev, json_t *saved, char *err, size_t errlen)
{
	struct blk_dev *b = to_blk(dev);
	json_t *cap = json_object_get(saved, "capacity"), *ro = json_object_get(saved, "readonly");

	if (!json_is_integer(cap) || !json_is_boolean(ro)) {
		snprintf(err, errlen, "virtio-blk: expected capacity and readonly");
		return -EINVAL;
	}
	if ((uint64_t)json_integer_value(cap) != b->geom.capacity) {
		snprintf(err, errlen, "virtio-blk %s: %llu sectors saved, the image has %llu",
			 b->opts.path, (unsigned long long)json_integer_value(cap),
			 (unsigned long long)b->geom.capacity);
		return -EINVAL;
	}
	if (json_is_true(ro) != b->geom.readonly) {
		snprintf(err, errlen, "virtio-blk %s: saved %s, now %s", b->opts.path,
			 json_is_true(ro) ? "read-only" : "read-write",
			 b->geom.readonly ? "read-only" : "read-write");
		return -EINVAL;
	}
	return 0;
}

static struct virtio_device_desc blk_desc = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x018000,	/* mass storage, other */
	.options = &blk_option_table,
	.io = VIRTIO_IO_OWN,
	.create = disk_create,
	.start = disk_start,
	.stop = disk_stop,
	.destroy = disk_destroy,
	.pause = disk_pause,
	.resume = disk_resume,
	.save = disk_save,
	.load = disk_load,
	.qmp = blk_qmp_commands,
};
VIRTIO_DEVICE_REGISTER(blk_desc);
