# Issue 11: virtio-net on a tap, driven by Linux's virtio_net (guest side:
# tests/linux/init.d/net.sh). Each test makes its own network namespace with
# its taps (and dnsmasq, a bridge), runs Ember inside it and removes it all
# afterwards. Runs in this suite's namespace (see suite.py).
#
# EMBER_NET_BULK_MB (default 16): MiB per stream and direction. The nested
# harness moves 1-2 MiB/s through a TCG-emulated L1; on a VMX/SVM host use 256.
import ctypes
import hashlib
import json as _json
import socket as _socket
import struct as _struct
import threading as _threading

NET_BULK_MB = int(os.environ.get("EMBER_NET_BULK_MB", "16"))
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# virtio-net feature bits the tests look at.
NETF_CSUM, NETF_GUEST_CSUM, NETF_GUEST_TSO4, NETF_HOST_TSO4, NETF_HOST_TSO6 = 0, 1, 7, 11, 12
NETF_MRG_RXBUF, NETF_STATUS, NETF_CTRL_VQ, NETF_MQ = 15, 16, 17, 22


def _run(*argv, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise Failure("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stdout.strip()[-300:]))
    return r.stdout


class NetNS:
    """A network namespace that removes itself (and what runs in it)."""

    def __init__(self, tag):
        need(os.path.exists("/dev/net/tun"), "/dev/net/tun is missing (modprobe tun)")
        self.name = "ember-%s-%d" % (tag, os.getpid())
        _run("ip", "netns", "add", self.name)
        self.procs = []
        self.ip("link", "set", "lo", "up")

    def ip(self, *args):
        return _run("ip", "-n", self.name, *args)

    def exec_prefix(self):
        return ("ip", "netns", "exec", self.name)

    def tap(self, name, addr=None, multi_queue=False):
        self.ip("tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr",
                *(("multi_queue",) if multi_queue else ()))
        if addr:
            self.ip("addr", "add", addr, "dev", name)
        self.ip("link", "set", name, "up")

    def spawn(self, argv, log):
        p = subprocess.Popen(list(self.exec_prefix()) + list(argv), stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def socket(self, *args):
        """A socket created inside the namespace (a socket keeps the netns
        it was made in; setns only moves this thread, and only for the call)."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        ns = os.open("/run/netns/" + self.name, os.O_RDONLY)
        try:
            if _libc.setns(ns, _CLONE_NEWNET) != 0:
                raise Failure("setns(%s): %s" % (self.name, os.strerror(ctypes.get_errno())))
            try:
                return _socket.socket(*args)
            finally:
                if _libc.setns(own, _CLONE_NEWNET) != 0:
                    raise Failure("setns back: %s" % os.strerror(ctypes.get_errno()))
        finally:
            os.close(ns)
            os.close(own)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        _run("ip", "netns", "del", self.name, check=False)


class GsoCounter:
    """Counts the frames arriving on a tap (from the guest) whose virtio_net_hdr
    says GSO, through an AF_PACKET socket with PACKET_VNET_HDR."""

    def __init__(self, ns, ifname):
        self.sock = ns.socket(_socket.AF_PACKET, _socket.SOCK_RAW, _socket.htons(0x0003))
        self.sock.setsockopt(263, 15, 1)     # SOL_PACKET, PACKET_VNET_HDR
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.5)
        self.frames = self.gso = self.big = 0
        self.stopping = False
        self.t = _threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stopping:
            try:
                b, addr = self.sock.recvfrom(70000)
            except _socket.timeout:
                continue
            except OSError:
                return
            if addr[2] != _socket.PACKET_HOST and addr[2] != 1 and addr[2] != 2:
                continue                     # only what the guest sent (not outgoing)
            if len(b) < 10:
                continue
            self.frames += 1
            if b[1] != 0:                    # gso_type
                self.gso += 1
            if len(b) - 10 > 1514:
                self.big += 1

    def stop(self):
        self.stopping = True
        self.t.join(5)
        self.sock.close()


def _recv_hash(srv, out, key):
    try:
        c, _ = srv.accept()
        c.settimeout(300)
        out[key] = recv_hash(c)
        c.close()
    except OSError as e:
        out[key] = ("error", str(e))


def _send_pattern(ns, addr, port, n, out, key):
    data = pattern(n)
    end = time.time() + 120
    while True:
        s = ns.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        s.settimeout(300)
        try:
            s.connect((addr, port))
            break
        except OSError as e:
            s.close()
            if time.time() > end:
                out[key] = "connect: %s" % e
                return
            time.sleep(0.5)
    try:
        s.sendall(data)
        s.shutdown(_socket.SHUT_WR)
        out[key] = "sent"
    except OSError as e:
        out[key] = "send: %s" % e
    finally:
        s.close()


def _features(g):
    f = g.info("net_features") or ""
    need(len(f) >= 32, "the guest printed no virtio-net features (%r)" % f)
    return lambda bit: f[bit] == "1"


def net_bulk(g, ns, host_ip, streams, mb):
    """Guest -> host then host -> guest, streams in parallel, by SHA-256;
    returns the (g2h, h2g) MB/s."""
    n = mb << 20
    want = hashlib.sha256(pattern(n)).hexdigest()
    got, srvs, threads = {}, [], []
    for i in range(streams):
        srv = ns.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        srv.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        srv.bind((host_ip, 5000 + i))
        srv.listen(1)
        srv.settimeout(BOOT_TIMEOUT)
        srvs.append(srv)
        t = _threading.Thread(target=_recv_hash, args=(srv, got, i), daemon=True)
        t.start()
        threads.append(t)
    g.wait_for(r"^EMBER-READY net-up", what="the guest's network set-up")
    guest_ip = g.info("net_ip")
    need(guest_ip, "the guest printed no address")
    ping = _run(*ns.exec_prefix(), "busybox", "ping", "-c", "3", "-W", "10", guest_ip, check=False)
    need(" 0% packet loss" in ping, "host -> guest ping: %s" % ping.strip()[-200:])
    t0 = time.time()
    for t in threads:
        t.join(600)
    g2h = streams * mb / max(time.time() - t0, 1e-3)
    for s in srvs:
        s.close()
    for i in range(streams):
        need(got.get(i) == (n, want), "guest -> host stream %d: got %r, want %d bytes %s" %
             (i, got.get(i), n, want))
    g.wait_for(r"^EMBER-READY net-h2g", timeout=300, what="the guest's listeners")
    sent, threads = {}, []
    t0 = time.time()
    for i in range(streams):
        t = _threading.Thread(target=_send_pattern, args=(ns, guest_ip, 5100 + i, n, sent, i), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(600)
    for i in range(streams):
        need(sent.get(i) == "sent", "host -> guest stream %d: %s" % (i, sent.get(i)))
        # The whole line: the console may be mid-way through it.
        g.wait_for(r"^EMBER-INFO net_h2g_%d=.*\n" % i, timeout=300, what="the guest's hash of stream %d" % i)
        need(g.info("net_h2g_%d" % i) == want, "host -> guest stream %d: the guest hashed %r, want %s" %
             (i, g.info("net_h2g_%d" % i), want))
    h2g = streams * mb / max(time.time() - t0, 1e-3)
    return g2h, h2g


def _net_one(tmpd, tag, vhost="off", offloads=True, link=False, dhcp=False, queues=1, cpus=1, gone=False):
    """One guest on one tap: addresses, ping both ways, bulk both ways by hash,
    negotiated features, GSO frames seen on the tap, optionally DHCP and set_link."""
    ns = NetNS(tag)
    g, gso, dns = None, None, None
    subnet = "10.%d.%d" % (100 + os.getpid() % 100, {"off": 1, "on": 2}[vhost])
    host_ip = subnet + ".1"
    try:
        ns.tap("tap0", host_ip + "/24", multi_queue=queues > 1)
        if dhcp:
            dns = ns.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--user=root",
                            "--interface=tap0", "--bind-interfaces", "--port=0", "--log-dhcp",
                            "--dhcp-range=%s.50,%s.60,255.255.255.0,1h" % (subnet, subnet),
                            "--dhcp-leasefile=" + os.path.join(tmpd, "leases"),
                            "--pid-file=" + os.path.join(tmpd, "dnsmasq.pid")],
                           open(os.path.join(tmpd, "dnsmasq.log"), "w"))
        gso = GsoCounter(ns, "tap0")
        nic = "tap=tap0,id=net0,vhost=%s,offloads=%s,queues=%d" % (vhost, "on" if offloads else "off", queues)
        cmdline = "ember.ip=%s ember.peer=%s ember.mb=%d ember.streams=%d ember.link=%d ember.gone=%d" % (
            "dhcp" if dhcp else subnet + ".2/24", host_ip, NET_BULK_MB, queues * 2 if queues > 1 else 1,
            1 if link else 0, 1 if gone else 0)
        g = Guest(tmpd, "net", cpus=cpus, extra=["--net", nic], api=True, cmdline=cmdline,
                  prefix=ns.exec_prefix())
        yield g
        q = g.connect()
        g2h, h2g = net_bulk(g, ns, host_ip, queues * 2 if queues > 1 else 1, NET_BULK_MB)
        print("net %s: vhost=%s offloads=%s queues=%d: guest->host %.2f MiB/s, host->guest %.2f MiB/s "
              "(%d MiB per stream); tap saw %d frames from the guest, %d GSO, %d over 1514 bytes" %
              (tag, vhost, offloads, queues, g2h, h2g, NET_BULK_MB, gso.frames, gso.gso, gso.big))
        has = _features(g)
        need(g.info("net_driver") == "virtio_net", "driver %r, not virtio_net" % g.info("net_driver"))
        need(has(NETF_STATUS) and has(NETF_MRG_RXBUF), "STATUS/MRG_RXBUF not negotiated")
        for bit, name in ((NETF_CSUM, "CSUM"), (NETF_GUEST_CSUM, "GUEST_CSUM"), (NETF_HOST_TSO4, "HOST_TSO4"),
                          (NETF_HOST_TSO6, "HOST_TSO6"), (NETF_GUEST_TSO4, "GUEST_TSO4")):
            need(has(bit) == offloads, "offloads=%s but %s is %snegotiated" %
                 ("on" if offloads else "off", name, "" if has(bit) else "not "))
        if offloads:
            need(gso.gso > 0, "offloads on: no GSO frame reached the tap (%d frames)" % gso.frames)
        else:
            need(gso.gso == 0 and gso.big == 0, "offloads off: %d GSO and %d oversized frames on the tap" %
                 (gso.gso, gso.big))
        info = q.cmd("x-query-net")
        nics = info if isinstance(info, list) else [info]
        need(nics and nics[0].get("vhost") == (vhost == "on"), "x-query-net vhost: %r" % nics)
        need(nics[0].get("link-up") is True and nics[0].get("queues") == queues, "x-query-net: %r" % nics[0])
        if dhcp:
            leases = open(os.path.join(tmpd, "leases")).read()
            need(g.info("net_ip") in leases and g.info("net_mac") in leases,
                 "dnsmasq's leases do not name the guest (%s %s): %r" % (g.info("net_ip"), g.info("net_mac"), leases))
        if queues > 1:
            need(g.info("net_rx_queues") == str(queues) and g.info("net_tx_queues") == str(queues),
                 "the guest has %s rx and %s tx queues, want %d" %
                 (g.info("net_rx_queues"), g.info("net_tx_queues"), queues))
            need(has(NETF_MQ) and has(NETF_CTRL_VQ), "MQ/CTRL_VQ not negotiated")
            stats = nics[0].get("queue-stats") or []
            print("net %s: per-queue counters %s" % (tag, _json.dumps(stats)))
            need(len(stats) == queues, "x-query-net lists %d queue pairs, want %d" % (len(stats), queues))
            for s in stats:
                need(s["tx-packets"] >= 100 and s["rx-packets"] >= 100,
                     "queue pair %d carried %d tx / %d rx packets: the streams did not use every pair" %
                     (s["queue"], s["tx-packets"], s["rx-packets"]))
        if link:
            g.wait_for(r"^EMBER-READY net-link", timeout=300, what="the link test")
            q.cmd("set_link", {"name": "net0", "up": False})
            g.wait_for(r"^EMBER-INFO net_carrier=0.*\n", timeout=120, what="carrier 0 in the guest")
            info = q.cmd("x-query-net")
            nic0 = info[0] if isinstance(info, list) else info
            need(nic0.get("link-up") is False, "x-query-net after set_link down: %r" % nic0.get("link-up"))
            # Like QEMU, the event fires once until query-rx-filter re-arms it.
            q.cmd("query-rx-filter", {"name": "net0"})
            q.events.clear()
            q.cmd("set_link", {"name": "net0", "up": True})
            g.wait_for(r"^EMBER-INFO net_carrier=1.*\n", timeout=120, what="carrier 1 in the guest")
            g.wait_for(r"^EMBER-READY net-promisc", timeout=120, what="the guest's promisc switch")
            q.wait_event("NIC_RX_FILTER_CHANGED", timeout=30)
            filt = q.cmd("query-rx-filter", {"name": "net0"})
            filt = filt[0] if isinstance(filt, list) else filt
            need(filt.get("promiscuous") is True, "query-rx-filter after promisc on: %r" % filt)
        if gone:
            # A tap deleted under a running VM: one clear error, no crash,
            # QMP still answers, and the guest still powers off cleanly.
            g.wait_for(r"^EMBER-READY net-gone", timeout=300, what="the tap-deletion step")
            gso.stop()
            gso = None
            ns.ip("link", "del", "tap0")
            end = time.time() + 60
            while "the tap is gone" not in open(g.logpath, errors="replace").read():
                need(time.time() < end, "no 'the tap is gone' error in Ember's log after the tap was deleted")
                need(g.proc.poll() is None, "ember exited (%s) when its tap was deleted" % g.proc.returncode)
                time.sleep(0.5)
            need(q.cmd("query-status").get("status") == "running", "VM not running after the tap went")
            print("net %s: after deleting the tap: %s" % (tag, [l for l in open(g.logpath).read().splitlines()
                                                                 if "the tap is gone" in l][:1]))
        rc = g.wait_exit()
        oks = g.checks()
        expect_checks(oks, ["net_dev", "net_ping_host", "net_g2h_sent"] + (["net_dhcp"] if dhcp else []) +
                      (["net_carrier_down", "net_carrier_up_again", "net_ping_after_link"] if link else []) +
                      (["net_sent_after_gone"] if gone else []))
        if not gone:
            need(g.info("net_errors") == "0 0", "the guest counted rx/tx errors: %s" % g.info("net_errors"))
        need(rc == 0, "ember exited with %d" % rc)
    finally:
        if gso:
            gso.stop()
        if g:
            g.kill()
        ns.close()



def _net_bridge(tmpd):
    """Two VMs with taps in one bridge reach each other: ping and a stream
    checked by SHA-256."""
    ns = NetNS("b")
    a = b = None
    subnet = "10.%d.3" % (100 + os.getpid() % 100)
    mb = max(1, NET_BULK_MB // 4)
    want = hashlib.sha256(pattern(mb << 20)).hexdigest()
    try:
        ns.ip("link", "add", "br0", "type", "bridge")
        ns.ip("addr", "add", subnet + ".1/24", "dev", "br0")
        ns.ip("link", "set", "br0", "up")
        for t in ("tap0", "tap1"):
            ns.tap(t)
            ns.ip("link", "set", t, "master", "br0")
        b = Guest(tmpd, "net_bridge", cpus=1, tag="b", prefix=ns.exec_prefix(),
                  extra=["--net", "tap=tap1,mac=52:54:00:00:00:0b"],
                  cmdline="ember.ip=%s.3/24 ember.role=b" % subnet)
        a = Guest(tmpd, "net_bridge", cpus=1, tag="a", prefix=ns.exec_prefix(),
                  extra=["--net", "tap=tap0,mac=52:54:00:00:00:0a"],
                  cmdline="ember.ip=%s.2/24 ember.peer=%s.3 ember.role=a ember.mb=%d" % (subnet, subnet, mb))
        yield a
        t0 = time.time()
        rca = a.wait_exit()
        rcb = b.wait_exit()
        oks_a, oks_b = a.checks(), b.checks()
        expect_checks(oks_a, ["net_dev", "net_bridge_ping", "net_bridge_send"])
        expect_checks(oks_b, ["net_dev", "net_bridge_received"])
        need(b.info("net_bridge_got") == want, "guest b hashed %r, guest a sent %s" % (b.info("net_bridge_got"), want))
        need(rca == 0 and rcb == 0, "ember exited with %d and %d" % (rca, rcb))
        print("net_bridge: %d MiB from guest a to guest b over br0, both powered off %.0f s after a's start" %
              (mb, time.time() - t0))
    except Failure:
        if b:
            b.dump()
        raise
    finally:
        for g in (a, b):
            if g:
                g.kill()
        ns.close()

TESTS.update({
    # DHCP from dnsmasq, ping both ways, bulk both ways, offloads on, set_link, RX filter.
    "net_userspace": lambda d: _net_one(d, "u", vhost="off", offloads=True, link=True, dhcp=True),
    "net_vhost": lambda d: _net_one(d, "v", vhost="on", offloads=True),
    # ... and the tap deleted under the running VM.
    "net_no_offloads": lambda d: _net_one(d, "n", vhost="off", offloads=False, gone=True),
    "net_vhost_no_offloads": lambda d: _net_one(d, "w", vhost="on", offloads=False),
    "net_mq": lambda d: _net_one(d, "m", vhost="off", queues=2, cpus=2),
    "net_bridge": _net_bridge,
})
