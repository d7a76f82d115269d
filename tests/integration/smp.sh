#!/usr/bin/env bash
# APs are started by INIT/SIPI through the in-kernel LAPIC; each reports in.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
for n in 2 4; do
	run_guest 120 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/smp.elf" --cpus $n
	expect_rc 1 "$TMPD/out"
	expect_log "smp: bsp up, $n cpus" "$TMPD/out"
	for i in $(seq 1 $((n - 1))); do
		expect_log "smp: cpu $i online" "$TMPD/out"
	done
	expect_log "smp: all $n cpus online" "$TMPD/out"
	# The vCPU threads are named vcpu0..vcpuN-1 (checked while running is
	# racy for a short guest; the name is set before the first KVM_RUN).
done
pass "smp"
