/* virtio-pci, modern only (virtio 1.2 section 4.1): a transport that drives
 * a struct virtio_device (devices/virtio/virtio.h) as a PCI function.
 *
 * IDs: vendor 0x1AF4, device 0x1040 + virtio device ID, revision 1,
 * subsystem 0x1AF4:(0x40 + device ID).
 * BAR 0 (64-bit memory, 16 KiB, placed below 4 GiB by default):
 *   0x0000 common configuration (0x38 bytes)
 *   0x1000 ISR status (1 byte; reading clears it and drops INTx)
 *   0x2000 device-specific configuration (if the device has any)
 *   0x3000 notifications: queue q at 0x3000 + 4 * q (notify_off_multiplier
 *          4, queue_notify_off = q); served by KVM ioeventfds while the BAR
 *          decodes, by the MMIO handler otherwise
 * BAR 2 (32-bit memory, 4 KiB): MSI-X table at 0, PBA at 0x800; one vector
 *   per queue plus one for configuration changes.
 * Capabilities (vendor-specific, found by walking the list): MSI-X, common,
 * notify, ISR, device (when present), and the PCI configuration access
 * window (VIRTIO_PCI_CAP_PCI_CFG).
 *
 * Interrupts: with MSI-X enabled, the vector in msix_config /
 * queue_msix_vector (NO_VECTOR: none); otherwise the ISR bit (1 queue,
 * 2 config) and INTA, level-triggered until the ISR is read. For a device
 * with a kernel backend (vhost: vdev->call_fd_changed set before create)
 * the transport sets vdev->call_fd, queue q's vector irqfd while that
 * vector is direct (unmasked, routed), and calls call_fd_changed on every
 * vector assignment, mask change and reset (the MSI-X mask notifier).
 *
 * Register rules: feature acks are masked to what was offered; status goes
 * through virtio_dev_set_status() (the status machine), 0 resets the device
 * and this transport's state; queue_size, queue_msix_vector, queue_enable
 * and the ring addresses are writable only between FEATURES_OK and
 * DRIVER_OK. queue_select is a plain selector and always writable, so
 * queue registers stay readable after DRIVER_OK. */
#ifndef EMBER_VIRTIO_PCI_H
#define EMBER_VIRTIO_PCI_H

#include <stdint.h>

#include "devices/pci/pci.h"
#include "devices/virtio/virtio.h"

#define VIRTIO_PCI_VENDOR		0x1af4
#define VIRTIO_PCI_DEVICE_BASE		0x1040
#define VIRTIO_PCI_REVISION		1
#define VIRTIO_PCI_SUBSYS_BASE		0x40

/* cfg_type of the vendor capabilities. */
#define VIRTIO_PCI_CAP_COMMON_CFG	1
#define VIRTIO_PCI_CAP_NOTIFY_CFG	2
#define VIRTIO_PCI_CAP_ISR_CFG		3
#define VIRTIO_PCI_CAP_DEVICE_CFG	4
#define VIRTIO_PCI_CAP_PCI_CFG		5
/* struct virtio_pci_cap: vndr, next, len, cfg_type, bar, id, pad[2],
 * offset (le32), length (le32); notify adds notify_off_multiplier (le32),
 * pci_cfg adds pci_cfg_data[4]. */
#define VIRTIO_PCI_CAP_BAR		4
#define VIRTIO_PCI_CAP_OFFSET		8
#define VIRTIO_PCI_CAP_LENGTH		12
#define VIRTIO_PCI_CAP_EXTRA		16
#define VIRTIO_PCI_CAP_LEN		16

/* Layout. */
#define VIRTIO_PCI_BAR			0
#define VIRTIO_PCI_BAR_SIZE		0x4000
#define VIRTIO_PCI_COMMON_OFF		0x0000
#define VIRTIO_PCI_COMMON_LEN		0x38
#define VIRTIO_PCI_ISR_OFF		0x1000
#define VIRTIO_PCI_ISR_LEN		4
#define VIRTIO_PCI_DEVICE_OFF		0x2000
#define VIRTIO_PCI_NOTIFY_OFF		0x3000
#define VIRTIO_PCI_NOTIFY_MULT		4
#define VIRTIO_PCI_REGION_SIZE		0x1000
#define VIRTIO_PCI_MSIX_BAR		2
#define VIRTIO_PCI_MSIX_BAR_SIZE	0x1000
#define VIRTIO_PCI_MSIX_TABLE_OFF	0x000
#define VIRTIO_PCI_MSIX_PBA_OFF		0x800
#define VIRTIO_MSI_NO_VECTOR		0xffff

#define VIRTIO_PCI_ISR_QUEUE		1
#define VIRTIO_PCI_ISR_CONFIG		2

/* Common configuration (struct virtio_pci_common_cfg). */
#define VIRTIO_PCI_COMMON_DFSELECT	0x00	/* le32 rw */
#define VIRTIO_PCI_COMMON_DF		0x04	/* le32 ro */
#define VIRTIO_PCI_COMMON_GFSELECT	0x08	/* le32 rw */
#define VIRTIO_PCI_COMMON_GF		0x0c	/* le32 rw */
#define VIRTIO_PCI_COMMON_MSIX		0x10	/* le16 rw */
#define VIRTIO_PCI_COMMON_NUMQ		0x12	/* le16 ro */
#define VIRTIO_PCI_COMMON_STATUS	0x14	/* u8 rw */
#define VIRTIO_PCI_COMMON_CFGGENERATION	0x15	/* u8 ro */
#define VIRTIO_PCI_COMMON_Q_SELECT	0x16	/* le16 rw */
#define VIRTIO_PCI_COMMON_Q_SIZE	0x18	/* le16 rw */
#define VIRTIO_PCI_COMMON_Q_MSIX	0x1a	/* le16 rw */
#define VIRTIO_PCI_COMMON_Q_ENABLE	0x1c	/* le16 rw */
#define VIRTIO_PCI_COMMON_Q_NOFF	0x1e	/* le16 ro */
#define VIRTIO_PCI_COMMON_Q_DESCLO	0x20	/* le64 rw, or two le32 */
#define VIRTIO_PCI_COMMON_Q_DESCHI	0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO	0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI	0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO	0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI	0x34

struct virtio_pci;
struct json_t;

/* Wrap vdev (already virtio_dev_init'ed) in a PCI function on host h with
 * class code pci_class (class << 16 | subclass << 8 | prog-if; 0: 0xff0000,
 * unassigned): sets vdev->notify_used / notify_config / transport and
 * registers the function (lowest free slot). Returns 0 or -errno. */
int virtio_pci_create(struct pci_host *h, struct virtio_device *vdev, uint32_t pci_class,
		      struct virtio_pci **out) __attribute__((warn_unused_result));
/* Unregisters and frees the transport (not vdev). The device must no
 * longer raise interrupts (stop its I/O thread first). */
void virtio_pci_destroy(struct virtio_pci *vp);
/* VM reset: the virtio device and this transport, then the PCI function. */
void virtio_pci_reset(struct virtio_pci *vp);
struct pci_device *virtio_pci_dev(struct virtio_pci *vp);

/* Snapshots of the transport's own registers (MSI-X vectors, selectors,
 * ISR), taken and restored with the device quiesced; the virtio device's
 * status, features and queues are the registry's. load validates every
 * field (-EINVAL with a reason in err) before changing anything. */
struct json_t *virtio_pci_save(struct virtio_pci *vp);
int virtio_pci_load(struct virtio_pci *vp, struct json_t *saved, char *err, size_t errlen);

#endif
