/* virtio-console (virtio 1.2 section 5.3), transport-independent core: one
 * port, no multiport. Queue 0 (receiveq) carries host input to the guest,
 * queue 1 (transmitq) guest output to the host.
 *
 * Features: VIRTIO_CONSOLE_F_EMERG_WRITE (a write to emerg_wr sends its low
 * byte to the output), EVENT_IDX, INDIRECT_DESC. Neither F_SIZE nor
 * F_MULTIPORT is offered: cols and rows read 0, max_nr_ports reads 1, and
 * emerg_wr reads 0. Config reads outside the 12 bytes read zeros; writes
 * other than to emerg_wr are ignored.
 *
 * Output goes to io->write in queue order. Host input given to
 * virtio_console_input() is copied into receive buffers as they become
 * available (a buffer may be partly filled; the used length says how much);
 * what does not fit waits in a VIRTIO_CONSOLE_INBUF-byte buffer, and once
 * fewer than CHARDEV_READ_MAX bytes of it are free the device calls
 * io->pause_input, then io->resume_input when it has drained to half.
 * Buffered input survives a device reset: the next driver gets it.
 *
 * Malformed chains: a chain the queue rejects (a loop, next out of range,
 * ...) and a chain going the wrong way (a device-writable descriptor on the
 * transmitq, a device-readable one on the receiveq; the driver MUST NOT post
 * either) are returned with used length 0, nothing of them is transmitted or
 * written, the queue stops, and the device sets DEVICE_NEEDS_RESET with a
 * config interrupt. Input meant for a rejected receive chain stays buffered.
 *
 * There is no thread: whoever owns the kick eventfds (the main event loop
 * in the VMM, the test itself in unit tests) calls virtio_console_kick();
 * one call transmits at most VIRTIO_CONSOLE_TX_BUDGET bytes (counted per
 * 4 KiB copy, so a single huge chain is split across calls) and starts at
 * most VIRTIO_CONSOLE_TX_CHAINS chains, then re-kicks itself for the rest.
 * io->write never blocks: it returns how much it took, and when that is
 * short the device keeps the rest (and the guest's chain) and stops until
 * the transmitq is kicked again, which the host side does once its backend
 * is writable. An internal lock serialises the kicks, input and
 * reset/activate.
 */
#ifndef EMBER_VIRTIO_CONSOLE_H
#define EMBER_VIRTIO_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"
#include "base/guest_mem.h"

#define VIRTIO_CONSOLE_F_SIZE		0
#define VIRTIO_CONSOLE_F_MULTIPORT	1
#define VIRTIO_CONSOLE_F_EMERG_WRITE	2

#define VIRTIO_CONSOLE_RXQ		0
#define VIRTIO_CONSOLE_TXQ		1
#define VIRTIO_CONSOLE_QUEUE_SIZE	64
#define VIRTIO_CONSOLE_INBUF		(64 * 1024)	/* host input held back */
#define VIRTIO_CONSOLE_TX_BUDGET	(256 * 1024)	/* bytes per kick */
#define VIRTIO_CONSOLE_TX_CHAINS	256		/* chains per kick */

/* Config space, as the driver sees it (little-endian, packed). */
struct virtio_console_config {
	uint16_t cols;
	uint16_t rows;
	uint32_t max_nr_ports;
	uint32_t emerg_wr;
} __attribute__((packed));

#define VIRTIO_CONSOLE_CFG_COLS		0
#define VIRTIO_CONSOLE_CFG_ROWS		2
#define VIRTIO_CONSOLE_CFG_MAX_NR_PORTS	4
#define VIRTIO_CONSOLE_CFG_EMERG_WR	8

/* The host side of the port: a chardev in the VMM, a capture buffer in
 * tests. */
struct virtio_console_io {
	/* Guest output, in order. Must not block: returns the bytes taken
	 * (fewer than len when the backend is full; the device offers the
	 * rest again on a later kick). Called with the device lock held from
	 * the thread calling virtio_console_kick(), and for emerg_wr from the
	 * thread writing the config space (a vCPU; a short write drops it). */
	size_t (*write)(void *opaque, const void *buf, size_t len);
	/* Optional input flow control (see above); called with the lock held
	 * from virtio_console_input() / virtio_console_kick(). */
	void (*pause_input)(void *opaque);
	void (*resume_input)(void *opaque);
	void *opaque;
};

struct virtio_console;

/* *io is copied. */
int virtio_console_create(struct virtio_console **out, const struct guest_mem *gm,
			  const struct virtio_console_io *io) __attribute__((warn_unused_result));
/* The caller must have stopped calling into the device. NULL is a no-op. */
void virtio_console_destroy(struct virtio_console *c);
struct virtio_device *virtio_console_virtio(struct virtio_console *c);

/* Queue q's kick eventfd fired (or may have): drain it and serve the queue.
 * Returns true when the transmit budget ran out with work left; the kick
 * eventfd has then been written again. */
bool virtio_console_kick(struct virtio_console *c, unsigned q);

/* Host input. Takes all len bytes; if more than VIRTIO_CONSOLE_INBUF would
 * be waiting, the excess is dropped with a warning (a caller that honours
 * pause_input never gets there). */
void virtio_console_input(struct virtio_console *c, const uint8_t *buf, size_t len);
/* VM pause: after pause() returns, kicks and input are taken (input is
 * buffered) but no queue or guest memory is touched; resume() serves what
 * came meanwhile. */
void virtio_console_pause(struct virtio_console *c);
void virtio_console_resume(struct virtio_console *c);
/* Host input not yet delivered to the guest. */
size_t virtio_console_input_pending(struct virtio_console *c);

#endif
