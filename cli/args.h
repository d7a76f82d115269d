/* Command-line parsing for `ember run`, pure so it can be unit-tested. */
#ifndef EMBER_ARGS_H
#define EMBER_ARGS_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "vmm/config.h"

/* Parse a size: a number with an optional K, M or G suffix (binary units);
 * a bare number means MiB, as with QEMU's -m. 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);

/* Parse `ember run` arguments (argv[0] is "run") into cfg, which holds
 * defaults or values from --config already. Returns 0, 1 when help was
 * printed, or -EINVAL with a one-line reason in err.
 *
 * A device flag appends {type, its argument or ""} to cfg->devices after
 * parsing it once with the table (errors such as "--disk: readonly:
 * expected on or off"). Repeatable devices add to the config file's; a
 * single-instance device given there is replaced by the flag. */
int args_parse_run(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen);

/* Find the value of --config in argv, or NULL. */
const char *args_find_config(int argc, char **argv);

/* Usage, with every registered device table's options (dev_options_help). */
void args_usage(FILE *out);

/* The getopt_long table `ember run` parses with: the fixed flags, then one
 * per registered device options table (--FLAG, optional_argument when the
 * table's arg_optional), ended by a NULL name. Exported for the test that
 * every flag has a JSON config equivalent. */
const struct option *args_long_options(void);

#endif
