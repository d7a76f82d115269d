# Shared helpers for integration tests. Source this file.
set -u
: "${EMBER:?EMBER must point at the ember binary}"
: "${EMBER_GUEST_DIR:?EMBER_GUEST_DIR must point at the built guests}"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "PASS: $*"; }

# Integration tests never skip: without a usable /dev/kvm they fail, and
# `make test` runs them inside the nested-KVM harness (scripts/nested-kvm.sh).
require_kvm() {
	if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		fail "/dev/kvm is not usable here; run the integration tests with 'make test' (it uses scripts/nested-kvm.sh where /dev/kvm is missing)"
	fi
}

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ember-test.XXXXXX")
trap 'rm -rf "$TMPD"' EXIT

# run_guest TIMEOUT_S OUTFILE ember-args... ; sets RC
run_guest() {
	local t=$1 out=$2; shift 2
	set +e
	timeout -k 5 "$t" "$EMBER" run "$@" >"$out" 2>&1 </dev/null
	RC=$?
	set -e
	if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
		cat "$out" >&2
		fail "ember timed out after ${t}s: $*"
	fi
}

expect_rc() { [ "$RC" = "$1" ] || { cat "$2" >&2; fail "expected exit status $1, got $RC"; }; }
expect_log() { grep -q -- "$1" "$2" || { cat "$2" >&2; fail "missing '$1' in output"; }; }

# private_netns PREFIX: a network namespace of this test's own, named in NS
# (with /dev/net/tun for taps); removed with TMPD when the test exits.
private_netns() {
	[ -c /dev/net/tun ] || fail "/dev/net/tun is missing (modprobe tun)"
	NS=$1-$$
	ip netns add "$NS" || fail "cannot create a network namespace (needs root)"
	trap 'ip netns del "$NS" 2>/dev/null; rm -rf "$TMPD"' EXIT
}
