/* The disks a snapshot was taken with (DIR/disks.json): each disk's option
 * string, path, size and identity (device and inode). A restore must use
 * the same files: same count and order, same guest-visible options
 * (readonly, serial), the same inode, and the same size. */
#ifndef EMBER_SNAPSHOT_DISKS_H
#define EMBER_SNAPSHOT_DISKS_H

#include <stddef.h>

struct vm_config;

#define SNAPSHOT_DISKS_MAX_BYTES (1u << 20)

/* The JSON text for cfg's disks (malloc'd into *out). 0 or -errno with
 * one line in err. */
int snapshot_disks_describe(const struct vm_config *cfg, char **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Check DIR/disks.json against cfg's disks as they are now. 0 or -errno
 * with one line in err. */
int snapshot_disks_check(const char *dir, const struct vm_config *cfg, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The same check on JSON text already read (unit tests, fuzzing). */
int snapshot_disks_check_json(const char *text, size_t len, const struct vm_config *cfg,
			      char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
