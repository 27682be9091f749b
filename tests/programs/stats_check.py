"""Run by tests/programs/stats.sh under LD_PRELOAD=libkalloc.so.

    stats_check.py expect-kalloc   kalloc_stats_get must be found in the
                                   process and python's allocations must
                                   show up in the counters
    stats_check.py expect-absent   (no LD_PRELOAD) the symbol must not be
                                   found: proves the check above is real

Prints what it checked; exits 1 with a message on the first failure.
"""
import os
import ctypes
import re
import sys

FIELDS = ["mapped", "resident", "in_use", "slab_bytes", "slab_objects", "large_bytes",
          "huge_bytes", "free_pages", "free_resident_pages", "reclaimed_pages", "nr_zones",
          "nr_thread_caches", "nr_slab_refills", "nr_slab_flushes", "nr_large_allocs",
          "nr_huge_allocs"]


class KallocStats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in FIELDS]


def die(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def main():
    mode = sys.argv[1]
    proc = ctypes.CDLL(None)  # the whole process: executable + every loaded library
    try:
        get = proc.kalloc_stats_get
    except AttributeError:
        get = None
    if mode == "expect-absent":
        if get is not None:
            die("kalloc_stats_get found in a process without LD_PRELOAD")
        print("without LD_PRELOAD: kalloc_stats_get not found (as expected)")
        return
    if get is None:
        die("kalloc_stats_get is not found in the process: is kalloc loaded?")
    get.argtypes = [ctypes.POINTER(KallocStats)]
    get.restype = ctypes.c_int
    version = proc.kalloc_version
    version.restype = ctypes.c_char_p
    ver = version().decode()
    if not re.fullmatch(r"\d+\.\d+\.\d+", ver):
        die("kalloc_version() returned %r" % ver)

    def snap():
        s = KallocStats()
        rc = get(ctypes.byref(s))
        if rc != 0:
            die("kalloc_stats_get returned %d" % rc)
        return s

    s0 = snap()
    # Objects of 600..4000 bytes: beyond pymalloc's 512-byte limit, so they
    # come from malloc even with python's default allocator.
    held = [bytes(600 + (i * 37) % 3400) for i in range(20_000)]
    churn = 0
    for rnd in range(5):
        tmp = [b"x" * (520 + (i * 13) % 2000) for i in range(20_000)]
        churn += len(tmp)
        del tmp
    s1 = snap()
    held_bytes = sum(map(len, held))
    big = [bytearray(1 << 20) for _ in range(8)]
    s2 = snap()
    del big, held
    s3 = snap()

    print("kalloc_version %s" % ver)
    for name in FIELDS:
        print("  %-20s %14d %14d %14d %14d" % (name, getattr(s0, name), getattr(s1, name),
                                                getattr(s2, name), getattr(s3, name)))
    refills = s1.nr_slab_refills - s0.nr_slab_refills
    if refills <= 0:
        die("python's allocations did not move nr_slab_refills (%d -> %d)"
            % (s0.nr_slab_refills, s1.nr_slab_refills))
    print("nr_slab_refills moved by %d during the workload" % refills)
    grown = s1.in_use - s0.in_use
    if grown < held_bytes // 2:
        die("in_use grew by %d bytes while the program holds %d more bytes" % (grown, held_bytes))
    print("in_use grew by %d bytes for %d bytes held" % (grown, held_bytes))
    large = (s2.nr_large_allocs + s2.nr_huge_allocs) - (s1.nr_large_allocs + s1.nr_huge_allocs)
    if large < 8:
        die("8 allocations of 1 MiB moved nr_large_allocs + nr_huge_allocs by only %d" % large)
    print("8 x 1 MiB: nr_large_allocs + nr_huge_allocs moved by %d" % large)
    # KALLOC_TCACHE=0 (a debugging option) turns the thread caches off.
    tcaches = os.environ.get("KALLOC_TCACHE", "1").lower() not in ("0", "off", "no", "false")
    for s in (s0, s1, s2, s3):
        if s.in_use > s.mapped:
            die("in_use (%d) > mapped (%d)" % (s.in_use, s.mapped))
        if s.resident == 0 or s.nr_zones == 0 or (tcaches and s.nr_thread_caches == 0):
            die("resident, nr_zones and nr_thread_caches must be > 0 in a running program")
    print("ok")


if __name__ == "__main__":
    main()
