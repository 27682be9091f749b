/*
 * mm/page_alloc.cc - the buddy allocator (mirrors mm/page_alloc.c).
 *
 * Free memory is kept in zone->free_area[order].free_list[migratetype]:
 * blocks of 2^order pages, naturally aligned.  Allocation takes the smallest
 * resident block of the wanted type that fits, else the smallest reported
 * one (__rmqueue_smallest), and splits it, returning the halves (expand);
 * when the type has nothing, it falls back to other types in the order of
 * fallbacks[][]: the largest block whose whole 2 MiB pageblock it may claim
 * (__rmqueue_claim), else the smallest block that fits, claiming nothing
 * (__rmqueue_steal), so each type stays packed in few pageblocks.  Freeing
 * merges a block with its buddy (pfn ^ 2^order) as long as the buddy is free
 * and of the same order (__free_one_page).
 *
 * Orders 0..3 go through the current CPU's pageset, and so do large
 * allocations of 9..512 pages (alloc_pages_exact / free_pages_exact: runs,
 * see per_cpu_pages.h); a miss takes the best-fitting run of free blocks
 * across buddy boundaries that is shorter than twice a block of its order
 * (__rmqueue_run: large blocks are freed as page ranges, never asked for
 * alignment), resident runs first, or else a buddy block whose tail goes
 * back, under one hold of the zone lock (rmqueue_buddy).
 * An allocated block's head page keeps the migrate type it was asked for
 * (pg->migratetype), so pagetypeinfo can count mixed pageblocks.  Before a
 * zone grows for a costly order (> 3), direct compaction may drain the
 * per-CPU lists and retry (try_to_compact_pages, compaction.h).
 *
 * Every free block carries when it became free (free_time); resident ones of
 * order >= VMSCAN_MIN_ORDER are also on the zone's age list (free_lru), and
 * each pageblock counts its free pages (pageblock_nr_free): reclaim and
 * decay (mm/vmscan.h) and the hugepage policy (mm/khugepaged.h) work from
 * these.  A free that pushes the zone over its low watermark flags reclaim;
 * the page allocator's entry points call vmscan_tick() once they have
 * dropped the zone lock.
 *
 * Locking: zone->lock around every free-list operation; the __functions
 * expect it held.  Lock order: (compact_lock ->) kmem_cache.lock ->
 * per_cpu_pages.lock ->
 * zone.lock -> zone_list_lock.
 */
#include "mm/page_alloc.h"

#include "mm/compaction.h"
#include "mm/per_cpu_pages.h"
#include "mm/khugepaged.h"
#include "mm/vmscan.h"

#include "platform/os.h"
#include "platform/printk.h"

namespace kalloc {

page_alloc_stats pa_stats;

/*
 * When a type's lists are empty, try the others in this order (the kernel's
 * table, extended with kalloc's long-lived slabs; see mmzone.h for what the
 * types mean).  The rule is "nearest lifetime first":
 *   metadata (never freed) goes next to long-lived slabs, then short-lived
 *   slabs, and only last into large-block pageblocks;
 *   long-lived slabs go next to metadata, then short-lived slabs;
 *   short-lived slabs go next to large blocks (both come back soon), then
 *   long-lived slabs, metadata last;
 *   large blocks go next to short-lived slabs, metadata last.
 */
const migratetype fallbacks[MIGRATE_TYPES][MIGRATE_TYPES - 1] = {
    [MIGRATE_UNMOVABLE] = {MIGRATE_LONGLIVED, MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE},
    [MIGRATE_MOVABLE] = {MIGRATE_RECLAIMABLE, MIGRATE_LONGLIVED, MIGRATE_UNMOVABLE},
    [MIGRATE_RECLAIMABLE] = {MIGRATE_MOVABLE, MIGRATE_LONGLIVED, MIGRATE_UNMOVABLE},
    [MIGRATE_LONGLIVED] = {MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE},
};

/* ---------------------------------------------------------------------------
 * Free lists
 * ------------------------------------------------------------------------- */

/* Pages of a free block of `order` at pfn enter (+) or leave (-) the free
 * lists: the pageblock free counts. */
static inline void account_pageblock_free(zone *z, unsigned long pfn, unsigned order, int sign)
{
    if (order < pageblock_order) {
        z->pageblock_nr_free[pfn >> pageblock_order] += (uint16_t)(sign * (1 << order));
        return;
    }
    for (unsigned long b = pfn >> pageblock_order; b < (pfn + (1ul << order)) >> pageblock_order; b++)
        z->pageblock_nr_free[b] += (uint16_t)(sign * (int)pageblock_nr_pages);
}

/* Whether a resident free block goes on the zone's age list: big enough to
 * be worth a madvise, and not hugetlb memory (never reclaimed). */
static inline bool block_reclaimable(const zone *z, unsigned long pfn, unsigned order)
{
    if (order < VMSCAN_MIN_ORDER)
        return false;
    return !z->nr_hugetlb_pages || !(z->pageblock_thp[pfn >> pageblock_order] & PB_HUGETLB);
}

/* resident: of a block that is not reported, how many of its pages may be
 * resident (an upper bound, clamped to 1..2^order); exact: it was read with
 * mincore (PG_scanned). */
static inline void add_to_free_list(zone *z, page *pg, unsigned order, migratetype mt,
                                    bool reported, uint32_t free_time, bool reclaimed = false,
                                    uint32_t resident = UINT32_MAX, bool exact = false)
{
    unsigned long pfn = page_to_pfn(pg);
    /* A pageblock made huge before its first touch is resident whole: its
     * pieces that were never handed out are backed (and still zero). */
    if (reported && unlikely(z->pageblock_thp[pfn >> pageblock_order] & PB_THP_FAULT)) {
        reported = false;
        resident = UINT32_MAX;
        exact = true;
    }
    if (resident > (1u << order))
        resident = 1u << order;
    else if (!resident)
        resident = 1;
    pg->flags = PG_buddy | (reported ? PG_reported : 0) | (reclaimed ? PG_reclaimed : 0) |
                (!reported && exact ? PG_scanned : 0);
    pg->nr_resident = reported ? 0 : resident;
    pg->order = (uint8_t)order;
    pg->migratetype = mt;
    pg->compound_head = 0;
    pg->free_time = free_time;
    /* Resident blocks at the head, reported ones at the tail: allocation
     * reuses memory that is still backed before faulting in fresh pages. */
    if (reported)
        list_add_tail(&pg->lru, &z->free_area[order].free_list[mt]);
    else
        list_add(&pg->lru, &z->free_area[order].free_list[mt]);
    z->free_area[order].nr_free++;
    z->nr_free_pages += 1ul << order;
    account_pageblock_free(z, pfn, order, 1);
    if (!reported) {
        z->nr_free_resident += resident;
        if (block_reclaimable(z, pfn, order)) {
            pg->flags |= PG_lru;
            free_lru_add(z, pg);
            z->nr_free_lru += 1ul << order;
            if (!exact)
                z->nr_free_unscanned += resident;
        }
    }
}

/* Take a block off the age list (it is being reported or allocated). */
static inline void del_from_lru(zone *z, page *pg, unsigned order)
{
    if (pg->flags & PG_lru) {
        free_lru_del(z, pg);
        z->nr_free_lru -= 1ul << order;
        if (!(pg->flags & PG_scanned))
            z->nr_free_unscanned -= pg->nr_resident;
        pg->flags &= (uint16_t)~PG_lru;
    }
}

static_assert((sizeof(page) << DESC_OFF_MIN_ORDER) - sizeof(page) >= 2 * PAGE_SIZE - 1,
              "a whole descriptor page past the head's");

unsigned long block_descriptor_pages(const page *pg, unsigned order)
{
    if (order < DESC_OFF_MIN_ORDER)
        return 0;
    uintptr_t from = ((uintptr_t)(pg + 1) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    uintptr_t to = (uintptr_t)(pg + (1ul << order)) & ~(PAGE_SIZE - 1);
    return (to - from) >> PAGE_SHIFT;
}

/* A free block of order >= DESC_OFF_MIN_ORDER was just given back to the OS
 * (reported): give its descriptors back too, the whole pages of mem_map
 * past the head's descriptor (descriptors of pages inside a free block carry
 * nothing; walkers skip a free block by its head's order, and a zero
 * descriptor is a valid one).  Fresh blocks from growth have never been
 * touched (fresh = true: no madvise needed). */
static void __block_descriptors_off(zone *z, page *pg, unsigned order, bool fresh)
{
    if (!fresh) {
        uintptr_t from = ((uintptr_t)(pg + 1) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
        os_decommit((void *)from, block_descriptor_pages(pg, order) << PAGE_SHIFT);
    }
    pg->flags |= PG_desc_off;
}

static inline void del_from_free_list(zone *z, page *pg, unsigned order)
{
    list_del(&pg->lru);
    del_from_lru(z, pg, order);
    z->free_area[order].nr_free--;
    z->nr_free_pages -= 1ul << order;
    account_pageblock_free(z, page_to_pfn(pg), order, -1);
    if (!(pg->flags & PG_reported))
        z->nr_free_resident -= pg->nr_resident;
    pg->flags = 0;
}

/* Free block head of exactly this order (the kernel's page_is_buddy). */
static inline bool page_is_buddy(const page *pg, unsigned order)
{
    return (pg->flags & PG_buddy) && pg->order == order;
}

/* ---------------------------------------------------------------------------
 * Freeing
 * ------------------------------------------------------------------------- */

/* A free block on the lists, just given back to the OS in place (malloc_trim:
 * madvise under the zone lock), becomes reported.  Resident blocks go after
 * reported ones, so the block moves to its list's tail. */
static void __mark_block_reported(zone *z, page *pg, unsigned order)
{
    del_from_lru(z, pg, order);
    pg->flags = (uint16_t)((pg->flags & ~PG_scanned) | PG_reported | PG_reclaimed);
    list_move_tail(&pg->lru, &z->free_area[order].free_list[pg->migratetype]);
    z->nr_free_resident -= pg->nr_resident;
    pg->nr_resident = 0;
    z->nr_reported += 1ul << order;
    if (order >= DESC_OFF_MIN_ORDER)
        __block_descriptors_off(z, pg, order, false);
}

static void __free_one_block(zone *z, unsigned long pfn, unsigned order, bool reported,
                             bool reclaimed, bool fresh, uint32_t now,
                             uint32_t resident = UINT32_MAX, bool exact = false);

void __isolate_free_block(zone *z, page *pg)
{
    unsigned order = pg->order;
    uint16_t scanned = pg->flags & PG_scanned;   /* nr_resident stays in the head */
    del_from_free_list(z, pg, order);
    pg->flags = PG_isolated | scanned;
    pg->order = (uint8_t)order;
    z->nr_isolated += 1ul << order;
}

void __putback_reported_block(zone *z, page *pg, unsigned order)
{
    z->nr_isolated -= 1ul << order;
    z->nr_reported += 1ul << order;
    __free_one_block(z, page_to_pfn(pg), order, true, true, false, pg->free_time);
}

void __putback_scanned_block(zone *z, page *pg, unsigned order, uint32_t resident)
{
    z->nr_isolated -= 1ul << order;
    bool reclaimed = pg->flags & PG_reclaimed;   /* part of it was given back before */
    if (!resident) {     /* never touched, but given back: swapped pages read as zero too */
        z->nr_reported += 1ul << order;
        __free_one_block(z, page_to_pfn(pg), order, true, reclaimed, false, pg->free_time);
    } else {
        __free_one_block(z, page_to_pfn(pg), order, false, reclaimed, false, pg->free_time,
                         resident, true);
    }
}

void __free_one_page(zone *z, unsigned long pfn, unsigned order, bool reported)
{
    __free_one_page_at(z, pfn, order, reported, false, vmscan_now());
}

void __free_one_page_fresh(zone *z, unsigned long pfn, unsigned order, bool reported, bool fresh)
{
    __free_one_page_at(z, pfn, order, reported, fresh, vmscan_now());
}

/* Free a block that has been free since `now` (a reclaimed block keeps the
 * time it became free): a merged block is as young as its youngest part. */
void __free_one_page_at(zone *z, unsigned long pfn, unsigned order, bool reported, bool fresh,
                        uint32_t now)
{
    __free_one_block(z, pfn, order, reported, false, fresh, now);
}

/* reclaimed: the block, or part of it, was given back by reclaim (not fresh
 * from growth); a merged block is reclaimed when any part was, so a block
 * freed beside a reclaimed buddy still counts a refault for the pages it
 * does not hold when it is taken (take_free_block).  resident
 * (not reported): how many of its pages may be resident, all unless given;
 * a merged block adds its parts' counts, and is exact (PG_scanned) when
 * every part was (reported or read). */
static void __free_one_block(zone *z, unsigned long pfn, unsigned order, bool reported,
                             bool reclaimed, bool fresh, uint32_t now, uint32_t resident, bool exact)
{
    if (reported) {
        resident = 0;
        exact = true;
    } else if (resident > (1u << order)) {
        resident = 1u << order;
    }
    /* The block's head forgets what it was (slab, large...): a later free of
     * the same pointer must see a free page, not a live block. */
    pfn_to_page(z, pfn)->flags = 0;
    while (order < MAX_ORDER) {
        unsigned long buddy_pfn = pfn ^ (1ul << order);
        if (buddy_pfn + (1ul << order) > z->spanned_pages)
            break;
        page *buddy = pfn_to_page(z, buddy_pfn);
        if (!page_is_buddy(buddy, order))
            break;
        reported = reported && (buddy->flags & PG_reported);
        reclaimed = reclaimed || (buddy->flags & PG_reclaimed);
        resident += buddy->nr_resident;   /* 0 when reported */
        exact = exact && (buddy->flags & (PG_reported | PG_scanned));
        if ((int32_t)(buddy->free_time - now) > 0)
            now = buddy->free_time;
        del_from_free_list(z, buddy, order);
        pfn &= buddy_pfn;
        order++;
    }
    page *pg = pfn_to_page(z, pfn);
    migratetype mt = get_pageblock_migratetype(z, pfn);
    if (order > pageblock_order)      /* spans pageblocks: one type for all */
        for (unsigned long b = pfn; b < pfn + (1ul << order); b += pageblock_nr_pages)
            set_pageblock_migratetype(z, b, mt);
    add_to_free_list(z, pg, order, mt, reported, now, reclaimed, resident, exact);
    /* Reported as it went on the list (in a pageblock made huge at its first
     * fault it went on resident: its descriptors stay). */
    if (!(pg->flags & PG_reported)) {
        if (!exact)              /* exact: a block reclaim read, not a free */
            __zone_watermark_check(z);
    } else if (order >= DESC_OFF_MIN_ORDER) {
        __block_descriptors_off(z, pg, order, fresh);
    }
}

/* ---------------------------------------------------------------------------
 * Allocation
 * ------------------------------------------------------------------------- */

/* Split a block of order `high` down to `low`, giving the upper halves back
 * to the free lists of type mt (they keep the block's reported state).
 * desc_off: the block's descriptors past its head's page were off
 * (PG_desc_off); the halves that can stay so (order >= DESC_OFF_MIN_ORDER,
 * still reported) keep them off; the others have nothing to set up (a zero
 * descriptor is valid: its zone comes from its address).  So the first split
 * of a fresh 4 MiB block touches only the halves' heads, 4 pages of mem_map,
 * not 12. */
static inline void expand(zone *z, page *pg, unsigned low, unsigned high, migratetype mt,
                          bool reported, uint32_t free_time, bool reclaimed, bool desc_off,
                          uint32_t resident, bool exact)
{
    unsigned long pfn = page_to_pfn(pg);
    /* Which half holds a block's resident pages is not known: each half may
     * hold all of them (at most its size), an upper bound again; a block
     * read (exact) as resident whole splits into halves read as whole. */
    bool whole = exact && resident >= (1u << high);
    while (high > low) {
        high--;
        page *half = pfn_to_page(z, pfn + (1ul << high));
        add_to_free_list(z, half, high, mt, reported, free_time, reclaimed, resident, whole);
        if (desc_off && high >= DESC_OFF_MIN_ORDER && (half->flags & PG_reported))
            half->flags |= PG_desc_off;
    }
}

/* nr pages were taken from a free block (part of) which reclaim had given
 * back: those of them it may not hold are a refault.  A reported block
 * holds none; another holds at most `resident` (its count, an upper bound
 * or exact), so at least nr - resident of the taken pages fault in.  Before,
 * only reported blocks counted: a block given back and then merged with a
 * resident buddy faulted its given-back part in uncounted (a stress
 * program's reclaim gave back 661K pages, 80K were counted refaulted). */
static inline void __refault_block(zone *z, bool reported, uint32_t resident, unsigned long nr)
{
    if (!reported)
        nr = resident >= nr ? 0 : nr - resident;
    if (nr)
        __workingset_refault(z, nr);
}

/* Take free block pg of order o off its list and split it down to `order`,
 * the rest going back to the same list's type (free since the block was);
 * *zeroed tells whether the block was reported (reads as zero). */
static page *take_free_block(zone *z, page *pg, unsigned o, unsigned order, bool *zeroed)
{
    migratetype mt = (migratetype)pg->migratetype;
    bool reported = pg->flags & PG_reported;
    bool reclaimed = pg->flags & PG_reclaimed;
    uint32_t free_time = pg->free_time;
    bool desc_off = pg->flags & PG_desc_off;
    uint32_t resident = pg->nr_resident;
    bool exact = pg->flags & PG_scanned;
    pg->flags &= (uint16_t)~PG_desc_off;    /* expand sets up what it needs */
    del_from_free_list(z, pg, o);
    /* A wholly free, not resident pageblock starts to fill: the hugepage
     * policy may advise it before its first touch (mm/khugepaged.h); then
     * the rest of it goes back resident (add_to_free_list), free from now. */
    if (reported && o >= pageblock_order &&
        __khugepaged_fresh_pageblocks(z, page_to_pfn(pg), order, mt))
        free_time = vmscan_now();
    expand(z, pg, order, o, mt, reported, free_time, reclaimed, desc_off, resident, exact);
    if (reclaimed)
        __refault_block(z, reported, resident, 1ul << order);
    __zone_use_rises(z, reported, 1ul << order);
    if (zeroed)
        *zeroed = reported;
    return pg;
}

/* The smallest free block of type mt that fits, resident first: a reported
 * block (given back with madvise) faults in again when it is used, a
 * resident one of a larger order costs only its split.  Each list keeps its
 * resident blocks at the head, so one look per order tells.  The kernel
 * takes the smallest block whatever it holds (its free pages are all
 * resident).  With the smallest block first, realloc-string's strings
 * refaulted reported pages while 1.5-2 MiB of resident free memory waited
 * in larger blocks: peak RSS 6.99 -> 6.43 MiB (medians of 7), instructions
 * +0.1% (callgrind, realloc-string and xmalloc). */
static page *__rmqueue_smallest(zone *z, unsigned order, migratetype mt, bool *zeroed)
{
    page *reported = nullptr;
    unsigned reported_order = 0;
    for (unsigned o = order; o < NR_PAGE_ORDERS; o++) {
        list_head *l = &z->free_area[o].free_list[mt];
        if (list_empty(l))
            continue;
        page *pg = list_first_entry(l, page, lru);
        if (!(pg->flags & PG_reported))
            return take_free_block(z, pg, o, order, zeroed);
        if (!reported) {
            reported = pg;
            reported_order = o;
        }
    }
    return reported ? take_free_block(z, reported, reported_order, order, zeroed) : nullptr;
}

/* Move every free block inside pfn's pageblock to the lists of type mt and
 * retag the pageblock (the kernel's move_freepages_block). */
static unsigned long move_freepages_block(zone *z, unsigned long pfn, migratetype mt)
{
    unsigned long start = pfn & ~(pageblock_nr_pages - 1);
    unsigned long end = start + pageblock_nr_pages;
    unsigned long moved = 0;
    for (unsigned long p = start; p < end && p < z->spanned_pages;) {
        page *pg = pfn_to_page(z, p);
        if (pg->flags & PG_buddy) {
            unsigned o = pg->order;
            if (pg->flags & PG_reported)    /* keep resident blocks first */
                list_move_tail(&pg->lru, &z->free_area[o].free_list[mt]);
            else
                list_move(&pg->lru, &z->free_area[o].free_list[mt]);
            pg->migratetype = mt;
            moved += 1ul << o;
            p += 1ul << o;
        } else {
            p++;
        }
    }
    set_pageblock_migratetype(z, start, mt);
    return moved;
}

/*
 * Another type's free memory, in two passes (the kernel's __rmqueue_claim
 * and __rmqueue_steal, Linux 6.15):
 *   claim  the largest free block of a fallback type whose pageblock the
 *          rules let start_mt claim: always for blocks of a pageblock or
 *          more; for large requests (order >= pageblock_order / 2) and for
 *          the slab and metadata types (all but movable) when at least half
 *          of the pageblock is free.  The pageblock becomes start_mt's.
 *   steal  otherwise the smallest free block of a fallback type that fits,
 *          leaving the rest of its pageblock where it is.
 * Taking the largest block whatever the claim (as before 2026-12-07)
 * spread the requests that may not claim over the other type's pageblock:
 * in a 1 MiB zone, 39 pages in use left 217 free pages in 94 blocks of 1-4
 * pages (the first pageblock was the metadata's, and each small movable
 * request split its largest block).
 */
static page *__rmqueue_fallback(zone *z, unsigned order, migratetype start_mt, bool *zeroed)
{
    const bool can_steal = order >= pageblock_order / 2 || start_mt != MIGRATE_MOVABLE;
    for (int o = MAX_ORDER; o >= (int)order; o--) {
        if ((unsigned)o < pageblock_order && !can_steal)
            break;                      /* nothing smaller may be claimed */
        for (migratetype fmt : fallbacks[start_mt]) {
            list_head *l = &z->free_area[o].free_list[fmt];
            if (list_empty(l))
                continue;
            page *pg = list_first_entry(l, page, lru);
            unsigned long pfn = page_to_pfn(pg);
            if ((unsigned)o >= pageblock_order) {
                for (unsigned long b = pfn; b < pfn + (1ul << o); b += pageblock_nr_pages)
                    set_pageblock_migratetype(z, b, start_mt);
                list_move(&pg->lru, &z->free_area[o].free_list[start_mt]);
                pg->migratetype = start_mt;
            } else if (z->pageblock_nr_free[pfn >> pageblock_order] >= pageblock_nr_pages / 2) {
                move_freepages_block(z, pfn, start_mt);
            } else {
                continue;
            }
            pa_stats.pgfallback++;
            pa_stats.pageblock_claims++;
            /* Take it from whichever list it is now on. */
            return take_free_block(z, pg, o, order, zeroed);
        }
    }
    for (unsigned o = order; o <= MAX_ORDER; o++)
        for (migratetype fmt : fallbacks[start_mt]) {
            list_head *l = &z->free_area[o].free_list[fmt];
            if (list_empty(l))
                continue;
            pa_stats.pgfallback++;
            return take_free_block(z, list_first_entry(l, page, lru), o, order, zeroed);
        }
    return nullptr;
}

page *__rmqueue(zone *z, unsigned order, migratetype mt, bool *zeroed)
{
    if (unlikely(z->flags & ZONE_RECLAIM_ACTIVE))
        WRITE_ONCE(z->flags, z->flags & ~ZONE_RECLAIM_ACTIVE);   /* allocating again */
    page *pg = __rmqueue_smallest(z, order, mt, zeroed);
    if (!pg)
        pg = __rmqueue_fallback(z, order, mt, zeroed);
    if (pg)
        pa_stats.pgalloc++;
    return pg;
}

/* The free block (buddy head) containing pfn, or nullptr.  Caller holds
 * z->lock. */
static page *__free_block_containing(zone *z, unsigned long pfn)
{
    for (unsigned k = 0; k < NR_PAGE_ORDERS; k++) {
        unsigned long start = pfn & ~((1ul << k) - 1);
        page *pg = pfn_to_page(z, start);
        if (page_is_buddy(pg, k))
            return pg;
    }
    return nullptr;
}

/* Put [from, to) back on the free lists as the largest aligned blocks, of
 * type mt and reported state `reported`, without merging (they are the
 * leftovers of one free block whose middle was taken).  Caller holds z->lock. */
static void __add_free_range(zone *z, unsigned long from, unsigned long to, migratetype mt,
                             bool reported, uint32_t free_time, bool reclaimed, uint32_t resident)
{
    while (from < to) {
        unsigned order = from ? __builtin_ctzl(from) : MAX_ORDER;
        if (order > MAX_ORDER)
            order = MAX_ORDER;
        while ((1ul << order) > to - from)
            order--;
        add_to_free_list(z, pfn_to_page(z, from), order, mt, reported, free_time, reclaimed,
                         resident);
        from += 1ul << order;
    }
}

/* Take [first, end), every page of which is inside a free buddy block, off
 * the free lists: each block leaves its parts outside the range free, with
 * its state.  Returns whether every taken block was reported (the range
 * reads as zero).  Caller holds z->lock. */
static bool __take_free_range(zone *z, unsigned long first, unsigned long end)
{
    bool any_reported = false, all = true;
    for (unsigned long p = first; p < end;) {
        page *b = __free_block_containing(z, p);
        unsigned long bstart = page_to_pfn(b), bend = bstart + (1ul << b->order);
        migratetype mt = (migratetype)b->migratetype;
        bool reported = b->flags & PG_reported;
        any_reported |= reported;
        all &= reported;
        bool reclaimed = b->flags & PG_reclaimed;
        uint32_t free_time = b->free_time;
        uint32_t resident = b->nr_resident;
        del_from_free_list(z, b, b->order);
        __add_free_range(z, bstart, p, mt, reported, free_time, reclaimed, resident);
        unsigned long taken_end = bend < end ? bend : end;
        __add_free_range(z, taken_end, bend, mt, reported, free_time, reclaimed, resident);
        if (reclaimed)
            __refault_block(z, reported, resident, taken_end - p);
        p = taken_end;
    }
    __zone_use_rises(z, any_reported, end - first);
    return all;
}

/*
 * Runs across buddy boundaries: best fit for large blocks.
 *
 * A large block of nr pages (2^(k-1) < nr <= 2^k) is freed as a range, so
 * it need not be a buddy block: it can take any run of adjacent free
 * blocks that holds it.  Placed as buddy blocks (order k, tail given
 * back), blocks of random sizes leave the free memory in runs that hold
 * no aligned block of the order asked: 300 free pages as 4 + 32 + 256 + 8
 * hold a 300-page block, but no order-9 block.  On random-sizes (blocks of
 * 9..512 pages with random lifetimes) the zone then spanned 2.0-2.4 times
 * the pages in use (220K pages for 110K: each growth a fault for every
 * page), and at every growth 40% of the zone was free in runs too short
 * only because of alignment.  A simulation of its page-level trace
 * (10K large blocks) gave: buddy blocks, most recently freed first: 2.38
 * times the peak of pages in use; lowest address first: 1.43; best fit
 * over runs, 16 candidates an order: 1.12 (an address-ordered best fit,
 * as glibc's bins and tcmalloc's page heap place large blocks: 1.12).
 *
 * So a large block takes the best-fitting run (the shortest that holds
 * it; the first found on a tie) among the runs around the first
 * RUN_FIT_CANDIDATES blocks of each free list of order k-2 or more (every
 * free run of more than 2^(k-1) pages contains a free block of order k-2
 * or more: free buddies always merge), from the run's lowest address; the
 * parts of its first and last blocks outside it stay free.  Only tight
 * runs, shorter than 2^(k+1) pages: a longer one holds a free block of
 * order k, which the buddy allocator's own path takes, aligned, so that a
 * program in rounds gets its blocks back at the same addresses, with the
 * pages it wrote (with any run from its start, rounds of 2,000 blocks of
 * 1.5 MB with 64 B written refaulted 1,800-2,300 pages a round; with tight
 * runs, their third and fourth rounds refault 7,636 and 1,921 pages while
 * the blocks pack closer (the tail of each aligned block and the free
 * block after it make a tight run), then 15-75 a round; aligned only:
 * none from the third round).
 * In order: a tight resident run (no reported block: a fault for none of
 * its pages); a resident buddy block; a tight run of any free memory
 * (before a block given back is split, which leaves its tail in a run
 * too short for the next block of its size, and before the zone grows);
 * a block given back.  A run that starts with a free block of order k or
 * more is taken as that block (split, tail given back: the buddy
 * allocator's own path, with the hugepage policy's look at fresh
 * pageblocks).  random-sizes (5-7 interleaved runs, medians): faults
 * 325-353K -> 244-275K, zone span 205-222K -> 173K pages, time 0.86-0.90.
 * The walk is bounded (each pass reads at most RUN_FIT_READS descriptors),
 * as it runs under the zone lock: ~3,400 instructions a call (both passes) on
 * random-sizes (callgrind).
 */
constexpr unsigned RUN_FIT_CANDIDATES = 16;
constexpr unsigned RUN_FIT_READS = 512;

/* A free block a run of type mt may use: on a free list, and not reported
 * when the run must be resident. */
static inline bool run_block_ok(const page *pg, migratetype mt, bool resident)
{
    uint16_t mask = resident ? (PG_buddy | PG_reported) : PG_buddy;
    return (pg->flags & mask) == PG_buddy && pg->migratetype == mt;
}

/* The free block that ends right before pfn (pfn is the head of a free
 * block, or the end of the zone's memory), or nullptr; *reads counts the
 * descriptors read.  Blocks are aligned to their size, so one ending at pfn
 * has an order of at most ctz(pfn). */
static page *__free_block_ending_at(zone *z, unsigned long pfn, unsigned *reads)
{
    if (!pfn)
        return nullptr;
    unsigned top = __builtin_ctzl(pfn);
    if (top > MAX_ORDER)
        top = MAX_ORDER;
    for (unsigned j = 0; j <= top; j++) {
        page *pg = pfn_to_page(z, pfn - (1ul << j));
        ++*reads;
        if (page_is_buddy(pg, j))
            return pg;
    }
    return nullptr;
}

/* Whether a resident block of `order` or more and type mt is free (each
 * list keeps its resident blocks at the head). */
static inline bool resident_block_free(zone *z, unsigned order, migratetype mt)
{
    for (unsigned o = order; o < NR_PAGE_ORDERS; o++) {
        list_head *l = &z->free_area[o].free_list[mt];
        if (!list_empty(l) && !(list_first_entry(l, page, lru)->flags & PG_reported))
            return true;
    }
    return false;
}

/* nr pages (PCP_RUN_MIN_PAGES or more) of type mt from the best-fitting
 * run (resident: of resident blocks only), or nullptr; *zeroed: every page
 * was reported.  Caller holds z->lock. */
static page *__rmqueue_run(zone *z, unsigned long nr, migratetype mt, bool resident, bool *zeroed)
{
    unsigned k = ceil_log2(nr);
    unsigned long cap = 2ul << k;      /* a run this long holds a free block of order k */
    unsigned long best = 0, best_len = ~0ul;
    unsigned reads = 0;
    /* Blocks of order k+1 or more are in runs of cap or more. */
    for (unsigned o = k - 2; o <= k && (1ul << o) < best_len; o++) {
        list_head *l = &z->free_area[o].free_list[mt];
        unsigned candidates = 0;
        for (list_head *it = l->next; it != l && candidates < RUN_FIT_CANDIDATES; it = it->next) {
            page *pg = list_entry(it, page, lru);
            if (resident && (pg->flags & PG_reported))
                break;                  /* resident blocks come first in each list */
            candidates++;
            unsigned long s = page_to_pfn(pg), e = s + (1ul << o);
            unsigned long limit = best_len < cap ? best_len : cap;
            while (e - s < limit && reads < RUN_FIT_READS) {
                page *b = __free_block_ending_at(z, s, &reads);
                if (!b || !run_block_ok(b, mt, resident))
                    break;
                s = page_to_pfn(b);
            }
            while (e - s < limit && e < z->spanned_pages && reads < RUN_FIT_READS) {
                page *b = pfn_to_page(z, e);
                reads++;
                if (!run_block_ok(b, mt, resident))
                    break;
                e += 1ul << b->order;
            }
            if (e - s >= nr && e - s < best_len) {
                best = s;
                best_len = e - s;
                if (best_len == nr)
                    goto found;
            }
            if (reads >= RUN_FIT_READS)
                goto walked;
        }
    }
walked:
    if (best_len >= cap)
        return nullptr;                 /* no tight run: an aligned block will do */
found:
    if (unlikely(z->flags & ZONE_RECLAIM_ACTIVE))
        WRITE_ONCE(z->flags, z->flags & ~ZONE_RECLAIM_ACTIVE);   /* allocating again, as __rmqueue */
    page *head = pfn_to_page(z, best);      /* a free block's head: runs start at one */
    if (head->order >= k) {
        /* A buddy block of order k or more: its own split, tail given back. */
        bool reported = false;
        take_free_block(z, head, head->order, k, &reported);
        if (nr < (1ul << k))
            __free_pages_range(z, best + nr, (1ul << k) - nr, reported);
        *zeroed = reported;
    } else {
        *zeroed = __take_free_range(z, best, best + nr);
        pa_stats.run_fit++;
    }
    pa_stats.pgalloc++;
    return head;
}

/* Take a block of `order` from z and, when nr_pages is smaller, give its
 * tail straight back (keeping the block's reported state), all under one
 * hold of the zone lock (the kernel's rmqueue_buddy).  unaligned: the pages
 * need not be a buddy block (alloc_pages_exact: freed as a range, never
 * merged as a block of `order`, no alignment asked); a large block of type
 * MIGRATE_MOVABLE and PCP_RUN_MIN_PAGES or more then takes the best-fitting
 * tight run across buddy boundaries (__rmqueue_run): a resident one, else,
 * when no resident block of its order or more is free, one of any free
 * memory, before a block given back is split, before the fallback to other
 * types' pageblocks and before the zone grows. */
static page *rmqueue_buddy(zone *z, unsigned order, migratetype mt, bool *zeroed,
                           unsigned long nr_pages, bool grow, bool unaligned)
{
    bool reported = false;
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    page *pg = nullptr;
    if (unaligned && mt == MIGRATE_MOVABLE && nr_pages >= PCP_RUN_MIN_PAGES && !grow) {
        pg = __rmqueue_run(z, nr_pages, mt, true, &reported);   /* exactly nr_pages */
        if (!pg && !resident_block_free(z, order, mt))
            pg = __rmqueue_run(z, nr_pages, mt, false, &reported);
    }
    if (!pg) {
        pg = __rmqueue(z, order, mt, &reported);
        if (!pg && grow && __zone_grow(z, 1ul << order))
            pg = __rmqueue(z, order, mt, &reported);
        if (pg && nr_pages < (1ul << order))
            __free_pages_range(z, page_to_pfn(pg) + nr_pages, (1ul << order) - nr_pages, reported);
    }
    if (pg)
        __zone_update_below_high(z);
    spin_unlock(&z->lock);
    if (zeroed)
        *zeroed = reported;
    return pg;
}

/* nr_pages (<= 2^order) pages out of a block of `order`: the zones that
 * have the memory free, lowest first; then a zone that can grow; then a new
 * zone (the kernel's get_page_from_freelist and slow path).  unaligned: see
 * rmqueue_buddy. */
static page *get_page_from_freelist(unsigned order, migratetype mt, bool *zeroed,
                                    unsigned long nr_pages, bool unaligned = false)
{
    unsigned long need = 1ul << order;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    /* 1. Zones that have the memory free, lowest first. */
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        if (READ_ONCE(z->nr_free_pages) < need)
            continue;
        page *pg = rmqueue_buddy(z, order, mt, zeroed, nr_pages, false, unaligned);
        if (pg)
            return pg;
    }
    /* 1b. Costly orders: the memory may be free but in pieces (some on the
     * per-CPU lists): direct compaction before growing (compaction.h). */
    if (order > PAGE_ALLOC_COSTLY_ORDER) {
        page *pg = try_to_compact_pages(order, mt, zeroed);
        if (pg) {
            if (nr_pages < need)
                free_pages_exact(pg + nr_pages, need - nr_pages);
            return pg;
        }
    }
    /* 2. Grow a zone that still can. */
    for (unsigned i = n; i-- > 0;) {
        zone *z = zones[i];
        if (READ_ONCE(z->full))
            continue;
        page *pg = rmqueue_buddy(z, order, mt, zeroed, nr_pages, true, false);
        if (pg)
            return pg;
    }
    /* 3. A new zone. */
    zone *z = zone_create(need);
    if (!z)
        return nullptr;
    return rmqueue_buddy(z, order, mt, zeroed, nr_pages, false, false);
}
static page *__alloc_pages(unsigned order, migratetype mt, bool *zeroed);

page *alloc_pages(unsigned order, migratetype mt, bool *zeroed)
{
    page *pg = __alloc_pages(order, mt, zeroed);
    /* An allocated head remembers the type it was asked for (pagetypeinfo
     * counts pageblocks holding allocations of several types). */
    if (pg)
        pg->migratetype = mt;
    /* Every entry point ends with the reclaim tick, with the zone lock
     * dropped (callers may hold a kmem_cache lock: the tick only trylocks). */
    vmscan_tick();
    return pg;
}

static page *__alloc_pages(unsigned order, migratetype mt, bool *zeroed)
{
    if (order > MAX_ORDER)
        return nullptr;
    unsigned long need = 1ul << order;
    /* Small orders: the current CPU's pageset, refilled in batches. */
    if (order <= PAGE_ALLOC_COSTLY_ORDER) {
        unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
        for (unsigned i = 0; i < n; i++) {
            zone *z = zones[i];
            if (READ_ONCE(z->nr_free_pages) < need && !zone_pcp_pages(z))
                continue;
            page *pg = rmqueue_pcplist(z, order, mt, zeroed);
            if (pg)
                return pg;
        }
    }
    return get_page_from_freelist(order, mt, zeroed, need);
}

void free_pages(page *pg, unsigned order)
{
    zone *z = page_zone(pg);
    khugepaged_note_free(z, page_to_pfn(pg));
    if (order <= PAGE_ALLOC_COSTLY_ORDER) {
        free_unref_page(z, pg, order);   /* counted in the pageset (freed_pages) */
    } else {
        spin_lock(&z->lock);
        pa_stats.zone_lock++;
        zone_note_freed_pages(z, 1ul << order);
        __free_one_page(z, page_to_pfn(pg), order, false);
        pa_stats.pgfree++;
        spin_unlock(&z->lock);
    }
    vmscan_tick();
}

void __free_pages_range(zone *z, unsigned long pfn, unsigned long nr, bool reported)
{
    __free_pages_range_at(z, pfn, nr, reported, vmscan_now());
}

/* The order of the largest aligned block that starts at pfn and fits in
 * `left` pages: how a range of pages is cut into buddy blocks. */
static inline unsigned range_block_order(unsigned long pfn, unsigned long left)
{
    unsigned order = pfn ? __builtin_ctzl(pfn) : MAX_ORDER;
    if (order > MAX_ORDER)
        order = MAX_ORDER;
    while ((1ul << order) > left)
        order--;
    return order;
}

void __free_pages_range_at(zone *z, unsigned long pfn, unsigned long nr, bool reported,
                           uint32_t now)
{
    while (nr) {
        unsigned order = range_block_order(pfn, nr);
        __free_one_page_at(z, pfn, order, reported, false, now);
        pfn += 1ul << order;
        nr -= 1ul << order;
    }
}

/*
 * Large allocations of 9..512 pages first look for a run on the current
 * CPU's pageset (a block of that size freed earlier: no zone lock at all);
 * otherwise the smallest buddy block that holds them is taken and its tail
 * given back in the same hold of the zone lock.  Either way the allocation
 * costs exactly nr_pages pages.
 */
static page *__alloc_pages_exact(unsigned long nr_pages, migratetype mt, bool *zeroed);

page *alloc_pages_exact(unsigned long nr_pages, migratetype mt, bool *zeroed)
{
    page *pg = __alloc_pages_exact(nr_pages, mt, zeroed);
    if (pg)
        pg->migratetype = mt;      /* see alloc_pages */
    vmscan_tick();
    return pg;
}

static page *__alloc_pages_exact(unsigned long nr_pages, migratetype mt, bool *zeroed)
{
    unsigned order = ceil_log2(nr_pages);
    if (order > MAX_ORDER)
        return nullptr;
    if (mt == MIGRATE_MOVABLE && nr_pages >= PCP_RUN_MIN_PAGES && nr_pages <= PCP_RUN_MAX_PAGES) {
        unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
        for (unsigned i = 0; i < n; i++) {
            page *pg = rmqueue_pcp_run(zones[i], nr_pages);
            if (pg) {
                if (zeroed)
                    *zeroed = false;
                return pg;
            }
        }
    }
    if (order <= PAGE_ALLOC_COSTLY_ORDER) {
        if (nr_pages == (1ul << order))
            return __alloc_pages(order, mt, zeroed);
        /* A small block from the pageset, its tail back to the zone. */
        bool reported = false;
        page *pg = alloc_pages(order, mt, &reported);
        if (!pg)
            return nullptr;
        zone *z = page_zone(pg);
        spin_lock(&z->lock);
        pa_stats.zone_lock++;
        __free_pages_range(z, page_to_pfn(pg) + nr_pages, (1ul << order) - nr_pages, reported);
        spin_unlock(&z->lock);
        if (zeroed)
            *zeroed = reported;
        return pg;
    }
    return get_page_from_freelist(order, mt, zeroed, nr_pages, true);
}

void free_pages_exact(page *pg, unsigned long nr_pages)
{
    zone *z = page_zone(pg);
    khugepaged_note_free(z, page_to_pfn(pg));
    if (nr_pages >= PCP_RUN_MIN_PAGES && nr_pages <= PCP_RUN_MAX_PAGES &&
        free_unref_run(z, pg, nr_pages)) {
        /* Counted in the pageset (freed_pages).  Its drain may have pushed
         * the zone over WMARK_LOW: tick as every entry point does (without
         * it, frees of runs that all went to the pagesets left a crossing
         * pending until the next page allocation: 64 MiB of freed 256 KiB
         * blocks stayed resident to the exit). */
        vmscan_tick();
        return;
    }
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    zone_note_freed_pages(z, nr_pages);
    __free_pages_range(z, page_to_pfn(pg), nr_pages, false);
    pa_stats.pgfree++;
    spin_unlock(&z->lock);
    vmscan_tick();
}

void free_pages_read(page *pg, unsigned long nr_pages, unsigned long resident)
{
    zone *z = page_zone(pg);
    unsigned long pfn = page_to_pfn(pg);
    khugepaged_note_free(z, pfn);
    /* None resident: given back before it goes on the lists (reported
     * blocks read zero: a swapped-out page is not resident either), outside
     * the zone lock. */
    if (!resident)
        zone_decommit(z, page_address(pg), nr_pages << PAGE_SHIFT);
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    zone_note_freed_pages(z, nr_pages);
    if (!resident) {
        z->nr_reported += nr_pages;
        __free_pages_range(z, pfn, nr_pages, true);
    } else {
        /* Each aligned block holds at most `resident` of the pages (an
         * upper bound); a range that is one block holds exactly that many
         * (read: PG_scanned, so a pass need not read it again). */
        const uint32_t now = vmscan_now();
        unsigned long p = pfn, left = nr_pages;
        while (left) {
            unsigned order = range_block_order(p, left);
            unsigned long size = 1ul << order;
            __free_one_block(z, p, order, false, false, false, now,
                             (uint32_t)(resident < size ? resident : size), size == nr_pages);
            p += size;
            left -= size;
        }
        __zone_watermark_check(z);      /* (an exact block does not check) */
    }
    pa_stats.pgfree++;
    spin_unlock(&z->lock);
    vmscan_tick();
}

bool grow_pages_exact_inplace(page *pg, unsigned long old_nr, unsigned long new_nr)
{
    zone *z = page_zone(pg);
    unsigned long first = page_to_pfn(pg) + old_nr, end = page_to_pfn(pg) + new_nr;
    if (new_nr <= old_nr)
        return true;
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    if (end > z->spanned_pages) {
        spin_unlock(&z->lock);
        return false;
    }
    /* 1. Every page in [first, end) must be inside a free buddy block. */
    for (unsigned long p = first; p < end;) {
        page *b = __free_block_containing(z, p);
        if (!b) {
            spin_unlock(&z->lock);
            return false;
        }
        p = page_to_pfn(b) + (1ul << b->order);
    }
    /* 2. Take them. */
    __take_free_range(z, first, end);
    spin_unlock(&z->lock);
    return true;
}

void prep_compound_page(page *head, unsigned long nr_pages, uint16_t flags)
{
    head->flags = flags | PG_head;
    head->compound_head = 0;
    for (unsigned long i = 1; i < nr_pages; i++) {
        head[i].flags = (uint16_t)(flags | PG_tail);
        head[i].compound_head = (uint32_t)i;
    }
}

/* Give back the batch[0..n) of free blocks of one order, still on their
 * list (z->lock held), and mark them reported (one call for the batch where
 * worth asking and no filter is seen: os_decommit_many; *filtered caches
 * the answer for the trim). */
static void __report_free_blocks(zone *z, page *const *batch, unsigned n, unsigned order, int *filtered)
{
    if (!n)
        return;                         /* (every list of every order ends with a call) */
    bool one_call = false;
    if (os_decommit_worth_asking(n) && os_decommit_batches()) {
        if (!*filtered)                 /* (under z->lock: a trim with that much to give back) */
            *filtered = os_seccomp_filtered() ? 1 : -1;
        one_call = *filtered < 0;
    }
    os_range r[VMSCAN_BATCH];
    for (unsigned i = 0; i < n; i++)
        r[i] = {page_address(batch[i]), PAGE_SIZE << order};
    if (zone_decommit_many(z, r, n, one_call)) {
        __atomic_fetch_add(&vm_reclaim_stats.madvise_batches, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&vm_reclaim_stats.madvise_batched_ranges, n, __ATOMIC_RELAXED);
    }
    for (unsigned i = 0; i < n; i++) {
        __mark_block_reported(z, batch[i], order);
        khugepaged_note_reclaim(z, page_to_pfn(batch[i]), order);
    }
}

unsigned long zone_reclaim_all(unsigned min_order)
{
    /* The trim gives its blocks back 32 per call (one system call and one
     * TLB flush each instead of each block's: vmscan.h), unless a seccomp
     * filter is seen: then memory-file zones (the filter read before any
     * lock is taken) become anonymous first (no MADV_REMOVE or fallocate
     * after). */
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    bool memfd = false;
    for (unsigned i = 0; i < nz; i++)
        memfd |= zones[i]->backing != ZONE_BACKING_ANON;
    /* Whether a seccomp filter is seen: 1 yes, -1 no, 0 not asked.  Asked
     * here for memory-file zones; else only by a batch large enough to go
     * back in one call (__report_free_blocks): a trim after a few frees
     * (stress-ng's malloc stressor trims every few dozen operations) gives
     * its few blocks back one madvise each, without the status read. */
    int filtered = memfd ? (os_seccomp_filtered() ? 1 : -1) : 0;
    if (filtered > 0)
        zone_memfd_sandbox_check(false);
    vmscan_lock_for_fork();          /* vmscan_lock: no reclaim pass isolates meanwhile */
    drain_all_pages();
    unsigned long released = 0;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        const unsigned long released_before = released;
        spin_lock(&z->lock);
        for (unsigned o = min_order; o < NR_PAGE_ORDERS; o++)
            for (auto &l : z->free_area[o].free_list) {
                /* Resident blocks are at the head; each reported one moves
                 * to the tail, so stop at the first reported block.  The
                 * batch stays on the list until it is given back, ahead of
                 * the walk. */
                page *batch[VMSCAN_BATCH];
                unsigned nb = 0;
                for (list_head *e = l.next; e != &l;) {
                    page *pg = list_entry(e, page, lru);
                    if (pg->flags & PG_reported)
                        break;
                    e = e->next;
                    if (!block_reclaimable(z, page_to_pfn(pg), VMSCAN_MIN_ORDER))
                        continue;               /* hugetlb: stays resident */
                    batch[nb++] = pg;
                    released += 1ul << o;
                    if (nb == VMSCAN_BATCH) {
                        __report_free_blocks(z, batch, nb, o, &filtered);
                        nb = 0;
                    }
                }
                __report_free_blocks(z, batch, nb, o, &filtered);
            }
        /* Everything given back: no free memory is kept for a peak before
         * now (retention, mm/vmscan.h).  Proactive compaction too, when it
         * gave back a pageblock of the zone: keeping the rounds there
         * (session 24) cut xmalloc-test's 1 KiB refaults by 40% but kept
         * kv-ttl's workingset resident after its spike (idle phase 30.8 ->
         * 36.8 MiB, medians of 8).  One that gave nothing back changed
         * nothing to forget the rounds for: a program building a heap of
         * small objects, freeing all of it and building it again woke it
         * at each free phase (its free small blocks score fragmented), and
         * refaulted its whole heap every round. */
        if (!min_order)
            z->vcache_high_mark = 0;    /* a trim forgets the highs too */
        if (!min_order || released != released_before) {
            z->use_peak = z->spanned_pages - z->nr_free_pages;
            z->round_time = 0;
            z->use_dropped = 0;
        }
        __setup_zone_wmarks(z);
        spin_unlock(&z->lock);
    }
    vmscan_unlock_for_fork();
    __atomic_fetch_add(&vm_reclaim_stats.pgtrim, released, __ATOMIC_RELAXED);
    return released;
}

unsigned long __zone_shrink_top(zone *z, bool idle_reported_only, uint32_t now, uint32_t min_age)
{
    unsigned long released = 0;
    while (z->spanned_pages >= (1ul << MAX_ORDER)) {
        unsigned long top = z->spanned_pages - (1ul << MAX_ORDER);
        page *pg = pfn_to_page(z, top);
        if (!page_is_buddy(pg, MAX_ORDER))
            break;
        if (idle_reported_only) {
            int32_t age = (int32_t)(now - pg->free_time);
            if (!(pg->flags & PG_reported) || age < 0 || (uint32_t)age < min_age)
                break;
        }
        pg->flags &= (uint16_t)~PG_desc_off;   /* zeroed below anyway */
        del_from_free_list(z, pg, MAX_ORDER);
        if (z->backing != ZONE_BACKING_ANON)  /* the file pages behind the range go too */
            zone_decommit(z, (void *)(z->zone_start + (top << PAGE_SHIFT)), PAGE_SIZE << MAX_ORDER);
        os_unmap((void *)(z->zone_start + (top << PAGE_SHIFT)), PAGE_SIZE << MAX_ORDER);
        WRITE_ONCE(z->spanned_pages, top);
        /* The descriptors stay mapped (lock-free readers never fault) but
         * are zeroed, no longer resident: growth sets them up again.  1024
         * descriptors are 64 KiB, page aligned. */
        os_decommit(pfn_to_page(z, top), sizeof(page) << MAX_ORDER);
        for (unsigned long b = top; b < top + (1ul << MAX_ORDER); b += pageblock_nr_pages) {
            if (z->pageblock_thp[b >> pageblock_order] & PB_HUGETLB)
                z->nr_hugetlb_pages -= pageblock_nr_pages;
            z->pageblock_thp[b >> pageblock_order] = 0;   /* a regrown block starts afresh */
        }
        released += 1ul << MAX_ORDER;
    }
    if (released)
        pcp_update_batch_high(z);
    return released;
}

unsigned long zone_shrink_all()
{
    drain_all_pages();
    unsigned long released = 0;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        released += __zone_shrink_top(z, false, 0, 0);
        spin_unlock(&z->lock);
    }
    return released;
}

/* ---------------------------------------------------------------------------
 * Invariant check (tests)
 * ------------------------------------------------------------------------- */

const char *__zone_verify(zone *z)
{
    unsigned long counted[NR_PAGE_ORDERS] = {};
    unsigned long free_pages = 0, resident = 0, unscanned = 0, on_lru = 0;
    uint16_t pb_free[ZONE_MAX_PAGEBLOCKS] = {};       /* expected pageblock_nr_free */
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++) {
            list_head *l = &z->free_area[o].free_list[mt];
            bool seen_reported = false;
            for (list_head *e = l->next; e != l; e = e->next) {
                page *pg = list_entry(e, page, lru);
                unsigned long pfn = page_to_pfn(pg);
                if (!(pg->flags & PG_buddy) || pg->order != o || pg->migratetype != mt)
                    return "a page on a free list is not a free block of that order/type";
                if (pg->flags & PG_reported)
                    seen_reported = true;
                else if (seen_reported)
                    return "a resident block after a reported one (resident blocks go first)";
                if (pfn & ((1ul << o) - 1))
                    return "a free block is not aligned to its order";
                if (pfn + (1ul << o) > z->spanned_pages)
                    return "a free block extends past the zone";
                counted[o]++;
                free_pages += 1ul << o;
                if (o < pageblock_order)
                    pb_free[pfn >> pageblock_order] += (uint16_t)(1u << o);
                else
                    for (unsigned long b = pfn; b < pfn + (1ul << o); b += pageblock_nr_pages)
                        pb_free[b >> pageblock_order] += (uint16_t)pageblock_nr_pages;
                if (!(pg->flags & PG_reported)) {
                    if (!pg->nr_resident || pg->nr_resident > (1u << o))
                        return "a resident free block counts 0 or more than its pages resident";
                    resident += pg->nr_resident;
                    if ((pg->flags & PG_lru) && !(pg->flags & PG_scanned))
                        unscanned += pg->nr_resident;
                    if (pg->flags & PG_desc_off)
                        return "a resident free block has its descriptors given back";
                } else if (pg->nr_resident || (pg->flags & PG_scanned))
                    return "a reported free block counts resident pages";
                else if (z->pageblock_thp[pfn >> pageblock_order] & PB_THP_FAULT)
                    return "a reported block in a pageblock made huge at its first fault";
                if (!(pg->flags & PG_reported) != !!(pg->flags & PG_lru) &&
                    block_reclaimable(z, pfn, o))
                    return "a resident reclaimable block is not on free_lru (or a reported one is)";
                if ((pg->flags & PG_lru) && !block_reclaimable(z, pfn, o))
                    return "a block on free_lru that reclaim may not take";
                if (o < MAX_ORDER) {
                    unsigned long b = pfn ^ (1ul << o);
                    if (b + (1ul << o) <= z->spanned_pages && page_is_buddy(pfn_to_page(z, b), o))
                        return "two free buddies were left unmerged";
                }
            }
        }
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        if (counted[o] != z->free_area[o].nr_free)
            return "free_area nr_free does not match its lists";
    if (free_pages != z->nr_free_pages)
        return "nr_free_pages does not match the free lists";
    if (resident != z->nr_free_resident)
        return "nr_free_resident does not match the free lists";
    if (unscanned != z->nr_free_unscanned)
        return "nr_free_unscanned does not match the free lists";
    /* The age list: exactly the PG_lru blocks, with their pages counted
     * (not strictly ordered: split remainders keep their block's age). */
    unsigned long nr_lru = 0;
    for (page *pg = free_lru_first(z); pg; pg = free_lru_next(z, pg)) {
        if (++nr_lru > z->spanned_pages)
            return "free_lru has a cycle";
        if ((pg->flags & (PG_buddy | PG_lru | PG_reported)) != (PG_buddy | PG_lru))
            return "a block on free_lru is not a resident PG_lru free block";
        on_lru += 1ul << pg->order;
    }
    if (on_lru != z->nr_free_lru)
        return "nr_free_lru does not match free_lru";
    for (unsigned long b = 0; b < (z->spanned_pages >> pageblock_order); b++)
        if (z->pageblock_nr_free[b] != pb_free[b])
            return "pageblock_nr_free does not match the free lists";
    /* Every page is in exactly one free block or one allocated block. */
    for (unsigned long pfn = 0; pfn < z->spanned_pages;) {
        page *pg = pfn_to_page(z, pfn);
        if (pg->flags & (PG_buddy | PG_isolated)) {
            pfn += 1ul << pg->order;
        } else if (pg->flags & PG_pcp) {
            /* A block (2^order pages) or a run (nr_pages) on a pageset. */
            if (!pg->nr_pages || pg->nr_pages > (1u << pg->order))
                return "a pageset block's length does not fit its order";
            pfn += pg->nr_pages;
        } else if (pg->flags & PG_head) {
            unsigned long n = (pg->flags & PG_slab) ? (1ul << pg->order)
                              : (pg->flags & (PG_large | PG_meta)) ? pg->nr_pages : 1;
            /* Slab tails must lead to their head (objects live in them);
             * large blocks mark only their head (see large.cc). */
            if (pg->flags & PG_slab)
                for (unsigned long i = 1; i < n; i++)
                    if (!(pg[i].flags & PG_tail) || pg[i].compound_head != i)
                        return "a slab's tail page does not point to its head";
            for (unsigned long i = 1; i < n; i++)
                if (pg[i].flags & (PG_head | PG_buddy | PG_pcp | PG_isolated))
                    return "a head or free page inside an allocated block";
            pfn += n;
        } else {
            return "a page is neither free nor the head of an allocated block";
        }
    }
    return nullptr;
}

} // namespace kalloc
