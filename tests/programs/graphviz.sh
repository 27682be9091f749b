#!/usr/bin/env bash
# graphviz under kalloc: dot and neato lay out graphs; dot orders some
# of its choices by the addresses of its nodes, so a fresh heap must hand out
# ascending addresses as glibc's does (graphviz_g300.dot, 300 nodes and 400
# edges, came out 191.3 wide instead of 174.76 while kalloc's thread-cache
# refills put each slab's objects before the previous slab's).  stdout must be
# the same as with the system allocator.
#   graphviz.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v dot >/dev/null || { echo "FAIL: dot not found (tests/deps.sh installs graphviz)" >&2; exit 1; }

gv_work() {
  dot -Tplain "$SRC_DIR/graphviz_g300.dot" | md5sum
  dot -Tsvg "$SRC_DIR/graphviz_g300.dot" | md5sum
  neato -Tplain "$SRC_DIR/graphviz_g300.dot" | md5sum
  # A generated tree-ish graph with clusters.
  python3 - <<'PY' > gen.dot
import random
r = random.Random(7)
print("digraph T { rankdir=LR;")
for c in range(6):
    print(" subgraph cluster_%d { label=\"c%d\";" % (c, c))
    for i in range(40):
        print("  c%dn%d [label=\"%s\"];" % (c, i, "v" * (i % 7 + 1)))
    print(" }")
for e in range(500):
    a, b = r.randrange(6), r.randrange(6)
    print(" c%dn%d -> c%dn%d;" % (a, r.randrange(40), b, r.randrange(40)))
print("}")
PY
  dot -Tplain gen.dot | md5sum
}

run_workload graphviz gv_work && compare_output graphviz
finish
