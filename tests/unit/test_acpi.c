/* ACPI tables built into a host buffer and parsed back: RSDP -> XSDT ->
 * every table, checksums, MADT contents and DSDT names. With
 * EMBER_ACPI_DUMP_DIR set, test_dump also writes each table as <SIG>.dat
 * for tests/integration/acpi_iasl.sh. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm.h"
#include "devices/acpi/pm.h"
#include "devices/device.h"
#include "vmm/acpi/acpi.h"
#include "vmm/boot/boot.h"
#include "base/guest_mem.h"
#include "base/bus.h"
#include "irqchip/irqchip.h"
#include "helpers/ck_run.h"
#include "helpers/stderr_capture.h"

#define ACPI_AREA (BOOT_ACPI_END - BOOT_ACPI_ADDR)

struct tables {
	uint8_t *buf;
	size_t used;
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt, *facs;
	const uint8_t *all[ACPI_MAX_TABLES + 2];
	unsigned nr_all;	/* XSDT entries plus DSDT, XSDT itself */
};

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Pointer into the buffer for guest address gpa with len bytes, checked. */
static const uint8_t *at(const struct tables *t, uint64_t gpa, size_t len)
{
	ck_assert_uint_ge(gpa, BOOT_ACPI_ADDR);
	ck_assert_uint_le(gpa - BOOT_ACPI_ADDR + len, t->used);
	return t->buf + (gpa - BOOT_ACPI_ADDR);
}

static const uint8_t *check_table(const struct tables *t, uint64_t gpa, const char *sig)
{
	const uint8_t *p = at(t, gpa, 36);
	uint32_t len = rd32(p + 4);

	ck_assert_msg(!memcmp(p, sig, 4), "expected %s at 0x%llx, found %.4s", sig,
		      (unsigned long long)gpa, (const char *)p);
	ck_assert_uint_ge(len, 36);
	at(t, gpa, len);
	ck_assert_msg(acpi_checksum(p, len) == 0, "%s checksum", sig);
	ck_assert_msg(!memcmp(p + 10, "EMBER ", 6), "%s OEM id", sig);
	return p;
}

static void build(struct tables *t, unsigned nr_cpus)
{
	struct acpi_build_ctx ctx = { .nr_cpus = nr_cpus };
	const uint8_t *x;
	unsigned n;

	memset(t, 0, sizeof(*t));
	t->buf = calloc(1, ACPI_AREA);
	ck_assert_ptr_nonnull(t->buf);
	ck_assert_int_eq(acpi_build_buf(t->buf, ACPI_AREA, BOOT_ACPI_ADDR, &ctx, &t->used), 0);

	t->rsdp = t->buf;
	ck_assert(!memcmp(t->rsdp, "RSD PTR ", 8));
	ck_assert_int_eq(acpi_checksum(t->rsdp, 20), 0);
	ck_assert_int_eq(acpi_checksum(t->rsdp, 36), 0);
	ck_assert_int_eq(t->rsdp[15], 2);
	ck_assert_uint_eq(rd32(t->rsdp + 20), 36);

	t->xsdt = x = check_table(t, rd64(t->rsdp + 24), "XSDT");
	t->all[t->nr_all++] = x;
	n = (rd32(x + 4) - 36) / 8;
	ck_assert_uint_eq((rd32(x + 4) - 36) % 8, 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = rd64(x + 36 + 8 * i);
		const uint8_t *p = at(t, gpa, 36);

		check_table(t, gpa, (const char *)p);
		t->all[t->nr_all++] = p;
		if (!memcmp(p, "FACP", 4))
			t->fadt = p;
		else if (!memcmp(p, "APIC", 4))
			t->madt = p;
	}
	ck_assert_ptr_nonnull(t->fadt);
	ck_assert_ptr_nonnull(t->madt);

	/* DSDT through both pointers, FACS through FIRMWARE_CTRL. */
	ck_assert_uint_eq(rd32(t->fadt + 40), rd64(t->fadt + 140));
	t->dsdt = check_table(t, rd64(t->fadt + 140), "DSDT");
	t->all[t->nr_all++] = t->dsdt;
	ck_assert_uint_eq(rd64(t->fadt + 132), 0);
	ck_assert_uint_eq(rd32(t->fadt + 36) % 64, 0);
	t->facs = at(t, rd32(t->fadt + 36), 64);
	ck_assert(!memcmp(t->facs, "FACS", 4));
	ck_assert_uint_eq(rd32(t->facs + 4), 64);
}

static void release(struct tables *t)
{
	free(t->buf);
}

static void check_fadt(const uint8_t *f)
{
	ck_assert_uint_eq(rd32(f + 4), 276);
	ck_assert_uint_eq(f[8], 6);				/* revision */
	ck_assert_uint_eq(rd16(f + 46), 9);			/* SCI_INT */
	ck_assert_uint_eq(rd32(f + 48), 0);			/* SMI_CMD */
	ck_assert_uint_eq(rd32(f + 56), ACPI_PM1A_EVT_PORT);
	ck_assert_uint_eq(rd32(f + 64), ACPI_PM1A_CNT_PORT);
	ck_assert_uint_eq(rd32(f + 76), 0);			/* no PM timer */
	ck_assert_uint_eq(f[88], 4);
	ck_assert_uint_eq(f[89], 2);
	ck_assert_uint_eq(f[91], 0);
	ck_assert_uint_eq(rd16(f + 109) & 3, 3);		/* legacy devices + 8042 */
	/* WBINVD, PROC_C1, SLP_BUTTON, RESET_REG_SUP; not HW_REDUCED, not PWR_BUTTON */
	ck_assert_uint_eq(rd32(f + 112), (1u << 0) | (1u << 2) | (1u << 5) | (1u << 10));
	ck_assert_uint_eq(f[116], 1);				/* reset reg: system I/O */
	ck_assert_uint_eq(f[117], 8);
	ck_assert_uint_eq(rd64(f + 120), ACPI_RESET_PORT);
	ck_assert_uint_eq(f[128], ACPI_RESET_VALUE);
	ck_assert_uint_eq(f[148], 1);				/* X_PM1a_EVT_BLK */
	ck_assert_uint_eq(f[149], 32);
	ck_assert_uint_eq(rd64(f + 152), ACPI_PM1A_EVT_PORT);
	ck_assert_uint_eq(f[172], 1);				/* X_PM1a_CNT_BLK */
	ck_assert_uint_eq(f[173], 16);
	ck_assert_uint_eq(rd64(f + 176), ACPI_PM1A_CNT_PORT);
}

static void check_madt(const uint8_t *m, unsigned nr_cpus)
{
	uint32_t len = rd32(m + 4);
	unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;
	unsigned seen_irq0 = 0, seen_irq9 = 0;

	ck_assert_uint_eq(rd32(m + 36), 0xFEE00000u);
	ck_assert_uint_eq(rd32(m + 40) & 1, 1);			/* PCAT_COMPAT */
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = m + off;

		ck_assert_uint_ge(e[1], 2);
		ck_assert_uint_le(off + e[1], len);
		switch (e[0]) {
		case 0:
			ck_assert_uint_eq(e[1], 8);
			ck_assert_uint_eq(e[2], lapics);	/* uid */
			ck_assert_uint_eq(e[3], lapics);	/* APIC id */
			ck_assert_uint_eq(rd32(e + 4), 1);
			lapics++;
			break;
		case 1:
			ck_assert_uint_eq(e[1], 12);
			ck_assert_uint_ge(e[2], nr_cpus);	/* no clash with LAPIC ids */
			ck_assert_uint_eq(rd32(e + 4), 0xFEC00000u);
			ck_assert_uint_eq(rd32(e + 8), 0);
			ioapics++;
			break;
		case 2:
			ck_assert_uint_eq(e[1], 10);
			ck_assert_uint_eq(e[2], 0);
			if (e[3] == 0) {
				ck_assert_uint_eq(rd32(e + 4), 2);
				ck_assert_uint_eq(rd16(e + 8), 0);
				seen_irq0++;
			} else if (e[3] == 9) {
				ck_assert_uint_eq(rd32(e + 4), 9);
				ck_assert_uint_eq(rd16(e + 8), 0xD);	/* level, active high */
				seen_irq9++;
			}
			isos++;
			break;
		case 4:
			ck_assert_uint_eq(e[1], 6);
			ck_assert_uint_eq(e[2], 0xFF);
			ck_assert_uint_eq(e[5], 1);		/* LINT1 */
			nmis++;
			break;
		default:
			ck_abort_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	ck_assert_uint_eq(lapics, nr_cpus);
	ck_assert_uint_eq(ioapics, 1);
	ck_assert_uint_eq(isos, 2);
	ck_assert_uint_eq(seen_irq0, 1);
	ck_assert_uint_eq(seen_irq9, 1);
	ck_assert_uint_eq(nmis, 1);
}

static int contains(const uint8_t *p, size_t n, const void *needle, size_t len)
{
	return memmem(p, n, needle, len) != NULL;
}

static void check_dsdt(const uint8_t *d)
{
	static const uint8_t pnp0501[] = { 0x0C, 0x41, 0xD0, 0x05, 0x01 };
	static const uint8_t pnp0c0c[] = { 0x0C, 0x41, 0xD0, 0x0C, 0x0C };
	/* Name(_S5_, Package(4) {5, 5, 0, 0}) */
	static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04,
				      0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00 };
	/* IO(Decode16, 0x3F8, 0x3F8, 1, 8), IRQNoFlags(){4}, EndTag */
	static const uint8_t crs[] = { 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08,
				       0x22, 0x10, 0x00, 0x79, 0x00 };
	static const uint8_t sb[] = { 0x10 };
	size_t n = rd32(d + 4);

	ck_assert_uint_eq(d[8], 2);
	ck_assert(contains(d, n, "_SB_", 4));
	ck_assert(contains(d, n, "COM1", 4));
	ck_assert(contains(d, n, pnp0501, sizeof(pnp0501)));
	ck_assert(contains(d, n, pnp0c0c, sizeof(pnp0c0c)));
	ck_assert(contains(d, n, s5, sizeof(s5)));
	ck_assert(contains(d, n, crs, sizeof(crs)));
	ck_assert(!memcmp(d + 36, sb, 1));		/* starts with Scope() */
}

static void check_cpus(unsigned nr)
{
	struct tables t;

	build(&t, nr);
	ck_assert_uint_eq(t.nr_all, 4);			/* XSDT, FACP, APIC, DSDT */
	check_fadt(t.fadt);
	check_madt(t.madt, nr);
	check_dsdt(t.dsdt);
	release(&t);
}

START_TEST(test_1cpu)
{
	check_cpus(1);
}
END_TEST

START_TEST(test_2cpu)
{
	check_cpus(2);
}
END_TEST

START_TEST(test_8cpu)
{
	check_cpus(8);
}
END_TEST

START_TEST(test_max_cpus)
{
	check_cpus(ACPI_MAX_CPUS);
}
END_TEST

START_TEST(test_bad_args)
{
	struct acpi_build_ctx ctx = { .nr_cpus = 0 };
	uint8_t *buf = calloc(1, ACPI_AREA);
	size_t used;

	ck_assert_int_eq(acpi_build_buf(buf, ACPI_AREA, BOOT_ACPI_ADDR, &ctx, &used), -EINVAL);
	ctx.nr_cpus = ACPI_MAX_CPUS + 1;
	ck_assert_int_eq(acpi_build_buf(buf, ACPI_AREA, BOOT_ACPI_ADDR, &ctx, &used), -EINVAL);
	ctx.nr_cpus = 1;
	ck_assert_int_eq(acpi_build_buf(buf, ACPI_AREA, BOOT_ACPI_ADDR + 4, &ctx, &used), -EINVAL);
	/* Too small a buffer fails cleanly at every size. */
	for (size_t cap = 0; cap < 600; cap += 7)
		ck_assert_int_eq(acpi_build_buf(buf, cap, BOOT_ACPI_ADDR, &ctx, &used), -ENOSPC);
	free(buf);
}
END_TEST

START_TEST(test_guest_copy)
{
	struct guest_mem gm = { 0 };
	struct acpi_build_ctx ctx = { .nr_cpus = 2 };
	uint8_t *ram = calloc(1, 2 << 20);
	uint64_t rsdp = 0;

	ck_assert_int_eq(gm_add_region(&gm, 0, 2 << 20, ram), 0);
	ck_assert_int_eq(acpi_build(&gm, &ctx, &rsdp), 0);
	ck_assert_uint_eq(rsdp, BOOT_ACPI_ADDR);
	ck_assert_uint_eq(rsdp % 16, 0);
	ck_assert(!memcmp(ram + rsdp, "RSD PTR ", 8));
	free(ram);

	/* RAM that does not cover the BIOS area. */
	memset(&gm, 0, sizeof(gm));
	ram = calloc(1, 0x80000);
	ck_assert_int_eq(gm_add_region(&gm, 0, 0x80000, ram), 0);
	ck_assert_int_eq(acpi_build(&gm, &ctx, &rsdp), -EFAULT);
	free(ram);
}
END_TEST

START_TEST(test_aml_encoding)
{
	uint8_t buf[8192];
	struct acpi_builder b = { .buf = buf, .cap = sizeof(buf) };
	static const uint8_t path[] = { 0x5C, 0x2E, '_', 'S', 'B', '_', 'P', 'C', 'I', '0' };
	static const uint8_t multi[] = { 0x2F, 0x03, 'A', '_', '_', '_', 'B', 'C', '_', '_',
					 'D', 'E', 'F', 'G' };

	aml_name(&b, "\\_SB.PCI0");
	ck_assert_int_eq(b.err, 0);
	ck_assert_uint_eq(b.len, sizeof(path));
	ck_assert(!memcmp(buf, path, sizeof(path)));

	b.len = 0;
	aml_name(&b, "A.BC.DEFG");
	ck_assert(!memcmp(buf, multi, sizeof(multi)));

	b.len = 0;
	aml_int(&b, 0x12345678ABULL);
	ck_assert_uint_eq(b.len, 9);
	ck_assert_uint_eq(buf[0], 0x0E);

	/* PkgLength: 1 byte up to 63, then 2 bytes (low nibble + 8 bits). */
	b.len = 0;
	aml_package_begin(&b, 200);
	for (int i = 0; i < 200; i++)
		aml_int(&b, 2);			/* 0x0A 0x02 each */
	aml_end(&b);
	ck_assert_int_eq(b.err, 0);
	ck_assert_uint_eq(buf[0], 0x12);
	ck_assert_uint_eq(buf[1] >> 6, 1);
	ck_assert_uint_eq((buf[1] & 0xF) | buf[2] << 4, 2 + 1 + 400);
	ck_assert_uint_eq(b.len, 1 + 2 + 1 + 400);

	/* Three-byte PkgLength and a buffer's own size prefix. */
	b.len = 0;
	aml_buffer_begin(&b);
	for (int i = 0; i < 5000; i++)
		acpi_put8(&b, 0xAA);
	aml_end(&b);
	ck_assert_int_eq(b.err, 0);
	ck_assert_uint_eq(buf[1] >> 6, 2);
	ck_assert_uint_eq((buf[1] & 0xF) | buf[2] << 4 | buf[3] << 12, 3 + 3 + 5000);
	ck_assert_uint_eq(buf[4], 0x0B);		/* WordPrefix 5000 */
	ck_assert_uint_eq(buf[5] | buf[6] << 8, 5000);

	/* Errors are sticky and never overrun. */
	b.len = 0;
	aml_name(&b, "TOOLONG");
	ck_assert_int_eq(b.err, -EINVAL);
	b.err = 0;
	aml_name(&b, "1ABC");
	ck_assert_int_eq(b.err, -EINVAL);
	b.err = 0;
	aml_name(&b, "A.B.C.D.E.F.G.H.I.J.K.L.M.N.O.P.Q.R");
	ck_assert_int_eq(b.err, -EINVAL);
	b.err = 0;
	aml_end(&b);
	ck_assert_int_eq(b.err, -EINVAL);
	b.err = 0;
	aml_eisaid(&b, "pnp0501");
	ck_assert_int_eq(b.err, -EINVAL);
	b.err = 0;
	b.len = 0;
	for (int i = 0; i <= ACPI_AML_MAX_DEPTH; i++)
		aml_scope_begin(&b, "X");
	ck_assert_int_eq(b.err, -EINVAL);
}
END_TEST

static void ext_dsdt(struct acpi_builder *b, const struct acpi_build_ctx *ctx)
{
	aml_device_begin(b, "PCI0");
	aml_name_decl(b, "_HID");
	aml_eisaid(b, "PNP0A08");
	aml_name_decl(b, "_UID");
	aml_int(b, ctx->nr_cpus);
	aml_end(b);
}

static void ext_tables(struct acpi_builder *b, const struct acpi_build_ctx *ctx)
{
	(void)ctx;
	acpi_table_begin(b, "MCFG", 1);
	acpi_put64(b, 0);
	acpi_put64(b, 0xB0000000ULL);
	acpi_put16(b, 0);
	acpi_put8(b, 0);
	acpi_put8(b, 0);
	acpi_put32(b, 0);
	acpi_table_end(b, 1);
}

static struct acpi_extension test_ext = {
	.name = "test-pci", .dsdt_sb = ext_dsdt, .tables = ext_tables,
};

/* Runs in its own (forked) process: the registration does not leak. */
START_TEST(test_extension)
{
	struct tables t;
	const uint8_t *mcfg = NULL;

	acpi_register_extension(&test_ext);
	build(&t, 2);
	ck_assert_uint_eq(t.nr_all, 5);
	for (unsigned i = 0; i < t.nr_all; i++)
		if (!memcmp(t.all[i], "MCFG", 4))
			mcfg = t.all[i];
	ck_assert_ptr_nonnull(mcfg);
	ck_assert_uint_eq(rd32(mcfg + 4), 60);
	ck_assert(contains(t.dsdt, rd32(t.dsdt + 4), "PCI0", 4));
	check_madt(t.madt, 2);
	release(&t);
}
END_TEST

static void dump(const char *dir, const char *name, const uint8_t *p, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	ck_assert_msg(f != NULL, "cannot create %s", path);
	ck_assert_uint_eq(fwrite(p, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_dump)
{
	const char *dir = getenv("EMBER_ACPI_DUMP_DIR");
	struct tables t;

	if (!dir || !*dir)
		return;
	build(&t, 4);
	/* iasl -d cannot take a bare RSDP: it gets another extension. */
	dump(dir, "rsdp.bin", t.rsdp, 36);
	dump(dir, "FACS.dat", t.facs, 64);
	for (unsigned i = 0; i < t.nr_all; i++) {
		char name[16];

		snprintf(name, sizeof(name), "%.4s.dat", (const char *)t.all[i]);
		dump(dir, name, t.all[i], rd32(t.all[i] + 4));
	}
	release(&t);
}
END_TEST

/* The PM device through the PIO bus, with a device context that has no KVM
 * behind it: the SCI cannot be observed (irqchip_set_line fails and is
 * logged), the register semantics and machine requests can. */
struct pm_env {
	struct kvm_vm kvm;
	struct irqchip irqchip;
	struct bus pio_bus;
	struct device_ctx ctx;
	const struct device_desc *desc;
	void *state;
	/* The machine's side: the requests the device made. */
	unsigned nr_requests;
	enum device_machine_request req;
	const char *cause;
};

static void fake_request(void *machine, enum device_machine_request req, int status,
			 const char *cause)
{
	struct pm_env *e = machine;

	(void)status;
	e->nr_requests++;
	e->req = req;
	e->cause = cause;
}

static const struct device_machine_ops fake_machine_ops = {
	.request = fake_request,
};

static void pm_env_init(struct pm_env *e)
{
	memset(e, 0, sizeof(*e));
	e->kvm.vm_fd = -1;
	e->irqchip.kvm = &e->kvm;
	ck_assert_int_eq(bus_init(&e->pio_bus, "pio"), 0);
	e->desc = device_find(ACPI_PM_DEVICE_NAME);
	ck_assert_ptr_nonnull(e->desc);
	ck_assert_int_eq(e->desc->level, DEVICE_LEVEL_LEGACY);
	ck_assert_ptr_nonnull(e->desc->power_button);
	e->ctx = (struct device_ctx){ .pio_bus = &e->pio_bus, .irqchip = &e->irqchip,
				      .ops = &fake_machine_ops, .machine = e };
	ck_assert_int_eq(e->desc->realize(e->desc, &e->ctx, &e->state), 0);
}

static void pm_env_free(struct pm_env *e)
{
	e->desc->destroy(e->state);
	bus_destroy(&e->pio_bus);
}

static void press_power_button(struct pm_env *e)
{
	e->desc->power_button(e->state);
}

static uint16_t pio_rd16(struct pm_env *e, uint16_t port)
{
	uint16_t v = 0;

	ck_assert(bus_read(&e->pio_bus, port, &v, 2));
	return v;
}

static void pio_wr16(struct pm_env *e, uint16_t port, uint16_t v)
{
	ck_assert(bus_write(&e->pio_bus, port, &v, 2));
}

START_TEST(test_pm_registers)
{
	struct pm_env e;
	uint32_t evt = 0;
	uint8_t b;

	pm_env_init(&e);
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_CNT_PORT) & 1, 1);	/* SCI_EN */
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_EVT_PORT), 0);

	pio_wr16(&e, ACPI_PM1A_EVT_PORT + 2, 1u << 8);		/* PWRBTN_EN */
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_EVT_PORT + 2), 1u << 8);
	press_power_button(&e);
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_EVT_PORT), 1u << 8);
	/* A 32-bit read covers STS and EN. */
	ck_assert(bus_read(&e.pio_bus, ACPI_PM1A_EVT_PORT, &evt, 4));
	ck_assert_uint_eq(evt, 1u << 8 | 1u << 24);
	/* Writing 0 leaves the status; writing 1 clears it. */
	pio_wr16(&e, ACPI_PM1A_EVT_PORT, 0);
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_EVT_PORT), 1u << 8);
	b = 0x01;						/* high byte only */
	ck_assert(bus_write(&e.pio_bus, ACPI_PM1A_EVT_PORT + 1, &b, 1));
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_EVT_PORT), 0);

	/* Reset state after a VM reset. */
	press_power_button(&e);
	e.desc->reset(e.state);
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_EVT_PORT), 0);
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_EVT_PORT + 2), 0);
	pm_env_free(&e);
}
END_TEST

START_TEST(test_pm_sleep_and_reset)
{
	struct pm_env e;
	uint8_t v;

	pm_env_init(&e);
	/* S3 (type 1) with SLP_EN: ignored. SLP_EN itself reads back 0. */
	pio_wr16(&e, ACPI_PM1A_CNT_PORT, 1u << 10 | 1u << 13);
	ck_assert_uint_eq(e.nr_requests, 0);
	ck_assert_uint_eq(pio_rd16(&e, ACPI_PM1A_CNT_PORT), 1u << 10 | 1);
	/* SLP_TYP=5 first, then SLP_EN, the way ACPICA does it. */
	pio_wr16(&e, ACPI_PM1A_CNT_PORT, 5u << 10);
	ck_assert_uint_eq(e.nr_requests, 0);
	pio_wr16(&e, ACPI_PM1A_CNT_PORT, 5u << 10 | 1u << 13);
	ck_assert_uint_eq(e.nr_requests, 1);
	ck_assert_int_eq(e.req, DEVICE_REQ_POWEROFF);
	ck_assert_str_eq(e.cause, "ACPI S5 (PM1a_CNT)");

	v = 0x01;
	ck_assert(bus_write(&e.pio_bus, ACPI_RESET_PORT, &v, 1));
	ck_assert_uint_eq(e.nr_requests, 1);
	v = ACPI_RESET_VALUE;
	ck_assert(bus_write(&e.pio_bus, ACPI_RESET_PORT, &v, 1));
	ck_assert_uint_eq(e.nr_requests, 2);
	ck_assert_int_eq(e.req, DEVICE_REQ_RESET);
	ck_assert_str_eq(e.cause, "ACPI reset register");
	pm_env_free(&e);
}
END_TEST

/* A guest asking for an unsupported sleep state in a loop cannot flood the
 * log (a full stderr pipe would stall the vCPU). */
START_TEST(test_pm_sleep_log_rate_limited)
{
	struct pm_env e;
	unsigned lines;

	pm_env_init(&e);
	stderr_capture_begin();
	for (int i = 0; i < 1000; i++)
		pio_wr16(&e, ACPI_PM1A_CNT_PORT, 1u << 10 | 1u << 13);
	lines = stderr_capture_end();
	ck_assert_uint_ge(lines, 1);
	ck_assert_uint_le(lines, 10);
	ck_assert_uint_eq(e.nr_requests, 0);
	pm_env_free(&e);
}
END_TEST

static Suite *acpi_suite(void)
{
	Suite *s = suite_create("acpi");
	TCase *tc = tcase_create("tables");

	tcase_add_test(tc, test_1cpu);
	tcase_add_test(tc, test_2cpu);
	tcase_add_test(tc, test_8cpu);
	tcase_add_test(tc, test_max_cpus);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_guest_copy);
	tcase_add_test(tc, test_aml_encoding);
	tcase_add_test(tc, test_dump);
	suite_add_tcase(s, tc);

	tc = tcase_create("pm");
	tcase_add_test(tc, test_pm_registers);
	tcase_add_test(tc, test_pm_sleep_and_reset);
	tcase_add_test(tc, test_pm_sleep_log_rate_limited);
	suite_add_tcase(s, tc);

	tc = tcase_create("extension");
	tcase_add_test(tc, test_extension);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(acpi_suite());
}
