#!/usr/bin/env bash
# bench/snapshot: snapshot size and save time, and restore time to the
# guest's next console line, for a 512 MiB Linux guest: the Linux-guest
# suite's snapshot test run with EMBER_SNAPSHOT_MIB=512 (it prints the
# measurements), RUNS times, wherever KVM can run Linux (scripts/integration.sh
# picks the nested harness when there is no VMX/SVM /dev/kvm).
# Environment: BUILD=build, RUNS=3.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
cd "$SRC"
for i in $(seq 1 "$RUNS"); do
	EMBER_SNAPSHOT_MIB=512 scripts/integration.sh "$BUILD" -R '^linux/snapshot$' --verbose 2>&1 |
		grep -E "^snapshot: save took|^restore [0-9]" | sed "s/^/run $i: /"
done
