/* virtio-blk (virtio 1.2 section 5.2), one folder:
 *   options.c   the --disk options table, struct blk_opts
 *   request.c   request parsing (pure) and synchronous execution
 *   device.c    the device: its queue served on a struct dev_worker, the
 *               virtio ops, the registry descriptor
 *   qmp.c       query-block, query-blockstats, x-query-disks
 *   io_uring.c, aio.c, threads.c   the backends
 *
 * One request queue, served by a per-device worker thread (devices/worker.h)
 * whose epoll holds the queue's kick eventfd and the backend's completion
 * eventfd. Requests go to one of three backends (io_uring, libaio, a thread
 * pool) behind struct blk_backend_ops; several are in flight at once and
 * their completions are pushed in batches with at most one interrupt each.
 *
 * Malformed requests: a chain the queue rejects (virtqueue_pop error) breaks
 * the queue and sets DEVICE_NEEDS_RESET. A chain that is a well-formed
 * virtqueue chain but a bad block request (header shorter than 16 bytes,
 * bad lengths, out-of-range sectors, too many segments) completes with
 * VIRTIO_BLK_S_IOERR. Only a chain with no device-writable byte, where there
 * is nowhere to put a status, is returned with used len 0 and marks the
 * device NEEDS_RESET.
 */
#ifndef EMBER_VIRTIO_BLK_H
#define EMBER_VIRTIO_BLK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/device.h"
#include "devices/virtio/virtio.h"
#include "devices/virtio/virtqueue.h"
#include "base/guest_mem.h"

/* Feature bits. */
#define VIRTIO_BLK_F_SIZE_MAX		1
#define VIRTIO_BLK_F_SEG_MAX		2
#define VIRTIO_BLK_F_GEOMETRY		4
#define VIRTIO_BLK_F_RO			5
#define VIRTIO_BLK_F_BLK_SIZE		6
#define VIRTIO_BLK_F_FLUSH		9
#define VIRTIO_BLK_F_TOPOLOGY		10
#define VIRTIO_BLK_F_CONFIG_WCE		11
#define VIRTIO_BLK_F_MQ			12
#define VIRTIO_BLK_F_DISCARD		13
#define VIRTIO_BLK_F_WRITE_ZEROES	14

/* Request types. */
#define VIRTIO_BLK_T_IN			0
#define VIRTIO_BLK_T_OUT		1
#define VIRTIO_BLK_T_FLUSH		4
#define VIRTIO_BLK_T_GET_ID		8
#define VIRTIO_BLK_T_GET_LIFETIME	10
#define VIRTIO_BLK_T_DISCARD		11
#define VIRTIO_BLK_T_WRITE_ZEROES	13
#define VIRTIO_BLK_T_SECURE_ERASE	14

/* Status byte. */
#define VIRTIO_BLK_S_OK			0
#define VIRTIO_BLK_S_IOERR		1
#define VIRTIO_BLK_S_UNSUPP		2

#define VIRTIO_BLK_DWZ_F_UNMAP		1

#define BLK_MAX_DISKS		8	/* --disk instances */
#define BLK_SECTOR_SHIFT	9
#define BLK_SECTOR_SIZE		512
#define BLK_SERIAL_LEN		20	/* VIRTIO_BLK_ID_BYTES */
#define BLK_QUEUE_SIZE		256
#define BLK_SEG_MAX		128	/* data segments per request */
#define BLK_SIZE_MAX		(1U << 20)	/* bytes per data segment */
#define BLK_DWZ_SEG_MAX		16	/* discard / write-zeroes ranges */
#define BLK_DWZ_SECTORS_MAX	(1U << 22)	/* per discard range: 2 GiB */
#define BLK_WZ_SECTORS_MAX	(1U << 12)	/* per write-zeroes range: 2 MiB */
/* Bytes of reads, writes and write-zeroes at the backend at once (a single
 * larger request may still go alone). This bounds what a pause, a reset or
 * a stop waits for, whatever the guest queues: at most 32 MiB, or one
 * request (<= BLK_SEG_MAX * BLK_SIZE_MAX = 128 MiB of data, or
 * BLK_DWZ_SEG_MAX * BLK_WZ_SECTORS_MAX sectors = 32 MiB of write-zeroes,
 * which may fall back to writing zeroes where the file system cannot
 * zero a range). Requests beyond it wait, unissued, in the device; a pause
 * leaves them there and a reset drops them. */
#define BLK_INFLIGHT_BYTES_MAX	(32ULL << 20)
#define BLK_HDR_SIZE		16

/* Device config space, as the driver sees it (little-endian, packed). */
struct virtio_blk_config {
	uint64_t capacity;		/* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;
	struct {
		uint8_t physical_block_exp;
		uint8_t alignment_offset;
		uint16_t min_io_size;
		uint32_t opt_io_size;
	} topology;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

/* --disk path=FILE[,readonly=on][,serial=ID][,aio=io_uring|native|threads]
 *        [,cache=none|writeback] */
enum blk_aio { BLK_AIO_IO_URING, BLK_AIO_NATIVE, BLK_AIO_THREADS };
enum blk_cache { BLK_CACHE_NONE, BLK_CACHE_WRITEBACK };

struct blk_opts {
	char path[PATH_MAX];
	bool readonly;
	char serial[BLK_SERIAL_LEN + 1];
	enum blk_aio aio;
	enum blk_cache cache;
	/* Incoming live migration: the source still holds the image's lock;
	 * take it at the first resume, after the handover (blk_resume). */
	bool defer_lock;
};

/* The --disk options table (options.c), registered by the device. */
struct dev_option_table;
extern struct dev_option_table blk_option_table;

/* Parse one --disk option string with that table. Returns 0, or -EINVAL
 * with a one-line message in err. */
int blk_parse_opts(const char *s, struct blk_opts *o, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* The table's parsed struct as a struct blk_opts. */
int blk_opts_from_table(const void *parsed, struct blk_opts *o, char *err, size_t errlen)
	__attribute__((warn_unused_result));
const char *blk_aio_name(enum blk_aio aio);

/* ---- The device ---- */

struct blk_dev;

struct blk_stats {
	uint64_t requests;
	uint64_t reads;
	uint64_t writes;
	uint64_t flushes;
	uint64_t discards;
	uint64_t write_zeroes;
	uint64_t get_ids;
	uint64_t ioerr;
	uint64_t unsupp;
	uint64_t notifications;
	uint64_t batches;	/* completion batches pushed */
	uint32_t max_inflight;	/* most requests at the backend at once */
	uint64_t bounced;	/* O_DIRECT requests bounced for alignment */
	uint64_t rd_bytes, wr_bytes;	/* completed successfully */
	uint64_t failed_reads, failed_writes, failed_flushes;
};

/* Open the image and create the device (its I/O thread not yet running). */
int blk_create(struct blk_dev **out, const struct blk_opts *opts, const struct guest_mem *gm)
	__attribute__((warn_unused_result));
/* Stops the thread if running, closes everything. */
void blk_destroy(struct blk_dev *blk);
struct virtio_device *blk_virtio(struct blk_dev *blk);
struct blk_dev *blk_of(struct virtio_device *dev);	/* blk_virtio()'s inverse */
uint64_t blk_capacity(const struct blk_dev *blk);	/* sectors */
bool blk_is_direct(const struct blk_dev *blk);	/* O_DIRECT in use */
const struct blk_opts *blk_options(const struct blk_dev *blk);

/* QMP (qmp.c): query-block, query-blockstats and x-query-disks, on the
 * struct virtio_set of every --disk. */
extern const struct device_qmp_command blk_qmp_commands[];

/* I/O thread control. pause() returns once every in-flight request has
 * completed and the thread is parked; resume() lets it continue. Pauses are
 * counted: the thread runs again only after as many resumes as pauses, so a
 * VM pause and a guest-requested reset may overlap. stop() drains, ends and
 * joins it. None of them may be called from the I/O thread.
 * blk_get_stats() never pauses: it reads the counters atomically, from any
 * thread (each counter is exact; the set is not one snapshot). */
int blk_start(struct blk_dev *blk) __attribute__((warn_unused_result));
void blk_pause(struct blk_dev *blk);
void blk_resume(struct blk_dev *blk);
void blk_stop(struct blk_dev *blk);
void blk_get_stats(struct blk_dev *blk, struct blk_stats *st);

/* ---- Request parsing (pure: no I/O), shared with the backends and the fuzzer ---- */

enum blk_op { BLK_OP_NONE, BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_DISCARD,
	      BLK_OP_WRITE_ZEROES };

struct blk_range {
	uint64_t off;		/* bytes */
	uint64_t len;		/* bytes */
	bool unmap;
};

struct blk_geom {
	uint64_t capacity;	/* sectors */
	bool readonly;
	char serial[BLK_SERIAL_LEN];	/* zero-padded, not terminated */
	unsigned seg_max;
	uint32_t size_max;
	unsigned dwz_seg_max;
	uint32_t dwz_sectors_max;	/* per discard range */
	uint32_t wz_sectors_max;	/* per write-zeroes range */
};

struct blk_req {
	struct blk_req *next;		/* free / deferred / done lists */
	uint16_t head;
	enum blk_op op;
	uint8_t status;			/* VIRTIO_BLK_S_* */
	uint8_t *status_ptr;		/* host pointer to the guest's status byte */
	uint32_t used_len;		/* on success */
	uint64_t off;			/* bytes */
	uint64_t len;			/* data bytes */
	unsigned niov;
	struct iovec iov[BLK_SEG_MAX];	/* guest data buffers */
	unsigned nranges;
	struct blk_range ranges[BLK_DWZ_SEG_MAX];

	/* What the backend reads or writes: iov, or the bounce buffer. */
	struct iovec *io_iov;
	unsigned io_niov;
	void *bounce;
	struct iovec bounce_iov;

	uint64_t io_bytes;		/* counted against BLK_INFLIGHT_BYTES_MAX */
	int result;			/* 0 or -errno, set by the backend */
	unsigned pending;		/* backend sub-operations outstanding */
	uint64_t be_priv[16];		/* backend scratch (a struct iocb) */
};

/* Parse the chain into req.
 *   0: req->op needs the backend;
 *   1: already complete: req->status (and any data, e.g. GET_ID) written,
 *      nothing to submit;
 *   -EINVAL: no device-writable byte for the status: the chain cannot be
 *      completed as a block request (the device returns it with len 0 and
 *      marks NEEDS_RESET). */
int blk_parse_request(const struct blk_geom *g, struct vq_chain *c, struct blk_req *req)
	__attribute__((warn_unused_result));
/* Write the status byte and give back the length for the used ring. */
uint32_t blk_req_finish(struct blk_req *req);
/* An errno saying the file system cannot do this (fallocate modes). */
bool blk_errno_unsupported(int err);
/* Do a parsed request synchronously on fd (preadv/pwritev/fdatasync/
 * fallocate). Returns 0 or -errno. Used by the thread pool and for fallbacks. */
int blk_exec_sync(int fd, struct blk_req *req);
/* Finish a read or write synchronously after a short transfer of `done` bytes. */
int blk_exec_rw_from(int fd, struct blk_req *req, uint64_t done);

/* ---- Backends ---- */

struct blk_backend;

struct blk_backend_ops {
	const char *name;
	int (*init)(struct blk_backend *be);
	void (*destroy)(struct blk_backend *be);
	/* Queue req (it may not be issued before kick()). 0, -EAGAIN when full
	 * (retry after a completion), or another -errno: req failed now. */
	int (*submit)(struct blk_backend *be, struct blk_req *req);
	/* Issue everything queued since the last kick. Optional. */
	void (*kick)(struct blk_backend *be);
	/* Collect up to max completed requests (req->result set). Never blocks. */
	unsigned (*reap)(struct blk_backend *be, struct blk_req **done, unsigned max);
};

struct blk_backend {
	const struct blk_backend_ops *ops;
	int fd;			/* the image */
	bool direct;		/* opened O_DIRECT */
	unsigned depth;		/* most requests in flight */
	int efd;		/* readable when reap() may return something */
	void *priv;
};

extern const struct blk_backend_ops blk_io_uring_ops;
extern const struct blk_backend_ops blk_aio_ops;
extern const struct blk_backend_ops blk_threads_ops;

#endif
