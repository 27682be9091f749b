"""python3 workload for compare.py: an interpreter-heavy mix of dicts, lists,
strings, bytes, tuples and small objects (a JSON-ish document pipeline).

compare.py runs it with PYTHONMALLOC=malloc, so every Python object
allocation goes straight to the allocator under test (instead of mostly to
CPython's own pymalloc arenas).  Usage: py_workload.py [scale]
Prints "python: ok checksum=<hex>"; the checksum depends only on the scale.
"""
import hashlib
import json
import sys


def main() -> int:
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rounds = max(1, int(4 * scale))
    n = max(200, int(30000 * min(1.0, scale * 4)))
    h = hashlib.sha256()
    state = 12345

    def rnd() -> int:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
        return state >> 33

    keep = {}
    for r in range(rounds):
        # build records: dicts of strings, lists and nested tuples
        recs = []
        for i in range(n):
            k = rnd()
            recs.append({
                "id": k,
                "name": "user-%d-%s" % (k % 100000, "x" * (k % 50)),
                "tags": [("t%d" % (k % (j + 7))) for j in range(k % 12)],
                "pos": (k % 1000, (k >> 10) % 1000),
                "blob": bytes((k + j) & 255 for j in range(k % 300)),
            })
        # index, group, sort
        by_tag = {}
        for rec in recs:
            for t in rec["tags"]:
                by_tag.setdefault(t, []).append(rec["id"])
        for t in sorted(by_tag):
            h.update(t.encode())
            h.update(str(len(by_tag[t])).encode())
        recs.sort(key=lambda d: (d["pos"], d["id"]))
        # serialise a slice and parse it back (big strings, many small objects)
        text = json.dumps([{k: v for k, v in d.items() if k != "blob"} for d in recs[: n // 4]])
        back = json.loads(text)
        if len(back) != len(recs[: n // 4]) or back[0]["id"] != recs[0]["id"]:
            print("python: FAILED: json round trip", file=sys.stderr)
            return 1
        h.update(hashlib.sha256(text.encode()).digest())
        # string building and splitting
        s = ",".join(d["name"] for d in recs)
        parts = s.split(",")
        if len(parts) != len(recs):
            print("python: FAILED: split", file=sys.stderr)
            return 1
        h.update(str(sum(len(p) for p in parts)).encode())
        # long-lived survivors: a cache that keeps some records of each round
        for d in recs[:: 50]:
            keep[d["id"]] = d
        if len(keep) > 20000:
            for k in list(keep)[:5000]:
                del keep[k]
        h.update(str(len(keep)).encode())
        del recs, by_tag, text, back, s, parts
    h.update(str(sum(len(d["blob"]) for d in keep.values())).encode())
    print("python: ok checksum=%s" % h.hexdigest()[:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
