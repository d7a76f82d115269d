/* bzImage loader and boot layout: synthetic images in host memory, guest
 * RAM from calloc'd regions. Valid images must fill boot_params exactly;
 * bad ones must fail with a one-line reason and never crash. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/boot/boot.h"
#include "base/guest_mem.h"
#include "base/byteorder.h"
#include "helpers/ck_run.h"

#define MiB		(1ULL << 20)
#define RAM_SIZE	(64 * MiB)
#define PAYLOAD_SIZE	(64 * 1024)
#define PREF_ADDR	(16 * MiB)
#define INIT_SIZE	(4 * MiB)
#define HIGH_SIZE	(2 * MiB)

struct env {
	struct guest_mem gm;
	uint8_t *ram, *high;
	uint8_t *img;
	size_t img_size;
	struct boot_params_in in;
	struct boot_info bi;
	char err[256];
};

/* A 2.15 header like a real x86_64 kernel's, 4 setup sectors. */
static void make_image(struct env *e, unsigned setup_sects, size_t payload)
{
	unsigned sects = setup_sects ? setup_sects : 4;
	size_t setup = (sects + 1) * 512;
	uint8_t *h;

	e->img_size = setup + payload;
	e->img = calloc(1, e->img_size);
	ck_assert_ptr_nonnull(e->img);
	h = e->img;
	h[0x1f1] = (uint8_t)setup_sects;
	wr16(h + 0x1fe, 0xAA55);
	h[0x200] = 0xEB;
	h[0x201] = 0x6a;			/* header ends at 0x26c */
	memcpy(h + 0x202, "HdrS", 4);
	wr16(h + 0x206, 0x020f);
	h[0x211] = 0x01;			/* LOADED_HIGH */
	wr32(h + 0x22c, 0x7fffffff);		/* initrd_addr_max */
	wr32(h + 0x230, 0x200000);		/* kernel_alignment */
	h[0x234] = 1;				/* relocatable */
	h[0x235] = 21;				/* min_alignment */
	wr16(h + 0x236, 0x1 | 0x2 | 0x8);	/* KERNEL_64 | CAN_BE_LOADED_ABOVE_4G | EFI */
	wr32(h + 0x238, 2047);			/* cmdline_size */
	wr64(h + 0x258, PREF_ADDR);
	wr32(h + 0x260, INIT_SIZE);
	for (size_t i = setup; i < e->img_size; i++)
		h[i] = (uint8_t)(i * 7 + 3);
	e->in.kernel = e->img;
	e->in.kernel_size = e->img_size;
}

static void env_init(struct env *e, uint64_t ram_size, bool high)
{
	memset(e, 0, sizeof(*e));
	e->ram = calloc(1, ram_size);
	ck_assert_ptr_nonnull(e->ram);
	ck_assert_int_eq(gm_add_region(&e->gm, 0, ram_size, e->ram), 0);
	if (high) {
		e->high = calloc(1, HIGH_SIZE);
		ck_assert_int_eq(gm_add_region(&e->gm, GM_MMIO_HOLE_END, HIGH_SIZE, e->high), 0);
	}
	make_image(e, 0, PAYLOAD_SIZE);
	e->in.cmdline = "console=ttyS0 root=/dev/vda";
	e->in.rsdp_addr = 0xE0000;
}

static void env_free(struct env *e)
{
	free(e->ram);
	free(e->high);
	free(e->img);
}

static int load(struct env *e)
{
	e->err[0] = '\0';
	return bzimage_load(&e->gm, &e->in, &e->bi, e->err, sizeof(e->err));
}

/* Every failure names its reason in one line. */
static void expect_fail(struct env *e, const char *needle)
{
	int ret = load(e);

	ck_assert_msg(ret < 0, "load succeeded, expected failure mentioning '%s'", needle);
	ck_assert_msg(strstr(e->err, needle), "error '%s' does not mention '%s'", e->err, needle);
	ck_assert_ptr_null(strchr(e->err, '\n'));
}

START_TEST(test_valid_load)
{
	static uint8_t initrd[3 * 4096 + 123];
	struct env e;
	const uint8_t *bp;
	uint64_t kend;

	env_init(&e, RAM_SIZE, false);
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i ^ 0x5a);
	e.in.initrd = initrd;
	e.in.initrd_size = sizeof(initrd);
	ck_assert_msg(load(&e) == 0, "%s", e.err);

	ck_assert_uint_eq(e.bi.entry, PREF_ADDR + 0x200);
	ck_assert(e.bi.entry_64bit);
	ck_assert_uint_eq(e.bi.boot_arg, BOOT_PARAMS_ADDR);
	ck_assert_uint_eq(e.bi.kernel_start, PREF_ADDR);
	ck_assert_uint_eq(e.bi.kernel_end, PREF_ADDR + INIT_SIZE);
	ck_assert_uint_eq(e.bi.rsdp_addr, 0xE0000);
	ck_assert(!memcmp(e.ram + PREF_ADDR, e.img + 5 * 512, PAYLOAD_SIZE));

	/* initrd: page aligned, above the kernel, at the top of RAM, copied. */
	kend = e.bi.kernel_end;
	ck_assert_uint_eq(e.bi.initrd_size, sizeof(initrd));
	ck_assert_uint_eq(e.bi.initrd_addr % 4096, 0);
	ck_assert_uint_ge(e.bi.initrd_addr, kend);
	ck_assert_uint_le(e.bi.initrd_addr + sizeof(initrd), RAM_SIZE);
	ck_assert_uint_gt(e.bi.initrd_addr + sizeof(initrd) + 4096, RAM_SIZE);
	ck_assert(!memcmp(e.ram + e.bi.initrd_addr, initrd, sizeof(initrd)));

	bp = e.ram + BOOT_PARAMS_ADDR;
	ck_assert(!memcmp(bp + 0x202, "HdrS", 4));
	ck_assert_uint_eq(rd16(bp + 0x1fe), 0xAA55);
	ck_assert_uint_eq(rd16(bp + 0x206), 0x020f);
	ck_assert_uint_eq(bp[0x210], 0xff);			/* type_of_loader */
	ck_assert_uint_eq(bp[0x211], 0x81);			/* LOADED_HIGH | CAN_USE_HEAP */
	ck_assert_uint_eq(rd16(bp + 0x224), 0xfe00);		/* heap_end_ptr */
	ck_assert_uint_eq(rd32(bp + 0x228), BOOT_CMDLINE_ADDR);
	ck_assert_uint_eq(rd32(bp + 0x0c8), 0);
	ck_assert_uint_eq(rd32(bp + 0x218), e.bi.initrd_addr);
	ck_assert_uint_eq(rd32(bp + 0x21c), sizeof(initrd));
	ck_assert_uint_eq(rd32(bp + 0x0c0), 0);
	ck_assert_uint_eq(rd32(bp + 0x0c4), 0);
	ck_assert_uint_eq(rd64(bp + 0x070), 0xE0000);		/* acpi_rsdp_addr */
	ck_assert_uint_eq(rd32(bp + 0x260), INIT_SIZE);
	ck_assert_uint_eq(bp[0x1ef], 0);			/* sentinel */
	ck_assert_str_eq((const char *)e.ram + BOOT_CMDLINE_ADDR, e.in.cmdline);

	/* e820: low RAM, EBDA, BIOS area, RAM from 1 MiB. */
	ck_assert_uint_eq(bp[0x1e8], 4);
	ck_assert_uint_eq(rd64(bp + 0x2d0), 0);
	ck_assert_uint_eq(rd64(bp + 0x2d8), BOOT_EBDA_START);
	ck_assert_uint_eq(rd32(bp + 0x2e0), E820_RAM);
	ck_assert_uint_eq(rd64(bp + 0x2e4), BOOT_EBDA_START);
	ck_assert_uint_eq(rd64(bp + 0x2ec), 0xA0000 - BOOT_EBDA_START);
	ck_assert_uint_eq(rd32(bp + 0x2f4), E820_RESERVED);
	ck_assert_uint_eq(rd64(bp + 0x2f8), 0xE0000);
	ck_assert_uint_eq(rd64(bp + 0x300), 0x20000);
	ck_assert_uint_eq(rd32(bp + 0x308), E820_RESERVED);
	ck_assert_uint_eq(rd64(bp + 0x30c), MiB);
	ck_assert_uint_eq(rd64(bp + 0x314), RAM_SIZE - MiB);
	ck_assert_uint_eq(rd32(bp + 0x31c), E820_RAM);
	env_free(&e);
}
END_TEST

START_TEST(test_gdt_and_page_tables)
{
	struct env e;
	const uint8_t *pd;

	env_init(&e, RAM_SIZE, false);
	ck_assert_msg(load(&e) == 0, "%s", e.err);
	ck_assert_uint_eq(rd64(e.ram + BOOT_GDT_ADDR + BOOT_GDT_CODE32), BOOT_GDT_DESC_CODE32);
	ck_assert_uint_eq(rd64(e.ram + BOOT_GDT_ADDR + BOOT_GDT_CODE64), 0x00af9b000000ffffULL);
	ck_assert_uint_eq(rd64(e.ram + BOOT_GDT_ADDR + BOOT_GDT_DATA), 0x00cf93000000ffffULL);
	ck_assert_uint_eq(rd64(e.ram + BOOT_GDT_ADDR + BOOT_GDT_TSS), BOOT_GDT_DESC_TSS_LO);
	ck_assert_uint_eq(rd64(e.ram + BOOT_GDT_ADDR), 0);
	ck_assert_uint_eq(boot_gdt[BOOT_GDT_CODE64 >> 3], BOOT_GDT_DESC_CODE64);

	ck_assert_uint_eq(rd64(e.ram + BOOT_PML4_ADDR), BOOT_PDPT_ADDR | 3);
	ck_assert_uint_eq(rd64(e.ram + BOOT_PML4_ADDR + 8), 0);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(rd64(e.ram + BOOT_PDPT_ADDR + 8 * i), (BOOT_PD_ADDR + 4096 * i) | 3);
	ck_assert_uint_eq(rd64(e.ram + BOOT_PDPT_ADDR + 32), 0);
	pd = e.ram + BOOT_PD_ADDR;
	ck_assert_uint_eq(rd64(pd), 0x83);
	ck_assert_uint_eq(rd64(pd + 8), (2 * MiB) | 0x83);
	ck_assert_uint_eq(rd64(pd + 4 * 4096 - 8), (4ULL << 30) - 2 * MiB + 0x83);
	env_free(&e);
}
END_TEST

START_TEST(test_e820_high_ram)
{
	struct env e;
	struct e820_entry map[E820_MAX];
	unsigned n;

	env_init(&e, RAM_SIZE, true);
	n = boot_e820(&e.gm, map, E820_MAX);
	ck_assert_uint_eq(n, 5);
	ck_assert_uint_eq(map[4].addr, GM_MMIO_HOLE_END);
	ck_assert_uint_eq(map[4].size, HIGH_SIZE);
	ck_assert_uint_eq(map[4].type, E820_RAM);
	/* Truncation to `max` is safe. */
	ck_assert_uint_eq(boot_e820(&e.gm, map, 2), 2);
	ck_assert_uint_eq(boot_e820(&e.gm, map, 0), 0);
	ck_assert_msg(load(&e) == 0, "%s", e.err);
	ck_assert_uint_eq(e.ram[BOOT_PARAMS_ADDR + 0x1e8], 5);
	env_free(&e);
}
END_TEST

START_TEST(test_initrd_below_addr_max)
{
	static uint8_t initrd[10000];
	struct env e;

	env_init(&e, RAM_SIZE, false);
	wr32(e.img + 0x22c, 32 * MiB - 1);
	e.in.initrd = initrd;
	e.in.initrd_size = sizeof(initrd);
	ck_assert_msg(load(&e) == 0, "%s", e.err);
	ck_assert_uint_le(e.bi.initrd_addr + sizeof(initrd), 32 * MiB);
	ck_assert_uint_gt(e.bi.initrd_addr + sizeof(initrd) + 4096, 32 * MiB);
	ck_assert_uint_ge(e.bi.initrd_addr, e.bi.kernel_end);
	env_free(&e);
}
END_TEST

START_TEST(test_relocation)
{
	struct env e;

	/* pref_address beyond RAM: relocatable kernels go to the first aligned spot. */
	env_init(&e, RAM_SIZE, false);
	wr64(e.img + 0x258, 0x10000000);
	ck_assert_msg(load(&e) == 0, "%s", e.err);
	ck_assert_uint_eq(e.bi.kernel_start, 2 * MiB);
	ck_assert_uint_eq(e.bi.entry, 2 * MiB + 0x200);
	/* And with 1 MiB alignment, right at 1 MiB. */
	wr32(e.img + 0x230, 0x100000);
	ck_assert_msg(load(&e) == 0, "%s", e.err);
	ck_assert_uint_eq(e.bi.kernel_start, MiB);
	/* Bad alignment while relocating. */
	wr32(e.img + 0x230, 0x300000);
	expect_fail(&e, "kernel_alignment");
	env_free(&e);
}
END_TEST

START_TEST(test_not_a_kernel)
{
	struct env e;
	uint8_t small[100] = { 0 };

	env_init(&e, RAM_SIZE, false);
	ck_assert(bzimage_is_bzimage(e.img, e.img_size));
	e.in.kernel = small;
	e.in.kernel_size = sizeof(small);
	ck_assert(!bzimage_is_bzimage(small, sizeof(small)));
	expect_fail(&e, "0xAA55");
	e.in.kernel = NULL;
	e.in.kernel_size = 0;
	expect_fail(&e, "0xAA55");

	e.in.kernel = e.img;
	e.in.kernel_size = e.img_size;
	wr16(e.img + 0x1fe, 0);
	expect_fail(&e, "0xAA55");
	wr16(e.img + 0x1fe, 0xAA55);
	memcpy(e.img + 0x202, "HdrZ", 4);
	ck_assert(!bzimage_is_bzimage(e.img, e.img_size));
	expect_fail(&e, "HdrS");
	env_free(&e);
}
END_TEST

START_TEST(test_truncated)
{
	struct env e;

	env_init(&e, RAM_SIZE, false);
	e.in.kernel_size = 0x250;
	expect_fail(&e, "truncated");
	e.in.kernel_size = 0x205;
	expect_fail(&e, "0xAA55");
	/* Whole setup but no payload. */
	e.in.kernel_size = 5 * 512;
	expect_fail(&e, "setup_sects");
	/* A header that claims to end before 2.12's fields. */
	e.in.kernel_size = e.img_size;
	e.img[0x201] = 0x20;
	expect_fail(&e, "truncated");
	env_free(&e);
}
END_TEST

START_TEST(test_old_protocol)
{
	struct env e;

	env_init(&e, RAM_SIZE, false);
	wr16(e.img + 0x206, 0x020b);
	expect_fail(&e, "2.11");
	env_free(&e);
}
END_TEST

START_TEST(test_not_64bit)
{
	struct env e;

	env_init(&e, RAM_SIZE, false);
	wr16(e.img + 0x236, 0x2);
	expect_fail(&e, "XLF_KERNEL_64");
	env_free(&e);
}
END_TEST

START_TEST(test_not_relocatable)
{
	struct env e;

	env_init(&e, RAM_SIZE, false);
	e.img[0x234] = 0;
	ck_assert_msg(load(&e) == 0, "%s", e.err);	/* pref_address fits */
	wr64(e.img + 0x258, 0x10000000);
	expect_fail(&e, "relocatable");
	wr64(e.img + 0x258, 0x1000);			/* below 1 MiB */
	expect_fail(&e, "relocatable");
	wr64(e.img + 0x258, UINT64_MAX - 0x1000);	/* wraps */
	expect_fail(&e, "relocatable");
	env_free(&e);
}
END_TEST

START_TEST(test_payload_too_big)
{
	struct env e;

	env_init(&e, RAM_SIZE, false);
	wr32(e.img + 0x260, 0xFFFFFFFF);		/* init_size */
	expect_fail(&e, "larger than RAM");
	free(e.img);
	/* RAM smaller than the payload itself. */
	make_image(&e, 0, 2 * MiB);
	wr32(e.img + 0x260, 0);
	free(e.ram);
	memset(&e.gm, 0, sizeof(e.gm));
	e.ram = calloc(1, 2 * MiB);
	ck_assert_int_eq(gm_add_region(&e.gm, 0, 2 * MiB, e.ram), 0);
	expect_fail(&e, "larger than RAM");
	env_free(&e);
}
END_TEST

START_TEST(test_cmdline)
{
	struct env e;
	char *line;

	env_init(&e, RAM_SIZE, false);
	line = malloc(4096);
	memset(line, 'a', 2047);
	line[2047] = '\0';
	e.in.cmdline = line;
	ck_assert_msg(load(&e) == 0, "%s", e.err);	/* exactly cmdline_size */
	ck_assert_uint_eq(strlen((const char *)e.ram + BOOT_CMDLINE_ADDR), 2047);
	line[2047] = 'b';
	line[2048] = '\0';
	expect_fail(&e, "cmdline_size");
	e.in.cmdline = NULL;
	ck_assert_msg(load(&e) == 0, "%s", e.err);
	ck_assert_uint_eq(e.ram[BOOT_CMDLINE_ADDR], 0);
	/* A huge cmdline_size cannot overrun the 64 KiB slot. */
	wr32(e.img + 0x238, 0xFFFFFFFF);
	line = realloc(line, BOOT_CMDLINE_MAX + 10);
	memset(line, 'c', BOOT_CMDLINE_MAX + 1);
	line[BOOT_CMDLINE_MAX + 1] = '\0';
	e.in.cmdline = line;
	expect_fail(&e, "command line");
	free(line);
	env_free(&e);
}
END_TEST

START_TEST(test_initrd_too_big)
{
	struct env e;
	uint8_t *initrd = calloc(1, 50 * MiB);

	env_init(&e, RAM_SIZE, false);
	e.in.initrd = initrd;
	e.in.initrd_size = 50 * MiB;			/* only 44 MiB above the kernel */
	expect_fail(&e, "initrd");
	/* initrd_addr_max below the kernel. */
	e.in.initrd_size = 4096;
	wr32(e.img + 0x22c, 8 * MiB);
	expect_fail(&e, "initrd");
	free(initrd);
	env_free(&e);
}
END_TEST

START_TEST(test_oversized_setup_sects)
{
	struct env e;

	env_init(&e, RAM_SIZE, false);
	e.img[0x1f1] = 255;				/* 128 KiB of setup, 66 KiB file */
	expect_fail(&e, "setup_sects");
	env_free(&e);
}
END_TEST

START_TEST(test_place_initrd_direct)
{
	struct env e;
	uint8_t rd[100];
	struct boot_params_in in = { .initrd = rd, .initrd_size = sizeof(rd) };
	struct boot_info bi;
	char err[128];

	env_init(&e, RAM_SIZE, false);
	ck_assert_int_eq(boot_place_initrd(&e.gm, &in, MiB, UINT64_MAX, &bi, err, sizeof(err)), 0);
	ck_assert_uint_eq(bi.initrd_addr, RAM_SIZE - 4096);
	/* Kernel end at the very top: nothing fits, no overflow. */
	ck_assert_int_lt(boot_place_initrd(&e.gm, &in, UINT64_MAX - 10, UINT64_MAX, &bi, err,
					   sizeof(err)), 0);
	ck_assert_int_lt(boot_place_initrd(&e.gm, &in, RAM_SIZE, UINT64_MAX, &bi, err,
					   sizeof(err)), 0);
	in.initrd = NULL;
	ck_assert_int_eq(boot_place_initrd(&e.gm, &in, MiB, 0, &bi, err, sizeof(err)), 0);
	ck_assert_uint_eq(bi.initrd_size, 0);
	env_free(&e);
}
END_TEST

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Randomised headers: valid magic and version most of the time so the
 * later checks get exercised, random everything else. */
START_TEST(test_random_headers)
{
	static uint8_t initrd[5000];
	struct env e;
	uint8_t *orig;
	unsigned ok = 0;

	env_init(&e, 8 * MiB, false);
	orig = malloc(e.img_size);
	memcpy(orig, e.img, e.img_size);
	for (int iter = 0; iter < 3000; iter++) {
		unsigned flips = 1 + rng() % 16;
		int ret;

		memcpy(e.img, orig, e.img_size);
		for (unsigned i = 0; i < flips; i++)
			e.img[0x1f0 + rng() % 0x80] = (uint8_t)rng();
		if (rng() % 4 == 0)
			e.img[0x1f1] = (uint8_t)rng();
		e.in.kernel_size = rng() % 8 ? e.img_size : rng() % e.img_size;
		e.in.initrd = rng() % 2 ? initrd : NULL;
		e.in.initrd_size = rng() % 2 ? sizeof(initrd) : rng() % (16 * MiB);
		if (e.in.initrd_size > sizeof(initrd))
			e.in.initrd = NULL;		/* never read past the buffer */
		ret = load(&e);
		if (ret) {
			ck_assert(e.err[0] != '\0');
			ck_assert_ptr_null(strchr(e.err, '\n'));
		} else {
			ok++;
			ck_assert_uint_ge(e.bi.kernel_start, MiB);
			ck_assert_uint_le(e.bi.kernel_end, 8 * MiB);
			ck_assert_uint_eq(e.bi.entry, e.bi.kernel_start + 0x200);
		}
	}
	ck_assert_uint_gt(ok, 0);
	free(orig);
	env_free(&e);
}
END_TEST

static Suite *bzimage_suite(void)
{
	Suite *s = suite_create("bzimage");
	TCase *tc = tcase_create("load");

	tcase_add_test(tc, test_valid_load);
	tcase_add_test(tc, test_gdt_and_page_tables);
	tcase_add_test(tc, test_e820_high_ram);
	tcase_add_test(tc, test_initrd_below_addr_max);
	tcase_add_test(tc, test_relocation);
	tcase_add_test(tc, test_place_initrd_direct);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_not_a_kernel);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_old_protocol);
	tcase_add_test(tc, test_not_64bit);
	tcase_add_test(tc, test_not_relocatable);
	tcase_add_test(tc, test_payload_too_big);
	tcase_add_test(tc, test_cmdline);
	tcase_add_test(tc, test_initrd_too_big);
	tcase_add_test(tc, test_oversized_setup_sects);
	tcase_add_test(tc, test_random_headers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(bzimage_suite());
}
