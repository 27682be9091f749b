#!/usr/bin/env bash
# Real programs under small RLIMIT_DATA (`ulimit -d`) and RLIMIT_AS
# (`ulimit -v`) limits, each about 2 MB above what kalloc needs, with the
# system allocator's output.  The smallest limits (KB, in steps of 0.5-2 MB;
# 2026-12-07, Debian 12, LC_ALL=C; these workloads):
#              -d: sort  awk  sqlite3 python3   -v: sort  awk  sqlite3 python3
#   glibc           1000 6000  1000   11000         4000 12000  7000  20000
#   kalloc          1000 6500  1500   14000         7500 15000 10000  25000
#   kalloc before   8000 12000 8000   20000        12000 18000 14000  32000
# Until then kalloc mapped its slab maps (2 MiB) writable at start-up and
# grew its zone by whole 4 MiB blocks, which the kernel refused under such
# limits (the last megabytes stayed unused), and a growth took 4 MiB or 1/8
# of the zone however little room was left for the program's own mappings.
# What is left of the difference is mostly kalloc's fixed address space:
# the slab maps (2 MiB, read-only until used), the slab-list rows of owner
# ids never used (473 KB, read-only) and 0.38 MB of BSS.
#   rlimits.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
export PY

limits_work() {
  local rc
  # (limit option, KB, what to run); each in a subshell, so the limit
  # applies to that program only.
  while read -r opt kb prog; do
    echo "== ulimit $opt $kb: $prog"
    rc=0
    (
      ulimit "$opt" "$kb"
      case "$prog" in
        sort) sort /etc/services | cksum ;;
        awk) awk 'BEGIN { for (i = 0; i < 20000; i++) a[i] = i "x"; n = 0; for (k in a) n++; print n }' ;;
        sqlite3) sqlite3 :memory: "create table t(a, b); with recursive c(x) as (select 1 union all
                   select x + 1 from c where x < 3000) insert into t select x, printf('%0100d', x) from c;
                   select count(*), sum(length(b)) from t;" ;;
        python3) "$PY" -c 'import json; d = {str(i): [i] * 20 for i in range(3000)}; print(len(json.dumps(d)))' ;;
      esac
    ) || rc=$?
    echo "exit $rc"
  done <<'LIST'
-d 4000 sort
-d 10000 awk
-d 5000 sqlite3
-d 17000 python3
-v 10000 sort
-v 18000 awk
-v 13000 sqlite3
-v 28000 python3
LIST
}

run_workload limits limits_work && compare_output limits
finish
