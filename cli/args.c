#include "cli/args.h"

#include "devices/options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void config_defaults(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = 1;
	cfg->memory = 128ULL << 20;
	cfg->console = CONSOLE_STDIO;
	cfg->on_reboot = REBOOT_RESTART;
	cfg->cpu_model = CPU_MODEL_HOST;
	cfg->api_sock_fd = -1;
	cfg->shutdown_timeout_s = 30;
	cfg->qmp_max_clients = 16;
	cfg->qmp_handshake_timeout_s = 10;
	cfg->qmp_idle_timeout_s = 300;
}

int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	uint64_t mult = 1ULL << 20;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		switch (*end) {
		case 'k': case 'K': mult = 1ULL << 10; break;
		case 'm': case 'M': mult = 1ULL << 20; break;
		case 'g': case 'G': mult = 1ULL << 30; break;
		default: return -EINVAL;
		}
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (v > UINT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	unsigned long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int parse_console(const char *s, enum console_kind *kind, const char **path)
{
	if (strcmp(s, "stdio") == 0)
		*kind = CONSOLE_STDIO;
	else if (strcmp(s, "none") == 0)
		*kind = CONSOLE_NONE;
	else if (strncmp(s, "file:", 5) == 0 && s[5])
		*kind = CONSOLE_FILE;
	else
		return -EINVAL;
	*path = *kind == CONSOLE_FILE ? s + 5 : NULL;
	return 0;
}

/* Flags that are not devices. Device flags come from the options tables
 * (devices/options.h), appended by long_options(). */
enum {
	OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEMORY, OPT_CONSOLE,
	OPT_ON_REBOOT, OPT_CPU_MODEL, OPT_API_SOCK, OPT_CONFIG, OPT_HUGEPAGES,
	OPT_TEST_DEVICE, OPT_SHUTDOWN_TIMEOUT, OPT_HELP, OPT_DEBUG_EXIT,
	OPT_RESTORE, OPT_RESTORE_PAUSED, OPT_INCOMING,
	OPT_DEVICE = 1024,	/* + index into dev_tables[] */
};

#define MAX_DEVICE_TABLES 64

static const struct option base_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "on-reboot", required_argument, NULL, OPT_ON_REBOOT },
	{ "cpu-model", required_argument, NULL, OPT_CPU_MODEL },
	{ "api-sock", required_argument, NULL, OPT_API_SOCK },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT },
	{ "hugepages", no_argument, NULL, OPT_HUGEPAGES },
	{ "test-device", no_argument, NULL, OPT_TEST_DEVICE },
	{ "debug-exit", no_argument, NULL, OPT_DEBUG_EXIT },
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "restore-paused", no_argument, NULL, OPT_RESTORE_PAUSED },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "help", no_argument, NULL, OPT_HELP },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct dev_option_table *dev_tables[MAX_DEVICE_TABLES];
static struct option long_opts[COUNT(base_options) + MAX_DEVICE_TABLES + 1];

static bool name_taken(const char *name, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(long_opts[i].name, name))
			return true;
	return false;
}

/* Tables register from constructors, before main: build once. */
const struct option *args_long_options(void)
{
	size_t n = 0, nt = 0;

	if (long_opts[0].name)
		return long_opts;
	for (size_t i = 0; i < COUNT(base_options); i++)
		long_opts[n++] = base_options[i];
	for (const struct dev_option_table *t = dev_option_tables();
	     t && nt < MAX_DEVICE_TABLES; t = t->next) {
		if (!t->flag || name_taken(t->flag, n))
			continue;	/* a clash is reported by the unit tests */
		dev_tables[nt] = t;
		long_opts[n++] = (struct option){
			t->flag, t->arg_optional ? optional_argument : required_argument,
			NULL, OPT_DEVICE + (int)nt };
		nt++;
	}
	long_opts[n] = (struct option){ NULL, 0, NULL, 0 };
	return long_opts;
}

void args_usage(FILE *out)
{
	fprintf(out,
		"usage: ember run [options]        boot a VM (the demo guest without --kernel)\n"
		"       ember ctl SOCKET COMMAND [key=value ...] | ember ctl SOCKET --events\n"
		"       ember --help | --version\n"
		"\n"
		"run options:\n"
		"  --kernel FILE            bzImage, or ELF with a PVH note (default: built-in demo)\n"
		"  --initrd FILE            initial ramdisk\n"
		"  --cmdline STR            kernel command line\n"
		"  --cpus N                 vCPUs (default 1)\n"
		"  --memory SIZE            RAM, with K/M/G suffix; bare numbers are MiB (default 128M)\n"
		"  --console stdio|file:PATH|none   serial console backend (default stdio)\n"
		"  --on-reboot restart|exit what a guest reboot or triple fault does (default restart)\n"
		"  --cpu-model host|baseline  CPUID model (default host)\n"
		"  --api-sock PATH          QMP control socket\n"
		"  --config FILE            JSON VM config; flags override it\n"
		"  --shutdown-timeout SECS  on SIGTERM, wait this long after the power button (default 30)\n"
		"  --hugepages              back RAM with 2 MiB hugepages\n"
		"  --test-device            the MMIO test device used by test guests\n"
		"  --debug-exit             isa-debug-exit at port 0xf4: the guest sets the exit status\n"
		"                           to (v << 1) | 1 (default: only for the built-in demo)\n"
		"  --restore DIR            start from the snapshot in DIR (QMP snapshot-save), with the\n"
		"                           same --cpus, --memory, --cpu-model and devices\n"
		"  --restore-paused         with --restore: stay paused until QMP cont\n"
		"  --incoming URI           receive a live migration (QMP migrate on the source) on\n"
		"                           unix:PATH or tcp:HOST:PORT, with the same flags, then run\n"
		"\n"
		"devices (options: key=value,key=value; booleans on|off; sizes with K/M/G/T):\n");
	for (const struct dev_option_table *t = dev_option_tables(); t; t = t->next) {
		char *h = dev_options_help(t);

		if (h)
			fputs(h, out);
		free(h);
	}
}

const char *args_find_config(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			return argv[i + 1];
		if (strncmp(argv[i], "--config=", 9) == 0)
			return argv[i] + 9;
	}
	return NULL;
}

/* Parse one instance's options now, into a scratch struct, so a bad value
 * fails at the command line before any VM exists; realize parses again. */
static int check_device_args(const struct dev_option_table *t, const char *how,
			     const char *args, char *err, size_t errlen)
{
	void *scratch = calloc(1, t->size ? t->size : 1);
	char why[224];
	int r;

	if (!scratch) {
		snprintf(err, errlen, "%s: out of memory", how);
		return -ENOMEM;
	}
	r = dev_options_parse(t, args, scratch, why, sizeof(why));
	if (r == 0)
		dev_options_free(t, scratch);
	else
		snprintf(err, errlen, "%s: %s", how, why);
	free(scratch);
	return r ? -EINVAL : 0;
}

static void remove_spec(struct vm_config *cfg, unsigned i)
{
	memmove(&cfg->devices[i], &cfg->devices[i + 1],
		(cfg->nr_devices - i - 1) * sizeof(cfg->devices[0]));
	cfg->nr_devices--;
}

/* --FLAG [ARGS]: one more instance of t. The first nr_from_file specs came
 * from the config file: a single-instance device given there is replaced,
 * repeatable ones are added to. */
static int add_device(struct vm_config *cfg, const struct dev_option_table *t,
		      const char *args, unsigned *nr_from_file, char *err, size_t errlen)
{
	unsigned max = t->max_instances ? t->max_instances : 1, n = 0;
	char how[80];
	int r;

	snprintf(how, sizeof(how), "--%s", t->flag);
	r = check_device_args(t, how, args, err, errlen);
	if (r)
		return r;
	if (max == 1) {
		for (unsigned i = 0; i < *nr_from_file; i++) {
			if (!strcmp(cfg->devices[i].type, t->type)) {
				remove_spec(cfg, i--);
				(*nr_from_file)--;
			}
		}
	}
	for (unsigned i = 0; i < cfg->nr_devices; i++)
		n += !strcmp(cfg->devices[i].type, t->type);
	if (n >= max) {
		if (max == 1)
			snprintf(err, errlen, "--%s: given twice (one %s device at most)", t->flag,
				 t->type);
		else
			snprintf(err, errlen, "--%s: at most %u %s devices", t->flag, max, t->type);
		return -EINVAL;
	}
	if (cfg->nr_devices >= CONFIG_MAX_DEVICES) {
		snprintf(err, errlen, "--%s: too many devices (at most %d in all)", t->flag,
			 CONFIG_MAX_DEVICES);
		return -EINVAL;
	}
	cfg->devices[cfg->nr_devices++] = (struct device_spec){ .type = t->type, .args = args };
	return 0;
}

/* Whether a device instance's "backend" option (the chardev convention) is
 * stdio. Specs in cfg were checked when added, so a parse failure is no. */
static bool spec_uses_stdio(const struct dev_option_table *t, const char *args)
{
	const struct dev_option *o = NULL;
	bool stdio = false;
	void *scratch;
	char why[128];

	for (unsigned i = 0; i < t->nr_opts; i++)
		if (!strcmp(t->opts[i].name, "backend"))
			o = &t->opts[i];
	if (!o || (o->type != DEV_OPT_STRING && o->type != DEV_OPT_ENUM))
		return false;
	scratch = calloc(1, t->size);
	if (!scratch || dev_options_parse(t, args, scratch, why, sizeof(why))) {
		free(scratch);
		return false;
	}
	if (o->type == DEV_OPT_STRING) {
		const char *v = *(char **)((char *)scratch + o->offset);

		stdio = v && !strcmp(v, "stdio");
	} else {
		stdio = !strcmp(o->choices[*(unsigned *)((char *)scratch + o->offset)], "stdio");
	}
	dev_options_free(t, scratch);
	free(scratch);
	return stdio;
}

/* One terminal: at most one of --console and the devices may use stdio. */
static int check_one_stdio(const struct vm_config *cfg, char *err, size_t errlen)
{
	const char *user = cfg->console == CONSOLE_STDIO ? "console" : NULL;

	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		const struct dev_option_table *t = dev_option_table_find(cfg->devices[i].type);

		if (!t || !spec_uses_stdio(t, cfg->devices[i].args))
			continue;
		if (user && !strcmp(user, "console")) {
			snprintf(err, errlen, "--%s stdio needs --console file:PATH or none "
				 "(one stdio backend)", t->flag);
			return -EINVAL;
		}
		if (user) {
			snprintf(err, errlen, "--%s stdio and --%s stdio: one stdio backend",
				 user, t->flag);
			return -EINVAL;
		}
		user = t->flag;
	}
	return 0;
}

#define bad(...) do { snprintf(err, errlen, __VA_ARGS__); ret = -EINVAL; goto out; } while (0)

int args_parse_run(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen)
{
	const struct option *opts = args_long_options();
	unsigned nr_from_file = cfg->nr_devices;
	int opt, ret = 0;
	uint64_t size;

	/* 0, not 1: a full re-initialisation, or a previous parse that stopped
	 * inside "-ab" leaves getopt pointing into that argv. */
	optind = 0;
	opterr = 0;
	/* '+': no permutation (run takes no operands), so the value of an
	 * optional-argument flag may also follow as the next word. */
	while ((opt = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		if (opt >= OPT_DEVICE && opt < OPT_DEVICE + MAX_DEVICE_TABLES &&
		    dev_tables[opt - OPT_DEVICE]) {
			const char *val = optarg;

			if (!val && optind < argc && argv[optind][0] != '-')
				val = argv[optind++];
			ret = add_device(cfg, dev_tables[opt - OPT_DEVICE], val ? val : "",
					 &nr_from_file, err, errlen);
			if (ret)
				goto out;
			continue;
		}
		switch (opt) {
		case OPT_KERNEL:
			cfg->kernel = optarg;
			break;
		case OPT_INITRD:
			cfg->initrd = optarg;
			break;
		case OPT_CMDLINE:
			cfg->cmdline = optarg;
			break;
		case OPT_CPUS:
			if (parse_uint(optarg, 1024, &cfg->cpus) || cfg->cpus == 0)
				bad("--cpus: '%s' is not a vCPU count from 1 to 1024", optarg);
			break;
		case OPT_MEMORY:
			if (parse_size(optarg, &size))
				bad("--memory: '%s' is not a size (e.g. 512M, 2G)", optarg);
			if (size < (16ULL << 20))
				bad("--memory: %s is too small (minimum 16M)", optarg);
			if (size % 4096)
				bad("--memory: %s is not a multiple of 4 KiB", optarg);
			if (size > (1ULL << 40))
				bad("--memory: %s is larger than 1 TiB", optarg);
			cfg->memory = size;
			break;
		case OPT_CONSOLE:
			if (parse_console(optarg, &cfg->console, &cfg->console_path))
				bad("--console: '%s' is not stdio, none or file:PATH", optarg);
			break;
		case OPT_ON_REBOOT:
			if (strcmp(optarg, "restart") == 0)
				cfg->on_reboot = REBOOT_RESTART;
			else if (strcmp(optarg, "exit") == 0)
				cfg->on_reboot = REBOOT_EXIT;
			else
				bad("--on-reboot: '%s' is not restart or exit", optarg);
			break;
		case OPT_CPU_MODEL:
			if (strcmp(optarg, "host") == 0)
				cfg->cpu_model = CPU_MODEL_HOST;
			else if (strcmp(optarg, "baseline") == 0)
				cfg->cpu_model = CPU_MODEL_BASELINE;
			else
				bad("--cpu-model: '%s' is not host or baseline", optarg);
			break;
		case OPT_API_SOCK:
			if (!*optarg)
				bad("--api-sock: empty path");
			cfg->api_sock = optarg;
			break;
		case OPT_CONFIG:
			break;	/* loaded before flags by the caller */
		case OPT_SHUTDOWN_TIMEOUT:
			if (parse_uint(optarg, 86400, &cfg->shutdown_timeout_s))
				bad("--shutdown-timeout: '%s' is not a number of seconds", optarg);
			break;
		case OPT_HUGEPAGES:
			cfg->hugepages = true;
			break;
		case OPT_TEST_DEVICE:
			cfg->test_device = true;
			break;
		case OPT_DEBUG_EXIT:
			cfg->debug_exit = DEBUG_EXIT_ON;
			break;
		case OPT_RESTORE:
			if (!*optarg)
				bad("--restore: empty path");
			cfg->restore_dir = optarg;
			break;
		case OPT_RESTORE_PAUSED:
			cfg->restore_paused = true;
			break;
		case OPT_INCOMING:
			if (strncmp(optarg, "unix:", 5) && strncmp(optarg, "tcp:", 4))
				bad("--incoming: expected unix:PATH or tcp:HOST:PORT, got '%s'", optarg);
			cfg->incoming = optarg;
			break;
		case OPT_HELP:
			args_usage(stdout);
			ret = 1;
			goto out;
		case ':':
			bad("%s: missing value", argv[optind - 1]);
		default:
			if (optopt >= OPT_KERNEL)	/* a known flag given a value */
				bad("%.*s: takes no value", (int)strcspn(argv[optind - 1], "="),
				    argv[optind - 1]);
			bad("unknown option '%s' (see ember --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad("unexpected argument '%s' (see ember --help)", argv[optind]);
	if (cfg->hugepages && cfg->memory % (2ULL << 20))
		bad("--hugepages needs --memory in whole 2 MiB pages");
	ret = check_one_stdio(cfg, err, errlen);
	if (ret)
		goto out;
	if (cfg->initrd && !cfg->kernel)
		bad("--initrd needs --kernel");
	if (cfg->restore_paused && !cfg->restore_dir)
		bad("--restore-paused needs --restore DIR");
	if (cfg->incoming && cfg->restore_dir)
		bad("--incoming and --restore are two ways to start from a saved guest: give one");
	if (cfg->restore_dir && cfg->hugepages)
		bad("--restore maps the snapshot's memory file lazily and cannot use --hugepages");
out:
	return ret;
}
