#!/usr/bin/env bash
# What kalloc costs a short process at start.  A shell's children, git's
# and make's run for a millisecond or two; until 2026-12-07 kalloc's first
# malloc read /proc/self/status (the process's THP switch) and
# /proc/thread-self/status twice (the seccomp check before each of the two
# resource limits a zone growth reads), and its first slow path ran the
# decay hooks, reading the descriptor of every slab cache, used or not
# (page faults of 9 pages, faulted again as their caches were set up).  Now
# the THP switch is read when a hugepage decision first needs it, the first
# growth takes the limits read when the library was loaded (no seccomp
# check: glibc's start-up has just made the same call), later growths check
# once, and the hooks wait for their first period.  Since session 50 the
# same holds when the first malloc comes from another library's constructor
# before kalloc's (libselinux's in sed, ls, cp: 3 /proc and /sys reads were
# ~95 us of a sed process's ~1.2 ms), and the system's THP mode (sysfs) is
# read when a hugepage decision first needs it, not at the first malloc, nor
# at a large block's; and a large block freed at once (a buffer) is not a
# probe read (its seccomp check and mincore: ~55 us of a `cat`).
#
# A shim preloaded before libkalloc.so records the files kalloc opens
# through syscall() (all of its /proc and /sys reads).  The check: no read
# of /proc/self/status or /proc/thread-self/status in a process that makes
# 64 mallocs of 16 B to 20 KB and exits, and the two limits read once.  And
# a kalloc loaded later with dlopen reads no limit before its seccomp check
# (a sandbox may kill on prlimit64; only at load is it known to be allowed).  The page
# faults of those mallocs are printed for the record (glibc ~25, mimalloc
# ~76, kalloc 96 before the change, 89 after, on the machine of the note).
# The program's output is compared with the system allocator's too.
#   start_cost.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

cat > "$WORK/host.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
static long minflt(void) { struct rusage u; getrusage(RUSAGE_SELF, &u); return u.ru_minflt; }
int main(int argc, char **argv) {
  long f0 = minflt();
  void *p[64];
  size_t s = 16;
  for (int i = 0; i < 64; i++) {
    p[i] = malloc(s);
    if (!p[i]) return 1;
    s = s * 5 / 4 + 8;
    if (s > 20000) s = 16;
  }
  long f1 = minflt();
  for (int i = 0; i < 64; i += 2) free(p[i]);
  /* A buffer used in part and freed at once, as ls's and cat's: a large
   * block, so a fault-around probe (malloc/large.h), not read (no seccomp
   * check, no mincore) within LARGE_PROBE_MIN_MS of the first probe. */
  char *buf = malloc(128 << 10);
  if (!buf) return 1;
  buf[0] = 1;
  buf[70000] = 2;
  free(buf);
  printf("64 blocks of 16 B to 20 KB, half freed; a buffer\n");
  if (argc > 1) fprintf(stderr, "faults %ld\n", f1 - f0);
  return 0;
}
C
cat > "$WORK/shim.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
/* The paths the libraries behind this one open with syscall(SYS_openat),
 * and "prlimit" for each prlimit64 call but the stack limit's, one per
 * line in order, written at exit to the descriptor SHIM_FD names. */
static char seen[4096];
static size_t used;
long syscall(long n, ...) {
  va_list ap;
  va_start(ap, n);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  static long (*real)(long, ...);
  if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  if (n == SYS_prlimit64 && a[1] != RLIMIT_STACK && used + 9 < sizeof seen) {
    memcpy(seen + used, "prlimit\n", 8);
    used += 8;
  }
  if (n == SYS_openat && a[1]) {
    size_t len = strlen((const char *)a[1]);
    if (used + len + 1 < sizeof seen) {
      memcpy(seen + used, (const char *)a[1], len);
      used += len;
      seen[used++] = '\n';
    }
  }
  return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
__attribute__((destructor)) static void report(void) {
  const char *fd = getenv("SHIM_FD");
  if (fd && write(atoi(fd), seen, used) < 0) _exit(3);
}
C
cc -O2 -o "$WORK/host" "$WORK/host.c"
cc -O2 -shared -fPIC -o "$WORK/shim.so" "$WORK/shim.c" -ldl

# A program whose library mallocs in its constructor, as libselinux does in
# sed, ls and cp: a dependency of the program is initialised before the
# preloaded kalloc, so that malloc comes before kalloc's constructor.
cat > "$WORK/early.c" <<'C'
#include <stdlib.h>
void *early_block;
__attribute__((constructor)) static void early(void) { early_block = malloc(100); }
C
cat > "$WORK/host2.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
extern void *early_block;
int main(void) {
  void *p = malloc(5000);
  printf("%s\n", early_block && p ? "a block from a constructor and one from main" : "malloc failed");
  free(p);
  return 0;
}
C
cc -O2 -shared -fPIC -o "$WORK/libearly.so" "$WORK/early.c"
cc -O2 -o "$WORK/host2" "$WORK/host2.c" -L"$WORK" -learly -Wl,-rpath,"$WORK"

cat > "$WORK/dlo.c" <<'C'
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
  void *(*km)(size_t) = (void *(*)(size_t))dlsym(h, "kalloc_malloc");
  if (!km || !km(100)) { printf("kalloc_malloc failed\n"); return 1; }
  return 0;
}
C
cc -O2 -o "$WORK/dlo" "$WORK/dlo.c" -ldl

sc_work() {
  "$WORK/host"
}
run_workload start_cost sc_work && compare_output start_cost

SHIM_FD=3 LD_PRELOAD="$WORK/shim.so:$KALLOC_LIB" "$WORK/host" measure 2>"$WORK/faults.txt" 3>"$WORK/opened.txt" >/dev/null ||
  fail "the host failed under the shim and kalloc"
echo "what kalloc asked at start (files opened, limits read):"; sed 's/^/  /' "$WORK/opened.txt"
sed -n 's/^faults \(.*\)/page faults of the 64 mallocs: \1/p' "$WORK/faults.txt"
if ! grep -q . "$WORK/opened.txt"; then
  # kalloc reads at least the two limits at load.
  fail "the shim saw nothing: it did not stand in for syscall() (the check would pass trivially)"
fi
thp=$(grep -c 'transparent_hugepage' "$WORK/opened.txt" || true)
[ "$thp" -eq 0 ] || fail "the THP mode read $thp times at start (read when a hugepage decision first needs it)"
self=$(grep -cx '/proc/self/status' "$WORK/opened.txt" || true)
thread=$(grep -cx '/proc/thread-self/status' "$WORK/opened.txt" || true)
[ "$self" -eq 0 ] || fail "/proc/self/status read $self times at start (the THP switch waits for a hugepage decision)"
[ "$thread" -eq 0 ] || fail "/proc/thread-self/status read $thread times at start (the first growth takes the limits read at load; the first probe is not read at once)"
[ "$(grep -c '^prlimit$' "$WORK/opened.txt" || true)" -eq 2 ] ||
  fail "kalloc asked for the address-space and data limits $(grep -c '^prlimit$' "$WORK/opened.txt" || true) times at start (2 expected: once, at load)"

# The first malloc in another library's constructor, before kalloc's: the
# same, the limits read once and no seccomp check (the process is starting).
SHIM_FD=3 LD_PRELOAD="$WORK/shim.so:$KALLOC_LIB" "$WORK/host2" 3>"$WORK/early.txt" >"$WORK/early.out" ||
  fail "the host with a malloc in a library constructor failed"
grep -q 'a block from a constructor' "$WORK/early.out" || fail "host2: $(cat "$WORK/early.out")"
echo "a malloc before kalloc's constructor: $(tr '\n' ' ' < "$WORK/early.txt")"
thread=$(grep -cx '/proc/thread-self/status' "$WORK/early.txt" || true)
[ "$thread" -eq 0 ] || fail "/proc/thread-self/status read $thread times when the first malloc came from an earlier constructor (the limits are read as at load)"
[ "$(grep -c '^prlimit$' "$WORK/early.txt" || true)" -eq 2 ] ||
  fail "a malloc before kalloc's constructor: the limits read $(grep -c '^prlimit$' "$WORK/early.txt" || true) times (2 expected)"

# Loaded later with dlopen (a plugin linking libkalloc, in a process that may
# have installed a seccomp filter meanwhile): no prlimit64 before the
# seccomp check.
SHIM_FD=3 LD_PRELOAD="$WORK/shim.so" "$WORK/dlo" "$KALLOC_LIB" 3>"$WORK/dlopened.txt" ||
  fail "the dlopen host failed"
echo "dlopen'ed: $(tr '\n' ' ' < "$WORK/dlopened.txt")"
first=$( (grep -m1 -nx 'prlimit' "$WORK/dlopened.txt" || true) | cut -d: -f1)
check=$( (grep -m1 -nx '/proc/thread-self/status' "$WORK/dlopened.txt" || true) | cut -d: -f1)
if [ -n "$first" ] && { [ -z "$check" ] || [ "$check" -gt "$first" ]; }; then
  fail "a dlopen'ed kalloc called prlimit64 before any seccomp check"
fi
finish
