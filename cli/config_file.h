/* JSON VM configuration files (`ember run --config FILE`).
 *
 * The loader only sets the fields present in the file, so the CLI can
 * apply config_defaults(), then the file, then its own flags on top:
 *
 *   {
 *     "kernel": "/path/vmlinux", "initrd": "/path/initrd.img",
 *     "cmdline": "console=ttyS0", "cpus": 2,
 *     "memory": "512M",          (integer bytes, or a --memory string:
 *                                  K/M/G suffix, bare numbers are MiB)
 *     "disk": [ {"path": "/img", "readonly": true, "serial": "root",
 *                "aio": "io_uring", "cache": "none"}, "path=/data.img" ],
 *     "rng": true, "virtio-console": "file:/var/log/hvc0.log",
 *     "console": "stdio" | "none" | "file:PATH",
 *     "on_reboot": "restart" | "exit", "cpu_model": "host" | "baseline",
 *     "api_sock": "/run/ember/vm.sock", "shutdown_timeout": 30,
 *     "qmp_max_clients": 16, "qmp_handshake_timeout": 10,
 *     "qmp_idle_timeout": 300,   (seconds; see struct qmp_limits)
 *     "hugepages": false, "debug_exit": false, "test_device": false,
 *     "restore": "DIR", "restore_paused": false,   (--restore, --restore-paused)
 *     "<json_key>": ...          (one per device options table, below)
 *   }
 *
 * Devices: every registered options table (devices/options.h) has its
 * json_key, holding one instance as an option string in the --FLAG syntax
 * ("path=/img,readonly=on"), an object of options ({"path": "/img",
 * "readonly": true}; strings, integers and booleans), or true (no options);
 * an array of those for a repeatable device; false for none. Each instance
 * becomes a cfg->devices[] spec and is parsed once here, so errors name the
 * field: "disk[1].readonly: expected on or off", "disk[0].foo: unknown
 * option (valid: path, ...)". A key replaces the specs of its device type;
 * CLI flags then add to repeatable devices and replace single ones.
 * "disks" is the older name of the virtio-blk key.
 *
 * Strings stored into cfg are allocated by the loader and stay valid until
 * config_file_free(). */
#ifndef EMBER_CLI_CONFIG_FILE_H
#define EMBER_CLI_CONFIG_FILE_H

#include <stddef.h>

#include "vmm/config.h"

/* Returns 0, or a negative errno with a message in err such as
 * "disk[1].readonly: expected on or off", "memory: expected integer or size
 * string", "foo: unknown key" or "line 3, column 7: <syntax error>"
 * (the caller prefixes the file name). On failure cfg is unchanged. */
int config_file_load(const char *path, struct vm_config *cfg, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* The same, from text in memory. */
int config_file_parse(const char *text, size_t len, struct vm_config *cfg,
		      char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* Free every string any successful load stored into a vm_config. */
void config_file_free(void);

#endif
