/*
 * virtio-rng over modern virtio-pci with MSI-X: requests 64 bytes (cmdline
 * bytes=N, 1-1024) into a device-writable buffer, waits for the interrupt,
 * and checks the bytes arrived (the device may return fewer per request; up
 * to 16 requests are made) and are not all zero.
 * Exit: rt_exit(0) and "virtio_rng: ok N bytes", else one of the codes below.
 */
#include "rt/rt.h"
#include "rt/apic.h"
#include "rt/virtio.h"

enum { E_PROBE = 2, E_START, E_SETUP, E_REQUEST, E_SHORT, E_ZERO, E_LEN };

#define VEC_QUEUE 0x41
#define MAX_BYTES 1024

static uint8_t buf[MAX_BYTES];

RT_PRINTF(2, 3) static RT_NORETURN void fail(int code, const char *fmt, ...)
{
	va_list ap;
	rt_printf("virtio_rng: FAIL(%d): ", code);
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_putc('\n');
	rt_exit(code);
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	struct virtio_dev v;
	long want_bytes = rt_cmdline_int("bytes", 64);
	if (want_bytes < 1 || want_bytes > MAX_BYTES)
		want_bytes = 64;
	uint32_t total = 0, want = (uint32_t)want_bytes;

	int r = virtio_probe(&v, VIRTIO_ID_RNG, 0);
	if (r)
		fail(E_PROBE, "probe: %s (%u PCI functions on bus 0)", virtio_strerror(r), pci_scan());
	if ((r = virtio_start(&v, VIRTIO_F(VIRTIO_F_EVENT_IDX))))
		fail(E_START, "start: %s (offered 0x%lx)", virtio_strerror(r), v.offered);
	if ((r = virtio_queue_setup(&v, 0, 8, VEC_QUEUE)))
		fail(E_SETUP, "setup: %s", virtio_strerror(r));
	virtio_driver_ok(&v);

	unsigned reqs = 0;
	while (total < want && reqs < 16) {
		struct virtq_buf b = {buf + total, want - total};
		uint32_t len = 0;
		reqs++;
		if ((r = virtq_add(&v.vq[0], &b, 0, 1, false)) < 0)
			fail(E_REQUEST, "add: %s", virtio_strerror(r));
		virtq_kick(&v.vq[0]);
		if ((r = virtq_wait(&v.vq[0], &len, 5000)) < 0)
			fail(E_REQUEST, "request %u: %s", reqs, virtio_strerror(r));
		if (len > want - total)
			fail(E_LEN, "used len %u exceeds the %u-byte buffer", len, want - total);
		total += len;
	}
	if (total != want)
		fail(E_SHORT, "got %u of %u bytes in %u requests", total, want, reqs);
	uint8_t any = 0;
	for (uint32_t i = 0; i < total; i++)
		any |= buf[i];
	if (!any)
		fail(E_ZERO, "all %u bytes are zero", total);
	rt_printf("virtio_rng: %u request(s), %u interrupt(s), first bytes %02x %02x %02x %02x\n", reqs,
		  v.vq[0].irqs, buf[0], buf[1], buf[2], buf[3]);
	rt_printf("virtio_rng: ok %u bytes\n", total);
	return 0;
}
