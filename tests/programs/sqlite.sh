#!/usr/bin/env bash
# sqlite3 CLI under kalloc: a table of 200k rows made by a recursive CTE, an
# index, aggregates, a sort, a self join, updates/deletes, VACUUM and an
# integrity check.  Query results must be the same as with the system
# allocator, and so must the database file itself and its .dump.
#   sqlite.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v sqlite3 >/dev/null || { echo "FAIL: sqlite3 not found (tests/deps.sh installs it)" >&2; exit 1; }

sqlite_work() {
  sqlite3 -bail test.db <<'SQL'
PRAGMA page_size = 4096;
PRAGMA cache_size = -16000;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, name TEXT NOT NULL,
               val REAL, payload BLOB);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t(id, grp, name, val, payload)
  SELECT x, x % 97, 'name-' || x || '-' || hex(x * 7919),
         (x * 37 % 1000) / 8.0, zeroblob(x % 50)
  FROM c;
COMMIT;
CREATE INDEX t_grp_name ON t(grp, name);
CREATE INDEX t_val ON t(val);
SELECT 'count', count(*), sum(grp), total(val), sum(length(payload)) FROM t;
SELECT 'group', grp, count(*), sum(length(name)), printf('%.4f', avg(val)),
       min(name), max(name)
  FROM t GROUP BY grp ORDER BY grp;
SELECT 'grp42', name FROM t WHERE grp = 42 ORDER BY name LIMIT 5;
SELECT 'val', val, count(*) FROM t WHERE val BETWEEN 10 AND 12 GROUP BY val;
SELECT 'concat', length(group_concat(name, ',')) FROM t;
SELECT 'sorted', sum(id) FROM (SELECT id FROM t ORDER BY substr(name, 6) DESC LIMIT 5000);
SELECT 'distinct', count(DISTINCT substr(name, 1, 9)) FROM t;
SELECT 'join', count(*), sum(a.val + b.val)
  FROM t a JOIN t b ON b.id = a.id - 1 WHERE a.grp = 3;
SELECT 'window', grp, name, rn FROM (
  SELECT grp, name, row_number() OVER (PARTITION BY grp ORDER BY val DESC, id) AS rn FROM t)
  WHERE rn <= 2 AND grp < 5 ORDER BY grp, rn;
DELETE FROM t WHERE id % 3 = 0;
UPDATE t SET name = upper(name), payload = X'' WHERE grp < 10;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)
INSERT INTO t(id, grp, name, val, payload)
  SELECT 300000 + x, x % 7, printf('late-%08d', x), x / 3.0, zeroblob(1000 + x % 3000) FROM c;
VACUUM;
PRAGMA integrity_check;
SELECT 'after', count(*), sum(grp), sum(length(name)), sum(length(payload)) FROM t;
SELECT 'upper', count(*) FROM t WHERE name GLOB 'NAME-*';
SQL
  sqlite3 test.db .dump >dump.sql
  echo "dump lines: $(wc -l <dump.sql)"
}

run_workload sqlite sqlite_work && {
  compare_output sqlite
  compare_file dump.sql
  compare_file test.db
}
finish
