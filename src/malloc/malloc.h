/*
 * malloc/malloc.h - the malloc layer: fast paths (inline) and the entry
 * points every public function forwards to.
 *
 * The fast paths serve a small request from / to the calling thread's cache
 * with no lock, no atomic read-modify-write and no call; anything else
 * (empty or full bin, large or huge sizes, invalid pointers, first use in a
 * thread) takes one unlikely branch to a non-inlined slow path.
 *
 * Fast-path budget (x86-64, g++ -O2; measured with callgrind, see
 * bench/README.md):
 *   kmalloc(n <= 1024):  size check, class lookup, TLS cache load, bin pop,
 *                        prefetch of the next object, room update, link
 *                        and key clear                      19 instructions
 *   kfree(p) of a slab object: zone_table lookup, slab map load, interior-
 *                        pointer check (multiply), double-free key check,
 *                        owner check, bin push     ~ 40 instructions
 *   (a remote free or a full bin of a valid object goes to
 *   __kfree_object_slow, which skips the pointer classification)
 *   krealloc(p, n) in place (the class still fits and is not twice too big,
 *                        or a large block keeps its page count) and
 *   ksize(p): the free fast path's checks, then the class size; a
 *                        large block: its head page's flags, colour and
 *                        size               realloc 38 (64 B), 53 (large);
 *                                           ksize 33, 46 (the colour: +4)
 * The interior-pointer and double-free checks are what glibc does not pay
 * for; they keep a bad free from silently corrupting other blocks.
 * libkalloc-hardened.so (encoded free-list links, mm/slab_common.h):
 *   kmalloc +5 (decode: bswap and two xors; the alignment check) = 24,
 *   kfree +3 (encode) = 44; the other paths unchanged.
 */
#pragma once

#include <errno.h>

#include "malloc/large.h"
#include "malloc/tcache.h"
#include "mm/mmzone.h"
#include "mm/slab_common.h"

namespace kalloc {

__slowpath void *__kmalloc_slow(size_t size);
__slowpath void __kfree_slow(void *p);
__slowpath void __kfree_object_slow(void *p, unsigned idx, unsigned owner);

/* malloc: a block of at least `size` bytes, 16-byte aligned. */
static __fastpath void *kmalloc(size_t size)
{
    if (likely(size <= KMALLOC_SMALL_MAX)) {
        unsigned off = __atomic_load_n(&kmalloc_bin_offset_small[(size + 15) >> 4],
                                       __ATOMIC_RELAXED);   /* dynamic classes rewrite it */
        tcache_bin *b = (tcache_bin *)((char *)tcache_current->bins + off);
        void **obj = (void **)b->head;
        if (likely(obj != nullptr)) {
            void *next = get_freepointer_checked(obj);
            b->head = next;
            /* The next pop reads the next object's link: start its cache
             * miss now (objects freed by another thread or long ago are
             * cold).  One instruction (19 in all; prefetch ignores null):
             * user CPU, pairs of interleaved runs, medians of the pairs'
             * ratios: xmalloc 0.92 (7 of 8 faster), alloc-test 0.94 (7 of
             * 8), fragmentation 0.90 (6 of 6); larson, many-threads,
             * frag-churn, containers, realloc-string, python3 within
             * their spread. */
            __builtin_prefetch(next, 1, 3);
            b->avail++;
            slab_obj_handed_out(obj);  /* clear the link and the double-free key */
            return obj;
        }
    }
    return __kmalloc_slow(size);
}

/* The lookup the pointer fast paths share (free, realloc, usable size):
 * p's zone slot (*z nullptr outside every slot, the other outputs then
 * unset), its page in the slot and that page's slab class byte, and whether
 * p is an object's start: inside the slab's objects, at a multiple of the
 * size (Lemire's divisibility test; class 0, "not a slab", never passes). */
static __fastpath bool slab_object_start(const void *p, zone **z, unsigned long *pfn, unsigned *idx)
{
    uintptr_t a = (uintptr_t)p;
    unsigned long slot = a >> ZONE_SLOT_SHIFT;
    if (unlikely(slot >= ARRAY_SIZE(zone_table))) {
        *z = nullptr;
        return false;
    }
    *z = (zone *)zone_table[slot];
    if (unlikely(*z == nullptr))
        return false;
    *pfn = (uint32_t)a >> PAGE_SHIFT;     /* slots are 4 GiB */
    *idx = zone_slab_class_map(*z)[*pfn];
    const kmalloc_fast_class *k = &kmalloc_fast[*idx];
    uint32_t off = (uint32_t)a & k->slab_mask;
    return off < k->limit && (uint64_t)off * k->divc < k->divc;
}

/* free: p from kmalloc & co., or nullptr. */
static __fastpath void kfree(void *p)
{
    uint64_t **obj = (uint64_t **)p;
    zone *z;
    unsigned long pfn;
    unsigned idx;
    /* An object's start with no key (not, apparently, already free), of a
     * slab that is this thread's (else a remote free, slow path). */
    tcache *tc = tcache_current;
    if (likely(slab_object_start(p, &z, &pfn, &idx) && (uint64_t)obj[1] != slab_free_key)) {
        tcache_bin *b = &tc->bins[idx];
        unsigned owner = zone_slab_owner_map(z)[pfn];
        if (likely(owner == tc->owner_id && b->avail != 0)) {
            set_freepointer(obj, b->head);
            obj[1] = (uint64_t *)slab_free_key;
            b->head = obj;
            b->avail--;
            return;
        }
        /* A valid object: a remote free or a full bin. */
        return __kfree_object_slow(p, idx, owner);
    }
    __kfree_slow(p);
}

__slowpath void *__krealloc_slow(void *p, size_t size);
__slowpath size_t __ksize_slow(const void *p);

/* The usable size of p when p is the start of a slab object that passes the
 * free fast path's checks (and is not, apparently, free), or the head of a
 * large block (*large set); 0 for anything else (nullptr, huge blocks, bad
 * pointers), which the slow paths classify.  Never faults: a zone's page
 * descriptors are mapped up to spanned_pages. */
static __fastpath size_t kusable_fast(const void *p, bool *large)
{
    zone *z;
    unsigned long pfn;
    unsigned idx;
    if (likely(slab_object_start(p, &z, &pfn, &idx) &&
               ((const uint64_t *)p)[1] != slab_free_key)) {
        *large = false;
        return kmalloc_size(idx);
    }
    if (z && idx == 0 && zone_table_type(z) == ZONE_NORMAL && pfn < READ_ONCE(z->spanned_pages)) {
        const page *pg = z->mem_map + pfn;
        if ((pg->flags & (PG_large | PG_head | PG_slab)) == (PG_large | PG_head) &&
            ((uintptr_t)p & (PAGE_SIZE - 1)) == pg->colour) {
            *large = true;
            return large_size(pg);
        }
    }
    return 0;
}

/* realloc.  In place, with no lock and no call, when nothing has to move or
 * be given back: a slab object whose class still fits and is not twice too
 * big (any size up to 16 B in the 16-byte class), a large block that keeps
 * its page count (and stays REALLOC_PAGES_MIN or more: large.h).  The rest
 * (moves, shrinking pages, growth into free pages, size 0, nullptr) is
 * __krealloc_slow's.  Through classify() an in-place realloc took 116
 * instructions (64 B) and 103 (a large block), malloc_usable_size 66 and 50;
 * now 38, 49, 33 and 42 (bench/fastpath.sh); realloc-string, whose appends
 * stay in place 3 times in 4: 1.923 -> 1.839 G instructions (--scale=0.2;
 * tcmalloc 1.877 G). */
static __fastpath void *krealloc(void *p, size_t size)
{
    bool large;
    size_t have = kusable_fast(p, &large);
    if (likely(have != 0) && size - 1 < have &&
        (large ? size > have - PAGE_SIZE && size >= REALLOC_PAGES_MIN
               : 2 * size > have || have <= 16))
        return p;
    return __krealloc_slow(p, size);
}

/* malloc_usable_size: 0 for nullptr; a bad pointer is reported. */
static __fastpath size_t ksize(const void *p)
{
    bool large;
    size_t have = kusable_fast(p, &large);
    return likely(have != 0) ? have : __ksize_slow(p);
}

/* The rest of the surface (malloc.cc). */
void *kcalloc(size_t n, size_t size);
void *kreallocarray(void *p, size_t n, size_t size);
void *kmalloc_aligned(size_t align, size_t size);     /* align: power of two */
int kposix_memalign(void **out, size_t align, size_t size);
void *kaligned_alloc(size_t align, size_t size);      /* rounds align up to a power of two */
void *kvalloc(size_t size);
void *kpvalloc(size_t size);
void kfree_sized(void *p, size_t size);
int ktrim(size_t pad);
bool kowns(const void *p);
/* operator new failed in a process without the C++ runtime to throw
 * std::bad_alloc (preload/new_delete.cc): report and abort. */
__cold __noreturn void knew_oom_no_runtime(size_t size);

} // namespace kalloc
