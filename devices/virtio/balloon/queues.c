/* virtio-balloon's virtqueues, served on the main loop (balloon_kick).
 * Queues, in the order the driver finds them: inflate, deflate, stats
 * (VIRTIO_BALLOON_F_STATS_VQ), free page reporting (VIRTIO_BALLOON_F_REPORTING;
 * its index depends on whether stats were negotiated). PFNs and reported
 * ranges are checked through guest_mem; inflated and reported pages are
 * punched out of the guest RAM memfd (gm_discard). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "base/byteorder.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "devices/virtio/balloon/internal.h"

/* Most stats entries read from one buffer (Linux sends about 16). */
#define BALLOON_STATS_MAX	1024

/* Host-contiguous 4 KiB pages waiting for one discard. */
struct pfn_run {
	uint64_t gpa;
	uint8_t *hva;
	uint64_t pages;
};

/* Under `lock` (there is one balloon at most). */
static struct ratelimit guest_rl = RATELIMIT_INIT(5000, 5);

/* Queue index -> role, from the negotiated features (5.5.2): the stats
 * queue exists only with STATS_VQ, and reporting comes after it (after
 * free_page_vq too, which is never offered). */
enum balloon_role balloon_queue_role(const struct virtio_balloon *b, unsigned q)
{
	unsigned next = 2;

	if (q == 0)
		return ROLE_INFLATE;
	if (q == 1)
		return ROLE_DEFLATE;
	if (virtio_dev_has_feature(&b->vdev, VIRTIO_BALLOON_F_STATS_VQ) && q == next++)
		return ROLE_STATS;
	if (virtio_dev_has_feature(&b->vdev, VIRTIO_BALLOON_F_REPORTING) && q == next)
		return ROLE_REPORTING;
	return ROLE_NONE;
}

int balloon_stats_queue(const struct virtio_balloon *b)
{
	return virtio_dev_has_feature(&b->vdev, VIRTIO_BALLOON_F_STATS_VQ) ? 2 : -1;
}

/* ---- inflate and deflate ---- */

static void account(struct virtio_balloon *b, int64_t n, uint64_t len)
{
	if (n >= 0) {
		b->cnt.discarded_bytes += (uint64_t)n;
		return;
	}
	b->cnt.discard_errors++;
	if (ratelimit_allow(&guest_rl))
		log_warn("virtio-balloon: discarding %llu bytes: %s", (unsigned long long)len,
			 strerror((int)-n));
}

static void discard(struct virtio_balloon *b, uint8_t *hva, uint64_t len)
{
	account(b, gm_discard(b->vdev.gm, hva, len), len);
}

static void run_flush(struct virtio_balloon *b, struct pfn_run *run)
{
	uint64_t len = run->pages << BALLOON_PAGE_SHIFT;
	int64_t n;

	if (!run->pages)
		return;
	n = gm_discard(b->vdev.gm, run->hva, len);
	/* A run host- and guest-contiguous across two regions added by hand
	 * is refused as a whole: go page by page then. */
	if (n == -EFAULT && run->pages > 1) {
		for (uint64_t i = 0; i < run->pages; i++)
			discard(b, run->hva + (i << BALLOON_PAGE_SHIFT), BALLOON_PAGE_SIZE);
	} else {
		account(b, n, len);
	}
	run->pages = 0;
}

static void take_pfn(struct virtio_balloon *b, struct pfn_run *run, uint32_t pfn, bool inflate)
{
	uint64_t gpa = (uint64_t)pfn << BALLOON_PAGE_SHIFT;
	uint8_t *hva = gm_ptr(b->vdev.gm, gpa, BALLOON_PAGE_SIZE);
	uint64_t run_len = run->pages << BALLOON_PAGE_SHIFT;

	if (!hva) {
		b->cnt.ignored_pfns++;
		return;
	}
	if (!inflate) {
		b->cnt.deflated_pages++;	/* the pages come back on touch */
		return;
	}
	b->cnt.inflated_pages++;
	if (!b->discard)
		return;
	if (run->pages && gpa == run->gpa + run_len && hva == run->hva + run_len) {
		run->pages++;
		return;
	}
	run_flush(b, run);
	*run = (struct pfn_run){ .gpa = gpa, .hva = hva, .pages = 1 };
}

/* Consume up to `budget` PFNs of c; returns how many were read. */
static unsigned walk_pfns(struct virtio_balloon *b, struct vq_chain *c, bool inflate,
			  unsigned budget)
{
	uint8_t buf[256 * 4];
	struct pfn_run run = { 0 };
	unsigned done = 0;

	while (done < budget) {
		size_t want = budget - done < 256 ? budget - done : 256;
		size_t n = vq_reader_read(c, buf, want * 4) / 4;

		if (!n)
			break;	/* end of the chain (a trailing partial PFN is dropped) */
		for (size_t i = 0; i < n; i++)
			take_pfn(b, &run, rd32(buf + 4 * i), inflate);
		done += (unsigned)n;
	}
	run_flush(b, &run);
	return done;
}

/* Lock held. Returns true when the budget ran out with work left. */
static bool serve_pfns(struct virtio_balloon *b, unsigned q, bool inflate)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);
	struct pfn_chain *pc = inflate ? &b->inflate : &b->deflate;
	unsigned budget = BALLOON_PFN_BUDGET;
	bool pushed = false, more = false;
	int ret;

	for (;;) {
		while (!vq->error) {
			if (!pc->held) {
				ret = virtqueue_pop(vq, &pc->chain);
				if (ret == 0)
					break;
				if (ret < 0) {
					virtio_dev_queue_error(&b->vdev, q, ret);
					return false;
				}
				pc->held = true;
			}
			budget -= walk_pfns(b, &pc->chain, inflate, budget);
			if (vq_reader_remaining(&pc->chain) >= 4) {
				more = true;	/* resumed on the next kick */
				goto out;
			}
			virtqueue_push(vq, pc->chain.head, 0);
			pc->held = false;
			pushed = true;
			if (!budget) {
				more = true;
				goto out;
			}
		}
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	if (pushed)
		virtio_dev_notify_if_needed(&b->vdev, q);
	return more;
}

/* Hand back a chain cut short: the PFNs not yet read are simply not
 * discarded (the guest loses nothing; the host frees less). */
bool balloon_cut_chain(struct virtio_balloon *b, struct pfn_chain *pc, unsigned q)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);

	if (!pc->held)
		return false;
	pc->held = false;
	b->cnt.cut_chains++;
	if (!vq || !vq->ready || vq->error)
		return false;
	virtqueue_push(vq, pc->chain.head, 0);
	return true;
}

/* ---- stats ---- */

/* Lock held. Give the held buffer back: the guest refills it and kicks. */
void balloon_request_stats_locked(struct virtio_balloon *b)
{
	int q = balloon_stats_queue(b);
	struct virtqueue *vq = q >= 0 ? virtio_dev_queue(&b->vdev, (unsigned)q) : NULL;

	if (b->paused) {
		b->stats_wanted = true;
		return;
	}
	b->stats_wanted = false;
	if (!b->active || !b->stats_held || !vq || !vq->ready || vq->error)
		return;
	b->stats_held = false;
	virtqueue_push(vq, b->stats_head, 0);
	virtio_dev_notify_if_needed(&b->vdev, (unsigned)q);
}

static void read_stats(struct virtio_balloon *b, struct vq_chain *c)
{
	uint8_t buf[16 * BALLOON_STAT_SIZE];
	size_t total = 0, n;

	while (total < BALLOON_STATS_MAX * BALLOON_STAT_SIZE &&
	       (n = vq_reader_read(c, buf, sizeof(buf))) > 0) {
		balloon_stats_parse(&b->stats, buf, n);
		total += n;
		if (n < sizeof(buf))
			break;
	}
	b->stats.last_update = time(NULL);
	b->cnt.stats_updates++;
}

static void serve_stats(struct virtio_balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);
	unsigned chains = BALLOON_CHAIN_BUDGET;
	bool pushed = false, more = false;
	int ret;

	for (;;) {
		while (!vq->error) {
			if (!chains--) {
				more = true;
				goto out;
			}
			ret = virtqueue_pop(vq, &b->scratch);
			if (ret == 0)
				break;
			if (ret < 0) {
				virtio_dev_queue_error(&b->vdev, q, ret);
				return;
			}
			/* A driver keeps one buffer in the queue; a second one
			 * means the first is done with. */
			if (b->stats_held) {
				virtqueue_push(vq, b->stats_head, 0);
				pushed = true;
			}
			read_stats(b, &b->scratch);
			b->stats_held = true;
			b->stats_head = b->scratch.head;
		}
		/* With EVENT_IDX this moves avail_event on: without it the
		 * driver would never kick again. */
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	if (pushed)
		virtio_dev_notify_if_needed(&b->vdev, q);
	if (b->stats_wanted)
		balloon_request_stats_locked(b);
	if (more)
		virtio_dev_queue_notify(&b->vdev, q);
}

/* ---- free page reporting ---- */

/* Returns true when the budget ran out. */
static bool serve_reports(struct virtio_balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_dev_queue(&b->vdev, q);
	struct vq_chain *c = &b->scratch;
	unsigned chains = BALLOON_CHAIN_BUDGET;
	bool pushed = false, more = false;
	int ret;

	for (;;) {
		while (!vq->error) {
			if (!chains) {
				more = true;
				goto out;
			}
			ret = virtqueue_pop(vq, c);
			if (ret == 0)
				break;
			if (ret < 0) {
				virtio_dev_queue_error(&b->vdev, q, ret);
				return false;
			}
			chains--;
			/* The reported ranges are the device-writable buffers
			 * themselves; nothing is written into them. */
			for (unsigned i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
				b->cnt.reported_bytes += c->iov[i].iov_len;
				if (b->discard)
					discard(b, c->iov[i].iov_base, c->iov[i].iov_len);
			}
			virtqueue_push(vq, c->head, 0);
			pushed = true;
		}
		if (vq->error || !virtqueue_enable_notify(vq))
			break;
	}
out:
	if (pushed)
		virtio_dev_notify_if_needed(&b->vdev, q);
	return more;
}

void balloon_kick(struct virtio_device *dev, unsigned q)
{
	struct virtio_balloon *b = balloon_of(dev);
	struct virtqueue *vq = virtio_dev_queue(dev, q);
	bool more = false;

	if (!vq)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->active && !b->paused && vq->ready) {
		switch (balloon_queue_role(b, q)) {
		case ROLE_INFLATE:
			more = serve_pfns(b, q, true);
			break;
		case ROLE_DEFLATE:
			more = serve_pfns(b, q, false);
			break;
		case ROLE_STATS:
			serve_stats(b, q);
			break;
		case ROLE_REPORTING:
			more = serve_reports(b, q);
			break;
		case ROLE_NONE:
			break;
		}
	}
	pthread_mutex_unlock(&b->lock);
	/* Out of budget: come back after the main loop's other work. */
	if (more)
		virtio_dev_queue_notify(dev, q);
}
