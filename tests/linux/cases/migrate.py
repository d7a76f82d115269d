# Issue 13: live migration between Ember processes (vmm/migration/), with
# the snapshot test's guest (t_snapshot in guest-init.sh): it counts on its
# console, appends checksummed records to ext2 on virtio-blk with virtio-rng
# bytes, and echoes hvc0. Runs in this suite's namespace (see suite.py).
import socket as _msocket


def _free_tcp_port():
    s = _msocket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_listening(g, path, timeout=60):
    """Until an --incoming unix: destination has its socket."""
    end = time.time() + timeout
    while not os.path.exists(path):
        need(time.time() < end and g.proc.poll() is None, "--incoming never listened")
        time.sleep(0.1)


def _mig_wait_status(q, want, timeout=300):
    """Polls query-migrate. A source that completed exits at once: then the
    MIGRATION events it sent before closing the socket tell."""
    end = time.time() + timeout
    last = {}
    while True:
        try:
            st = q.cmd("query-migrate")
            last = st
        except (EOFError, OSError):
            mig = [e["data"]["status"] for e in q.events if e.get("event") == "MIGRATION"]
            need(mig and mig[-1] in want, "the source closed QMP during the migration (last %r, "
                 "MIGRATION events %r)" % (last, mig))
            return dict(last, status=mig[-1])
        if st.get("status") in want:
            return st
        need(time.time() < end, "query-migrate stayed %r (wanted %s)" % (st, "/".join(want)))
        time.sleep(0.2)


def test_migrate(tmpd):
    """Live migration, twice (unix: then tcp:) while the guest writes records:
    the counter continues with no reset or gap, the records are all there once
    (e2fsck clean), rng and hvc0 work, each source exits 0. Before that, bad
    cases: a destination with other --memory refuses (the source runs on),
    migrate while migrating is refused, migrate_cancel leaves the source
    running and the destination exits with a clear error, and a garbage
    stream makes a destination exit 1 with one line."""
    disk = os.path.join(tmpd, "mig.img")
    make_image(disk, 64 << 20)
    mib = int(os.environ.get("EMBER_MIGRATE_MIB", "256"))
    launcher = SnapGuests(tmpd, disk, mib)
    guests, start = launcher.guests, launcher.start

    def sock(name):
        return os.path.join(tmpd, name + ".mig")

    try:
        src = start("src")
        yield src
        q = src.connect()
        q.s.settimeout(600)
        snap_wait_ticks(src, 5, "5 ticks")

        # 1. A garbage stream: one clear line, exit 1.
        bad = start("garbage", ["--incoming", "unix:" + sock("garbage")])
        _wait_listening(bad, sock("garbage"))
        c = _msocket.socket(_msocket.AF_UNIX)
        c.connect(sock("garbage"))
        c.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"\0" * 100)
        c.close()
        rc = bad.wait_exit(60)
        err = open(bad.logpath).read()
        need(rc == 1 and "not an Ember migration stream" in err, "garbage stream: status %d, %r" % (rc, err[-300:]))

        # 2. A destination with other --memory refuses; the source runs on.
        wrong = start("wrong-memory", ["--incoming", "unix:" + sock("wrong")], memory="%dM" % (mib * 2))
        _wait_listening(wrong, sock("wrong"))
        q.cmd("migrate", {"uri": "unix:" + sock("wrong")})
        st = _mig_wait_status(q, ("failed",))
        rc = wrong.wait_exit(60)
        need(rc == 1 and "--memory must match" in open(wrong.logpath).read(),
             "wrong memory: status %d, %r" % (rc, open(wrong.logpath).read()[-300:]))
        n = len(snap_ticks(src))
        snap_wait_ticks(src, n + 2, "ticks after a refused migration")
        need(q.cmd("query-status")["status"] == "running", "a failed migration left the source stopped")
        print("migrate: refused by a destination with other --memory: %s" % st.get("error-desc"))

        # 3. Slow (bandwidth-limited), migrate again (refused), cancel.
        slow = start("cancelled", ["--incoming", "unix:" + sock("slow")])
        _wait_listening(slow, sock("slow"))
        q.cmd("migrate-set-parameters", {"max-bandwidth": 2 << 20})
        q.cmd("migrate", {"uri": "unix:" + sock("slow")})
        _mig_wait_status(q, ("active",))
        r = q.execute("migrate", {"uri": "unix:" + sock("slow")})
        need("error" in r and "in progress" in r["error"]["desc"], "migrate while migrating: %r" % r)
        time.sleep(1)
        q.cmd("migrate_cancel")
        _mig_wait_status(q, ("cancelled",))
        rc = slow.wait_exit(120)
        need(rc == 1 and "truncated" in open(slow.logpath).read(),
             "cancelled: destination status %d, %r" % (rc, open(slow.logpath).read()[-300:]))
        n = len(snap_ticks(src))
        snap_wait_ticks(src, n + 2, "ticks after a cancelled migration")
        need(q.cmd("query-status")["status"] == "running", "a cancelled migration left the source stopped")
        q.cmd("migrate-set-parameters", {"max-bandwidth": 0, "downtime-limit": 300})

        # 4. The real ones: unix: then tcp:, each while the guest writes.
        cur, cq = src, q
        for hop, uri in ((1, "unix:" + sock("hop1")), (2, "tcp:127.0.0.1:%d" % _free_tcp_port())):
            dst = start("hop%d" % hop, ["--incoming", uri])
            if uri.startswith("unix:"):
                _wait_listening(dst, uri[5:])
            time.sleep(1)   # tcp: the listener is up a moment after start
            last_before = snap_ticks(cur)[-1][0]
            t0 = time.time()
            cq.events.clear()
            cq.cmd("migrate", {"uri": uri})
            st = _mig_wait_status(cq, ("completed", "failed"))
            need(st["status"] == "completed", "hop %d: %r" % (hop, st))
            rc = cur.wait_exit(60)
            need(rc == 0, "hop %d: the source exited with %d after migrating" % (hop, rc))
            last = snap_ticks(cur)[-1][0]
            need(last >= last_before, "hop %d: ticks went backwards" % hop)
            first = snap_wait_ticks(dst, 1, "a tick on the destination of hop %d" % hop)[0]
            # +2: the source may have stopped in the middle of a tick's line.
            need(first[0] in (last + 1, last + 2), "hop %d: the counter went from %d to %d (reset, gap or repeat)" %
                 (hop, last, first[0]))
            t = snap_wait_ticks(dst, 4, "ticks after hop %d" % hop)
            nums = [x[0] for x in t]
            need(nums == list(range(first[0], first[0] + len(nums))), "hop %d: ticks %r" % (hop, nums))
            rngs = [x[1] for x in t]
            need(len(set(rngs)) == len(rngs), "hop %d: virtio-rng repeats itself" % hop)
            ram = st.get("ram", {})
            print("migrate hop %d (%s): total %d ms, downtime %d ms, %d passes, %d MiB sent, %d zero pages; "
                  "counter %d -> %d" % (hop, uri.split(":")[0], st.get("total-time", -1), st.get("downtime", -1),
                                        ram.get("dirty-sync-count", -1), ram.get("transferred", 0) >> 20,
                                        ram.get("duplicate", 0), last, first[0]))
            guests.remove(cur)
            cur.kill()
            cur, cq = dst, dst.connect()
            cq.s.settimeout(600)

        msg = "hello-after-migration"
        cur.proc.stdin.write((msg + "\n").encode())
        cur.proc.stdin.flush()
        cur.wait_for(r"^EMBER-HVC-IN %s$" % msg, timeout=120, what="hvc0 input after migrating")
        cur.proc.stdin.write(b"stop\n")
        cur.proc.stdin.flush()
        rc = cur.wait_exit()
        need(rc == 0, "poweroff after migrating: ember exited with %d" % rc)
        expect_checks(cur.checks(), ["records_count", "snap_umount"])
        ticks = int(cur.info("ticks"))
        r = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, text=True)
        need(r.returncode == 0, "e2fsck -fn after migrating: status %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        nrec = snap_records(disk)
        need(nrec == ticks, "%d records on disk, the guest counted %d" % (nrec, ticks))
        print("migrate: %d records intact after two migrations, e2fsck clean" % nrec)
    except Failure:
        for g in guests[1:]:
            g.dump()
        raise
    finally:
        for g in guests:
            g.kill()


TESTS.update({"migrate": test_migrate})


def test_migrate_dirty(tmpd):
    """Convergence: a guest rewriting 64 MiB of tmpfs in a loop (t_migbench)
    migrates with the downtime limit it was given: more than one pass, the
    downtime the source reports under the limit plus the final state's load,
    and the guest ticks on at the destination."""
    limit = 300
    os.makedirs(os.path.join(tmpd, "src"))
    src = Guest(os.path.join(tmpd, "src"), "migbench", cpus=1, memory="256M", api=True, cmdline="ember.dirty_mb=64")
    dst = None
    try:
        yield src
        q = src.connect()
        q.s.settimeout(600)
        src.wait_for(r"^EMBER-TICK 10$", what="10 ticks")
        time.sleep(3)   # the dirtying loop runs
        os.makedirs(os.path.join(tmpd, "dst"))
        sock = os.path.join(tmpd, "dirty.mig")
        dst = Guest(os.path.join(tmpd, "dst"), "migbench", cpus=1, memory="256M",
                    extra=["--incoming", "unix:" + sock], cmdline="ember.dirty_mb=64")
        _wait_listening(dst, sock)
        q.cmd("migrate-set-parameters", {"downtime-limit": limit})
        q.events.clear()
        q.cmd("migrate", {"uri": "unix:" + sock})
        rates = []
        st = {}
        while True:
            try:
                st = q.cmd("query-migrate")
            except (EOFError, OSError):
                break
            rates.append(st.get("ram", {}).get("dirty-pages-rate", 0))
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        need(src.wait_exit(60) == 0, "the source did not exit 0 after migrating")
        m = re.search(r"completed: (\d+) MiB sent, (\d+) passes, downtime (\d+) ms, total (\d+) ms",
                      open(src.logpath).read())
        need(m, "no completion line in the source's log: %r" % open(src.logpath).read()[-400:])
        mib, passes, down, total = (int(x) for x in m.groups())
        need(passes >= 2, "a guest dirtying 64 MiB converged in %d pass(es)?" % passes)
        n = dst.text().count("EMBER-TICK")
        end = time.time() + 120
        while dst.text().count("EMBER-TICK") < n + 3:
            need(dst.proc.poll() is None and time.time() < end, "the destination guest does not tick")
            time.sleep(0.1)
        print("migrate_dirty: %d MiB sent in %d passes, downtime %d ms (limit %d), total %d ms, "
              "dirty-pages-rate up to %d pages/s" % (mib, passes, down, limit, total, max(rates or [0])))
    finally:
        if dst:
            dst.kill()


TESTS.update({"migrate_dirty": test_migrate_dirty})
