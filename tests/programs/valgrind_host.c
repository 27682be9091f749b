/*
 * valgrind_host.c - the entry points kalloc exports that valgrind 3.19's
 * tools do not redirect (reallocarray, free_sized, free_aligned_sized, the
 * __libc_* names; memcheck aborts on pvalloc itself), mixed with the ones they do
 * (malloc, realloc, free, memalign...), on each other's blocks: run under
 * memcheck with kalloc preloaded (valgrind.sh), no block may reach the wrong
 * allocator.  stdout is deterministic.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_memalign(size_t, size_t);

int main(void)
{
    unsigned long sum = 0;
    /* C23's, looked up: glibc 2.36 has none, kalloc exports both. */
    void (*fsized)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*faligned)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    for (int i = 0; i < 300; i++) {
        size_t n = 16 + (size_t)i * 7;
        char *p = malloc(n);
        memset(p, 'a', n);
        p = reallocarray(p, 3, n);             /* the tool's block */
        sum += (unsigned char)p[n - 1];
        p = realloc(p, 5 * n);
        free(p);
        char *q = reallocarray(NULL, 8, n);    /* then the tool's free */
        q[8 * n - 1] = 'q';
        sum += (unsigned char)q[8 * n - 1];
        free(q);
        char *s = malloc(n);
        s[0] = 's';
        sum += (unsigned char)s[0];
        if (fsized)
            fsized(s, n);
        else
            free(s);
        char *al = aligned_alloc(64, 128);
        al[127] = 'l';
        sum += (unsigned char)al[127];
        if (faligned)
            faligned(al, 64, 128);
        else
            free(al);
        char *l = __libc_malloc(n);
        l[0] = 'x';
        l = __libc_realloc(l, 2 * n);
        sum += (unsigned char)l[0];
        free(l);
        char *c = __libc_calloc(n, 2);
        sum += (unsigned char)c[n];
        __libc_free(c);
        char *m = __libc_memalign(256, n);
        sum += ((unsigned long)m & 255) == 0;
        m = realloc(m, n + 1000);
        __libc_free(m);
    }
    /* kalloc's own API (not redirected: kalloc's blocks) when it is there:
     * scattered frees then a trim, which gives the pages back in batches
     * (process_madvise, a system call valgrind 3.19 warns it does not know:
     * kalloc uses madvise under valgrind). */
    void *(*kmalloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "kalloc_malloc");
    void (*kfree)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "kalloc_free");
    int (*ktrim)(size_t) = (int (*)(size_t))dlsym(RTLD_DEFAULT, "kalloc_trim");
    if (kmalloc && kfree && ktrim) {
        static void *blocks[4096];
        for (int i = 0; i < 4096; i++)
            blocks[i] = kmalloc(40000);
        for (int i = 0; i < 4096; i += 2)
            kfree(blocks[i]);
        ktrim(0);
        for (int i = 1; i < 4096; i += 2)
            kfree(blocks[i]);
        ktrim(0);
    }
    printf("sum %lu\n", sum);
    return 0;
}
