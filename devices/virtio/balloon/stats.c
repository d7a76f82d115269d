/* virtio-balloon statistics (5.5.6.3): the guest's buffer is a packed array
 * of {le16 tag, le64 value}; the last value per tag wins, unknown tags are
 * skipped. Names are QEMU's guest-stats names. */
#include "devices/virtio/balloon/balloon.h"

#include <jansson.h>
#include <stdint.h>

#include "base/byteorder.h"

static const char *const stat_names[BALLOON_S_NR] = {
	[BALLOON_S_SWAP_IN] = "stat-swap-in",
	[BALLOON_S_SWAP_OUT] = "stat-swap-out",
	[BALLOON_S_MAJFLT] = "stat-major-faults",
	[BALLOON_S_MINFLT] = "stat-minor-faults",
	[BALLOON_S_MEMFREE] = "stat-free-memory",
	[BALLOON_S_MEMTOT] = "stat-total-memory",
	[BALLOON_S_AVAIL] = "stat-available-memory",
	[BALLOON_S_CACHES] = "stat-disk-caches",
	[BALLOON_S_HTLB_PGALLOC] = "stat-htlb-pgalloc",
	[BALLOON_S_HTLB_PGFAIL] = "stat-htlb-pgfail",
	[BALLOON_S_OOM_KILL] = "stat-oom-kills",
	[BALLOON_S_ALLOC_STALL] = "stat-alloc-stalls",
	[BALLOON_S_ASYNC_SCAN] = "stat-async-scans",
	[BALLOON_S_DIRECT_SCAN] = "stat-direct-scans",
	[BALLOON_S_ASYNC_RECLAIM] = "stat-async-reclaims",
	[BALLOON_S_DIRECT_RECLAIM] = "stat-direct-reclaims",
};

const char *balloon_stat_name(unsigned tag)
{
	return tag < BALLOON_S_NR ? stat_names[tag] : NULL;
}

unsigned balloon_stats_parse(struct balloon_stats *s, const uint8_t *buf, size_t len)
{
	unsigned applied = 0;

	for (size_t off = 0; len - off >= BALLOON_STAT_SIZE; off += BALLOON_STAT_SIZE) {
		uint16_t tag = rd16(buf + off);

		if (tag >= BALLOON_S_NR)
			continue;
		s->val[tag] = rd64(buf + off + 2);
		s->have |= 1u << tag;
		applied++;
	}
	return applied;
}

json_t *balloon_stats_json(const struct balloon_stats *s)
{
	json_t *o = json_object();

	for (unsigned t = 0; o && t < BALLOON_S_NR; t++) {
		json_int_t v = -1;

		if (s->have & (1u << t))
			v = s->val[t] > INT64_MAX ? INT64_MAX : (json_int_t)s->val[t];
		json_object_set_new(o, stat_names[t], json_integer(v));
	}
	return o;
}
