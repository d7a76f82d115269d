/* The 16550A register model, driven directly, and the chardev pieces that
 * need no terminal. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/chardev/chardev.h"
#include "devices/legacy/uart_16550.h"
#include "vmm/config.h"
#include "helpers/ck_run.h"

struct cap {
	uint8_t tx[256];
	unsigned ntx;
	bool level;
	unsigned irq_changes;
};

static struct uart16550 u;
static struct cap cap;

static void cap_tx(void *opaque, uint8_t byte)
{
	struct cap *c = opaque;

	if (c->ntx < sizeof(c->tx))
		c->tx[c->ntx] = byte;
	c->ntx++;
}

static void cap_irq(void *opaque, bool level)
{
	struct cap *c = opaque;

	/* The model reports changes only. */
	ck_assert(level != c->level);
	c->level = level;
	c->irq_changes++;
}

static void setup(void)
{
	memset(&cap, 0, sizeof(cap));
	uart16550_init(&u, cap_tx, cap_irq, &cap);
}

static uint8_t rd(unsigned off)
{
	return uart16550_read(&u, off);
}

static void wr(unsigned off, uint8_t v)
{
	uart16550_write(&u, off, v);
}

START_TEST(test_power_on_state)
{
	ck_assert_uint_eq(rd(UART_IER), 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	ck_assert_uint_eq(rd(UART_LCR), 0);
	ck_assert_uint_eq(rd(UART_MCR), 0);
	ck_assert_uint_eq(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_uint_eq(rd(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	ck_assert_uint_eq(cap.irq_changes, 0);
}
END_TEST

START_TEST(test_scratch)
{
	wr(UART_SCR, 0x5a);
	ck_assert_uint_eq(rd(UART_SCR), 0x5a);
	wr(UART_SCR, 0xa5);
	ck_assert_uint_eq(rd(UART_SCR), 0xa5);
	ck_assert_uint_eq(cap.ntx, 0);
}
END_TEST

START_TEST(test_dlab)
{
	wr(UART_IER, 0x05);
	wr(UART_LCR, UART_LCR_DLAB | 0x03);
	wr(UART_DLL, 0x01);
	wr(UART_DLM, 0x02);
	ck_assert_uint_eq(rd(UART_DLL), 0x01);
	ck_assert_uint_eq(rd(UART_DLM), 0x02);
	ck_assert_uint_eq(cap.ntx, 0);	/* DLL write is not a THR write */
	wr(UART_LCR, 0x03);
	ck_assert_uint_eq(rd(UART_LCR), 0x03);
	ck_assert_uint_eq(rd(UART_IER), 0x05);	/* IER untouched by DLM */
	wr(UART_LCR, UART_LCR_DLAB);
	ck_assert_uint_eq(rd(UART_DLL), 0x01);
	ck_assert_uint_eq(rd(UART_DLM), 0x02);
}
END_TEST

START_TEST(test_ier_masks_high_bits)
{
	/* Linux's autoconfig: IER must keep exactly the low four bits. */
	wr(UART_IER, 0);
	ck_assert_uint_eq(rd(UART_IER) & 0x0f, 0);
	wr(UART_IER, 0xff);
	ck_assert_uint_eq(rd(UART_IER), 0x0f);
}
END_TEST

START_TEST(test_thr_tx_and_thre_irq)
{
	wr(UART_MCR, UART_MCR_OUT2);
	ck_assert(!cap.level);
	wr(UART_IER, UART_IER_THRI);	/* newly set while THR empty */
	ck_assert(cap.level);
	ck_assert_uint_eq(uart16550_iir(&u), UART_IIR_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);	/* clears it */
	ck_assert(!cap.level);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);

	wr(UART_THR, 'A');
	ck_assert_uint_eq(cap.ntx, 1);
	ck_assert_uint_eq(cap.tx[0], 'A');
	ck_assert(cap.level);
	ck_assert_uint_eq(rd(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			  UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	ck_assert(!cap.level);

	/* A THR write also clears a pending THRE before raising it again. */
	wr(UART_THR, 'B');
	wr(UART_THR, 'C');
	ck_assert_uint_eq(cap.ntx, 3);
	ck_assert_uint_eq(cap.tx[1], 'B');
	ck_assert_uint_eq(cap.tx[2], 'C');
	ck_assert(cap.level);
}
END_TEST

/* A full backend holds THR: LSR says not empty, no THRE interrupt, even
 * when IER.THRI is toggled; when it drains, THRE and its interrupt return. */
START_TEST(test_tx_backpressure)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	wr(UART_THR, 'A');
	uart16550_set_tx_busy(&u, true);	/* the backend took 'A' and is now full */
	ck_assert(!cap.level);
	ck_assert_uint_eq(rd(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT), 0);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	wr(UART_IER, 0);
	wr(UART_IER, UART_IER_THRI);
	ck_assert(!cap.level);
	uart16550_set_tx_busy(&u, false);
	ck_assert(cap.level);
	ck_assert_uint_eq(rd(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			  UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	ck_assert_uint_eq(cap.ntx, 1);
}
END_TEST

START_TEST(test_thre_needs_out2)
{
	wr(UART_IER, UART_IER_THRI);
	ck_assert_uint_eq(uart16550_iir(&u), UART_IIR_THRI);
	ck_assert(!cap.level);
	wr(UART_MCR, UART_MCR_OUT2);
	ck_assert(cap.level);
	wr(UART_MCR, 0);
	ck_assert(!cap.level);
	ck_assert_uint_eq(uart16550_iir(&u), UART_IIR_THRI);
}
END_TEST

START_TEST(test_thre_reassert_on_ier)
{
	/* Linux's UART_BUG_THRE probe. */
	wr(UART_IER, UART_IER_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	wr(UART_IER, 0);
	wr(UART_IER, UART_IER_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	/* Rewriting the same IER value does not re-raise it. */
	wr(UART_IER, UART_IER_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
}
END_TEST

START_TEST(test_thre_off_without_ier)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_THR, 'x');
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	ck_assert_uint_eq(cap.irq_changes, 0);
}
END_TEST

START_TEST(test_rx_fifo_fill_and_drain)
{
	uint8_t in[20];

	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)('a' + i);
	wr(UART_FCR, UART_FCR_ENABLE);
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_RDI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	ck_assert_uint_eq(uart16550_rx_space(&u), 16);

	ck_assert_uint_eq(uart16550_receive(&u, in, sizeof(in)), 16);
	ck_assert_uint_eq(uart16550_rx_space(&u), 0);
	ck_assert_uint_eq(uart16550_receive(&u, in + 16, 4), 0);
	ck_assert(rd(UART_LSR) & UART_LSR_DR);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);	/* not cleared by IIR */
	ck_assert(cap.level);
	ck_assert_uint_eq(cap.irq_changes, 1);
	ck_assert(!(rd(UART_LSR) & UART_LSR_OE));

	for (unsigned i = 0; i < 16; i++) {
		ck_assert(rd(UART_LSR) & UART_LSR_DR);
		ck_assert_uint_eq(rd(UART_RBR), in[i]);
	}
	ck_assert(!(rd(UART_LSR) & UART_LSR_DR));
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	ck_assert(!cap.level);
	ck_assert_uint_eq(cap.irq_changes, 2);
	ck_assert_uint_eq(uart16550_rx_space(&u), 16);
	/* An empty RBR repeats the last byte. */
	ck_assert_uint_eq(rd(UART_RBR), in[15]);
}
END_TEST

START_TEST(test_rx_without_fifo)
{
	const uint8_t in[] = "ab";

	wr(UART_IER, UART_IER_RDI);
	ck_assert_uint_eq(uart16550_rx_space(&u), 1);
	ck_assert_uint_eq(uart16550_receive(&u, in, 2), 1);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	ck_assert_uint_eq(rd(UART_RBR), 'a');
	ck_assert_uint_eq(uart16550_receive(&u, in + 1, 1), 1);
	ck_assert_uint_eq(rd(UART_RBR), 'b');
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
}
END_TEST

START_TEST(test_fcr_clear_and_mode_switch)
{
	const uint8_t in[] = "0123";

	wr(UART_FCR, UART_FCR_ENABLE);
	ck_assert_uint_eq(uart16550_receive(&u, in, 4), 4);
	wr(UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
	ck_assert(!(rd(UART_LSR) & UART_LSR_DR));
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);

	ck_assert_uint_eq(uart16550_receive(&u, in, 4), 4);
	wr(UART_FCR, 0);	/* back to 16450 mode empties the FIFO */
	ck_assert(!(rd(UART_LSR) & UART_LSR_DR));
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	ck_assert_uint_eq(uart16550_rx_space(&u), 1);
}
END_TEST

START_TEST(test_overrun)
{
	uint8_t in[16];
	uint8_t lsr;

	memset(in, 'z', sizeof(in));
	wr(UART_FCR, UART_FCR_ENABLE);
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_RDI | UART_IER_RLSI);
	ck_assert_uint_eq(uart16550_receive(&u, in, 16), 16);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	uart16550_receive_byte(&u, 'X');	/* lost: the FIFO is full */
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_RLSI);	/* higher priority */
	lsr = rd(UART_LSR);
	ck_assert(lsr & UART_LSR_OE);
	ck_assert(lsr & UART_LSR_DR);
	ck_assert(!(rd(UART_LSR) & UART_LSR_OE));	/* cleared by the read */
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	for (unsigned i = 0; i < 16; i++)
		ck_assert_uint_eq(rd(UART_RBR), 'z');
	ck_assert(!(rd(UART_LSR) & UART_LSR_DR));
	ck_assert(!cap.level);
}
END_TEST

START_TEST(test_overrun_without_rlsi)
{
	wr(UART_IER, UART_IER_RDI);
	uart16550_receive_byte(&u, 1);
	uart16550_receive_byte(&u, 2);	/* 16450 mode: overwrites */
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	ck_assert(rd(UART_LSR) & UART_LSR_OE);
	ck_assert_uint_eq(rd(UART_RBR), 2);
}
END_TEST

START_TEST(test_loopback)
{
	/* Linux's autoconfig loopback check. */
	wr(UART_MCR, UART_MCR_LOOP | 0x0a);
	ck_assert_uint_eq(rd(UART_MSR) & 0xf0, 0x90);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	ck_assert_uint_eq(rd(UART_MSR) & 0xf0, UART_MSR_DSR);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1);
	ck_assert_uint_eq(rd(UART_MSR) & 0xf0, UART_MSR_RI);
	wr(UART_MCR, UART_MCR_LOOP | 0x0f);
	ck_assert_uint_eq(rd(UART_MSR) & 0xf0, 0xf0);

	/* TX loops back to RX, nothing reaches the line. */
	ck_assert_uint_eq(uart16550_rx_space(&u), 0);
	wr(UART_THR, 0x55);
	ck_assert_uint_eq(cap.ntx, 0);
	ck_assert(rd(UART_LSR) & UART_LSR_DR);
	ck_assert_uint_eq(rd(UART_RBR), 0x55);
	ck_assert(!(rd(UART_LSR) & UART_LSR_DR));

	wr(UART_MCR, 0);
	ck_assert_uint_eq(rd(UART_MSR) & 0xf0, 0xb0);
	ck_assert_uint_eq(uart16550_rx_space(&u), 1);
	wr(UART_THR, 0x66);
	ck_assert_uint_eq(cap.ntx, 1);
	ck_assert_uint_eq(cap.tx[0], 0x66);
}
END_TEST

START_TEST(test_modem_status_irq)
{
	uint8_t msr;

	wr(UART_IER, UART_IER_MSI);
	wr(UART_MCR, UART_MCR_OUT2);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	ck_assert(!cap.level);
	/* Loopback with only OUT2: CTS and DSR drop, DCD stays. */
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	ck_assert_uint_eq(uart16550_iir(&u), UART_IIR_MSI);
	ck_assert(cap.level);
	msr = rd(UART_MSR);
	ck_assert_uint_eq(msr, UART_MSR_DCD | UART_MSR_DCTS | UART_MSR_DDSR);
	ck_assert_uint_eq(rd(UART_MSR), UART_MSR_DCD);	/* deltas cleared */
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
	ck_assert(!cap.level);
	/* RI trailing edge. */
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2 | UART_MCR_OUT1);
	ck_assert_uint_eq(rd(UART_MSR), UART_MSR_DCD | UART_MSR_RI);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	ck_assert_uint_eq(rd(UART_MSR), UART_MSR_DCD | UART_MSR_TERI);
}
END_TEST

START_TEST(test_iir_priority)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, 0x0f);
	ck_assert_uint_eq(uart16550_iir(&u), UART_IIR_THRI);
	uart16550_receive_byte(&u, 'a');
	ck_assert_uint_eq(uart16550_iir(&u), UART_IIR_RDI);
	/* Reading IIR while RDI is reported leaves THRE pending. */
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_RDI);
	ck_assert_uint_eq(rd(UART_RBR), 'a');
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_THRI);
	ck_assert_uint_eq(rd(UART_IIR), UART_IIR_NO_INT);
}
END_TEST

START_TEST(test_irq_changes_exact)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_THRI);
	ck_assert_uint_eq(cap.irq_changes, 1);
	for (int i = 0; i < 10; i++)
		wr(UART_THR, 'x');	/* level stays up */
	wr(UART_SCR, 1);
	wr(UART_LCR, 3);
	(void)rd(UART_LSR);
	(void)rd(UART_MSR);
	ck_assert_uint_eq(cap.irq_changes, 1);
	(void)rd(UART_IIR);
	ck_assert_uint_eq(cap.irq_changes, 2);
	(void)rd(UART_IIR);
	ck_assert_uint_eq(cap.irq_changes, 2);
	wr(UART_THR, 'y');
	ck_assert_uint_eq(cap.irq_changes, 3);
	uart16550_reset(&u);	/* drops the line */
	ck_assert_uint_eq(cap.irq_changes, 4);
	ck_assert(!cap.level);
	ck_assert_uint_eq(rd(UART_IER), 0);
}
END_TEST

START_TEST(test_autoconfig_16550a)
{
	/* The checks Linux's 8250 autoconfig makes for a 16550A. */
	wr(UART_LCR, 0);
	wr(UART_FCR, UART_FCR_ENABLE);
	ck_assert_uint_eq(rd(UART_IIR) >> 6, 3);
	wr(UART_LCR, 0xbf);	/* EFR probe reads offset 2: must be non-zero */
	ck_assert_uint_ne(rd(2), 0);
	wr(UART_LCR, 0);
	wr(UART_FCR, UART_FCR_ENABLE | 0x20);	/* 16750 64-byte bit: no */
	ck_assert_uint_eq(rd(UART_IIR) >> 5, 6);
	wr(UART_IER, 0x40);	/* XScale UUE bit does not stick */
	ck_assert_uint_eq(rd(UART_IER) & 0x40, 0);
	ck_assert_uint_ne(rd(UART_LSR), 0xff);
}
END_TEST

START_TEST(test_bad_accesses)
{
	uint8_t buf[16];

	ck_assert_uint_eq(uart16550_read(&u, 8), 0xff);
	ck_assert_uint_eq(uart16550_read(&u, 0xffffffffu), 0xff);
	uart16550_write(&u, 8, 0x12);
	uart16550_write(&u, 1000, 0x12);
	uart16550_write(&u, UART_LSR, 0x00);	/* read-only */
	uart16550_write(&u, UART_MSR, 0x00);
	ck_assert_uint_eq(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);

	memset(buf, 0, sizeof(buf));
	uart16550_io_read(&u, 0, buf, 0);
	uart16550_io_read(&u, 6, buf, 4);
	ck_assert_uint_eq(buf[0], 0xb0);	/* MSR */
	ck_assert_uint_eq(buf[1], 0);		/* SCR */
	ck_assert_uint_eq(buf[2], 0xff);
	ck_assert_uint_eq(buf[3], 0xff);
	uart16550_io_read(&u, UINT64_MAX, buf, 16);
	for (unsigned i = 0; i < 16; i++)
		ck_assert_uint_eq(buf[i], 0xff);

	/* A 16-bit write hits two registers, as on ISA. */
	buf[0] = 0x11;
	buf[1] = 0x22;
	uart16550_io_write(&u, UART_SCR, buf, 2);	/* SCR, then past the end */
	ck_assert_uint_eq(rd(UART_SCR), 0x11);
	uart16550_io_write(&u, UART_LCR, buf, 2);
	ck_assert_uint_eq(rd(UART_LCR), 0x11);
	ck_assert_uint_eq(rd(UART_MCR), 0x22 & 0x1f);
	memset(buf, 0xff, sizeof(buf));
	uart16550_io_write(&u, 0, buf, 16);
	uart16550_io_write(&u, UINT64_MAX - 1, buf, 16);
	ck_assert_uint_eq(uart16550_receive(&u, NULL, 0), 0);
}
END_TEST

/* chardev */

START_TEST(test_escape_filter)
{
	const uint8_t in1[] = { 'a', 0x01, 0x01, 'b', 0x01 };
	const uint8_t in2[] = { 'h', 'c', 0x01, 'q', 'd' };
	const uint8_t in3[] = { 'e', 0x01, 'x', 'f', 'g' };
	uint8_t out[8];
	unsigned ev = 0;
	bool esc = false;
	size_t n;

	n = chardev_filter_escapes(&esc, in1, sizeof(in1), out, &ev);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(out, "a\x01" "b", 3);
	ck_assert(esc);	/* a trailing C-a carries over */
	ck_assert_uint_eq(ev, 0);

	n = chardev_filter_escapes(&esc, in2, sizeof(in2), out, &ev);
	ck_assert_uint_eq(n, 2);	/* C-a h -> help, C-a q swallowed */
	ck_assert_mem_eq(out, "cd", 2);
	ck_assert_uint_eq(ev, CHARDEV_ESC_HELP);
	ck_assert(!esc);

	ev = 0;
	n = chardev_filter_escapes(&esc, in3, sizeof(in3), out, &ev);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(out[0], 'e');
	ck_assert_uint_eq(ev, CHARDEV_ESC_QUIT);
}
END_TEST

START_TEST(test_chardev_file)
{
	char path[] = "/tmp/ember-chardev-XXXXXX";
	struct vm_config cfg;
	struct chardev *chr;
	char buf[64];
	int fd, err = 0;
	ssize_t n;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "stale", 5), 5);
	close(fd);

	memset(&cfg, 0, sizeof(cfg));
	cfg.console = CONSOLE_FILE;
	cfg.console_path = path;
	chr = chardev_create(&cfg, NULL, NULL, NULL, NULL, &err);
	ck_assert_ptr_nonnull(chr);
	ck_assert(!chardev_has_input(chr));
	chardev_write(chr, "hello ", 6);
	chardev_write(chr, "world\n", 6);
	chardev_pause_input(chr);
	chardev_resume_input(chr);
	chardev_destroy(chr);

	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	unlink(path);
	ck_assert_int_eq(n, 12);
	ck_assert_mem_eq(buf, "hello world\n", 12);
}
END_TEST

START_TEST(test_chardev_none_and_errors)
{
	struct vm_config cfg;
	struct chardev *chr;
	int err = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.console = CONSOLE_NONE;
	chr = chardev_create(&cfg, NULL, NULL, NULL, NULL, &err);
	ck_assert_ptr_nonnull(chr);
	chardev_write(chr, "dropped", 7);
	chardev_destroy(chr);
	chardev_destroy(NULL);
	chardev_write(NULL, "x", 1);

	cfg.console = CONSOLE_FILE;
	cfg.console_path = NULL;
	ck_assert_ptr_null(chardev_create(&cfg, NULL, NULL, NULL, NULL, &err));
	ck_assert_int_eq(err, -EINVAL);
	cfg.console_path = "/nonexistent-dir/ember/console.log";
	ck_assert_ptr_null(chardev_create(&cfg, NULL, NULL, NULL, NULL, &err));
	ck_assert_int_eq(err, -ENOENT);
	chardev_restore_all();	/* nothing to restore: a no-op */
}
END_TEST

static Suite *uart_suite(void)
{
	Suite *s = suite_create("uart");
	TCase *tc = tcase_create("16550");
	TCase *tc_chr = tcase_create("chardev");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_power_on_state);
	tcase_add_test(tc, test_scratch);
	tcase_add_test(tc, test_tx_backpressure);
	tcase_add_test(tc, test_dlab);
	tcase_add_test(tc, test_ier_masks_high_bits);
	tcase_add_test(tc, test_thr_tx_and_thre_irq);
	tcase_add_test(tc, test_thre_needs_out2);
	tcase_add_test(tc, test_thre_reassert_on_ier);
	tcase_add_test(tc, test_thre_off_without_ier);
	tcase_add_test(tc, test_rx_fifo_fill_and_drain);
	tcase_add_test(tc, test_rx_without_fifo);
	tcase_add_test(tc, test_fcr_clear_and_mode_switch);
	tcase_add_test(tc, test_overrun);
	tcase_add_test(tc, test_overrun_without_rlsi);
	tcase_add_test(tc, test_loopback);
	tcase_add_test(tc, test_modem_status_irq);
	tcase_add_test(tc, test_iir_priority);
	tcase_add_test(tc, test_irq_changes_exact);
	tcase_add_test(tc, test_autoconfig_16550a);
	tcase_add_test(tc, test_bad_accesses);
	suite_add_tcase(s, tc);

	tcase_add_test(tc_chr, test_escape_filter);
	tcase_add_test(tc_chr, test_chardev_file);
	tcase_add_test(tc_chr, test_chardev_none_and_errors);
	suite_add_tcase(s, tc_chr);
	return s;
}

int main(void)
{
	return ck_run_suite(uart_suite());
}
