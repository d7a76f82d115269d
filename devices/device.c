#include "devices/device.h"

#include <stddef.h>

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
