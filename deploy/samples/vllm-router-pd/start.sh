#!/usr/bin/env bash
# Seed 003's topology on one machine: 8 prefill + 8 decode vLLM engines (two `tandem sim`
# processes serving 8 data-parallel ranks each: every rank has its own batch and KV cache,
# like one pod), and vllm-router started with seed 003's exact flags. The only change is
# the two URLs: the seed's Kubernetes Services become 127.0.0.1 ports.
#
# usage: deploy/samples/vllm-router-pd/start.sh   (env: BIN, ROUTER_PORT 10001,
#        PREFILL_PORT 8000, DECODE_PORT 8200, PROMETHEUS_PORT 29000, SCALE 0.1, LOG_DIR)
# Stops everything on Ctrl-C. The router's debug log (PD retry attempt lines) is in
# $LOG_DIR/router.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
BIN="${BIN:-$root/build/tandem}"
ROUTER_PORT="${ROUTER_PORT:-10001}"
PREFILL_PORT="${PREFILL_PORT:-8000}"
DECODE_PORT="${DECODE_PORT:-8200}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-29000}"
SCALE="${SCALE:-0.1}"
LOG_DIR="${LOG_DIR:-$(mktemp -d)}"
MODEL=meta-llama/Llama-3.1-8B-Instruct
[ -x "$BIN" ] || { echo "start.sh: $BIN is missing: run 'make build' first" >&2; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
wait_http() {
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "start.sh: no answer on :$1$2 (logs in $LOG_DIR)" >&2; exit 1
}

# The engines: seed 003's vLLM args (model, NIXL kv_both, block size 128); the sim models
# an H100 running Llama 3.1 8B, SCALE times real time (0.1 = 10x faster).
for role in prefill decode; do
  port=$PREFILL_PORT; [ "$role" = decode ] && port=$DECODE_PORT
  "$BIN" sim --model "$MODEL" --host 127.0.0.1 --port "$port" --pod-name "$role" \
    --kv-transfer-config '{"kv_connector":"NixlConnector", "kv_role":"kv_both"}' \
    --block-size 128 --data-parallel-size 8 --profile h100-8b --time-scale "$SCALE" \
    --disable-log-requests --stats-interval 0 >"$LOG_DIR/$role.log" 2>&1 &
  pids+=($!)
  wait_http "$port" /health
done

# vllm-router, seed 003's command line (router-deployment.yaml), URLs on this machine.
# `tandem router` is vllm-router when called by that name; RUST_LOG-style debug logging
# via --log-level debug shows each "PD retry attempt".
"$BIN" router --host 127.0.0.1 --port "$ROUTER_PORT" \
  --pd-disaggregation \
  --prefill "http://127.0.0.1:$PREFILL_PORT" \
  --decode "http://127.0.0.1:$DECODE_PORT" \
  --intra-node-data-parallel-size 8 \
  --policy consistent_hash \
  --prometheus-port "$PROMETHEUS_PORT" --log-level debug >"$LOG_DIR/router.log" 2>&1 &
pids+=($!)
wait_http "$ROUTER_PORT" /health
echo "vllm-router (tandem) on http://127.0.0.1:$ROUTER_PORT, metrics on :$PROMETHEUS_PORT/metrics"
echo "logs: $LOG_DIR   (grep 'PD retry attempt' $LOG_DIR/router.log)"
echo "try:  curl -s http://127.0.0.1:$ROUTER_PORT/v1/completions -H 'Content-Type: application/json' \\"
echo "        -d '{\"model\":\"$MODEL\",\"prompt\":\"San Francisco is a\",\"max_tokens\":32}'"
if [ -n "${READY_FILE:-}" ]; then echo ready >"$READY_FILE"; fi
wait
