/* virtio-balloon (virtio 1.2 section 5.5): the host sets a target balloon
 * size, the guest gives pages back (inflate) or takes them again (deflate),
 * sends memory statistics and reports free pages. Inflated and reported
 * pages are punched out of the guest RAM memfd, so Ember's RSS falls.
 *
 * Internal interface of devices/virtio/balloon/: the registration in
 * balloon.c drives it, and so do the unit tests and the fuzzer.
 *
 * Threading (VIRTIO_IO_MAIN_LOOP):
 *   main loop   kick() for every queue, the stats timer, the QMP commands,
 *               pause/resume/save/load; they hold `lock`.
 *   vCPUs       config reads/writes (num_pages, actual: atomics) and the
 *               status writes that activate or reset the device (`lock`).
 * Every guest-supplied PFN, length and stat is bounds-checked; bad ones are
 * counted and ignored. */
#ifndef EMBER_VIRTIO_BALLOON_H
#define EMBER_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "devices/device.h"

struct json_t;
struct virtio_device;

#define VIRTIO_ID_BALLOON		5
/* QEMU's class for virtio-balloon: "other" (PCI_CLASS_OTHERS). */
#define VIRTIO_BALLOON_PCI_CLASS	0x00ff00

/* Feature bits (5.5.3). */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST		0
#define VIRTIO_BALLOON_F_STATS_VQ		1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM		2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT		3
#define VIRTIO_BALLOON_F_PAGE_POISON		4
#define VIRTIO_BALLOON_F_REPORTING		5

#define BALLOON_PAGE_SHIFT	12	/* PFNs are always 4 KiB frames */
#define BALLOON_PAGE_SIZE	(1ULL << BALLOON_PAGE_SHIFT)
#define BALLOON_QUEUE_SIZE	128
#define BALLOON_CONFIG_SIZE	8	/* le32 num_pages, le32 actual */

/* Work per main-loop callback and queue; the rest waits for the next one. */
#define BALLOON_PFN_BUDGET	65536	/* PFNs (Linux sends 256 a chain) */
#define BALLOON_CHAIN_BUDGET	64	/* stats and reporting chains */

/* Statistics tags (5.5.6.3); values are kept by tag. */
enum balloon_stat_tag {
	BALLOON_S_SWAP_IN, BALLOON_S_SWAP_OUT, BALLOON_S_MAJFLT, BALLOON_S_MINFLT,
	BALLOON_S_MEMFREE, BALLOON_S_MEMTOT, BALLOON_S_AVAIL, BALLOON_S_CACHES,
	BALLOON_S_HTLB_PGALLOC, BALLOON_S_HTLB_PGFAIL, BALLOON_S_OOM_KILL,
	BALLOON_S_ALLOC_STALL, BALLOON_S_ASYNC_SCAN, BALLOON_S_DIRECT_SCAN,
	BALLOON_S_ASYNC_RECLAIM, BALLOON_S_DIRECT_RECLAIM,
	BALLOON_S_NR
};

/* The wire format of one statistic: le16 tag, le64 value, packed. */
#define BALLOON_STAT_SIZE	10

struct balloon_stats {
	uint64_t val[BALLOON_S_NR];
	uint32_t have;		/* bit per tag the guest ever sent */
	time_t last_update;	/* wall clock; 0: never */
};

/* --balloon's options (the table is in balloon.c). */
struct balloon_options {
	bool deflate_on_oom;
	bool free_page_reporting;
	uint64_t stats_interval;	/* seconds; 0: only on query-balloon */
};

/* Host-side accounting, for tests and query-balloon. */
struct balloon_counters {
	uint64_t inflated_pages;	/* valid PFNs in inflate chains */
	uint64_t deflated_pages;	/* valid PFNs in deflate chains */
	uint64_t ignored_pfns;		/* out of guest RAM: never trusted */
	uint64_t discarded_bytes;	/* given back to the host */
	uint64_t reported_bytes;	/* free page reports received */
	uint64_t discard_errors;
	uint64_t stats_updates;		/* stats buffers received */
	uint64_t cut_chains;		/* chains cut short by a pause or reset */
};

/* The device's handle is its struct virtio_device; these are the registry's
 * hooks (struct virtio_device_desc) and what QMP, tests and the fuzzer call.
 * create: ctx is copied (its pointers must outlive the device); ctx->loop
 * may be NULL (tests) when stats_interval is 0. */
int balloon_create(struct device_ctx *ctx, const void *opts, struct virtio_device **out)
	__attribute__((warn_unused_result));
void balloon_destroy(struct virtio_device *dev);
/* Start/stop the stats timer on the main loop (stats_interval > 0). */
int balloon_start(struct virtio_device *dev) __attribute__((warn_unused_result));
void balloon_stop(struct virtio_device *dev);
/* Queue q was kicked (its eventfd already read): serve it. When the budget
 * runs out with work left, the queue's kick eventfd is written again so
 * the main loop comes back after its other work. */
void balloon_kick(struct virtio_device *dev, unsigned q);
void balloon_pause(struct virtio_device *dev);
void balloon_resume(struct virtio_device *dev);
struct json_t *balloon_save(struct virtio_device *dev);
int balloon_load(struct virtio_device *dev, struct json_t *saved, char *err, size_t errlen);

/* QMP `balloon`: the guest should have `bytes` of memory (clamped to RAM).
 * -EINVAL for 0. */
int balloon_set_target(struct virtio_device *dev, uint64_t bytes);
/* QMP `query-balloon`: {"actual": bytes} plus the last stats; asks the guest
 * for new stats. A new reference. */
struct json_t *balloon_query(struct virtio_device *dev);
/* Hand the held stats buffer back to the guest so it sends fresh stats. */
void balloon_request_stats(struct virtio_device *dev);

void balloon_get_counters(struct virtio_device *dev, struct balloon_counters *c);
void balloon_get_stats(struct virtio_device *dev, struct balloon_stats *s);
uint32_t balloon_target_pages(struct virtio_device *dev);
uint32_t balloon_actual_pages(struct virtio_device *dev);
/* Guest memory minus the balloon (what query-balloon calls actual). */
uint64_t balloon_actual_bytes(struct virtio_device *dev);

/* stats.c: parse a stats buffer (whole 10-byte entries; unknown tags are
 * skipped) into s. Returns the number of entries applied. */
unsigned balloon_stats_parse(struct balloon_stats *s, const uint8_t *buf, size_t len);
/* QEMU's guest-stats names ("stat-free-memory"); -1 for never sent. */
struct json_t *balloon_stats_json(const struct balloon_stats *s);
const char *balloon_stat_name(unsigned tag);

/* qmp.c: `balloon` and `query-balloon`, on the registry's virtio_set. */
extern const struct device_qmp_command balloon_qmp_commands[];

#endif
