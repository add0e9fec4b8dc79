#!/usr/bin/env bash
# bench/vllm-router-vs-llm-d: seed 003's comparison table, measured. The same 8 prefill +
# 8 decode engines (two `tandem sim --data-parallel-size 8`, modeled H100s running Llama
# 3.1 8B, block size 128 as in the seed) behind the router twice, P/D run by the router
# in both (NIXL two-stage), only the scheduling differs:
#   vllm-router  seed 003's flags: --pd-disaggregation ... --policy consistent_hash
#                (every request prefilled, then decoded; workers picked by hash)
#   llm-d        the same flags with llm-d's P/D profile (--policy pd: prefix-cache
#                scorer x2 + queue scorer per profile, prefill skipped when the decode
#                pod has the prompt cached)
# Two workloads: the seed's run-benchmark.sh (vllm bench serve's random 1024 in / 128 out
# at concurrency 32) and llm-d's shared-prefix one (groups sharing long system prompts),
# each on fresh engines. Prints the table (throughput, TTFT/ITL p50/p99, the engines'
# prefix-cache hit ratio over prompt tokens of both roles, and the share of requests that
# skipped prefill) and appends it to bench/RESULTS.md (RECORD=0 to skip). The clients'
# own cached_tokens would say 1.0 for both: a decode pod reports the KV it received.
#
# usage: bench/vllm-router-vs-llm-d.sh [BUILD_DIR]  (env: SCALE (0.1), NUM (400),
#        CONC (32), GSP_RATE (req/s, 24), GSP_DURATION (s, 40), OUT, RECORD)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
SCALE="${SCALE:-0.1}"
NUM="${NUM:-400}"
CONC="${CONC:-32}"
GSP_RATE="${GSP_RATE:-24}"
GSP_DURATION="${GSP_DURATION:-40}"
OUT="${OUT:-bench/out/vllm-router-vs-llm-d}"
MODEL=meta-llama/Llama-3.1-8B-Instruct
. bench/lib.sh
mkdir -p "$OUT"
tmp=$(mktemp -d)
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$tmp"' EXIT

engines() { # -> PF DC ports
  PF=$(port); DC=$(port)
  for role in prefill decode; do
    local p=$PF; [ "$role" = decode ] && p=$DC
    "$BIN" sim --model "$MODEL" --host 127.0.0.1 --port "$p" --pod-name "$role" \
      --kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}' \
      --block-size 128 --data-parallel-size 8 --profile h100-8b --time-scale "$SCALE" \
      --disable-log-requests --stats-interval 0 --log-level warn >"$tmp/$role.log" 2>&1 &
    pids+=($!)
    wait_http "$p" /health
  done
}

router() { # label -> R port
  local label=$1 extra=()
  [ "$label" = llm-d ] && extra=(--policy pd) || extra=(--policy consistent_hash)
  R=$(port)
  "$BIN" router --host 127.0.0.1 --port "$R" --prometheus-port 0 --log-level warn \
    --pd-disaggregation --prefill "http://127.0.0.1:$PF" --decode "http://127.0.0.1:$DC" \
    --intra-node-data-parallel-size 8 "${extra[@]}" >"$tmp/router-$label.log" 2>&1 &
  pids+=($!)
  wait_http "$R" /health
  # every DP worker scraped once, so the first decisions see all 16
  sleep 1
}

run() { # workload label
  local wl=$1 label=$2 args=()
  engines
  router "$label"
  if [ "$wl" = random ]; then
    args=(--dataset-name random --random-input-len 1024 --random-output-len 128
          --num-prompts "$NUM" --max-concurrency "$CONC")
  else
    args=(--dataset-name shared-prefix --gsp-num-groups 32 --gsp-prompts-per-group 64
          --gsp-system-prompt-len 4000 --gsp-question-len 400 --gsp-output-len 128
          --request-rate "$GSP_RATE" --duration "$GSP_DURATION")
  fi
  "$BIN" bench --port "$R" --model "$MODEL" --disable-tqdm --ignore-eos --seed 3 \
    --label "$label" --save-result --result-dir "$OUT" --result-filename "$wl-$label.json" \
    --metric-percentiles 50,99 "${args[@]}" >"$OUT/$wl-$label.txt" 2>&1 ||
    { tail -20 "$OUT/$wl-$label.txt" >&2; exit 1; }
  # engine-side figures: prompt tokens served from a prefix cache (both roles), and how
  # many requests the prefill engines saw at all
  python3 - "$PF" "$DC" "$OUT/$wl-$label.engines.json" <<'PY'
import json, sys, urllib.request
def scrape(port):
    out = {}
    for line in urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=10).read().decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
p, d = scrape(sys.argv[1]), scrape(sys.argv[2])
hits = p.get("vllm:prefix_cache_hits_total", 0) + d.get("vllm:prefix_cache_hits_total", 0)
queries = p.get("vllm:prefix_cache_queries_total", 0) + d.get("vllm:prefix_cache_queries_total", 0)
json.dump({"prefill_requests": p.get("vllm:request_success_total", 0),
           "decode_requests": d.get("vllm:request_success_total", 0),
           "prefix_hits": hits, "prefix_queries": queries}, open(sys.argv[3], "w"))
PY
  stop_all
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%Y-%m-%dT%H:%MZ)"
rm -f "$OUT"/*.json "$OUT"/*.engines
n=0
for wl in random shared-prefix; do
  for label in vllm-router llm-d vllm-router llm-d; do # A B A B: this machine is noisy
    n=$((n + 1))
    run "$wl" "$label"
    mv "$OUT/$wl-$label.json" "$OUT/$wl-$label-$n.json"
    mv "$OUT/$wl-$label.engines.json" "$OUT/$wl-$label-$n.engines"
  done
done

machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
python3 - "$OUT" "$SCALE" "${RECORD:-1}" "$machine" "$NUM" "$CONC" "$GSP_RATE" "$GSP_DURATION" <<'PY'
import datetime, glob, io, json, statistics, sys
out, scale, record, machine, num, conc, rate, dur = sys.argv[1:]
scale = float(scale)
o = io.StringIO()
o.write("| workload | router | runs | output tok/s | TTFT p50 (ms) | TTFT p99 (ms) | ITL p50 (ms) | ITL p99 (ms) | prefix-cache hit ratio | prefill skipped |\n")
o.write("|---|---|---|---|---|---|---|---|---|---|\n")
med = lambda xs: statistics.median(xs)
rows = {}
for wl in ("random", "shared-prefix"):
    for label in ("vllm-router", "llm-d"):
        paths = sorted(glob.glob("%s/%s-%s-*.json" % (out, wl, label)))
        rs = [json.load(open(p)) for p in paths]
        if not rs:
            continue
        es = [json.load(open(p[:-5] + ".engines")) for p in paths]
        g = lambda k: med([r[k] for r in rs])
        hit = med([e["prefix_hits"] / e["prefix_queries"] if e["prefix_queries"] else 0 for e in es])
        skipped = med([1 - e["prefill_requests"] / e["decode_requests"] if e["decode_requests"] else 0 for e in es])
        row = (g("output_throughput"), g("p50_ttft_ms") / scale, g("p99_ttft_ms") / scale,
               g("p50_itl_ms") / scale, g("p99_itl_ms") / scale, hit, skipped)
        rows[(wl, label)] = row
        o.write("| %s | %s | %d | %.0f | %.0f | %.0f | %.1f | %.1f | %.2f | %.0f%% |\n" % (
            wl, label, len(rs), row[0], row[1], row[2], row[3], row[4], row[5], 100 * row[6]))
o.write("\nllm-d / vllm-router (medians): ")
parts = []
for wl in ("random", "shared-prefix"):
    a, b = rows.get((wl, "vllm-router")), rows.get((wl, "llm-d"))
    if a and b:
        parts.append("%s: throughput %.2fx, TTFT p50 %.2fx, TTFT p99 %.2fx, ITL p50 %.2fx" % (
            wl, b[0] / a[0], b[1] / a[1], b[2] / a[2], b[3] / a[3]))
o.write("; ".join(parts) + "\n")
o.write("(TTFT and ITL in modeled H100 time, i.e. measured / %g; throughput is real)\n" % scale)
sys.stdout.write(o.getvalue())
if record != "0":
    with open("bench/RESULTS.md", "a") as f:
        f.write("\n## vllm-router-vs-llm-d run (recorded by the script)\n\n")
        f.write("- **Command:** `make build && bench/vllm-router-vs-llm-d.sh build`\n")
        f.write("- **Machine:** %s; **date:** %s\n" % (machine, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")))
        f.write("- **Workloads:** random 1024/128, %s prompts at concurrency %s (seed 003's run-benchmark.sh); shared-prefix 32 groups x 4000-token system prompts + 400 question / 128 out at %s req/s for %s s. Each run A B A B on fresh engines; medians.\n\n" % (num, conc, rate, dur))
        f.write(o.getvalue())
PY
