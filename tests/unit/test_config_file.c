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
#include "helpers/ck_run.h"

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
		"  \"debug_exit\": true\n"
		"}\n";

	ck_assert_msg(parse(text) == 0, "%s", err);
	ck_assert_str_eq(cfg.kernel, "/boot/vmlinuz");
	ck_assert_str_eq(cfg.initrd, "/boot/initrd.img");
	ck_assert_str_eq(cfg.cmdline, "console=ttyS0 quiet");
	ck_assert_uint_eq(cfg.cpus, 4);
	ck_assert_uint_eq(cfg.memory, 2ULL << 30);
	ck_assert_uint_eq(cfg.nr_disks, 3);
	ck_assert_str_eq(cfg.disks[0],
			 "path=/var/lib/ember/root.img,readonly=off,serial=root,aio=io_uring,cache=none");
	ck_assert_str_eq(cfg.disks[1], "path=/srv/data.img,readonly=on");
	ck_assert_str_eq(cfg.disks[2], "path=/x,serial=s3");
	ck_assert_ptr_null(cfg.disks[3]);
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
	ck_assert_uint_eq(cfg.nr_disks, 2);
	ck_assert_str_eq(cfg.disks[0], "path=/a.img");
	ck_assert_str_eq(cfg.disks[1], "path=/b.img");
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
	ck_assert_int_eq(parse("{\"debug_exit\": false}"), 0);
	ck_assert_int_eq(cfg.debug_exit, DEBUG_EXIT_OFF);

	expect_fail("{\"disks\": {}}", "disks: expected array");
	expect_fail("{\"disks\": [1]}", "disks[0]: expected object");
	expect_fail("{\"disks\": [{\"path\": \"/a\"}, {\"path\": 7}]}",
		    "disks[1].path: expected string");
	expect_fail("{\"disks\": [{\"path\": \"/a\"}, {\"readonly\": true}]}",
		    "disks[1].path: missing");
	expect_fail("{\"disks\": [{\"path\": \"/a\", \"readonly\": \"yes\"}]}",
		    "disks[0].readonly: expected boolean");
	expect_fail("{\"disks\": [{\"path\": \"/a\", \"ro\": true}]}", "disks[0].ro: unknown key");
	expect_fail("{\"disks\": [{\"path\": \"/a,b\"}]}",
		    "disks[0].path: must not contain ',' or NUL");
	/* jansson refuses \u0000 itself. */
	ck_assert_int_eq(parse("{\"disks\": [{\"path\": \"/a\\u0000b\"}]}"), -EINVAL);
	expect_fail("{\"disks\": [{\"path\": \"\"}]}", "disks[0].path: must not be empty");
	expect_fail("{\"disks\": [{\"path\": \"/a\", \"serial\": \"0123456789abcdefghijk\"}]}",
		    "disks[0].serial: at most 20 characters");
	expect_fail("{\"disks\": [{\"path\": \"/a\", \"cache\": 1}]}",
		    "disks[0].cache: expected string");
	expect_fail("{\"disks\": [{\"path\":\"/1\"},{\"path\":\"/2\"},{\"path\":\"/3\"},{\"path\":\"/4\"},"
		    "{\"path\":\"/5\"},{\"path\":\"/6\"},{\"path\":\"/7\"},{\"path\":\"/8\"},{\"path\":\"/9\"}]}",
		    "disks: at most 8 disks");
	/* An error after good fields still changes nothing. */
	expect_fail("{\"kernel\": \"/k\", \"cpus\": 2, \"bogus\": 1}", "bogus: unknown key");
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
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(config_file_suite());
}
