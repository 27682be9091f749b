/*
 * api_demo.c - using kalloc through its own API (kalloc/kalloc.h).
 *
 * Two ways to link it:
 *   - with the static library (CMake: kalloc::kalloc_static), which exports
 *     only the kalloc_ functions: the program's malloc stays glibc's, and
 *     kalloc_malloc & co. are a second, separate allocator;
 *   - with the shared library (CMake: kalloc::kalloc, pkg-config kalloc),
 *     which also replaces malloc itself.
 *
 *     cc api_demo.c $(pkg-config --cflags --libs kalloc) -o api_demo
 *
 * Exits 0 when every check holds; the last line says whether malloc() is
 * served by kalloc in this build.
 */
#include <kalloc/kalloc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "api_demo: check failed: %s (line %d)\n",     \
                    #cond, __LINE__);                                     \
            failures++;                                                   \
        }                                                                 \
    } while (0)

int main(void)
{
    printf("kalloc version %s\n", kalloc_version());

    /* malloc / realloc: the content survives the move. */
    char *s = kalloc_malloc(32);
    CHECK(s != NULL);
    if (!s) return 1;
    strcpy(s, "hello from kalloc");
    CHECK(((uintptr_t)s % 16) == 0);
    CHECK(kalloc_usable_size(s) >= 32);
    s = kalloc_realloc(s, 100000);
    CHECK(s != NULL);
    if (!s) return 1;
    CHECK(strcmp(s, "hello from kalloc") == 0);
    CHECK(kalloc_usable_size(s) >= 100000);
    printf("realloc'ed string: \"%s\", usable size >= 100000: %s\n", s,
           kalloc_usable_size(s) >= 100000 ? "yes" : "no");

    /* aligned_alloc: page and larger alignments. */
    void *blocks[4];
    size_t aligns[4] = {64, 4096, 65536, 2u << 20};
    for (int i = 0; i < 4; i++) {
        blocks[i] = kalloc_aligned_alloc(aligns[i], 3 * aligns[i]);
        CHECK(blocks[i] != NULL);
        CHECK(((uintptr_t)blocks[i] % aligns[i]) == 0);
        CHECK(kalloc_usable_size(blocks[i]) >= 3 * aligns[i]);
        if (blocks[i]) memset(blocks[i], 0xab, 3 * aligns[i]);
        printf("aligned_alloc(%zu): aligned %s\n", aligns[i],
               blocks[i] && ((uintptr_t)blocks[i] % aligns[i]) == 0 ? "yes" : "no");
    }

    /* Many small objects, so the statistics have something to show. */
    enum { N = 10000 };
    void **objs = kalloc_calloc(N, sizeof *objs);
    CHECK(objs != NULL);
    if (!objs) return 1;
    for (int i = 0; i < N; i++) {
        objs[i] = kalloc_malloc((size_t)(16 + i % 512));
        CHECK(objs[i] != NULL);
    }

    /* Ownership: kalloc knows its own memory, and nothing else. */
    int on_stack = 0;
    CHECK(kalloc_owns(s) == 1);
    CHECK(kalloc_owns(objs[0]) == 1);
    CHECK(kalloc_owns(&on_stack) == 0);

    struct kalloc_stats st;
    CHECK(kalloc_stats_get(&st) == 0);
    CHECK(st.in_use >= (uint64_t)N * 16);
    CHECK(st.nr_slab_refills > 0);
    printf("stats while holding %d objects: in_use %s 160 KB, slab refills %s 0\n", N,
           st.in_use >= 160000 ? ">=" : "<", st.nr_slab_refills > 0 ? ">" : "==");

    for (int i = 0; i < N; i++) kalloc_free(objs[i]);
    kalloc_free(objs);
    for (int i = 0; i < 4; i++) kalloc_free(blocks[i]);
    kalloc_free(s);
    kalloc_free(NULL); /* does nothing, like free(NULL) */

    struct kalloc_stats after;
    CHECK(kalloc_stats_get(&after) == 0);
    CHECK(after.in_use < st.in_use);
    printf("stats after freeing: in_use went down: %s\n", after.in_use < st.in_use ? "yes" : "no");

    /* Is malloc() itself kalloc in this build? (kalloc_owns never faults,
     * whatever the pointer.) */
    void *m = malloc(64);
    int malloc_is_kalloc = kalloc_owns(m);
    free(m);
    printf("malloc() served by kalloc: %s\n", malloc_is_kalloc ? "yes" : "no");

    if (failures) {
        fprintf(stderr, "api_demo: %d check(s) failed\n", failures);
        return 1;
    }
    printf("api_demo: ok\n");
    return 0;
}
