#!/usr/bin/env bash
# Two kalloc libraries (and glibc) under one system THP mode: peak RSS and
# wall time of the suite's workloads, interleaved, per round.
#   sudo bench/tools/thp_mode_ab.sh OLD.so NEW.so [always|madvise|never] [rounds=2] [rows...]
# Sets /sys/kernel/mm/transparent_hugepage/enabled for the run (root) and
# puts it back.  Prints "round row lib wall_s peak_MiB" lines, then each
# row's mean NEW/OLD ratios and their geometric means.  Figures measured
# with it are in docs/architecture.md (Hugepages, "`always` mode").
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
old="$(realpath -e "$1")"; new="$(realpath -e "$2")"
mode="${3:-always}"; rounds="${4:-2}"; shift $(( $# < 4 ? $# : 4 ))
rows="${*:-fragmentation idle-drift kv-ttl larson realloc-string alloc-test containers thread-rounds random-sizes xmalloc}"
thp=/sys/kernel/mm/transparent_hugepage/enabled
saved="$(sed 's/.*\[\(.*\)\].*/\1/' "$thp")"
trap 'echo "$saved" > "$thp"' EXIT
echo "$mode" > "$thp"
out="$(mktemp)"
for r in $(seq 1 "$rounds"); do
  for w in $rows; do
    for lib in glibc old new; do
      case $lib in glibc) p="";; old) p="$old";; new) p="$new";; esac
      LD_PRELOAD="$p" /usr/bin/time -f "TIME %e %M" "$root/build/bench/$w" > "$out.run" 2>&1 || true
      awk -v r="$r" -v w="$w" -v l="$lib" '/^TIME/ { printf "%s %s %s %s %.1f\n", r, w, l, $2, $3 / 1024 }' "$out.run"
    done
  done
done | tee "$out"
awk '{ t[$2" "$3] += $4; m[$2" "$3] += $5; rows[$2] = 1 }
     END { n = 0; gt = 0; gm = 0
           for (w in rows) { rt = t[w" new"] / t[w" old"]; rm = m[w" new"] / m[w" old"]
             printf "%-15s peak %.3f time %.3f\n", w, rm, rt; gt += log(rt); gm += log(rm); n++ }
           printf "geometric mean: peak %.3f time %.3f (new/old)\n", exp(gm / n), exp(gt / n) }' "$out"
rm -f "$out" "$out.run"
