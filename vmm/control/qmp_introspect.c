/* QMP introspection from the device options tables (devices/options.h):
 * qom-list-types names every device type, device-list-properties lists a
 * type's options as QEMU's ObjectPropertyInfo ({name, type, description,
 * default-value}). The same tables drive the CLI flags, JSON keys and
 * --help, so what QMP reports is what Ember accepts. */
#include "vmm/control/qmp_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/options.h"

/* QEMU's property type names. An enum is a string here; its choices are
 * in the description. */
static const char *property_type(enum dev_opt_type t)
{
	switch (t) {
	case DEV_OPT_STRING: return "str";
	case DEV_OPT_BOOL: return "bool";
	case DEV_OPT_UINT: return "uint64";
	case DEV_OPT_SIZE: return "size";
	case DEV_OPT_ENUM: return "str";
	}
	return "str";
}

/* The option's default as a typed JSON value, parsed by the same parser
 * realize uses (a one-option table), or NULL when it has none. */
static json_t *default_value(const struct dev_option_table *t, const struct dev_option *o)
{
	struct dev_option one = *o;
	struct dev_option_table tt = { .type = t->type, .size = t->size, .opts = &one,
				       .nr_opts = 1 };
	char err[128];
	json_t *v = NULL;
	void *scratch;
	const char *f;

	if (!o->def || o->required)
		return NULL;
	scratch = calloc(1, t->size);
	if (!scratch)
		return NULL;
	if (dev_options_parse(&tt, "", scratch, err, sizeof(err))) {
		free(scratch);
		return NULL;
	}
	f = (const char *)scratch + o->offset;
	switch (o->type) {
	case DEV_OPT_STRING:
		v = json_string(*(char *const *)f ? *(char *const *)f : "");
		break;
	case DEV_OPT_BOOL:
		v = json_boolean(*(const bool *)f);
		break;
	case DEV_OPT_UINT:
	case DEV_OPT_SIZE: {
		uint64_t n;

		memcpy(&n, f, sizeof(n));
		v = n <= (uint64_t)INT64_MAX ? json_integer((json_int_t)n) : NULL;
		break;
	}
	case DEV_OPT_ENUM: {
		unsigned i;

		memcpy(&i, f, sizeof(i));
		v = json_string(o->choices[i]);
		break;
	}
	}
	dev_options_free(&tt, scratch);
	free(scratch);
	return v;
}

static json_t *property_info(const struct dev_option_table *t, const struct dev_option *o)
{
	json_t *p = json_pack("{s:s, s:s}", "name", o->name, "type", property_type(o->type));
	char desc[512];
	size_t used;
	json_t *def;

	if (!p)
		return NULL;
	used = (size_t)snprintf(desc, sizeof(desc), "%s", o->help ? o->help : "");
	if (o->type == DEV_OPT_ENUM && o->choices) {
		for (unsigned i = 0; o->choices[i] && used < sizeof(desc); i++)
			used += (size_t)snprintf(desc + used, sizeof(desc) - used, "%s%s",
						 i ? ", " : used ? " (" : "(", o->choices[i]);
		if (used < sizeof(desc))
			snprintf(desc + used, sizeof(desc) - used, ")");
	}
	if (desc[0])
		json_object_set_new(p, "description", json_string(desc));
	def = default_value(t, o);
	if (def)
		json_object_set_new(p, "default-value", def);
	return p;
}

json_t *qmp_cmd_qom_list_types(struct qmp_session *s, json_t *args, json_t **err)
{
	json_t *list = json_array();

	/* "implements" and "abstract" filter nothing: every type is a
	 * concrete device. */
	(void)s; (void)args; (void)err;
	for (const struct dev_option_table *t = dev_option_tables(); t; t = t->next)
		json_array_append_new(list, json_pack("{s:s}", "name", t->type));
	return list;
}

json_t *qmp_cmd_device_list_properties(struct qmp_session *s, json_t *args, json_t **err)
{
	const char *name = json_string_value(json_object_get(args, "typename"));
	const struct dev_option_table *t = dev_option_table_find(name);
	json_t *list;

	(void)s;
	if (!t) {
		*err = qmp_error_new("GenericError", "Device '%s' not found", name ? name : "");
		return NULL;
	}
	list = json_array();
	for (unsigned i = 0; i < t->nr_opts; i++)
		json_array_append_new(list, property_info(t, &t->opts[i]));
	return list;
}
