/*
 * Minimal PCI 3.0 support for test guests: configuration mechanism #1
 * (0xcf8/0xcfc), bus 0 only, capability lists, BAR mapping (assigning
 * unassigned memory BARs from a window below 4 GiB) and MSI-X.
 *
 * Cost model (KVM instruction emulator): every config access is two port
 * exits (~28 us), so the scan reads one dword per slot and everything else
 * is read on demand and cached in struct pci_dev.
 */
#ifndef EMBER_GUEST_PCI_H
#define EMBER_GUEST_PCI_H

#include "rt/rt.h"

#define PCI_MAX_DEVS 16 /* functions cached (bus 0); more are ignored with a warning */

/* Config space registers. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_CLASS_REV 0x08
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_ID 0x2e
#define PCI_CAP_PTR 0x34

#define PCI_CMD_IO 0x1u
#define PCI_CMD_MEM 0x2u
#define PCI_CMD_MASTER 0x4u
#define PCI_CMD_INTX_DISABLE 0x400u
#define PCI_STATUS_CAP_LIST 0x10u

#define PCI_CAP_ID_MSI 0x05
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11

/* MSI-X capability and table. */
#define PCI_MSIX_CTRL 2
#define PCI_MSIX_CTRL_ENABLE 0x8000u
#define PCI_MSIX_CTRL_MASKALL 0x4000u
#define PCI_MSIX_CTRL_SIZE 0x07ffu
#define PCI_MSIX_TABLE 4
#define PCI_MSIX_PBA 8
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_ENTRY_ADDR_LO 0
#define PCI_MSIX_ENTRY_ADDR_HI 4
#define PCI_MSIX_ENTRY_DATA 8
#define PCI_MSIX_ENTRY_CTRL 12
#define PCI_MSIX_ENTRY_MASKED 1u

/* Default window for BARs the guest assigns itself (no firmware). Ranges in
 * the PVH memmap (any type), the ECAM areas of the ACPI MCFG, the test
 * device (0xd0000000) and 0xfec00000-4 GiB are skipped. */
#define PCI_MMIO_WINDOW_BASE 0xc0000000ull
#define PCI_MMIO_WINDOW_END 0xfec00000ull

struct pci_dev {
	uint8_t bus, slot, func;
	uint8_t header_type;      /* bit 7 = multifunction */
	uint16_t vendor, device;
	uint32_t bar_addr[6];     /* 0 = not read yet / unusable */
	uint32_t bar_size[6];     /* only known for BARs this driver assigned */
	uint8_t bar_flags[6];     /* PCI_BARF_* */
	uint16_t command;         /* last value written by pci_enable */
	/* MSI-X, after pci_msix_init */
	uint8_t msix_cap;
	uint16_t msix_entries;
	uint64_t msix_table, msix_pba;
};
#define PCI_BARF_READ 1u
#define PCI_BARF_IO 2u
#define PCI_BARF_64 4u
#define PCI_BARF_ASSIGNED 8u /* assigned by this driver */

/* Raw config access for bus/slot/func (sized port accesses at 0xcfc+n). */
uint32_t pci_cfg_read32(const struct pci_dev *d, uint8_t off);
uint16_t pci_cfg_read16(const struct pci_dev *d, uint8_t off);
uint8_t pci_cfg_read8(const struct pci_dev *d, uint8_t off);
void pci_cfg_write32(const struct pci_dev *d, uint8_t off, uint32_t v);
void pci_cfg_write16(const struct pci_dev *d, uint8_t off, uint16_t v);
void pci_cfg_write8(const struct pci_dev *d, uint8_t off, uint8_t v);

/* Enumerates bus 0 (32 slots; functions 1-7 only of multifunction devices)
 * once and caches the result. Returns the number of functions found. */
unsigned pci_scan(void);
/* The k-th function (k < pci_scan()), or NULL. */
struct pci_dev *pci_dev_at(unsigned k);
/* The n-th (from 0) function with this vendor/device ID, or NULL. */
struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned n);

/* Offset of the first capability with this ID at or after list position
 * `after` (0 = from the start; pass a previous result to continue), or 0. */
uint8_t pci_find_cap(const struct pci_dev *d, uint8_t id, uint8_t after);

/* Guest-physical address of memory BAR `bar` (the low BAR of a 64-bit pair),
 * assigning it from the window if it reads 0 or lies above 4 GiB (the
 * runtime only maps the first 4 GiB). Returns 0 for an I/O BAR, an absent
 * BAR or when the window is exhausted. cmdline pci_reassign=1 assigns every
 * BAR mapped (testing the allocator under firmware that placed them);
 * pci_reassign=BASE also starts the allocation at BASE. */
uint64_t pci_bar_map(struct pci_dev *d, unsigned bar);

/* Sets memory decoding and bus mastering (and INTx disable) in COMMAND. */
void pci_enable(struct pci_dev *d);

/* MSI-X: finds the capability and maps the table and PBA BARs. Returns the
 * table size (entries), or 0 if the device has no usable MSI-X. */
unsigned pci_msix_init(struct pci_dev *d);
/* Programs entry `entry` to send `vector` to LAPIC apic_id; masked or not. */
void pci_msix_set(struct pci_dev *d, unsigned entry, uint32_t apic_id, uint8_t vector, bool masked);
void pci_msix_mask(struct pci_dev *d, unsigned entry, bool masked);
/* Message control: MSI-X enable and function mask bits. */
void pci_msix_enable(struct pci_dev *d, bool enable, bool function_mask);
/* Pending bit of `entry` in the PBA. */
bool pci_msix_pending(const struct pci_dev *d, unsigned entry);

#endif
