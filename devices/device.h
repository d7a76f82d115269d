/* The device model: what a device is given (struct device_ctx), what it
 * registers (struct device_desc), and the lifecycle the machine drives.
 *
 * Each device file ends with DEVICE_REGISTER(desc). At VM creation the
 * machine realizes registered devices in level order, each with the same
 * narrow context: guest memory, the two buses, the event loop, the irqchip
 * (interrupt lines and MSI routes), a small KVM service and the machine
 * requests. No device sees struct vm; accel/ is reached only through the
 * context's ops.
 *
 * Lifecycle, all from the main loop with the vCPUs parked:
 *   realize -> [pause -> (reset) -> (save/load) -> resume]* -> destroy
 * pause quiesces: on return nothing is in flight and the device writes
 * neither guest memory nor its backing files until resume. Devices live in
 * an OBJECT library so the linker keeps their constructors. */
#ifndef EMBER_DEVICE_H
#define EMBER_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus;
struct evloop;
struct guest_mem;
struct irqchip;
struct pci_host;
struct vm_config;
struct json_t;
struct device_desc;

enum device_level {
	DEVICE_LEVEL_CORE = 0,	/* irqchip-adjacent, buses */
	DEVICE_LEVEL_LEGACY = 1,	/* UART, i8042, RTC, debug exit */
	DEVICE_LEVEL_PCI = 2,	/* host bridge */
	DEVICE_LEVEL_VIRTIO = 3,
	DEVICE_LEVEL_LATE = 4,
};

/* What a device may ask of the machine. */
enum device_machine_request {
	DEVICE_REQ_RESET,	/* guest-initiated reboot */
	DEVICE_REQ_POWEROFF,	/* ACPI S5 */
	DEVICE_REQ_EXIT,	/* isa-debug-exit: exit with `status` */
	DEVICE_REQ_PANIC,	/* guest crash report */
	DEVICE_REQ_QUIT,	/* host-side quit (console escape) */
	DEVICE_REQ_ERROR,	/* fatal host error */
};

/* The KVM service and machine hooks behind a context. Implemented by the
 * machine (vmm/vm.c) and by test harnesses; every op may be NULL in the
 * latter, and the device_* wrappers below then return -ENOSYS. */
struct device_machine_ops {
	/* KVM_IOEVENTFD: writes of `len` bytes (0: any) at addr signal fd. */
	int (*ioeventfd)(void *machine, uint64_t addr, unsigned len, bool pio, int fd,
			 bool assign);
	/* KVM_IRQFD: fd fires `gsi`; resample_fd >= 0 for level-triggered. */
	int (*irqfd)(void *machine, unsigned gsi, int fd, int resample_fd, bool assign);
	/* KVM coalesced MMIO/PIO zone. */
	int (*coalesced_zone)(void *machine, uint64_t addr, uint64_t len, bool pio, bool add);
	void (*request)(void *machine, enum device_machine_request req, int status,
			const char *cause);
	/* A QMP event (data is stolen; may be NULL). Thread-safe. */
	void (*emit_event)(void *machine, const char *name, struct json_t *data);
};

struct device_ctx {
	const struct vm_config *cfg;	/* machine-wide settings; read-only */
	struct guest_mem *mem;
	struct bus *pio_bus;
	struct bus *mmio_bus;
	struct evloop *loop;		/* the main loop */
	struct irqchip *irqchip;	/* GSI lines, MSI routes (irqchip/) */
	struct pci_host *pci;		/* set when the host bridge realizes */
	const struct device_machine_ops *ops;
	void *machine;			/* ops' opaque */
};

static inline int device_ioeventfd(const struct device_ctx *ctx, uint64_t addr, unsigned len,
				   bool pio, int fd, bool assign)
{
	return ctx->ops && ctx->ops->ioeventfd ?
		ctx->ops->ioeventfd(ctx->machine, addr, len, pio, fd, assign) : -38 /* ENOSYS */;
}

static inline int device_irqfd(const struct device_ctx *ctx, unsigned gsi, int fd,
			       int resample_fd, bool assign)
{
	return ctx->ops && ctx->ops->irqfd ?
		ctx->ops->irqfd(ctx->machine, gsi, fd, resample_fd, assign) : -38;
}

static inline int device_coalesced_zone(const struct device_ctx *ctx, uint64_t addr,
					uint64_t len, bool pio, bool add)
{
	return ctx->ops && ctx->ops->coalesced_zone ?
		ctx->ops->coalesced_zone(ctx->machine, addr, len, pio, add) : -38;
}

static inline void device_request(const struct device_ctx *ctx, enum device_machine_request req,
				  int status, const char *cause)
{
	if (ctx->ops && ctx->ops->request)
		ctx->ops->request(ctx->machine, req, status, cause);
}

void device_emit_event(const struct device_ctx *ctx, const char *name, struct json_t *data);

/* A QMP command served by a device. The control plane finds the first
 * realized device that offers `name` and calls fn with its state, on the
 * main loop. The state is NULL when realize left it so (disabled by
 * config): answer as for no instances (query-block: []). On success fn
 * sets *ret (a new reference; NULL means {}) and returns 0; on failure it
 * writes a one-line reason to err and returns -errno (a GenericError).
 * args is a JSON object, never NULL; fn checks it. */
struct device_qmp_command {
	const char *name;
	int (*fn)(void *state, struct json_t *args, struct json_t **ret, char *err,
		  size_t errlen);
};

struct device_desc {
	const char *name;
	enum device_level level;
	/* Create state and register on buses. Return 0 with *state set (may be
	 * NULL when the device is disabled by config), or negative errno. */
	int (*realize)(const struct device_desc *desc, struct device_ctx *ctx, void **state);
	void (*reset)(void *state);	/* optional: back to power-on state */
	/* Optional: quiesce for a VM pause or reset (see above). Pauses do not
	 * nest across the machine: one pause, one resume. */
	void (*pause)(void *state);
	void (*resume)(void *state);
	/* Optional, paused only: the device's registers and queue indices as a
	 * JSON object, and their restoration (every field validated; -EINVAL
	 * with a reason in err for anything out of range). */
	struct json_t *(*save)(void *state);
	int (*load)(void *state, struct json_t *saved, char *err, size_t errlen);
	/* Optional: the host pressed the power button (QMP system_powerdown). */
	void (*power_button)(void *state);
	/* Optional: QMP commands, ended by an entry with name NULL. */
	const struct device_qmp_command *qmp;
	void (*destroy)(void *state);	/* optional: free everything */
	const void *priv;		/* the registrant's (virtio: its virtio_device_desc) */
	struct device_desc *next;
};

void device_register(struct device_desc *desc);
struct device_desc *device_list(void);
const struct device_desc *device_find(const char *name);

#define DEVICE_REGISTER(desc)                                             \
	static void __attribute__((constructor)) device_ctor_##desc(void) \
	{                                                                 \
		device_register(&desc);                                   \
	}

#endif
