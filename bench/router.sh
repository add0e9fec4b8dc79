#!/usr/bin/env bash
# bench/router: tandem router vs nginx round-robin in front of the same two sims, and
# 220 KB prompts through the router.
#
# The sims run as zero-latency engines (--profile fast --time-scale 0.0001: a step takes
# nanoseconds), so what is measured is the proxy. The proxies get one worker each
# (tandem --workers 1, nginx worker_processes 1) and are compared A B A B in one run;
# wrk runs with 1 thread. Everything shares this machine's cores, so ratios are what
# carries over, not absolute numbers.
#
# usage: bench/router.sh [BUILD_DIR]     needs wrk and nginx (BENCH=1 scripts/deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BIN="$BUILD/tandem"
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx: BENCH=1 scripts/deps.sh" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh # the scripts run from the repository root (cd above)

S1=$(port); S2=$(port); R=$(port); N=$(port)
for p in $S1 $S2; do
  "$BIN" sim --model m --profile fast --time-scale 0.0001 --host 127.0.0.1 --port "$p" \
    --max-num-seqs 4096 --max-model-len 200000 --num-gpu-blocks 400000 \
    --disable-log-requests --stats-interval 0 --log-level warn &
  pids+=($!)
done
wait_http $S1 /health; wait_http $S2 /health
"$BIN" router --host 127.0.0.1 --port "$R" --metrics-port 0 --workers 1 --log-level warn \
  --policy round_robin --endpoint "name=s1,addr=127.0.0.1:$S1" --endpoint "name=s2,addr=127.0.0.1:$S2" &
pids+=($!)
wait_http $R /ready
cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  client_max_body_size 64m;
  client_body_buffer_size 1m;
  upstream sims { server 127.0.0.1:$S1; server 127.0.0.1:$S2; keepalive 128; }
  server {
    listen 127.0.0.1:$N;
    location / {
      proxy_pass http://sims;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
nginx -c "$tmp/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_http $N /health

cat >"$tmp/small.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"m","prompt":"Hello, how are you today?","max_tokens":1}'
LUA
python3 - "$tmp/big.lua" <<'PY'
import sys, random
random.seed(1)
words = ["model", "cache", "token", "prefix", "router", "engine", "decode", "prefill"]
prompt = " ".join(random.choice(words) + str(i % 97) for i in range(30000))[:220 * 1024]
open(sys.argv[1], "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    'wrk.body = \'{"model":"m","max_tokens":1,"prompt":"%s"}\'\n' % prompt)
PY

rps() { wrk -t1 -c"$2" -d"$3" -s "$4" "http://127.0.0.1:$1/v1/completions" | awk '/Requests\/sec/ {print $2}'; }
lat() { wrk -t1 -c"$2" -d"$3" --latency -s "$4" "http://127.0.0.1:$1/v1/completions" | awk '/50%|99%/ {printf "%s=%s ", $1, $2}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "-- small prompts, 64 connections, 8 s each, A B A B (req/s)"
for i in 1 2; do
  t=$(rps "$R" 64 8s "$tmp/small.lua"); n=$(rps "$N" 64 8s "$tmp/small.lua")
  echo "round $i: tandem $t  nginx $n  ratio $(python3 -c "print(round($t/$n, 2))")"
done
echo "-- added latency at 1,000 req/s, open loop (bench/rate_load.c), A B A B"
for i in 1 2; do
  echo "direct: $("$BUILD/rate_load" --port "$S1" --rate 1000 --duration 8)"
  echo "tandem: $("$BUILD/rate_load" --port "$R" --rate 1000 --duration 8)"
done
echo "nginx:  $("$BUILD/rate_load" --port "$N" --rate 1000 --duration 8)"
echo "-- latency, 1 connection (closed loop), direct vs through each proxy"
echo "direct: $(lat "$S1" 1 5s "$tmp/small.lua")"
echo "tandem: $(lat "$R" 1 5s "$tmp/small.lua")"
echo "nginx:  $(lat "$N" 1 5s "$tmp/small.lua")"
echo "-- 220 KB prompts, 16 connections, 10 s (req/s)"
echo "tandem: $(rps "$R" 16 10s "$tmp/big.lua")   nginx: $(rps "$N" 16 10s "$tmp/big.lua")   direct to one sim: $(rps "$S1" 16 10s "$tmp/big.lua")"
echo "-- router RSS after the runs: $(grep VmHWM /proc/${pids[2]}/status | awk '{print $2/1024 " MiB (peak)"}')"
