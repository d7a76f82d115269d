#include "devices/legacy/uart_16550.h"

#include <errno.h>
#include <string.h>

static bool fifo_enabled(const struct uart16550 *u)
{
	return u->fcr & UART_FCR_ENABLE;
}

static unsigned rx_capacity(const struct uart16550 *u)
{
	return fifo_enabled(u) ? UART_FIFO_SIZE : 1;
}

static bool loopback(const struct uart16550 *u)
{
	return u->mcr & UART_MCR_LOOP;
}

/* The highest-priority pending source, in datasheet order. */
static uint8_t pending_source(const struct uart16550 *u)
{
	if ((u->ier & UART_IER_RLSI) && (u->lsr_err & UART_LSR_ERRS))
		return UART_IIR_RLSI;
	if ((u->ier & UART_IER_RDI) && u->rx_count)
		return UART_IIR_RDI;
	if ((u->ier & UART_IER_THRI) && u->thr_ipending)
		return UART_IIR_THRI;
	if ((u->ier & UART_IER_MSI) && (u->msr & 0x0f))
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

uint8_t uart16550_iir(const struct uart16550 *u)
{
	return pending_source(u) | (fifo_enabled(u) ? UART_IIR_FIFO : 0);
}

/* On a PC the INTR output reaches the PIC only while OUT2 is set. */
static void update_irq(struct uart16550 *u)
{
	bool level = pending_source(u) != UART_IIR_NO_INT && (u->mcr & UART_MCR_OUT2);

	if (level == u->irq_level)
		return;
	u->irq_level = level;
	if (u->set_irq)
		u->set_irq(u->opaque, level);
}

/* Modem inputs: none are wired, so a ready modem; in loopback the MCR
 * outputs feed them back. */
static uint8_t modem_lines(uint8_t mcr)
{
	uint8_t v = 0;

	if (!(mcr & UART_MCR_LOOP))
		return UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	if (mcr & UART_MCR_DTR)
		v |= UART_MSR_DSR;
	if (mcr & UART_MCR_RTS)
		v |= UART_MSR_CTS;
	if (mcr & UART_MCR_OUT1)
		v |= UART_MSR_RI;
	if (mcr & UART_MCR_OUT2)
		v |= UART_MSR_DCD;
	return v;
}

static void set_modem_lines(struct uart16550 *u, uint8_t lines)
{
	uint8_t old = u->msr & 0xf0, changed = old ^ lines, delta = 0;

	if (changed & UART_MSR_CTS)
		delta |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR)
		delta |= UART_MSR_DDSR;
	if ((old & UART_MSR_RI) && !(lines & UART_MSR_RI))
		delta |= UART_MSR_TERI;
	if (changed & UART_MSR_DCD)
		delta |= UART_MSR_DDCD;
	u->msr = lines | (u->msr & 0x0f) | delta;
}

static void rx_clear(struct uart16550 *u)
{
	u->rx_head = 0;
	u->rx_count = 0;
}

static void rx_push(struct uart16550 *u, uint8_t byte)
{
	if (u->rx_count < rx_capacity(u)) {
		u->rx[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = byte;
		u->rx_count++;
		return;
	}
	/* Overrun. With FIFOs the byte in the shift register is lost; in
	 * 16450 mode it overwrites the holding register. */
	u->lsr_err |= UART_LSR_OE;
	if (!fifo_enabled(u))
		u->rx[u->rx_head] = byte;
}

static uint8_t rx_pop(struct uart16550 *u)
{
	if (u->rx_count) {
		u->rbr = u->rx[u->rx_head];
		u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
		u->rx_count--;
	}
	return u->rbr;
}

void uart16550_reset(struct uart16550 *u)
{
	u->ier = 0;
	u->fcr = 0;
	u->lcr = 0;
	u->mcr = 0;
	u->lsr_err = 0;
	u->msr = modem_lines(0);
	u->scr = 0;
	u->dll = 0x0c;	/* 9600 baud */
	u->dlm = 0;
	u->rbr = 0;
	u->thr_ipending = false;
	rx_clear(u);
	update_irq(u);
}

void uart16550_init(struct uart16550 *u, uart_tx_fn tx, uart_irq_fn set_irq, void *opaque)
{
	memset(u, 0, sizeof(*u));
	u->tx = tx;
	u->set_irq = set_irq;
	u->opaque = opaque;
	uart16550_reset(u);
}

uint8_t uart16550_read(struct uart16550 *u, unsigned offset)
{
	uint8_t v;

	switch (offset) {
	case UART_RBR:
		if (u->lcr & UART_LCR_DLAB)
			return u->dll;
		v = rx_pop(u);
		update_irq(u);
		return v;
	case UART_IER:
		return (u->lcr & UART_LCR_DLAB) ? u->dlm : u->ier;
	case UART_IIR:
		v = uart16550_iir(u);
		if ((v & 0x0f) == UART_IIR_THRI) {
			u->thr_ipending = false;
			update_irq(u);
		}
		return v;
	case UART_LCR:
		return u->lcr;
	case UART_MCR:
		return u->mcr;
	case UART_LSR:
		v = (u->tx_busy ? 0 : UART_LSR_THRE | UART_LSR_TEMT) | u->lsr_err;
		if (u->rx_count)
			v |= UART_LSR_DR;
		if (u->lsr_err) {
			u->lsr_err = 0;
			update_irq(u);
		}
		return v;
	case UART_MSR:
		v = u->msr;
		if (v & 0x0f) {
			u->msr &= 0xf0;
			update_irq(u);
		}
		return v;
	case UART_SCR:
		return u->scr;
	default:
		return 0xff;
	}
}

static void write_fcr(struct uart16550 *u, uint8_t val)
{
	/* Switching between FIFO and 16450 mode empties the FIFOs; the other
	 * bits only take when FCR0 is written as 1. */
	if (!(val & UART_FCR_ENABLE)) {
		if (fifo_enabled(u))
			rx_clear(u);
		u->fcr = 0;
		return;
	}
	if (!fifo_enabled(u) || (val & UART_FCR_CLEAR_RX))
		rx_clear(u);
	u->fcr = val & 0xc9;	/* trigger level, DMA mode, enable */
}

void uart16550_set_tx_busy(struct uart16550 *u, bool busy)
{
	if (u->tx_busy == busy)
		return;
	u->tx_busy = busy;
	u->thr_ipending = !busy && (u->ier & UART_IER_THRI);
	update_irq(u);
}

void uart16550_write(struct uart16550 *u, unsigned offset, uint8_t val)
{
	switch (offset) {
	case UART_THR:
		if (u->lcr & UART_LCR_DLAB) {
			u->dll = val;
			return;
		}
		if (loopback(u))
			rx_push(u, val);
		else if (u->tx)
			u->tx(u->opaque, val);
		/* Sent at once: THR is empty again, unless the backend is full. */
		u->thr_ipending = (u->ier & UART_IER_THRI) && !u->tx_busy;
		break;
	case UART_IER:
		if (u->lcr & UART_LCR_DLAB) {
			u->dlm = val;
			return;
		}
		/* Setting THRI while THR is empty (it always is) raises THRE
		 * again even if an IIR read had cleared it; Linux checks. */
		if ((u->ier ^ val) & UART_IER_THRI)
			u->thr_ipending = (val & UART_IER_THRI) && !u->tx_busy;
		u->ier = val & 0x0f;
		break;
	case UART_FCR:
		write_fcr(u, val);
		break;
	case UART_LCR:
		u->lcr = val;
		return;
	case UART_MCR:
		u->mcr = val & 0x1f;
		set_modem_lines(u, modem_lines(u->mcr));
		break;
	case UART_SCR:
		u->scr = val;
		return;
	default:
		return;	/* LSR/MSR writes (factory test) and bad offsets */
	}
	update_irq(u);
}

void uart16550_io_read(struct uart16550 *u, uint64_t offset, void *data, unsigned len)
{
	uint8_t *d = data;

	for (unsigned i = 0; i < len; i++) {
		bool valid = i < UART_NR_REGS && offset < UART_NR_REGS - i;

		d[i] = valid ? uart16550_read(u, (unsigned)(offset + i)) : 0xff;
	}
}

void uart16550_io_write(struct uart16550 *u, uint64_t offset, const void *data, unsigned len)
{
	const uint8_t *d = data;

	for (unsigned i = 0; i < len; i++)
		if (i < UART_NR_REGS && offset < UART_NR_REGS - i)
			uart16550_write(u, (unsigned)(offset + i), d[i]);
}

unsigned uart16550_rx_space(const struct uart16550 *u)
{
	if (loopback(u))
		return 0;
	return rx_capacity(u) - u->rx_count;
}

size_t uart16550_receive(struct uart16550 *u, const uint8_t *buf, size_t len)
{
	size_t n = uart16550_rx_space(u);

	if (n > len)
		n = len;
	for (size_t i = 0; i < n; i++)
		rx_push(u, buf[i]);
	if (n)
		update_irq(u);
	return n;
}

void uart16550_save(const struct uart16550 *u, struct uart16550_state *s)
{
	memset(s, 0, sizeof(*s));
	s->ier = u->ier;
	s->fcr = u->fcr;
	s->lcr = u->lcr;
	s->mcr = u->mcr;
	s->msr = u->msr;
	s->scr = u->scr;
	s->dll = u->dll;
	s->dlm = u->dlm;
	s->lsr_err = u->lsr_err;
	s->rbr = u->rbr;
	s->thr_ipending = u->thr_ipending;
	s->rx_count = u->rx_count;
	for (unsigned i = 0; i < u->rx_count; i++)
		s->rx[i] = u->rx[(u->rx_head + i) % UART_FIFO_SIZE];
}

int uart16550_load(struct uart16550 *u, const struct uart16550_state *s)
{
	if ((s->ier & ~0x0f) || (s->fcr & ~0xc9) || (s->mcr & ~0x1f) ||
	    (s->lsr_err & ~UART_LSR_ERRS) ||
	    s->rx_count > ((s->fcr & UART_FCR_ENABLE) ? UART_FIFO_SIZE : 1) ||
	    (s->thr_ipending && !(s->ier & UART_IER_THRI)))
		return -EINVAL;
	u->ier = s->ier;
	u->fcr = s->fcr;
	u->lcr = s->lcr;
	u->mcr = s->mcr;
	u->msr = s->msr;
	u->scr = s->scr;
	u->dll = s->dll;
	u->dlm = s->dlm;
	u->lsr_err = s->lsr_err;
	u->rbr = s->rbr;
	u->thr_ipending = s->thr_ipending;
	u->rx_head = 0;
	u->rx_count = s->rx_count;
	memcpy(u->rx, s->rx, sizeof(u->rx));
	update_irq(u);
	return 0;
}

void uart16550_receive_byte(struct uart16550 *u, uint8_t byte)
{
	rx_push(u, byte);
	update_irq(u);
}
