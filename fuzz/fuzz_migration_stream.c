/* libFuzzer target: the live-migration receiver (vmm/migration/), fed a
 * whole stream through a memfd into 8 MiB of guest memory. The header must
 * match what the receiver expects before records are read, so every input
 * is tried twice: as it is, and behind a valid header. A state record that
 * passes its CRC goes through the snapshot state loader, as on a real
 * destination. Any failure must be one non-empty line; never a crash, a
 * leak, a hang or a write outside guest RAM. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "vmm/migration/migration.h"
#include "vmm/snapshot/state.h"

#define RAM (8ULL << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_mem gm;
static int ready;

static int parse_state(void *opaque, uint32_t flags, const uint8_t *image, size_t len,
		       const char *disks, size_t disks_len, char *err, size_t errlen)
{
	struct snap_state s = { 0 };
	int ret;

	(void)opaque;
	(void)flags;
	(void)disks;
	(void)disks_len;
	ret = snap_state_parse(image, len, &s, err, errlen);
	snap_state_free(&s);
	return ret;
}

static void run(const uint8_t *prefix, size_t plen, const uint8_t *data, size_t size)
{
	struct mig_expect want = { .cpus = 1, .memory = RAM, .cpu_model = 1 };
	char err[512] = "";
	int fd = memfd_create("fuzz", MFD_CLOEXEC), ret;

	if (fd < 0)
		abort();
	if ((plen && write(fd, prefix, plen) != (ssize_t)plen) ||
	    (size && write(fd, data, size) != (ssize_t)size))
		abort();
	lseek(fd, 0, SEEK_SET);
	ret = migration_receive(&want, &gm, fd, parse_state, NULL, err, sizeof(err));
	close(fd);
	if (ret && (!err[0] || strchr(err, '\n')))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t h[MIG_HEADER_SIZE] = { 0 };

	if (!ready) {
		log_set_level(LOG_ERR);
		if (gm_init(&gm, RAM, false))
			abort();
		ready = 1;
	}
	if (size > (1u << 20))
		return 0;
	run(NULL, 0, data, size);
	memcpy(h, MIG_MAGIC, 8);
	wr32(h + 8, MIG_VERSION);
	wr32(h + 12, 1);
	wr64(h + 16, RAM);
	wr32(h + 24, 1);
	run(h, sizeof(h), data, size);
	return 0;
}
