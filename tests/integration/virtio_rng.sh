#!/usr/bin/env bash
# virtio-rng over virtio-pci with MSI-X (guest virtio_rng.elf, --rng): a
# 64-byte request is filled and completes with an interrupt.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
run_guest 120 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_rng.elf" --rng
expect_rc 1 "$TMPD/out"
expect_log "virtio_rng: ok 64 bytes" "$TMPD/out"
# A larger request (the device may split it over several requests).
run_guest 120 "$TMPD/out2" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_rng.elf" --rng --cmdline bytes=1024
expect_rc 1 "$TMPD/out2"
expect_log "virtio_rng: ok 1024 bytes" "$TMPD/out2"
# Without --rng there is no device, and the guest says so (exit code 2 -> 5).
run_guest 120 "$TMPD/out3" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_rng.elf"
expect_rc 5 "$TMPD/out3"
expect_log "virtio_rng: FAIL(2): probe: no such device" "$TMPD/out3"
pass "virtio-rng"
