/* A small O_DIRECT block benchmark for the guest (bench/vhost-user), on
 * Linux AIO by raw syscalls (no library in a static initramfs):
 *   blkbench DEV MODE BS QD SECS
 * MODE is read, write, randread or randwrite; BS in bytes (a multiple of
 * 4096); QD requests kept in flight; SECS of timed I/O over the whole
 * device (random offsets are BS-aligned). Prints one line:
 *   blkbench MODE BS QD: IOPS iops, MBPS MB/s, N ios in S s
 * Exit status 0 when every I/O completed in full. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define QD_MAX	128

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	struct iocb cbs[QD_MAX], *cbp[QD_MAX];
	struct io_event ev[QD_MAX];
	uint64_t size, blocks, seq = 0, done = 0;
	aio_context_t ctx = 0;
	unsigned long bs, qd, secs;
	int fd, write_mode, random_mode;
	double t0;
	char *buf;

	if (argc != 6) {
		fprintf(stderr, "usage: blkbench DEV read|write|randread|randwrite BS QD SECS\n");
		return 2;
	}
	write_mode = strstr(argv[2], "write") != NULL;
	random_mode = strncmp(argv[2], "rand", 4) == 0;
	bs = strtoul(argv[3], NULL, 0);
	qd = strtoul(argv[4], NULL, 0);
	secs = strtoul(argv[5], NULL, 0);
	if (!bs || bs % 4096 || !qd || qd > QD_MAX || !secs) {
		fprintf(stderr, "blkbench: BS a multiple of 4096, QD 1..%d, SECS > 0\n", QD_MAX);
		return 2;
	}
	fd = open(argv[1], (write_mode ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	if (ioctl(fd, BLKGETSIZE64, &size)) {	/* a plain file (trying it on the host) */
		struct stat st;

		if (fstat(fd, &st)) {
			perror(argv[1]);
			return 1;
		}
		size = (uint64_t)st.st_size;
	}
	blocks = size / bs;
	if (!blocks || posix_memalign((void **)&buf, 4096, bs * qd)) {
		fprintf(stderr, "blkbench: device smaller than BS, or no memory\n");
		return 1;
	}
	memset(buf, 0x5a, bs * qd);
	if (syscall(SYS_io_setup, qd, &ctx)) {
		perror("io_setup");
		return 1;
	}
	t0 = now();
	for (unsigned long i = 0; i < qd; i++) {
		memset(&cbs[i], 0, sizeof(cbs[i]));
		cbs[i].aio_fildes = (uint32_t)fd;
		cbs[i].aio_lio_opcode = write_mode ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
		cbs[i].aio_buf = (uintptr_t)(buf + i * bs);
		cbs[i].aio_nbytes = bs;
		cbs[i].aio_data = i;
		cbs[i].aio_offset = (int64_t)((random_mode ? next_rand() % blocks : seq++ % blocks) * bs);
		cbp[i] = &cbs[i];
	}
	if (syscall(SYS_io_submit, ctx, qd, cbp) != (long)qd) {
		perror("io_submit");
		return 1;
	}
	for (unsigned long inflight = qd; inflight;) {
		long n = syscall(SYS_io_getevents, ctx, 1, qd, ev, NULL);
		int stop;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror("io_getevents");
			return 1;
		}
		stop = now() - t0 >= secs;
		for (long k = 0; k < n; k++) {
			struct iocb *cb = &cbs[ev[k].data];

			if (ev[k].res != (int64_t)bs) {
				fprintf(stderr, "blkbench: I/O at %lld: result %lld\n",
					(long long)cb->aio_offset, (long long)ev[k].res);
				return 1;
			}
			done++;
			inflight--;
			if (stop)
				continue;	/* let the rest drain */
			cb->aio_offset = (int64_t)((random_mode ? next_rand() % blocks : seq++ % blocks) * bs);
			if (syscall(SYS_io_submit, ctx, 1, &cb) != 1) {
				perror("io_submit");
				return 1;
			}
			inflight++;
		}
	}
	t0 = now() - t0;
	printf("blkbench %s %lu %lu: %.0f iops, %.1f MB/s, %llu ios in %.2f s\n", argv[2], bs, qd,
	       done / t0, done * (double)bs / t0 / 1e6, (unsigned long long)done, t0);
	syscall(SYS_io_destroy, ctx);
	return 0;
}
