#!/usr/bin/env bash
# The benchmark suite, from a fresh Debian machine: installs what is missing
# (tests/deps.sh), configures and builds kalloc and the benchmarks (Release),
# then compares kalloc with glibc, jemalloc, mimalloc and tcmalloc.
#   bench/run.sh                 # full comparison (5 rounds; well under 30 min)
#   bench/run.sh --quick         # quick comparison (2 rounds, small sizes; < 5 min;
#                                # results in bench/results/quick.*, not latest.*)
#   bench/run.sh --quick --micro # ... plus the Google Benchmark microbenchmarks
# Extra arguments go to bench/compare.py (see: python3 bench/compare.py --help).
# Results: bench/results/latest.md, latest.json, time.svg, rss.svg,
# rss-time-kv-ttl.svg, rss-time-redis-expiry.svg.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. tests/deps.sh
kalloc_install_deps
build="${KALLOC_BUILD_DIR:-$root/build}"
kalloc_build "$root" "$build"
exec /usr/bin/python3 "$root/bench/compare.py" --kalloc "$build/libkalloc.so" \
  --bin-dir "$build/bench" "$@"
