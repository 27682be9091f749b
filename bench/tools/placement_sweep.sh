#!/usr/bin/env bash
# Whether a workload's time is an allocator's or its code placement's.
#   bench/tools/placement_sweep.sh [max_pad=248] [step=8] [LIB.so ...]
# Rebuilds bench/workloads/cache_scratch.cc (g++ -O2, as the suite does) with
# 0, step, ..., max_pad bytes of padding (nops) ahead of its worker loop, so
# the loop moves in the binary while nothing else changes, and runs each
# build with one worker pinned to one CPU, ASLR off, under glibc and each
# library (default: mimalloc, jemalloc and build/libkalloc.so).  Prints one
# line per padding ("pad=N  secs..."), then each allocator's median and mean.
# Figures measured with it are in README.md ("Where kalloc is behind",
# cache-scratch).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
max="${1:-248}"; step="${2:-8}"; shift $(( $# < 2 ? $# : 2 ))
[ $# -gt 0 ] || set -- /usr/lib/x86_64-linux-gnu/libmimalloc.so /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
                       "$root/build/libkalloc.so"
libs=("" "$@")          # "": glibc
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
src="$root/bench/workloads/cache_scratch.cc"
anchor='      for (int64_t it = 0; it < iters; ++it) {'
grep -qF "$anchor" "$src" || { echo "placement_sweep: the worker loop is not where expected in $src" >&2; exit 1; }
cpu=$(( $(nproc) > 1 ? 1 : 0 ))
echo "# pad  glibc ${libs[*]:1}"
for pad in $(seq 0 "$step" "$max"); do
  if [ "$pad" -gt 0 ]; then
    sed "s|^$anchor|      asm volatile(\".skip $pad, 0x90\");\n&|" "$src" > "$tmp/cs.cc"
  else
    cp "$src" "$tmp/cs.cc"
  fi
  g++ -O2 -std=c++20 -I"$root/bench/workloads" -o "$tmp/cs" "$tmp/cs.cc" -lpthread
  line="pad=$pad"
  for lib in "${libs[@]}"; do
    secs=$(setarch -R env LD_PRELOAD="$lib" taskset -c "$cpu" "$tmp/cs" --threads=1 |
           sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
    line="$line $secs"
  done
  echo "$line"
done | tee "$tmp/out"
n=$(( ${#libs[@]} + 1 ))
for c in $(seq 2 "$n"); do
  name=$([ "$c" -eq 2 ] && echo glibc || basename "${libs[$((c - 2))]}")
  awk -v c="$c" '{print $c}' "$tmp/out" | sort -n |
    awk -v name="$name" '{a[NR] = $1; s += $1} END {printf "%-24s median %.3f  mean %.3f  min %.3f  max %.3f\n", name, a[int((NR + 1) / 2)], s / NR, a[1], a[NR]}'
done
