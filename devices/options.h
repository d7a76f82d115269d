/* Device options: one table per device type drives its CLI flag, its JSON
 * config key, its --help text and QMP introspection (device-list-properties),
 * so the four cannot drift apart.
 *
 * Syntax (CLI and JSON strings): "key=value,key=value". A table with a
 * `positional` option also takes a bare first value for it
 * (--virtio-console file:PATH is backend=file:PATH). In a JSON config the
 * table's json_key holds either such a string, an object of key: value
 * (strings, integers, booleans), true (no options), or an array of those
 * for repeatable devices. Every form becomes the same option string, parsed
 * by dev_options_parse() at realize, so errors read the same everywhere. */
#ifndef EMBER_DEVICE_OPTIONS_H
#define EMBER_DEVICE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dev_opt_type {
	DEV_OPT_STRING,		/* char * (strdup'ed; dev_options_free releases) */
	DEV_OPT_BOOL,		/* bool: on|off|true|false|yes|no|1|0 */
	DEV_OPT_UINT,		/* uint64_t in [min, max] */
	DEV_OPT_SIZE,		/* uint64_t bytes, K/M/G/T suffixes, in [min, max] */
	DEV_OPT_ENUM,		/* unsigned: index into choices */
};

struct dev_option {
	const char *name;
	enum dev_opt_type type;
	size_t offset;			/* of the field in the options struct */
	const char *help;
	const char *def;		/* default, in option syntax; NULL: zero */
	const char *const *choices;	/* DEV_OPT_ENUM: NULL-terminated */
	uint64_t min, max;		/* DEV_OPT_UINT / DEV_OPT_SIZE; max 0: no bound */
	bool required;
};

struct dev_option_table {
	const char *type;		/* device type ("virtio-blk") */
	const char *flag;		/* CLI flag without dashes ("disk") */
	const char *json_key;		/* JSON config key ("disk") */
	const char *summary;		/* one line for --help */
	const char *positional;		/* option set by a bare first value, or NULL */
	bool arg_optional;		/* the flag may stand alone (--rng) */
	unsigned max_instances;		/* 1: not repeatable */
	size_t size;			/* sizeof the options struct */
	const struct dev_option *opts;
	unsigned nr_opts;
	/* Optional cross-field check after parsing. */
	int (*check)(void *opts, char *err, size_t errlen);
	struct dev_option_table *next;
};

void dev_option_table_register(struct dev_option_table *t);
struct dev_option_table *dev_option_tables(void);
const struct dev_option_table *dev_option_table_find(const char *type);
const struct dev_option_table *dev_option_table_by_flag(const char *flag);
const struct dev_option_table *dev_option_table_by_json_key(const char *key);

/* Parse s (NULL or "" gives the defaults) into out (t->size bytes, zeroed
 * by the caller). Returns 0, or -EINVAL with "key: reason" in err. */
int dev_options_parse(const struct dev_option_table *t, const char *s, void *out, char *err,
		      size_t errlen) __attribute__((warn_unused_result));
void dev_options_free(const struct dev_option_table *t, void *opts);
/* The --help block for t (caller frees). */
char *dev_options_help(const struct dev_option_table *t);

#define DEV_OPTION_TABLE_REGISTER(table)                                         \
	static void __attribute__((constructor)) dev_opt_ctor_##table(void)    \
	{                                                                      \
		dev_option_table_register(&table);                             \
	}

#define DEV_OPT_FIELD(type, field)	offsetof(type, field)
#define DEV_OPT_COUNT(arr)		(sizeof(arr) / sizeof((arr)[0]))

#endif
