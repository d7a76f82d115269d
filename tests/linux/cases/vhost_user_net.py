# vhost-user-net with Linux's own virtio_net, served by vu-test-backend
# (tests/vhost-user/vu_backend.c), which bridges the rings to a tap in the
# test's network namespace. Uses net.py's NetNS and net_bulk (loaded first)
# and the guest's t_net with ember.vu=1. Runs in suite.py's namespace.


def _wait_socket(path, proc, what, timeout=20):
    """Until a backend process has made its listening socket."""
    end = time.time() + timeout
    while not os.path.exists(path):
        need(proc.poll() is None, "%s exited with %s" % (what, proc.returncode))
        need(time.time() < end, "%s made no socket in %d s" % (what, timeout))
        time.sleep(0.05)


def _vu_backend_start(ns, tmpd, sock, tap, host_ip, n):
    exe = os.environ.get("EMBER_VU_BACKEND")
    need(exe and os.access(exe, os.X_OK), "EMBER_VU_BACKEND (vu-test-backend) is not set or not built: %r" % exe)
    if os.path.exists(sock):
        os.unlink(sock)
    p = ns.spawn([exe, "--socket", sock, "--tap", tap], open(os.path.join(tmpd, "vu-backend%d.log" % n), "w"))
    _wait_socket(sock, p, "vu-test-backend")
    # The tap lives as long as the backend: address it each time.
    ns.ip("addr", "add", host_ip + "/24", "dev", tap)
    ns.ip("link", "set", tap, "up")
    return p


def test_vhost_user_net(tmpd):
    """Ping and a stream each way by SHA-256 through the backend; then the
    backend is killed and restarted: Ember reconnects and 1 MiB reaches the
    guest intact."""
    ns = NetNS("vu")
    g = None
    subnet = "10.%d.4" % (100 + os.getpid() % 100)
    host_ip = subnet + ".1"
    sock = os.path.join(tmpd, "vu-net.sock")
    mb = max(1, NET_BULK_MB // 4)
    try:
        be = _vu_backend_start(ns, tmpd, sock, "vutap0", host_ip, 1)
        cmdline = "ember.ip=%s.2/24 ember.peer=%s ember.mb=%d ember.streams=1 ember.vu=1" % (
            subnet, host_ip, mb)
        g = Guest(tmpd, "net", api=True, cmdline=cmdline,
                  extra=["--vhost-user-net", "socket=%s,mac=52:54:00:12:34:77,reconnect=200" % sock])
        yield g
        q = g.connect()
        g2h, h2g = net_bulk(g, ns, host_ip, 1, mb)
        st = q.cmd("query-vhost-user")
        need(len(st) == 1 and st[0]["type"] == "vhost-user-net" and st[0]["state"] == "running"
             and st[0]["socket"] == sock, "query-vhost-user: %r" % st)
        need(st[0]["acked-features"] & (1 << 32), "VERSION_1 not acked to the backend: %r" % st[0])
        need(g.info("net_mac") == "52:54:00:12:34:77", "the guest's MAC is %r" % g.info("net_mac"))
        has = _features(g)
        need(has(NETF_STATUS) and not has(NETF_MRG_RXBUF) and not has(NETF_CSUM),
             "features: STATUS is Ember's; the backend offers no MRG_RXBUF or CSUM: %s" % g.info("net_features"))
        # The backend dies and comes back; the rings resume.
        g.wait_for(r"^EMBER-READY vu-reconnect", timeout=300, what="the guest's reconnect step")
        t0 = time.time()
        be.kill()
        be.wait()
        end = time.time() + 10
        while q.cmd("query-vhost-user")[0]["state"] != "disconnected":
            need(time.time() < end, "query-vhost-user never said disconnected: %r" % q.cmd("query-vhost-user"))
            time.sleep(0.1)
        time.sleep(1)
        be = _vu_backend_start(ns, tmpd, sock, "vutap0", host_ip, 2)
        end = time.time() + 30
        while True:
            st = q.cmd("query-vhost-user")[0]
            if st["state"] == "running" and st["reconnects"] == 1:
                break
            need(time.time() < end, "no reconnect within 30 s: %r" % st)
            time.sleep(0.1)
        outage = time.time() - t0
        guest_ip = g.info("net_ip")
        ping = _run(*ns.exec_prefix(), "busybox", "ping", "-c", "3", "-W", "10", guest_ip, check=False)
        need(" 0% packet loss" in ping, "host -> guest ping after the reconnect: %s" % ping.strip()[-200:])
        sent = {}
        _send_pattern(ns, guest_ip, 5200, 1 << 20, sent, 0)
        need(sent.get(0) == "sent", "host -> guest after the reconnect: %s" % sent.get(0))
        g.wait_for(r"^EMBER-INFO net_vu_after=.*\n", timeout=300, what="the guest's hash after the reconnect")
        want = hashlib.sha256(pattern(1 << 20)).hexdigest()
        need(g.info("net_vu_after") == want, "after the reconnect the guest hashed %r, want %s"
             % (g.info("net_vu_after"), want))
        rc = g.wait_exit()
        oks = g.checks()
        expect_checks(oks, ["net_dev", "net_ping_host", "net_g2h_sent"])
        need(g.info("net_errors") == "0 0", "the guest counted rx/tx errors: %s" % g.info("net_errors"))
        need(rc == 0, "ember exited with %d" % rc)
        print("vhost_user_net: guest->host %.2f MiB/s, host->guest %.2f MiB/s (%d MiB); backend restart: "
              "running again %.1f s after the kill; then ping and 1 MiB by hash" % (g2h, h2g, mb, outage))
    finally:
        if g:
            g.kill()
        ns.close()


def test_vhost_user_net_bad(tmpd):
    """Backends that fail at the guest's DRIVER_OK, under Linux's virtio_net:
    one never answers SET_MEM_TABLE (the device goes FAILED and NEEDS_RESET
    after that request's 30 s deadline), one hangs up at it every time (Ember keeps
    reconnecting). The guest keeps running, Ember keeps serving QMP, and
    neither backend's socket is left behind."""
    exe = os.environ.get("EMBER_VU_BACKEND")
    need(exe and os.access(exe, os.X_OK), "EMBER_VU_BACKEND (vu-test-backend) is not set or not built: %r" % exe)
    socks = [os.path.join(tmpd, "hang.sock"), os.path.join(tmpd, "close.sock")]
    bes = []
    g = None
    try:
        for sock, mode in zip(socks, ("hang-mid-setup", "close-mid-setup")):
            bes.append(subprocess.Popen([exe, "--socket", sock, "--mode", mode],
                                        stdout=open(os.path.join(tmpd, mode + ".log"), "w"),
                                        stderr=subprocess.STDOUT))
        for sock, p in zip(socks, bes):
            _wait_socket(sock, p, "vu-test-backend")
        g = Guest(tmpd, "ticker", api=True,
                  extra=["--vhost-user-net", "socket=%s" % socks[0],
                         "--vhost-user-net", "socket=%s,reconnect=500" % socks[1]])
        yield g
        g.wait_for(r"^EMBER-READY ticker", what="the guest's user space")
        q = g.connect()
        end = time.time() + 60
        while True:
            st = q.cmd("query-vhost-user")
            if st[0]["state"] == "failed" and st[1]["reconnects"] >= 2:
                break
            need(time.time() < end, "query-vhost-user after 60 s: %r" % st)
            time.sleep(0.2)
        need("SET_MEM_TABLE: no reply within 30000 ms" in st[0].get("error", ""),
             "the hanging backend's error: %r" % st[0])
        need(st[1]["state"] in ("disconnected", "connected") and
             "SET_MEM_TABLE" in st[1].get("error", "") + open(g.logpath).read(),
             "the hanging-up backend: %r" % st[1])
        need(q.cmd("query-status").get("status") == "running", "the VM is not running")
        n = len(re.findall(r"^EMBER-TICK", g.text(), re.M))
        g.wait_for(r"^EMBER-TICK %d$" % (n + 5), timeout=60, what="the guest ticking on")
        log = open(g.logpath, errors="replace").read()
        lines = [l for l in log.splitlines() if "vhost-user-net1" in l]
        need(len(lines) <= 12, "%d log lines about the crash-looping backend: not rate-limited" % len(lines))
        q.cmd("quit")
        rc = g.wait_exit()
        need(rc == 0, "quit: ember exited with %d" % rc)
        print("vhost_user_net_bad: %r; %r; %d log lines for %d reconnects" % (
            st[0].get("error"), st[1].get("error"), len(lines), st[1]["reconnects"]))
    finally:
        if g:
            g.kill()
        for p in bes:
            p.kill()
            p.wait()


def test_vhost_user_net_dpdk(tmpd):
    """The real peer: DPDK's testpmd (Debian's dpdk-dev) with its vhost PMD
    on the socket and its tap PMD in the test's namespace, io forwarding
    between them. Ping both ways and a stream each way by SHA-256 pass
    through testpmd; query-vhost-user shows what DPDK negotiated."""
    exe = shutil.which("dpdk-testpmd")
    need(exe, "dpdk-testpmd is not installed (Debian package dpdk-dev; scripts/deps.sh installs it)")
    ns = NetNS("dp")
    g = None
    subnet = "10.%d.5" % (100 + os.getpid() % 100)
    host_ip = subnet + ".1"
    sock = os.path.join(tmpd, "dpdk.sock")
    mb = max(1, NET_BULK_MB // 4)
    log = open(os.path.join(tmpd, "testpmd.log"), "w")
    try:
        # No hugepages or PCI devices; two lcores on the one CPU there may be
        # (the main one and a forwarding one); a small mbuf pool.
        tp = subprocess.Popen(list(ns.exec_prefix()) + [
            exe, "--lcores", "0@0,1@0", "--no-huge", "-m", "512", "--no-pci",
            "--file-prefix", "ember-%d" % os.getpid(),
            "--vdev", "net_vhost0,iface=%s" % sock, "--vdev", "net_tap0,iface=dptap0",
            "--", "--forward-mode=io", "--auto-start", "--total-num-mbufs=8192"],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        ns.procs.append(tp)    # testpmd runs until its stdin closes
        _wait_socket(sock, tp, "dpdk-testpmd (see testpmd.log)", 120)
        ns.ip("addr", "add", host_ip + "/24", "dev", "dptap0")
        ns.ip("link", "set", "dptap0", "up")
        cmdline = "ember.ip=%s.2/24 ember.peer=%s ember.mb=%d ember.streams=1" % (subnet, host_ip, mb)
        g = Guest(tmpd, "net", api=True, cmdline=cmdline,
                  extra=["--vhost-user-net", "socket=%s" % sock])
        yield g
        q = g.connect()
        g2h, h2g = net_bulk(g, ns, host_ip, 1, mb)
        st = q.cmd("query-vhost-user")[0]
        need(st["state"] == "running" and st["acked-features"] & (1 << 32), "query-vhost-user: %r" % st)
        rc = g.wait_exit()
        oks = g.checks()
        expect_checks(oks, ["net_dev", "net_ping_host", "net_g2h_sent"])
        need(rc == 0, "ember exited with %d" % rc)
        print("vhost_user_net_dpdk: through dpdk-testpmd (io forwarding, vhost PMD <-> tap PMD): "
              "guest->host %.2f MiB/s, host->guest %.2f MiB/s (%d MiB); DPDK offered %#x, acked %#x" %
              (g2h, h2g, mb, st["features"], st["acked-features"]))
    finally:
        if g:
            g.kill()
        ns.close()
        log.close()


TESTS.update({"vhost_user_net": test_vhost_user_net, "vhost_user_net_bad": test_vhost_user_net_bad,
              "vhost_user_net_dpdk": test_vhost_user_net_dpdk})
