#!/usr/bin/env bash
# The embedded demo guest boots with no --kernel, reports CPUs and memory,
# and powers off (exit 0). Also boots the demo.elf file with other sizes.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm

run_guest 60 "$TMPD/out" --debug-exit --console stdio
expect_rc 0 "$TMPD/out"
expect_log "Ember demo guest" "$TMPD/out"
expect_log "cpus: 1" "$TMPD/out"
expect_log "memory: 127 MiB\|memory: 128 MiB" "$TMPD/out"
expect_log "demo: done" "$TMPD/out"
expect_log "guest powered off" "$TMPD/out"

run_guest 60 "$TMPD/out2" --debug-exit --kernel "$EMBER_GUEST_DIR/demo.elf" --cpus 2 --memory 256M
expect_rc 0 "$TMPD/out2"
expect_log "cpus: 2" "$TMPD/out2"
expect_log "memory: 25[56] MiB" "$TMPD/out2"

# RAM above the 3 GiB hole start: memory is split around the hole.
run_guest 60 "$TMPD/out3" --debug-exit --kernel "$EMBER_GUEST_DIR/demo.elf" --memory 3200M --console file:"$TMPD/serial"
expect_rc 0 "$TMPD/out3"
expect_log "memory: 3[12][0-9][0-9] MiB" "$TMPD/serial"
pass "demo guest"
