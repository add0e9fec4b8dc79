#!/usr/bin/env bash
# The local stack: `tandem up` on the bundled sim ModelService (deploy/samples/sim):
# one prefill sim and two decode sims, each decode sim behind a tandem sidecar, and the
# router on localhost:PORT with the P/D preset, serving facebook/opt-125m. It prints
# a `kubectl get modelservice`-style status and a pod table, restarts crashed processes,
# and stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8000}"
exec build/tandem up -m deploy/samples/sim/msvc.yaml -b deploy/samples/sim/baseconfig.yaml \
  --host 127.0.0.1 --port "$PORT"
