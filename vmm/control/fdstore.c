/* The named fd table behind QMP getfd/closefd (see fdstore.h). */
#include "vmm/control/fdstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct named_fd {
	char name[FDSTORE_NAME_MAX + 1];
	int fd;			/* -1: free slot */
};

static pthread_mutex_t fdstore_lock = PTHREAD_MUTEX_INITIALIZER;
static struct named_fd fdstore[FDSTORE_MAX];
static bool fdstore_ready;

/* fdstore_lock held. */
static void ensure_ready(void)
{
	if (fdstore_ready)
		return;
	for (unsigned i = 0; i < FDSTORE_MAX; i++)
		fdstore[i].fd = -1;
	fdstore_ready = true;
}

/* fdstore_lock held. */
static struct named_fd *find(const char *name)
{
	for (unsigned i = 0; i < FDSTORE_MAX; i++)
		if (fdstore[i].fd >= 0 && strcmp(fdstore[i].name, name) == 0)
			return &fdstore[i];
	return NULL;
}

int fdstore_put(const char *name, int fd, char *err, size_t errlen)
{
	struct named_fd *slot;
	size_t len = strlen(name);

	/* QEMU's rules: a name, not a number (fd:N means a number). */
	if (len == 0 || len > FDSTORE_NAME_MAX || (name[0] >= '0' && name[0] <= '9')) {
		snprintf(err, errlen, "Parameter 'fdname' expects a name of 1 to %d characters "
			 "not starting with a digit", FDSTORE_NAME_MAX);
		close(fd);
		return -EINVAL;
	}
	pthread_mutex_lock(&fdstore_lock);
	ensure_ready();
	slot = find(name);
	if (slot) {
		close(slot->fd);
	} else {
		for (unsigned i = 0; i < FDSTORE_MAX && !slot; i++)
			if (fdstore[i].fd < 0)
				slot = &fdstore[i];
	}
	if (!slot) {
		pthread_mutex_unlock(&fdstore_lock);
		snprintf(err, errlen, "too many named file descriptors (limit %d); closefd some",
			 FDSTORE_MAX);
		close(fd);
		return -ENOSPC;
	}
	memcpy(slot->name, name, len + 1);
	slot->fd = fd;
	pthread_mutex_unlock(&fdstore_lock);
	return 0;
}

int fdstore_take(const char *name)
{
	struct named_fd *slot;
	int fd = -ENOENT;

	pthread_mutex_lock(&fdstore_lock);
	ensure_ready();
	slot = find(name);
	if (slot) {
		fd = slot->fd;
		slot->fd = -1;
	}
	pthread_mutex_unlock(&fdstore_lock);
	return fd;
}

int fdstore_close(const char *name)
{
	int fd = fdstore_take(name);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

json_t *fdstore_list(void)
{
	json_t *list = json_array();

	pthread_mutex_lock(&fdstore_lock);
	ensure_ready();
	for (unsigned i = 0; list && i < FDSTORE_MAX; i++)
		if (fdstore[i].fd >= 0)
			json_array_append_new(list, json_pack("{s:s, s:i}", "fdname", fdstore[i].name,
							      "fd", fdstore[i].fd));
	pthread_mutex_unlock(&fdstore_lock);
	return list;
}

void fdstore_clear(void)
{
	pthread_mutex_lock(&fdstore_lock);
	ensure_ready();
	for (unsigned i = 0; i < FDSTORE_MAX; i++) {
		if (fdstore[i].fd >= 0)
			close(fdstore[i].fd);
		fdstore[i].fd = -1;
	}
	pthread_mutex_unlock(&fdstore_lock);
}
