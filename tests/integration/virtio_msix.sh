#!/usr/bin/env bash
# MSI-X masking on virtio-pci (guest virtio_msix.elf on --rng): out-of-range
# vectors read back NO_VECTOR; with the entry's mask bit, then with the
# function mask, a completion sets the PBA bit and raises no interrupt
# until unmasked.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
run_guest 120 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_msix.elf" --rng
expect_rc 1 "$TMPD/out"
expect_log "virtio_msix: unmasked: interrupt delivered" "$TMPD/out"
expect_log "virtio_msix: vector mask: held pending, delivered on unmask" "$TMPD/out"
expect_log "virtio_msix: function mask: held pending, delivered on unmask" "$TMPD/out"
expect_log "virtio_msix: ok" "$TMPD/out"
# The same after the guest moves every BAR (the MSI-X table and PBA too) to
# 0xc8000000: the device must follow its BARs.
run_guest 120 "$TMPD/out2" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_msix.elf" --rng --cmdline pci_reassign=0xc8000000
expect_rc 1 "$TMPD/out2"
expect_log "virtio_msix: 2 MSI-X entries, table 0xc800" "$TMPD/out2"
expect_log "virtio_msix: ok" "$TMPD/out2"
pass "virtio msix"
