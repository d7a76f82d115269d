/* ACPI tables: RSDP, XSDT, FADT (+FACS), MADT and a DSDT with hand-emitted
 * AML, built in a host buffer (so tests parse them without a VM) and then
 * copied into guest memory at BOOT_ACPI_ADDR..BOOT_ACPI_END.
 *
 * Layout in the buffer: RSDP first (at BOOT_ACPI_ADDR, on the 16-byte
 * boundary Linux scans in 0xE0000-0xFFFFF), then FACS, DSDT, FADT, MADT,
 * tables from extensions, and the XSDT last. There is no RSDT.
 *
 * Extensions (e.g. PCI: MCFG and a PCI0 device) hook in without touching
 * this module: define a struct acpi_extension and ACPI_EXTENSION_REGISTER()
 * it. Its dsdt_sb() emits AML into Scope(\_SB) after the built-in devices;
 * its tables() appends whole tables with acpi_table_begin()/end(), and each
 * one is linked from the XSDT. Errors are sticky in the builder (b->err),
 * so emitters need no error handling of their own. */
#ifndef EMBER_ACPI_H
#define EMBER_ACPI_H

#include <stddef.h>
#include <stdint.h>

struct guest_mem;
struct pci_host;
struct vm;

/* Fixed hardware the FADT describes (implemented by devices/acpi/pm.c). */
#define ACPI_PM1A_EVT_PORT	0x600	/* PM1_STS (16) + PM1_EN (16) */
#define ACPI_PM1A_EVT_LEN	4
#define ACPI_PM1A_CNT_PORT	0x604	/* PM1_CNT (16) */
#define ACPI_PM1A_CNT_LEN	2
#define ACPI_RESET_PORT		0x608	/* 8-bit reset register */
#define ACPI_RESET_VALUE	0x0F
#define ACPI_SCI_IRQ		9
#define ACPI_S5_SLP_TYP		5	/* \_S5 = {5, 5, 0, 0} */

#define ACPI_MAX_CPUS		254	/* xAPIC ids 0..253; the IOAPIC takes id nr_cpus */
#define ACPI_MAX_TABLES		16	/* tables the XSDT can link */
#define ACPI_AML_MAX_DEPTH	16	/* nesting of PkgLength scopes */

struct acpi_build_ctx {
	unsigned nr_cpus;
	struct vm *vm;		/* NULL in unit tests */
	struct pci_host *pci;	/* the PCI host bridge (device_ctx.pci), or NULL */
};

/* A byte buffer destined for guest address `base`. */
struct acpi_builder {
	uint8_t *buf;
	size_t len, cap;
	uint64_t base;
	int err;			/* first error (-ENOSPC, -EINVAL), sticky */
	size_t table_start;		/* open table, for acpi_table_end */
	size_t pkg[ACPI_AML_MAX_DEPTH];	/* open AML PkgLength scopes */
	unsigned depth;
	uint64_t tables[ACPI_MAX_TABLES];	/* guest addresses for the XSDT */
	unsigned nr_tables;
};

struct acpi_extension {
	const char *name;
	void (*dsdt_sb)(struct acpi_builder *b, const struct acpi_build_ctx *ctx);	/* may be NULL */
	void (*tables)(struct acpi_builder *b, const struct acpi_build_ctx *ctx);	/* may be NULL */
	struct acpi_extension *next;
};

void acpi_register_extension(struct acpi_extension *ext);

#define ACPI_EXTENSION_REGISTER(ext)                                          \
	static void __attribute__((constructor)) acpi_ext_ctor_##ext(void) \
	{                                                                     \
		acpi_register_extension(&ext);                                \
	}

/* Build everything into buf (for guest address base, 16-byte aligned).
 * *rsdp_off is the RSDP's offset in buf (0), *used the bytes used.
 * Returns 0 or -EINVAL (bad nr_cpus) / -ENOSPC. */
int acpi_build_buf(uint8_t *buf, size_t cap, uint64_t base,
		   const struct acpi_build_ctx *ctx, size_t *used)
	__attribute__((warn_unused_result));

/* Build and copy to guest memory at BOOT_ACPI_ADDR; *rsdp_addr is what
 * the loaders want in boot_params_in.rsdp_addr. */
int acpi_build(const struct guest_mem *gm, const struct acpi_build_ctx *ctx,
	       uint64_t *rsdp_addr)
	__attribute__((warn_unused_result));

/* Raw bytes (little endian), aligned padding, and whole tables. */
void acpi_put8(struct acpi_builder *b, uint8_t v);
void acpi_put16(struct acpi_builder *b, uint16_t v);
void acpi_put32(struct acpi_builder *b, uint32_t v);
void acpi_put64(struct acpi_builder *b, uint64_t v);
void acpi_put_bytes(struct acpi_builder *b, const void *p, size_t n);
void acpi_align(struct acpi_builder *b, size_t align);
/* Current guest address (base + len). */
uint64_t acpi_here(const struct acpi_builder *b);
/* Start a table with the standard 36-byte header; end fixes length and
 * checksum. With link != 0 the table is added to the XSDT. */
void acpi_table_begin(struct acpi_builder *b, const char sig[4], uint8_t rev);
uint64_t acpi_table_end(struct acpi_builder *b, int link);
/* Sum of bytes, for checksums (a valid table sums to 0). */
uint8_t acpi_checksum(const void *p, size_t n);

/* AML encoder. Scopes nest: each *_begin needs its aml_end. */
void aml_name(struct acpi_builder *b, const char *path);	/* "\\_SB_.PCI0", "COM1" */
void aml_int(struct acpi_builder *b, uint64_t v);		/* shortest encoding */
void aml_string(struct acpi_builder *b, const char *s);
void aml_eisaid(struct acpi_builder *b, const char *id);	/* "PNP0501" */
void aml_name_decl(struct acpi_builder *b, const char *name);	/* Name(name, <next object>) */
void aml_scope_begin(struct acpi_builder *b, const char *path);
void aml_device_begin(struct acpi_builder *b, const char *name);
void aml_method_begin(struct acpi_builder *b, const char *name, unsigned nargs, int serialized);
void aml_package_begin(struct acpi_builder *b, unsigned nelems);
void aml_buffer_begin(struct acpi_builder *b);			/* size is filled in by aml_end */
void aml_end(struct acpi_builder *b);
void aml_return(struct acpi_builder *b);			/* Return(<next object>) */
/* Resource template items; put inside aml_buffer_begin/aml_end, ending
 * with aml_res_end_tag. */
void aml_res_io(struct acpi_builder *b, uint16_t base, uint8_t len);	/* IO(Decode16) */
void aml_res_irq_noflags(struct acpi_builder *b, unsigned irq);	/* IRQNoFlags() */
void aml_res_end_tag(struct acpi_builder *b);
/* Address space descriptors for bridge windows (ResourceProducer, MinFixed,
 * MaxFixed, PosDecode; granularity and translation 0; length max-min+1). */
#define AML_MEM_NONCACHEABLE	0
#define AML_MEM_CACHEABLE	1
#define AML_MEM_WRITECOMBINING	2
#define AML_MEM_PREFETCHABLE	3
void aml_res_word_bus(struct acpi_builder *b, uint16_t min, uint16_t max);	/* WordBusNumber */
void aml_res_word_io(struct acpi_builder *b, uint16_t min, uint16_t max);	/* WordIO, EntireRange */
void aml_res_dword_memory(struct acpi_builder *b, uint32_t min, uint32_t max, unsigned mem_type);
void aml_res_qword_memory(struct acpi_builder *b, uint64_t min, uint64_t max, unsigned mem_type);
void aml_res_memory32_fixed(struct acpi_builder *b, uint32_t base, uint32_t len);	/* ReadWrite */

#endif
