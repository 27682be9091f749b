#!/usr/bin/env bash
# redis-server under kalloc (Debian's build links libjemalloc dynamically and
# calls malloc, calloc, realloc, free and malloc_usable_size, which kalloc
# interposes): strings, lists, hashes, sets and sorted sets of many sizes,
# appends that grow values through realloc, deletions and expiry, a
# BGSAVE (a fork of the running server), DEBUG RELOAD (the whole dataset
# freed and rebuilt from the RDB file) and a restart from that file.
# Replies and the DEBUG DIGEST of the dataset must be the same as with the
# system allocator.  The server listens on a Unix socket only; it is stopped
# with SHUTDOWN (and by its PID if that fails).
#   redis.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v redis-server >/dev/null || { echo "FAIL: redis-server not found (tests/deps.sh installs it)" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "FAIL: redis-cli not found (tests/deps.sh installs redis-tools)" >&2; exit 1; }

redis_work() {
  local sock="$PWD/redis.sock" pid i
  start_server() {
    redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$PWD" \
      --dbfilename dump.rdb --save '' --appendonly no --enable-debug-command yes \
      --daemonize no --logfile "$PWD/redis.log" &
    pid=$!
    for i in $(seq 1 100); do
      redis-cli -s "$sock" ping >/dev/null 2>&1 && return 0
      sleep 0.1
    done
    echo "redis-server did not start" >&2
    return 1
  }
  stop_server() {
    redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    wait "$pid" || { echo "redis-server exited with status $?" >&2; return 1; }
  }
  cli() { redis-cli -s "$sock" "$@"; }

  start_server
  # A dataset made with --pipe (the raw protocol): 30k strings of 1..2000
  # bytes, 200 lists, 200 hashes, 200 sets, 100 sorted sets.
  python3 - > cmds.txt <<'PY'
import random
r = random.Random(7)
out = []
def cmd(*a):
    out.append("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x.encode()), x) for x in map(str, a)))
for i in range(30000):
    cmd("SET", "s:%d" % i, "v%d-" % i + "x" * r.randint(1, 2000))
for l in range(200):
    for j in range(r.randint(1, 300)):
        cmd("RPUSH", "l:%d" % l, "e%d" % j * r.randint(1, 20))
for h in range(200):
    for j in range(r.randint(1, 200)):
        cmd("HSET", "h:%d" % h, "f%d" % j, "y" * r.randint(1, 500))
for s in range(200):
    for j in range(r.randint(1, 200)):
        cmd("SADD", "t:%d" % s, "m%d" % r.randint(0, 10000))
for z in range(100):
    for j in range(r.randint(1, 300)):
        cmd("ZADD", "z:%d" % z, r.randint(0, 100000), "n%d" % j)
for i in range(0, 30000, 3):
    cmd("APPEND", "s:%d" % i, "a" * r.randint(1, 5000))
for i in range(1, 30000, 7):
    cmd("DEL", "s:%d" % i)
for l in range(0, 200, 2):
    cmd("LTRIM", "l:%d" % l, 0, 10)
import sys
sys.stdout.write("".join(out))
PY
  cli --pipe < cmds.txt | grep -E "errors: [1-9]" && { echo "--pipe reported errors" >&2; return 1; }
  cli dbsize
  cli get s:3 | md5sum
  cli strlen s:0
  cli lrange l:5 0 -1 | md5sum
  cli hgetall h:9 | paste - - | sort | md5sum   # hash tables iterate in a seeded order
  cli smembers t:11 | sort | md5sum
  cli zrange z:3 0 -1 withscores | md5sum
  cli debug digest
  cli bgsave
  for i in $(seq 1 300); do
    cli info persistence | grep -q 'rdb_bgsave_in_progress:0' && break
    sleep 0.1
  done
  cli info persistence | grep -E 'rdb_last_bgsave_status' | tr -d '\r'
  cli debug reload
  cli debug digest
  cli flushall
  cli dbsize
  stop_server
  start_server
  cli dbsize
  cli debug digest
  stop_server
}

run_workload redis redis_work && compare_output redis
finish
