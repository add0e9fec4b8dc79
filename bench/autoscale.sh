#!/usr/bin/env bash
# bench/autoscale: does per-role autoscaling (seed 002) hold latency with fewer replicas?
# One workload that shifts from new long prompts (prefill-heavy) to repeated prompts
# (the decode pods have the prefixes cached, the router skips prefill: decode-heavy) and
# back, against three `tandem up` layouts of the same model on simulated H100s:
#   autoscale  prefill and decode 1..MAX each, tandem up's autoscaler (the HPA's policy)
#   peak       MAX prefill + MAX decode, fixed (sized for the peak)
#   average    the autoscale run's mean replicas per role, rounded, fixed
# Reports replica-seconds and p90 TTFT / ITL of each (bench/RESULTS.md unless RECORD=0)
# and one HTML report (`tandem bench compare --html`: TTFT and ITL p90 over time, and
# the autoscale run's replicas per role over time).
#
# usage: bench/autoscale.sh [BUILD_DIR]  (env: PHASE seconds per phase (40), MAX (3),
#        RATE_NEW, RATE_REPEAT (req/s), SCALE (sim time scale, 1), OUT, RECORD)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
PHASE="${PHASE:-40}"
MAX="${MAX:-3}"
RATE_NEW="${RATE_NEW:-14}"
RATE_REPEAT="${RATE_REPEAT:-40}"
SCALE="${SCALE:-1}"
OUT="${OUT:-bench/out/autoscale}"
. bench/lib.sh
mkdir -p "$OUT"
tmp=$(mktemp -d)
up_pid=
cleanup() { [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

role_block() { # role min max autoscale(0/1)
  if [ "$4" = 1 ]; then
    cat <<EOF
  $1:
    autoscaling:
      minReplicas: $2
      maxReplicas: $3
      metrics:
$(if [ "$1" = prefill ]; then
    echo '      - {metric: "vllm:num_requests_waiting", target: 2}'
    echo '      - {metric: "vllm:num_requests_running", target: 4}'
  else
    echo '      - {metric: "vllm:num_requests_running", target: 24}'
  fi)
      behavior:
        scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 2, periodSeconds: 4}]}
        scaleDown: {stabilizationWindowSeconds: 10, policies: [{type: Pods, value: 1, periodSeconds: 4}]}
EOF
  else
    printf '  %s:\n    replicas: %s\n' "$1" "$2"
  fi
}

write_cr() { # file prefill-min prefill-max decode-min decode-max autoscale
  cat >"$1" <<EOF
apiVersion: llm-d.ai/v1alpha1
kind: ModelService
metadata:
  name: bench-as
spec:
  decoupleScaling: true
  routing:
    modelName: m
  modelArtifacts:
    uri: hf://org/m
$(role_block prefill "$2" "$3" "$6")
$(role_block decode "$4" "$5" "$6")
EOF
}

run_layout() { # label cr-file
  local label=$1 cr=$2 port mport base
  port=$(port); mport=$(port)
  base=$((20000 + RANDOM % 10000)) # below the ephemeral range: parked replicas keep their ports
  "$BIN" up -m "$cr" --port "$port" --base-port "$base" --profile h100-8b \
    --autoscale-interval 2 --metrics-port "$mport" >"$tmp/$label.up" 2>&1 &
  up_pid=$!
  for _ in $(seq 300); do grep -q "tandem up: serving" "$tmp/$label.up" && break; sleep 0.1; done
  grep -q "tandem up: serving" "$tmp/$label.up" || { tail -30 "$tmp/$label.up" >&2; exit 1; }
  local i=0
  # new long prompts, repeated prompts, new long prompts again
  for phase in new repeat new; do
    i=$((i + 1))
    if [ "$phase" = new ]; then
      ds=(--dataset-name random --random-input-len 3000 --random-output-len 24
          --request-rate "$RATE_NEW")
    else
      ds=(--dataset-name prefix_repetition --prefix-repetition-prefix-len 3000
          --prefix-repetition-suffix-len 4 --prefix-repetition-num-prefixes 12
          --prefix-repetition-output-len 160 --request-rate "$RATE_REPEAT")
    fi
    "$BIN" bench --port "$port" --model m --disable-tqdm --ignore-eos --seed "$i" \
      --duration "$PHASE" --num-prompts 4000 "${ds[@]}" --label "$label" \
      --timeline-url "http://127.0.0.1:$mport/metrics" \
      --timeline-metrics tandem_up_running_replicas,tandem_up_desired_replicas \
      --save-result --save-detailed --result-dir "$tmp" --result-filename "$label-$i.json" \
      >"$tmp/$label-$i.txt" 2>&1 || { tail -20 "$tmp/$label-$i.txt" >&2; exit 1; }
  done
  kill -INT "$up_pid"; wait "$up_pid" 2>/dev/null || true; up_pid=
  # one result per layout: the phases' requests on one clock, replicas per role
  python3 - "$tmp" "$label" "$OUT/$label.json" <<'PY'
import json, sys
tmp, label, out = sys.argv[1:]
merged, offset = None, 0.0
for i in (1, 2, 3):
    r = json.load(open("%s/%s-%d.json" % (tmp, label, i)))
    tl = r.get("timeline", {"t": [], "series": {}})
    if merged is None:
        merged = r
        merged["timeline"] = {"t": [], "series": {}}
    else:
        for k in ("ttfts", "itls", "errors", "pods", "input_lens", "output_lens", "e2els"):
            merged[k] = merged.get(k, []) + r.get(k, [])
        merged["start_times"] = merged["start_times"]
    if i > 1:
        merged["start_times"] += [t + offset for t in r["start_times"]]
    mt = merged["timeline"]
    n0 = len(mt["t"])
    mt["t"] += [t + offset for t in tl["t"]]
    for k, v in tl["series"].items():
        mt["series"].setdefault(k, [None] * n0)
        mt["series"][k] += v
    for k in mt["series"]:
        mt["series"][k] += [None] * (len(mt["t"]) - len(mt["series"][k]))
    offset += r["duration"]
merged["label"] = label
merged["total_duration"] = offset
json.dump(merged, open(out, "w"))
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "phases: new ${PHASE}s @ $RATE_NEW req/s (3000 in / 24 out), repeated ${PHASE}s @ $RATE_REPEAT req/s (12 prefixes x 3000 + 4 in / 160 out: under the P/D threshold, so prefill is skipped once a decode pod holds the prefix), new ${PHASE}s; sims h100-8b"
write_cr "$tmp/autoscale.yaml" 1 "$MAX" 1 "$MAX" 1
run_layout autoscale "$tmp/autoscale.yaml"
write_cr "$tmp/peak.yaml" "$MAX" "$MAX" "$MAX" "$MAX" 0
run_layout peak "$tmp/peak.yaml"
avg=$(python3 - "$OUT/autoscale.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
tl = r["timeline"]; t = tl["t"]
def mean(key):
    v = tl["series"].get(key) or []
    s = sum((v[k] or 0) * (t[k + 1] - t[k]) for k in range(len(t) - 1))
    return s / (t[-1] - t[0]) if len(t) > 1 else 1
p = mean('tandem_up_running_replicas{role="prefill"}')
d = mean('tandem_up_running_replicas{role="decode"}')
print(max(1, round(p)), max(1, round(d)))
PY
)
read -r AVG_P AVG_D <<<"$avg"
write_cr "$tmp/average.yaml" "$AVG_P" "$AVG_P" "$AVG_D" "$AVG_D" 0
run_layout average "$tmp/average.yaml"

machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
python3 - "$OUT" "$MAX" "$AVG_P" "$AVG_D" "${RECORD:-1}" "$machine" "$PHASE" "$RATE_NEW" "$RATE_REPEAT" <<'PY'
import datetime, io, json, sys
out_dir, mx, ap, ad, record, machine, phase, rn, rr = sys.argv[1:]
mx, ap, ad = int(mx), int(ap), int(ad)
def p90(v):
    v = sorted(x for x in v if x is not None and x >= 0)
    return v[max(0, -(-len(v) * 9 // 10) - 1)] * 1000 if v else float("nan")
rows = []
for label, fixed in (("autoscale", None), ("peak", (mx, mx)), ("average", (ap, ad))):
    r = json.load(open("%s/%s.json" % (out_dir, label)))
    dur = r["total_duration"]
    if fixed:
        rs = (fixed[0] + fixed[1]) * dur
    else:
        tl = r["timeline"]; t = tl["t"]; rs = 0.0
        for role in ("prefill", "decode"):
            v = tl["series"].get('tandem_up_running_replicas{role="%s"}' % role, [])
            rs += sum((v[k] or 0) * (t[k + 1] - t[k]) for k in range(len(t) - 1))
        rs += 2 * (dur - (t[-1] - t[0]))  # unsampled edges at the minimum
    itls = [g for gaps in r["itls"] for g in gaps]
    failed = sum(1 for e in r["errors"] if e)
    rows.append((label, len(r["ttfts"]) - failed, failed, rs, p90(r["ttfts"]), p90(itls)))
peak = [x for x in rows if x[0] == "peak"][0]
o = io.StringIO()
o.write("| layout | completed | failed | replica-seconds | vs peak | p90 TTFT (ms) | vs peak | p90 ITL (ms) |\n")
o.write("|---|---|---|---|---|---|---|---|\n")
for label, ok, failed, rs, tt, it in rows:
    name = {"autoscale": "autoscale (1-%d per role)" % mx, "peak": "fixed peak (%dP+%dD)" % (mx, mx),
            "average": "fixed average (%dP+%dD)" % (ap, ad)}[label]
    o.write("| %s | %d | %d | %.0f | %.0f%% | %.0f | %.2fx | %.1f |\n" % (
        name, ok, failed, rs, 100 * rs / peak[3], tt, tt / peak[4], it))
sys.stdout.write(o.getvalue())
if record != "0":
    with open("bench/RESULTS.md", "a") as f:
        f.write("\n## autoscale run (recorded by the script)\n\n")
        f.write("- **Command:** `make build && bench/autoscale.sh build`\n")
        f.write("- **Machine:** %s; **date:** %s\n" % (machine, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")))
        f.write("- **Workload:** new long prompts %ss @ %s req/s, repeated prompts %ss @ %s req/s, new again %ss\n\n" % (phase, rn, phase, rr, phase))
        f.write(o.getvalue())
PY
"$BIN" bench compare --html "$OUT/report.html" "$OUT/autoscale.json" "$OUT/peak.json" \
  "$OUT/average.json" >"$OUT/compare.txt" 2>&1 || true
echo "HTML report: $OUT/report.html"
