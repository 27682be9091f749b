/*
 * copydist.c - which of a program's memcpy/memmove calls hit the 4K-aliasing
 * slow path, and what they cost: a preloaded interposer.
 *
 * Why: glibc's memmove copies 15-30x slower on AMD EPYC when the destination
 * is 1..31 bytes past the source modulo 4 KiB (bench/tools/memmove_alias.c
 * measures the table), and where a program's blocks start decides how often
 * its copies land there: two blocks at the same page offset make a copy that
 * prepends a short header (Python's `header + value`) such a copy.  This
 * shim counts, for every copy of 1 KiB or more, the distance (dst - src) mod
 * 4 KiB, and splits the copies into "near" (1..63 bytes: the slow path and
 * its edge) and the rest, by copy size (1-4 KiB, 4-32 KiB: kalloc's slab
 * classes, 32 KiB and up: its large blocks), with the bytes and the time
 * spent in them (TSC cycles on x86-64, nanoseconds elsewhere; page faults
 * taken inside a copy count too).  With SIZES set, the near copies are also
 * listed by size in 1 KiB steps (up to 40 KiB), which points at the size
 * classes whose objects share page offsets.
 *
 *   cc -O2 -fno-builtin -shared -fPIC -o /tmp/copydist.so bench/tools/copydist.c -ldl
 *   LD_PRELOAD=/tmp/copydist.so:build/libkalloc.so prog      # the shim first
 *   COPYDIST_SIZES=1 LD_PRELOAD=... prog
 *
 * Only calls that go through the dynamic symbol are seen (a program's own
 * inlined copies, and libc's internal ones, are not).  The report goes to
 * stderr at exit, one per process.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t ticks(void) { return __rdtsc(); }
static const char *tick_unit = "Mcycles";
#else
static inline uint64_t ticks(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
static const char *tick_unit = "ms";
#endif

typedef void *(*copy_fn)(void *, const void *, size_t);
static copy_fn real_memcpy, real_memmove;

enum { RANGES = 3, SIZE_STEPS = 40 };
static const char *range_name[RANGES] = {"1-4 KiB", "4-32 KiB", ">= 32 KiB"};
/* [range][near]: copies, bytes, ticks.  Racy adds from several threads:
 * the figures are for orientation, not accounting. */
static uint64_t n_copies[RANGES][2], n_bytes[RANGES][2], n_ticks[RANGES][2];
static uint64_t near_by_size[SIZE_STEPS], all_by_size[SIZE_STEPS];

static void *counted(copy_fn f, void *dst, const void *src, size_t n)
{
    if (n < 1024)
        return f(dst, src, n);
    unsigned d = (unsigned)(((uintptr_t)dst - (uintptr_t)src) & 4095);
    int near = d >= 1 && d < 64;
    int r = n < 4096 ? 0 : n < 32768 ? 1 : 2;
    uint64_t t = ticks();
    void *ret = f(dst, src, n);
    t = ticks() - t;
    n_copies[r][near]++;
    n_bytes[r][near] += n;
    n_ticks[r][near] += t;
    if (n / 1024 < SIZE_STEPS) {
        all_by_size[n / 1024]++;
        near_by_size[n / 1024] += (uint64_t)near;
    }
    return ret;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    if (!real_memcpy)
        real_memcpy = (copy_fn)dlsym(RTLD_NEXT, "memcpy");
    return counted(real_memcpy, dst, src, n);
}

void *memmove(void *dst, const void *src, size_t n)
{
    if (!real_memmove)
        real_memmove = (copy_fn)dlsym(RTLD_NEXT, "memmove");
    return counted(real_memmove, dst, src, n);
}

__attribute__((destructor)) static void report(void)
{
    const double div = 1e6;     /* cycles -> Mcycles, or ns -> ms */
    fprintf(stderr, "copydist: copies of 1 KiB or more; near = destination 1..63 bytes past the source mod 4 KiB\n");
    for (int r = 0; r < RANGES; r++)
        fprintf(stderr, "copydist: %-9s other %8llu copies %7llu MiB %8.1f %s | near %7llu copies %6llu MiB %8.1f %s\n",
                range_name[r], (unsigned long long)n_copies[r][0], (unsigned long long)(n_bytes[r][0] >> 20),
                n_ticks[r][0] / div, tick_unit, (unsigned long long)n_copies[r][1],
                (unsigned long long)(n_bytes[r][1] >> 20), n_ticks[r][1] / div, tick_unit);
    if (getenv("COPYDIST_SIZES"))
        for (int k = 1; k < SIZE_STEPS; k++)
            if (all_by_size[k])
                fprintf(stderr, "copydist: %2d-%2d KiB: %7llu near of %7llu\n", k, k + 1,
                        (unsigned long long)near_by_size[k], (unsigned long long)all_by_size[k]);
}
