#!/usr/bin/env bash
# virtio-console over virtio-pci with MSI-X (guest virtio_console.elf,
# --virtio-console file:PATH): the guest's transmitq bytes land in the file,
# exactly, and its serial console reports success.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
[ -f "$EMBER_GUEST_DIR/virtio_console.elf" ] || fail "guest virtio_console.elf not built in $EMBER_GUEST_DIR"
run_guest 120 "$TMPD/out" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_console.elf" \
	--virtio-console "file:$TMPD/vc.out" --console "file:$TMPD/serial"
cat "$TMPD/serial" >>"$TMPD/out" 2>/dev/null || true
expect_rc 1 "$TMPD/out"
expect_log "virtio_console: ok" "$TMPD/serial"
printf 'hello from virtio-console\n' >"$TMPD/want"
cmp -s "$TMPD/want" "$TMPD/vc.out" || {
	cat "$TMPD/out" >&2
	echo "vc.out:" >&2
	od -c "$TMPD/vc.out" >&2 || true
	fail "vc.out is not exactly the hello line"
}
# Without the device the guest says so (exit code 2 -> 5).
run_guest 120 "$TMPD/out2" --debug-exit --kernel "$EMBER_GUEST_DIR/virtio_console.elf" \
	--console "file:$TMPD/serial2"
cat "$TMPD/serial2" >>"$TMPD/out2" 2>/dev/null || true
expect_rc 5 "$TMPD/out2"
expect_log "virtio_console: FAIL(2): probe: no such device" "$TMPD/serial2"
pass "virtio-console"
