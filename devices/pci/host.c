/* The machine's PCI host bridge: the model of devices/pci/pci.c on ports
 * 0xCF8-0xCFF and an ECAM window, BARs mapped straight onto the VM's MMIO
 * bus, interrupts through the device context (an irqfd on its own GSI per
 * MSI-X vector, a resampling irqfd per INTx pin) and the irqchip's GSI
 * routing table, and the ACPI description: MCFG, \_SB.PCI0 with its windows
 * and _PRT, and a motherboard-resource device reserving ECAM. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/device.h"
#include "devices/pci/pci.h"
#include "irqchip/irqchip.h"
#include "irqchip/routing.h"
#include "vmm/acpi/acpi.h"
#include "base/evloop.h"
#include "base/guest_mem.h"
#include "base/log.h"

#define GIB (1ULL << 30)

struct pci_vm_host {
	struct pci_host host;		/* first: the device state is the host */
	bool pio_on, ecam_on;
};

/* One MSI-X vector: a GSI of its own whose MSI route the MSI-X model sets
 * on unmask, and an eventfd bound to it as an irqfd. */
struct pci_vec_irq {
	int gsi;			/* -1: none left (KVM_SIGNAL_MSI instead) */
	int efd;			/* -1: no irqfd */
};

/* A level-triggered INTx line: an irqfd in resample mode (KVM drops the
 * line at EOI and signals rfd, where it is raised again while the device
 * still asserts it), or irqchip_set_line when resampling is unavailable. */
struct pci_intx_line {
	const struct device_ctx *ctx;
	struct pci_device *dev;
	unsigned gsi;
	int efd, rfd;			/* -1: irqchip_set_line */
	bool level;			/* fallback: the level last driven */
	pthread_mutex_t lock;		/* fallback: orders line updates */
};

struct pci_dev_irq {
	unsigned nvec;
	struct pci_vec_irq *vec;
	bool has_intx;
	struct pci_intx_line intx;
};

static struct ratelimit irq_rl = RATELIMIT_INIT(5000, 10);

static struct irq_routing *routing_of(const struct pci_host *h)
{
	return h->ctx && h->ctx->irqchip ? &h->ctx->irqchip->routing : NULL;
}

/* ---- MSI-X vectors ---- */

static void vec_irq_init(struct pci_host *h, struct pci_device *d, unsigned v,
			 struct pci_vec_irq *x)
{
	struct irq_routing *r = routing_of(h);
	int ret;

	if (!r)
		return;
	x->gsi = irq_gsi_alloc(r);
	if (x->gsi < 0) {
		log_debug("pci %s: no free GSI for MSI-X vector %u: KVM_SIGNAL_MSI", d->name, v);
		x->gsi = -1;
		return;
	}
	x->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (x->efd < 0)
		return;
	ret = device_irqfd(h->ctx, (unsigned)x->gsi, x->efd, -1, true);
	if (ret) {
		log_debug("pci %s: irqfd for MSI-X vector %u (GSI %d): %s; KVM_SIGNAL_MSI",
			  d->name, v, x->gsi, strerror(-ret));
		close(x->efd);
		x->efd = -1;
		return;
	}
	(void)pci_msix_bind_eventfd(d, v, x->efd);
}

static void vec_irq_destroy(struct pci_host *h, struct pci_device *d, unsigned v,
			    struct pci_vec_irq *x)
{
	if (x->efd >= 0) {
		(void)pci_msix_bind_eventfd(d, v, -1);
		if (device_irqfd(h->ctx, (unsigned)x->gsi, x->efd, -1, false))
			log_warn("pci %s: cannot deassign the irqfd of GSI %d", d->name, x->gsi);
		close(x->efd);
	}
	if (x->gsi >= 0)
		irq_gsi_free(routing_of(h), (unsigned)x->gsi);
	x->gsi = x->efd = -1;
}

static void irq_msi_route(struct pci_host *h, struct pci_device *d, unsigned vec, uint64_t addr,
			  uint32_t data)
{
	struct pci_dev_irq *p = d->irq_priv;

	if (p && vec < p->nvec && p->vec[vec].gsi >= 0)
		(void)irq_routing_set_msi(routing_of(h), (unsigned)p->vec[vec].gsi, addr, data);
}

static int irq_msi_commit(struct pci_host *h, struct pci_device *d)
{
	struct irq_routing *r = routing_of(h);

	(void)d;
	return r ? irq_routing_commit(r) : 0;
}

/* Vectors without an irqfd, or whose route could not be committed. */
static void irq_msi_send(struct pci_host *h, struct pci_device *d, unsigned vec, uint64_t addr,
			 uint32_t data)
{
	int ret = h->ctx && h->ctx->irqchip ? irqchip_signal_msi(h->ctx->irqchip, addr, data) :
					      -ENODEV;

	if (ret && ratelimit_allow(&irq_rl))
		log_warn("pci %s: MSI-X vector %u not delivered: %s", d->name, vec, strerror(-ret));
}

/* ---- INTx ---- */

static void intx_resample(void *opaque, uint32_t events)
{
	struct pci_intx_line *x = opaque;
	eventfd_t v;

	(void)events;
	if (eventfd_read(x->rfd, &v) < 0)
		return;
	/* KVM dropped the line at EOI; raise it again while the device still
	 * asserts it (level semantics). */
	if (pci_intx_effective(x->dev) && eventfd_write(x->efd, 1) < 0)
		log_warn("pci %s: INTx GSI %u re-assert: %s", x->dev->name, x->gsi, strerror(errno));
}

static int intx_init(struct pci_intx_line *x, const struct device_ctx *ctx, struct pci_device *d)
{
	int ret;

	memset(x, 0, sizeof(*x));
	x->ctx = ctx;
	x->dev = d;
	x->gsi = d->gsi;
	x->efd = x->rfd = -1;
	ret = -pthread_mutex_init(&x->lock, NULL);
	if (ret || !ctx->loop)
		return ret;
	x->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	x->rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (x->efd < 0 || x->rfd < 0)
		goto fallback;
	ret = device_irqfd(ctx, x->gsi, x->efd, x->rfd, true);
	if (ret) {
		log_debug("pci %s: resampling irqfd on GSI %u: %s; using the irqchip line", d->name,
			  x->gsi, strerror(-ret));
		goto fallback;
	}
	if (evloop_add(ctx->loop, x->rfd, EPOLLIN, intx_resample, x)) {
		(void)device_irqfd(ctx, x->gsi, x->efd, -1, false);
		goto fallback;
	}
	return 0;
fallback:
	if (x->efd >= 0)
		close(x->efd);
	if (x->rfd >= 0)
		close(x->rfd);
	x->efd = x->rfd = -1;
	return 0;
}

static void intx_destroy(struct pci_intx_line *x)
{
	if (x->efd >= 0) {
		evloop_del(x->ctx->loop, x->rfd);
		if (device_irqfd(x->ctx, x->gsi, x->efd, -1, false))
			log_warn("pci %s: cannot deassign the INTx irqfd of GSI %u", x->dev->name,
				 x->gsi);
		close(x->efd);
		close(x->rfd);
	} else if (x->level && x->ctx->irqchip) {
		(void)irqchip_set_line(x->ctx->irqchip, x->gsi, false);
	}
	pthread_mutex_destroy(&x->lock);
	x->efd = x->rfd = -1;
	x->level = false;
}

static void irq_intx_line(struct pci_host *h, struct pci_device *d, bool level)
{
	struct pci_dev_irq *p = d->irq_priv;
	struct pci_intx_line *x;

	(void)h;
	if (!p || !p->has_intx)
		return;
	x = &p->intx;
	if (x->efd >= 0) {
		/* A deassert is KVM's job at EOI; the resampler asks again. */
		if (level && eventfd_write(x->efd, 1) < 0)
			log_warn("pci %s: INTx GSI %u: %s", d->name, x->gsi, strerror(errno));
		return;
	}
	pthread_mutex_lock(&x->lock);
	if (level != x->level) {
		x->level = level;
		if (x->ctx->irqchip && irqchip_set_line(x->ctx->irqchip, x->gsi, level) &&
		    ratelimit_allow(&irq_rl))
			log_warn("pci %s: INTx GSI %u: cannot set the line", d->name, x->gsi);
	}
	pthread_mutex_unlock(&x->lock);
}

/* ---- Per-device plumbing ---- */

static void irq_detach(struct pci_host *h, struct pci_device *d)
{
	struct pci_dev_irq *p = d->irq_priv;

	if (!p)
		return;
	for (unsigned i = 0; i < p->nvec; i++)
		vec_irq_destroy(h, d, i, &p->vec[i]);
	if (p->has_intx)
		intx_destroy(&p->intx);
	free(p->vec);
	free(p);
	d->irq_priv = NULL;
}

static int irq_attach(struct pci_host *h, struct pci_device *d)
{
	struct pci_dev_irq *p;
	int ret = 0;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	d->irq_priv = p;
	if (pci_msix_nr_vectors(d)) {
		p->vec = calloc(pci_msix_nr_vectors(d), sizeof(*p->vec));
		if (!p->vec) {
			ret = -ENOMEM;
			goto err;
		}
		/* All present before any is bound: binding may route. */
		p->nvec = pci_msix_nr_vectors(d);
		for (unsigned i = 0; i < p->nvec; i++)
			p->vec[i].gsi = p->vec[i].efd = -1;
		for (unsigned i = 0; i < p->nvec; i++)
			vec_irq_init(h, d, i, &p->vec[i]);
	}
	if (d->intx_pin) {
		ret = intx_init(&p->intx, h->ctx, d);
		if (ret)
			goto err;
		p->has_intx = true;
	}
	return 0;
err:
	irq_detach(h, d);
	return ret;
}

static const struct pci_irq_ops vm_irq_ops = {
	.attach = irq_attach,
	.detach = irq_detach,
	.msi_route = irq_msi_route,
	.msi_commit = irq_msi_commit,
	.msi_fire = irq_msi_send,
	.intx_set = irq_intx_line,
};

/* ---- The device ---- */

static void pio_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	pci_host_pio_read(opaque, off, data, len);
}

static void pio_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	pci_host_pio_write(opaque, off, data, len);
}

static void ecam_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	pci_host_ecam_read(opaque, off, data, len);
}

static void ecam_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	pci_host_ecam_write(opaque, off, data, len);
}

static const struct bus_dev_ops pio_ops = { .read = pio_read, .write = pio_write };
static const struct bus_dev_ops ecam_ops = { .read = ecam_read, .write = ecam_write };

static void host_destroy(void *state)
{
	struct pci_vm_host *ph = state;
	struct device_ctx *ctx;

	if (!ph)
		return;
	ctx = ph->host.ctx;
	if (ph->pio_on)
		bus_unregister(ctx->pio_bus, PCI_CONFIG_PORT);
	if (ph->ecam_on)
		bus_unregister(ctx->mmio_bus, ph->host.ecam_base);
	if (ctx->pci == &ph->host)
		ctx->pci = NULL;
	pci_host_destroy(&ph->host);
	free(ph);
}

static int host_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	uint64_t top = gm_ram_end(ctx->mem);
	struct pci_host_params p = {
		.ecam_base = PCI_ECAM_BASE,
		.mmio32_base = PCI_MMIO32_BASE,
		.mmio32_size = PCI_MMIO32_SIZE,
		.mmio64_size = PCI_MMIO64_SIZE,
		.irq = &vm_irq_ops,
		.ctx = ctx,
	};
	struct pci_vm_host *ph;
	int ret;

	(void)desc;
	if (!ctx->pio_bus || !ctx->mmio_bus)
		return -EINVAL;
	if (top < GM_MMIO_HOLE_END)
		top = GM_MMIO_HOLE_END;
	p.mmio64_base = (top + GIB - 1) & ~(GIB - 1);
	ph = calloc(1, sizeof(*ph));
	if (!ph)
		return -ENOMEM;
	ret = pci_host_init(&ph->host, &p);
	if (ret) {
		free(ph);
		return ret;
	}
	ret = bus_register(ctx->pio_bus, PCI_CONFIG_PORT, PCI_CONFIG_PORT_LEN, &pio_ops, &ph->host,
			   "pci-config");
	if (ret)
		goto err;
	ph->pio_on = true;
	ret = bus_register(ctx->mmio_bus, PCI_ECAM_BASE, PCI_ECAM_SIZE, &ecam_ops, &ph->host,
			   "pci-ecam");
	if (ret)
		goto err;
	ph->ecam_on = true;
	ctx->pci = &ph->host;	/* devices realized later find their bus here */
	log_debug("pci: ECAM 0x%llx, BAR windows 0x%llx+0x%llx and 0x%llx+0x%llx",
		  (unsigned long long)PCI_ECAM_BASE, (unsigned long long)p.mmio32_base,
		  (unsigned long long)p.mmio32_size, (unsigned long long)p.mmio64_base,
		  (unsigned long long)p.mmio64_size);
	*state = ph;
	return 0;
err:
	log_err("pci: cannot claim the host bridge's address ranges: %s", strerror(-ret));
	host_destroy(ph);
	return ret;
}

static void host_reset(void *state)
{
	pci_host_reset(state);
}

static struct json_t *host_save(void *state)
{
	return pci_host_save(state);
}

static int host_load(void *state, struct json_t *saved, char *err, size_t errlen)
{
	return pci_host_load(state, saved, err, errlen);
}

static struct device_desc pci_host_desc = {
	.name = PCI_HOST_DEVICE_NAME,
	.level = DEVICE_LEVEL_PCI,
	.realize = host_realize,
	.reset = host_reset,
	.save = host_save,
	.load = host_load,
	.destroy = host_destroy,
};
DEVICE_REGISTER(pci_host_desc);

/* ---- ACPI ---- */

#define PCI_LAST_BUS	((unsigned)(PCI_ECAM_SIZE >> 20) - 1)
#define MCFG_REV	1

static void dsdt_prt(struct acpi_builder *b)
{
	aml_name_decl(b, "_PRT");
	aml_package_begin(b, PCI_NR_SLOTS * 4);
	for (unsigned slot = 0; slot < PCI_NR_SLOTS; slot++) {
		for (unsigned pin = 1; pin <= 4; pin++) {
			aml_package_begin(b, 4);
			aml_int(b, (uint64_t)slot << 16 | 0xffff);	/* any function */
			aml_int(b, pin - 1);				/* INTA = 0 */
			aml_int(b, 0);					/* no link device: */
			aml_int(b, pci_slot_gsi(slot, pin));		/* a GSI */
			aml_end(b);
		}
	}
	aml_end(b);
}

static void pci_dsdt(struct acpi_builder *b, const struct acpi_build_ctx *ctx)
{
	struct pci_host *h = ctx->pci;

	if (!h)
		return;
	aml_device_begin(b, "PCI0");
	aml_name_decl(b, "_HID");
	aml_eisaid(b, "PNP0A08");
	aml_name_decl(b, "_CID");
	aml_eisaid(b, "PNP0A03");
	aml_name_decl(b, "_UID");
	aml_int(b, 0);
	aml_name_decl(b, "_SEG");
	aml_int(b, 0);
	aml_name_decl(b, "_BBN");
	aml_int(b, 0);
	aml_name_decl(b, "_CRS");
	aml_buffer_begin(b);
	aml_res_word_bus(b, 0, (uint16_t)PCI_LAST_BUS);
	aml_res_io(b, PCI_CONFIG_PORT, PCI_CONFIG_PORT_LEN);
	aml_res_word_io(b, 0x0000, PCI_CONFIG_PORT - 1);
	aml_res_word_io(b, 0x0d00, 0xffff);
	aml_res_dword_memory(b, (uint32_t)h->mmio32_base,
			     (uint32_t)(h->mmio32_base + h->mmio32_size - 1), AML_MEM_NONCACHEABLE);
	if (h->mmio64_size)
		aml_res_qword_memory(b, h->mmio64_base, h->mmio64_base + h->mmio64_size - 1,
				     AML_MEM_CACHEABLE);
	aml_res_end_tag(b);
	aml_end(b);
	dsdt_prt(b);
	aml_end(b);

	/* Linux uses MMCONFIG only if the area is reserved by firmware. */
	aml_device_begin(b, "MRES");
	aml_name_decl(b, "_HID");
	aml_eisaid(b, "PNP0C02");
	aml_name_decl(b, "_UID");
	aml_int(b, 1);
	aml_name_decl(b, "_CRS");
	aml_buffer_begin(b);
	aml_res_memory32_fixed(b, (uint32_t)h->ecam_base, (uint32_t)PCI_ECAM_SIZE);
	aml_res_end_tag(b);
	aml_end(b);
	aml_end(b);
}

static void pci_tables(struct acpi_builder *b, const struct acpi_build_ctx *ctx)
{
	struct pci_host *h = ctx->pci;

	if (!h)
		return;
	acpi_table_begin(b, "MCFG", MCFG_REV);
	acpi_put64(b, 0);			/* reserved */
	acpi_put64(b, h->ecam_base);
	acpi_put16(b, 0);			/* segment */
	acpi_put8(b, 0);			/* start bus */
	acpi_put8(b, (uint8_t)PCI_LAST_BUS);	/* end bus */
	acpi_put32(b, 0);			/* reserved */
	acpi_table_end(b, 1);
}

static struct acpi_extension pci_acpi = {
	.name = "pci",
	.dsdt_sb = pci_dsdt,
	.tables = pci_tables,
};
ACPI_EXTENSION_REGISTER(pci_acpi);
