#!/usr/bin/env bash
# bench/router-rss: RSS of a whole tandem router process with 100 endpoints and a full
# prefix index (100 x lruCapacityPerServer 31,250 blocks). The 100 endpoints are 50 names
# on each of two zero-latency sims; wrk sends 16 KiB prompts whose first 64-character
# block is unique, so each prompt adds 256 new blocks (block hashes are chained).
# usage: bench/router-rss.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S1=$(port); S2=$(port); R=$(port)
for p in $S1 $S2; do
  "$BIN" sim --model m --profile fast --time-scale 0.0001 --host 127.0.0.1 --port "$p" \
    --max-num-seqs 4096 --max-model-len 100000 --num-gpu-blocks 400000 \
    --disable-log-requests --stats-interval 0 --log-level warn &
  pids+=($!)
done
args=()
for i in $(seq 0 99); do
  s=$S1; [ $((i % 2)) -eq 1 ] && s=$S2
  args+=(--endpoint "name=pod-$i,addr=127.0.0.1:$s")
done
"$BIN" router --host 127.0.0.1 --port "$R" --metrics-port 0 --workers 2 --log-level warn \
  --refresh-metrics-interval 200 "${args[@]}" &
rpid=$!
pids+=($rpid)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$R/ready" >/dev/null && break; sleep 0.1; done
sleep 1
echo "idle, 100 endpoints: $(grep VmRSS /proc/$rpid/status | awk '{printf "%.1f MiB", $2/1024}')"
python3 - "$tmp/fill.lua" <<'PY'
import sys
tail = ("lorem ipsum dolor sit amet consectetur " * 500)[:16384 - 64]
open(sys.argv[1], "w").write('''
counter = 0
request = function()
  counter = counter + 1
  local head = string.format("%%064d", counter * 7919 + math.random(1, 7))
  local body = '{"model":"m","max_tokens":1,"prompt":"' .. head .. "%s" .. '"}'
  return wrk.format("POST", "/v1/completions", {["Content-Type"] = "application/json"}, body)
end
''' % tail)
PY
for round in 1 2 3; do
  wrk -t1 -c32 -d10s -s "$tmp/fill.lua" "http://127.0.0.1:$R/" >/dev/null
  size=$(curl -fs "http://127.0.0.1:$R/metrics" | awk '/^tandem_router_prefix_index_size/ {print $2}')
  echo "after round $round: prefix index $size blocks (full: 3125000), RSS $(grep VmRSS /proc/$rpid/status | awk '{printf "%.1f MiB", $2/1024}') (peak $(grep VmHWM /proc/$rpid/status | awk '{printf "%.1f MiB", $2/1024}'))"
done
