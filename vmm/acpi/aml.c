/* A tiny AML encoder (ACPI spec chapter 20) and the byte builder it shares
 * with the table code. Scopes with a PkgLength are opened by *_begin and
 * closed by aml_end, which inserts the final PkgLength in front of the body. */
#include "vmm/acpi/acpi.h"

#include <errno.h>
#include <string.h>

#define AML_ZERO		0x00
#define AML_ONE			0x01
#define AML_NAME		0x08
#define AML_BYTE_PREFIX		0x0A
#define AML_WORD_PREFIX		0x0B
#define AML_DWORD_PREFIX	0x0C
#define AML_STRING_PREFIX	0x0D
#define AML_QWORD_PREFIX	0x0E
#define AML_SCOPE		0x10
#define AML_BUFFER		0x11
#define AML_PACKAGE		0x12
#define AML_METHOD		0x14
#define AML_DUAL_NAME		0x2E
#define AML_MULTI_NAME		0x2F
#define AML_EXT_PREFIX		0x5B
#define AML_EXT_DEVICE		0x82
#define AML_ROOT_CHAR		0x5C
#define AML_PARENT_CHAR		0x5E
#define AML_RETURN		0xA4

#define RES_IRQ_NOFLAGS		0x22	/* small item 0x04, length 2 */
#define RES_IO			0x47	/* small item 0x08, length 7 */
#define RES_END_TAG		0x79	/* small item 0x0F, length 1 */
#define RES_MEMORY32_FIXED	0x86	/* large items: tag, then a 16-bit length */
#define RES_DWORD_ADDR		0x87
#define RES_WORD_ADDR		0x88
#define RES_QWORD_ADDR		0x8A
#define RES_ADDR_MEMORY		0
#define RES_ADDR_IO		1
#define RES_ADDR_BUS		2
#define RES_ADDR_PRODUCER_FIXED	0x0C	/* producer, PosDecode, MinFixed, MaxFixed */
#define RES_MEM_RW		0x01
#define RES_IO_ENTIRE_RANGE	0x03

/* Scope kinds: a buffer also needs its BufferSize inserted. */
#define SCOPE_PKG	0
#define SCOPE_BUFFER	1

static uint8_t *reserve(struct acpi_builder *b, size_t n)
{
	uint8_t *p;

	if (b->err)
		return NULL;
	if (n > b->cap - b->len) {
		b->err = -ENOSPC;
		return NULL;
	}
	p = b->buf + b->len;
	b->len += n;
	return p;
}

void acpi_put_bytes(struct acpi_builder *b, const void *src, size_t n)
{
	uint8_t *p = reserve(b, n);

	if (p && n)
		memcpy(p, src, n);
}

void acpi_put8(struct acpi_builder *b, uint8_t v)
{
	acpi_put_bytes(b, &v, 1);
}

void acpi_put16(struct acpi_builder *b, uint16_t v)
{
	uint8_t le[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	acpi_put_bytes(b, le, sizeof(le));
}

void acpi_put32(struct acpi_builder *b, uint32_t v)
{
	acpi_put16(b, (uint16_t)v);
	acpi_put16(b, (uint16_t)(v >> 16));
}

void acpi_put64(struct acpi_builder *b, uint64_t v)
{
	acpi_put32(b, (uint32_t)v);
	acpi_put32(b, (uint32_t)(v >> 32));
}

void acpi_align(struct acpi_builder *b, size_t align)
{
	uint64_t here = acpi_here(b);
	size_t pad = (size_t)((align - here % align) % align);
	uint8_t *p = reserve(b, pad);

	if (p && pad)
		memset(p, 0, pad);
}

uint64_t acpi_here(const struct acpi_builder *b)
{
	return b->base + b->len;
}

uint8_t acpi_checksum(const void *p, size_t n)
{
	const uint8_t *c = p;
	uint8_t sum = 0;

	while (n--)
		sum = (uint8_t)(sum + *c++);
	return sum;
}

/* Insert n bytes at offset `at`, shifting what follows. */
static void insert(struct acpi_builder *b, size_t at, const uint8_t *src, size_t n)
{
	size_t tail = b->len - at;

	if (!reserve(b, n))
		return;
	memmove(b->buf + at + n, b->buf + at, tail);
	memcpy(b->buf + at, src, n);
}

/* PkgLength counts itself: pick the smallest encoding that holds it. */
static size_t encode_pkglen(size_t body, uint8_t out[4])
{
	static const size_t limit[4] = { 0x40, 0x1000, 0x100000, 0x10000000 };
	size_t n, total;

	for (n = 1; n <= 4; n++) {
		total = body + n;
		if (total < limit[n - 1])
			break;
	}
	if (n > 4)
		return 0;
	if (n == 1) {
		out[0] = (uint8_t)total;
		return 1;
	}
	out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xF));
	for (size_t i = 1; i < n; i++)
		out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

static void pkg_open(struct acpi_builder *b, unsigned kind)
{
	if (b->err)
		return;
	if (b->depth >= ACPI_AML_MAX_DEPTH) {
		b->err = -EINVAL;
		return;
	}
	/* Low bit of the stack slot records the kind; offsets are shifted. */
	b->pkg[b->depth++] = b->len << 1 | kind;
}

void aml_end(struct acpi_builder *b)
{
	uint8_t enc[9];
	size_t start, n;
	unsigned kind;

	if (b->err)
		return;
	if (!b->depth) {
		b->err = -EINVAL;
		return;
	}
	start = b->pkg[--b->depth] >> 1;
	kind = b->pkg[b->depth] & 1;
	if (kind == SCOPE_BUFFER) {
		struct acpi_builder tmp = { .buf = enc, .cap = sizeof(enc) };

		aml_int(&tmp, b->len - start);
		insert(b, start, enc, tmp.len);
	}
	n = encode_pkglen(b->len - start, enc);
	if (!n) {
		b->err = -ENOSPC;
		return;
	}
	insert(b, start, enc, n);
}

static int seg_char_ok(char c, int first)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

void aml_name(struct acpi_builder *b, const char *path)
{
	char segs[16][4];
	unsigned nseg = 0, len = 0;
	const char *p = path;

	if (*p == '\\') {
		acpi_put8(b, AML_ROOT_CHAR);
		p++;
	}
	while (*p == '^') {
		acpi_put8(b, AML_PARENT_CHAR);
		p++;
	}
	for (; !b->err; p++) {
		if (*p == '.' || *p == '\0') {
			if (!len || nseg >= 16) {
				b->err = -EINVAL;
				break;
			}
			memset(segs[nseg] + len, '_', 4 - len);
			nseg++;
			len = 0;
			if (*p == '\0')
				break;
			continue;
		}
		if (nseg >= 16 || len >= 4 || !seg_char_ok(*p, len == 0)) {
			b->err = -EINVAL;
			break;
		}
		segs[nseg][len++] = *p;
	}
	if (b->err)
		return;
	if (nseg == 2)
		acpi_put8(b, AML_DUAL_NAME);
	if (nseg > 2) {
		acpi_put8(b, AML_MULTI_NAME);
		acpi_put8(b, (uint8_t)nseg);
	}
	acpi_put_bytes(b, segs, nseg * 4);
}

void aml_int(struct acpi_builder *b, uint64_t v)
{
	if (v == 0) {
		acpi_put8(b, AML_ZERO);
	} else if (v == 1) {
		acpi_put8(b, AML_ONE);
	} else if (v <= 0xFF) {
		acpi_put8(b, AML_BYTE_PREFIX);
		acpi_put8(b, (uint8_t)v);
	} else if (v <= 0xFFFF) {
		acpi_put8(b, AML_WORD_PREFIX);
		acpi_put16(b, (uint16_t)v);
	} else if (v <= 0xFFFFFFFF) {
		acpi_put8(b, AML_DWORD_PREFIX);
		acpi_put32(b, (uint32_t)v);
	} else {
		acpi_put8(b, AML_QWORD_PREFIX);
		acpi_put64(b, v);
	}
}

void aml_string(struct acpi_builder *b, const char *s)
{
	acpi_put8(b, AML_STRING_PREFIX);
	acpi_put_bytes(b, s, strlen(s) + 1);
}

/* "PNP0501": three 5-bit letters and four hex digits, stored big-endian
 * in a DWord (what iasl's EISAID() produces). */
void aml_eisaid(struct acpi_builder *b, const char *id)
{
	uint32_t v = 0;

	if (strlen(id) != 7) {
		b->err = b->err ? b->err : -EINVAL;
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			b->err = b->err ? b->err : -EINVAL;
			return;
		}
		v = v << 5 | (uint32_t)(id[i] - 0x40);
	}
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else {
			b->err = b->err ? b->err : -EINVAL;
			return;
		}
		v = v << 4 | d;
	}
	acpi_put8(b, AML_DWORD_PREFIX);
	acpi_put8(b, (uint8_t)(v >> 24));
	acpi_put8(b, (uint8_t)(v >> 16));
	acpi_put8(b, (uint8_t)(v >> 8));
	acpi_put8(b, (uint8_t)v);
}

void aml_name_decl(struct acpi_builder *b, const char *name)
{
	acpi_put8(b, AML_NAME);
	aml_name(b, name);
}

void aml_scope_begin(struct acpi_builder *b, const char *path)
{
	acpi_put8(b, AML_SCOPE);
	pkg_open(b, SCOPE_PKG);
	aml_name(b, path);
}

void aml_device_begin(struct acpi_builder *b, const char *name)
{
	acpi_put8(b, AML_EXT_PREFIX);
	acpi_put8(b, AML_EXT_DEVICE);
	pkg_open(b, SCOPE_PKG);
	aml_name(b, name);
}

void aml_method_begin(struct acpi_builder *b, const char *name, unsigned nargs, int serialized)
{
	acpi_put8(b, AML_METHOD);
	pkg_open(b, SCOPE_PKG);
	aml_name(b, name);
	if (nargs > 7 && !b->err)
		b->err = -EINVAL;
	acpi_put8(b, (uint8_t)((nargs & 7) | (serialized ? 1u << 3 : 0)));
}

void aml_package_begin(struct acpi_builder *b, unsigned nelems)
{
	acpi_put8(b, AML_PACKAGE);
	pkg_open(b, SCOPE_PKG);
	if (nelems > 255 && !b->err)
		b->err = -EINVAL;
	acpi_put8(b, (uint8_t)nelems);
}

void aml_buffer_begin(struct acpi_builder *b)
{
	acpi_put8(b, AML_BUFFER);
	pkg_open(b, SCOPE_BUFFER);
}

void aml_return(struct acpi_builder *b)
{
	acpi_put8(b, AML_RETURN);
}

void aml_res_io(struct acpi_builder *b, uint16_t base, uint8_t len)
{
	acpi_put8(b, RES_IO);
	acpi_put8(b, 1);		/* decodes 16 address bits */
	acpi_put16(b, base);		/* minimum */
	acpi_put16(b, base);		/* maximum */
	acpi_put8(b, 1);		/* alignment */
	acpi_put8(b, len);
}

void aml_res_irq_noflags(struct acpi_builder *b, unsigned irq)
{
	if (irq > 15 && !b->err)
		b->err = -EINVAL;
	acpi_put8(b, RES_IRQ_NOFLAGS);
	acpi_put16(b, (uint16_t)(1u << (irq & 15)));
}

/* The checksum byte 0 means "treat the template as checksummed". */
void aml_res_end_tag(struct acpi_builder *b)
{
	acpi_put8(b, RES_END_TAG);
	acpi_put8(b, 0);
}

/* Word/DWord/QWord address space descriptors share one layout: type,
 * general flags, type-specific flags, then granularity, minimum, maximum,
 * translation offset and length, each `size` bytes. */
static void res_addr(struct acpi_builder *b, uint8_t tag, unsigned size, uint8_t type,
		     uint8_t tflags, uint64_t min, uint64_t max)
{
	const uint64_t fields[5] = { 0, min, max, 0, max - min + 1 };

	if (max < min && !b->err)
		b->err = -EINVAL;
	acpi_put8(b, tag);
	acpi_put16(b, (uint16_t)(3 + 5 * size));
	acpi_put8(b, type);
	acpi_put8(b, RES_ADDR_PRODUCER_FIXED);
	acpi_put8(b, tflags);
	for (unsigned i = 0; i < 5; i++) {
		if (size == 2)
			acpi_put16(b, (uint16_t)fields[i]);
		else if (size == 4)
			acpi_put32(b, (uint32_t)fields[i]);
		else
			acpi_put64(b, fields[i]);
	}
}

void aml_res_word_bus(struct acpi_builder *b, uint16_t min, uint16_t max)
{
	res_addr(b, RES_WORD_ADDR, 2, RES_ADDR_BUS, 0, min, max);
}

void aml_res_word_io(struct acpi_builder *b, uint16_t min, uint16_t max)
{
	res_addr(b, RES_WORD_ADDR, 2, RES_ADDR_IO, RES_IO_ENTIRE_RANGE, min, max);
}

void aml_res_dword_memory(struct acpi_builder *b, uint32_t min, uint32_t max, unsigned mem_type)
{
	res_addr(b, RES_DWORD_ADDR, 4, RES_ADDR_MEMORY,
		 (uint8_t)(RES_MEM_RW | (mem_type & 3) << 1), min, max);
}

void aml_res_qword_memory(struct acpi_builder *b, uint64_t min, uint64_t max, unsigned mem_type)
{
	res_addr(b, RES_QWORD_ADDR, 8, RES_ADDR_MEMORY,
		 (uint8_t)(RES_MEM_RW | (mem_type & 3) << 1), min, max);
}

void aml_res_memory32_fixed(struct acpi_builder *b, uint32_t base, uint32_t len)
{
	acpi_put8(b, RES_MEMORY32_FIXED);
	acpi_put16(b, 9);
	acpi_put8(b, RES_MEM_RW);
	acpi_put32(b, base);
	acpi_put32(b, len);
}
