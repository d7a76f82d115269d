#!/usr/bin/env bash
# isa-debug-exit: ember exits with (value << 1) | 1.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
for v in 0 1 42 127; do
	run_guest 60 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/exitcode.elf" --cmdline "exit=$v"
	expect_rc $(( (v << 1) | 1 )) "$TMPD/out"
	expect_log "exitcode: exiting with $v" "$TMPD/out"
done
pass "exit status"
