#!/usr/bin/env bash
# The QMP control socket against a real VM (the `ticker` guest prints
# "tick N" every ~50 ms): negotiation, stop/cont really pausing the vCPUs,
# vCPU thread ids, QEMU's bad-input cases over the socket, an oversized
# message, 15 concurrent clients and a 17th refused (the limit is 16), and a clean quit.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || { echo "SKIP: python3 not found" >&2; exit 77; }
[ -f "$EMBER_GUEST_DIR/ticker.elf" ] || fail "guest ticker.elf not built in $EMBER_GUEST_DIR"

PYTHONPATH="$(dirname "$0")" python3 - "$EMBER" "$EMBER_GUEST_DIR/ticker.elf" "$TMPD" <<'PYEOF'
import json, os, re, socket, subprocess, sys, time
from qmp_client import QMP

ember, kernel, tmpd = sys.argv[1:4]
sock = os.path.join(tmpd, "s.sock")
out = os.path.join(tmpd, "out")
log = open(os.path.join(tmpd, "ember.log"), "w")


def fail(msg):
    log.flush()
    sys.stderr.write(open(os.path.join(tmpd, "ember.log")).read())
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def last_tick():
    try:
        data = open(out, "rb").read().decode(errors="replace")
    except FileNotFoundError:
        return -1
    ticks = re.findall(r"tick (\d+)\r?\n", data)
    return int(ticks[-1]) if ticks else -1


def wait_ticks_advance(start, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if last_tick() > start:
            return last_tick()
        time.sleep(0.05)
    fail("ticks did not advance past %d" % start)


proc = subprocess.Popen([ember, "run", "--debug-exit", "--kernel", kernel, "--api-sock", sock, "--cpus", "2",
                         "--console", "file:" + out],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
try:
    end = time.time() + 15
    while not os.path.exists(sock):
        if proc.poll() is not None:
            fail("ember exited with %d before creating the socket" % proc.returncode)
        if time.time() > end:
            fail("the control socket never appeared")
        time.sleep(0.02)
    mode = os.stat(sock).st_mode & 0o777
    if mode != 0o600:
        fail("socket mode %o, want 600" % mode)

    # Negotiation rules.
    q = QMP(sock, fail, negotiate=False)
    v = q.greeting["QMP"]["version"]
    if v["qemu"] != {"major": 7, "minor": 2, "micro": 0} or not v["package"].startswith("ember "):
        fail("greeting version %r" % v)
    q.send('{"execute": "query-status"}')
    q.expect_error("CommandNotFound")
    if q.cmd("qmp_capabilities") != {}:
        fail("qmp_capabilities return")
    q.send('{"execute": "qmp_capabilities"}')
    q.expect_error("CommandNotFound")
    r = q.execute("query-status", id="cookie#1")
    if r.get("id") != "cookie#1":
        fail("id not echoed: %r" % r)
    st = r["return"]
    if st["status"] != "running" or st["running"] is not True or st["singlestep"] is not False:
        fail("query-status %r" % st)

    # stop really stops the vCPUs; cont resumes them.
    t0 = wait_ticks_advance(-1)
    wait_ticks_advance(t0)
    q.cmd("stop")
    q.wait_event("STOP")
    st = q.cmd("query-status")
    if st["status"] != "paused" or st["running"]:
        fail("after stop: %r" % st)
    time.sleep(0.2)
    t1 = last_tick()
    time.sleep(1.2)
    if last_tick() != t1:
        fail("guest kept ticking while stopped (%d -> %d)" % (t1, last_tick()))
    q.cmd("cont")
    q.wait_event("RESUME")
    if q.cmd("query-status")["status"] != "running":
        fail("not running after cont")
    wait_ticks_advance(t1, timeout=5)

    # vCPU threads are real threads of the ember process.
    cpus = q.cmd("query-cpus-fast")
    if not cpus:
        fail("no vCPUs")
    for c in cpus:
        for key in ("cpu-index", "thread-id", "props", "qom-path", "target"):
            if key not in c:
                fail("query-cpus-fast entry lacks %s: %r" % (key, c))
        if not os.path.isdir("/proc/%d/task/%d" % (proc.pid, c["thread-id"])):
            fail("vCPU thread %d is not a thread of ember" % c["thread-id"])
        with open("/proc/%d/task/%d/comm" % (proc.pid, c["thread-id"])) as f:
            comm = f.read().strip()
        if comm != "vcpu%d" % c["cpu-index"]:
            fail("vCPU %d thread is named %r" % (c["cpu-index"], comm))

    ver = q.cmd("query-version")
    if ver["qemu"]["major"] != 7 or "package" not in ver:
        fail("query-version %r" % ver)
    if q.cmd("query-kvm") != {"enabled": True, "present": True}:
        fail("query-kvm")
    mem = q.cmd("query-memory-size-summary")
    if mem.get("base-memory", 0) < 16 << 20 or mem.get("plugged-memory") != 0:
        fail("query-memory-size-summary %r" % mem)
    if q.cmd("query-block") != []:
        fail("query-block without disks")
    names = {c["name"] for c in q.cmd("query-commands")}
    for n in ("qmp_capabilities", "query-status", "stop", "cont", "system_powerdown",
              "system_reset", "quit", "query-cpus-fast", "query-block", "query-version",
              "query-kvm", "query-memory-size-summary", "x-query-exits"):
        if n not in names:
            fail("query-commands lacks %s" % n)
    exits = q.cmd("x-query-exits")
    if not isinstance(exits, dict) or "disks" not in exits:
        fail("x-query-exits %r" % exits)

    # QEMU's malformed-input cases, each followed by proof of recovery.
    bad = [b"{]\n", b"{\xff", b"{\x01", b"{'bad \xff", b"{'execute': 'nonexistent', 'id':'\n",
           b"%%p", b"null\n", b"[]", b"1\n", b'"x"', b"{}", b"{ 'execute': true }",
           b"{ 'execute': 'no-such-cmd', 'arguments': [] }",
           b"{ 'execute': 'no-such-cmd', 'extra': true }",
           b'{"execute": "query-status", "arguments": {"x": 1}}']
    for b in bad:
        q.send(b)
        q.expect_error("GenericError")
        q.send("{ 'execute': 'no-such-cmd' }")
        r = q.expect_error("CommandNotFound")
        if r["error"]["desc"] != "The command no-such-cmd has not been found":
            fail("desc %r" % r["error"]["desc"])

    # Over the 1 MiB message limit: an error, then the connection still works.
    q.send(b'{"execute": "query-status", "id": "' + b"x" * (2 << 20) + b'"}\n')
    q.expect_error("GenericError")
    if q.execute("query-status", id=2).get("id") != 2:
        fail("no recovery after an oversized message")

    # A client that leaves mid-message costs nothing.
    c = QMP(sock, fail)
    c.send('{"execute": "query-sta')
    c.close()
    time.sleep(0.5)  # let the server see it go before counting clients

    # As many clients as the limit allows (16, q among them), all at once;
    # one more is refused with a QMP error, and the others keep working.
    many = [QMP(sock, fail, negotiate=False) for _ in range(15)]
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    extra.settimeout(10)
    extra.connect(sock)
    got = b""
    while b"\n" not in got:
        d = extra.recv(4096)
        if not d:
            break
        got += d
    if b"too many QMP clients" not in got:
        fail("a 17th client was not refused: %r" % got[:200])
    extra.close()
    for c in many:
        c.send('{"execute": "qmp_capabilities"}')
    for c in many:
        if "return" not in c.reply():
            fail("negotiation on one of 15 clients")
    for i, c in enumerate(many):
        c.send(json.dumps({"execute": ["query-status", "query-cpus-fast", "query-kvm"][i % 3],
                           "id": i}))
    for i, c in reversed(list(enumerate(many))):
        r = c.reply()
        if r.get("id") != i or "return" not in r:
            fail("client %d got %r" % (i, r))
    for c in many:
        c.close()

    # system_reset: a RESET event and the VM runs on.
    q.cmd("system_reset")
    ev = q.wait_event("RESET")
    if ev["data"] != {"guest": False, "reason": "host-qmp-system-reset"}:
        fail("RESET data %r" % ev["data"])
    if q.cmd("query-status")["status"] != "running":
        fail("not running after system_reset")
    size = os.path.getsize(out)
    end = time.time() + 10
    while os.path.getsize(out) == size:
        if time.time() > end:
            fail("no console output after system_reset")
        time.sleep(0.05)

    # quit: a clean exit, no socket, no stray children.
    def parent_of(pid):
        try:
            with open("/proc/%s/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[1]
        except OSError:
            return None    # the process went away while we looked
    children = [p for p in os.listdir("/proc") if p.isdigit() and parent_of(p) == str(proc.pid)]
    r = q.execute("quit", id="bye")
    if r.get("id") != "bye" or r.get("return") != {}:
        fail("quit reply %r" % r)
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        fail("ember did not exit after quit")
    if rc != 0:
        fail("exit status %d after quit" % rc)
    if os.path.exists(sock):
        fail("socket file left behind")
    for p in children:
        if os.path.exists("/proc/" + p):
            fail("child process %s outlived ember" % p)
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
PYEOF
pass "qmp_basic"
