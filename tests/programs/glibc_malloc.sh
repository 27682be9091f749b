#!/usr/bin/env bash
# glibc's own malloc tests under kalloc: malloc/tst-*.c of the glibc source
# Debian ships (package glibc-source, the same release as the system's
# glibc), taken from its tarball at test time (nothing of glibc is kept in
# this repository), built against glibc_malloc/shim.h (a stand-in for the
# parts of glibc's support/ framework they use) and run with the system
# allocator and under kalloc.  Every test prints PASS, FAIL (...) or
# UNSUPPORTED; kalloc's lines must be the same as glibc's.
#   glibc_malloc.sh /path/to/libkalloc.so
#
# Left out, and why (each checks glibc's own internals or a choice kalloc
# makes differently on purpose):
#   tst-malloc-backtrace   overwrites glibc's chunk header in front of a
#                          freed block and expects glibc to notice; kalloc
#                          keeps no header there
#   tst-malloc-stats-cancellation  reads glibc's malloc_stats text
#   tst-malloc-thread-fail expects errno = ENOMEM after a failed
#                          posix_memalign; kalloc leaves errno alone there
#                          (POSIX returns the error; glibc-semantics.md)
#   tst-malloc-usable      malloc_usable_size == the request: glibc's
#                          MALLOC_CHECK_=3 debug mode only (fails on glibc too)
#   tst-mtrace, tst-mallocstate, tst-compathooks-*, tst-safe-linking,
#   tst-malloc-usable-tunables, tst-interpose-*, tst-dynarray*,
#   tst-alloc_buffer, tst-scratch_buffer
#                          glibc's tracing, heap-dump, hook, pointer
#                          mangling, tunables and internal-buffer code, or a
#                          glibc build tree
. "$(dirname "$0")/common.sh" "$1"

TARBALL="$(ls /usr/src/glibc/glibc-*.tar.xz 2>/dev/null | sort -V | tail -n 1)"
[ -n "$TARBALL" ] || { echo "FAIL: no /usr/src/glibc/glibc-*.tar.xz (tests/deps.sh installs glibc-source)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "FAIL: gcc not found" >&2; exit 1; }

GLIBC_TESTS=(
  tst-malloc tst-calloc tst-realloc tst-reallocarray tst-memalign tst-posix_memalign
  tst-pvalloc tst-pvalloc-fortify tst-valloc tst-mallocalign1 tst-malloc-too-large
  tst-free-errno tst-tcfree1 tst-tcfree2 tst-tcfree3 tst-mallopt tst-mallinfo2
  tst-malloc_info tst-malloc-tcache-leak tst-malloc-thread-exit tst-malloc-fork-deadlock
  tst-mallocfork tst-mallocfork2 tst-mallocfork3 tst-trim1 tst-obstack tst-mxfast
  tst-malloc-check
)

# Extract and build once, outside both runs (the builds run under no
# preload: they only have to exist).
top="$(basename "$TARBALL" .tar.xz)"   # glibc-2.36: the tarball's top directory
tar -xJf "$TARBALL" -C "$WORK" --wildcards "$top/malloc/tst-*"
cp "$SRC_DIR/glibc_malloc/test-skeleton.c" "$WORK/$top/test-skeleton.c"
mkdir -p "$WORK/bin"
for t in "${GLIBC_TESTS[@]}"; do
  src="$WORK/$top/malloc/$t.c"
  [ -f "$src" ] || { echo "FAIL: $t.c is not in $TARBALL" >&2; exit 1; }
  if ! gcc -O2 -w -D_GNU_SOURCE -pthread -I"$SRC_DIR/glibc_malloc" -o "$WORK/bin/$t" "$src" -ldl \
       > "$WORK/bin/$t.build" 2>&1; then
    echo "FAIL: building $t:" >&2
    cat "$WORK/bin/$t.build" >&2
    exit 1
  fi
done
export GLIBC_TEST_BIN="$WORK/bin"
export GLIBC_TEST_LIST="${GLIBC_TESTS[*]}"
# Temporary files the tests make (tst-malloc-fork-deadlock's 50 KB
# "bug19431-large-line"; glibc's support/ deletes them at exit, the shim does
# not) go in the work directory, removed with it.
export GLIBC_TEST_TMP="$WORK/tmp"
mkdir -p "$GLIBC_TEST_TMP"

glibc_work() {
  local t out
  for t in $GLIBC_TEST_LIST; do
    # The verdict is the driver's last line; what the test printed before
    # it goes to stderr (kept in the run's .err), as do its messages.
    out="$(TMPDIR="$GLIBC_TEST_TMP" timeout 120 "$GLIBC_TEST_BIN/$t" 2>&1 || true)"
    printf '%s\n' "$out" >&2
    echo "$t: $(printf '%s\n' "$out" | tail -n 1)"
  done
}

run_workload glibc_malloc glibc_work && compare_output glibc_malloc
finish
