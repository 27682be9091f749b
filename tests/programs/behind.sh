#!/usr/bin/env bash
# kalloc preloaded behind another allocator: LD_PRELOAD="other.so libkalloc.so"
# (jemalloc, tcmalloc, mimalloc, and glibc's libc_malloc_debug.so with
# MALLOC_CHECK_=3).  The other's malloc is the process's; what the other
# lacks (reallocarray, the __libc_* names) must then behave as it does
# without kalloc, so no block reaches the wrong allocator's free.  Each
# order's output is compared with the other allocator preloaded alone (the
# "sys" run); kalloc alone and kalloc first must still serve reallocarray.
#   behind.sh /path/to/libkalloc.so /path/to/behind_host
. "$(dirname "$0")/common.sh" "$1"
BH_HOST="$(realpath "${2:?usage: $0 libkalloc.so behind_host}")"
export BH_HOST

LIBDIR=/usr/lib/x86_64-linux-gnu
OTHERS=()
for lib in "$LIBDIR/libc_malloc_debug.so.0" "$LIBDIR/libjemalloc.so.2" "$LIBDIR/libtcmalloc.so.4" \
           $(ls "$LIBDIR"/libmimalloc.so.2* 2>/dev/null | head -1); do
  [ -f "$lib" ] && OTHERS+=("$lib")
done
if [ "${#OTHERS[@]}" -lt 2 ]; then
  fail "fewer than two other allocators found in $LIBDIR (tests/deps.sh installs them)"
  finish
fi
export OTHERS_LIST="${OTHERS[*]}"

bh_work() {
  # sys: each other allocator alone; kalloc: the same with kalloc behind it.
  local other pre
  for other in $OTHERS_LIST; do
    if [ "$MODE" = kalloc ]; then pre="$other $KALLOC_LIB"; else pre="$other"; fi
    echo "== $(basename "$other")"
    local check=""
    case "$other" in *malloc_debug*) check=3 ;; esac
    if [ "$MODE" = kalloc ]; then
      MALLOC_CHECK_=$check LD_PRELOAD="$pre" "$BH_HOST" other
    else
      MALLOC_CHECK_=$check LD_PRELOAD="$pre" "$BH_HOST" any
    fi
    MALLOC_CHECK_=$check LD_PRELOAD="$pre" ls -la / | wc -l
    MALLOC_CHECK_=$check LD_PRELOAD="$pre" sort -r "$SRC_DIR/behind_host.c" | md5sum
  done
  # libkalloc.so dlopen()ed by a program (both runs): its functions on its own blocks.
  echo "== dlopen"
  "$BH_HOST" dlopen "$KALLOC_LIB"
  # kalloc alone, and first: it serves reallocarray itself.
  echo "== alone"
  if [ "$MODE" = kalloc ]; then
    "$BH_HOST" kalloc
    LD_PRELOAD="$KALLOC_LIB ${OTHERS_LIST%% *}" "$BH_HOST" kalloc | tail -1
  else
    "$BH_HOST" any
    echo ok
  fi
}

run_workload behind bh_work && compare_output behind
finish
