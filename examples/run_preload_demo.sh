#!/usr/bin/env bash
# Runs preload_demo (an ordinary C program, not linked with kalloc) with the
# system allocator and with KALLOC_STATS=1 LD_PRELOAD=libkalloc.so, and checks
#   - both runs succeed and compute the same results,
#   - under LD_PRELOAD the program finds kalloc in itself ("allocator: kalloc"),
#   - kalloc printed its statistics at exit, with refills > 0 (kalloc served
#     the program's allocations).
#   run_preload_demo.sh /path/to/libkalloc.so /path/to/preload_demo
set -euo pipefail
lib="$(realpath "${1:?usage: $0 libkalloc.so preload_demo}")"
demo="$(realpath "${2:?usage: $0 libkalloc.so preload_demo}")"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/kalloc-preload-demo.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
unset LD_PRELOAD KALLOC_STATS
status=0

"$demo" >"$tmp/sys.out"
rc=0
KALLOC_STATS=1 LD_PRELOAD="$lib" "$demo" >"$tmp/kalloc.out" 2>"$tmp/kalloc.err" || rc=$?
echo "== stdout under kalloc"; cat "$tmp/kalloc.out"
echo "== stderr under kalloc"; cat "$tmp/kalloc.err"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: preload_demo under kalloc exited with status $rc" >&2
  exit 1
fi
if ! grep -qx 'allocator: the system malloc' "$tmp/sys.out"; then
  echo "FAIL: without LD_PRELOAD the demo should run on the system malloc" >&2; status=1
fi
if ! grep -qE '^allocator: kalloc [0-9]+\.[0-9]+\.[0-9]+$' "$tmp/kalloc.out"; then
  echo "FAIL: under LD_PRELOAD the demo did not find kalloc in the process" >&2; status=1
fi
if ! diff -u <(sed 1d "$tmp/sys.out") <(sed 1d "$tmp/kalloc.out"); then
  echo "FAIL: results differ between the system malloc and kalloc" >&2; status=1
fi
totals="$(grep -E '^kalloc: totals ' "$tmp/kalloc.err" || true)"
refills="$(sed -n -E 's/^.* refills=([0-9]+).*$/\1/p' <<<"$totals")"
if [ -z "$totals" ]; then
  echo "FAIL: KALLOC_STATS=1 printed no 'kalloc: totals' line" >&2; status=1
elif [ -z "$refills" ] || [ "$refills" -le 0 ]; then
  echo "FAIL: 'kalloc: totals' shows no refills (refills='$refills')" >&2; status=1
fi
[ "$status" -eq 0 ] && echo "PASSED: preload_demo"
exit "$status"
