/* The malloc/free fast path's instruction count: a loop of 64-byte
 * malloc+free pairs, run by fastpath.sh under callgrind at two iteration
 * counts; the difference divided by the extra iterations is the cost of one
 * pair (malloc + free, including the calls), start-up cancelled out.
 * With a third argument "realloc": one block, then a loop of an in-place
 * realloc to its own size and a malloc_usable_size of it. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void pair(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");   /* keep the pair */
    free(p);
}

__attribute__((noinline)) static void *resize(void *p, size_t n)
{
    p = realloc(p, n);
    __asm__ volatile("" : : "r"(malloc_usable_size(p)) : "memory");
    return p;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 64;
    if (argc > 3 && strcmp(argv[3], "realloc") == 0) {
        void *p = malloc(size);
        for (long i = 0; i < iters; i++)
            p = resize(p, size);
        free(p);
        return 0;
    }
    for (long i = 0; i < iters; i++)
        pair(size);
    return 0;
}
