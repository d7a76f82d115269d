/* `ember ctl`: a small QMP client for the --api-sock control socket.
 *
 *   ember ctl [--timeout SEC] SOCKET COMMAND [key=value | key:=JSON ...]
 *   ember ctl SOCKET --events
 *
 * Values: true/false become booleans, integers become numbers, anything
 * else a string; key:=JSON passes raw JSON (e.g. serial:='"123"').
 * Prints the command's "return" as indented JSON; with --events, prints
 * each event as one JSON line until the socket closes or SIGINT/SIGTERM.
 * Exit status: 0 success, 1 error reply (CLASS: desc on stderr), 2 usage,
 * 3 connection or protocol failure (including a timeout, default 60 s). */
#ifndef EMBER_CLI_CTL_H
#define EMBER_CLI_CTL_H

#include <jansson.h>

#define CTL_EXIT_OK       0
#define CTL_EXIT_ERROR    1
#define CTL_EXIT_USAGE    2
#define CTL_EXIT_CONNECT  3

/* argv[0] is "ctl". */
int ctl_main(int argc, char **argv);

/* Build the "arguments" object from key=value / key:=JSON words. Returns a
 * new object, or NULL with a message in err. */
json_t *ctl_parse_args(int argc, char **argv, char *err, size_t errlen);

#endif
