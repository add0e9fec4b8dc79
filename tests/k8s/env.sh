#!/usr/bin/env bash
# A real Kubernetes control plane for tandem's tests, on 127.0.0.1 with random free ports
# and all state under one directory: etcd, kube-apiserver (TLS, token auth, RBAC) and a
# kube-controller-manager running only the garbage-collector, namespace, service-account
# and service-account-token controllers (plus clusterrole aggregation and the
# kube-root-ca.crt publisher, which change no workload status). There is no kubelet, no
# scheduler and no deployment/replicaset controller: Pods and Deployments keep exactly the
# status a test patches in.
#
#   tests/k8s/env.sh start DIR            start; exits 0 once /readyz answers, the default
#                                         ServiceAccount exists and the CRDs are Established
#   tests/k8s/env.sh stop DIR             stop all it started (idempotent, always exits 0):
#                                         SIGTERM, up to 5 s, then SIGKILL
#   tests/k8s/env.sh apiserver-stop DIR   stop only kube-apiserver (etcd, KCM keep running):
#                                         SIGTERM, up to 2 s, then SIGKILL (its graceful
#                                         shutdown waits up to 60 s for open watches)
#   tests/k8s/env.sh apiserver-start DIR  start it again on the same port, wait for /readyz
#   tests/k8s/env.sh status DIR           exit 0 if every process is alive
#
# After start, `source DIR/env` exports:
#   KUBECONFIG                          admin kubeconfig (CA data + token of user "admin",
#                                       group system:masters)
#   KUBECTL                             the kubectl built by tests/k8s/build.sh
#   TANDEM_K8S_ROUTER_KUBECONFIG        restricted kubeconfig: token of user "tandem-router",
#                                       no groups (only what RBAC bindings grant)
#   TANDEM_K8S_ADMIN_CERT_KUBECONFIG    admin kubeconfig using a client certificate and
#                                       file paths (certificate-authority, client-cert/key)
#   TANDEM_K8S_SERVER                   https://127.0.0.1:PORT
#   TANDEM_K8S_CA                       CA certificate file (PEM)
#   TANDEM_K8S_ADMIN_TOKEN, TANDEM_K8S_ROUTER_TOKEN   the bearer tokens
#   TANDEM_K8S_BIN                      directory of etcd, kube-apiserver, KCM, kubectl
#   TANDEM_K8S_DIR                      DIR
#   TANDEM_K8S_ETCD_URL                 http://127.0.0.1:PORT (etcd client URL)
#   TANDEM_K8S_ETCD_PID, TANDEM_K8S_APISERVER_PID, TANDEM_K8S_KCM_PID,
#   TANDEM_K8S_WATCHDOG_PID             process ids (each leads its own process group)
#
# Exit status of start: 0 up; 3 Go is missing so the binaries cannot be built (one line on
# stderr; callers skip the Kubernetes tests unless CI=true); anything else: failed (the
# tail of the failing component's log is printed, and whatever was started is stopped).
#
# Lifetime: each process runs in its own session/process group, recorded in DIR/pids. A
# watchdog (also recorded) runs `stop` when the process that called `start` exits
# (override with TANDEM_K8S_OWNER_PID=PID; 0 = no owner) or after
# TANDEM_K8S_MAX_LIFETIME seconds (default 7200), so a killed test harness leaves nothing
# running for long. Call `start` directly from the script that owns the environment, not
# from a short-lived `sh -c`. TANDEM_K8S_STOP_GRACE_MS overrides the SIGTERM grace period.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SELF=$HERE/env.sh
PROG=tests/k8s/env.sh

usage() {
  echo "usage: $PROG start|stop|status|apiserver-stop|apiserver-start DIR" >&2
  exit 2
}

[ $# -ge 2 ] || usage
CMD=$1
[ -n "$2" ] || usage
[ $# -eq 2 ] || [ "$CMD" = _watchdog ] || usage
if [ ! -d "$2" ]; then
  case $CMD in
  start) mkdir -p "$2" ;;
  stop) exit 0 ;;
  *) echo "$PROG: no such directory: $2" >&2; exit 1 ;;
  esac
fi
DIR=$(cd "$2" && pwd)
shift 2
PIDS=$DIR/pids
PID_etcd='' PID_apiserver='' PID_kcm='' PID_watchdog=''

log() { echo "$PROG: $*" >&2; }
now_ms() { date +%s%3N; }

# --- process bookkeeping ------------------------------------------------------------
# DIR/pids holds lines "NAME PID STARTTIME"; STARTTIME (field 22 of /proc/PID/stat)
# guards against killing an unrelated process that reused the pid.

starttime() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086 # split the fields on purpose
  set -- $s
  echo "${20}"
}

alive() { # NAME PID STARTTIME
  local st
  st=$(starttime "$2") || return 1
  [ "$st" = "$3" ]
}

record() { # NAME PID
  local st
  st=$(starttime "$2") || st=0
  echo "$1 $2 $st" >>"$PIDS"
}

unrecord() { # NAME
  [ -f "$PIDS" ] || return 0
  grep -v "^$1 " "$PIDS" >"$PIDS.tmp" || true
  mv "$PIDS.tmp" "$PIDS"
}

pid_of() { # NAME -> PID (if recorded)
  [ -f "$PIDS" ] || return 1
  awk -v n="$1" '$1 == n { print $2; f = 1 } END { exit !f }' "$PIDS"
}

# Stop the recorded processes NAMES... (all when none given): SIGTERM to each process
# group, wait up to GRACE_MS for them to exit, then SIGKILL (and wait for that, so ports are
# free when this returns). kube-apiserver's graceful shutdown waits up to 60 s for clients
# that hold watches, so the grace period is short.
stop_procs() { # GRACE_MS [NAMES...]
  local grace=$1
  shift
  [ -f "$PIDS" ] || return 0
  local want=" $* " name pid st groups=() deadline sig
  while read -r name pid st; do
    [ -n "$name" ] || continue
    if [ "$want" != "  " ] && [[ $want != *" $name "* ]]; then continue; fi
    [ "$pid" = "$$" ] && continue # the watchdog running `stop` itself
    if alive "$name" "$pid" "$st"; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      groups+=("$pid")
    fi
  done <"$PIDS"
  for sig in TERM KILL; do
    if [ "$sig" = KILL ]; then
      grace=5000
      for pid in ${groups[@]+"${groups[@]}"}; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      done
    fi
    deadline=$(($(now_ms) + grace))
    while [ ${#groups[@]} -gt 0 ]; do
      local left=()
      for pid in "${groups[@]}"; do
        if kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null; then left+=("$pid"); fi
      done
      groups=(${left[@]+"${left[@]}"})
      if [ ${#groups[@]} -eq 0 ] || [ "$(now_ms)" -ge "$deadline" ]; then break; fi
      sleep 0.1
    done
  done
  if [ "$want" = "  " ]; then
    rm -f "$PIDS"
  else
    for name in "$@"; do unrecord "$name"; done
  fi
}

# Start "$@" detached in its own session (its pid is its process-group id), output to LOG.
spawn() { # NAME LOG CMD...
  local name=$1 logf=$2
  shift 2
  setsid "$@" </dev/null >>"$logf" 2>&1 &
  local pid=$!
  record "$name" "$pid"
  printf -v "PID_$name" %s "$pid"
}

free_ports() { # N -> N distinct free TCP ports on 127.0.0.1, one per line
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

# Poll CHECK (a command) every 0.1 s for up to SECONDS; fail early if process NAME died.
wait_for() { # SECONDS NAME WHAT CHECK...
  local secs=$1 name=$2 what=$3 pid deadline
  shift 3
  pid=$(pid_of "$name") || pid=
  deadline=$(($(now_ms) + secs * 1000))
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited while waiting for $what"
      return 1
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

show_log() { # FILE
  [ -s "$1" ] || return 0
  log "last lines of $1:"
  tail -n 25 "$1" | sed 's/^/    /' >&2
}

# --- helpers that need a started env ---------------------------------------------------

load_env() {
  [ -f "$DIR/env" ] || { log "no environment in $DIR (run start first)"; exit 1; }
  # shellcheck disable=SC1091
  . "$DIR/env"
}

api_get() { # PATH: GET as admin, fail unless 2xx
  curl -sf --max-time 2 --cacert "$DIR/pki/ca.crt" \
    -H "Authorization: Bearer $ADMIN_TOKEN" "$SERVER$1"
}

readyz() { [ "$(api_get /readyz)" = ok ]; }

start_apiserver() {
  local -a args
  # shellcheck disable=SC1091
  . "$DIR/apiserver.args"
  spawn apiserver "$DIR/kube-apiserver.log" "$BIN/kube-apiserver" "${args[@]}"
}

wait_apiserver() { wait_for 90 apiserver "kube-apiserver /readyz" readyz; }

# --- start ---------------------------------------------------------------------------

do_start() {
  local t0
  t0=$(now_ms)
  START_OK=0
  if [ -f "$PIDS" ]; then
    local name pid st
    while read -r name pid st; do
      if alive "$name" "$pid" "$st"; then
        log "an environment is already running in $DIR (stop it first)"
        exit 1
      fi
    done <"$PIDS"
    rm -f "$PIDS"
  fi
  rm -f "$DIR/env"

  # Binaries (built and cached on the first run only).
  local rc=0 _
  setsid "$HERE/build.sh" >"$DIR/build.out" 2>"$DIR/build.log" </dev/null &
  BUILD_PID=$!
  trap 'kill -TERM -- "-$BUILD_PID" 2>/dev/null || true' EXIT
  trap 'exit 130' INT TERM HUP
  for _ in $(seq 30); do
    kill -0 "$BUILD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$BUILD_PID" 2>/dev/null; then
    log "building the Kubernetes binaries (first run only, 15-25 min on 2 cores; log: $DIR/build.log)"
  fi
  wait "$BUILD_PID" || rc=$?
  BIN=$(tail -n 1 "$DIR/build.out")
  rm -f "$DIR/build.out"
  if [ "$rc" = 3 ]; then
    log "Go is not installed, so kube-apiserver cannot be built: Kubernetes tests skipped"
    exit 3
  elif [ "$rc" != 0 ]; then
    log "tests/k8s/build.sh failed (exit $rc)"
    show_log "$DIR/build.log"
    exit 1
  fi

  trap 'if [ "$START_OK" != 1 ]; then stop_procs 3000; rm -f "$DIR/env"; fi' EXIT

  # --- watchdog (first, so it covers all that follows): stop everything when the owner
  # exits or the lifetime ends.
  local owner=${TANDEM_K8S_OWNER_PID:-$PPID} owner_st=0 deadline
  if [ "$owner" -gt 1 ] 2>/dev/null; then owner_st=$(starttime "$owner") || owner=0; else owner=0; fi
  deadline=$(($(date +%s) + ${TANDEM_K8S_MAX_LIFETIME:-7200}))
  spawn watchdog "$DIR/watchdog.log" "$SELF" _watchdog "$DIR" "$owner" "$owner_st" "$deadline"

  rm -rf "$DIR/etcd" "$DIR/pki" "$DIR/apiserver-certs"
  mkdir -p "$DIR/pki"
  : >"$DIR/etcd.log"
  : >"$DIR/kube-apiserver.log"
  : >"$DIR/kube-controller-manager.log"

  # --- PKI: CA, serving cert, admin client cert, service-account key pair, tokens ----
  local P=$DIR/pki
  (
    cd "$P"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=tandem-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    sign() { # NAME SUBJ EXT
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -days 3650 \
        -set_serial "0x$(openssl rand -hex 12)" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin-client "/O=system:masters/CN=admin-cert" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 644 ca.crt apiserver.crt admin-client.crt sa.pub
  )
  ADMIN_TOKEN=$(openssl rand -hex 24)
  local ROUTER_TOKEN KCM_TOKEN
  ROUTER_TOKEN=$(openssl rand -hex 24)
  KCM_TOKEN=$(openssl rand -hex 24)
  (
    umask 077
    {
      echo "$ADMIN_TOKEN,admin,admin-uid,\"system:masters\""
      echo "$ROUTER_TOKEN,tandem-router,tandem-router-uid"
      echo "$KCM_TOKEN,system:kube-controller-manager,kcm-uid,\"system:masters\""
    } >"$P/tokens.csv"
  )

  # --- etcd (retried with fresh ports if a port got taken meanwhile) -------------------
  local try ports etcd_port peer_port api_port
  for try in 1 2 3; do
    ports=$(free_ports 3)
    etcd_port=$(sed -n 1p <<<"$ports")
    peer_port=$(sed -n 2p <<<"$ports")
    api_port=$(sed -n 3p <<<"$ports")
    ETCD_URL=http://127.0.0.1:$etcd_port
    spawn etcd "$DIR/etcd.log" "$BIN/etcd" \
      --name default \
      --data-dir "$DIR/etcd" \
      --listen-client-urls "$ETCD_URL" \
      --advertise-client-urls "$ETCD_URL" \
      --listen-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-cluster "default=http://127.0.0.1:$peer_port" \
      --initial-cluster-state new \
      --unsafe-no-fsync \
      --log-level warn
    # shellcheck disable=SC2016 # expanded by the inner bash
    if wait_for 30 etcd "etcd /health" \
      bash -c '[[ $(curl -sf --max-time 1 "$1/health") == *"\"health\":\"true\""* ]]' _ "$ETCD_URL"; then
      break
    fi
    if [ "$try" -lt 3 ] && grep -q 'address already in use' "$DIR/etcd.log"; then
      stop_procs 3000 etcd
      rm -rf "$DIR/etcd"
      continue
    fi
    show_log "$DIR/etcd.log"
    exit 1
  done

  # --- kube-apiserver ---------------------------------------------------------------
  SERVER=https://127.0.0.1:$api_port
  for try in 1 2 3; do
    SERVER=https://127.0.0.1:$api_port
    {
      echo "# kube-apiserver arguments, read by env.sh apiserver-start"
      printf 'args=('
      printf ' %q' \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --secure-port="$api_port" \
        --endpoint-reconciler-type=none \
        --etcd-servers="$ETCD_URL" \
        --cert-dir="$DIR/apiserver-certs" \
        --tls-cert-file="$P/apiserver.crt" \
        --tls-private-key-file="$P/apiserver.key" \
        --client-ca-file="$P/ca.crt" \
        --token-auth-file="$P/tokens.csv" \
        --anonymous-auth=false \
        --authorization-mode=Node,RBAC \
        --service-cluster-ip-range=10.96.0.0/16 \
        --service-account-key-file="$P/sa.pub" \
        --service-account-signing-key-file="$P/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --api-audiences=https://kubernetes.default.svc.cluster.local \
        --allow-privileged=true \
        --profiling=false
      echo ' )'
    } >"$DIR/apiserver.args"
    start_apiserver
    if wait_apiserver; then break; fi
    if [ "$try" -lt 3 ] && grep -q 'address already in use' "$DIR/kube-apiserver.log"; then
      stop_procs 3000 apiserver
      api_port=$(free_ports 1)
      : >"$DIR/kube-apiserver.log"
      continue
    fi
    show_log "$DIR/kube-apiserver.log"
    exit 1
  done

  # --- kubeconfigs and the env file --------------------------------------------------
  local ca_data
  ca_data=$(base64 -w0 "$P/ca.crt")
  kubeconfig() { # USER TOKEN
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tandem-test
  cluster:
    server: $SERVER
    certificate-authority-data: $ca_data
users:
- name: $1
  user:
    token: $2
contexts:
- name: tandem-test
  context:
    cluster: tandem-test
    user: $1
    namespace: default
current-context: tandem-test
EOF
  }
  (
    umask 077
    kubeconfig admin "$ADMIN_TOKEN" >"$DIR/admin.kubeconfig"
    kubeconfig tandem-router "$ROUTER_TOKEN" >"$DIR/router.kubeconfig"
    kubeconfig system:kube-controller-manager "$KCM_TOKEN" >"$DIR/kcm.kubeconfig"
    cat >"$DIR/admin-cert.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tandem-test
  cluster:
    server: $SERVER
    certificate-authority: $P/ca.crt
users:
- name: admin-cert
  user:
    client-certificate: $P/admin-client.crt
    client-key: $P/admin-client.key
contexts:
- name: tandem-test
  context:
    cluster: tandem-test
    user: admin-cert
current-context: tandem-test
EOF
  )

  # --- kube-controller-manager -------------------------------------------------------
  spawn kcm "$DIR/kube-controller-manager.log" "$BIN/kube-controller-manager" \
    --kubeconfig="$DIR/kcm.kubeconfig" \
    --controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,clusterrole-aggregation-controller,root-ca-certificate-publisher-controller \
    --service-account-private-key-file="$P/sa.key" \
    --root-ca-file="$P/ca.crt" \
    --use-service-account-credentials=false \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port=0 \
    --profiling=false

  {
    printf 'export KUBECONFIG=%q\n' "$DIR/admin.kubeconfig"
    printf 'export KUBECTL=%q\n' "$BIN/kubectl"
    printf 'export TANDEM_K8S_ROUTER_KUBECONFIG=%q\n' "$DIR/router.kubeconfig"
    printf 'export TANDEM_K8S_ADMIN_CERT_KUBECONFIG=%q\n' "$DIR/admin-cert.kubeconfig"
    printf 'export TANDEM_K8S_SERVER=%q\n' "$SERVER"
    printf 'export TANDEM_K8S_CA=%q\n' "$P/ca.crt"
    printf 'export TANDEM_K8S_ADMIN_TOKEN=%q\n' "$ADMIN_TOKEN"
    printf 'export TANDEM_K8S_ROUTER_TOKEN=%q\n' "$ROUTER_TOKEN"
    printf 'export TANDEM_K8S_BIN=%q\n' "$BIN"
    printf 'export TANDEM_K8S_DIR=%q\n' "$DIR"
    printf 'export TANDEM_K8S_ETCD_URL=%q\n' "$ETCD_URL"
    printf 'export TANDEM_K8S_ETCD_PID=%q\n' "$PID_etcd"
    printf 'export TANDEM_K8S_APISERVER_PID=%q\n' "$PID_apiserver"
    printf 'export TANDEM_K8S_KCM_PID=%q\n' "$PID_kcm"
    printf 'export TANDEM_K8S_WATCHDOG_PID=%q\n' "$PID_watchdog"
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"

  # --- CRDs, and a default ServiceAccount so Pods can be created ------------------------
  local K=("$BIN/kubectl" --kubeconfig="$DIR/admin.kubeconfig" --request-timeout=30s)
  local f names=() files=()
  for f in "$ROOT/deploy/crds/modelservice.yaml" "$HERE"/crds/*.yaml; do
    files+=(-f "$f")
    names+=("crd/$(sed -n 's/^  name: \([a-z0-9.-]*\)$/\1/p' "$f" | head -n 1)")
  done
  if ! "${K[@]}" apply "${files[@]}" >"$DIR/crds.log" 2>&1 ||
    ! "${K[@]}" wait --for condition=established --timeout=60s "${names[@]}" >>"$DIR/crds.log" 2>&1; then
    log "installing the CRDs failed"
    show_log "$DIR/crds.log"
    exit 1
  fi
  if ! wait_for 60 kcm "ServiceAccount default/default" \
    api_get /api/v1/namespaces/default/serviceaccounts/default; then
    show_log "$DIR/kube-controller-manager.log"
    exit 1
  fi

  START_OK=1
  local t1
  t1=$(now_ms)
  echo "k8s env up in $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)) s: $SERVER"
}

# --- watchdog ---------------------------------------------------------------------------
# Runs (as `env.sh _watchdog DIR OWNER OWNER_STARTTIME DEADLINE`) in its own process group
# until `stop` kills it. Stops the environment when the owner process exits, when the
# lifetime ends, or when DIR/pids disappears (DIR removed without `stop`): then it uses its
# last copy of DIR/pids.

watchdog() { # OWNER OWNER_STARTTIME DEADLINE
  local owner=$1 owner_st=$2 deadline=$3 copy='' why=''
  while :; do
    if [ -f "$PIDS" ]; then
      copy=$(cat "$PIDS" 2>/dev/null) || true
    elif [ -n "$copy" ]; then
      why="$PIDS disappeared"
    fi
    if [ -z "$why" ] && [ "$owner" != 0 ] && [ "$(starttime "$owner" || true)" != "$owner_st" ]; then
      why="owner process $owner exited"
    fi
    if [ -z "$why" ] && [ "$(date +%s)" -ge "$deadline" ]; then
      why="lifetime (TANDEM_K8S_MAX_LIFETIME) over"
    fi
    [ -z "$why" ] || break
    sleep 1
  done
  echo "$(date -Is) $why: stopping" >&2
  if [ ! -f "$PIDS" ]; then
    PIDS=$(mktemp)
    printf '%s\n' "$copy" >"$PIDS"
  fi
  stop_procs "${TANDEM_K8S_STOP_GRACE_MS:-5000}"
  rm -f "$DIR/env"
}

# --- main ------------------------------------------------------------------------------

case $CMD in
start)
  do_start
  ;;
stop)
  stop_procs "${TANDEM_K8S_STOP_GRACE_MS:-5000}"
  rm -f "$DIR/env"
  ;;
status)
  [ -f "$PIDS" ] || exit 1
  while read -r name pid st; do
    alive "$name" "$pid" "$st" || { log "$name ($pid) is not running"; exit 1; }
  done <"$PIDS"
  ;;
_watchdog)
  watchdog "$@"
  ;;
apiserver-stop)
  stop_procs "${TANDEM_K8S_STOP_GRACE_MS:-2000}" apiserver
  ;;
apiserver-start)
  load_env
  BIN=$TANDEM_K8S_BIN SERVER=$TANDEM_K8S_SERVER ADMIN_TOKEN=$TANDEM_K8S_ADMIN_TOKEN
  if pid=$(pid_of apiserver) && kill -0 "$pid" 2>/dev/null; then
    log "kube-apiserver is already running ($pid)"
    exit 1
  fi
  unrecord apiserver
  start_apiserver
  if ! wait_apiserver; then show_log "$DIR/kube-apiserver.log"; exit 1; fi
  sed -i "s/^export TANDEM_K8S_APISERVER_PID=.*/export TANDEM_K8S_APISERVER_PID=$PID_apiserver/" "$DIR/env"
  ;;
*)
  usage
  ;;
esac
