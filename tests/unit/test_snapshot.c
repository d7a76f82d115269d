/* The snapshot state format, its validation, the disks list and the
 * memory file (vmm/snapshot/). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/guest_mem.h"
#include "base/bus.h"
#include "devices/device.h"
#include "devices/legacy/uart_16550.h"
#include "devices/pci/pci_internal.h"
#include "vmm/control/qmp.h"
#include "helpers/ck_run.h"
#include "vmm/config.h"
#include "vmm/snapshot/disks.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/snapshot/state.h"

#define NR_VCPUS 2
#define RAM (32ULL << 20)

/* A state every check accepts: what a 2-vCPU, 32 MiB guest would give. */
static void example_state(struct snap_state *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->ember_version, sizeof(s->ember_version), "test");
	s->cpu_model = CPU_MODEL_BASELINE;
	s->memory_size = RAM;
	s->regions[0] = (struct snap_region){ .gpa = 0, .size = RAM, .offset = 0 };
	s->nr_regions = 1;
	s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s->pic_master.chip.pic.elcr_mask = 0xf8;
	s->pic_master.chip.pic.irq_base = 0x30;
	s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s->pic_slave.chip.pic.elcr_mask = 0xde;
	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	s->ioapic.chip.ioapic.base_address = 0xFEC00000;
	for (int i = 0; i < 3; i++)
		s->pit.channels[i].mode = 0xff;
	s->pit.channels[0].count = 0x10000;
	s->clock.clock = 123456789;
	s->devices_json = strdup("{\"serial\":{\"ier\":1}}");
	ck_assert_int_eq(snap_state_alloc_vcpus(s, NR_VCPUS), 0);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		struct snap_vcpu *v = &s->vcpus[i];
		uint32_t id = i << 24;

		v->regs.rflags = 0x202;
		v->regs.rip = 0xffffffff81000000ULL + i;
		v->sregs.apic_base = 0xFEE00000 | 0x800 | (i == 0 ? 0x100 : 0);
		v->sregs.cr0 = 0x80050033;
		v->xsave_len = 4096;
		v->xsave = calloc(1, 4096);
		v->xsave[0] = 0x7f;
		v->has_xcrs = true;
		v->xcrs.nr_xcrs = 1;
		v->xcrs.xcrs[0].value = 3;
		memcpy(&v->lapic.regs[0x20], &id, 4);
		v->nr_msrs = 3;
		v->msrs = calloc(3, sizeof(*v->msrs));
		v->msrs[0] = (struct kvm_msr_entry){ .index = 0x10, .data = 1000000 + i };
		v->msrs[1] = (struct kvm_msr_entry){ .index = 0xc0000082, .data = 0xffffffff81a00000ULL };
		v->msrs[2] = (struct kvm_msr_entry){ .index = 0x6e0, .data = 0 };
		v->events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
		v->mp_state.mp_state = i ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE;
		v->nr_cpuid = 2;
		v->cpuid = calloc(2, sizeof(*v->cpuid));
		v->cpuid[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd };
		v->cpuid[1] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0,
			.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .ebx = 0x29c6fbf };
		v->tsc_khz = 2500000;
	}
}

static uint8_t *example_image(size_t *len)
{
	struct snap_state s;
	uint8_t *img;
	char err[256] = "";

	example_state(&s);
	ck_assert_msg(snap_state_serialize(&s, &img, len, err, sizeof(err)) == 0, "%s", err);
	snap_state_free(&s);
	return img;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void fix_header_crc(uint8_t *img)
{
	put32(img + 80, 0);
	put32(img + 80, snap_crc32(0, img, SNAP_HEADER_SIZE));
}

/* The payload of section (type, index), for tests that change a field and
 * keep the file otherwise valid (fix_crc afterwards). */
static uint8_t *section(uint8_t *img, size_t len, unsigned type, unsigned index, uint64_t *slen)
{
	size_t off = SNAP_HEADER_SIZE;

	while (off + SNAP_SECTION_HDR_SIZE <= len) {
		uint64_t l = get64(img + off + 8);

		if (get32(img + off) == type && get32(img + off + 4) == index) {
			*slen = l;
			return img + off + SNAP_SECTION_HDR_SIZE;
		}
		off += SNAP_SECTION_HDR_SIZE + ((l + 7) & ~7ULL);
	}
	ck_abort_msg("section %u/%u not found", type, index);
	return NULL;
}

static void fix_crc(uint8_t *payload, uint64_t slen)
{
	put32(payload - SNAP_SECTION_HDR_SIZE + 16, snap_crc32(0, payload, slen));
}

/* Parse must fail with a message containing `want`. */
static void expect_reject(const uint8_t *img, size_t len, const char *want)
{
	struct snap_state s;
	char err[256] = "";
	int ret = snap_state_parse(img, len, &s, err, sizeof(err));

	snap_state_free(&s);
	ck_assert_int_eq(ret, -EINVAL);
	ck_assert_msg(strstr(err, want), "error '%s' does not mention '%s'", err, want);
	ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(test_roundtrip)
{
	struct snap_state a, b;
	size_t len;
	uint8_t *img = example_image(&len);
	char err[256] = "";

	example_state(&a);
	ck_assert_msg(snap_state_parse(img, len, &b, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(b.ember_version, "test");
	ck_assert_uint_eq(b.nr_vcpus, NR_VCPUS);
	ck_assert_uint_eq(b.memory_size, RAM);
	ck_assert_uint_eq(b.cpu_model, CPU_MODEL_BASELINE);
	ck_assert_uint_eq(b.nr_regions, 1);
	ck_assert_int_eq(memcmp(&a.pic_master, &b.pic_master, sizeof(a.pic_master)), 0);
	ck_assert_int_eq(memcmp(&a.ioapic, &b.ioapic, sizeof(a.ioapic)), 0);
	ck_assert_int_eq(memcmp(&a.pit, &b.pit, sizeof(a.pit)), 0);
	ck_assert_uint_eq(b.clock.clock, 123456789);
	ck_assert_str_eq(b.devices_json, a.devices_json);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		struct snap_vcpu *x = &a.vcpus[i], *y = &b.vcpus[i];

		ck_assert_int_eq(memcmp(&x->regs, &y->regs, sizeof(x->regs)), 0);
		ck_assert_int_eq(memcmp(&x->sregs, &y->sregs, sizeof(x->sregs)), 0);
		ck_assert_uint_eq(y->xsave_len, 4096);
		ck_assert_int_eq(memcmp(x->xsave, y->xsave, 4096), 0);
		ck_assert(y->has_xcrs);
		ck_assert_int_eq(memcmp(&x->lapic, &y->lapic, sizeof(x->lapic)), 0);
		ck_assert_uint_eq(y->nr_msrs, 3);
		ck_assert_int_eq(memcmp(x->msrs, y->msrs, 3 * sizeof(*x->msrs)), 0);
		ck_assert_uint_eq(y->mp_state.mp_state, x->mp_state.mp_state);
		ck_assert_uint_eq(y->nr_cpuid, 2);
		ck_assert_int_eq(memcmp(x->cpuid, y->cpuid, 2 * sizeof(*x->cpuid)), 0);
		ck_assert_uint_eq(y->tsc_khz, 2500000);
	}
	snap_state_free(&a);
	snap_state_free(&b);
	free(img);
}
END_TEST

START_TEST(test_every_truncation_rejected)
{
	size_t len;
	uint8_t *img = example_image(&len);

	for (size_t n = 0; n < len; n++) {
		struct snap_state s;
		char err[256] = "";

		ck_assert_int_eq(snap_state_parse(img, n, &s, err, sizeof(err)), -EINVAL);
		ck_assert(err[0]);
		snap_state_free(&s);
	}
	free(img);
}
END_TEST

START_TEST(test_every_bit_flip_rejected)
{
	size_t len;
	uint8_t *img = example_image(&len);

	/* Every byte of the header and section headers, a stride of payloads:
	 * a checksum or a check catches each. */
	for (size_t i = 0; i < len; i += i < 256 ? 1 : 7) {
		for (int bit = 0; bit < 8; bit += 3) {
			struct snap_state s;
			char err[256] = "";

			img[i] ^= 1 << bit;
			ck_assert_msg(snap_state_parse(img, len, &s, err, sizeof(err)) == -EINVAL,
				      "flipping bit %d of byte %zu went unnoticed", bit, i);
			snap_state_free(&s);
			img[i] ^= 1 << bit;
		}
	}
	free(img);
}
END_TEST

START_TEST(test_header_checks)
{
	size_t len;
	uint8_t *img = example_image(&len), *big;

	expect_reject(img, 10, "shorter than its header");
	img[0] = 'X';
	expect_reject(img, len, "not an Ember snapshot");
	img[0] = 'E';
	put32(img + 8, 2);
	expect_reject(img, len, "format version 2");
	put32(img + 8, SNAP_FORMAT_VERSION);
	img[100] = 1;
	expect_reject(img, len, "checksum");
	fix_header_crc(img);
	expect_reject(img, len, "reserved");
	img[100] = 0;
	put32(img + 52, 0);	/* vCPUs */
	fix_header_crc(img);
	expect_reject(img, len, "0 vCPUs");
	put32(img + 52, NR_VCPUS);
	put32(img + 56, 12345);	/* RAM size, low half */
	fix_header_crc(img);
	expect_reject(img, len, "RAM size");
	put32(img + 56, (uint32_t)RAM);
	fix_header_crc(img);
	/* Bytes after the end the header names. */
	big = calloc(1, len + 8);
	memcpy(big, img, len);
	expect_reject(big, len + 8, "the header says");
	free(big);
	free(img);
}
END_TEST

START_TEST(test_field_checks)
{
	static const struct {
		unsigned type, index;
		size_t off;	/* in the payload */
		uint32_t value;
		const char *want;
	} cases[] = {
		/* PIT channel 1 mode (offset 24 + 13). */
		{ SNAP_SEC_PIT, 0, 24 + 13, 7, "channel 1" },
		/* IOAPIC base (third kvm_irqchip, after chip_id and pad). */
		{ SNAP_SEC_IRQCHIP, 0, 2 * sizeof(struct kvm_irqchip) + 8, 0x1000, "IOAPIC base" },
		/* PIC master ELCR mask. */
		{ SNAP_SEC_IRQCHIP, 0, 8 + 15, 0xff, "ELCR" },
		/* RFLAGS without the fixed bit. */
		{ SNAP_SEC_REGS, 1, offsetof(struct kvm_regs, rflags), 0, "RFLAGS" },
		/* An APIC ID that is another vCPU's. */
		{ SNAP_SEC_LAPIC, 1, 0x20, 0, "APIC ID" },
		/* The bootstrap flag on vcpu1. */
		{ SNAP_SEC_SREGS, 1, offsetof(struct kvm_sregs, apic_base), 0xFEE00900, "bootstrap" },
		/* The TSC entry renamed to the second entry's index: a duplicate. */
		{ SNAP_SEC_MSRS, 0, 8, 0xc0000082, "twice" },
		/* The TSC entry renamed to something else: no TSC. */
		{ SNAP_SEC_MSRS, 0, 8, 0x11, "TSC" },
		{ SNAP_SEC_MSRS, 0, 0, 5000, "entries" },
		{ SNAP_SEC_MP_STATE, 0, 0, 7, "MP state" },
		{ SNAP_SEC_EVENTS, 0, offsetof(struct kvm_vcpu_events, exception.nr), 40, "exception" },
		{ SNAP_SEC_EVENTS, 0, offsetof(struct kvm_vcpu_events, flags), 0x100, "flags" },
		{ SNAP_SEC_XCRS, 1, 0, 17, "XCRs" },
		{ SNAP_SEC_XCRS, 1, 8, 1, "XCR1" },
		{ SNAP_SEC_CPUID, 0, 0, 3, "entries" },
		{ SNAP_SEC_CPUID, 0, 8 + 40, 0, "twice" },	/* leaf 7 renamed to leaf 0 */
		{ SNAP_SEC_TSC_KHZ, 0, 0, 0, "kHz" },
		{ SNAP_SEC_LAYOUT, 0, 8 + 8, 4096, "regions hold" },	/* size */
		{ SNAP_SEC_LAYOUT, 0, 8 + 16, 4096, "outside" },	/* file offset */
		{ SNAP_SEC_LAYOUT, 0, 8, 100, "page-aligned" },	/* gpa */
		{ SNAP_SEC_DEBUGREGS, 0, offsetof(struct kvm_debugregs, flags), 1, "flags" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *img = example_image(&len), *p;
		uint64_t slen;

		p = section(img, len, cases[i].type, cases[i].index, &slen);
		ck_assert_uint_lt(cases[i].off + 4, slen + 1);
		if (cases[i].type == SNAP_SEC_IRQCHIP && cases[i].off == 8 + 15)
			p[cases[i].off] = (uint8_t)cases[i].value;
		else
			put32(p + cases[i].off, cases[i].value);
		fix_crc(p, slen);
		expect_reject(img, len, cases[i].want);
		free(img);
	}
}
END_TEST

START_TEST(test_section_structure)
{
	size_t len;
	uint8_t *img = example_image(&len), *p;
	uint64_t slen;

	/* A per-vCPU section for a vCPU that does not exist. */
	p = section(img, len, SNAP_SEC_REGS, 1, &slen);
	put32(p - SNAP_SECTION_HDR_SIZE + 4, NR_VCPUS);
	expect_reject(img, len, "index 2");
	/* The same section twice. */
	put32(p - SNAP_SECTION_HDR_SIZE + 4, 0);
	expect_reject(img, len, "twice");
	put32(p - SNAP_SECTION_HDR_SIZE + 4, 1);
	/* An unknown type. */
	put32(p - SNAP_SECTION_HDR_SIZE, 999);
	expect_reject(img, len, "unknown type");
	/* vcpu1's registers renamed to its TSC frequency: the wrong size. */
	put32(p - SNAP_SECTION_HDR_SIZE, SNAP_SEC_TSC_KHZ);
	expect_reject(img, len, "bytes, expected 8");
	put32(p - SNAP_SECTION_HDR_SIZE, SNAP_SEC_REGS);
	/* A length past the end of the file. */
	p = section(img, len, SNAP_SEC_DEVICES, 0, &slen);
	memcpy(p - SNAP_SECTION_HDR_SIZE + 8, &(uint64_t){ 1ULL << 40 }, 8);
	expect_reject(img, len, "past the end");
	memcpy(p - SNAP_SECTION_HDR_SIZE + 8, &slen, 8);
	/* Devices that are not a JSON object. */
	memcpy(p, "[1,2,3,4,5,6,7,8,9,10]", slen < 22 ? slen : 22);
	fix_crc(p, slen);
	expect_reject(img, len, "JSON object");
	free(img);
}
END_TEST

START_TEST(test_missing_section)
{
	struct snap_state s;
	uint8_t *img;
	size_t len;
	char err[256] = "";
	uint64_t slen;
	uint8_t *p;

	/* Without vcpu1's TSC frequency (optional) its CPUID is the last
	 * section: drop it, with a header that agrees. */
	example_state(&s);
	s.vcpus[1].tsc_khz = 0;
	ck_assert_int_eq(snap_state_serialize(&s, &img, &len, err, sizeof(err)), 0);
	snap_state_free(&s);
	p = section(img, len, SNAP_SEC_CPUID, 1, &slen);
	len = (size_t)(p - SNAP_SECTION_HDR_SIZE - img);
	put32(img + 64, get32(img + 64) - 1);
	memcpy(img + 72, &(uint64_t){ len }, 8);
	fix_header_crc(img);
	expect_reject(img, len, "vcpu1: the CPUID section is missing");
	free(img);

	/* vcpu1's XSAVE renamed to FPU: the wrong size for an FPU. */
	example_state(&s);
	ck_assert_int_eq(snap_state_serialize(&s, &img, &len, err, sizeof(err)), 0);
	snap_state_free(&s);
	p = section(img, len, SNAP_SEC_XSAVE, 1, &slen);
	put32(p - SNAP_SECTION_HDR_SIZE, SNAP_SEC_FPU);
	expect_reject(img, len, "bytes, expected");
	free(img);
}
END_TEST

START_TEST(test_serialize_refuses_invalid)
{
	struct snap_state s;
	uint8_t *img = NULL;
	size_t len;
	char err[256] = "";

	example_state(&s);
	s.vcpus[1].regs.rflags = 0;
	ck_assert_int_eq(snap_state_serialize(&s, &img, &len, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(img);
	ck_assert_ptr_nonnull(strstr(err, "RFLAGS"));
	snap_state_free(&s);
}
END_TEST

/* Writes seed inputs for fuzz/fuzz_snapshot_load when asked to. */
START_TEST(test_write_fuzz_corpus)
{
	const char *dir = getenv("EMBER_SNAPSHOT_CORPUS");
	size_t len;
	uint8_t *img;
	char path[512];
	FILE *f;

	if (!dir)
		return;
	img = example_image(&len);
	snprintf(path, sizeof(path), "%s/valid-2vcpu", dir);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	fwrite(img, 1, len, f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/truncated", dir);
	f = fopen(path, "wb");
	fwrite(img, 1, len / 2, f);
	fclose(f);
	free(img);
}
END_TEST

/* ---- the disks list ---- */

static char tmpdir[64];
static char disk_a[128], disk_b[128];
static char opt_a[200], opt_b[200];

static void make_file(const char *path, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static void disks_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ember-snap-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(disk_a, sizeof(disk_a), "%s/a.img", tmpdir);
	snprintf(disk_b, sizeof(disk_b), "%s/b.img", tmpdir);
	make_file(disk_a, 1 << 20);
	make_file(disk_b, 2 << 20);
	snprintf(opt_a, sizeof(opt_a), "path=%s,serial=A", disk_a);
	snprintf(opt_b, sizeof(opt_b), "%s,readonly=on", disk_b);
}

static void disks_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void two_disks(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->devices[0] = (struct device_spec){ .type = "virtio-blk", .args = opt_a };
	cfg->devices[1] = (struct device_spec){ .type = "virtio-blk", .args = opt_b };
	cfg->nr_devices = 2;
}

static void expect_disks(const char *json, const struct vm_config *cfg, const char *want)
{
	char err[512] = "";
	int ret = snapshot_disks_check_json(json, strlen(json), cfg, err, sizeof(err));

	if (!want) {
		ck_assert_msg(ret == 0, "%s", err);
		return;
	}
	ck_assert_int_ne(ret, 0);
	ck_assert_msg(strstr(err, want), "error '%s' does not mention '%s'", err, want);
}

START_TEST(test_disks_same_files)
{
	struct vm_config cfg;
	char *json = NULL, err[256] = "";

	two_disks(&cfg);
	ck_assert_int_eq(snapshot_disks_describe(&cfg, &json, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(json, "\"serial\": \"A\""));
	expect_disks(json, &cfg, NULL);
	/* Written to, same size and inode: still the same disk. */
	{
		int fd = open(disk_a, O_WRONLY);

		ck_assert_int_eq(pwrite(fd, "x", 1, 4096), 1);
		close(fd);
	}
	expect_disks(json, &cfg, NULL);
	free(json);
}
END_TEST

START_TEST(test_disks_changed)
{
	struct vm_config cfg, other;
	char *json = NULL, err[256] = "", copy[160], opt_copy[200];

	two_disks(&cfg);
	ck_assert_int_eq(snapshot_disks_describe(&cfg, &json, err, sizeof(err)), 0);
	/* Grown. */
	make_file(disk_b, 3 << 20);
	expect_disks(json, &cfg, "bytes, it was");
	make_file(disk_b, 2 << 20);
	expect_disks(json, &cfg, NULL);
	/* Another file with the same contents. */
	snprintf(copy, sizeof(copy), "%s/copy.img", tmpdir);
	make_file(copy, 1 << 20);
	other = cfg;
	snprintf(opt_copy, sizeof(opt_copy), "path=%s,serial=A", copy);
	other.devices[0].args = opt_copy;
	expect_disks(json, &other, "not the file");
	/* Replaced by rename: same path, new inode. */
	ck_assert_int_eq(rename(copy, disk_a), 0);
	expect_disks(json, &cfg, "not the file");
	/* Gone. */
	unlink(disk_a);
	expect_disks(json, &cfg, "No such file");
	/* Fewer disks; a different serial; writable instead of read-only. */
	other = cfg;
	other.nr_devices = 1;
	expect_disks(json, &other, "2 disks, this VM has 1");
	make_file(disk_a, 1 << 20);
	free(json);
	ck_assert_int_eq(snapshot_disks_describe(&cfg, &json, err, sizeof(err)), 0);
	other = cfg;
	snprintf(opt_copy, sizeof(opt_copy), "path=%s,serial=B", disk_a);
	other.devices[0].args = opt_copy;
	expect_disks(json, &other, "serial");
	other = cfg;
	other.devices[1].args = disk_b;
	expect_disks(json, &other, "read-only");
	/* Hostile lists. */
	expect_disks("{\"version\":1}", &cfg, "no version or disks");
	expect_disks("{\"version\":2,\"disks\":[]}", &cfg, "version 2");
	expect_disks("{\"version\":1,\"disks\":[1,2]}", &cfg, "mistyped");
	expect_disks("nonsense", &cfg, "disks.json");
	free(json);
}
END_TEST

/* ---- the memory file ---- */

static bool all_zero_bytes(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

START_TEST(test_memory_file_sparse_roundtrip)
{
	struct guest_mem gm, back;
	struct snap_state s;
	char path[160], err[256] = "";
	uint64_t written = 0;
	struct stat st;
	int fd;

	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	/* Three touched pages, one of them written back to zeros. */
	ck_assert_int_eq(gm_fill(&gm, 0x1000, 0xaa, 4096), 0);
	ck_assert_int_eq(gm_fill(&gm, 0x100000, 0x55, 8192), 0);
	ck_assert_int_eq(gm_fill(&gm, 0x200000, 0, 4096), 0);
	ck_assert_int_eq(gm_write(&gm, RAM - 8, "lastpage", 8), 0);
	snprintf(path, sizeof(path), "%s/memory", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(snapshot_write_memory(&gm, fd, &written), 0);
	ck_assert_uint_eq(written, 4 * 4096);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, (off_t)RAM);
	/* Holes where nothing was written (tmpfs and ext4 both report them). */
	ck_assert_int_eq(lseek(fd, 0, SEEK_DATA), 0x1000);
	ck_assert_int_eq(lseek(fd, 0x1000, SEEK_HOLE), 0x2000);
	ck_assert_int_eq(lseek(fd, 0x2000, SEEK_DATA), 0x100000);
	ck_assert_int_eq(lseek(fd, 0x100000, SEEK_HOLE), 0x102000);
	ck_assert_int_eq(lseek(fd, 0x102000, SEEK_DATA), (off_t)(RAM - 4096));
	ck_assert_uint_le((uint64_t)st.st_blocks * 512, 64 * 1024);
	close(fd);

	example_state(&s);
	ck_assert_msg(snapshot_map_memory(path, &s, &back, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(back.ram_size, RAM);
	ck_assert_int_eq(back.memfd, -1);
	{
		uint8_t a[8192], b[8192];

		ck_assert_int_eq(gm_read(&gm, 0x100000, a, sizeof(a)), 0);
		ck_assert_int_eq(gm_read(&back, 0x100000, b, sizeof(b)), 0);
		ck_assert_int_eq(memcmp(a, b, sizeof(a)), 0);
		ck_assert_int_eq(gm_read(&back, RAM - 8, b, 8), 0);
		ck_assert_int_eq(memcmp(b, "lastpage", 8), 0);
		/* Private: the guest's writes never reach the file. */
		ck_assert_int_eq(gm_fill(&back, 0x1000, 0x11, 16), 0);
		fd = open(path, O_RDONLY);
		ck_assert_int_eq(pread(fd, b, 1, 0x1000), 1);
		ck_assert_uint_eq(b[0], 0xaa);
		close(fd);
	}
	/* A reset (and a balloon) zero it without reading the file or writing
	 * it: fresh anonymous pages. */
	{
		uint8_t b[16];

		ck_assert_int_eq(gm_discard(&back, gm_ptr(&back, 0x100000, 4096), 4096), 4096);
		ck_assert_int_eq(gm_read(&back, 0x100000, b, sizeof(b)), 0);
		ck_assert(all_zero_bytes(b, sizeof(b)));
		ck_assert_int_eq(gm_zero_all(&back), 0);
		ck_assert_int_eq(gm_read(&back, RAM - 8, b, 8), 0);
		ck_assert(all_zero_bytes(b, 8));
		ck_assert_int_eq(gm_fill(&back, RAM - 8, 0x33, 8), 0);
		fd = open(path, O_RDONLY);
		ck_assert_int_eq(pread(fd, b, 8, (off_t)(RAM - 8)), 8);
		ck_assert_int_eq(memcmp(b, "lastpage", 8), 0);
		close(fd);
	}
	gm_destroy(&back);
	/* A memory file of the wrong size is refused. */
	ck_assert_int_eq(truncate(path, RAM / 2), 0);
	ck_assert_int_eq(snapshot_map_memory(path, &s, &back, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "truncated"));
	snap_state_free(&s);
	gm_destroy(&gm);
}
END_TEST

/* ---- PCI config space and MSI-X (devices/pci) ---- */

static unsigned routes, fires;

static void count_route(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a,
			uint32_t data)
{
	(void)h; (void)d; (void)v; (void)a; (void)data;
	routes++;
}

static void count_fire(struct pci_host *h, struct pci_device *d, unsigned v, uint64_t a,
		       uint32_t data)
{
	(void)h; (void)d; (void)v; (void)a; (void)data;
	fires++;
}

static const struct pci_irq_ops count_ops = { .msi_route = count_route, .msi_fire = count_fire };

static uint8_t bar_seen;

static void bar_rd(struct pci_device *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
	(void)d; (void)bar; (void)off;
	memset(data, 0x5a, len);
	bar_seen = 1;
}

static const struct pci_device_ops dev_ops = { .bar_read = bar_rd };

/* A stand-alone host with one device: a 16 KiB BAR0, MSI-X (4 vectors) in
 * BAR1. */
static void pci_machine(struct pci_host *h, struct pci_device *d, uint16_t device_id)
{
	struct pci_host_params p = {
		.mmio32_base = 0xC0000000ULL, .mmio32_size = 0x10000000ULL, .irq = &count_ops,
	};

	ck_assert_int_eq(pci_host_init(h, &p), 0);
	pci_device_init(d, "snapdev", &dev_ops, NULL, 0x1af4, device_id, 0xff0000, 1, 0, 0);
	ck_assert_int_eq(pci_device_add_bar(d, 0, 16384, 0), 0);
	ck_assert_int_eq(pci_device_add_bar(d, 1, 4096, 0), 0);
	ck_assert_int_ge(pci_device_add_msix(d, 4, 1, 0, 1, 2048), 0);
	ck_assert_int_eq(pci_register_device(h, d), 1);
}

static void cfgw(struct pci_host *h, unsigned off, unsigned len, uint32_t v)
{
	pci_host_config_write(h, 0, 1, 0, off, len, v);
}

START_TEST(test_pci_roundtrip)
{
	struct pci_host a, b;
	struct pci_device da, db;
	uint32_t entry[4] = { 0xFEE00000, 0, 0x4041, 0 }, v = 0;
	uint8_t buf[4];
	char err[256] = "";
	json_t *saved;
	int cap;

	pci_machine(&a, &da, 0x1041);
	/* The guest moves BAR0, enables memory decode and MSI-X, programs
	 * vector 2 unmasked. */
	cfgw(&a, PCI_BASE_ADDRESS_0, 4, 0xC8000000);
	cfgw(&a, PCI_BASE_ADDRESS_0 + 4, 4, 0xC8100000);
	cfgw(&a, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	cap = da.msix->cap;
	cfgw(&a, (unsigned)cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	ck_assert(pci_host_mmio_write(&a, 0xC8100000 + 2 * 16, entry, 16));
	ck_assert(pci_host_mmio_read(&a, 0xC8000010, buf, 4));
	saved = pci_host_save(&a);
	ck_assert_ptr_nonnull(saved);

	/* A new machine from the same devices takes it. */
	pci_machine(&b, &db, 0x1041);
	routes = 0;
	ck_assert_msg(pci_host_load(&b, saved, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(routes, 1);	/* vector 2's route, committed at load */
	bar_seen = 0;
	ck_assert(pci_host_mmio_read(&b, 0xC8000010, buf, 4));
	ck_assert_uint_eq(bar_seen, 1);
	ck_assert_uint_eq(buf[0], 0x5a);
	ck_assert(pci_msix_enabled(&db));
	ck_assert(pci_host_mmio_read(&b, 0xC8100000 + 2 * 16 + 8, &v, 4));
	ck_assert_uint_eq(v, 0x4041);
	ck_assert_uint_eq(pci_host_config_read(&b, 0, 1, 0, PCI_BASE_ADDRESS_0, 4), 0xC8000000);
	/* The old BAR0 place decodes nothing. */
	ck_assert(!pci_host_mmio_read(&b, 0xC0000000, buf, 4));
	pci_unregister_device(&db);
	pci_device_release(&db);
	pci_host_destroy(&b);

	/* Another device in the slot is refused, and nothing changes. */
	pci_machine(&b, &db, 0x1042);
	ck_assert_int_eq(pci_host_load(&b, saved, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "another device"));
	ck_assert_uint_eq(pci_host_config_read(&b, 0, 1, 0, PCI_COMMAND, 2), 0);
	/* Hostile: reserved MSI-X bits, a short config, an extra slot. */
	{
		json_t *bad = json_deep_copy(saved), *slot = json_object_get(json_object_get(bad, "slots"), "1");
		json_t *mx = json_object_get(slot, "msix");
		char *t = strdup(json_string_value(json_object_get(mx, "table")));

		json_object_set_new(slot, "config", json_string("00"));
		ck_assert_int_eq(pci_host_load(&b, bad, err, sizeof(err)), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err, "hex"));
		json_decref(bad);
		bad = json_deep_copy(saved);
		slot = json_object_get(json_object_get(bad, "slots"), "1");
		mx = json_object_get(slot, "msix");
		t[2 * 13] = 'f';	/* vector 0 control, byte 1 */
		json_object_set_new(mx, "table", json_string(t));
		json_object_set_new(slot, "config", json_deep_copy(json_object_get(json_object_get(json_object_get(saved, "slots"), "1"), "config")));
		pci_unregister_device(&db);
		pci_device_release(&db);
		pci_host_destroy(&b);
		pci_machine(&b, &db, 0x1041);
		ck_assert_int_eq(pci_host_load(&b, bad, err, sizeof(err)), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err, "reserved"));
		json_object_set_new(json_object_get(bad, "slots"), "7", json_object());
		ck_assert_int_eq(pci_host_load(&b, bad, err, sizeof(err)), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err, "slot 7"));
		free(t);
		json_decref(bad);
	}
	json_decref(saved);
	pci_unregister_device(&db);
	pci_device_release(&db);
	pci_host_destroy(&b);
	pci_unregister_device(&da);
	pci_device_release(&da);
	pci_host_destroy(&a);
}
END_TEST

/* ---- Legacy devices ---- */

static unsigned irq_level_seen;

static void note_irq(void *opaque, bool level)
{
	(void)opaque;
	irq_level_seen = level;
}

START_TEST(test_uart_roundtrip)
{
	struct uart16550 a, b;
	struct uart16550_state st;
	const uint8_t in[3] = { 'a', 'b', 'c' };

	uart16550_init(&a, NULL, note_irq, NULL);
	uart16550_write(&a, UART_FCR, UART_FCR_ENABLE);
	uart16550_write(&a, UART_MCR, UART_MCR_OUT2 | UART_MCR_DTR);
	uart16550_write(&a, UART_IER, UART_IER_THRI | UART_IER_RDI);
	ck_assert_uint_eq(uart16550_receive(&a, in, 3), 3);
	(void)uart16550_read(&a, UART_RBR);	/* 'a' */
	uart16550_save(&a, &st);
	ck_assert_uint_eq(st.rx_count, 2);

	irq_level_seen = 0;
	uart16550_init(&b, NULL, note_irq, NULL);
	ck_assert_int_eq(uart16550_load(&b, &st), 0);
	ck_assert_uint_eq(irq_level_seen, 1);	/* data ready, OUT2 on: the line is up */
	ck_assert_uint_eq(uart16550_iir(&b) & 0x0f, UART_IIR_RDI);
	ck_assert_uint_eq(uart16550_read(&b, UART_RBR), 'b');
	ck_assert_uint_eq(uart16550_read(&b, UART_RBR), 'c');
	ck_assert_uint_eq(uart16550_read(&b, UART_IER), UART_IER_THRI | UART_IER_RDI);
	/* THRE still owed to the guest. */
	ck_assert_uint_eq(uart16550_iir(&b) & 0x0f, UART_IIR_THRI);

	st.rx_count = 17;
	ck_assert_int_eq(uart16550_load(&b, &st), -EINVAL);
	st.rx_count = 0;
	st.ier = 0x80;
	ck_assert_int_eq(uart16550_load(&b, &st), -EINVAL);
}
END_TEST

/* Realize a registered device on a context with a PIO bus and RAM. */
static void *realize_named(const char *name, struct device_ctx *ctx)
{
	const struct device_desc *d = device_find(name);
	void *state = NULL;

	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(d->realize(d, ctx, &state), 0);
	return state;
}

START_TEST(test_rtc_i8042_roundtrip)
{
	static const char *const names[] = { "rtc", "i8042" };
	struct vm_config cfg;
	struct guest_mem gm = { 0 };
	struct bus pio_a, pio_b;
	struct device_ctx ca, cb;
	uint8_t *ram = calloc(1, 1 << 20), v;
	char err[256] = "";

	memset(&cfg, 0, sizeof(cfg));
	cfg.cpus = 1;
	ck_assert_int_eq(gm_add_region(&gm, 0, 1 << 20, ram), 0);
	ck_assert_int_eq(bus_init(&pio_a, "pio-a"), 0);
	ck_assert_int_eq(bus_init(&pio_b, "pio-b"), 0);
	ca = (struct device_ctx){ .cfg = &cfg, .mem = &gm, .pio_bus = &pio_a };
	cb = (struct device_ctx){ .cfg = &cfg, .mem = &gm, .pio_bus = &pio_b };
	for (size_t n = 0; n < 2; n++) {
		const struct device_desc *d = device_find(names[n]);
		void *a = realize_named(names[n], &ca), *b = realize_named(names[n], &cb);
		json_t *saved, *bad;

		if (n == 0) {	/* CMOS byte 0x40 = 0x77, index left at 0x41 */
			bus_write(&pio_a, 0x70, &(uint8_t){ 0x40 }, 1);
			bus_write(&pio_a, 0x71, &(uint8_t){ 0x77 }, 1);
			bus_write(&pio_a, 0x70, &(uint8_t){ 0x41 }, 1);
		} else {	/* a command byte, and a reply waiting */
			bus_write(&pio_a, 0x64, &(uint8_t){ 0x60 }, 1);
			bus_write(&pio_a, 0x60, &(uint8_t){ 0x45 }, 1);
			bus_write(&pio_a, 0x64, &(uint8_t){ 0x20 }, 1);
		}
		saved = d->save(a);
		ck_assert_ptr_nonnull(saved);
		ck_assert_msg(d->load(b, saved, err, sizeof(err)) == 0, "%s: %s", names[n], err);
		if (n == 0) {
			bus_write(&pio_b, 0x70, &(uint8_t){ 0x40 }, 1);
			bus_read(&pio_b, 0x71, &v, 1);
			ck_assert_uint_eq(v, 0x77);
		} else {
			bus_read(&pio_b, 0x60, &v, 1);
			ck_assert_uint_eq(v, 0x45);
		}
		/* Every field is checked: drop each one in turn. */
		bad = json_deep_copy(saved);
		{
			const char *key;
			json_t *val;
			void *tmp;

			json_object_foreach_safe(saved, tmp, key, val) {
				json_t *one = json_deep_copy(saved);

				json_object_del(one, key);
				ck_assert_msg(d->load(b, one, err, sizeof(err)) == -EINVAL,
					      "%s without %s loaded", names[n], key);
				json_object_set_new(one, key, json_string("x"));
				ck_assert_int_eq(d->load(b, one, err, sizeof(err)), -EINVAL);
				json_decref(one);
			}
		}
		json_decref(bad);
		json_decref(saved);
		d->destroy(a);
		d->destroy(b);
	}
	bus_destroy(&pio_a);
	bus_destroy(&pio_b);
	free(ram);
}
END_TEST

/* ---- QMP snapshot-save ---- */

static char saved_path[256];
static int save_ret;

static int fake_save(void *opaque, const char *path, char *err, size_t errlen)
{
	(void)opaque;
	snprintf(saved_path, sizeof(saved_path), "%s", path);
	if (save_ret)
		snprintf(err, errlen, "snapshot-save: cannot create %s: Permission denied", path);
	return save_ret;
}

static json_t *qmp(struct qmp_session *s, const char *text)
{
	return qmp_handle_message(s, text, strlen(text));
}

START_TEST(test_qmp_snapshot_save)
{
	static const struct qmp_backend_ops ops = { .snapshot_save = fake_save };
	struct qmp_session *s = qmp_session_create(&ops, NULL, NULL, NULL);
	json_t *r;

	json_decref(qmp(s, "{\"execute\":\"qmp_capabilities\"}"));
	r = qmp(s, "{\"execute\":\"snapshot-save\",\"arguments\":{\"path\":\"/var/tmp/snap\"}}");
	ck_assert(json_is_object(json_object_get(r, "return")));
	ck_assert_str_eq(saved_path, "/var/tmp/snap");
	json_decref(r);
	save_ret = -EACCES;
	r = qmp(s, "{\"execute\":\"snapshot-save\",\"arguments\":{\"path\":\"/proc/x\"}}");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
			 "snapshot-save: cannot create /proc/x: Permission denied");
	json_decref(r);
	save_ret = 0;
	r = qmp(s, "{\"execute\":\"snapshot-save\"}");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
			 "Parameter 'path' is missing");
	json_decref(r);
	r = qmp(s, "{\"execute\":\"snapshot-save\",\"arguments\":{\"path\":1}}");
	ck_assert_ptr_nonnull(json_object_get(r, "error"));
	json_decref(r);
	qmp_session_destroy(s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = tcase_create("format");
	TCase *td = tcase_create("files");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_every_truncation_rejected);
	tcase_add_test(tc, test_every_bit_flip_rejected);
	tcase_add_test(tc, test_header_checks);
	tcase_add_test(tc, test_field_checks);
	tcase_add_test(tc, test_section_structure);
	tcase_add_test(tc, test_missing_section);
	tcase_add_test(tc, test_serialize_refuses_invalid);
	tcase_add_test(tc, test_write_fuzz_corpus);
	tcase_add_test(tc, test_pci_roundtrip);
	tcase_add_test(tc, test_uart_roundtrip);
	tcase_add_test(tc, test_rtc_i8042_roundtrip);
	tcase_add_test(tc, test_qmp_snapshot_save);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(td, disks_setup, disks_teardown);
	tcase_add_test(td, test_disks_same_files);
	tcase_add_test(td, test_disks_changed);
	tcase_add_test(td, test_memory_file_sparse_roundtrip);
	suite_add_tcase(s, td);
	return ck_run_suite(s);
}
