#!/usr/bin/env bash
# Node.js under kalloc: V8 keeps its JavaScript heap in its own mappings but
# takes its compiler zones, array buffers' backing stores, strings handed to
# C++, zlib and libuv's thread pool (4 threads) from malloc.  node_workload.js
# churns maps and strings, big Buffers, and zlib on the thread pool; stdout
# must be the same as with the system allocator.  tests/deps.sh installs
# Debian's nodejs.
#   node.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v node >/dev/null || { echo "FAIL: node not found (tests/deps.sh installs nodejs)" >&2; exit 1; }

node_work() { node "$SRC_DIR/node_workload.js"; }

run_workload node node_work && compare_output node
finish
