#!/usr/bin/env bash
# bench/pd: prefill/decode disaggregation on one machine, with `tandem bench`.
#
# 1. Layouts under a long-prompt workload (random dataset, 2000 input tokens, 100 output,
#    Poisson arrivals at $RATE req/s, $NUM prompts), all sims `--profile h100-8b
#    --time-scale 0.1` (a modeled Llama-3.1-8B on one H100, ten times faster):
#      (a) 2 aggregated sims behind the router (no prefill role: every pod prefills),
#      (b) 1P1D: router -> sidecar -> decode sim, prefill sim (--pd-mode sidecar),
#      (c) 1P2D: the same with two decode pods.
#    Prints TTFT mean/p90, ITL mean and output tok/s per layout.
# 2. P/D coordination overhead: zero-latency sims (--profile fast --time-scale 0.0001),
#    one 1-token request at a time (closed loop, --no-stream --max-concurrency 1), fresh
#    64-token prompts (~250 characters, above the 100-character threshold, never cached:
#    every request is disaggregated), median and p99 end-to-end latency for: direct to
#    the decode sim; through the router with no P/D; router -> sidecar (prefill leg, then
#    decode leg); router running both legs itself (--pd-mode router).
#
# Everything shares this machine's cores: compare layouts within one run.
#
# usage: bench/pd.sh [BUILD_DIR]     env: RATE (20) NUM (200) NUM_SMALL (2000)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
RATE="${RATE:-20}"
NUM="${NUM:-200}"
NUM_SMALL="${NUM_SMALL:-2000}"
[ -x "$BIN" ] || { echo "build first: make build" >&2; exit 1; }
"$BIN" sidecar --help >/dev/null 2>&1 || { echo "$BIN has no sidecar command" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$1$2" >/dev/null && return; sleep 0.05; done
  echo "no answer on $1$2" >&2; exit 1
}
# Every endpoint of the router scraped and healthy (a decision taken before the prefill
# pod is known would be decode-only).
wait_healthy() {
  for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$1/debug/endpoints" | python3 -c '
import json, sys
es = json.load(sys.stdin)["endpoints"]
sys.exit(0 if es and all(e["healthy"] for e in es) else 1)' && return
    sleep 0.05
  done
  echo "router on $1: endpoints not healthy" >&2; exit 1
}

sim() { # port name profile-args...
  local p=$1 name=$2; shift 2
  "$BIN" sim --model m --host 127.0.0.1 --port "$p" --pod-name "$name" "$@" \
    --disable-log-requests --stats-interval 0 --log-level warn >"$tmp/$name.log" 2>&1 &
  pids+=($!)
}
sidecar() { # port engine-port name
  "$BIN" sidecar --host 127.0.0.1 --port "$1" --vllm-port "$2" --metrics-port 0 \
    --allowed-prefillers "127.0.0.1:$P" --log-level warn >"$tmp/$3.log" 2>&1 &
  pids+=($!)
}
router() { # port name endpoint-specs-and-flags...
  local p=$1 name=$2; shift 2
  "$BIN" router --host 127.0.0.1 --port "$p" --metrics-port 0 --enable-debug-endpoints \
    --log-level warn "$@" \
    >"$tmp/$name.log" 2>&1 &
  pids+=($!)
}
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
decisions() { # router port -> "disaggregate=N decode-only=M"
  curl -fs "http://127.0.0.1:$1/metrics" | python3 -c '
import re, sys
d = {}
for line in sys.stdin:
    m = re.match(r"tandem_router_pd_decisions_total\{.*decision=\"([^\"]+)\".*\} (\S+)", line)
    if m:
        d[m.group(1)] = d.get(m.group(1), 0) + float(m.group(2))
print(" ".join("%s=%d" % kv for kv in sorted(d.items())) or "none")'
}
# bench PORT LABEL extra-flags...: runs tandem bench, keeps the result JSON
bench() {
  local p=$1 label=$2; shift 2
  "$BIN" bench --base-url "http://127.0.0.1:$p" --label "$label" --disable-tqdm --seed 1 \
    --save-result --result-dir "$tmp" --result-filename "$label.json" "$@" \
    >"$tmp/$label.out" 2>&1 || { echo "bench $label failed:" >&2; tail -20 "$tmp/$label.out" >&2; exit 1; }
}
summary_layout() { # label
  python3 - "$tmp/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("%-28s ok %4d/%-4d  TTFT mean %8.1f ms  p90 %8.1f ms   ITL mean %6.2f ms   out %8.1f tok/s"
      % (sys.argv[2], r["completed"], r["completed"] + r["failed"], r["mean_ttft_ms"],
         r["p90_ttft_ms"], r["mean_itl_ms"], r["output_throughput"]))
PY
}
summary_small() { # label [direct-label]
  python3 - "$tmp/$1.json" "$1" "${2:+$tmp/$2.json}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
line = "%-34s ok %5d/%-5d  p50 %7.3f ms  p99 %7.3f ms" % (
    sys.argv[2], r["completed"], r["completed"] + r["failed"], r["median_e2el_ms"],
    r["p99_e2el_ms"])
if sys.argv[3]:
    d = json.load(open(sys.argv[3]))
    line += "   overhead vs direct: p50 +%.3f ms, p99 +%.3f ms" % (
        r["median_e2el_ms"] - d["median_e2el_ms"], r["p99_e2el_ms"] - d["p99_e2el_ms"])
print(line)
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%Y-%m-%dT%H:%MZ)"

# --- 1. layouts --------------------------------------------------------------------------
H100=(--profile h100-8b --time-scale 0.1)
LOAD=(--dataset-name random --random-input-len 2000 --random-output-len 100 --ignore-eos
      --request-rate "$RATE" --num-prompts "$NUM")
echo "-- long prompts: random 2000 in / 100 out, $RATE req/s Poisson, $NUM prompts; sims ${H100[*]}"

A0=$(port); A1=$(port); RA=$(port)
sim "$A0" agg-0 "${H100[@]}"; sim "$A1" agg-1 "${H100[@]}"
wait_http "$A0" /health; wait_http "$A1" /health
router "$RA" router-a --endpoint "name=agg-0,addr=127.0.0.1:$A0" --endpoint "name=agg-1,addr=127.0.0.1:$A1"
wait_http "$RA" /ready; wait_healthy "$RA"
bench "$RA" a-aggregated-2 "${LOAD[@]}"
summary_layout a-aggregated-2
stop_all

for nd in 1 2; do
  P=$(port); RP=$(port)
  sim "$P" prefill-0 "${H100[@]}"
  eps=(--endpoint "name=prefill-0,addr=127.0.0.1:$P,role=prefill")
  for i in $(seq 0 $((nd - 1))); do
    D=$(port); S=$(port)
    sim "$D" "decode-$i" "${H100[@]}"
    wait_http "$D" /health
    sidecar "$S" "$D" "sidecar-$i"
    wait_http "$S" /health
    eps+=(--endpoint "name=decode-$i,addr=127.0.0.1:$S,role=decode")
  done
  wait_http "$P" /health
  router "$RP" "router-pd$nd" "${eps[@]}"
  wait_http "$RP" /ready; wait_healthy "$RP"
  label=$([ "$nd" = 1 ] && echo b-1P1D-sidecar || echo c-1P2D-sidecar)
  bench "$RP" "$label" "${LOAD[@]}"
  echo "$(summary_layout "$label")   router decisions: $(decisions "$RP")"
  stop_all
done

# --- 2. coordination overhead ------------------------------------------------------------
FAST=(--profile fast --time-scale 0.0001)
SMALL=(--no-stream --max-concurrency 1 --num-prompts "$NUM_SMALL" --dataset-name random
       --random-input-len 64 --random-output-len 1 --ignore-eos)
echo "-- P/D overhead: 1-token requests, 64-token fresh prompts, closed loop (1 in flight), $NUM_SMALL requests; sims ${FAST[*]}"
P=$(port); D=$(port); S=$(port); R0=$(port); RS=$(port); RR=$(port)
sim "$P" prefill-0 "${FAST[@]}"; sim "$D" decode-0 "${FAST[@]}"
wait_http "$P" /health; wait_http "$D" /health
sidecar "$S" "$D" sidecar-0
wait_http "$S" /health
router "$R0" router-plain --workers 1 --endpoint "name=decode-0,addr=127.0.0.1:$D"
router "$RS" router-sidecar --workers 1 --endpoint "name=prefill-0,addr=127.0.0.1:$P,role=prefill" \
  --endpoint "name=decode-0,addr=127.0.0.1:$S,role=decode"
router "$RR" router-router --workers 1 --pd-mode router \
  --endpoint "name=prefill-0,addr=127.0.0.1:$P,role=prefill" \
  --endpoint "name=decode-0,addr=127.0.0.1:$D,role=decode"
for r in $R0 $RS $RR; do wait_http "$r" /ready; wait_healthy "$r"; done
bench "$D" direct "${SMALL[@]}"
bench "$R0" router-no-pd "${SMALL[@]}"
bench "$RS" router-sidecar-pd "${SMALL[@]}"
bench "$RR" router-mode-pd "${SMALL[@]}"
summary_small direct
summary_small router-no-pd direct
echo "$(summary_small router-sidecar-pd direct)   decisions: $(decisions "$RS")"
echo "$(summary_small router-mode-pd direct)   decisions: $(decisions "$RR")"
