/* libFuzzer target: the device option-string parser (dev_options_parse),
 * what every --FLAG value and JSON device entry goes through, over every
 * registered table plus a local one that has each option type, bounds, a
 * positional option, a required key and a cross-field check.
 *
 * Input: byte 0 picks the table (mod the number of tables), the rest is the
 * option string. On success every value must respect its table (bounds,
 * enum range, required strings present); on failure err must say why in
 * one line. dev_options_free must leave no string behind (ASan/LSan). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_opts {
	char *name;
	bool flag;
	uint64_t count;
	uint64_t bytes;
	uint64_t any;
	unsigned mode;
	char *note;
};

static const char *const fz_modes[] = { "a", "bb", "ccc", NULL };

static const struct dev_option fz_opts[] = {
	{ .name = "name", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct fz_opts, name),
	  .required = true },
	{ .name = "flag", .type = DEV_OPT_BOOL, .offset = DEV_OPT_FIELD(struct fz_opts, flag),
	  .def = "on" },
	{ .name = "count", .type = DEV_OPT_UINT, .offset = DEV_OPT_FIELD(struct fz_opts, count),
	  .def = "3", .min = 1, .max = 1000 },
	{ .name = "bytes", .type = DEV_OPT_SIZE, .offset = DEV_OPT_FIELD(struct fz_opts, bytes),
	  .def = "1M", .min = 4096, .max = 1ULL << 40 },
	{ .name = "any", .type = DEV_OPT_UINT, .offset = DEV_OPT_FIELD(struct fz_opts, any) },
	{ .name = "mode", .type = DEV_OPT_ENUM, .offset = DEV_OPT_FIELD(struct fz_opts, mode),
	  .choices = fz_modes, .def = "bb" },
	{ .name = "note", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct fz_opts, note),
	  .def = "n" },
};

static int fz_check(void *opts, char *err, size_t errlen)
{
	struct fz_opts *o = opts;

	if (o->mode == 2 && !o->flag) {
		if (errlen)
			err[0] = '\0';	/* the parser must still say something */
		return -22;
	}
	return 0;
}

static struct dev_option_table fz_table = {
	.type = "x-fuzz", .flag = "x-fuzz", .json_key = "x_fuzz", .positional = "name",
	.max_instances = 2, .size = sizeof(struct fz_opts), .opts = fz_opts,
	.nr_opts = DEV_OPT_COUNT(fz_opts), .check = fz_check,
};
DEV_OPTION_TABLE_REGISTER(fz_table)

static void check_values(const struct dev_option_table *t, const uint8_t *o)
{
	for (unsigned i = 0; i < t->nr_opts; i++) {
		const struct dev_option *d = &t->opts[i];
		const void *f = o + d->offset;
		uint64_t v;
		unsigned e, n = 0;

		switch (d->type) {
		case DEV_OPT_STRING:
			if (d->required && (!*(char *const *)f || !**(char *const *)f))
				abort();
			if (*(char *const *)f && strchr(*(char *const *)f, ','))
				abort();
			break;
		case DEV_OPT_BOOL:
			if (*(const uint8_t *)f > 1)
				abort();
			break;
		case DEV_OPT_UINT:
		case DEV_OPT_SIZE:
			memcpy(&v, f, sizeof(v));
			/* An option not given and without a default stays 0. */
			if (v == 0 && !d->def)
				break;
			if (v < d->min || (d->max && v > d->max))
				abort();
			break;
		case DEV_OPT_ENUM:
			memcpy(&e, f, sizeof(e));
			while (d->choices[n])
				n++;
			if (e >= n)
				abort();
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct dev_option_table *t;
	unsigned nr = 0, pick;
	char err[128], *text;
	uint8_t *opts;

	if (size < 1)
		return 0;
	for (t = dev_option_tables(); t; t = t->next)
		nr++;
	pick = data[0] % nr;
	for (t = dev_option_tables(); pick--; t = t->next)
		;
	text = malloc(size);
	opts = calloc(1, t->size ? t->size : 1);
	if (!text || !opts)
		goto out;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	memset(err, 0x55, sizeof(err));
	if (dev_options_parse(t, text, opts, err, sizeof(err)) == 0) {
		check_values(t, opts);
		dev_options_free(t, opts);
		for (unsigned i = 0; i < t->nr_opts; i++)
			if (t->opts[i].type == DEV_OPT_STRING &&
			    *(char **)(opts + t->opts[i].offset))
				abort();
	} else {
		if (!memchr(err, 0, sizeof(err)) || !err[0] || strchr(err, '\n'))
			abort();
		for (unsigned i = 0; i < t->nr_opts; i++)
			if (t->opts[i].type == DEV_OPT_STRING &&
			    *(char **)(opts + t->opts[i].offset))
				abort();	/* failure frees */
	}
out:
	free(opts);
	free(text);
	return 0;
}
