#!/usr/bin/env bash
# bench/conn-spike: does the router give memory back after a spike of idle connections?
# Opens N idle keep-alive connections (each sends one GET /health so the router has
# really served it), closes them all, and samples the router's RSS before, at the peak
# and after (once the connection count is back to 0). Also checks --max-connections:
# with the bound at N/2, the connections past it get 503 and a close.
#
# usage: bench/conn-spike.sh [BUILD_DIR] [N]   (default build, 10000)
#        BOUND0=none bench/conn-spike.sh OLD_BUILD   (a build without --max-connections)
#        WORKERS=2 (router worker threads, default 1); MODE=post (each connection first
#        sends a 16 KB completion through the router instead of GET /health)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
N="${2:-10000}"
BIN="$BUILD/tandem"
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh # the scripts run from the repository root (cd above)

S=$(port)
"$BIN" sim --model m --profile fast --host 127.0.0.1 --port "$S" --log-level warn >/dev/null &
pids+=($!)
wait_http "$S" /health

run_one() { # $1 = --max-connections value; prints "rss_before rss_peak rss_after ok refused"
  local R; R=$(port)
  local bound=(--max-connections "$1")
  [ "$1" = none ] && bound=() # a build from before the flag existed
  "$BIN" router --host 127.0.0.1 --port "$R" --metrics-port 0 --workers "${WORKERS:-1}" --log-level error \
    "${bound[@]}" --endpoint "name=s,addr=127.0.0.1:$S" >/dev/null &
  local rp=$!
  wait_http "$R" /ready
  python3 - "$R" "$rp" "$N" <<'PY'
import resource, socket, sys, time
port, pid, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
def fds():
    import os
    return len(os.listdir("/proc/%s/fd" % pid))
import os as _os
if _os.environ.get("MODE") == "post":  # a 16 KB completion on each connection first
    body = ('{"model":"m","prompt":"%s","max_tokens":1}' % ("x" * 16384)).encode()
    REQ = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
else:
    REQ = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
base_fds = fds()
before = rss()
socks, ok, refused = [], 0, 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(REQ)
    except OSError:
        pass  # refused and closed already: its 503 is still to be read
    socks.append(s)
for s in socks:
    try:
        head = s.recv(4096)
    except OSError:
        head = b""

    if head.startswith(b"HTTP/1.1 200"):
        ok += 1
    elif head.startswith(b"HTTP/1.1 503"):
        refused += 1
peak = rss()
for s in socks:
    s.close()
deadline = time.time() + 30
while fds() > base_fds and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
print(before, peak, rss(), ok, refused)
PY
  kill "$rp"; wait "$rp" 2>/dev/null || true
}

read -r b p a ok ref < <(run_one "${BOUND0:-0}")
echo "spike of $N idle connections, no bound: RSS before ${b} MiB, peak ${p} MiB, after close ${a} MiB ($ok answered)"
[ "${BOUND0:-0}" = none ] && exit 0
half=$((N / 2))
read -r b p a ok ref < <(run_one "$half")
echo "--max-connections $half with $N connections: $ok answered 200, $ref refused with 503; RSS peak ${p} MiB, after close ${a} MiB"
