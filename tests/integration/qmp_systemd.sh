#!/usr/bin/env bash
# systemd integration, with a small sd_notify listener standing in for the
# service manager: READY=1 (with the control socket already up) and
# WATCHDOG=1 from an ExecStart-like `ember run --config ... --api-sock ...`;
# SIGTERM with the `pwrbtn` guest gives STOPPING=1 and a clean exit;
# a guest that ignores the power button is stopped after
# --shutdown-timeout; and socket activation (LISTEN_FDS) serves QMP on fd 3.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || { echo "SKIP: python3 not found" >&2; exit 77; }
for g in pwrbtn ticker; do
	[ -f "$EMBER_GUEST_DIR/$g.elf" ] || fail "guest $g.elf not built in $EMBER_GUEST_DIR"
done

python3 - "$EMBER" "$EMBER_GUEST_DIR" "$TMPD" <<'PYEOF'
import json, os, signal, socket, subprocess, sys, time

ember, guests, tmpd = sys.argv[1:4]
logpath = os.path.join(tmpd, "ember.log")
log = open(logpath, "w")
procs = []


def fail(msg):
    log.flush()
    sys.stderr.write(open(logpath).read())
    sys.stderr.write("FAIL: %s\n" % msg)
    for p in procs:
        if p.poll() is None:
            p.kill()
    sys.exit(1)


class Notify:
    def __init__(self, path):
        self.path = path
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.msgs = []

    def wait(self, what, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for i, m in enumerate(self.msgs):
                if what in m.split("\n"):
                    return self.msgs.pop(i)
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                self.msgs.append(self.s.recv(4096).decode())
            except socket.timeout:
                pass
        fail("no %s from ember within %ss (got %r)" % (what, timeout, self.msgs))


def qmp(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    f = s.makefile("rb")
    if "QMP" not in json.loads(f.readline()):
        fail("no greeting")

    def cmd(name):
        s.sendall(json.dumps({"execute": name}).encode())
        while True:
            m = json.loads(f.readline())
            if "event" not in m:
                return m
    if "return" not in cmd("qmp_capabilities"):
        fail("negotiation")
    return s, cmd


def wait_exit(p, timeout, what):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("ember did not exit %s" % what)


# 1. ExecStart-like: a JSON config, an API socket, NOTIFY_SOCKET, a watchdog.
sock = os.path.join(tmpd, "vm.sock")
cfg = os.path.join(tmpd, "vm.json")
json.dump({"kernel": os.path.join(guests, "pwrbtn.elf"),
           "console": "file:" + os.path.join(tmpd, "out"),
           "shutdown_timeout": 20}, open(cfg, "w"))
n = Notify(os.path.join(tmpd, "notify"))
env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="400000")
env.pop("WATCHDOG_PID", None)
p = subprocess.Popen([ember, "run", "--config", cfg, "--api-sock", sock],
                     env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
procs.append(p)
n.wait("READY=1", 15)
if not os.path.exists(sock):
    fail("READY=1 sent before the control socket existed")
n.wait("WATCHDOG=1", 2)
n.wait("WATCHDOG=1", 2)
s, cmd = qmp(sock)
st = cmd("query-status")
if st.get("return", {}).get("status") != "running":
    fail("query-status %r" % st)
time.sleep(0.3)    # let the guest arm its power-button handler
p.send_signal(signal.SIGTERM)
n.wait("STOPPING=1", 10)
rc = wait_exit(p, 25, "after SIGTERM with a guest that powers off")
if rc != 0:
    fail("exit status %d after SIGTERM + guest poweroff" % rc)
if os.path.exists(sock):
    fail("socket file left behind")
s.close()

# 2. A guest that ignores the power button: stopped after the timeout.
sock2 = os.path.join(tmpd, "t.sock")
p = subprocess.Popen([ember, "run", "--debug-exit", "--kernel", os.path.join(guests, "ticker.elf"),
                      "--api-sock", sock2, "--console", "none", "--shutdown-timeout", "1"],
                     env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
procs.append(p)
n.wait("READY=1", 15)
t0 = time.time()
p.send_signal(signal.SIGTERM)
n.wait("STOPPING=1", 10)
wait_exit(p, 15, "after SIGTERM and --shutdown-timeout 1")
if time.time() - t0 < 0.9:
    fail("ember did not wait for the guest before quitting")
if os.path.exists(sock2):
    fail("socket file left behind after the shutdown timeout")

# 3. Socket activation: a listening socket as fd 3, LISTEN_FDS=1, LISTEN_PID.
act = os.path.join(tmpd, "act.sock")
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ls.bind(act)
ls.listen(8)
argv = [ember, "run", "--debug-exit", "--kernel", os.path.join(guests, "ticker.elf"), "--console", "none"]
logfd = log.fileno()
pid = os.fork()
if pid == 0:
    try:
        os.dup2(ls.fileno(), 3)
        os.dup2(logfd, 1)
        os.dup2(logfd, 2)
        e = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()),
                 LISTEN_FDNAMES="qmp")
        e.pop("NOTIFY_SOCKET", None)
        os.execve(ember, argv, e)
    finally:
        os._exit(127)
ls.close()
try:
    s, cmd = qmp(act)
    if cmd("query-status").get("return", {}).get("status") != "running":
        fail("query-status over the activated socket")
    if cmd("quit").get("return") != {}:
        fail("quit over the activated socket")
    end = time.time() + 15
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            pid = 0
            break
        if time.time() > end:
            fail("socket-activated ember did not exit after quit")
        time.sleep(0.05)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        fail("socket-activated ember: wait status %d" % status)
finally:
    if pid:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
PYEOF
pass "qmp_systemd"
