#include "cli/config_file.h"

#include "cli/args.h"
#include "devices/options.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_CPUS 1024
/* The same bounds as --memory. */
#define MEMORY_MIN (16ULL << 20)
#define MEMORY_MAX (1ULL << 40)

/* Every string handed out, so config_file_free() can release them. */
static char **cf_strings;
static size_t cf_nr, cf_cap;

/* The JSON key that set a device type in this load (two keys may name the
 * same type: "disk" and the older "disks"). */
struct device_key {
	const char *type;
	const char *key;
};

struct loader {
	struct vm_config cfg;	/* working copy, committed on success */
	struct device_key set[CONFIG_MAX_DEVICES];
	unsigned nr_set;
	size_t first_string;	/* cf_strings index where this load began */
	char *err;
	size_t errlen;
};

static int fail(struct loader *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct loader *ld, const char *fmt, ...)
{
	va_list ap;

	if (ld->errlen) {
		va_start(ap, fmt);
		vsnprintf(ld->err, ld->errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static char *keep(struct loader *ld, char *s)
{
	if (!s)
		return NULL;
	if (cf_nr == cf_cap) {
		size_t cap = cf_cap ? cf_cap * 2 : 16;
		char **n = realloc(cf_strings, cap * sizeof(*n));

		if (!n) {
			free(s);
			return NULL;
		}
		cf_strings = n;
		cf_cap = cap;
	}
	(void)ld;
	cf_strings[cf_nr++] = s;
	return s;
}

static void drop_since(size_t first)
{
	while (cf_nr > first)
		free(cf_strings[--cf_nr]);
}

void config_file_free(void)
{
	drop_since(0);
	free(cf_strings);
	cf_strings = NULL;
	cf_cap = 0;
}

static int get_string(struct loader *ld, json_t *v, const char *field, bool nonempty,
		      const char **out)
{
	char *s;

	if (!json_is_string(v))
		return fail(ld, "%s: expected string", field);
	if (nonempty && !json_string_length(v))
		return fail(ld, "%s: must not be empty", field);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return fail(ld, "%s: must not contain NUL", field);
	s = keep(ld, strdup(json_string_value(v)));
	if (!s)
		return fail(ld, "%s: out of memory", field);
	*out = s;
	return 0;
}

static int get_uint(struct loader *ld, json_t *v, const char *field,
		    json_int_t min, json_int_t max, unsigned *out)
{
	json_int_t n;

	if (!json_is_integer(v))
		return fail(ld, "%s: expected integer", field);
	n = json_integer_value(v);
	if (n < min || n > max)
		return fail(ld, "%s: must be between %lld and %lld", field,
			    (long long)min, (long long)max);
	*out = (unsigned)n;
	return 0;
}

static int get_memory(struct loader *ld, json_t *v)
{
	uint64_t bytes;

	if (json_is_integer(v)) {
		if (json_integer_value(v) <= 0)
			return fail(ld, "memory: must be positive");
		bytes = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		/* The --memory syntax: K/M/G suffixes, bare numbers are MiB. */
		if (parse_size(json_string_value(v), &bytes) < 0)
			return fail(ld, "memory: '%s' is not a size (e.g. 512M, 2G)",
				    json_string_value(v));
	} else {
		return fail(ld, "memory: expected integer or size string");
	}
	if (bytes < MEMORY_MIN)
		return fail(ld, "memory: %llu bytes is too small (minimum 16M)",
			    (unsigned long long)bytes);
	if (bytes % 4096)
		return fail(ld, "memory: %llu bytes is not a multiple of 4 KiB",
			    (unsigned long long)bytes);
	if (bytes > MEMORY_MAX)
		return fail(ld, "memory: %llu bytes is larger than 1 TiB",
			    (unsigned long long)bytes);
	ld->cfg.memory = bytes;
	return 0;
}

static int get_console(struct loader *ld, json_t *v)
{
	const char *s;

	if (!json_is_string(v))
		return fail(ld, "console: expected string");
	s = json_string_value(v);
	if (!strcmp(s, "stdio")) {
		ld->cfg.console = CONSOLE_STDIO;
		ld->cfg.console_path = NULL;
	} else if (!strcmp(s, "none")) {
		ld->cfg.console = CONSOLE_NONE;
		ld->cfg.console_path = NULL;
	} else if (!strncmp(s, "file:", 5) && s[5]) {
		char *p = keep(ld, strdup(s + 5));

		if (!p)
			return fail(ld, "console: out of memory");
		ld->cfg.console = CONSOLE_FILE;
		ld->cfg.console_path = p;
	} else {
		return fail(ld, "console: expected \"stdio\", \"none\" or \"file:PATH\"");
	}
	return 0;
}

/* Append ",key=value" to the option string being built. */
static int opt_append(char **buf, size_t *len, const char *key, const char *val)
{
	size_t add = strlen(key) + strlen(val) + 2;
	char *n = realloc(*buf, *len + add + 1);

	if (!n)
		return -ENOMEM;
	*len += (size_t)sprintf(n + *len, "%s%s=%s", *len ? "," : "", key, val);
	*buf = n;
	return 0;
}

/* ---- devices from options tables ---- */

/* "path, readonly, serial" into buf. */
static void option_names(const struct dev_option_table *t, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < t->nr_opts && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", t->opts[i].name);

		if (w < 0)
			break;
		used += (size_t)w;
	}
}

static const struct dev_option *table_option(const struct dev_option_table *t, const char *name,
					     size_t len)
{
	for (unsigned i = 0; i < t->nr_opts; i++)
		if (strlen(t->opts[i].name) == len && !strncmp(t->opts[i].name, name, len))
			return &t->opts[i];
	return NULL;
}

/* An object of option: value into "key=value,..." (table order). */
static int object_to_options(struct loader *ld, const struct dev_option_table *t,
			     const char *path, json_t *obj, char **out)
{
	char *opt = NULL, num[32], valid[256];
	size_t len = 0;
	const char *key;
	json_t *v;
	int r = 0;

	json_object_foreach(obj, key, v) {
		if (!table_option(t, key, strlen(key))) {
			option_names(t, valid, sizeof(valid));
			if (!t->nr_opts)
				return fail(ld, "%s.%s: unknown option (%s takes no options)", path,
					    key, t->type);
			return fail(ld, "%s.%s: unknown option (valid: %s)", path, key, valid);
		}
	}
	for (unsigned i = 0; i < t->nr_opts; i++) {
		const char *name = t->opts[i].name, *val;

		v = json_object_get(obj, name);
		if (!v)
			continue;
		if (json_is_string(v)) {
			val = json_string_value(v);
			if (strlen(val) != json_string_length(v)) {
				r = fail(ld, "%s.%s: must not contain NUL", path, name);
				goto out;
			}
			if (strchr(val, ',')) {
				r = fail(ld, "%s.%s: must not contain ','", path, name);
				goto out;
			}
		} else if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
			val = num;
		} else if (json_is_boolean(v)) {
			val = json_is_true(v) ? "on" : "off";
		} else {
			r = fail(ld, "%s.%s: expected string, integer or boolean", path, name);
			goto out;
		}
		if (opt_append(&opt, &len, name, val) < 0) {
			r = fail(ld, "%s: out of memory", path);
			goto out;
		}
	}
	*out = opt ? opt : strdup("");
	opt = NULL;
	if (!*out)
		r = fail(ld, "%s: out of memory", path);
out:
	free(opt);
	return r;
}

/* Parse the option string as realize will; errors name the field path:
 * "disk[1].readonly: expected on or off", "disk[0]: unknown option ...". */
static int validate_options(struct loader *ld, const struct dev_option_table *t,
			    const char *path, const char *args)
{
	void *scratch = calloc(1, t->size ? t->size : 1);
	char why[224];
	size_t klen;

	if (!scratch)
		return fail(ld, "%s: out of memory", path);
	if (dev_options_parse(t, args, scratch, why, sizeof(why)) == 0) {
		dev_options_free(t, scratch);
		free(scratch);
		return 0;
	}
	free(scratch);
	klen = strcspn(why, ":");
	if (why[klen] == ':' && table_option(t, why, klen))
		return fail(ld, "%s.%s", path, why);
	return fail(ld, "%s: %s", path, why);
}

/* One instance: an option string, an object of options, or true. */
static int device_instance(struct loader *ld, const struct dev_option_table *t,
			   const char *path, json_t *v, const char **out)
{
	char *args = NULL;
	int r;

	if (json_is_string(v)) {
		if (strlen(json_string_value(v)) != json_string_length(v))
			return fail(ld, "%s: must not contain NUL", path);
		args = strdup(json_string_value(v));
		if (!args)
			return fail(ld, "%s: out of memory", path);
	} else if (json_is_object(v)) {
		r = object_to_options(ld, t, path, v, &args);
		if (r)
			return r;
	} else if (json_is_true(v)) {
		args = strdup("");
		if (!args)
			return fail(ld, "%s: out of memory", path);
	} else {
		return fail(ld, "%s: expected an option string, an object or true%s", path,
			    t->max_instances > 1 ? ", or an array of them" : "");
	}
	r = validate_options(ld, t, path, args);
	if (r) {
		free(args);
		return r;
	}
	*out = keep(ld, args);
	return *out ? 0 : fail(ld, "%s: out of memory", path);
}

static int add_spec(struct loader *ld, const struct dev_option_table *t, const char *path,
		    const char *args)
{
	if (ld->cfg.nr_devices >= CONFIG_MAX_DEVICES)
		return fail(ld, "%s: too many devices (at most %d in all)", path,
			    CONFIG_MAX_DEVICES);
	ld->cfg.devices[ld->cfg.nr_devices++] = (struct device_spec){ t->type, args };
	return 0;
}

/* key: the device(s) of table t; replaces what an earlier load set. false
 * means none. */
static int get_device(struct loader *ld, const struct dev_option_table *t, const char *key,
		      json_t *v)
{
	unsigned max = t->max_instances ? t->max_instances : 1;
	const char *args;
	char path[96];
	size_t i;
	json_t *e;
	int r;

	for (i = 0; i < ld->nr_set; i++)
		if (!strcmp(ld->set[i].type, t->type))
			return fail(ld, "%s: %s already given as '%s'", key, t->type,
				    ld->set[i].key);
	if (ld->nr_set < CONFIG_MAX_DEVICES)
		ld->set[ld->nr_set++] = (struct device_key){ t->type, key };
	for (i = 0; i < ld->cfg.nr_devices; i++) {
		if (!strcmp(ld->cfg.devices[i].type, t->type)) {
			memmove(&ld->cfg.devices[i], &ld->cfg.devices[i + 1],
				(ld->cfg.nr_devices - i - 1) * sizeof(ld->cfg.devices[0]));
			ld->cfg.nr_devices--;
			i--;
		}
	}
	if (json_is_false(v))
		return 0;
	if (!json_is_array(v)) {
		r = device_instance(ld, t, key, v, &args);
		return r ? r : add_spec(ld, t, key, args);
	}
	if (max == 1)
		return fail(ld, "%s: expected an option string, an object or true (one %s device)",
			    key, t->type);
	if (json_array_size(v) > max)
		return fail(ld, "%s: at most %u %s devices", key, max, t->type);
	json_array_foreach(v, i, e) {
		snprintf(path, sizeof(path), "%s[%zu]", key, i);
		r = device_instance(ld, t, path, e, &args);
		if (!r)
			r = add_spec(ld, t, path, args);
		if (r)
			return r;
	}
	return 0;
}

static int get_choice(struct loader *ld, json_t *v, const char *field,
		      const char *a, const char *b, int *out)
{
	if (!json_is_string(v))
		return fail(ld, "%s: expected string", field);
	if (!strcmp(json_string_value(v), a))
		*out = 0;
	else if (!strcmp(json_string_value(v), b))
		*out = 1;
	else
		return fail(ld, "%s: expected \"%s\" or \"%s\"", field, a, b);
	return 0;
}

static int apply(struct loader *ld, json_t *root)
{
	const char *key;
	json_t *v;
	int r, choice = 0;

	if (!json_is_object(root))
		return fail(ld, "expected a JSON object at the top level");
	json_object_foreach(root, key, v) {
		if (!strcmp(key, "kernel")) {
			r = get_string(ld, v, key, true, &ld->cfg.kernel);
		} else if (!strcmp(key, "initrd")) {
			r = get_string(ld, v, key, true, &ld->cfg.initrd);
		} else if (!strcmp(key, "cmdline")) {
			r = get_string(ld, v, key, false, &ld->cfg.cmdline);
		} else if (!strcmp(key, "api_sock")) {
			r = get_string(ld, v, key, true, &ld->cfg.api_sock);
		} else if (!strcmp(key, "cpus")) {
			r = get_uint(ld, v, key, 1, CONFIG_MAX_CPUS, &ld->cfg.cpus);
		} else if (!strcmp(key, "shutdown_timeout")) {
			r = get_uint(ld, v, key, 0, 86400, &ld->cfg.shutdown_timeout_s);
		} else if (!strcmp(key, "qmp_max_clients")) {
			r = get_uint(ld, v, key, 1, 1024, &ld->cfg.qmp_max_clients);
		} else if (!strcmp(key, "qmp_handshake_timeout")) {
			r = get_uint(ld, v, key, 0, 3600, &ld->cfg.qmp_handshake_timeout_s);
		} else if (!strcmp(key, "qmp_idle_timeout")) {
			r = get_uint(ld, v, key, 0, 86400, &ld->cfg.qmp_idle_timeout_s);
		} else if (!strcmp(key, "memory")) {
			r = get_memory(ld, v);
		} else if (!strcmp(key, "disks") && dev_option_table_find("virtio-blk")) {
			/* The older name of the virtio-blk table's key. */
			r = get_device(ld, dev_option_table_find("virtio-blk"), key, v);
		} else if (!strcmp(key, "console")) {
			r = get_console(ld, v);
		} else if (!strcmp(key, "on_reboot")) {
			r = get_choice(ld, v, key, "restart", "exit", &choice);
			if (!r)
				ld->cfg.on_reboot = choice ? REBOOT_EXIT : REBOOT_RESTART;
		} else if (!strcmp(key, "cpu_model")) {
			r = get_choice(ld, v, key, "host", "baseline", &choice);
			if (!r)
				ld->cfg.cpu_model = choice ? CPU_MODEL_BASELINE : CPU_MODEL_HOST;
		} else if (!strcmp(key, "hugepages")) {
			r = json_is_boolean(v) ? 0 : fail(ld, "%s: expected boolean", key);
			if (!r)
				ld->cfg.hugepages = json_is_true(v);
		} else if (!strcmp(key, "test_device")) {
			r = json_is_boolean(v) ? 0 : fail(ld, "%s: expected boolean", key);
			if (!r)
				ld->cfg.test_device = json_is_true(v);
		} else if (dev_option_table_by_json_key(key)) {
			r = get_device(ld, dev_option_table_by_json_key(key), key, v);
		} else if (!strcmp(key, "debug_exit")) {
			r = json_is_boolean(v) ? 0 : fail(ld, "%s: expected boolean", key);
			if (!r)
				ld->cfg.debug_exit = json_is_true(v) ? DEBUG_EXIT_ON : DEBUG_EXIT_OFF;
		} else if (!strcmp(key, "restore")) {
			r = get_string(ld, v, key, true, &ld->cfg.restore_dir);
		} else if (!strcmp(key, "incoming")) {
			r = get_string(ld, v, key, true, &ld->cfg.incoming);
		} else if (!strcmp(key, "restore_paused")) {
			r = json_is_boolean(v) ? 0 : fail(ld, "%s: expected boolean", key);
			if (!r)
				ld->cfg.restore_paused = json_is_true(v);
		} else {
			r = fail(ld, "%s: unknown key", key);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int load(json_t *root, json_error_t *jerr, struct vm_config *cfg,
		char *err, size_t errlen)
{
	struct loader ld = { .cfg = *cfg, .first_string = cf_nr, .err = err,
			     .errlen = errlen };
	int r;

	if (errlen)
		err[0] = '\0';
	if (!root) {
		if (jerr->line > 0)
			return fail(&ld, "line %d, column %d: %s", jerr->line,
				    jerr->column, jerr->text);
		return fail(&ld, "%s", jerr->text);
	}
	r = apply(&ld, root);
	json_decref(root);
	if (r < 0) {
		drop_since(ld.first_string);
		return r;
	}
	*cfg = ld.cfg;
	return 0;
}

int config_file_parse(const char *text, size_t len, struct vm_config *cfg,
		      char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

	return load(root, &jerr, cfg, err, errlen);
}

int config_file_load(const char *path, struct vm_config *cfg, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	FILE *f = fopen(path, "re");

	if (!f) {
		int r = -errno;

		if (errlen)
			snprintf(err, errlen, "%s", strerror(-r));
		return r;
	}
	root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	return load(root, &jerr, cfg, err, errlen);
}
