#!/usr/bin/env python3
"""livefloor.py - the floor under any allocator's peak RSS, per bench/compare.py row.

Runs every row of bench/compare.py at full size (its own commands, through its Suite) twice:
plain (glibc, to check the output) and under bench/tools/livepeak.c, an LD_PRELOAD shim over
glibc that records the most bytes the program held live at one moment (requested sizes) and,
at exit, the resident memory that is not heap (file pages, the main stack, the libraries'
.bss). For each process of a row (g++ runs cc1plus and as) it takes the largest of

  at peak  live peak + non-heap + 4 KiB per other thread alive at the peak (its stack page)
  at exit  live at exit + non-heap + resident anonymous memory the program mmapped itself
           (g++: cc1plus's garbage-collected heap)
  stacks   sleeping-threads only: non-heap + the resident stack pages of all its threads
           (they sleep all at once)

and the row's floor is the largest over its processes. Any allocator must hold that much
resident at its peak (less only what the program allocates and never touches), so:

  floor/best    the floor over the best peer's peak RSS in README.md's "Peak RSS (MiB):"
                table. Near 1: no allocator can do much better than that peer on the row.
  kalloc/floor  kalloc's peak RSS (same table) over the floor: its overhead over the minimum.

The geometric means are over all the rows run (19) and over them without sleeping-threads and
many-threads (17), whose peaks are thread stacks and per-thread caches. One more line gives
floor/best with every live size rounded up as x86-64 alignment forces (>= 9 bytes: 16).

Usage: bench/tools/livefloor.py [--bin-dir build/bench] [--out /tmp/livefloor] [--only a,b,...]
Writes <out>/livepeak.so (built with cc if missing), <out>/<row>.lp (the shim's report lines)
and <out>/floor.md (the table, also printed). Standard library only.
"""
import argparse
import math
import os
import re
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import compare  # noqa: E402

MIB = 1024.0 * 1024.0
THREAD_ROWS = ("sleeping-threads", "many-threads")


def readme_peak_rss():
    """{row: {allocator: MiB}} from README.md's "Peak RSS (MiB):" table."""
    text = open(os.path.join(ROOT, "README.md")).read()
    rows = {}
    for line in text[text.index("Peak RSS (MiB):"):].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.replace("*", "").strip() for c in line.strip("|").split("|")]
        name = re.sub(r"\s*\(program\)", "", cells[0])
        try:
            rows[name] = {a: float(cells[1 + i]) for i, a in enumerate(compare.ALLOCATOR_ORDER)}
        except (ValueError, IndexError):
            pass  # header, separator, geometric mean
    return rows


def read_lp(path):
    """The shim's report lines of a run (forked children left out), as dicts."""
    procs = []
    for line in open(path) if os.path.exists(path) else []:
        d = {k: (v if k == "comm" else int(v)) for k, _, v in (kv.partition("=") for kv in line.split())}
        if not d.get("forked"):
            procs.append(d)
    return procs


def floor_of(row, d, live_key="livepeak_bytes"):
    """(floor MiB, where from) of one process's report line."""
    nonheap = d["nonheap_kib"] / 1024
    cands = [(d[live_key] / MIB + nonheap + 4 * max(0, d["threads_at_peak"] - 1) / 1024, "peak"),
             (d["live_exit_bytes"] / MIB + nonheap + d["appanon_kib"] / 1024, "exit")]
    if row == "sleeping-threads":
        cands.append((nonheap + d["stk_sum_kib"] / 1024, "stacks"))
    return max(cands)


def build_shim(out):
    so = os.path.join(out, "livepeak.so")
    src = os.path.join(HERE, "livepeak.c")
    if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, src], check=True)
    return so


def run_rows(suite, shim, out):
    """Run each row plain and under the shim; return {row: ok} (same output, both exit 0)."""
    ok = {}
    for row, _, runner in suite.benches:
        lp = os.path.join(out, row + ".lp")
        if os.path.exists(lp):
            os.unlink(lp)
        os.environ.pop("LIVEPEAK_OUT", None)
        plain = runner("system", None)
        os.environ["LIVEPEAK_OUT"] = lp
        shimmed = runner("livepeak", shim)
        os.environ.pop("LIVEPEAK_OUT", None)
        for name, r in (("plain", plain), ("shim", shimmed)):
            print("%-22s %-5s rc=%s maxrss=%.1f MiB wall=%.1f s%s" % (
                row, name, r["rc"], (r.get("maxrss_kib") or 0) / 1024, r.get("wall") or 0,
                " problem: " + r["problem"] if r.get("problem") else ""), file=sys.stderr, flush=True)
        ok[row] = (plain["rc"] == 0 and shimmed["rc"] == 0 and not plain.get("problem")
                   and not shimmed.get("problem") and plain.get("checksum") == shimmed.get("checksum"))
        if not ok[row]:
            print("livefloor: %s: the run under the shim failed or differs from the plain run" % row,
                  file=sys.stderr)
    return ok


def gm(xs):
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def table(rows, ok, out):
    peers = readme_peak_rss()
    md = ["| row | live MiB | non-heap MiB | floor MiB | best peer MiB | floor/best | kalloc/floor |",
          "|---|---:|---:|---:|---|---:|---:|"]
    res = {}
    for row in rows:
        procs = read_lp(os.path.join(out, row + ".lp"))
        if not procs or row not in peers:
            md.append("| %s | (%s) | | | | | |" % (row, "no report" if not procs else "not in README"))
            continue
        d = max(procs, key=lambda p: floor_of(row, p))
        floor, where = floor_of(row, d)
        floor16 = max(floor_of(row, p, "livepeak16_bytes")[0] for p in procs)
        best_a = min((a for a in peers[row] if a != "kalloc"), key=peers[row].get)
        best, kalloc = peers[row][best_a], peers[row]["kalloc"]
        res[row] = (floor / best, kalloc / floor, floor16 / best)
        md.append("| %s%s | %.1f | %.2f | %.1f%s | %.1f (%s) | %.3f | %.2f |" % (
            row, "" if ok.get(row, True) else " (shim run differs!)", d["livepeak_bytes"] / MIB,
            d["nonheap_kib"] / 1024, floor, "" if where == "peak" else " (%s)" % where,
            best, best_a, floor / best, kalloc / floor))
    md.append("")
    sets = [list(res), [r for r in res if r not in THREAD_ROWS]]
    for i, rs in enumerate(sets):
        if rs and (i == 0 or len(rs) < len(sets[0])):
            md.append("- geometric mean over %d rows%s: floor/best %.3f, kalloc/floor %.3f "
                      "(live sizes rounded to 16 bytes: floor/best %.3f)" % (
                          len(rs), " (without sleeping-threads, many-threads)" if i else "",
                          gm(res[r][0] for r in rs), gm(res[r][1] for r in rs),
                          gm(res[r][2] for r in rs)))
    text = "\n".join(md) + "\n"
    open(os.path.join(out, "floor.md"), "w").write(text)
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bench"),
                    help="the workload binaries (default: <repo>/build/bench)")
    ap.add_argument("--out", default="/tmp/livefloor", help="output directory (default /tmp/livefloor)")
    ap.add_argument("--only", help="comma-separated rows (compare.py's names)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    only = [b.strip() for b in args.only.split(",")] if args.only else None
    shim = build_shim(args.out)
    suite = compare.Suite(types.SimpleNamespace(
        bin_dir=args.bin_dir, timeout=None, scale=None, workload_args=[], redis_requests=None,
        expiry_requests=None, expiry_tail=None), dict(compare.MODES["full"]))
    try:
        suite.add_workloads(only)
        suite.add_programs(only)
        if not suite.benches:
            ap.error("no row to run (unknown --only name, or nothing built in %s?)" % args.bin_dir)
        t0 = time.time()
        ok = run_rows(suite, shim, args.out)
        print("livefloor: %d rows in %.1f min" % (len(ok), (time.time() - t0) / 60), file=sys.stderr)
    finally:
        suite.cleanup()
    sys.stdout.write(table([b for b, _, _ in suite.benches], ok, args.out))
    return 0 if ok and all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
