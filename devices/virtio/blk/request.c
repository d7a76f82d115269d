/* virtio-blk requests: parsing a chain into a struct blk_req (pure: no
 * I/O; shared with the backends and the fuzzers), and their synchronous
 * execution (the thread pool, and fallbacks of the other backends). */
#include "devices/virtio/blk/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <unistd.h>

#include "base/byteorder.h"

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
		uint8_t seg[16];	/* le64 sector, le32 num_sectors, le32 flags */
		uint32_t flags, num;
		uint64_t off;

		if (vq_reader_read(c, seg, sizeof(seg)) != sizeof(seg))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		flags = rd32(seg + 12);
		num = rd32(seg + 8);
		/* Unknown flags, or unmap on a discard, are unsupported (5.2.6.2). */
		if (flags & ~(uint32_t)VIRTIO_BLK_DWZ_F_UNMAP ||
		    (discard && (flags & VIRTIO_BLK_DWZ_F_UNMAP)))
			return done_status(req, VIRTIO_BLK_S_UNSUPP);
		if (num > (discard ? g->dwz_sectors_max : g->wz_sectors_max))
			return done_status(req, VIRTIO_BLK_S_IOERR);
		if (range_check(g, rd64(seg), (uint64_t)num << BLK_SECTOR_SHIFT, &off))
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
	uint8_t hdr[BLK_HDR_SIZE];	/* le32 type, le32 ioprio, le64 sector */
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
	if (vq_reader_read(c, hdr, sizeof(hdr)) != sizeof(hdr))
		return done_status(req, VIRTIO_BLK_S_IOERR);
	sector = rd64(hdr + 8);
	/* Writable bytes before the status byte. */
	data = vq_writer_remaining(c) - 1;

	switch (rd32(hdr)) {
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

bool blk_errno_unsupported(int err)
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
			if (ret && !blk_errno_unsupported(ret))
				return ret;
		}
		return 0;
	case BLK_OP_WRITE_ZEROES:
		for (unsigned i = 0; i < req->nranges; i++) {
			const struct blk_range *r = &req->ranges[i];

			ret = -EOPNOTSUPP;
			if (r->unmap)
				ret = falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->off, r->len);
			if (ret && blk_errno_unsupported(ret))
				ret = falloc(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, r->off, r->len);
			if (ret && blk_errno_unsupported(ret))
				ret = write_zeroes_slow(fd, r->off, r->len);
			if (ret)
				return ret;
		}
		return 0;
	default:
		return 0;
	}
}
