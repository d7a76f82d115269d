#!/usr/bin/env python3
"""bench/vsock, inside a KVM host (run.sh gets there): stream throughput of
virtio-vsock guest->host and host->guest for Ember's unix-socket bridge
(--vsock cid=N,uds=PATH), Ember on vhost-vsock (--vsock cid=N) and QEMU's
vhost-vsock-pci, same kernel, same initramfs (the Linux suite's), same guest
program (vsock-bridge, t_vsock_bench). Prints a markdown table."""
import os
import re
import socket
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
MB = int(os.environ.get("MB", "64"))
RUNS = int(os.environ.get("RUNS", "2"))
CONFIGS = os.environ.get("CONFIGS", "ember-uds ember-vhost qemu-vhost").split()


def wait_serial(path, regex, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with open(path, errors="replace") as f:
                if re.search(regex, f.read(), re.M):
                    return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the VM exited (%d) before %s" % (proc.returncode, regex))
        time.sleep(0.05)
    raise RuntimeError("timeout waiting for %s" % regex)


def drain(c):
    n = 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            return n
        n += len(b)


def one(cfg, tmpd, cid):
    serial = os.path.join(tmpd, "serial-%s.log" % cfg)
    cmdline = "console=ttyS0 quiet panic=-1 ember.test=vsock_bench ember.cpus=1 ember.mb=%d" % MB
    path = os.path.join(tmpd, "v.sock")
    if cfg == "ember-uds":
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path + "_5000"):
            os.unlink(path + "_5000")
        srv.bind(path + "_5000")
        vsock = "cid=%d,uds=%s" % (cid, path)
    else:
        srv = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        srv.bind((socket.VMADDR_CID_ANY, 5000))
        vsock = "cid=%d" % cid
    srv.listen(1)
    srv.settimeout(600)
    if cfg.startswith("ember"):
        argv = [EMBER, "run", "--kernel", KERNEL, "--initrd", INITRD, "--cmdline", cmdline,
                "--cpus", "1", "--memory", "512M", "--console", "file:" + serial, "--vsock", vsock]
    else:
        argv = [QEMU, "-enable-kvm", "-M", "q35", "-cpu", "host", "-m", "512", "-smp", "1",
                "-nodefaults", "-display", "none", "-no-reboot", "-kernel", KERNEL, "-initrd", INITRD,
                "-append", cmdline, "-serial", "file:" + serial,
                "-device", "vhost-vsock-pci,guest-cid=%d" % cid]
    log = open(os.path.join(tmpd, "vmm-%s.log" % cfg), "w")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        c, _ = srv.accept()
        t0 = time.time()
        n = drain(c)
        g2h = n / (time.time() - t0) / 1e6
        c.close()
        if n != MB << 20:
            raise RuntimeError("%s: guest->host moved %d bytes, want %d" % (cfg, n, MB << 20))
        wait_serial(serial, r"^EMBER-READY vsock-bench-listen", p)
        data = bytes(1 << 20)
        for attempt in range(50):
            try:
                if cfg == "ember-uds":
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    c.connect(path)
                    c.sendall(b"CONNECT 5001\n")
                    line = b""
                    while not line.endswith(b"\n"):
                        b = c.recv(1)
                        if not b:
                            raise ConnectionResetError("closed before OK")
                        line += b
                    if not line.startswith(b"OK"):
                        raise ConnectionResetError(line)
                else:
                    c = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
                    c.connect((cid, 5001))
                break
            except OSError:
                c.close()
                time.sleep(0.1)
        c.settimeout(600)
        t0 = time.time()
        for _ in range(MB):
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        drain(c)	# the guest closes once it has read everything
        h2g = MB / (time.time() - t0) * 1.048576
        c.close()
        p.wait(timeout=120)
        return g2h, h2g
    finally:
        srv.close()
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()


def main():
    res = {}
    # /tmp: a tmpfs in the nested L1 (unix sockets cannot live on its 9p /var/tmp).
    with tempfile.TemporaryDirectory(dir="/tmp") as tmpd:
        for r in range(RUNS):
            order = CONFIGS if r % 2 == 0 else list(reversed(CONFIGS))
            for cfg in order:
                cid = 3000 + os.getpid() % 10000 + r
                try:
                    res.setdefault(cfg, []).append(one(cfg, tmpd, cid))
                    print("%s run %d: g2h %.1f MB/s, h2g %.1f MB/s" % ((cfg, r) + res[cfg][-1]), flush=True)
                except Exception as e:
                    print("%s run %d: FAILED %s" % (cfg, r, e), flush=True)
    print("\n| backend | guest->host MB/s | host->guest MB/s |\n|---|---|---|")
    for cfg in CONFIGS:
        v = res.get(cfg, [])
        if not v:
            print("| %s | failed | failed |" % cfg)
            continue
        g = sorted(x[0] for x in v)[len(v) // 2]
        h = sorted(x[1] for x in v)[len(v) // 2]
        print("| %s | %.1f | %.1f |" % (cfg, g, h))
    print("\n%d MiB per direction, median of %d boots each, 1 vCPU, 512 MiB guest" % (MB, RUNS))


if __name__ == "__main__":
    sys.exit(main())
