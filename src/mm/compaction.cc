/*
 * mm/compaction.cc - compaction of free memory (see compaction.h).
 */
#include "mm/compaction.h"
#include "mm/mesh.h"

#include "mm/page_alloc.h"
#include "mm/percpu_sheaves.h"
#include "mm/per_cpu_pages.h"
#include "mm/slab.h"

namespace kalloc {

compact_event_stats compact_stats;
spinlock_t compact_lock = SPINLOCK_INIT;

static inline void count_compact_event(unsigned long *counter, unsigned long n = 1)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------------------
 * Fragmentation measures
 * ------------------------------------------------------------------------- */

void __fill_contig_page_info(zone *z, unsigned order, contig_page_info *info)
{
    *info = {};
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++) {
        unsigned long blocks = z->free_area[o].nr_free;
        info->free_blocks_total += blocks;
        info->free_pages += blocks << o;
        if (o >= order)
            info->free_blocks_suitable += blocks << (o - order);
    }
}

int __fragmentation_index(zone *z, unsigned order)
{
    contig_page_info info;
    __fill_contig_page_info(z, order, &info);
    if (!info.free_blocks_total)
        return 0;
    if (info.free_blocks_suitable)
        return -1000;
    unsigned long requested = 1ul << order;
    return (int)(1000 - (1000 + info.free_pages * 1000 / requested) / info.free_blocks_total);
}

unsigned __fragmentation_score_zone(zone *z)
{
    contig_page_info info;
    __fill_contig_page_info(z, pageblock_order, &info);
    unsigned long free = info.free_pages + zone_pcp_pages(z);
    if (!free)
        return 0;
    unsigned long whole = info.free_blocks_suitable << pageblock_order;
    return (unsigned)((free - whole) * 100 / free);
}

/* Free pages of z not in free pageblocks.  Caller holds z->lock. */
static unsigned long __fragmented_free_pages(zone *z)
{
    contig_page_info info;
    __fill_contig_page_info(z, pageblock_order, &info);
    return info.free_pages + zone_pcp_pages(z) - (info.free_blocks_suitable << pageblock_order);
}

unsigned fragmentation_score()
{
    unsigned long weighted = 0, pages = 0;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        weighted += (unsigned long)__fragmentation_score_zone(z) * z->spanned_pages;
        pages += z->spanned_pages;
        spin_unlock(&z->lock);
    }
    return pages ? (unsigned)(weighted / pages) : 0;
}

/* ---------------------------------------------------------------------------
 * Deferral (the kernel's, line for line)
 * ------------------------------------------------------------------------- */

void __defer_compaction(zone *z, int order)
{
    z->compact_considered = 0;
    z->compact_defer_shift++;
    if (order < z->compact_order_failed)
        z->compact_order_failed = order;
    if (z->compact_defer_shift > COMPACT_MAX_DEFER_SHIFT)
        z->compact_defer_shift = COMPACT_MAX_DEFER_SHIFT;
}

bool __compaction_deferred(zone *z, int order)
{
    unsigned long defer_limit = 1ul << z->compact_defer_shift;
    if (order < z->compact_order_failed)
        return false;
    if (++z->compact_considered >= defer_limit) {
        z->compact_considered = (unsigned)defer_limit;
        return false;
    }
    return true;
}

void __compaction_defer_reset(zone *z, int order, bool alloc_success)
{
    if (alloc_success) {
        z->compact_considered = 0;
        z->compact_defer_shift = 0;
    }
    if (order >= z->compact_order_failed)
        z->compact_order_failed = order + 1;
}

/* ---------------------------------------------------------------------------
 * Direct compaction
 * ------------------------------------------------------------------------- */

page *try_to_compact_pages(unsigned order, migratetype mt, bool *zeroed)
{
    unsigned long need = 1ul << order;
    bool drained = false;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        if (READ_ONCE(z->nr_free_pages) + zone_pcp_pages(z) < need)
            continue;
        spin_lock(&z->lock);
        bool go = __fragmentation_index(z, order) > extfrag_threshold;
        if (go && __compaction_deferred(z, (int)order)) {
            count_compact_event(&compact_stats.compact_deferred);
            go = false;
        }
        spin_unlock(&z->lock);
        if (!go)
            continue;
        count_compact_event(&compact_stats.compact_stall);
        if (!drained) {
            drain_all_pages();      /* pieces on the per-CPU lists merge now */
            drained = true;
        }
        spin_lock(&z->lock);
        page *pg = __rmqueue(z, order, mt, zeroed);
        if (pg) {
            count_compact_event(&compact_stats.compact_success);
            __compaction_defer_reset(z, (int)order, true);
        } else {
            count_compact_event(&compact_stats.compact_fail);
            __defer_compaction(z, (int)order);
        }
        spin_unlock(&z->lock);
        if (pg)
            return pg;
    }
    return nullptr;
}

/* ---------------------------------------------------------------------------
 * The free scanner and a compaction run
 * ------------------------------------------------------------------------- */

/*
 * The free scanner.  With the free pages of every pageblock
 * (z->pageblock_nr_free, kept by the free lists), order each free list: resident blocks first
 * (the lists' invariant), those in the fullest pageblocks (fewest free
 * pages) first; reported blocks after.  Allocation takes the head of a
 * list, so it fills the holes of the fullest pageblocks, and the emptier
 * pageblocks drain.
 *   exact   (full compaction) a merge sort: within a fullness, lowest
 *           address first, so allocation also works up from the bottom of
 *           the zone and the top drains (zone_shrink_all trims it);
 *   coarse  (proactive compaction) one pass that buckets blocks by their
 *           pageblock's free pages in 64-page steps, keeping the order
 *           within a bucket: O(n), one touch per block (an exact sort of
 *           40,000 scattered blocks costs about 20 ms, a pass about 2 ms).
 * Returns the free blocks ordered.  Caller holds z->lock and has drained
 * the per-CPU lists.
 */
unsigned long __isolate_free_scan(zone *z, bool exact)
{
    unsigned long nr_blocks = (z->spanned_pages + pageblock_nr_pages - 1) >> pageblock_order;
    /* z->pageblock_nr_free is kept by the free lists themselves
     * (page_alloc.cc: account_pageblock_free), so it is exact here. */
    const uint16_t *nr_free = z->pageblock_nr_free;
    (void)nr_blocks;
    unsigned long scanned = 0;
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        scanned += z->free_area[o].nr_free;
    if (!exact) {
        /* Buckets 0..7: resident, by free pages / 64; bucket 8: reported. */
        constexpr unsigned NR_BUCKETS = pageblock_nr_pages / 64 + 1;
        for (unsigned o = 0; o < pageblock_order; o++)     /* larger blocks fill whole pageblocks */
            for (auto &l : z->free_area[o].free_list) {
                list_head bucket[NR_BUCKETS];
                for (auto &b : bucket)
                    INIT_LIST_HEAD(&b);
                while (!list_empty(&l)) {
                    page *pg = list_first_entry(&l, page, lru);
                    unsigned k = (pg->flags & PG_reported)
                                     ? NR_BUCKETS - 1
                                     : nr_free[page_to_pfn(pg) >> pageblock_order] / 64u;
                    if (k > NR_BUCKETS - 1)
                        k = NR_BUCKETS - 1;
                    if (!(pg->flags & PG_reported) && k == NR_BUCKETS - 1)
                        k = NR_BUCKETS - 2;     /* 512 free: only for blocks >= a pageblock */
                    list_move_tail(&pg->lru, &bucket[k]);
                }
                for (auto &b : bucket)
                    list_splice_tail_init(&b, &l);
            }
        return scanned;
    }
    auto less = [nr_free](list_head *a, list_head *b) {
        page *pa = list_entry(a, page, lru), *pb = list_entry(b, page, lru);
        bool ra = pa->flags & PG_reported, rb = pb->flags & PG_reported;
        if (ra != rb)
            return rb;                          /* resident first */
        unsigned long fa = page_to_pfn(pa), fb = page_to_pfn(pb);
        if (!ra) {
            uint16_t na = nr_free[fa >> pageblock_order], nb = nr_free[fb >> pageblock_order];
            if (na != nb)
                return na < nb;                 /* fullest pageblock first */
        }
        return fa < fb;                         /* lowest address first */
    };
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        for (auto &l : z->free_area[o].free_list)
            list_sort(&l, less);
    return scanned;
}

/* One run over every zone.  Caller holds compact_lock. */
static unsigned long __compact_run(compact_mode mode)
{
    drain_all_pages();
    pcs_flush_all();                /* per-CPU sheaves -> their slabs */
    kmem_cache_shrink_all();        /* spare empty slabs -> the per-CPU lists */
    drain_all_pages();
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        count_compact_event(&compact_stats.compact_free_scanned,
                            __isolate_free_scan(z, mode == COMPACT_FULL));
        spin_unlock(&z->lock);
    }
    /* Ordering every partial slab costs O(n log n) with a cache miss per
     * slab (about 70 ms for 140,000 slabs): only on demand.  Between full
     * compactions, the partial lists stay roughly fullest first (slub.cc). */
    /* Half-empty slabs merged (KALLOC_MESH), before the lists are ordered:
     * their pages are punched from the memory file (mesh_pages), not free
     * blocks, so not counted in `released`. */
    if (mode == COMPACT_FULL)
        mesh_all();
    if (mode == COMPACT_FULL)
        count_compact_event(&compact_stats.compact_slabs_ordered, kmem_cache_order_partial_all());
    unsigned long released = zone_reclaim_all(mode == COMPACT_FULL ? 0 : pageblock_order);
    if (mode == COMPACT_FULL)   /* free pages inside partial slabs (slab holes: counted
                                   in slab_holes_punched, not here, whose pages are
                                   free blocks of the zones) */
        kmem_cache_punch_holes_all(false);
    if (mode == COMPACT_FULL)
        zone_shrink_all();
    count_compact_event(&compact_stats.compact_released, released);
    return released;
}

unsigned long compact_memory(compact_mode mode)
{
    spin_lock(&compact_lock);
    if (mode == COMPACT_FULL)
        count_compact_event(&compact_stats.compact_full);
    unsigned long released = __compact_run(mode);
    spin_unlock(&compact_lock);
    return released;
}

/* The kernel's kcompactd_do_work, run by the thread that emptied slabs. */
static void kcompactd_do_work()
{
    if (!spin_trylock(&compact_lock))
        return;                     /* a compaction is running */
    static bool selected[MAX_NR_ZONES];   /* under compact_lock */
    bool any = false;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        selected[i] = false;
        spin_lock(&z->lock);
        if (__fragmentation_score_zone(z) > compaction_wmark_high &&
            __fragmented_free_pages(z) >= COMPACT_MIN_FRAGMENTED) {
            if (__compaction_deferred(z, (int)pageblock_order))
                count_compact_event(&compact_stats.compact_deferred);
            else
                selected[i] = any = true;
        }
        spin_unlock(&z->lock);
    }
    if (any) {
        count_compact_event(&compact_stats.compact_wake);
        __compact_run(COMPACT_PROACTIVE);
        for (unsigned i = 0; i < n; i++) {
            if (!selected[i])
                continue;
            zone *z = zones[i];
            spin_lock(&z->lock);
            if (__fragmentation_score_zone(z) < compaction_wmark_low) {
                count_compact_event(&compact_stats.compact_success);
                __compaction_defer_reset(z, (int)pageblock_order, true);
            } else {
                count_compact_event(&compact_stats.compact_fail);
                __defer_compaction(z, (int)pageblock_order);
            }
            spin_unlock(&z->lock);
        }
    }
    spin_unlock(&compact_lock);
}

void compaction_slab_pages_freed(unsigned long nr)
{
    static unsigned long slab_pages_freed;
    unsigned long before = __atomic_fetch_add(&slab_pages_freed, nr, __ATOMIC_RELAXED);
    if (before / COMPACT_CHECK_PAGES != (before + nr) / COMPACT_CHECK_PAGES)
        kcompactd_do_work();
}

} // namespace kalloc
