#!/usr/bin/env bash
# A hostile virtio-net driver (guest virtio_net_bad.elf): lying transmit
# headers are dropped, bad control commands answered ERR, and malformed
# chains (no ack byte, a header shorter than virtio_net_hdr, a loop) mark the
# device NEEDS_RESET; it transmits again after a reset. Ember never crashes.
# The NIC sits on a tap in a private network namespace.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
private_netns ember-netbad
ip -n "$NS" tuntap add dev tap0 mode tap vnet_hdr
ip -n "$NS" link set tap0 up
set +e
timeout -k 5 120 ip netns exec "$NS" "$EMBER" run --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_net_bad.elf" \
	--net tap=tap0 >"$TMPD/out" 2>&1 </dev/null
RC=$?
set -e
[ "$RC" != 124 ] || { cat "$TMPD/out" >&2; fail "ember timed out"; }
expect_rc 1 "$TMPD/out"
expect_log "virtio_net_bad: lying transmit headers dropped, device ok" "$TMPD/out"
expect_log "virtio_net_bad: bad control commands answered ERR" "$TMPD/out"
expect_log "control command without an ack byte: needs_reset, then reset ok" "$TMPD/out"
expect_log "4-byte transmit header: needs_reset, then reset ok" "$TMPD/out"
expect_log "looping transmit chain: needs_reset, then reset ok" "$TMPD/out"
expect_log "virtio_net_bad: all ok" "$TMPD/out"
expect_log "bad transmit header" "$TMPD/out"
pass "virtio-net hostile driver"
