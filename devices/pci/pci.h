/* PCI: a host bridge on segment 0, bus 0, and the configuration-space model
 * of the functions behind it (devices/pci/README.md has the guest's view).
 *
 * The model is pure: config space, BARs, capabilities and MSI-X are driven
 * through pci_host_* calls and report interrupts through struct
 * pci_irq_ops, so unit tests and fuzzers run it without /dev/kvm.
 * devices/pci/host.c wires one instance into a VM through its device
 * context (ports 0xCF8-0xCFF, ECAM, irqfds and GSI routes, the ACPI tables).
 *
 * Config space: every byte has a write mask and a write-1-to-clear mask;
 * a write lands as (old & ~wmask) | (new & wmask), then clears new & w1cmask.
 * So read-only bits never change, BAR sizing works by masks alone (all ones
 * reads back ~(size-1) | type bits), and status error bits are W1C.
 *
 * BARs are memory BARs (32- or 64-bit). Each is placed at registration in
 * the 32-bit window (64-bit BARs too, so guests that only map the low 4 GiB
 * reach them; the 64-bit window takes what does not fit). A BAR decodes
 * while Memory Space Enable is set, its address is non-zero and it lies
 * wholly inside one of the host's windows; it is then a range of its own on
 * the VM's MMIO bus (flat dispatch: the bus calls the BAR's handler
 * directly), unregistered and registered again when the guest moves it.
 * Config writes that move BARs arrive through bus handlers themselves (CFC
 * on the PIO bus, ECAM on the MMIO bus); the bus calls handlers without its
 * lock held (base/bus.h), so they may (un)register ranges.
 *
 * Locking: host->cfg_lock serialises config accesses (CF8 latch, cfg[],
 * slot table, BAR mapping). BAR handlers run without any PCI lock and must
 * not take cfg_lock. Order: cfg_lock -> MMIO bus (write lock, BAR moves) ->
 * device locks -> MSI-X lock -> irq routing lock. Firing an unmasked MSI-X
 * vector takes no lock at all (see pci_msix_notify). */
#ifndef EMBER_PCI_H
#define EMBER_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/bus.h"

struct pci_device;
struct pci_host;
struct pci_msix;
struct device_ctx;

#define PCI_CFG_SPACE_SIZE	256
#define PCI_CFG_SPACE_EXP_SIZE	4096	/* per function through ECAM */
#define PCI_NR_BARS		6
#define PCI_NR_SLOTS		32
#define PCI_NR_FUNCS		8

/* Type 0 header. */
#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_REVISION_ID		0x08
#define PCI_CLASS_PROG		0x09
#define PCI_CLASS_DEVICE	0x0a
#define PCI_CACHE_LINE_SIZE	0x0c
#define PCI_LATENCY_TIMER	0x0d
#define PCI_HEADER_TYPE		0x0e
#define PCI_BIST		0x0f
#define PCI_BASE_ADDRESS_0	0x10
#define PCI_BASE_ADDRESS_END	0x28
#define PCI_SUBSYSTEM_VENDOR_ID	0x2c
#define PCI_SUBSYSTEM_ID	0x2e
#define PCI_ROM_ADDRESS		0x30
#define PCI_CAPABILITY_LIST	0x34
#define PCI_INTERRUPT_LINE	0x3c
#define PCI_INTERRUPT_PIN	0x3d
#define PCI_CAP_START		0x40

#define PCI_COMMAND_IO		0x0001
#define PCI_COMMAND_MEMORY	0x0002
#define PCI_COMMAND_MASTER	0x0004
#define PCI_COMMAND_PARITY	0x0040
#define PCI_COMMAND_SERR	0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT	0x0008
#define PCI_STATUS_CAP_LIST	0x0010
#define PCI_STATUS_W1C		0xf900	/* parity, SERR, aborts, master data parity */

#define PCI_BAR_IO		0x01
#define PCI_BAR_MEM_TYPE_64	0x04
#define PCI_BAR_MEM_PREFETCH	0x08
#define PCI_BAR_MEM_MASK	(~0x0fULL)

#define PCI_CAP_ID_MSIX		0x11
#define PCI_CAP_ID_VNDR		0x09

/* MSI-X capability and table. */
#define PCI_MSIX_FLAGS		2	/* message control, u16 */
#define PCI_MSIX_FLAGS_QSIZE	0x07ff
#define PCI_MSIX_FLAGS_MASKALL	0x4000
#define PCI_MSIX_FLAGS_ENABLE	0x8000
#define PCI_MSIX_TABLE		4	/* offset | BIR */
#define PCI_MSIX_PBA		8
#define PCI_MSIX_CAP_SIZE	12
#define PCI_MSIX_ENTRY_SIZE	16
#define PCI_MSIX_ENTRY_ADDR_LO	0
#define PCI_MSIX_ENTRY_ADDR_HI	4
#define PCI_MSIX_ENTRY_DATA	8
#define PCI_MSIX_ENTRY_CTRL	12
#define PCI_MSIX_ENTRY_MASKBIT	1
#define PCI_MSIX_MAX_VECTORS	2048

#define PCI_INTX_PIN_A		1

/* ---- Devices ---- */

/* Flags for pci_device_add_bar. */
#define PCI_BARF_64		1u
#define PCI_BARF_PREFETCH	2u

struct pci_bar {
	uint64_t size;		/* power of 2, >= 16; 0: not implemented */
	unsigned flags;		/* PCI_BARF_* */
	uint64_t default_addr;	/* placed at registration, restored on reset */
	bool mapped;
	uint64_t mapped_addr;
	struct pci_device *dev;
	unsigned idx;
};

struct pci_device_ops {
	/* Optional config hooks, called with the host's config lock held.
	 * config_read may replace bytes of *val (little-endian, len bytes at
	 * off); config_write runs after the masked write landed in cfg[]. */
	void (*config_read)(struct pci_device *d, unsigned off, unsigned len, uint32_t *val);
	void (*config_write)(struct pci_device *d, unsigned off, unsigned len, uint32_t val);
	/* BAR accesses outside the MSI-X table and PBA; off is within the BAR,
	 * [off, off+len) lies inside it, len is 1..8. Called straight from the
	 * VM's MMIO bus, without cfg_lock. */
	void (*bar_read)(struct pci_device *d, unsigned bar, uint64_t off, void *data, unsigned len);
	void (*bar_write)(struct pci_device *d, unsigned bar, uint64_t off, const void *data,
			  unsigned len);
	/* A BAR started (mapped) or stopped decoding at addr. Config lock held. */
	void (*bar_map)(struct pci_device *d, unsigned bar, uint64_t addr, bool mapped);
};

struct pci_device {
	const char *name;
	const struct pci_device_ops *ops;
	void *opaque;			/* the owner's */
	struct pci_host *host;		/* set by pci_register_device */
	unsigned slot;			/* device number on bus 0 */

	uint8_t cfg[PCI_CFG_SPACE_SIZE];
	uint8_t wmask[PCI_CFG_SPACE_SIZE];
	uint8_t w1cmask[PCI_CFG_SPACE_SIZE];
	uint8_t cfg_reset[PCI_CFG_SPACE_SIZE];	/* power-on image */
	struct pci_bar bars[PCI_NR_BARS];
	unsigned cap_next;		/* first free config byte for capabilities */
	unsigned cap_last;		/* offset of the last capability, 0: none */

	struct pci_msix *msix;		/* NULL: no MSI-X */
	unsigned intx_pin;		/* 0: none, 1..4: INTA..INTD */
	unsigned gsi;			/* INTx GSI, set at registration */
	int intx_level;			/* requested level (atomic) */
	int intx_disabled;		/* command.INTX_DISABLE mirror (atomic) */
	int intx_out;			/* effective level last driven */
	pthread_mutex_t intx_lock;	/* orders line updates */
	void *irq_priv;			/* the host's interrupt plumbing */
};

/* Set IDs and the header; no BARs, no capabilities, INTx pin none. */
void pci_device_init(struct pci_device *d, const char *name, const struct pci_device_ops *ops,
		     void *opaque, uint16_t vendor, uint16_t device, uint32_t class_code,
		     uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Memory BAR `bar` of `size` bytes (power of 2, >= 16). A 64-bit BAR takes
 * bar and bar+1. Returns 0, or -EINVAL / -EBUSY. */
int pci_device_add_bar(struct pci_device *d, unsigned bar, uint64_t size, unsigned flags)
	__attribute__((warn_unused_result));
/* Link a capability of `len` bytes (>= 2) into the list; its ID and next
 * pointer are read-only, the rest read-only until the caller sets wmask.
 * Returns the offset, or -ENOSPC. */
int pci_device_add_cap(struct pci_device *d, uint8_t id, unsigned len)
	__attribute__((warn_unused_result));
/* Use INTx pin 1..4 (the GSI comes from the slot at registration). */
void pci_device_set_intx_pin(struct pci_device *d, unsigned pin);
/* MSI-X with nvec vectors; table at table_off in BAR table_bar, PBA at
 * pba_off in BAR pba_bar (the BARs must exist and hold them). Returns the
 * capability offset or -errno. Freed by pci_device_release. */
int pci_device_add_msix(struct pci_device *d, unsigned nvec, unsigned table_bar,
			uint32_t table_off, unsigned pba_bar, uint32_t pba_off)
	__attribute__((warn_unused_result));
/* Free what pci_device_init / add_* allocated (call after unregistering). */
void pci_device_release(struct pci_device *d);

/* Raw little-endian accessors for building config space (no masks). */
void pci_cfg_set8(struct pci_device *d, unsigned off, uint8_t v);
void pci_cfg_set16(struct pci_device *d, unsigned off, uint16_t v);
void pci_cfg_set32(struct pci_device *d, unsigned off, uint32_t v);
uint32_t pci_cfg_get(const struct pci_device *d, unsigned off, unsigned len);
/* Write masks for [off, off+len): each byte's mask from `mask`'s bytes. */
void pci_cfg_set_wmask(struct pci_device *d, unsigned off, unsigned len, uint32_t mask);

/* Config access as the guest makes it (off < 4096, len 1/2/4, aligned;
 * anything else reads as all ones / is dropped). Takes no lock: the host
 * calls these under cfg_lock. */
uint32_t pci_device_config_read(struct pci_device *d, unsigned off, unsigned len);
void pci_device_config_write(struct pci_device *d, unsigned off, unsigned len, uint32_t val);

/* A BAR access by index, whether or not the BAR decodes (the MSI-X table
 * and PBA first, then the device's handlers). Out-of-range reads give all
 * ones. For config-space windows into BARs (decoding BARs are reached
 * through the MMIO bus). */
void pci_device_bar_read(struct pci_device *d, unsigned bar, uint64_t off, void *data, unsigned len);
void pci_device_bar_write(struct pci_device *d, unsigned bar, uint64_t off, const void *data,
			  unsigned len);

/* Back to power-on: config image, BARs at their default places (not
 * decoding), MSI-X disabled with all vectors masked, INTx low. */
void pci_device_reset(struct pci_device *d);

/* INTx: the device's interrupt request. The line follows it unless INTx is
 * disabled in COMMAND or MSI-X is enabled. Thread-safe. */
void pci_set_irq(struct pci_device *d, bool level);
bool pci_intx_effective(const struct pci_device *d);

/* MSI-X, thread-safe. notify: deliver vector vec now, or set its pending
 * bit while it (or the function) is masked. Returns 0, -ENODEV when MSI-X
 * is disabled (use INTx), -EINVAL for a bad vector.
 *
 * An unmasked vector with an eventfd (its irqfd, bound by the host) is
 * "direct": its MSI route was committed when it was unmasked (and again
 * whenever its message changed), and notify is one atomic check and one
 * eventfd_write, no lock. Masking waits for such deliveries in flight, so
 * none lands after the guest's mask write completes. Everything else
 * (masked, MSI-X off, no eventfd) takes the MSI-X lock. */
bool pci_msix_enabled(const struct pci_device *d);
unsigned pci_msix_nr_vectors(const struct pci_device *d);
int pci_msix_notify(struct pci_device *d, unsigned vec);
bool pci_msix_pending(struct pci_device *d, unsigned vec);

/* The eventfd whose signal delivers vector vec (its irqfd), or -1 (no KVM
 * behind the host, or no GSI left). Stable while d is registered. A vhost
 * backend may give it to the kernel as a queue's call fd, but only while
 * the vector is direct: see the mask notifier. */
int pci_msix_vector_eventfd(struct pci_device *d, unsigned vec);

/* Called with the MSI-X lock held (it must not call pci_msix_*) whenever a
 * vector stops being direct (masked = true: entry mask, function mask,
 * MSI-X disabled, or its route could not be committed) or becomes direct
 * (masked = false: signalling pci_msix_vector_eventfd() now delivers it).
 * A vhost user switches the queue's call fd to an eventfd of its own while
 * masked, and calls pci_msix_notify() when that fires (which sets the
 * pending bit, delivered on unmask); back to the vector's eventfd when not
 * masked. Setting a notifier calls it at once for every vector with its
 * current state; fn NULL removes it. */
typedef void (*pci_msix_mask_fn)(void *opaque, struct pci_device *d, unsigned vec, bool masked);
void pci_msix_set_mask_notifier(struct pci_device *d, pci_msix_mask_fn fn, void *opaque);

/* Snapshots (JSON; the VM paused, the host's cfg_lock held): a function's
 * config space and MSI-X table and PBA. Load checks everything before it
 * changes anything: every read-only config bit must match this function's
 * (the same device, the same layout), the MSI-X sizes and reserved bits;
 * then it takes the saved config, maps the BARs where it says, and brings
 * the MSI-X vectors in line (routes committed, pending ones delivered).
 * -EINVAL with a reason in err. */
struct json_t;
struct json_t *pci_device_save(struct pci_device *d);
int pci_device_load(struct pci_device *d, struct json_t *saved, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* The host: the CF8 latch, the bridge and every registered function by
 * slot (a slot saved but empty here, or the reverse, is refused). Takes
 * cfg_lock itself. */
struct json_t *pci_host_save(struct pci_host *h);
int pci_host_load(struct pci_host *h, struct json_t *saved, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* ---- The host bridge ---- */

/* How interrupts leave the PCI model (the VM's irqchip, or a test sink).
 * All optional. msi_* are called with the device's MSI-X lock held. */
struct pci_irq_ops {
	/* At registration (cfg_lock held): set up d's lines and vectors, and
	 * bind each vector's eventfd (pci_msix_bind_eventfd below). */
	int (*attach)(struct pci_host *h, struct pci_device *d);
	void (*detach)(struct pci_host *h, struct pci_device *d);
	/* Vector vec, unmasked, has a message other than the one last routed:
	 * route it to the vector's eventfd (effective after msi_commit). */
	void (*msi_route)(struct pci_host *h, struct pci_device *d, unsigned vec,
			  uint64_t addr, uint32_t data);
	/* Make the routes set so far effective (one commit per batch of
	 * msi_route calls). 0, or -errno: the vectors just routed then go
	 * through msi_fire until they are routed again. */
	int (*msi_commit)(struct pci_host *h, struct pci_device *d);
	/* Send vector vec (enabled, unmasked, not direct) with this message. */
	void (*msi_fire)(struct pci_host *h, struct pci_device *d, unsigned vec,
			 uint64_t addr, uint32_t data);
	/* The effective INTx level of d's pin changed. */
	void (*intx_set)(struct pci_host *h, struct pci_device *d, bool level);
};

/* For attach/detach: vector vec is delivered by signalling efd (-1:
 * unbind; returns once no delivery through the old one is in flight). The
 * caller keeps efd open until it is unbound. Returns 0 or -EINVAL. */
int pci_msix_bind_eventfd(struct pci_device *d, unsigned vec, int efd);

struct pci_host_params {
	uint64_t ecam_base;		/* 0: no ECAM */
	uint64_t mmio32_base, mmio32_size;
	uint64_t mmio64_base, mmio64_size;	/* size 0: no 64-bit window */
	const struct pci_irq_ops *irq;
	void *irq_opaque;
	/* The machine: BARs decode on ctx->mmio_bus, 0xCF9 asks
	 * device_request(DEVICE_REQ_RESET), and devices reach the KVM service
	 * (ioeventfds) through host->ctx. NULL (unit tests, fuzzers): BARs
	 * decode on a bus of the host's own, reached with pci_host_mmio_*. */
	struct device_ctx *ctx;
};

struct pci_host {
	pthread_mutex_t cfg_lock;
	uint32_t config_address;	/* 0xCF8 latch */
	uint8_t rst_ctrl;		/* 0xCF9 */
	struct pci_device *devs[PCI_NR_SLOTS];
	struct pci_device bridge;	/* 00:00.0 */

	uint64_t ecam_base;
	uint64_t mmio32_base, mmio32_size;
	uint64_t mmio64_base, mmio64_size;
	uint64_t next32, next64;	/* BAR placement */

	const struct pci_irq_ops *irq;
	void *irq_opaque;
	struct device_ctx *ctx;		/* NULL: stand-alone */
	struct bus *mmio_bus;		/* where BARs decode: ctx's, or own_bus */
	struct bus own_bus;		/* stand-alone hosts only */
};

#define PCI_HOST_VENDOR		0x8086	/* an Intel host bridge ID, as other VMMs use */
#define PCI_HOST_DEVICE		0x0d57
#define PCI_CLASS_BRIDGE_HOST	0x060000

int pci_host_init(struct pci_host *h, const struct pci_host_params *p)
	__attribute__((warn_unused_result));
void pci_host_destroy(struct pci_host *h);
/* CF8 latch and the bridge function back to power-on (devices reset on
 * their own). */
void pci_host_reset(struct pci_host *h);

/* Put d on bus 0 in the lowest free slot >= 1, place its BARs, attach its
 * interrupts (GSI for INTx: see pci_slot_gsi). Returns the slot or -errno. */
int pci_register_device(struct pci_host *h, struct pci_device *d)
	__attribute__((warn_unused_result));
void pci_unregister_device(struct pci_device *d);
struct pci_device *pci_host_device(struct pci_host *h, unsigned slot);

/* Legacy INTx routing: slot s, pin p (1..4) -> GSI 16 + (s + p - 1) % 8. */
unsigned pci_slot_gsi(unsigned slot, unsigned pin);
#define PCI_INTX_GSI_BASE	16
#define PCI_INTX_NR_GSI		8

/* Configuration access by bus/device/function, under cfg_lock. */
uint32_t pci_host_config_read(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
			      unsigned off, unsigned len);
void pci_host_config_write(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
			   unsigned off, unsigned len, uint32_t val);

/* Bus handlers, by offset: ports 0xCF8-0xCFF (off 0-7) and the ECAM
 * window. pci_host_mmio_*: an access at a guest-physical address on the bus
 * BARs decode on (for tests and fuzzers; a VM's vCPUs use its MMIO bus). */
#define PCI_CONFIG_PORT		0xcf8
#define PCI_CONFIG_PORT_LEN	8
void pci_host_pio_read(struct pci_host *h, uint64_t off, void *data, unsigned len);
void pci_host_pio_write(struct pci_host *h, uint64_t off, const void *data, unsigned len);
void pci_host_ecam_read(struct pci_host *h, uint64_t off, void *data, unsigned len);
void pci_host_ecam_write(struct pci_host *h, uint64_t off, const void *data, unsigned len);
bool pci_host_mmio_read(struct pci_host *h, uint64_t addr, void *data, unsigned len);
bool pci_host_mmio_write(struct pci_host *h, uint64_t addr, const void *data, unsigned len);

/* ---- The machine's host bridge (devices/pci/host.c) ---- */

#define PCI_HOST_DEVICE_NAME	"pci-host"
#define PCI_ECAM_BASE		0xE0000000ULL
#define PCI_ECAM_SIZE		0x10000000ULL	/* buses 0-255, 1 MiB each */
#define PCI_MMIO32_BASE		0xC0000000ULL
#define PCI_MMIO32_SIZE		0x10000000ULL	/* up to the test device at 0xD0000000 */
#define PCI_MMIO64_SIZE		(64ULL << 30)	/* above RAM, 1 GiB aligned, >= 4 GiB */

#endif
