#!/usr/bin/env bash
# bench/scheduling-quality: does prefix-aware routing pay off on llm-d's shared-prefix
# workload, and does precise routing (KV events) beat approximate routing (the router's
# own guess) when the pods' KV caches are under pressure? Starts PODS decode sims
# (--profile h100-32b, time-scaled by SCALE so a run takes minutes) behind `tandem
# router`, once per policy and workload, and drives the same workload up a rate ladder
# with `tandem bench`. Prints a comparison table, appends it with the machine, date and
# parameters to bench/RESULTS.md (RECORD=0 to skip), and writes per-run result JSON, the
# bench output, per-pod counts and one HTML report per workload into OUT.
#
# Workloads (WORKLOAD=shared-prefix|kv-pressure|both, default both):
#  shared-prefix: scale-down of llm-d's run (8 pods, 150 groups x 5 prompts,
#   6000/1200/1000 tokens): 4 pods and 75 groups keep its ratio of system-prompt tokens
#   to KV cache (each pod holds ~42 prompts of 7,200 tokens: prefix-aware routing places
#   ~19 groups per pod, so they fit; spreading every group over every pod needs 450k
#   tokens per pod, so they thrash).
#  kv-pressure: KV_NGROUPS (300) groups, KV_PER_GROUP (10) prompts each, same lengths:
#   1.8M tokens of system prompts against 4 x 307k of KV cache, so even a perfect
#   partition (75 groups per pod, 450k tokens) cannot keep every group cached: pods evict
#   all the time, and the approximate scorer's history (routing decisions, 256 blocks of
#   each prompt, an LRU as large as the pod's KV cache) keeps saying "pod A has it" after
#   A evicted it. The precise scorer follows the sims' BlockStored/BlockRemoved events.
# Policies: random, round_robin, consistent_hash, load (queue + kv-cache scorers),
#  llm-d (approximate: llm-d's default profile, prefix-cache-scorer 3, queue 2, kv 2,
#  lruCapacityPerServer = the sims' KV blocks as llm-d's autoTune sets it), cache_aware
#  (vllm-router's), precise (llm-d's epp-precise-prefix-cache-config: precise scorer 2,
#  kv-cache 1, queue 1, max-score-picker; KV events from every sim over ZMQ;
#  speculativeIndexing on, as llm-d's precise guide and architecture docs recommend for
#  production), precise-nospec (the same without speculativeIndexing, as the sample
#  config file has it).
# Every sim publishes KV events (vLLM's --kv-events-config, connecting to the router's
# SUB socket) under every policy, so the sims do the same work whichever policy runs.
# ROUTERS=N (default 1) runs N routers with the same config (active-active scheduler
# replicas) behind a front `tandem router --policy round_robin` (the gateway / Service
# spreading clients over the replicas); the load goes to the front. Each sim then binds
# its own PUB socket on its own loopback address (127.0.0.2, .3, ...: a pod's IP) at one
# port, and precise routers connect to every pod (kvEventsConfig.discoverPods with
# endpoint-notification-source, llm-d's setup for active-active replicas), so every
# replica sees every pod's events; approximate routers each see only their share.
# ROUTER_ARGS: extra flags for every scheduling router (e.g. --raw-scraped-load: load
# scorers without the router's sent-since-scrape estimate, as llm-d's).
# Outputs are cut to OUTPUT_LEN tokens to keep the run short; rates are in real time
# (modeled time runs 1/SCALE faster), so 4 pods of modeled H100s at SCALE 0.1 take
# 10x the rates of real ones.
#
# usage: bench/scheduling-quality.sh [BUILD_DIR]   (env: WORKLOAD PODS SCALE STAGE
#        OUTPUT_LEN OUT PROBE PRECISE_WEIGHTS PRECISE_LOAD
#        PRECISE_SPECULATIVE ROUTERS ROUTER_ARGS; shared-prefix: NGROUPS PER_GROUP LADDER POLICIES; kv-pressure:
#        KV_NGROUPS KV_PER_GROUP KV_LADDER KV_POLICIES KV_BLOCKS)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
WORKLOAD="${WORKLOAD:-both}"
PODS="${PODS:-4}"
NGROUPS="${NGROUPS:-75}"
PER_GROUP="${PER_GROUP:-48}"
SCALE="${SCALE:-0.1}"
LADDER="${LADDER:-30,60,90,120}"
STAGE="${STAGE:-10}"
OUTPUT_LEN="${OUTPUT_LEN:-100}"
POLICIES="${POLICIES:-random round_robin consistent_hash load llm-d cache_aware precise}"
KV_NGROUPS="${KV_NGROUPS:-300}"
KV_PER_GROUP="${KV_PER_GROUP:-10}"
KV_LADDER="${KV_LADDER:-30,60,90,120}"
KV_POLICIES="${KV_POLICIES:-random round_robin llm-d precise}"
KV_BLOCKS="${KV_BLOCKS:-19200}" # the h100-32b profile's KV blocks (16 tokens each)
OUT="${OUT:-bench/out/scheduling-quality}"
ROUTERS="${ROUTERS:-1}"
[ "$ROUTERS" -ge 1 ] 2>/dev/null || { echo "ROUTERS must be a number >= 1" >&2; exit 2; }
case "$WORKLOAD" in
  shared-prefix | kv-pressure) workloads=("$WORKLOAD") ;;
  both) workloads=(shared-prefix kv-pressure) ;;
  *) echo "WORKLOAD must be shared-prefix, kv-pressure or both" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_http HOST:PORT PATH; a bare PORT means 127.0.0.1:PORT
wait_http() { local a=$1; [[ $a == *:* ]] || a=127.0.0.1:$a; for _ in $(seq 200); do curl -fs "http://$a$2" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer on $a$2" >&2; return 1; }
# metric HOST:PORT NAME: the sum of a counter's samples on /metrics (0 when absent)
metric() { local a=$1; [[ $a == *:* ]] || a=127.0.0.1:$a; curl -fs "http://$a/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d\n", s }'; }

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

# Approximate: `--policy llm-d` (tandem's preset of llm-d's default profile) with the
# LRU sized as llm-d's autoTune sizes it (the engines' num_gpu_blocks).
cat >"$tmp/llm-d.yaml" <<YAML
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: single-profile-handler
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
  parameters:
    lruCapacityPerServer: $KV_BLOCKS
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
  - pluginRef: max-score-picker
YAML

# Precise: llm-d's deploy/config/epp-precise-prefix-cache-config.yaml, same scorers and
# weights, without its data-layer wiring (endpoint-notification-source) and token-producer
# (the sims tokenize as the router does), and without decode-filter (pods unlabelled);
# blockSize is the sims' --block-size (16; llm-d's sample says 64 for its vLLM pods).
# PRECISE_WEIGHTS="P K Q" changes the precise, kv-cache and queue weights (2 1 1);
# PRECISE_LOAD=active-request-scorer replaces queue-scorer (load from the router's own
# in-flight counts instead of the scraped queue); PRECISE_SPECULATIVE=true sets llm-d's
# speculativeIndexing (index entries at the routing decision, before the KV events;
# default true, precise-nospec: false). With ROUTERS > 1 ($7 = the pods' socket port) the
# scorer connects to every pod (discoverPods, endpoint-notification-source wired to it
# as in the sample) and binds nothing.
precise_yaml() {
  local ev="zmqEndpoint: tcp://127.0.0.1:$1" dp="" dl=""
  if [ -n "${7:-}" ]; then
    ev="zmqEndpoint: \"\"
      discoverPods: true
      podDiscoveryConfig:
        socketPort: $7"
    dp="- type: endpoint-notification-source
- type: metrics-data-source
- type: core-metrics-extractor"
    dl="dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: core-metrics-extractor
  - pluginRef: endpoint-notification-source
    extractors:
    - pluginRef: precise-prefix-cache-scorer"
  fi
  cat <<YAML
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
$dp
- type: single-profile-handler
- type: precise-prefix-cache-scorer
  parameters:
    tokenProcessorConfig:
      blockSize: 16
    kvEventsConfig:
      $ev
      topicFilter: "kv@"
    indexerConfig:
      kvBlockIndexConfig:
        enableMetrics: true
    speculativeIndexing: $6
- type: kv-cache-utilization-scorer
- type: $5
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: precise-prefix-cache-scorer
    weight: $2
  - pluginRef: kv-cache-utilization-scorer
    weight: $3
  - pluginRef: $5
    weight: $4
  - pluginRef: max-score-picker
$dl
YAML
}

machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "machine: $machine; date: $(date -u +%Y-%m-%dT%H:%MZ)"

# run_one WORKLOAD POLICY NGROUPS PER_GROUP LADDER: ROUTERS routers (and the front when
# several) + PODS sims, one bench run.
run_one() {
  local wl=$1 policy=$2 ng=$3 pg=$4 ladder=$5 name="$1-$2"
  local Z S="" sims=() eps=() addrs=() rports=() rpids=() p a host R F="" D i k
  local precise="" spec=""
  case "$policy" in precise) precise=1 spec=${PRECISE_SPECULATIVE:-true} ;; precise-nospec) precise=1 spec=false ;; esac
  [ "$ROUTERS" -gt 1 ] && name="$name-r$ROUTERS"
  Z=$(port)
  [ "$ROUTERS" -gt 1 ] && S=$(port)
  for i in $(seq 0 $((PODS - 1))); do
    p=$(port)
    if [ -n "$S" ]; then
      # a pod of its own: its address, its PUB bound at the shared socket port
      host=127.0.0.$((i + 2))
      kv="{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://[::ffff:$host]:$S\",\"topic\":\"kv@$host:$p@m\"}"
    else
      host=127.0.0.1
      kv="{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://127.0.0.1:$Z\",\"topic\":\"kv@127.0.0.1:$p@m\"}"
    fi
    "$BIN" sim --model m --profile h100-32b --time-scale "$SCALE" --host "$host" --port "$p" \
      --pod-name "decode-$i" --num-gpu-blocks "$KV_BLOCKS" --block-size 16 \
      --kv-events-config "$kv" --disable-log-requests --stats-interval 0 --log-level warn &
    sims+=($!)
    pids+=($!)
    addrs+=("$host:$p")
    eps+=(--endpoint "name=decode-$i,addr=$host:$p")
    wait_http "$host:$p" /health
  done
  case "$policy" in
    load) pol=(--config-file "$tmp/load.yaml") ;;
    llm-d) pol=(--config-file "$tmp/llm-d.yaml") ;;
    precise | precise-nospec)
      precise_yaml "$Z" ${PRECISE_WEIGHTS:-2.0 1.0 1.0} "${PRECISE_LOAD:-queue-scorer}" "$spec" "$S" >"$tmp/precise.yaml"
      pol=(--config-file "$tmp/precise.yaml") ;;
    *) pol=(--policy "$policy") ;;
  esac
  for k in $(seq "$ROUTERS"); do
    R=$(port)
    "$BIN" router --host 127.0.0.1 --port "$R" --metrics-port 0 --workers 1 --log-level warn \
      --enable-debug-endpoints ${ROUTER_ARGS:-} "${pol[@]}" "${eps[@]}" &
    rpids+=($!)
    pids+=($!)
    rports+=("$R")
    wait_http "$R" /ready
  done
  # D: the router the probe asks; F: where the load goes (the round-robin front with
  # several routers, else the router)
  D=${rports[0]} F=${rports[0]}
  if [ "$ROUTERS" -gt 1 ]; then
    F=$(port)
    local feps=()
    for k in "${!rports[@]}"; do feps+=(--endpoint "name=router-$k,addr=127.0.0.1:${rports[$k]}"); done
    "$BIN" router --host 127.0.0.1 --port "$F" --metrics-port 0 --workers 1 --log-level warn \
      --policy round_robin "${feps[@]}" &
    rpids+=($!)
    pids+=($!)
    wait_http "$F" /ready
  fi
  # ZMQ drops what a PUB sends before its connection is up (the sims connect, or with
  # several routers the routers connect, every 100 ms): a small prompt straight to each
  # sim, a new one each try, until every router's index counts its blocks (precise only;
  # the others get the same warm-up, unchecked).
  indexed() { # every router's admissions above its count in before[]
    local j
    for j in "${!rports[@]}"; do
      [ "$(metric "${rports[$j]}" kvcache_index_admissions_total)" -gt "${before[$j]}" ] || return 1
    done
  }
  for a in "${addrs[@]}"; do
    for i in $(seq 50); do
      local before=()
      for k in "${!rports[@]}"; do
        before+=("$([ -n "$precise" ] && metric "${rports[$k]}" kvcache_index_admissions_total || echo 0)")
      done
      curl -fs "http://$a/v1/completions" -H 'content-type: application/json' \
        -d "{\"model\":\"m\",\"prompt\":\"warm-up $a $i: a few words of text that fill two blocks of sixteen tokens or more, and then some\",\"max_tokens\":1}" >/dev/null
      [ -n "$precise" ] || break
      local ok=
      for _ in $(seq 10); do
        indexed && { ok=1; break; }
        sleep 0.02
      done
      [ -n "$ok" ] && break
      [ "$i" = 50 ] && { echo "no KV events from the sim on $a in every router" >&2; exit 1; }
    done
  done
  # precise: how long the scorer is blind to a new prompt (sent through the front, until
  # the first router's index holds its first block: queueing + prefill + event delivery;
  # with speculative indexing, ~0 when that router routed it), one probe of ~60 tokens
  # (max_tokens 1) a second, in the background (PROBE=0: none); approximate routing
  # records a prompt at the routing decision, so it has no such window.
  local probe="" label=$policy
  # a precise variant names its knobs in the table
  [ "$policy" = precise ] && [ -n "${PRECISE_WEIGHTS:-}${PRECISE_LOAD:-}${PRECISE_SPECULATIVE:-}" ] &&
    label="precise (${PRECISE_WEIGHTS:+weights $PRECISE_WEIGHTS }${PRECISE_LOAD:+$PRECISE_LOAD }${PRECISE_SPECULATIVE:+speculative $PRECISE_SPECULATIVE})" &&
    label=${label/ )/)}
  [ "$ROUTERS" -gt 1 ] && label="$label x$ROUTERS"
  rm -f "$OUT/$name.lag.txt"
  if [ -n "$precise" ] && [ "${PROBE:-1}" != 0 ]; then
    python3 - "$F" "$D" "$OUT/$name.lag.txt" <<'PY' &
import json, sys, threading, time, urllib.request
port, dport, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def post(p, body, to=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (to or port, p), json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    return urllib.request.urlopen(req, timeout=60).read()
def served():  # requests the front took (the bench's first one starts the clock)
    m = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    return sum(float(l.split()[-1]) for l in m.splitlines()
               if l.startswith("tandem_router_requests_total"))
while served() == 0:
    time.sleep(0.02)
t_start, i = time.time(), 0
with open(path, "w") as out:
    while True:
        i += 1
        text = "probe %d: " % i + " ".join("w%d" % ((i * 31 + k * 7) % 9973) for k in range(60))
        t0 = time.time()
        done = []
        threading.Thread(target=lambda: (post("/v1/completions", {"model": "m", "prompt": text,
                         "max_tokens": 1}), done.append(time.time())), daemon=True).start()
        lag = None
        try:
            while time.time() - t0 < 30:
                t = json.loads(post("/debug/schedule", {"model": "m", "prompt": text}, dport))
                sc = [s for s in t["profiles"][0]["scorers"]
                      if s["name"] == "precise-prefix-cache-scorer"][0]["scores"]
                if max(sc.values()) > 0:
                    lag = time.time() - t0
                    break
                time.sleep(0.02)
        except Exception:
            break
        out.write("%.3f %s\n" % (t0 - t_start, "%.3f" % lag if lag is not None else "-"))
        out.flush()
        time.sleep(max(0, 1 - (time.time() - t0)))
PY
    probe=$!
    pids+=("$probe")
  fi
  "$BIN" bench --disable-tqdm --port "$F" --model m --dataset-name shared-prefix \
    --gsp-num-groups "$ng" --gsp-prompts-per-group "$pg" \
    --gsp-system-prompt-len 6000 --gsp-question-len 1200 --gsp-output-len "$OUTPUT_LEN" \
    --ignore-eos --rate-ladder "$ladder" --stage-duration "$STAGE" --seed 7 \
    --label "$label" --save-result --save-detailed --result-dir "$OUT" \
    --result-filename "$name.json" > "$OUT/$name.txt" 2>&1 || true
  [ -n "$probe" ] && { kill "$probe" 2>/dev/null; wait "$probe" 2>/dev/null || true; }
  tail -n 30 "$OUT/$name.txt" | grep -E "Successful|Failed|P90 TTFT|Prefix cache" || true
  # Per pod: requests served and prefix-cache hit ratio (the sims' vLLM counters); for
  # precise, each router's index counters.
  {
    for i in "${!addrs[@]}"; do
      local q h
      q=$(metric "${addrs[$i]}" vllm:prefix_cache_queries_total)
      h=$(metric "${addrs[$i]}" vllm:prefix_cache_hits_total)
      echo "decode-$i requests=$(metric "${addrs[$i]}" vllm:request_success_total) hit_ratio=$(awk -v h="$h" -v q="$q" 'BEGIN { printf "%.2f", q ? h / q : 0 }') preemptions=$(metric "${addrs[$i]}" vllm:num_preemptions_total)"
    done
    if [ "$ROUTERS" -gt 1 ]; then
      for k in "${!rports[@]}"; do
        echo "router-$k requests=$(metric "${rports[$k]}" tandem_router_requests_total)"
      done
    fi
    if [ -n "$precise" ]; then
      for k in "${!rports[@]}"; do
        R=${rports[$k]}
        echo "router-$k index: admissions=$(metric "$R" kvcache_index_admissions_total) evictions=$(metric "$R" kvcache_index_evictions_total) lookups=$(metric "$R" kvcache_index_lookup_requests_total)"
      done
      # blind window per stage (real seconds): median / p90 / max of the probes
      if [ -f "$OUT/$name.lag.txt" ]; then python3 - "$OUT/$name.lag.txt" "$STAGE" "$ladder" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
stage, rates = float(sys.argv[2]), sys.argv[3].split(",")
for k, rate in enumerate(rates):
    v = sorted(float(b) if b != "-" else 30.0 for a, b in rows if k * stage <= float(a) < (k + 1) * stage)
    if v:
        print("stage %s req/s: precise scorer blind for median %.3f s, p90 %.3f s, max %.3f s real (%d probes)"
              % (rate, v[len(v) // 2], v[int(len(v) * 0.9)], v[-1], len(v)))
PY
      fi
    fi
  } | tee "$OUT/$name.pods.txt"
  kill "${rpids[@]}" "${sims[@]}" 2>/dev/null || true
  wait "${rpids[@]}" "${sims[@]}" 2>/dev/null || true
  results+=("$OUT/$name.json")
}

for wl in "${workloads[@]}"; do
  results=()
  if [ "$wl" = shared-prefix ]; then
    ng=$NGROUPS pg=$PER_GROUP ladder=$LADDER pols=$POLICIES
  else
    ng=$KV_NGROUPS pg=$KV_PER_GROUP ladder=$KV_LADDER pols=$KV_POLICIES
  fi
  params="workload=$wl pods=$PODS routers=$ROUTERS kv_blocks=$KV_BLOCKS groups=$ng per_group=$pg scale=$SCALE ladder=$ladder stage=${STAGE}s output=$OUTPUT_LEN"
  [[ " $pols " == *" precise "* ]] && params="$params precise_speculative=${PRECISE_SPECULATIVE:-true}"
  echo "== $params"
  for policy in $pols; do
    run_one "$wl" "$policy" "$ng" "$pg" "$ladder"
  done
  # The comparison table, per stage, from the result files.
  # the command that reruns it: the knobs this invocation was given
  cmd="WORKLOAD=$wl"
  for v in ROUTERS ROUTER_ARGS PODS SCALE STAGE OUTPUT_LEN PROBE PRECISE_WEIGHTS PRECISE_LOAD PRECISE_SPECULATIVE \
    NGROUPS PER_GROUP LADDER POLICIES KV_NGROUPS KV_PER_GROUP KV_LADDER KV_POLICIES KV_BLOCKS; do
    val=$(printenv "$v" || true)
    [ -z "$val" ] && continue
    [[ $val == *" "* ]] && val="\"$val\""
    cmd="$cmd $v=$val"
  done
  python3 - "$SCALE" "${RECORD:-1}" "$machine" "$params" "$wl" "$STAGE" "$PODS" "$cmd" "${results[@]}" <<'PY'
import datetime, io, json, sys
scale = float(sys.argv[1])
record, machine, params, wl = sys.argv[2] != "0", sys.argv[3], sys.argv[4], sys.argv[5]
stage, pods_n, cmd = float(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
runs = [json.load(open(p)) for p in sys.argv[9:]]
out = io.StringIO()
def print(*a):
    out.write(" ".join(str(x) for x in a) + "\n")
print()
print("| policy | stage (req/s, real) | completed | failed | output tok/s (real) | TTFT mean (s) | TTFT p90 (s) | ITL mean (ms) | cache hit ratio | same pod as previous |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    stages = r.get("stages") or [r]
    pods, starts = r.get("pods") or [], r.get("start_times") or []
    for k, s in enumerate(stages):
        chr_ = s.get("cache_hit_ratio")
        # Herding: how often a request went to the same pod as the request sent before it
        # (1 / pods when picks are independent), over the requests sent in this stage.
        seq = [p for _, p in sorted((t, p) for t, p in zip(starts, pods)
                                    if k * stage <= t < (k + 1) * stage)]
        same = sum(a == b for a, b in zip(seq, seq[1:])) / (len(seq) - 1) if len(seq) > 1 else None
        # Latencies in modeled H100 time: real / scale.
        print("| %s | %s | %d | %d | %.0f | %.2f | %.2f | %.1f | %s | %s |" % (
            r["label"], s["request_rate"], s["completed"], s["failed"], s["output_throughput"],
            s["mean_ttft_ms"] / 1000 / scale, s["p90_ttft_ms"] / 1000 / scale,
            s["mean_itl_ms"] / scale, "%.2f" % chr_ if chr_ is not None else "-",
            "%.2f" % same if same is not None else "-"))
print()
print("(TTFT and ITL in modeled H100 time, i.e. measured / %g; rates and throughput are real;"
      " same pod as previous: 1/%d when picks are independent)" % (scale, pods_n))
sys.stdout.write(out.getvalue())
if record:
    with open("bench/RESULTS.md", "a") as f:
        f.write("\n## scheduling-quality run, %s workload (recorded by the script)\n\n" % wl)
        f.write("- **Command:** `make build && %s bench/scheduling-quality.sh build`\n" % cmd)
        f.write("- **Machine:** %s; **date:** %s\n" % (machine, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
        f.write("- **Parameters:** %s\n" % params)
        f.write(out.getvalue())
PY
  "$BIN" bench compare --html "$OUT/$wl-report.html" "${results[@]}" > "$OUT/$wl-compare.txt" 2>&1 || true
  echo "HTML report: $OUT/$wl-report.html"
done
