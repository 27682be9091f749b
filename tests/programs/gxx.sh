#!/usr/bin/env bash
# g++ under kalloc: the compiler driver, cc1plus, as and ld all run with
# LD_PRELOAD=libkalloc.so and compile gxx_prog.cc (templates, std::map,
# std::string, iostream) with -O1, separately to an object and then linked;
# the produced binary runs under kalloc too.  The program's output, the
# object file, the binary and the preprocessed source must be the same as
# with the system allocator.
#   gxx.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v g++ >/dev/null || { echo "FAIL: g++ not found (tests/deps.sh installs it)" >&2; exit 1; }

# Both runs compile the same copy of the source, by the same relative path.
mkdir -p "$WORK/sys" "$WORK/kalloc"
cp "$SRC_DIR/gxx_prog.cc" "$WORK/sys/prog.cc"
cp "$SRC_DIR/gxx_prog.cc" "$WORK/kalloc/prog.cc"

gxx_work() {
  local flags=(-std=c++20 -O1 -Wall -Wextra -frandom-seed=kalloc)
  g++ "${flags[@]}" -E -P prog.cc -o prog.ii
  g++ "${flags[@]}" -c prog.cc -o prog.o
  g++ "${flags[@]}" prog.o -o prog
  # One more compile straight to a binary, with more optimisation work and
  # debug information (the directory is mapped so both runs produce the same).
  g++ -std=c++20 -O2 -g -fdebug-prefix-map="$PWD"=/src -frandom-seed=kalloc prog.cc -o prog2
  ./prog
  ./prog2 | sha256sum
}

run_workload gxx gxx_work && {
  compare_output gxx
  compare_file prog.ii
  compare_file prog.o
  compare_file prog
  compare_file prog2
}
finish
