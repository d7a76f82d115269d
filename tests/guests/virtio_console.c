/*
 * virtio-console over modern virtio-pci with MSI-X: sets up the receiveq
 * (queue 0, one posted buffer) and the transmitq (queue 1), sends
 * "hello from virtio-console\n" on the transmitq and waits for its used
 * entry and interrupt.
 * Exit: rt_exit(0) and "virtio_console: ok", else one of the codes below.
 */
#include "rt/rt.h"
#include "rt/virtio.h"

enum { E_PROBE = 2, E_START, E_SETUP, E_RX, E_TX, E_ID, E_LEN };

#define RXQ 0
#define TXQ 1
#define VEC_RX 0x41
#define VEC_TX 0x42

static const char hello[] = "hello from virtio-console\n";
static uint8_t rxbuf[64];
static char txbuf[sizeof(hello)];

RT_PRINTF(2, 3) static RT_NORETURN void fail(int code, const char *fmt, ...)
{
	va_list ap;
	rt_printf("virtio_console: FAIL(%d): ", code);
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
	uint32_t len = 0xffffffffu;
	int r, id;

	if ((r = virtio_probe(&v, VIRTIO_ID_CONSOLE, 0)))
		fail(E_PROBE, "probe: %s (%u PCI functions on bus 0)", virtio_strerror(r), pci_scan());
	if ((r = virtio_start(&v, VIRTIO_F(VIRTIO_F_EVENT_IDX))))
		fail(E_START, "start: %s (offered 0x%lx)", virtio_strerror(r), v.offered);
	if (v.num_queues < 2)
		fail(E_SETUP, "%u queues", v.num_queues);
	if ((r = virtio_queue_setup(&v, RXQ, 8, VEC_RX)))
		fail(E_SETUP, "receiveq: %s", virtio_strerror(r));
	if ((r = virtio_queue_setup(&v, TXQ, 8, VEC_TX)))
		fail(E_SETUP, "transmitq: %s", virtio_strerror(r));
	virtio_driver_ok(&v);

	/* A receive buffer, as a driver keeps posted; no input is expected. */
	struct virtq_buf rb = {rxbuf, sizeof(rxbuf)};
	if ((r = virtq_add(&v.vq[RXQ], &rb, 0, 1, false)) < 0)
		fail(E_RX, "receiveq add: %s", virtio_strerror(r));
	virtq_kick(&v.vq[RXQ]);

	for (unsigned i = 0; i < sizeof(hello) - 1; i++)
		txbuf[i] = hello[i];
	struct virtq_buf tb = {txbuf, sizeof(hello) - 1};
	int head = virtq_add(&v.vq[TXQ], &tb, 1, 0, false);
	if (head < 0)
		fail(E_TX, "transmitq add: %s", virtio_strerror(head));
	virtq_kick(&v.vq[TXQ]);
	if ((id = virtq_wait(&v.vq[TXQ], &len, 5000)) < 0)
		fail(E_TX, "transmitq: %s (status 0x%x)", virtio_strerror(id), virtio_status(&v));
	if (id != head)
		fail(E_ID, "used id %d, sent head %d", id, head);
	if (len != 0)
		fail(E_LEN, "used len %u for a device-readable buffer", len);
	if (virtio_status(&v) & VIRTIO_S_NEEDS_RESET)
		fail(E_TX, "device needs reset (status 0x%x)", virtio_status(&v));
	if (virtq_has_used(&v.vq[RXQ]))
		fail(E_RX, "unexpected input on the receiveq");
	rt_printf("virtio_console: %u transmit interrupt(s)\n", v.vq[TXQ].irqs);
	rt_puts("virtio_console: ok");
	return 0;
}
