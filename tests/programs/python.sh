#!/usr/bin/env bash
# python3 under kalloc: dict/list/set/string churn with millions of small
# objects, a json round trip of a big nested structure and large buffers
# (python_workload.py), with python's own small-object allocator (pymalloc,
# which takes its arenas from mmap and sends only blocks > 512 bytes to
# malloc) and with PYTHONMALLOC=malloc (every object from malloc).  stdout
# must be the same as with the system allocator.
#   python.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

PY=/usr/bin/python3
[ -x "$PY" ] || { echo "FAIL: $PY not found (tests/deps.sh installs python3)" >&2; exit 1; }
export PY

py_pymalloc() { "$PY" "$SRC_DIR/python_workload.py"; }
py_malloc() { PYTHONMALLOC=malloc "$PY" "$SRC_DIR/python_workload.py"; }

run_workload pymalloc py_pymalloc && compare_output pymalloc
run_workload malloc py_malloc && compare_output malloc
finish
