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
#include "platform/options.h"

using namespace kalloc;

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT void *malloc(size_t size);
EXPORT void free(void *p);
EXPORT void *calloc(size_t n, size_t size);
EXPORT void *realloc(void *p, size_t size);
EXPORT void *memalign(size_t align, size_t size);
EXPORT void *valloc(size_t size);
EXPORT int posix_memalign(void **out, size_t align, size_t size);

namespace {

/* Whether another allocator's malloc is the process's (dl_rebind.h). */
inline bool preceded() { return unlikely(dl_malloc_preceded((const void *)&malloc, (const void *)&free)); }

/* A block of kalloc's stays kalloc's whoever is first: a program that
 * dlopen()s libkalloc.so and calls its functions, or kalloc's memalign
 * under an allocator without one, hands kalloc its own blocks. */
inline bool foreign(void *p) { return preceded() && !(p && kowns(p)); }

/* Under a valgrind tool (memcheck, helgrind, massif...) the malloc family of
 * every library is redirected to the tool's by code address: malloc, free,
 * calloc, realloc, memalign, posix_memalign, aligned_alloc, valloc, cfree,
 * malloc_usable_size and the C++ operators (valgrind 3.19), but not the entry
 * points it does not know, which then met the tool's blocks: reallocarray of
 * a malloc'd block aborted ("kalloc: realloc(): invalid pointer": GNU ls and
 * sort call it), and a block from reallocarray or pvalloc was an "Invalid
 * free" to memcheck.  Under valgrind those call the ones it redirects,
 * through their addresses (tool_call: never inlined).  Tools that leave
 * malloc alone (callgrind, cachegrind) see kalloc's own paths. */
inline bool under_tool() { return unlikely(options_valgrind_replaces_malloc()); }
template <typename F> F *tool_call(F *f)
{
    F *volatile g = f;
    return g;
}

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
    if (under_tool()) {
        size_t bytes;
        if (__builtin_mul_overflow(n, size, &bytes)) {
            errno = ENOMEM;
            return nullptr;
        }
        return tool_call(&realloc)(p, bytes);
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
/* pvalloc under a valgrind tool: valloc of whole pages (one for 0), as glibc's. */
static void *tool_pvalloc(size_t size)
{
    if (size > SIZE_MAX - (PAGE_SIZE - 1)) {
        errno = ENOMEM;
        return nullptr;
    }
    return tool_call(&valloc)(size ? align_up(size, PAGE_SIZE) : PAGE_SIZE);
}
EXPORT void *pvalloc(size_t size) { return under_tool() ? tool_pvalloc(size) : kpvalloc(size); }
EXPORT size_t malloc_usable_size(void *p) { return ksize(p); }
EXPORT void free_sized(void *p, size_t size)
{
    if (foreign(p))
        return dl_global_free(p);
    if (under_tool())
        return tool_call(&free)(p);
    kfree_sized(p, size);
}
EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    if (foreign(p))
        return dl_global_free(p);
    if (under_tool())
        return tool_call(&free)(p);
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
    if (under_tool())
        return tool_call(&malloc)(size);
    return kmalloc(size);
}
EXPORT void __libc_free(void *p)
{
    LIBC_FORWARD_BLOCK(p, libc_free, "__libc_free", p);
    if (under_tool())
        return tool_call(&free)(p);
    kfree(p);
}
EXPORT void *__libc_calloc(size_t n, size_t size)
{
    LIBC_FORWARD(libc_calloc, "__libc_calloc", n, size);
    if (under_tool())
        return tool_call(&calloc)(n, size);
    return kcalloc(n, size);
}
EXPORT void *__libc_realloc(void *p, size_t size)
{
    LIBC_FORWARD_BLOCK(p, libc_realloc, "__libc_realloc", p, size);
    if (under_tool())
        return tool_call(&realloc)(p, size);
    return krealloc(p, size);
}
EXPORT void *__libc_memalign(size_t align, size_t size)
{
    LIBC_FORWARD(libc_memalign, "__libc_memalign", align, size);
    if (under_tool())
        return tool_call(&memalign)(align, size);
    return kaligned_alloc(align, size);
}
EXPORT void *__libc_valloc(size_t size)
{
    LIBC_FORWARD(libc_valloc, "__libc_valloc", size);
    if (under_tool())
        return tool_call(&valloc)(size);
    return kvalloc(size);
}
EXPORT void *__libc_pvalloc(size_t size)
{
    LIBC_FORWARD(libc_pvalloc, "__libc_pvalloc", size);
    if (under_tool())
        return tool_pvalloc(size);
    return kpvalloc(size);
}
EXPORT int __posix_memalign(void **out, size_t align, size_t size)
{
    LIBC_FORWARD(posix_memalign, "posix_memalign", out, align, size);
    if (under_tool())
        return tool_call(&posix_memalign)(out, align, size);
    return kposix_memalign(out, align, size);
}
