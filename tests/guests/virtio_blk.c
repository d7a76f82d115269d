/*
 * virtio-blk over modern virtio-pci with MSI-X.
 *
 * cmdline: serial=ID (expected GET_ID; not checked if absent), ro=1 (the
 * disk is read-only: writes must fail with IOERR and change nothing),
 * seed=N (pattern seed, 0-65535, default 1), sector=S (first sector written,
 * default 8), event_idx=0 / indirect=0 (do not negotiate those features).
 *
 * Pattern (for host-side checks): the 64-bit little-endian word at absolute
 * disk byte offset o (o % 8 == 0) is ((0x4542 << 48) | (seed << 32) | o),
 * i.e. `od -A n -t x8 -v -w8` prints 4542ssss oooooooo. Written (rw mode):
 * sectors S..S+7 (one request, two data descriptors) and the last sector.
 *
 * Exit: rt_exit(0) and "virtio_blk: ok"; on failure a "virtio_blk: FAIL"
 * line and one of the codes below.
 */
#include "rt/rt.h"
#include "rt/apic.h"
#include "rt/virtio.h"

enum {
	E_PROBE = 2, E_START, E_SETUP, E_CAPACITY, E_GET_ID, E_WRITE, E_FLUSH, E_READ, E_COMPARE,
	E_RANGE, E_RO_WRITE, E_RO_CHANGED, E_RO_FEATURE, E_USED_LEN, E_IRQ, E_TIMEOUT,
};

#define VEC_CONFIG 0x40
#define VEC_QUEUE 0x41
#define NSECT 8
#define WORDS (NSECT * 512 / 8)
#define TIMEOUT_MS 5000

static uint64_t wbuf[WORDS], rbuf[WORDS], obuf[WORDS];
static char id[VIRTIO_BLK_ID_BYTES + 1];

RT_PRINTF(2, 3) static RT_NORETURN void fail(int code, const char *fmt, ...)
{
	va_list ap;
	rt_printf("virtio_blk: FAIL(%d): ", code);
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_putc('\n');
	rt_exit(code);
}

/* The value of "key=" on the command line (up to a space), or NULL. */
static const char *cmdline_str(const char *key, size_t *len)
{
	const char *p = rt_cmdline();
	size_t klen = strlen(key);
	while (*p) {
		while (*p == ' ')
			p++;
		const char *tok = p;
		while (*p && *p != ' ')
			p++;
		if ((size_t)(p - tok) > klen && !strncmp(tok, key, klen) && tok[klen] == '=') {
			*len = (size_t)(p - tok) - klen - 1;
			return tok + klen + 1;
		}
	}
	return NULL;
}

static void fill(uint64_t *buf, unsigned words, uint64_t byte_off, uint64_t seed)
{
	uint64_t hi = (0x4542ull << 48) | (seed << 32);
	for (unsigned i = 0; i < words; i++)
		buf[i] = hi | (uint32_t)(byte_off + 8 * i);
}

/* Fills with a poison value (rep stosq: one emulated instruction), so a read
 * that returns nothing is not mistaken for stale data. */
static void poison(uint64_t *buf, size_t words)
{
	__asm__ volatile("rep stosq" : "+D"(buf), "+c"(words) : "a"(0xdeadbeefdeadbeefull) : "memory");
}

/* Index of the first differing word, or -1. */
static long diff(const uint64_t *a, const uint64_t *b, unsigned words)
{
	for (unsigned i = 0; i < words; i++)
		if (a[i] != b[i])
			return (long)i;
	return -1;
}

static int req(struct virtio_dev *v, uint32_t type, uint64_t sector, void *buf, uint32_t len, unsigned nseg,
	       bool indirect, uint32_t *used)
{
	int r = virtio_blk_request(v, type, sector, buf, len, nseg, indirect, used, TIMEOUT_MS);
	if (r < 0)
		fail(r == VIRTIO_E_NOIRQ ? E_IRQ : E_TIMEOUT, "request type %u sector %lu: %s", type, sector,
		     virtio_strerror(r));
	return r;
}

static void expect_used(uint32_t used, uint32_t want, const char *what)
{
	if (used != want)
		fail(E_USED_LEN, "%s: used len %u, expected %u", what, used, want);
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	struct virtio_dev v;
	uint32_t used;
	bool ro = rt_cmdline_int("ro", 0) != 0;
	uint64_t seed = (uint64_t)rt_cmdline_int("seed", 1) & 0xffff;
	uint64_t s0 = (uint64_t)rt_cmdline_int("sector", 8);
	uint64_t want = VIRTIO_F(VIRTIO_BLK_F_FLUSH) | VIRTIO_F(VIRTIO_BLK_F_RO) | VIRTIO_F(VIRTIO_BLK_F_BLK_SIZE);
	if (rt_cmdline_int("event_idx", 1))
		want |= VIRTIO_F(VIRTIO_F_EVENT_IDX);
	if (rt_cmdline_int("indirect", 1))
		want |= VIRTIO_F(VIRTIO_F_INDIRECT_DESC);

	int r = virtio_probe(&v, VIRTIO_ID_BLOCK, 0);
	if (r)
		fail(E_PROBE, "probe: %s (%u PCI functions on bus 0)", virtio_strerror(r), pci_scan());
	if ((r = virtio_start(&v, want)))
		fail(E_START, "start: %s (offered 0x%lx)", virtio_strerror(r), v.offered);
	if ((r = virtio_config_irq(&v, VEC_CONFIG)) || (r = virtio_queue_setup(&v, 0, 16, VEC_QUEUE)))
		fail(E_SETUP, "setup: %s", virtio_strerror(r));
	virtio_driver_ok(&v);

	uint64_t cap = virtio_cfg_read64(&v, VIRTIO_BLK_CFG_CAPACITY);
	rt_printf("virtio_blk: %02x.%x common 0x%lx msix table 0x%lx, capacity %lu sectors, features 0x%lx, "
		  "queue size %u, msix %u\n",
		  v.pci->slot, v.pci->func, v.common, v.pci->msix_table, cap, v.features, v.vq[0].size, v.msix_entries);
	if (cap < s0 + NSECT + 1)
		fail(E_CAPACITY, "capacity %lu too small", cap);
	if (ro != virtio_has(&v, VIRTIO_BLK_F_RO))
		fail(E_RO_FEATURE, "VIRTIO_BLK_F_RO is %s, cmdline ro=%d", virtio_has(&v, VIRTIO_BLK_F_RO) ? "on" : "off",
		     ro);

	/* GET_ID */
	memset(id, 0, sizeof(id));
	if ((r = req(&v, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES, 1, false, &used)) != VIRTIO_BLK_S_OK)
		fail(E_GET_ID, "GET_ID status %d", r);
	size_t slen;
	const char *serial = cmdline_str("serial", &slen);
	if (serial) {
		if (slen > VIRTIO_BLK_ID_BYTES)
			slen = VIRTIO_BLK_ID_BYTES;
		if (strncmp(id, serial, slen) || (slen < VIRTIO_BLK_ID_BYTES && id[slen]))
			fail(E_GET_ID, "GET_ID returned '%s', expected '%.*s'", id, (int)slen, serial);
	}
	rt_printf("virtio_blk: id '%s'\n", id);

	bool indirect = virtio_has(&v, VIRTIO_F_INDIRECT_DESC);
	fill(wbuf, WORDS, s0 * 512, seed);
	if (!ro) {
		if ((r = req(&v, VIRTIO_BLK_T_OUT, s0, wbuf, sizeof(wbuf), 2, false, &used)) != VIRTIO_BLK_S_OK)
			fail(E_WRITE, "write sectors %lu+%u: status %d", s0, NSECT, r);
		expect_used(used, 1, "write");
		fill(obuf, 64, (cap - 1) * 512, seed);
		if ((r = req(&v, VIRTIO_BLK_T_OUT, cap - 1, obuf, 512, 1, indirect, &used)) != VIRTIO_BLK_S_OK)
			fail(E_WRITE, "write last sector %lu: status %d", cap - 1, r);
		if (virtio_has(&v, VIRTIO_BLK_F_FLUSH)) {
			if ((r = req(&v, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 0, false, &used)) != VIRTIO_BLK_S_OK)
				fail(E_FLUSH, "flush: status %d", r);
			expect_used(used, 1, "flush");
		} else {
			fail(E_FLUSH, "VIRTIO_BLK_F_FLUSH not offered");
		}
		/* Read back: all at once through an indirect table if offered. */
		poison(rbuf, WORDS);
		if ((r = req(&v, VIRTIO_BLK_T_IN, s0, rbuf, sizeof(rbuf), 4, indirect, &used)) != VIRTIO_BLK_S_OK)
			fail(E_READ, "read sectors %lu+%u: status %d", s0, NSECT, r);
		expect_used(used, sizeof(rbuf) + 1, "read");
		long d = diff(rbuf, wbuf, WORDS);
		if (d >= 0)
			fail(E_COMPARE, "sector %lu word %ld: read 0x%lx, wrote 0x%lx", s0 + (uint64_t)d / 64, d % 64,
			     rbuf[d], wbuf[d]);
		poison(rbuf, 64);
		if ((r = req(&v, VIRTIO_BLK_T_IN, cap - 1, rbuf, 512, 1, false, &used)) != VIRTIO_BLK_S_OK)
			fail(E_READ, "read last sector: status %d", r);
		if ((d = diff(rbuf, obuf, 64)) >= 0)
			fail(E_COMPARE, "last sector word %ld: read 0x%lx, wrote 0x%lx", d, rbuf[d], obuf[d]);
		rt_printf("virtio_blk: wrote, flushed and read back sectors %lu-%lu and %lu (seed %lu)\n", s0,
			  s0 + NSECT - 1, cap - 1, seed);
	} else {
		poison(obuf, WORDS);
		if ((r = req(&v, VIRTIO_BLK_T_IN, s0, obuf, sizeof(obuf), 1, false, &used)) != VIRTIO_BLK_S_OK)
			fail(E_READ, "read sectors %lu+%u: status %d", s0, NSECT, r);
		if ((r = req(&v, VIRTIO_BLK_T_OUT, s0, wbuf, sizeof(wbuf), 1, false, &used)) != VIRTIO_BLK_S_IOERR)
			fail(E_RO_WRITE, "write to a read-only disk: status %d, expected IOERR", r);
		poison(rbuf, WORDS);
		if ((r = req(&v, VIRTIO_BLK_T_IN, s0, rbuf, sizeof(rbuf), 2, indirect, &used)) != VIRTIO_BLK_S_OK)
			fail(E_READ, "re-read sectors %lu+%u: status %d", s0, NSECT, r);
		long d = diff(rbuf, obuf, WORDS);
		if (d >= 0)
			fail(E_RO_CHANGED, "read-only disk changed: sector %lu word %ld 0x%lx -> 0x%lx",
			     s0 + (uint64_t)d / 64, d % 64, obuf[d], rbuf[d]);
		rt_puts("virtio_blk: read-only: write refused with IOERR, data unchanged");
	}

	/* Past the end: sector == capacity, and a request straddling it. */
	if ((r = req(&v, VIRTIO_BLK_T_IN, cap, rbuf, 512, 1, false, &used)) != VIRTIO_BLK_S_IOERR)
		fail(E_RANGE, "read at sector %lu (capacity): status %d, expected IOERR", cap, r);
	if ((r = req(&v, VIRTIO_BLK_T_IN, cap - 1, rbuf, 1024, 1, false, &used)) != VIRTIO_BLK_S_IOERR)
		fail(E_RANGE, "read of 2 sectors at %lu: status %d, expected IOERR", cap - 1, r);
	if (!ro && (r = req(&v, VIRTIO_BLK_T_OUT, cap, wbuf, 512, 1, false, &used)) != VIRTIO_BLK_S_IOERR)
		fail(E_RANGE, "write at sector %lu (capacity): status %d, expected IOERR", cap, r);

	rt_printf("virtio_blk: %u interrupts, %u config interrupts\n", v.vq[0].irqs, v.config_irqs);
	rt_puts("virtio_blk: ok");
	return 0;
}
