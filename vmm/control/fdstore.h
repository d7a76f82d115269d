/* Named file descriptors a QMP client passed with getfd (SCM_RIGHTS), as
 * QEMU keeps them: a management layer that runs Ember without privileges
 * opens taps, sockets or files itself and hands them over by name. The
 * table belongs to the process; every call may come from any thread. */
#ifndef EMBER_CONTROL_FDSTORE_H
#define EMBER_CONTROL_FDSTORE_H

#include <jansson.h>
#include <stddef.h>

#define FDSTORE_MAX		32
#define FDSTORE_NAME_MAX	64

/* Store fd under name (stolen on success and on failure): a name already
 * there has its old fd closed and replaced, as QEMU's getfd does. 0, or
 * -errno with a one-line reason in err (bad name, table full). */
int fdstore_put(const char *name, int fd, char *err, size_t errlen);
/* Take the fd named name out of the table (the caller owns it now), or
 * -ENOENT. */
int fdstore_take(const char *name);
/* Close and forget name: 0 or -ENOENT. */
int fdstore_close(const char *name);
/* [{"fdname": NAME, "fd": N}, ...] */
json_t *fdstore_list(void);
/* Close everything (process exit, tests). */
void fdstore_clear(void);

#endif
