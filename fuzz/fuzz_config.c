/* libFuzzer target: everything an operator (or a tool generating configs)
 * feeds the CLI: JSON VM configs (config_file_parse), a --disk value
 * (args_parse_run with the one flag) and `ember run` argument vectors.
 * Device specs a successful parse leaves in the config must parse with
 * their options table (fuzz_dev_options covers that parser alone).
 *
 * Input: byte 0 picks the parser (mod 3), the rest is its text; for the
 * argument parser, NUL or newline separates arguments (at most 64). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/config_file.h"
#include "devices/options.h"
#include "base/log.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every spec names a registered table and parses with it. */
static void check_specs(const struct vm_config *cfg)
{
	char err[256];

	if (cfg->nr_devices > CONFIG_MAX_DEVICES)
		abort();
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		const struct dev_option_table *t = dev_option_table_find(cfg->devices[i].type);
		void *o;

		if (!t || !cfg->devices[i].args)
			abort();
		o = calloc(1, t->size ? t->size : 1);
		if (!o)
			return;
		if (dev_options_parse(t, cfg->devices[i].args, o, err, sizeof(err)))
			abort();
		dev_options_free(t, o);
		free(o);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config cfg;
	char err[256], *text, *argv[MAX_ARGS + 2];
	int argc = 0, ret;

	if (size < 1)
		return 0;
	log_set_level(LOG_ERR);
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	config_defaults(&cfg);
	err[0] = 0;
	switch (data[0] % 3) {
	case 0:
		if (config_file_parse(text, size - 1, &cfg, err, sizeof(err)) == 0) {
			/* What the file set must be consistent. */
			if (!cfg.cpus)
				abort();
			check_specs(&cfg);
		} else if (!err[0] || !memchr(err, 0, sizeof(err))) {
			abort();	/* a failure always says why */
		}
		config_file_free();
		break;
	case 1:
		argv[0] = "run";
		argv[1] = "--disk";
		argv[2] = text;
		argv[3] = NULL;
		if (args_parse_run(3, argv, &cfg, err, sizeof(err)) == 0)
			check_specs(&cfg);
		else if (!err[0])
			abort();
		break;
	case 2:
		argv[argc++] = "run";
		for (char *p = text; argc < MAX_ARGS + 1 && p < text + size - 1;) {
			char *end = p + strcspn(p, "\n");

			argv[argc++] = p;
			if (!*end)
				break;
			*end = 0;
			p = end + 1;
		}
		argv[argc] = NULL;
		ret = args_parse_run(argc, argv, &cfg, err, sizeof(err));
		if (ret == 0)
			check_specs(&cfg);
		else if (ret < 0 && !err[0])
			abort();	/* 1: --help was printed */
		break;
	}
	free(text);
	return 0;
}
