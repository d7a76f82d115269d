/* Shared by the sources in devices/pci only. */
#ifndef EMBER_PCI_INTERNAL_H
#define EMBER_PCI_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/pci/pci.h"

struct pci_msix_msg {
	uint64_t addr;
	uint32_t data;
	bool valid;
};

/* vec->state: VEC_ARMED while the vector is direct (unmasked, its route
 * committed, an eventfd bound), plus VEC_INFLIGHT per lock-free delivery
 * under way. */
#define PCI_MSIX_VEC_ARMED	1
#define PCI_MSIX_VEC_INFLIGHT	2

struct pci_msix_vec {
	int state;			/* atomic, see above */
	int efd;			/* the vector's eventfd, -1: none */
	bool direct;			/* as last told to the mask notifier */
	bool stale;			/* routed in this sync, not yet committed */
	struct pci_msix_msg routed;	/* message last handed to msi_route */
};

struct pci_msix {
	pthread_mutex_t lock;		/* table, PBA, control state, routing */
	struct pci_device *dev;
	unsigned nvec;
	unsigned cap;			/* capability offset in config space */
	unsigned table_bar, pba_bar;
	uint32_t table_off, pba_off;
	uint8_t *table;			/* nvec * 16 bytes, little-endian */
	uint64_t *pba;			/* (nvec + 63) / 64 words */
	int enabled;			/* atomic: read lock-free by notify paths */
	bool fmask;
	struct pci_msix_vec *vecs;	/* [nvec] */
	pci_msix_mask_fn mask_fn;
	void *mask_opaque;
};

int pci_msix_create(struct pci_device *d, unsigned nvec, unsigned table_bar, uint32_t table_off,
		    unsigned pba_bar, uint32_t pba_off);
void pci_msix_destroy(struct pci_msix *m);
void pci_msix_reset(struct pci_msix *m);
/* Message control in config space changed (the host holds cfg_lock). */
void pci_msix_control_written(struct pci_msix *m);
/* Table/PBA accesses: true when [off, off+len) of `bar` touches them. */
bool pci_msix_bar_read(struct pci_msix *m, unsigned bar, uint64_t off, void *data, unsigned len);
bool pci_msix_bar_write(struct pci_msix *m, unsigned bar, uint64_t off, const void *data,
			unsigned len);

/* Snapshots: table and PBA as hex; load validates, then replaces them and
 * forgets every route (pci_msix_control_written after it syncs them). */
struct json_t;
struct json_t *pci_msix_save(struct pci_msix *m);
int pci_msix_load(struct pci_msix *m, struct json_t *saved, char *err, size_t errlen);
/* Lower-case hex of n bytes into out (2n + 1 chars); decode wants exactly
 * 2n hex digits. */
void pci_hex_encode(const uint8_t *p, size_t n, char *out);
int pci_hex_decode(const char *s, uint8_t *out, size_t n);

/* Recompute the INTx line after a level, INTX_DISABLE or MSI-X change. */
void pci_intx_update(struct pci_device *d);

#endif
