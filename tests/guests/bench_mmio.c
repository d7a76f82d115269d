/* bench_mmio: the guest for bench/pci. Finds virtio-rng (run ember with
 * --rng), maps its BAR 0, then does `count=N` (default 0) 16-bit writes of 0
 * to queue_select in the common configuration, in a tight loop; `read=1`
 * makes them 8-bit reads of device_status. Each access is one MMIO exit
 * through the whole dispatch chain (exit, MMIO bus, BAR handler,
 * virtio-pci, register). Then it exits through isa-debug-exit with 0
 * (status 1; run ember with --debug-exit). `verbose=1` prints one line. */
#include "rt/rt.h"
#include "rt/virtio.h"

#define COMMON_DEVICE_STATUS	0x14
#define COMMON_QUEUE_SELECT	0x16

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	long n = rt_cmdline_int("count", 0);
	bool rd = rt_cmdline_int("read", 0) == 1;
	struct virtio_dev v;
	uint8_t sink = 0;
	int r;

	r = virtio_probe(&v, VIRTIO_ID_RNG, 0);
	if (r) {
		rt_printf("bench_mmio: no virtio-rng: %s\n", virtio_strerror(r));
		rt_exit(2);
	}
	for (long i = 0; i < n; i++) {
		if (rd)
			sink |= mmio_read8(v.common + COMMON_DEVICE_STATUS);
		else
			mmio_write16(v.common + COMMON_QUEUE_SELECT, 0);
	}
	if (rt_cmdline_int("verbose", 0) == 1)
		rt_printf("bench_mmio: %ld %s done (status 0x%x)\n", n < 0 ? 0 : n,
			  rd ? "reads" : "writes", sink);
	rt_exit(0);
}
