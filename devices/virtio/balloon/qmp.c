/* virtio-balloon's QMP commands, as QEMU names them:
 *   balloon {"value": BYTES}   the guest should have BYTES of memory
 *   query-balloon              {"actual": BYTES} (RAM minus the balloon), the
 *                              last guest stats, and Ember's own accounting
 * The guest's answers come later: BALLOON_CHANGE events as `actual` moves,
 * and fresh stats on the next query. */
#include "devices/virtio/balloon/balloon.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "devices/virtio/registry.h"

/* The one balloon (max_instances 1), or NULL with QEMU's error. */
static struct virtio_device *the_balloon(void *state, char *err, size_t errlen)
{
	struct virtio_set *set = state;

	if (!set || !virtio_set_count(set)) {
		snprintf(err, errlen, "No balloon device has been activated");
		return NULL;
	}
	return virtio_set_device(set, 0);
}

static int qmp_balloon(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	struct virtio_device *b = the_balloon(state, err, errlen);
	json_t *value = json_object_get(args, "value");
	const char *key;
	json_t *v;

	if (!b)
		return -ENODEV;
	json_object_foreach(args, key, v) {
		if (strcmp(key, "value")) {
			snprintf(err, errlen, "Parameter '%s' is unexpected", key);
			return -EINVAL;
		}
	}
	if (!json_is_integer(value)) {
		snprintf(err, errlen, "Parameter 'value' is missing or not an integer");
		return -EINVAL;
	}
	if (json_integer_value(value) <= 0 ||
	    balloon_set_target(b, (uint64_t)json_integer_value(value))) {
		snprintf(err, errlen, "Parameter 'value' expects a size");
		return -EINVAL;
	}
	*ret = NULL;
	return 0;
}

static int qmp_query_balloon(void *state, json_t *args, json_t **ret, char *err, size_t errlen)
{
	struct virtio_device *b = the_balloon(state, err, errlen);

	(void)args;
	if (!b)
		return -ENODEV;
	*ret = balloon_query(b);
	if (!*ret) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

const struct device_qmp_command balloon_qmp_commands[] = {
	{ .name = "balloon", .fn = qmp_balloon },
	{ .name = "query-balloon", .fn = qmp_query_balloon },
	{ .name = NULL },
};
