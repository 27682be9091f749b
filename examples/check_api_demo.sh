#!/usr/bin/env bash
# Runs an api_demo build and checks it: exit status 0, "api_demo: ok", and
# whether malloc() is kalloc's: "yes" for a build linked with libkalloc.so,
# "no" for one linked with libkalloc.a (kalloc_ API only).
#   check_api_demo.sh /path/to/api_demo yes|no
set -euo pipefail
demo="${1:?usage: $0 api_demo yes|no}"
expect="${2:?usage: $0 api_demo yes|no}"
unset LD_PRELOAD KALLOC_STATS
rc=0
out="$("$demo")" || rc=$?
echo "$out"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: $demo exited with status $rc" >&2
  exit 1
fi
grep -qx 'api_demo: ok' <<<"$out" || { echo "FAIL: no 'api_demo: ok' line" >&2; exit 1; }
if ! grep -qx "malloc() served by kalloc: $expect" <<<"$out"; then
  echo "FAIL: expected 'malloc() served by kalloc: $expect'" >&2
  exit 1
fi
echo "PASSED: $demo"
