#!/usr/bin/env bash
# PostgreSQL under kalloc: initdb, a server with its postmaster, backends
# (one forked process per connection), parallel-query workers and
# autovacuum, all preloaded.  The workload loads 200k rows with text and
# jsonb columns, builds B-tree and GIN indexes, runs sorts that spill to disk
# (work_mem 64 kB) and ones that do not, hash joins, a parallel aggregate, a
# recursive CTE that grows a string, updates, deletes and VACUUM, pg_dump of
# the table, and pgbench (4 clients on 2 threads) whose balances must add up.
# Query results must be the same as with the system allocator, and the
# server log must not show a backend killed by a signal (the postmaster would
# otherwise restart quietly after a crash).
#
# PostgreSQL refuses to run as root: as root the server runs as `nobody`
# (setpriv keeps LD_PRELOAD), from a copy of the library it can read.
#   postgres.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

PGBIN=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/postgres" ] && PGBIN="$d"
done
[ -n "$PGBIN" ] || { echo "FAIL: PostgreSQL server not found (tests/deps.sh installs postgresql)" >&2; exit 1; }
export PGBIN

if [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$WORK"
  export AS_USER="setpriv --reuid=nobody --regid=nogroup --clear-groups --"
else
  export AS_USER=""
fi

pg_work() {
  local lib="" dir="$PWD/data" sock="$PWD/sock"
  if [ "$MODE" = kalloc ]; then
    # the server's user may not reach the build tree (a clone under /root)
    lib="$WORK/lib/libkalloc.so"
    mkdir -p "$WORK/lib" && cp -f "$KALLOC_LIB" "$lib" && chmod -R a+rX "$WORK/lib"
    export LD_PRELOAD="$lib"
  fi
  mkdir -p "$dir" "$sock"
  [ -z "$AS_USER" ] || chown nobody:nogroup "$PWD" "$dir" "$sock"
  as() { $AS_USER env HOME="$PWD" "$@"; }
  as "$PGBIN/initdb" -D "$dir" -U kalloc -E UTF8 --locale=C -A trust >initdb.log 2>&1 \
    || { cat initdb.log >&2; return 1; }
  as "$PGBIN/pg_ctl" -D "$dir" -l "$PWD/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $sock -c max_parallel_workers_per_gather=2 -c parallel_setup_cost=0 -c parallel_tuple_cost=0 -c min_parallel_table_scan_size=0 -c autovacuum_naptime=1 -c fsync=off" \
    start >/dev/null
  if [ "$MODE" = kalloc ] && ! grep -qF "$lib" "/proc/$(head -n 1 "$dir/postmaster.pid")/maps"; then
    echo "the postmaster does not have $lib loaded" >&2
    as "$PGBIN/pg_ctl" -D "$dir" -m immediate stop >/dev/null || true
    return 1
  fi
  psqlq() { as "$PGBIN/psql" -h "$sock" -U kalloc -d postgres -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
  local rc=0
  psqlq <<'SQL' || rc=$?
CREATE TABLE t (id int PRIMARY KEY, grp int, name text, payload text, doc jsonb);
INSERT INTO t
  SELECT i, i % 97, 'name' || i, repeat(md5(i::text), 1 + i % 20),
         jsonb_build_object('i', i, 'tags', jsonb_build_array(i % 3, i % 5, md5(i::text)))
  FROM generate_series(1, 200000) i;
CREATE INDEX t_grp_name ON t (grp, name);
CREATE INDEX t_doc ON t USING gin (doc);
ANALYZE t;
SELECT grp, count(*), sum(length(payload)), md5(string_agg(name, ',' ORDER BY id))
  FROM t GROUP BY grp ORDER BY grp LIMIT 12;
SET work_mem = '64kB';
SELECT md5(string_agg(payload, '' ORDER BY payload DESC, id)) FROM t WHERE id % 7 = 0;
SELECT count(DISTINCT name), count(DISTINCT payload) FROM t;
SET work_mem = '64MB';
SELECT count(*), sum(a.id::bigint * b.grp) FROM t a JOIN t b ON a.id = b.id + 1 WHERE a.grp < 50;
SELECT grp % 7, count(*), sum(length(payload)) FROM t GROUP BY 1 ORDER BY 1;
WITH RECURSIVE r(n, s) AS (SELECT 1, ''::text UNION ALL SELECT n + 1, s || n::text FROM r WHERE n < 3000)
  SELECT md5(max(s)), count(*) FROM r;
SELECT count(*) FROM t WHERE doc @> '{"tags": [1]}';
SELECT md5(jsonb_agg(doc ORDER BY id)::text) FROM t WHERE id < 5000;
SELECT md5(string_agg(regexp_replace(name, '[0-9]+', '#', 'g'), ' ' ORDER BY id)) FROM t WHERE id < 20000;
UPDATE t SET payload = payload || repeat('x', id % 300) WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
VACUUM ANALYZE t;
SELECT count(*), sum(length(payload)), md5(string_agg(payload, ',' ORDER BY id)) FROM t;
SQL
  if [ "$rc" -eq 0 ]; then
    # rows come in physical order (sorted here); \restrict lines carry a random key
    as "$PGBIN/pg_dump" -h "$sock" -U kalloc -t t postgres >dump.sql
    grep -v -E '^\\(un)?restrict ' dump.sql | sort | md5sum
    as "$PGBIN/pgbench" -h "$sock" -U kalloc -i -s 2 -q postgres >pgbench-init.log 2>&1 || rc=$?
  fi
  if [ "$rc" -eq 0 ]; then
    as "$PGBIN/pgbench" -h "$sock" -U kalloc -c 4 -j 2 -t 300 postgres >pgbench.log 2>&1 || rc=$?
    grep -E 'number of failed transactions|transactions actually processed' pgbench.log || true
    psqlq -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches)
                 AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers),
                 (SELECT count(*) FROM pgbench_history)" || rc=$?
  fi
  as "$PGBIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || rc=$?
  if grep -E 'terminated by signal|was terminated by exception|PANIC' server.log >&2; then
    echo "a PostgreSQL process crashed (server.log above)" >&2
    rc=1
  fi
  [ "$rc" -eq 0 ] || { tail -n 30 server.log >&2; cat pgbench*.log >&2 2>/dev/null || true; }
  return "$rc"
}

run_workload postgres pg_work && compare_output postgres
finish
