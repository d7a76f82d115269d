/* bench/blk/blk_bench: drive the virtio-blk device model (devices/virtio/blk.c)
 * from a host-side "guest driver" thread, the way a Linux guest's virtio-blk
 * driver would, and report IOPS and throughput.
 *
 * What is real:
 *   - guest memory is a gm_init() memfd region, as for a VM;
 *   - a split ring of queue size 256 (or the device's max) lives in it,
 *     negotiated with VERSION_1 + EVENT_IDX (+ INDIRECT_DESC only when QD*3
 *     descriptors don't fit in the ring);
 *   - the driver kicks by writing the queue's kick eventfd (what KVM's
 *     ioeventfd does), only when avail_event says the device wants a kick;
 *   - the device's notify_used hook writes an eventfd the driver poll()s,
 *     i.e. it behaves like an irqfd; used_event is set like Linux's
 *     virtqueue_enable_cb() so interrupts are suppressed with EVENT_IDX;
 *   - every request is one chain: 16-byte header (device-readable), data
 *     buffer (device-writable), status byte (device-writable).
 * What is not: there is no vCPU, so no VM exits; the cost of a real exit
 * (ioeventfd) and of an interrupt injection (irqfd) is not included.
 *
 * Every completion is checked: the used id must be an in-flight request, the
 * used length must be bs + 1 and the status byte VIRTIO_BLK_S_OK, else the
 * program fails loudly (exit 1). --verify additionally compares the data
 * with a pread() of the file.
 *
 * Output: a human line on stderr and one machine-readable line on stdout:
 *   RESULT aio=.. cache=.. rw=.. bs=.. qd=.. ios=N secs=S iops=X mibps=Y
 *          kicks=K irqs=I dev_notifications=.. dev_batches=.. max_inflight=..
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/blk/blk.h"
#include "devices/virtio/virtio.h"
#include "devices/virtio/virtqueue.h"
#include "base/guest_mem.h"
#include "base/log.h"

#define DIE(...)                                                                  \
	do {                                                                      \
		fprintf(stderr, "blk_bench: " __VA_ARGS__);                       \
		fputc('\n', stderr);                                              \
		exit(1);                                                          \
	} while (0)

enum rw_mode { RW_RANDREAD, RW_SEQREAD };

struct cfg {
	const char *file;
	enum blk_aio aio;
	enum blk_cache cache;
	enum rw_mode rw;
	uint32_t bs;
	unsigned qd;
	double seconds;
	uint64_t ios;		/* 0: time-based */
	uint64_t size;		/* bytes of the file to use; 0: all */
	unsigned qsize;
	bool verify;
	bool quiet;
	uint64_t seed;
};

/* One request slot: header, data buffer and status byte at fixed gpas. */
struct slot {
	uint64_t hdr_gpa, data_gpa, status_gpa, itab_gpa;
	uint8_t *hdr, *data, *status;
	struct virtq_desc *itab;	/* indirect table (3 entries) or NULL */
	uint16_t head;			/* its descriptor index in the ring */
	uint64_t off;			/* file offset in flight */
	bool busy;
};

struct driver {
	struct cfg c;
	struct guest_mem gm;
	struct blk_dev *blk;
	struct virtio_device *dev;
	int irq_fd;			/* written by notify_used: our "irqfd" */
	int kick_fd;
	int verify_fd;
	bool indirect;
	uint16_t qsize;

	/* Ring (host views). */
	struct virtq_desc *desc;
	uint16_t *avail_flags, *avail_idx, *avail_ring, *used_event;
	uint16_t *used_flags, *used_idx, *avail_event;
	struct virtq_used_elem *used_ring;
	uint16_t shadow_avail;		/* our avail->idx */
	uint16_t kicked_avail;		/* avail->idx at the last kick decision */
	uint16_t last_used;

	struct slot *slots;
	uint16_t *head_to_slot;
	uint64_t nblocks;		/* bs-sized blocks in the used range */
	uint64_t next_seq;		/* seqread: next block */
	uint64_t rng;
	uint8_t *vbuf;			/* --verify scratch */

	/* Counters. */
	uint64_t submitted, completed, kicks, irqs;
	unsigned inflight;
};

static volatile int config_irq;

static void on_used(struct virtio_device *dev, unsigned q)
{
	struct driver *d = dev->transport;

	(void)q;
	if (eventfd_write(d->irq_fd, 1) < 0)
		abort();
}

static void on_config(struct virtio_device *dev)
{
	struct driver *d = dev->transport;

	__atomic_store_n(&config_irq, 1, __ATOMIC_RELEASE);
	(void)eventfd_write(d->irq_fd, 1);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static uint64_t parse_size(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		DIE("bad %s '%s'", what, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		DIE("bad %s '%s'", what, s);
	return v;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: blk_bench --file PATH [--aio io_uring|native|threads] [--cache none|writeback]\n"
		"                 [--rw randread|seqread] [--bs 4k|1m|N] [--qd N] [--seconds S | --ios N]\n"
		"                 [--size BYTES] [--queue-size N] [--seed N] [--verify] [--quiet]\n"
		"Defaults: aio=io_uring cache=none rw=randread bs=4k qd=1 seconds=5, whole file.\n"
		"aio=native requires cache=none (O_DIRECT).\n");
}

static void parse_args(int argc, char **argv, struct cfg *c)
{
	static const struct option lo[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "aio", required_argument, NULL, 'a' },
		{ "cache", required_argument, NULL, 'c' },
		{ "rw", required_argument, NULL, 'r' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },
		{ "seconds", required_argument, NULL, 's' },
		{ "ios", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 'S' },
		{ "queue-size", required_argument, NULL, 'Q' },
		{ "seed", required_argument, NULL, 'R' },
		{ "verify", no_argument, NULL, 'V' },
		{ "quiet", no_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	memset(c, 0, sizeof(*c));
	c->aio = BLK_AIO_IO_URING;
	c->cache = BLK_CACHE_NONE;
	c->rw = RW_RANDREAD;
	c->bs = 4096;
	c->qd = 1;
	c->seconds = 5;
	c->qsize = BLK_QUEUE_SIZE;
	c->seed = 0x9e3779b97f4a7c15ULL;
	while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (o) {
		case 'f': c->file = optarg; break;
		case 'a':
			if (!strcmp(optarg, "io_uring"))
				c->aio = BLK_AIO_IO_URING;
			else if (!strcmp(optarg, "native") || !strcmp(optarg, "libaio"))
				c->aio = BLK_AIO_NATIVE;
			else if (!strcmp(optarg, "threads"))
				c->aio = BLK_AIO_THREADS;
			else
				DIE("bad --aio '%s' (io_uring, native or threads)", optarg);
			break;
		case 'c':
			if (!strcmp(optarg, "none"))
				c->cache = BLK_CACHE_NONE;
			else if (!strcmp(optarg, "writeback"))
				c->cache = BLK_CACHE_WRITEBACK;
			else
				DIE("bad --cache '%s' (none or writeback)", optarg);
			break;
		case 'r':
			if (!strcmp(optarg, "randread"))
				c->rw = RW_RANDREAD;
			else if (!strcmp(optarg, "seqread") || !strcmp(optarg, "read"))
				c->rw = RW_SEQREAD;
			else
				DIE("bad --rw '%s' (randread or seqread)", optarg);
			break;
		case 'b': c->bs = (uint32_t)parse_size(optarg, "--bs"); break;
		case 'q': c->qd = (unsigned)parse_size(optarg, "--qd"); break;
		case 's':
			c->seconds = strtod(optarg, NULL);
			if (!(c->seconds > 0))
				DIE("bad --seconds '%s'", optarg);
			break;
		case 'n': c->ios = parse_size(optarg, "--ios"); break;
		case 'S': c->size = parse_size(optarg, "--size"); break;
		case 'Q': c->qsize = (unsigned)parse_size(optarg, "--queue-size"); break;
		case 'R': c->seed = parse_size(optarg, "--seed") | 1; break;
		case 'V': c->verify = true; break;
		case 'z': c->quiet = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc || !c->file) {
		usage(stderr);
		exit(2);
	}
	if (c->bs < BLK_SECTOR_SIZE || c->bs % BLK_SECTOR_SIZE || c->bs > BLK_SIZE_MAX)
		DIE("--bs must be a multiple of 512 between 512 and %u", BLK_SIZE_MAX);
	if (c->qd < 1)
		DIE("--qd must be >= 1");
	if (c->aio == BLK_AIO_NATIVE && c->cache != BLK_CACHE_NONE)
		DIE("--aio native requires --cache none (O_DIRECT)");
}

/* ---- ring plumbing ---- */

static void *gptr(struct driver *d, uint64_t gpa, uint64_t len)
{
	void *p = gm_ptr(&d->gm, gpa, len);

	if (!p)
		DIE("internal: gpa 0x%llx+%llu not in guest memory", (unsigned long long)gpa,
		    (unsigned long long)len);
	return p;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static void set_desc(struct virtq_desc *t, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	t[i].addr = htole64(addr);
	t[i].len = htole32(len);
	t[i].flags = htole16(flags);
	t[i].next = htole16(next);
}

/* Create guest memory, lay out the ring and the slots, and build every
 * slot's (fixed) chain. The queue registers are written later (attach_queue),
 * between FEATURES_OK and DRIVER_OK. */
static uint64_t g_desc_gpa, g_avail_gpa, g_used_gpa;

static void setup_memory(struct driver *d)
{
	uint64_t q = d->qsize, meta, ram;
	unsigned qd = d->c.qd;

	/* Descriptor table, avail ring (+used_event), used ring (+avail_event). */
	uint64_t desc_gpa = 0;
	uint64_t avail_gpa = align_up(desc_gpa + VIRTQ_DESC_SIZE(q), VIRTQ_AVAIL_ALIGN);
	uint64_t used_gpa = align_up(avail_gpa + VIRTQ_AVAIL_SIZE(q), 4096);
	uint64_t hdr_gpa = align_up(used_gpa + VIRTQ_USED_SIZE(q), 4096);
	uint64_t status_gpa = align_up(hdr_gpa + 16ULL * qd, 64);
	uint64_t itab_gpa = align_up(status_gpa + (uint64_t)qd, 64);
	uint64_t data_gpa = align_up(itab_gpa + 48ULL * qd, 1 << 21);

	meta = data_gpa;
	ram = align_up(meta + (uint64_t)qd * d->c.bs, 1 << 21);
	if (ram > GM_MMIO_HOLE_START)
		DIE("--qd * --bs too large (%llu MiB of guest memory)", (unsigned long long)(ram >> 20));
	if (gm_init(&d->gm, ram, false))
		DIE("gm_init(%llu MiB): %s", (unsigned long long)(ram >> 20), strerror(errno));
	/* Fault everything in now, not during the run. */
	memset(d->gm.map, 0, ram);

	d->desc = gptr(d, desc_gpa, VIRTQ_DESC_SIZE(q));
	d->avail_flags = gptr(d, avail_gpa, VIRTQ_AVAIL_SIZE(q));
	d->avail_idx = d->avail_flags + 1;
	d->avail_ring = d->avail_flags + 2;
	d->used_event = d->avail_ring + q;
	d->used_flags = gptr(d, used_gpa, VIRTQ_USED_SIZE(q));
	d->used_idx = d->used_flags + 1;
	d->used_ring = (struct virtq_used_elem *)(d->used_flags + 2);
	d->avail_event = (uint16_t *)(d->used_ring + q);
	g_desc_gpa = desc_gpa;
	g_avail_gpa = avail_gpa;
	g_used_gpa = used_gpa;

	d->slots = calloc(qd, sizeof(*d->slots));
	d->head_to_slot = calloc(q, sizeof(*d->head_to_slot));
	if (!d->slots || !d->head_to_slot)
		DIE("out of memory");
	for (unsigned i = 0; i < qd; i++) {
		struct slot *s = &d->slots[i];

		s->hdr_gpa = hdr_gpa + 16ULL * i;
		s->status_gpa = status_gpa + i;
		s->itab_gpa = itab_gpa + 48ULL * i;
		s->data_gpa = data_gpa + (uint64_t)i * d->c.bs;
		s->hdr = gptr(d, s->hdr_gpa, 16);
		s->status = gptr(d, s->status_gpa, 1);
		s->data = gptr(d, s->data_gpa, d->c.bs);
		if (d->indirect) {
			/* One ring descriptor per request, pointing at a 3-entry table. */
			s->itab = gptr(d, s->itab_gpa, 48);
			set_desc(s->itab, 0, s->hdr_gpa, 16, VIRTQ_DESC_F_NEXT, 1);
			set_desc(s->itab, 1, s->data_gpa, d->c.bs, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
				 2);
			set_desc(s->itab, 2, s->status_gpa, 1, VIRTQ_DESC_F_WRITE, 0);
			s->head = (uint16_t)i;
			set_desc(d->desc, i, s->itab_gpa, 48, VIRTQ_DESC_F_INDIRECT, 0);
		} else {
			uint16_t h = (uint16_t)(3 * i);

			s->head = h;
			set_desc(d->desc, h, s->hdr_gpa, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(h + 1));
			set_desc(d->desc, h + 1U, s->data_gpa, d->c.bs,
				 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(h + 2));
			set_desc(d->desc, h + 2U, s->status_gpa, 1, VIRTQ_DESC_F_WRITE, 0);
		}
		d->head_to_slot[s->head] = (uint16_t)i;
	}
}

static void attach_queue(struct driver *d)
{
	struct virtqueue *vq = virtio_dev_queue(d->dev, 0);

	if (d->qsize > vq->max_size)
		DIE("queue size %u exceeds the device's maximum %u", d->qsize, vq->max_size);
	vq->size = d->qsize;
	vq->desc_gpa = g_desc_gpa;
	vq->avail_gpa = g_avail_gpa;
	vq->used_gpa = g_used_gpa;
	vq->enabled = true;
}

static uint64_t next_offset(struct driver *d)
{
	uint64_t blk;

	if (d->c.rw == RW_SEQREAD) {
		blk = d->next_seq++;
		if (d->next_seq >= d->nblocks)
			d->next_seq = 0;
	} else {
		blk = xorshift(&d->rng) % d->nblocks;
	}
	return blk * d->c.bs;
}

/* Fill slot i's header and put its chain on the avail ring (not yet published). */
static void queue_slot(struct driver *d, unsigned i)
{
	struct slot *s = &d->slots[i];
	struct {
		uint32_t type;
		uint32_t ioprio;
		uint64_t sector;
	} hdr = { htole32(VIRTIO_BLK_T_IN), 0, 0 };

	s->off = next_offset(d);
	hdr.sector = htole64(s->off >> BLK_SECTOR_SHIFT);
	memcpy(s->hdr, &hdr, sizeof(hdr));
	*s->status = 0xff;	/* anything but S_OK, so a missing write shows */
	s->busy = true;
	d->avail_ring[d->shadow_avail & (d->qsize - 1)] = htole16(s->head);
	d->shadow_avail++;
	d->submitted++;
	d->inflight++;
}

/* Publish the avail index and kick if the device asked for it (Linux's
 * virtqueue_kick_prepare() with EVENT_IDX). */
static void publish_and_kick(struct driver *d)
{
	uint16_t old = d->kicked_avail, new = d->shadow_avail, event;

	if (old == new)
		return;
	__atomic_store_n(d->avail_idx, htole16(new), __ATOMIC_RELEASE);
	d->kicked_avail = new;
	/* The avail->idx store must be visible before we read avail_event. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	event = le16toh(__atomic_load_n(d->avail_event, __ATOMIC_RELAXED));
	if (vring_need_event(event, new, old)) {
		if (eventfd_write(d->kick_fd, 1) < 0)
			DIE("kick: %s", strerror(errno));
		d->kicks++;
	}
}

static void check_completion(struct driver *d, struct virtq_used_elem e)
{
	uint32_t id = le32toh(e.id), len = le32toh(e.len);
	struct slot *s;

	if (id >= d->qsize)
		DIE("FAIL: used id %u out of range", id);
	s = &d->slots[d->head_to_slot[id]];
	if (s->head != id || !s->busy)
		DIE("FAIL: used id %u is not an in-flight request", id);
	if (*s->status != VIRTIO_BLK_S_OK)
		DIE("FAIL: request at offset %llu: status byte %u (expected VIRTIO_BLK_S_OK)",
		    (unsigned long long)s->off, *s->status);
	if (len != d->c.bs + 1)
		DIE("FAIL: request at offset %llu: used len %u (expected %u)",
		    (unsigned long long)s->off, len, d->c.bs + 1);
	if (d->c.verify) {
		ssize_t n = pread(d->verify_fd, d->vbuf, d->c.bs, (off_t)s->off);

		if (n != (ssize_t)d->c.bs)
			DIE("verify pread: %s", n < 0 ? strerror(errno) : "short read");
		if (memcmp(d->vbuf, s->data, d->c.bs))
			DIE("FAIL: data at offset %llu differs from the file",
			    (unsigned long long)s->off);
	}
	s->busy = false;
	d->inflight--;
	d->completed++;
}

static void report(struct driver *d, double secs)
{
	struct blk_stats st;
	double iops = (double)d->completed / secs;
	double mibps = iops * d->c.bs / (1024.0 * 1024.0);
	static const char *const rwn[] = { "randread", "seqread" };

	blk_get_stats(d->blk, &st);
	if (st.ioerr || st.unsupp)
		DIE("FAIL: device counted %llu I/O errors, %llu unsupported",
		    (unsigned long long)st.ioerr, (unsigned long long)st.unsupp);
	if (!d->c.quiet)
		fprintf(stderr,
			"blk_bench: aio=%s cache=%s rw=%s bs=%u qd=%u: %llu ios in %.3f s: "
			"%.0f IOPS, %.1f MiB/s; %.3f kicks/io, %.3f irqs/io, device: %.2f reqs/batch, "
			"max %u in flight%s\n",
			blk_aio_name(d->c.aio), d->c.cache == BLK_CACHE_NONE ? "none" : "writeback",
			rwn[d->c.rw], d->c.bs, d->c.qd, (unsigned long long)d->completed, secs, iops,
			mibps, (double)d->kicks / (double)d->completed,
			(double)d->irqs / (double)d->completed,
			st.batches ? (double)st.requests / (double)st.batches : 0.0, st.max_inflight,
			blk_is_direct(d->blk) ? ", O_DIRECT" : "");
	printf("RESULT aio=%s cache=%s rw=%s bs=%u qd=%u ios=%llu secs=%.4f iops=%.1f mibps=%.2f "
	       "kicks=%llu irqs=%llu dev_notifications=%llu dev_batches=%llu max_inflight=%u "
	       "bounced=%llu direct=%d\n",
	       blk_aio_name(d->c.aio), d->c.cache == BLK_CACHE_NONE ? "none" : "writeback",
	       rwn[d->c.rw], d->c.bs, d->c.qd, (unsigned long long)d->completed, secs, iops, mibps,
	       (unsigned long long)d->kicks, (unsigned long long)d->irqs,
	       (unsigned long long)st.notifications, (unsigned long long)st.batches, st.max_inflight,
	       (unsigned long long)st.bounced, blk_is_direct(d->blk) ? 1 : 0);
}

static void bring_up(struct driver *d)
{
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE;
	uint64_t host;

	if (virtio_dev_set_status(d->dev, st))
		DIE("status ACKNOWLEDGE refused");
	st |= VIRTIO_STATUS_DRIVER;
	if (virtio_dev_set_status(d->dev, st))
		DIE("status DRIVER refused");
	host = virtio_dev_host_features(d->dev);
	if ((host & want) != want)
		DIE("device does not offer VERSION_1 + EVENT_IDX (features 0x%llx)",
		    (unsigned long long)host);
	if (d->indirect) {
		if (!(host & VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC)))
			DIE("--qd %u needs indirect descriptors, which the device does not offer",
			    d->c.qd);
		want |= VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
	}
	virtio_dev_set_driver_features(d->dev, want);
	st |= VIRTIO_STATUS_FEATURES_OK;
	if (virtio_dev_set_status(d->dev, st) || !(virtio_dev_get_status(d->dev) & VIRTIO_STATUS_FEATURES_OK))
		DIE("FEATURES_OK refused");
	if (!virtio_dev_queue_writable(d->dev))
		DIE("queue registers not writable after FEATURES_OK");
	attach_queue(d);
	st |= VIRTIO_STATUS_DRIVER_OK;
	if (virtio_dev_set_status(d->dev, st) ||
	    (virtio_dev_get_status(d->dev) & VIRTIO_STATUS_NEEDS_RESET))
		DIE("DRIVER_OK failed (status 0x%x)", virtio_dev_get_status(d->dev));
}

int main(int argc, char **argv)
{
	struct driver d;
	struct blk_opts o;
	struct stat stbuf;
	uint64_t cap, use;
	double t0, t_end, deadline;
	bool stopping = false;

	memset(&d, 0, sizeof(d));
	parse_args(argc, argv, &d.c);
	log_init();
	d.rng = d.c.seed;
	d.verify_fd = -1;

	if (stat(d.c.file, &stbuf) < 0)
		DIE("%s: %s", d.c.file, strerror(errno));

	memset(&o, 0, sizeof(o));
	if (strlen(d.c.file) >= sizeof(o.path))
		DIE("path too long");
	strcpy(o.path, d.c.file);
	o.readonly = true;	/* reads only: the image is never modified */
	o.aio = d.c.aio;
	o.cache = d.c.cache;
	snprintf(o.serial, sizeof(o.serial), "blk_bench");

	/* The ring is what a guest driver would pick: min(256 or --queue-size,
	 * the device's maximum, BLK_QUEUE_SIZE); checked again at attach. */
	{
		unsigned qs = d.c.qsize < BLK_QUEUE_SIZE ? d.c.qsize : BLK_QUEUE_SIZE;

		if (qs == 0 || (qs & (qs - 1)))
			DIE("--queue-size must be a power of 2");
		d.qsize = (uint16_t)qs;
	}
	if (d.c.qd > d.qsize)
		DIE("--qd %u exceeds the queue size %u", d.c.qd, d.qsize);
	d.indirect = 3U * d.c.qd > d.qsize;
	setup_memory(&d);

	d.irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d.irq_fd < 0)
		DIE("eventfd: %s", strerror(errno));
	if (blk_create(&d.blk, &o, &d.gm))
		DIE("cannot create the device on %s (aio=%s cache=%s)", d.c.file,
		    blk_aio_name(d.c.aio), d.c.cache == BLK_CACHE_NONE ? "none" : "writeback");
	if (d.c.cache == BLK_CACHE_NONE && !blk_is_direct(d.blk))
		DIE("cache=none requested but the file system refused O_DIRECT");
	d.dev = blk_virtio(d.blk);
	d.dev->transport = &d;
	d.dev->notify_used = on_used;
	d.dev->notify_config = on_config;
	d.kick_fd = virtio_dev_kick_fd(d.dev, 0);

	cap = blk_capacity(d.blk) << BLK_SECTOR_SHIFT;
	use = d.c.size ? d.c.size : cap;
	if (use > cap)
		DIE("--size %llu is larger than the file (%llu bytes)", (unsigned long long)use,
		    (unsigned long long)cap);
	d.nblocks = use / d.c.bs;
	if (d.nblocks == 0)
		DIE("file smaller than one block");

	if (blk_start(d.blk))
		DIE("blk_start failed");
	bring_up(&d);

	if (d.c.verify) {
		d.verify_fd = open(d.c.file, O_RDONLY | O_CLOEXEC);
		d.vbuf = malloc(d.c.bs);
		if (d.verify_fd < 0 || !d.vbuf)
			DIE("--verify: %s", strerror(errno));
	}

	/* Ask for an interrupt on the first completion (virtqueue_enable_cb). */
	__atomic_store_n(d.used_event, htole16(0), __ATOMIC_RELEASE);

	t0 = now();
	deadline = t0 + d.c.seconds;
	for (unsigned i = 0; i < d.c.qd && (!d.c.ios || d.submitted < d.c.ios); i++)
		queue_slot(&d, i);
	publish_and_kick(&d);

	while (d.inflight) {
		struct pollfd p = { .fd = d.irq_fd, .events = POLLIN };
		eventfd_t v;
		int n = poll(&p, 1, 10000);

		if (n < 0 && errno != EINTR)
			DIE("poll: %s", strerror(errno));
		if (n == 0)
			DIE("FAIL: no completion for 10 s (%u in flight, used idx %u, last_used %u)",
			    d.inflight, le16toh(*d.used_idx), d.last_used);
		if (n > 0) {
			(void)eventfd_read(d.irq_fd, &v);
			d.irqs++;
		}
		if (__atomic_load_n(&config_irq, __ATOMIC_ACQUIRE) ||
		    (virtio_dev_get_status(d.dev) & VIRTIO_STATUS_NEEDS_RESET))
			DIE("FAIL: device set DEVICE_NEEDS_RESET (status 0x%x)",
			    virtio_dev_get_status(d.dev));

		/* virtblk_done(): drain the used ring, re-arm, re-check. */
		if (!stopping && !d.c.ios && now() >= deadline)
			stopping = true;
		for (;;) {
			uint16_t used = le16toh(__atomic_load_n(d.used_idx, __ATOMIC_ACQUIRE));

			if ((uint16_t)(used - d.last_used) > d.qsize)
				DIE("FAIL: used idx jumped from %u to %u", d.last_used, used);
			while (d.last_used != used) {
				struct virtq_used_elem e = d.used_ring[d.last_used & (d.qsize - 1)];
				unsigned si = d.head_to_slot[le32toh(e.id) < d.qsize ? le32toh(e.id) : 0];

				check_completion(&d, e);
				d.last_used++;
				if (!stopping && d.c.ios && d.submitted >= d.c.ios)
					stopping = true;
				if (!stopping)
					queue_slot(&d, si);
			}
			publish_and_kick(&d);
			/* virtqueue_enable_cb(): used_event = last_used, then re-check. */
			__atomic_store_n(d.used_event, htole16(d.last_used), __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (le16toh(__atomic_load_n(d.used_idx, __ATOMIC_ACQUIRE)) == d.last_used)
				break;
		}
	}
	t_end = now();

	report(&d, t_end - t0);

	blk_destroy(d.blk);
	gm_destroy(&d.gm);
	close(d.irq_fd);
	if (d.verify_fd >= 0)
		close(d.verify_fd);
	free(d.vbuf);
	free(d.slots);
	free(d.head_to_slot);
	return 0;
}
