"""A small QMP client for the integration tests (stdlib only).

Scripts import it with PYTHONPATH set to this directory. `fail` is the
script's own failure function (it prints logs and exits)."""
import json
import socket
import time


class QMP:
    def __init__(self, path, fail, negotiate=True, timeout=15):
        self.fail = fail
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()
        if "QMP" not in self.greeting:
            fail("bad greeting %r" % self.greeting)
        if negotiate:
            r = self.execute("qmp_capabilities")
            if r != {"return": {}}:
                fail("qmp_capabilities: %r" % r)

    def recv(self):
        while b"\n" not in self.buf:
            d = self.s.recv(1 << 16)
            if not d:
                raise EOFError("server closed the connection")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        if not line.endswith(b"\r"):
            self.fail("message not CRLF-terminated: %r" % line[:80])
        return json.loads(line)

    def reply(self):
        """The next message that is not an event (events are kept)."""
        while True:
            m = self.recv()
            if "event" in m:
                self.events.append(m)
                continue
            return m

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def execute(self, name, args=None, id=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        if id is not None:
            msg["id"] = id
        self.send(json.dumps(msg))
        return self.reply()

    def cmd(self, name, args=None):
        r = self.execute(name, args)
        if "return" not in r:
            self.fail("%s failed: %r" % (name, r))
        return r["return"]

    def expect_error(self, cls):
        r = self.reply()
        if r.get("error", {}).get("class") != cls:
            self.fail("expected %s, got %r" % (cls, r))
        return r

    def wait_event(self, name, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            self.events.append(self.recv())
        self.fail("no %s event" % name)

    def next_event(self, deadline):
        """The next event in arrival order, waiting until deadline."""
        if self.events:
            return self.events.pop(0)
        self.s.settimeout(max(0.01, deadline - time.time()))
        return self.recv()

    def close(self):
        self.s.close()
