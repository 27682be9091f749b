#!/usr/bin/env bash
# kalloc preloaded beside libfaketime (Debian's faketime), which wraps
# libc's clock functions and looks its next definitions up with dlsym on
# the first call: dlsym allocates.  kalloc read its clock through libc's
# clock_gettime, so its malloc asked libfaketime for the time from inside
# libfaketime's own start-up, got -1, and the process died of SIGSEGV
# (until 2026-12-07; jemalloc hangs there, mimalloc and tcmalloc pass).
# Each order of the two libraries, and libfaketimeMT, with a frozen clock,
# an offset and a sped-up clock; the "sys" run has libfaketime alone.
#   faketime.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

FT_DIR=/usr/lib/x86_64-linux-gnu/faketime
if [ ! -f "$FT_DIR/libfaketime.so.1" ]; then
  fail "libfaketime not found in $FT_DIR (tests/deps.sh installs faketime)"
  finish
fi
export FT_DIR

ft_work() {
  local order pre ft
  for order in after before mt; do
    case "$MODE/$order" in
      sys/mt) pre="$FT_DIR/libfaketimeMT.so.1" ;;
      sys/*) pre="$FT_DIR/libfaketime.so.1" ;;
      kalloc/after) pre="$KALLOC_LIB $FT_DIR/libfaketime.so.1" ;;
      kalloc/before) pre="$FT_DIR/libfaketime.so.1 $KALLOC_LIB" ;;
      kalloc/mt) pre="$KALLOC_LIB $FT_DIR/libfaketimeMT.so.1" ;;
    esac
    for ft in "2020-01-01 00:00:00" "@2021-06-01 12:00:00" "-400d" "+1y x20"; do
      echo "== $order [$ft]"
      # A frozen clock prints the same in both runs; others only a date's shape.
      case "$ft" in
        2020*) FAKETIME="$ft" LD_PRELOAD="$pre" date -u +%Y-%m-%dT%H:%M:%S ;;
        *) FAKETIME="$ft" LD_PRELOAD="$pre" date -u +%Y | grep -c '^[0-9]\{4\}$' ;;
      esac
      FAKETIME="$ft" LD_PRELOAD="$pre" python3 -c '
import json, threading, time
d = [{"k": i, "v": str(i) * 8} for i in range(200000)]
del d
out = []
def work(n):
    s = {}
    for i in range(50000):
        s[i % 977] = "x" * (i % 300)
    out.append(len(s))
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
t0 = time.monotonic(); time.sleep(0.01)
print(len(json.dumps(list(range(50000)))), sorted(out), time.monotonic() >= t0)'
      FAKETIME="$ft" LD_PRELOAD="$pre" sqlite3 :memory: \
        "create table t(a, b); with recursive c(x) as (select 1 union all select x + 1 from c where x < 100000)
         insert into t select x, hex(randomblob(16)) from c; select count(*), sum(length(b)) from t;"
    done
  done
}

run_workload faketime ft_work && compare_output faketime
finish
