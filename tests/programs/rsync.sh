#!/usr/bin/env bash
# rsync under kalloc: copy a generated tree of 1,500 files (97 MB: small,
# medium and five 6 MB files) with -a, copy it again with --checksum
# --delete (nothing to do), change, add and delete files and sync the
# changes (itemized), then list the copy's checksums.  stdout must be the
# same as with the system allocator, and the first copy's peak RSS (its
# largest process: the receiver) at most 1.5x the system allocator's plus
# 3 MB: the receiver writes a part of the large buffers it takes, and until
# 2026-12-06 kalloc's hugepage scan collapsed the pageblocks they filled,
# which made the unwritten pages resident (this tree: 16.9-18.9 MB against
# glibc's 6.7-6.9; now 8.7-9.0).
#   rsync.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v rsync >/dev/null || { echo "FAIL: rsync not found (tests/deps.sh installs it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "FAIL: /usr/bin/time not found (tests/deps.sh installs it)" >&2; exit 1; }

# The tree is generated once, outside the comparison, with the system
# allocator: the test is about rsync.
/usr/bin/python3 - "$WORK/template" <<'PY'
import os, random, sys
rnd = random.Random(7)
root = sys.argv[1]
for d in range(10):
    for s in range(5):
        p = os.path.join(root, "d%02d" % d, "s%d" % s)
        os.makedirs(p)
        for f in range(30):
            n = rnd.choice([rnd.randint(100, 4000), rnd.randint(4000, 64000), rnd.randint(16000, 200000)])
            if (d * 5 + s) * 30 + f in (100, 400, 700, 1000, 1300):
                n = 6_000_000
            with open(os.path.join(p, "f%03d.bin" % f), "wb") as fh:
                fh.write(rnd.randbytes(n // 2) + bytes(n - n // 2))
PY

rsync_work() {
  /usr/bin/time -f %M -o rsync.maxrss rsync -a "$WORK/template/" copy/
  echo "== copied: $(find copy -type f | wc -l) files"
  rsync -a --checksum --delete -i "$WORK/template/" copy/ | sort
  echo "== changes"
  cp -a copy changed
  for f in changed/d0[0-4]/s1/f00[0-9].bin; do printf 'changed %s\n' "$f" >>"$f"; done
  rm changed/d09/s4/f0*.bin
  mkdir changed/new
  for i in $(seq 1 40); do head -c $((i * 1000)) "$WORK/template/d00/s0/f001.bin" >"changed/new/n$i.bin"; done
  rsync -a --delete -i --no-times --checksum changed/ copy/ | sort
  echo "== tree"
  (cd copy && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum
  diff -r changed copy && echo "copy matches"
}

run_workload rsync rsync_work && compare_output rsync
# With transparent_hugepage/enabled = always the kernel maps hugepages at the
# first touch of any aligned 2 MiB, whatever the allocator asks: the bound is
# about kalloc's own advice (madvise and never modes).
thp_always=0
grep -q '\[always\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null && thp_always=1
if [ "$thp_always" = 1 ]; then
  echo "peak RSS not compared: transparent_hugepage/enabled is always"
elif [ -f "$WORK/sys/rsync.maxrss" ] && [ -f "$WORK/kalloc/rsync.maxrss" ]; then
  sys_kb=$(cat "$WORK/sys/rsync.maxrss"); kalloc_kb=$(cat "$WORK/kalloc/rsync.maxrss")
  echo "peak RSS of the first copy: system $sys_kb KiB, kalloc $kalloc_kb KiB"
  if [ "$kalloc_kb" -gt $((sys_kb * 3 / 2 + 3072)) ]; then
    fail "rsync's peak RSS under kalloc, $kalloc_kb KiB, is over 1.5x the system allocator's ($sys_kb KiB) + 3 MiB"
  fi
fi
finish
