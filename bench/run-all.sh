#!/usr/bin/env bash
# Runs every benchmark in bench/ against the release build and prints its results.
# Results are recorded by hand in bench/RESULTS.md with the machine and date.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== bench/sim-throughput"
bench/sim-throughput.sh build
echo "== sched_bench"
build/sched_bench
echo "== kvev_ingest"
build/kvev_ingest
echo "== bench/router"
bench/router.sh build
echo "== bench/router-rss"
bench/router-rss.sh build
echo "== bench/client-capacity"
bench/client-capacity.sh build
echo "== bench/scheduling-quality (appends its table to bench/RESULTS.md)"
bench/scheduling-quality.sh build
echo "== bench/pd"
bench/pd.sh build
