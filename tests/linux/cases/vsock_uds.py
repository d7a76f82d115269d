# virtio-vsock bridged to unix sockets (--vsock cid=N,uds=PATH): no
# /dev/vhost-vsock involved, Ember serves the queues itself.
# Guest side: tests/linux/init.d/vsock_uds.sh, tests/linux/guest-bin/vsock-bridge.c.


def _uds_both_ways(c, data, res):
    """Send data then SHUT_WR on c while reading it to EOF; hash what came."""
    import socket
    import threading
    c.settimeout(120)

    def tx():
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            res["txerr"] = str(e)
    t = threading.Thread(target=tx, daemon=True)
    t.start()
    try:
        res["total"], res["hash"] = recv_hash(c)
    except OSError as e:
        res["rxerr"] = str(e)
    t.join(120)
    c.close()


def _uds_connect(path, port):
    """Host-initiated: CONNECT <port>, returns the socket after "OK <n>"."""
    import socket
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(60)
    c.connect(path)
    c.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n") and len(line) < 64:
        b = c.recv(1)
        if not b:
            break
        line += b
    need(line.startswith(b"OK ") and line[3:-1].isdigit(),
         "CONNECT %d: the bridge answered %r, want b'OK <port>\\n'" % (port, line))
    return c


def _uds_rss(pid):
    """(VmRSS, RssAnon) in KiB. Guest RAM is a shared memfd mapping, so
    RssAnon is Ember's own heap and buffers; VmRSS also counts guest pages."""
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                vals[k] = int(v.split()[0])
    return vals.get("VmRSS", 0), vals.get("RssAnon", 0)


def test_vsock_uds(tmpd):
    """virtio-vsock on the unix-socket bridge: 1 MiB each way on a
    guest-initiated (PATH_5000) and a host-initiated (CONNECT 5001)
    connection, checked by SHA-256; then 32 guest connections that never
    read while the host writes to all of them: the writes stall (credit) and
    Ember's memory stays flat."""
    import hashlib
    import socket
    import threading
    cid = 1000 + os.getpid() % 100000
    n = 1 << 20
    data = pattern(n)
    want = hashlib.sha256(data).hexdigest()
    path = os.path.join(tmpd, "vsock.sock")
    need(len(path) < 90, "socket path %s is too long for AF_UNIX" % path)
    srvs = {}
    for port in (5000, 5002):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("%s_%d" % (path, port))
        s.listen(64)
        s.settimeout(BOOT_TIMEOUT)
        srvs[port] = s
    gi = {}

    def serve_gi():
        try:
            c, _ = srvs[5000].accept()
        except OSError as e:
            gi["error"] = str(e)
            return
        _uds_both_ways(c, data, gi)
    held = []

    def serve_hold():
        try:
            while len(held) < 32:
                c, _ = srvs[5002].accept()
                held.append(c)
        except OSError as e:
            gi["hold_error"] = str(e)
    t = threading.Thread(target=serve_gi, daemon=True)
    t.start()
    th = threading.Thread(target=serve_hold, daemon=True)
    th.start()
    g = Guest(tmpd, "vsock_uds", api=True, extra=["--vsock", "cid=%d,uds=%s" % (cid, path)])
    yield g
    try:
        g.wait_for(r"^EMBER-READY vsock-uds-listen", what="the guest's vsock listener")
        t.join(120)
        need("error" not in gi, "PATH_5000 listener: %s" % gi.get("error"))
        need(not gi.get("txerr") and not gi.get("rxerr"), "guest-initiated: %r" % gi)
        need(gi.get("total") == n and gi.get("hash") == want,
             "guest -> host (guest-initiated): %r bytes, hash %r, want %d bytes %s"
             % (gi.get("total"), gi.get("hash"), n, want))
        hi = {}
        _uds_both_ways(_uds_connect(path, 5001), data, hi)
        need(not hi.get("txerr") and not hi.get("rxerr"), "host-initiated: %r" % hi)
        need(hi.get("total") == n and hi.get("hash") == want,
             "guest -> host (host-initiated): %r bytes, hash %r, want %d bytes %s"
             % (hi.get("total"), hi.get("hash"), n, want))

        # Bounded memory: the guest holds 32 connections and reads none.
        g.wait_for(r"^EMBER-INFO vsock_uds_held=32", what="the guest's 32 idle connections")
        th.join(60)
        need(len(held) == 32, "PATH_5002 accepted %d connections, want 32 (%s)"
             % (len(held), gi.get("hold_error")))
        rss0 = _uds_rss(g.proc.pid)
        chunk = b"x" * 65536
        sent = [0] * len(held)
        for c in held:
            c.setblocking(False)
        deadline = time.time() + 10
        while time.time() < deadline:
            moved = False
            for i, c in enumerate(held):
                try:
                    sent[i] += c.send(chunk)
                    moved = True
                except BlockingIOError:
                    pass
            if not moved:
                time.sleep(0.1)
        rss1 = _uds_rss(g.proc.pid)
        total = sum(sent)
        print("vsock_uds: host wrote %d KiB into 32 unread connections; VmRSS %d -> %d KiB, "
              "RssAnon %d -> %d KiB" % (total >> 10, rss0[0], rss1[0], rss0[1], rss1[1]))
        # Per connection: the guest's 256 KiB credit plus the host's socket buffers.
        need(max(sent) < 4 << 20, "a host write went on to %d bytes: no backpressure" % max(sent))
        need(rss1[1] - rss0[1] < 4096, "Ember's RssAnon grew %d KiB while the guest read nothing"
             % (rss1[1] - rss0[1]))
        # QMP sees the table; a client that never sends its CONNECT line is
        # closed by the bridge's deadline (5 s), and counted.
        q = g.connect()
        info = q.cmd("x-query-vsock")
        need(len(info) == 1 and info[0].get("backend") == "uds" and info[0].get("cid") == cid
             and info[0].get("path") == path, "x-query-vsock: %r" % info)
        need(info[0].get("connections", 0) >= 32,
             "x-query-vsock: %r connections, the guest holds 32" % info[0].get("connections"))
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(path)
        silent.settimeout(15)
        t0 = time.time()
        try:
            got = silent.recv(16)
        except socket.timeout:
            got = None
        waited = time.time() - t0
        silent.close()
        need(got == b"", "a client that sent no CONNECT line was not closed (recv: %r after %.1f s)"
             % (got, waited))
        need(3 <= waited <= 12, "the silent client was closed after %.1f s, the deadline is 5 s" % waited)
        info = q.cmd("x-query-vsock")
        need(info[0].get("expired") == 1, "x-query-vsock: expired %r, want 1" % info[0].get("expired"))
        print("vsock_uds: x-query-vsock %r; the silent client was closed after %.1f s" % (info[0], waited))
        _uds_connect(path, 5003).close()
        rc = g.wait_exit()
    finally:
        for s in srvs.values():
            s.close()
        for c in held:
            c.close()
    oks = g.checks()
    expect_checks(oks, ["vsock_dev", "vsock_uds_gi", "vsock_uds_hi", "vsock_uds_hold"])
    need(g.info("vsock_uds_gi") == want,
         "host -> guest (guest-initiated): the guest got hash %r, want %s" % (g.info("vsock_uds_gi"), want))
    need(g.info("vsock_uds_hi") == want,
         "host -> guest (host-initiated): the guest got hash %r, want %s" % (g.info("vsock_uds_hi"), want))
    need(rc == 0, "ember exited with %d" % rc)


TESTS.update({"vsock_uds": test_vsock_uds})
