#!/usr/bin/env bash
# Runs every benchmark in bench/ against the release build and prints its results.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== bench/sim-throughput"
bench/sim-throughput.sh build
