#!/usr/bin/env bash
# How much of libkalloc.so's text a small program holds resident.  Its RSS
# counts every page of kalloc's code it has mapped, and a read fault on a
# file mapping maps the whole aligned window of pages around it that are in
# the page cache (the kernel's fault-around, 64 KiB by default).  With the
# functions in source order every window held something a small program
# runs, and all of the text (164 KiB) was resident in every process; the
# link now puts the functions ordinary programs run together after .init and
# .fini (src/text_order.ld, bench/tools/text_order.py).  A single-threaded
# program that reads lines, sorts them, counts them in a hash table of
# malloc'd nodes, as small utilities do, must map two windows of kalloc's
# text or less on average over 9 runs (the windows' alignment follows the
# library's load address, so one run in ~8 maps a third); the previous layout
# mapped all 164 KiB in every run.  Its output is compared with the system
# allocator's too.
#   resident_text.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

cat > "$WORK/host.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; char *key; long n; };
static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
int main(int argc, char **argv) {
  FILE *f = fopen(argv[1], "r");
  if (!f) return 2;
  char **lines = NULL, buf[256];
  size_t n = 0, cap = 0;
  while (fgets(buf, sizeof buf, f)) {
    if (n == cap) lines = realloc(lines, (cap = cap ? cap * 2 : 16) * sizeof *lines);
    lines[n++] = strdup(buf);
  }
  fclose(f);
  qsort(lines, n, sizeof *lines, cmp);
  struct node **tab = calloc(1024, sizeof *tab);
  for (size_t i = 0; i < n; i++) {
    unsigned h = 0;
    for (const char *s = lines[i]; *s && *s != ' '; s++) h = h * 31 + (unsigned char)*s;
    struct node *e = tab[h % 1024];
    while (e && strncmp(e->key, lines[i], 4) != 0) e = e->next;
    if (!e) {
      e = malloc(sizeof *e);
      e->key = lines[i];
      e->n = 0;
      e->next = tab[h % 1024];
      tab[h % 1024] = e;
    }
    e->n++;
  }
  long nodes = 0;
  for (int b = 0; b < 1024; b++)
    for (struct node *e = tab[b]; e; e = e->next) nodes++;
  printf("%zu lines, %ld nodes, first %s", n, nodes, n ? lines[0] : "-\n");
  /* kalloc's text: the libkalloc mapping that is executable. */
  if (argc > 2) {
    FILE *m = fopen("/proc/self/smaps", "r");
    char l[512];
    int in = 0;
    long size = 0, rss = 0, v;
    while (m && fgets(l, sizeof l, m)) {
      if ((l[0] >= '0' && l[0] <= '9') || (l[0] >= 'a' && l[0] <= 'f'))  /* a mapping's line */
        in = strstr(l, " r-xp ") && strstr(l, "libkalloc");
      if (in && sscanf(l, "Size: %ld kB", &v) == 1) size += v;
      if (in && sscanf(l, "Rss: %ld kB", &v) == 1) rss += v;
    }
    fprintf(stderr, "text %ld %ld\n", size, rss);
  }
  return 0;
}
C
cc -O2 -o "$WORK/host" "$WORK/host.c"
for i in $(seq 5000); do echo "$(( (i * 7919) % 20011 )) line $i"; done > "$WORK/lines"

rt_work() {
  "$WORK/host" "$WORK/lines"
}
run_workload resident_text rt_work && compare_output resident_text

# The fault-around window: 64 KiB unless debugfs says otherwise.
window=65536
if w=$(cat /sys/kernel/debug/fault_around_bytes 2>/dev/null) && [ -n "$w" ]; then
  window=$w
fi
total=0
size=0
runs=9
for run in $(seq $runs); do
  read -r _ size rss < <(LD_PRELOAD="$KALLOC_LIB" "$WORK/host" "$WORK/lines" measure 2>&1 >/dev/null | grep '^text ')
  echo "run $run: ${rss:-?} KiB resident of ${size:-?}"
  total=$(( total + ${rss:-0} ))
done
mean=$(( total / runs ))
bound=$(( 2 * window / 1024 + 8 ))
echo "kalloc's text: ${size} KiB mapped, ${mean} KiB resident on average (fault-around ${window} B; bound ${bound})"
if [ "$size" -le 0 ]; then
  fail "no executable libkalloc mapping found in the host's smaps"
elif [ "$bound" -ge $(( size - 16 )) ]; then
  echo "SKIP: two fault-around windows cover nearly all of the text ($size KiB)"
elif [ "$mean" -gt "$bound" ]; then
  fail "a small program held ${mean} KiB of kalloc's ${size} KiB of text on average (more than two windows): src/text_order.ld is stale; regenerate it with bench/tools/text_order.py"
fi
finish
