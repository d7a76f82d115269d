#!/usr/bin/env bash
# QMP system_powerdown against the `pwrbtn` guest, which enables the ACPI
# power button, routes the SCI through the IOAPIC and powers off via S5 when
# the button is pressed: the command returns {}, POWERDOWN and then
# SHUTDOWN {guest: true, reason: guest-shutdown} arrive, ember exits 0
# within a few seconds and removes its socket.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || { echo "SKIP: python3 not found" >&2; exit 77; }
[ -f "$EMBER_GUEST_DIR/pwrbtn.elf" ] || fail "guest pwrbtn.elf not built in $EMBER_GUEST_DIR"

PYTHONPATH="$(dirname "$0")" python3 - "$EMBER" "$EMBER_GUEST_DIR/pwrbtn.elf" "$TMPD" <<'PYEOF'
import json, os, socket, subprocess, sys, time
from qmp_client import QMP

ember, kernel, tmpd = sys.argv[1:4]
sock = os.path.join(tmpd, "s.sock")
serial = os.path.join(tmpd, "serial")
logpath = os.path.join(tmpd, "ember.log")
log = open(logpath, "w")


def fail(msg):
    log.flush()
    sys.stderr.write(open(logpath).read())
    try:
        sys.stderr.write("serial:\n" + open(serial, errors="replace").read())
    except FileNotFoundError:
        pass
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def serial_has(text):
    try:
        return text in open(serial, errors="replace").read()
    except FileNotFoundError:
        return False


proc = subprocess.Popen([ember, "run", "--debug-exit", "--kernel", kernel, "--console", "file:" + serial,
                         "--api-sock", sock],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
try:
    end = time.time() + 15
    while not os.path.exists(sock):
        if proc.poll() is not None:
            fail("ember exited with %d before creating the socket" % proc.returncode)
        if time.time() > end:
            fail("the control socket never appeared")
        time.sleep(0.02)
    q = QMP(sock, fail)

    # The guest must have armed the button before it is pressed.
    end = time.time() + 30
    while not serial_has("pwrbtn: waiting for the power button"):
        if proc.poll() is not None:
            fail("ember exited with %d before the guest was ready" % proc.returncode)
        if time.time() > end:
            fail("the guest never got to waiting for the power button")
        time.sleep(0.02)

    r = q.execute("system_powerdown")
    if r != {"return": {}}:
        fail("system_powerdown reply %r" % r)
    t0 = time.time()

    # POWERDOWN, then SHUTDOWN from the guest (other events may come too).
    seen = []
    deadline = t0 + 10
    try:
        while True:
            if time.time() > deadline:
                fail("no SHUTDOWN event within 10 s (events: %r)" % seen)
            e = q.next_event(deadline)
            if "event" not in e:
                fail("unexpected message %r" % e)
            seen.append(e["event"])
            if e["event"] == "SHUTDOWN":
                if e.get("data") != {"guest": True, "reason": "guest-shutdown"}:
                    fail("SHUTDOWN data %r" % e.get("data"))
                break
    except (EOFError, socket.timeout) as ex:
        fail("connection ended before SHUTDOWN (%s; events: %r)" % (ex, seen))
    if "POWERDOWN" not in seen:
        fail("no POWERDOWN event before SHUTDOWN (events: %r)" % seen)
    if seen.count("POWERDOWN") != 1:
        fail("POWERDOWN %d times (events: %r)" % (seen.count("POWERDOWN"), seen))

    try:
        rc = proc.wait(timeout=max(0.1, t0 + 5 - time.time()))
    except subprocess.TimeoutExpired:
        fail("ember did not exit within 5 s of system_powerdown")
    if rc != 0:
        fail("exit status %d after a guest power-off, want 0" % rc)
    if not serial_has("pwrbtn: pressed, powering off"):
        fail("the guest did not see the button press")
    if os.path.exists(sock):
        fail("socket file left behind")
    # After SHUTDOWN the server closes the connection.
    q.s.settimeout(5)
    try:
        while True:
            e = q.recv()
            if "event" not in e:
                fail("unexpected message after SHUTDOWN: %r" % e)
    except EOFError:
        pass
    except (ConnectionResetError, socket.timeout) as ex:
        fail("connection not closed cleanly after exit: %s" % ex)
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
PYEOF
pass "qmp_powerdown"
