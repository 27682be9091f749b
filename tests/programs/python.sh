#!/usr/bin/env bash
# python3 under kalloc: dict/list/set/string churn with millions of small
# objects, a json round trip of a big nested structure and large buffers
# (python_workload.py), with python's own small-object allocator (pymalloc,
# which takes its arenas from mmap and sends only blocks > 512 bytes to
# malloc) and with PYTHONMALLOC=malloc (every object from malloc); and the
# benchmark suite's bytes cache (bench/programs/py_bytes_cache.py: values of
# 1-20 KB and 100-400 KB copied between large blocks, whose colours and
# page runs it exercises).  stdout must be the same as with the system
# allocator.
#   python.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

PY=/usr/bin/python3
[ -x "$PY" ] || { echo "FAIL: $PY not found (tests/deps.sh installs python3)" >&2; exit 1; }
export PY

py_pymalloc() { "$PY" "$SRC_DIR/python_workload.py"; }
py_malloc() { PYTHONMALLOC=malloc "$PY" "$SRC_DIR/python_workload.py"; }
py_bytes() { "$PY" "$SRC_DIR/../../bench/programs/py_bytes_cache.py" 0.3; }

run_workload pymalloc py_pymalloc && compare_output pymalloc
run_workload malloc py_malloc && compare_output malloc
run_workload bytes py_bytes && compare_output bytes
finish
