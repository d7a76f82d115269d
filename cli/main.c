/* ember: the command-line entry point. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "vmm/log.h"
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

	config_defaults(&cfg);
	ret = args_parse_run(argc, argv, &cfg, err, sizeof(err));
	if (ret == 1)
		return 0;
	if (ret) {
		fprintf(stderr, "ember: %s\n", err);
		return 1;
	}
	if (check_readable("--kernel", cfg.kernel) || check_readable("--initrd", cfg.initrd))
		return 1;
	if (!cfg.kernel) {
		cfg.kernel_image = ember_demo_guest;
		cfg.kernel_image_size = (size_t)(ember_demo_guest_end - ember_demo_guest);
	}
	ret = vm_create(&vm, &cfg);
	if (ret)
		return 1;
	status = vm_run(&vm);
	vm_destroy(&vm);
	return status;
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
	fprintf(stderr, "ember: unknown command '%s' (see ember --help)\n", argv[1]);
	return 1;
}
