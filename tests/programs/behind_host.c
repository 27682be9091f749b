/*
 * behind_host.c - a program run with kalloc preloaded *behind* another
 * allocator (behind.sh): LD_PRELOAD="other.so libkalloc.so".  The other's
 * malloc is the process's; kalloc's exports serve what the other lacks
 * (reallocarray under jemalloc, __libc_malloc under glibc's
 * libc_malloc_debug).  Every block must come back to the allocator that made
 * it, as it does without kalloc.
 *
 * stdout is deterministic.  `owner` (argv[1]) says who must serve
 * reallocarray: "kalloc" (kalloc first or alone: kalloc's statistics grow by
 * the block) or "other" (kalloc behind another: they do not); "dlopen PATH"
 * loads libkalloc.so with dlopen and calls its functions on its own blocks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_calloc(size_t, size_t);

/* kalloc's in-use bytes, or 0 when no kalloc is loaded. */
static uint64_t kalloc_in_use(void)
{
    struct { uint64_t mapped, resident, in_use, pad[32]; } st;
    int (*get)(void *) = (int (*)(void *))dlsym(RTLD_DEFAULT, "kalloc_stats_get");
    if (!get || get(&st) != 0)
        return 0;
    return st.in_use;
}

/* libkalloc.so loaded with dlopen (not the process's allocator) and its own
 * functions called on its own blocks: they must stay kalloc's. */
static int dlopened(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return 20;
    }
    void *(*k_malloc)(size_t) = (void *(*)(size_t))dlsym(h, "malloc");
    void (*k_free)(void *) = (void (*)(void *))dlsym(h, "free");
    void *(*k_reallocarray)(void *, size_t, size_t) =
        (void *(*)(void *, size_t, size_t))dlsym(h, "reallocarray");
    void *(*k_libc_realloc)(void *, size_t) = (void *(*)(void *, size_t))dlsym(h, "__libc_realloc");
    void (*k_libc_free)(void *) = (void (*)(void *))dlsym(h, "__libc_free");
    void (*k_cfree)(void *) = (void (*)(void *))dlsym(h, "cfree");
    if (!k_malloc || !k_free || !k_reallocarray || !k_libc_realloc || !k_libc_free || !k_cfree)
        return 21;
    for (int i = 0; i < 1000; i++) {
        char *p = k_malloc(100 + (size_t)i);
        p[0] = 'k';
        p = k_reallocarray(p, 10, 100 + (size_t)i);
        p = k_libc_realloc(p, 5000 + (size_t)i);
        if (p[0] != 'k')
            return 22;
        k_libc_free(p);
        k_cfree(k_malloc(70));
        k_free(k_reallocarray(NULL, 5, 5));
    }
    printf("dlopen ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *owner = argc > 1 ? argv[1] : "any";
    if (strcmp(owner, "dlopen") == 0)
        return dlopened(argc > 2 ? argv[2] : "libkalloc.so");
    unsigned long sum = 0;

    /* reallocarray, then the process's realloc and free on its block. */
    uint64_t before = kalloc_in_use();
    char *p = reallocarray(NULL, 1024, 1024);
    if (!p)
        return 10;
    memset(p, 'a', 1024 * 1024);
    uint64_t after = kalloc_in_use();
    int kalloc_served = after >= before + 1024 * 1024;
    if (strcmp(owner, "kalloc") == 0 && !kalloc_served) {
        fprintf(stderr, "reallocarray was not kalloc's\n");
        return 11;
    }
    if (strcmp(owner, "other") == 0 && kalloc_served) {
        fprintf(stderr, "reallocarray was kalloc's behind another allocator\n");
        return 12;
    }
    p = realloc(p, 2 * 1024 * 1024);
    if (!p || p[1024 * 1024 - 1] != 'a')
        return 13;
    free(p);

    /* Small blocks: reallocarray grown by the process's realloc, many times. */
    for (int i = 0; i < 2000; i++) {
        char *q = reallocarray(NULL, (size_t)(i % 97) + 1, 8);
        if (!q)
            return 14;
        q[0] = (char)i;
        q = realloc(q, (size_t)(i % 300) + 16);
        sum += (unsigned char)q[0];
        char *r = malloc(40);
        r = reallocarray(r, 10, 16);
        r[159] = 1;
        free(r);
        free(q);
    }

    /* glibc's internal names, as old programs and debugging wrappers call them. */
    for (int i = 0; i < 1000; i++) {
        char *a = __libc_malloc(64 + (size_t)i);
        char *b = __libc_calloc(4, 32);
        a[0] = 'x';
        a = __libc_realloc(a, 4096 + (size_t)i);
        sum += (unsigned char)a[0] + (unsigned char)b[100];
        __libc_free(a);
        __libc_free(b);
    }

    /* stdio and strings the C library allocates. */
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fmemopen("one\ntwo\nthree\n", 14, "r");
    while (getline(&line, &cap, f) > 0)
        sum += strlen(line);
    fclose(f);
    free(line);
    char *s = strdup("behind another allocator");
    sum += strlen(s);
    free(s);
    printf("sum %lu\nok\n", sum);
    return 0;
}
