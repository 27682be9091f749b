#!/usr/bin/env bash
# mt_workload (mt_workload.cc, an ordinary executable not linked with kalloc)
# with and without LD_PRELOAD=libkalloc.so: 8 threads filling unordered_maps,
# vectors and strings, items passed between threads through queues (frees on
# other threads), short-lived threads whose objects outlive them, and C
# malloc/realloc/calloc/aligned_alloc checks.  The program verifies its data
# and exits non-zero on corruption; its stdout (checksums) must be the same
# as with the system allocator.  Run twice under kalloc.
#   mt_workload.sh /path/to/libkalloc.so /path/to/mt_workload
. "$(dirname "$0")/common.sh" "$1"
MT_BIN="$(realpath "${2:?usage: $0 libkalloc.so mt_workload-binary}")"
export MT_BIN

mt_work() { "$MT_BIN"; }

run_workload mt-1 mt_work && compare_output mt-1
run_workload mt-2 mt_work && compare_output mt-2
finish
