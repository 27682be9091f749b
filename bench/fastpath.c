/* The malloc/free fast path's instruction count: a loop of 64-byte
 * malloc+free pairs, run by fastpath.sh under callgrind at two iteration
 * counts; the difference divided by the extra iterations is the cost of one
 * pair (malloc + free, including the calls), start-up cancelled out. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static void pair(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");   /* keep the pair */
    free(p);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 64;
    for (long i = 0; i < iters; i++)
        pair(size);
    return 0;
}
