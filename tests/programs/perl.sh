#!/usr/bin/env bash
# perl under kalloc: hash/array/string churn and a regex workload
# (perl_workload.pl).  stdout must be the same as with the system allocator.
#   perl.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v perl >/dev/null || { echo "FAIL: perl not found (tests/deps.sh installs it)" >&2; exit 1; }

perl_work() { perl "$SRC_DIR/perl_workload.pl"; }

run_workload perl perl_work && compare_output perl
finish
