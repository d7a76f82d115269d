/* A 16550A UART register model with no I/O of its own: transmitted bytes
 * and the interrupt line go to callbacks, received bytes are pushed in.
 * Not thread-safe: the owner serialises calls (the serial device holds its
 * mutex). Transmission is instantaneous, so THRE and TEMT are always set. */
#ifndef EMBER_UART_16550_H
#define EMBER_UART_16550_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UART_NR_REGS	8
#define UART_FIFO_SIZE	16

/* Register offsets. */
#define UART_RBR 0	/* read, DLAB=0 */
#define UART_THR 0	/* write, DLAB=0 */
#define UART_DLL 0	/* DLAB=1 */
#define UART_IER 1	/* DLAB=0 */
#define UART_DLM 1	/* DLAB=1 */
#define UART_IIR 2	/* read */
#define UART_FCR 2	/* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI	0x01
#define UART_IER_THRI	0x02
#define UART_IER_RLSI	0x04
#define UART_IER_MSI	0x08

#define UART_IIR_NO_INT	0x01
#define UART_IIR_MSI	0x00
#define UART_IIR_THRI	0x02
#define UART_IIR_RDI	0x04
#define UART_IIR_RLSI	0x06
#define UART_IIR_FIFO	0xC0

#define UART_FCR_ENABLE	0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04

#define UART_LCR_DLAB	0x80

#define UART_MCR_DTR	0x01
#define UART_MCR_RTS	0x02
#define UART_MCR_OUT1	0x04
#define UART_MCR_OUT2	0x08
#define UART_MCR_LOOP	0x10

#define UART_LSR_DR	0x01
#define UART_LSR_OE	0x02
#define UART_LSR_PE	0x04
#define UART_LSR_FE	0x08
#define UART_LSR_BI	0x10
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40
#define UART_LSR_ERRS	(UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI)

#define UART_MSR_DCTS	0x01
#define UART_MSR_DDSR	0x02
#define UART_MSR_TERI	0x04
#define UART_MSR_DDCD	0x08
#define UART_MSR_CTS	0x10
#define UART_MSR_DSR	0x20
#define UART_MSR_RI	0x40
#define UART_MSR_DCD	0x80

typedef void (*uart_tx_fn)(void *opaque, uint8_t byte);
typedef void (*uart_irq_fn)(void *opaque, bool level);

struct uart16550 {
	uint8_t ier, fcr, lcr, mcr, msr, scr, dll, dlm;
	uint8_t lsr_err;	/* OE/PE/FE/BI, cleared by reading LSR */
	uint8_t rbr;		/* last byte read, returned when empty */
	bool thr_ipending;	/* THRE interrupt latched (IER.THRI only) */
	bool tx_busy;		/* the backend cannot take more: THR stays full */
	bool irq_level;

	uint8_t rx[UART_FIFO_SIZE];
	unsigned rx_head, rx_count;

	uart_tx_fn tx;
	uart_irq_fn set_irq;
	void *opaque;
};

/* Power-on state; callbacks may be NULL. */
void uart16550_init(struct uart16550 *u, uart_tx_fn tx, uart_irq_fn set_irq, void *opaque);
/* Back to power-on state, dropping the IRQ line if it was up. */
void uart16550_reset(struct uart16550 *u);

/* One byte-wide register access; offsets >= UART_NR_REGS read 0xff and
 * ignore writes. */
uint8_t uart16550_read(struct uart16550 *u, unsigned offset);
void uart16550_write(struct uart16550 *u, unsigned offset, uint8_t val);

/* A bus access of any width: each byte goes to the next register, as on
 * the ISA bus. */
void uart16550_io_read(struct uart16550 *u, uint64_t offset, void *data, unsigned len);
void uart16550_io_write(struct uart16550 *u, uint64_t offset, const void *data, unsigned len);

/* Transmitter back-pressure from the backend. While busy, LSR reports THR
 * and the shifter full and no THRE interrupt is raised, so a driver that
 * honours LSR waits instead of losing bytes; when the backend is ready
 * again, THRE (and its interrupt, if enabled) comes back. */
void uart16550_set_tx_busy(struct uart16550 *u, bool busy);

/* Bytes the receiver can take from the line now: FIFO room (1 in 16450
 * mode), 0 in loopback mode where the line is disconnected. */
unsigned uart16550_rx_space(const struct uart16550 *u);
/* Receive up to len bytes from the line; returns how many were taken
 * (never more than rx_space). */
size_t uart16550_receive(struct uart16550 *u, const uint8_t *buf, size_t len);
/* A byte arriving regardless of space: a full receiver sets LSR.OE. */
void uart16550_receive_byte(struct uart16550 *u, uint8_t byte);

/* The IIR value without side effects (for tests and debugging). */
uint8_t uart16550_iir(const struct uart16550 *u);

/* Snapshots: the registers and the receive FIFO (oldest byte first). Load
 * refuses values the registers cannot hold (-EINVAL), then drives the
 * interrupt line to match. tx_busy is the owner's (its backend's) to set. */
struct uart16550_state {
	uint8_t ier, fcr, lcr, mcr, msr, scr, dll, dlm, lsr_err, rbr;
	bool thr_ipending;
	uint8_t rx[UART_FIFO_SIZE];
	unsigned rx_count;
};

void uart16550_save(const struct uart16550 *u, struct uart16550_state *s);
int uart16550_load(struct uart16550 *u, const struct uart16550_state *s);

#endif
