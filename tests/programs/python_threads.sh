#!/usr/bin/env bash
# python3 threads under kalloc: builder threads making lists/dicts/strings,
# then producer/consumer thread pairs passing objects through queues so they
# are freed on another thread (python_threads.py); with pymalloc and with
# PYTHONMALLOC=malloc.  stdout must be the same as with the system allocator.
#   python_threads.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

PY=/usr/bin/python3
[ -x "$PY" ] || { echo "FAIL: $PY not found (tests/deps.sh installs python3)" >&2; exit 1; }
export PY

pyt_pymalloc() { "$PY" "$SRC_DIR/python_threads.py"; }
pyt_malloc() { PYTHONMALLOC=malloc "$PY" "$SRC_DIR/python_threads.py"; }

run_workload threads-pymalloc pyt_pymalloc && compare_output threads-pymalloc
run_workload threads-malloc pyt_malloc && compare_output threads-malloc
finish
