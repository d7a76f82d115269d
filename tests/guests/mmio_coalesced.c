/* mmio_coalesced: streams 0..N-1 into the testdev sink (a coalesced MMIO
 * zone) and checks the device saw all of them, in order. */
#include "rt/rt.h"

#define TESTDEV_SINK 0xd0000000u
#define TESTDEV_RECEIVED 0xd0000100u
#define TESTDEV_OUT_OF_ORDER 0xd0000104u
#define TESTDEV_RESET 0xd0000108u

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	uint32_t n = (uint32_t)rt_cmdline_int("count", 10000);

	mmio_write32(TESTDEV_RESET, 1);
	for (uint32_t i = 0; i < n; i++)
		mmio_write32(TESTDEV_SINK, i);
	uint32_t received = mmio_read32(TESTDEV_RECEIVED);
	uint32_t ooo = mmio_read32(TESTDEV_OUT_OF_ORDER);

	rt_printf("coalesced: sent %u received %u out_of_order %u\n", n, received, ooo);
	return received == n && ooo == 0 ? 0 : 3;
}
