# Sourced by every tests/programs/*.sh script.
#
#   . "$(dirname "$0")/common.sh" "$1"      # $1 = path of libkalloc.so
#
# Gives a scratch directory $WORK (removed at exit) and helpers that run one
# workload twice - once with the system allocator ("sys"), once with
# LD_PRELOAD=libkalloc.so ("kalloc") - and compare what the two runs produced:
#
#   run_workload NAME FUNC [ARGS...]
#       runs the shell function FUNC (exported to a child bash) in
#       $WORK/sys and then in $WORK/kalloc; stdout goes to NAME.out and
#       stderr to NAME.err in that directory.  In the kalloc run LD_PRELOAD is
#       exported for the whole child bash, so every process the workload
#       starts runs under kalloc.  A non-zero exit, a signal, a timeout or a
#       loader message saying the library could not be preloaded is a failure.
#   compare_output NAME           diff of sys/NAME.out and kalloc/NAME.out
#   compare_file RELPATH          byte comparison of a file both runs wrote
#   finish                        prints the verdict, exits 0 or 1
#
# The workload functions see $MODE (sys|kalloc), $WORK and $SRC_DIR (this
# directory), run with `set -euo pipefail` in their own directory, and must
# print only deterministic things on stdout.

set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 /path/to/libkalloc.so [...]" >&2
  exit 2
fi
if [ ! -f "$1" ]; then
  echo "FAIL: preload library '$1' does not exist" >&2
  exit 1
fi
KALLOC_LIB="$(realpath "$1")"
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEST_NAME="$(basename "$0" .sh)"
: "${KALLOC_PROGRAM_TIMEOUT:=240}"   # seconds, per run of one workload

# Both runs must see the same environment, apart from LD_PRELOAD.
unset LD_PRELOAD KALLOC_STATS MALLOC_CHECK_ MALLOC_PERTURB_ MALLOC_ARENA_MAX \
      GLIBC_TUNABLES PYTHONMALLOC PYTHONSTARTUP PERL5OPT 2>/dev/null || true
export LC_ALL=C LANG=C TZ=UTC
export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
ulimit -c 0 2>/dev/null || true

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kalloc-${TEST_NAME}.XXXXXX")"
trap '[ -n "${KALLOC_KEEP_WORK:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"' EXIT
export WORK SRC_DIR KALLOC_LIB
FAILED=0

fail() {
  echo "FAIL [$TEST_NAME]: $*" >&2
  FAILED=1
}

# The loader silently ignores a library it cannot preload (it only prints a
# message), which would make every comparison below pass trivially.  Make sure
# the library really ends up in a preloaded process.
preflight() {
  local maps
  maps="$(LD_PRELOAD="$KALLOC_LIB" /bin/cat /proc/self/maps 2>"$WORK/preflight.err")" || true
  if ! grep -qF "$KALLOC_LIB" <<<"$maps"; then
    echo "FAIL [$TEST_NAME]: LD_PRELOAD=$KALLOC_LIB does not load the library" >&2
    cat "$WORK/preflight.err" >&2
    exit 1
  fi
}
preflight

describe_rc() {
  local rc=$1
  if [ "$rc" -eq 124 ]; then
    echo "timed out after ${KALLOC_PROGRAM_TIMEOUT}s"
  elif [ "$rc" -gt 128 ]; then
    echo "killed by signal $((rc - 128)) (SIG$(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
  else
    echo "exit status $rc"
  fi
}

show_tail() {   # show_tail FILE LABEL
  if [ -s "$1" ]; then
    echo "---- $2 (last 40 lines) ----" >&2
    tail -n 40 "$1" >&2
    echo "----" >&2
  fi
}

# run_one MODE NAME FUNC [ARGS...]
run_one() {
  local mode=$1 name=$2; shift 2
  local dir="$WORK/$mode"
  mkdir -p "$dir"
  local rc=0 start end
  start=$(date +%s%N)
  (
    cd "$dir"
    export MODE="$mode"
    if [ "$mode" = kalloc ]; then
      export LD_PRELOAD="$KALLOC_LIB"
    fi
    exec timeout -k 10 "$KALLOC_PROGRAM_TIMEOUT" \
      bash -c 'set -euo pipefail; "$@"' workload "$@"
  ) >"$dir/$name.out" 2>"$dir/$name.err" </dev/null || rc=$?
  end=$(date +%s%N)
  printf '%-7s %-28s %7d ms  rc=%d\n' "$mode" "$name" "$(( (end - start) / 1000000 ))" "$rc"
  if [ "$rc" -ne 0 ]; then
    fail "$name under $mode: $(describe_rc "$rc")"
    show_tail "$dir/$name.err" "$mode $name stderr"
    show_tail "$dir/$name.out" "$mode $name stdout"
    return 1
  fi
  if grep -q "cannot be preloaded" "$dir/$name.err"; then
    fail "$name under $mode: the loader could not preload the library"
    show_tail "$dir/$name.err" "$mode $name stderr"
    return 1
  fi
  return 0
}

run_workload() {
  local name=$1 func=$2
  export -f "$func"
  # The system run first: if the workload itself is broken there is no point
  # in blaming kalloc.
  if ! run_one sys "$@"; then
    fail "$name fails with the system allocator too: the test itself is broken"
    return 1
  fi
  run_one kalloc "$@" || return 1
  return 0
}

compare_output() {
  local name=$1
  local a="$WORK/sys/$name.out" b="$WORK/kalloc/$name.out"
  if [ ! -f "$a" ] || [ ! -f "$b" ]; then
    fail "$name: output missing (did a run fail?)"
    return 1
  fi
  if ! cmp -s "$a" "$b"; then
    fail "$name: stdout differs between the system allocator and kalloc"
    diff -u --label "sys/$name.out" --label "kalloc/$name.out" "$a" "$b" | head -n 80 >&2 || true
    show_tail "$WORK/kalloc/$name.err" "kalloc $name stderr"
    return 1
  fi
  if [ ! -s "$a" ]; then
    fail "$name: produced no output at all"
    return 1
  fi
  echo "same    $name.out ($(wc -c <"$a") bytes)"
  return 0
}

compare_file() {
  local rel=$1
  local a="$WORK/sys/$rel" b="$WORK/kalloc/$rel"
  if [ ! -f "$a" ] || [ ! -f "$b" ]; then
    fail "file $rel missing from one of the runs"
    return 1
  fi
  if ! cmp "$a" "$b" >&2; then
    fail "file $rel differs between the system allocator and kalloc"
    if grep -Iq . "$a"; then   # a text file
      diff -u "$a" "$b" | head -n 80 >&2 || true
    fi
    return 1
  fi
  echo "same    $rel ($(wc -c <"$a") bytes)"
  return 0
}

finish() {
  if [ "$FAILED" -ne 0 ]; then
    echo "FAILED: $TEST_NAME (preload library $KALLOC_LIB)" >&2
    exit 1
  fi
  echo "PASSED: $TEST_NAME"
  exit 0
}
