#!/usr/bin/env bash
# The local stack, llm-d's P/D layout on one machine: tandem router on localhost:PORT
# with a P/D config, one prefill sim (PORT+1) and two decode sims (PORT+3, PORT+5), each
# decode sim behind a tandem sidecar (PORT+2, PORT+4), serving facebook/opt-125m.
# Ctrl-C stops everything.
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

"$BIN" sim --model "$MODEL" --host 127.0.0.1 --port $((PORT + 1)) --pod-name prefill-0 \
  --stats-interval 0 &
pids+=($!)
for i in 0 1; do
  engine=$((PORT + 3 + 2 * i)) sidecar=$((PORT + 2 + 2 * i))
  "$BIN" sim --model "$MODEL" --host 127.0.0.1 --port "$engine" --pod-name "decode-$i" \
    --stats-interval 0 &
  pids+=($!)
  "$BIN" sidecar --host 127.0.0.1 --port "$sidecar" --vllm-port "$engine" &
  pids+=($!)
done
# Endpoints with roles and no config: the router's P/D preset (prefill when the uncached
# part of the prompt is >= 100 characters), sidecar mode.
"$BIN" router --host 127.0.0.1 --port "$PORT" --metrics-port $((PORT + 90)) \
  --endpoint "name=prefill-0,addr=127.0.0.1:$((PORT + 1)),role=prefill" \
  --endpoint "name=decode-0,addr=127.0.0.1:$((PORT + 2)),role=decode" \
  --endpoint "name=decode-1,addr=127.0.0.1:$((PORT + 4)),role=decode" &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "up: a process failed to start" >&2; exit 1; }; done
  sleep 0.1
done

cat <<MSG

tandem is up: router on http://localhost:$PORT in front of simulated vLLM engines serving
$MODEL in a P/D layout: prefill-0 :$((PORT + 1)); decode-0 :$((PORT + 3)) and decode-1
:$((PORT + 5)), each behind a tandem sidecar (:$((PORT + 2)), :$((PORT + 4))). Try:

  curl http://localhost:$PORT/v1/completions -H "Content-Type: application/json" \\
    -d '{"model": "$MODEL", "prompt": "San Francisco is a", "max_tokens": 16}'

Short prompts are decoded in place; prompts with 100+ uncached characters are prefilled
on prefill-0 first (the x-inference-pod header names the decode pod). Decisions:
  curl -X POST http://localhost:$PORT/debug/schedule -d '{"model": "$MODEL", "prompt": "hi"}'
Endpoints: curl http://localhost:$PORT/debug/endpoints   Metrics: curl http://localhost:$((PORT + 90))/metrics
Stop: Ctrl-C
MSG
wait
