#!/usr/bin/env bash
# bench/soak: the local P/D stack (`tandem up` on deploy/samples/sim: router, 1 prefill
# sim, 2 decode sims each behind a sidecar) under mixed streaming / non-streaming load for
# DURATION seconds, with a random engine or sidecar killed (SIGKILL) every KILL_EVERY
# seconds; `tandem up` restarts it, as a Deployment would. Every 10 s the router's and
# the sidecars' RSS and open fds are sampled.
#
# A request is "lost" when it failed before any response byte reached the client (a
# status other than 200, or a connection error): the target is zero. A stream cut after
# it started (its engine was killed mid-generation) is counted separately: nothing can
# save those. Target: RSS and fds flat after warm-up.
#
# usage: bench/soak.sh [BUILD_DIR] [DURATION_S] [KILL_EVERY_S] [CLIENTS]
#        (build, 1800, 60, 8)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
DURATION="${2:-1800}"
KILL_EVERY="${3:-60}"
CLIENTS="${4:-8}"
BIN="$BUILD/tandem"
[ -x "$BIN" ] || { echo "no $BIN: make build" >&2; exit 1; }
tmp=$(mktemp -d)
upid=
cleanup() {
  [ -n "$upid" ] && kill "$upid" 2>/dev/null && wait "$upid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port)
BASE=$(( (P % 20000) + 30000 ))
"$BIN" up -m deploy/samples/sim/msvc.yaml -b deploy/samples/sim/baseconfig.yaml \
  --host 127.0.0.1 --port "$P" --base-port "$BASE" >"$tmp/up.log" 2>&1 &
upid=$!
for _ in $(seq 300); do grep -q "serving" "$tmp/up.log" && break; sleep 0.1; done
grep -q "serving" "$tmp/up.log" || { cat "$tmp/up.log" >&2; exit 1; }

python3 - "$P" "$DURATION" "$KILL_EVERY" "$CLIENTS" "$upid" <<'PY'
import http.client, json, os, random, signal, subprocess, sys, threading, time
port, duration, kill_every, clients, upid = (int(sys.argv[1]), float(sys.argv[2]),
                                              float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
stop = time.time() + duration
lock = threading.Lock()
stats = {"ok": 0, "lost": 0, "cut": 0, "stream_ok": 0}
lost_examples = []

def children():
    out = subprocess.run(["pgrep", "-P", upid, "-a"], capture_output=True, text=True).stdout
    procs = []
    for line in out.splitlines():
        pid, _, cmd = line.partition(" ")
        procs.append((int(pid), cmd))
    return procs

def client(i):
    rng = random.Random(i)
    while time.time() < stop:
        stream = rng.random() < 0.5
        prompt = ("soak %d %d " % (i, rng.randrange(1 << 30))) * rng.choice((2, 40))
        body = {"model": "facebook/opt-125m", "prompt": prompt, "max_tokens": rng.choice((4, 16)),
                "stream": stream}
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = False
        try:
            c.request("POST", "/v1/completions", json.dumps(body),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                data = r.read()
                with lock:
                    stats["lost"] += 1
                    if len(lost_examples) < 5:
                        lost_examples.append("%d %s" % (r.status, data[:200]))
                continue
            started = True
            data = r.read()
            if stream and b"[DONE]" not in data:
                raise IOError("stream ended without [DONE]")
            with lock:
                stats["ok"] += 1
                stats["stream_ok"] += stream
        except Exception as e:
            with lock:
                if started:
                    stats["cut"] += 1
                else:
                    stats["lost"] += 1
                    if len(lost_examples) < 5:
                        lost_examples.append(repr(e)[:200])
        finally:
            c.close()

def sample():
    rows = []
    for pid, cmd in children():
        if " sim " in cmd + " ":
            continue
        role = "router" if " router " in cmd else "sidecar"
        try:
            rss = int(open("/proc/%d/status" % pid).read().split("VmRSS:")[1].split()[0])
            fds = len(os.listdir("/proc/%d/fd" % pid))
        except OSError:
            continue
        rows.append((role, pid, rss, fds))
    return rows

threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
[t.start() for t in threads]
t0 = time.time()
next_kill = t0 + kill_every
next_sample = t0
kills = 0
samples = []
rng = random.Random(99)
while time.time() < stop:
    now = time.time()
    if now >= next_sample:
        rows = sample()
        router = [r for r in rows if r[0] == "router"]
        side = [r for r in rows if r[0] == "sidecar"]
        samples.append((now - t0, router[0][2] if router else 0, router[0][3] if router else 0,
                        sum(r[2] for r in side), sum(r[3] for r in side)))
        next_sample += 10
    if now >= next_kill:
        victims = [(pid, cmd) for pid, cmd in children() if " router " not in cmd]
        if victims:
            pid, cmd = rng.choice(victims)
            os.kill(pid, signal.SIGKILL)
            kills += 1
        next_kill += kill_every
    time.sleep(0.2)
[t.join(40) for t in threads]
wall = time.time() - t0
total = stats["ok"] + stats["lost"] + stats["cut"]
print("soak: %.0f s, %d clients, %d kills; %d requests (%.1f/s): %d ok (%d streamed), "
      "%d lost before starting, %d cut mid-stream" % (
          wall, clients, kills, total, total / wall, stats["ok"], stats["stream_ok"],
          stats["lost"], stats["cut"]))
for e in lost_examples:
    print("  lost:", e)
print("  t(s)  router RSS(KiB) fds   sidecars RSS(KiB) fds")
for t, rr, rf, sr, sf in samples:
    print("  %5.0f %14d %4d %18d %4d" % (t, rr, rf, sr, sf))
warm = [s for s in samples if s[0] >= min(120, wall / 4)]
if warm:
    print("after warm-up: router RSS %d..%d KiB, fds %d..%d; sidecars RSS %d..%d KiB, fds %d..%d" % (
        min(s[1] for s in warm), max(s[1] for s in warm), min(s[2] for s in warm),
        max(s[2] for s in warm), min(s[3] for s in warm), max(s[3] for s in warm),
        min(s[4] for s in warm), max(s[4] for s in warm)))
PY
