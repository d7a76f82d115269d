/* RSDP, XSDT, FADT, FACS, MADT and DSDT for Ember's fixed PC-like machine:
 * full (not hardware-reduced) ACPI with the PM1 block and reset register of
 * devices/acpi/pm.c, one xAPIC per vCPU, the in-kernel IOAPIC, COM1 and a
 * fixed-feature power button. */
#include "vmm/acpi/acpi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "irqchip/irqchip.h"
#include "vmm/boot/boot.h"
#include "base/guest_mem.h"

#define ACPI_OEM_ID		"EMBER "
#define ACPI_OEM_TABLE_PREFIX	"EMBR"
#define ACPI_CREATOR_ID		"EMBR"
#define ACPI_HDR_LEN		36
#define RSDP_LEN		36
#define RSDP_V1_LEN		20
#define FACS_LEN		64
#define NO_TABLE		((size_t)-1)

/* FADT */
#define FADT_REV		6
#define FADT_MINOR_REV		0
#define FADT_LEN		276
#define FADT_WBINVD		(1u << 0)
#define FADT_PROC_C1		(1u << 2)
#define FADT_SLP_BUTTON		(1u << 5)	/* no fixed-feature sleep button */
#define FADT_RESET_REG_SUP	(1u << 10)
#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_8042		(1u << 1)
#define BOOT_ARCH_NO_VGA	(1u << 2)
#define P_LVL2_LAT_NONE		101	/* > 100: C2 unsupported */
#define P_LVL3_LAT_NONE		1001	/* > 1000: C3 unsupported */

/* Generic Address Structure */
#define GAS_SYSTEM_IO		1
#define GAS_ACCESS_BYTE		1
#define GAS_ACCESS_WORD		2

/* MADT */
#define MADT_REV		5
#define MADT_PCAT_COMPAT	(1u << 0)
#define MADT_LAPIC		0
#define MADT_IOAPIC		1
#define MADT_ISO		2
#define MADT_LAPIC_NMI		4
#define MADT_LAPIC_ENABLED	(1u << 0)
#define MPS_ACTIVE_HIGH		0x1
#define MPS_LEVEL		(0x3 << 2)
#define NMI_ALL_CPUS		0xFF
#define NMI_LINT1		1

#define RTC_CENTURY_INDEX	0x32
#define COM1_PORT		0x3F8
#define COM1_IRQ		4

static struct acpi_extension *ext_head;

void acpi_register_extension(struct acpi_extension *ext)
{
	struct acpi_extension **pp = &ext_head;

	while (*pp)
		pp = &(*pp)->next;
	ext->next = NULL;
	*pp = ext;
}

static void put_fixed(struct acpi_builder *b, const char *s, size_t n)
{
	char tmp[8];

	memset(tmp, ' ', sizeof(tmp));
	memcpy(tmp, s, strnlen(s, n));
	acpi_put_bytes(b, tmp, n);
}

void acpi_table_begin(struct acpi_builder *b, const char sig[4], uint8_t rev)
{
	char table_id[8];

	if (!b->err && b->table_start != NO_TABLE)
		b->err = -EINVAL;	/* tables do not nest */
	acpi_align(b, 16);
	if (b->err)
		return;
	b->table_start = b->len;
	memcpy(table_id, ACPI_OEM_TABLE_PREFIX, 4);
	memcpy(table_id + 4, sig, 4);
	acpi_put_bytes(b, sig, 4);
	acpi_put32(b, 0);		/* length, set by acpi_table_end */
	acpi_put8(b, rev);
	acpi_put8(b, 0);		/* checksum, set by acpi_table_end */
	put_fixed(b, ACPI_OEM_ID, 6);
	acpi_put_bytes(b, table_id, 8);
	acpi_put32(b, 1);		/* OEM revision */
	put_fixed(b, ACPI_CREATOR_ID, 4);
	acpi_put32(b, 1);		/* creator revision */
}

uint64_t acpi_table_end(struct acpi_builder *b, int link)
{
	size_t start = b->table_start, len;
	uint8_t *t;

	b->table_start = NO_TABLE;
	if (!b->err && (start == NO_TABLE || b->depth))
		b->err = -EINVAL;	/* no open table, or an AML scope left open */
	if (b->err)
		return 0;
	t = b->buf + start;
	len = b->len - start;
	t[4] = (uint8_t)len;
	t[5] = (uint8_t)(len >> 8);
	t[6] = (uint8_t)(len >> 16);
	t[7] = (uint8_t)(len >> 24);
	t[9] = (uint8_t)-acpi_checksum(t, len);
	if (link) {
		if (b->nr_tables >= ACPI_MAX_TABLES) {
			b->err = -ENOSPC;
			return 0;
		}
		b->tables[b->nr_tables++] = b->base + start;
	}
	return b->base + start;
}

static void put_gas(struct acpi_builder *b, uint8_t bits, uint8_t access, uint64_t port)
{
	acpi_put8(b, port ? GAS_SYSTEM_IO : 0);
	acpi_put8(b, bits);
	acpi_put8(b, 0);		/* bit offset */
	acpi_put8(b, port ? access : 0);
	acpi_put64(b, port);
}

static uint64_t build_facs(struct acpi_builder *b)
{
	uint64_t addr;

	acpi_align(b, 64);
	addr = acpi_here(b);
	acpi_put_bytes(b, "FACS", 4);
	acpi_put32(b, FACS_LEN);
	acpi_put32(b, 0);		/* hardware signature */
	acpi_put32(b, 0);		/* firmware waking vector */
	acpi_put32(b, 0);		/* global lock */
	acpi_put32(b, 0);		/* flags */
	acpi_put64(b, 0);		/* X firmware waking vector */
	acpi_put8(b, 2);		/* version */
	for (unsigned i = 0; i < FACS_LEN - 33; i++)
		acpi_put8(b, 0);
	return addr;
}

static void dsdt_com1(struct acpi_builder *b)
{
	aml_device_begin(b, "COM1");
	aml_name_decl(b, "_HID");
	aml_eisaid(b, "PNP0501");
	aml_name_decl(b, "_UID");
	aml_int(b, 1);
	aml_name_decl(b, "_CRS");
	aml_buffer_begin(b);
	aml_res_io(b, COM1_PORT, 8);
	aml_res_irq_noflags(b, COM1_IRQ);
	aml_res_end_tag(b);
	aml_end(b);
	aml_end(b);
}

/* The button itself is the PM1 fixed feature (FADT PWR_BUTTON clear);
 * this device only gives it a name in the namespace. */
static void dsdt_power_button(struct acpi_builder *b)
{
	aml_device_begin(b, "PWRB");
	aml_name_decl(b, "_HID");
	aml_eisaid(b, "PNP0C0C");
	aml_name_decl(b, "_UID");
	aml_int(b, 1);
	aml_end(b);
}

static uint64_t build_dsdt(struct acpi_builder *b, const struct acpi_build_ctx *ctx)
{
	acpi_table_begin(b, "DSDT", 2);	/* rev 2: 64-bit integers */
	aml_scope_begin(b, "\\_SB");
	dsdt_com1(b);
	dsdt_power_button(b);
	for (struct acpi_extension *e = ext_head; e; e = e->next)
		if (e->dsdt_sb)
			e->dsdt_sb(b, ctx);
	aml_end(b);

	aml_name_decl(b, "_S5");
	aml_package_begin(b, 4);
	aml_int(b, ACPI_S5_SLP_TYP);
	aml_int(b, ACPI_S5_SLP_TYP);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_end(b);
	return acpi_table_end(b, 0);
}

static void fadt_legacy_blocks(struct acpi_builder *b)
{
	acpi_put32(b, ACPI_PM1A_EVT_PORT);
	acpi_put32(b, 0);		/* PM1b_EVT_BLK */
	acpi_put32(b, ACPI_PM1A_CNT_PORT);
	acpi_put32(b, 0);		/* PM1b_CNT_BLK */
	acpi_put32(b, 0);		/* PM2_CNT_BLK */
	acpi_put32(b, 0);		/* PM_TMR_BLK: no PM timer */
	acpi_put32(b, 0);		/* GPE0_BLK */
	acpi_put32(b, 0);		/* GPE1_BLK */
	acpi_put8(b, ACPI_PM1A_EVT_LEN);
	acpi_put8(b, ACPI_PM1A_CNT_LEN);
	acpi_put8(b, 0);		/* PM2_CNT_LEN */
	acpi_put8(b, 0);		/* PM_TMR_LEN */
	acpi_put8(b, 0);		/* GPE0_BLK_LEN */
	acpi_put8(b, 0);		/* GPE1_BLK_LEN */
	acpi_put8(b, 0);		/* GPE1_BASE */
	acpi_put8(b, 0);		/* CST_CNT */
	acpi_put16(b, P_LVL2_LAT_NONE);
	acpi_put16(b, P_LVL3_LAT_NONE);
	acpi_put16(b, 0);		/* FLUSH_SIZE */
	acpi_put16(b, 0);		/* FLUSH_STRIDE */
	acpi_put8(b, 0);		/* DUTY_OFFSET */
	acpi_put8(b, 0);		/* DUTY_WIDTH */
	acpi_put8(b, 0);		/* DAY_ALRM */
	acpi_put8(b, 0);		/* MON_ALRM */
	acpi_put8(b, RTC_CENTURY_INDEX);	/* CENTURY: CMOS index of devices/legacy/rtc.c */
}

static uint64_t build_fadt(struct acpi_builder *b, uint64_t facs, uint64_t dsdt)
{
	acpi_table_begin(b, "FACP", FADT_REV);
	acpi_put32(b, (uint32_t)facs);	/* FIRMWARE_CTRL; X_FIRMWARE_CTRL stays 0 */
	acpi_put32(b, (uint32_t)dsdt);
	acpi_put8(b, 0);		/* reserved */
	acpi_put8(b, 0);		/* preferred PM profile: unspecified */
	acpi_put16(b, ACPI_SCI_IRQ);
	acpi_put32(b, 0);		/* SMI_CMD: no SMM, always in ACPI mode */
	acpi_put8(b, 0);		/* ACPI_ENABLE */
	acpi_put8(b, 0);		/* ACPI_DISABLE */
	acpi_put8(b, 0);		/* S4BIOS_REQ */
	acpi_put8(b, 0);		/* PSTATE_CNT */
	fadt_legacy_blocks(b);
	acpi_put16(b, BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042 | BOOT_ARCH_NO_VGA);
	acpi_put8(b, 0);		/* reserved */
	acpi_put32(b, FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP);
	put_gas(b, 8, GAS_ACCESS_BYTE, ACPI_RESET_PORT);
	acpi_put8(b, ACPI_RESET_VALUE);
	acpi_put16(b, 0);		/* ARM_BOOT_ARCH */
	acpi_put8(b, FADT_MINOR_REV);
	acpi_put64(b, 0);		/* X_FIRMWARE_CTRL */
	acpi_put64(b, dsdt);		/* X_DSDT */
	put_gas(b, ACPI_PM1A_EVT_LEN * 8, GAS_ACCESS_WORD, ACPI_PM1A_EVT_PORT);
	put_gas(b, 0, 0, 0);		/* X_PM1b_EVT_BLK */
	put_gas(b, ACPI_PM1A_CNT_LEN * 8, GAS_ACCESS_WORD, ACPI_PM1A_CNT_PORT);
	for (int i = 0; i < 7; i++)	/* PM1b_CNT PM2_CNT PM_TMR GPE0 GPE1 SLEEP_CTL/STS */
		put_gas(b, 0, 0, 0);
	acpi_put64(b, 0);		/* hypervisor vendor identity */
	return acpi_table_end(b, 1);
}

static void madt_iso(struct acpi_builder *b, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	acpi_put8(b, MADT_ISO);
	acpi_put8(b, 10);
	acpi_put8(b, 0);		/* bus: ISA */
	acpi_put8(b, irq);
	acpi_put32(b, gsi);
	acpi_put16(b, flags);
}

static uint64_t build_madt(struct acpi_builder *b, unsigned nr_cpus)
{
	acpi_table_begin(b, "APIC", MADT_REV);
	acpi_put32(b, (uint32_t)IRQCHIP_LAPIC_ADDR);
	acpi_put32(b, MADT_PCAT_COMPAT);
	for (unsigned i = 0; i < nr_cpus; i++) {
		acpi_put8(b, MADT_LAPIC);
		acpi_put8(b, 8);
		acpi_put8(b, (uint8_t)i);	/* ACPI processor UID */
		acpi_put8(b, (uint8_t)i);	/* APIC ID */
		acpi_put32(b, MADT_LAPIC_ENABLED);
	}
	acpi_put8(b, MADT_IOAPIC);
	acpi_put8(b, 12);
	acpi_put8(b, (uint8_t)nr_cpus);	/* IOAPIC id, clear of the LAPIC ids */
	acpi_put8(b, 0);
	acpi_put32(b, (uint32_t)IRQCHIP_IOAPIC_ADDR);
	acpi_put32(b, 0);		/* GSI base */
	madt_iso(b, 0, 2, 0);		/* PIT on IOAPIC pin 2 */
	madt_iso(b, ACPI_SCI_IRQ, ACPI_SCI_IRQ, MPS_ACTIVE_HIGH | MPS_LEVEL);
	acpi_put8(b, MADT_LAPIC_NMI);
	acpi_put8(b, 6);
	acpi_put8(b, NMI_ALL_CPUS);
	acpi_put16(b, 0);		/* flags: conforms to the bus */
	acpi_put8(b, NMI_LINT1);
	return acpi_table_end(b, 1);
}

static void build_xsdt(struct acpi_builder *b, uint64_t *xsdt)
{
	/* The XSDT lists itself nowhere: copy the list before adding it. */
	uint64_t tables[ACPI_MAX_TABLES];
	unsigned n = b->nr_tables;

	memcpy(tables, b->tables, sizeof(tables));
	acpi_table_begin(b, "XSDT", 1);
	for (unsigned i = 0; i < n; i++)
		acpi_put64(b, tables[i]);
	*xsdt = acpi_table_end(b, 0);
}

static void fill_rsdp(struct acpi_builder *b, uint64_t xsdt)
{
	uint8_t *r = b->buf;

	memset(r, 0, RSDP_LEN);
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, ACPI_OEM_ID, 6);
	r[15] = 2;			/* revision: ACPI 2.0+, XSDT valid */
	r[20] = RSDP_LEN;		/* length (u32, fits one byte) */
	for (int i = 0; i < 8; i++)
		r[24 + i] = (uint8_t)(xsdt >> (8 * i));
	r[8] = (uint8_t)-acpi_checksum(r, RSDP_V1_LEN);
	r[32] = (uint8_t)-acpi_checksum(r, RSDP_LEN);
}

int acpi_build_buf(uint8_t *buf, size_t cap, uint64_t base,
		   const struct acpi_build_ctx *ctx, size_t *used)
{
	struct acpi_builder b = {
		.buf = buf, .cap = cap, .base = base, .table_start = NO_TABLE,
	};
	static const uint8_t rsdp_space[RSDP_LEN];
	uint64_t facs, dsdt, xsdt = 0;

	if (!buf || !ctx || ctx->nr_cpus == 0 || ctx->nr_cpus > ACPI_MAX_CPUS || base % 16)
		return -EINVAL;
	memset(buf, 0, cap);
	acpi_put_bytes(&b, rsdp_space, RSDP_LEN);	/* filled last */
	facs = build_facs(&b);
	dsdt = build_dsdt(&b, ctx);
	build_fadt(&b, facs, dsdt);
	build_madt(&b, ctx->nr_cpus);
	for (struct acpi_extension *e = ext_head; e; e = e->next)
		if (e->tables)
			e->tables(&b, ctx);
	build_xsdt(&b, &xsdt);
	if (b.err)
		return b.err;
	fill_rsdp(&b, xsdt);
	if (used)
		*used = b.len;
	return 0;
}

int acpi_build(const struct guest_mem *gm, const struct acpi_build_ctx *ctx,
	       uint64_t *rsdp_addr)
{
	size_t cap = BOOT_ACPI_END - BOOT_ACPI_ADDR, used = 0;
	uint8_t *buf = calloc(1, cap);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = acpi_build_buf(buf, cap, BOOT_ACPI_ADDR, ctx, &used);
	if (ret)
		goto out;
	ret = gm_write(gm, BOOT_ACPI_ADDR, buf, used);
	if (ret)
		goto out;
	*rsdp_addr = BOOT_ACPI_ADDR;
out:
	free(buf);
	return ret;
}
