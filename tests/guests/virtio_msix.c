/*
 * MSI-X masking on a virtio-rng device (queue 0 on MSI-X entry 1):
 *  1. an out-of-range queue_msix_vector / config_msix_vector reads back
 *     0xffff (NO_VECTOR), a valid one reads back as written;
 *  2. unmasked: a request completes with an interrupt;
 *  3. per-vector mask (entry's vector control bit 0): the used ring
 *     advances, no interrupt is taken, the PBA bit is set; unmasking
 *     delivers the interrupt and clears the PBA bit;
 *  4. the same with the function mask (message control bit 14).
 * Exit: rt_exit(0) and "virtio_msix: ok", else one of the codes below.
 */
#include "rt/rt.h"
#include "rt/apic.h"
#include "rt/virtio.h"

enum {
	E_PROBE = 2, E_START, E_SETUP, E_NO_VECTOR, E_REQUEST, E_MASKED_IRQ, E_NOT_PENDING, E_NOT_DELIVERED,
	E_STILL_PENDING, E_USED,
};

#define VEC_CONFIG 0x40
#define VEC_QUEUE 0x41
#define ENTRY 1
#define LINGER_MS 50

static uint8_t buf[16];

RT_PRINTF(2, 3) static RT_NORETURN void fail(int code, const char *fmt, ...)
{
	va_list ap;
	rt_printf("virtio_msix: FAIL(%d): ", code);
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_putc('\n');
	rt_exit(code);
}

static void submit(struct virtq *q)
{
	struct virtq_buf b = {buf, sizeof(buf)};
	int r = virtq_add(q, &b, 0, 1, false);
	if (r < 0)
		fail(E_REQUEST, "add: %s", virtio_strerror(r));
	virtq_kick(q);
}

static bool has_used(void *q) { return virtq_has_used(q); }

/* mask(true) masks the way under test, mask(false) unmasks. */
static void masked_round(struct virtio_dev *v, const char *what, void (*mask)(struct virtio_dev *, bool))
{
	struct virtq *q = &v->vq[0];
	uint32_t len;

	if (pci_msix_pending(v->pci, ENTRY))
		fail(E_STILL_PENDING, "%s: PBA bit set before the request", what);
	mask(v, true);
	uint32_t before = q->irqs;
	submit(q);
	if (!apic_wait(has_used, q, 5000))
		fail(E_REQUEST, "%s: request did not complete", what);
	/* Interrupts stay enabled (hlt) while lingering: nothing may arrive. */
	if (apic_wait_count(&q->irqs, before, LINGER_MS) || q->irqs != before)
		fail(E_MASKED_IRQ, "%s: interrupt delivered while masked", what);
	if (!pci_msix_pending(v->pci, ENTRY))
		fail(E_NOT_PENDING, "%s: PBA bit not set for the masked vector", what);
	mask(v, false);
	if (!apic_wait_count(&q->irqs, before, 2000))
		fail(E_NOT_DELIVERED, "%s: pending interrupt not delivered on unmask", what);
	if (q->irqs != before + 1)
		fail(E_NOT_DELIVERED, "%s: %u interrupts on unmask, expected 1", what, q->irqs - before);
	if (pci_msix_pending(v->pci, ENTRY))
		fail(E_STILL_PENDING, "%s: PBA bit still set after delivery", what);
	if (virtq_poll(q, &len) < 0 || len != sizeof(buf))
		fail(E_USED, "%s: bad used entry (len %u)", what, len);
	rt_printf("virtio_msix: %s: held pending, delivered on unmask\n", what);
}

static void vector_mask(struct virtio_dev *v, bool m) { pci_msix_mask(v->pci, ENTRY, m); }
static void function_mask(struct virtio_dev *v, bool m) { pci_msix_enable(v->pci, true, m); }

static void check_vector(struct virtio_dev *v, unsigned reg, const char *name, uint16_t good)
{
	uint16_t bad = v->msix_entries, rb;
	mmio_write16(v->common + reg, bad);
	if ((rb = mmio_read16(v->common + reg)) != VIRTIO_MSI_NO_VECTOR)
		fail(E_NO_VECTOR, "%s = %u (table has %u) read back 0x%x, expected 0xffff", name, bad, bad, rb);
	mmio_write16(v->common + reg, good);
	if ((rb = mmio_read16(v->common + reg)) != good)
		fail(E_NO_VECTOR, "%s = %u read back 0x%x", name, good, rb);
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	struct virtio_dev v;
	uint32_t len;

	int r = virtio_probe(&v, VIRTIO_ID_RNG, 0);
	if (r)
		fail(E_PROBE, "probe: %s", virtio_strerror(r));
	if ((r = virtio_start(&v, VIRTIO_F(VIRTIO_F_EVENT_IDX))))
		fail(E_START, "start: %s", virtio_strerror(r));
	if ((r = virtio_config_irq(&v, VEC_CONFIG)) || (r = virtio_queue_setup(&v, 0, 8, VEC_QUEUE)))
		fail(E_SETUP, "setup: %s", virtio_strerror(r));
	/* queue_select is still 0. */
	check_vector(&v, VIRTIO_COMMON_Q_MSIX, "queue_msix_vector", ENTRY);
	check_vector(&v, VIRTIO_COMMON_MSIX, "config_msix_vector", 0);
	virtio_driver_ok(&v);
	rt_printf("virtio_msix: %u MSI-X entries, table 0x%lx, PBA 0x%lx; out-of-range vectors read back 0xffff\n",
		  v.msix_entries, v.pci->msix_table, v.pci->msix_pba);

	submit(&v.vq[0]);
	if ((r = virtq_wait(&v.vq[0], &len, 5000)) < 0)
		fail(E_REQUEST, "unmasked request: %s", virtio_strerror(r));
	rt_puts("virtio_msix: unmasked: interrupt delivered");

	masked_round(&v, "vector mask", vector_mask);
	masked_round(&v, "function mask", function_mask);
	rt_puts("virtio_msix: ok");
	return 0;
}
