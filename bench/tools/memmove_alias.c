/*
 * memmove_alias.c - how fast the C library's memmove copies when source and
 * destination sit at given offsets from page boundaries.
 *
 * Why: an allocator that starts every large block on a page boundary puts a
 * program's headers at the same page offset in every block, so a copy that
 * prepends a few bytes (Python's `header + value`) has its destination 1..31
 * bytes past its source modulo 4 KiB.  glibc 2.36's memmove runs 15-26x
 * slower there on AMD EPYC (2.7 against 41 GB/s for 256,000 bytes), for
 * copies of 16 KB to about 3/4 MiB; kalloc therefore colours its large
 * blocks (malloc/large.h).
 *
 *   cc -O2 bench/tools/memmove_alias.c -o memmove_alias
 *   ./memmove_alias [bytes] [iterations]      # a table over destination shifts
 *   ./memmove_alias BYTES SRC_OFF DST_OFF ITERS   # one measurement
 *
 * Both buffers are mapped apart (page-aligned), written before the timing,
 * and the copy is repeated ITERS times (one source byte changed each time so
 * the compiler cannot drop the loop); the figure is bytes copied per second.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double copy_rate(char *a, char *b, size_t n, long src_off, long dst_off, long iters)
{
    double t = now();
    for (long i = 0; i < iters; i++) {
        memmove(b + dst_off, a + src_off, n);
        a[src_off + (size_t)i % n]++;
    }
    return (double)n * (double)iters / (now() - t) / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 0) : 256000;
    long iters = argc == 5 ? atol(argv[4]) : argc > 2 ? atol(argv[2]) : 2000;
    size_t len = n + 3 * 4096;
    char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED || iters <= 0) {
        fprintf(stderr, "usage: %s [bytes] [iterations] | BYTES SRC_OFF DST_OFF ITERS\n", argv[0]);
        return 2;
    }
    memset(a, 1, len);
    memset(b, 2, len);
    if (argc == 5) {
        long so = atol(argv[2]), dof = atol(argv[3]);
        printf("bytes=%zu src+%ld dst+%ld: %.1f GB/s\n", n, so, dof, copy_rate(a, b, n, so, dof, iters));
        return 0;
    }
    /* Source at page offset 1000 (any offset shows the same), destination
     * shifted by d bytes from it modulo 4 KiB. */
    static const long shifts[] = {0, 1, 8, 16, 20, 31, 32, 48, 64, 100, 1024, 2048, 4064, -20, -64};
    printf("memmove of %zu bytes, source at page offset 1000\n", n);
    printf("%8s %10s\n", "dst-src", "GB/s");
    for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++)
        printf("%8ld %10.1f\n", shifts[i], copy_rate(a, b, n, 1000, 1000 + shifts[i], iters));
    return 0;
}
