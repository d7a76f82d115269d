/*
 * A malformed ring must break only its own device: on virtio-blk, publish a
 * looping chain (desc 0 -> 1 -> 0, both device-readable with NEXT), then
 * expect DEVICE_NEEDS_RESET (status bit 64) and a configuration-change
 * interrupt (MSI-X entry 0), within 5 s. A virtio-rng device must still serve
 * a request, and the blk device must work again after a reset.
 * cmdline config_irq=0: do not require the configuration interrupt.
 * Exit: rt_exit(0) after "virtio_badring: needs_reset ok, rng still ok" and
 * "virtio_badring: blk reset ok", else one of the codes below.
 */
#include "rt/rt.h"
#include "rt/apic.h"
#include "rt/virtio.h"

enum {
	E_PROBE_BLK = 2, E_PROBE_RNG, E_SETUP_BLK, E_SETUP_RNG, E_RNG_BEFORE, E_NO_NEEDS_RESET, E_NO_CONFIG_IRQ,
	E_RNG_AFTER, E_BLK_RESET, E_BLK_AFTER,
};

#define VEC_BLK_CONFIG 0x40
#define VEC_BLK_QUEUE 0x41
#define VEC_RNG_QUEUE 0x42

static uint8_t hdr[16], rngbuf[32], sector[512];

RT_PRINTF(2, 3) static RT_NORETURN void fail(int code, const char *fmt, ...)
{
	va_list ap;
	rt_printf("virtio_badring: FAIL(%d): ", code);
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_putc('\n');
	rt_exit(code);
}

static int setup_blk(struct virtio_dev *blk)
{
	int r = virtio_start(blk, VIRTIO_F(VIRTIO_F_EVENT_IDX));
	if (!r)
		r = virtio_config_irq(blk, VEC_BLK_CONFIG);
	if (!r)
		r = virtio_queue_setup(blk, 0, 8, VEC_BLK_QUEUE);
	if (!r)
		virtio_driver_ok(blk);
	return r;
}

static int rng_request(struct virtio_dev *rng)
{
	struct virtq_buf b = {rngbuf, sizeof(rngbuf)};
	uint32_t len = 0;
	int r = virtq_add(&rng->vq[0], &b, 0, 1, false);
	if (r < 0)
		return r;
	virtq_kick(&rng->vq[0]);
	r = virtq_wait(&rng->vq[0], &len, 5000);
	if (r >= 0 && (len == 0 || len > sizeof(rngbuf)))
		return VIRTIO_E_USED;
	return r < 0 ? r : 0;
}

struct broken_wait {
	struct virtio_dev *blk;
	uint32_t irqs0;
	bool need_irq;
};

static bool broken(void *arg)
{
	struct broken_wait *w = arg;
	if (w->need_irq && w->blk->config_irqs == w->irqs0)
		return false;
	return virtio_status(w->blk) & VIRTIO_S_NEEDS_RESET;
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	struct virtio_dev blk, rng;
	int r;

	if ((r = virtio_probe(&blk, VIRTIO_ID_BLOCK, 0)))
		fail(E_PROBE_BLK, "blk probe: %s", virtio_strerror(r));
	if ((r = virtio_probe(&rng, VIRTIO_ID_RNG, 0)))
		fail(E_PROBE_RNG, "rng probe: %s", virtio_strerror(r));
	if ((r = setup_blk(&blk)))
		fail(E_SETUP_BLK, "blk setup: %s", virtio_strerror(r));
	if ((r = virtio_start(&rng, 0)) || (r = virtio_queue_setup(&rng, 0, 8, VEC_RNG_QUEUE)))
		fail(E_SETUP_RNG, "rng setup: %s", virtio_strerror(r));
	virtio_driver_ok(&rng);
	if ((r = rng_request(&rng)))
		fail(E_RNG_BEFORE, "rng before: %s", virtio_strerror(r));

	/* desc 0 -> desc 1 -> desc 0: a chain with no end. */
	struct virtq *q = &blk.vq[0];
	q->desc[0] = (struct vring_desc){(uintptr_t)hdr, sizeof(hdr), VRING_DESC_F_NEXT, 1};
	q->desc[1] = (struct vring_desc){(uintptr_t)hdr, sizeof(hdr), VRING_DESC_F_NEXT, 0};
	uint32_t irqs0 = blk.config_irqs;
	virtq_publish_raw(q, 0);
	virtq_kick(q);

	struct broken_wait w = {&blk, irqs0, rt_cmdline_int("config_irq", 1) != 0};
	bool ok = apic_wait(broken, &w, 5000);
	uint8_t st = virtio_status(&blk);
	if (!(st & VIRTIO_S_NEEDS_RESET))
		fail(E_NO_NEEDS_RESET, "blk status 0x%x after a looping chain: no NEEDS_RESET", st);
	if (!ok)
		fail(E_NO_CONFIG_IRQ, "blk status 0x%x has NEEDS_RESET but no config interrupt came", st);
	rt_printf("virtio_badring: blk status 0x%x, %u config interrupt(s)\n", st, blk.config_irqs - irqs0);

	if ((r = rng_request(&rng)))
		fail(E_RNG_AFTER, "rng after: %s", virtio_strerror(r));
	rt_puts("virtio_badring: needs_reset ok, rng still ok");

	/* Reset and re-initialize blk; a read must work again. */
	if ((r = setup_blk(&blk)))
		fail(E_BLK_RESET, "blk re-init: %s", virtio_strerror(r));
	uint32_t used;
	r = virtio_blk_request(&blk, VIRTIO_BLK_T_IN, 0, sector, sizeof(sector), 1, false, &used, 5000);
	if (r != VIRTIO_BLK_S_OK)
		fail(E_BLK_AFTER, "blk read after reset: %s %d", r < 0 ? virtio_strerror(r) : "status", r);
	rt_puts("virtio_badring: blk reset ok");
	return 0;
}
