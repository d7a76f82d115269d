/* The machine's PCI host bridge: the model of devices/pci/pci.c on ports
 * 0xCF8-0xCFF, an ECAM window and two BAR windows, interrupts through the
 * irqchip (an irqfd-backed GSI per MSI-X vector, a resampling irqfd per
 * INTx pin), and the ACPI description: MCFG, \_SB.PCI0 with its windows and
 * _PRT, and a motherboard-resource device reserving ECAM. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "devices/pci/pci.h"
#include "irqchip/irqchip.h"
#include "irqchip/routing.h"
#include "vmm/acpi/acpi.h"
#include "base/log.h"
#include "vmm/vm.h"

#define GIB (1ULL << 30)

struct pci_vm_host {
	struct pci_host host;		/* first: pci_host_of() casts */
	struct vm *vm;
	bool pio_on, ecam_on, w32_on, w64_on;
};

struct pci_dev_irq {
	unsigned nvec;
	struct irq_msi *vec;
	bool has_intx;
	struct irq_intx intx;
};

static struct ratelimit irq_rl = RATELIMIT_INIT(5000, 10);

struct pci_host *pci_host_of(struct vm *vm)
{
	return vm ? vm_device_state(vm, PCI_HOST_DEVICE_NAME) : NULL;
}

static struct vm *host_vm(struct pci_host *h)
{
	return ((struct pci_vm_host *)h)->vm;
}

/* ---- Interrupt plumbing ---- */

static bool intx_pending(void *opaque)
{
	return pci_intx_effective(opaque);
}

static void irq_detach(struct pci_host *h, struct pci_device *d)
{
	struct pci_dev_irq *p = d->irq_priv;

	(void)h;
	if (!p)
		return;
	for (unsigned i = 0; i < p->nvec; i++)
		irq_msi_destroy(&p->vec[i]);
	if (p->has_intx)
		irq_intx_destroy(&p->intx);
	free(p->vec);
	free(p);
	d->irq_priv = NULL;
}

static int irq_attach(struct pci_host *h, struct pci_device *d)
{
	struct vm *vm = host_vm(h);
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
		for (; p->nvec < pci_msix_nr_vectors(d); p->nvec++) {
			ret = irq_msi_init(&p->vec[p->nvec], &vm->irqchip.routing);
			if (ret)
				goto err;
		}
	}
	if (d->intx_pin) {
		ret = irq_intx_init(&p->intx, vm->kvm, vm->loop, d->gsi, intx_pending, d);
		if (ret)
			goto err;
		p->has_intx = true;
	}
	return 0;
err:
	irq_detach(h, d);
	return ret;
}

static void irq_msi_route(struct pci_host *h, struct pci_device *d, unsigned vec, uint64_t addr,
			  uint32_t data)
{
	struct pci_dev_irq *p = d->irq_priv;

	(void)h;
	if (p && vec < p->nvec)
		irq_msi_set_msg(&p->vec[vec], addr, data);
}

static void irq_msi_send(struct pci_host *h, struct pci_device *d, unsigned vec, uint64_t addr,
			 uint32_t data)
{
	struct pci_dev_irq *p = d->irq_priv;
	int ret;

	(void)h;
	if (!p || vec >= p->nvec)
		return;
	/* msi_route ran at unmask; keep the fallback's message current anyway. */
	if (!p->vec[vec].has_msg || p->vec[vec].addr != addr || p->vec[vec].data != data)
		irq_msi_set_msg(&p->vec[vec], addr, data);
	ret = irq_msi_fire(&p->vec[vec]);
	if (ret && ratelimit_allow(&irq_rl))
		log_warn("pci %s: MSI-X vector %u not delivered: %s", d->name, vec, strerror(-ret));
}

static void irq_intx_line(struct pci_host *h, struct pci_device *d, bool level)
{
	struct pci_dev_irq *p = d->irq_priv;

	(void)h;
	if (p && p->has_intx)
		irq_intx_set(&p->intx, level);
}

static const struct pci_irq_ops vm_irq_ops = {
	.attach = irq_attach,
	.detach = irq_detach,
	.msi_route = irq_msi_route,
	.msi_fire = irq_msi_send,
	.intx_set = irq_intx_line,
};

/* ---- Bus glue ---- */

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

static void w32_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct pci_host *h = opaque;

	pci_host_mmio_read(h, h->mmio32_base + off, data, len);
}

static void w32_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct pci_host *h = opaque;

	pci_host_mmio_write(h, h->mmio32_base + off, data, len);
}

static void w64_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct pci_host *h = opaque;

	pci_host_mmio_read(h, h->mmio64_base + off, data, len);
}

static void w64_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct pci_host *h = opaque;

	pci_host_mmio_write(h, h->mmio64_base + off, data, len);
}

static const struct bus_dev_ops pio_ops = { .read = pio_read, .write = pio_write };
static const struct bus_dev_ops ecam_ops = { .read = ecam_read, .write = ecam_write };
static const struct bus_dev_ops w32_ops = { .read = w32_read, .write = w32_write };
static const struct bus_dev_ops w64_ops = { .read = w64_read, .write = w64_write };

static void host_reset_request(void *opaque)
{
	vm_request_reset(opaque, "PCI reset control register (0xCF9)");
}

static void host_destroy(void *state)
{
	struct pci_vm_host *ph = state;
	struct vm *vm;

	if (!ph)
		return;
	vm = ph->vm;
	if (ph->pio_on)
		bus_unregister(&vm->pio_bus, PCI_CONFIG_PORT);
	if (ph->ecam_on)
		bus_unregister(&vm->mmio_bus, ph->host.ecam_base);
	if (ph->w32_on)
		bus_unregister(&vm->mmio_bus, ph->host.mmio32_base);
	if (ph->w64_on)
		bus_unregister(&vm->mmio_bus, ph->host.mmio64_base);
	pci_host_destroy(&ph->host);
	free(ph);
}

static int host_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	struct vm *vm = ctx->machine;	/* transitional */

	(void)desc;
	uint64_t top = gm_ram_end(&vm->mem);
	struct pci_host_params p = {
		.ecam_base = PCI_ECAM_BASE,
		.mmio32_base = PCI_MMIO32_BASE,
		.mmio32_size = PCI_MMIO32_SIZE,
		.mmio64_size = PCI_MMIO64_SIZE,
		.irq = &vm_irq_ops,
		.kvm = vm->kvm,
		.reset_request = host_reset_request,
		.reset_opaque = vm,
	};
	struct pci_vm_host *ph;
	int ret;

	if (top < GM_MMIO_HOLE_END)
		top = GM_MMIO_HOLE_END;
	p.mmio64_base = (top + GIB - 1) & ~(GIB - 1);
	ph = calloc(1, sizeof(*ph));
	if (!ph)
		return -ENOMEM;
	ph->vm = vm;
	ret = pci_host_init(&ph->host, &p);
	if (ret) {
		free(ph);
		return ret;
	}
	ret = bus_register(&vm->pio_bus, PCI_CONFIG_PORT, PCI_CONFIG_PORT_LEN, &pio_ops, &ph->host,
			   "pci-config");
	if (ret)
		goto err;
	ph->pio_on = true;
	ret = bus_register(&vm->mmio_bus, PCI_ECAM_BASE, PCI_ECAM_SIZE, &ecam_ops, &ph->host,
			   "pci-ecam");
	if (ret)
		goto err;
	ph->ecam_on = true;
	ret = bus_register(&vm->mmio_bus, p.mmio32_base, p.mmio32_size, &w32_ops, &ph->host,
			   "pci-mmio32");
	if (ret)
		goto err;
	ph->w32_on = true;
	ret = bus_register(&vm->mmio_bus, p.mmio64_base, p.mmio64_size, &w64_ops, &ph->host,
			   "pci-mmio64");
	if (ret)
		goto err;
	ph->w64_on = true;
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

static struct device_desc pci_host_desc = {
	.name = PCI_HOST_DEVICE_NAME,
	.level = DEVICE_LEVEL_PCI,
	.realize = host_realize,
	.reset = host_reset,
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
	struct pci_host *h = pci_host_of(ctx->vm);

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
	struct pci_host *h = pci_host_of(ctx->vm);

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
