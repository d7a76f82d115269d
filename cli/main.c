/* ember: the command-line entry point. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/config_file.h"
#include "cli/ctl.h"
#include "base/log.h"
#include "vmm/vm.h"

extern const uint8_t ember_demo_guest[];
extern const uint8_t ember_demo_guest_end[];

static int check_readable(const char *what, const char *path)
{
	if (path && access(path, R_OK) != 0) {
		fprintf(stderr, "ember: %s '%s': %s\n", what, path, strerror(errno));
		return -1;
	}
	return 0;
}

static int run_main(int argc, char **argv)
{
	struct vm_config cfg;
	char err[256];
	struct vm vm;
	int ret, status;

	const char *config_path = args_find_config(argc, argv);

	/* Defaults, then the JSON config, then flags on top. */
	config_defaults(&cfg);
	if (config_path && config_file_load(config_path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "ember: --config %s: %s\n", config_path, err);
		return 1;
	}
	ret = args_parse_run(argc, argv, &cfg, err, sizeof(err));
	if (ret == 1)
		goto out_ok;
	if (ret) {
		fprintf(stderr, "ember: %s\n", err);
		config_file_free();
		return 1;
	}
	if (check_readable("--kernel", cfg.kernel) || check_readable("--initrd", cfg.initrd)) {
		config_file_free();
		return 1;
	}
	if (!cfg.kernel) {
		cfg.kernel_image = ember_demo_guest;
		cfg.kernel_image_size = (size_t)(ember_demo_guest_end - ember_demo_guest);
	}
	ret = vm_create(&vm, &cfg);
	if (ret) {
		config_file_free();
		return 1;
	}
	status = vm_run(&vm);
	vm_destroy(&vm);
	config_file_free();
	return status;
out_ok:
	config_file_free();
	return 0;
}

int main(int argc, char **argv)
{
	log_init();
	if (argc < 2) {
		args_usage(stderr);
		return 1;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		args_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("ember %s\n", EMBER_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return run_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return ctl_main(argc - 1, argv + 1);
	fprintf(stderr, "ember: unknown command '%s' (see ember --help)\n", argv[1]);
	return 1;
}
