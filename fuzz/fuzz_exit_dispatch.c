/* libFuzzer target: exit decoding and dispatch, end to end without KVM.
 * Fabricated kvm_run contents go through handle_exit(), and every PIO or
 * MMIO access it yields is dispatched through the buses to the legacy
 * device models a guest reaches that way: the 16550 UART (0x3F8), the
 * CMOS RTC (0x70), the i8042 (0x60, 0x64), plus an MMIO region that checks
 * the bus hands it in-range offsets.
 *
 * Input: records of 64 bytes, each laid over the start of a 1 KiB kvm_run
 * (exit_reason at 8, the io/mmio union at 32), whose remaining bytes hold
 * the whole input once (where io.data_offset may point). One record, one
 * exit; device state carries over between records. */
#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"
#include "devices/legacy/uart_16550.h"
#include "base/bus.h"
#include "vmm/exit.h"
#include "base/log.h"

#define RUN_SIZE	1024
#define REC		64
#define MMIO_BASE	0xd0000000ULL
#define MMIO_LEN	0x1000

static uint8_t run_buf[RUN_SIZE] __attribute__((aligned(64)));
static uint8_t mmio_mem[MMIO_LEN];
static struct uart16550 uart;
static struct rtc_cmos rtc;
static struct i8042 kbd;
static time_t now;
static unsigned resets;

static void uart_rd(void *o, uint64_t off, void *d, unsigned len)
{
	uart16550_io_read(o, off, d, len);
}

static void uart_wr(void *o, uint64_t off, const void *d, unsigned len)
{
	uart16550_io_write(o, off, d, len);
}

static void rtc_rd(void *o, uint64_t off, void *d, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		((uint8_t *)d)[i] = rtc_cmos_read(o, (unsigned)(off + i) & 1, now);
}

static void rtc_wr(void *o, uint64_t off, const void *d, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		rtc_cmos_write(o, (unsigned)(off + i) & 1, ((const uint8_t *)d)[i], now);
}

static void kbd_rd(void *o, uint64_t off, void *d, unsigned len)
{
	memset(d, 0, len);
	*(uint8_t *)d = off ? i8042_read_status(o) : i8042_read_data(o);
}

static void kbd_wr(void *o, uint64_t off, const void *d, unsigned len)
{
	(void)len;
	if (off)
		(void)i8042_write_command(o, *(const uint8_t *)d);
	else
		i8042_write_data(o, *(const uint8_t *)d);
}

static void mmio_rd(void *o, uint64_t off, void *d, unsigned len)
{
	(void)o;
	if (off >= MMIO_LEN || len > MMIO_LEN - off)
		abort();	/* the bus must never hand out an out-of-range access */
	memcpy(d, mmio_mem + off, len);
}

static void mmio_wr(void *o, uint64_t off, const void *d, unsigned len)
{
	(void)o;
	if (off >= MMIO_LEN || len > MMIO_LEN - off)
		abort();
	memcpy(mmio_mem + off, d, len);
}

static void on_reset(void *opaque, const char *cause)
{
	(void)opaque;
	(void)cause;
	resets++;
}

static const struct bus_dev_ops uart_ops = { uart_rd, uart_wr };
static const struct bus_dev_ops rtc_ops = { rtc_rd, rtc_wr };
static const struct bus_dev_ops kbd_ops = { kbd_rd, kbd_wr };
static const struct bus_dev_ops mmio_ops = { mmio_rd, mmio_wr };

static struct bus pio, mmio;

static void setup_once(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	log_set_level(LOG_ERR);
	if (bus_init(&pio, "pio") || bus_init(&mmio, "mmio") ||
	    bus_register(&pio, 0x3f8, 8, &uart_ops, &uart, "serial") ||
	    bus_register(&pio, 0x70, 2, &rtc_ops, &rtc, "rtc") ||
	    bus_register(&pio, 0x60, 1, &kbd_ops, &kbd, "i8042-data") ||
	    bus_register(&pio, 0x64, 1, &kbd_ops, &kbd, "i8042-cmd") ||
	    bus_register(&mmio, MMIO_BASE, MMIO_LEN, &mmio_ops, NULL, "ram"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvm_run *run = (struct kvm_run *)run_buf;

	setup_once();
	uart16550_init(&uart, NULL, NULL, NULL);
	rtc_cmos_init(&rtc);
	rtc_cmos_set_memory(&rtc, 128ULL << 20, 0, 1);
	i8042_init(&kbd, on_reset, NULL);
	now = 1700000000;
	memset(run_buf, 0, sizeof(run_buf));
	memcpy(run_buf + REC, data, size < RUN_SIZE - REC ? size : RUN_SIZE - REC);

	for (size_t off = 0; off + REC <= size && off < 64 * REC; off += REC) {
		struct exit_action act;
		int ret;

		memcpy(run_buf, data + off, REC);
		now += data[off];
		ret = handle_exit(run, RUN_SIZE, &act);
		if (ret < 0)
			continue;
		if (act.kind == EXIT_ACT_PIO_IN || act.kind == EXIT_ACT_PIO_OUT ||
		    act.kind == EXIT_ACT_MMIO_READ || act.kind == EXIT_ACT_MMIO_WRITE) {
			struct bus *b = act.kind == EXIT_ACT_PIO_IN || act.kind == EXIT_ACT_PIO_OUT
					? &pio : &mmio;
			bool write = act.kind == EXIT_ACT_PIO_OUT || act.kind == EXIT_ACT_MMIO_WRITE;

			/* handle_exit promised the data lies inside the mapping. */
			if (!act.data || act.data < run_buf || !act.size ||
			    (size_t)(act.data - run_buf) + (size_t)act.size * act.count > RUN_SIZE)
				abort();
			for (unsigned i = 0; i < act.count; i++) {
				uint8_t *d = act.data + (size_t)i * act.size;

				if (write)
					bus_write(b, act.addr, d, act.size);
				else
					bus_read(b, act.addr, d, act.size);
			}
		}
		/* Line input between exits. */
		if (data[off + 1] & 1)
			(void)uart16550_receive(&uart, data + off + 2, data[off + 1] % 20);
	}
	return 0;
}
