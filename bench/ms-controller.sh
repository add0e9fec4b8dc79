#!/usr/bin/env bash
# bench/ms-controller: 100 ModelServices created at once against the real control plane
# of tests/k8s/env.sh; `tandem ms controller` (release build) reconciles them.
# Measured: time from the create to every CR reconciled (all 10 children applied and a
# status with observedGeneration = generation and Degraded=False), the controller's API
# requests per ModelService (its own counter, tandem_ms_api_requests_total, informer
# lists and watches included), and its RSS.
# Targets (issue 12): <= 10 s, <= 15 API requests per ModelService, RSS <= 32 MiB.
#
# usage: bench/ms-controller.sh [BUILD_DIR] [N]   (build, 100)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
N="${2:-100}"
BIN="$BUILD/tandem"
[ -x "$BIN" ] || { echo "no $BIN: make build" >&2; exit 1; }
tmp=$(mktemp -d)
cpid=
cleanup() {
  [ -n "$cpid" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
  tests/k8s/env.sh stop "$tmp/k8s" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
tests/k8s/env.sh start "$tmp/k8s" >/dev/null
# shellcheck disable=SC1091
source "$tmp/k8s/env"
# shellcheck source=bench/lib.sh
. bench/lib.sh # the scripts run from the repository root (cd above)
"$KUBECTL" create namespace bench >/dev/null
for _ in $(seq 100); do "$KUBECTL" -n bench get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done
"$KUBECTL" -n bench apply -f deploy/samples/nixl-xpyd/universal-baseconfig-hf.yaml >/dev/null
H=$(port)
"$BIN" ms controller --kubeconfig "$KUBECONFIG" --namespace bench --health-port "$H" \
  --log-level warn >"$tmp/controller.log" 2>&1 &
cpid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$H/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
python3 - "$N" "$tmp" <<'PY'
import json, sys
n, tmp = int(sys.argv[1]), sys.argv[2]
src = open("deploy/samples/nixl-xpyd/facebook-nixl.yaml").read()
docs = []
for i in range(n):
    docs.append(src.replace("name: facebook-opt-125m-nixl", "name: ms-%03d" % i, 1)
                   .replace("namespace: default", "namespace: bench"))
open(tmp + "/all.yaml", "w").write("\n---\n".join(docs))
PY
req0=$(curl -fs "http://127.0.0.1:$H/metrics" | awk '/^tandem_ms_api_requests_total/ {s += $2} END {print s + 0}')
t0=$(date +%s.%N)
"$KUBECTL" -n bench create -f "$tmp/all.yaml" >/dev/null
done_at=
for _ in $(seq 600); do
  ok=$("$KUBECTL" -n bench get msvc -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
def ok(m):
    st = m.get("status", {})
    deg = [c for c in st.get("conditions", []) if c["type"] == "Degraded"]
    return st.get("observedGeneration") == m["metadata"]["generation"] and deg and \
        deg[0]["status"] == "False" and st.get("httpRouteRef")
print(sum(1 for m in items if ok(m)))')
  if [ "$ok" = "$N" ]; then done_at=$(date +%s.%N); break; fi
  sleep 0.2
done
[ -n "$done_at" ] || { echo "not all reconciled in 120 s ($ok/$N)" >&2; tail -20 "$tmp/controller.log" >&2; exit 1; }
sleep 3 # stragglers (status patches after the last check) land in the count
req1=$(curl -fs "http://127.0.0.1:$H/metrics" | awk '/^tandem_ms_api_requests_total/ {s += $2} END {print s + 0}')
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$cpid/status")
children=$("$KUBECTL" -n bench get deployments,services,serviceaccounts,rolebindings -l llm-d.ai/modelservice --no-headers | wc -l)
python3 - "$t0" "$done_at" "$req0" "$req1" "$N" "$rss" "$children" <<'PY'
import sys
t0, t1, r0, r1, n, rss, children = sys.argv[1:]
n = int(n)
print("%d ModelServices reconciled in %.2f s (target <= 10 s); %d labelled core children" % (
    n, float(t1) - float(t0), int(children)))
print("API requests: %d for %d ModelServices = %.1f per ModelService (target <= 15)" % (
    float(r1) - float(r0), n, (float(r1) - float(r0)) / n))
print("controller RSS: %.1f MiB (target <= 32 MiB)" % (int(rss) / 1024))
PY
curl -fs "http://127.0.0.1:$H/metrics" | grep -E '^tandem_ms_api_requests_total' | sed 's/^/  /'
