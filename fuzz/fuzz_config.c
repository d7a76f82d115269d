/* libFuzzer target: everything an operator (or a tool generating configs)
 * feeds the CLI: JSON VM configs (config_file_parse), --disk option strings
 * (blk_parse_opts) and `ember run` argument vectors (args_parse_run).
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
#include "devices/virtio/blk.h"
#include "base/log.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config cfg;
	struct blk_opts o;
	char err[256], *text, *argv[MAX_ARGS + 2];
	int argc = 0;

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
			if (cfg.nr_disks > CONFIG_MAX_DISKS || !cfg.cpus)
				abort();
			for (unsigned i = 0; i < cfg.nr_disks; i++)
				if (blk_parse_opts(cfg.disks[i], &o, err, sizeof(err)) == 0 && !o.path[0])
					abort();
		} else if (!err[0] || !memchr(err, 0, sizeof(err))) {
			abort();	/* a failure always says why */
		}
		config_file_free();
		break;
	case 1:
		if (blk_parse_opts(text, &o, err, sizeof(err)) == 0) {
			if (!o.path[0] || strlen(o.serial) > BLK_SERIAL_LEN)
				abort();
		} else if (!err[0]) {
			abort();
		}
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
		if (args_parse_run(argc, argv, &cfg, err, sizeof(err)) < 0 && !err[0])
			abort();
		break;
	}
	free(text);
	return 0;
}
