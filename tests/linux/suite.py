#!/usr/bin/env python3
"""The Linux-guest suite: boots Debian's cloud kernel with the suite's
initramfs (tests/linux/build-guest.sh) under Ember and checks what Linux's own
drivers saw (guest side: tests/linux/guest-init.sh prints EMBER-CHECK lines)
and what reached the host (image files, sockets, exit status, QMP events).

Usage: suite.py TEST     (suite.py --list prints the tests)
Environment: EMBER (the binary), EMBER_SOURCE_DIR, EMBER_LINUX_OUT (the guest
build directory), EMBER_LINUX_BOOT_TIMEOUT (seconds per boot, default 300),
EMBER_LINUX_KEEP=DIR (copy logs there).
Exit status 0 on success, 1 with the logs and a FAIL line otherwise."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("EMBER_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from qmp_client import QMP  # noqa: E402

OUT = os.environ.get("EMBER_LINUX_OUT", os.path.join(SRC, "examples", "linux", "out"))
KERNEL = os.path.join(OUT, "vmlinuz")
INITRD = os.path.join(OUT, "initramfs-suite.cpio.gz")
BOOT_TIMEOUT = float(os.environ.get("EMBER_LINUX_BOOT_TIMEOUT", "300"))
PATTERN_LINE = b"ember-linux-suite-pattern-0123\n"


def pattern(n):
    return (PATTERN_LINE * (n // len(PATTERN_LINE) + 1))[:n]


class Failure(Exception):
    pass


class Guest:
    """One Ember process running the suite's kernel and initramfs."""

    def __init__(self, tmpd, test, cpus=2, model="baseline", memory="512M",
                 extra=(), api=False, on_reboot="exit", stdin=False, cmdline="", prefix=(),
                 tag=""):
        self.tmpd = tmpd
        sfx = "-" + tag if tag else ""  # tag: several guests in one test
        self.serial = os.path.join(tmpd, "serial%s.log" % sfx)
        self.logpath = os.path.join(tmpd, "ember%s.log" % sfx)
        self.sock = os.path.join(tmpd, "qmp%s.sock" % sfx) if api else None
        cmd = ["console=ttyS0", "quiet", "panic=-1", "ember.test=" + test,
               "ember.cpus=%d" % cpus]
        if cmdline:
            cmd.append(cmdline)
        # prefix: e.g. ("ip", "netns", "exec", NS) to run Ember in a namespace.
        self.argv = list(prefix) + [os.environ["EMBER"], "run", "--kernel", KERNEL, "--initrd", INITRD,
                     "--cmdline", " ".join(cmd), "--cpus", str(cpus), "--memory", memory,
                     "--cpu-model", model, "--console", "file:" + self.serial,
                     "--on-reboot", on_reboot] + list(extra)
        if self.sock:
            self.argv += ["--api-sock", self.sock]
        self.log = open(self.logpath, "w")
        self.t0 = time.time()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=self.log if not stdin else subprocess.PIPE,
                                     stderr=self.log)
        self.qmp = None

    def text(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for(self, regex, timeout=None, what=None):
        """Waits for a serial line matching regex; returns the match."""
        end = time.time() + (timeout or BOOT_TIMEOUT)
        r = re.compile(regex, re.M)
        while True:
            m = r.search(self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                m = r.search(self.text())
                if m:
                    return m
                raise Failure("ember exited with %d before %s" % (self.proc.returncode, what or regex))
            if time.time() > end:
                raise Failure("no %s within %.0f s" % (what or regex, timeout or BOOT_TIMEOUT))
            time.sleep(0.05)

    def connect(self):
        end = time.time() + 15
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise Failure("ember exited with %d before creating its socket" % self.proc.returncode)
            if time.time() > end:
                raise Failure("the control socket never appeared")
            time.sleep(0.02)

        def qfail(msg):
            raise Failure("QMP: " + msg)
        self.qmp = QMP(self.sock, qfail, timeout=30)
        return self.qmp

    def wait_exit(self, timeout=None):
        try:
            return self.proc.wait(timeout=timeout or BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failure("ember did not exit within %.0f s" % (timeout or BOOT_TIMEOUT))

    def checks(self, expect_done=True, tolerate=()):
        """Guest-side results: fails on any FAIL line (but those named in
        tolerate) or a missing EMBER-DONE."""
        t = self.text()
        bad = [b for b in re.findall(r"^EMBER-CHECK (\S+) FAIL ?(.*)$", t, re.M) if b[0] not in tolerate]
        if bad:
            raise Failure("guest checks failed: " + "; ".join("%s (%s)" % b for b in bad))
        oks = re.findall(r"^EMBER-CHECK (\S+) ok", t, re.M)
        if expect_done and not re.search(r"^EMBER-DONE \S+ failures=%s" % ("\\d+" if tolerate else "0"), t, re.M):
            raise Failure("the guest never finished its checks (EMBER-DONE missing)")
        return oks

    def info(self, key):
        m = re.findall(r"^EMBER-INFO %s=(.*)$" % re.escape(key), self.text(), re.M)
        return m[-1].strip() if m else None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def dump(self):
        sys.stderr.write("---- ember: %s\n" % " ".join(self.argv))
        try:
            sys.stderr.write(open(self.logpath, errors="replace").read()[-4000:])
        except OSError:
            pass
        t = self.text().splitlines()
        sys.stderr.write("---- serial log (last 60 of %d lines)\n" % len(t))
        sys.stderr.write("\n".join(t[-60:]) + "\n")


def need(cond, msg):
    if not cond:
        raise Failure(msg)


def expect_checks(oks, names):
    missing = [n for n in names if n not in oks]
    need(not missing, "guest checks missing: %s" % " ".join(missing))


def host_cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def host_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


# ---- the tests ---------------------------------------------------------------------------

def smp(tmpd, cpus, model):
    g = Guest(tmpd, "smp", cpus=cpus, model=model)
    yield g
    rc = g.wait_exit()
    # In the nested harness QEMU's TCG does not intercept the L2's xsetbv, so
    # with the host model Linux's XSAVE size check fails there (QEMU -cpu
    # host too, measured in the same L1). Only that check, only there.
    xsave_quirk = model == "host" and os.environ.get("EMBER_NESTED") == "1"
    oks = g.checks(tolerate=("no_xsave_warning",) if xsave_quirk else ())
    expect_checks(oks, ["cpuinfo_count", "cpus_online", "cpuinfo_uniform", "no_kernel_warning",
                        "no_unexplained_trace", "lapic_timer_works"] +
                  ([] if xsave_quirk else ["no_xsave_warning"]))
    if xsave_quirk and "no_xsave_warning" not in oks:
        print("smp: NOTE: tolerated Linux's XSAVE size warning (nested TCG, see README)")
    need(rc == 0, "poweroff: ember exited with %d, not 0" % rc)
    name = g.info("model_name") or ""
    flags = set((g.info("flags") or "").split())
    need(name, "the guest's CPU has no model name (CPUID 0x80000002-4 empty)")
    if model == "host":
        need(name == host_cpu_model(),
             "host model: the guest sees '%s', the host is '%s'" % (name, host_cpu_model()))
        for f in ("cx16",) if xsave_quirk else ("xsave", "avx", "avx2", "cx16"):
            if f in host_flags():
                need(f in flags, "host model: the host has '%s', the guest does not" % f)
    else:
        for f in ("xsave", "avx", "avx2", "avx512f", "cx16"):
            need(f not in flags, "baseline model: the guest sees '%s'" % f)
    print("smp: %d vCPUs, %s model, '%s', user space at %ss" %
          (cpus, model, name, re.search(r"EMBER-USERSPACE \S+ (\S+)", g.text()).group(1)))


def recv_hash(c):
    """Reads socket c to EOF: (bytes, SHA-256 hex digest). OSError passes."""
    import hashlib
    h, total = hashlib.sha256(), 0
    while True:
        b = c.recv(65536)
        if not b:
            return total, h.hexdigest()
        h.update(b)
        total += len(b)


def make_image(path, size, data=None):
    with open(path, "wb") as f:
        if data:
            f.write(data)
        f.truncate(size)


# The guest's blk_checks (guest-init.sh), which every virtio-blk device
# model must pass.
BLK_CHECKS = ["odirect_write", "odirect_read", "odirect_4k", "write_cache", "flush_sent",
              "discard_write", "discard_max", "blkdiscard", "write_past_end", "ro_flag",
              "ro_refuses_write", "ro_reads", "mkfs", "mount", "umount", "remount",
              "fs_compare", "fs_files", "msix", "msix_fired"]


def verify_blk_images(g, data, ro, fs):
    """The host's side of blk_checks: the pattern and 4 KiB blocks in the
    data image, the discarded range a hole, the read-only image untouched,
    and the guest's file system clean (e2fsck) with its file (debugfs)."""
    size = os.path.getsize(data)
    need(g.info("data_size_sectors") == str(size // 512), "capacity: %s sectors, the image has %d"
         % (g.info("data_size_sectors"), size // 512))
    pat = pattern(4 << 20)
    with open(data, "rb") as f:
        f.seek(1 << 20)
        need(f.read(4 << 20) == pat, "the O_DIRECT pattern is not in the image at 1 MiB")
        for i in (3, 17, 250, 999):
            f.seek((2048 + i) * 4096)
            need(f.read(4096) == pat[i * 4096:(i + 1) * 4096], "4 KiB block %d is not in the image" % i)
        # Discarded 16..20 MiB: a hole in the file (punched), reading zeros.
        fd = f.fileno()
        hole = os.lseek(fd, 16 << 20, os.SEEK_HOLE)
        need(hole == 16 << 20, "blkdiscard punched no hole at 16 MiB (next hole at %d)" % hole)
        f.seek(16 << 20)
        need(f.read(4 << 20) == bytes(4 << 20), "discarded range does not read as zeros")
    with open(ro, "rb") as f:
        need(f.read(1 << 20) == pattern(1 << 20), "the read-only image changed")
    r = subprocess.run(["e2fsck", "-fn", fs], capture_output=True, text=True)
    need(r.returncode == 0, "e2fsck -fn on the guest's file system: status %d\n%s%s" %
         (r.returncode, r.stdout, r.stderr))
    r = subprocess.run(["debugfs", "-R", "cat /pat", fs], capture_output=True)
    need(r.returncode == 0 and r.stdout == pat, "debugfs: /pat in the image differs from the pattern")


def test_blk(tmpd):
    data = os.path.join(tmpd, "data.img")
    ro = os.path.join(tmpd, "ro.img")
    fs = os.path.join(tmpd, "fs.img")
    make_image(data, 64 << 20)
    make_image(ro, 16 << 20, pattern(1 << 20))
    make_image(fs, 64 << 20)
    g = Guest(tmpd, "blk", extra=["--disk", "path=%s,serial=EMBER-DATA" % data,
                                  "--disk", "path=%s,serial=EMBER-RO,readonly=on" % ro,
                                  "--disk", "path=%s,serial=EMBER-FS" % fs])
    yield g
    rc = g.wait_exit()
    oks = g.checks()
    expect_checks(oks, ["serials"] + BLK_CHECKS)
    need(rc == 0, "poweroff: ember exited with %d, not 0" % rc)
    verify_blk_images(g, data, ro, fs)
    print("blk: %d guest checks, image contents, hole and e2fsck verified" % len(oks))


def test_devices(tmpd):
    """virtio-rng, and virtio-console on stdio in both directions."""
    g = Guest(tmpd, "devices", extra=["--rng", "--virtio-console", "stdio"], stdin=True)
    yield g
    got = b""
    os.set_blocking(g.proc.stdout.fileno(), False)
    g.wait_for(r"^EMBER-READY hvc-input", what="the guest waiting for hvc0 input")
    end = time.time() + 30
    while b"EMBER-HVC-FROM-GUEST" not in got and time.time() < end:
        try:
            got += g.proc.stdout.read() or b""
        except (BlockingIOError, TypeError):
            pass
        time.sleep(0.05)
    need(b"EMBER-HVC-FROM-GUEST" in got, "guest output on hvc0 did not reach stdout: %r" % got[-200:])
    g.proc.stdin.write(b"EMBER-HVC-FROM-HOST\n")
    g.proc.stdin.flush()
    rc = g.wait_exit()
    oks = g.checks()
    expect_checks(oks, ["rng_current", "hwrng_64k", "hwrng_random", "hvc0", "hvc0_input"])
    need(rc == 0, "ember exited with %d" % rc)


def reboot(tmpd, policy):
    data = os.path.join(tmpd, "data.img")
    make_image(data, 1 << 20)
    g = Guest(tmpd, "reboot", on_reboot=policy, extra=["--disk", "path=%s,serial=EMBER-DATA" % data])
    yield g
    rc = g.wait_exit()
    boots = len(re.findall(r"^EMBER-USERSPACE", g.text(), re.M))
    need(open(data, "rb").read(1) == b"1", "the first boot did not mark the disk")
    if policy == "exit":
        need(rc == 0, "reboot under --on-reboot exit: status %d, not 0" % rc)
        need(boots == 1, "reboot under --on-reboot exit: the guest booted %d times" % boots)
        need("EMBER-REBOOTING" in g.text(), "the guest never rebooted")
    else:
        g.checks()
        need(rc == 0, "reboot then poweroff under --on-reboot restart: status %d" % rc)
        need(boots == 2, "reboot under --on-reboot restart: %d boots, expected 2" % boots)
    print("reboot (%s): %d boot(s), status %d" % (policy, boots, rc))


def qmp_powerdown(tmpd):
    g = Guest(tmpd, "powerdown", api=True)
    yield g
    q = g.connect()
    g.wait_for(r"^EMBER-READY powerdown", what="acpid running in the guest")
    g.checks()
    r = q.execute("system_powerdown")
    need(r == {"return": {}}, "system_powerdown: %r" % r)
    rc = g.wait_exit(120)
    need("EMBER-ACPID-POWERDOWN" in g.text(), "busybox acpid never saw the power button")
    need(rc == 0, "powerdown: ember exited with %d" % rc)
    ev = [e["event"] for e in q.events]
    try:
        while True:
            ev.append(q.recv().get("event"))
    except Exception:
        pass
    need("POWERDOWN" in ev and "SHUTDOWN" in ev, "events: %r" % ev)


def ticks(g):
    return [int(x) for x in re.findall(r"^EMBER-TICK (\d+)", g.text(), re.M)]


def qmp_stopcont(tmpd):
    g = Guest(tmpd, "ticker", api=True)
    yield g
    q = g.connect()
    g.wait_for(r"^EMBER-TICK 5$", what="the guest's counter")
    need(q.execute("stop") == {"return": {}}, "stop failed")
    time.sleep(0.5)
    n = len(ticks(g))
    time.sleep(3)
    need(len(ticks(g)) == n, "the guest kept printing while stopped (%d -> %d ticks)" % (n, len(ticks(g))))
    st = q.execute("query-status")
    need(st["return"]["status"] == "paused", "query-status while stopped: %r" % st)
    need(q.execute("cont") == {"return": {}}, "cont failed")
    end = time.time() + 60
    while len(ticks(g)) < n + 5:
        need(time.time() < end, "the counter did not resume after cont (%d ticks)" % len(ticks(g)))
        time.sleep(0.1)
    t = ticks(g)
    need(t == list(range(len(t))), "ticks lost or repeated across stop/cont")
    q.execute("quit")
    rc = g.wait_exit(30)
    need(rc == 0, "quit: ember exited with %d" % rc)


def qmp_panic(tmpd):
    g = Guest(tmpd, "panic", api=True, extra=["--on-reboot", "exit"])
    yield g
    q = g.connect()
    g.wait_for(r"^EMBER-READY panic", what="the guest about to panic")
    rc = g.wait_exit(120)
    ev = list(q.events)
    try:
        while True:
            ev.append(q.recv())
    except Exception:
        pass
    names = [e.get("event") for e in ev]
    need("GUEST_PANICKED" in names, "no GUEST_PANICKED event (events: %r)" % names)
    need("Kernel panic" in g.text(), "the guest did not panic")
    need(rc == 2, "a guest panic under --on-reboot exit: status %d, not 2" % rc)
    g.checks()


def qmp_churn(tmpd):
    """Issue 9's reproduction: 2 vCPUs, 2 disks, rng and virtio-console; the
    guest re-binds its disks every 0.2 s under O_DIRECT I/O and floods hvc0,
    while QMP polls query-status/query-blockstats in a tight loop and does
    stop/cont every 4 s. Ember must keep answering, not crash, and the disks
    must work afterwards."""
    secs = int(os.environ.get("EMBER_CHURN_SECS", "40"))
    d1, d2 = os.path.join(tmpd, "d1.img"), os.path.join(tmpd, "d2.img")
    make_image(d1, 32 << 20)
    make_image(d2, 32 << 20)
    g = Guest(tmpd, "churn", api=True, cmdline="ember.secs=%d" % secs,
              extra=["--disk", "path=%s,serial=EMBER-C1" % d1, "--disk", "path=%s,serial=EMBER-C2" % d2,
                     "--rng", "--virtio-console", "file:" + os.path.join(tmpd, "hvc.out")])
    yield g
    q = g.connect()
    g.wait_for(r"^EMBER-USERSPACE", what="user space")
    polls = cycles = 0
    last_stop = time.time()
    while g.proc.poll() is None and "EMBER-DONE" not in g.text():
        t = time.time()
        r = q.execute("query-status")
        need("return" in r, "query-status: %r" % r)
        r = q.execute("query-blockstats")
        need("return" in r, "query-blockstats: %r" % r)
        need(time.time() - t < 10, "QMP took %.1f s to answer" % (time.time() - t))
        polls += 1
        if time.time() - last_stop > 4:
            need(q.execute("stop") == {"return": {}}, "stop failed")
            time.sleep(0.5)
            need(q.execute("cont") == {"return": {}}, "cont failed")
            cycles += 1
            last_stop = time.time()
        need(time.time() - g.t0 < BOOT_TIMEOUT + secs * 4, "the churn never finished")
    rc = g.wait_exit(120)
    oks = g.checks()
    expect_checks(oks, ["disks_back", "alive_vda", "alive_vdb"])
    need(rc == 0, "ember exited with %d" % rc)
    print("churn: %s re-binds, %d QMP polls, %d stop/cont cycles" % (g.info("rebinds"), polls, cycles))


# ---- virtio-balloon -----------------------------------------------------------------------

def rss_kb(pid):
    """Ember's resident set (guest RAM is a shared memfd: RssShmem counts)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure("no VmRSS for pid %d" % pid)


def balloon_actual(q):
    r = q.execute("query-balloon")
    need("return" in r, "query-balloon: %r" % r)
    return r["return"]


def balloon_to(g, q, target, timeout=900):
    """QMP balloon, then wait until query-balloon's actual is the target."""
    r = q.execute("balloon", {"value": target})
    need(r == {"return": {}}, "balloon %d: %r" % (target, r))
    end = time.time() + timeout
    while True:
        info = balloon_actual(q)
        if info["actual"] == target:
            return info
        if g.proc.poll() is not None:
            raise Failure("ember exited with %d while ballooning" % g.proc.returncode)
        need(time.time() < end, "query-balloon actual %d, not %d after %d s" %
             (info["actual"], target, timeout))
        time.sleep(0.5)


def test_balloon(tmpd):
    """Linux's virtio_balloon on a 512 MiB guest that dirtied and freed 320 MiB:
    QMP balloon to 256 MiB shrinks the guest's MemTotal and MemFree, query-balloon's
    actual reaches the target, BALLOON_CHANGE events follow it, and Ember's RSS
    falls; back to 512 MiB gives it all back."""
    mib = 1 << 20
    g = Guest(tmpd, "balloon", memory="512M", api=True, extra=["--balloon"])
    yield g
    q = g.connect()
    g.wait_for(r"^EMBER-READY balloon-dirtied", what="the guest dirtying and freeing 320 MiB")
    info = balloon_actual(q)
    need(info["actual"] == 512 * mib, "query-balloon before: %r" % info)
    time.sleep(1)
    before = rss_kb(g.proc.pid)
    t0 = time.time()
    info = balloon_to(g, q, 256 * mib)
    secs = time.time() - t0
    g.wait_for(r"^EMBER-READY balloon-inflated", what="the guest seeing its MemTotal shrink")
    after = rss_kb(g.proc.pid)
    acct = info.get("x-accounting", {})
    need(before - after >= 128 * 1024,
         "Ember's RSS fell only from %d to %d MiB (accounting %r)" % (before >> 10, after >> 10, acct))
    need(acct.get("inflated-pages", 0) >= 65536, "accounting: %r" % acct)
    need(acct.get("ignored-pfns", 1) == 0, "Linux's PFNs were ignored: %r" % acct)
    # Stats: the driver primed the queue at probe; each query asks for fresh ones.
    stats = balloon_actual(q).get("stats", {})
    need(stats.get("stat-total-memory", -1) > 0 and stats.get("stat-free-memory", -1) > 0,
         "no guest stats in query-balloon: %r" % stats)
    info = balloon_to(g, q, 512 * mib)
    rc = g.wait_exit()
    oks = g.checks()
    expect_checks(oks, ["balloon_driver", "balloon_stats_vq", "balloon_no_reporting", "dirty_320m",
                        "balloon_inflated", "balloon_free_shrank", "balloon_deflated",
                        "balloon_usable"])
    need(rc == 0, "poweroff: ember exited with %d" % rc)
    ev = [e for e in q.events if e.get("event") == "BALLOON_CHANGE"]
    try:
        while True:
            e = q.recv()
            if e.get("event") == "BALLOON_CHANGE":
                ev.append(e)
    except Exception:
        pass
    actuals = [e["data"]["actual"] for e in ev]
    need(256 * mib in actuals and actuals[-1] == 512 * mib,
         "BALLOON_CHANGE events: %d, last actual %r" % (len(actuals), actuals[-1:]))
    print("balloon: Ember RSS %d MiB -> %d MiB after ballooning to 256 MiB in %.1f s "
          "(%d MiB discarded); guest MemTotal %s -> %s -> %s kB; %d BALLOON_CHANGE events" %
          (before >> 10, after >> 10, secs, acct.get("discarded-bytes", 0) >> 20,
           g.info("memtotal_kb"), g.info("memtotal_inflated_kb"), g.info("memtotal_deflated_kb"),
           len(actuals)))


def test_balloon_reporting(tmpd):
    """free-page-reporting=on: the 320 MiB the guest dirtied and freed leaves Ember's
    RSS without any balloon target; stats-interval=2 refreshes the stats by itself."""
    g = Guest(tmpd, "balloon_reporting", memory="512M", api=True,
              extra=["--balloon", "free-page-reporting=on,stats-interval=2"])
    yield g
    q = g.connect()
    g.wait_for(r"^EMBER-READY balloon-filled", what="the guest dirtying 320 MiB")
    peak = rss_kb(g.proc.pid)
    g.wait_for(r"^EMBER-READY balloon-dirtied", what="the guest freeing 320 MiB")
    g.checks()
    end = time.time() + 120
    while True:
        info = balloon_actual(q)
        rss = rss_kb(g.proc.pid)
        acct = info.get("x-accounting", {})
        if acct.get("reported-bytes", 0) >= 128 << 20 and peak - rss >= 150 * 1024:
            break
        need(time.time() < end, "after 120 s: RSS %d MiB (peak %d), accounting %r" %
             (rss >> 10, peak >> 10, acct))
        time.sleep(1)
    need(info["actual"] == 512 << 20, "no balloon target, yet actual is %d" % info["actual"])
    # The timer, not the queries, keeps the stats fresh.
    t = time.time()
    time.sleep(6)
    last = balloon_actual(q).get("last-update", 0)
    need(last >= int(t) + 3, "stats-interval=2: last-update %d, %d s before the query" %
         (last, time.time() - last))
    need(q.execute("quit") == {"return": {}}, "quit failed")
    rc = g.wait_exit(60)
    need(rc == 0, "quit: ember exited with %d" % rc)
    print("balloon_reporting: Ember RSS %d MiB -> %d MiB by free page reporting "
          "(%d MiB reported, %d MiB discarded)" %
          (peak >> 10, rss >> 10, acct.get("reported-bytes", 0) >> 20,
           acct.get("discarded-bytes", 0) >> 20))


# ---- snapshot and restore -----------------------------------------------------------------

SNAP_TICK = re.compile(r"^EMBER-TICK (\d+) rng=([0-9a-f]{16})$", re.M)


class Drain:
    """Reads a process's stdout (the virtio-console backend) on a thread, so
    the guest never blocks on a full pipe."""

    def __init__(self, proc):
        import threading
        self.data = b""
        self.t = threading.Thread(target=self.run, args=(proc.stdout,), daemon=True)
        self.t.start()

    def run(self, f):
        while True:
            d = f.read1(65536) if hasattr(f, "read1") else f.read(4096)
            if not d:
                return
            self.data += d


class SnapGuests:
    """Starts the snapshot guest (t_snapshot: a counter on the console,
    records on virtio-blk, virtio-rng, hvc0 on stdio) in tmpd/<sub>, the same
    devices every time, and keeps the list of what it started."""

    def __init__(self, tmpd, disk, mib):
        self.tmpd = tmpd
        self.common = dict(cpus=2, memory="%dM" % mib, api=True, stdin=True)
        self.devs = ["--disk", "path=%s,serial=EMBER-SNAP" % disk, "--rng", "--virtio-console", "stdio"]
        self.guests = []

    def start(self, sub, extra=(), **overrides):
        d = os.path.join(self.tmpd, sub)
        os.makedirs(d, exist_ok=True)
        g = Guest(d, "snapshot", extra=self.devs + list(extra), **dict(self.common, **overrides))
        g.drain = Drain(g.proc)
        self.guests.append(g)
        return g


def snap_ticks(g):
    return [(int(n), r) for n, r in SNAP_TICK.findall(g.text())]


def snap_wait_ticks(g, n, what):
    end = time.time() + BOOT_TIMEOUT
    while len(snap_ticks(g)) < n:
        need(g.proc.poll() is None, "ember exited with %s while waiting for %s" % (g.proc.returncode, what))
        need(time.time() < end, "no %s within %.0f s (%d ticks)" % (what, BOOT_TIMEOUT, len(snap_ticks(g))))
        time.sleep(0.05)
    return snap_ticks(g)


def snap_records(img):
    """The guest's records file from the ext2 image, checked line by line."""
    import hashlib
    r = subprocess.run(["debugfs", "-R", "cat /records", img], capture_output=True)
    need(r.returncode == 0, "debugfs: cannot read /records: %r" % r.stderr[-300:])
    seqs = []
    for line in r.stdout.decode(errors="replace").splitlines():
        f = line.split()
        need(len(f) == 3, "malformed record %r" % line)
        rec = "%s %s" % (f[0], f[1])
        need(hashlib.sha256((rec + "\n").encode()).hexdigest()[:16] == f[2], "record %r: bad checksum" % line)
        seqs.append(int(f[0]))
    need(seqs == list(range(1, len(seqs) + 1)), "records not 1..N in order: %r" % (seqs[:5] + seqs[-5:]))
    return len(seqs)


def snap_copy_into(src, dst):
    """Copy src's contents into dst keeping dst's inode (the same disk file)."""
    with open(src, "rb") as a, open(dst, "r+b") as b:
        shutil.copyfileobj(a, b, 1 << 20)
        b.truncate()


def test_snapshot(tmpd):
    """Issue 13: QMP snapshot-save of a guest that counts on its console and
    appends checksummed records to ext2 on virtio-blk (with virtio-rng bytes
    and hvc0 both ways); kill it; restore in new processes three times from
    the same snapshot. The counter continues (no reset, no gap), rng and
    hvc0 work, the records are intact and the last run's file system passes
    e2fsck. Also: bad snapshots and mismatched VMs are refused with one line.
    EMBER_SNAPSHOT_MIB: the guest's RAM (default 256; 512 for the measurements
    in the report)."""
    disk = os.path.join(tmpd, "snap.img")
    disk_at_snap = os.path.join(tmpd, "snap-at-snapshot.img")
    snapdir = os.path.join(tmpd, "snapshot")
    make_image(disk, 64 << 20)
    mib = int(os.environ.get("EMBER_SNAPSHOT_MIB", "256"))  # bench: 512
    launcher = SnapGuests(tmpd, disk, mib)
    guests, start = launcher.guests, launcher.start

    try:
        # The original: cold boot to the first tick.
        a = start("boot")
        yield a
        q = a.connect()
        q.s.settimeout(600)
        a.wait_for(r"^EMBER-USERSPACE", what="user space")
        t_user = time.time() - a.t0
        a.wait_for(r"^EMBER-TICK 1 ", what="the first tick")
        t_boot = time.time() - a.t0
        snap_wait_ticks(a, 5, "5 ticks")
        # An unwritable path: a clear error, and the guest keeps running.
        r = q.execute("snapshot-save", {"path": "/proc/ember-no-such-dir"})
        need("error" in r and "cannot create" in r["error"]["desc"], "snapshot-save to /proc: %r" % r)
        n = len(snap_ticks(a))
        snap_wait_ticks(a, n + 2, "ticks after a failed snapshot-save")
        need(q.execute("query-status")["return"]["status"] == "running", "a failed save left the VM stopped")
        # A full file system: a clear error, nothing left, the guest runs on.
        full = os.path.join(tmpd, "full")
        os.makedirs(full)
        if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", full]).returncode == 0:
            try:
                r = q.execute("snapshot-save", {"path": full})
                need("error" in r and "No space left" in r["error"]["desc"], "snapshot-save to a full disk: %r" % r)
                need(os.listdir(full) == [], "a failed snapshot-save left %r" % os.listdir(full))
                need(q.execute("query-status")["return"]["status"] == "running", "a full disk left the VM stopped")
            finally:
                subprocess.run(["umount", full])
        else:
            print("snapshot: NOTE: not root, the full-disk case is skipped")
        t0 = time.time()
        r = q.execute("snapshot-save", {"path": snapdir})
        t_save = time.time() - t0
        need(r == {"return": {}}, "snapshot-save: %r" % r)
        need(q.execute("query-status")["return"]["status"] == "paused", "the VM runs on after snapshot-save")
        q.wait_event("STOP", timeout=30)  # queued events follow the reply
        time.sleep(1)
        last = snap_ticks(a)[-1][0]
        time.sleep(1)
        need(snap_ticks(a)[-1][0] == last, "the guest ran on after the snapshot")
        a.kill()
        shutil.copyfile(disk, disk_at_snap)
        mem = os.path.join(snapdir, "memory")
        st = os.stat(mem)
        print("snapshot: save took %.2f s; memory file %d MiB, %d MiB allocated (sparse); state %d bytes" %
              (t_save, st.st_size >> 20, st.st_blocks * 512 >> 20, os.path.getsize(os.path.join(snapdir, "state"))))
        need(st.st_blocks * 512 < st.st_size, "the memory file is not sparse")

        # Refusals: one line each, exit status 1, before any guest runs.
        def refused(sub, want, **overrides):
            g = start(sub, ["--restore", snapdir], **overrides)
            rc = g.wait_exit(60)
            err = open(g.logpath).read()
            need(rc == 1 and want in err, "%s: status %d, stderr %r (wanted '%s')" % (sub, rc, err[-400:], want))
            lines = [ln for ln in err.splitlines() if ln.strip()]
            need(len(lines) == 1, "%s: more than one line: %r" % (sub, err[-400:]))
            guests.remove(g)
            g.kill()
        refused("bad-memory", "taken with %d MiB of RAM" % mib, memory="%dM" % (mib // 2))
        refused("bad-model", "--cpu-model baseline", model="host")
        refused("bad-cpus", "taken with 2 vCPUs", cpus=1)
        with open(disk, "ab") as f:
            f.truncate((64 << 20) + 4096)
        refused("bad-disk", "bytes, it was")
        with open(disk, "ab") as f:
            f.truncate(64 << 20)
        corrupt = os.path.join(tmpd, "corrupt")
        os.makedirs(corrupt)
        for f in ("state", "disks.json"):
            shutil.copyfile(os.path.join(snapdir, f), os.path.join(corrupt, f))
        os.symlink(os.path.join(snapdir, "memory"), os.path.join(corrupt, "memory"))
        with open(os.path.join(corrupt, "state"), "r+b") as f:
            f.seek(160)  # in the first section's payload
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x40]))
        g = start("bad-state", ["--restore", corrupt])
        rc = g.wait_exit(60)
        need(rc == 1 and "corrupt" in open(g.logpath).read(), "corrupt state: status %d, %r" % (rc, open(g.logpath).read()[-300:]))
        with open(os.path.join(corrupt, "state"), "r+b") as f:
            f.truncate(1000)
        g = start("short-state", ["--restore", corrupt])
        rc = g.wait_exit(60)
        need(rc == 1 and "truncated" in open(g.logpath).read(), "truncated state: status %d, %r" % (rc, open(g.logpath).read()[-300:]))

        # Three restores from the same snapshot, each from the disk as it was.
        for k in (1, 2, 3):
            snap_copy_into(disk_at_snap, disk)
            if k == 2:
                # --restore-paused: nothing runs until cont.
                g = start("restore%d" % k, ["--restore", snapdir, "--restore-paused"])
                rq = g.connect()
                end = time.time() + 60
                while rq.execute("query-status")["return"]["status"] != "paused":
                    need(time.time() < end, "--restore-paused: never paused (%r)" % rq.execute("query-status"))
                    time.sleep(0.1)
                time.sleep(2)
                need(snap_ticks(g) == [], "--restore-paused: the guest ran before cont")
                need(rq.execute("cont") == {"return": {}}, "cont after --restore-paused failed")
            else:
                g = start("restore%d" % k, ["--restore", snapdir])
            first = snap_wait_ticks(g, 1, "a tick after restore %d" % k)[0]
            t_restore = time.time() - g.t0
            need(first[0] in (last + 1, last + 2),
                 "restore %d: the counter went from %d to %d (reset or gap)" % (k, last, first[0]))
            t = snap_wait_ticks(g, 6, "6 ticks after restore %d" % k)
            nums = [x[0] for x in t]
            need(nums == list(range(first[0], first[0] + len(nums))), "restore %d: ticks %r" % (k, nums))
            rngs = [x[1] for x in t]
            need(len(set(rngs)) == len(rngs), "restore %d: virtio-rng repeats itself: %r" % (k, rngs))
            msg = "hello-from-host-%d" % k
            g.proc.stdin.write((msg + "\n").encode())
            g.proc.stdin.flush()
            g.wait_for(r"^EMBER-HVC-IN %s$" % msg, timeout=120, what="hvc0 input after restore %d" % k)
            end = time.time() + 60
            while b"hvc-out %d" % nums[-1] not in g.drain.data:
                need(time.time() < end, "restore %d: hvc0 output stopped (%r)" % (k, g.drain.data[-200:]))
                time.sleep(0.05)
            print("restore %d%s: first tick %.2f s after ember started (cold boot: user space at %.2f s, "
                  "first tick at %.2f s); counter %d -> %d" % (k, " (paused, then cont)" if k == 2 else "",
                                                               t_restore, t_user, t_boot, last, first[0]))
            if k < 3:
                g.kill()
                continue
            g.proc.stdin.write(b"stop\n")
            g.proc.stdin.flush()
            rc = g.wait_exit()
            need(rc == 0, "poweroff after restore: ember exited with %d" % rc)
            oks = g.checks()
            expect_checks(oks, ["records_count", "snap_umount"])
            ticks = int(g.info("ticks"))
            r = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, text=True)
            need(r.returncode == 0, "e2fsck -fn after restore: status %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
            nrec = snap_records(disk)
            need(nrec == ticks, "%d records on disk, the guest counted %d" % (nrec, ticks))
            print("snapshot: %d records intact across the snapshot (at %d), e2fsck clean" % (nrec, last))
    except Failure:
        for g in guests[1:]:
            g.dump()
        raise
    finally:
        for g in guests[1:]:
            g.kill()
        # Sockets of killed processes, and the memory files, stay
        # out of EMBER_LINUX_KEEP copies.
        for g in guests:
            if g.sock and os.path.exists(g.sock):
                os.unlink(g.sock)
        for d in (snapdir, os.path.join(tmpd, "corrupt")):
            if os.path.lexists(os.path.join(d, "memory")):
                os.unlink(os.path.join(d, "memory"))


def test_vsock(tmpd):
    """virtio-vsock on vhost-vsock: 1 MiB each way between the guest and a host
    AF_VSOCK socket, checked by SHA-256."""
    import hashlib
    import socket
    import threading
    need(os.path.exists("/dev/vhost-vsock"), "/dev/vhost-vsock is missing (modprobe vhost_vsock)")
    cid = 1000 + os.getpid() % 100000
    n = 1 << 20
    want = hashlib.sha256(pattern(n)).hexdigest()
    srv = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    srv.bind((socket.VMADDR_CID_ANY, 5000))
    srv.listen(1)
    srv.settimeout(BOOT_TIMEOUT)
    got = {}

    def serve():
        try:
            c, addr = srv.accept()
            c.settimeout(120)
            total, digest = recv_hash(c)
            c.close()
            got.update(peer=addr[0], hash=digest, total=total)
        except OSError as e:
            got["error"] = str(e)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    g = Guest(tmpd, "vsock", extra=["--vsock", "cid=%d" % cid])
    yield g
    try:
        g.wait_for(r"^EMBER-READY vsock-listen", what="the guest's vsock listener")
        t.join(60)
        need("error" not in got, "host listener: %s" % got.get("error"))
        need(got.get("peer") == cid, "guest -> host: peer CID %r, want %d" % (got.get("peer"), cid))
        need(got.get("total") == n and got.get("hash") == want,
             "guest -> host: %r bytes, hash %r, want %d bytes %s" % (got.get("total"), got.get("hash"), n, want))
        c = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        c.settimeout(120)
        c.connect((cid, 5001))
        c.sendall(pattern(n))
        c.close()
        rc = g.wait_exit()
    finally:
        srv.close()
    oks = g.checks()
    expect_checks(oks, ["vsock_dev", "vsock_g2h"])
    need(g.info("vsock_g2h") == want, "the guest's pattern hash %r is not the host's %s" % (g.info("vsock_g2h"), want))
    need(g.info("vsock_h2g") == want, "host -> guest: the guest got hash %r, want %s" % (g.info("vsock_h2g"), want))
    need(rc == 0, "ember exited with %d" % rc)


TESTS = {
    "qmp_churn": qmp_churn,
    "smp_1_baseline": lambda d: smp(d, 1, "baseline"),
    "smp_2_baseline": lambda d: smp(d, 2, "baseline"),
    "smp_4_baseline": lambda d: smp(d, 4, "baseline"),
    "smp_1_host": lambda d: smp(d, 1, "host"),
    "smp_2_host": lambda d: smp(d, 2, "host"),
    "smp_4_host": lambda d: smp(d, 4, "host"),
    "blk": test_blk,
    "devices": test_devices,
    "reboot_exit": lambda d: reboot(d, "exit"),
    "reboot_restart": lambda d: reboot(d, "restart"),
    "qmp_powerdown": qmp_powerdown,
    "qmp_stopcont": qmp_stopcont,
    "qmp_panic": qmp_panic,
    "snapshot": test_snapshot,
    "balloon": test_balloon,
    "balloon_reporting": test_balloon_reporting,
    "vsock": test_vsock,
}

# More tests live in tests/linux/cases/*.py, one file per area, run in this
# module's namespace (they use Guest, Failure, need, ... directly) and add
# themselves with TESTS.update({...}).
for _case in sorted(os.listdir(os.path.join(HERE, "cases"))):
    if _case.endswith(".py"):
        _path = os.path.join(HERE, "cases", _case)
        with open(_path) as _f:
            exec(compile(_f.read(), _path, "exec"), globals())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: suite.py TEST | --list")
    if sys.argv[1] == "--list":
        print("\n".join(TESTS))
        return 0
    name = sys.argv[1]
    if name not in TESTS:
        sys.exit("suite.py: no test named '%s' (--list)" % name)
    for p in (KERNEL, INITRD):
        if not os.path.exists(p):
            print("FAIL: %s is missing: run tests/linux/build-guest.sh" % p, file=sys.stderr)
            return 1
    tmpd = tempfile.mkdtemp(prefix="ember-linux-%s." % name)
    g = None
    t0 = time.time()
    try:
        gen = TESTS[name](tmpd)
        g = next(gen)
        for _ in gen:
            pass
    except (Failure, OSError, EOFError, ValueError, KeyError) as e:
        # A QMP socket timing out (OSError) means Ember stopped answering.
        if g:
            g.dump()
        what = e if isinstance(e, Failure) else "%s: %s (Ember stopped answering or misbehaved)" % (type(e).__name__, e)
        print("FAIL: %s: %s" % (name, what), file=sys.stderr)
        keep(name, tmpd)
        return 1
    finally:
        if g:
            g.kill()
    print("PASS: linux/%s in %.1f s" % (name, time.time() - t0))
    keep(name, tmpd)
    return 0


def keep(name, tmpd):
    k = os.environ.get("EMBER_LINUX_KEEP")
    if k:
        dst = os.path.join(k, name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(tmpd, dst, ignore=shutil.ignore_patterns("*.img"))
    shutil.rmtree(tmpd, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
