/* virtio-blk options: the --disk table (also the JSON "disk" key, --help
 * and QMP introspection), and struct blk_opts made from it.
 *
 * --disk path=FILE[,readonly=on][,serial=ID][,aio=io_uring|native|threads]
 *        [,cache=none|writeback] */
#include "devices/virtio/blk/blk.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/options.h"

/* What the table parses into; blk_opts_from_table() turns it into the
 * fixed-size struct blk_opts the device keeps. */
struct blk_table_opts {
	char *path;
	bool readonly;
	char *serial;
	unsigned aio;		/* enum blk_aio */
	unsigned cache;		/* enum blk_cache */
};

static const char *const aio_names[] = {
	[BLK_AIO_IO_URING] = "io_uring", [BLK_AIO_NATIVE] = "native",
	[BLK_AIO_THREADS] = "threads", NULL,
};

static const char *const cache_names[] = {
	[BLK_CACHE_NONE] = "none", [BLK_CACHE_WRITEBACK] = "writeback", NULL,
};

const char *blk_aio_name(enum blk_aio aio)
{
	return (unsigned)aio < BLK_AIO_THREADS + 1 ? aio_names[aio] : "?";
}

/* The cross-field and value checks the generic parser cannot make. */
static int blk_check(void *opts, char *err, size_t errlen)
{
	const struct blk_table_opts *t = opts;
	size_t serial_len = t->serial ? strlen(t->serial) : 0;

	if (!t->path || !t->path[0]) {
		snprintf(err, errlen, "empty value for path");
		return -EINVAL;
	}
	if (strlen(t->path) >= PATH_MAX) {
		snprintf(err, errlen, "value of path is too long");
		return -EINVAL;
	}
	if (serial_len > BLK_SERIAL_LEN) {
		snprintf(err, errlen, "serial '%s' is longer than %d bytes", t->serial,
			 BLK_SERIAL_LEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < serial_len; i++) {
		if ((unsigned char)t->serial[i] < 0x20 || (unsigned char)t->serial[i] > 0x7e) {
			snprintf(err, errlen, "serial must be printable ASCII");
			return -EINVAL;
		}
	}
	if (t->aio == BLK_AIO_NATIVE && t->cache != BLK_CACHE_NONE) {
		snprintf(err, errlen, "aio=native requires cache=none (O_DIRECT)");
		return -EINVAL;
	}
	return 0;
}

static const struct dev_option blk_option_list[] = {
	{ .name = "path", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct blk_table_opts, path),
	  .help = "the disk image: a raw file or a block device", .required = true },
	{ .name = "readonly", .type = DEV_OPT_BOOL,
	  .offset = DEV_OPT_FIELD(struct blk_table_opts, readonly),
	  .help = "on: the guest cannot write (VIRTIO_BLK_F_RO); the image is opened read-only" },
	{ .name = "serial", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct blk_table_opts, serial),
	  .help = "the disk's ID string (GET_ID): up to 20 printable ASCII characters" },
	{ .name = "aio", .type = DEV_OPT_ENUM, .offset = DEV_OPT_FIELD(struct blk_table_opts, aio),
	  .help = "the I/O backend (native: Linux AIO, needs cache=none)", .def = "io_uring",
	  .choices = aio_names },
	{ .name = "cache", .type = DEV_OPT_ENUM,
	  .offset = DEV_OPT_FIELD(struct blk_table_opts, cache),
	  .help = "none: O_DIRECT, bypassing the host page cache", .def = "writeback",
	  .choices = cache_names },
};

struct dev_option_table blk_option_table = {
	.type = "virtio-blk",
	.flag = "disk",
	.json_key = "disk",
	.summary = "a virtio-blk disk (repeatable, up to 8)",
	.max_instances = BLK_MAX_DISKS,
	.size = sizeof(struct blk_table_opts),
	.opts = blk_option_list,
	.nr_opts = DEV_OPT_COUNT(blk_option_list),
	.check = blk_check,
};

int blk_opts_from_table(const void *parsed, struct blk_opts *o, char *err, size_t errlen)
{
	const struct blk_table_opts *t = parsed;

	memset(o, 0, sizeof(*o));
	/* blk_check() saw to both; a table parsed without it is refused. */
	if (!t->path || strlen(t->path) >= sizeof(o->path) ||
	    (t->serial && strlen(t->serial) >= sizeof(o->serial))) {
		snprintf(err, errlen, "path or serial too long");
		return -EINVAL;
	}
	strcpy(o->path, t->path);
	if (t->serial)
		strcpy(o->serial, t->serial);
	o->readonly = t->readonly;
	o->aio = (enum blk_aio)t->aio;
	o->cache = (enum blk_cache)t->cache;
	return 0;
}

int blk_parse_opts(const char *s, struct blk_opts *o, char *err, size_t errlen)
{
	struct blk_table_opts t = { 0 };
	int ret;

	memset(o, 0, sizeof(*o));
	ret = dev_options_parse(&blk_option_table, s, &t, err, errlen);
	if (ret)
		return ret;
	ret = blk_opts_from_table(&t, o, err, errlen);
	dev_options_free(&blk_option_table, &t);
	return ret;
}
