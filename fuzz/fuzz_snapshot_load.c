/* libFuzzer target: the snapshot state loader (vmm/snapshot/state.c) and
 * the disks list check (vmm/snapshot/disks.c), fed whole files. A state
 * that parses must serialize and parse back to the same bytes; one that
 * does not must give one non-empty line of error. Never a crash, a leak or
 * a read past the input. (Sections may come in any order, so the check is
 * that the rewritten file parses and rewrites to itself.)
 *
 * Checksums would stop the fuzzer at the first changed byte, so every input
 * is parsed twice: as it is, and with the header's and each section's CRC
 * recomputed, which lets mutations reach the field checks.
 *
 * Input: the file's bytes. Each input goes to both parsers; the seeds
 * (fuzz/corpus/fuzz_snapshot_load/) are state files written by
 * tests/unit/test_snapshot.c (EMBER_SNAPSHOT_CORPUS=DIR) and disks lists. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "vmm/config.h"
#include "vmm/snapshot/disks.h"
#include "vmm/snapshot/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_line(const char *err)
{
	if (!err[0] || strchr(err, '\n'))
		abort();
}

/* Recompute the header's and every section's CRC, walking the sections
 * as far as their lengths stay inside the buffer. */
static void fix_checksums(uint8_t *b, size_t size)
{
	uint32_t crc, n;
	size_t off = SNAP_HEADER_SIZE;

	if (size < SNAP_HEADER_SIZE)
		return;
	memcpy(&n, b + 64, 4);
	for (uint32_t i = 0; i < n && size - off >= SNAP_SECTION_HDR_SIZE; i++) {
		uint64_t len;

		memcpy(&len, b + off + 8, 8);
		if (len > size - off - SNAP_SECTION_HDR_SIZE)
			break;
		crc = snap_crc32(0, b + off + SNAP_SECTION_HDR_SIZE, len);
		memcpy(b + off + 16, &crc, 4);
		len = (len + 7) & ~7ULL;
		if (len > size - off - SNAP_SECTION_HDR_SIZE)
			break;
		off += SNAP_SECTION_HDR_SIZE + len;
	}
	memset(b + 80, 0, 4);
	crc = snap_crc32(0, b, SNAP_HEADER_SIZE);
	memcpy(b + 80, &crc, 4);
}

static void parse_state(const uint8_t *data, size_t size)
{
	struct snap_state s;
	char err[512] = "";
	uint8_t *img = NULL;
	size_t len = 0;
	int ret;

	ret = snap_state_parse(data, size, &s, err, sizeof(err));
	if (ret == 0) {
		struct snap_state again;
		uint8_t *img2 = NULL;
		size_t len2 = 0;

		if (snap_state_serialize(&s, &img, &len, err, sizeof(err)) ||
		    snap_state_parse(img, len, &again, err, sizeof(err)) ||
		    snap_state_serialize(&again, &img2, &len2, err, sizeof(err)) || len2 != len ||
		    memcmp(img, img2, len))
			abort();
		snap_state_free(&again);
		free(img);
		free(img2);
	} else if (ret != -EINVAL && ret != -ENOMEM) {
		abort();
	} else if (ret == -EINVAL) {
		one_line(err);
	}
	snap_state_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config cfg;
	char err[512] = "";
	uint8_t *copy;

	log_set_level(LOG_ERR);
	parse_state(data, size);
	copy = malloc(size ? size : 1);
	if (copy) {
		memcpy(copy, data, size);
		fix_checksums(copy, size);
		parse_state(copy, size);
		free(copy);
	}

	/* The disks list against a VM without disks, and with one that does
	 * not exist (its identity cannot be read). */
	memset(&cfg, 0, sizeof(cfg));
	err[0] = 0;
	if (snapshot_disks_check_json((const char *)data, size, &cfg, err, sizeof(err)))
		one_line(err);
	cfg.devices[0] = (struct device_spec){ "virtio-blk",
					       "path=/nonexistent/ember-fuzz.img,serial=X,readonly=on" };
	cfg.nr_devices = 1;
	err[0] = 0;
	if (snapshot_disks_check_json((const char *)data, size, &cfg, err, sizeof(err)) == 0)
		abort();
	one_line(err);
	return 0;
}
