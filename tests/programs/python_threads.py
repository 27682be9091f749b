"""Multi-threaded allocation churn for tests/programs/python.sh.

Worker threads build lists, dicts and strings; producer threads hand objects
to consumer threads through queues, so objects are freed on another thread
than the one that allocated them.  Output is per thread, in thread order.
"""
import hashlib
import queue
import sys
import threading

NTHREADS = 4


def builder(idx, results):
    acc = 0
    for rnd in range(12):
        lst = [str(idx * 1_000_000 + i) * (1 + i % 4) for i in range(60_000)]
        d = {s: len(s) for s in lst}
        acc += sum(d.values()) + len(lst)
        lst2 = [[i] * (i % 8) for i in range(30_000)]
        acc += sum(map(len, lst2))
        del lst, d, lst2
    results[idx] = acc


def producer(idx, q, count):
    for i in range(count):
        payload = {"from": idx, "i": i, "data": ("%d-%d;" % (idx, i)) * (1 + i % 50),
                   "list": list(range(i % 30))}
        q.put(payload)
    q.put(None)


def consumer(idx, q, results):
    digest = hashlib.sha256()
    n = 0
    while True:
        item = q.get()
        if item is None:
            break
        digest.update(item["data"].encode())
        n += len(item["list"])
        del item
    results[idx] = (n, digest.hexdigest()[:16])


def main():
    results = [None] * NTHREADS
    threads = [threading.Thread(target=builder, args=(i, results)) for i in range(NTHREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        print("builder", i, r)

    # pairs of producer/consumer threads, several rounds (threads come and go)
    for rnd in range(3):
        qs = [queue.Queue(maxsize=1000) for _ in range(NTHREADS)]
        cres = [None] * NTHREADS
        ts = []
        for i in range(NTHREADS):
            ts.append(threading.Thread(target=producer, args=(i, qs[i], 60_000)))
            ts.append(threading.Thread(target=consumer, args=(i, qs[i], cres)))
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for i, r in enumerate(cres):
            print("round", rnd, "consumer", i, r)
    print("threads done", threading.active_count())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
