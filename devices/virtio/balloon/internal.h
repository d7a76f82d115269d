/* virtio-balloon's state, shared by balloon.c (config space, lifecycle,
 * QMP, registration) and queues.c (serving the virtqueues). Not for use
 * outside devices/virtio/balloon/. */
#ifndef EMBER_VIRTIO_BALLOON_INTERNAL_H
#define EMBER_VIRTIO_BALLOON_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/virtio/balloon/balloon.h"
#include "devices/virtio/registry.h"
#include "devices/virtio/virtio.h"

enum balloon_role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORTING };

/* A PFN chain popped but cut short by the budget; resumed on the next kick. */
struct pfn_chain {
	bool held;
	struct vq_chain chain;
};

struct virtio_balloon {
	struct virtio_device vdev;
	struct device_ctx ctx;
	struct balloon_options opts;
	uint64_t ram_size;
	bool discard;		/* false with hugepages: a re-fault could SIGBUS */

	/* Config space, read and written by vCPUs: atomics. num_pages is
	 * written by QMP on the main loop, actual by the guest. */
	uint32_t num_pages;
	uint32_t actual;

	/* Everything below: `lock` (main loop; activate/reset from vCPUs). */
	pthread_mutex_t lock;
	bool active;
	bool paused;
	bool stats_wanted;	/* asked for while paused: do it on resume */
	bool stats_held;	/* the guest's stats buffer, kept until we want more */
	uint16_t stats_head;
	struct balloon_stats stats;
	struct balloon_counters cnt;
	struct pfn_chain inflate, deflate;
	struct vq_chain scratch;	/* stats and reporting pops */

	/* Main loop only. */
	int timer_fd;
	bool timer_on_loop;
};

static inline struct virtio_balloon *balloon_of(struct virtio_device *dev)
{
	return container_of(dev, struct virtio_balloon, vdev);
}

/* queues.c */
enum balloon_role balloon_queue_role(const struct virtio_balloon *b, unsigned q);
/* `lock` held: hand the held stats buffer back (or remember to, if paused). */
void balloon_request_stats_locked(struct virtio_balloon *b);
/* `lock` held: push a chain cut short; true if the guest needs an interrupt. */
bool balloon_cut_chain(struct virtio_balloon *b, struct pfn_chain *pc, unsigned q);
/* The stats queue's index, or -1 without VIRTIO_BALLOON_F_STATS_VQ. */
int balloon_stats_queue(const struct virtio_balloon *b);

#endif
