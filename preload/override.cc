/*
 * preload/override.cc - the glibc malloc surface, exported from
 * libkalloc.so.  Only forwarding: each function calls the malloc layer
 * (src/malloc/malloc.h), whose fast paths are inlined right here so a
 * preloaded malloc costs no extra call.
 *
 * Every entry point glibc's own malloc has is replaced (including the
 * __libc_* aliases), so no pointer from one allocator ever reaches the other.
 *
 * Behind another allocator (LD_PRELOAD="other.so libkalloc.so", glibc's
 * libc_malloc_debug.so first; platform/dl_rebind.h) the entry points the
 * other may lack forward to what they are without kalloc: reallocarray and
 * the __libc_* aliases to glibc's, cfree and free_sized to the process's
 * free; a block of kalloc's still goes to kalloc.  The other entry points
 * stay kalloc's: a wrapper that reaches the next malloc with RTLD_NEXT (a
 * leak tracer) gets kalloc's for all of them.
 * The check is a load and a branch, outside malloc's and free's fast paths.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>

#include "malloc/malloc.h"
#include "malloc/stats.h"
#include "platform/dl_rebind.h"

using namespace kalloc;

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT void *malloc(size_t size);
EXPORT void free(void *p);

namespace {

/* Whether another allocator's malloc is the process's (dl_rebind.h). */
inline bool preceded() { return unlikely(dl_malloc_preceded((const void *)&malloc, (const void *)&free)); }

/* A block of kalloc's stays kalloc's whoever is first: a program that
 * dlopen()s libkalloc.so and calls its functions, or kalloc's memalign
 * under an allocator without one, hands kalloc its own blocks. */
inline bool foreign(void *p) { return preceded() && !(p && kowns(p)); }

/* glibc's definition of `name`, looked up once per entry point. */
template <typename F> F next(F &cache, const char *name)
{
    F f = __atomic_load_n(&cache, __ATOMIC_ACQUIRE);
    if (!f) {
        f = (F)dl_next_symbol(name);
        __atomic_store_n(&cache, f, __ATOMIC_RELEASE);
    }
    return f;
}

/* Each forwarded entry point's glibc definition (null until first used). */
constinit struct {
    void *(*reallocarray)(void *, size_t, size_t);
    void *(*libc_malloc)(size_t);
    void (*libc_free)(void *);
    void *(*libc_calloc)(size_t, size_t);
    void *(*libc_realloc)(void *, size_t);
    void *(*libc_memalign)(size_t, size_t);
    void *(*libc_valloc)(size_t);
    void *(*libc_pvalloc)(size_t);
    int (*posix_memalign)(void **, size_t, size_t);
} glibc;

} // namespace

EXPORT void *malloc(size_t size) { return kmalloc(size); }
EXPORT void free(void *p) { kfree(p); }
EXPORT void cfree(void *p)
{
    if (foreign(p))
        return dl_global_free(p);
    kfree(p);
}
EXPORT void *calloc(size_t n, size_t size) { return kcalloc(n, size); }
EXPORT void *realloc(void *p, size_t size) { return krealloc(p, size); }
EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    if (foreign(p)) {
        if (auto f = next(glibc.reallocarray, "reallocarray"))
            return f(p, n, size);   /* glibc's: overflow check, then the process's realloc */
    }
    return kreallocarray(p, n, size);
}
EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    return kposix_memalign(out, align, size);
}
EXPORT void *aligned_alloc(size_t align, size_t size) { return kaligned_alloc(align, size); }
EXPORT void *memalign(size_t align, size_t size) { return kaligned_alloc(align, size); }
EXPORT void *valloc(size_t size) { return kvalloc(size); }
EXPORT void *pvalloc(size_t size) { return kpvalloc(size); }
EXPORT size_t malloc_usable_size(void *p) { return ksize(p); }
EXPORT void free_sized(void *p, size_t size)
{
    if (foreign(p))
        return dl_global_free(p);
    kfree_sized(p, size);
}
EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    if (foreign(p))
        return dl_global_free(p);
    kfree_sized(p, size);
}
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
/* Behind another allocator they are glibc's own, as without kalloc (but
 * a block of kalloc's goes to kalloc: LIBC_FORWARD_BLOCK). */
#define LIBC_FORWARD_IF(cond, field, name, ...)                                 \
    do {                                                                         \
        if (cond)                                                                \
            if (auto f = next(glibc.field, name))                                \
                return f(__VA_ARGS__);                                           \
    } while (0)
#define LIBC_FORWARD(field, name, ...) LIBC_FORWARD_IF(preceded(), field, name, __VA_ARGS__)
#define LIBC_FORWARD_BLOCK(p, field, name, ...) LIBC_FORWARD_IF(foreign(p), field, name, __VA_ARGS__)
EXPORT void *__libc_malloc(size_t size)
{
    LIBC_FORWARD(libc_malloc, "__libc_malloc", size);
    return kmalloc(size);
}
EXPORT void __libc_free(void *p)
{
    LIBC_FORWARD_BLOCK(p, libc_free, "__libc_free", p);
    kfree(p);
}
EXPORT void *__libc_calloc(size_t n, size_t size)
{
    LIBC_FORWARD(libc_calloc, "__libc_calloc", n, size);
    return kcalloc(n, size);
}
EXPORT void *__libc_realloc(void *p, size_t size)
{
    LIBC_FORWARD_BLOCK(p, libc_realloc, "__libc_realloc", p, size);
    return krealloc(p, size);
}
EXPORT void *__libc_memalign(size_t align, size_t size)
{
    LIBC_FORWARD(libc_memalign, "__libc_memalign", align, size);
    return kaligned_alloc(align, size);
}
EXPORT void *__libc_valloc(size_t size)
{
    LIBC_FORWARD(libc_valloc, "__libc_valloc", size);
    return kvalloc(size);
}
EXPORT void *__libc_pvalloc(size_t size)
{
    LIBC_FORWARD(libc_pvalloc, "__libc_pvalloc", size);
    return kpvalloc(size);
}
EXPORT int __posix_memalign(void **out, size_t align, size_t size)
{
    LIBC_FORWARD(posix_memalign, "posix_memalign", out, align, size);
    return kposix_memalign(out, align, size);
}
