#!/usr/bin/env bash
# Seed 003's run-benchmark.sh on one machine: NUM_PROMPTS random prompts at CONCURRENCY
# through the router started by start.sh. Uses `vllm bench serve` when it is installed,
# else `tandem bench`, which takes the same flags and prints the same metrics.
#
# usage: run-benchmark.sh [NUM_PROMPTS=100] [CONCURRENCY=16]   (env: ROUTER_PORT 10001, BIN)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-$here/../../../build/tandem}"
NUM_PROMPTS="${1:-100}"
CONCURRENCY="${2:-16}"
ROUTER_PORT="${ROUTER_PORT:-10001}"
MODEL=meta-llama/Llama-3.1-8B-Instruct
curl -fs "http://127.0.0.1:$ROUTER_PORT/health" >/dev/null ||
  { echo "run-benchmark.sh: no router on :$ROUTER_PORT: run start.sh first" >&2; exit 1; }
args=(--base-url "http://127.0.0.1:$ROUTER_PORT" --model "$MODEL"
      --dataset-name random --random-input-len 1024 --random-output-len 128
      --num-prompts "$NUM_PROMPTS" --max-concurrency "$CONCURRENCY")
if command -v vllm >/dev/null 2>&1; then
  exec vllm bench serve --backend vllm "${args[@]}"
fi
exec "$BIN" bench "${args[@]}"
