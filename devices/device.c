#include "devices/device.h"

#include <jansson.h>
#include <stddef.h>
#include <string.h>

static struct device_desc *device_head;

/* Insert sorted by level, keeping registration order within a level. */
void device_register(struct device_desc *desc)
{
	struct device_desc **pp = &device_head;

	while (*pp && (*pp)->level <= desc->level)
		pp = &(*pp)->next;
	desc->next = *pp;
	*pp = desc;
}

struct device_desc *device_list(void)
{
	return device_head;
}

const struct device_desc *device_find(const char *name)
{
	for (struct device_desc *d = device_head; d; d = d->next)
		if (strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

void device_emit_event(const struct device_ctx *ctx, const char *name, struct json_t *data)
{
	if (ctx->ops && ctx->ops->emit_event)
		ctx->ops->emit_event(ctx->machine, name, data);
	else
		json_decref(data);
}
