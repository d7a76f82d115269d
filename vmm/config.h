/* The VM configuration: what the CLI (and later a JSON file) produces. */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum console_kind { CONSOLE_STDIO, CONSOLE_FILE, CONSOLE_NONE };
enum debug_exit_mode { DEBUG_EXIT_AUTO = 0, DEBUG_EXIT_ON, DEBUG_EXIT_OFF };

/* Whether the isa-debug-exit device is present for this config. */
#define CONFIG_DEBUG_EXIT(cfg) \
	((cfg)->debug_exit == DEBUG_EXIT_ON || ((cfg)->debug_exit == DEBUG_EXIT_AUTO && !(cfg)->kernel))
enum reboot_policy { REBOOT_RESTART, REBOOT_EXIT };
enum cpu_model { CPU_MODEL_HOST, CPU_MODEL_BASELINE };

#define CONFIG_MAX_DEVICES 64

/* One device instance asked for on the command line or in a JSON config:
 * its type (a registered options table's type, e.g. "virtio-blk") and its
 * option string in that table's syntax ("path=disk.img,readonly=on"; "" for
 * none). Realize parses it with dev_options_parse (devices/options.h). */
struct device_spec {
	const char *type;
	const char *args;
};

struct vm_config {
	const char *kernel;	/* NULL: boot kernel_image (the embedded demo) */
	const uint8_t *kernel_image;
	size_t kernel_image_size;
	const char *initrd;
	const char *cmdline;
	unsigned cpus;
	uint64_t memory;
	enum console_kind console;
	const char *console_path;
	enum reboot_policy on_reboot;
	enum cpu_model cpu_model;
	bool hugepages;
	bool test_device;	/* the test-only MMIO sink used by test guests */
	/* isa-debug-exit at port 0xf4 lets the guest pick Ember's exit status:
	 * AUTO means only with the built-in demo guest (no kernel given). */
	enum debug_exit_mode debug_exit;
	const char *api_sock;
	int api_sock_fd;	/* socket-activated listener (LISTEN_FDS), or -1 */
	unsigned shutdown_timeout_s;	/* SIGTERM: power button, then quit after this */
	/* QMP connection limits (struct qmp_limits; 0 s disables a timeout). */
	unsigned qmp_max_clients;
	unsigned qmp_handshake_timeout_s;
	unsigned qmp_idle_timeout_s;
	/* --restore DIR: start from a snapshot (vmm/snapshot/) instead of
	 * booting; restore_paused: stay paused until QMP cont. */
	const char *restore_dir;
	bool restore_paused;
	/* --incoming URI (unix:PATH or tcp:HOST:PORT): wait for a live
	 * migration from another Ember (vmm/migration/) instead of booting. */
	const char *incoming;
	/* Devices from options tables, in command-line order (replaces the
	 * per-device fields above as devices move to the registry). */
	struct device_spec devices[CONFIG_MAX_DEVICES];
	unsigned nr_devices;
};

void config_defaults(struct vm_config *cfg);

#endif
