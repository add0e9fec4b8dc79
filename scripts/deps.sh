#!/usr/bin/env bash
# Install the Debian packages tandem needs to build, test and benchmark, only those
# that are missing. Idempotent; silent when nothing is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libuv1-dev node-llhttp libjansson-dev libfyaml-dev libxxhash-dev libssl-dev
  libcurl4-openssl-dev libcmocka-dev python3 curl openssl
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
  libzmq3-dev libmsgpack-dev
)
# Benchmark-only tools (never runtime deps); installed with BENCH=1 or by `make bench`.
if [ "${BENCH:-0}" = 1 ]; then
  PKGS+=(wrk nginx-light)
fi

missing=()
# Node.js + npm run one test-only check (the stock OpenAI JS client against the sim).
# Some machines carry a non-Debian node that bundles npm: look for the commands.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
