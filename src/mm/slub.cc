/*
 * mm/slub.cc - slab caches (mirrors mm/slub.c, without per-CPU slabs: the
 * per-thread object caches of the malloc layer play that part).
 *
 * Invariants, per cache, under c->lock:
 *   - a slab is on partial[owner], or full (slab_list SLAB_FULL, on no
 *     list), or is the spare empty_slab; a slab on partial[o] has owner o in the slab owner map
 *     (o == 0: nobody), and o is 0 or a live owner;
 *   - for every slab: inuse + (objects on freelist) + (objects - carved)
 *     + parked == objects (parked: slab_parked on the second page when
 *     nr_holes != 0, else 0);
 *   - a slab with a non-empty freelist has its last object at byte offset
 *     freelist_tail (whose link is nullptr);
 *   - a full slab has inuse == objects; on partial 0 < inuse < objects
 *     (or inuse < objects while it is being filled);
 *   - active_objects == sum of inuse;
 *   - the zone's class map has the cache's index on a slab's first page
 *     (with SLAB_CLASS_HOLE while that page is a hole) and on the pages
 *     carving reached (up to the page of object carved-1's start) that are
 *     not holes, 0 on its other pages; every never-carved
 *     object that starts on such a tagged page has the free-object key
 *     (slab_common.h) in its second word (slab_key_reached), so a free of an
 *     object never handed out is caught (tests/unit/slab_check.h).
 *
 * Slab holes.  Objects never move, but a page of a slab whose every
 * overlapping object is free belongs to nobody: it is given back with
 * madvise(MADV_DONTNEED) while the slab stays in use (a hole).  Its free
 * objects (those overlapping any hole page, an object may straddle pages)
 * are taken off the freelist and parked: counted free for the slab
 * (slab_parked), so a slab whose other objects all come back is empty and
 * freed as before.  When the slab needs objects its freelist no longer has,
 * every parked object goes back on the freelist (slab_unpark_locked: the
 * pages fault in again as zero pages when written) before any object is
 * carved, so while nr_holes != 0:
 *   - every object overlapping a hole page is parked (index < carved) or
 *     not carved yet: none is in use, on the freelist, in a thread cache,
 *     in a remote-free list or in the barn (those are all counted in
 *     inuse: only the freelist and the uncarved tail are free for the slab);
 *   - a hole page has not been written since its madvise: it reads zero.
 * An empty slab with holes mostly made of holes is given back whole
 * (PG_reported, straight to the zone); otherwise it goes back resident as
 * usual (its holes read zero, which a resident block need not).
 * Holes are only looked for in slabs of order 1..SLAB_HOLES_MAX_ORDER
 * (the mask has 32 bits), not in hugetlb memory (no 4 KiB madvise there):
 *   - by the frees of a cache being freed (cache_freeing: draining, i.e.
 *     slabs emptying with no refill in between, or SLAB_HOLES_FLUSH_STREAK
 *     bulk frees with no refill): a slab half free or less that lost a
 *     page's worth of objects since it was last looked at, and the spare
 *     empty slab.  The program may make no further call, so the frees
 *     themselves give the memory back.  Unless the class's last holes by
 *     the frees were refaulted within KALLOC_DECAY_MS (the class is cycled
 *     through, e.g. by short-lived threads): then its frees punch none for
 *     KALLOC_DECAY_MS << n (n deferrals in a row, cache_holes_deferred),
 *     and the timed pass punches it once it finds the class idle;
 *   - by the timed pass, in caches with frees and no refill since the
 *     previous pass (kmem_cache_punch_holes_all(true));
 *   - by malloc_trim / kalloc_compact, in every partial slab.
 * A cache that churns (larson, frag-churn's mixed phases) refills between
 * its frees, is not being freed, and does not pay a madvise and a refault
 * for a page it would use again at once.
 * The holes' batch.  A hole's pages are not given back at once: their
 * ranges are queued, process-wide, and go back SLAB_HOLE_BATCH at a time
 * with one process_madvise call (os_decommit_many) once the cache lock of
 * the frees that filled the batch is let go, at the end of every
 * reclaim pass (vmscan_run), and at the end of kmem_cache_punch_holes_all
 * (timed passes, malloc_trim, kalloc_compact): slab_holes_flush.  A
 * madvise each cost a system call and a TLB flush per range (in a
 * multi-threaded process an inter-processor interrupt to every CPU running
 * it).  Until its batch goes back a queued page is still resident, and
 * whatever ends a hole first takes the slab's ranges out of the batch
 * (hole_batch_cancel): the unpark (its objects are handed out and written)
 * and the free of an empty slab with holes (the pages' next owner writes
 * them; a PG_reported block must read zero, so that free gives them back
 * itself).  So a queued range is only ever given back while no object on
 * it is in use.  Memory-file zones (KALLOC_MESH) give their holes back at
 * once (MADV_REMOVE).
 * Lock: c->lock is held while a slab's holes are punched and queued, so
 * nobody unparks an object of a page being given back.  The zone lock
 * is taken under it to free an empty slab with holes (cache -> zone).
 * dyn_class_lock (mm/slab_dynamic.cc) is a leaf taken with try-lock under
 * a cache lock when a stride class is made (__slab_lifetime_update).
 * hole_batch.lock is innermost: taken under a cache lock or none (never
 * with a zone or pageset lock), held across the batch's system call (with
 * no cache lock held, but when an add finds the batch still full), and
 * nothing is locked under it; reclaim passes only try it.
 * kmem_cache_init_lock sets a cache up at its first use (cache_lock): taken
 * with no cache lock held, just before the cache's own.  Nobody takes the
 * lock of a cache that is not set up, so fork's prepare handler, which
 * holds kmem_cache_init_lock, locks only the caches set up (a program that
 * forks no longer writes the ~9 pages of kmalloc_caches its unused
 * classes span, nor does its child copy them).
 */
#include "mm/slab.h"
#include "mm/mesh.h"
#include "mm/slab_dynamic.h"

#include "mm/compaction.h"
#include "mm/khugepaged.h"
#include "mm/page_alloc.h"
#include "mm/vmscan.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/printk.h"
#include "platform/timekeeping.h"

namespace kalloc {

kmem_cache kmalloc_caches[NR_KMALLOC_CLASSES];
uint64_t kmem_cache_ready_mask[(NR_KMALLOC_CLASSES + 63) / 64];
/* (The two locks and slab_owner_live are written at the first malloc: __start_state.) */
__start_state static spinlock_t kmem_cache_init_lock;     /* first use of a cache (cache_lock), fork */
uint64_t slab_free_key = 0x6b616c6c6f63ull;   /* randomised by kalloc_init (slab_common.h) */
uint64_t slab_freeptr_random;     /* 0 until the first slab is made (slab_freeptr_seed) */
kmem_cache_node kmem_cache_node_fixed[3][NR_KMALLOC_CLASSES];
kmem_cache_node (*kmem_cache_node_table)[NR_KMALLOC_CLASSES];
bool kmem_cache_node_row_rw[NR_SLAB_OWNERS];
/* Maps the table and makes its rows writable: innermost, taken under
 * tcache_list_lock or a kmem_cache lock (never across fork: the prepare
 * handler holds both). */
__start_state static spinlock_t kmem_cache_node_lock = SPINLOCK_INIT;

bool kmem_cache_node_row_ready(unsigned o)
{
    o &= NR_SLAB_OWNERS - 1;
    if (o == 0 || o >= SLAB_OWNER_POOL || __atomic_load_n(&kmem_cache_node_row_rw[o], __ATOMIC_ACQUIRE))
        return true;
    constexpr size_t row = sizeof(kmem_cache_node) * NR_KMALLOC_CLASSES;
    bool ok = true;
    spin_lock(&kmem_cache_node_lock);
    if (!kmem_cache_node_table) {
        kmem_cache_node_table =
            (kmem_cache_node(*)[NR_KMALLOC_CLASSES])os_map_readonly(align_up(row * NR_SLAB_OWNERS, PAGE_SIZE));
        ok = kmem_cache_node_table != nullptr;
    }
    if (ok && !kmem_cache_node_row_rw[o]) {
        uintptr_t from = (uintptr_t)kmem_cache_node_table[o] & ~(PAGE_SIZE - 1);
        uintptr_t to = align_up((uintptr_t)kmem_cache_node_table[o] + row, PAGE_SIZE);
        ok = os_protect_rw((void *)from, to - from);
        if (ok)
            __atomic_store_n(&kmem_cache_node_row_rw[o], true, __ATOMIC_RELEASE);
    }
    spin_unlock(&kmem_cache_node_lock);
    return ok;
}

kmem_cache_node *kmem_cache_node_row_slow(unsigned o)
{
    if (!kmem_cache_node_row_ready(o))
        panic("no memory for the slab lists of owner id %u", o);
    return kmem_cache_node_table[o];
}
slab_hole_stats slab_holes;

constexpr unsigned SLAB_HOLES_MAX_ORDER = 5;   /* slab_hole_mask has a bit per page */
/* Ranges of hole pages given back with one call (os_decommit_many's
 * batch, as reclaim's decommit_batch). */
constexpr unsigned SLAB_HOLE_BATCH = 32;
/* Bulk frees of a class with no refill in between after which its slabs
 * are looked at for holes as they fall (see cache_freeing). */
constexpr unsigned long SLAB_HOLES_FLUSH_STREAK = 16;

static unsigned long slab_pageblock_free_bytes(zone *z, unsigned long start);

/* Under kmem_cache_init_lock: the cache's fields, then `initialized`
 * (release: whoever reads it set, with an acquire, sees them). */
static void kmem_cache_init_locked(kmem_cache *c, unsigned idx)
{
    const kmalloc_class &k = kmalloc_info[idx];
    c->size = k.size;
    c->objects = k.objects;
    c->order = k.order;
    c->index = (uint8_t)idx;
    c->partial.index = c->nr_owner_partial.index = (uint8_t)idx;  /* lists set up on use */
    c->migratetype = MIGRATE_RECLAIMABLE;
    c->life_ratio = 1024;
    khugepaged_register_free_bytes(slab_pageblock_free_bytes);
    __atomic_fetch_or(&kmem_cache_ready_mask[idx / 64], 1ull << (idx % 64), __ATOMIC_RELEASE);
}

static bool cache_ready(const kmem_cache *c) { return kmem_cache_ready(c); }

static __cold void kmem_cache_init(kmem_cache *c)
{
    spin_lock(&kmem_cache_init_lock);
    if (!cache_ready(c))
        kmem_cache_init_locked(c, (unsigned)(c - kmalloc_caches));
    spin_unlock(&kmem_cache_init_lock);
}

static inline kmem_cache *cache_lock(kmem_cache *c)
{
    if (unlikely(!cache_ready(c)))
        kmem_cache_init(c);
    spin_lock(&c->lock);
    return c;
}

/* Draw slab_freeptr_random (slab_common.h) when the process's first slab
 * is made: no free object, so no link, exists before it.  Two caches may
 * make their first slabs at once: the first to store wins, the other takes
 * its value (the exchange orders it before any link the loser writes, and
 * every other thread reaches a slab's objects through its cache's lock).
 * Its low 4 bits are fixed at 9, so a link overwritten with zero or with
 * any 16-byte aligned value decodes misaligned: always caught, not 15
 * times in 16 (bswap puts the address's top byte, 0 in user space, in the
 * low bits of the mask). */
static __cold void slab_freeptr_seed()
{
    uint64_t expected = 0, r = (os_random_seed() & ~0xfull) | 0x9;
    __atomic_compare_exchange_n(&slab_freeptr_random, &expected, r, false, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
}

void freeptr_corrupted(const void *obj, const void *next)
{
    panic("malloc(): corrupted free list: free object %p links to %p "
          "(written after free, or overrun)", obj, next);
}

/* The next object on slab pg's freelist after obj, checked to be one of
 * the slab's objects (or the end): a program that wrote into a free object
 * must not make the slab layer write outside the slab (the hole scan's
 * bitmap, the freelist pops).  The multiple-of-size test is the free fast
 * path's (kmalloc_fast_class.divc: a multiply, not a division, for the
 * offsets below 2^32 the range test leaves). */
static inline void *slab_freelist_next(const kmem_cache *c, page *pg, const void *obj)
{
    void *next = get_freepointer(obj);
    if (next) {
        uint64_t off = (uint64_t)((uintptr_t)next - (uintptr_t)page_address(pg));
        uint64_t divc = kmalloc_fast[c->index].divc;
        if (unlikely(off >= (uint64_t)pg->objects * c->size || off * divc >= divc))
            freeptr_corrupted(obj, next);
    }
    return next;
}

/* A new slab from the buddy allocator.  Only its first page is tagged
 * with the class in the zone's class map; the others are tagged as carving
 * reaches them (slab_key_reached), so a free() of an address in a page no
 * object was carved from misses the fast path (class 0) and is reported by
 * the slow path's check against `carved`, instead of putting an object that
 * was never handed out in a thread cache (it would be handed out twice). */
static page *allocate_slab(kmem_cache *c)
{
    if (unlikely(!__atomic_load_n(&slab_freeptr_random, __ATOMIC_ACQUIRE)))
        slab_freeptr_seed();
    page *pg = alloc_pages(c->order, (migratetype)c->migratetype, nullptr);
    if (!pg)
        return nullptr;
    unsigned long n = 1ul << c->order;
    prep_compound_page(pg, n, PG_slab);
    uint8_t *classes = zone_slab_class_map(page_zone(pg)) + page_to_pfn(pg);
    uint8_t *owners = zone_slab_owner_map(page_zone(pg)) + page_to_pfn(pg);
    for (unsigned long i = 0; i < n; i++) {
        classes[i] = i ? 0 : c->index;
        owners[i] = 0;                  /* no owner yet */
    }
    pg->order = c->order;
    pg->nr_pages = (uint32_t)n;
    pg->freelist = nullptr;
    pg->inuse = 0;
    pg->objects = c->objects;
    pg->carved = 0;
    pg->slab_list = SLAB_NONE;
    pg->nr_holes = 0;
    if (c->order)
        pg[1].slab_punch_inuse = c->objects;
    return pg;
}

static __cold void free_slab_with_holes(kmem_cache *c, page *pg);

static void discard_slab(kmem_cache *c, page *pg)
{
    unsigned long n = 1ul << c->order;
    uint8_t *classes = zone_slab_class_map(page_zone(pg)) + page_to_pfn(pg);
    uint8_t *owners = zone_slab_owner_map(page_zone(pg)) + page_to_pfn(pg);
    for (unsigned long i = 0; i < n; i++)
        classes[i] = owners[i] = 0;
    if (unlikely(pg->nr_holes)) {
        free_slab_with_holes(c, pg);
        return;
    }
    free_pages(pg, c->order);
}

/* ---------------------------------------------------------------------------
 * Slab holes (see the file comment)
 * ------------------------------------------------------------------------- */

static inline void hole_stat_add(unsigned long &v, long d)
{
    __atomic_fetch_add(&v, (unsigned long)d, __ATOMIC_RELAXED);
}

/* Objects of slab pg on its freelist. */
static inline unsigned slab_nr_listed(const page *pg)
{
    unsigned parked = pg->nr_holes ? pg[1].slab_parked : 0;
    return (unsigned)(pg->carved - pg->inuse) - parked;
}

/* The pages of mask in slab pg get class `idx` in the zone's class map (0:
 * a hole, where no object starts that is not free: allocate_slab). */
static void slab_tag_pages(page *pg, uint32_t mask, uint8_t idx)
{
    uint8_t *classes = zone_slab_class_map(page_zone(pg)) + page_to_pfn(pg);
    for (; mask; mask &= mask - 1)
        classes[__builtin_ctz(mask)] = idx;
}

/* The holes' batch (see the file comment): ranges of hole pages queued to
 * be given back together.  Constant-initialised; hole_batch.lock is the
 * innermost lock. */
struct slab_hole_batch {
    spinlock_t lock;                    /* guards the ranges and nr's writes */
    unsigned nr;                        /* ranges queued; written under lock (release),
                                         * read without it (acquire) to skip an empty batch */
    os_range ranges[SLAB_HOLE_BATCH];   /* hole pages of anonymous zones, each inside one
                                         * slab (a cancel takes whole ranges out) */
};
static slab_hole_batch hole_batch = {SPINLOCK_INIT, 0, {}};

/* Give the queued ranges back: one process_madvise call for them all
 * where the kernel takes it and no seccomp filter is seen (asked per
 * batch worth it, os_decommit_worth_asking, as reclaim asks per pass),
 * else a madvise each.  Caller holds hole_batch.lock. */
static void hole_batch_flush_locked()
{
    unsigned n = hole_batch.nr;
    if (!n)
        return;
    bool one = os_decommit_worth_asking(n) && os_decommit_batches() && !os_seccomp_filtered();
    if (os_decommit_many(hole_batch.ranges, n, one)) {
        hole_stat_add(slab_holes.madvise_calls, 1);
        hole_stat_add(slab_holes.batched, n);
    } else {
        hole_stat_add(slab_holes.madvise_calls, n);
    }
    __atomic_store_n(&hole_batch.nr, 0u, __ATOMIC_RELEASE);
}

void slab_holes_flush()
{
    if (!__atomic_load_n(&hole_batch.nr, __ATOMIC_ACQUIRE))
        return;
    spin_lock(&hole_batch.lock);
    hole_batch_flush_locked();
    spin_unlock(&hole_batch.lock);
}

unsigned slab_holes_queued()
{
    return __atomic_load_n(&hole_batch.nr, __ATOMIC_ACQUIRE);
}

bool slab_holes_flush_try()
{
    if (!__atomic_load_n(&hole_batch.nr, __ATOMIC_ACQUIRE))
        return true;
    if (!spin_trylock(&hole_batch.lock))
        return false;
    hole_batch_flush_locked();
    spin_unlock(&hole_batch.lock);
    return true;
}

/* Queue [addr, addr + len), hole pages of the slab that starts at slab_lo
 * (caller holds its cache's lock); a range that continues the last one
 * inside the same slab extends it.  A batch this fills goes back when the
 * caller has let its cache lock go (hole_batch_flush_full: the system call
 * for 32 ranges takes ~90 us, which other threads would wait for on that
 * lock); one still full at the next add goes back then. */
static void hole_batch_add(char *slab_lo, char *addr, size_t len)
{
    spin_lock(&hole_batch.lock);
    if (hole_batch.nr == SLAB_HOLE_BATCH)
        hole_batch_flush_locked();
    unsigned n = hole_batch.nr;
    os_range *last = n ? &hole_batch.ranges[n - 1] : nullptr;
    if (last && (char *)last->addr >= slab_lo && (char *)last->addr + last->len == addr) {
        last->len += len;
    } else {
        hole_batch.ranges[n].addr = addr;
        hole_batch.ranges[n].len = len;
        __atomic_store_n(&hole_batch.nr, n + 1, __ATOMIC_RELEASE);
    }
    spin_unlock(&hole_batch.lock);
}

/* A full batch goes back (no lock held but, possibly, others' innermost). */
static inline void hole_batch_flush_full()
{
    if (__atomic_load_n(&hole_batch.nr, __ATOMIC_ACQUIRE) == SLAB_HOLE_BATCH)
        slab_holes_flush();
}

/* Slab pg (2^order pages) ends its holes (unpark, or freed): take its
 * queued ranges out of the batch, so they are never given back while the
 * slab's objects, or the pages' next owner, may write them.  Returns the
 * pages taken out (still resident: never given back).  The slab's ranges
 * were queued under its cache's lock, which the caller holds, or held when
 * it took the slab off the cache's lists, so an empty batch read here
 * holds none of them. */
static unsigned long hole_batch_cancel(page *pg, unsigned order)
{
    if (!__atomic_load_n(&hole_batch.nr, __ATOMIC_ACQUIRE))
        return 0;
    char *lo = (char *)page_address(pg), *hi = lo + (PAGE_SIZE << order);
    unsigned long pages = 0;
    spin_lock(&hole_batch.lock);
    unsigned n = hole_batch.nr, kept = 0;
    for (unsigned i = 0; i < n; i++) {
        os_range r = hole_batch.ranges[i];
        if ((char *)r.addr >= lo && (char *)r.addr < hi)
            pages += r.len >> PAGE_SHIFT;
        else
            hole_batch.ranges[kept++] = r;
    }
    __atomic_store_n(&hole_batch.nr, kept, __ATOMIC_RELEASE);
    spin_unlock(&hole_batch.lock);
    if (pages)
        hole_stat_add(slab_holes.cancelled, pages);
    return pages;
}

/* fn(first page, pages) for each run of adjacent pages set in mask. */
template <class F>
static inline void for_each_page_run(uint32_t mask, F fn)
{
    uint64_t m = mask;
    while (m) {
        unsigned start = (unsigned)__builtin_ctzll(m);
        unsigned len = (unsigned)__builtin_ctzll(~(m >> start));   /* <= 32 */
        fn(start, len);
        m &= ~(((1ull << len) - 1) << start);
    }
}

/* Give the pages of `mask` back, a run of adjacent pages per range: queued
 * in the holes' batch for an anonymous zone, at once (madvise or
 * MADV_REMOVE) for a memory-file zone (KALLOC_MESH) or when `now`. */
static void slab_decommit_mask(page *pg, uint32_t mask, bool now = false)
{
    char *base = (char *)page_address(pg);
    const zone *z = page_zone(pg);
    for_each_page_run(mask, [&](unsigned start, unsigned len) {
        char *addr = base + ((size_t)start << PAGE_SHIFT);
        if (z->backing == ZONE_BACKING_ANON && !now) {
            hole_batch_add(base, addr, (size_t)len << PAGE_SHIFT);
        } else {
            zone_decommit(z, addr, (size_t)len << PAGE_SHIFT);
            hole_stat_add(slab_holes.madvise_calls, 1);
        }
    });
}

/* The free bytes of the pageblock at start: free blocks plus the free
 * objects of its slabs, parked ones (holes) included; other caches' counts
 * are read racily: an estimate.  Walks the block's heads (free blocks and
 * allocated blocks skip their tails, whose descriptors may be off) under
 * the zone lock, taken inside the cache lock (the lock order above) or
 * under vmscan_lock (khugepaged asks it before a collapse, through
 * khugepaged_register_free_bytes). */
static unsigned long slab_pageblock_free_bytes(zone *z, unsigned long start)
{
    const unsigned long end = start + pageblock_nr_pages;
    unsigned long free_bytes = 0;
    spin_lock(&z->lock);
    for (unsigned long pfn = start; pfn < end;) {
        const page *p = pfn_to_page(z, pfn);
        unsigned flags = p->flags;
        unsigned order = p->order <= MAX_ORDER ? p->order : 0;
        if (flags & (PG_buddy | PG_pcp | PG_isolated)) {
            free_bytes += PAGE_SIZE << order;
        } else if ((flags & (PG_head | PG_slab)) == (PG_head | PG_slab)) {
            const kmem_cache *sc = page_slab_cache(p);
            if (sc && p->objects >= p->inuse)
                free_bytes += (size_t)(p->objects - p->inuse) * sc->size;
        } else if (!(flags & PG_head)) {
            order = 0;
        } else if ((flags & PG_large) && p->nr_pages) {
            pfn += p->nr_pages;   /* exact pages: its rounded-up order's tail may be free */
            continue;
        }
        pfn += 1ul << order;
    }
    spin_unlock(&z->lock);
    return free_bytes;
}

/* The frees' holes leave a slab in a whole hugepage alone: punching one
 * 4 KiB page would split the 2 MiB mapping (the same rule as the frees'
 * watermark reclaim, khugepaged_keep_resident), unless at least half of the
 * pageblock is free (counting its slabs' free objects): a whole hugepage
 * that sparse is split by the frees' holes and marked so (the kernel's
 * deferred split of underused hugepages).  A pageblock counted dense is not
 * counted again before enough has been freed in its zone
 * (khugepaged_pageblock_sparse).  The timed pass, trim and compaction still
 * punch it. */
static bool slab_in_whole_hugepage(page *pg)
{
    zone *z = page_zone(pg);
    unsigned long pfn = page_to_pfn(pg);
    if (!khugepaged_pageblock_whole(z, pfn))
        return false;
    return !khugepaged_pageblock_sparse(z, pfn >> pageblock_order, slab_pageblock_free_bytes);
}

unsigned long __slab_punch_holes(kmem_cache *c, page *pg, bool keep_huge)
{
    if (c->order == 0 || c->order > SLAB_HOLES_MAX_ORDER)
        return 0;
    zone *z = page_zone(pg);
    unsigned long pfn = page_to_pfn(pg);
    if (z->nr_hugetlb_pages && (z->pageblock_thp[pfn >> pageblock_order] & PB_HUGETLB))
        return 0;                       /* hugetlbfs: no 4 KiB madvise */
    pg[1].slab_punch_inuse = pg->inuse;
    const unsigned npages = 1u << c->order, objects = pg->objects, carved = pg->carved;
    const uint32_t old_mask = pg->nr_holes ? pg[1].slab_hole_mask : 0;
    /* Which objects are free: on the freelist, parked, or never carved.
     * The freelist is walked at most as far as its length. */
    uint64_t free_bits[(((PAGE_SIZE << SLAB_HOLES_MAX_ORDER) / KMALLOC_MIN_ALIGN) + 63) / 64];
    const unsigned words = (objects + 63) / 64;
    for (unsigned w = 0; w < words; w++)
        free_bits[w] = 0;
    char *base = (char *)page_address(pg);
    unsigned listed = slab_nr_listed(pg), walked = 0;
    for (void *o = pg->freelist; o && walked < listed; o = slab_freelist_next(c, pg, o), walked++) {
        unsigned i = (unsigned)((size_t)((char *)o - base) / c->size);
        free_bits[i / 64] |= 1ull << (i % 64);
    }
    for (unsigned i = 0; i < objects; i++)
        if (i >= carved || (old_mask & obj_page_mask(c, i)))
            free_bits[i / 64] |= 1ull << (i % 64);
    /* Pages all of whose objects are free.  A page past the last object
     * (the slab's unused tail) is never written: not worth a call. */
    uint32_t new_mask = 0;
    for (unsigned p = 0; p < npages; p++) {
        if (old_mask & (1u << p))
            continue;
        unsigned long lo = ((unsigned long)p << PAGE_SHIFT) / c->size;
        unsigned long hi = (((unsigned long)(p + 1) << PAGE_SHIFT) - 1) / c->size;
        if (lo >= objects)
            break;
        if (hi >= objects)
            hi = objects - 1;
        bool all_free = true;
        for (unsigned long i = lo; i <= hi; i++)
            if (!(free_bits[i / 64] & (1ull << (i % 64)))) {
                all_free = false;
                break;
            }
        if (all_free)
            new_mask |= 1u << p;
    }
    /* The pageblock count behind the hugepage rule walks 512 descriptors:
     * only for a slab with a page to give back (fragmentation's random
     * frees, --scale=0.2: the counts 1.85M -> 0.80M instructions; with
     * 2-page slabs for the small classes, tried in session 38, they were
     * 998 counts and 10% of its instructions when they came first). */
    if (!new_mask || (keep_huge && slab_in_whole_hugepage(pg)))
        return 0;
    const uint32_t mask = old_mask | new_mask;
    /* Park the listed objects that overlap a new hole: rebuild the
     * freelist without them, in the same order. */
    unsigned parked = 0;
    void *head = nullptr, *last = nullptr;
    walked = 0;
    for (void *o = pg->freelist; o && walked < listed; walked++) {
        void *next = get_freepointer(o);
        unsigned i = (unsigned)((size_t)((char *)o - base) / c->size);
        if (obj_page_mask(c, i) & new_mask) {
            parked++;
        } else {
            if (last)
                set_freepointer(last, o);
            else
                head = o;
            last = o;
        }
        o = next;
    }
    if (last)
        set_freepointer(last, nullptr);
    pg->freelist = head;
    if (last)
        pg->freelist_tail = (uint32_t)((char *)last - base);
    slab_decommit_mask(pg, new_mask);
    /* Frees there take the slow path's check: class 0, and on the first
     * page, whose byte names the slab's cache (page_slab_cache), the cache
     * with SLAB_CLASS_HOLE (slab_common.h). */
    slab_tag_pages(pg, new_mask & ~1u, 0);
    if (new_mask & 1u)
        slab_tag_pages(pg, 1u, (uint8_t)(c->index | SLAB_CLASS_HOLE));
    /* A pageblock the kernel may collapse would get the holes back (its
     * khugepaged fills them): it turns to small pages. */
    if (new_mask)
        khugepaged_note_reclaim(z, pfn, 0);
    unsigned added = hweight32(new_mask);
    pg[1].slab_parked = (uint16_t)((pg->nr_holes ? pg[1].slab_parked : 0) + parked);
    pg[1].slab_hole_mask = mask;
    pg->nr_holes = (uint8_t)(pg->nr_holes + added);
    hole_stat_add(slab_holes.punched, added);
    hole_stat_add(slab_holes.hole_pages, added);
    return added;
}

/* Slab pg needs objects its freelist does not have: thread every parked
 * object back onto it, in address order, before the listed ones (so the
 * freelist's tail stays where it is).  Caller holds c->lock. */
static __cold void slab_unpark_locked(kmem_cache *c, page *pg)
{
    const uint32_t mask = pg[1].slab_hole_mask;
    /* First: its objects may be written as soon as they are handed out. */
    const unsigned long kept = hole_batch_cancel(pg, c->order);
    char *base = (char *)page_address(pg);
    void *head = pg->freelist;
    for (unsigned i = pg->carved; i-- > 0;) {
        if (!(obj_page_mask(c, i) & mask))
            continue;
        void *obj = base + (size_t)i * c->size;
        if (!head)
            pg->freelist_tail = (uint32_t)((size_t)i * c->size);
        set_freepointer(obj, head);
        ((uint64_t *)obj)[1] = slab_free_key;   /* the hole read zero */
        head = obj;
    }
    pg->freelist = head;
    /* The class back on the hole pages carving had reached (allocate_slab):
     * those up to the page of the last carved object's start, and always the
     * first page (which had it with SLAB_CLASS_HOLE). */
    if (mask & 1u)
        slab_tag_pages(pg, 1u, c->index);
    if (pg->carved) {
        unsigned reached = (unsigned)(((size_t)(pg->carved - 1) * c->size) >> PAGE_SHIFT);
        slab_tag_pages(pg, mask & (uint32_t)((2ull << reached) - 1), c->index);
    }
    pg[1].slab_punch_inuse = pg->objects;   /* may be looked at again as it drains */
    if (c->holes_freed_ms) {
        /* The frees' holes came back: if soon (within KALLOC_DECAY_MS, the
         * time after which idle free memory is given back anyway), the
         * class is cycled through rather than freed, and its frees stop
         * punching holes for a while (cache_holes_deferred), twice as long
         * at each such refault in a row. */
        unsigned long now = ktime_get_coarse_ms();
        long decay = option_get(OPT_DECAY_MS);
        unsigned long window = decay > 0 ? (unsigned long)decay : 1000;
        if (now - c->holes_freed_ms < window) {
            c->holes_defer_ms = now + (window << c->holes_defer_shift);
            if (c->holes_defer_shift < SLAB_HOLES_DEFER_MAX_SHIFT)
                c->holes_defer_shift++;
            hole_stat_add(slab_holes.deferred, 1);
        }
        c->holes_freed_ms = 0;
    }
    hole_stat_add(slab_holes.refaulted, pg->nr_holes - kept);
    hole_stat_add(slab_holes.hole_pages, -(long)pg->nr_holes);
    pg->nr_holes = 0;
}

/* An empty slab with holes goes back to the buddy allocator.  Mostly holes
 * given back (not those still queued in the batch, which are resident):
 * its other pages are given back too and the block is freed PG_reported,
 * straight to the zone (the per-CPU lists hold resident blocks).  Otherwise
 * it is freed as usual, resident (the hole pages read zero, which is
 * allowed; reclaim may madvise them again later). */
static __cold void free_slab_with_holes(kmem_cache *c, page *pg)
{
    unsigned holes = pg->nr_holes, npages = 1u << c->order;
    uint32_t mask = pg[1].slab_hole_mask;
    pg->nr_holes = 0;
    hole_stat_add(slab_holes.hole_pages, -(long)holes);
    /* Its queued holes come out of the batch first: the pages' next owner
     * may write them as soon as they are freed.  Those are still resident:
     * only the holes given back count for the choice below. */
    const unsigned long queued = hole_batch_cancel(pg, c->order);
    if (2 * (holes - queued) < npages) {
        free_pages(pg, c->order);
        return;
    }
    uint32_t all = npages >= 32 ? ~0u : (1u << npages) - 1;
    /* Given back now, and before the free: a PG_reported block reads zero. */
    slab_decommit_mask(pg, queued ? all : all & ~mask, true);
    zone *z = page_zone(pg);
    unsigned long pfn = page_to_pfn(pg);
    khugepaged_note_reclaim(z, pfn, c->order);
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    __free_one_page(z, pfn, c->order, true);
    pa_stats.pgfree++;
    spin_unlock(&z->lock);
    vmscan_tick();
}

/* Owner ids whose thread cache is alive (set by the malloc layer). */
__start_state static bool slab_owner_live[NR_SLAB_OWNERS];

static void write_slab_owner(kmem_cache *c, page *pg, unsigned owner);

/* The list a partial slab goes on: its owner's, or 0 if that owner is gone
 * (then the slab becomes unowned). */
static inline unsigned slab_owner_fixup(kmem_cache *c, page *pg)
{
    uint8_t o = zone_slab_owner_map(page_zone(pg))[page_to_pfn(pg)];
    if (o && !READ_ONCE(slab_owner_live[o])) {
        write_slab_owner(c, pg, 0);
        o = 0;
    }
    return o;
}

static inline uint8_t slab_owner(page *pg)
{
    return zone_slab_owner_map(page_zone(pg))[page_to_pfn(pg)];
}

static inline void set_slab_list(kmem_cache *c, page *pg, slab_list_id to)
{
    if (pg->slab_list == to)
        return;
    if (pg->slab_list == SLAB_PARTIAL) {
        unsigned o = slab_owner(pg);
        list_del(&pg->lru);
        c->nr_partial--;
        if (--c->nr_owner_partial[o] == 0)
            c->partial_owners[o / 64] &= ~(1ull << (o % 64));
    } else if (pg->slab_list == SLAB_FULL) {
        c->nr_full--;
    }
    if (to == SLAB_PARTIAL) {
        unsigned o = slab_owner_fixup(c, pg);
        if (o && c->nr_owner_partial[o] >= SLAB_OWNER_PARTIAL_MAX) {
            write_slab_owner(c, pg, 0);     /* the owner has enough */
            o = 0;
        }
        list_add(&pg->lru, &c->partial[o]);
        c->nr_owner_partial[o]++;
        c->partial_owners[o / 64] |= 1ull << (o % 64);
        c->nr_partial++;
    } else if (to == SLAB_FULL) {
        c->nr_full++;               /* on no list (slab.h) */
    }
    pg->slab_list = to;
}

/* Set the owner of every page of slab pg (the zone's slab owner map). */
static void write_slab_owner(kmem_cache *c, page *pg, unsigned owner)
{
    uint8_t *owners = zone_slab_owner_map(page_zone(pg)) + page_to_pfn(pg);
    for (unsigned long i = 0; i < (1ul << c->order); i++)
        owners[i] = (uint8_t)owner;
    if (unlikely(pg->flags & PG_meshed))        /* its aliases' objects are its objects */
        for (uint32_t next = pg->mesh_next; next; next = pfn_to_page(page_zone(pg), next - 1)->mesh_next)
            zone_slab_owner_map(page_zone(pg))[next - 1] = (uint8_t)owner;
}

kmem_cache *kmem_cache_lock(kmem_cache *c) { return cache_lock(c); }
void __slab_set_list(kmem_cache *c, page *pg, slab_list_id to) { set_slab_list(c, pg, to); }

/* Objects from..to-1 of slab pg are being carved.  The pages the carve
 * reaches (up to the page of object to-1's start, where it writes the
 * object's first 16 bytes) are tagged with the class in the zone's class
 * map (allocate_slab), and every object that starts in them gets the
 * free-object key (slab_common.h): the carved ones, and the never-carved
 * ones after them, so a free() of an object never handed out is caught
 * wherever it lies: by the key on a reached page, by the class map's 0
 * beyond (both send it to the slow path, whose check against `carved`
 * reports it).  No page is touched that the carve does not touch itself.
 * Each object is keyed once, when its page is reached: those before the page
 * end of object from-1's start were.  (Cost: one store per object;
 * frag-churn's instructions +0.7..1.0%, callgrind, --scale=0.1.) */
static inline void slab_key_reached(const kmem_cache *c, page *pg, unsigned from, unsigned to)
{
    const size_t size = c->size;
    const size_t done = from ? ((from - 1) * size + PAGE_SIZE) & ~(size_t)(PAGE_SIZE - 1) : 0;
    size_t end = ((to - 1) * size + PAGE_SIZE) & ~(size_t)(PAGE_SIZE - 1);
    if (end <= done)
        return;
    uint8_t *classes = zone_slab_class_map(page_zone(pg)) + page_to_pfn(pg);
    for (size_t i = done >> PAGE_SHIFT; i < end >> PAGE_SHIFT; i++)
        classes[i] = c->index;
    const size_t limit = (size_t)pg->objects * size;
    if (end > limit)
        end = limit;
    const uint64_t key = slab_free_key;     /* (the stores could alias it) */
    char *base = (char *)page_address(pg);
    for (size_t off = (done + size - 1) / size * size; off < end; off += size)
        ((uint64_t *)(base + off))[1] = key;
}

/* Take objects from slab pg as a new chain, *seg (null-terminated; *seg_tail
 * its last object): up to `want`, or its whole freelist when that fits in
 * `max` (max >= want).  A whole freelist
 * (its length is carved - inuse) is spliced in O(1) through its tail
 * (freelist_tail), without touching the objects under the lock: objects a
 * slab got back from other threads are cold in this CPU's cache, and
 * walking them one by one cost a cache miss each with the lock held (the
 * thread takes that miss when it hands the object out instead, outside any
 * lock).  Otherwise objects are popped one by one.  Carved objects are
 * pushed highest first, so the chain hands them out in address order. */
static unsigned take_from_slab(kmem_cache *c, page *pg, unsigned want, unsigned max, void **seg,
                               void **seg_tail)
{
    unsigned got = 0;
    *seg = nullptr;
    *seg_tail = nullptr;
    if (unlikely(pg->nr_holes) && slab_nr_listed(pg) < want)
        slab_unpark_locked(c, pg);      /* before carving: see the file comment */
    if (pg->freelist) {
        unsigned nfree = slab_nr_listed(pg);
        if (nfree <= max) {
            /* Its last object's link is already null (the freelist's end):
             * nothing is written here; the caller links the next slab's part
             * through *seg_tail. */
            *seg = pg->freelist;
            *seg_tail = (char *)page_address(pg) + pg->freelist_tail;
            pg->freelist = nullptr;
            got = nfree;
        } else {
            while (got < want && pg->freelist) {
                void *obj = pg->freelist;
                pg->freelist = slab_freelist_next(c, pg, obj);
                set_freepointer(obj, *seg);
                if (!*seg)
                    *seg_tail = obj;           /* the first pushed is the last */
                *seg = obj;
                got++;
            }
        }
    }
    unsigned carve = pg->objects - pg->carved, left = got < want ? want - got : 0;
    if (unlikely(pg->nr_holes))
        carve = 0;                      /* (then the freelist had enough) */
    if (carve > left)
        carve = left;
    if (carve) {
        char *base = (char *)page_address(pg);
        if (!*seg)                      /* the highest carved object ends the segment */
            *seg_tail = base + (size_t)(pg->carved + carve - 1) * c->size;
        slab_key_reached(c, pg, pg->carved, pg->carved + carve);
        for (unsigned i = pg->carved + carve; i-- > pg->carved;) {
            void *obj = base + (size_t)i * c->size;
            set_freepointer(obj, *seg);
            *seg = obj;
        }
        pg->carved = (uint16_t)(pg->carved + carve);
        got += carve;
    }
    pg->inuse = (uint16_t)(pg->inuse + got);
    return got;
}

/* Slab pg (off the lists) becomes owner's. */
static inline page *claim_slab(kmem_cache *c, page *pg, unsigned owner)
{
    if (slab_owner(pg) != owner)
        write_slab_owner(c, pg, owner);
    return pg;
}

/* Before a new slab is allocated: another owner's partial slab to take
 * over (the kernel's get_any_partial, which takes partial slabs from other
 * nodes before allocating), so free objects are not stranded in the slabs
 * of owners that do not need them: the coldest (list tail) of an owner that
 * has at least two, with the fewest objects in use.  (An owner's only
 * partial slab is where its next objects come from: taking it would put two
 * threads' objects in one cache line, the false sharing remote frees avoid.)
 * The slab becomes the taker's, so the objects it hands out from it are
 * local frees for it, and its next refills find it on its own list.  The
 * objects still in use in it become remote frees for their threads, so a
 * slab more than three quarters in use is not taken from the owner that
 * last took one from the taker (kmem_cache_node.took_from): on alloc-test (2 threads, one
 * id each) two owners took each other's nearly full slabs in turn, each
 * take-over making the other's frees remote (+7% instructions, 2-4x as
 * many in the slab layer and remote frees); a new slab ends the exchange.
 * Two rules that came before, on many-threads (64 threads, 8 owner ids):
 * borrowing free objects and leaving the slab its owner's fed a cycle, the
 * borrowed objects coming back as remote frees scattered over the owners'
 * slabs, whose refills then found only nearly full slabs and borrowed in
 * turn (10 slabs visited per refill, a third of all frees back to the
 * slabs); borrowing only slabs at least half free broke the cycle but took
 * new slabs while others held free objects (16 MiB free in partial slabs at
 * the peak, 3-11 MiB when they are taken over). */
static page *get_any_partial(kmem_cache *c, unsigned owner)
{
    page *best = nullptr;
    for (unsigned w = 0; w < NR_SLAB_OWNERS / 64; w++) {
        uint64_t bits = c->partial_owners[w];
        if (w == owner / 64)
            bits &= ~(1ull << (owner % 64));
        while (bits) {
            unsigned o = w * 64 + (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (c->nr_owner_partial[o] < 2)
                continue;               /* leave an owner its last slab */
            page *pg = list_entry(c->partial[o].prev, page, lru);   /* its coldest */
            if (kmem_cache_node_row(o)[c->index].took_from == owner && 4u * pg->inuse > 3u * pg->objects)
                continue;               /* o took one of ours: no exchange */
            if (!best || pg->inuse < best->inuse)
                best = pg;
        }
    }
    return best;
}

/* The slab a refill by thread cache `owner` takes objects from: its own
 * partial slab, else an unowned one, the spare empty slab, another owner's
 * cold partial slab (get_any_partial) or a new one, each claimed; nullptr
 * when out of memory.  The slab is off the
 * lists on return. */
static page *get_partial_or_new(kmem_cache *c, unsigned owner)
{
    page *pg;
    if (!list_empty(&c->partial[owner])) {
        pg = list_first_entry(&c->partial[owner], page, lru);
    } else if (owner && !list_empty(&c->partial[0])) {
        pg = list_first_entry(&c->partial[0], page, lru);
    } else if (c->empty_slab) {
        pg = c->empty_slab;
        c->empty_slab = nullptr;
        return claim_slab(c, pg, owner);
    } else if (c->nr_partial && (pg = get_any_partial(c, owner))) {
        kmem_cache_node_row(owner)[c->index].took_from = (uint8_t)slab_owner(pg);
        set_slab_list(c, pg, SLAB_NONE);
        return claim_slab(c, pg, owner);
    } else {
        /* Allocate with the cache lock held: lock order cache -> zone. */
        pg = allocate_slab(c);
        if (!pg)
            return nullptr;
        c->nr_slabs++;
        return claim_slab(c, pg, owner);
    }
    set_slab_list(c, pg, SLAB_NONE);
    return claim_slab(c, pg, owner);
}

void *kmem_cache_alloc_bulk(kmem_cache *c, unsigned want, unsigned *got_out, unsigned owner,
                            unsigned max)
{
    void *head = nullptr, *tail = nullptr;
    unsigned got = 0;
    owner &= NR_SLAB_OWNERS - 1;
    if (max < want)
        max = want;
    cache_lock(c);
    while (got < want) {
        page *pg = get_partial_or_new(c, owner);
        if (!pg)
            break;
        /* Each slab's objects after the previous slab's: a program that
         * allocates in a row gets ascending addresses from a fresh heap, as
         * from glibc and the other allocators (graphviz's dot lays a graph
         * out by its nodes' addresses: with the slabs' order reversed at
         * each refill its output differed from glibc's). */
        void *seg, *seg_tail;
        unsigned n = take_from_slab(c, pg, want - got, max - got, &seg, &seg_tail);
        if (n) {
            if (tail)
                set_freepointer(tail, seg);
            else
                head = seg;
            tail = seg_tail;
        }
        got += n;
        set_slab_list(c, pg, pg->inuse == pg->objects ? SLAB_FULL : SLAB_PARTIAL);
    }
    /* The population's peak since it last fell to an eighth of it (the
     * thread caches' drain room, malloc/tcache.cc). */
    if (c->active_objects * 8 < c->active_peak)
        c->active_peak = 0;
    c->active_objects += got;
    if (c->active_objects > c->active_peak)
        c->active_peak = c->active_objects;
    c->nr_refills++;
    c->flushes_at_refill = c->nr_flushes;
    c->life_allocs += got;
    unsigned long window = (unsigned long)SLAB_LIFE_WINDOW * c->objects;
    if (c->life_allocs >= (window > 512 ? window : 512))
        __slab_lifetime_update(c);
    spin_unlock(&c->lock);
    *got_out = got;
    return head;
}

/* Whether slab pg (order >= 1) is worth looking at for holes: a page's
 * worth of free objects; unless `all` (malloc_trim), also half free or more
 * and a page's worth of objects freed since it was last looked at (so a
 * draining slab is looked at a few times, not at every free). */
static inline bool slab_punch_due(const kmem_cache *c, const page *pg, bool all)
{
    if ((size_t)(pg->objects - pg->inuse) * c->size < PAGE_SIZE)
        return false;
    if (all)
        return true;
    if (2u * pg->inuse > pg->objects)
        return false;
    unsigned step = (unsigned)(PAGE_SIZE / c->size);
    if (!step)
        step = 1;
    return pg->inuse + step <= pg[1].slab_punch_inuse;
}

/* Whether cache c is being freed rather than cycled through: slabs emptied
 * with no refill in between (draining), or SLAB_HOLES_FLUSH_STREAK bulk
 * frees with no refill (a class with few slabs never empties four). */
static inline bool cache_freeing(const kmem_cache *c)
{
    return c->nr_empty_run >= SLAB_DRAIN_EMPTIES ||
           c->nr_flushes - c->flushes_at_refill >= SLAB_HOLES_FLUSH_STREAK;
}

/* Whether the frees of cache c must punch no holes now: the last ones they
 * punched were refaulted within KALLOC_DECAY_MS (slab_unpark_locked).  A
 * class freed by one thread and allocated again by the next (short-lived
 * threads, each freeing its objects at exit: thread-churn) looks freed at
 * every exit, and each hole cost a madvise under the cache lock and a
 * fault.  The timed pass still punches the class once it goes idle, which
 * ends the deferral.  Caller holds c->lock. */
static inline bool cache_holes_deferred(kmem_cache *c)
{
    if (likely(!c->holes_defer_ms))
        return false;
    if (ktime_get_coarse_ms() < c->holes_defer_ms)
        return true;
    c->holes_defer_ms = 0;
    return false;
}

/* The frees punch holes in slab pg of cache c being freed; the time is
 * kept for the refault check (slab_unpark_locked). */
static inline void slab_punch_holes_freeing(kmem_cache *c, page *pg)
{
    if (__slab_punch_holes(c, pg, true))
        c->holes_freed_ms = ktime_get_coarse_ms();
}

/* `run` objects just went back on slab pg's freelist: update its count
 * and lists; `holes`: the cache is being freed, look for holes.  Caller
 * holds c->lock. */
static inline void slab_objects_freed(kmem_cache *c, page *pg, unsigned run, page **to_free,
                                      unsigned *nr_to_free, unsigned max_to_free, bool holes)
{
    unsigned old = pg->inuse;
    pg->inuse = (uint16_t)(old - run);
    if (pg->inuse == 0) {
        if (unlikely(pg->flags & PG_meshed))
            __mesh_unmesh(c, pg);               /* its aliases get their own pages back */
        set_slab_list(c, pg, SLAB_NONE);
        if (c->empty_refills != c->nr_refills)
            c->nr_empty_run = 0;          /* a refill since the last empty */
        c->empty_refills = c->nr_refills;
        if (c->nr_empty_run < SLAB_DRAIN_EMPTIES)
            c->nr_empty_run++;
        bool draining = c->nr_empty_run >= SLAB_DRAIN_EMPTIES;
        if (draining && c->empty_slab) {
            page *spare = c->empty_slab;      /* not needed: goes back too */
            c->empty_slab = nullptr;
            c->nr_slabs--;
            if (*nr_to_free == max_to_free)
                discard_slab(c, spare);
            else
                to_free[(*nr_to_free)++] = spare;
        }
        if (!c->empty_slab && !draining) {
            c->empty_slab = pg;
            /* The spare of a class being freed: kept, but its pages given
             * back (it may never be needed again). */
            if (holes)
                slab_punch_holes_freeing(c, pg);
        } else {
            c->nr_slabs--;
            if (*nr_to_free == max_to_free)
                discard_slab(c, pg);               /* rare: many slabs emptied at once */
            else
                to_free[(*nr_to_free)++] = pg;
        }
    } else {
        if (pg->slab_list == SLAB_PARTIAL) {
            /* Falling to a quarter full: last in line for allocation, so it
             * may drain and empty. */
            unsigned q = pg->objects / 4u;
            if (old > q && pg->inuse <= q)
                list_move_tail(&pg->lru, &c->partial[slab_owner(pg)]);
        } else {
            set_slab_list(c, pg, SLAB_PARTIAL);     /* from full: the head */
        }
        /* A draining cache: its sparse slabs give their free pages back now
         * (the program may make no further call). */
        if (unlikely(holes) && slab_punch_due(c, pg, false))
            slab_punch_holes_freeing(c, pg);
    }
}

/* Frees of an order-0 cache with KALLOC_MESH (caller holds c->lock):
 * whether they took it to at most half in use and 1/4 below its objects in
 * use at its last meshing pass; then kmem_cache_free_bulk runs mesh_timed
 * after unlocking, so a program freeing most of a population has its slabs
 * meshed while it frees (a pass per quarter), without waiting for a timed
 * pass it may never make (an idle program). */
static inline bool mesh_due_on_free(kmem_cache *c)
{
    if (c->active_objects > c->mesh_active) {
        c->mesh_active = c->active_objects;     /* grown since: the next drop counts from here */
        return false;
    }
    return c->nr_slabs >= MESH_TIMED_MIN_SLABS && 2 * c->active_objects <= c->nr_slabs * c->objects &&
           4 * c->active_objects <= 3 * c->mesh_active;
}

/* Consecutive objects of one slab (the usual case: a thread cache gives
 * back what it took together) cost one range check each; the slab's page
 * is looked up and its count and lists updated once per run. */
void kmem_cache_free_bulk(kmem_cache *c, void *head, unsigned n)
{
    page *to_free[8];
    unsigned nr_to_free = 0;
    const uintptr_t slab_bytes = PAGE_SIZE << c->order;
    const uintptr_t slab_mask = ~(slab_bytes - 1);
    page *pg = nullptr;
    uintptr_t base = 0, mesh_delta = 0;
    unsigned run = 0;
    cache_lock(c);
    /* Once per call: whether this class is being freed (slab holes). */
    const bool holes = c->order && cache_freeing(c) && option_get(OPT_SLAB_HOLES) &&
                       !cache_holes_deferred(c) && !kmalloc_is_stride_class(c->index);
    /* Objects freed per zone, for khugepaged_split_underused's bound (zone
     * freed_pages): the objects from index fstart on are in zone fz; added
     * after the lock, once per zone met. */
    zone *fz = nullptr;
    unsigned fstart = 0;
    unsigned long fbytes = 0;
    /* The slab of the object at index i of the chain: virt_to_block_head,
     * with the mask computed once per call and the zone kept for the
     * per-zone count. */
    auto slab_of = [&](void *obj, unsigned i) __attribute__((always_inline)) {
        base = (uintptr_t)obj & slab_mask;
        zone *z = (zone *)zone_table[(uintptr_t)obj >> ZONE_SLOT_SHIFT];
        pg = z->mem_map + ((uint32_t)base >> PAGE_SHIFT);
        mesh_delta = 0;
        if (unlikely(pg->flags & PG_mesh_alias)) {
            /* Freed through a meshed alias: the object is the primary's
             * (mm/mesh.h), at the same offset. */
            mesh_delta = (uintptr_t)page_address(pg->mesh_primary) - base;
            pg = pg->mesh_primary;
            z = page_zone(pg);
        }
        run = 0;
        if (z != fz) {
            if (fz)
                zone_note_freed(fz, (unsigned long)(i - fstart) * c->size);
            fz = z;
            fstart = i;
        }
    };
    void *obj = head;
    if (n)
        slab_of(obj, 0);           /* the first: no slab before it to update */
    for (unsigned i = 0; i < n; i++) {
        void *next = i + 1 < n ? get_freepointer_checked(obj) : nullptr;
        if ((uintptr_t)obj - base >= slab_bytes) {
            slab_objects_freed(c, pg, run, to_free, &nr_to_free, ARRAY_SIZE(to_free), holes);
            slab_of(obj, i);
        }
        if (!pg->freelist)
            pg->freelist_tail = (uint32_t)((uintptr_t)obj - base);
        obj = (void *)((uintptr_t)obj + mesh_delta);
        set_freepointer(obj, pg->freelist);
        pg->freelist = obj;
        run++;
        obj = next;
    }
    if (n) {
        slab_objects_freed(c, pg, run, to_free, &nr_to_free, ARRAY_SIZE(to_free), holes);
        fbytes = (unsigned long)(n - fstart) * c->size;
    }
    c->active_objects -= n;
    c->nr_flushes++;
    c->life_frees += n;
    const bool mesh = unlikely(c->order == 0 && option_get(OPT_MESH) == 1) && mesh_due_on_free(c);
    spin_unlock(&c->lock);
    if (unlikely(holes))
        hole_batch_flush_full();
    if (fz)
        zone_note_freed(fz, fbytes);
    if (unlikely(mesh))
        mesh_timed();
    for (unsigned i = 0; i < nr_to_free; i++)
        discard_slab(c, to_free[i]);
    if (nr_to_free)
        compaction_slab_pages_freed((unsigned long)nr_to_free << c->order);
}

/* Whether c's objects are at least a third of the bytes all the classes
 * have handed out (the others' counts read without their locks).  Half
 * until session 48: PHP's arrays (a 56-byte header, 136 bytes of elements,
 * the strings of key and value) hold their elements in class 160, 47-50%
 * of the heap when the class passed its first MiB, so it kept single
 * pages, and the garbage collector's walks over 400K arrays took 1.5x
 * mimalloc's time (615 -> 442-488 ms of foreach with a stride class). */
static bool slab_class_dominates(const kmem_cache *c)
{
    unsigned long mine = c->active_objects * c->size, all = 0;
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
        if (cache_ready(&kmalloc_caches[i]))
            all += READ_ONCE(kmalloc_caches[i].active_objects) * kmalloc_info[i].size;
    return 3 * mine >= all;
}

void __slab_lifetime_update(kmem_cache *c)
{
    unsigned long r = c->life_allocs ? c->life_frees * 1024 / c->life_allocs : 1024;
    if (r > 1024)
        r = 1024;
    c->life_ratio = (uint16_t)((c->life_ratio + r) / 2);
    c->life_allocs = c->life_frees = 0;
    /* A single-page class's population built to last: its stride class
     * (mm/slab_dynamic.h), decided once, when it first holds
     * STRIDE_CLASS_MIN_BYTES.  Up to STRIDE_CLASS_ANY_MAX any size; above,
     * only one that leaves a page's tail unused. */
    if (unlikely(!c->stride_checked) && c->index < NR_KMALLOC_STATIC && c->order == 0 &&
        c->size <= KMALLOC_SMALL_MAX && (c->size <= STRIDE_CLASS_ANY_MAX || PAGE_SIZE % c->size != 0) &&
        c->active_objects * c->size >= STRIDE_CLASS_MIN_BYTES)
        c->stride_checked = c->life_ratio > SLAB_LIFE_LONG || option_get(OPT_MESH) ||
                            !slab_class_dominates(c) || kmalloc_dynamic_create_stride(c->index);
    migratetype mt = (migratetype)c->migratetype;
    if (!option_get(OPT_LIFETIME))
        return;                     /* learned (life_ratio) but not applied */
    if (mt == MIGRATE_RECLAIMABLE && c->life_ratio < SLAB_LIFE_LONG)
        mt = MIGRATE_LONGLIVED;
    else if (mt == MIGRATE_LONGLIVED && c->life_ratio > SLAB_LIFE_SHORT)
        mt = MIGRATE_RECLAIMABLE;
    if (mt != c->migratetype) {
        c->migratetype = mt;
        c->nr_life_changes++;
    }
}

unsigned long kmem_cache_order_partial_all()
{
    unsigned long sorted = 0;
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!cache_ready(c))
            continue;
        cache_lock(c);
        /* Fullness in eighths, so near-equal slabs are ordered by pageblock
         * and address instead. */
        auto less = [c](list_head *a, list_head *b) {
            page *pa = list_entry(a, page, lru), *pb = list_entry(b, page, lru);
            unsigned ua = pa->inuse * 8u / c->objects, ub = pb->inuse * 8u / c->objects;
            if (ua != ub)
                return ua > ub;                 /* fullest slab first */
            unsigned long fa = page_to_pfn(pa), fb = page_to_pfn(pb);
            uint16_t na = READ_ONCE(page_zone(pa)->pageblock_nr_free[fa >> pageblock_order]);
            uint16_t nb = READ_ONCE(page_zone(pb)->pageblock_nr_free[fb >> pageblock_order]);
            if (page_zone(pa) != page_zone(pb))
                return page_zone(pa)->id < page_zone(pb)->id;
            if (na != nb)
                return na < nb;                 /* fullest pageblock first */
            return fa < fb;                     /* lowest address first */
        };
        for (unsigned o = 0; o < NR_SLAB_OWNERS; o++)
            if (c->partial_owners[o / 64] & (1ull << (o % 64)))
                list_sort(&c->partial[o], less);
        sorted += c->nr_partial;
        spin_unlock(&c->lock);
    }
    return sorted;
}

void slab_owner_set_live(unsigned owner, bool live)
{
    owner &= NR_SLAB_OWNERS - 1;
    if (!owner)
        return;
    WRITE_ONCE(slab_owner_live[owner], live);
    if (live)
        return;
    /* Its partial slabs become unowned, in every cache that is set up. */
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!cache_ready(c))
            continue;
        spin_lock(&c->lock);
        list_head *l = &c->partial[owner];
        while (!list_empty(l)) {
            page *pg = list_first_entry(l, page, lru);
            write_slab_owner(c, pg, 0);
            list_move(&pg->lru, &c->partial[0]);
            c->nr_owner_partial[0]++;
            c->partial_owners[0] |= 1;
        }
        c->nr_owner_partial[owner] = 0;
        c->partial_owners[owner / 64] &= ~(1ull << (owner % 64));
        kmem_cache_node_row(owner)[c->index].took_from = 0;
        spin_unlock(&c->lock);
    }
}

bool kmem_cache_obj_is_free(kmem_cache *c, page *head, void *obj)
{
    bool found = false;
    cache_lock(c);
    void *alias = obj;              /* the address it was freed through (barn) */
    if (unlikely(head->flags & PG_mesh_alias)) {
        obj = (char *)page_address(head->mesh_primary) + ((char *)obj - (char *)page_address(head));
        head = head->mesh_primary;
    }
    char *base = (char *)page_address(head);
    size_t idx = (size_t)((char *)obj - base) / c->size;
    if (idx >= head->carved)
        found = true;
    else if (head->nr_holes && (obj_page_mask(c, (unsigned)idx) & head[1].slab_hole_mask))
        found = true;                   /* parked in a hole */
    for (void *o = head->freelist; o && !found; o = get_freepointer_checked(o))
        if (o == obj)
            found = true;
    for (unsigned i = 0; i < c->nr_barn && !found; i++)       /* parked in the barn */
        for (void *o = c->barn[i].head; o && !found; o = get_freepointer_checked(o))
            if (o == obj || o == alias)
                found = true;
    spin_unlock(&c->lock);
    return found;
}

void kmem_cache_barn_put(kmem_cache *c, void *head, unsigned n, unsigned owner)
{
    cache_lock(c);
    if (c->nr_barn < SLAB_BARN_SHEAVES) {
        c->barn[c->nr_barn++] = slab_sheaf{head, (uint16_t)n, (uint8_t)owner};
        c->barn_objects += n;
        c->nr_flushes++;
        spin_unlock(&c->lock);
        return;
    }
    spin_unlock(&c->lock);
    kmem_cache_free_bulk(c, head, n);
}

void *kmem_cache_barn_take(kmem_cache *c, unsigned owner, unsigned max, unsigned *got)
{
    if (!cache_ready(c) || !READ_ONCE(c->nr_barn))
        return nullptr;                 /* racy peek: the common miss takes no lock */
    void *head = nullptr;
    cache_lock(c);
    unsigned split = c->nr_barn;        /* an owner's sheaf too big for the room */
    for (unsigned i = 0; i < c->nr_barn; i++) {
        slab_sheaf &sh = c->barn[i];
        if (sh.owner != owner)
            continue;
        if (sh.nr <= max) {
            head = sh.head;
            *got = sh.nr;
            c->barn_objects -= sh.nr;
            sh = c->barn[--c->nr_barn];
            split = c->nr_barn;
            break;
        }
        split = i;
    }
    if (!head && split < c->nr_barn) {
        /* Only sheaves larger than the bin's room (a bin kept small by the
         * thread's budget): take its first `max` objects, the rest stays.
         * Else such sheaves would sit in the barn until a timed pass. */
        slab_sheaf &sh = c->barn[split];
        void *last = sh.head;
        for (unsigned k = 1; k < max; k++)
            last = get_freepointer_checked(last);
        head = sh.head;
        sh.head = get_freepointer_checked(last);
        set_freepointer(last, nullptr);
        sh.nr = (uint16_t)(sh.nr - max);
        *got = max;
        c->barn_objects -= max;
    }
    if (head) {
        c->nr_refills++;
        c->flushes_at_refill = c->nr_flushes;
    }
    spin_unlock(&c->lock);
    return head;
}

void kmem_cache_shrink_all()
{
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!cache_ready(c))
            continue;       /* never used: nothing to give back (and its pages stay untouched) */
        slab_sheaf sheaves[SLAB_BARN_SHEAVES];
        cache_lock(c);
        page *pg = c->empty_slab;
        c->empty_slab = nullptr;
        if (pg)
            c->nr_slabs--;
        unsigned nr = c->nr_barn;
        for (unsigned k = 0; k < nr; k++)
            sheaves[k] = c->barn[k];
        c->nr_barn = 0;
        c->barn_objects = 0;
        spin_unlock(&c->lock);
        if (pg)
            discard_slab(c, pg);
        for (unsigned k = 0; k < nr; k++)
            kmem_cache_free_bulk(c, sheaves[k].head, sheaves[k].nr);
    }
}

unsigned long kmem_cache_punch_holes_all(bool idle_only)
{
    if (!option_get(OPT_SLAB_HOLES))
        return 0;
    unsigned long punched = 0;
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!cache_ready(c) || !c->order || c->order > SLAB_HOLES_MAX_ORDER)
            continue;
        if (!READ_ONCE(c->nr_partial) && !READ_ONCE(c->holes_defer_ms))
            continue;
        /* malloc_trim: nothing freed into the cache's slabs since the last
         * trim looked at every one of them (kmem_cache_free_bulk is the
         * only way an object goes back on a slab, and it counts nr_flushes;
         * refills carve only what they hand out), so no page of them became
         * free since: nothing to give back.  Racy reads, as above: a free
         * racing with the trim is the next trim's.  Not with meshing, whose
         * passes change slabs without a free.  stress-ng's malloc stressor
         * trims every few dozen operations: a trim after 8 of them on a heap
         * of 32K blocks walked ~30 partial slabs a time (546 instructions
         * each). */
        if (!idle_only && READ_ONCE(c->trim_flushes) == READ_ONCE(c->nr_flushes) &&
            !READ_ONCE(c->holes_defer_ms) && !option_get(OPT_MESH))
            continue;
        cache_lock(c);
        bool idle = c->nr_refills == c->punch_refills;
        /* Frees since the previous pass, or frees that punched no holes
         * (deferred: their free pages wait for this pass). */
        bool freed = c->nr_flushes != c->punch_flushes || c->holes_defer_ms;
        c->punch_refills = c->nr_refills;
        c->punch_flushes = c->nr_flushes;
        if (idle || !idle_only) {
            /* A pass with no refill: the class is not cycled through now,
             * its frees may punch holes again (malloc_trim: the program
             * asks for everything back, and forgets the past too). */
            c->holes_defer_ms = 0;
            c->holes_defer_shift = 0;
        }
        if (!idle_only || (idle && freed)) {
            for (unsigned w = 0; w < NR_SLAB_OWNERS / 64; w++) {
                uint64_t bits = c->partial_owners[w];
                while (bits) {
                    unsigned o = w * 64 + (unsigned)__builtin_ctzll(bits);
                    bits &= bits - 1;
                    list_head *l = &c->partial[o];
                    for (list_head *e = l->next; e != l; e = e->next) {
                        page *pg = list_entry(e, page, lru);
                        if (slab_punch_due(c, pg, !idle_only))
                            punched += __slab_punch_holes(c, pg);
                    }
                }
            }
            if (!idle_only)
                c->trim_flushes = c->nr_flushes;
        }
        spin_unlock(&c->lock);
        hole_batch_flush_full();
    }
    slab_holes_flush();     /* the batch too: what the caller asks back is back */
    return punched;
}

/* Fork: no cache is set up while kmem_cache_init_lock is held, so the
 * caches set up are the same set from here to the unlock, and the others'
 * locks are free (nobody takes one before its cache is set up). */
void kmem_cache_lock_all()
{
    spin_lock(&kmem_cache_init_lock);
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
        if (cache_ready(&kmalloc_caches[i]))
            spin_lock(&kmalloc_caches[i].lock);
    spin_lock(&hole_batch.lock);    /* innermost: nobody holding it waits for another lock */
}

void kmem_cache_unlock_all()
{
    spin_unlock(&hole_batch.lock);
    for (unsigned i = NR_KMALLOC_CLASSES; i-- > 1;)
        if (cache_ready(&kmalloc_caches[i]))
            spin_unlock(&kmalloc_caches[i].lock);
    spin_unlock(&kmem_cache_init_lock);
}

void kmem_cache_reinit_locks()
{
    spin_lock_init(&kmem_cache_init_lock);
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
        if (cache_ready(&kmalloc_caches[i]))
            spin_lock_init(&kmalloc_caches[i].lock);
    spin_lock_init(&hole_batch.lock);
}

} // namespace kalloc
