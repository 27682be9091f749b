/*
 * malloc/malloc.cc - the malloc layer's slow paths and the rest of the
 * glibc surface (calloc, realloc, aligned allocation, usable size, trim).
 *
 * Where a pointer comes from, in order of the checks (classify()):
 *   slab object   zone page with PG_slab; p at an object boundary
 *   large block   zone page that is the PG_large head; p its first byte
 *                 after the colour (malloc/large.h)
 *   huge block    the start of a live vmalloc area
 *   anything else is reported and the process aborts (as glibc does):
 *   "kalloc: free(): invalid pointer 0x...",
 *   but for glibc's own pointers once a library was loaded with
 *   RTLD_DEEPBIND (platform/dl_rebind.h): a pointer outside every kalloc
 *   slot then goes to glibc's free / realloc / malloc_usable_size.
 *
 * errno: failures set ENOMEM (EINVAL for posix_memalign's alignment is
 * returned, not set); free never changes errno.
 */
#include "malloc/malloc.h"

#include <stdint.h>
#include <string.h>

#include "malloc/large.h"
#include "mm/compaction.h"
#include "mm/mesh.h"
#include "mm/page_alloc.h"
#include "mm/percpu_sheaves.h"
#include "mm/slab.h"
#include "mm/slab_dynamic.h"
#include "platform/os.h"
#include "mm/vmalloc.h"
#include "mm/vmscan.h"
#include "platform/dl_rebind.h"
#include "platform/printk.h"

namespace kalloc {

namespace {

constexpr size_t MAX_REQUEST = PTRDIFF_MAX;

enum block_kind { BLOCK_INVALID, BLOCK_SLAB, BLOCK_LARGE, BLOCK_HUGE, BLOCK_FREED };

struct block_info {
    block_kind kind;   /* what p is: a slab object, a large or huge block, freed, or none */
    page *head;        /* slab or large: head page */
    unsigned idx;      /* slab: size class */
    size_t size;       /* usable size */
};

/* What p is (see the file comment).  Never faults. */
block_info classify(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    zone *z = page_zone_of(a);
    if (z) {
        page *pg = virt_to_page(z, a);
        if (pg->flags & PG_slab) {
            page *head = compound_head(pg);
            if (!(head->flags & PG_slab) || !(head->flags & PG_head))
                return {BLOCK_INVALID, nullptr, 0, 0};
            kmem_cache *c = page_slab_cache(head);
            uintptr_t off = a - (uintptr_t)page_address(head);
            if (off % c->size != 0 || off / c->size >= head->carved)
                return {BLOCK_INVALID, nullptr, 0, 0};
            if (slab_obj_parked(c, head, (unsigned)(off / c->size)))
                return {BLOCK_FREED, nullptr, 0, 0};    /* free, in a slab hole */
            return {BLOCK_SLAB, head, c->index, c->size};
        }
        if ((pg->flags & (PG_large | PG_head)) == (PG_large | PG_head)) {
            if (a != (uintptr_t)large_address(pg))
                return {BLOCK_INVALID, nullptr, 0, 0};
            return {BLOCK_LARGE, pg, 0, large_size(pg)};
        }
        if ((pg->flags & (PG_buddy | PG_pcp)) || pg->flags == 0)
            return {BLOCK_FREED, nullptr, 0, 0};
        return {BLOCK_INVALID, nullptr, 0, 0};
    }
    size_t hs = vmalloc_size(p);
    if (hs)
        return {BLOCK_HUGE, nullptr, 0, hs};
    return {BLOCK_INVALID, nullptr, 0, 0};
}

/* A pointer glibc's allocator handed out to a library loaded with
 * RTLD_DEEPBIND before kalloc rebound it (platform/dl_rebind.h): outside
 * every kalloc zone and vmalloc slot, and only once such a load happened. */
__cold bool glibc_pointer(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return __atomic_load_n(&dl_rebound, __ATOMIC_ACQUIRE) && !(a >> ADDRESS_BITS) &&
           !READ_ONCE(zone_table[a >> ZONE_SLOT_SHIFT]) && !is_vmalloc_addr(p);
}

__cold __noreturn void bad_pointer(const char *call, const void *p, block_kind kind)
{
    if (kind == BLOCK_FREED)
        panic("%s(): double free or invalid pointer %p (a free page)", call, p);
    panic("%s(): invalid pointer %p", call, p);
}

__cold void *enomem()
{
    errno = ENOMEM;
    return nullptr;
}

/* An object of class idx through the thread cache (or straight from the
 * slabs when the thread has none). */
void *alloc_class(unsigned idx)
{
    tcache *tc = tcache_get();
    if (tc) {
        tcache_bin *b = &tc->bins[idx];
        void **obj = (void **)b->head;
        if (obj) {
            b->head = get_freepointer_checked(obj);
            b->avail++;
            slab_obj_handed_out(obj);
            return obj;
        }
        obj = (void **)tcache_refill(tc, idx);
        if (obj)
            slab_obj_handed_out(obj);
        return obj;
    }
    void **obj = (void **)kmem_cache_alloc(&kmalloc_caches[idx]);
    if (obj)
        slab_obj_handed_out(obj);
    return obj;
}

/* Free a validated slab object. */
void free_slab_object(block_info &bi, void *p)
{
    void **obj = (void **)p;
    tcache *tc = tcache_get();
    if ((uint64_t)obj[1] == slab_free_key) {
        /* Probably a double free: look where a free object can be. */
        if ((tc && tcache_contains(tc, bi.idx, p)) || pcs_contains(bi.idx, p) ||
            kmem_cache_obj_is_free(&kmalloc_caches[bi.idx], bi.head, p))
            panic("free(): double free detected %p", p);
    }
    if (tc) {
        unsigned owner = zone_slab_owner_map(page_zone(bi.head))[page_to_pfn(bi.head)];
        if (owner != tc->owner_id && owner != SLAB_OWNER_SHARED) {
            /* another thread's slab; a large class's shared pool is every
             * thread's own (slab.h): its objects go to this bin, never to
             * a remote list and the barn, where a single-threaded
             * realloc-string parked 4-11 objects per class (+2.6 MiB). */
            tcache_remote_free(tc, bi.idx, p, owner);
            return;
        }
        tcache_bin *b = &tc->bins[bi.idx];
        if (b->avail) {
            set_freepointer(obj, b->head);
            ((uint64_t *)obj)[1] = slab_free_key;
            b->head = obj;
            b->avail--;
        } else {
            tcache_flush_push(tc, bi.idx, p);
        }
        return;
    }
    ((uint64_t *)obj)[1] = slab_free_key;
    kmem_cache_free(&kmalloc_caches[bi.idx], p);
}

void free_block(block_info &bi, void *p, const char *call)
{
    switch (bi.kind) {
    case BLOCK_SLAB:
        free_slab_object(bi, p);
        break;
    case BLOCK_LARGE:
        kfree_large(bi.head);
        break;
    case BLOCK_HUGE:
        vfree(p);
        break;
    default:
        if (bi.kind == BLOCK_INVALID && glibc_pointer(p)) {
            dl_next_free(p);
            return;
        }
        bad_pointer(call, p, bi.kind);
    }
}

} // namespace

__cold __noreturn void knew_oom_no_runtime(size_t size)
{
    panic("operator new: out of memory (%lu bytes) and no C++ runtime loaded to throw std::bad_alloc",
          (unsigned long)size);
}

/* A large block (size <= LARGE_MAX_SIZE): a cached huge area lent whole
 * when one fits, for requests above 2 MiB (the areas are above 4 MiB, and
 * a lend takes one at most VLEND_MAX_RATIO times the request: below 2 MiB
 * the slack given back would be most of an area a huge request may want
 * again), so memory the program freed is used before fresh zone pages
 * (vmalloc.h, vmalloc_cached); else whole pages from a zone. */
static void *kmalloc_large_or_cached(size_t size, size_t align, bool zero)
{
    if (size > LARGE_MAX_SIZE / 2 && align <= PAGE_SIZE) {
        void *p = vmalloc_cached(size);
        if (p) {
            if (zero)       /* what the last user never touched stays untouched */
                os_zero_range(p, align_up(size, PAGE_SIZE));
            return p;
        }
    }
    return kmalloc_large(size, align, zero);
}

void *__kmalloc_slow(size_t size)
{
    /* A background reclaimer to start, or cache decay hooks due: only here,
     * where no allocator lock is held, and only once kalloc_init is done. */
    if (unlikely(vmscan_malloc_slowpath_due()) && kalloc_init())
        vmscan_malloc_slowpath();
    if (size <= KMALLOC_MAX_SIZE) {
        /* Up to 1 KiB only a miss of the fast path gets here (an empty
         * bin: a thread-cache refill, one vote per refill). */
        unsigned idx = kmalloc_index(size);
        kmalloc_dynamic_note(size, idx);
        return alloc_class(idx) ?: enomem();
    }
    if (size > MAX_REQUEST)
        return enomem();
    kalloc_init();
    void *p = size <= LARGE_MAX_SIZE ? kmalloc_large_or_cached(size, KMALLOC_MIN_ALIGN, false)
                                     : vmalloc(size, PAGE_SIZE);
    return p ?: enomem();
}

void __kfree_slow(void *p)
{
    if (!p)
        return;
    int saved = errno;
    block_info bi = classify(p);
    free_block(bi, p, "free");
    errno = saved;
}

/* kfree's fast path found p to be an object of class idx with no double-
 * free key, but the slab is another cache's (a remote free) or the bin is
 * full. */
/* A full bin of this thread's own slab: flush half, then push. */
__slowpath static void kfree_flush_push(tcache *tc, unsigned idx, void *p)
{
    int saved = errno;
    tcache_flush_push(tc, idx, p);
    errno = saved;
}

void __kfree_object_slow(void *p, unsigned idx, unsigned owner)
{
    if (unlikely(tcache_state != TCACHE_ACTIVE))
        return __kfree_slow(p);
    tcache *tc = tcache_current;
    if (owner == SLAB_OWNER_SHARED) {
        /* A large class's shared pool: every thread's own (slab.h). */
        tcache_bin *b = &tc->bins[idx];
        if (likely(b->avail != 0)) {
            set_freepointer(p, b->head);
            ((uint64_t *)p)[1] = slab_free_key;
            b->head = p;
            b->avail--;
            return;
        }
        return kfree_flush_push(tc, idx, p);
    }
    if (owner != tc->owner_id)
        return tcache_remote_free(tc, idx, p, owner);   /* keeps errno itself */
    return kfree_flush_push(tc, idx, p);
}

void *kcalloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total) || total > MAX_REQUEST)
        return enomem();
    if (total <= KMALLOC_MAX_SIZE) {
        void *p = kmalloc(total);
        if (p)
            memset(p, 0, total);
        return p;
    }
    kalloc_init();
    if (total <= LARGE_MAX_SIZE) {
        void *p = kmalloc_large_or_cached(total, KMALLOC_MIN_ALIGN, true);
        return p ?: enomem();
    }
    bool zeroed = false;
    void *p = vmalloc(total, PAGE_SIZE, &zeroed);
    if (p && !zeroed)              /* reused from the huge-area cache: what the last */
        os_zero_range(p, (total + PAGE_SIZE - 1) & ~(size_t)(PAGE_SIZE - 1));   /* user never
                                                                 * touched stays untouched */
    return p ?: enomem();
}

/* realloc's slow path: whatever krealloc (malloc.h) cannot do in place. */
void *__krealloc_slow(void *p, size_t size)
{
    if (!p)
        return kmalloc(size);
    if (size == 0) {
        kfree(p);
        return nullptr;
    }
    if (size > MAX_REQUEST)
        return enomem();
    block_info bi = classify(p);
    bool pages = false;   /* the new block: whole pages (kmalloc_large), not a size class */
    switch (bi.kind) {
    case BLOCK_SLAB:
        /* Stay in place when the class still fits and is not twice too big. */
        if (size <= bi.size && (size > bi.size / 2 || bi.size <= 16))
            return p;
        /* Grown past REALLOC_PAGES_MIN: whole pages from now on (large.h). */
        pages = size > bi.size && size >= REALLOC_PAGES_MIN;
        break;
    case BLOCK_LARGE:
        if (size <= bi.size && size >= REALLOC_PAGES_MIN) {
            kmalloc_large_shrink(bi.head, size);
            return p;
        }
        /* Grow into the free pages after it, as glibc grows into the top. */
        if (size > bi.size && size <= LARGE_MAX_SIZE && kmalloc_large_grow(bi.head, size))
            return p;
        pages = size > bi.size;
        break;
    case BLOCK_HUGE:
        /* Above the large sizes, or grown, or shrunk by at most half (a
         * block lent a cached area, vmalloc_cached, or a huge one made
         * smaller): resized in place or moved by mremap, no copy. */
        if (size > LARGE_MAX_SIZE || size >= bi.size / 2) {
            int saved = errno;
            void *q = vrealloc(p, size);
            if (q)
                return q;
            errno = saved;
            /* The kernel refused mremap (a seccomp filter may answer it with
             * an error; no room to grow in place or to move): a shrink
             * leaves the block as it is, a growth copies, as glibc does. */
            if (size <= bi.size)
                return p;
        }
        break;
    default:
        if (bi.kind == BLOCK_INVALID && glibc_pointer(p)) {
            /* Stays glibc's: the library that made it may free it through
             * a slot kalloc did not rewrite (a data pointer copied early). */
            void *q = dl_next_realloc(p, size);
            return q ?: enomem();
        }
        bad_pointer("realloc", p, bi.kind);
    }
    void *q;
    if (pages && size <= LARGE_MAX_SIZE) {
        q = nullptr;
        if (size >= REALLOC_HUGE_MIN) {
            int saved = errno;      /* no room for a mapping: zone pages will do */
            q = vmalloc(size, PAGE_SIZE);
            if (!q)
                errno = saved;
        }
        if (!q)
            q = kmalloc_large_or_cached(size, PAGE_SIZE, false);
        if (!q)
            return enomem();
    } else {
        q = kmalloc(size);
        if (!q)
            return nullptr;
    }
    memcpy(q, p, size < bi.size ? size : bi.size);
    int saved = errno;
    free_block(bi, p, "realloc");
    errno = saved;
    return q;
}

void *kreallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return enomem();
    return krealloc(p, total);
}

void *kmalloc_aligned(size_t align, size_t size)
{
    if (align <= KMALLOC_MIN_ALIGN)
        return kmalloc(size);
    if (size > MAX_REQUEST || align > MAX_REQUEST)
        return enomem();
    /* A size class that is a multiple of the alignment: every object of it
     * is aligned, since slabs start on page boundaries. */
    if (align <= PAGE_SIZE) {
        size_t want = align_up(size ? size : 1, align);
        if (want <= KMALLOC_MAX_SIZE) {
            for (unsigned idx = kmalloc_index_static(want); idx < NR_KMALLOC_STATIC; idx++)
                if (kmalloc_size(idx) % align == 0)
                    return alloc_class(idx) ?: enomem();
        }
    }
    kalloc_init();
    size_t need = size ? size : 1;
    void *p;
    if (need <= LARGE_MAX_SIZE && align <= LARGE_MAX_SIZE)
        p = kmalloc_large(need, align, false);
    else
        p = vmalloc(size ? size : 1, align);
    return p ?: enomem();
}

int kposix_memalign(void **out, size_t align, size_t size)
{
    if (align < sizeof(void *) || !is_pow2(align))
        return EINVAL;
    int saved = errno;
    void *p = kmalloc_aligned(align, size);
    errno = saved;
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *kaligned_alloc(size_t align, size_t size)
{
    if (align == 0)
        align = 1;
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;         /* as glibc: no power of two above it */
        return nullptr;
    }
    if (!is_pow2(align)) {
        if (align > (MAX_REQUEST >> 1) + 1)
            return enomem();
        align = 1ul << ceil_log2(align);
    }
    return kmalloc_aligned(align, size);
}

void *kvalloc(size_t size) { return kmalloc_aligned(PAGE_SIZE, size); }

void *kpvalloc(size_t size)
{
    size_t rounded = align_up(size ? size : 1, PAGE_SIZE);
    if (rounded < size)
        return enomem();
    return kmalloc_aligned(PAGE_SIZE, rounded);
}

/* malloc_usable_size's slow path: nullptr, huge blocks, glibc's blocks,
 * apparently free objects, bad pointers. */
size_t __ksize_slow(const void *p)
{
    if (!p)
        return 0;
    block_info bi = classify(p);
    if (bi.kind == BLOCK_INVALID && glibc_pointer(p))
        return dl_next_usable_size((void *)p);
    if (bi.kind == BLOCK_INVALID || bi.kind == BLOCK_FREED)
        bad_pointer("malloc_usable_size", p, bi.kind);
    return bi.size;
}

void kfree_sized(void *p, size_t size)
{
    (void)size;    /* the size is known from the pointer; checking it costs a lookup */
    kfree(p);
}

int ktrim(size_t pad)
{
    (void)pad;
    os_seccomp_scope one_read;      /* the filter check, once for the whole trim */
    tcache *tc = tcache_state == TCACHE_ACTIVE ? tcache_current : nullptr;
    if (tc)
        tcache_flush_all(tc);
    pcs_flush_all();
    kmem_cache_shrink_all();
    spin_lock(&compact_lock);
    bool released = mesh_all() > 0;                 /* pages (KALLOC_MESH) */
    spin_unlock(&compact_lock);
    released |= kmem_cache_punch_holes_all(false) > 0;  /* pages (slab holes) */
    released |= vmalloc_drain_cache() > 0;         /* bytes */
    released |= zone_shrink_all() > 0;              /* pages */
    released |= zone_reclaim_all(0) > 0;            /* pages */
    return released ? 1 : 0;
}

bool kowns(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return page_zone_of(a) != nullptr || is_vmalloc_addr(p);
}

} // namespace kalloc
