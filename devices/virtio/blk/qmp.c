/* virtio-blk's QMP commands, on the struct virtio_set of every --disk (in
 * command-line order, named virtio0, virtio1, ...): query-block and
 * query-blockstats as QEMU shapes them, and x-query-disks, the per-disk
 * counters x-query-exits reports. */
#include "devices/virtio/blk/blk.h"

#include <jansson.h>
#include <stdio.h>

#include "devices/virtio/registry.h"

struct disk_info {
	char device[24];	/* "virtio0" */
	char qdev[64];		/* its QOM path */
	const char *file;
	bool ro;
	bool direct;		/* O_DIRECT (cache=none) */
	uint64_t size;		/* bytes */
	struct blk_stats st;
};

static void disk_info(const struct virtio_set *set, unsigned i, struct disk_info *di)
{
	struct blk_dev *b = blk_of(virtio_set_device(set, i));
	const struct blk_opts *o = blk_options(b);

	snprintf(di->device, sizeof(di->device), "virtio%u", i);
	snprintf(di->qdev, sizeof(di->qdev), "/machine/peripheral/%s/virtio-backend", di->device);
	di->file = o->path;
	di->ro = o->readonly;
	di->direct = blk_is_direct(b);
	di->size = blk_capacity(b) * BLK_SECTOR_SIZE;
	blk_get_stats(b, &di->st);
}

static json_t *block_info_json(const struct disk_info *di)
{
	json_t *image, *inserted;

	image = json_pack("{s:s, s:s, s:I, s:b}", "filename", di->file, "format", "raw",
			  "virtual-size", (json_int_t)di->size, "dirty-flag", 0);
	inserted = json_pack("{s:s, s:s, s:b, s:s, s:i, s:b, s:s, "
			     "s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
			     "s:{s:b, s:b, s:b}, s:o}",
			     "file", di->file, "node-name", di->device,
			     "ro", di->ro, "drv", "raw", "backing_file_depth", 0,
			     "encrypted", 0, "detect_zeroes", "off",
			     "bps", 0, "bps_rd", 0, "bps_wr", 0, "iops", 0, "iops_rd", 0,
			     "iops_wr", 0, "write_threshold", 0,
			     "cache", "writeback", 1, "direct", di->direct, "no-flush", 0,
			     "image", image);
	return json_pack("{s:s, s:s, s:b, s:b, s:s, s:s, s:o}",
			 "device", di->device, "qdev", di->qdev,
			 "locked", 0, "removable", 0, "type", "unknown",
			 "io-status", "ok", "inserted", inserted);
}

static json_t *block_stats_json(const struct disk_info *di)
{
	const struct blk_stats *s = &di->st;
	json_t *st = json_object();
	const struct { const char *name; uint64_t v; } f[] = {
		{ "rd_bytes", s->rd_bytes }, { "wr_bytes", s->wr_bytes },
		{ "unmap_bytes", 0 },
		{ "rd_operations", s->reads }, { "wr_operations", s->writes },
		{ "flush_operations", s->flushes }, { "unmap_operations", 0 },
		{ "rd_total_time_ns", 0 }, { "wr_total_time_ns", 0 },
		{ "flush_total_time_ns", 0 }, { "unmap_total_time_ns", 0 },
		{ "wr_highest_offset", 0 },
		{ "rd_merged", 0 }, { "wr_merged", 0 }, { "unmap_merged", 0 },
		{ "failed_rd_operations", s->failed_reads },
		{ "failed_wr_operations", s->failed_writes },
		{ "failed_flush_operations", s->failed_flushes },
		{ "failed_unmap_operations", 0 },
		{ "invalid_rd_operations", 0 }, { "invalid_wr_operations", 0 },
		{ "invalid_flush_operations", 0 }, { "invalid_unmap_operations", 0 },
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		json_object_set_new(st, f[i].name, json_integer((json_int_t)f[i].v));
	json_object_set_new(st, "account_invalid", json_true());
	json_object_set_new(st, "account_failed", json_true());
	json_object_set_new(st, "timed_stats", json_array());
	return json_pack("{s:s, s:s, s:s, s:o}", "device", di->device, "qdev", di->qdev,
			 "node-name", di->device, "stats", st);
}

static json_t *disk_counters_json(const struct disk_info *di)
{
	const struct blk_stats *s = &di->st;

	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "device", di->device,
			 "rd_bytes", (json_int_t)s->rd_bytes,
			 "wr_bytes", (json_int_t)s->wr_bytes,
			 "rd_operations", (json_int_t)s->reads,
			 "wr_operations", (json_int_t)s->writes,
			 "flush_operations", (json_int_t)s->flushes,
			 "failed_operations", (json_int_t)(s->failed_reads + s->failed_writes +
							   s->failed_flushes));
}

/* One entry per disk; no disks (a NULL or empty set) is []. */
static int for_each_disk(const struct virtio_set *set, json_t *(*fn)(const struct disk_info *),
			 json_t **ret)
{
	json_t *list = json_array();

	for (unsigned i = 0; i < virtio_set_count(set); i++) {
		struct disk_info di;

		disk_info(set, i, &di);
		json_array_append_new(list, fn(&di));
	}
	*ret = list;
	return 0;
}

static int cmd_query_block(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	(void)args; (void)err; (void)errlen;
	return for_each_disk(state, block_info_json, ret);
}

static int cmd_query_blockstats(void *state, json_t *args, json_t **ret, char *err,
				size_t errlen)
{
	(void)args; (void)err; (void)errlen;
	return for_each_disk(state, block_stats_json, ret);
}

static int cmd_query_disks(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	(void)args; (void)err; (void)errlen;
	return for_each_disk(state, disk_counters_json, ret);
}

const struct device_qmp_command blk_qmp_commands[] = {
	{ "query-block", cmd_query_block },
	{ "query-blockstats", cmd_query_blockstats },
	{ "x-query-disks", cmd_query_disks },
	{ NULL, NULL },
};
