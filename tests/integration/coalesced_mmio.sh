#!/usr/bin/env bash
# 10,000 writes to a coalesced MMIO zone all reach the device, in order.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
run_guest 120 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/mmio_coalesced.elf" --test-device --cmdline count=10000
expect_rc 1 "$TMPD/out"
expect_log "coalesced: sent 10000 received 10000 out_of_order 0" "$TMPD/out"
# Without the test device the writes go nowhere and the guest must notice.
run_guest 120 "$TMPD/out2" --debug-exit --kernel "$EMBER_GUEST_DIR/mmio_coalesced.elf" --cmdline count=10
expect_rc 7 "$TMPD/out2"
pass "coalesced mmio"
