#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cli/args.h"
#include "devices/device.h"
#include "devices/options.h"
#include "vmm/vm.h"
#include "helpers/ck_run.h"

static int parse(struct vm_config *cfg, char *err, const char *a0, ...);

/* Test device tables: the flags they give must behave like the real ones. */
struct xdisk_opts {
	char *path;
	bool readonly;
};

static const struct dev_option xdisk_opts[] = {
	{ .name = "path", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct xdisk_opts, path),
	  .help = "image", .required = true },
	{ .name = "readonly", .type = DEV_OPT_BOOL,
	  .offset = DEV_OPT_FIELD(struct xdisk_opts, readonly), .help = "read-only", .def = "off" },
};

static struct dev_option_table xdisk_table = {
	.type = "x-args-disk", .flag = "x-disk", .json_key = "x_disk", .summary = "a test disk",
	.max_instances = 2, .size = sizeof(struct xdisk_opts), .opts = xdisk_opts,
	.nr_opts = DEV_OPT_COUNT(xdisk_opts),
};
DEV_OPTION_TABLE_REGISTER(xdisk_table)

struct xchr_opts {
	char *backend;
};

static const struct dev_option xchr_opts[] = {
	{ .name = "backend", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct xchr_opts, backend), .help = "stdio, none or file:PATH",
	  .def = "none" },
};

static struct dev_option_table xchr_table = {
	.type = "x-args-chr", .flag = "x-chr", .json_key = "x_chr", .summary = "a test chardev",
	.positional = "backend", .arg_optional = true, .max_instances = 1,
	.size = sizeof(struct xchr_opts), .opts = xchr_opts, .nr_opts = DEV_OPT_COUNT(xchr_opts),
};
DEV_OPTION_TABLE_REGISTER(xchr_table)

static const char *const xmodes[] = { "stdio", "null", NULL };

struct xenum_opts {
	unsigned backend;
};

static const struct dev_option xenum_opts[] = {
	{ .name = "backend", .type = DEV_OPT_ENUM, .offset = DEV_OPT_FIELD(struct xenum_opts, backend),
	  .choices = xmodes, .def = "null" },
};

static struct dev_option_table xenum_table = {
	.type = "x-args-enum", .flag = "x-enum", .json_key = "x_enum", .summary = "enum backend",
	.positional = "backend", .max_instances = 3, .size = sizeof(struct xenum_opts),
	.opts = xenum_opts, .nr_opts = DEV_OPT_COUNT(xenum_opts),
};
DEV_OPTION_TABLE_REGISTER(xenum_table)

/* A parse that stopped inside a cluster of short options ("-ab") must not
 * leave getopt state behind for the next one (the fuzzer calls the parser
 * over and over, with the old argv freed). */
START_TEST(test_reparse_after_short_cluster)
{
	struct vm_config c;
	char err[256], bad[] = "-ab";
	char *argv1[] = { (char *)"run", bad, NULL };

	config_defaults(&c);
	ck_assert_int_eq(args_parse_run(2, argv1, &c, err, sizeof(err)), -EINVAL);
	memset(bad, 'x', 3);	/* what the stale state would point at */
	ck_assert_msg(parse(&c, err, "--cpus", "3", NULL) == 0, "%s", err);
	ck_assert_uint_eq(c.cpus, 3);
}
END_TEST

static int parse(struct vm_config *cfg, char *err, const char *a0, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	const char *s;

	config_defaults(cfg);
	argv[argc++] = (char *)"run";
	va_start(ap, a0);
	for (s = a0; s; s = va_arg(ap, const char *))
		argv[argc++] = (char *)s;
	va_end(ap);
	argv[argc] = NULL;
	return args_parse_run(argc, argv, cfg, err, 256);
}

START_TEST(test_sizes)
{
	uint64_t v;

	ck_assert_int_eq(parse_size("128", &v), 0);
	ck_assert_uint_eq(v, 128ULL << 20);
	ck_assert_int_eq(parse_size("4K", &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(parse_size("512M", &v), 0);
	ck_assert_uint_eq(v, 512ULL << 20);
	ck_assert_int_eq(parse_size("2G", &v), 0);
	ck_assert_uint_eq(v, 2ULL << 30);
	ck_assert_int_eq(parse_size("1GiB", &v), 0);
	ck_assert_uint_eq(v, 1ULL << 30);
	ck_assert_int_eq(parse_size("", &v), -EINVAL);
	ck_assert_int_eq(parse_size("-1G", &v), -EINVAL);
	ck_assert_int_eq(parse_size("12X", &v), -EINVAL);
	ck_assert_int_eq(parse_size("1G5", &v), -EINVAL);
	ck_assert_int_eq(parse_size("99999999999999999999", &v), -EINVAL);
	ck_assert_int_eq(parse_size("17179869184G", &v), -EINVAL);	/* overflow */
}
END_TEST

START_TEST(test_good_run)
{
	struct vm_config c;
	char err[256];

	ck_assert_int_eq(parse(&c, err, "--kernel", "k", "--initrd", "i", "--cmdline",
			       "console=ttyS0", "--cpus", "2", "--memory", "256M", "--console",
			       "file:/tmp/x", "--on-reboot", "exit", "--cpu-model", "baseline",
			       "--disk", "path=a.img", "--api-sock", "/tmp/s", NULL), 0);
	ck_assert_str_eq(c.kernel, "k");
	ck_assert_str_eq(c.initrd, "i");
	ck_assert_str_eq(c.cmdline, "console=ttyS0");
	ck_assert_uint_eq(c.cpus, 2);
	ck_assert_uint_eq(c.memory, 256ULL << 20);
	ck_assert_int_eq(c.console, CONSOLE_FILE);
	ck_assert_str_eq(c.console_path, "/tmp/x");
	ck_assert_int_eq(c.on_reboot, REBOOT_EXIT);
	ck_assert_int_eq(c.cpu_model, CPU_MODEL_BASELINE);
	ck_assert_uint_eq(c.nr_devices, 1);	/* --disk: a virtio-blk device spec */
	ck_assert_str_eq(c.devices[0].type, "virtio-blk");
	ck_assert_str_eq(c.api_sock, "/tmp/s");
}
END_TEST

START_TEST(test_defaults)
{
	struct vm_config c;
	char err[256];

	ck_assert_int_eq(parse(&c, err, NULL), 0);
	ck_assert_ptr_null(c.kernel);
	ck_assert_uint_eq(c.cpus, 1);
	ck_assert_uint_eq(c.memory, 128ULL << 20);
	ck_assert_int_eq(c.console, CONSOLE_STDIO);
	ck_assert_int_eq(c.on_reboot, REBOOT_RESTART);
}
END_TEST

static void expect_bad(const char *needle, const char *a, const char *b)
{
	struct vm_config c;
	char err[256] = "";

	ck_assert_int_eq(parse(&c, err, a, b, NULL), -EINVAL);
	ck_assert_msg(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
	ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(test_bad_flags)
{
	expect_bad("--cpus", "--cpus", "0");
	expect_bad("--cpus", "--cpus", "two");
	expect_bad("--cpus", "--cpus", "-1");
	expect_bad("--memory", "--memory", "lots");
	expect_bad("--memory", "--memory", "1M");
	expect_bad("--memory", "--memory", "100000G");
	expect_bad("--console", "--console", "tty");
	expect_bad("--console", "--console", "file:");
	expect_bad("--on-reboot", "--on-reboot", "maybe");
	expect_bad("--cpu-model", "--cpu-model", "epyc");
	expect_bad("unknown option '--frobnicate'", "--frobnicate", NULL);
	expect_bad("missing value", "--kernel", NULL);
	expect_bad("unexpected argument 'extra'", "extra", NULL);
	expect_bad("--initrd needs --kernel", "--initrd", "x");
	expect_bad("--virtio-console", "--virtio-console", "pty");
	expect_bad("one stdio backend", "--virtio-console", "stdio");
	expect_bad("--debug-exit: takes no value", "--debug-exit=1", NULL);
	/* Real device tables: bad options fail here, before any VM. */
	expect_bad("--disk: readonly: expected on or off", "--disk", "path=/a,readonly=maybe");
	expect_bad("--disk: path: required", "--disk", "readonly=on");
	expect_bad("--hugepages: takes no value", "--hugepages=yes", NULL);
}
END_TEST

START_TEST(test_virtio_flags)
{
	struct vm_config c;
	char err[256];

	ck_assert_int_eq(parse(&c, err, "--rng", "--virtio-console", "file:/tmp/vc",
			       "--console", "none", NULL), 0);
	/* Both come from the devices' options tables. */
	ck_assert_uint_eq(c.nr_devices, 2);
	ck_assert_str_eq(c.devices[0].type, "virtio-rng");
	ck_assert_str_eq(c.devices[0].args, "");
	ck_assert_str_eq(c.devices[1].type, "virtio-console");
	ck_assert_str_eq(c.devices[1].args, "file:/tmp/vc");
	ck_assert_int_eq(c.console, CONSOLE_NONE);
}
END_TEST

static unsigned count_type(const struct vm_config *c, const char *type)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->nr_devices; i++)
		n += !strcmp(c->devices[i].type, type);
	return n;
}

/* Device flags come from the registered tables. */
START_TEST(test_device_flags)
{
	struct vm_config c;
	char err[256];

	ck_assert_msg(parse(&c, err, "--x-disk", "path=/a", "--cpus", "2", "--x-disk",
			    "path=/b,readonly=on", "--x-chr", "--x-enum", "stdio", "--console",
			    "none", NULL) == 0, "%s", err);
	ck_assert_uint_eq(c.nr_devices, 4);
	ck_assert_str_eq(c.devices[0].type, "x-args-disk");
	ck_assert_str_eq(c.devices[0].args, "path=/a");
	ck_assert_str_eq(c.devices[1].args, "path=/b,readonly=on");
	ck_assert_str_eq(c.devices[2].type, "x-args-chr");
	ck_assert_str_eq(c.devices[2].args, "");
	ck_assert_str_eq(c.devices[3].type, "x-args-enum");
	ck_assert_str_eq(c.devices[3].args, "stdio");
	ck_assert_uint_eq(c.cpus, 2);

	/* An optional argument: attached, or as the next word. */
	ck_assert_msg(parse(&c, err, "--x-chr=file:/tmp/x", NULL) == 0, "%s", err);
	ck_assert_str_eq(c.devices[0].args, "file:/tmp/x");
	ck_assert_msg(parse(&c, err, "--x-chr", "file:/tmp/y", "--cpus", "3", NULL) == 0, "%s",
		      err);
	ck_assert_str_eq(c.devices[0].args, "file:/tmp/y");
	ck_assert_uint_eq(c.cpus, 3);
	ck_assert_msg(parse(&c, err, "--x-chr", "--cpus", "3", NULL) == 0, "%s", err);
	ck_assert_str_eq(c.devices[0].args, "");
	ck_assert_msg(parse(&c, err, "--x-chr=", NULL) == 0, "%s", err);
	ck_assert_uint_eq(c.nr_devices, 1);
}
END_TEST

START_TEST(test_device_flag_errors)
{
	/* Parsed at the command line, before any VM. */
	expect_bad("--x-disk: readonly: expected on or off", "--x-disk", "path=/a,readonly=maybe");
	expect_bad("--x-disk: unknown option 'ro' (valid: path, readonly)", "--x-disk", "path=/a,ro=1");
	expect_bad("--x-disk: path: required", "--x-disk", "readonly=on");
	expect_bad("--x-disk: missing value", "--x-disk", NULL);
	expect_bad("--x-chr: expected key=value, got 'b'", "--x-chr=a,b", NULL);
	expect_bad("--x-enum: backend: expected stdio or null", "--x-enum", "tty");
	{
		struct vm_config c;
		char err[256] = "";

		ck_assert_int_eq(parse(&c, err, "--x-disk", "path=/a", "--x-disk", "path=/b",
				       "--x-disk", "path=/c", NULL), -EINVAL);
		ck_assert_str_eq(err, "--x-disk: at most 2 x-args-disk devices");
		ck_assert_int_eq(parse(&c, err, "--x-chr", "--x-chr=none", NULL), -EINVAL);
		ck_assert_str_eq(err, "--x-chr: given twice (one x-args-chr device at most)");
	}
}
END_TEST

/* At most one stdio backend, whatever device: --console or a device's
 * "backend" option (string or enum). */
START_TEST(test_device_one_stdio)
{
	struct vm_config c;
	char err[256];

	expect_bad("--x-chr stdio needs --console file:PATH or none (one stdio backend)",
		   "--x-chr=stdio", NULL);
	expect_bad("--x-enum stdio needs --console file:PATH or none (one stdio backend)",
		   "--x-enum", "stdio");
	ck_assert_msg(parse(&c, err, "--x-chr=stdio", "--console", "none", NULL) == 0, "%s", err);
	ck_assert_int_eq(parse(&c, err, "--x-chr=stdio", "--console", "none", "--x-enum",
			       "backend=stdio", NULL), -EINVAL);
	ck_assert_str_eq(err, "--x-chr stdio and --x-enum stdio: one stdio backend");
	ck_assert_msg(parse(&c, err, "--x-enum", "null", "--x-chr=file:/x", NULL) == 0, "%s", err);
}
END_TEST

/* Specs from the config file: repeatable devices are added to, a
 * single-instance one is replaced by the flag. */
START_TEST(test_device_flags_after_file)
{
	struct vm_config c;
	char err[256];
	char *argv[] = { (char *)"run", (char *)"--x-disk", (char *)"path=/cli",
			 (char *)"--x-chr=file:/cli", NULL };

	config_defaults(&c);
	c.devices[c.nr_devices++] = (struct device_spec){ "x-args-chr", "file:/json" };
	c.devices[c.nr_devices++] = (struct device_spec){ "x-args-disk", "path=/json" };
	ck_assert_msg(args_parse_run(4, argv, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(c.nr_devices, 3);
	ck_assert_uint_eq(count_type(&c, "x-args-chr"), 1);
	ck_assert_str_eq(c.devices[0].args, "path=/json");
	ck_assert_str_eq(c.devices[1].args, "path=/cli");
	ck_assert_str_eq(c.devices[2].args, "file:/cli");

	config_defaults(&c);
	c.devices[c.nr_devices++] = (struct device_spec){ "x-args-disk", "path=/j1" };
	c.devices[c.nr_devices++] = (struct device_spec){ "x-args-disk", "path=/j2" };
	ck_assert_int_eq(args_parse_run(3, argv, &c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "--x-disk: at most 2 x-args-disk devices");
}
END_TEST

START_TEST(test_device_limit)
{
	struct vm_config c;
	char err[256];
	char *argv[] = { (char *)"run", (char *)"--x-enum", (char *)"null", NULL };

	config_defaults(&c);
	for (unsigned i = 0; i < CONFIG_MAX_DEVICES; i++)
		c.devices[c.nr_devices++] = (struct device_spec){ "x-other", "" };
	ck_assert_int_eq(args_parse_run(3, argv, &c, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "too many devices"), "%s", err);
}
END_TEST

/* Every table has exactly one flag; no flag is there twice. */
START_TEST(test_long_options_table)
{
	const struct option *opts = args_long_options();

	for (const struct option *o = opts; o->name; o++)
		for (const struct option *p = o + 1; p->name; p++)
			ck_assert_str_ne(o->name, p->name);
	for (const struct dev_option_table *t = dev_option_tables(); t; t = t->next) {
		const struct option *o;

		for (o = opts; o->name; o++)
			if (!strcmp(o->name, t->flag))
				break;
		ck_assert_msg(o->name, "--%s (%s) not in the options", t->flag, t->type);
		ck_assert_int_eq(o->has_arg, t->arg_optional ? optional_argument
							      : required_argument);
	}
}
END_TEST

START_TEST(test_usage_lists_devices)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	args_usage(f);
	fclose(f);
	for (const struct dev_option_table *t = dev_option_tables(); t; t = t->next) {
		char *h = dev_options_help(t);

		ck_assert_msg(strstr(buf, h), "usage lacks:\n%s", h);
		free(h);
	}
	ck_assert_ptr_nonnull(strstr(buf, "readonly=on|off"));
	free(buf);
}
END_TEST

START_TEST(test_config_lookup)
{
	char *argv[] = { "run", "--cpus", "2", "--config", "vm.json", NULL };
	char *argv2[] = { "run", "--config=x.json", NULL };

	ck_assert_str_eq(args_find_config(5, argv), "vm.json");
	ck_assert_str_eq(args_find_config(2, argv2), "x.json");
	ck_assert_ptr_null(args_find_config(3, argv));
}
END_TEST

/* isa-debug-exit is opt-in: present for the built-in demo (no --kernel),
 * absent for any other kernel unless --debug-exit is given. */
struct exit_request {
	unsigned nr;
	enum device_machine_request req;
	int status;
};

static void record_request(void *machine, enum device_machine_request req, int status,
			   const char *cause)
{
	struct exit_request *r = machine;

	(void)cause;
	r->nr++;
	r->req = req;
	r->status = status;
}

static const struct device_machine_ops record_ops = { .request = record_request };

static bool debug_exit_present(const struct vm_config *cfg)
{
	const struct device_desc *d = device_find("isa-debug-exit");
	struct exit_request r = { 0 };
	struct device_ctx ctx;
	struct bus pio_bus;
	void *state = NULL;
	uint8_t v = 3;
	bool handled;

	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(bus_init(&pio_bus, "pio"), 0);
	ctx = (struct device_ctx){ .cfg = cfg, .pio_bus = &pio_bus, .ops = &record_ops,
				   .machine = &r };
	ck_assert_int_eq(d->realize(d, &ctx, &state), 0);
	handled = bus_write(&pio_bus, 0xf4, &v, 1);
	ck_assert_uint_eq(r.nr, handled ? 1 : 0);
	if (handled) {
		ck_assert_int_eq(r.req, DEVICE_REQ_EXIT);
		ck_assert_int_eq(r.status, 7);
	}
	if (state)
		d->destroy(state);
	bus_destroy(&pio_bus);
	return handled;
}

START_TEST(test_debug_exit_opt_in)
{
	struct vm_config c;
	char err[256];

	ck_assert_int_eq(parse(&c, err, NULL), 0);
	ck_assert_int_eq(c.debug_exit, DEBUG_EXIT_AUTO);
	ck_assert(CONFIG_DEBUG_EXIT(&c));
	ck_assert(debug_exit_present(&c));
	ck_assert_int_eq(parse(&c, err, "--kernel", "k", NULL), 0);
	ck_assert(!CONFIG_DEBUG_EXIT(&c));
	ck_assert(!debug_exit_present(&c));
	ck_assert_int_eq(parse(&c, err, "--kernel", "k", "--debug-exit", NULL), 0);
	ck_assert_int_eq(c.debug_exit, DEBUG_EXIT_ON);
	ck_assert(debug_exit_present(&c));
	ck_assert_int_ne(parse(&c, err, "--debug-exit=1", NULL), 0);
	c.kernel = NULL;
	c.debug_exit = DEBUG_EXIT_OFF;
	ck_assert(!debug_exit_present(&c));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("args");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_sizes);
	tcase_add_test(tc, test_good_run);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_debug_exit_opt_in);
	tcase_add_test(tc, test_bad_flags);
	tcase_add_test(tc, test_config_lookup);
	tcase_add_test(tc, test_virtio_flags);
	tcase_add_test(tc, test_reparse_after_short_cluster);
	tcase_add_test(tc, test_device_flags);
	tcase_add_test(tc, test_device_flag_errors);
	tcase_add_test(tc, test_device_one_stdio);
	tcase_add_test(tc, test_device_flags_after_file);
	tcase_add_test(tc, test_device_limit);
	tcase_add_test(tc, test_long_options_table);
	tcase_add_test(tc, test_usage_lists_devices);
	suite_add_tcase(s, tc);
	return ck_run_suite(s);
}
