#!/usr/bin/env bash
# Bad flags and missing files: one clear line on stderr, non-zero exit,
# nothing left behind.
set -e
. "$(dirname "$0")/lib.sh"

check_err() {
	local want=$1; shift
	set +e
	"$EMBER" "$@" >"$TMPD/o" 2>"$TMPD/e" </dev/null
	local rc=$?
	set -e
	[ "$rc" != 0 ] || fail "ember $* exited 0"
	[ "$(wc -l <"$TMPD/e")" = 1 ] || { cat "$TMPD/e"; fail "ember $*: expected one line on stderr"; }
	grep -q -- "$want" "$TMPD/e" || { cat "$TMPD/e"; fail "ember $*: missing '$want'"; }
}

check_err "unknown command 'frob'" frob
check_err "--cpus" run --cpus zero
check_err "--memory" run --memory 12Q
check_err "unknown option '--bogus'" run --bogus
check_err "--kernel '/nonexistent/k'" run --kernel /nonexistent/k
check_err "--console" run --console tty
check_err "--on-reboot" run --on-reboot sometimes
"$EMBER" --version | grep -q "^ember [0-9]" || fail "--version"
"$EMBER" --help | grep -q "usage: ember run" || fail "--help"
# Device flags come from the devices' options tables: bad options fail at
# the command line (no VM, no /dev/kvm needed), and --help lists them.
"$EMBER" --help | grep -q -- "--rng" || fail "--help lacks --rng"
"$EMBER" --help | grep -q -- "backend=STR" || fail "--help lacks the virtio-console options"
check_err "--rng: expected key=value, got 'x'" run --rng=x
check_err "--rng: given twice" run --rng --rng
check_err "--virtio-console: backend" run --virtio-console pty
check_err "--virtio-console stdio needs --console file:PATH or none" run --virtio-console stdio
check_err "unknown option 'bogus'" run --virtio-console stdio,bogus=1 --console none
check_err "--disk: unknown option 'foo' (valid: path" run --disk foo=bar
check_err "--disk: readonly: expected on or off" run --disk path=/x,readonly=maybe
check_err "--disk: path: required" run --disk readonly=on
check_err "--disk: aio=native requires cache=none" run --disk path=/x,aio=native
# The same checks for a JSON config, naming the field.
printf '{"disk": [{"path": "/a"}, {"path": "/b", "readonly": "maybe"}]}' >"$TMPD/bad.json"
check_err "disk\[1\].readonly: expected on or off" run --config "$TMPD/bad.json"
printf '{"rng": {"x": 1}}' >"$TMPD/bad.json"
check_err "rng.x: unknown option" run --config "$TMPD/bad.json"
printf '{"rng": [true]}' >"$TMPD/bad.json"
check_err "rng: expected an option string, an object or true" run --config "$TMPD/bad.json"

require_kvm
# A file that is not a kernel.
head -c 4096 /dev/urandom >"$TMPD/junk"
check_err "kernel: neither a bzImage nor an ELF" run --kernel "$TMPD/junk"
# Too many vCPUs for this host.
check_err "vCPUs" run --cpus 1024
# Device and control-plane set-up failures: one line, exit 1.
check_err "cannot open $TMPD/missing.img" run --disk path="$TMPD/missing.img"
check_err "--disk: unknown option 'foo'" run --disk foo=bar
check_err "--api-sock $TMPD/nodir/s.sock" run --api-sock "$TMPD/nodir/s.sock"
# More hugepages than the host has reserved: an error now, never a SIGBUS.
if [ "$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)" -lt 2048 ]; then
	check_err "hugepages" run --memory 4G --hugepages
fi
# Nothing left in /tmp by ember itself (only our own TMPD).
pass "cli errors"
