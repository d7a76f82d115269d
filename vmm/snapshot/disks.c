/* DIR/disks.json: the disks a snapshot belongs with (disks.h). */
#include "vmm/snapshot/disks.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "vmm/config.h"

#define DISKS_FORMAT_VERSION	1
#define MAX_DISKS		CONFIG_MAX_DEVICES

struct disk {
	const char *opts;
	char path[PATH_MAX];
	char serial[64];
	bool readonly;
};

static bool truthy(const char *v)
{
	return !strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1");
}

/* The guest-visible part of a --disk option string ("path=F,readonly=on,
 * serial=S"; a bare first value is the path). */
static void disk_parse(const char *opts, struct disk *d)
{
	const char *p = opts;

	memset(d, 0, sizeof(*d));
	d->opts = opts;
	for (unsigned i = 0; *p; i++) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n);
		char val[PATH_MAX];
		size_t klen = eq ? (size_t)(eq - p) : 0, vlen = eq ? n - klen - 1 : n;

		if (vlen >= sizeof(val))
			vlen = sizeof(val) - 1;
		memcpy(val, eq ? eq + 1 : p, vlen);
		val[vlen] = 0;
		if ((!eq && i == 0) || (klen == 4 && !strncmp(p, "path", 4)))
			memcpy(d->path, val, vlen + 1);
		else if (klen == 8 && !strncmp(p, "readonly", 8))
			d->readonly = truthy(val);
		else if (klen == 6 && !strncmp(p, "serial", 6))
			snprintf(d->serial, sizeof(d->serial), "%.63s", val);
		p += n;
		if (*p == ',')
			p++;
	}
}

/* The virtio-blk devices, in command-line order. */
static unsigned collect(const struct vm_config *cfg, struct disk *out)
{
	unsigned n = 0;

	for (unsigned i = 0; i < cfg->nr_devices && i < CONFIG_MAX_DEVICES; i++)
		if (cfg->devices[i].type && !strcmp(cfg->devices[i].type, "virtio-blk"))
			disk_parse(cfg->devices[i].args ? cfg->devices[i].args : "", &out[n++]);
	return n;
}

struct identity {
	uint64_t size, dev, ino;
};

static int identify(const char *path, struct identity *id)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
	} else {
		off_t end = S_ISBLK(st.st_mode) ? lseek(fd, 0, SEEK_END) : st.st_size;

		if (end < 0)
			ret = -errno;
		id->size = (uint64_t)end;
		id->dev = (uint64_t)st.st_dev;
		id->ino = (uint64_t)st.st_ino;
	}
	close(fd);
	return ret;
}

int snapshot_disks_describe(const struct vm_config *cfg, char **out, char *err, size_t errlen)
{
	struct disk *d = calloc(MAX_DISKS, sizeof(*d));
	json_t *list = json_array(), *root;
	unsigned n;
	int ret = 0;

	*out = NULL;
	if (!d || !list) {
		free(d);
		json_decref(list);
		return errf(err, errlen, -ENOMEM, "out of memory");
	}
	n = collect(cfg, d);
	for (unsigned i = 0; i < n && !ret; i++) {
		struct identity id;

		ret = identify(d[i].path, &id);
		if (ret) {
			errf(err, errlen, ret, "disk %u (%s): %s", i, d[i].path, strerror(-ret));
			break;
		}
		json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:s, s:I, s:I, s:I}",
						      "options", d[i].opts, "path", d[i].path,
						      "readonly", d[i].readonly, "serial", d[i].serial,
						      "size", (json_int_t)id.size,
						      "dev", (json_int_t)id.dev,
						      "ino", (json_int_t)id.ino));
	}
	free(d);
	if (ret) {
		json_decref(list);
		return ret;
	}
	root = json_pack("{s:i, s:o}", "version", DISKS_FORMAT_VERSION, "disks", list);
	*out = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
	json_decref(root);
	return *out ? 0 : errf(err, errlen, -ENOMEM, "out of memory");
}

static int check_one(json_t *e, unsigned i, const struct disk *d, char *err, size_t errlen)
{
	json_t *size = json_object_get(e, "size"), *dev = json_object_get(e, "dev");
	json_t *ino = json_object_get(e, "ino"), *ro = json_object_get(e, "readonly");
	json_t *serial = json_object_get(e, "serial"), *path = json_object_get(e, "path");
	struct identity id;
	int ret;

	if (!json_is_object(e) || !json_is_integer(size) || !json_is_integer(dev) ||
	    !json_is_integer(ino) || !json_is_boolean(ro) || !json_is_string(serial) ||
	    !json_is_string(path) || json_integer_value(size) < 0)
		return errf(err, errlen, -EINVAL, "snapshot: %s: disk %u: missing or mistyped fields",
			    "disks.json", i);
	if (json_is_true(ro) != d->readonly)
		return errf(err, errlen, -EINVAL, "snapshot: disk %u (%s) was %s, it is %s now "
			    "(give the same --disk options)", i, d->path,
			    json_is_true(ro) ? "read-only" : "writable",
			    d->readonly ? "read-only" : "writable");
	if (strcmp(json_string_value(serial), d->serial))
		return errf(err, errlen, -EINVAL, "snapshot: disk %u (%s) had serial '%.20s', it has "
			    "'%.20s' now (give the same --disk options)", i, d->path,
			    json_string_value(serial), d->serial);
	ret = identify(d->path, &id);
	if (ret)
		return errf(err, errlen, ret, "snapshot: disk %u (%s): %s", i, d->path,
			    strerror(-ret));
	if (id.dev != (uint64_t)json_integer_value(dev) || id.ino != (uint64_t)json_integer_value(ino))
		return errf(err, errlen, -EINVAL, "snapshot: disk %u (%s) is not the file the snapshot "
			    "was taken with (%.200s): another device or inode", i, d->path,
			    json_string_value(path));
	if (id.size != (uint64_t)json_integer_value(size))
		return errf(err, errlen, -EINVAL, "snapshot: disk %u (%s) is %llu bytes, it was %llu "
			    "when the snapshot was taken", i, d->path, (unsigned long long)id.size,
			    (unsigned long long)json_integer_value(size));
	return 0;
}

int snapshot_disks_check_json(const char *text, size_t len, const struct vm_config *cfg,
			      char *err, size_t errlen)
{
	struct disk *d = calloc(MAX_DISKS, sizeof(*d));
	json_t *root, *list, *ver;
	json_error_t jerr;
	unsigned n;
	int ret = 0;

	if (!d)
		return errf(err, errlen, -ENOMEM, "out of memory");
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	list = json_object_get(root, "disks");
	ver = json_object_get(root, "version");
	if (!root || !json_is_array(list) || !json_is_integer(ver)) {
		ret = errf(err, errlen, -EINVAL, "snapshot: disks.json: %s",
			   root ? "no version or disks list" : jerr.text);
		goto out;
	}
	if (json_integer_value(ver) != DISKS_FORMAT_VERSION) {
		ret = errf(err, errlen, -EINVAL, "snapshot: disks.json: version %lld, expected %d",
			   (long long)json_integer_value(ver), DISKS_FORMAT_VERSION);
		goto out;
	}
	n = collect(cfg, d);
	if (json_array_size(list) != n) {
		ret = errf(err, errlen, -EINVAL, "snapshot: taken with %zu disk%s, this VM has %u "
			   "(give the same --disk options)", json_array_size(list),
			   json_array_size(list) == 1 ? "" : "s", n);
		goto out;
	}
	for (unsigned i = 0; i < n && !ret; i++)
		ret = check_one(json_array_get(list, i), i, &d[i], err, errlen);
out:
	json_decref(root);
	free(d);
	return ret;
}

int snapshot_disks_check(const char *dir, const struct vm_config *cfg, char *err, size_t errlen)
{
	char path[PATH_MAX], *buf;
	struct stat st;
	ssize_t n;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/disks.json", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errf(err, errlen, -errno, "snapshot: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SNAPSHOT_DISKS_MAX_BYTES) {
		close(fd);
		return errf(err, errlen, -EINVAL, "snapshot: %s: not a regular file of at most %u "
			    "bytes", path, SNAPSHOT_DISKS_MAX_BYTES);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		return errf(err, errlen, -EIO, "snapshot: %s: short read", path);
	}
	ret = snapshot_disks_check_json(buf, (size_t)n, cfg, err, errlen);
	free(buf);
	return ret;
}
