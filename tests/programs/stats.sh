#!/usr/bin/env bash
# kalloc's statistics, seen from a real program (python3) under LD_PRELOAD:
#   1. KALLOC_STATS=1: at exit kalloc prints, on stderr, a line starting with
#      "kalloc: totals " with key=value fields, among them in_use_kb=,
#      refills= (a count, must be > 0: kalloc served the allocations) and
#      large= (a count, must be > 0: the workload makes 1..8 MiB buffers).
#   2. Without KALLOC_STATS kalloc prints nothing.
#   3. ctypes.CDLL(None).kalloc_stats_get is found in the process (kalloc is
#      really loaded), and python's allocations move nr_slab_refills, in_use
#      and the large/huge counters (stats_check.py), with pymalloc and with
#      PYTHONMALLOC=malloc.  Without LD_PRELOAD the symbol must be absent.
#   4. KALLOC_TRACE_VMSCAN=16: at exit the reclaim trace, a header ("vmscan
#      trace: pid N, P passes over zones, the last M") and M = min(P, 16) >= 1
#      mm_vmscan_zone lines of key=value integers, each with low >= high
#      (the workload's frees cross the watermark).
#   5. KALLOC_STATS_FILE=$WORK/report.%p, in a program that closes its stderr
#      before it exits (as coreutils' sort and tar do): each process of the
#      run (timeout, python3) leaves its report in a file named with its pid,
#      with a totals line; stderr stays empty.
#   stats.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

PY=/usr/bin/python3
[ -x "$PY" ] || { echo "FAIL: $PY not found (tests/deps.sh installs python3)" >&2; exit 1; }

WORKLOAD='
import json
d = {i: str(i) * 3 for i in range(300000)}
blobs = [bytes(600 + i % 3000) for i in range(50000)]
big = [bytearray(1 << k) for k in range(14, 24)]
txt = json.dumps({"d": d})
print(len(d), len(blobs), sum(map(len, big)), len(json.loads(txt)["d"]))
'

run_py() {  # run_py NAME ENV... -- ARGS...   (output in $WORK/NAME.{out,err})
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local rc=0
  env "${envs[@]}" timeout -k 10 120 "$PY" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: python3 $(describe_rc "$rc")"
    show_tail "$WORK/$name.out" "$name stdout"
    show_tail "$WORK/$name.err" "$name stderr"
    return 1
  fi
  return 0
}

# --- 1. KALLOC_STATS=1 prints the totals at exit -----------------------------
if run_py atexit KALLOC_STATS=1 LD_PRELOAD="$KALLOC_LIB" -- -c "$WORKLOAD"; then
  echo "stdout: $(cat "$WORK/atexit.out")"
  if [ "$(cat "$WORK/atexit.out")" != "300000 50000 16760832 300000" ]; then
    fail "KALLOC_STATS=1: wrong program output"
  fi
  totals="$(grep -E '^kalloc: totals ' "$WORK/atexit.err" || true)"
  if [ -z "$totals" ]; then
    fail "KALLOC_STATS=1: no line starting with 'kalloc: totals ' on stderr"
    show_tail "$WORK/atexit.err" "stderr"
  elif [ "$(wc -l <<<"$totals")" -ne 1 ]; then
    fail "KALLOC_STATS=1: more than one 'kalloc: totals' line"
    echo "$totals" >&2
  else
    echo "$totals"
    field() {  # the value of key $1 in the totals line
      sed -n -E "s/^.*[ ]$1=([^ ]*).*\$/\\1/p" <<<"$totals"
    }
    for key in in_use_kb refills large; do
      v="$(field "$key")"
      if ! [[ "$v" =~ ^[0-9]+$ ]]; then
        fail "KALLOC_STATS=1: field $key= missing or not an integer ('$v') in: $totals"
      fi
    done
    refills="$(field refills)"
    large="$(field large)"
    if [[ "$refills" =~ ^[0-9]+$ ]] && [ "$refills" -le 0 ]; then
      fail "KALLOC_STATS=1: refills=$refills, kalloc did not serve python's allocations"
    fi
    if [[ "$large" =~ ^[0-9]+$ ]] && [ "$large" -le 0 ]; then
      fail "KALLOC_STATS=1: large=$large although python made buffers of 16 KiB .. 8 MiB"
    fi
  fi
fi

# --- 2. silent without KALLOC_STATS --------------------------------------------
if run_py quiet LD_PRELOAD="$KALLOC_LIB" -- -c "$WORKLOAD"; then
  if [ -s "$WORK/quiet.err" ]; then
    fail "without KALLOC_STATS, python3 under kalloc printed on stderr:"
    show_tail "$WORK/quiet.err" "stderr"
  else
    echo "without KALLOC_STATS: stderr empty"
  fi
fi

# --- 3. kalloc_stats_get through ctypes ------------------------------------------
if run_py absent -- "$SRC_DIR/stats_check.py" expect-absent; then
  cat "$WORK/absent.out"
fi
for pm in pymalloc malloc; do
  if run_py "ctypes-$pm" LD_PRELOAD="$KALLOC_LIB" PYTHONMALLOC="$pm" -- \
      "$SRC_DIR/stats_check.py" expect-kalloc; then
    echo "== ctypes, PYTHONMALLOC=$pm"
    cat "$WORK/ctypes-$pm.out"
  fi
done

# --- 4. KALLOC_TRACE_VMSCAN=16: the reclaim trace -------------------------------
if run_py trace KALLOC_TRACE_VMSCAN=16 LD_PRELOAD="$KALLOC_LIB" -- -c "$WORKLOAD"; then
  if [ "$(cat "$WORK/trace.out")" != "300000 50000 16760832 300000" ]; then
    fail "KALLOC_TRACE_VMSCAN=16: wrong program output"
  fi
  header="$(grep -E '^vmscan trace: pid [0-9]+, [0-9]+ passes over zones, the last [0-9]+ ' "$WORK/trace.err" || true)"
  lines="$(grep -c '^mm_vmscan_zone: ' "$WORK/trace.err" || true)"
  if [ -z "$header" ]; then
    fail "KALLOC_TRACE_VMSCAN=16: no trace header on stderr"
    show_tail "$WORK/trace.err" "stderr"
  else
    echo "$header"
    passes="$(sed -E 's/^.*, ([0-9]+) passes.*$/\1/' <<<"$header")"
    last="$(sed -E 's/^.*the last ([0-9]+) .*$/\1/' <<<"$header")"
    want=$(( passes < 16 ? passes : 16 ))
    if [ "$last" -ne "$want" ] || [ "$lines" -ne "$want" ] || [ "$want" -lt 1 ]; then
      fail "KALLOC_TRACE_VMSCAN=16: $passes passes, header says the last $last, $lines lines (want $want >= 1)"
    fi
    bad="$(grep '^mm_vmscan_zone: ' "$WORK/trace.err" | awk '{
        n = 0
        for (i = 2; i <= NF; i++) {
          split($i, kv, "=")
          if (kv[2] !~ /^[0-9]+(\/[0-9]+)*(\/blocked)?$/) { print "not a number: " $i; next }
          v[kv[1]] = kv[2] + 0; n++
        }
        if (n < 24) print "fields missing: " $0
        else if (v["low"] < v["high"]) print "low < high: " $0
      }')"
    if [ -n "$bad" ]; then
      fail "KALLOC_TRACE_VMSCAN=16: bad trace lines"
      echo "$bad" | head -5 >&2
    else
      grep '^mm_vmscan_zone: ' "$WORK/trace.err" | tail -n 2
    fi
  fi
fi

# --- 5. KALLOC_STATS_FILE: the report in a file, stderr closed -------------------
CLOSING='
import os, sys
d = [bytes(100 + i % 5000) for i in range(20000)]
print(len(d)); sys.stdout.flush()
os.close(2)
'
if run_py statsfile KALLOC_STATS_FILE="$WORK/report.%p" LD_PRELOAD="$KALLOC_LIB" -- -c "$CLOSING"; then
  files=("$WORK"/report.*)
  if [ "${#files[@]}" -ne 2 ]; then
    fail "KALLOC_STATS_FILE: want two files report.<pid> (timeout, python3), got: ${files[*]}"
  elif [ -s "$WORK/statsfile.err" ]; then
    fail "KALLOC_STATS_FILE: something went to stderr"
    show_tail "$WORK/statsfile.err" "stderr"
  fi
  for f in "${files[@]}"; do
    if ! [[ "$f" =~ /report\.[0-9]+$ ]]; then
      fail "KALLOC_STATS_FILE: $f is not named report.<pid>"
    elif ! grep -qE '^kalloc: totals .*in_use_kb=[0-9]+' "$f"; then
      fail "KALLOC_STATS_FILE: no totals line in $f"
      show_tail "$f" "report"
    else
      echo "KALLOC_STATS_FILE: $(basename "$f"): $(grep -c '' "$f") lines, $(grep -E '^kalloc: totals ' "$f" | cut -c1-60)"
    fi
  done
fi

finish
