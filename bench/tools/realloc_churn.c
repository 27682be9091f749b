/*
 * realloc_churn.c - realloc churn of 1-100 KB blocks: the case that made
 * kalloc's zone thrash (mm/vmscan.h, "Thrashing").
 *
 * Why: D programs (LDC/GDC, the threads section of a session-45 sweep) ran
 * 1.41-1.48x glibc's CPU time under kalloc.  Their C core is this loop:
 * 1,000 slots, each replaced (free + malloc) or resized (realloc) to a
 * random size up to MAXSZ, 200K operations.  The heap stays at ~55 MiB in
 * use with ~20 MiB free in holes between the live blocks, and the program
 * takes that free memory back many times its use a second.  A zone that
 * keeps only 4 MiB of it resident gives back, at every watermark pass, what
 * the next allocations fault in again.
 *
 *   cc -O2 -o /tmp/realloc_churn bench/tools/realloc_churn.c
 *   /usr/bin/time -f '%e s %M KB %R faults' /tmp/realloc_churn [ops] [whole]
 *   LD_PRELOAD=build/libkalloc.so /usr/bin/time ... /tmp/realloc_churn
 *
 * ops: operations (200000).  whole: 1 writes every new byte (a program that
 * fills what it allocates), 0 (the default) the first and last byte only
 * (as the D runtime's test did).  Prints a checksum of the bytes read back,
 * the same under every allocator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MAXSZ
#define MAXSZ 100000
#endif

int main(int argc, char **argv)
{
    const int nslots = 1000;
    long ops = argc > 1 ? atol(argv[1]) : 200000;
    int whole = argc > 2 ? atoi(argv[2]) : 0;
    char **slot = calloc(nslots, sizeof(char *));
    size_t *size = calloc(nslots, sizeof(size_t));
    if (!slot || !size)
        return 1;
    unsigned long x = 88172645463325252ul, sum = 0;
    for (long i = 0; i < ops; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int k = (int)(x % nslots);
        size_t n = 1000 + (x >> 20) % (MAXSZ - 1000);
        int resize = (int)((x >> 40) & 1);
        size_t keep = 0;    /* bytes the block already holds */
        if (resize) {
            char *p = realloc(slot[k], n);
            if (!p)
                return 1;
            if (slot[k] && p[0] != 1) {
                fprintf(stderr, "slot %d lost its bytes\n", k);
                return 1;
            }
            keep = size[k] < n ? size[k] : n;
            slot[k] = p;
        } else {
            free(slot[k]);
            slot[k] = malloc(n);
            if (!slot[k])
                return 1;
        }
        if (whole && n > keep)
            memset(slot[k] + keep, 1, n - keep);
        slot[k][0] = 1;
        slot[k][n - 1] = 2;
        size[k] = n;
        sum += (unsigned char)slot[k][keep ? keep - 1 : 0];
    }
    for (int k = 0; k < nslots; k++)
        free(slot[k]);
    free(slot);
    free(size);
    printf("%lu\n", sum);
    return 0;
}
