/* JSON VM configs: every field, the error paths, and the "only what the
 * file sets" contract the CLI relies on to apply flags on top. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/config_file.h"
#include "devices/options.h"
#include "helpers/ck_run.h"

/* Test device tables: their JSON keys must work like the real devices'. */
struct xdisk_opts {
	char *path;
	bool readonly;
	uint64_t queues;
	uint64_t block;
	unsigned cache;
};

static const char *const xcache[] = { "none", "writeback", NULL };

static const struct dev_option xdisk_opts[] = {
	{ .name = "path", .type = DEV_OPT_STRING, .offset = DEV_OPT_FIELD(struct xdisk_opts, path),
	  .required = true },
	{ .name = "readonly", .type = DEV_OPT_BOOL,
	  .offset = DEV_OPT_FIELD(struct xdisk_opts, readonly), .def = "off" },
	{ .name = "queues", .type = DEV_OPT_UINT, .offset = DEV_OPT_FIELD(struct xdisk_opts, queues),
	  .def = "1", .min = 1, .max = 8 },
	{ .name = "block", .type = DEV_OPT_SIZE, .offset = DEV_OPT_FIELD(struct xdisk_opts, block),
	  .def = "512" },
	{ .name = "cache", .type = DEV_OPT_ENUM, .offset = DEV_OPT_FIELD(struct xdisk_opts, cache),
	  .choices = xcache, .def = "writeback" },
};

static struct dev_option_table xdisk_table = {
	.type = "x-cfg-disk", .flag = "x-cfg-disk", .json_key = "x_disk", .summary = "test disk",
	.max_instances = 3, .size = sizeof(struct xdisk_opts), .opts = xdisk_opts,
	.nr_opts = DEV_OPT_COUNT(xdisk_opts),
};
DEV_OPTION_TABLE_REGISTER(xdisk_table)

struct xchr_opts {
	char *backend;
};

static const struct dev_option xchr_opts[] = {
	{ .name = "backend", .type = DEV_OPT_STRING,
	  .offset = DEV_OPT_FIELD(struct xchr_opts, backend), .def = "none" },
};

static struct dev_option_table xchr_table = {
	.type = "x-cfg-chr", .flag = "x-cfg-chr", .json_key = "x_chr", .summary = "test chardev",
	.positional = "backend", .arg_optional = true, .max_instances = 1,
	.size = sizeof(struct xchr_opts), .opts = xchr_opts, .nr_opts = DEV_OPT_COUNT(xchr_opts),
};
DEV_OPTION_TABLE_REGISTER(xchr_table)

static struct dev_option_table xbare_table = {
	.type = "x-cfg-bare", .flag = "x-cfg-bare", .json_key = "x_bare", .summary = "bare",
	.arg_optional = true, .max_instances = 1,
};
DEV_OPTION_TABLE_REGISTER(xbare_table)

static struct vm_config cfg;
static char err[256];

static void setup(void)
{
	config_defaults(&cfg);
	err[0] = '\0';
}

static void teardown(void)
{
	config_file_free();
}

static int parse(const char *text)
{
	return config_file_parse(text, strlen(text), &cfg, err, sizeof(err));
}

static void expect_fail(const char *text, const char *msg)
{
	struct vm_config before = cfg;

	ck_assert_msg(parse(text) == -EINVAL, "accepted: %s", text);
	ck_assert_msg(!strcmp(err, msg), "for %s: got '%s', want '%s'", text, err, msg);
	/* A failed load leaves the config untouched. */
	ck_assert(!memcmp(&before, &cfg, sizeof(cfg)));
}

static const char *spec_args(const char *type, unsigned nth);

START_TEST(test_full_config)
{
	const char *text =
		"{\n"
		"  \"kernel\": \"/boot/vmlinuz\",\n"
		"  \"initrd\": \"/boot/initrd.img\",\n"
		"  \"cmdline\": \"console=ttyS0 quiet\",\n"
		"  \"cpus\": 4,\n"
		"  \"memory\": \"2G\",\n"
		"  \"disks\": [\n"
		"    {\"path\": \"/var/lib/ember/root.img\", \"readonly\": false, \"serial\": \"root\",\n"
		"     \"aio\": \"io_uring\", \"cache\": \"none\"},\n"
		"    {\"path\": \"/srv/data.img\", \"readonly\": true},\n"
		"    {\"serial\": \"s3\", \"path\": \"/x\"}\n"
		"  ],\n"
		"  \"console\": \"file:/var/log/ember/vm.log\",\n"
		"  \"on_reboot\": \"exit\",\n"
		"  \"cpu_model\": \"baseline\",\n"
		"  \"api_sock\": \"/run/ember/vm.sock\",\n"
		"  \"shutdown_timeout\": 45,\n"
		"  \"qmp_max_clients\": 4,\n"
		"  \"qmp_handshake_timeout\": 0,\n"
		"  \"qmp_idle_timeout\": 3600,\n"
		"  \"hugepages\": true,\n"
		"  \"test_device\": true,\n"
		"  \"debug_exit\": true\n"
		"}\n";

	ck_assert_msg(parse(text) == 0, "%s", err);
	ck_assert_str_eq(cfg.kernel, "/boot/vmlinuz");
	ck_assert_str_eq(cfg.initrd, "/boot/initrd.img");
	ck_assert_str_eq(cfg.cmdline, "console=ttyS0 quiet");
	ck_assert_uint_eq(cfg.cpus, 4);
	ck_assert_uint_eq(cfg.memory, 2ULL << 30);
	/* "disks" is the virtio-blk table's older key. */
	ck_assert_str_eq(spec_args("virtio-blk", 0),
			 "path=/var/lib/ember/root.img,readonly=off,serial=root,aio=io_uring,cache=none");
	ck_assert_str_eq(spec_args("virtio-blk", 1), "path=/srv/data.img,readonly=on");
	ck_assert_str_eq(spec_args("virtio-blk", 2), "path=/x,serial=s3");
	ck_assert_ptr_null(spec_args("virtio-blk", 3));
	ck_assert_int_eq(cfg.console, CONSOLE_FILE);
	ck_assert_str_eq(cfg.console_path, "/var/log/ember/vm.log");
	ck_assert_int_eq(cfg.on_reboot, REBOOT_EXIT);
	ck_assert_int_eq(cfg.cpu_model, CPU_MODEL_BASELINE);
	ck_assert_str_eq(cfg.api_sock, "/run/ember/vm.sock");
	ck_assert_uint_eq(cfg.shutdown_timeout_s, 45);
	ck_assert_uint_eq(cfg.qmp_max_clients, 4);
	ck_assert_uint_eq(cfg.qmp_handshake_timeout_s, 0);
	ck_assert_uint_eq(cfg.qmp_idle_timeout_s, 3600);
	ck_assert(cfg.hugepages);
	ck_assert(cfg.test_device);
	ck_assert_int_eq(cfg.debug_exit, DEBUG_EXIT_ON);
	ck_assert_int_eq(cfg.api_sock_fd, -1);
}
END_TEST

START_TEST(test_only_present_fields)
{
	struct vm_config before;

	cfg.kernel = "/from/cli";
	cfg.cpus = 3;
	before = cfg;
	ck_assert_int_eq(parse("{}"), 0);
	ck_assert(!memcmp(&before, &cfg, sizeof(cfg)));
	ck_assert_int_eq(parse("{\"memory\": 268435456}"), 0);
	ck_assert_uint_eq(cfg.memory, 256ULL << 20);
	ck_assert_str_eq(cfg.kernel, "/from/cli");
	ck_assert_uint_eq(cfg.cpus, 3);
	ck_assert_int_eq(cfg.console, CONSOLE_STDIO);
	ck_assert_int_eq(parse("{\"console\": \"none\"}"), 0);
	ck_assert_int_eq(cfg.console, CONSOLE_NONE);
	ck_assert_int_eq(parse("{\"console\": \"stdio\", \"on_reboot\": \"restart\", "
			       "\"cpu_model\": \"host\", \"cmdline\": \"\"}"), 0);
	ck_assert_int_eq(cfg.console, CONSOLE_STDIO);
	ck_assert_ptr_null(cfg.console_path);
	ck_assert_int_eq(cfg.on_reboot, REBOOT_RESTART);
	ck_assert_int_eq(cfg.cpu_model, CPU_MODEL_HOST);
	ck_assert_str_eq(cfg.cmdline, "");
}
END_TEST

START_TEST(test_file_then_flags)
{
	char path[] = "/tmp/ember-cfg-XXXXXX";
	const char *text = "{\"cpus\": 2, \"memory\": \"64M\", \"console\": \"none\", "
			   "\"disks\": [{\"path\": \"/a.img\"}], \"api_sock\": \"/run/a.sock\"}";
	char *argv[] = { (char *)"run", (char *)"--config", path, (char *)"--cpus",
			 (char *)"1", (char *)"--disk", (char *)"path=/b.img", NULL };
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	/* What `ember run` does: defaults, the file, then the flags. */
	ck_assert_ptr_nonnull(args_find_config(7, argv));
	ck_assert_int_eq(config_file_load(args_find_config(7, argv), &cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(args_parse_run(7, argv, &cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.cpus, 1);
	ck_assert_uint_eq(cfg.memory, 64ULL << 20);
	ck_assert_int_eq(cfg.console, CONSOLE_NONE);
	ck_assert_str_eq(cfg.api_sock, "/run/a.sock");
	ck_assert_str_eq(spec_args("virtio-blk", 0), "path=/a.img");
	ck_assert_str_eq(spec_args("virtio-blk", 1), "path=/b.img");
	ck_assert_ptr_null(spec_args("virtio-blk", 2));
	unlink(path);
}
END_TEST

START_TEST(test_memory_forms)
{
	ck_assert_int_eq(parse("{\"memory\": \"512M\"}"), 0);
	ck_assert_uint_eq(cfg.memory, 512ULL << 20);
	ck_assert_int_eq(parse("{\"memory\": \"1G\"}"), 0);
	ck_assert_uint_eq(cfg.memory, 1ULL << 30);
	ck_assert_int_eq(parse("{\"memory\": \"65536K\"}"), 0);
	ck_assert_uint_eq(cfg.memory, 64ULL << 20);
	ck_assert_int_eq(parse("{\"memory\": \"256\"}"), 0);	/* MiB, like --memory */
	ck_assert_uint_eq(cfg.memory, 256ULL << 20);
	ck_assert_int_eq(parse("{\"memory\": \"2GiB\"}"), 0);
	ck_assert_uint_eq(cfg.memory, 2ULL << 30);
	ck_assert_int_eq(parse("{\"memory\": 134217728}"), 0);
	ck_assert_uint_eq(cfg.memory, 128ULL << 20);

	expect_fail("{\"memory\": true}", "memory: expected integer or size string");
	expect_fail("{\"memory\": 1.5}", "memory: expected integer or size string");
	expect_fail("{\"memory\": [1]}", "memory: expected integer or size string");
	expect_fail("{\"memory\": \"lots\"}", "memory: 'lots' is not a size (e.g. 512M, 2G)");
	expect_fail("{\"memory\": \"12X\"}", "memory: '12X' is not a size (e.g. 512M, 2G)");
	expect_fail("{\"memory\": -1}", "memory: must be positive");
	expect_fail("{\"memory\": 0}", "memory: must be positive");
	expect_fail("{\"memory\": 4096}", "memory: 4096 bytes is too small (minimum 16M)");
	expect_fail("{\"memory\": 16777217}",
		    "memory: 16777217 bytes is not a multiple of 4 KiB");
	expect_fail("{\"memory\": \"2048G\"}",
		    "memory: 2199023255552 bytes is larger than 1 TiB");
}
END_TEST

START_TEST(test_errors)
{
	expect_fail("{\"foo\": 1}", "foo: unknown key");
	expect_fail("[]", "expected a JSON object at the top level");
	expect_fail("{\"kernel\": 5}", "kernel: expected string");
	expect_fail("{\"kernel\": \"\"}", "kernel: must not be empty");
	expect_fail("{\"kernel\": null}", "kernel: expected string");
	expect_fail("{\"initrd\": false}", "initrd: expected string");
	expect_fail("{\"cmdline\": {}}", "cmdline: expected string");
	expect_fail("{\"api_sock\": 1}", "api_sock: expected string");
	expect_fail("{\"cpus\": \"2\"}", "cpus: expected integer");
	expect_fail("{\"cpus\": 0}", "cpus: must be between 1 and 1024");
	expect_fail("{\"cpus\": 5000}", "cpus: must be between 1 and 1024");
	expect_fail("{\"shutdown_timeout\": -1}", "shutdown_timeout: must be between 0 and 86400");
	expect_fail("{\"shutdown_timeout\": 1.0}", "shutdown_timeout: expected integer");
	expect_fail("{\"qmp_max_clients\": 0}", "qmp_max_clients: must be between 1 and 1024");
	expect_fail("{\"qmp_max_clients\": 1025}", "qmp_max_clients: must be between 1 and 1024");
	expect_fail("{\"qmp_handshake_timeout\": 3601}",
		    "qmp_handshake_timeout: must be between 0 and 3600");
	expect_fail("{\"qmp_idle_timeout\": \"5\"}", "qmp_idle_timeout: expected integer");
	expect_fail("{\"console\": \"tty\"}",
		    "console: expected \"stdio\", \"none\" or \"file:PATH\"");
	expect_fail("{\"console\": \"file:\"}",
		    "console: expected \"stdio\", \"none\" or \"file:PATH\"");
	expect_fail("{\"console\": 1}", "console: expected string");
	expect_fail("{\"on_reboot\": \"halt\"}", "on_reboot: expected \"restart\" or \"exit\"");
	expect_fail("{\"cpu_model\": 1}", "cpu_model: expected string");
	expect_fail("{\"hugepages\": \"yes\"}", "hugepages: expected boolean");
	expect_fail("{\"debug_exit\": 1}", "debug_exit: expected boolean");
	expect_fail("{\"test_device\": \"on\"}", "test_device: expected boolean");
	ck_assert_int_eq(parse("{\"debug_exit\": false}"), 0);
	ck_assert_int_eq(cfg.debug_exit, DEBUG_EXIT_OFF);

	/* The virtio-blk table's own key, and its older name. */
	expect_fail("{\"disk\": [{\"path\": \"/a\"}, {\"path\": \"/b\", \"readonly\": \"maybe\"}]}",
		    "disk[1].readonly: expected on or off");
	expect_fail("{\"disk\": \"path=/a,foo=1\"}",
		    "disk: unknown option 'foo' (valid: path, readonly, serial, aio, cache)");
	expect_fail("{\"disk\": \"path=/a\", \"disks\": [{\"path\": \"/b\"}]}",
		    "disks: virtio-blk already given as 'disk'");
	/* "disks" goes through the virtio-blk options table. */
	expect_fail("{\"disks\": [1]}",
		    "disks[0]: expected an option string, an object or true, or an array of them");
	expect_fail("{\"disks\": [{\"path\": \"/a\"}, {\"readonly\": true}]}",
		    "disks[1].path: required (path=STR)");
	expect_fail("{\"disks\": [{\"path\": \"/a\", \"ro\": true}]}",
		    "disks[0].ro: unknown option (valid: path, readonly, serial, aio, cache)");
	expect_fail("{\"disks\": [{\"path\": \"/a,b\"}]}", "disks[0].path: must not contain ','");
	/* jansson refuses \u0000 itself. */
	ck_assert_int_eq(parse("{\"disks\": [{\"path\": \"/a\\u0000b\"}]}"), -EINVAL);
	expect_fail("{\"disks\": [{\"path\": \"\"}]}", "disks[0].path: must not be empty");
	expect_fail("{\"disks\": [{\"path\": \"/a\", \"serial\": \"0123456789abcdefghijk\"}]}",
		    "disks[0]: serial '0123456789abcdefghijk' is longer than 20 bytes");
	expect_fail("{\"disks\": [{\"path\": \"/a\", \"cache\": \"x\"}]}",
		    "disks[0].cache: expected none or writeback");
	expect_fail("{\"disks\": [{\"path\":\"/1\"},{\"path\":\"/2\"},{\"path\":\"/3\"},{\"path\":\"/4\"},"
		    "{\"path\":\"/5\"},{\"path\":\"/6\"},{\"path\":\"/7\"},{\"path\":\"/8\"},{\"path\":\"/9\"}]}",
		    "disks: at most 8 virtio-blk devices");
	/* An error after good fields still changes nothing. */
	expect_fail("{\"kernel\": \"/k\", \"cpus\": 2, \"bogus\": 1}", "bogus: unknown key");
}
END_TEST

static const char *spec_args(const char *type, unsigned nth)
{
	for (unsigned i = 0; i < cfg.nr_devices; i++)
		if (!strcmp(cfg.devices[i].type, type) && nth-- == 0)
			return cfg.devices[i].args;
	return NULL;
}

START_TEST(test_devices)
{
	ck_assert_msg(parse("{\"x_disk\": [\"path=/a,readonly=on\", "
			    "{\"cache\": \"none\", \"path\": \"/b\", \"readonly\": false, "
			    "\"queues\": 4, \"block\": \"4K\"}, true], "
			    "\"x_chr\": \"file:/tmp/c\", \"x_bare\": true}") == -EINVAL,
		      "true for a device with a required option");
	ck_assert_str_eq(err, "x_disk[2].path: required (path=STR)");

	ck_assert_msg(parse("{\"x_disk\": [\"path=/a,readonly=on\", "
			    "{\"cache\": \"none\", \"path\": \"/b\", \"readonly\": false, "
			    "\"queues\": 4, \"block\": 4096}], "
			    "\"x_chr\": \"file:/tmp/c\", \"x_bare\": true}") == 0, "%s", err);
	ck_assert_uint_eq(cfg.nr_devices, 4);
	ck_assert_str_eq(spec_args("x-cfg-disk", 0), "path=/a,readonly=on");
	/* Objects become option strings in table order. */
	ck_assert_str_eq(spec_args("x-cfg-disk", 1), "path=/b,readonly=off,queues=4,block=4096,cache=none");
	ck_assert_str_eq(spec_args("x-cfg-chr", 0), "file:/tmp/c");
	ck_assert_str_eq(spec_args("x-cfg-bare", 0), "");

	/* A single object, not an array, for a repeatable device too. */
	config_defaults(&cfg);
	ck_assert_msg(parse("{\"x_disk\": {\"path\": \"/only\"}, \"x_chr\": {\"backend\": \"stdio\"}}")
		      == 0, "%s", err);
	ck_assert_uint_eq(cfg.nr_devices, 2);
	ck_assert_str_eq(spec_args("x-cfg-disk", 0), "path=/only");
	ck_assert_str_eq(spec_args("x-cfg-chr", 0), "backend=stdio");
	/* A later load replaces a type's specs; false removes them. */
	ck_assert_msg(parse("{\"x_disk\": [\"path=/n1\", \"path=/n2\"], \"x_chr\": false}") == 0,
		      "%s", err);
	ck_assert_uint_eq(cfg.nr_devices, 2);
	ck_assert_str_eq(spec_args("x-cfg-disk", 0), "path=/n1");
	ck_assert_str_eq(spec_args("x-cfg-disk", 1), "path=/n2");
	ck_assert_ptr_null(spec_args("x-cfg-chr", 0));
	ck_assert_int_eq(parse("{\"x_disk\": []}"), 0);
	ck_assert_uint_eq(cfg.nr_devices, 0);
}
END_TEST

START_TEST(test_device_errors)
{
	expect_fail("{\"x_disk\": [\"path=/a\", {\"path\": \"/b\", \"readonly\": \"maybe\"}]}",
		    "x_disk[1].readonly: expected on or off");
	expect_fail("{\"x_disk\": [\"path=/a,readonly=maybe\"]}",
		    "x_disk[0].readonly: expected on or off");
	expect_fail("{\"x_disk\": {\"path\": \"/b\", \"ro\": true}}",
		    "x_disk.ro: unknown option (valid: path, readonly, queues, block, cache)");
	expect_fail("{\"x_disk\": \"path=/b,ro=1\"}",
		    "x_disk: unknown option 'ro' (valid: path, readonly, queues, block, cache)");
	expect_fail("{\"x_disk\": [{\"path\": \"/a,b\"}]}", "x_disk[0].path: must not contain ','");
	expect_fail("{\"x_disk\": [{\"path\": 1.5}]}",
		    "x_disk[0].path: expected string, integer or boolean");
	expect_fail("{\"x_disk\": [{\"path\": null}]}",
		    "x_disk[0].path: expected string, integer or boolean");
	expect_fail("{\"x_disk\": [{\"path\": \"/a\", \"queues\": 9}]}",
		    "x_disk[0].queues: expected a number from 1 to 8");
	expect_fail("{\"x_disk\": [{\"path\": \"/a\", \"queues\": -1}]}",
		    "x_disk[0].queues: expected a number from 1 to 8");
	expect_fail("{\"x_disk\": [{\"path\": \"/a\", \"cache\": \"unsafe\"}]}",
		    "x_disk[0].cache: expected none or writeback");
	expect_fail("{\"x_disk\": [{\"path\": \"\"}]}", "x_disk[0].path: must not be empty");
	expect_fail("{\"x_disk\": [{}]}", "x_disk[0].path: required (path=STR)");
	expect_fail("{\"x_disk\": 3}",
		    "x_disk: expected an option string, an object or true, or an array of them");
	expect_fail("{\"x_disk\": [[]]}",
		    "x_disk[0]: expected an option string, an object or true, or an array of them");
	expect_fail("{\"x_disk\": [\"path=/1\", \"path=/2\", \"path=/3\", \"path=/4\"]}",
		    "x_disk: at most 3 x-cfg-disk devices");
	expect_fail("{\"x_chr\": [\"stdio\"]}",
		    "x_chr: expected an option string, an object or true (one x-cfg-chr device)");
	expect_fail("{\"x_chr\": null}", "x_chr: expected an option string, an object or true");
	expect_fail("{\"x_chr\": \"stdio,x\"}", "x_chr: expected key=value, got 'x'");
	expect_fail("{\"x_bare\": {\"a\": 1}}", "x_bare.a: unknown option (x-cfg-bare takes no options)");
	expect_fail("{\"x_bare\": \"a=1\"}", "x_bare: unknown option 'a' (x-cfg-bare takes no options)");
	/* An error in a device after good ones leaves cfg untouched. */
	expect_fail("{\"x_chr\": \"stdio\", \"x_disk\": [\"path=/a\", \"bad\"]}",
		    "x_disk[1]: expected key=value, got 'bad'");
}
END_TEST

/* Defaults, the file, then flags: CLI flags add to the file's repeatable
 * devices and replace its single-instance ones. */
START_TEST(test_device_file_then_flags)
{
	char *argv[] = { (char *)"run", (char *)"--x-cfg-disk", (char *)"path=/cli",
			 (char *)"--x-cfg-chr=stdio", (char *)"--console", (char *)"none", NULL };

	ck_assert_msg(parse("{\"x_disk\": [\"path=/f\"], \"x_chr\": \"file:/f\"}") == 0, "%s", err);
	ck_assert_msg(args_parse_run(6, argv, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg.nr_devices, 3);
	ck_assert_str_eq(spec_args("x-cfg-disk", 0), "path=/f");
	ck_assert_str_eq(spec_args("x-cfg-disk", 1), "path=/cli");
	ck_assert_str_eq(spec_args("x-cfg-chr", 0), "stdio");
}
END_TEST

/* Every `ember run` flag has a JSON config key, except these, which are
 * not VM configuration. (--version is a top-level command, not a flag.) */
static const struct {
	const char *flag;
	const char *why;
} cli_only[] = {
	{ "help", "prints the usage and exits" },
	{ "config", "names the JSON file itself" },
};

static bool json_key_known(const char *key)
{
	char text[160], unknown[160];

	config_defaults(&cfg);
	snprintf(text, sizeof(text), "{\"%s\": null}", key);
	snprintf(unknown, sizeof(unknown), "%s: unknown key", key);
	/* null is wrong for every key, so the error shows who took it. */
	ck_assert_int_eq(parse(text), -EINVAL);
	return strcmp(err, unknown) != 0;
}

START_TEST(test_every_flag_has_a_json_key)
{
	for (const struct option *o = args_long_options(); o->name; o++) {
		const struct dev_option_table *t = dev_option_table_by_flag(o->name);
		char key[64];
		size_t i;
		bool skip = false;

		for (i = 0; i < sizeof(cli_only) / sizeof(cli_only[0]); i++)
			skip |= !strcmp(o->name, cli_only[i].flag);
		if (skip)
			continue;
		if (t) {
			ck_assert_msg(json_key_known(t->json_key), "--%s: JSON key %s unknown", o->name,
				      t->json_key);
			continue;
		}
		snprintf(key, sizeof(key), "%s", o->name);
		for (char *p = key; *p; p++)
			if (*p == '-')
				*p = '_';
		ck_assert_msg(json_key_known(key), "--%s has no JSON config key '%s'", o->name, key);
	}
	/* The exemptions are real flags. */
	for (size_t i = 0; i < sizeof(cli_only) / sizeof(cli_only[0]); i++) {
		const struct option *o;

		for (o = args_long_options(); o->name; o++)
			if (!strcmp(o->name, cli_only[i].flag))
				break;
		ck_assert_msg(o->name, "cli_only lists --%s, which is no flag", cli_only[i].flag);
	}
}
END_TEST

/* Each device table has both: a flag `ember run` takes, and a JSON key that
 * reaches the device (not shadowed by a machine key). */
START_TEST(test_every_device_has_flag_and_key)
{
	for (const struct dev_option_table *t = dev_option_tables(); t; t = t->next) {
		const struct option *o;
		char text[160], want[160];

		for (o = args_long_options(); o->name; o++)
			if (!strcmp(o->name, t->flag))
				break;
		ck_assert_msg(o->name, "%s: no --%s flag", t->type, t->flag);
		config_defaults(&cfg);
		snprintf(text, sizeof(text), "{\"%s\": 5}", t->json_key);
		snprintf(want, sizeof(want), "%s: expected an option string", t->json_key);
		ck_assert_int_eq(parse(text), -EINVAL);
		ck_assert_msg(!strncmp(err, want, strlen(want)), "%s: JSON key %s: %s", t->type,
			      t->json_key, err);
	}
}
END_TEST

START_TEST(test_syntax_errors)
{
	ck_assert_int_eq(parse("{\n  \"cpus\": 2,\n}"), -EINVAL);
	ck_assert_msg(!strncmp(err, "line 3, column ", 15), "%s", err);
	ck_assert_int_eq(parse("{\"cpus\": 1, \"cpus\": 2}"), -EINVAL);
	ck_assert_msg(strstr(err, "duplicate"), "%s", err);
	ck_assert_int_eq(parse(""), -EINVAL);
	ck_assert_int_ne(err[0], '\0');
	ck_assert_int_eq(config_file_load("/nonexistent/vm.json", &cfg, err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "No such file or directory");
}
END_TEST

START_TEST(test_example_config)
{
	const char *src = getenv("EMBER_SOURCE_DIR");
	char path[4096];

	if (!src)
		src = ".";
	snprintf(path, sizeof(path), "%s/examples/vm.json", src);
	if (access(path, R_OK))
		return;	/* not run from the tree */
	ck_assert_msg(config_file_load(path, &cfg, err, sizeof(err)) == 0, "%s: %s", path, err);
	ck_assert_ptr_nonnull(cfg.kernel);
	ck_assert_uint_ge(cfg.memory, 16ULL << 20);
}
END_TEST

static Suite *config_file_suite(void)
{
	Suite *s = suite_create("config_file");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_config);
	tcase_add_test(tc, test_only_present_fields);
	tcase_add_test(tc, test_file_then_flags);
	tcase_add_test(tc, test_memory_forms);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_syntax_errors);
	tcase_add_test(tc, test_example_config);
	tcase_add_test(tc, test_devices);
	tcase_add_test(tc, test_device_errors);
	tcase_add_test(tc, test_device_file_then_flags);
	tcase_add_test(tc, test_every_flag_has_a_json_key);
	tcase_add_test(tc, test_every_device_has_flag_and_key);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(config_file_suite());
}
