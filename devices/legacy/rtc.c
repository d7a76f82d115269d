#include "devices/legacy/rtc.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bus.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "devices/device.h"
#include "vmm/config.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

uint8_t rtc_bin_to_bcd(unsigned v)
{
	v %= 100;
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

unsigned rtc_bcd_to_bin(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0x0f);
}

void rtc_cmos_init(struct rtc_cmos *c)
{
	memset(c, 0, sizeof(*c));
	c->ram[RTC_REG_A] = 0x26;	/* 32.768 kHz time base, 1024 Hz rate */
	c->ram[RTC_REG_B] = RTC_B_24H;
	c->ram[RTC_REG_D] = RTC_D_VRT;
}

static void set_word(struct rtc_cmos *c, unsigned idx, uint64_t val)
{
	if (val > 0xffff)
		val = 0xffff;
	c->ram[idx] = (uint8_t)val;
	c->ram[idx + 1] = (uint8_t)(val >> 8);
}

void rtc_cmos_set_memory(struct rtc_cmos *c, uint64_t below_4g, uint64_t above_4g,
			 unsigned cpus)
{
	uint64_t v;

	v = below_4g / KiB;
	set_word(c, CMOS_BASE_MEM_LO, v < 640 ? v : 640);
	v = below_4g > MiB ? (below_4g - MiB) / KiB : 0;
	set_word(c, CMOS_EXT_MEM_LO, v);
	set_word(c, CMOS_EXT_MEM2_LO, v);
	v = below_4g > 16 * MiB ? (below_4g - 16 * MiB) / (64 * KiB) : 0;
	set_word(c, CMOS_MEM_16M_LO, v);
	v = above_4g / (64 * KiB);
	if (v > 0xffffff)
		v = 0xffffff;
	c->ram[CMOS_MEM_4G_LO] = (uint8_t)v;
	c->ram[CMOS_MEM_4G_LO + 1] = (uint8_t)(v >> 8);
	c->ram[CMOS_MEM_4G_LO + 2] = (uint8_t)(v >> 16);
	c->ram[CMOS_NR_CPUS_M1] = cpus ? (uint8_t)(cpus - 1) : 0;
}

static void guest_tm(const struct rtc_cmos *c, time_t now, struct tm *tm)
{
	time_t t = (time_t)(now + c->offset);

	if (c->setting) {
		*tm = c->set_tm;
		return;
	}
	if (!gmtime_r(&t, tm)) {
		memset(tm, 0, sizeof(*tm));
		tm->tm_mday = 1;
		tm->tm_year = 70;
	}
}

/* The clock runs from 0000-01-01 to 9999-12-31; a guest setting it
 * outside (an out-of-range month or day normalises into later years, and
 * repeating that walks the year up without bound) is refused, so tm_year
 * stays far from overflowing int. */
#define RTC_TIME_MIN	(-62167219200LL)	/* 0000-01-01T00:00:00Z */
#define RTC_TIME_MAX	253402300799LL		/* 9999-12-31T23:59:59Z */

static void commit_tm(struct rtc_cmos *c, struct tm *tm, time_t now)
{
	struct tm copy = *tm;
	time_t t;

	if (tm->tm_year < -1900 - 1 || tm->tm_year > 9999 - 1900 + 1)
		return;
	errno = 0;
	t = timegm(&copy);
	if ((t == (time_t)-1 && errno) || (int64_t)t < RTC_TIME_MIN || (int64_t)t > RTC_TIME_MAX)
		return;
	c->offset = (int64_t)t - (int64_t)now;
}

static int64_t tm_year_full(const struct tm *tm)
{
	return (int64_t)tm->tm_year + 1900;
}

/* A year computed from register writes, back into tm_year (clamped). */
static int to_tm_year(int64_t year)
{
	if (year < 0)
		year = 0;
	if (year > 9999)
		year = 9999;
	return (int)(year - 1900);
}

static bool is_time_reg(unsigned reg)
{
	switch (reg) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_DAY_OF_WEEK:
	case RTC_DAY_OF_MONTH:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_CENTURY:
		return true;
	default:
		return false;
	}
}

static uint8_t encode(unsigned v, uint8_t reg_b)
{
	return (reg_b & RTC_B_DM_BINARY) ? (uint8_t)v : rtc_bin_to_bcd(v);
}

static unsigned decode(uint8_t v, uint8_t reg_b)
{
	return (reg_b & RTC_B_DM_BINARY) ? v : rtc_bcd_to_bin(v);
}

uint8_t rtc_encode_time_reg(const struct tm *tm, unsigned reg, uint8_t reg_b)
{
	int64_t y = tm_year_full(tm);
	unsigned year = (unsigned)((y < 0 ? 0 : y) % 10000);

	switch (reg) {
	case RTC_SECONDS:
		return encode((unsigned)tm->tm_sec, reg_b);
	case RTC_MINUTES:
		return encode((unsigned)tm->tm_min, reg_b);
	case RTC_HOURS:
		if (reg_b & RTC_B_24H)
			return encode((unsigned)tm->tm_hour, reg_b);
		return encode(tm->tm_hour % 12 ? (unsigned)tm->tm_hour % 12 : 12, reg_b) |
		       (tm->tm_hour >= 12 ? 0x80 : 0);
	case RTC_DAY_OF_WEEK:
		return encode((unsigned)tm->tm_wday + 1, reg_b);
	case RTC_DAY_OF_MONTH:
		return encode((unsigned)tm->tm_mday, reg_b);
	case RTC_MONTH:
		return encode((unsigned)tm->tm_mon + 1, reg_b);
	case RTC_YEAR:
		return encode(year % 100, reg_b);
	case RTC_CENTURY:
		return encode(year / 100, reg_b);	/* < 100 */
	default:
		return 0;
	}
}

static void write_time_reg(struct rtc_cmos *c, unsigned reg, uint8_t val, time_t now)
{
	uint8_t reg_b = c->ram[RTC_REG_B];
	struct tm tm;
	int64_t year;

	guest_tm(c, now, &tm);
	year = tm_year_full(&tm);
	switch (reg) {
	case RTC_SECONDS:
		tm.tm_sec = (int)decode(val, reg_b);
		break;
	case RTC_MINUTES:
		tm.tm_min = (int)decode(val, reg_b);
		break;
	case RTC_HOURS:
		if (reg_b & RTC_B_24H) {
			tm.tm_hour = (int)decode(val, reg_b);
		} else {
			tm.tm_hour = (int)(decode(val & 0x7f, reg_b) % 12);
			if (val & 0x80)
				tm.tm_hour += 12;
		}
		break;
	case RTC_DAY_OF_MONTH:
		tm.tm_mday = (int)decode(val, reg_b);
		break;
	case RTC_MONTH:
		tm.tm_mon = (int)decode(val, reg_b) - 1;
		break;
	case RTC_YEAR:
		tm.tm_year = to_tm_year(year - year % 100 + decode(val, reg_b));
		break;
	case RTC_CENTURY:
		tm.tm_year = to_tm_year((int64_t)decode(val, reg_b) * 100 + year % 100);
		break;
	default:
		return;	/* day of week follows from the date */
	}
	if (c->setting)
		c->set_tm = tm;	/* committed when SET is cleared */
	else
		commit_tm(c, &tm, now);
}

static void write_reg_b(struct rtc_cmos *c, uint8_t val, time_t now)
{
	if ((val & RTC_B_SET) && !c->setting) {
		guest_tm(c, now, &c->set_tm);
		c->setting = true;
	} else if (!(val & RTC_B_SET) && c->setting) {
		c->setting = false;
		commit_tm(c, &c->set_tm, now);
	}
	c->ram[RTC_REG_B] = val;
}

void rtc_cmos_reset(struct rtc_cmos *c, time_t now)
{
	uint8_t b = c->ram[RTC_REG_B];

	b &= ~(RTC_B_PIE | RTC_B_AIE | RTC_B_UIE | RTC_B_SQWE | RTC_B_SET);
	write_reg_b(c, b, now);
	c->ram[RTC_REG_C] = 0;
	c->index = 0;
	c->nmi_masked = false;
}

uint8_t rtc_cmos_read(struct rtc_cmos *c, unsigned port_off, time_t now)
{
	unsigned reg = c->index;
	struct tm tm;

	if (port_off != 1)
		return 0xff;	/* the index port is write-only */
	if (is_time_reg(reg)) {
		guest_tm(c, now, &tm);
		return rtc_encode_time_reg(&tm, reg, c->ram[RTC_REG_B]);
	}
	switch (reg) {
	case RTC_REG_A:
		return c->ram[RTC_REG_A] & ~RTC_A_UIP;	/* never mid-update */
	case RTC_REG_C:
		return 0;	/* no interrupt flags: no RTC interrupts */
	case RTC_REG_D:
		return RTC_D_VRT;
	default:
		return c->ram[reg];
	}
}

void rtc_cmos_write(struct rtc_cmos *c, unsigned port_off, uint8_t val, time_t now)
{
	unsigned reg;

	if (port_off == 0) {
		c->index = val & 0x7f;
		c->nmi_masked = val & 0x80;
		return;
	}
	if (port_off != 1)
		return;
	reg = c->index;
	if (is_time_reg(reg)) {
		write_time_reg(c, reg, val, now);
		return;
	}
	switch (reg) {
	case RTC_REG_A:
		c->ram[RTC_REG_A] = val & ~RTC_A_UIP;
		break;
	case RTC_REG_B:
		write_reg_b(c, val, now);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break;	/* read-only */
	default:
		c->ram[reg] = val;
		break;
	}
}

/* The device. */

struct rtc_dev {
	pthread_mutex_t lock;
	struct bus *pio_bus;
	struct rtc_cmos c;
};

static void rtc_io_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	struct rtc_dev *d = opaque;
	uint8_t *p = data;
	time_t now = time(NULL);

	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < len; i++)
		p[i] = offset + i < 2 ? rtc_cmos_read(&d->c, (unsigned)(offset + i), now) : 0xff;
	pthread_mutex_unlock(&d->lock);
}

static void rtc_io_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	struct rtc_dev *d = opaque;
	const uint8_t *p = data;
	time_t now = time(NULL);

	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < len && offset + i < 2; i++)
		rtc_cmos_write(&d->c, (unsigned)(offset + i), p[i], now);
	pthread_mutex_unlock(&d->lock);
}

static const struct bus_dev_ops rtc_ops = {
	.read = rtc_io_read,
	.write = rtc_io_write,
};

static int rtc_realize(const struct device_desc *desc, struct device_ctx *ctx, void **state)
{
	uint64_t below_4g, end, above_4g;
	struct rtc_dev *d;
	int ret;

	(void)desc;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->pio_bus = ctx->pio_bus;
	ret = -pthread_mutex_init(&d->lock, NULL);
	if (ret)
		goto err_free;

	below_4g = gm_low_ram_end(ctx->mem);
	end = gm_ram_end(ctx->mem);
	above_4g = end > 4 * GiB ? end - 4 * GiB : 0;
	rtc_cmos_init(&d->c);
	rtc_cmos_set_memory(&d->c, below_4g, above_4g, ctx->cfg ? ctx->cfg->cpus : 1);

	ret = bus_register(ctx->pio_bus, RTC_PORT_BASE, 2, &rtc_ops, d, "rtc");
	if (ret)
		goto err_mutex;
	*state = d;
	return 0;

err_mutex:
	pthread_mutex_destroy(&d->lock);
err_free:
	free(d);
	return ret;
}

static void rtc_reset(void *state)
{
	struct rtc_dev *d = state;

	pthread_mutex_lock(&d->lock);
	rtc_cmos_reset(&d->c, time(NULL));
	pthread_mutex_unlock(&d->lock);
}

static void rtc_destroy(void *state)
{
	struct rtc_dev *d = state;

	if (!d)
		return;
	bus_unregister(d->pio_bus, RTC_PORT_BASE);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* Snapshots: the index latch, CMOS RAM, the guest's clock offset and a
 * clock latched by register B SET. The clock runs on from the host's. */
#define RTC_MAX_OFFSET	(200LL * 366 * 86400)

static json_t *rtc_save(void *state)
{
	struct rtc_dev *d = state;
	char ram[2 * RTC_CMOS_SIZE + 1];
	json_t *o;

	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < RTC_CMOS_SIZE; i++)
		snprintf(ram + 2 * i, 3, "%02x", d->c.ram[i]);
	o = json_pack("{s:i, s:b, s:s, s:I, s:b, s:[i,i,i,i,i,i,i]}", "index", d->c.index,
		      "nmi_masked", d->c.nmi_masked, "ram", ram, "offset", (json_int_t)d->c.offset,
		      "setting", d->c.setting, "set_tm", d->c.set_tm.tm_sec, d->c.set_tm.tm_min,
		      d->c.set_tm.tm_hour, d->c.set_tm.tm_mday, d->c.set_tm.tm_mon,
		      d->c.set_tm.tm_year, d->c.set_tm.tm_wday);
	pthread_mutex_unlock(&d->lock);
	return o;
}

static int rtc_load(void *state, json_t *saved, char *err, size_t errlen)
{
	static const int tm_max[7] = { 60, 59, 23, 31, 11, 8099, 6 };
	struct rtc_dev *d = state;
	json_t *idx = json_object_get(saved, "index"), *nmi = json_object_get(saved, "nmi_masked");
	json_t *ram = json_object_get(saved, "ram"), *off = json_object_get(saved, "offset");
	json_t *setting = json_object_get(saved, "setting"), *tmv = json_object_get(saved, "set_tm");
	uint8_t bytes[RTC_CMOS_SIZE];
	int tm[7];
	const char *hex;

	if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
	    json_integer_value(idx) >= RTC_CMOS_SIZE || !json_is_boolean(nmi) ||
	    !json_is_string(ram) || json_string_length(ram) != 2 * RTC_CMOS_SIZE ||
	    !json_is_integer(off) || json_integer_value(off) < -RTC_MAX_OFFSET ||
	    json_integer_value(off) > RTC_MAX_OFFSET || !json_is_boolean(setting) ||
	    !json_is_array(tmv) || json_array_size(tmv) != 7) {
		snprintf(err, errlen, "index, nmi_masked, ram, offset, setting or set_tm missing or "
			 "out of range");
		return -EINVAL;
	}
	hex = json_string_value(ram);
	for (unsigned i = 0; i < RTC_CMOS_SIZE; i++) {
		unsigned v;

		if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &v) != 1) {
			snprintf(err, errlen, "ram: not %u bytes of hex", RTC_CMOS_SIZE);
			return -EINVAL;
		}
		bytes[i] = (uint8_t)v;
	}
	for (unsigned i = 0; i < 7; i++) {
		json_t *v = json_array_get(tmv, i);

		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > tm_max[i]) {
			snprintf(err, errlen, "set_tm[%u]: out of range", i);
			return -EINVAL;
		}
		tm[i] = (int)json_integer_value(v);
	}
	pthread_mutex_lock(&d->lock);
	d->c.index = (uint8_t)json_integer_value(idx);
	d->c.nmi_masked = json_is_true(nmi);
	memcpy(d->c.ram, bytes, sizeof(bytes));
	d->c.offset = json_integer_value(off);
	d->c.setting = json_is_true(setting);
	memset(&d->c.set_tm, 0, sizeof(d->c.set_tm));
	d->c.set_tm.tm_sec = tm[0];
	d->c.set_tm.tm_min = tm[1];
	d->c.set_tm.tm_hour = tm[2];
	d->c.set_tm.tm_mday = tm[3];
	d->c.set_tm.tm_mon = tm[4];
	d->c.set_tm.tm_year = tm[5];
	d->c.set_tm.tm_wday = tm[6];
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static struct device_desc rtc_desc = {
	.name = "rtc",
	.level = DEVICE_LEVEL_LEGACY,
	.realize = rtc_realize,
	.reset = rtc_reset,
	.save = rtc_save,
	.load = rtc_load,
	.destroy = rtc_destroy,
};
DEVICE_REGISTER(rtc_desc);
