#!/usr/bin/env python3
"""bench/vhost-user, inside a KVM host (run.sh gets there): O_DIRECT block
I/O from inside the guest (blkbench on Linux AIO, t_vu_bench) on one disk
served four ways: Ember --vhost-user-blk with qemu-storage-daemon
(ember-vu), Ember's virtio-blk on the same image (ember-native), QEMU's
vhost-user-blk-pci with the same daemon (qemu-vu) and QEMU's virtio-blk-pci
(qemu-native). The image is on the host's page cache on both sides (the
daemon and Ember's --disk both use writeback caching). Prints a markdown
table of medians and the ratios the issue asks for."""
import os
import re
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(SRC, "examples", "linux", "out")
KERNEL = os.path.join(OUT, "vmlinuz")
INITRD = os.path.join(OUT, "initramfs-suite.cpio.gz")
EMBER = os.environ.get("EMBER", os.path.join(SRC, "build", "ember"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
SECS = int(os.environ.get("SECS", "5"))
RUNS = int(os.environ.get("RUNS", "3"))
SIZE_MB = int(os.environ.get("SIZE_MB", "256"))
CONFIGS = os.environ.get("CONFIGS", "ember-vu ember-native qemu-vu qemu-native").split()
CASES = ["read 1048576 8", "write 1048576 8", "randread 4096 16", "randwrite 4096 16",
         "randread 4096 1"]


def start_daemon(tmpd, image):
    sock = os.path.join(tmpd, "vu.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    log = open(os.path.join(tmpd, "qsd.log"), "a")
    p = subprocess.Popen(["qemu-storage-daemon", "--blockdev",
                          "driver=file,node-name=f,filename=%s" % image, "--export",
                          "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=%s,"
                          "writable=on,num-queues=1" % sock], stdout=log, stderr=log)
    end = time.time() + 30
    while not os.path.exists(sock):
        if p.poll() is not None or time.time() > end:
            raise RuntimeError("qemu-storage-daemon did not start (see %s)" % log.name)
        time.sleep(0.05)
    return p, sock


def one(cfg, tmpd, image):
    serial = os.path.join(tmpd, "serial-%s.log" % cfg)
    if os.path.exists(serial):
        os.unlink(serial)
    cmdline = "console=ttyS0 quiet panic=-1 ember.test=vu_bench ember.cpus=1 ember.secs=%d" % SECS
    qsd, sock = start_daemon(tmpd, image) if cfg.endswith("-vu") else (None, None)
    if cfg == "ember-vu":
        dev = ["--vhost-user-blk", "socket=%s" % sock]
    elif cfg == "ember-native":
        dev = ["--disk", "path=%s,cache=writeback" % image]
    elif cfg == "qemu-vu":
        dev = ["-object", "memory-backend-memfd,id=mem,size=512M,share=on",
               "-machine", "memory-backend=mem", "-chardev", "socket,id=c,path=%s" % sock,
               "-device", "vhost-user-blk-pci,chardev=c,num-queues=1"]
    else:
        dev = ["-drive", "file=%s,if=none,id=d,format=raw,cache=writeback,aio=threads" % image,
               "-device", "virtio-blk-pci,drive=d"]
    if cfg.startswith("ember"):
        argv = [EMBER, "run", "--kernel", KERNEL, "--initrd", INITRD, "--cmdline", cmdline,
                "--cpus", "1", "--memory", "512M", "--console", "file:" + serial] + dev
    else:
        argv = [QEMU, "-enable-kvm", "-M", "q35", "-cpu", "host", "-m", "512", "-smp", "1",
                "-nodefaults", "-display", "none", "-no-reboot", "-kernel", KERNEL, "-initrd", INITRD,
                "-append", cmdline, "-serial", "file:" + serial] + dev
    log = open(os.path.join(tmpd, "vmm-%s.log" % cfg), "w")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        p.wait(timeout=300 + 10 * SECS * len(CASES))
        text = open(serial, errors="replace").read()
        if "EMBER-CHECK" in text and " FAIL" in text:
            raise RuntimeError("guest: %s" % re.findall(r"^EMBER-CHECK .* FAIL.*$", text, re.M))
        res = {}
        for m in re.finditer(r"^EMBER-BENCH blkbench (\w+ \d+ \d+): (\d+) iops, ([\d.]+) MB/s", text, re.M):
            res[m.group(1)] = (int(m.group(2)), float(m.group(3)))
        if len(res) != len(CASES):
            log.flush()
            vmm = open(log.name, errors="replace").read()
            raise RuntimeError("%d of %d cases ran (exit %d): serial ...%s\nvmm log ...%s" % (
                len(res), len(CASES), p.returncode, text[-600:], vmm[-600:]))
        return res
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if qsd:
            qsd.terminate()
            qsd.wait()
        log.close()


def med(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    res = {}
    # /tmp: a tmpfs in the nested L1 (unix sockets cannot live on its 9p /var/tmp).
    with tempfile.TemporaryDirectory(dir="/tmp") as tmpd:
        image = os.path.join(tmpd, "bench.img")
        with open(image, "wb") as f:
            chunk = bytes(range(256)) * 4096
            for _ in range(SIZE_MB):
                f.write(chunk)
        for r in range(RUNS):
            order = CONFIGS if r % 2 == 0 else list(reversed(CONFIGS))
            for cfg in order:
                try:
                    got = one(cfg, tmpd, image)
                    res.setdefault(cfg, []).append(got)
                    print("%s run %d: %s" % (cfg, r, ", ".join("%s %d iops %.1f MB/s" % (c, v[0], v[1])
                                                               for c, v in got.items())), flush=True)
                except Exception as e:
                    print("%s run %d: FAILED %s" % (cfg, r, e), flush=True)
    cols = [c for c in CONFIGS if res.get(c)]
    print("\n| case | " + " | ".join(cols) + " | ember-vu/qemu-vu | ember-vu/ember-native |")
    print("|---" * (len(cols) + 3) + "|")
    for case in [" ".join(c.split()) for c in CASES]:
        rw, bs, qd = case.split()
        big = int(bs) >= 1 << 20
        vals = {}
        for c in cols:
            vals[c] = med([run[case][1] if big else run[case][0] for run in res[c] if case in run])
        unit = "MB/s" if big else "IOPS"
        row = "| %s %s QD%s (%s) | " % (rw, "1M" if big else "4k", qd, unit)
        row += " | ".join(("%.1f" if big else "%.0f") % vals[c] for c in cols)
        ratio = lambda a, b: ("%.2f" % (vals[a] / vals[b])) if a in vals and b in vals and vals[b] else "-"
        row += " | %s | %s |" % (ratio("ember-vu", "qemu-vu"), ratio("ember-vu", "ember-native"))
        print(row)
    print("\n%d s per case, median of %d boots per config, 1 vCPU, 512 MiB guest, %d MiB image in "
          "the host's page cache" % (SECS, RUNS, SIZE_MB))
    return 0 if all(res.get(c) for c in CONFIGS) else 1


if __name__ == "__main__":
    sys.exit(main())
