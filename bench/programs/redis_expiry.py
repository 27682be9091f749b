"""redis-expiry client for compare.py: server-like churn with key expiry.

Drives a redis-server (started by compare.py with the allocator preloaded)
over a plain socket with pipelined RESP commands, so the value sizes, TTLs
and the request mix are chosen per key (redis-benchmark uses one fixed value
size per run).  Three phases, like bench/workloads/kv_ttl.cc:

  warm   SET key value PX ttl (values 32 B-4 KiB, log-spread, TTL 3-8 s) and
         GET, on 40000 keys: the cache fills up
  spike  SETEX and SET+PEXPIRE (values 1-32 KiB, TTL 0.5-1.5 s) and GET
  calm   SET PX (values 64 B-2 KiB, TTL 0.3-1.5 s) and GET on 20000 keys
then compare.py leaves the server idle for a while, so redis's active
expire cycle removes the expired keys, and samples the server's VmRSS from
/proc/<pid>/status every 100 ms throughout.

The number of commands is bounded (--requests, split 40/20/40 over the
phases).  Checked work: every GET reply is either nil (expired or never set)
or a value that starts with its own key's name and has a length from the
phase's range; any error reply fails the run.

Usable alone:  python3 redis_expiry.py PORT [REQUESTS]
"""
import math
import random
import socket
import sys
import time

PHASES = [
    # name, share of the requests, keys, value min, max, TTL min, max (ms), SET %
    ("warm", 0.40, 40000, 32, 4096, 3000, 8000, 45),
    ("spike", 0.20, 40000, 1024, 32768, 500, 1500, 60),
    ("calm", 0.40, 20000, 64, 2048, 300, 1500, 45),
]
BATCH = 256  # commands per pipeline round trip


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n" % len(a))
        out.append(a)
        out.append(b"\r\n")
    return b"".join(out)


class Reader:
    """A minimal RESP reply reader (simple strings, errors, integers, bulk)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def reply(self):
        line = self._line()
        t = line[:1]
        if t == b"+":
            return line[1:]
        if t == b"-":
            raise RuntimeError("redis error reply: %s" % line[1:].decode(errors="replace"))
        if t == b":":
            return int(line[1:])
        if t == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            data = bytes(self.buf[self.pos:self.pos + n])
            self.pos += n + 2
            return data
        raise RuntimeError("unexpected redis reply: %r" % line[:80])


def drive(port, requests, seed=1, on_phase=None):
    """Run the three phases against 127.0.0.1:port.  Returns a dict of
    counters; raises on a protocol error or a wrong value.  on_phase(name) is
    called at the end of every phase (compare.py records RSS then)."""
    rng = random.Random(seed)
    blob = bytes(rng.getrandbits(8) for _ in range(70000))
    stats = dict(commands=0, sets=0, gets=0, hits=0, misses=0)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rd = Reader(s)
        for name, share, keys, vmin, vmax, tmin, tmax, set_pct in PHASES:
            n = max(BATCH, int(requests * share))
            lmin, lspan = math.log(vmin), math.log(vmax) - math.log(vmin)
            done = 0
            while done < n:
                cmds, expect = [], []
                for _ in range(min(BATCH, n - done)):
                    kid = rng.randrange(keys)
                    key = b"kb:%s:%08d" % (name.encode() if name != "calm" else b"warm", kid)
                    if rng.randrange(100) < set_pct:
                        size = int(math.exp(lmin + lspan * rng.random()))
                        off = rng.randrange(len(blob) - size)
                        val = key + b"|" + blob[off:off + max(0, size - len(key) - 1)]
                        ttl = rng.randint(tmin, tmax)
                        how = rng.randrange(3) if name == "spike" else 0
                        if how == 0:
                            cmds.append(resp(b"SET", key, val, b"PX", ttl))
                            expect.append(("ok", None))
                        elif how == 1:
                            cmds.append(resp(b"SETEX", key, max(1, ttl // 1000), val))
                            expect.append(("ok", None))
                        else:
                            cmds.append(resp(b"SET", key, val))
                            cmds.append(resp(b"PEXPIRE", key, ttl))
                            expect.append(("ok", None))
                            expect.append(("int", None))
                        stats["sets"] += 1
                    else:
                        cmds.append(resp(b"GET", key))
                        expect.append(("get", key))
                        stats["gets"] += 1
                s.sendall(b"".join(cmds))
                for kind, key in expect:
                    r = rd.reply()
                    if kind == "ok" and r != b"OK":
                        raise RuntimeError("SET replied %r" % (r,))
                    if kind == "int" and r not in (0, 1):
                        raise RuntimeError("PEXPIRE replied %r" % (r,))
                    if kind == "get":
                        if r is None:
                            stats["misses"] += 1
                        elif not r.startswith(key + b"|"):
                            raise RuntimeError("GET %s returned another key's value" % key.decode())
                        else:
                            stats["hits"] += 1
                stats["commands"] += len(cmds)
                done += len(cmds)
            if on_phase:
                on_phase(name)
    return stats


if __name__ == "__main__":
    port = int(sys.argv[1])
    req = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    t0 = time.perf_counter()
    st = drive(port, req)
    print("redis-expiry: ok %s secs=%.3f" % (" ".join("%s=%d" % kv for kv in st.items()),
                                               time.perf_counter() - t0))
