#!/usr/bin/env bash
# virtio-net set-up errors, each one clear line and a non-zero exit; and a run
# without CAP_NET_ADMIN that works because the tap fd is passed (fd=N).
# Everything happens in a private network namespace, removed at the end.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
private_netns ember-neterr
IN="ip netns exec $NS"
# Root without CAP_NET_ADMIN (bounding and inheritable sets): what a service
# run without that capability looks like.
NOCAP="setpriv --bounding-set=-net_admin --inh-caps=-net_admin"

# one_line_err WANT CMD...: non-zero exit, exactly one line on stderr naming WANT.
one_line_err() {
	local want=$1; shift
	set +e
	timeout -k 5 60 "$@" >"$TMPD/o" 2>"$TMPD/e" </dev/null
	local rc=$?
	set -e
	[ "$rc" != 0 ] || { cat "$TMPD/o" "$TMPD/e"; fail "$* exited 0"; }
	[ "$rc" != 124 ] || fail "$* hung"
	[ "$(wc -l <"$TMPD/e")" = 1 ] || { cat "$TMPD/e"; fail "$*: expected one line on stderr"; }
	grep -q -- "$want" "$TMPD/e" || { cat "$TMPD/e"; fail "$*: missing '$want'"; }
	echo "ok: $(cat "$TMPD/e")"
}

DEMO=(run --debug-exit --console none --memory 64M)

# No CAP_NET_ADMIN, no passed fd: a new tap, and an existing one that
# belongs to another user. (An existing tap with no owner may be attached by
# anyone who can open /dev/net/tun: that is the kernel's rule.)
one_line_err "CAP_NET_ADMIN" $IN $NOCAP "$EMBER" "${DEMO[@]}" --net tap=embnew0
$IN ip tuntap add dev embowned0 mode tap vnet_hdr user 54321
one_line_err "CAP_NET_ADMIN" $IN $NOCAP "$EMBER" "${DEMO[@]}" --net tap=embowned0
$IN ip tuntap add dev embtap0 mode tap vnet_hdr
# queues=2 on a single-queue tap: the flag mismatch is named.
one_line_err "multi_queue" $IN "$EMBER" "${DEMO[@]}" --net tap=embtap0,queues=2
# Passed fds that are not taps, or not open.
one_line_err "fd" $IN "$EMBER" "${DEMO[@]}" --net fd=0
one_line_err "fd" $IN "$EMBER" "${DEMO[@]}" --net fd=77
one_line_err "--net" $IN "$EMBER" "${DEMO[@]}" --net tap=embtap0,queues=99
one_line_err "--net" $IN "$EMBER" "${DEMO[@]}" --net tap=embtap0,mac=zz:00:00:00:00:00

# The same VM without CAP_NET_ADMIN works when the tap comes open (fd=3):
# python (with the capability) attaches it, then execs Ember without it.
$IN python3 - "$EMBER" "$TMPD/out" <<'EOF' || { cat "$TMPD/out" >&2; fail "a run with a passed tap fd failed"; }
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"embtap0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))  # TUNSETIFF
os.dup2(fd, 3)
out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.dup2(out, 1)
os.dup2(out, 2)
os.execvp("timeout", ["timeout", "60", "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
                      sys.argv[1], "run", "--debug-exit", "--console", "none", "--memory", "64M", "--net", "fd=3"])
EOF
pass "net set-up errors (no CAP_NET_ADMIN, bad fds, bad options) and a passed-fd run without CAP_NET_ADMIN"
