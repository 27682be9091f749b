/*
 * small_rounds.c - rounds of small objects: build a heap of n blocks of
 * 16-511 bytes, free all of it in a random order, build it again.
 *
 * Why: the pattern of a program that builds a large structure of small
 * nodes, drops it and builds the next (a compiler's per-file trees, a batch
 * job's per-chunk index).  Until session 47 kalloc faulted its whole heap in
 * every round (a proactive compaction at each free phase reset the zone's
 * rounds; docs/architecture.md, "Rounds: a drop is a quarter"): 1M blocks,
 * 3 rounds, 1.68 s against mimalloc's 0.57.
 *
 *   cc -O2 -o /tmp/small_rounds bench/tools/small_rounds.c
 *   LD_PRELOAD=build/libkalloc.so /usr/bin/time -f '%e s %M KB %R faults' \
 *       /tmp/small_rounds [n] [rounds]
 *   PER=1 ...    also prints each round's times and the minor faults so far
 *
 * n: blocks (1000000, ~265 MiB), rounds: 5.  Each block's first byte is
 * written at its allocation and checked at its free (exit 1 if wrong).
 * Prints the mean time of an allocation and of a free, in ns.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static uint64_t seed = 88172645463325252ull;

static uint64_t rnd(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 2 || rounds < 1)
        return 2;
    unsigned char **p = malloc(n * sizeof *p);
    size_t *perm = malloc(n * sizeof *perm);
    if (!p || !perm)
        return 2;
    double ta = 0, tf = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (size_t i = 0; i < n; i++) {
            p[i] = malloc(16 + rnd() % 496);
            if (!p[i])
                return 2;
            p[i][0] = (unsigned char)i;
        }
        double t1 = now();
        for (size_t i = 0; i < n; i++)
            perm[i] = i;
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = rnd() % (i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double t2 = now();
        for (size_t i = 0; i < n; i++) {
            if (p[perm[i]][0] != (unsigned char)perm[i])
                return 1;
            free(p[perm[i]]);
        }
        double t3 = now();
        ta += t1 - t0;
        tf += t3 - t2;
        if (getenv("PER")) {
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            fprintf(stderr, "round %d alloc %.0f ms free %.0f ms minflt %ld\n", r, (t1 - t0) * 1e3,
                    (t3 - t2) * 1e3, ru.ru_minflt);
        }
    }
    printf("alloc %.1f ns free %.1f ns\n", ta / rounds / n * 1e9, tf / rounds / n * 1e9);
    return 0;
}
