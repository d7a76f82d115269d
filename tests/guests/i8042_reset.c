/* i8042_reset: resets through the keyboard controller; a CMOS marker tells
 * the second boot to report success. */
#include "rt/rt.h"

#define MARKER_IDX 0x34
#define MARKER 0x5a

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	if (rt_cmos_read(MARKER_IDX) == MARKER) {
		rt_puts("i8042: rebooted");
		rt_cmos_write(MARKER_IDX, 0);
		rt_exit(0x12);
	}
	rt_cmos_write(MARKER_IDX, MARKER);
	rt_puts("i8042: resetting");
	rt_i8042_reset();
}
