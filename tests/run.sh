#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing,
# configures and builds kalloc (Release), then runs every test under ctest.
#   tests/run.sh                # everything
#   tests/run.sh -R program     # extra arguments go to ctest
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. tests/deps.sh
kalloc_install_deps
build="${KALLOC_BUILD_DIR:-$root/build}"
kalloc_build "$root" "$build"
cd "$build"
ctest --output-on-failure -j"$(nproc)" --timeout 1200 "$@"
