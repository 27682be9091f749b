/*
 * preload/override.cc - the glibc malloc surface, exported from
 * libkalloc.so.  Only forwarding: each function calls the malloc layer
 * (src/malloc/malloc.h), whose fast paths are inlined right here so a
 * preloaded malloc costs no extra call.
 *
 * Every entry point glibc's own malloc has is replaced (including the
 * __libc_* aliases), so no pointer from one allocator ever reaches the other.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>

#include "malloc/malloc.h"
#include "malloc/stats.h"

using namespace kalloc;

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT void *malloc(size_t size) { return kmalloc(size); }
EXPORT void free(void *p) { kfree(p); }
EXPORT void cfree(void *p) { kfree(p); }
EXPORT void *calloc(size_t n, size_t size) { return kcalloc(n, size); }
EXPORT void *realloc(void *p, size_t size) { return krealloc(p, size); }
EXPORT void *reallocarray(void *p, size_t n, size_t size) { return kreallocarray(p, n, size); }
EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    return kposix_memalign(out, align, size);
}
EXPORT void *aligned_alloc(size_t align, size_t size) { return kaligned_alloc(align, size); }
EXPORT void *memalign(size_t align, size_t size) { return kaligned_alloc(align, size); }
EXPORT void *valloc(size_t size) { return kvalloc(size); }
EXPORT void *pvalloc(size_t size) { return kpvalloc(size); }
EXPORT size_t malloc_usable_size(void *p) { return ksize(p); }
EXPORT void free_sized(void *p, size_t size) { kfree_sized(p, size); }
EXPORT void free_aligned_sized(void *p, size_t align, size_t size) { kfree_sized(p, size); }
EXPORT int malloc_trim(size_t pad) { return ktrim(pad); }
EXPORT int mallopt(int param, int value) { return 1; }   /* accepted, as glibc 2.36 does */
EXPORT struct mallinfo2 mallinfo2(void) { return stats_mallinfo2(); }
EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = stats_mallinfo2();
    struct mallinfo m = {};
    m.arena = (int)m2.arena;
    m.ordblks = (int)m2.ordblks;
    m.hblks = (int)m2.hblks;
    m.hblkhd = (int)m2.hblkhd;
    m.uordblks = (int)m2.uordblks;
    m.fordblks = (int)m2.fordblks;
    m.keepcost = (int)m2.keepcost;
    return m;
}
EXPORT void malloc_stats(void) { stats_print(2); }
EXPORT int malloc_info(int options, FILE *fp) { return stats_malloc_info(options, fp); }

/* glibc's internal names, used by some programs and by glibc's own helpers. */
EXPORT void *__libc_malloc(size_t size) { return kmalloc(size); }
EXPORT void __libc_free(void *p) { kfree(p); }
EXPORT void *__libc_calloc(size_t n, size_t size) { return kcalloc(n, size); }
EXPORT void *__libc_realloc(void *p, size_t size) { return krealloc(p, size); }
EXPORT void *__libc_memalign(size_t align, size_t size) { return kaligned_alloc(align, size); }
EXPORT void *__libc_valloc(size_t size) { return kvalloc(size); }
EXPORT void *__libc_pvalloc(size_t size) { return kpvalloc(size); }
EXPORT int __posix_memalign(void **out, size_t align, size_t size)
{
    return kposix_memalign(out, align, size);
}
