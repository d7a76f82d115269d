#include "devices/virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "base/byteorder.h"

/* Offsets inside the rings. */
#define AVAIL_FLAGS		0
#define AVAIL_IDX		2
#define AVAIL_RING(i)		(4 + 2 * (size_t)(i))
#define USED_FLAGS		0
#define USED_IDX		2
#define USED_RING(i)		(4 + 8 * (size_t)(i))

/* The ring words the driver and the device both move are read and written
 * whole, with atomics (a byte-wise base/byteorder.h access could tear), so
 * they are converted with le16toh/htole16 and friends; everything else
 * goes through base/byteorder.h. */
static inline uint16_t *ring16(uint8_t *base, size_t off)
{
	return (uint16_t *)(void *)(base + off);
}

static inline uint32_t *ring32(uint8_t *base, size_t off)
{
	return (uint32_t *)(void *)(base + off);
}

void virtqueue_init(struct virtqueue *vq, const struct guest_mem *gm, uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->gm = gm;
	vq->max_size = max_size;
	virtqueue_reset(vq);
}

void virtqueue_reset(struct virtqueue *vq)
{
	const struct guest_mem *gm = vq->gm;
	uint16_t max = vq->max_size;

	memset(vq, 0, sizeof(*vq));
	vq->gm = gm;
	vq->max_size = max;
	vq->size = max;
}

int virtqueue_validate(struct virtqueue *vq)
{
	uint16_t n = vq->size;

	vq->ready = false;
	vq->desc = vq->avail = vq->used = NULL;
	if (!vq->gm || n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)) ||
	    (vq->max_size && n > vq->max_size))
		return -EINVAL;
	if (vq->desc_gpa % VIRTQ_DESC_ALIGN || vq->avail_gpa % VIRTQ_AVAIL_ALIGN ||
	    vq->used_gpa % VIRTQ_USED_ALIGN)
		return -EINVAL;
	vq->desc = gm_ptr(vq->gm, vq->desc_gpa, VIRTQ_DESC_SIZE(n));
	vq->avail = gm_ptr(vq->gm, vq->avail_gpa, VIRTQ_AVAIL_SIZE(n));
	vq->used = gm_ptr(vq->gm, vq->used_gpa, VIRTQ_USED_SIZE(n));
	if (!vq->desc || !vq->avail || !vq->used) {
		vq->desc = vq->avail = vq->used = NULL;
		return -EFAULT;
	}
	/* A fresh queue starts at index 0 on both rings (virtio 1.2, 2.7). */
	vq->last_avail_idx = 0;
	vq->used_idx = 0;
	/* The driver zeroed used_event, which matches signalled_used = 0. */
	vq->signalled_used = 0;
	vq->signalled_used_valid = true;
	vq->inflight = 0;
	vq->error = 0;
	vq->ready = true;
	return 0;
}

static uint16_t avail_idx_acquire(struct virtqueue *vq)
{
	/* Pairs with the driver's write barrier before it bumps avail->idx: ring
	 * entries and descriptors are read only after this load. */
	return le16toh(__atomic_load_n(ring16(vq->avail, AVAIL_IDX), __ATOMIC_ACQUIRE));
}

bool virtqueue_has_work(struct virtqueue *vq)
{
	if (!vq->ready || vq->error)
		return false;
	return avail_idx_acquire(vq) != vq->last_avail_idx;
}

struct walk {
	const uint8_t *table;	/* current descriptor table (host view) */
	uint32_t max;		/* entries in it: bound for next and the hop budget */
	uint32_t hops;
	bool in_indirect;
	bool seen_write;
	uint64_t total;
};

static void read_desc(const uint8_t *table, uint32_t i, struct virtq_desc *d)
{
	uint8_t raw[16];

	/* One copy, then every check and use is on the copy. */
	memcpy(raw, table + 16 * (size_t)i, sizeof(raw));
	d->addr = rd64(raw);
	d->len = rd32(raw + 8);
	d->flags = rd16(raw + 12);
	d->next = rd16(raw + 14);
}

static int add_segment(struct virtqueue *vq, struct vq_chain *c, struct walk *w,
		       const struct virtq_desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	void *hva;

	if (d->len == 0)
		return -EINVAL;
	if (writable)
		w->seen_write = true;
	else if (w->seen_write)
		return -EINVAL;
	w->total += d->len;
	if (w->total > UINT32_MAX)
		return -EOVERFLOW;
	hva = gm_ptr(vq->gm, d->addr, d->len);
	if (!hva)
		return -EFAULT;
	if (c->nr_out + c->nr_in >= VQ_CHAIN_MAX_SEGS)
		return -E2BIG;
	c->iov[c->nr_out + c->nr_in] = (struct iovec){ .iov_base = hva, .iov_len = d->len };
	if (writable) {
		c->nr_in++;
		c->in_len += d->len;
	} else {
		c->nr_out++;
		c->out_len += d->len;
	}
	return 0;
}

static int walk_chain(struct virtqueue *vq, struct vq_chain *c, uint16_t head)
{
	struct walk w = { .table = vq->desc, .max = vq->size };
	struct virtq_desc d;
	uint32_t idx = head;
	int ret;

	for (;;) {
		if (++w.hops > w.max)
			return -ELOOP;
		read_desc(w.table, idx, &d);

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect || w.in_indirect)
				return -EINVAL;
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return -EINVAL;
			if (d.len == 0 || d.len % sizeof(struct virtq_desc))
				return -EINVAL;
			w.table = gm_ptr(vq->gm, d.addr, d.len);
			if (!w.table)
				return -EFAULT;
			w.max = d.len / sizeof(struct virtq_desc);
			w.hops = 0;
			w.in_indirect = true;
			idx = 0;
			continue;
		}

		ret = add_segment(vq, c, &w, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= w.max)
			return -EINVAL;
		idx = d.next;
	}
}

/* Live migration: while guest memory logs device writes, a completed chain
 * marks what the device may have written, its writable buffers and the used
 * ring. The chain is walked again from the descriptor table: a guest that
 * rewrote its own descriptors meanwhile only loses its own data. Bounded
 * like walk_chain; anything odd just ends the walk. */
static void mark_chain_written(struct virtqueue *vq, uint16_t head)
{
	const uint8_t *table = vq->desc;
	uint32_t idx = head, max = vq->size, hops = 0;
	bool in_indirect = false;
	struct virtq_desc d;

	guest_mem_mark_dirty(vq->gm, vq->used_gpa, USED_RING(vq->size) + 2);
	while (++hops <= max) {
		read_desc(table, idx, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (in_indirect || !vq->indirect || d.len == 0 ||
			    d.len % sizeof(struct virtq_desc))
				return;
			table = gm_ptr(vq->gm, d.addr, d.len);
			if (!table)
				return;
			max = d.len / sizeof(struct virtq_desc);
			hops = 0;
			idx = 0;
			in_indirect = true;
			continue;
		}
		if (d.flags & VIRTQ_DESC_F_WRITE)
			guest_mem_mark_dirty(vq->gm, d.addr, d.len);
		if (!(d.flags & VIRTQ_DESC_F_NEXT) || d.next >= max)
			return;
		idx = d.next;
	}
}

static void chain_clear(struct vq_chain *c)
{
	c->head = 0;
	c->head_valid = false;
	c->nr_out = c->nr_in = 0;
	c->out_len = c->in_len = 0;
	memset(&c->rd, 0, sizeof(c->rd));
	memset(&c->wr, 0, sizeof(c->wr));
}

static void used_write(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	size_t off = USED_RING(vq->used_idx & (vq->size - 1));

	__atomic_store_n(ring32(vq->used, off), htole32(head), __ATOMIC_RELAXED);
	__atomic_store_n(ring32(vq->used, off + 4), htole32(len), __ATOMIC_RELAXED);
	vq->used_idx++;
	/* The element must be visible before the index that publishes it. */
	__atomic_store_n(ring16(vq->used, USED_IDX), htole16(vq->used_idx), __ATOMIC_RELEASE);
}

int virtqueue_pop(struct virtqueue *vq, struct vq_chain *c)
{
	uint16_t avail_idx, head;
	int ret;

	chain_clear(c);
	if (!vq->ready)
		return -ENODEV;
	if (vq->error)
		return vq->error;

	avail_idx = avail_idx_acquire(vq);
	if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->size) {
		ret = -EPROTO;
		goto broken;
	}
	if (avail_idx == vq->last_avail_idx)
		return 0;

	head = le16toh(__atomic_load_n(ring16(vq->avail, AVAIL_RING(vq->last_avail_idx & (vq->size - 1))),
				       __ATOMIC_RELAXED));
	if (head >= vq->size) {
		ret = -ERANGE;
		goto broken;
	}
	if (vq->inflight >= vq->size) {
		ret = -ENOSPC;
		goto broken;
	}
	vq->last_avail_idx++;
	c->head = head;
	c->head_valid = true;

	ret = walk_chain(vq, c, head);
	if (ret) {
		/* Hand the head back so the guest doesn't wait for it forever. */
		used_write(vq, head, 0);
		guest_mem_mark_dirty(vq->gm, vq->used_gpa, USED_RING(vq->size) + 2);
		goto broken;
	}
	vq->inflight++;
	return 1;

broken:
	vq->error = ret;
	c->nr_out = c->nr_in = 0;
	c->out_len = c->in_len = 0;
	return ret;
}

void virtqueue_mark_broken(struct virtqueue *vq, int err)
{
	if (!vq->error)
		vq->error = err < 0 ? err : -EINVAL;
}

void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	if (!vq->ready || head >= vq->size)
		return;
	used_write(vq, head, len);
	/* After the writes: a mark made before them could be collected, and
	 * the page sent, before they land. */
	if (guest_mem_dirty_logging(vq->gm))
		mark_chain_written(vq, head);
	if (vq->inflight)
		vq->inflight--;
}

void virtqueue_push_batch(struct virtqueue *vq, const struct virtq_used_elem *elems, unsigned n)
{
	uint16_t idx;

	if (!vq->ready)
		return;
	idx = vq->used_idx;
	for (unsigned i = 0; i < n; i++) {
		size_t off = USED_RING(idx & (vq->size - 1));

		if (elems[i].id >= vq->size)
			continue;
		__atomic_store_n(ring32(vq->used, off), htole32(elems[i].id), __ATOMIC_RELAXED);
		__atomic_store_n(ring32(vq->used, off + 4), htole32(elems[i].len), __ATOMIC_RELAXED);
		idx++;
		if (vq->inflight)
			vq->inflight--;
	}
	vq->used_idx = idx;
	/* Every element before the index that publishes them all. */
	__atomic_store_n(ring16(vq->used, USED_IDX), htole16(idx), __ATOMIC_RELEASE);
	/* Migration: mark after the writes (see virtqueue_push). */
	if (guest_mem_dirty_logging(vq->gm))
		for (unsigned i = 0; i < n; i++)
			if (elems[i].id < vq->size)
				mark_chain_written(vq, (uint16_t)elems[i].id);
}

void virtqueue_unpop(struct virtqueue *vq, uint16_t n)
{
	if (n > vq->inflight)
		n = (uint16_t)vq->inflight;
	vq->last_avail_idx = (uint16_t)(vq->last_avail_idx - n);
	vq->inflight -= n;
}

void virtqueue_export(const struct virtqueue *vq, struct virtqueue_state *st)
{
	*st = (struct virtqueue_state){
		.size = vq->size,
		.enabled = vq->enabled,
		.desc_gpa = vq->desc_gpa,
		.avail_gpa = vq->avail_gpa,
		.used_gpa = vq->used_gpa,
		.last_avail_idx = vq->last_avail_idx,
		.used_idx = vq->used_idx,
		.inflight = vq->inflight,
		.error = vq->error,
	};
}

int virtqueue_import_regs(struct virtqueue *vq, const struct virtqueue_state *st)
{
	uint16_t n = st->size;

	if (n == 0 || (n & (n - 1)) || n > vq->max_size)
		return -EINVAL;
	virtqueue_reset(vq);
	vq->size = n;
	vq->enabled = st->enabled;
	vq->desc_gpa = st->desc_gpa;
	vq->avail_gpa = st->avail_gpa;
	vq->used_gpa = st->used_gpa;
	return 0;
}

int virtqueue_import_indices(struct virtqueue *vq, const struct virtqueue_state *st)
{
	if (st->inflight || (uint16_t)(st->last_avail_idx - st->used_idx) > vq->size ||
	    st->error > 0 || st->error < -4095)
		return -EINVAL;
	vq->last_avail_idx = st->last_avail_idx;
	vq->used_idx = st->used_idx;
	/* Whatever the driver last saw, the next push may need an interrupt. */
	vq->signalled_used_valid = false;
	vq->inflight = 0;
	vq->error = st->error;
	return 0;
}

bool virtqueue_should_notify(struct virtqueue *vq)
{
	uint16_t old, new, event;
	bool valid;

	if (!vq->ready)
		return false;
	/* Our used->idx store must be visible before we read the driver's
	 * suppression state, or both sides can decide the other will act. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx) {
		uint16_t flags = le16toh(__atomic_load_n(ring16(vq->avail, AVAIL_FLAGS), __ATOMIC_RELAXED));
		/* Nothing pushed since the last interrupt: nothing to signal. */
		bool fresh = !vq->signalled_used_valid || vq->signalled_used != vq->used_idx;

		vq->signalled_used = vq->used_idx;
		vq->signalled_used_valid = true;
		return fresh && !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	valid = vq->signalled_used_valid;
	old = vq->signalled_used;
	new = vq->used_idx;
	vq->signalled_used = new;
	vq->signalled_used_valid = true;
	event = le16toh(__atomic_load_n(ring16(vq->avail, AVAIL_RING(vq->size)), __ATOMIC_RELAXED));
	return !valid || vring_need_event(event, new, old);
}

void virtqueue_disable_notify(struct virtqueue *vq)
{
	uint16_t *flags;

	if (!vq->ready || vq->event_idx)
		return;
	flags = ring16(vq->used, USED_FLAGS);
	__atomic_store_n(flags, htole16(le16toh(__atomic_load_n(flags, __ATOMIC_RELAXED)) |
					VIRTQ_USED_F_NO_NOTIFY), __ATOMIC_RELAXED);
	guest_mem_mark_dirty(vq->gm, vq->used_gpa, 2);
}

bool virtqueue_enable_notify(struct virtqueue *vq)
{
	if (!vq->ready || vq->error)
		return false;
	if (vq->event_idx) {
		__atomic_store_n(ring16(vq->used, USED_RING(vq->size)), htole16(vq->last_avail_idx),
				 __ATOMIC_RELAXED);
	} else {
		uint16_t *flags = ring16(vq->used, USED_FLAGS);

		__atomic_store_n(flags, htole16(le16toh(__atomic_load_n(flags, __ATOMIC_RELAXED)) &
						~VIRTQ_USED_F_NO_NOTIFY), __ATOMIC_RELAXED);
	}
	guest_mem_mark_dirty(vq->gm, vq->used_gpa, USED_RING(vq->size) + 2);
	/* Store-load: publish "kick me" before re-reading avail->idx, or a
	 * buffer added in between is missed by both sides. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx_acquire(vq) != vq->last_avail_idx;
}

const char *virtqueue_strerror(int err)
{
	switch (err) {
	case -EPROTO: return "avail index moved by more than the queue size";
	case -ERANGE: return "head index out of range";
	case -ENOSPC: return "more chains in flight than the queue size";
	case -EINVAL: return "malformed descriptor";
	case -ELOOP: return "descriptor chain loops";
	case -EFAULT: return "buffer outside guest memory";
	case -EOVERFLOW: return "chain length overflows 32 bits";
	case -E2BIG: return "chain has too many segments";
	case -ENODEV: return "queue not ready";
	default: return "unknown virtqueue error";
	}
}

/* Cursors. The readable part is iov[0, nr_out), the writable part
 * iov[nr_out, nr_out + nr_in). */

static size_t cursor_move(struct vq_chain *c, struct vq_cursor *cur, unsigned first,
			  unsigned count, void *rbuf, const void *wbuf, size_t n)
{
	size_t moved = 0;

	while (moved < n && cur->seg < count) {
		struct iovec *v = &c->iov[first + cur->seg];
		size_t chunk = v->iov_len - cur->off;

		if (chunk > n - moved)
			chunk = n - moved;
		if (rbuf)
			memcpy((uint8_t *)rbuf + moved, (uint8_t *)v->iov_base + cur->off, chunk);
		else if (wbuf)
			memcpy((uint8_t *)v->iov_base + cur->off, (const uint8_t *)wbuf + moved, chunk);
		moved += chunk;
		cur->off += chunk;
		if (cur->off == v->iov_len) {
			cur->seg++;
			cur->off = 0;
		}
	}
	cur->done += moved;
	return moved;
}

static int cursor_iov(struct vq_chain *c, struct vq_cursor *cur, unsigned first,
		      unsigned count, size_t total, size_t n, struct iovec *iov, unsigned max)
{
	struct vq_cursor tmp = *cur;
	unsigned nr = 0;
	size_t got = 0;

	if (n > total - cur->done)
		return -ENODATA;
	while (got < n && tmp.seg < count) {
		struct iovec *v = &c->iov[first + tmp.seg];
		size_t chunk = v->iov_len - tmp.off;

		if (chunk > n - got)
			chunk = n - got;
		if (nr >= max)
			return -E2BIG;
		iov[nr++] = (struct iovec){
			.iov_base = (uint8_t *)v->iov_base + tmp.off, .iov_len = chunk,
		};
		got += chunk;
		tmp.off += chunk;
		if (tmp.off == v->iov_len) {
			tmp.seg++;
			tmp.off = 0;
		}
	}
	if (got < n)
		return -ENODATA;
	tmp.done += got;
	*cur = tmp;
	return (int)nr;
}

size_t vq_reader_read(struct vq_chain *c, void *buf, size_t n)
{
	return cursor_move(c, &c->rd, 0, c->nr_out, buf, NULL, n);
}

size_t vq_reader_skip(struct vq_chain *c, size_t n)
{
	return cursor_move(c, &c->rd, 0, c->nr_out, NULL, NULL, n);
}

size_t vq_reader_remaining(const struct vq_chain *c)
{
	return c->out_len - c->rd.done;
}

size_t vq_writer_write(struct vq_chain *c, const void *buf, size_t n)
{
	return cursor_move(c, &c->wr, c->nr_out, c->nr_in, NULL, buf, n);
}

size_t vq_writer_skip(struct vq_chain *c, size_t n)
{
	return cursor_move(c, &c->wr, c->nr_out, c->nr_in, NULL, NULL, n);
}

size_t vq_writer_remaining(const struct vq_chain *c)
{
	return c->in_len - c->wr.done;
}

size_t vq_writer_written(const struct vq_chain *c)
{
	return c->wr.done;
}

int vq_reader_iov(struct vq_chain *c, size_t n, struct iovec *iov, unsigned max)
{
	return cursor_iov(c, &c->rd, 0, c->nr_out, c->out_len, n, iov, max);
}

int vq_writer_iov(struct vq_chain *c, size_t n, struct iovec *iov, unsigned max)
{
	return cursor_iov(c, &c->wr, c->nr_out, c->nr_in, c->in_len, n, iov, max);
}

uint8_t *vq_chain_last_writable(const struct vq_chain *c)
{
	const struct iovec *v;

	if (!c->nr_in)
		return NULL;
	v = &c->iov[c->nr_out + c->nr_in - 1];
	return (uint8_t *)v->iov_base + v->iov_len - 1;
}
