/* Device registration. Each device file ends with DEVICE_REGISTER(&desc);
 * the machine realizes registered devices in level order at VM creation,
 * pauses them on VM pause (and before a reset), resets them on VM reset and
 * destroys them at teardown. Devices live in an
 * OBJECT library so the linker keeps their constructors. */
#ifndef EMBER_DEVICE_H
#define EMBER_DEVICE_H

struct vm;

enum device_level {
	DEVICE_LEVEL_CORE = 0,	/* irqchip-adjacent, buses */
	DEVICE_LEVEL_LEGACY = 1,	/* UART, i8042, RTC, debug exit */
	DEVICE_LEVEL_PCI = 2,	/* host bridge */
	DEVICE_LEVEL_VIRTIO = 3,
	DEVICE_LEVEL_LATE = 4,
};

struct device_desc {
	const char *name;
	enum device_level level;
	/* Create state and register on buses. Return 0 with *state set (may be
	 * NULL when the device is disabled by config), or negative errno. */
	int (*realize)(struct vm *vm, void **state);
	void (*reset)(void *state);	/* optional: back to power-on state */
	/* Optional: quiesce for a VM pause or reset. On return nothing is in
	 * flight and the device writes neither guest memory nor its images
	 * until resume. Called from the main loop with the vCPUs parked;
	 * reset may be called between pause and resume. */
	void (*pause)(void *state);
	void (*resume)(void *state);
	void (*destroy)(void *state);	/* optional: free everything */
	struct device_desc *next;
};

void device_register(struct device_desc *desc);
struct device_desc *device_list(void);

#define DEVICE_REGISTER(desc)                                             \
	static void __attribute__((constructor)) device_ctor_##desc(void) \
	{                                                                 \
		device_register(&desc);                                   \
	}

#endif
