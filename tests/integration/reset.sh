#!/usr/bin/env bash
# Triple fault and i8042 reset under both --on-reboot policies.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm

# restart: the VM resets (CMOS RAM survives), the guest sees its marker.
run_guest 60 "$TMPD/tf" --debug-exit --kernel "$EMBER_GUEST_DIR/triple_fault.elf" --on-reboot restart
expect_rc $(( (0x11 << 1) | 1 )) "$TMPD/tf"
expect_log "triple_fault: faulting" "$TMPD/tf"
expect_log "triple_fault: rebooted" "$TMPD/tf"
expect_log "resetting the VM" "$TMPD/tf"

# exit: a triple fault is a guest crash, exit status 2.
run_guest 60 "$TMPD/tf2" --debug-exit --kernel "$EMBER_GUEST_DIR/triple_fault.elf" --on-reboot exit
expect_rc 2 "$TMPD/tf2"
expect_log "triple_fault: faulting" "$TMPD/tf2"
expect_log "guest crashed (triple fault)" "$TMPD/tf2"
if grep -q "triple_fault: rebooted" "$TMPD/tf2"; then fail "guest rebooted under --on-reboot exit"; fi

run_guest 60 "$TMPD/kb" --debug-exit --kernel "$EMBER_GUEST_DIR/i8042_reset.elf" --on-reboot restart
expect_rc $(( (0x12 << 1) | 1 )) "$TMPD/kb"
expect_log "i8042: resetting" "$TMPD/kb"
expect_log "i8042: rebooted" "$TMPD/kb"

# exit: a guest reboot request ends ember with status 0.
run_guest 60 "$TMPD/kb2" --debug-exit --kernel "$EMBER_GUEST_DIR/i8042_reset.elf" --on-reboot exit
expect_rc 0 "$TMPD/kb2"
expect_log "guest rebooted (i8042" "$TMPD/kb2"
pass "reset"
