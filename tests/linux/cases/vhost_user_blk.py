# vhost-user-blk with Linux's own virtio_blk driver, served by Debian's
# qemu-storage-daemon (run in suite.py's namespace: Guest, need, ...).


class _StorageDaemon:
    """qemu-storage-daemon exporting images as vhost-user-blk on unix
    sockets; start() waits for every socket, kill() is SIGKILL."""

    def __init__(self, tmpd, exports):
        self.exe = shutil.which("qemu-storage-daemon")
        need(self.exe, "qemu-storage-daemon is not installed (Debian: qemu-system-x86)")
        self.tmpd = tmpd
        self.exports = exports  # (name, image, writable, queues)
        self.socks = [os.path.join(tmpd, "vu-%s.sock" % e[0]) for e in exports]
        self.proc = None
        self.starts = 0

    def start(self):
        argv = [self.exe]
        for i, (name, image, writable, queues) in enumerate(self.exports):
            argv += ["--blockdev", "driver=file,node-name=n%d,filename=%s,discard=unmap" % (i, image),
                     "--export", "type=vhost-user-blk,id=e%d,node-name=n%d,addr.type=unix,"
                     "addr.path=%s,writable=%s,num-queues=%d"
                     % (i, i, self.socks[i], "on" if writable else "off", queues)]
        for s in self.socks:
            if os.path.exists(s):
                os.unlink(s)
        self.starts += 1
        self.log = open(os.path.join(self.tmpd, "qsd%d.log" % self.starts), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.time() + 30
        while not all(os.path.exists(s) for s in self.socks):
            if self.proc.poll() is not None:
                raise Failure("qemu-storage-daemon exited with %d: %s" % (
                    self.proc.returncode, open(self.log.name).read()[-400:]))
            need(time.time() < end, "qemu-storage-daemon made no sockets in 30 s")
            time.sleep(0.05)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _vu_state(q, idx=0):
    return q.cmd("query-vhost-user")[idx]


def _vu_wait(q, what, cond, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        st = _vu_state(q)
        if cond(st):
            return st
        time.sleep(0.1)
    raise Failure("query-vhost-user: %s not reached in %d s (last: %r)" % (what, timeout, st))


def test_vhost_user_blk(tmpd):
    """The native blk checks on three vhost-user-blk disks (64 MiB data with
    2 queues, 16 MiB read-only, 48 MiB file system) and query-vhost-user."""
    data = os.path.join(tmpd, "data.img")
    ro = os.path.join(tmpd, "ro.img")
    fs = os.path.join(tmpd, "fs.img")
    make_image(data, 64 << 20)
    make_image(ro, 16 << 20, pattern(1 << 20))
    make_image(fs, 48 << 20)
    qsd = _StorageDaemon(tmpd, [("data", data, True, 2), ("ro", ro, False, 1), ("fs", fs, True, 1)])
    qsd.start()
    try:
        g = Guest(tmpd, "vhost_user_blk", cpus=2, api=True,
                  extra=["--vhost-user-blk", "socket=%s,queues=2" % qsd.socks[0],
                         "--vhost-user-blk", "socket=%s" % qsd.socks[1],
                         "--vhost-user-blk", "socket=%s" % qsd.socks[2]])
        yield g
        g.wait_for(r"^EMBER-USERSPACE", what="the guest's user space")
        q = g.connect()
        info = q.cmd("query-vhost-user")
        g.wait_for(r"^EMBER-CHECK fs_files", what="the guest's block checks")
        late = q.cmd("query-vhost-user")
        rc = g.wait_exit()
    finally:
        qsd.stop()
    oks = g.checks()
    expect_checks(oks, ["data_queues", "cache_type_write_back"] + BLK_CHECKS)
    need(rc == 0, "poweroff: ember exited with %d, not 0" % rc)
    need([d.get("id") for d in info] == ["vhost-user-blk0", "vhost-user-blk1", "vhost-user-blk2"],
         "query-vhost-user ids: %r" % info)
    for d, sock, queues in zip(info, qsd.socks, (2, 1, 1)):
        need(d.get("type") == "vhost-user-blk" and d.get("socket") == sock and
             d.get("state") == "running" and d.get("queues") == queues and
             d.get("reconnects") == 0 and "error" not in d, "query-vhost-user: %r" % d)
        # The driver's features went to the backend: VERSION_1 at least.
        need(d.get("acked-features", 0) & (1 << 32), "acked features %#x lack VERSION_1"
             % d.get("acked-features", 0))
    verify_blk_images(g, data, ro, fs)
    need(g.info("cache_type_before") == "write through",
         "the daemon's disk started as %r, not write through" % g.info("cache_type_before"))
    print("vhost_user_blk: %d guest checks, image contents, hole and e2fsck verified; serial %r; "
          "protocol features %#x; interrupts relayed by Ember (not irqfd): %s" % (
              len(oks), g.info("serial"), info[0].get("protocol-features"),
              [d.get("relayed-interrupts") for d in late]))


def test_vhost_user_blk_reconnect(tmpd):
    """The guest writes numbered 4 KiB records (O_DIRECT, flushed) while
    qemu-storage-daemon is killed (SIGKILL) and restarted twice: no write
    fails, Ember reconnects each time, and every record the guest wrote is
    in the image, in place, once."""
    data = os.path.join(tmpd, "data.img")
    make_image(data, 64 << 20)
    qsd = _StorageDaemon(tmpd, [("data", data, True, 1)])
    qsd.start()
    outages = []
    try:
        g = Guest(tmpd, "vhost_user_blk_reconnect", cpus=1, api=True, cmdline="ember.secs=45",
                  extra=["--vhost-user-blk", "socket=%s,reconnect=200" % qsd.socks[0]])
        yield g
        g.wait_for(r"^EMBER-READY vu-writing", what="the guest's writer")
        q = g.connect()
        for n in (1, 2):
            # Kill while records flow: the count must be moving.
            g.wait_for(r"^EMBER-INFO vu_records_so_far=%d$" % (50 * (2 * n - 1)), timeout=120,
                       what="the guest writing records")
            t0 = time.time()
            qsd.kill()
            _vu_wait(q, "disconnected", lambda st: st["state"] == "disconnected", 10)
            time.sleep(1)
            qsd.start()
            st = _vu_wait(q, "reconnect %d" % n,
                          lambda st: st["state"] == "running" and st["reconnects"] == n, 30)
            outages.append(time.time() - t0)
        rc = g.wait_exit()
    finally:
        qsd.stop()
    oks = g.checks()
    expect_checks(oks, ["records_written", "records_some", "no_io_error", "records_read_back"])
    need(rc == 0, "poweroff: ember exited with %d, not 0" % rc)
    n = int(g.info("vu_records") or 0)
    need(n >= 200, "the guest wrote only %d records: both outages were not under load" % n)
    with open(data, "rb") as f:
        for i in range(n):
            f.seek(i * 4096)
            want = ("ember-record %08d\n" % i).encode().ljust(4096, b"\0")
            got = f.read(4096)
            need(got == want, "record %d in the image is %r" % (i, got[:24]))
        f.seek(n * 4096)
        need(f.read(4096) == bytes(4096), "a record past the last one (%d) is in the image" % n)
    print("vhost_user_blk_reconnect: %d records intact across 2 daemon restarts; outages "
          "(kill to running again) %s s; final state %r" % (n, ", ".join("%.1f" % o for o in outages), st))


TESTS.update({"vhost_user_blk": test_vhost_user_blk,
              "vhost_user_blk_reconnect": test_vhost_user_blk_reconnect})
