/* virtio-rng (virtio 1.2 section 5.4), transport-independent core.
 *
 * One request queue. Every device-writable byte of a chain is filled from
 * getrandom(2), up to VIRTIO_RNG_REQ_MAX bytes per chain (the used length
 * says how many); a chain's device-readable part is ignored. A chain with
 * no device-writable byte at all (the driver MUST NOT post one) is
 * completed with used length 0 and nothing written; the device stays
 * usable. A chain the queue rejects (a loop, next out of range, ...)
 * breaks the queue and sets DEVICE_NEEDS_RESET with a config interrupt.
 *
 * There is no thread: whoever owns the kick eventfd (the main event loop
 * in the VMM, the test itself in unit tests) calls virtio_rng_kick(). One
 * call serves at most VIRTIO_RNG_BUDGET bytes and VIRTIO_RNG_CHAINS_MAX
 * chains, then re-kicks itself for the rest, so a guest cannot monopolise
 * the caller.
 */
#ifndef EMBER_VIRTIO_RNG_H
#define EMBER_VIRTIO_RNG_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"
#include "base/guest_mem.h"

#define VIRTIO_RNG_QUEUE_SIZE	64
#define VIRTIO_RNG_REQ_MAX	(64 * 1024)	/* bytes per chain */
#define VIRTIO_RNG_BUDGET	(1024 * 1024)	/* bytes per virtio_rng_kick() */
#define VIRTIO_RNG_CHAINS_MAX	256		/* chains per virtio_rng_kick() */

struct virtio_rng;

/* Offers EVENT_IDX and INDIRECT_DESC (and VERSION_1). */
int virtio_rng_create(struct virtio_rng **out, const struct guest_mem *gm)
	__attribute__((warn_unused_result));
/* The caller must have stopped calling virtio_rng_kick(). NULL is a no-op. */
void virtio_rng_destroy(struct virtio_rng *r);
struct virtio_device *virtio_rng_virtio(struct virtio_rng *r);

/* The queue's kick eventfd fired (or may have): drain it and serve the
 * queue. Returns true when the budget ran out with work left; the kick
 * eventfd has then been written again. Serialised against reset/activate
 * by an internal lock, so any one thread may call it. */
bool virtio_rng_kick(struct virtio_rng *r);

/* Random bytes handed to the guest so far. */
uint64_t virtio_rng_bytes(struct virtio_rng *r);
/* VM pause: after pause() returns, kicks drain the eventfd but leave the
 * queue and guest memory alone; resume() serves what came meanwhile. */
void virtio_rng_pause(struct virtio_rng *r);
void virtio_rng_resume(struct virtio_rng *r);

#endif
