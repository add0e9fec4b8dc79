"""Integration test harness: starts real tandem processes on 127.0.0.1, talks HTTP to
them, and cleans up. Standard library only.

Every wait is bounded; nothing sleeps where it can wait on a condition. Ports come from
the kernel (bind to port 0), so parallel ctest runs do not collide.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

TANDEM = os.environ.get("TANDEM_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "tandem")

_procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A tandem process whose stdout/stderr are collected on a thread."""

    def __init__(self, args, ready_re, timeout=20.0, env=None):
        self.args = [TANDEM] + list(args)
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if env:
            e.update(env)
        self.p = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, env=e)
        _procs.append(self)
        self.lines = []
        self.cond = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        if ready_re and not self.wait_log(ready_re, timeout):
            self.stop()
            raise AssertionError("process did not become ready: %s\n%s" %
                                 (" ".join(self.args), self.output()))

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def output(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_log(self, pattern, timeout=10.0, start=0):
        """Waits until a line matching pattern appears; returns the match or None."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and i >= len(self.lines)
                                 and not self.t.is_alive()):
                    return None
                self.cond.wait(min(left, 0.2))

    def line_count(self):
        with self.cond:
            return len(self.lines)

    def stop(self, timeout=10.0):
        """SIGTERM, then wait; returns the exit code (SIGKILL after timeout)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.t.join(5)
        return self.p.returncode


def start_sim(*extra, port=None, timeout=20.0):
    port = port or free_port()
    args = ["sim", "--host", "127.0.0.1", "--port", str(port), "--stats-interval", "0"]
    args += list(extra)
    p = Proc(args, r"tandem sim ready on", timeout)
    p.port = port
    p.base = "127.0.0.1:%d" % port
    return p


def sims(n, *extra, roles=None):
    """n fast sims serving model "m", named ROLE-i (decode-0, ...); s.name is the name."""
    out = []
    for i in range(n):
        name = "%s-%d" % ((roles[i] if roles else "decode"), i)
        s = start_sim("--model", "m", "--profile", "fast", "--pod-name", name, *extra)
        s.name = name
        out.append(s)
    return out


def run_setup(cmd, what, n_tests, timeout=1800):
    """Runs a setup script of a test file (a build, a control plane). Exit 3 means a
    toolchain is missing: the file's tests are skipped, except under CI=true, where that
    fails. Any other failure fails. Returns the finished process."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode == 3:
        msg = (r.stderr.strip().splitlines() or ["Go is missing"])[-1]
        if os.environ.get("CI") == "true":
            print("FAIL %s: %s (CI needs these tests)" % (what, msg))
            print("0 passed, 1 failed")
            sys.exit(1)
        print("SKIP %s: %s" % (what, msg))
        print("0 passed, 0 failed, %d skipped" % n_tests)
        sys.exit(0)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        print("0 passed, 1 failed")
        sys.exit(1)
    return r


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def request(port, method, path, body=None, headers=None, timeout=15.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if headers:
        h.update(headers)
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return Response(r.status, r.getheaders(), data)


def post(port, path, body, **kw):
    return request(port, "POST", path, body, **kw)


def get(port, path, **kw):
    return request(port, "GET", path, **kw)


def stream(port, path, body, headers=None, timeout=15.0):
    """Posts and returns (status, headers, raw body bytes, [(t_arrival, bytes)])."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if headers:
        h.update(headers)
    t0 = time.monotonic()
    c.request("POST", path, body=json.dumps(body), headers=h)
    r = c.getresponse()
    pieces = []
    raw = b""
    while True:
        try:
            chunk = r.read1(65536)
        except http.client.IncompleteRead:
            break  # the server dropped the connection mid-stream (fault tests look for it)
        if not chunk:
            break
        pieces.append((time.monotonic() - t0, chunk))
        raw += chunk
    c.close()
    return r.status, r.getheaders(), raw, pieces


def sse_events(raw):
    """Splits an SSE body into data payloads, strictly: every event must be exactly
    'data: <payload>\\n\\n'."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), "stream must end with a blank line: %r" % text[-40:]
    events = text.split("\n\n")[:-1]
    out = []
    for e in events:
        assert e.startswith("data: "), "bad SSE frame: %r" % e[:80]
        assert "\n" not in e, "SSE frame spans lines: %r" % e[:80]
        out.append(e[len("data: "):])
    return out


def metrics(port):
    """Parses /metrics into {series_text: value}."""
    r = get(port, "/metrics")
    assert r.status == 200, r.status
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def metric(port, name, **labels):
    """Sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    found = False
    for series, v in metrics(port).items():
        base = series.split("{", 1)[0]
        if base != name:
            continue
        if all('%s="%s"' % (k, val) in series for k, val in labels.items()):
            total += v
            found = True
    return total if found else None


def wait_until(fn, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)  # polling an external process: there is nothing to wait on
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def run(tests):
    """Runs test functions, prints a summary line ctest and CI can read; exit code 1 on
    any failure. Processes are always cleaned up."""
    passed = failed = 0
    for t in tests:
        start = time.monotonic()
        try:
            t()
            passed += 1
            print("PASS %s (%.2fs)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % t.__name__, flush=True)
            traceback.print_exc()
        finally:
            for p in list(_procs):
                try:
                    rc = p.stop()
                except Exception:
                    rc = None
                _procs.remove(p)
                # Sanitizer reports (leaks, memory errors, UB) fail the test.
                out = p.output()
                hits = [out.find(k) for k in ("AddressSanitizer", "LeakSanitizer",
                                              "ThreadSanitizer", "runtime error:")]
                hits = [h for h in hits if h >= 0]
                if hits:
                    failed += 1
                    at = max(0, min(hits) - 2000)  # the report, with what led to it
                    print("FAIL %s: sanitizer report from %s (exit %r)\n%s" %
                          (t.__name__, " ".join(p.args), rc, out[at:at + 12000]), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
