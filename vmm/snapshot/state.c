/* The state file: serialization and the validating parser (state.h). */
#include "vmm/snapshot/state.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAP_LAPIC_BASE		0xFEE00000ULL
#define SNAP_IOAPIC_BASE	0xFEC00000ULL
#define MSR_IA32_TSC		0x10
#define APIC_BASE_BSP		(1ULL << 8)
#define APIC_REG_ID		0x20
#define TSC_KHZ_MAX		(10u * 1000 * 1000)	/* 10 GHz */

/* Header offsets. */
#define H_MAGIC		0
#define H_VERSION	8
#define H_HDR_SIZE	12
#define H_EMBER		16
#define H_CPU_MODEL	48
#define H_NR_VCPUS	52
#define H_MEMORY	56
#define H_NR_SECTIONS	64
#define H_FLAGS		68
#define H_FILE_SIZE	72
#define H_CRC		80
#define H_RESERVED	84

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t snap_crc32(uint32_t crc, const void *buf, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const uint8_t *p = buf;

	pthread_once(&once, crc_init);
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static const char *const section_names[SNAP_SEC_MAX] = {
	[SNAP_SEC_LAYOUT] = "memory layout",
	[SNAP_SEC_IRQCHIP] = "irqchip",
	[SNAP_SEC_PIT] = "PIT",
	[SNAP_SEC_CLOCK] = "kvmclock",
	[SNAP_SEC_DEVICES] = "devices",
	[SNAP_SEC_REGS] = "registers",
	[SNAP_SEC_SREGS] = "special registers",
	[SNAP_SEC_XSAVE] = "XSAVE",
	[SNAP_SEC_FPU] = "FPU",
	[SNAP_SEC_XCRS] = "XCRs",
	[SNAP_SEC_DEBUGREGS] = "debug registers",
	[SNAP_SEC_MSRS] = "MSRs",
	[SNAP_SEC_LAPIC] = "LAPIC",
	[SNAP_SEC_EVENTS] = "vCPU events",
	[SNAP_SEC_MP_STATE] = "MP state",
	[SNAP_SEC_CPUID] = "CPUID",
	[SNAP_SEC_TSC_KHZ] = "TSC frequency",
};

const char *snap_section_name(unsigned type)
{
	return type < SNAP_SEC_MAX && section_names[type] ? section_names[type] : "unknown";
}

static bool per_vcpu(unsigned type)
{
	return type >= SNAP_SEC_REGS && type < SNAP_SEC_MAX;
}

int snap_state_alloc_vcpus(struct snap_state *s, unsigned nr)
{
	s->vcpus = calloc(nr ? nr : 1, sizeof(*s->vcpus));
	if (!s->vcpus)
		return -ENOMEM;
	s->nr_vcpus = nr;
	return 0;
}

void snap_state_free(struct snap_state *s)
{
	for (unsigned i = 0; s->vcpus && i < s->nr_vcpus; i++) {
		free(s->vcpus[i].xsave);
		free(s->vcpus[i].msrs);
		free(s->vcpus[i].cpuid);
	}
	free(s->vcpus);
	free(s->devices_json);
	memset(s, 0, sizeof(*s));
}

/* ---- little-endian helpers (x86 only, but explicit about the format) ---- */

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
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

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* ---- writer ---- */

struct writer {
	uint8_t *buf;
	size_t len, cap;
	unsigned nr_sections;
	int err;
};

static uint8_t *w_reserve(struct writer *w, size_t n)
{
	if (w->err)
		return NULL;
	if (n > SIZE_MAX / 2 - w->len) {
		w->err = -EOVERFLOW;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		uint8_t *b;

		while (cap < w->len + n)
			cap *= 2;
		b = realloc(w->buf, cap);
		if (!b) {
			w->err = -ENOMEM;
			return NULL;
		}
		w->buf = b;
		w->cap = cap;
	}
	memset(w->buf + w->len, 0, n);
	w->len += n;
	return w->buf + w->len - n;
}

/* A section from up to two pieces (a small count header and an array). */
static void w_section2(struct writer *w, unsigned type, unsigned index, const void *a,
		       size_t alen, const void *b, size_t blen)
{
	size_t len = alen + blen, padded = (len + 7) & ~(size_t)7;
	uint8_t *h = w_reserve(w, SNAP_SECTION_HDR_SIZE + padded);
	uint32_t crc;

	if (!h)
		return;
	if (alen)
		memcpy(h + SNAP_SECTION_HDR_SIZE, a, alen);
	if (blen)
		memcpy(h + SNAP_SECTION_HDR_SIZE + alen, b, blen);
	crc = snap_crc32(0, h + SNAP_SECTION_HDR_SIZE, len);
	put32(h, type);
	put32(h + 4, index);
	put64(h + 8, len);
	put32(h + 16, crc);
	w->nr_sections++;
}

static void w_section(struct writer *w, unsigned type, unsigned index, const void *p, size_t len)
{
	w_section2(w, type, index, p, len, NULL, 0);
}

static void w_counted(struct writer *w, unsigned type, unsigned index, uint32_t n,
		      const void *arr, size_t elem)
{
	uint8_t hdr[8] = { 0 };

	put32(hdr, n);
	w_section2(w, type, index, hdr, sizeof(hdr), arr, (size_t)n * elem);
}

int snap_state_serialize(const struct snap_state *s, uint8_t **out, size_t *len, char *err,
			 size_t errlen)
{
	struct writer w = { 0 };
	struct snap_state check;
	uint8_t *h;
	int ret;

	*out = NULL;
	*len = 0;
	h = w_reserve(&w, SNAP_HEADER_SIZE);
	(void)h;
	{
		uint8_t regions[SNAP_MAX_REGIONS][24];
		uint8_t irq[3 * sizeof(struct kvm_irqchip)];

		for (unsigned i = 0; i < s->nr_regions && i < SNAP_MAX_REGIONS; i++) {
			put64(regions[i], s->regions[i].gpa);
			put64(regions[i] + 8, s->regions[i].size);
			put64(regions[i] + 16, s->regions[i].offset);
		}
		w_counted(&w, SNAP_SEC_LAYOUT, 0, s->nr_regions, regions, 24);
		memcpy(irq, &s->pic_master, sizeof(struct kvm_irqchip));
		memcpy(irq + sizeof(struct kvm_irqchip), &s->pic_slave, sizeof(struct kvm_irqchip));
		memcpy(irq + 2 * sizeof(struct kvm_irqchip), &s->ioapic, sizeof(struct kvm_irqchip));
		w_section(&w, SNAP_SEC_IRQCHIP, 0, irq, sizeof(irq));
	}
	w_section(&w, SNAP_SEC_PIT, 0, &s->pit, sizeof(s->pit));
	w_section(&w, SNAP_SEC_CLOCK, 0, &s->clock, sizeof(s->clock));
	w_section(&w, SNAP_SEC_DEVICES, 0, s->devices_json ? s->devices_json : "{}",
		  s->devices_json ? strlen(s->devices_json) : 2);
	for (unsigned i = 0; i < s->nr_vcpus; i++) {
		const struct snap_vcpu *v = &s->vcpus[i];

		w_section(&w, SNAP_SEC_REGS, i, &v->regs, sizeof(v->regs));
		w_section(&w, SNAP_SEC_SREGS, i, &v->sregs, sizeof(v->sregs));
		if (v->xsave)
			w_section(&w, SNAP_SEC_XSAVE, i, v->xsave, v->xsave_len);
		else
			w_section(&w, SNAP_SEC_FPU, i, &v->fpu, sizeof(v->fpu));
		if (v->has_xcrs)
			w_section(&w, SNAP_SEC_XCRS, i, &v->xcrs, sizeof(v->xcrs));
		w_section(&w, SNAP_SEC_DEBUGREGS, i, &v->debugregs, sizeof(v->debugregs));
		w_counted(&w, SNAP_SEC_MSRS, i, v->nr_msrs, v->msrs, sizeof(*v->msrs));
		w_section(&w, SNAP_SEC_LAPIC, i, &v->lapic, sizeof(v->lapic));
		w_section(&w, SNAP_SEC_EVENTS, i, &v->events, sizeof(v->events));
		w_section(&w, SNAP_SEC_MP_STATE, i, &v->mp_state, sizeof(v->mp_state));
		w_counted(&w, SNAP_SEC_CPUID, i, v->nr_cpuid, v->cpuid, sizeof(*v->cpuid));
		if (v->tsc_khz) {
			uint8_t khz[8] = { 0 };

			put32(khz, v->tsc_khz);
			w_section(&w, SNAP_SEC_TSC_KHZ, i, khz, sizeof(khz));
		}
	}
	if (w.err) {
		free(w.buf);
		snprintf(err, errlen, "cannot build the state file: %s", strerror(-w.err));
		return w.err;
	}
	h = w.buf;
	memcpy(h + H_MAGIC, SNAP_MAGIC, 8);
	put32(h + H_VERSION, SNAP_FORMAT_VERSION);
	put32(h + H_HDR_SIZE, SNAP_HEADER_SIZE);
	snprintf((char *)h + H_EMBER, SNAP_VERSION_LEN, "%s", s->ember_version);
	put32(h + H_CPU_MODEL, s->cpu_model);
	put32(h + H_NR_VCPUS, s->nr_vcpus);
	put64(h + H_MEMORY, s->memory_size);
	put32(h + H_NR_SECTIONS, w.nr_sections);
	put64(h + H_FILE_SIZE, w.len);
	put32(h + H_CRC, snap_crc32(0, h, SNAP_HEADER_SIZE));

	/* What we write must read back: a state KVM gave us that our own
	 * validation rejects is caught here, not at restore time. */
	ret = snap_state_parse(w.buf, w.len, &check, err, errlen);
	snap_state_free(&check);
	if (ret) {
		free(w.buf);
		return ret;
	}
	*out = w.buf;
	*len = w.len;
	return 0;
}

/* ---- parser ---- */

struct parser {
	struct snap_state *s;
	char *err;
	size_t errlen;
	unsigned type, index;	/* the section being decoded, for messages */
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;

	if (p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err, p->errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* One line naming the section: "snapshot state: vcpu1 MSRs: ...". */
static int bad_sec(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad_sec(struct parser *p, const char *fmt, ...)
{
	char where[48], msg[192];
	va_list ap;

	if (per_vcpu(p->type))
		snprintf(where, sizeof(where), "vcpu%u %s", p->index, snap_section_name(p->type));
	else
		snprintf(where, sizeof(where), "%s", snap_section_name(p->type));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fail(p, "snapshot state: %s: %s", where, msg);
}

static int need_len(struct parser *p, size_t len, size_t want)
{
	if (len != want)
		return bad_sec(p, "%zu bytes, expected %zu", len, want);
	return 0;
}

/* "n, pad" then n elements of elem bytes; returns n. */
static int counted(struct parser *p, const uint8_t *d, size_t len, size_t elem, unsigned max,
		   unsigned min, unsigned *n)
{
	if (len < 8)
		return bad_sec(p, "%zu bytes, too short for its count", len);
	*n = get32(d);
	if (get32(d + 4))
		return bad_sec(p, "reserved field is not zero");
	if (*n < min || *n > max)
		return bad_sec(p, "%u entries (allowed %u to %u)", *n, min, max);
	if (len - 8 != (size_t)*n * elem)
		return bad_sec(p, "%zu bytes for %u entries of %zu", len - 8, *n, elem);
	return 0;
}

static int parse_layout(struct parser *p, const uint8_t *d, size_t len)
{
	struct snap_state *s = p->s;
	uint64_t total = 0;
	unsigned n;
	int ret = counted(p, d, len, 24, SNAP_MAX_REGIONS, 1, &n);

	if (ret)
		return ret;
	for (unsigned i = 0; i < n; i++) {
		struct snap_region *r = &s->regions[i];
		const uint8_t *e = d + 8 + i * 24;

		r->gpa = get64(e);
		r->size = get64(e + 8);
		r->offset = get64(e + 16);
		if (!r->size || (r->gpa | r->size | r->offset) & 4095)
			return bad_sec(p, "region %u (0x%llx, 0x%llx bytes at file offset 0x%llx) is "
				   "empty or not page-aligned", i, (unsigned long long)r->gpa,
				   (unsigned long long)r->size, (unsigned long long)r->offset);
		if (r->gpa + r->size < r->gpa || r->size > s->memory_size ||
		    r->offset > s->memory_size - r->size)
			return bad_sec(p, "region %u lies outside the %llu bytes of RAM", i,
				   (unsigned long long)s->memory_size);
		if (i && r->gpa < s->regions[i - 1].gpa + s->regions[i - 1].size)
			return bad_sec(p, "region %u overlaps or is out of order", i);
		/* File offsets: packed in order, like the memfd. */
		if (r->offset != total)
			return bad_sec(p, "region %u at file offset 0x%llx, expected 0x%llx", i,
				   (unsigned long long)r->offset, (unsigned long long)total);
		total += r->size;
	}
	if (total != s->memory_size)
		return bad_sec(p, "regions hold %llu bytes, the header says %llu",
			   (unsigned long long)total, (unsigned long long)s->memory_size);
	s->nr_regions = n;
	return 0;
}

static int check_pic(struct parser *p, const struct kvm_irqchip *c, unsigned id, uint8_t elcr_mask)
{
	const struct kvm_pic_state *k = &c->chip.pic;
	const char *which = id == KVM_IRQCHIP_PIC_MASTER ? "PIC master" : "PIC slave";

	if (c->chip_id != id || c->pad)
		return bad_sec(p, "%s: chip id %u", which, c->chip_id);
	if (k->poll > 1 || k->special_mask > 1 || k->auto_eoi > 1 || k->rotate_on_auto_eoi > 1 ||
	    k->special_fully_nested_mode > 1 || k->init4 > 1 || k->read_reg_select > 1 ||
	    k->init_state > 3 || k->priority_add > 7 || (k->irq_base & 7))
		return bad_sec(p, "%s: a register holds a value the 8259 cannot", which);
	if (k->elcr_mask != elcr_mask || (k->elcr & ~elcr_mask))
		return bad_sec(p, "%s: ELCR 0x%02x / mask 0x%02x", which, k->elcr, k->elcr_mask);
	return 0;
}

static int parse_irqchip(struct parser *p, const uint8_t *d, size_t len)
{
	struct snap_state *s = p->s;
	const struct kvm_ioapic_state *io;
	int ret = need_len(p, len, 3 * sizeof(struct kvm_irqchip));

	if (ret)
		return ret;
	memcpy(&s->pic_master, d, sizeof(struct kvm_irqchip));
	memcpy(&s->pic_slave, d + sizeof(struct kvm_irqchip), sizeof(struct kvm_irqchip));
	memcpy(&s->ioapic, d + 2 * sizeof(struct kvm_irqchip), sizeof(struct kvm_irqchip));
	if ((ret = check_pic(p, &s->pic_master, KVM_IRQCHIP_PIC_MASTER, 0xf8)) ||
	    (ret = check_pic(p, &s->pic_slave, KVM_IRQCHIP_PIC_SLAVE, 0xde)))
		return ret;
	io = &s->ioapic.chip.ioapic;
	if (s->ioapic.chip_id != KVM_IRQCHIP_IOAPIC || s->ioapic.pad)
		return bad_sec(p, "IOAPIC: chip id %u", s->ioapic.chip_id);
	if (io->base_address != SNAP_IOAPIC_BASE)
		return bad_sec(p, "IOAPIC base 0x%llx, Ember's is at 0x%llx",
			   (unsigned long long)io->base_address, SNAP_IOAPIC_BASE);
	if (io->ioregsel > 0xff || io->id > 0xf || (io->irr >> KVM_IOAPIC_NUM_PINS))
		return bad_sec(p, "IOAPIC: select 0x%x, id %u, IRR 0x%x out of range", io->ioregsel,
			   io->id, io->irr);
	return 0;
}

static int parse_pit(struct parser *p, const uint8_t *d, size_t len)
{
	struct kvm_pit_state2 *pit = &p->s->pit;
	int ret = need_len(p, len, sizeof(*pit));

	if (ret)
		return ret;
	memcpy(pit, d, sizeof(*pit));
	if (pit->flags & ~(uint32_t)(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON) ||
	    !all_zero(pit->reserved, sizeof(pit->reserved)))
		return bad_sec(p, "flags 0x%x or reserved fields set", pit->flags);
	for (unsigned i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &pit->channels[i];

		/* Mode 0xff: never programmed (KVM's reset value). */
		if (c->count > 0x10000 || (c->mode > 5 && c->mode != 0xff) || c->rw_mode > 3 ||
		    c->read_state > 4 || c->write_state > 4 || c->count_latched > 3 ||
		    c->status_latched > 1 || c->bcd > 1 || c->gate > 1)
			return bad_sec(p, "channel %u: count %u, mode %u, access %u, states %u/%u out of "
				   "range", i, c->count, c->mode, c->rw_mode, c->read_state,
				   c->write_state);
	}
	return 0;
}

static int parse_devices(struct parser *p, const uint8_t *d, size_t len)
{
	json_error_t jerr;
	json_t *j;

	if (len > SNAP_DEVICES_MAX)
		return bad_sec(p, "%zu bytes (at most %u)", len, SNAP_DEVICES_MAX);
	if (memchr(d, 0, len))
		return bad_sec(p, "contains a NUL byte");
	j = json_loadb((const char *)d, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return bad_sec(p, "not a JSON object (%s)", j ? "another JSON value" : jerr.text);
	}
	json_decref(j);
	p->s->devices_json = malloc(len + 1);
	if (!p->s->devices_json)
		return -ENOMEM;
	memcpy(p->s->devices_json, d, len);
	p->s->devices_json[len] = 0;
	return 0;
}

static int parse_msrs(struct parser *p, struct snap_vcpu *v, const uint8_t *d, size_t len)
{
	bool tsc = false;
	unsigned n;
	int ret = counted(p, d, len, sizeof(struct kvm_msr_entry), SNAP_MAX_MSRS, 1, &n);

	if (ret)
		return ret;
	v->msrs = malloc(n * sizeof(*v->msrs));
	if (!v->msrs)
		return -ENOMEM;
	memcpy(v->msrs, d + 8, n * sizeof(*v->msrs));
	v->nr_msrs = n;
	for (unsigned i = 0; i < n; i++) {
		if (v->msrs[i].reserved)
			return bad_sec(p, "entry %u: reserved field is not zero", i);
		tsc |= v->msrs[i].index == MSR_IA32_TSC;
		for (unsigned j = 0; j < i; j++)
			if (v->msrs[j].index == v->msrs[i].index)
				return bad_sec(p, "MSR 0x%x appears twice", v->msrs[i].index);
	}
	if (!tsc)
		return bad_sec(p, "the TSC (MSR 0x10) is missing");
	return 0;
}

static int parse_cpuid(struct parser *p, struct snap_vcpu *v, const uint8_t *d, size_t len)
{
	const uint32_t flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX | KVM_CPUID_FLAG_STATEFUL_FUNC |
			       KVM_CPUID_FLAG_STATE_READ_NEXT;
	unsigned n;
	int ret = counted(p, d, len, sizeof(struct kvm_cpuid_entry2), SNAP_MAX_CPUID, 1, &n);

	if (ret)
		return ret;
	v->cpuid = malloc(n * sizeof(*v->cpuid));
	if (!v->cpuid)
		return -ENOMEM;
	memcpy(v->cpuid, d + 8, n * sizeof(*v->cpuid));
	v->nr_cpuid = n;
	for (unsigned i = 0; i < n; i++) {
		const struct kvm_cpuid_entry2 *e = &v->cpuid[i];

		if ((e->flags & ~flags) || !all_zero(e->padding, sizeof(e->padding)))
			return bad_sec(p, "leaf 0x%x.%u: flags 0x%x or padding set", e->function,
				   e->index, e->flags);
		for (unsigned j = 0; j < i; j++)
			if (v->cpuid[j].function == e->function && v->cpuid[j].index == e->index)
				return bad_sec(p, "leaf 0x%x.%u appears twice", e->function, e->index);
	}
	return 0;
}

static int parse_events(struct parser *p, struct kvm_vcpu_events *ev, const uint8_t *d,
			size_t len)
{
	const uint32_t flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
			       KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM |
			       KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
	int ret = need_len(p, len, sizeof(*ev));

	if (ret)
		return ret;
	memcpy(ev, d, sizeof(*ev));
	if (ev->flags & ~flags)
		return bad_sec(p, "unknown flags 0x%x", ev->flags & ~flags);
	if (ev->exception.injected > 1 || ev->exception.pending > 1 ||
	    ev->exception.has_error_code > 1 || ev->exception.nr >= 32 ||
	    ev->exception_has_payload > 1)
		return bad_sec(p, "exception %u (injected %u, pending %u) out of range", ev->exception.nr,
			   ev->exception.injected, ev->exception.pending);
	if (ev->interrupt.injected > 1 || ev->interrupt.soft > 1 || ev->interrupt.shadow > 3)
		return bad_sec(p, "interrupt state out of range");
	if (ev->nmi.injected > 1 || ev->nmi.pending > 2 || ev->nmi.masked > 1 || ev->nmi.pad)
		return bad_sec(p, "NMI state out of range");
	if (ev->smi.smm > 1 || ev->smi.pending > 1 || ev->smi.smm_inside_nmi > 1 ||
	    ev->smi.latched_init > 1 || ev->triple_fault.pending > 1 || ev->sipi_vector > 0xff ||
	    !all_zero(ev->reserved, sizeof(ev->reserved)))
		return bad_sec(p, "SMI, triple fault or SIPI state out of range");
	return 0;
}

static int parse_vcpu_section(struct parser *p, struct snap_vcpu *v, const uint8_t *d,
			      size_t len)
{
	int ret;

	switch (p->type) {
	case SNAP_SEC_REGS:
		if ((ret = need_len(p, len, sizeof(v->regs))))
			return ret;
		memcpy(&v->regs, d, len);
		if (!(v->regs.rflags & 2) || v->regs.rflags >> 32)
			return bad_sec(p, "RFLAGS 0x%llx is not a valid value",
				   (unsigned long long)v->regs.rflags);
		return 0;
	case SNAP_SEC_SREGS:
		if ((ret = need_len(p, len, sizeof(v->sregs))))
			return ret;
		memcpy(&v->sregs, d, len);
		if ((v->sregs.apic_base & ~0xfffULL) != SNAP_LAPIC_BASE)
			return bad_sec(p, "APIC base 0x%llx, Ember's LAPIC is at 0x%llx",
				   (unsigned long long)v->sregs.apic_base, SNAP_LAPIC_BASE);
		if (!!(v->sregs.apic_base & APIC_BASE_BSP) != (p->index == 0))
			return bad_sec(p, "APIC base 0x%llx: only vcpu0 is the bootstrap processor",
				   (unsigned long long)v->sregs.apic_base);
		return 0;
	case SNAP_SEC_XSAVE:
		if (len < SNAP_XSAVE_MIN || len > SNAP_XSAVE_MAX || len % 64)
			return bad_sec(p, "%zu bytes (a multiple of 64 from %u to %u)", len,
				   SNAP_XSAVE_MIN, SNAP_XSAVE_MAX);
		v->xsave = malloc(len);
		if (!v->xsave)
			return -ENOMEM;
		memcpy(v->xsave, d, len);
		v->xsave_len = len;
		return 0;
	case SNAP_SEC_FPU:
		if ((ret = need_len(p, len, sizeof(v->fpu))))
			return ret;
		memcpy(&v->fpu, d, len);
		return 0;
	case SNAP_SEC_XCRS:
		if ((ret = need_len(p, len, sizeof(v->xcrs))))
			return ret;
		memcpy(&v->xcrs, d, len);
		if (v->xcrs.nr_xcrs > KVM_MAX_XCRS || v->xcrs.flags ||
		    !all_zero(v->xcrs.padding, sizeof(v->xcrs.padding)))
			return bad_sec(p, "%u XCRs, flags 0x%x", v->xcrs.nr_xcrs, v->xcrs.flags);
		for (unsigned i = 0; i < v->xcrs.nr_xcrs; i++)
			if (v->xcrs.xcrs[i].xcr != 0 || v->xcrs.xcrs[i].reserved)
				return bad_sec(p, "XCR%u (only XCR0 exists)", v->xcrs.xcrs[i].xcr);
		v->has_xcrs = true;
		return 0;
	case SNAP_SEC_DEBUGREGS:
		if ((ret = need_len(p, len, sizeof(v->debugregs))))
			return ret;
		memcpy(&v->debugregs, d, len);
		if (v->debugregs.flags || !all_zero(v->debugregs.reserved, sizeof(v->debugregs.reserved)) ||
		    v->debugregs.dr6 >> 32 || v->debugregs.dr7 >> 32)
			return bad_sec(p, "flags, reserved fields or DR6/DR7 out of range");
		return 0;
	case SNAP_SEC_MSRS:
		return parse_msrs(p, v, d, len);
	case SNAP_SEC_LAPIC:
		if ((ret = need_len(p, len, sizeof(v->lapic))))
			return ret;
		memcpy(&v->lapic, d, len);
		return 0;
	case SNAP_SEC_EVENTS:
		return parse_events(p, &v->events, d, len);
	case SNAP_SEC_MP_STATE:
		if ((ret = need_len(p, len, sizeof(v->mp_state))))
			return ret;
		memcpy(&v->mp_state, d, len);
		if (v->mp_state.mp_state > KVM_MP_STATE_SIPI_RECEIVED)
			return bad_sec(p, "%u is not an x86 MP state", v->mp_state.mp_state);
		return 0;
	case SNAP_SEC_CPUID:
		return parse_cpuid(p, v, d, len);
	case SNAP_SEC_TSC_KHZ:
		if ((ret = need_len(p, len, 8)))
			return ret;
		v->tsc_khz = get32(d);
		if (!v->tsc_khz || v->tsc_khz > TSC_KHZ_MAX || get32(d + 4))
			return bad_sec(p, "%u kHz", v->tsc_khz);
		return 0;
	}
	return bad_sec(p, "unknown section");
}

/* Cross-section checks, once everything is read. */
static int check_vcpu(struct parser *p, const struct snap_vcpu *v, unsigned index)
{
	uint32_t id;

	/* Without KVM_CAP_X2APIC_API (Ember does not enable it) KVM keeps the
	 * ID in the xAPIC place, bits 31:24, in x2APIC mode too. */
	memcpy(&id, &v->lapic.regs[APIC_REG_ID], 4);
	id >>= 24;
	if (id != index) {
		p->type = SNAP_SEC_LAPIC;
		p->index = index;
		return bad_sec(p, "APIC ID %u (vcpu%u's is %u)", id, index, index);
	}
	return 0;
}

static const unsigned required_vm[] = {
	SNAP_SEC_LAYOUT, SNAP_SEC_IRQCHIP, SNAP_SEC_PIT, SNAP_SEC_CLOCK, SNAP_SEC_DEVICES,
};
static const unsigned required_vcpu[] = {
	SNAP_SEC_REGS, SNAP_SEC_SREGS, SNAP_SEC_DEBUGREGS, SNAP_SEC_MSRS, SNAP_SEC_LAPIC,
	SNAP_SEC_EVENTS, SNAP_SEC_MP_STATE, SNAP_SEC_CPUID,
};

static int parse_header(struct parser *p, const uint8_t *buf, size_t len, unsigned *nr_sections)
{
	struct snap_state *s = p->s;
	uint8_t h[SNAP_HEADER_SIZE];
	uint32_t v, crc;
	const char *ver;

	if (len < SNAP_HEADER_SIZE)
		return fail(p, "snapshot state: %zu bytes, shorter than its header (truncated?)", len);
	if (memcmp(buf + H_MAGIC, SNAP_MAGIC, 8))
		return fail(p, "snapshot state: not an Ember snapshot (bad magic)");
	v = get32(buf + H_VERSION);
	if (v != SNAP_FORMAT_VERSION)
		return fail(p, "snapshot state: format version %u, this Ember reads version %u", v,
			    SNAP_FORMAT_VERSION);
	if (get32(buf + H_HDR_SIZE) != SNAP_HEADER_SIZE)
		return fail(p, "snapshot state: header size %u, expected %u",
			    get32(buf + H_HDR_SIZE), SNAP_HEADER_SIZE);
	memcpy(h, buf, sizeof(h));
	crc = get32(h + H_CRC);
	put32(h + H_CRC, 0);
	if (snap_crc32(0, h, sizeof(h)) != crc)
		return fail(p, "snapshot state: header checksum mismatch (corrupt file)");
	if (get32(h + H_FLAGS) || !all_zero(h + H_RESERVED, SNAP_HEADER_SIZE - H_RESERVED))
		return fail(p, "snapshot state: unknown header flags or reserved bytes");
	if (get64(h + H_FILE_SIZE) != len)
		return fail(p, "snapshot state: %zu bytes, the header says %llu (truncated or "
			    "extended)", len, (unsigned long long)get64(h + H_FILE_SIZE));
	ver = (const char *)h + H_EMBER;
	if (!memchr(ver, 0, SNAP_VERSION_LEN))
		return fail(p, "snapshot state: Ember version string is not terminated");
	for (const char *c = ver; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			return fail(p, "snapshot state: Ember version string is not printable");
	memcpy(s->ember_version, ver, SNAP_VERSION_LEN);
	s->cpu_model = get32(h + H_CPU_MODEL);
	if (s->cpu_model > 1)
		return fail(p, "snapshot state: unknown CPU model %u", s->cpu_model);
	v = get32(h + H_NR_VCPUS);
	if (v == 0 || v > SNAP_MAX_VCPUS)
		return fail(p, "snapshot state: %u vCPUs (1 to %u)", v, SNAP_MAX_VCPUS);
	s->memory_size = get64(h + H_MEMORY);
	if (s->memory_size < SNAP_MEMORY_MIN || s->memory_size > SNAP_MEMORY_MAX ||
	    s->memory_size % 4096)
		return fail(p, "snapshot state: RAM size %llu is not a valid size",
			    (unsigned long long)s->memory_size);
	*nr_sections = get32(h + H_NR_SECTIONS);
	if (*nr_sections > 5 + (SNAP_SEC_MAX - SNAP_SEC_REGS) * v)
		return fail(p, "snapshot state: %u sections for %u vCPUs", *nr_sections, v);
	if (snap_state_alloc_vcpus(s, v))
		return -ENOMEM;
	return 0;
}

int snap_state_parse(const uint8_t *buf, size_t len, struct snap_state *s, char *err,
		     size_t errlen)
{
	struct parser p = { .s = s, .err = err, .errlen = errlen };
	unsigned nr_sections = 0, nr_vcpu_types = SNAP_SEC_MAX - SNAP_SEC_REGS;
	size_t off = SNAP_HEADER_SIZE;
	bool *seen = NULL;
	int ret;

	memset(s, 0, sizeof(*s));
	ret = parse_header(&p, buf, len, &nr_sections);
	if (ret)
		return ret;
	/* seen[0..SNAP_SEC_REGS): VM sections; then one row per vCPU. */
	seen = calloc(SNAP_SEC_REGS + (size_t)nr_vcpu_types * s->nr_vcpus, sizeof(*seen));
	if (!seen)
		return -ENOMEM;
	for (unsigned i = 0; i < nr_sections; i++) {
		const uint8_t *h = buf + off;
		uint64_t slen, padded;
		size_t slot;

		if (len - off < SNAP_SECTION_HDR_SIZE) {
			ret = fail(&p, "snapshot state: section %u of %u is cut off (truncated file)",
				   i + 1, nr_sections);
			goto out;
		}
		p.type = get32(h);
		p.index = get32(h + 4);
		slen = get64(h + 8);
		if (p.type == 0 || p.type >= SNAP_SEC_MAX) {
			ret = fail(&p, "snapshot state: section %u has unknown type %u", i + 1, p.type);
			goto out;
		}
		if (get32(h + 20) || (per_vcpu(p.type) ? p.index >= s->nr_vcpus : p.index != 0)) {
			ret = fail(&p, "snapshot state: %s section with index %u (%u vCPUs)",
				   snap_section_name(p.type), p.index, s->nr_vcpus);
			goto out;
		}
		padded = (slen + 7) & ~7ULL;
		if (slen > len - off - SNAP_SECTION_HDR_SIZE ||
		    padded > len - off - SNAP_SECTION_HDR_SIZE) {
			ret = bad_sec(&p, "%llu bytes run past the end of the file (truncated?)",
				  (unsigned long long)slen);
			goto out;
		}
		if (snap_crc32(0, h + SNAP_SECTION_HDR_SIZE, slen) != get32(h + 16)) {
			ret = bad_sec(&p, "checksum mismatch (corrupt file)");
			goto out;
		}
		if (!all_zero(h + SNAP_SECTION_HDR_SIZE + slen, padded - slen)) {
			ret = bad_sec(&p, "padding is not zero");
			goto out;
		}
		/* VM sections by type; vCPU c's at c * nr_vcpu_types + type. */
		slot = per_vcpu(p.type) ? (size_t)p.index * nr_vcpu_types + p.type : p.type;
		if (seen[slot]) {
			ret = bad_sec(&p, "appears twice");
			goto out;
		}
		seen[slot] = true;
		h += SNAP_SECTION_HDR_SIZE;
		switch (p.type) {
		case SNAP_SEC_LAYOUT:
			ret = parse_layout(&p, h, slen);
			break;
		case SNAP_SEC_IRQCHIP:
			ret = parse_irqchip(&p, h, slen);
			break;
		case SNAP_SEC_PIT:
			ret = parse_pit(&p, h, slen);
			break;
		case SNAP_SEC_CLOCK:
			ret = need_len(&p, slen, sizeof(s->clock));
			if (!ret)
				memcpy(&s->clock, h, sizeof(s->clock));
			break;
		case SNAP_SEC_DEVICES:
			ret = parse_devices(&p, h, slen);
			break;
		default:
			ret = parse_vcpu_section(&p, &s->vcpus[p.index], h, slen);
			break;
		}
		if (ret)
			goto out;
		off += SNAP_SECTION_HDR_SIZE + padded;
	}
	if (off != len) {
		ret = fail(&p, "snapshot state: %zu bytes after the last section", len - off);
		goto out;
	}
	for (size_t i = 0; i < sizeof(required_vm) / sizeof(required_vm[0]); i++) {
		if (!seen[required_vm[i]]) {
			ret = fail(&p, "snapshot state: the %s section is missing",
				   snap_section_name(required_vm[i]));
			goto out;
		}
	}
	for (unsigned c = 0; c < s->nr_vcpus; c++) {
		const bool *row = seen + (size_t)c * nr_vcpu_types;

		for (size_t i = 0; i < sizeof(required_vcpu) / sizeof(required_vcpu[0]); i++) {
			if (!row[required_vcpu[i]]) {
				ret = fail(&p, "snapshot state: vcpu%u: the %s section is missing", c,
					   snap_section_name(required_vcpu[i]));
				goto out;
			}
		}
		if (row[SNAP_SEC_XSAVE] == row[SNAP_SEC_FPU]) {
			ret = fail(&p, "snapshot state: vcpu%u: needs exactly one of XSAVE and FPU", c);
			goto out;
		}
		ret = check_vcpu(&p, &s->vcpus[c], c);
		if (ret)
			goto out;
	}
	ret = 0;
out:
	free(seen);
	return ret;
}
