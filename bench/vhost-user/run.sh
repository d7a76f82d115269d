#!/usr/bin/env bash
# bench/vhost-user: O_DIRECT block throughput and IOPS from inside a Linux
# guest for Ember's vhost-user-blk (served by qemu-storage-daemon), Ember's
# own virtio-blk on the same image, QEMU's vhost-user-blk-pci with the same
# daemon, and QEMU's virtio-blk-pci; same kernel and initramfs (the Linux
# suite's), same guest program (blkbench, t_vu_bench), one L1.
#
# Usage: bench/vhost-user/run.sh
#   Where /dev/kvm is VMX/SVM it runs here; otherwise inside one nested-KVM L1
#   (scripts/nested-kvm.sh), holding the machine's nested lock.
# Environment: BUILD=dir (default <repo>/build), SECS=5 (per case), RUNS=3
#   (boots per config, alternating order), CONFIGS="ember-vu ember-native
#   qemu-vu qemu-native", QEMU=qemu-system-x86_64, SIZE_MB=256 (the image).
# Absolute numbers in the nested harness are TCG-emulator times; only ratios
# measured in the same L1 mean anything.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build}
export EMBER=${EMBER:-$BUILD/ember}
[ -x "$EMBER" ] || { echo "bench/vhost-user: no $EMBER; build first" >&2; exit 2; }
bash "$SRC/tests/linux/build-guest.sh" --if-stale >/dev/null
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
	exec python3 "$SRC/bench/vhost-user/bench.py"
fi
echo "bench/vhost-user: no VMX/SVM /dev/kvm here: running in one nested-KVM L1 (waits for the nested lock)" >&2
exec flock "${EMBER_NESTED_LOCK:-/var/tmp/ember-nested.lock}" \
	"$SRC/scripts/nested-kvm.sh" --cpus 1 --timeout 3000 -- \
	env EMBER="$EMBER" SECS="${SECS:-5}" RUNS="${RUNS:-3}" SIZE_MB="${SIZE_MB:-256}" \
	CONFIGS="${CONFIGS:-ember-vu ember-native qemu-vu qemu-native}" QEMU="${QEMU:-qemu-system-x86_64}" \
	python3 -u "$SRC/bench/vhost-user/bench.py"
