#!/usr/bin/env bash
# bench/blk: Ember's virtio-blk device model (driven by bench_blk_blk_bench, a
# host-side guest driver on a real split ring in gm_init() memory) against
# fio on the same file, with the same engine, block size, depth and O_DIRECT.
#
# Usage: bench/blk/run.sh        (after building, see BUILD below)
# Environment:
#   BUILD=dir        build tree (default <repo>/build-blkbench); the bench is
#                    $BUILD/bench/bench_blk_blk_bench (BENCH= overrides)
#   FIO=fio          the fio binary (Debian package fio; scripts/deps.sh)
#   BENCH_DIR=dir    where the test file is created (default /var/tmp); must be
#                    a real local file system (not tmpfs: no O_DIRECT there)
#   SIZE_MB=1024     test file size
#   RUNS=3           runs per side and case; the median is reported
#   SECS=5           seconds per run
#   ENGINES="io_uring native threads"
#   CASES="randread:4k:1 randread:4k:32 seqread:1m:8"   rw:bs:qd
#   CACHE=none       none (O_DIRECT on both sides, the main comparison) or
#                    writeback (page cache; fio direct=0; native is skipped)
#   KEEP_WORK=1      keep the raw per-run output (the directory is printed)
#   BASE=path        a second bench_blk_blk_bench (e.g. built from an older
#                    tree) run in the same rounds, for before/after numbers:
#                    adds "base IOPS" and "ember/base" columns
#
# Engine mapping (ember --aio  ->  fio):
#   io_uring  ->  --ioengine=io_uring --iodepth=QD
#   native    ->  --ioengine=libaio   --iodepth=QD          (both O_DIRECT)
#   threads   ->  --ioengine=psync    --numjobs=QD --iodepth=1 --group_reporting
#                 i.e. QD synchronous threads. NOTE: Ember's thread pool has a
#                 fixed number of workers (BLK_THREADS in
#                 devices/virtio/blk_threads.c), so at QD above that it cannot
#                 keep QD requests at the disk; the ratio shows the cost.
# fio runs with --norandommap (Ember draws offsets uniformly with
# replacement) and --randrepeat=0; both sides use bs-aligned offsets over the
# whole file. Runs are interleaved (ember, fio, ember, fio, ...) so drift in
# the disk hits both alike.
set -u
set -o pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build-blkbench}
BENCH=${BENCH:-$BUILD/bench/bench_blk_blk_bench}
FIO=${FIO:-fio}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
SECS=${SECS:-5}
ENGINES=${ENGINES:-"io_uring native threads"}
CASES=${CASES:-"randread:4k:1 randread:4k:32 seqread:1m:8"}
CACHE=${CACHE:-none}
BASE=${BASE:-}

die() { echo "bench/blk: $*" >&2; exit 2; }

# ---- prerequisites -------------------------------------------------------
[ -z "$BASE" ] || [ -x "$BASE" ] || die "BASE=$BASE is not executable"
[ -x "$BENCH" ] || die "missing $BENCH; build with: cmake -S $SRC -B $BUILD && cmake --build $BUILD -j2 --target bench_blk_blk_bench"
command -v "$FIO" >/dev/null 2>&1 || die "fio not found: install the Debian package fio (scripts/deps.sh)"
case "$RUNS$SECS$SIZE_MB" in *[!0-9]*) die "RUNS, SECS and SIZE_MB must be whole numbers";; esac
[ "$RUNS" -ge 1 ] && [ "$SECS" -ge 1 ] && [ "$SIZE_MB" -ge 16 ] || die "RUNS >= 1, SECS >= 1, SIZE_MB >= 16"
case "$CACHE" in none) DIRECT=1;; writeback) DIRECT=0;; *) die "CACHE must be none or writeback";; esac
[ -d "$BENCH_DIR" ] && [ -w "$BENCH_DIR" ] || die "BENCH_DIR $BENCH_DIR is not a writable directory"
fstype=$(stat -f -c %T "$BENCH_DIR")
case "$fstype" in tmpfs|ramfs) die "BENCH_DIR $BENCH_DIR is on $fstype; use a disk-backed directory";; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ember-blkbench.XXXXXX") || die "mktemp failed"
FILE="$BENCH_DIR/ember-blkbench.$$.img"
cleanup() {
	rm -f "$FILE"
	if [ "${KEEP_WORK:-0}" = 1 ]; then
		echo "bench/blk: raw results kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the test file -------------------------------------------------------
echo "bench/blk: creating $FILE ($SIZE_MB MiB of random data, $fstype)" >&2
fallocate -l "${SIZE_MB}M" "$FILE" 2>/dev/null || true
dd if=/dev/urandom of="$FILE" bs=1M count="$SIZE_MB" oflag=direct conv=notrunc,fsync status=none ||
	die "cannot write $FILE"
sync
if [ -w /proc/sys/vm/drop_caches ]; then
	echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
fi

# ---- helpers -------------------------------------------------------------
bytes() {	# 4k -> 4096, 1m -> 1048576
	local v=${1,,}
	case "$v" in
	*k) echo $(( ${v%k} * 1024 ));;
	*m) echo $(( ${v%m} * 1048576 ));;
	*) echo "$v";;
	esac
}

median() {	# numbers on stdin -> median (mean of the middle two if even)
	sort -g | awk '{ a[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# run_ember ENGINE RW BS QD OUT [BINARY] -> appends "iops mibps" to OUT
run_ember() {
	local eng=$1 rw=$2 bs=$3 qd=$4 out=$5 bin=${6:-$BENCH} line
	line=$("$bin" --file "$FILE" --aio "$eng" --cache "$CACHE" --rw "$rw" --bs "$bs" \
		--qd "$qd" --seconds "$SECS" --quiet 2>>"$WORK/ember.err") ||
		die "bench_blk_blk_bench failed (aio=$eng rw=$rw bs=$bs qd=$qd); see above / $WORK/ember.err"
	echo "$line" >> "$WORK/ember.raw"
	awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	       print v["iops"], v["mibps"] }' <<< "$line" >> "$out"
}

# run_fio ENGINE RW BS QD OUT -> appends "iops mibps" to OUT
run_fio() {
	local eng=$1 rw=$2 bs=$3 qd=$4 out=$5 frw args line
	case "$rw" in randread) frw=randread;; seqread) frw=read;; esac
	args=(--name=blk --filename="$FILE" --size="${SIZE_MB}M" --rw="$frw" --bs="$bs"
	      --direct="$DIRECT" --runtime="$SECS" --time_based --norandommap --randrepeat=0
	      --output-format=terse --terse-version=3)
	case "$eng" in
	io_uring) args+=(--ioengine=io_uring --iodepth="$qd");;
	native) args+=(--ioengine=libaio --iodepth="$qd");;
	threads) args+=(--ioengine=psync --iodepth=1 --numjobs="$qd" --group_reporting --thread);;
	esac
	line=$("$FIO" "${args[@]}" 2>>"$WORK/fio.err" | grep '^3;') ||
		die "fio failed (${args[*]}); see $WORK/fio.err"
	echo "$eng $rw $bs $qd $line" >> "$WORK/fio.raw"
	# terse v3: field 7 = read bandwidth KiB/s, field 8 = read IOPS
	awk -F';' '{ printf "%s %.2f\n", $8, $7 / 1024 }' <<< "$line" >> "$out"
}

# ---- runs ----------------------------------------------------------------
echo "bench/blk: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, cache=$CACHE, RUNS=$RUNS x ${SECS}s, $("$FIO" --version), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
results=()
for eng in $ENGINES; do
	case "$eng" in io_uring|native|threads) ;; *) die "unknown engine $eng";; esac
	if [ "$eng" = native ] && [ "$CACHE" != none ]; then
		echo "bench/blk: skipping native: it requires CACHE=none" >&2
		continue
	fi
	for c in $CASES; do
		IFS=: read -r rw bs qd <<< "$c"
		case "$rw" in randread|seqread) ;; *) die "bad case $c (rw must be randread or seqread)";; esac
		b=$(bytes "$bs")
		key="$eng.$rw.$bs.$qd"
		: > "$WORK/$key.ember"; : > "$WORK/$key.fio"; : > "$WORK/$key.base"
		for ((r = 1; r <= RUNS; r++)); do
			run_ember "$eng" "$rw" "$b" "$qd" "$WORK/$key.ember"
			[ -z "$BASE" ] || run_ember "$eng" "$rw" "$b" "$qd" "$WORK/$key.base" "$BASE"
			run_fio "$eng" "$rw" "$b" "$qd" "$WORK/$key.fio"
			printf 'bench/blk: %-8s %-8s bs=%-3s qd=%-3s run %d: ember %s IOPS,%s fio %s IOPS\n' \
				"$eng" "$rw" "$bs" "$qd" "$r" "$(tail -1 "$WORK/$key.ember" | cut -d' ' -f1)" \
				"${BASE:+ base $(tail -1 "$WORK/$key.base" | cut -d' ' -f1) IOPS,}" \
				"$(tail -1 "$WORK/$key.fio" | cut -d' ' -f1)" >&2
		done
		results+=("$key")
	done
done

# ---- table ---------------------------------------------------------------
echo
printf '%-9s %-9s %-4s %-4s %12s %12s %7s %11s %11s' engine rw bs qd "ember IOPS" "fio IOPS" ratio \
	"ember MiB/s" "fio MiB/s"
[ -z "$BASE" ] && echo || printf ' %11s %10s\n' "base IOPS" "ember/base"
target=""
for key in "${results[@]}"; do
	IFS=. read -r eng rw bs qd <<< "$key"
	ei=$(cut -d' ' -f1 "$WORK/$key.ember" | median)
	fi_=$(cut -d' ' -f1 "$WORK/$key.fio" | median)
	em=$(cut -d' ' -f2 "$WORK/$key.ember" | median)
	fm=$(cut -d' ' -f2 "$WORK/$key.fio" | median)
	ratio=$(awk -v a="$ei" -v b="$fi_" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
	fio_name=$eng; [ "$eng" = native ] && fio_name=libaio; [ "$eng" = threads ] && fio_name="psync*$qd"
	printf '%-9s %-9s %-4s %-4s %12.0f %12.0f %7s %11.1f %11.1f' "$eng" "$rw" "$bs" "$qd" \
		"$ei" "$fi_" "$ratio" "$em" "$fm"
	if [ -n "$BASE" ]; then
		bi=$(cut -d' ' -f1 "$WORK/$key.base" | median)
		printf ' %11.0f %10s' "$bi" "$(awk -v a="$ei" -v b="$bi" 'BEGIN { printf "%.2f", a / b }')"
	fi
	printf '   (fio %s)\n' "$fio_name"
	if [ "$eng" = io_uring ] && [ "$rw" = randread ] && [ "$qd" = 32 ]; then
		target=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.90) ? "MET" : "MISSED" }')
		target="target (io_uring 4k randread QD32 >= 0.90 x fio): $target (ratio $ratio)"
	fi
done
echo
[ -n "$target" ] && echo "$target"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews both sides)"
echo "medians of $RUNS runs of ${SECS}s; cache=$CACHE (O_DIRECT=$DIRECT on both sides); file $SIZE_MB MiB on $fstype"
