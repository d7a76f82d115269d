#!/usr/bin/env bash
# `ember ctl` against a real VM: queries, stop/cont, an event stream,
# error and connection-failure exit codes, and quit.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
[ -f "$EMBER_GUEST_DIR/ticker.elf" ] || fail "guest ticker.elf not built in $EMBER_GUEST_DIR"

S=$TMPD/s.sock
"$EMBER" run --debug-exit --kernel "$EMBER_GUEST_DIR/ticker.elf" --api-sock "$S" \
	--console "file:$TMPD/out" </dev/null >"$TMPD/log" 2>&1 &
PID=$!
EVPID=
cleanup() {
	local rc=$?
	set +e
	[ -n "$EVPID" ] && kill "$EVPID" 2>/dev/null
	kill -9 "$PID" 2>/dev/null
	rm -rf "$TMPD"
	exit "$rc"
}
trap cleanup EXIT

for _ in $(seq 300); do
	[ -S "$S" ] && break
	kill -0 "$PID" 2>/dev/null || { cat "$TMPD/log" >&2; fail "ember exited early"; }
	sleep 0.05
done
[ -S "$S" ] || { cat "$TMPD/log" >&2; fail "the control socket never appeared"; }

ctl() { timeout -k 2 20 "$EMBER" ctl "$@"; }

ctl "$S" query-status >"$TMPD/st" || fail "query-status failed"
grep -q '"status": "running"' "$TMPD/st" || { cat "$TMPD/st" >&2; fail "not running"; }
grep -q '"running": true' "$TMPD/st" || fail "query-status output"

# Events in the background, one JSON object per line.
timeout -k 2 60 "$EMBER" ctl "$S" --events >"$TMPD/events" 2>"$TMPD/events.err" &
EVPID=$!
sleep 0.5

[ "$(ctl "$S" stop)" = "{}" ] || fail "stop did not print {}"
ctl "$S" query-status | grep -q '"status": "paused"' || fail "not paused after stop"
ctl "$S" cont >/dev/null || fail "cont"
ctl "$S" query-status | grep -q '"status": "running"' || fail "not running after cont"

ctl "$S" query-cpus-fast | grep -q '"thread-id"' || fail "query-cpus-fast"
ctl "$S" query-version | grep -q '"major": 7' || fail "query-version"

# An error reply: exit 1 and "Class: desc" on one stderr line.
set +e
ctl "$S" no-such-command >"$TMPD/o" 2>"$TMPD/e"
RC=$?
set -e
[ "$RC" = 1 ] || fail "error reply exit status $RC, want 1"
grep -qx "ember ctl: CommandNotFound: The command no-such-command has not been found" "$TMPD/e" ||
	{ cat "$TMPD/e" >&2; fail "error line"; }
set +e
ctl "$S" query-status bogus=1 2>"$TMPD/e"
RC=$?
set -e
[ "$RC" = 1 ] || fail "bad argument exit status $RC"
grep -q "GenericError: Parameter 'bogus' is unexpected" "$TMPD/e" || fail "argument error line"

# Connection failure: non-zero, with the socket path in the message.
set +e
ctl "$TMPD/nope.sock" query-status 2>"$TMPD/e"
RC=$?
set -e
[ "$RC" != 0 ] || fail "connecting to a missing socket succeeded"
grep -q "nope.sock" "$TMPD/e" || fail "connection error message"

ctl "$S" quit >/dev/null || fail "quit"
for _ in $(seq 200); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.05
done
set +e
wait "$PID"
RC=$?
set -e
[ "$RC" = 0 ] || { cat "$TMPD/log" >&2; fail "ember exit status $RC after quit"; }
[ ! -e "$S" ] || fail "socket file left behind"

# The event stream ends with the server, exit 0.
set +e
wait "$EVPID"
RC=$?
set -e
EVPID=
[ "$RC" = 0 ] || { cat "$TMPD/events.err" >&2; fail "ctl --events exit status $RC"; }
python3 - "$TMPD/events" <<'PYEOF' || fail "event stream"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
names = [e["event"] for e in evs]
for want in ("STOP", "RESUME", "SHUTDOWN"):
    if want not in names:
        sys.exit("missing %s in %r" % (want, names))
for e in evs:
    ts = e["timestamp"]
    assert ts["seconds"] > 0 and 0 <= ts["microseconds"] < 1000000
PYEOF
pass "qmp_ctl"
