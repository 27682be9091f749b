#!/usr/bin/env bash
# Programs run under valgrind's memcheck with kalloc preloaded, against
# memcheck alone.  Valgrind's tools redirect the malloc family of every
# library to their own by code address, but valgrind 3.19 does not know
# reallocarray, pvalloc, free_sized, free_aligned_sized or the __libc_*
# names: until 2026-12-07 kalloc served those itself, so reallocarray of a
# malloc'd block aborted ("kalloc: realloc(): invalid pointer"; GNU ls and
# sort call it) and their blocks were an "Invalid free" to memcheck.  Any
# memcheck error fails the run (--error-exitcode).  The same with
# --soname-synonyms=somalloc=libkalloc.so*, as valgrind's manual asks for
# an allocator in another library.  And kalloc's own API (kalloc_malloc,
# kalloc_trim) must not make valgrind warn about a system call it does not
# know (process_madvise: kalloc uses madvise under valgrind).
#   valgrind.sh /path/to/libkalloc.so /path/to/valgrind_host
. "$(dirname "$0")/common.sh" "$1"
VG_HOST="$(realpath "${2:?usage: $0 libkalloc.so valgrind_host}")"
export VG_HOST

if ! command -v valgrind >/dev/null; then
  fail "valgrind not found (tests/deps.sh installs it)"
  finish
fi

vg_work() {
  local syn
  for syn in "" "--soname-synonyms=somalloc=libkalloc.so*"; do
    echo "== memcheck $syn"
    # LD_PRELOAD (kalloc's run) reaches valgrind's client: the tool adds
    # its own preloads in front.
    valgrind -q --tool=memcheck --error-exitcode=99 $syn "$VG_HOST" 2>vg_host.err
    cat vg_host.err >&2
    # No warning of valgrind's about a system call it does not know.
    echo "unhandled system calls: $(grep -c 'unhandled amd64-linux syscall' vg_host.err || true)"
    valgrind -q --tool=memcheck --error-exitcode=99 $syn ls -l "$SRC_DIR" | awk '{ print $NF }'
    valgrind -q --tool=memcheck --error-exitcode=99 $syn sort -r "$SRC_DIR/valgrind_host.c" | cksum
  done
}

run_workload valgrind vg_work && compare_output valgrind
finish
