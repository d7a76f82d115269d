/* The virtio device registry. A virtio device is its own file(s) plus one
 * VIRTIO_DEVICE_REGISTER(desc) line: the descriptor names its device ID,
 * PCI class, options table, how to create an instance from parsed options,
 * and its I/O model. One generic realize, reset, pause, resume, save, load
 * and destroy (devices/virtio/registry.c) serves every registered device:
 * for each --FLAG / JSON instance it parses the options, calls create(),
 * puts the device on a transport (virtio-pci today) and, for main-loop
 * devices, watches the queues' kick eventfds on the main loop.
 *
 * Device code never sees the transport: it works on its struct
 * virtio_device (devices/virtio/virtio.h) and the device context. */
#ifndef EMBER_VIRTIO_REGISTRY_H
#define EMBER_VIRTIO_REGISTRY_H

#include <stdint.h>

#include "devices/device.h"
#include "devices/options.h"
#include "devices/virtio/virtio.h"

struct json_t;

enum virtio_io_model {
	/* The main loop watches every queue's kick eventfd and calls kick(). */
	VIRTIO_IO_MAIN_LOOP,
	/* The device serves its queues itself (a struct dev_worker, vhost). */
	VIRTIO_IO_OWN,
};

struct virtio_device_desc {
	const char *name;		/* "virtio-rng"; also the device_desc name */
	uint32_t device_id;		/* VIRTIO_ID_* */
	uint32_t pci_class;		/* class << 16 | subclass << 8 | prog-if */
	struct dev_option_table *options;
	enum virtio_io_model io;
	/* Create one instance from its parsed options (options->size bytes,
	 * owned by the registry and alive until destroy). The device calls
	 * virtio_dev_init() on its embedded struct virtio_device. */
	int (*create)(struct device_ctx *ctx, const void *opts, struct virtio_device **out);
	/* Optional: after the transport is attached (start threads), and
	 * before it goes (stop them; no interrupt may follow). */
	int (*start)(struct virtio_device *dev);
	void (*stop)(struct virtio_device *dev);
	void (*destroy)(struct virtio_device *dev);
	/* VIRTIO_IO_MAIN_LOOP: queue q was kicked (the eventfd is already read). */
	void (*kick)(struct virtio_device *dev, unsigned q);
	/* Optional: see struct device_desc. The virtio status, features and
	 * queue registers are saved by the registry; these carry the rest. */
	void (*pause)(struct virtio_device *dev);
	void (*resume)(struct virtio_device *dev);
	struct json_t *(*save)(struct virtio_device *dev);
	int (*load)(struct virtio_device *dev, struct json_t *saved, char *err, size_t errlen);
	/* Optional QMP commands; fn's state is the struct virtio_set. */
	const struct device_qmp_command *qmp;
	struct device_desc dev_desc;	/* filled in by VIRTIO_DEVICE_REGISTER */
};

/* Every realized instance of one device type, in command-line order: the
 * state a virtio device's QMP commands receive. */
struct virtio_set;
unsigned virtio_set_count(const struct virtio_set *s);
struct virtio_device *virtio_set_device(const struct virtio_set *s, unsigned i);
const void *virtio_set_options(const struct virtio_set *s, unsigned i);

/* For create(): why this instance cannot be made, logged as one line that
 * names its flag and options ("--disk path=a.img: cannot open a.img: ...").
 * Outside create() the message is logged as it is. */
void virtio_create_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void virtio_device_register(struct virtio_device_desc *desc);
const struct virtio_device_desc *virtio_device_find(const char *name);

#define VIRTIO_DEVICE_REGISTER(desc)                                              \
	static void __attribute__((constructor)) virtio_dev_ctor_##desc(void)   \
	{                                                                       \
		virtio_device_register(&desc);                                  \
	}

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#endif

#endif
