"""Single-threaded allocation churn for tests/programs/python.sh.

Builds and drops large dicts, lists, sets and strings (millions of small
objects), grows bytearrays and lists (realloc), makes a json round trip of a
big nested structure and allocates a range of large buffers.  Prints only
deterministic results (lengths, sums, sha256 digests).
"""
import gc
import hashlib
import json
import random
import sys


def h(data):
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def dicts():
    d = {i: str(i) * (i % 5 + 1) for i in range(1_000_000)}
    print("dict built", len(d), sum(len(v) for v in d.values()))
    for i in range(0, 1_000_000, 2):
        del d[i]
    print("dict halved", len(d), sum(d.keys()) % 1_000_000_007)
    # string keys, dict of dicts, reinsertion after deletes
    e = {}
    for i in range(300_000):
        e["key-%d" % i] = {"n": i, "s": "v" * (i % 40), "l": [i, i + 1]}
    for i in range(0, 300_000, 3):
        e.pop("key-%d" % i)
    for i in range(0, 300_000, 3):
        e["again-%d" % i] = (i, str(i))
    print("dict of dicts", len(e), h(",".join(sorted(e)[:1000])))
    del d, e


def lists_and_sets():
    lst = [(i, i * i, str(i)) for i in range(1_000_000)]
    print("tuples", len(lst), sum(t[1] for t in lst) % 1_000_000_007)
    lst.sort(key=lambda t: t[2])
    print("sorted by str", lst[0], lst[-1], lst[500_000])
    del lst
    nested = [[j for j in range(i % 20)] for i in range(200_000)]
    print("nested", sum(map(len, nested)))
    s = set()
    for i in range(500_000):
        s.add(i * 7919 % 1_000_003)
    s2 = {str(x) for x in range(0, 1_000_003, 3)}
    print("sets", len(s), len(s2), sum(s) % 1_000_000_007)
    del nested, s, s2
    # growth by append (realloc of the item array) and shrink by pop
    grow = []
    for i in range(2_000_000):
        grow.append(i)
    while len(grow) > 10:
        grow.pop()
    print("grow/shrink", grow)


def strings():
    s = "".join(chr(97 + i % 26) for i in range(2_000_000))
    parts = s.split("z")
    print("split", len(parts), h("|".join(parts[:100])))
    words = [("%x" % (i * 2654435761 % 2**32)) * (1 + i % 9) for i in range(300_000)]
    joined = " ".join(words)
    print("joined", len(joined), h(joined))
    up = joined.upper().replace("A", "<a>").encode("utf-16")
    print("transformed", len(up), h(up))
    acc = ""
    for i in range(50_000):
        acc += str(i)
    print("concat", len(acc), h(acc))
    ba = bytearray()
    for i in range(300_000):
        ba += i.to_bytes(4, "little")
    print("bytearray", len(ba), h(bytes(ba)))
    del s, parts, words, joined, up, acc, ba


def json_round_trip():
    rnd = random.Random(12345)

    def node(depth):
        if depth == 0:
            return rnd.choice([rnd.randint(-10**9, 10**9), "s%d" % rnd.randint(0, 10**6),
                               None, True, rnd.random()])
        if rnd.random() < 0.5:
            return [node(depth - 1) for _ in range(rnd.randint(0, 6))]
        return {"k%d" % rnd.randint(0, 1000): node(depth - 1) for _ in range(rnd.randint(0, 6))}

    obj = {
        "users": [{"id": i, "name": "user%d" % i, "tags": ["t%d" % j for j in range(i % 7)],
                   "score": i * 1.5, "nested": {"a": [i, {"b": str(i)}]}}
                  for i in range(100_000)],
        "tree": [node(7) for _ in range(40)],
    }
    txt = json.dumps(obj, sort_keys=True)
    print("json dumps", len(txt), h(txt))
    back = json.loads(txt)
    assert back == obj, "json round trip changed the data"
    txt2 = json.dumps(back, sort_keys=True, indent=1)
    print("json indent", len(txt2), h(txt2))
    del obj, back, txt, txt2


def large_buffers():
    total = 0
    bufs = []
    for k in range(10, 27):  # 1 KiB .. 64 MiB
        for extra in (0, 1, 4095):
            b = bytearray(b"x") * ((1 << k) + extra)
            b[-1] = k
            total += len(b) + b[-1]
            bufs.append(b)
        if k % 4 == 0:
            bufs.clear()
    print("large buffers", total)
    del bufs
    # realloc up and down through the size classes
    b = bytearray()
    for n in list(range(0, 1 << 21, 4093)) + list(range(1 << 21, 0, -8191)):
        b.extend(b"y" * (n - len(b))) if n > len(b) else b.__delitem__(slice(n, None))
    print("resized", len(b), h(bytes(b)))


def main():
    print("python", sys.version_info[:2] >= (3, 7))
    dicts()
    gc.collect()
    lists_and_sets()
    gc.collect()
    strings()
    json_round_trip()
    large_buffers()
    print("gc", gc.collect() >= 0)
    print("done")


if __name__ == "__main__":
    main()
