/* demo: the guest embedded in ember. Prints CPU and memory info, powers off. */
#include "rt/rt.h"

int guest_main(const struct hvm_start_info *si)
{
	rt_puts("Ember demo guest");
	rt_printf("cpus: %u\n", rt_cpu_count());
	/* Rounded to the nearest MiB: the memmap leaves out the legacy hole. */
	rt_printf("memory: %lu MiB\n", (rt_mem_size(si) + (1u << 19)) >> 20);
	rt_puts("demo: done");
	rt_poweroff();
}
