#!/usr/bin/env bash
# bench/extproc: the router as an Envoy ext_proc endpoint picker. The Go client of
# tests/extproc (go-control-plane's types, playing Envoy: headers, then the body, full
# duplex) drives N exchanges over one connection; the router runs one ext_proc worker
# pinned to core 0, the client runs on core 1. Decisions per second (one core) and the
# decision latency the client sees (headers sent -> headers reply), p50/p99, for 8 and
# 100 endpoints and 1 KB and 220 KB bodies. The endpoints are tiny static /metrics
# servers (one Python process, idle vLLM metrics): ext_proc never contacts them, the
# scheduler only needs them healthy.
# Targets (issue 13): >= 20,000 decisions/s on one core with 1 KB bodies; p50 <= 50 us,
# p99 <= 250 us.
#
# usage: bench/extproc.sh [BUILD_DIR] [N]   (build, 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
N="${2:-50000}"
BIN="$BUILD/tandem"
[ -x "$BIN" ] || { echo "no $BIN: make build" >&2; exit 1; }
CLIENT=$(tests/extproc/build-client.sh)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh # the scripts run from the repository root (cd above)

python3 - "$tmp/ports" <<'PY' &
import asyncio, sys
BODY = (b"vllm:num_requests_waiting{model_name=\"m\"} 0\nvllm:num_requests_running{model_name=\"m\"} 0\n"
        b"vllm:kv_cache_usage_perc{model_name=\"m\"} 0\n")
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
async def handle(r, w):
    try:
        while True:
            data = await r.readuntil(b"\r\n\r\n")
            if not data:
                break
            w.write(RESP)
            await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    ports = []
    for _ in range(100):
        s = await asyncio.start_server(handle, "127.0.0.1", 0)
        ports.append(s.sockets[0].getsockname()[1])
    open(sys.argv[1], "w").write("\n".join(map(str, ports)))
    await asyncio.Event().wait()
asyncio.run(main())
PY
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/ports" ] && break; sleep 0.1; done
mapfile -t EPS <"$tmp/ports"

echo "| endpoints | body | decisions/s (1 core) | p50 | p99 |"
echo "|---|---|---|---|---|"
for n_eps in 8 100; do
  G=$(port); H=$(port); R=$(port)
  args=()
  for i in $(seq 0 $((n_eps - 1))); do args+=(--endpoint "name=pod-$i,addr=127.0.0.1:${EPS[$i]}"); done
  taskset -c 0 "$BIN" router --host 127.0.0.1 --port "$R" --metrics-port 0 --workers 1 \
    --refresh-metrics-interval 1000 --log-level warn --grpc-port "$G" --grpc-health-port "$H" \
    --secure-serving=false --max-body-bytes $((64 << 20)) "${args[@]}" >"$tmp/router.log" 2>&1 &
  rp=$!
  pids+=($rp)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$R/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  for body in 1000 225280; do
    n=$N
    [ "$body" -gt 100000 ] && n=$((N / 10))
    out=$(taskset -c 1 "$CLIENT" -addr "127.0.0.1:$G" -bench "$n" -concurrency 32 \
      -body-size "$body" -variants 64 -warmup 1000)
    python3 - "$n_eps" "$body" "$out" <<'PY'
import json, sys
n_eps, body, out = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
print("| %s | %s | %.0f | %.0f us | %.0f us |%s" % (
    n_eps, "1 KB" if body < 10000 else "220 KB", out["rate"], out["p50_us"], out["p99_us"],
    "" if not out["errors"] else " (%d errors: %s)" % (out["errors"], out["first_error"])))
PY
  done
  kill "$rp"; wait "$rp" 2>/dev/null || true
done
echo
echo "closed loop (1 stream at a time), 8 endpoints, 1 KB: the latency of one decision"
G=$(port); H=$(port); R=$(port)
args=()
for i in $(seq 0 7); do args+=(--endpoint "name=pod-$i,addr=127.0.0.1:${EPS[$i]}"); done
taskset -c 0 "$BIN" router --host 127.0.0.1 --port "$R" --metrics-port 0 --workers 1 \
  --refresh-metrics-interval 1000 --log-level warn --grpc-port "$G" --grpc-health-port "$H" \
  --secure-serving=false "${args[@]}" >"$tmp/router.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$R/ready" >/dev/null 2>&1 && break; sleep 0.1; done
taskset -c 1 "$CLIENT" -addr "127.0.0.1:$G" -bench 5000 -concurrency 1 -body-size 1000 \
  -variants 64 -warmup 500 | python3 -c 'import json,sys; o=json.load(sys.stdin); print("p50 %.0f us, p99 %.0f us, %.0f decisions/s" % (o["p50_us"], o["p99_us"], o["rate"]))'
