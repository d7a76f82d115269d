#!/usr/bin/env bash
# A looping descriptor chain on virtio-blk (guest virtio_badring.elf) sets
# DEVICE_NEEDS_RESET with a config interrupt, leaves virtio-rng working, and
# the blk device works again after a reset. Ember keeps running throughout.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
truncate -s 1M "$TMPD/d.img"
run_guest 120 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_badring.elf" --disk "path=$TMPD/d.img" --rng
expect_rc 1 "$TMPD/out"
expect_log "virtio_badring: needs_reset ok, rng still ok" "$TMPD/out"
expect_log "virtio_badring: blk reset ok" "$TMPD/out"
pass "virtio bad ring"
