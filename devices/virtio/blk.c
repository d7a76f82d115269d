#include "devices/virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

/* O_DIRECT alignment for buffers and lengths, and the bounce limits. */
#define BLK_DIO_ALIGN		512
#define BLK_BOUNCE_REQ_MAX	(4U << 20)
#define BLK_BOUNCE_TOTAL_MAX	(64U << 20)
#define BLK_REAP_BATCH		64

/* ---- Option parsing ---- */

static const char *const aio_names[] = {
	[BLK_AIO_IO_URING] = "io_uring", [BLK_AIO_NATIVE] = "native", [BLK_AIO_THREADS] = "threads",
};

const char *blk_aio_name(enum blk_aio aio)
{
	return (unsigned)aio < sizeof(aio_names) / sizeof(aio_names[0]) ? aio_names[aio] : "?";
}

static int opt_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int opt_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		int n = snprintf(err, errlen, "--disk: ");

		va_start(ap, fmt);
		if (n > 0 && (size_t)n < errlen)
			vsnprintf(err + n, errlen - n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

int blk_parse_opts(const char *s, struct blk_opts *o, char *err, size_t errlen)
{
	enum { K_PATH, K_RO, K_SERIAL, K_AIO, K_CACHE, K_NR };
	static const char *const keys[K_NR] = { "path", "readonly", "serial", "aio", "cache" };
	bool seen[K_NR] = { false };
	char key[16], val[PATH_MAX];
	const char *p = s;

	memset(o, 0, sizeof(*o));
	o->aio = BLK_AIO_IO_URING;
	o->cache = BLK_CACHE_WRITEBACK;
	if (err && errlen)
		err[0] = '\0';
	if (!s)
		return opt_err(err, errlen, "missing path=FILE");

	while (*p) {
		size_t klen = strcspn(p, "=,"), vlen = 0;
		int k;

		if (p[klen] != '=')
			return opt_err(err, errlen, "expected key=value, got '%.*s'", (int)klen, p);
		if (klen == 0)
			return opt_err(err, errlen, "empty key before '='");
		if (klen >= sizeof(key))
			return opt_err(err, errlen, "unknown key '%.*s'", (int)klen, p);
		memcpy(key, p, klen);
		key[klen] = '\0';
		p += klen + 1;
		/* The value runs to the next single comma; ",," is a literal comma. */
		for (;;) {
			if (*p == '\0')
				break;
			if (*p == ',') {
				if (p[1] != ',')
					break;
				p++;
			}
			if (vlen + 1 >= sizeof(val))
				return opt_err(err, errlen, "value of %s is too long", key);
			val[vlen++] = *p++;
		}
		val[vlen] = '\0';
		if (*p == ',') {
			p++;
			if (*p == '\0')
				return opt_err(err, errlen, "trailing comma");
		}

		for (k = 0; k < K_NR; k++)
			if (!strcmp(key, keys[k]))
				break;
		if (k == K_NR)
			return opt_err(err, errlen,
				       "unknown key '%s' (expected path, readonly, serial, aio or cache)",
				       key);
		if (seen[k])
			return opt_err(err, errlen, "%s given twice", key);
		seen[k] = true;
		if (vlen == 0 && k != K_SERIAL)
			return opt_err(err, errlen, "empty value for %s", key);

		switch (k) {
		case K_PATH:
			memcpy(o->path, val, vlen + 1);
			break;
		case K_RO:
			if (parse_bool(val, &o->readonly))
				return opt_err(err, errlen, "bad value '%s' for readonly (expected on or off)",
					       val);
			break;
		case K_SERIAL:
			if (vlen > BLK_SERIAL_LEN)
				return opt_err(err, errlen, "serial '%s' is longer than %d bytes", val,
					       BLK_SERIAL_LEN);
			for (size_t i = 0; i < vlen; i++)
				if ((unsigned char)val[i] < 0x20 || (unsigned char)val[i] > 0x7e)
					return opt_err(err, errlen, "serial must be printable ASCII");
			memcpy(o->serial, val, vlen + 1);
			break;
		case K_AIO:
			if (!strcmp(val, "io_uring"))
				o->aio = BLK_AIO_IO_URING;
			else if (!strcmp(val, "native"))
				o->aio = BLK_AIO_NATIVE;
			else if (!strcmp(val, "threads"))
				o->aio = BLK_AIO_THREADS;
			else
				return opt_err(err, errlen,
					       "bad value '%s' for aio (expected io_uring, native or threads)",
					       val);
			break;
		case K_CACHE:
			if (!strcmp(val, "none"))
				o->cache = BLK_CACHE_NONE;
			else if (!strcmp(val, "writeback"))
				o->cache = BLK_CACHE_WRITEBACK;
			else
				return opt_err(err, errlen,
					       "bad value '%s' for cache (expected none or writeback)", val);
			break;
		}
	}
	if (!seen[K_PATH])
		return opt_err(err, errlen, "missing path=FILE");
	if (o->aio == BLK_AIO_NATIVE && o->cache != BLK_CACHE_NONE)
		return opt_err(err, errlen, "aio=native requires cache=none (O_DIRECT)");
	return 0;
}

/* ---- Request parsing ---- */

static int range_check(const struct blk_geom *g, uint64_t sector, uint64_t len, uint64_t *off)
{
	uint64_t end, cap_bytes = g->capacity << BLK_SECTOR_SHIFT;

	if (__builtin_mul_overflow(sector, (uint64_t)BLK_SECTOR_SIZE, off) ||
	    __builtin_add_overflow(*off, len, &end) || end > cap_bytes)
		return -EINVAL;
	return 0;
}

static int done_status(struct blk_req *req, uint8_t status)
{
	req->op = BLK_OP_NONE;
	req->status = status;
	req->used_len = 1;
	return 1;
}

static bool iov_fits_size_max(const struct blk_req *req, uint32_t size_max)
{
	for (unsigned i = 0; i < req->niov; i++)
		if (req->iov[i].iov_len > size_max)
			return false;
	return true;
}

static int parse_dwz(const struct blk_geom *g, struct vq_chain *c, struct blk_req *req,
		     bool discard)
{
	size_t len = vq_reader_remaining(c);
	unsigned nseg;

	if (g->readonly)
		return done_status(req, VIRTIO_BLK_S_IOERR);
	if (len == 0 || len % 16)
		return done_status(req, VIRTIO_BLK_S_IOERR);
	nseg = len / 16 > UINT_MAX ? UINT_MAX : (unsigned)(len / 16);
	if (nseg > g->dwz_seg_max || nseg > BLK_DWZ_SEG_MAX)
		return done_status(req, VIRTIO_BLK_S_IOERR);
	req->op = discard ? BLK_OP_DISCARD : BLK_OP_WRITE_ZEROES;
	req->nranges = 0;
	for (unsigned i = 0; i < nseg; i++) {
		struct {
			uint64_t sector;
			uint32_t num_sectors;
			uint32_t flags;
		} seg;
		uint32_t flags, num;
		uint64_t off;

		if (vq_reader_read(c, &seg, sizeof(seg)) != sizeof(seg))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		flags = le32toh(seg.flags);
		num = le32toh(seg.num_sectors);
		/* Unknown flags, or unmap on a discard, are unsupported (5.2.6.2). */
		if (flags & ~(uint32_t)VIRTIO_BLK_DWZ_F_UNMAP ||
		    (discard && (flags & VIRTIO_BLK_DWZ_F_UNMAP)))
			return done_status(req, VIRTIO_BLK_S_UNSUPP);
		if (num > (discard ? g->dwz_sectors_max : g->wz_sectors_max))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		if (range_check(g, le64toh(seg.sector), (uint64_t)num << BLK_SECTOR_SHIFT, &off))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		if (num == 0)
			continue;
		req->ranges[req->nranges++] = (struct blk_range){
			.off = off, .len = (uint64_t)num << BLK_SECTOR_SHIFT,
			.unmap = flags & VIRTIO_BLK_DWZ_F_UNMAP,
		};
	}
	if (req->nranges == 0)
		return done_status(req, VIRTIO_BLK_S_OK);
	req->used_len = 1;
	return 0;
}

int blk_parse_request(const struct blk_geom *g, struct vq_chain *c, struct blk_req *req)
{
	struct {
		uint32_t type;
		uint32_t ioprio;
		uint64_t sector;
	} hdr;
	uint64_t sector;
	size_t data;
	int n;

	req->head = c->head;
	req->op = BLK_OP_NONE;
	req->status = VIRTIO_BLK_S_OK;
	req->used_len = 1;
	req->off = req->len = 0;
	req->niov = req->nranges = 0;
	req->io_iov = NULL;
	req->io_niov = 0;
	req->bounce = NULL;
	req->result = 0;
	req->pending = 0;

	/* The status is the last byte of the last device-writable buffer. */
	req->status_ptr = vq_chain_last_writable(c);
	if (!req->status_ptr)
		return -EINVAL;
	/* The header is the first 16 device-readable bytes. */
	if (vq_reader_read(c, &hdr, sizeof(hdr)) != sizeof(hdr))
		return done_status(req, VIRTIO_BLK_S_IOERR);
	sector = le64toh(hdr.sector);
	/* Writable bytes before the status byte. */
	data = vq_writer_remaining(c) - 1;

	switch (le32toh(hdr.type)) {
	case VIRTIO_BLK_T_IN:
		if (data % BLK_SECTOR_SIZE || range_check(g, sector, data, &req->off))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		if (data == 0)
			return done_status(req, VIRTIO_BLK_S_OK);
		n = vq_writer_iov(c, data, req->iov, g->seg_max < BLK_SEG_MAX ? g->seg_max : BLK_SEG_MAX);
		if (n < 0)
			return done_status(req, VIRTIO_BLK_S_IOERR);
		req->niov = (unsigned)n;
		if (!iov_fits_size_max(req, g->size_max))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		req->op = BLK_OP_READ;
		req->len = data;
		req->used_len = (uint32_t)data + 1;
		return 0;

	case VIRTIO_BLK_T_OUT:
		data = vq_reader_remaining(c);
		if (g->readonly || data % BLK_SECTOR_SIZE || range_check(g, sector, data, &req->off))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		if (data == 0)
			return done_status(req, VIRTIO_BLK_S_OK);
		n = vq_reader_iov(c, data, req->iov, g->seg_max < BLK_SEG_MAX ? g->seg_max : BLK_SEG_MAX);
		if (n < 0)
			return done_status(req, VIRTIO_BLK_S_IOERR);
		req->niov = (unsigned)n;
		if (!iov_fits_size_max(req, g->size_max))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		req->op = BLK_OP_WRITE;
		req->len = data;
		return 0;

	case VIRTIO_BLK_T_FLUSH:
		req->op = BLK_OP_FLUSH;
		return 0;

	case VIRTIO_BLK_T_GET_ID: {
		char id[BLK_SERIAL_LEN];
		size_t len = data < sizeof(id) ? data : sizeof(id);

		if (len == 0)
			return done_status(req, VIRTIO_BLK_S_IOERR);
		memcpy(id, g->serial, sizeof(id));
		vq_writer_write(c, id, len);
		done_status(req, VIRTIO_BLK_S_OK);
		req->used_len = (uint32_t)len + 1;
		return 1;
	}

	case VIRTIO_BLK_T_DISCARD:
		return parse_dwz(g, c, req, true);
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return parse_dwz(g, c, req, false);
	default:
		return done_status(req, VIRTIO_BLK_S_UNSUPP);
	}
}

uint32_t blk_req_finish(struct blk_req *req)
{
	*req->status_ptr = req->status;
	return req->status == VIRTIO_BLK_S_OK ? req->used_len : 1;
}

/* ---- Synchronous execution ---- */

static int rw_all(int fd, const struct iovec *iov_in, unsigned niov, uint64_t off, bool write,
		  uint64_t skip)
{
	struct iovec iov[BLK_SEG_MAX + 1];
	unsigned first = 0;

	if (niov > BLK_SEG_MAX + 1)
		return -EINVAL;
	memcpy(iov, iov_in, niov * sizeof(*iov));
	off += skip;
	while (skip && first < niov) {
		if (skip >= iov[first].iov_len) {
			skip -= iov[first].iov_len;
			first++;
		} else {
			iov[first].iov_base = (uint8_t *)iov[first].iov_base + skip;
			iov[first].iov_len -= (size_t)skip;
			skip = 0;
		}
	}
	while (first < niov) {
		ssize_t n = write ? pwritev(fd, iov + first, (int)(niov - first), (off_t)off)
				  : preadv(fd, iov + first, (int)(niov - first), (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;	/* the image shrank under us */
		off += (uint64_t)n;
		while (n > 0 && first < niov) {
			if ((size_t)n >= iov[first].iov_len) {
				n -= (ssize_t)iov[first].iov_len;
				first++;
			} else {
				iov[first].iov_base = (uint8_t *)iov[first].iov_base + n;
				iov[first].iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

static int write_zeroes_slow(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeroes[64 << 10] __attribute__((aligned(4096)));

	while (len) {
		size_t chunk = len < sizeof(zeroes) ? (size_t)len : sizeof(zeroes);
		struct iovec iov = { .iov_base = (void *)zeroes, .iov_len = chunk };
		int ret = rw_all(fd, &iov, 1, off, true, 0);

		if (ret)
			return ret;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

static int falloc(int fd, int mode, uint64_t off, uint64_t len)
{
	return fallocate(fd, mode, (off_t)off, (off_t)len) ? -errno : 0;
}

static bool unsupported(int err)
{
	return err == -EOPNOTSUPP || err == -ENOSYS || err == -EINVAL || err == -ENOTTY;
}

int blk_exec_rw_from(int fd, struct blk_req *req, uint64_t done)
{
	if (req->op != BLK_OP_READ && req->op != BLK_OP_WRITE)
		return -EINVAL;
	if (done >= req->len)
		return 0;
	return rw_all(fd, req->io_iov ? req->io_iov : req->iov,
		      req->io_iov ? req->io_niov : req->niov, req->off,
		      req->op == BLK_OP_WRITE, done);
}

int blk_exec_sync(int fd, struct blk_req *req)
{
	int ret = 0;

	switch (req->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		return blk_exec_rw_from(fd, req, 0);
	case BLK_OP_FLUSH:
		return fdatasync(fd) ? -errno : 0;
	case BLK_OP_DISCARD:
		for (unsigned i = 0; i < req->nranges; i++) {
			ret = falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				     req->ranges[i].off, req->ranges[i].len);
			/* Discard is a hint: a file system that can't punch holes is fine. */
			if (ret && !unsupported(ret))
				return ret;
		}
		return 0;
	case BLK_OP_WRITE_ZEROES:
		for (unsigned i = 0; i < req->nranges; i++) {
			const struct blk_range *r = &req->ranges[i];

			ret = -EOPNOTSUPP;
			if (r->unmap)
				ret = falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->off, r->len);
			if (ret && unsupported(ret))
				ret = falloc(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, r->off, r->len);
			if (ret && unsupported(ret))
				ret = write_zeroes_slow(fd, r->off, r->len);
			if (ret)
				return ret;
		}
		return 0;
	default:
		return 0;
	}
}

/* ---- The device ---- */

enum { TAG_KICK, TAG_COMPL, TAG_STOP, TAG_PAUSE };

struct blk_dev {
	struct virtio_device vdev;	/* first: container_of is a cast */
	struct blk_opts opts;
	struct blk_geom geom;
	struct virtio_blk_config cfg;
	int fd;
	struct blk_backend be;

	/* I/O thread state. */
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

	/* Thread control. */
	pthread_t thread;
	bool thread_running;
	int epfd, stop_fd, pause_fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pause_count;		/* blk_pause() calls not yet resumed */
	bool pause_req, paused, stop_req;
	bool thread_exited;		/* the loop ended on its own */
};

static struct blk_dev *to_blk(struct virtio_device *dev)
{
	return (struct blk_dev *)dev;
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

static void flush_notify(struct blk_dev *b)
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

static void defer(struct blk_dev *b, struct blk_req *req)
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
		defer(b, req);
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
	flush_notify(b);
}

static void finish_io(struct blk_dev *b, struct blk_req *req)
{
	b->inflight--;
	b->inflight_bytes -= req->io_bytes;
	if (req->op == BLK_OP_WRITE_ZEROES && unsupported(req->result))
		req->result = blk_exec_sync(b->fd, req);
	if (req->op == BLK_OP_DISCARD && unsupported(req->result))
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
static void reap(struct blk_dev *b)
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
	flush_notify(b);
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
		reap(b);
	}
	while (final && b->deferred) {
		struct blk_req *req = b->deferred;

		b->deferred = req->next;
		req->status = VIRTIO_BLK_S_IOERR;
		req_complete(b, req);
	}
	if (final)
		b->deferred_tail = NULL;
	flush_notify(b);
	b->draining = false;
}

static void *io_thread(void *arg)
{
	struct blk_dev *b = arg;
	struct epoll_event ev[8];
	eventfd_t v;

	for (;;) {
		int n = epoll_wait(b->epfd, ev, 8, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("virtio-blk: epoll_wait: %s", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			switch (ev[i].data.u32) {
			case TAG_STOP:
				goto out;
			case TAG_PAUSE:
				(void)eventfd_read(b->pause_fd, &v);
				drain(b, false);
				pthread_mutex_lock(&b->lock);
				if (b->pause_req) {
					b->paused = true;
					pthread_cond_broadcast(&b->cond);
					while (b->pause_req && !b->stop_req)
						pthread_cond_wait(&b->cond, &b->lock);
					b->paused = false;
				}
				pthread_mutex_unlock(&b->lock);
				process_queue(b);	/* what waited, and new kicks */
				break;
			case TAG_KICK:
				(void)eventfd_read(b->vdev.kick_fd[0], &v);
				process_queue(b);
				break;
			case TAG_COMPL:
				reap(b);
				break;
			}
		}
	}
out:
	drain(b, true);
	pthread_mutex_lock(&b->lock);
	b->thread_exited = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

static int ep_add(int epfd, int fd, uint32_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int blk_start(struct blk_dev *b)
{
	int ret;

	if (b->thread_running)
		return 0;
	b->stop_req = b->pause_req = b->paused = b->thread_exited = false;
	b->pause_count = 0;
	ret = pthread_create(&b->thread, NULL, io_thread, b);
	if (ret)
		return -ret;
	b->thread_running = true;
	return 0;
}

/* Pauses nest: the device runs again only when every blk_pause() has had its
 * blk_resume(). A vCPU resetting the device and the VM pausing can overlap. */
void blk_pause(struct blk_dev *b)
{
	if (!b->thread_running)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->pause_count++ == 0) {
		b->pause_req = true;
		if (eventfd_write(b->pause_fd, 1) < 0)
			log_err("virtio-blk: pause: %s", strerror(errno));
	}
	while (!b->paused && !b->thread_exited)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

void blk_resume(struct blk_dev *b)
{
	if (!b->thread_running)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->pause_count && --b->pause_count == 0) {
		b->pause_req = false;
		pthread_cond_broadcast(&b->cond);
	}
	pthread_mutex_unlock(&b->lock);
}

void blk_stop(struct blk_dev *b)
{
	if (!b->thread_running)
		return;
	pthread_mutex_lock(&b->lock);
	b->stop_req = true;
	b->pause_req = false;
	b->pause_count = 0;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	if (eventfd_write(b->stop_fd, 1) < 0)
		log_err("virtio-blk: stop: %s", strerror(errno));
	pthread_join(b->thread, NULL);
	b->thread_running = false;
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
	memcpy(data, (const uint8_t *)&to_blk(dev)->cfg + off, len);
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
			log_err("virtio-blk: %s: file system refuses O_DIRECT, which aio=native needs",
				o->path);
			return -EINVAL;
		}
		log_warn("virtio-blk: %s: file system refuses O_DIRECT; using the page cache",
			 o->path);
		b->be.direct = false;
		fd = open(o->path, flags);
	}
	if (fd < 0) {
		int ret = -errno;

		log_err("virtio-blk: cannot open %s: %s", o->path, strerror(errno));
		return ret;
	}
	if (flock(fd, (o->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		log_err("virtio-blk: %s is in use by another process", o->path);
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
		log_err("virtio-blk: %s is not a regular file or block device", o->path);
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

	log_err("virtio-blk: %s: %s", o->path, strerror(errno));
	close(fd);
	return ret;
}
}

static void fill_config(struct blk_dev *b)
{
	struct virtio_blk_config *c = &b->cfg;

	memset(c, 0, sizeof(*c));
	c->capacity = htole64(b->geom.capacity);
	c->size_max = htole32(b->geom.size_max);
	c->seg_max = htole32(b->geom.seg_max);
	c->blk_size = htole32(BLK_SECTOR_SIZE);
	c->num_queues = htole16(1);
	c->max_discard_sectors = htole32(b->geom.dwz_sectors_max);
	c->max_discard_seg = htole32(b->geom.dwz_seg_max);
	c->discard_sector_alignment = htole32(8);
	c->max_write_zeroes_sectors = htole32(b->geom.wz_sectors_max);
	c->max_write_zeroes_seg = htole32(b->geom.dwz_seg_max);
	c->write_zeroes_may_unmap = 1;
}

int blk_create(struct blk_dev **out, const struct blk_opts *o, const struct guest_mem *gm)
{
	uint64_t features;
	struct blk_dev *b;
	int ret;

	*out = NULL;
	if (o->aio == BLK_AIO_NATIVE && o->cache != BLK_CACHE_NONE) {
		log_err("virtio-blk: aio=native requires cache=none");
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->opts = *o;
	b->fd = b->epfd = b->stop_fd = b->pause_fd = b->be.efd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		b->vdev.kick_fd[q] = -1;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);

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
		log_err("virtio-blk: %s: aio=%s backend: %s", o->path, blk_aio_name(o->aio),
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

	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	b->pause_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->epfd < 0 || b->stop_fd < 0 || b->pause_fd < 0) {
		ret = -errno;
		goto err;
	}
	ret = ep_add(b->epfd, b->vdev.kick_fd[0], TAG_KICK);
	if (!ret)
		ret = ep_add(b->epfd, b->be.efd, TAG_COMPL);
	if (!ret)
		ret = ep_add(b->epfd, b->stop_fd, TAG_STOP);
	if (!ret)
		ret = ep_add(b->epfd, b->pause_fd, TAG_PAUSE);
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
	blk_stop(b);
	if (b->be.ops)
		b->be.ops->destroy(&b->be);
	free_reqs(b);
	virtio_dev_destroy(&b->vdev);
	if (b->epfd >= 0)
		close(b->epfd);
	if (b->stop_fd >= 0)
		close(b->stop_fd);
	if (b->pause_fd >= 0)
		close(b->pause_fd);
	if (b->fd >= 0)
		close(b->fd);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b);
}
