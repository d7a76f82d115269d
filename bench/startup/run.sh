#!/usr/bin/env bash
# bench/startup: start-up time, peak RSS and cost per PIO exit of Ember,
# compared with QEMU (-M microvm) and bench_startup_minimal_kvm, all booting
# the same PVH guest (tests/guests/bench_pio.c: count=N `outb %al,$0x80`,
# then isa-debug-exit 0, i.e. exit status 1).
#
# Usage: bench/startup/run.sh            (after building build-bench)
# Environment:
#   BUILD=dir      build tree (default <repo>/build-bench)
#   EMBER=, MINIMAL=, GUEST=, QEMU=   override the binaries
#   RUNS=11        runs per VMM and configuration; medians are reported
#   PIO_N=20000    the N of the per-exit measurement
#   KEEP_WORK=1    keep the raw per-run results (the directory is printed)
#   HELPER_DIR=    where the two tiny C helpers are compiled (default
#                  $BUILD/bench-helpers)
#
# What is measured, per VMM (all runs interleaved round-robin so background
# load hits every VMM alike):
#   wall      fork() to the child being reaped (bench-run helper, wait4)
#   RSS       ru_maxrss of the child (peak RSS, KiB), 128 MiB guest
#   user/sys  ru_utime/ru_stime of the child. NOTE: on kernels with
#             CONFIG_TICK_CPU_ACCOUNTING (the dev host) the user/system split
#             is sampled at the tick (4 ms at HZ=250), so user CPU deltas of a
#             few ms are noise; user+sys together is exact.
#   shim      an LD_PRELOAD ioctl() interposer timing, per thread, the
#             userspace time between a KVM_RUN returning and the next KVM_RUN
#             (the VMM's own cost per exit, exact), plus the time of the first
#             KVM_RUN and of the last KVM_RUN return (= guest exit).
set -u
set -o pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build-bench}
EMBER=${EMBER:-$BUILD/ember}
MINIMAL=${MINIMAL:-$BUILD/bench/bench_startup_minimal_kvm}
GUEST=${GUEST:-$BUILD/guests/bench_pio.elf}
QEMU=${QEMU:-qemu-system-x86_64}
RUNS=${RUNS:-11}
PIO_N=${PIO_N:-20000}
HELPER_DIR=${HELPER_DIR:-$BUILD/bench-helpers}
CC=${CC:-cc}

die() { echo "bench/startup: $*" >&2; exit 2; }

# ---- prerequisites -------------------------------------------------------
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable"
missing=()
[ -x "$EMBER" ] || missing+=("ember ($EMBER)")
[ -r "$GUEST" ] || missing+=("guest ($GUEST)")
HAVE_MIN=1; [ -x "$MINIMAL" ] || { HAVE_MIN=0; missing+=("minimal loop ($MINIMAL)"); }
HAVE_QEMU=1; command -v "$QEMU" >/dev/null 2>&1 || { HAVE_QEMU=0; missing+=("qemu ($QEMU)"); }
command -v "$CC" >/dev/null 2>&1 || missing+=("C compiler ($CC) for the helpers")
if [ ${#missing[@]} -gt 0 ]; then
	for m in "${missing[@]}"; do echo "bench/startup: missing: $m" >&2; done
fi
[ -x "$EMBER" ] && [ -r "$GUEST" ] && command -v "$CC" >/dev/null 2>&1 ||
	die "cannot run without ember, the guest and a C compiler; build with: cmake -S $SRC -B $BUILD && cmake --build $BUILD -j2"
case "$RUNS$PIO_N" in *[!0-9]*) die "RUNS and PIO_N must be numbers";; esac
[ "$RUNS" -ge 1 ] && [ "$PIO_N" -ge 1 ] || die "RUNS and PIO_N must be >= 1"

# ---- helpers (compiled once, cached) ----------------------------------------
mkdir -p "$HELPER_DIR" || die "cannot create $HELPER_DIR"
cat >"$HELPER_DIR/bench-run.c.new" <<'EOF'
/* bench-run CMD...: runs CMD (stdin and, unless BENCH_KEEP_STDOUT, stdout on
 * /dev/null; LD_PRELOAD=$BENCH_CHILD_PRELOAD in the child only) and prints
 * its wall time (fork to reaped), rusage and exit status. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct rusage ru;
	int st;
	pid_t p;

	if (argc < 2) {
		fprintf(stderr, "usage: bench-run CMD...\n");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	p = fork();
	if (p == 0) {
		int fd = open("/dev/null", O_RDWR);
		dup2(fd, 0);
		if (!getenv("BENCH_KEEP_STDOUT"))
			dup2(fd, 1);
		if (getenv("BENCH_CHILD_PRELOAD"))
			setenv("LD_PRELOAD", getenv("BENCH_CHILD_PRELOAD"), 1);
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	if (p < 0 || wait4(p, &st, 0, &ru) < 0) {
		perror("bench-run");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("start_ns=%lld wall_us=%.1f user_us=%ld sys_us=%ld maxrss_kb=%ld status=%d\n",
	       (long long)t0.tv_sec * 1000000000LL + t0.tv_nsec,
	       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3,
	       (long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec),
	       (long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec), ru.ru_maxrss,
	       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return 0;
}
EOF
cat >"$HELPER_DIR/kvmrun-shim.c.new" <<'EOF'
/* LD_PRELOAD shim: per thread, the userspace time between a KVM_RUN
 * returning and the next KVM_RUN, as a histogram (10 ns buckets) in the file
 * $BENCH_SHIM_OUT (MAP_SHARED, so it survives _exit and kills). Also the
 * CLOCK_MONOTONIC time of the first KVM_RUN and of the last return.
 * $BENCH_SHIM_OUT must be a new file (O_EXCL), ideally on tmpfs: truncating
 * a reused file on a disk filesystem stalled the constructor ~20 ms. */
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
#define NB 20000
struct shm { uint64_t count, sum_ns, first_run_ns, last_ret_ns, runs; uint64_t b[NB + 1]; };
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
	if (!p)
		return;
	fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
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
	} else {
		uint64_t z = 0;
		__atomic_compare_exchange_n(&S->first_run_ns, &z, t, 0, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED);
	}
	__atomic_fetch_add(&S->runs, 1, __ATOMIC_RELAXED);
	r = real_ioctl(fd, req, arg);
	last = now();
	__atomic_store_n(&S->last_ret_ns, last, __ATOMIC_RELAXED);
	return r;
}
EOF
cat >"$HELPER_DIR/kvmrun-read.c.new" <<'EOF'
/* kvmrun-read FILE: prints the shim's counters. */
#include <stdint.h>
#include <stdio.h>
#define NB 20000
struct shm { uint64_t count, sum_ns, first_run_ns, last_ret_ns, runs; uint64_t b[NB + 1]; };
int main(int argc, char **argv)
{
	static struct shm s;
	FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
	uint64_t half, acc = 0;
	double med = 0;

	if (!f || fread(&s, sizeof s, 1, f) != 1) {
		printf("runs=0 gaps=0 gap_median_ns=0 gap_mean_ns=0 first_run_ns=0 last_ret_ns=0\n");
		return 1;
	}
	half = (s.count + 1) / 2;
	for (int i = 0; i <= NB && s.count; i++) {
		acc += s.b[i];
		if (acc >= half) {
			med = i * 10 + 5;
			break;
		}
	}
	printf("runs=%llu gaps=%llu gap_median_ns=%.0f gap_mean_ns=%.0f first_run_ns=%llu last_ret_ns=%llu\n",
	       (unsigned long long)s.runs, (unsigned long long)s.count, med,
	       s.count ? (double)s.sum_ns / s.count : 0.0,
	       (unsigned long long)s.first_run_ns, (unsigned long long)s.last_ret_ns);
	return 0;
}
EOF
build_helper() { # name extra-cc-args...
	local n=$1; shift
	if [ -x "$HELPER_DIR/$n" ] && cmp -s "$HELPER_DIR/$n.c.new" "$HELPER_DIR/$n.c"; then
		rm -f "$HELPER_DIR/$n.c.new"; return 0
	fi
	mv "$HELPER_DIR/$n.c.new" "$HELPER_DIR/$n.c"
	"$CC" -O2 -Wall -o "$HELPER_DIR/$n" "$HELPER_DIR/$n.c" "$@" || die "cannot compile $HELPER_DIR/$n.c"
}
build_helper bench-run
build_helper kvmrun-read
mv "$HELPER_DIR/kvmrun-shim.c.new" "$HELPER_DIR/kvmrun-shim.c"
"$CC" -O2 -Wall -shared -fPIC -o "$HELPER_DIR/kvmrun-shim.so" "$HELPER_DIR/kvmrun-shim.c" -ldl ||
	die "cannot compile the shim"
RUNNER=$HELPER_DIR/bench-run
SHIM=$HELPER_DIR/kvmrun-shim.so
READ=$HELPER_DIR/kvmrun-read

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ember-bench-startup.XXXXXX")
[ -n "${KEEP_WORK:-}" ] && echo "bench/startup: raw results kept in $WORK"

# The shim's counters file: on tmpfs if there is one.
SHIMDIR=$WORK
[ -d /dev/shm ] && [ -w /dev/shm ] && SHIMDIR=/dev/shm
SHIMF=$SHIMDIR/ember-bench-shim.$$
trap 'rm -f "$SHIMF"; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

# ---- the VMM command lines -------------------------------------------------
VMMS=(ember)
[ $HAVE_MIN = 1 ] && VMMS+=(minimal)
[ $HAVE_QEMU = 1 ] && VMMS+=(qemu)

cmd_of() { # vmm N [extra guest args] -> sets CMD array
	local args="count=$2${3:+ $3}"
	# shellcheck disable=SC2054 # the commas are QEMU's
	case $1 in
	ember) CMD=("$EMBER" run --kernel "$GUEST" --cmdline "$args" --console none --memory 128M) ;;
	minimal) CMD=("$MINIMAL" "$GUEST" "$args") ;;
	qemu) CMD=("$QEMU" -M microvm -enable-kvm -cpu qemu64 -m 128 -nodefaults -nographic
		-no-reboot -device isa-debug-exit,iobase=0xf4 -kernel "$GUEST" -append "$args") ;;
	esac
}

# ---- sanity: every VMM boots the guest and passes the command line ----------
echo "== sanity: count=3 verbose=1 on each VMM"
for v in "${VMMS[@]}"; do
	cmd_of "$v" 3 verbose=1
	case $v in
	ember) CMD=("${CMD[@]/#none/stdio}") ;;
	qemu) CMD+=(-serial stdio) ;;
	esac
	out=$(timeout 60 "${CMD[@]}" </dev/null 2>"$WORK/sanity.err"); rc=$?
	if [ "$rc" = 1 ] && grep -q "bench_pio: 3 outb done" <<<"$out"; then
		echo "   $v: ok (status 1, cmdline seen by the guest)"
	else
		echo "   $v: FAILED (status $rc, output: '$out' $(head -c 300 "$WORK/sanity.err"))" >&2
		if [ "$v" = ember ]; then
			echo "bench/startup: Ember failed to run the benchmark guest" >&2
			exit 1
		fi
		[ "$v" = qemu ] && echo "   (QEMU microvm could not boot the PVH guest; it is left out)" >&2
		VMMS=("${VMMS[@]/$v/}")
	fi
done
read -r -a VMMS <<<"${VMMS[*]}"

# ---- measurements -----------------------------------------------------------
# run_one vmm N mode(plain|shim) -> appends one line to $WORK/<vmm>.<N>.<mode>
EMBER_FAIL=0
run_one() {
	local v=$1 n=$2 mode=$3 line sh=""
	cmd_of "$v" "$n"
	if [ "$mode" = shim ]; then
		rm -f "$SHIMF"
		line=$(BENCH_SHIM_OUT="$SHIMF" BENCH_CHILD_PRELOAD="$SHIM" "$RUNNER" "${CMD[@]}" 2>>"$WORK/$v.err")
		sh=$("$READ" "$SHIMF")
		rm -f "$SHIMF"
	else
		line=$("$RUNNER" "${CMD[@]}" 2>>"$WORK/$v.err")
	fi
	case $line in
	*" status=1") ;;
	*)
		echo "   $v count=$n ($mode): unexpected result: $line" >&2
		[ "$v" = ember ] && EMBER_FAIL=1
		return ;;
	esac
	echo "$line $sh" >>"$WORK/$v.$n.$mode"
}

echo "== $RUNS runs each of count=0 and count=$PIO_N, plain and with the KVM_RUN shim ($(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg))"
for ((i = 1; i <= RUNS; i++)); do
	for mode in plain shim; do
		for n in 0 "$PIO_N"; do
			for v in "${VMMS[@]}"; do
				run_one "$v" "$n" "$mode"
			done
		done
	done
	printf '   run %d/%d done\n' "$i" "$RUNS"
done

# ---- statistics ----------------------------------------------------------------
# field FILE KEY -> the values of KEY=, one per line
field() { [ -f "$1" ] && sed -n "s/.*\\b$2=\\([-0-9.]*\\).*/\\1/p" "$1"; }
median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "nan"; exit} if(NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# derived FILE EXPR -> one value per line computed by awk from the fields
derived() { [ -f "$1" ] && awk -v e="$2" '{
	delete f; for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	if (e == "guest_exit_ms") print (f["last_ret_ns"] - f["start_ns"]) / 1e6;
	else if (e == "first_run_ms") print (f["first_run_ns"] - f["start_ns"]) / 1e6;
	else if (e == "teardown_ms") print (f["start_ns"] + f["wall_us"] * 1000 - f["last_ret_ns"]) / 1e6;
	else if (e == "cpu_us") print f["user_us"] + f["sys_us"];
}' "$1"; }

declare -A R
for v in "${VMMS[@]}"; do
	p0=$WORK/$v.0.plain; pN=$WORK/$v.$PIO_N.plain; s0=$WORK/$v.0.shim; sN=$WORK/$v.$PIO_N.shim
	R[$v.wall0]=$(field "$p0" wall_us | median | awk '{printf "%.2f", $1/1000}')
	R[$v.first]=$(derived "$s0" first_run_ms | median | awk '{printf "%.2f", $1}')
	R[$v.gexit]=$(derived "$s0" guest_exit_ms | median | awk '{printf "%.2f", $1}')
	R[$v.tear]=$(derived "$s0" teardown_ms | median | awk '{printf "%.2f", $1}')
	rss0=$(field "$p0" maxrss_kb | median); rssN=$(field "$pN" maxrss_kb | median)
	R[$v.rss]=$(awk -v a="$rss0" -v b="$rssN" 'BEGIN{m = a > b ? a : b; printf "%.2f", m/1024}')
	u0=$(field "$p0" user_us | median); uN=$(field "$pN" user_us | median)
	R[$v.user]=$(awk -v a="$u0" -v b="$uN" -v n="$PIO_N" 'BEGIN{printf "%.3f", (b-a)/n}')
	R[$v.udelta]=$(awk -v a="$u0" -v b="$uN" 'BEGIN{printf "%.0f", b-a}')
	c0=$(derived "$p0" cpu_us | median); cN=$(derived "$pN" cpu_us | median)
	R[$v.cpu]=$(awk -v a="$c0" -v b="$cN" -v n="$PIO_N" 'BEGIN{printf "%.2f", (b-a)/n}')
	w0=$(field "$p0" wall_us | median); wN=$(field "$pN" wall_us | median)
	R[$v.wallx]=$(awk -v a="$w0" -v b="$wN" -v n="$PIO_N" 'BEGIN{printf "%.2f", (b-a)/n}')
	R[$v.gap]=$(field "$sN" gap_median_ns | median)
	R[$v.runs]=$(awk -v n="$PIO_N" '{split($0,_,"runs="); split(_[2],r," "); s+=r[1]} END{if(NR) printf "%.0f", s/NR - n}' "$sN" 2>/dev/null)
	R[$v.ok]=$(cat "$p0" "$pN" "$s0" "$sN" 2>/dev/null | wc -l)
done

ratio() { # a b -> a/b or n/a
	awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || a == "nan" || b == "nan" || b + 0 <= 0) print "n/a"; else printf "%.2f", a/b }'
}
col() { echo "${R[$1.$2]:-n/a}"; }

echo
echo "== results (median of $RUNS runs; guest bench_pio.elf, 128 MiB, PIO_N=$PIO_N)"
printf '%-46s %10s %10s %12s %9s %9s\n' metric ember minimal qemu-microvm ember/min ember/qemu
row() { # label key
	local e m q
	e=$(col ember "$2"); m=$(col minimal "$2"); q=$(col qemu "$2")
	printf '%-46s %10s %10s %12s %9s %9s\n' "$1" "$e" "$m" "$q" "$(ratio "$e" "$m")" "$(ratio "$e" "$q")"
}
row "start -> process reaped, N=0 (ms)" wall0
row "start -> first KVM_RUN, N=0 (ms)" first
row "start -> guest exit (last KVM_RUN ret) (ms)" gexit
row "guest exit -> process reaped (ms)" tear
row "peak RSS (MiB)" rss
row "user CPU per PIO exit, rusage (us)" user
row "user+sys CPU per PIO exit, rusage (us)" cpu
row "wall per PIO exit (us)" wallx
row "VMM userspace per exit, KVM_RUN gap (ns)" gap
row "extra KVM_RUNs besides the N PIO exits" runs

# ---- targets -----------------------------------------------------------------------
echo
echo "== targets (issue 2)"
verdict() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || a == "n/a" || a == "nan") print "n/a"; else print (a + 0 <= b + 0) ? "MET" : "MISSED" }'; }
printf '  %-62s %s\n' "start-to-exit <= 10 ms (process reaped): $(col ember wall0) ms" "$(verdict "$(col ember wall0)" 10)"
printf '  %-62s %s\n' "start-to-exit <= 10 ms (guest exit): $(col ember gexit) ms" "$(verdict "$(col ember gexit)" 10)"
printf '  %-62s %s\n' "peak RSS <= 4 MiB: $(col ember rss) MiB" "$(verdict "$(col ember rss)" 4)"
ru=$(ratio "$(col ember user)" "$(col minimal user)")
rv=$(verdict "$ru" 1.5)
# Fewer than ~5 ticks (20 ms at HZ=250) of user time in the delta: noise.
awk -v a="${R[ember.udelta]:-0}" -v b="${R[minimal.udelta]:-0}" 'BEGIN{exit !(a < 20000 || b < 20000)}' &&
	rv="unreliable (user CPU delta below 20 ms; raise PIO_N)"
printf '  %-62s %s\n' "user CPU/exit <= 1.5x minimal (rusage): ratio $ru" "$rv"
rg=$(ratio "$(col ember gap)" "$(col minimal gap)")
printf '  %-62s %s\n' "user time/exit <= 1.5x minimal (KVM_RUN gap): ratio $rg" "$(verdict "$rg" 1.5)"
echo "  (rusage user CPU is tick-sampled on this kernel: values of a few ms are noise;"
echo "   the KVM_RUN gap is the exact userspace time per exit)"

for v in "${VMMS[@]}"; do
	[ -s "$WORK/$v.err" ] && { echo; echo "== $v stderr (first lines)"; sort -u "$WORK/$v.err" | head -5; }
done
if [ $EMBER_FAIL = 1 ]; then
	echo "bench/startup: Ember failed at least one run" >&2
	exit 1
fi
exit 0
