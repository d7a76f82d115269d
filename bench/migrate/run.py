#!/usr/bin/env python3
"""bench/migrate: live migration of the same Linux guest (the suite's kernel
and initramfs, ember.test=migbench) between two Ember processes and between
two QEMU processes (-M pc, virtio-blk-less), in one machine, over a unix
socket: total time and downtime as each VMM's query-migrate reports them,
for an idle guest and one rewriting DIRTY_MB MiB of tmpfs in a loop.
Run through bench/migrate/run.sh (it goes into the nested harness where
there is no VMX/SVM /dev/kvm). Environment: RUNS=3, MEM=512, DIRTY_MB=64."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from qmp_client import QMP  # noqa: E402

EMBER = os.environ.get("EMBER", os.path.join(SRC, "build", "ember"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
OUT = os.path.join(SRC, "examples", "linux", "out")
RUNS = int(os.environ.get("RUNS", "3"))
MEM = int(os.environ.get("MEM", "512"))
DIRTY = int(os.environ.get("DIRTY_MB", "64"))


def fail(msg):
    raise SystemExit("bench/migrate: " + msg)


def argv(vmm, d, tag, dirty, incoming=None):
    cmd = "console=ttyS0 quiet panic=-1 ember.test=migbench ember.dirty_mb=%d" % dirty
    serial = os.path.join(d, "%s.serial" % tag)
    sock = os.path.join(d, "%s.qmp" % tag)
    if vmm == "ember":
        a = [EMBER, "run", "--kernel", OUT + "/vmlinuz", "--initrd", OUT + "/initramfs-suite.cpio.gz",
             "--cmdline", cmd, "--cpus", "1", "--memory", "%dM" % MEM, "--cpu-model", "host",
             "--console", "file:" + serial, "--api-sock", sock]
        if incoming:
            a += ["--incoming", incoming]
    else:
        a = [QEMU, "-M", "pc", "-enable-kvm", "-cpu", "host", "-smp", "1", "-m", str(MEM), "-nodefaults",
             "-display", "none", "-no-reboot", "-serial", "file:" + serial, "-kernel", OUT + "/vmlinuz",
             "-initrd", OUT + "/initramfs-suite.cpio.gz", "-append", cmd,
             "-qmp", "unix:%s,server=on,wait=off" % sock]
        if incoming:
            a += ["-incoming", incoming]
    return a, serial, sock


def connect(sock, proc):
    end = time.time() + 60
    while not os.path.exists(sock):
        if proc.poll() is not None or time.time() > end:
            fail("no QMP socket %s" % sock)
        time.sleep(0.05)
    q = QMP(sock, fail, timeout=60)
    return q


def ticks(serial):
    try:
        return open(serial, errors="replace").read().count("EMBER-TICK")
    except FileNotFoundError:
        return 0


def ember_numbers(log, last):
    """Ember's 'migration ... completed: N MiB sent, P passes, downtime D ms,
    total T ms' log line."""
    import re
    m = re.search(r"completed: (\d+) MiB sent, (\d+) passes, downtime (\d+) ms, total (\d+) ms",
                  open(log).read())
    if not m:
        fail("no completion line in %s" % log)
    return {"status": "completed", "total-time": int(m.group(4)), "downtime": int(m.group(3)),
            "ram": {"transferred": int(m.group(1)) << 20, "dirty-sync-count": int(m.group(2))}}


def one(vmm, dirty, d):
    a, s_serial, s_sock = argv(vmm, d, "src", dirty)
    src = subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "src.log"), "w"))
    mig = os.path.join(d, "mig.sock")
    b, d_serial, d_sock = argv(vmm, d, "dst", dirty, "unix:" + mig)
    dst = subprocess.Popen(b, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "dst.log"), "w"))
    try:
        end = time.time() + 600
        while ticks(s_serial) < 10:
            if src.poll() is not None or time.time() > end:
                fail("%s: the source guest never ticked" % vmm)
            time.sleep(0.1)
        if dirty:
            time.sleep(3)   # the dirtying loop is running
        q = connect(s_sock, src)
        dq = connect(d_sock, dst) if vmm == "qemu" else None
        while not os.path.exists(mig):
            time.sleep(0.05)
        q.cmd("migrate-set-parameters", {"downtime-limit": 300})
        t0 = time.time()
        q.cmd("migrate", {"uri": "unix:" + mig})
        while True:
            try:
                st = q.cmd("query-migrate")
            except (EOFError, OSError):
                # Ember's source exits once done: its MIGRATION event says so,
                # and its log line has the numbers.
                ev = [e for e in q.events if e.get("event") == "MIGRATION"]
                if not ev or ev[-1]["data"]["status"] != "completed":
                    fail("%s: the source went away mid-migration" % vmm)
                st = ember_numbers(os.path.join(d, "src.log"), st)
                break
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        wall = time.time() - t0
        if st["status"] != "completed":
            fail("%s: %r" % (vmm, st))
        n = ticks(d_serial)
        end = time.time() + 120
        while ticks(d_serial) <= n + 2:
            if dst.poll() is not None or time.time() > end:
                fail("%s: the destination guest does not tick" % vmm)
            time.sleep(0.05)
        ram = st.get("ram", {})
        return dict(total=st.get("total-time"), downtime=st.get("downtime"), wall=wall * 1000,
                    mib=ram.get("transferred", 0) / 2**20, passes=ram.get("dirty-sync-count"))
    finally:
        for p in (src, dst):
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    for p in (EMBER, OUT + "/vmlinuz"):
        if not os.path.exists(p):
            fail("missing %s" % p)
    res = {}
    with tempfile.TemporaryDirectory(prefix="ember-migbench.") as d:
        for r in range(RUNS):
            for dirty in (0, DIRTY):
                for vmm in ("ember", "qemu"):
                    sub = os.path.join(d, "%s-%d-%d" % (vmm, dirty, r))
                    os.makedirs(sub)
                    x = one(vmm, dirty, sub)
                    res.setdefault((vmm, dirty), []).append(x)
                    print("run %d %s dirty=%d MiB: total %s ms, downtime %s ms, %.1f MiB sent, %s passes" %
                          (r + 1, vmm, dirty, x["total"], x["downtime"], x["mib"], x["passes"]), flush=True)
    print()
    print("%-7s %-9s %12s %14s %12s %8s" % ("vmm", "guest", "total ms", "downtime ms", "MiB sent", "passes"))
    for dirty in (0, DIRTY):
        for vmm in ("ember", "qemu"):
            xs = res[(vmm, dirty)]
            med = lambda k: statistics.median([x[k] for x in xs if x[k] is not None] or [float("nan")])
            print("%-7s %-9s %12.0f %14.0f %12.1f %8.0f" % (vmm, "idle" if not dirty else "dirty %d" % dirty,
                                                        med("total"), med("downtime"), med("mib"), med("passes")))
    for dirty in (0, DIRTY):
        e, q = res[("ember", dirty)], res[("qemu", dirty)]
        m = lambda xs, k: statistics.median([x[k] for x in xs])
        print("Ember/QEMU %s: total %.2f, downtime %.2f" % ("idle" if not dirty else "dirty",
                                                          m(e, "total") / m(q, "total"),
                                                          m(e, "downtime") / max(m(q, "downtime"), 1)))
    print("medians of %d runs; %d MiB guests, 1 vCPU, unix socket, downtime-limit 300 ms" % (RUNS, MEM))


if __name__ == "__main__":
    main()
