#!/usr/bin/env bash
# Instructions per malloc+free pair on the fast path, counted with
# valgrind --tool=callgrind (repeatable, unlike timings on a shared machine).
#   bench/fastpath.sh [path/to/libkalloc.so] [size=64]
# Prints the per-pair total and the per-call counts of malloc and free, then
# those of an in-place realloc and malloc_usable_size (at that size and at
# 40,000 bytes, a large block of whole pages).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
lib="${1:-$root/build/libkalloc.so}"
size="${2:-64}"
# LD_PRELOAD takes a name without a slash from the library path and only
# warns when it cannot load one: the counts would then be glibc's.
if ! lib="$(realpath -e "$lib" 2>/dev/null)"; then
  echo "fastpath.sh: no such library: ${1:-$root/build/libkalloc.so}" >&2
  exit 1
fi
if LD_PRELOAD="$lib" /bin/true 2>&1 | grep -q .; then
  echo "fastpath.sh: $lib cannot be preloaded:" >&2
  LD_PRELOAD="$lib" /bin/true >&2 || true
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/fastpath" "$root/bench/fastpath.c"
count() {   # iterations [size mode] -> "total malloc free realloc usable" instruction counts
  LD_PRELOAD="$lib" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" \
    "$tmp/fastpath" "$1" "${2:-$size}" "${3:-pair}" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes "$tmp/cg.$1" 2>/dev/null | awk '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /:malloc / || /:malloc$/ { gsub(",", "", $1); m = $1 }
    /:free / || /:free$/ { gsub(",", "", $1); f = $1 }
    /:realloc / || /:realloc$/ { gsub(",", "", $1); r = $1 }
    /:malloc_usable_size / || /:malloc_usable_size$/ { gsub(",", "", $1); u = $1 }
    END { print total, m + 0, f + 0, r + 0, u + 0 }'
}
read -r t1 m1 f1 < <(count 100000)
read -r t2 m2 f2 < <(count 200000)
awk -v t1="$t1" -v t2="$t2" -v m1="$m1" -v m2="$m2" -v f1="$f1" -v f2="$f2" -v s="$size" 'BEGIN {
  printf "malloc(%d)+free: %.1f instructions per pair in total (loop and calls included)\n", s, (t2 - t1) / 100000
  printf "  malloc: %.1f   free: %.1f   (instructions per call, inside the library)\n", (m2 - m1) / 100000, (f2 - f1) / 100000
}'
for s2 in "$size" 40000; do
  read -r _ _ _ r1 u1 < <(count 100000 "$s2" realloc)
  read -r _ _ _ r2 u2 < <(count 200000 "$s2" realloc)
  awk -v r1="$r1" -v r2="$r2" -v u1="$u1" -v u2="$u2" -v s="$s2" 'BEGIN {
    printf "  realloc(p, %d) in place: %.1f   malloc_usable_size: %.1f   (instructions per call)\n", s, (r2 - r1) / 100000, (u2 - u1) / 100000
  }'
done
# C++: `new T` and `delete p` (the sized operator delete C++14 compilers
# emit), when the program replaces no operator (preload/new_delete.cc).
if command -v g++ >/dev/null 2>&1; then
  cat > "$tmp/fastpath_cxx.cc" <<'CC'
#include <cstdlib>
struct S { long a[8]; };
int main(int argc, char **argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 100000;
  for (long i = 0; i < n; i++) {
    S *s = new S();
    asm volatile("" : : "r"(s) : "memory");
    delete s;
  }
}
CC
  g++ -O2 -std=c++17 -o "$tmp/fastpath_cxx" "$tmp/fastpath_cxx.cc"
  cxx_count() {   # iterations -> "new delete" instruction counts
    LD_PRELOAD="$lib" valgrind --tool=callgrind --callgrind-out-file="$tmp/cgx.$1" \
      "$tmp/fastpath_cxx" "$1" >/dev/null 2>&1
    callgrind_annotate --inclusive=yes "$tmp/cgx.$1" 2>/dev/null | awk '
      /operator new\(unsigned long\)/ { gsub(",", "", $1); if (!n) n = $1 }
      /operator delete\(void\*, unsigned long\)/ { gsub(",", "", $1); if (!d) d = $1 }
      END { print n + 0, d + 0 }'
  }
  read -r n1 d1 < <(cxx_count 100000)
  read -r n2 d2 < <(cxx_count 200000)
  awk -v n1="$n1" -v n2="$n2" -v d1="$d1" -v d2="$d2" 'BEGIN {
    printf "  operator new(64): %.1f   operator delete(p, 64): %.1f   (instructions per call)\n", (n2 - n1) / 100000, (d2 - d1) / 100000
  }'
fi
