/* The PCI configuration-space model and the bus-0 host bridge: CF8/CFC and
 * ECAM decoding, BAR placement and decoding, capability lists, INTx. */
#include "devices/pci/pci.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "devices/pci/pci_internal.h"
#include "base/log.h"

#define CF8_ENABLE	0x80000000u
#define CF8_MASK	0x80fffffcu	/* reserved bits 30:24 and 1:0 read as 0 */
#define CF9_RST_CPU	0x04
#define CF9_MASK	0x0e
#define CMD_WMASK	(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | \
			 PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)

static struct ratelimit pci_rl = RATELIMIT_INIT(5000, 10);

/* ---- Raw config helpers ---- */

void pci_cfg_set8(struct pci_device *d, unsigned off, uint8_t v)
{
	if (off < PCI_CFG_SPACE_SIZE)
		d->cfg[off] = v;
}

void pci_cfg_set16(struct pci_device *d, unsigned off, uint16_t v)
{
	pci_cfg_set8(d, off, (uint8_t)v);
	pci_cfg_set8(d, off + 1, (uint8_t)(v >> 8));
}

void pci_cfg_set32(struct pci_device *d, unsigned off, uint32_t v)
{
	pci_cfg_set16(d, off, (uint16_t)v);
	pci_cfg_set16(d, off + 2, (uint16_t)(v >> 16));
}

uint32_t pci_cfg_get(const struct pci_device *d, unsigned off, unsigned len)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < len && i < 4; i++)
		if (off + i < PCI_CFG_SPACE_SIZE)
			v |= (uint32_t)d->cfg[off + i] << (8 * i);
	return v;
}

void pci_cfg_set_wmask(struct pci_device *d, unsigned off, unsigned len, uint32_t mask)
{
	for (unsigned i = 0; i < len && i < 4; i++)
		if (off + i < PCI_CFG_SPACE_SIZE)
			d->wmask[off + i] = (uint8_t)(mask >> (8 * i));
}

/* ---- Device construction ---- */

void pci_device_init(struct pci_device *d, const char *name, const struct pci_device_ops *ops,
		     void *opaque, uint16_t vendor, uint16_t device, uint32_t class_code,
		     uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	d->ops = ops;
	d->opaque = opaque;
	d->cap_next = PCI_CAP_START;
	pthread_mutex_init(&d->intx_lock, NULL);
	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		d->bars[i].dev = d;
		d->bars[i].idx = i;
	}
	pci_cfg_set16(d, PCI_VENDOR_ID, vendor);
	pci_cfg_set16(d, PCI_DEVICE_ID, device);
	pci_cfg_set8(d, PCI_REVISION_ID, revision);
	pci_cfg_set8(d, PCI_CLASS_PROG, (uint8_t)class_code);
	pci_cfg_set16(d, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	pci_cfg_set16(d, PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	pci_cfg_set16(d, PCI_SUBSYSTEM_ID, subsys_id);

	pci_cfg_set_wmask(d, PCI_COMMAND, 2, CMD_WMASK);
	d->w1cmask[PCI_STATUS] = (uint8_t)PCI_STATUS_W1C;
	d->w1cmask[PCI_STATUS + 1] = (uint8_t)(PCI_STATUS_W1C >> 8);
	d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	d->wmask[PCI_LATENCY_TIMER] = 0xff;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

int pci_device_add_bar(struct pci_device *d, unsigned bar, uint64_t size, unsigned flags)
{
	bool is64 = flags & PCI_BARF_64;
	uint32_t type = 0;
	uint64_t mask;

	if (bar >= PCI_NR_BARS || (is64 && bar + 1 >= PCI_NR_BARS) || size < 16 ||
	    (size & (size - 1)) || (!is64 && size > 0x80000000ULL))
		return -EINVAL;
	if (d->bars[bar].size || (bar > 0 && (d->bars[bar - 1].flags & PCI_BARF_64)) ||
	    (is64 && d->bars[bar + 1].size))
		return -EBUSY;
	if (is64)
		type |= PCI_BAR_MEM_TYPE_64;
	if (flags & PCI_BARF_PREFETCH)
		type |= PCI_BAR_MEM_PREFETCH;
	d->bars[bar].size = size;
	d->bars[bar].flags = flags;
	mask = ~(size - 1);
	pci_cfg_set32(d, PCI_BASE_ADDRESS_0 + 4 * bar, type);
	pci_cfg_set_wmask(d, PCI_BASE_ADDRESS_0 + 4 * bar, 4, (uint32_t)mask & ~0xfu);
	if (is64)
		pci_cfg_set_wmask(d, PCI_BASE_ADDRESS_0 + 4 * (bar + 1), 4, (uint32_t)(mask >> 32));
	return 0;
}

int pci_device_add_cap(struct pci_device *d, uint8_t id, unsigned len)
{
	unsigned off = (d->cap_next + 3) & ~3u;

	if (len < 2 || off < PCI_CAP_START || off + len > PCI_CFG_SPACE_SIZE)
		return -ENOSPC;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	if (d->cap_last)
		d->cfg[d->cap_last + 1] = (uint8_t)off;
	else
		d->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	d->cap_last = off;
	d->cap_next = off + len;
	return (int)off;
}

void pci_device_set_intx_pin(struct pci_device *d, unsigned pin)
{
	if (pin > 4)
		pin = 0;
	d->intx_pin = pin;
	pci_cfg_set8(d, PCI_INTERRUPT_PIN, (uint8_t)pin);
}

int pci_device_add_msix(struct pci_device *d, unsigned nvec, unsigned table_bar,
			uint32_t table_off, unsigned pba_bar, uint32_t pba_off)
{
	uint64_t tsize = (uint64_t)nvec * PCI_MSIX_ENTRY_SIZE, psize = (nvec + 63) / 64 * 8ULL;
	int cap, ret;

	if (d->msix || nvec == 0 || nvec > PCI_MSIX_MAX_VECTORS || table_bar >= PCI_NR_BARS ||
	    pba_bar >= PCI_NR_BARS || (table_off & 7) || (pba_off & 7) ||
	    table_off + tsize > d->bars[table_bar].size || pba_off + psize > d->bars[pba_bar].size)
		return -EINVAL;
	if (table_bar == pba_bar && table_off < pba_off + psize && pba_off < table_off + tsize)
		return -EINVAL;
	cap = pci_device_add_cap(d, PCI_CAP_ID_MSIX, PCI_MSIX_CAP_SIZE);
	if (cap < 0)
		return cap;
	ret = pci_msix_create(d, nvec, table_bar, table_off, pba_bar, pba_off);
	if (ret)
		return ret;
	d->msix->cap = (unsigned)cap;
	pci_cfg_set16(d, cap + PCI_MSIX_FLAGS, (uint16_t)(nvec - 1));
	pci_cfg_set32(d, cap + PCI_MSIX_TABLE, table_off | table_bar);
	pci_cfg_set32(d, cap + PCI_MSIX_PBA, pba_off | pba_bar);
	pci_cfg_set_wmask(d, cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	return cap;
}

void pci_device_release(struct pci_device *d)
{
	pci_msix_destroy(d->msix);
	d->msix = NULL;
	pthread_mutex_destroy(&d->intx_lock);
}

/* ---- INTx ---- */

bool pci_intx_effective(const struct pci_device *d)
{
	return d->intx_pin && __atomic_load_n(&d->intx_level, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&d->intx_disabled, __ATOMIC_ACQUIRE) && !pci_msix_enabled(d);
}

void pci_intx_update(struct pci_device *d)
{
	struct pci_host *h = d->host;
	bool eff;

	pthread_mutex_lock(&d->intx_lock);
	eff = pci_intx_effective(d);
	if (eff != (bool)d->intx_out) {
		d->intx_out = eff;
		if (h && h->irq && h->irq->intx_set)
			h->irq->intx_set(h, d, eff);
	}
	pthread_mutex_unlock(&d->intx_lock);
}

void pci_set_irq(struct pci_device *d, bool level)
{
	__atomic_store_n(&d->intx_level, level ? 1 : 0, __ATOMIC_RELEASE);
	pci_intx_update(d);
}

/* ---- BARs ---- */

static uint64_t bar_addr(const struct pci_device *d, unsigned i)
{
	uint64_t a = pci_cfg_get(d, PCI_BASE_ADDRESS_0 + 4 * i, 4) & PCI_BAR_MEM_MASK;

	if (d->bars[i].flags & PCI_BARF_64)
		a |= (uint64_t)pci_cfg_get(d, PCI_BASE_ADDRESS_0 + 4 * (i + 1), 4) << 32;
	return a;
}

static bool in_range(uint64_t base, uint64_t size, uint64_t a, uint64_t len)
{
	return size && len <= size && a >= base && a - base <= size - len;
}

/* Where BAR i should decode now; false when it should not. */
static bool bar_wanted(const struct pci_device *d, unsigned i, uint64_t *addr)
{
	const struct pci_host *h = d->host;
	uint64_t a, size = d->bars[i].size;

	if (!h || !size || !(pci_cfg_get(d, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY))
		return false;
	a = bar_addr(d, i);
	if (!a)
		return false;
	/* A root bridge forwards only its windows; anything else (e.g. the
	 * all-ones sizing pattern) decodes nowhere. */
	if (!in_range(h->mmio32_base, h->mmio32_size, a, size) &&
	    !in_range(h->mmio64_base, h->mmio64_size, a, size))
		return false;
	*addr = a;
	return true;
}

/* A decoding BAR's range on the MMIO bus: the bus calls these directly, so
 * a vCPU's access reaches the device's handler in one step (README.md has
 * the whole chain). The bus guarantees [off, off+len) lies in the BAR. */
static bool msix_bar(const struct pci_device *d, unsigned bar)
{
	return d->msix && (bar == d->msix->table_bar || bar == d->msix->pba_bar);
}

static void bar_mmio_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct pci_bar *b = opaque;
	struct pci_device *d = b->dev;

	if (msix_bar(d, b->idx) && pci_msix_bar_read(d->msix, b->idx, off, data, len))
		return;
	if (len - 1 < 8 && d->ops && d->ops->bar_read)
		d->ops->bar_read(d, b->idx, off, data, len);
	else
		memset(data, len - 1 < 8 ? 0 : 0xff, len);
}

static void bar_mmio_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct pci_bar *b = opaque;
	struct pci_device *d = b->dev;

	if (msix_bar(d, b->idx) && pci_msix_bar_write(d->msix, b->idx, off, data, len))
		return;
	if (len - 1 < 8 && d->ops && d->ops->bar_write)
		d->ops->bar_write(d, b->idx, off, data, len);
}

static const struct bus_dev_ops bar_mmio_ops = {
	.read = bar_mmio_read,
	.write = bar_mmio_write,
};

static void bar_unmap(struct pci_device *d, unsigned i)
{
	struct pci_bar *b = &d->bars[i];

	if (!b->mapped)
		return;
	if (bus_unregister(d->host->mmio_bus, b->mapped_addr))
		log_warn("pci %s: BAR%u was not on the MMIO bus", d->name, i);
	b->mapped = false;
	if (d->ops && d->ops->bar_map)
		d->ops->bar_map(d, i, b->mapped_addr, false);
}

static void bar_try_map(struct pci_device *d, unsigned i)
{
	struct pci_bar *b = &d->bars[i];
	uint64_t a;
	int ret;

	if (b->mapped || !bar_wanted(d, i, &a))
		return;
	ret = bus_register(d->host->mmio_bus, a, b->size, &bar_mmio_ops, b, d->name);
	if (ret) {
		if (ratelimit_allow(&pci_rl))
			log_debug("pci %s: BAR%u at 0x%llx: %s (left disabled)", d->name, i,
				  (unsigned long long)a, ret == -EEXIST ? "overlaps another range" :
				  strerror(-ret));
		return;
	}
	b->mapped = true;
	b->mapped_addr = a;
	if (d->ops && d->ops->bar_map)
		d->ops->bar_map(d, i, a, true);
}

/* cfg_lock held. Unmap d's BARs that moved or stopped decoding, then map
 * whatever wants mapping on the whole bus (a BAR that overlapped one that
 * just moved away gets its turn). */
static void host_update_bars(struct pci_host *h, struct pci_device *d)
{
	uint64_t a;

	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		struct pci_bar *b = &d->bars[i];

		if (b->mapped && (!bar_wanted(d, i, &a) || a != b->mapped_addr))
			bar_unmap(d, i);
	}
	for (unsigned s = 0; s < PCI_NR_SLOTS; s++) {
		struct pci_device *o = h->devs[s];

		for (unsigned i = 0; o && i < PCI_NR_BARS; i++)
			bar_try_map(o, i);
	}
}

void pci_device_bar_read(struct pci_device *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
	if (bar >= PCI_NR_BARS || len == 0 || len > 8 || off > d->bars[bar].size ||
	    len > d->bars[bar].size - off) {
		memset(data, 0xff, len);
		return;
	}
	if (d->msix && pci_msix_bar_read(d->msix, bar, off, data, len))
		return;
	if (d->ops && d->ops->bar_read)
		d->ops->bar_read(d, bar, off, data, len);
	else
		memset(data, 0, len);
}

void pci_device_bar_write(struct pci_device *d, unsigned bar, uint64_t off, const void *data,
			  unsigned len)
{
	if (bar >= PCI_NR_BARS || len == 0 || len > 8 || off > d->bars[bar].size ||
	    len > d->bars[bar].size - off)
		return;
	if (d->msix && pci_msix_bar_write(d->msix, bar, off, data, len))
		return;
	if (d->ops && d->ops->bar_write)
		d->ops->bar_write(d, bar, off, data, len);
}

/* ---- Config access ---- */

static bool access_ok(unsigned off, unsigned len)
{
	return (len == 1 || len == 2 || len == 4) && off % len == 0 &&
	       off + len <= PCI_CFG_SPACE_EXP_SIZE;
}

static bool touches(unsigned off, unsigned len, unsigned start, unsigned end)
{
	return off < end && off + len > start;
}

uint32_t pci_device_config_read(struct pci_device *d, unsigned off, unsigned len)
{
	uint32_t v;

	if (!access_ok(off, len))
		return 0xffffffffu;
	if (off >= PCI_CFG_SPACE_SIZE)
		return 0;	/* no extended capabilities */
	v = pci_cfg_get(d, off, len);
	if (touches(off, len, PCI_STATUS, PCI_STATUS + 1) &&
	    __atomic_load_n(&d->intx_level, __ATOMIC_ACQUIRE))
		v |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - off));
	if (d->ops && d->ops->config_read)
		d->ops->config_read(d, off, len, &v);
	return v;
}

void pci_device_config_write(struct pci_device *d, unsigned off, unsigned len, uint32_t val)
{
	if (!access_ok(off, len) || off >= PCI_CFG_SPACE_SIZE)
		return;
	for (unsigned i = 0; i < len; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i));
		uint8_t nv = (uint8_t)((d->cfg[o] & ~d->wmask[o]) | (b & d->wmask[o]));

		d->cfg[o] = (uint8_t)(nv & ~(b & d->w1cmask[o]));
	}
	if (touches(off, len, PCI_COMMAND, PCI_COMMAND + 2)) {
		bool dis = pci_cfg_get(d, PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE;

		__atomic_store_n(&d->intx_disabled, dis ? 1 : 0, __ATOMIC_RELEASE);
		pci_intx_update(d);
	}
	if (d->host && (touches(off, len, PCI_COMMAND, PCI_COMMAND + 2) ||
			touches(off, len, PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_END)))
		host_update_bars(d->host, d);
	if (d->msix && touches(off, len, d->msix->cap + PCI_MSIX_FLAGS,
			       d->msix->cap + PCI_MSIX_FLAGS + 2))
		pci_msix_control_written(d->msix);
	if (d->ops && d->ops->config_write)
		d->ops->config_write(d, off, len, val);
}

static void device_reset_locked(struct pci_device *d)
{
	memcpy(d->cfg, d->cfg_reset, sizeof(d->cfg));
	__atomic_store_n(&d->intx_disabled, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&d->intx_level, 0, __ATOMIC_RELEASE);
	if (d->msix)
		pci_msix_reset(d->msix);
	pci_intx_update(d);
	if (d->host)
		host_update_bars(d->host, d);
}

void pci_device_reset(struct pci_device *d)
{
	struct pci_host *h = d->host;

	if (h)
		pthread_mutex_lock(&h->cfg_lock);
	device_reset_locked(d);
	if (h)
		pthread_mutex_unlock(&h->cfg_lock);
}

/* ---- The host bridge ---- */

unsigned pci_slot_gsi(unsigned slot, unsigned pin)
{
	return PCI_INTX_GSI_BASE + (slot + (pin ? pin - 1 : 0)) % PCI_INTX_NR_GSI;
}

int pci_host_init(struct pci_host *h, const struct pci_host_params *p)
{
	int ret;

	memset(h, 0, sizeof(*h));
	if (!p->mmio32_size || p->mmio32_base + p->mmio32_size < p->mmio32_base ||
	    p->mmio64_base + p->mmio64_size < p->mmio64_base ||
	    (p->ctx && !p->ctx->mmio_bus))
		return -EINVAL;
	h->ecam_base = p->ecam_base;
	h->mmio32_base = p->mmio32_base;
	h->mmio32_size = p->mmio32_size;
	h->mmio64_base = p->mmio64_base;
	h->mmio64_size = p->mmio64_size;
	h->next32 = p->mmio32_base;
	h->next64 = p->mmio64_base;
	h->irq = p->irq;
	h->irq_opaque = p->irq_opaque;
	h->ctx = p->ctx;
	ret = -pthread_mutex_init(&h->cfg_lock, NULL);
	if (ret)
		return ret;
	if (h->ctx) {
		h->mmio_bus = h->ctx->mmio_bus;
	} else {
		ret = bus_init(&h->own_bus, "pci-standalone");
		if (ret) {
			pthread_mutex_destroy(&h->cfg_lock);
			return ret;
		}
		h->mmio_bus = &h->own_bus;
	}
	pci_device_init(&h->bridge, "pci-host-bridge", NULL, h, PCI_HOST_VENDOR, PCI_HOST_DEVICE,
			PCI_CLASS_BRIDGE_HOST, 0, 0, 0);
	memcpy(h->bridge.cfg_reset, h->bridge.cfg, sizeof(h->bridge.cfg));
	h->bridge.host = h;
	h->bridge.slot = 0;
	h->devs[0] = &h->bridge;
	return 0;
}

void pci_host_destroy(struct pci_host *h)
{
	pci_device_release(&h->bridge);
	if (!h->ctx)
		bus_destroy(&h->own_bus);
	pthread_mutex_destroy(&h->cfg_lock);
}

void pci_host_reset(struct pci_host *h)
{
	pthread_mutex_lock(&h->cfg_lock);
	h->config_address = 0;
	h->rst_ctrl = 0;
	device_reset_locked(&h->bridge);
	pthread_mutex_unlock(&h->cfg_lock);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Bump allocation in the 32-bit window; 64-bit BARs that do not fit there
 * go to the 64-bit window. 0: no room. */
static uint64_t place_bar(struct pci_host *h, uint64_t size, bool is64)
{
	uint64_t a = align_up(h->next32, size);

	if (a >= h->next32 && in_range(h->mmio32_base, h->mmio32_size, a, size)) {
		h->next32 = a + size;
		return a;
	}
	a = align_up(h->next64, size);
	if (is64 && a >= h->next64 && in_range(h->mmio64_base, h->mmio64_size, a, size)) {
		h->next64 = a + size;
		return a;
	}
	return 0;
}

int pci_register_device(struct pci_host *h, struct pci_device *d)
{
	unsigned order[PCI_NR_BARS], n = 0, slot;
	int ret;

	pthread_mutex_lock(&h->cfg_lock);
	for (slot = 1; slot < PCI_NR_SLOTS && h->devs[slot]; slot++)
		;
	if (slot == PCI_NR_SLOTS) {
		ret = -ENOSPC;
		goto out;
	}
	/* Largest BARs first: less alignment padding. */
	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		unsigned j = n++;

		if (!d->bars[i].size) {
			n--;
			continue;
		}
		while (j > 0 && d->bars[order[j - 1]].size < d->bars[i].size) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (unsigned k = 0; k < n; k++) {
		struct pci_bar *b = &d->bars[order[k]];
		unsigned reg = PCI_BASE_ADDRESS_0 + 4 * order[k];
		uint64_t a = place_bar(h, b->size, b->flags & PCI_BARF_64);

		if (!a) {
			log_err("pci %s: no room for BAR%u (%llu bytes)", d->name, order[k],
				(unsigned long long)b->size);
			ret = -ENOSPC;
			goto out;
		}
		b->default_addr = a;
		pci_cfg_set32(d, reg, (uint32_t)(pci_cfg_get(d, reg, 4) & 0xf) | (uint32_t)a);
		if (b->flags & PCI_BARF_64)
			pci_cfg_set32(d, reg + 4, (uint32_t)(a >> 32));
	}
	d->host = h;
	d->slot = slot;
	if (d->intx_pin) {
		d->gsi = pci_slot_gsi(slot, d->intx_pin);
		pci_cfg_set8(d, PCI_INTERRUPT_LINE, (uint8_t)d->gsi);
	}
	memcpy(d->cfg_reset, d->cfg, sizeof(d->cfg));
	if (h->irq && h->irq->attach) {
		ret = h->irq->attach(h, d);
		if (ret) {
			d->host = NULL;
			goto out;
		}
	}
	h->devs[slot] = d;
	ret = (int)slot;
out:
	pthread_mutex_unlock(&h->cfg_lock);
	return ret;
}

void pci_unregister_device(struct pci_device *d)
{
	struct pci_host *h = d->host;

	if (!h)
		return;
	pthread_mutex_lock(&h->cfg_lock);
	for (unsigned i = 0; i < PCI_NR_BARS; i++)
		bar_unmap(d, i);
	if (h->devs[d->slot] == d)
		h->devs[d->slot] = NULL;
	pthread_mutex_unlock(&h->cfg_lock);
	if (h->irq && h->irq->detach)
		h->irq->detach(h, d);
	d->host = NULL;
}

struct pci_device *pci_host_device(struct pci_host *h, unsigned slot)
{
	struct pci_device *d;

	if (slot >= PCI_NR_SLOTS)
		return NULL;
	pthread_mutex_lock(&h->cfg_lock);
	d = h->devs[slot];
	pthread_mutex_unlock(&h->cfg_lock);
	return d;
}

/* cfg_lock held. Only function 0 of bus 0 exists. */
static struct pci_device *lookup(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn)
{
	if (bus != 0 || dev >= PCI_NR_SLOTS || fn != 0)
		return NULL;
	return h->devs[dev];
}

static uint32_t ones(unsigned len)
{
	return len >= 4 ? 0xffffffffu : (1u << (8 * len)) - 1;
}

static uint32_t config_read_locked(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
				   unsigned off, unsigned len)
{
	struct pci_device *d = lookup(h, bus, dev, fn);

	if (!d)
		return ones(len);
	return pci_device_config_read(d, off, len) & ones(len);
}

uint32_t pci_host_config_read(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
			      unsigned off, unsigned len)
{
	uint32_t v;

	pthread_mutex_lock(&h->cfg_lock);
	v = config_read_locked(h, bus, dev, fn, off, len);
	pthread_mutex_unlock(&h->cfg_lock);
	return v;
}

void pci_host_config_write(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
			   unsigned off, unsigned len, uint32_t val)
{
	struct pci_device *d;

	pthread_mutex_lock(&h->cfg_lock);
	d = lookup(h, bus, dev, fn);
	if (d)
		pci_device_config_write(d, off, len, val);
	pthread_mutex_unlock(&h->cfg_lock);
}

static uint32_t get_le(const void *data, unsigned len)
{
	const uint8_t *p = data;
	uint32_t v = 0;

	for (unsigned i = 0; i < len && i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void put_le(void *data, unsigned len, uint64_t v)
{
	uint8_t *p = data;

	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * (i < 8 ? i : 7)));
}

/* Ports 0xCF8-0xCFF. CONFIG_ADDRESS is a dword at 0xCF8 (other widths there
 * are not config cycles; a byte at 0xCF9 is the PC reset control register);
 * CONFIG_DATA is 0xCFC-0xCFF, any width within the dword. */
void pci_host_pio_read(struct pci_host *h, uint64_t off, void *data, unsigned len)
{
	uint32_t v = ones(len);

	pthread_mutex_lock(&h->cfg_lock);
	if (off == 0 && len == 4) {
		v = h->config_address;
	} else if (off == 1 && len == 1) {
		v = h->rst_ctrl;
	} else if (off >= 4 && off + len <= 8 && len <= 4 && (h->config_address & CF8_ENABLE)) {
		uint32_t ca = h->config_address;

		v = config_read_locked(h, (ca >> 16) & 0xff, (ca >> 11) & 0x1f, (ca >> 8) & 7,
				       (ca & 0xfc) + (unsigned)(off - 4), len);
	}
	pthread_mutex_unlock(&h->cfg_lock);
	put_le(data, len, v);
}

void pci_host_pio_write(struct pci_host *h, uint64_t off, const void *data, unsigned len)
{
	uint32_t v = get_le(data, len);
	bool reset = false;

	pthread_mutex_lock(&h->cfg_lock);
	if (off == 0 && len == 4) {
		h->config_address = v & CF8_MASK;
	} else if (off == 1 && len == 1) {
		/* RST_CPU going 0 -> 1 resets the machine. */
		reset = (v & CF9_RST_CPU) && !(h->rst_ctrl & CF9_RST_CPU);
		h->rst_ctrl = (uint8_t)(v & CF9_MASK);
	} else if (off >= 4 && off + len <= 8 && len <= 4 && (h->config_address & CF8_ENABLE)) {
		uint32_t ca = h->config_address;
		struct pci_device *d = lookup(h, (ca >> 16) & 0xff, (ca >> 11) & 0x1f, (ca >> 8) & 7);

		if (d)
			pci_device_config_write(d, (ca & 0xfc) + (unsigned)(off - 4), len, v);
	}
	pthread_mutex_unlock(&h->cfg_lock);
	if (reset && h->ctx)
		device_request(h->ctx, DEVICE_REQ_RESET, 0, "PCI reset control register (0xCF9)");
}

/* ECAM: bus[27:20] device[19:15] function[14:12] register[11:0]. */
void pci_host_ecam_read(struct pci_host *h, uint64_t off, void *data, unsigned len)
{
	uint32_t v = ones(len);

	if (len <= 4)
		v = pci_host_config_read(h, (unsigned)(off >> 20) & 0xff, (unsigned)(off >> 15) & 0x1f,
					 (unsigned)(off >> 12) & 7, (unsigned)off & 0xfff, len);
	put_le(data, len, len <= 4 ? v : ~0ULL);
}

void pci_host_ecam_write(struct pci_host *h, uint64_t off, const void *data, unsigned len)
{
	if (len > 4)
		return;
	pci_host_config_write(h, (unsigned)(off >> 20) & 0xff, (unsigned)(off >> 15) & 0x1f,
			      (unsigned)(off >> 12) & 7, (unsigned)off & 0xfff, len,
			      get_le(data, len));
}

bool pci_host_mmio_read(struct pci_host *h, uint64_t addr, void *data, unsigned len)
{
	return bus_read(h->mmio_bus, addr, data, len);
}

bool pci_host_mmio_write(struct pci_host *h, uint64_t addr, const void *data, unsigned len)
{
	return bus_write(h->mmio_bus, addr, data, len);
}

/* ---- Snapshots ---- */

void pci_hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int pci_hex_decode(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

json_t *pci_device_save(struct pci_device *d)
{
	char hex[2 * PCI_CFG_SPACE_SIZE + 1];
	json_t *o;

	pci_hex_encode(d->cfg, sizeof(d->cfg), hex);
	o = json_pack("{s:s, s:s}", "name", d->name ? d->name : "", "config", hex);
	if (o && d->msix && json_object_set_new(o, "msix", pci_msix_save(d->msix))) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

int pci_device_load(struct pci_device *d, json_t *saved, char *err, size_t errlen)
{
	json_t *c = json_object_get(saved, "config"), *mx = json_object_get(saved, "msix");
	uint8_t cfg[PCI_CFG_SPACE_SIZE];
	int ret;

	if (!json_is_string(c) || pci_hex_decode(json_string_value(c), cfg, sizeof(cfg))) {
		snprintf(err, errlen, "config: expected %u bytes of hex", PCI_CFG_SPACE_SIZE);
		return -EINVAL;
	}
	/* Read-only bits are what the device is (IDs, class, BAR sizes,
	 * capability layout): they must be this function's. */
	for (unsigned o = 0; o < PCI_CFG_SPACE_SIZE; o++) {
		uint8_t ro = (uint8_t)~(d->wmask[o] | d->w1cmask[o]);

		if ((cfg[o] ^ d->cfg[o]) & ro) {
			snprintf(err, errlen, "config byte 0x%02x is 0x%02x in the snapshot, 0x%02x "
				 "here (another device)", o, cfg[o], d->cfg[o]);
			return -EINVAL;
		}
	}
	if (!!json_is_object(mx) != !!d->msix) {
		snprintf(err, errlen, "MSI-X %s in the snapshot, %s here", mx ? "present" : "absent",
			 d->msix ? "present" : "absent");
		return -EINVAL;
	}
	if (d->msix && (ret = pci_msix_load(d->msix, mx, err, errlen)))
		return ret;
	memcpy(d->cfg, cfg, sizeof(cfg));
	__atomic_store_n(&d->intx_disabled,
			 (pci_cfg_get(d, PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE) ? 1 : 0,
			 __ATOMIC_RELEASE);
	if (d->host)
		host_update_bars(d->host, d);
	if (d->msix)
		pci_msix_control_written(d->msix);
	pci_intx_update(d);
	return 0;
}

json_t *pci_host_save(struct pci_host *h)
{
	json_t *slots = json_object(), *o = NULL;
	char key[8];

	pthread_mutex_lock(&h->cfg_lock);
	for (unsigned s = 0; slots && s < PCI_NR_SLOTS; s++) {
		json_t *one;

		if (!h->devs[s])
			continue;
		one = pci_device_save(h->devs[s]);
		snprintf(key, sizeof(key), "%u", s);
		if (!one || json_object_set_new(slots, key, one)) {
			json_decref(slots);
			slots = NULL;
		}
	}
	if (slots)
		o = json_pack("{s:I, s:i, s:o}", "config_address", (json_int_t)h->config_address,
			      "rst_ctrl", h->rst_ctrl, "slots", slots);
	pthread_mutex_unlock(&h->cfg_lock);
	return o;
}

int pci_host_load(struct pci_host *h, json_t *saved, char *err, size_t errlen)
{
	json_t *ca = json_object_get(saved, "config_address"), *rc = json_object_get(saved, "rst_ctrl");
	json_t *slots = json_object_get(saved, "slots");
	char key[8], why[200];
	int ret = 0;

	if (!json_is_integer(ca) || json_integer_value(ca) < 0 ||
	    json_integer_value(ca) > UINT32_MAX || (json_integer_value(ca) & ~(json_int_t)CF8_MASK) ||
	    !json_is_integer(rc) || (json_integer_value(rc) & ~(json_int_t)CF9_MASK) ||
	    json_integer_value(rc) < 0 || !json_is_object(slots)) {
		snprintf(err, errlen, "config_address, rst_ctrl or slots missing or out of range");
		return -EINVAL;
	}
	pthread_mutex_lock(&h->cfg_lock);
	/* The same functions in the same slots, before anything changes. */
	for (unsigned s = 0; s < PCI_NR_SLOTS && !ret; s++) {
		snprintf(key, sizeof(key), "%u", s);
		if (!!h->devs[s] != !!json_is_object(json_object_get(slots, key))) {
			snprintf(err, errlen, "slot %u is %s in the snapshot, %s here", s,
				 h->devs[s] ? "empty" : "in use", h->devs[s] ? h->devs[s]->name : "empty");
			ret = -EINVAL;
		}
	}
	if (!ret && json_object_size(slots) > PCI_NR_SLOTS) {
		snprintf(err, errlen, "slots: more than %u", PCI_NR_SLOTS);
		ret = -EINVAL;
	}
	for (unsigned s = 0; s < PCI_NR_SLOTS && !ret; s++) {
		if (!h->devs[s])
			continue;
		snprintf(key, sizeof(key), "%u", s);
		ret = pci_device_load(h->devs[s], json_object_get(slots, key), why, sizeof(why));
		if (ret)
			snprintf(err, errlen, "slot %u (%s): %s", s, h->devs[s]->name, why);
	}
	if (!ret) {
		h->config_address = (uint32_t)json_integer_value(ca);
		h->rst_ctrl = (uint8_t)json_integer_value(rc);
	}
	pthread_mutex_unlock(&h->cfg_lock);
	return ret;
}
