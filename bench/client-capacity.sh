#!/usr/bin/env bash
# bench/client-capacity: how much load one `tandem bench` process drives on one core,
# so later results can be trusted not to be client-bound (bench.md: >= 10,000
# non-streaming req/s, 5,000 concurrent streams).
#  1. non-streaming small requests, all at once with 256 in flight, bench pinned to
#     core 0 and two zero-latency sims on core 1;
#  2. 5,000 concurrent streams: --max-concurrency 5000, every request streaming 200
#     tokens from one sim whose steps are slowed (fast profile at --time-scale 40) so
#     all 5,000 streams are open at once; bench pinned to core 0, its CPU time reported.
# usage: bench/client-capacity.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%Y-%m-%dT%H:%MZ)"

S=$(port)
taskset -c 1 "$BIN" sim --model m --profile fast --time-scale 0.0001 --host 127.0.0.1 --port "$S" \
  --max-num-seqs 4096 --disable-log-requests --stats-interval 0 --log-level warn &
pids+=($!)
wait_http "$S" /health
echo "-- 1. non-streaming, 1-token completions, 256 in flight, 3 runs of 60,000 requests"
for run in 1 2 3; do
  taskset -c 0 "$BIN" bench --disable-tqdm --port "$S" --model m --no-stream \
    --num-prompts 60000 --max-concurrency 256 --random-input-len 8 --random-output-len 1 \
    --save-result --result-filename "$tmp/ns.json" >/dev/null
  python3 -c "import json; r=json.load(open('$tmp/ns.json')); print('run $run: %.0f req/s, %d completed, %d failed' % (r['request_throughput'], r['completed'], r['failed']))"
done
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()

S=$(port)
taskset -c 1 "$BIN" sim --model m --profile fast --time-scale 40 --host 127.0.0.1 --port "$S" \
  --max-num-seqs 6000 --num-gpu-blocks 200000 --max-num-batched-tokens 200000 \
  --disable-log-requests --stats-interval 0 --log-level warn &
pids+=($!)
wait_http "$S" /health
echo "-- 2. 5,000 concurrent streams of 200 tokens"
/usr/bin/time -f "bench CPU: %U s user + %S s sys, %e s wall, max RSS %M KiB" \
  taskset -c 0 "$BIN" bench --disable-tqdm --port "$S" --model m --num-prompts 5000 \
  --max-concurrency 5000 --random-input-len 16 --random-output-len 200 --ignore-eos \
  --save-result --result-filename "$tmp/st.json" >/dev/null
python3 -c "import json; r=json.load(open('$tmp/st.json')); print('completed %d, failed %d, most in flight at once %d, output %.0f tok/s, mean ITL %.1f ms, p99 ITL %.1f ms' % (r['completed'], r['failed'], r['max_concurrent_requests'], r['output_throughput'], r['mean_itl_ms'], r['p99_itl_ms']))"
