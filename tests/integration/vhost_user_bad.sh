#!/usr/bin/env bash
# vhost-user backends that fail: at start-up each is one clear line and exit
# status 1 within the protocol's 5 s deadline (nobody listening, a reply of
# the wrong size, no reply at all, a blk backend without a config space, a
# missing socket=); at run time (the ticker guest, which has no virtio
# driver) a backend that dies leaves Ember running and serving QMP, which
# says "disconnected", and a restarted one is reconnected. Failures at the
# guest's DRIVER_OK are in the Linux suite (linux/vhost_user_net_bad).
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
: "${EMBER_VU_BACKEND:?EMBER_VU_BACKEND must point at vu-test-backend}"
[ -x "$EMBER_VU_BACKEND" ] || fail "vu-test-backend is not built: $EMBER_VU_BACKEND"
[ -f "$EMBER_GUEST_DIR/ticker.elf" ] || fail "guest ticker.elf not built in $EMBER_GUEST_DIR"

BACKEND_PID=
stop_backend() {
	[ -z "$BACKEND_PID" ] || { kill -9 "$BACKEND_PID" 2>/dev/null || true; wait "$BACKEND_PID" 2>/dev/null || true; }
	BACKEND_PID=
}
trap 'stop_backend; rm -rf "$TMPD"' EXIT

# start_backend MODE: vu-test-backend on $TMPD/vu.sock (no tap).
start_backend() {
	stop_backend
	rm -f "$TMPD/vu.sock"
	"$EMBER_VU_BACKEND" --socket "$TMPD/vu.sock" --mode "$1" >>"$TMPD/backend.log" 2>&1 &
	BACKEND_PID=$!
	for _ in $(seq 100); do [ -S "$TMPD/vu.sock" ] && return 0; sleep 0.05; done
	cat "$TMPD/backend.log" >&2
	fail "vu-test-backend made no socket"
}

# one_line_err WANT MAXSECS ARGS...: exit 1, exactly one line on stderr naming WANT, in time.
one_line_err() {
	local want=$1 max=$2 t0 rc; shift 2
	t0=$(date +%s)
	set +e
	timeout -k 5 60 "$EMBER" run --kernel "$EMBER_GUEST_DIR/ticker.elf" --console none "$@" \
		>"$TMPD/o" 2>"$TMPD/e" </dev/null
	rc=$?
	set -e
	[ "$rc" = 1 ] || { cat "$TMPD/o" "$TMPD/e"; fail "$*: exit status $rc, want 1"; }
	[ $(($(date +%s) - t0)) -le "$max" ] || fail "$*: took more than ${max}s"
	[ "$(wc -l <"$TMPD/e")" = 1 ] || { cat "$TMPD/e"; fail "$*: expected one line on stderr"; }
	grep -q -- "$want" "$TMPD/e" || { cat "$TMPD/e"; fail "$*: missing '$want'"; }
	echo "ok ($(($(date +%s) - t0)) s): $(cat "$TMPD/e")"
}

one_line_err "connect: No such file" 5 --vhost-user-net socket="$TMPD/nobody.sock"
one_line_err "socket: required" 5 --vhost-user-blk queues=2
start_backend bad-size
one_line_err "bad reply" 5 --vhost-user-net socket="$TMPD/vu.sock"
start_backend silent
one_line_err "no reply within 5000 ms" 12 --vhost-user-net socket="$TMPD/vu.sock"
start_backend good
one_line_err "does not offer its config space" 5 --vhost-user-blk socket="$TMPD/vu.sock"
one_line_err "queues=2, but the backend serves 1" 5 --vhost-user-blk socket="$TMPD/vu.sock",queues=2

# Run time: the backend dies under a running VM, then comes back.
start_backend good
PYTHONPATH="$(dirname "$0")" python3 - "$EMBER" "$EMBER_GUEST_DIR/ticker.elf" "$TMPD" "$EMBER_VU_BACKEND" <<'PYEOF'
import os, re, subprocess, sys, time
from qmp_client import QMP

ember, kernel, tmpd, backend = sys.argv[1:5]
sock, vu = os.path.join(tmpd, "q.sock"), os.path.join(tmpd, "vu.sock")
out, log = os.path.join(tmpd, "out"), open(os.path.join(tmpd, "ember.log"), "w")


def fail(msg):
    log.flush()
    sys.stderr.write(open(log.name).read())
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def ticks():
    try:
        return len(re.findall(r"tick \d+", open(out, errors="replace").read()))
    except FileNotFoundError:
        return 0


def state(q):
    return q.cmd("query-vhost-user")[0]


def until(what, cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    fail(what)


proc = subprocess.Popen([ember, "run", "--kernel", kernel, "--api-sock", sock, "--console", "file:" + out,
                         "--vhost-user-net", "socket=%s,reconnect=300" % vu],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
be = None
try:
    until("no control socket", lambda: os.path.exists(sock) or proc.poll() is not None, 15)
    if proc.poll() is not None:
        fail("ember exited with %d" % proc.returncode)
    q = QMP(sock, fail)
    st = state(q)
    if st["state"] != "connected" or st["type"] != "vhost-user-net" or st["socket"] != vu:
        fail("query-vhost-user at start: %r" % st)
    # The backend is the shell's; kill it by its socket's owner.
    subprocess.run(["pkill", "-9", "-f", "vu-test-backend --socket " + vu])
    until("never disconnected", lambda: state(q)["state"] == "disconnected", 10)
    st = state(q)
    if "closed" not in st.get("error", ""):
        fail("the error does not say the backend closed: %r" % st)
    n = ticks()
    until("the guest stopped ticking", lambda: ticks() > n + 5, 10)
    if q.cmd("query-status").get("status") != "running":
        fail("VM not running after the backend died")
    os.unlink(vu)
    be = subprocess.Popen([backend, "--socket", vu], stdout=log, stderr=log)
    until("never reconnected", lambda: state(q)["state"] == "connected" and state(q)["reconnects"] == 1, 15)
    print("ok: backend died -> disconnected (%s); restarted -> connected, reconnects 1" % st["error"])
    q.cmd("quit")
    rc = proc.wait(15)
    if rc != 0:
        fail("quit: exit status %d" % rc)
finally:
    if proc.poll() is None:
        proc.kill()
    if be:
        be.kill()
        be.wait()
PYEOF
pass "vhost-user start-up failures are one line within the deadline; a dying backend leaves the VM running and is reconnected"
