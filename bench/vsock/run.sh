#!/usr/bin/env bash
# bench/vsock: virtio-vsock stream throughput, guest->host and host->guest,
# for Ember's unix-socket bridge (uds=PATH), Ember on vhost-vsock and QEMU's
# vhost-vsock-pci, same kernel and initramfs (the Linux suite's), one L1.
#
# Usage: bench/vsock/run.sh
#   Where /dev/kvm is VMX/SVM it runs here; otherwise inside one nested-KVM L1
#   (scripts/nested-kvm.sh), holding the machine's nested lock.
# Environment: BUILD=dir (default <repo>/build), MB=64 (MiB per direction),
#   RUNS=2 (boots per backend, alternating order), CONFIGS="ember-uds
#   ember-vhost qemu-vhost", QEMU=qemu-system-x86_64.
# Absolute numbers in the nested harness are TCG-emulator times; only ratios
# measured in the same L1 mean anything.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build}
export EMBER=${EMBER:-$BUILD/ember}
[ -x "$EMBER" ] || { echo "bench/vsock: no $EMBER; build first" >&2; exit 2; }
bash "$SRC/tests/linux/build-guest.sh" --if-stale >/dev/null
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
	exec python3 "$SRC/bench/vsock/bench.py"
fi
echo "bench/vsock: no VMX/SVM /dev/kvm here: running in one nested-KVM L1 (waits for the nested lock)" >&2
exec flock "${EMBER_NESTED_LOCK:-/var/tmp/ember-nested.lock}" \
	"$SRC/scripts/nested-kvm.sh" --cpus 1 --timeout 2400 -- \
	env EMBER="$EMBER" MB="${MB:-64}" RUNS="${RUNS:-2}" \
	CONFIGS="${CONFIGS:-ember-uds ember-vhost qemu-vhost}" QEMU="${QEMU:-qemu-system-x86_64}" \
	python3 "$SRC/bench/vsock/bench.py"
