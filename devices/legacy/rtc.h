/* MC146818 RTC and CMOS RAM at ports 0x70 (index; bit 7 masks NMI) and
 * 0x71 (data). All 128 bytes are guest-writable RAM that survives a VM
 * reset; the clock registers are computed from the host clock on read
 * (plus an offset the guest sets by writing them), registers C and D are
 * read-only. The memory-size bytes are filled in as QEMU/SeaBIOS expect.
 * The model is pure: the caller passes the host time in. */
#ifndef EMBER_RTC_H
#define EMBER_RTC_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define RTC_PORT_BASE	0x70
#define RTC_CMOS_SIZE	128

#define RTC_SECONDS		0x00
#define RTC_SECONDS_ALARM	0x01
#define RTC_MINUTES		0x02
#define RTC_MINUTES_ALARM	0x03
#define RTC_HOURS		0x04
#define RTC_HOURS_ALARM		0x05
#define RTC_DAY_OF_WEEK		0x06
#define RTC_DAY_OF_MONTH	0x07
#define RTC_MONTH		0x08
#define RTC_YEAR		0x09
#define RTC_REG_A		0x0A
#define RTC_REG_B		0x0B
#define RTC_REG_C		0x0C
#define RTC_REG_D		0x0D
#define RTC_CENTURY		0x32

#define RTC_A_UIP	0x80
#define RTC_B_SET	0x80
#define RTC_B_PIE	0x40
#define RTC_B_AIE	0x20
#define RTC_B_UIE	0x10
#define RTC_B_SQWE	0x08
#define RTC_B_DM_BINARY	0x04
#define RTC_B_24H	0x02
#define RTC_D_VRT	0x80

/* QEMU's CMOS layout for memory sizes. */
#define CMOS_BASE_MEM_LO	0x15	/* KiB below 1 MiB (640) */
#define CMOS_EXT_MEM_LO		0x17	/* KiB from 1 MiB, capped at 0xFFFF */
#define CMOS_EXT_MEM2_LO	0x30	/* same value again */
#define CMOS_MEM_16M_LO		0x34	/* 64 KiB units from 16 MiB to the hole */
#define CMOS_MEM_4G_LO		0x5B	/* 64 KiB units above 4 GiB, 3 bytes */
#define CMOS_NR_CPUS_M1		0x5F	/* CPUs minus one (SeaBIOS) */

struct rtc_cmos {
	uint8_t index;
	bool nmi_masked;
	uint8_t ram[RTC_CMOS_SIZE];
	int64_t offset;		/* guest clock minus host clock, seconds */
	bool setting;		/* register B SET: the clock is latched */
	struct tm set_tm;
};

uint8_t rtc_bin_to_bcd(unsigned v);	/* v < 100 */
unsigned rtc_bcd_to_bin(uint8_t v);

/* Power-on contents: RAM zeroed, registers A, B and D at their defaults. */
void rtc_cmos_init(struct rtc_cmos *c);
/* Fill in the memory-size and CPU-count bytes. */
void rtc_cmos_set_memory(struct rtc_cmos *c, uint64_t below_4g, uint64_t above_4g,
			 unsigned cpus);
/* VM reset: interrupt enables and flags are cleared, RAM and time kept. */
void rtc_cmos_reset(struct rtc_cmos *c, time_t now);

/* Value of a clock register for `tm`, formatted per register B (BCD or
 * binary, 12 or 24 hour). Non-clock registers give 0. */
uint8_t rtc_encode_time_reg(const struct tm *tm, unsigned reg, uint8_t reg_b);

/* Port accesses: port_off 0 is 0x70, 1 is 0x71. `now` is the host time. */
uint8_t rtc_cmos_read(struct rtc_cmos *c, unsigned port_off, time_t now);
void rtc_cmos_write(struct rtc_cmos *c, unsigned port_off, uint8_t val, time_t now);

#endif
