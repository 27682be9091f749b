#!/usr/bin/env bash
# fork_spawn (fork_spawn.cc, an ordinary executable not linked with kalloc)
# with and without LD_PRELOAD=libkalloc.so: while worker threads allocate,
# the main thread (and one other thread) fork children that allocate, make
# a thread and a grandchild; then popen, posix_spawn(p) of /bin/echo and
# sh -c, and system().  Every child that crashes or deadlocks (killed by its
# alarm) makes the program fail; its stdout must be the same as with the
# system allocator.  Run twice under kalloc.
#   fork_spawn.sh /path/to/libkalloc.so /path/to/fork_spawn
. "$(dirname "$0")/common.sh" "$1"
FS_BIN="$(realpath "${2:?usage: $0 libkalloc.so fork_spawn-binary}")"
export FS_BIN

fs_work() { "$FS_BIN"; }

run_workload fork-1 fs_work && compare_output fork-1
run_workload fork-2 fs_work && compare_output fork-2
finish
