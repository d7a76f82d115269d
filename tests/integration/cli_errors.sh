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

require_kvm
# A file that is not a kernel.
head -c 4096 /dev/urandom >"$TMPD/junk"
check_err "kernel: neither a bzImage nor an ELF" run --kernel "$TMPD/junk"
# Too many vCPUs for this host.
check_err "vCPUs" run --cpus 1024
# Device and control-plane set-up failures: one line, exit 1.
check_err "cannot open $TMPD/missing.img" run --disk path="$TMPD/missing.img"
check_err "unknown key 'foo'" run --disk foo=bar
check_err "aio=native requires cache=none" run --disk path="$TMPD/junk",aio=native
check_err "--api-sock $TMPD/nodir/s.sock" run --api-sock "$TMPD/nodir/s.sock"
# More hugepages than the host has reserved: an error now, never a SIGBUS.
if [ "$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)" -lt 2048 ]; then
	check_err "hugepages" run --memory 4G --hugepages
fi
# Nothing left in /tmp by ember itself (only our own TMPD).
pass "cli errors"
