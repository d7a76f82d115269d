#!/usr/bin/env bash
# bench/qmp: query-status round-trip latency (median, p99 over N requests)
# and requests per second with 8 clients, Ember against QEMU's QMP, both
# running the same guest (tests/guests/ticker.c). Runs RUNS times each,
# interleaved, and prints medians.
#   BUILD=build-bench RUNS=3 N=10000 CLIENTS=8 DURATION=5 bench/qmp/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
RUNS=${RUNS:-3}
N=${N:-10000}
CLIENTS=${CLIENTS:-8}
SECONDS_PER=${DURATION:-5}
EMBER=${EMBER:-$BUILD/ember}
BENCH=$BUILD/bench/bench_qmp_qmp_bench
GUEST=$BUILD/guests/ticker.elf
QEMU=${QEMU:-$(command -v qemu-system-x86_64 || true)}
for f in "$EMBER" "$BENCH" "$GUEST"; do
	[ -x "$f" ] || [ -f "$f" ] || { echo "bench/qmp: missing $f (build $BUILD first)"; exit 2; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/ember-qmpbench.XXXXXX")
PIDS=()
# SIGINT: both VMMs quit at once (Ember's SIGTERM would wait for the guest).
cleanup() { for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1"; return 1; }

start_ember() {
	"$EMBER" run --kernel "$GUEST" --console none --api-sock "$W/ember.sock" &
	PIDS+=($!); wait_sock "$W/ember.sock"
}
start_qemu() {
	"$QEMU" -M microvm -enable-kvm -cpu qemu64 -m 128 -nodefaults -nographic -no-reboot \
		-device isa-debug-exit,iobase=0xf4 -kernel "$GUEST" -serial null \
		-qmp unix:"$W/qemu.sock",server=on,wait=off &
	PIDS+=($!); wait_sock "$W/qemu.sock"
}

start_ember
[ -n "$QEMU" ] && start_qemu || echo "bench/qmp: qemu-system-x86_64 not found; Ember only"

declare -A LAT_MED LAT_P99 RPS
for r in $(seq "$RUNS"); do
	for v in ember qemu; do
		[ -S "$W/$v.sock" ] || continue
		set -- $("$BENCH" "$W/$v.sock" latency "$N")
		LAT_MED[$v]+="$4 "; LAT_P99[$v]+="$6 "
		set -- $("$BENCH" "$W/$v.sock" throughput "$CLIENTS" "$SECONDS_PER")
		RPS[$v]+="$8 "
	done
	echo "  run $r/$RUNS done"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\n== query-status over QMP (median of %s runs; N=%s, %s clients x %ss)\n' "$RUNS" "$N" "$CLIENTS" "$SECONDS_PER"
printf '%-28s %12s %12s %10s\n' metric ember qemu ember/qemu
em=$(echo "${LAT_MED[ember]}" | median); qm=$(echo "${LAT_MED[qemu]:-}" | median)
ep=$(echo "${LAT_P99[ember]}" | median); qp=$(echo "${LAT_P99[qemu]:-}" | median)
er=$(echo "${RPS[ember]}" | median); qr=$(echo "${RPS[qemu]:-}" | median)
ratio() { [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }' || echo n/a; }
printf '%-28s %12s %12s %10s\n' "latency median (us)" "$em" "${qm:-n/a}" "$(ratio "$em" "$qm")"
printf '%-28s %12s %12s %10s\n' "latency p99 (us)" "$ep" "${qp:-n/a}" "$(ratio "$ep" "$qp")"
printf '%-28s %12s %12s %10s\n' "requests/s, $CLIENTS clients" "$er" "${qr:-n/a}" "$(ratio "$er" "$qr")"
