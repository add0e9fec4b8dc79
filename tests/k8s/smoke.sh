#!/usr/bin/env bash
# Smoke test of tests/k8s/env.sh: a real control plane comes up, Pods can be created and
# their status patched, the CRDs serve, RBAC holds for the restricted token, kube-apiserver
# can be stopped and started again, a second environment starts in parallel from the
# cached binaries in under 30 s, and the watchdog stops an environment whose owner died.
#
#   tests/k8s/smoke.sh      exit 0: all held; 3: Go missing (skipped); else failed
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV=$HERE/env.sh
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tandem-k8s-smoke.XXXXXX")
A=$TMP/a
B=$TMP/b
OWNER_PID=

cleanup() {
  "$ENV" stop "$A" || true
  "$ENV" stop "$B" || true
  if [ -n "$OWNER_PID" ]; then kill "$OWNER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

fails=0
pass() { echo "ok   $*"; }
fail() {
  echo "FAIL $*"
  fails=$((fails + 1))
}
check() { # DESC CMD...: pass if CMD succeeds
  local d=$1
  shift
  local out
  if out=$("$@" 2>&1); then pass "$d"; else
    fail "$d"
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/     /'
  fi
}
check_not() { # DESC CMD...: pass if CMD fails
  local d=$1
  shift
  if "$@" >/dev/null 2>&1; then fail "$d"; else pass "$d"; fi
}
expect() { # DESC GOT WANT
  if [ "$2" = "$3" ]; then pass "$1: $2"; else fail "$1: got '$2', want '$3'"; fi
}
now_ms() { date +%s%3N; }

# Retry CMD... every 0.2 s for up to SECONDS until it succeeds.
eventually() { # SECONDS CMD...
  local deadline=$(($(now_ms) + $1 * 1000))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# --- environment A (this may build the binaries on a fresh machine) ----------------------
t0=$(now_ms)
rc=0
"$ENV" start "$A" || rc=$?
if [ "$rc" = 3 ]; then exit 3; fi
[ "$rc" = 0 ] || { echo "FAIL env.sh start (exit $rc)"; exit 1; }
pass "start A in $(($(now_ms) - t0)) ms"

# shellcheck disable=SC1091
. "$A/env"
K=("$KUBECTL" --request-timeout=10s)
R=("$KUBECTL" --kubeconfig="$TANDEM_K8S_ROUTER_KUBECONFIG" --request-timeout=10s)

expect "/readyz" "$("${K[@]}" get --raw /readyz)" ok

# A namespace and a Pod in it, in one plain kubectl apply, as on a real cluster.
check "apply namespace + pod in one kubectl apply" "${K[@]}" apply -f - <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: smoke
---
apiVersion: v1
kind: Pod
metadata:
  name: p1
  namespace: smoke
  labels:
    app: model
    llm-d.ai/role: decode
spec:
  containers:
  - name: model
    image: x
EOF

check "patch pod status through the status subresource" \
  "${K[@]}" -n smoke patch pod p1 --subresource=status --type=merge \
  -p '{"status":{"podIP":"127.0.0.2","podIPs":[{"ip":"127.0.0.2"}],"conditions":[{"type":"Ready","status":"True"}],"phase":"Running"}}'
sleep 1 # nothing may overwrite the patched status (no kubelet, no controllers for pods)
got=$("${K[@]}" -n smoke get pod p1 -o jsonpath='{.status.podIP} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}')
expect "pod status reads back" "$got" "127.0.0.2 Running True"

# InferencePools in both API groups, read back through their short names.
check "create InferencePool v1 + v1alpha2" "${K[@]}" apply -f - <<'EOF'
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  namespace: smoke
spec:
  selector:
    matchLabels:
      app: model
  targetPorts:
  - number: 8000
  endpointPickerRef:
    name: pool-epp
    port:
      number: 9002
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: pool
  namespace: smoke
spec:
  selector:
    app: model
  targetPortNumber: 8000
  extensionRef:
    name: pool-epp
EOF
got=$("${K[@]}" -n smoke get infpool pool -o jsonpath='{.spec.selector.matchLabels.app} {.spec.targetPorts[0].number} {.spec.endpointPickerRef.kind}')
expect "v1 pool reads back" "$got" "model 8000 Service"
got=$("${K[@]}" -n smoke get xinfpool pool -o jsonpath='{.spec.selector.app} {.spec.targetPortNumber} {.spec.extensionRef.failureMode}')
expect "v1alpha2 pool reads back" "$got" "model 8000 FailClose"
check_not "schema rejects duplicate target ports" "${K[@]}" -n smoke apply -f - <<'EOF'
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: bad
spec:
  selector:
    matchLabels:
      app: model
  targetPorts:
  - number: 8000
  - number: 8000
EOF

# RBAC: the restricted token is Forbidden until a Role grants it.
out=$("${R[@]}" -n smoke get pods 2>&1 || true)
if [[ $out == *Forbidden* ]]; then pass "restricted token Forbidden before RoleBinding"; else fail "restricted token before RoleBinding: $out"; fi
"${K[@]}" -n smoke create role tandem-router --verb=get,list,watch \
  --resource=pods,inferencepools.inference.networking.k8s.io >/dev/null
"${K[@]}" -n smoke create rolebinding tandem-router --role=tandem-router --user=tandem-router >/dev/null
check "restricted token lists pods after RoleBinding" eventually 10 "${R[@]}" -n smoke get pods
check "restricted token reads the pool" eventually 10 "${R[@]}" -n smoke get infpool pool
out=$("${R[@]}" -n default get pods 2>&1 || true)
if [[ $out == *Forbidden* ]]; then pass "restricted token still Forbidden in another namespace"; else fail "other namespace: $out"; fi

# The client-certificate kubeconfig works too.
got=$("$KUBECTL" --kubeconfig="$TANDEM_K8S_ADMIN_CERT_KUBECONFIG" get ns smoke -o name 2>&1)
expect "client-certificate kubeconfig" "$got" namespace/smoke

# kube-apiserver stopped and started again on the same port; state survives in etcd.
"$ENV" apiserver-stop "$A"
check_not "apiserver-stop: the server no longer answers" "${K[@]}" get --raw /readyz
t1=$(now_ms)
if "$ENV" apiserver-start "$A"; then pass "apiserver-start in $(($(now_ms) - t1)) ms"; else fail "apiserver-start"; fi
got=$("${K[@]}" -n smoke get pod p1 -o jsonpath='{.status.podIP}' 2>&1)
expect "pod survives the apiserver restart" "$got" 127.0.0.2
# shellcheck disable=SC1091
. "$A/env" # the new TANDEM_K8S_APISERVER_PID

# --- environment B: in parallel with A, binaries cached, owned by a process we kill ------
sleep 600 &
OWNER_PID=$!
t1=$(now_ms)
check "start B" env TANDEM_K8S_OWNER_PID="$OWNER_PID" "$ENV" start "$B"
dt=$(($(now_ms) - t1))
if [ "$dt" -lt 30000 ]; then pass "second start (cached binaries, in parallel) in $dt ms"; else fail "second start took $dt ms (limit 30000)"; fi
sA=$TANDEM_K8S_SERVER
sB=$(sed -n 's/^export TANDEM_K8S_SERVER=//p' "$B/env")
if [ "$sA" != "$sB" ] && [ "$(KUBECONFIG=$B/admin.kubeconfig "${K[@]}" get --raw /readyz)" = ok ] &&
  [ "$("${K[@]}" get --raw /readyz)" = ok ]; then
  pass "A ($sA) and B ($sB) run side by side"
else
  fail "parallel environments"
fi

# Memory once up.
rss() { ps -o rss= -p "$1" | tr -d ' '; }
e=$(rss "$TANDEM_K8S_ETCD_PID") a=$(rss "$TANDEM_K8S_APISERVER_PID") k=$(rss "$TANDEM_K8S_KCM_PID")
echo "info RSS of A: etcd $((e / 1024)) MiB, kube-apiserver $((a / 1024)) MiB," \
  "kube-controller-manager $((k / 1024)) MiB, total $(((e + a + k) / 1024)) MiB"

# The watchdog stops B once its owner is gone.
bpids=$(awk '{print $2}' "$B/pids")
kill "$OWNER_PID"
OWNER_PID=
gone() { local p; for p in $bpids; do ! kill -0 "$p" 2>/dev/null || return 1; done; }
check "watchdog stopped B after its owner exited" eventually 20 gone

# stop is idempotent.
t1=$(now_ms)
if "$ENV" stop "$A" && "$ENV" stop "$A"; then pass "stop A (twice) in $(($(now_ms) - t1)) ms"; else fail "stop A"; fi
check_not "stop removed DIR/pids and DIR/env" ls "$A/pids" "$A/env"
stopped=1
for p in $TANDEM_K8S_ETCD_PID $TANDEM_K8S_APISERVER_PID $TANDEM_K8S_KCM_PID $TANDEM_K8S_WATCHDOG_PID; do
  if kill -0 "$p" 2>/dev/null; then stopped=0; fi
done
expect "every process of A is gone" "$stopped" 1

if [ "$fails" = 0 ]; then
  echo "smoke: all passed"
else
  echo "smoke: $fails failed"
  exit 1
fi
