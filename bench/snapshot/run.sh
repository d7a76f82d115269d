#!/usr/bin/env bash
# bench/snapshot: snapshot size and save time, and restore time to the
# guest's next console line, for a 512 MiB Linux guest: the Linux-guest
# suite's snapshot test with EMBER_SNAPSHOT_MIB=512 (it prints the
# measurements), RUNS times, in one nested-KVM L1 where there is no
# VMX/SVM /dev/kvm (holding the machine's nested lock), or directly.
# Environment: BUILD=build, RUNS=3.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
EMBER=${EMBER:-$SRC/${BUILD:-build}/ember}
RUNS=${RUNS:-3}
[ -x "$EMBER" ] || { echo "bench/snapshot: no ember binary at $EMBER" >&2; exit 2; }
bash "$SRC/tests/linux/build-guest.sh" --if-stale >/dev/null
CMD="for i in \$(seq 1 $RUNS); do EMBER=$EMBER EMBER_SNAPSHOT_MIB=512 python3 $SRC/tests/linux/suite.py snapshot 2>&1 |
	grep -E '^snapshot: save took|^restore [0-9]|^PASS|^FAIL' | sed \"s/^/run \$i: /\"; done"
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
	exec bash -c "$CMD"
fi
exec flock "${EMBER_NESTED_LOCK:-/var/tmp/ember-nested.lock}" "$SRC/scripts/nested-kvm.sh" --cpus 1 \
	--timeout 3000 -- bash -c "$CMD"
