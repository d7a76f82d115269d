#!/usr/bin/env bash
# A hostile guest (hostile.elf: random port, PCI config, virtio register and
# virtqueue traffic on every device, 2 vCPUs) against Ember while a QMP client
# polls query-status, query-blockstats and x-query-exits in a tight loop and
# does stop / 0.3 s / cont every 2 s. Ember must never die or report a
# sanitizer error, every QMP reply must come within 10 s, its RSS must stay
# under 256 MiB (128 MiB guest), the guest must reach "hostile: done" (after a
# last sane use of rng, blk and console), and QMP quit must give exit 0.
# HOSTILE_SEED and HOSTILE_MS (guest run time, default 12000) override.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || fail "python3 not found"
[ -f "$EMBER_GUEST_DIR/hostile.elf" ] || fail "guest hostile.elf not built in $EMBER_GUEST_DIR"

PYTHONPATH="$(dirname "$0")" python3 - "$EMBER" "$EMBER_GUEST_DIR/hostile.elf" "$TMPD" \
	"${HOSTILE_SEED:-1}" "${HOSTILE_MS:-12000}" <<'PYEOF'
import os, re, socket, subprocess, sys, time
from qmp_client import QMP

ember, kernel, tmpd, seed, guest_ms = sys.argv[1:6]
sock = os.path.join(tmpd, "s.sock")
out = os.path.join(tmpd, "out")
con = os.path.join(tmpd, "con")
img = os.path.join(tmpd, "d.img")
logname = os.path.join(tmpd, "ember.log")
log = open(logname, "w")
RSS_LIMIT_KB = 256 * 1024
REPLY_TIMEOUT = 10
DEADLINE = 600  # the guest's own time budget plus the slowest (nested TCG) hosts

with open(img, "wb") as f:
    f.truncate(4 << 20)


def text(path):
    try:
        return open(path, "rb").read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def fail(msg):
    log.flush()
    sys.stderr.write("---- ember log ----\n" + text(logname)[-8000:])
    sys.stderr.write("---- serial (tail) ----\n" + text(out)[-4000:])
    sys.stderr.write("FAIL: %s (seed %s)\n" % (msg, seed))
    sys.exit(1)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def check_alive():
    rc = proc.poll()
    if rc is not None:
        what = "signal %d" % -rc if rc < 0 else "status %d" % rc
        fail("ember exited (%s) before the guest was done" % what)


cmd = [ember, "run", "--debug-exit", "--cpus", "2", "--memory", "128M", "--kernel", kernel,
       "--cmdline", "seed=%s ms=%s linger=120000" % (seed, guest_ms),
       "--disk", "path=" + img, "--rng", "--virtio-console", "file:" + con,
       "--console", "file:" + out, "--api-sock", sock]
t0 = time.time()
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
polls = cycles = 0
worst = 0.0
peak = 0
try:
    end = time.time() + 30
    while not os.path.exists(sock):
        check_alive()
        if time.time() > end:
            fail("the control socket never appeared")
        time.sleep(0.02)
    q = QMP(sock, fail, timeout=REPLY_TIMEOUT)

    def timed(name):
        global worst, polls
        t = time.time()
        try:
            r = q.execute(name)
        except (socket.timeout, EOFError, OSError) as e:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            check_alive()
            fail("%s: no reply within %d s (%s)" % (name, REPLY_TIMEOUT, e))
        dt = time.time() - t
        worst = max(worst, dt)
        polls += 1
        if "return" not in r:
            fail("%s failed: %r" % (name, r))
        return r["return"]

    next_stop = time.time() + 2
    end = time.time() + DEADLINE
    while "hostile: done" not in text(out):
        check_alive()
        if time.time() > end:
            fail("the guest did not finish within %d s" % DEADLINE)
        st = timed("query-status")
        if st["status"] not in ("running", "paused"):
            fail("query-status %r" % st)
        stats = timed("query-blockstats")
        if len(stats) != 1:
            fail("query-blockstats %r" % stats)
        timed("x-query-exits")
        peak = max(peak, rss_kb(proc.pid))
        if peak > RSS_LIMIT_KB:
            fail("ember RSS %d KiB is over %d KiB" % (peak, RSS_LIMIT_KB))
        if time.time() >= next_stop:
            timed("stop")
            if timed("query-status")["status"] != "paused":
                fail("not paused after stop")
            time.sleep(0.3)
            timed("cont")
            cycles += 1
            next_stop = time.time() + 2
    run_s = time.time() - t0
    serial = text(out)
    if "hostile: FAIL" in serial:
        fail("the guest reported a failure")
    for want in ("hostile: rng ok", "hostile: blk ok", "hostile: console sent"):
        if want not in serial:
            fail("missing %r on the serial console" % want)
    end = time.time() + 10
    while "hostile: console ok" not in text(con):
        if time.time() > end:
            fail("the virtio-console line never reached %s" % con)
        time.sleep(0.05)
    summary = re.findall(r"hostile: \d+ rounds in [^\r\n]*", serial)
    peak = max(peak, rss_kb(proc.pid))

    r = q.execute("quit", id="bye")
    if r.get("return") != {}:
        fail("quit reply %r" % r)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        fail("ember did not exit after quit")
    if rc != 0:
        fail("exit status %d after quit, want 0" % rc)
    log.flush()
    errs = [l for l in text(logname).splitlines()
            if "AddressSanitizer" in l or "runtime error:" in l or "LeakSanitizer" in l
            or "ThreadSanitizer" in l]
    if errs:
        fail("sanitizer report: %s" % errs[0])
    print("hostile_guest: seed %s: %s" % (seed, summary[0] if summary else "?"))
    print("hostile_guest: %.1f s, peak RSS %d KiB, %d QMP replies (slowest %.3f s), %d stop/cont cycles"
          % (run_s, peak, polls, worst, cycles))
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
PYEOF
pass "hostile guest"
