#!/usr/bin/env bash
# CPython's own regression tests under kalloc: a third-party test suite that
# drives the allocator through every object type, pickling, compression,
# ctypes, mmap, tracemalloc, threads, signals and fork, with PYTHONMALLOC=malloc
# (every Python object comes from malloc, not from pymalloc's arenas).
# Debian's libpython3.11-testsuite provides the tests (tests/deps.sh).
#
# The chosen test files run once under kalloc (-j2: in two worker processes).
# A test file that fails under kalloc is run again with the system allocator:
# kalloc fails this test when any file that fails under kalloc passes with
# the system allocator, or when a worker crashes.  A file that fails with
# both is the machine's (it is listed, not blamed on kalloc).
#   python_regrtest.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

PY=/usr/bin/python3
[ -x "$PY" ] || { echo "FAIL: $PY not found (tests/deps.sh installs python3)" >&2; exit 1; }
if ! "$PY" -c 'import test.libregrtest' 2>/dev/null; then
  echo "FAIL: CPython's test package is missing (tests/deps.sh installs libpython3.11-testsuite)" >&2
  exit 1
fi

# Allocation-heavy, deterministic, offline and together about 2 minutes on 2
# cores.  Left out: test_socket (its VSOCK test waits for ever on a VM with a
# vsock device, under either allocator), network and GUI tests.
TESTS=(test_dict test_list test_set test_tuple test_unicode test_bytes test_memoryview
       test_collections test_deque test_heapq test_functools test_itertools test_weakref
       test_gc test_sys test_long test_float test_decimal test_math test_random
       test_json test_re test_pickle test_struct test_array test_mmap test_ctypes
       test_tracemalloc test_xml_etree test_email test_ast test_compile test_traceback
       test_zlib test_lzma test_bz2 test_hashlib test_tarfile test_zipfile
       test_thread test_threading test_queue test_signal test_fork1 test_wait4)

run_regrtest() {   # run_regrtest MODE LOG TESTS...
  local mode=$1 log=$2; shift 2
  local rc=0
  (
    cd "$WORK"
    export PYTHONMALLOC=malloc
    if [ "$mode" = kalloc ]; then export LD_PRELOAD="$KALLOC_LIB"; fi
    exec timeout -k 10 "$KALLOC_PROGRAM_TIMEOUT" "$PY" -m test -j2 --timeout 300 "$@"
  ) >"$log" 2>&1 </dev/null || rc=$?
  return $rc
}

# The files regrtest reports failed (its summary lists them after "N tests
# failed:" / "N test failed:" and "N tests crashed" style headers).
failed_files() {
  grep -Eo '^[0-9:]+ load avg: [0-9.]+ \[ *[0-9]+/[0-9]+(/[0-9]+)?\] test_[A-Za-z0-9_]+ (failed|crashed|timed out|interrupted)' "$1" |
    grep -Eo 'test_[A-Za-z0-9_]+ ' | tr -d ' ' | sort -u
}

start=$(date +%s)
rc=0
run_regrtest kalloc "$WORK/kalloc.log" "${TESTS[@]}" || rc=$?
echo "kalloc  regrtest of ${#TESTS[@]} files: rc=$rc in $(( $(date +%s) - start )) s"
grep -E '^(Total tests|Total test files|Tests result|Result):' "$WORK/kalloc.log" || true
if grep -Eq 'Fatal Python error|Segmentation fault|kalloc: ' "$WORK/kalloc.log"; then
  fail "a worker crashed or kalloc reported an error under kalloc"
  grep -E -B2 -A20 'Fatal Python error|Segmentation fault|kalloc: ' "$WORK/kalloc.log" | head -60 >&2
fi
if [ "$rc" -eq 124 ] || [ "$rc" -gt 128 ]; then
  fail "regrtest under kalloc: $(describe_rc "$rc")"
  show_tail "$WORK/kalloc.log" "kalloc regrtest"
fi
mapfile -t bad < <(failed_files "$WORK/kalloc.log")
if [ "$rc" -ne 0 ] && [ ${#bad[@]} -eq 0 ] && [ "$FAILED" -eq 0 ]; then
  fail "regrtest under kalloc exited $rc without naming a failed file"
  show_tail "$WORK/kalloc.log" "kalloc regrtest"
fi
if [ ${#bad[@]} -gt 0 ]; then
  echo "failed under kalloc: ${bad[*]}; running them with the system allocator"
  src=0
  run_regrtest sys "$WORK/sys.log" "${bad[@]}" || src=$?
  mapfile -t sysbad < <(failed_files "$WORK/sys.log")
  for t in "${bad[@]}"; do
    if printf '%s\n' "${sysbad[@]}" | grep -qx "$t"; then
      echo "  $t fails with the system allocator too: not kalloc's"
    else
      fail "$t fails under kalloc and passes with the system allocator"
      grep -E -A30 "^(FAIL|ERROR): |$t (failed|crashed)" "$WORK/kalloc.log" | head -80 >&2
    fi
  done
fi
finish
