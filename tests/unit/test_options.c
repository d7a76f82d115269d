/* Device options tables (devices/options.c): registration and lookup, the
 * option-string parser with every type and its bad input, defaults,
 * required keys, the cross-field check, --help text, and the QMP
 * introspection built on the tables (qom-list-types, device-list-properties). */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/options.h"
#include "vmm/control/qmp.h"
#include "helpers/ck_run.h"

/* ---- two test tables ---- */

struct tdisk_opts {
	char *path;
	bool readonly;
	uint64_t queues;
	uint64_t block;
	unsigned cache;
	char *serial;
};

static const char *const cache_modes[] = { "none", "writeback", "unsafe", NULL };

static const struct dev_option tdisk_opts[] = {
	{ .name = "path", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct tdisk_opts, path),
	  .help = "image file", .required = true },
	{ .name = "readonly", .type = DEV_OPT_BOOL,
	  .offset = DEV_OPT_FIELD(struct tdisk_opts, readonly), .help = "read-only", .def = "off" },
	{ .name = "queues", .type = DEV_OPT_UINT, .offset = DEV_OPT_FIELD(struct tdisk_opts, queues),
	  .help = "request queues", .def = "1", .min = 1, .max = 16 },
	{ .name = "block", .type = DEV_OPT_SIZE, .offset = DEV_OPT_FIELD(struct tdisk_opts, block),
	  .help = "logical block size", .def = "512", .min = 512, .max = 64 << 10 },
	{ .name = "cache", .type = DEV_OPT_ENUM, .offset = DEV_OPT_FIELD(struct tdisk_opts, cache),
	  .help = "host cache mode", .def = "writeback", .choices = cache_modes },
	{ .name = "serial", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct tdisk_opts, serial), .help = "ID string" },
};

/* The check: unsafe caching needs a writable disk to make sense. */
static int tdisk_check(void *opts, char *err, size_t errlen)
{
	struct tdisk_opts *o = opts;

	if (o->serial && !strcmp(o->serial, "x\ny")) {
		snprintf(err, errlen, "serial: '%s' is not allowed", o->serial);
		return -EINVAL;
	}
	if (o->readonly && o->cache == 2) {
		snprintf(err, errlen, "cache=unsafe needs readonly=off");
		return -EINVAL;
	}
	return 0;
}

static struct dev_option_table tdisk_table = {
	.type = "x-test-disk", .flag = "x-tdisk", .json_key = "x_tdisk",
	.summary = "a test disk", .max_instances = 4, .size = sizeof(struct tdisk_opts),
	.opts = tdisk_opts, .nr_opts = DEV_OPT_COUNT(tdisk_opts), .check = tdisk_check,
};
DEV_OPTION_TABLE_REGISTER(tdisk_table)

struct tchr_opts {
	char *backend;
	uint64_t size;
};

static const struct dev_option tchr_opts[] = {
	{ .name = "backend", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct tchr_opts, backend), .help = "stdio, none or file:PATH",
	  .def = "none" },
	{ .name = "size", .type = DEV_OPT_SIZE, .offset = DEV_OPT_FIELD(struct tchr_opts, size),
	  .help = "buffer" },
};

static struct dev_option_table tchr_table = {
	.type = "x-test-chr", .flag = "x-tchr", .json_key = "x_tchr",
	.summary = "a test character device", .positional = "backend", .arg_optional = true,
	.max_instances = 1, .size = sizeof(struct tchr_opts),
	.opts = tchr_opts, .nr_opts = DEV_OPT_COUNT(tchr_opts),
};
DEV_OPTION_TABLE_REGISTER(tchr_table)

static struct dev_option_table tbare_table = {
	.type = "x-test-bare", .flag = "x-tbare", .json_key = "x_tbare",
	.summary = "no options at all", .arg_optional = true, .max_instances = 1,
};
DEV_OPTION_TABLE_REGISTER(tbare_table)

/* ---- helpers ---- */

static char err[256];

static struct tdisk_opts disk(const char *s)
{
	struct tdisk_opts o;

	memset(&o, 0, sizeof(o));
	ck_assert_msg(dev_options_parse(&tdisk_table, s, &o, err, sizeof(err)) == 0,
		      "'%s': %s", s, err);
	return o;
}

static void disk_bad(const char *s, const char *want)
{
	struct tdisk_opts o;

	memset(&o, 0, sizeof(o));
	err[0] = '\0';
	ck_assert_msg(dev_options_parse(&tdisk_table, s, &o, err, sizeof(err)) == -EINVAL,
		      "accepted '%s'", s);
	ck_assert_msg(!strcmp(err, want), "'%s': got '%s', want '%s'", s, err, want);
	/* Nothing left allocated on failure. */
	ck_assert_ptr_null(o.path);
	ck_assert_ptr_null(o.serial);
}

/* ---- registry ---- */

START_TEST(test_lookup)
{
	const struct dev_option_table *t;
	unsigned n = 0;

	ck_assert_ptr_eq(dev_option_table_find("x-test-disk"), &tdisk_table);
	ck_assert_ptr_eq(dev_option_table_by_flag("x-tchr"), &tchr_table);
	ck_assert_ptr_eq(dev_option_table_by_json_key("x_tbare"), &tbare_table);
	ck_assert_ptr_null(dev_option_table_find("x-tdisk"));	/* a flag, not a type */
	ck_assert_ptr_null(dev_option_table_by_flag("x_tdisk"));
	ck_assert_ptr_null(dev_option_table_by_json_key("x-tdisk"));
	ck_assert_ptr_null(dev_option_table_find(NULL));
	ck_assert_ptr_null(dev_option_table_by_flag(""));

	/* Registering twice does not loop or duplicate. */
	dev_option_table_register(&tdisk_table);
	for (t = dev_option_tables(); t; t = t->next) {
		if (t == &tdisk_table)
			n++;
		if (t->next)	/* sorted by type */
			ck_assert_int_lt(strcmp(t->type, t->next->type), 0);
	}
	ck_assert_uint_eq(n, 1);
}
END_TEST

/* Every registered table (the real devices' too) is well-formed: unique
 * type, flag and JSON key; offsets inside the struct; defaults that parse. */
START_TEST(test_all_tables_sane)
{
	for (const struct dev_option_table *t = dev_option_tables(); t; t = t->next) {
		void *o;

		ck_assert_ptr_nonnull(t->type);
		ck_assert_ptr_nonnull(t->flag);
		ck_assert_ptr_nonnull(t->json_key);
		ck_assert_msg(t->max_instances >= 1, "%s: max_instances 0", t->type);
		ck_assert_ptr_eq(dev_option_table_find(t->type), t);
		ck_assert_ptr_eq(dev_option_table_by_flag(t->flag), t);
		ck_assert_ptr_eq(dev_option_table_by_json_key(t->json_key), t);
		for (unsigned i = 0; i < t->nr_opts; i++) {
			const struct dev_option *d = &t->opts[i];

			ck_assert_msg(d->offset < t->size, "%s.%s: offset", t->type, d->name);
			ck_assert_msg(!strchr(d->name, '=') && !strchr(d->name, ','), "%s", d->name);
			ck_assert_msg(d->type != DEV_OPT_ENUM || d->choices, "%s.%s", t->type,
				      d->name);
			for (unsigned j = 0; j < i; j++)
				ck_assert_str_ne(d->name, t->opts[j].name);
		}
		if (t->positional) {
			unsigned i;

			for (i = 0; i < t->nr_opts; i++)
				if (!strcmp(t->opts[i].name, t->positional))
					break;
			ck_assert_msg(i < t->nr_opts, "%s: positional %s", t->type, t->positional);
		}
		/* The defaults parse (tables with a required key need it). */
		o = calloc(1, t->size ? t->size : 1);
		ck_assert_ptr_nonnull(o);
		for (unsigned i = 0; i < t->nr_opts; i++) {
			if (t->opts[i].required)
				goto next;
		}
		/* (A cross-field check may still want one of several keys.) */
		if (dev_options_parse(t, "", o, err, sizeof(err)) == 0)
			dev_options_free(t, o);
		else
			ck_assert_msg(t->check && err[0], "%s: %s", t->type, err);
next:
		free(o);
	}
}
END_TEST

/* ---- parsing ---- */

START_TEST(test_parse_defaults)
{
	struct tdisk_opts o = disk("path=/a.img");

	ck_assert_str_eq(o.path, "/a.img");
	ck_assert(!o.readonly);
	ck_assert_uint_eq(o.queues, 1);
	ck_assert_uint_eq(o.block, 512);
	ck_assert_uint_eq(o.cache, 1);
	ck_assert_ptr_null(o.serial);	/* no default: zero */
	dev_options_free(&tdisk_table, &o);
	ck_assert_ptr_null(o.path);
	dev_options_free(&tdisk_table, &o);	/* twice is harmless */
}
END_TEST

START_TEST(test_parse_all_types)
{
	struct tdisk_opts o = disk("path=/b,readonly=on,queues=16,block=4K,cache=none,serial=s1");

	ck_assert_str_eq(o.path, "/b");
	ck_assert(o.readonly);
	ck_assert_uint_eq(o.queues, 16);
	ck_assert_uint_eq(o.block, 4096);
	ck_assert_uint_eq(o.cache, 0);
	ck_assert_str_eq(o.serial, "s1");
	dev_options_free(&tdisk_table, &o);

	/* Any order; an empty string is a value for a non-required string. */
	o = disk("serial=,cache=unsafe,path=/c,block=64K,queues=1");
	ck_assert_str_eq(o.serial, "");
	ck_assert_uint_eq(o.cache, 2);
	ck_assert_uint_eq(o.block, 65536);
	dev_options_free(&tdisk_table, &o);

	/* A value may hold '=' (only the first one splits). */
	o = disk("path=/d=e");
	ck_assert_str_eq(o.path, "/d=e");
	dev_options_free(&tdisk_table, &o);
}
END_TEST

START_TEST(test_parse_bools)
{
	static const char *const yes[] = { "on", "true", "yes", "1" };
	static const char *const no[] = { "off", "false", "no", "0" };
	char s[64];

	for (unsigned i = 0; i < 4; i++) {
		struct tdisk_opts o;

		snprintf(s, sizeof(s), "path=/x,readonly=%s", yes[i]);
		o = disk(s);
		ck_assert(o.readonly);
		dev_options_free(&tdisk_table, &o);
		snprintf(s, sizeof(s), "path=/x,readonly=%s", no[i]);
		o = disk(s);
		ck_assert(!o.readonly);
		dev_options_free(&tdisk_table, &o);
	}
	disk_bad("path=/x,readonly=ON", "readonly: expected on or off");
	disk_bad("path=/x,readonly=2", "readonly: expected on or off");
	disk_bad("path=/x,readonly=", "readonly: expected on or off");
	disk_bad("path=/x,readonly=onn", "readonly: expected on or off");
}
END_TEST

START_TEST(test_parse_numbers)
{
	struct tdisk_opts o;

	disk_bad("path=/x,queues=0", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues=17", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues=-1", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues=+1", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues= 1", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues=0x4", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues=4K", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues=", "queues: expected a number from 1 to 16");
	disk_bad("path=/x,queues=99999999999999999999999",
		 "queues: expected a number from 1 to 16");
	o = disk("path=/x,queues=007");
	ck_assert_uint_eq(o.queues, 7);
	dev_options_free(&tdisk_table, &o);

	o = disk("path=/x,block=1k");
	ck_assert_uint_eq(o.block, 1024);
	dev_options_free(&tdisk_table, &o);
	o = disk("path=/x,block=2KiB");
	ck_assert_uint_eq(o.block, 2048);
	dev_options_free(&tdisk_table, &o);
	o = disk("path=/x,block=4KB");
	ck_assert_uint_eq(o.block, 4096);
	dev_options_free(&tdisk_table, &o);
	disk_bad("path=/x,block=256", "block: expected a size in bytes from 512 to 65536");
	disk_bad("path=/x,block=1M", "block: expected a size in bytes from 512 to 65536");
	disk_bad("path=/x,block=4X", "block: expected a size (e.g. 4K, 512M, 2G)");
	disk_bad("path=/x,block=4Kb", "block: expected a size (e.g. 4K, 512M, 2G)");
	disk_bad("path=/x,block=K", "block: expected a size (e.g. 4K, 512M, 2G)");
	disk_bad("path=/x,block=-4K", "block: expected a size (e.g. 4K, 512M, 2G)");
	/* Overflow in the multiplication, not a wrapped small value. */
	disk_bad("path=/x,block=17179869184T", "block: expected a size (e.g. 4K, 512M, 2G)");
	disk_bad("path=/x,block=18446744073709551616",
		 "block: expected a size (e.g. 4K, 512M, 2G)");
}
END_TEST

START_TEST(test_parse_sizes_unbounded)
{
	struct tchr_opts o;

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(&tchr_table, "size=1T", &o, err, sizeof(err)), 0);
	ck_assert_uint_eq(o.size, 1ULL << 40);
	dev_options_free(&tchr_table, &o);
	ck_assert_int_eq(dev_options_parse(&tchr_table, "size=16777215T", &o, err,
					   sizeof(err)), 0);
	ck_assert_uint_eq(o.size, 16777215ULL << 40);
	dev_options_free(&tchr_table, &o);
	ck_assert_int_eq(dev_options_parse(&tchr_table, "size=16777216T", &o, err,
					   sizeof(err)), -EINVAL);
	ck_assert_int_eq(dev_options_parse(&tchr_table, "size=18446744073709551615", &o, err,
					   sizeof(err)), 0);
	ck_assert_uint_eq(o.size, UINT64_MAX);
	dev_options_free(&tchr_table, &o);
}
END_TEST

START_TEST(test_parse_enum)
{
	disk_bad("path=/x,cache=directsync", "cache: expected none, writeback or unsafe");
	disk_bad("path=/x,cache=", "cache: expected none, writeback or unsafe");
	disk_bad("path=/x,cache=None", "cache: expected none, writeback or unsafe");
}
END_TEST

START_TEST(test_parse_structure_errors)
{
	disk_bad("path=/x,foo=1",
		 "unknown option 'foo' (valid: path, readonly, queues, block, cache, serial)");
	disk_bad("pat=/x",
		 "unknown option 'pat' (valid: path, readonly, queues, block, cache, serial)");
	disk_bad("path=/x,readonly=on,readonly=off", "readonly: given twice");
	disk_bad("path=/x,path=/y", "path: given twice");
	disk_bad("", "path: required (path=STR)");
	disk_bad(NULL, "path: required (path=STR)");
	disk_bad("readonly=on", "path: required (path=STR)");
	disk_bad("path=", "path: must not be empty");
	disk_bad("/x", "expected key=value, got '/x'");	/* no positional */
	disk_bad("path=/x,on", "expected key=value, got 'on'");
	disk_bad("path=/x,", "empty option (trailing ',')");
	disk_bad("path=/x,,readonly=on", "empty option (stray ',')");
	disk_bad(",path=/x", "empty option (stray ',')");
	disk_bad("=x,path=/x", "empty option name before '='");
	/* Values never contain ',': the rest is the next option. */
	disk_bad("path=/a,b", "expected key=value, got 'b'");
	/* The check runs after parsing and defaults. */
	disk_bad("path=/x,readonly=on,cache=unsafe", "cache=unsafe needs readonly=off");
	/* A long unknown key is cut, not overflowing err. */
	{
		char s[600];

		memset(s, 'k', sizeof(s) - 3);
		strcpy(s + sizeof(s) - 3, "=1");
		ck_assert_int_eq(dev_options_parse(&tdisk_table, s, &(struct tdisk_opts){ 0 },
						   err, sizeof(err)), -EINVAL);
		ck_assert(!strncmp(err, "unknown option 'kkkk", 20));
		ck_assert_uint_lt(strlen(err), sizeof(err));
	}
	/* Quoted input stays one printable line. */
	disk_bad("path=/x,a\nb=1",
		 "unknown option 'a?b' (valid: path, readonly, queues, block, cache, serial)");
	disk_bad("path=/x,\x1b[2J", "expected key=value, got '?[2J'");
	disk_bad("path=/x,serial=x\ny", "serial: 'x?y' is not allowed");	/* from the check */
	/* err may be absent. */
	ck_assert_int_eq(dev_options_parse(&tdisk_table, "bogus", &(struct tdisk_opts){ 0 },
					   NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_parse_failure_frees)
{
	/* Strings parsed before the failing option are released. */
	disk_bad("path=/x,serial=abc,queues=99", "queues: expected a number from 1 to 16");
	disk_bad("serial=abc,path=/x,readonly=on,cache=unsafe",
		 "cache=unsafe needs readonly=off");
}
END_TEST

START_TEST(test_positional)
{
	struct tchr_opts o;

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(dev_options_parse(&tchr_table, "file:/tmp/x", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.backend, "file:/tmp/x");
	dev_options_free(&tchr_table, &o);
	ck_assert_int_eq(dev_options_parse(&tchr_table, "stdio,size=4K", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.backend, "stdio");
	ck_assert_uint_eq(o.size, 4096);
	dev_options_free(&tchr_table, &o);
	ck_assert_int_eq(dev_options_parse(&tchr_table, "backend=stdio", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.backend, "stdio");
	dev_options_free(&tchr_table, &o);
	/* Default from def when nothing is given. */
	ck_assert_int_eq(dev_options_parse(&tchr_table, "", &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.backend, "none");
	dev_options_free(&tchr_table, &o);
	ck_assert_int_eq(dev_options_parse(&tchr_table, NULL, &o, err, sizeof(err)), 0);
	ck_assert_str_eq(o.backend, "none");
	dev_options_free(&tchr_table, &o);

	/* Only the first value may be bare, and only once. */
	ck_assert_int_eq(dev_options_parse(&tchr_table, "size=4K,stdio", &o, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "expected key=value, got 'stdio'");
	ck_assert_int_eq(dev_options_parse(&tchr_table, "stdio,backend=none", &o, err,
					   sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "backend: given twice");
	ck_assert_ptr_null(o.backend);
}
END_TEST

START_TEST(test_no_options)
{
	char dummy;

	ck_assert_int_eq(dev_options_parse(&tbare_table, "", &dummy, err, sizeof(err)), 0);
	ck_assert_int_eq(dev_options_parse(&tbare_table, "x=1", &dummy, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "unknown option 'x' (x-test-bare takes no options)");
	dev_options_free(&tbare_table, &dummy);
}
END_TEST

START_TEST(test_help)
{
	char *h = dev_options_help(&tdisk_table);

	ck_assert_ptr_nonnull(h);
	ck_assert_msg(strstr(h, "--x-tdisk key=value,...") && strstr(h, "a test disk") &&
		      strstr(h, "up to 4"), "%s", h);
	ck_assert_msg(strstr(h, "path=STR") && strstr(h, "(required)"), "%s", h);
	ck_assert_msg(strstr(h, "readonly=on|off") && strstr(h, "(default off)"), "%s", h);
	ck_assert_msg(strstr(h, "cache=none|writeback|unsafe"), "%s", h);
	ck_assert_msg(strstr(h, "queues=N") && strstr(h, "[1..16]"), "%s", h);
	ck_assert_msg(strstr(h, "block=SIZE"), "%s", h);
	ck_assert_int_eq(h[strlen(h) - 1], '\n');
	free(h);

	h = dev_options_help(&tchr_table);
	ck_assert_msg(strstr(h, "--x-tchr[=BACKEND[,key=value...]]"), "%s", h);
	ck_assert_msg(strstr(h, "the bare first value"), "%s", h);
	free(h);

	h = dev_options_help(&tbare_table);
	ck_assert_msg(!strncmp(h, "  --x-tbare ", 12) && strstr(h, "no options at all"), "%s", h);
	ck_assert_ptr_eq(strchr(h, '\n'), h + strlen(h) - 1);
	free(h);
}
END_TEST

/* ---- QMP introspection ---- */

static struct qmp_session *sess;

static json_t *qmp(const char *text)
{
	json_t *r = qmp_handle_message(sess, text, strlen(text));

	ck_assert_ptr_nonnull(r);
	return r;
}

static void qmp_setup(void)
{
	json_t *r;

	sess = qmp_session_create(NULL, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(sess);
	r = qmp("{\"execute\": \"qmp_capabilities\"}");
	ck_assert_ptr_nonnull(json_object_get(r, "return"));
	json_decref(r);
}

static void qmp_teardown(void)
{
	qmp_session_destroy(sess);
}

static json_t *find_named(json_t *list, const char *name)
{
	size_t i;
	json_t *e;

	json_array_foreach(list, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "name")), name))
			return e;
	return NULL;
}

START_TEST(test_qmp_list_types)
{
	json_t *r = qmp("{\"execute\": \"qom-list-types\"}"), *ret = json_object_get(r, "return");
	unsigned n = 0;

	ck_assert_msg(json_is_array(ret), "%s", json_dumps(r, 0));
	for (const struct dev_option_table *t = dev_option_tables(); t; t = t->next, n++)
		ck_assert_msg(find_named(ret, t->type), "%s missing", t->type);
	ck_assert_uint_eq(json_array_size(ret), n);
	json_decref(r);

	/* implements and abstract are accepted and change nothing here. */
	r = qmp("{\"execute\": \"qom-list-types\", \"arguments\": "
		"{\"implements\": \"device\", \"abstract\": true}, \"id\": 7}");
	ck_assert_uint_eq(json_array_size(json_object_get(r, "return")), n);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 7);
	json_decref(r);

	r = qmp("{\"execute\": \"qom-list-types\", \"arguments\": {\"implements\": 1}}");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "class")),
			 "GenericError");
	json_decref(r);
	r = qmp("{\"execute\": \"query-commands\"}");
	ck_assert_ptr_nonnull(find_named(json_object_get(r, "return"), "qom-list-types"));
	ck_assert_ptr_nonnull(find_named(json_object_get(r, "return"), "device-list-properties"));
	json_decref(r);
}
END_TEST

START_TEST(test_qmp_device_properties)
{
	json_t *r = qmp("{\"execute\": \"device-list-properties\", "
			"\"arguments\": {\"typename\": \"x-test-disk\"}}");
	json_t *ret = json_object_get(r, "return"), *p;

	ck_assert_msg(json_is_array(ret), "%s", json_dumps(r, 0));
	ck_assert_uint_eq(json_array_size(ret), tdisk_table.nr_opts);
	/* In table order. */
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ret, 0), "name")),
			 "path");

	p = find_named(ret, "path");
	ck_assert_str_eq(json_string_value(json_object_get(p, "type")), "str");
	ck_assert_str_eq(json_string_value(json_object_get(p, "description")), "image file");
	ck_assert_ptr_null(json_object_get(p, "default-value"));

	p = find_named(ret, "readonly");
	ck_assert_str_eq(json_string_value(json_object_get(p, "type")), "bool");
	ck_assert(json_is_false(json_object_get(p, "default-value")));

	p = find_named(ret, "queues");
	ck_assert_str_eq(json_string_value(json_object_get(p, "type")), "uint64");
	ck_assert_int_eq(json_integer_value(json_object_get(p, "default-value")), 1);

	p = find_named(ret, "block");
	ck_assert_str_eq(json_string_value(json_object_get(p, "type")), "size");
	ck_assert_int_eq(json_integer_value(json_object_get(p, "default-value")), 512);

	p = find_named(ret, "cache");
	ck_assert_str_eq(json_string_value(json_object_get(p, "type")), "str");
	ck_assert_str_eq(json_string_value(json_object_get(p, "default-value")), "writeback");
	ck_assert_msg(strstr(json_string_value(json_object_get(p, "description")),
			     "none, writeback, unsafe"), "%s",
		      json_string_value(json_object_get(p, "description")));
	json_decref(r);

	r = qmp("{\"execute\": \"device-list-properties\", "
		"\"arguments\": {\"typename\": \"x-test-bare\"}}");
	ck_assert_uint_eq(json_array_size(json_object_get(r, "return")), 0);
	json_decref(r);
}
END_TEST

START_TEST(test_qmp_device_properties_errors)
{
	json_t *r = qmp("{\"execute\": \"device-list-properties\", "
			"\"arguments\": {\"typename\": \"e1000\"}}");
	json_t *e = json_object_get(r, "error");

	ck_assert_str_eq(json_string_value(json_object_get(e, "class")), "GenericError");
	ck_assert_str_eq(json_string_value(json_object_get(e, "desc")), "Device 'e1000' not found");
	json_decref(r);

	r = qmp("{\"execute\": \"device-list-properties\"}");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
			 "Parameter 'typename' is missing");
	json_decref(r);
	r = qmp("{\"execute\": \"device-list-properties\", \"arguments\": {\"typename\": 3}}");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "class")),
			 "GenericError");
	json_decref(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("options");
	TCase *tc = tcase_create("parse");
	TCase *tq = tcase_create("qmp");

	tcase_add_test(tc, test_lookup);
	tcase_add_test(tc, test_all_tables_sane);
	tcase_add_test(tc, test_parse_defaults);
	tcase_add_test(tc, test_parse_all_types);
	tcase_add_test(tc, test_parse_bools);
	tcase_add_test(tc, test_parse_numbers);
	tcase_add_test(tc, test_parse_sizes_unbounded);
	tcase_add_test(tc, test_parse_enum);
	tcase_add_test(tc, test_parse_structure_errors);
	tcase_add_test(tc, test_parse_failure_frees);
	tcase_add_test(tc, test_positional);
	tcase_add_test(tc, test_no_options);
	tcase_add_test(tc, test_help);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(tq, qmp_setup, qmp_teardown);
	tcase_add_test(tq, test_qmp_list_types);
	tcase_add_test(tq, test_qmp_device_properties);
	tcase_add_test(tq, test_qmp_device_properties_errors);
	suite_add_tcase(s, tq);
	return ck_run_suite(s);
}
