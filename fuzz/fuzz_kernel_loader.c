/* Feed arbitrary bytes to both kernel loaders (bzImage and PVH ELF). They
 * must fail cleanly with a one-line reason or load inside guest RAM. The
 * low bit of the size picks whether the input's last quarter is also
 * passed as an initrd. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/boot/boot.h"
#include "base/guest_mem.h"

#define FUZZ_RAM_SIZE (32u << 20)

static struct guest_mem gm;

static void setup(void)
{
	static uint8_t *ram;

	if (ram)
		return;
	ram = calloc(1, FUZZ_RAM_SIZE);
	if (!ram || gm_add_region(&gm, 0, FUZZ_RAM_SIZE, ram))
		abort();
}

static void check(int ret, const struct boot_info *bi, const char *err)
{
	if (ret) {
		/* Failure: a non-empty, single-line reason. */
		if (ret > 0 || !err[0] || strchr(err, '\n'))
			abort();
		return;
	}
	if (bi->entry >= gm_ram_end(&gm) || bi->initrd_addr + bi->initrd_size > gm_ram_end(&gm))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_params_in in = {
		.kernel = data,
		.kernel_size = size,
		.cmdline = "console=ttyS0 panic=-1",
		.rsdp_addr = 0xE0000,
	};
	struct boot_info bi;
	char err[256];

	setup();
	if (size & 1) {
		in.initrd = data + size - size / 4;
		in.initrd_size = size / 4;
	}
	err[0] = '\0';
	check(bzimage_load(&gm, &in, &bi, err, sizeof(err)), &bi, err);
	err[0] = '\0';
	check(pvh_load(&gm, &in, &bi, err, sizeof(err)), &bi, err);
	return 0;
}
