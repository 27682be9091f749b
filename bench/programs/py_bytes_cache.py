"""python3-bytes workload for compare.py: a cache of `bytes` values that a
client keeps replacing, the way a memcached or redis client builds its
requests (`b"set <key> ..." + value + b"\\r\\n"`, then keeps a slice of it).

Found by the drop-in sweep (2026-12-05): a Python memcached client churning
1-20 KB values, every tenth 100-400 KB, ran 1.5 s under kalloc against 0.9 s
under glibc.  Two things made it slow, both about large blocks: every copy
that prepends the request header to a value had its source and destination
20 bytes apart modulo 4 KiB, where glibc's memmove is 15x slower on AMD Zen
(page-aligned blocks; kalloc now colours them), and the free runs kept on
the per-CPU pagesets split the heap (docs/architecture.md, "Large blocks:
colouring").  The interpreter's own allocator (pymalloc) is left on, as a
real program runs: only objects above 512 bytes reach malloc.

Usage: py_bytes_cache.py [scale]
Prints "python-bytes: ok checksum=<hex>"; the checksum depends only on the
scale.
"""
import hashlib
import random
import sys


def main() -> int:
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rounds = max(3000, int(30000 * scale))
    keys = max(1200, int(12000 * min(1.0, scale)))
    rng = random.Random(5)
    vals = {}
    for i in range(rounds):
        k = "key%d" % (i % keys)
        if i % 10:
            v = bytes([i % 256]) * rng.randint(1, 20000)
        else:
            v = b"x" * rng.randint(100000, 400000)
        msg = ("set %s 0 0 %d\r\n" % (k, len(v))).encode() + v + b"\r\n"
        vals[k] = msg[-len(v) - 2:-2]
        if len(vals[k]) != len(v) or vals[k][:1] != v[:1]:
            print("python-bytes: FAILED: slice", file=sys.stderr)
            return 1
    h = hashlib.sha256()
    for k in sorted(vals):
        h.update(k.encode())
        h.update(vals[k])
    print("python-bytes: ok checksum=%s" % h.hexdigest()[:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
