#!/usr/bin/env bash
# Runs every integration test (label `integration`: the freestanding-guest
# tests and the Linux-guest suite) of a build directory where KVM can run
# them:
#   - directly, on a host whose /dev/kvm is VMX/SVM-backed;
#   - otherwise (no /dev/kvm, or kvm-pvm, where Linux cannot boot) inside the
#     nested-KVM harness, scripts/nested-kvm.sh.
# Usage: scripts/integration.sh BUILD_DIR [--nested|--direct] [ctest args...]
# Never skips: if no integration test ran, it fails with a line saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: scripts/integration.sh BUILD_DIR [--nested|--direct] [ctest args]}
shift
MODE=auto
case ${1:-} in --nested) MODE=nested; shift ;; --direct) MODE=direct; shift ;; esac

if [ "$MODE" = auto ]; then
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		MODE=direct
	else
		MODE=nested
	fi
fi
n=$(cd "$BUILD" && ctest -N -L integration "$@" | sed -n 's/^Total Tests: //p')
if [ "${n:-0}" -eq 0 ]; then
	echo "integration: error: no integration tests found in $BUILD (did CMake configure tests/?)" >&2
	exit 1
fi
# The Linux guest is downloaded and built here, where the network is.
tests/linux/build-guest.sh --if-stale >/dev/null

JOBS=${JOBS:-$(nproc)}
if [ "$MODE" = direct ]; then
	echo "integration: $n tests directly on this host's /dev/kvm (VMX/SVM)"
	cd "$BUILD" && exec ctest -L integration --output-on-failure -j"$JOBS" "$@"
fi
why="no /dev/kvm here"
[ -e /dev/kvm ] && why="this /dev/kvm has no VMX/SVM (kvm-pvm: Linux guests cannot boot)"
# Shards: one single-vCPU L1 per host CPU, each running a share of the tests.
# (A 2-vCPU L1 under QEMU 7.2's multi-threaded TCG livelocked in about a
# third of the runs with nested guests; single-vCPU L1s did not.)
SHARDS=${EMBER_NESTED_SHARDS:-$(nproc)}
[ "$SHARDS" -gt 4 ] && SHARDS=4
mapfile -t names < <(cd "$BUILD" && ctest -N -L integration "$@" | sed -n 's/^ *Test *#[0-9]*: //p' | grep -v '^linux/build-guest$')
echo "integration: $why; running the ${#names[@]} tests in $SHARDS nested-KVM L1s (scripts/nested-kvm.sh; about 10 minutes)"
# One nested run at a time on a machine: L1s are TCG-emulated and starve
# each other (soft lockups) when several runs share a few host CPUs.
exec 9>"${EMBER_NESTED_LOCK:-/var/tmp/ember-nested.lock}"
if ! flock -n 9; then
	echo "integration: waiting for another nested run on this machine to finish"
	flock 9
fi
[ "${#names[@]}" -lt "$SHARDS" ] && SHARDS=${#names[@]}
[ "$SHARDS" -lt 1 ] && SHARDS=1
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/ember-integration.XXXXXX")
trap 'rm -rf "$LOGS"' EXIT
run_shard() { # shard-index -> status; log in $LOGS/shard<i>.log
	local i=$1 re="" n rc
	for ((n = i; n < ${#names[@]}; n += SHARDS)); do
		re+="${re:+|}${names[n]}"
	done
	[ -n "$re" ] || return 0
	for attempt in 1 2; do
		# `|| rc=$?`: under set -e a bare failing command would end this
		# subshell before the retry below could look at its status.
		rc=0
		EMBER_NESTED_QUIET=1 scripts/nested-kvm.sh --cpus 1 --memory 3G --timeout "${EMBER_NESTED_TIMEOUT:-3000}" \
			bash -c "cd $(printf %q "$BUILD") && ctest --output-on-failure -R $(printf %q "^($re)\$")" \
			>"$LOGS/shard$i.log" 2>&1 || rc=$?
		# 125: the L1 itself failed (the harness said why): once more.
		[ "$rc" = 125 ] && [ "$attempt" = 1 ] && [ -z "${EMBER_NESTED_NO_RETRY:-}" ] || break
		echo "integration: shard $i: the nested L1 failed; running its tests once more" >&2
		cat "$LOGS/shard$i.log" >&2
	done
	return "$rc"
}
pids=()
for ((i = 0; i < SHARDS; i++)); do
	run_shard "$i" &
	pids+=($!)
done
status=0
for ((i = 0; i < SHARDS; i++)); do
	if wait "${pids[i]}"; then rc=0; else rc=$?; fi
	echo "==== integration shard $i (status $rc) ===="
	grep -v "TCG doesn.t support" "$LOGS/shard$i.log" 2>/dev/null || true
	[ "$rc" = 0 ] || status=1
done
total=$(cat "$LOGS"/shard*.log | grep -cE '^ *[0-9]+/[0-9]+ Test +#' || true)
echo "integration: $total test runs in the nested harness; $([ $status = 0 ] && echo all passed || echo FAILURES above)"
[ "$total" -gt 0 ] || { echo "integration: error: no integration test ran" >&2; exit 1; }
exit "$status"
