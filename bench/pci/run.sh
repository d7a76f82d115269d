#!/usr/bin/env bash
# bench/pci: per-exit and per-interrupt cost of the PCI path, for two builds
# side by side (before/after a change).
#
#   per exit:  the guest tests/guests/bench_mmio.c does count=N MMIO writes
#              (read=1: reads) to virtio-rng's common configuration in BAR 0,
#              each one exit through exit dispatch -> MMIO bus -> BAR handler
#              -> virtio-pci -> register. Measured with an LD_PRELOAD shim as
#              the userspace time from a KVM_RUN returning to the next KVM_RUN
#              (median over all exits of a run), and as wall time per exit,
#              (wall(N) - wall(0)) / N.
#   dispatch:  bench_pci_pci_bench, ns per bus_write() on the VM's MMIO bus
#              to a register in a PCI function's BAR (the userspace dispatch
#              an MMIO exit costs, without the exit itself).
#   per interrupt: bench_pci_pci_bench, ns per pci_msix_notify() on an
#              unmasked vector of a function on a real VM's host bridge.
#
# Usage: BEFORE=dir AFTER=dir bench/pci/run.sh     (needs /dev/kvm)
#   BEFORE, AFTER  build trees, each with ember and bench/bench_pci_pci_bench
#                  (AFTER alone is fine: one column)
#   GUEST=         bench_mmio.elf (default: $AFTER/guests/bench_mmio.elf; the
#                  guest does not depend on the VMM build)
#   RUNS=7 N=20000 NOTIFY_N=200000 MODES="write read"
#   KEEP_WORK=1    keep the raw per-run results (the directory is printed)
#   VERBOSE=1      print every run's numbers
#   HELPER_DIR=    where the shim is compiled (default $AFTER/bench-helpers)
# Runs are interleaved (before, after, before, ...) so load drift hits both.
set -u
set -o pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
AFTER=${AFTER:-$SRC/build-bench}
BEFORE=${BEFORE:-}
GUEST=${GUEST:-$AFTER/guests/bench_mmio.elf}
RUNS=${RUNS:-7}
N=${N:-20000}
NOTIFY_N=${NOTIFY_N:-200000}
MODES=${MODES:-"write read"}
HELPER_DIR=${HELPER_DIR:-$AFTER/bench-helpers}
CC=${CC:-cc}

die() { echo "bench/pci: $*" >&2; exit 2; }
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable"
[ -r "$GUEST" ] || die "no guest $GUEST (build tests/guests)"
SIDES=()
[ -n "$BEFORE" ] && SIDES+=(before)
SIDES+=(after)
for s in "${SIDES[@]}"; do
	d=$AFTER; [ "$s" = before ] && d=$BEFORE
	[ -x "$d/ember" ] || die "no $d/ember"
	[ -x "$d/bench/bench_pci_pci_bench" ] || die "no $d/bench/bench_pci_pci_bench"
done
case "$RUNS$N$NOTIFY_N" in *[!0-9]*) die "RUNS, N and NOTIFY_N must be numbers";; esac

mkdir -p "$HELPER_DIR" || die "cannot create $HELPER_DIR"
cat >"$HELPER_DIR/pci-shim.c" <<'EOF'
/* LD_PRELOAD: per thread, the time from a KVM_RUN returning to the next
 * KVM_RUN, as a 10 ns histogram in $BENCH_SHIM_OUT (MAP_SHARED: survives
 * _exit). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#define NB 100000
struct shm { uint64_t count, sum_ns; uint64_t b[NB + 1]; };
static struct shm *S;
static int (*real_ioctl)(int, unsigned long, ...);
static __thread uint64_t last;
static uint64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}
__attribute__((constructor)) static void init(void)
{
	const char *p = getenv("BENCH_SHIM_OUT");
	int fd;
	real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	unsetenv("LD_PRELOAD");
	if (!p || (fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
		return;
	if (ftruncate(fd, sizeof(struct shm)) == 0) {
		S = mmap(NULL, sizeof(struct shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (S == MAP_FAILED)
			S = NULL;
	}
	close(fd);
}
int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	uint64_t t;
	int r;
	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req != KVM_RUN || !S)
		return real_ioctl(fd, req, arg);
	t = now();
	if (last) {
		uint64_t d = (t - last) / 10;
		__atomic_fetch_add(&S->b[d < NB ? d : NB], 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&S->count, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&S->sum_ns, t - last, __ATOMIC_RELAXED);
	}
	r = real_ioctl(fd, req, arg);
	last = now();
	return r;
}
EOF
cat >"$HELPER_DIR/pci-shim-read.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#define NB 100000
struct shm { uint64_t count, sum_ns; uint64_t b[NB + 1]; };
int main(int argc, char **argv)
{
	static struct shm s;
	FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
	uint64_t acc = 0;
	if (!f || fread(&s, sizeof s, 1, f) != 1 || !s.count) {
		printf("gaps=0 gap_median_ns=nan\n");
		return 1;
	}
	for (int i = 0; i <= NB; i++)
		if ((acc += s.b[i]) >= (s.count + 1) / 2) {
			printf("gaps=%llu gap_median_ns=%d gap_mean_ns=%.0f\n",
			       (unsigned long long)s.count, i * 10 + 5, (double)s.sum_ns / s.count);
			return 0;
		}
	return 1;
}
EOF
"$CC" -O2 -Wall -shared -fPIC -o "$HELPER_DIR/pci-shim.so" "$HELPER_DIR/pci-shim.c" -ldl ||
	die "cannot compile the shim"
"$CC" -O2 -Wall -o "$HELPER_DIR/pci-shim-read" "$HELPER_DIR/pci-shim-read.c" || die "cannot compile the reader"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ember-bench-pci.XXXXXX")
SHIMF=$WORK/shim
trap '[ -n "${KEEP_WORK:-}" ] && echo "bench/pci: raw results in $WORK" || rm -rf "$WORK"' EXIT

ember_of() { if [ "$1" = before ]; then echo "$BEFORE/ember"; else echo "$AFTER/ember"; fi; }
pcib_of() { if [ "$1" = before ]; then echo "$BEFORE/bench/bench_pci_pci_bench"; else echo "$AFTER/bench/bench_pci_pci_bench"; fi; }
# guest_args mode n
guest_args() { if [ "$1" = read ]; then echo "count=$2 read=1"; else echo "count=$2"; fi; }

echo "== sanity"
for s in "${SIDES[@]}"; do
	out=$(timeout 120 "$(ember_of "$s")" run --kernel "$GUEST" --cmdline "count=3 verbose=1" \
		--rng --debug-exit --console stdio --memory 128M </dev/null 2>"$WORK/sanity.err"); rc=$?
	if [ "$rc" = 1 ] && grep -q "bench_mmio: 3 writes done" <<<"$out"; then
		echo "   $s: ok"
	else
		die "$s: status $rc, output '$out' $(head -c 300 "$WORK/sanity.err")"
	fi
done

# run_exit side mode n -> appends "wall_ns=.. gap_median_ns=.." to $WORK/side.mode.n
run_exit() {
	local s=$1 m=$2 n=$3 t0 t1 rc sh
	rm -f "$SHIMF"
	t0=$(date +%s%N)
	BENCH_SHIM_OUT=$SHIMF LD_PRELOAD=$HELPER_DIR/pci-shim.so "$(ember_of "$s")" run \
		--kernel "$GUEST" --cmdline "$(guest_args "$m" "$n")" --rng --debug-exit \
		--console none --memory 128M </dev/null >/dev/null 2>>"$WORK/$s.err"
	rc=$?
	t1=$(date +%s%N)
	[ "$rc" = 1 ] || { echo "   $s $m count=$n: status $rc" >&2; return; }
	sh=$("$HELPER_DIR/pci-shim-read" "$SHIMF")
	echo "wall_ns=$((t1 - t0)) $sh" >>"$WORK/$s.$m.$n"
	[ -n "${VERBOSE:-}" ] && echo "   $s $m count=$n: wall_ns=$((t1 - t0)) $sh"
}

echo "== $RUNS rounds: count=0 and count=$N per mode, then $NOTIFY_N notifies ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
for ((i = 1; i <= RUNS; i++)); do
	for m in $MODES; do
		for n in 0 "$N"; do
			for s in "${SIDES[@]}"; do
				run_exit "$s" "$m" "$n"
			done
		done
	done
	for s in "${SIDES[@]}"; do
		"$(pcib_of "$s")" "$GUEST" "$NOTIFY_N" 1 1 2>>"$WORK/$s.err" | grep RESULT >>"$WORK/$s.pcib" ||
			echo "   $s: pci_bench failed" >&2
	done
	echo "   round $i/$RUNS done"
done

field() { [ -f "$1" ] && sed -n "s/.*\\b$2=\\([-0-9.a-z]*\\).*/\\1/p" "$1"; }
median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "nan"; exit} if(NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo
echo "== results (medians of $RUNS runs; N=$N exits, $NOTIFY_N notifies per run)"
printf '%-52s' metric; for s in "${SIDES[@]}"; do printf ' %10s' "$s"; done
[ ${#SIDES[@]} = 2 ] && printf ' %12s' after/before
echo
row() { # label values...
	printf '%-52s' "$1"; shift
	for v in "$@"; do printf ' %10s' "$v"; done
	[ $# = 2 ] && awk -v a="$1" -v b="$2" 'BEGIN{ if (a + 0 > 0) printf " %12.2f", b / a; else printf " %12s", "n/a" }'
	echo
}
minimum() { sort -g | head -1; }
for m in $MODES; do
	gaps=(); gmins=(); walls=()
	for s in "${SIDES[@]}"; do
		gaps+=("$(field "$WORK/$s.$m.$N" gap_median_ns | median)")
		gmins+=("$(field "$WORK/$s.$m.$N" gap_median_ns | minimum)")
		w0=$(field "$WORK/$s.$m.0" wall_ns | median); wN=$(field "$WORK/$s.$m.$N" wall_ns | median)
		walls+=("$(awk -v a="$w0" -v b="$wN" -v n="$N" 'BEGIN{printf "%.0f", (b - a) / n}')")
	done
	row "MMIO $m exit: VMM time per exit, KVM_RUN gap (ns)" "${gaps[@]}"
	row "  the same, best run (ns)" "${gmins[@]}"
	row "MMIO $m exit: wall per exit (ns)" "${walls[@]}"
done
ds=(); ns=()
for s in "${SIDES[@]}"; do
	ds+=("$(field "$WORK/$s.pcib" dispatch_ns_median | median)")
	ns+=("$(field "$WORK/$s.pcib" notify_ns_median | median)")
done
row "BAR write dispatch: bus_write to the handler (ns)" "${ds[@]}"
row "MSI-X interrupt: pci_msix_notify (ns)" "${ns[@]}"
for s in "${SIDES[@]}"; do
	[ -s "$WORK/$s.err" ] && { echo "== $s stderr (first lines)"; sort -u "$WORK/$s.err" | head -5; }
done
exit 0
