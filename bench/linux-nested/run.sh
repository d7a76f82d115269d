#!/usr/bin/env bash
# bench/linux-nested: Ember against QEMU (-M microvm,pcie=on with
# virtio-blk-pci) with the same kernel, initramfs (tests/linux), vCPUs, RAM,
# disk image (tmpfs), cache mode (writeback, io_uring) and CPU model (host).
# Interleaved runs; prints medians and Ember/QEMU ratios of
#   boot:      wall time from process start to the guest's /init (user space)
#   total:     wall time from process start to exit (boot + I/O + poweroff)
#   write_1m, read_1m:  64 MiB O_DIRECT sequential dd in the guest, bs=1M
#   write_4k, read_4k:  4 MiB O_DIRECT sequential dd in the guest, bs=4K
# The image is on tmpfs (TMPDIR in the harness), which has no O_DIRECT, so
# both VMMs use cache=writeback with io_uring.
# Needs a VMX/SVM /dev/kvm: on other machines run it through the harness:
#   scripts/nested-kvm.sh bench/linux-nested/run.sh
# Environment: RUNS=3, CPUS=2, MEM=512, BUILD=build, QEMU=qemu-system-x86_64
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-3}; CPUS=${CPUS:-2}; MEM=${MEM:-512}
EMBER=${EMBER:-$SRC/${BUILD:-build}/ember}
QEMU=${QEMU:-qemu-system-x86_64}
OUT=$SRC/examples/linux/out
KERNEL=$OUT/vmlinuz; INITRD=$OUT/initramfs-suite.cpio.gz
[ -s "$KERNEL" ] && [ -s "$INITRD" ] || { echo "run tests/linux/build-guest.sh first" >&2; exit 1; }
[ -x "$EMBER" ] || { echo "no ember binary at $EMBER" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/ember-bench-nested.XXXXXX")
trap 'rm -rf "$W"' EXIT
CMDLINE="console=ttyS0 quiet panic=-1 ember.test=bench ember.cpus=$CPUS"

run_one() { # vmm run -> appends "vmm key value" lines to $W/results
	local vmm=$1 img=$W/disk.img log=$W/serial.log t0 tb="" te
	rm -f "$log"; truncate -s 0 "$img"; truncate -s 512M "$img"
	t0=$(date +%s.%N)
	if [ "$vmm" = ember ]; then
		"$EMBER" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$CMDLINE" \
			--cpus "$CPUS" --memory "${MEM}M" --cpu-model host --console "file:$log" \
			--disk "path=$img,serial=EMBER-DATA,cache=writeback,aio=io_uring" </dev/null >"$W/vmm.out" 2>&1 &
	else
		"$QEMU" -M microvm,pcie=on,acpi=on -enable-kvm -cpu host -smp "$CPUS" -m "$MEM" \
			-nodefaults -display none -no-reboot -serial "file:$log" \
			-kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
			-drive "file=$img,if=none,id=d0,format=raw,cache=writeback,aio=io_uring" \
			-device virtio-blk-pci,drive=d0,serial=EMBER-DATA </dev/null >"$W/vmm.out" 2>&1 &
	fi
	local pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		if [ -z "$tb" ] && grep -q "^EMBER-USERSPACE" "$log" 2>/dev/null; then tb=$(date +%s.%N); fi
		sleep 0.02
	done
	wait "$pid" || true
	te=$(date +%s.%N)
	[ -n "$tb" ] || { echo "$vmm: the guest never reached user space" >&2; cat "$W/vmm.out" >&2; tail "$log" >&2; return 1; }
	grep -q "EMBER-DONE bench failures=0" "$log" || { echo "$vmm: the guest's benchmark failed" >&2; tail -20 "$log" >&2; return 1; }
	echo "$vmm boot $(echo "$tb - $t0" | bc)" >>"$W/results"
	echo "$vmm total $(echo "$te - $t0" | bc)" >>"$W/results"
	sed -n 's/^EMBER-BENCH \([a-z_0-9]*\) \([0-9.]*\).*/\1 \2/p' "$log" | while read -r k v; do
		echo "$vmm $k $v" >>"$W/results"
	done
}

for i in $(seq 1 "$RUNS"); do
	for vmm in ember qemu; do
		run_one "$vmm"
		echo "run $i $vmm: $(grep "^$vmm " "$W/results" | tail -n 6 | awk '{ printf "%s=%s ", $2, $3 }')" >&2
	done
done
python3 - "$W/results" "$RUNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
keys = ["boot", "total", "write_1m", "read_1m", "write_4k", "read_4k"]
med = {(v, k): statistics.median(float(x) for vv, kk, x in rows if vv == v and kk == k)
       for v in ("ember", "qemu") for k in keys}
print("| measure (s, median of %s) | Ember | QEMU microvm | Ember/QEMU |" % sys.argv[2])
print("|---|---|---|---|")
for k in keys:
    e, q = med[("ember", k)], med[("qemu", k)]
    print("| %s | %.2f | %.2f | %.2f |" % (k, e, q, e / q if q else float("nan")))
PY
