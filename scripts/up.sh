#!/usr/bin/env bash
# The local stack: tandem router on localhost:PORT in front of two decode sims
# (PORT+1, PORT+2) serving facebook/opt-125m. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8000}"
BIN=build/tandem
MODEL=facebook/opt-125m
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for i in 0 1; do
  "$BIN" sim --model "$MODEL" --host 127.0.0.1 --port $((PORT + 1 + i)) --pod-name "decode-$i" \
    --stats-interval 0 &
  pids+=($!)
done
"$BIN" router --host 127.0.0.1 --port "$PORT" --metrics-port $((PORT + 90)) \
  --endpoint "name=decode-0,addr=127.0.0.1:$((PORT + 1)),role=decode" \
  --endpoint "name=decode-1,addr=127.0.0.1:$((PORT + 2)),role=decode" &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "up: a process failed to start" >&2; exit 1; }; done
  sleep 0.1
done

cat <<MSG

tandem is up: router on http://localhost:$PORT in front of two simulated vLLM engines
(decode-0 :$((PORT + 1)), decode-1 :$((PORT + 2))) serving $MODEL. Try:

  curl http://localhost:$PORT/v1/completions -H "Content-Type: application/json" \\
    -d '{"model": "$MODEL", "prompt": "San Francisco is a", "max_tokens": 16}'

The x-inference-pod response header names the pod that answered. Scheduling decisions:
  curl -X POST http://localhost:$PORT/debug/schedule -d '{"model": "$MODEL", "prompt": "hi"}'
Endpoints: curl http://localhost:$PORT/debug/endpoints   Metrics: curl http://localhost:$((PORT + 90))/metrics
Stop: Ctrl-C
MSG
wait
