#!/usr/bin/env bash
# What fork() writes of kalloc's static data.  Its prepare handler locks the
# slab caches so the child inherits consistent lists; until 2026-12-07 it
# locked all of them, writing every page of kmalloc_caches (9 pages), so a
# program that has had a thread and forks (a Python subprocess, a build tool)
# grew by the pages its unused classes span, and its child copied them again
# when it unlocked them (a process that never had a thread takes no lock at
# fork).  Now only the caches set up are locked.  A program that has run a
# thread and uses a few classes reads the resident size of kalloc's BSS
# (its anonymous mapping after libkalloc.so's data) before and after a fork
# whose child exits at once: it may grow by two pages (the fork's own
# state: one page now), not more.  The
# program's output is compared with the system allocator's too.
#   fork_footprint.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

cat > "$WORK/host.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
/* Rss (KiB) of the mapping that follows libkalloc's last one: its BSS. */
static long kalloc_bss_rss(void) {
  FILE *m = fopen("/proc/self/smaps", "r");
  char l[512];
  int prev_kalloc = 0, in = 0;
  long rss = -1, v;
  while (m && fgets(l, sizeof l, m)) {
    if ((l[0] >= '0' && l[0] <= '9') || (l[0] >= 'a' && l[0] <= 'f')) {
      int named = strchr(l, '/') != NULL;
      in = prev_kalloc && !named && strstr(l, " rw-p ");
      prev_kalloc = strstr(l, "libkalloc") != NULL;
    } else if (in && sscanf(l, "Rss: %ld kB", &v) == 1) {
      rss = v;
      in = 0;
    }
  }
  if (m) fclose(m);
  return rss;
}
static void *worker(void *arg) { free(malloc(24)); return arg; }
int main(int argc, char **argv) {
  pthread_t t;                  /* a process that has had a thread: fork locks the caches */
  pthread_create(&t, NULL, worker, NULL);
  pthread_join(t, NULL);
  void *p[64];
  for (int i = 0; i < 64; i++) p[i] = malloc(16 + (i % 4) * 32);
  long before = kalloc_bss_rss();
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int st;
  waitpid(pid, &st, 0);
  long after = kalloc_bss_rss();
  for (int i = 0; i < 64; i++) free(p[i]);
  printf("forked, child exited %d\n", WEXITSTATUS(st));
  if (argc > 1) fprintf(stderr, "bss %ld %ld\n", before, after);
  return 0;
}
C
cc -O2 -pthread -o "$WORK/host" "$WORK/host.c"

ff_work() {
  "$WORK/host"
}
run_workload fork_footprint ff_work && compare_output fork_footprint

read -r _ before after < <(LD_PRELOAD="$KALLOC_LIB" "$WORK/host" measure 2>&1 >/dev/null | grep '^bss ')
echo "kalloc's BSS resident: ${before:-?} KiB before the fork, ${after:-?} KiB after"
if [ "${before:--1}" -lt 0 ] || [ "${after:--1}" -lt 0 ]; then
  fail "kalloc's BSS mapping not found in the host's smaps"
elif [ "$after" -gt $(( before + 8 )) ]; then
  fail "fork wrote $(( after - before )) KiB of kalloc's static data (at most 8: the caches not set up must stay untouched)"
fi
finish
