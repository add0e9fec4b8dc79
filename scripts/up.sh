#!/usr/bin/env bash
# The local stack. For now (until the router and `tandem up` exist): one tandem sim
# serving facebook/opt-125m on localhost:PORT. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8000}"
BIN=build/tandem
MODEL=facebook/opt-125m

"$BIN" sim --model "$MODEL" --host 127.0.0.1 --port "$PORT" --pod-name sim-0 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "up: tandem sim failed to start" >&2; exit 1; }
  sleep 0.1
done

cat <<MSG

tandem is up: a simulated vLLM engine serving $MODEL on http://localhost:$PORT
Try:

  curl http://localhost:$PORT/v1/completions -H "Content-Type: application/json" \\
    -d '{"model": "$MODEL", "prompt": "San Francisco is a", "max_tokens": 16}'

Metrics: curl http://localhost:$PORT/metrics     Stop: Ctrl-C
MSG
wait $pid
