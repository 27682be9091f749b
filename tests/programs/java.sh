#!/usr/bin/env bash
# A Java program under kalloc: the JVM (HotSpot) takes its own metadata,
# compiler arenas, thread stacks' bookkeeping and NIO buffers from malloc,
# runs a dozen threads of its own plus a pool of 8 workers, and handles
# signals in its own way.  Java_workload.java churns hash maps, strings and
# direct buffers from several threads; stdout must be the same as with the
# system allocator.  tests/deps.sh installs Debian's openjdk-17-jdk-headless.
#   java.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

if ! command -v javac >/dev/null || ! command -v java >/dev/null; then
  echo "FAIL: javac/java not found (tests/deps.sh installs openjdk-17-jdk-headless)" >&2
  exit 1
fi
javac -d "$WORK/classes" "$SRC_DIR/Java_workload.java"
export CLASSES="$WORK/classes"

java_work() { java -Xmx256m -cp "$CLASSES" Java_workload; }

run_workload java java_work && compare_output java
finish
