/* The CMOS RTC and i8042 models, without /dev/kvm. */
#include <check.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"
#include "helpers/ck_run.h"

#define MiB (1024ULL * 1024)
#define GiB (1024 * MiB)

/* RTC */

/* 2024-02-29 13:05:09 UTC, a Thursday. */
static struct tm sample_tm(void)
{
	struct tm tm = {
		.tm_year = 124, .tm_mon = 1, .tm_mday = 29,
		.tm_hour = 13, .tm_min = 5, .tm_sec = 9, .tm_wday = 4,
	};
	return tm;
}

static time_t sample_time(void)
{
	struct tm tm = sample_tm();

	return timegm(&tm);
}

static uint8_t cmos_get(struct rtc_cmos *c, uint8_t idx, time_t now)
{
	rtc_cmos_write(c, 0, idx, now);
	return rtc_cmos_read(c, 1, now);
}

static void cmos_set(struct rtc_cmos *c, uint8_t idx, uint8_t val, time_t now)
{
	rtc_cmos_write(c, 0, idx, now);
	rtc_cmos_write(c, 1, val, now);
}

START_TEST(test_bcd)
{
	ck_assert_uint_eq(rtc_bin_to_bcd(0), 0x00);
	ck_assert_uint_eq(rtc_bin_to_bcd(9), 0x09);
	ck_assert_uint_eq(rtc_bin_to_bcd(10), 0x10);
	ck_assert_uint_eq(rtc_bin_to_bcd(59), 0x59);
	ck_assert_uint_eq(rtc_bin_to_bcd(99), 0x99);
	ck_assert_uint_eq(rtc_bcd_to_bin(0x00), 0);
	ck_assert_uint_eq(rtc_bcd_to_bin(0x59), 59);
	ck_assert_uint_eq(rtc_bcd_to_bin(0x99), 99);
	for (unsigned v = 0; v < 100; v++)
		ck_assert_uint_eq(rtc_bcd_to_bin(rtc_bin_to_bcd(v)), v);
}
END_TEST

START_TEST(test_time_encoding)
{
	struct tm tm = sample_tm();
	const uint8_t bcd24 = RTC_B_24H, bin24 = RTC_B_24H | RTC_B_DM_BINARY;

	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_SECONDS, bcd24), 0x09);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_MINUTES, bcd24), 0x05);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_HOURS, bcd24), 0x13);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_DAY_OF_WEEK, bcd24), 0x05);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_DAY_OF_MONTH, bcd24), 0x29);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_MONTH, bcd24), 0x02);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_YEAR, bcd24), 0x24);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_CENTURY, bcd24), 0x20);

	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_SECONDS, bin24), 9);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_HOURS, bin24), 13);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_DAY_OF_MONTH, bin24), 29);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_YEAR, bin24), 24);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_CENTURY, bin24), 20);

	/* 12-hour mode: bit 7 is PM. */
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_HOURS, 0), 0x81);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_HOURS, RTC_B_DM_BINARY), 0x81);
	tm.tm_hour = 0;
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_HOURS, 0), 0x12);
	tm.tm_hour = 12;
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_HOURS, 0), 0x92);
	tm.tm_hour = 23;
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_HOURS, RTC_B_DM_BINARY), 0x80 | 11);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_REG_A, bcd24), 0);
}
END_TEST

START_TEST(test_cmos_clock_registers)
{
	struct rtc_cmos c;
	time_t now = sample_time();

	rtc_cmos_init(&c);
	ck_assert_uint_eq(cmos_get(&c, RTC_SECONDS, now), 0x09);
	ck_assert_uint_eq(cmos_get(&c, RTC_MINUTES, now), 0x05);
	ck_assert_uint_eq(cmos_get(&c, RTC_HOURS, now), 0x13);
	ck_assert_uint_eq(cmos_get(&c, RTC_DAY_OF_WEEK, now), 0x05);
	ck_assert_uint_eq(cmos_get(&c, RTC_DAY_OF_MONTH, now), 0x29);
	ck_assert_uint_eq(cmos_get(&c, RTC_MONTH, now), 0x02);
	ck_assert_uint_eq(cmos_get(&c, RTC_YEAR, now), 0x24);
	ck_assert_uint_eq(cmos_get(&c, RTC_CENTURY, now), 0x20);
	ck_assert_uint_eq(cmos_get(&c, RTC_SECONDS, now + 50), 0x59);

	ck_assert_uint_eq(cmos_get(&c, RTC_REG_A, now) & RTC_A_UIP, 0);
	ck_assert_uint_eq(cmos_get(&c, RTC_REG_B, now), RTC_B_24H);
	ck_assert_uint_eq(cmos_get(&c, RTC_REG_C, now), 0);
	ck_assert_uint_eq(cmos_get(&c, RTC_REG_D, now), RTC_D_VRT);

	cmos_set(&c, RTC_REG_B, RTC_B_24H | RTC_B_DM_BINARY, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_SECONDS, now), 9);
	ck_assert_uint_eq(cmos_get(&c, RTC_HOURS, now), 13);
	ck_assert_uint_eq(cmos_get(&c, RTC_YEAR, now), 24);
	cmos_set(&c, RTC_REG_B, 0, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_HOURS, now), 0x81);

	/* Read-only bits and registers. */
	cmos_set(&c, RTC_REG_A, 0xff, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_REG_A, now), 0x7f);
	cmos_set(&c, RTC_REG_C, 0xff, now);
	cmos_set(&c, RTC_REG_D, 0x00, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_REG_C, now), 0);
	ck_assert_uint_eq(cmos_get(&c, RTC_REG_D, now), RTC_D_VRT);
	/* The index port reads as all ones. */
	ck_assert_uint_eq(rtc_cmos_read(&c, 0, now), 0xff);
	ck_assert_uint_eq(rtc_cmos_read(&c, 7, now), 0xff);
	rtc_cmos_write(&c, 9, 0x12, now);
}
END_TEST

START_TEST(test_cmos_set_time)
{
	struct rtc_cmos c;
	time_t now = sample_time();

	rtc_cmos_init(&c);
	/* As Linux does it: SET, write the fields, clear SET. */
	cmos_set(&c, RTC_REG_B, RTC_B_24H | RTC_B_SET, now);
	cmos_set(&c, RTC_SECONDS, 0x30, now);
	cmos_set(&c, RTC_MINUTES, 0x45, now);
	cmos_set(&c, RTC_HOURS, 0x22, now);
	cmos_set(&c, RTC_DAY_OF_MONTH, 0x31, now);	/* not valid in February */
	cmos_set(&c, RTC_MONTH, 0x12, now);
	cmos_set(&c, RTC_YEAR, 0x99, now);
	cmos_set(&c, RTC_CENTURY, 0x19, now);
	/* Latched while SET: time does not move. */
	ck_assert_uint_eq(cmos_get(&c, RTC_SECONDS, now + 5), 0x30);
	cmos_set(&c, RTC_REG_B, RTC_B_24H, now + 5);

	ck_assert_uint_eq(cmos_get(&c, RTC_SECONDS, now + 5), 0x30);
	ck_assert_uint_eq(cmos_get(&c, RTC_SECONDS, now + 7), 0x32);
	ck_assert_uint_eq(cmos_get(&c, RTC_MINUTES, now + 7), 0x45);
	ck_assert_uint_eq(cmos_get(&c, RTC_HOURS, now + 7), 0x22);
	ck_assert_uint_eq(cmos_get(&c, RTC_DAY_OF_MONTH, now + 7), 0x31);
	ck_assert_uint_eq(cmos_get(&c, RTC_MONTH, now + 7), 0x12);
	ck_assert_uint_eq(cmos_get(&c, RTC_YEAR, now + 7), 0x99);
	ck_assert_uint_eq(cmos_get(&c, RTC_CENTURY, now + 7), 0x19);
	ck_assert_uint_eq(cmos_get(&c, RTC_DAY_OF_WEEK, now + 7), 0x06);	/* a Friday */

	/* Without SET a write takes effect at once; 12-hour PM input. */
	cmos_set(&c, RTC_REG_B, 0, now);
	cmos_set(&c, RTC_HOURS, 0x80 | 0x03, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_HOURS, now), 0x83);
	cmos_set(&c, RTC_REG_B, RTC_B_24H, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_HOURS, now), 0x15);

	/* The guest's clock survives a reset; garbage does not crash. */
	rtc_cmos_reset(&c, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_YEAR, now), 0x99);
	for (unsigned r = 0; r < 0x10; r++)
		cmos_set(&c, (uint8_t)r, 0xff, now);
	cmos_set(&c, RTC_CENTURY, 0xff, now);
	for (unsigned r = 0; r < RTC_CMOS_SIZE; r++)
		(void)cmos_get(&c, (uint8_t)r, now);
}
END_TEST

START_TEST(test_cmos_memory_bytes)
{
	struct rtc_cmos c;
	time_t now = sample_time();

	rtc_cmos_init(&c);
	rtc_cmos_set_memory(&c, 128 * MiB, 0, 2);
	ck_assert_uint_eq(c.ram[0x15], 0x80);	/* 640 KiB */
	ck_assert_uint_eq(c.ram[0x16], 0x02);
	ck_assert_uint_eq(c.ram[0x17], 0xff);	/* 127 MiB in KiB, capped */
	ck_assert_uint_eq(c.ram[0x18], 0xff);
	ck_assert_uint_eq(c.ram[0x30], 0xff);
	ck_assert_uint_eq(c.ram[0x31], 0xff);
	ck_assert_uint_eq(c.ram[0x34], 0x00);	/* 112 MiB / 64 KiB = 0x0700 */
	ck_assert_uint_eq(c.ram[0x35], 0x07);
	ck_assert_uint_eq(c.ram[0x5b], 0);
	ck_assert_uint_eq(c.ram[0x5c], 0);
	ck_assert_uint_eq(c.ram[0x5d], 0);
	ck_assert_uint_eq(c.ram[0x5f], 1);
	ck_assert_uint_eq(cmos_get(&c, 0x35, now), 0x07);

	rtc_cmos_init(&c);
	rtc_cmos_set_memory(&c, 16 * MiB, 0, 1);
	ck_assert_uint_eq(c.ram[0x17] | c.ram[0x18] << 8, 15 * 1024);
	ck_assert_uint_eq(c.ram[0x30] | c.ram[0x31] << 8, 15 * 1024);
	ck_assert_uint_eq(c.ram[0x34] | c.ram[0x35] << 8, 0);

	rtc_cmos_init(&c);
	rtc_cmos_set_memory(&c, 3 * GiB, 2 * GiB + 64 * 1024, 1);
	ck_assert_uint_eq(c.ram[0x34] | c.ram[0x35] << 8, (3072 - 16) * 16);
	ck_assert_uint_eq(c.ram[0x5b] | c.ram[0x5c] << 8 | c.ram[0x5d] << 16, 32769);

	/* Caps. */
	rtc_cmos_init(&c);
	rtc_cmos_set_memory(&c, 8 * GiB, 2048 * GiB, 1);
	ck_assert_uint_eq(c.ram[0x34] | c.ram[0x35] << 8, 0xffff);
	ck_assert_uint_eq(c.ram[0x5b] | c.ram[0x5c] << 8 | c.ram[0x5d] << 16, 0xffffff);

	/* Tiny. */
	rtc_cmos_init(&c);
	rtc_cmos_set_memory(&c, 512 * 1024, 0, 0);
	ck_assert_uint_eq(c.ram[0x15] | c.ram[0x16] << 8, 512);
	ck_assert_uint_eq(c.ram[0x17] | c.ram[0x18] << 8, 0);
}
END_TEST

START_TEST(test_cmos_ram_writable)
{
	struct rtc_cmos c;
	time_t now = sample_time();

	rtc_cmos_init(&c);
	rtc_cmos_set_memory(&c, 128 * MiB, 0, 1);
	/* The test guests' boot counter lives at 0x34. */
	cmos_set(&c, 0x34, 7, now);
	ck_assert_uint_eq(cmos_get(&c, 0x34, now), 7);
	cmos_set(&c, 0x7f, 0xab, now);
	ck_assert_uint_eq(cmos_get(&c, 0x7f, now), 0xab);
	cmos_set(&c, RTC_SECONDS_ALARM, 0x42, now);
	ck_assert_uint_eq(cmos_get(&c, RTC_SECONDS_ALARM, now), 0x42);

	/* Index bit 7 is the NMI mask, not part of the index. */
	rtc_cmos_write(&c, 0, 0x80 | 0x34, now);
	ck_assert(c.nmi_masked);
	ck_assert_uint_eq(rtc_cmos_read(&c, 1, now), 7);

	cmos_set(&c, RTC_REG_B, RTC_B_24H | RTC_B_UIE | RTC_B_PIE, now);
	rtc_cmos_reset(&c, now);
	ck_assert_uint_eq(cmos_get(&c, 0x34, now), 7);
	ck_assert_uint_eq(cmos_get(&c, 0x7f, now), 0xab);
	ck_assert_uint_eq(cmos_get(&c, RTC_REG_B, now), RTC_B_24H);
	ck_assert(!c.nmi_masked);
}
END_TEST

/* i8042 */

struct resets {
	unsigned n;
	const char *cause;
};

static void count_reset(void *opaque, const char *cause)
{
	struct resets *r = opaque;

	r->n++;
	r->cause = cause;
}

START_TEST(test_i8042_idle)
{
	struct i8042 k;
	struct resets r = { 0 };

	i8042_init(&k, count_reset, &r);
	ck_assert_uint_eq(i8042_read_status(&k), 0x1c);
	ck_assert_uint_eq(i8042_read_status(&k) & I8042_STR_OBF, 0);
	/* Linux's i8042_flush reads until OBF clears; an empty buffer. */
	(void)i8042_read_data(&k);
	ck_assert_uint_eq(i8042_read_status(&k) & I8042_STR_OBF, 0);
	ck_assert_uint_eq(r.n, 0);
}
END_TEST

START_TEST(test_i8042_probe_commands)
{
	struct i8042 k;
	struct resets r = { 0 };

	i8042_init(&k, count_reset, &r);
	ck_assert(i8042_write_command(&k, I8042_CMD_SELF_TEST));
	ck_assert(i8042_read_status(&k) & I8042_STR_OBF);
	ck_assert_uint_eq(i8042_read_data(&k), 0x55);
	ck_assert(!(i8042_read_status(&k) & I8042_STR_OBF));

	ck_assert(i8042_write_command(&k, I8042_CMD_KBD_TEST));
	ck_assert_uint_eq(i8042_read_data(&k), 0x00);
	ck_assert(i8042_write_command(&k, I8042_CMD_AUX_TEST));
	ck_assert_uint_eq(i8042_read_data(&k), 0x00);

	/* Command byte round trip. */
	ck_assert(i8042_write_command(&k, I8042_CMD_READ_CTR));
	ck_assert_uint_eq(i8042_read_data(&k), 0x45);
	ck_assert(i8042_write_command(&k, I8042_CMD_WRITE_CTR));
	ck_assert(!(i8042_read_status(&k) & I8042_STR_OBF));
	i8042_write_data(&k, 0x47);
	ck_assert_uint_eq(i8042_read_status(&k) & I8042_STR_CMD, 0);
	ck_assert(i8042_write_command(&k, I8042_CMD_READ_CTR));
	ck_assert(i8042_read_status(&k) & I8042_STR_CMD);
	ck_assert_uint_eq(i8042_read_data(&k), 0x47);

	/* Port enables live in the command byte. */
	ck_assert(i8042_write_command(&k, I8042_CMD_KBD_DISABLE));
	ck_assert(i8042_write_command(&k, I8042_CMD_AUX_DISABLE));
	ck_assert_uint_eq(k.ctr & (I8042_CTR_KBDDIS | I8042_CTR_AUXDIS),
			  I8042_CTR_KBDDIS | I8042_CTR_AUXDIS);
	ck_assert(i8042_write_command(&k, I8042_CMD_KBD_ENABLE));
	ck_assert_uint_eq(k.ctr & I8042_CTR_KBDDIS, 0);
	ck_assert(i8042_write_command(&k, I8042_CMD_AUX_ENABLE));
	ck_assert_uint_eq(k.ctr & I8042_CTR_AUXDIS, 0);

	/* The system flag follows the command byte. */
	ck_assert(i8042_write_command(&k, I8042_CMD_WRITE_CTR));
	i8042_write_data(&k, 0x00);
	ck_assert_uint_eq(i8042_read_status(&k) & I8042_STR_SYS, 0);
	ck_assert_uint_eq(r.n, 0);
}
END_TEST

START_TEST(test_i8042_reset)
{
	struct i8042 k;
	struct resets r = { 0 };

	i8042_init(&k, count_reset, &r);
	ck_assert(i8042_write_command(&k, I8042_CMD_RESET));
	ck_assert_uint_eq(r.n, 1);
	ck_assert_ptr_nonnull(strstr(r.cause, "0xFE"));
	ck_assert(i8042_write_command(&k, 0xff));	/* pulses nothing */
	ck_assert_uint_eq(r.n, 1);

	/* Output port bit 0 low is also a reset. */
	ck_assert(i8042_write_command(&k, I8042_CMD_WRITE_OUTPORT));
	i8042_write_data(&k, 0x03);
	ck_assert_uint_eq(r.n, 1);
	ck_assert(i8042_write_command(&k, I8042_CMD_WRITE_OUTPORT));
	i8042_write_data(&k, 0x02);
	ck_assert_uint_eq(r.n, 2);

	/* No callback: no crash. */
	i8042_init(&k, NULL, NULL);
	ck_assert(i8042_write_command(&k, I8042_CMD_RESET));
}
END_TEST

START_TEST(test_i8042_unknown_and_overflow)
{
	struct i8042 k;
	struct resets r = { 0 };
	uint8_t ctr;

	i8042_init(&k, count_reset, &r);
	ctr = k.ctr;
	ck_assert(!i8042_write_command(&k, 0x12));
	ck_assert(!i8042_write_command(&k, 0xE0));
	ck_assert_uint_eq(k.ctr, ctr);
	ck_assert(!(i8042_read_status(&k) & I8042_STR_OBF));

	/* Keyboard bytes with nothing behind the controller: no reply. */
	i8042_write_data(&k, 0xff);
	i8042_write_data(&k, 0xf2);
	ck_assert(!(i8042_read_status(&k) & I8042_STR_OBF));
	/* D2-D4 swallow their data byte. */
	ck_assert(i8042_write_command(&k, I8042_CMD_WRITE_AUX));
	i8042_write_data(&k, 0xfe);
	ck_assert_uint_eq(r.n, 0);
	ck_assert_uint_eq(k.ctr, ctr);

	/* More replies than the buffer holds: the oldest are kept. */
	for (int i = 0; i < 10; i++)
		ck_assert(i8042_write_command(&k, I8042_CMD_SELF_TEST));
	ck_assert(i8042_write_command(&k, I8042_CMD_KBD_TEST));
	for (int i = 0; i < I8042_OUT_SIZE; i++)
		ck_assert_uint_eq(i8042_read_data(&k), 0x55);
	ck_assert(!(i8042_read_status(&k) & I8042_STR_OBF));
	ck_assert_uint_eq(i8042_read_data(&k), 0x55);	/* last byte again */

	i8042_reset(&k);
	ck_assert_uint_eq(i8042_read_status(&k), 0x1c);
}
END_TEST

/* Year arithmetic cannot overflow: a tm at the edge of int encodes, and
 * a guest pushing the year up by writing out-of-range months (each write
 * normalises into ~21 more years) stops at 9999. */
START_TEST(test_rtc_year_bounds)
{
	struct rtc_cmos c;
	struct tm tm = { .tm_mday = 1, .tm_year = INT_MAX };
	const time_t now = 1700000000;
	const uint8_t bin = RTC_B_24H | RTC_B_DM_BINARY;
	unsigned cent;

	/* 2147485547 % 10000 = 5547. */
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_YEAR, bin), 47);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_CENTURY, bin), 55);
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_CENTURY, 0), 0x55);
	tm.tm_year = INT_MIN;
	ck_assert_uint_eq(rtc_encode_time_reg(&tm, RTC_CENTURY, bin), 0);

	rtc_cmos_init(&c);
	rtc_cmos_reset(&c, now);
	cmos_set(&c, RTC_REG_B, bin, now);
	for (int i = 0; i < 2000; i++)
		cmos_set(&c, RTC_MONTH, 0xff, now);
	cent = cmos_get(&c, RTC_CENTURY, now);
	ck_assert_uint_le(cent, 99);
	ck_assert_uint_ge(cent, 20);
	ck_assert_int_le(c.offset, 253402300799LL - now);
	/* Century 255 in binary mode: clamped to 9999, not 25599. */
	cmos_set(&c, RTC_CENTURY, 0xff, now);
	ck_assert_uint_le(cmos_get(&c, RTC_CENTURY, now), 99);
	ck_assert_int_le(c.offset, 253402300799LL - now);
}
END_TEST

static Suite *legacy_suite(void)
{
	Suite *s = suite_create("legacy");
	TCase *rtc = tcase_create("rtc");
	TCase *kbc = tcase_create("i8042");

	tcase_add_test(rtc, test_bcd);
	tcase_add_test(rtc, test_rtc_year_bounds);
	tcase_add_test(rtc, test_time_encoding);
	tcase_add_test(rtc, test_cmos_clock_registers);
	tcase_add_test(rtc, test_cmos_set_time);
	tcase_add_test(rtc, test_cmos_memory_bytes);
	tcase_add_test(rtc, test_cmos_ram_writable);
	suite_add_tcase(s, rtc);

	tcase_add_test(kbc, test_i8042_idle);
	tcase_add_test(kbc, test_i8042_probe_commands);
	tcase_add_test(kbc, test_i8042_reset);
	tcase_add_test(kbc, test_i8042_unknown_and_overflow);
	suite_add_tcase(s, kbc);
	return s;
}

int main(void)
{
	return ck_run_suite(legacy_suite());
}
