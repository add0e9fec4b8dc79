#!/usr/bin/env bash
# bench/scheduling-quality: does prefix-aware routing pay off on llm-d's shared-prefix
# workload? Starts PODS decode sims (--profile h100-32b, time-scaled by SCALE so a run
# takes minutes) behind `tandem router`, once per policy, and drives the same
# shared-prefix workload (many groups sharing long system prompts) up a rate ladder with
# `tandem bench`. Prints a comparison table, appends it with the machine, date and
# parameters to bench/RESULTS.md (RECORD=0 to skip), and writes per-policy result JSON,
# the bench output and one HTML report (`tandem bench compare --html`) into OUT.
#
# Scale-down of llm-d's run (8 pods, 150 groups x 5 prompts, 6000/1200/1000 tokens):
# 4 pods and 75 groups keep its ratio of system-prompt tokens to KV cache (each pod
# holds ~51 system prompts: prefix-aware routing places ~19 groups per pod, so they fit;
# spreading every group over every pod needs 450k tokens per pod, so they thrash).
# Outputs are cut to OUTPUT_LEN tokens to keep the run short; rates are in real time
# (modeled time runs 1/SCALE faster), so 4 pods of modeled H100s at SCALE 0.1 take
# 10x the rates of real ones.
#
# usage: bench/scheduling-quality.sh [BUILD_DIR]   (env: PODS NGROUPS PER_GROUP SCALE
#        LADDER STAGE OUTPUT_LEN POLICIES OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
PODS="${PODS:-4}"
NGROUPS="${NGROUPS:-75}"
PER_GROUP="${PER_GROUP:-48}"
SCALE="${SCALE:-0.1}"
LADDER="${LADDER:-30,60,90,120}"
STAGE="${STAGE:-10}"
OUTPUT_LEN="${OUTPUT_LEN:-100}"
POLICIES="${POLICIES:-random round_robin consistent_hash load llm-d cache_aware}"
OUT="${OUT:-bench/out/scheduling-quality}"
mkdir -p "$OUT"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer on :$1$2" >&2; return 1; }

# Load only: llm-d's scorers without the prefix scorer.
cat >"$tmp/load.yaml" <<'YAML'
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: kv-cache-utilization-scorer
    weight: 1
  - pluginRef: max-score-picker
YAML

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "pods=$PODS groups=$NGROUPS per_group=$PER_GROUP scale=$SCALE ladder=$LADDER stage=${STAGE}s output=$OUTPUT_LEN"
results=()
for policy in $POLICIES; do
  sims=()
  eps=()
  for i in $(seq 0 $((PODS - 1))); do
    p=$(port)
    "$BIN" sim --model m --profile h100-32b --time-scale "$SCALE" --host 127.0.0.1 --port "$p" \
      --pod-name "decode-$i" --disable-log-requests --stats-interval 0 --log-level warn &
    sims+=($!)
    eps+=(--endpoint "name=decode-$i,addr=127.0.0.1:$p")
    wait_http "$p" /health
  done
  R=$(port)
  case "$policy" in
    load) pol=(--config-file "$tmp/load.yaml") ;;
    *) pol=(--policy "$policy") ;;
  esac
  "$BIN" router --host 127.0.0.1 --port "$R" --metrics-port 0 --workers 1 --log-level warn \
    "${pol[@]}" "${eps[@]}" &
  rpid=$!
  wait_http "$R" /ready
  "$BIN" bench --disable-tqdm --port "$R" --model m --dataset-name shared-prefix \
    --gsp-num-groups "$NGROUPS" --gsp-prompts-per-group "$PER_GROUP" \
    --gsp-system-prompt-len 6000 --gsp-question-len 1200 --gsp-output-len "$OUTPUT_LEN" \
    --ignore-eos --rate-ladder "$LADDER" --stage-duration "$STAGE" --seed 7 \
    --label "$policy" --save-result --save-detailed --result-dir "$OUT" \
    --result-filename "$policy.json" > "$OUT/$policy.txt" 2>&1 || true
  tail -n 30 "$OUT/$policy.txt" | grep -E "Successful|Failed|Mean TTFT|P90 TTFT|Prefix cache" || true
  results+=("$OUT/$policy.json")
  kill "$rpid" "${sims[@]}" 2>/dev/null || true
  wait "$rpid" "${sims[@]}" 2>/dev/null || true
done

# The comparison table, per stage, from the result files.
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
params="pods=$PODS groups=$NGROUPS per_group=$PER_GROUP scale=$SCALE ladder=$LADDER stage=${STAGE}s output=$OUTPUT_LEN"
python3 - "$SCALE" "${RECORD:-1}" "$machine" "$params" "${results[@]}" <<'PY'
import datetime, io, json, sys
scale = float(sys.argv[1])
record, machine, params = sys.argv[2] != "0", sys.argv[3], sys.argv[4]
runs = [json.load(open(p)) for p in sys.argv[5:]]
out = io.StringIO()
def print(*a):
    out.write(" ".join(str(x) for x in a) + "\n")
print()
print("| policy | stage (req/s, real) | completed | failed | output tok/s (real) | TTFT mean (s) | TTFT p90 (s) | ITL mean (ms) | cache hit ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for r in runs:
    stages = r.get("stages") or [r]
    for s in stages:
        chr_ = s.get("cache_hit_ratio")
        # Latencies in modeled H100 time: real / scale.
        print("| %s | %s | %d | %d | %.0f | %.2f | %.2f | %.1f | %s |" % (
            r["label"], s["request_rate"], s["completed"], s["failed"], s["output_throughput"],
            s["mean_ttft_ms"] / 1000 / scale, s["p90_ttft_ms"] / 1000 / scale,
            s["mean_itl_ms"] / scale, "%.2f" % chr_ if chr_ is not None else "-"))
print()
print("(TTFT and ITL in modeled H100 time, i.e. measured / %g; rates and throughput are real)" % scale)
sys.stdout.write(out.getvalue())
if record:
    with open("bench/RESULTS.md", "a") as f:
        f.write("\n## scheduling-quality run (recorded by the script)\n\n")
        f.write("- **Command:** `make build && bench/scheduling-quality.sh build`\n")
        f.write("- **Machine:** %s; **date:** %s\n" % (machine, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")))
        f.write("- **Parameters:** %s\n" % params)
        f.write(out.getvalue())
PY
"$BIN" bench compare --html "$OUT/report.html" "${results[@]}" > "$OUT/compare.txt" 2>&1 || true
echo "HTML report: $OUT/report.html"
