/* The live-migration stream's receiving side (vmm/migration/): what a
 * destination accepts and what it refuses, with one line each, from
 * streams built here (no KVM needed). */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "base/guest_mem.h"
#include "helpers/ck_run.h"
#include "vmm/migration/migration.h"
#include "vmm/snapshot/state.h"

#define RAM (8ULL << 20)

struct stream {
	uint8_t *b;
	size_t len, cap;
};

static void put(struct stream *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->b = realloc(s->b, s->cap);
		ck_assert_ptr_nonnull(s->b);
	}
	memcpy(s->b + s->len, p, n);
	s->len += n;
}

static void put64(struct stream *s, uint64_t v)
{
	uint8_t b[8];

	wr64(b, v);
	put(s, b, 8);
}

static void header(struct stream *s, unsigned cpus, uint64_t ram, uint32_t model)
{
	uint8_t h[MIG_HEADER_SIZE] = { 0 };

	memcpy(h, MIG_MAGIC, 8);
	wr32(h + 8, MIG_VERSION);
	wr32(h + 12, cpus);
	wr64(h + 16, ram);
	wr32(h + 24, model);
	put(s, h, sizeof(h));
}

static void page(struct stream *s, uint64_t gpa, uint8_t fill)
{
	uint8_t p[MIG_PAGE_SIZE];

	memset(p, fill, sizeof(p));
	put64(s, gpa | MIG_REC_PAGE);
	put(s, p, sizeof(p));
}

static void state(struct stream *s, const char *image, const char *disks, int corrupt)
{
	uint8_t r[24];
	size_t il = strlen(image), dl = strlen(disks);

	put64(s, MIG_REC_STATE);
	wr32(r, MIG_STATE_PAUSED);
	wr64(r + 4, il);
	wr64(r + 12, dl);
	wr32(r + 20, snap_crc32(snap_crc32(0, image, il), disks, dl) ^ (uint32_t)corrupt);
	put(s, r, sizeof(r));
	put(s, image, il);
	put(s, disks, dl);
}

static int states_seen;
static uint32_t last_flags;

static int accept_state(void *opaque, uint32_t flags, const uint8_t *image, size_t len,
			const char *disks, size_t disks_len, char *err, size_t errlen)
{
	(void)opaque;
	(void)err;
	(void)errlen;
	ck_assert_uint_eq(len, 5);
	ck_assert_mem_eq(image, "STATE", 5);
	ck_assert_uint_eq(disks_len, 2);
	ck_assert_str_eq(disks, "[]");
	last_flags = flags;
	states_seen++;
	return 0;
}

/* Feeds s through a memfd; returns migration_receive's result, err set. */
static int feed(struct stream *s, struct guest_mem *gm, char *err, size_t errlen)
{
	struct mig_expect want = { .cpus = 2, .memory = RAM, .cpu_model = 1 };
	int fd = memfd_create("mig", MFD_CLOEXEC), ret;

	ck_assert_int_ge(fd, 0);
	if (s->len)
		ck_assert_int_eq(write(fd, s->b, s->len), (ssize_t)s->len);
	lseek(fd, 0, SEEK_SET);
	err[0] = 0;
	ret = migration_receive(&want, gm, fd, accept_state, NULL, err, errlen);
	close(fd);
	if (ret) {
		ck_assert_msg(err[0] && !strchr(err, '\n'), "not one line: '%s'", err);
	}
	return ret;
}

static struct guest_mem gm;

static void setup(void)
{
	ck_assert_int_eq(gm_init(&gm, RAM, false), 0);
	states_seen = 0;
}

static void teardown(void)
{
	gm_destroy(&gm);
}

START_TEST(test_good_stream)
{
	struct stream s = { 0 };
	char err[256];
	uint8_t *p;

	header(&s, 2, RAM, 1);
	page(&s, 0x1000, 0xab);
	page(&s, 0x200000, 0xcd);
	put64(&s, 0x200000 | MIG_REC_ZERO);	/* dirtied back to zeros */
	page(&s, 0x3000, 0x11);
	state(&s, "STATE", "[]", 0);
	put64(&s, MIG_REC_END);
	ck_assert_int_eq(feed(&s, &gm, err, sizeof(err)), 0);
	ck_assert_int_eq(states_seen, 1);
	ck_assert_uint_eq(last_flags, MIG_STATE_PAUSED);
	p = gm_ptr(&gm, 0x1000, MIG_PAGE_SIZE);
	ck_assert(p[0] == 0xab && p[MIG_PAGE_SIZE - 1] == 0xab);
	p = gm_ptr(&gm, 0x200000, MIG_PAGE_SIZE);
	ck_assert(p[0] == 0 && p[MIG_PAGE_SIZE - 1] == 0);
	p = gm_ptr(&gm, 0x3000, MIG_PAGE_SIZE);
	ck_assert(p[100] == 0x11);
	free(s.b);
}
END_TEST

/* Each bad stream: an error naming the problem. */
START_TEST(test_bad_streams)
{
	static const struct {
		const char *what, *want;
	} cases[] = {
		{ "empty", "no header" },
		{ "magic", "not an Ember migration stream" },
		{ "version", "version" },
		{ "cpus", "--cpus must match" },
		{ "memory", "--memory must match" },
		{ "model", "--cpu-model" },
		{ "outside", "is not guest RAM" },
		{ "unaligned-type", "unknown record type" },
		{ "truncated-page", "truncated" },
		{ "no-state", "without the machine state" },
		{ "two-states", "second state record" },
		{ "huge-state", "limits" },
		{ "bad-crc", "checksum" },
		{ "no-end", "truncated" },
	};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stream s = { 0 };
		const char *w = cases[i].what;
		char err[256];
		int ret;

		if (!strcmp(w, "magic")) {
			put(&s, "GET / HTTP/1.0\r\n\r\n", 18);
			put(&s, (uint8_t[64]){ 0 }, 64);
		} else if (strcmp(w, "empty")) {
			header(&s, !strcmp(w, "cpus") ? 4 : 2, !strcmp(w, "memory") ? RAM * 2 : RAM,
			       !strcmp(w, "model") ? 0 : 1);
			if (!strcmp(w, "version"))
				wr32(s.b + 8, 99);
		}
		if (!strcmp(w, "outside"))
			page(&s, RAM + (64ULL << 20), 1);
		if (!strcmp(w, "unaligned-type"))
			put64(&s, 0x1000 | 0x7);
		if (!strcmp(w, "truncated-page")) {
			put64(&s, 0x1000 | MIG_REC_PAGE);
			put(&s, "abc", 3);
		}
		if (!strcmp(w, "no-state") || !strcmp(w, "two-states")) {
			if (!strcmp(w, "two-states")) {
				state(&s, "STATE", "[]", 0);
				state(&s, "STATE", "[]", 0);
			}
			put64(&s, MIG_REC_END);
		}
		if (!strcmp(w, "huge-state")) {
			uint8_t r[24] = { 0 };

			put64(&s, MIG_REC_STATE);
			wr64(r + 4, (uint64_t)MIG_MAX_STATE_BYTES + 1);
			put(&s, r, sizeof(r));
		}
		if (!strcmp(w, "bad-crc"))
			state(&s, "STATE", "[]", 1);
		if (!strcmp(w, "no-end"))
			state(&s, "STATE", "[]", 0);
		ret = feed(&s, &gm, err, sizeof(err));
		ck_assert_msg(ret < 0, "%s: accepted", w);
		ck_assert_msg(strstr(err, cases[i].want), "%s: '%s' lacks '%s'", w, err, cases[i].want);
		free(s.b);
	}
}
END_TEST

static Suite *migration_suite(void)
{
	Suite *s = suite_create("migration");
	TCase *tc = tcase_create("stream");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_good_stream);
	tcase_add_test(tc, test_bad_streams);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(migration_suite());
}
