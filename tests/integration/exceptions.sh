#!/usr/bin/env bash
# #GP and #PF are delivered to the guest's IDT and reported.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
run_guest 60 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/exceptions.elf"
expect_rc 1 "$TMPD/out"
expect_log "vector=13" "$TMPD/out"
expect_log "vector=14" "$TMPD/out"
expect_log "exceptions: gp ok" "$TMPD/out"
expect_log "exceptions: pf ok cr2=0x200000000" "$TMPD/out"
pass "exceptions"
