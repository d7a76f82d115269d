#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cli/args.h"
#include "devices/device.h"
#include "vmm/vm.h"
#include "helpers/ck_run.h"

static int parse(struct vm_config *cfg, char *err, const char *a0, ...);

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
	ck_assert_uint_eq(c.nr_disks, 1);
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
}
END_TEST

START_TEST(test_virtio_flags)
{
	struct vm_config c;
	char err[256];

	ck_assert_int_eq(parse(&c, err, "--rng", "--virtio-console", "file:/tmp/vc",
			       "--console", "none", NULL), 0);
	ck_assert(c.virtio_rng);
	ck_assert(c.virtio_console_enabled);
	ck_assert_int_eq(c.virtio_console, CONSOLE_FILE);
	ck_assert_str_eq(c.virtio_console_path, "/tmp/vc");
	ck_assert_int_eq(c.console, CONSOLE_NONE);
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
static bool debug_exit_present(const struct vm_config *cfg)
{
	struct device_desc *d;
	struct vm vm;
	void *state = NULL;
	uint8_t v = 3;
	bool handled;

	memset(&vm, 0, sizeof(vm));
	vm.cfg = cfg;
	ck_assert_int_eq(bus_init(&vm.pio_bus, "pio"), 0);
	ck_assert_int_eq(pthread_mutex_init(&vm.lock, NULL), 0);
	vm.request_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(vm.request_efd, 0);
	for (d = device_list(); d; d = d->next)
		if (!strcmp(d->name, "isa-debug-exit"))
			break;
	ck_assert_ptr_nonnull(d);
	vm.dev_ctx = (struct device_ctx){ .cfg = cfg, .pio_bus = &vm.pio_bus, .ops = &vm_device_machine_ops, .machine = &vm };
	ck_assert_int_eq(d->realize(d, &vm.dev_ctx, &state), 0);
	handled = bus_write(&vm.pio_bus, 0xf4, &v, 1);
	ck_assert_int_eq(vm.request == VM_REQ_EXIT, handled);
	if (handled)
		ck_assert_int_eq(vm.exit_status, 7);
	if (state)
		d->destroy(state);
	close(vm.request_efd);
	bus_destroy(&vm.pio_bus);
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
	suite_add_tcase(s, tc);
	return ck_run_suite(s);
}
