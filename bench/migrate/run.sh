#!/usr/bin/env bash
# bench/migrate: live migration, Ember against QEMU, idle and busy guests
# (bench/migrate/run.py has the details). Runs in one nested-KVM L1 where
# there is no VMX/SVM /dev/kvm, holding the machine's nested lock.
# Environment: BUILD=build (the ember binary's tree), RUNS, MEM, DIRTY_MB.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export EMBER=${EMBER:-$SRC/${BUILD:-build}/ember}
[ -x "$EMBER" ] || { echo "bench/migrate: no ember binary at $EMBER" >&2; exit 2; }
bash "$SRC/tests/linux/build-guest.sh" --if-stale >/dev/null
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
	exec python3 "$SRC/bench/migrate/run.py"
fi
exec flock "${EMBER_NESTED_LOCK:-/var/tmp/ember-nested.lock}" "$SRC/scripts/nested-kvm.sh" --cpus 1 \
	--timeout 3000 -- env EMBER="$EMBER" RUNS="${RUNS:-3}" MEM="${MEM:-512}" DIRTY_MB="${DIRTY_MB:-64}" \
	python3 "$SRC/bench/migrate/run.py"
