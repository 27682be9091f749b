/*
 * mm/page_alloc.h - the buddy page allocator's interface.
 *
 * Mirrors mm/page_alloc.c: blocks of 2^order pages (order 0..MAX_ORDER)
 * from the zones, grouped by migrate type.  Callers above (slab, large
 * allocations, metadata) get a head `struct page` and mark the block with
 * prep_compound_page(); they give it back with the same order or page count.
 *
 * Wrapper grammar as in the kernel: functions without underscores take the
 * zone lock themselves; __functions expect the caller to hold it.
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

/* Allocate 2^order pages of migrate type mt.  *zeroed (if given) is set
 * when the whole block is known to read as zero (fresh or reported memory).
 * nullptr when memory or address space runs out (errno is not touched). */
page *alloc_pages(unsigned order, migratetype mt, bool *zeroed);

/* Free a block from alloc_pages (same order). */
void free_pages(page *pg, unsigned order);

/* Allocate exactly nr_pages (1 .. 2^MAX_ORDER) pages: the smallest block
 * that holds them, with the unused tail given straight back (the kernel's
 * alloc_pages_exact), so a 36 KiB allocation costs 9 pages, not 16.
 * MIGRATE_MOVABLE runs of PCP_RUN_MIN_PAGES..PCP_RUN_MAX_PAGES come from
 * the current CPU's pageset when it holds one (per_cpu_pages.h).  The pages
 * are not aligned beyond a page (a MIGRATE_MOVABLE request of
 * PCP_RUN_MIN_PAGES or more may take a run across buddy boundaries), so
 * they go back with free_pages_exact, never free_pages. */
page *alloc_pages_exact(unsigned long nr_pages, migratetype mt, bool *zeroed);

/* Free nr_pages pages starting at pg (from alloc_pages_exact, or the tail of
 * such an allocation): runs of PCP_RUN_MIN_PAGES..PCP_RUN_MAX_PAGES go to
 * the current CPU's pageset, anything else to the zone as aligned blocks. */
void free_pages_exact(page *pg, unsigned long nr_pages);

/* Free nr_pages pages at pg (as free_pages_exact) of which the caller has
 * just read that `resident` are resident (a large block's probe,
 * malloc/large.h), to the zone with that count, so reclaim need not read
 * them again: none resident, they are given back with madvise and go on the
 * lists as reported at once (what a reclaim pass would do after reading
 * them); some, each aligned block counts at most that many (exactly, when
 * the range is one block).  Not for hugetlb or hugepage-backed ranges.
 * Takes z->lock. */
void free_pages_read(page *pg, unsigned long nr_pages, unsigned long resident);

/* Grow an allocation of old_nr pages at pg to new_nr pages in place, taking
 * the pages right after it, when they are all free in the buddy allocator
 * (realloc of large blocks).  False, with nothing changed, otherwise. */
bool grow_pages_exact_inplace(page *pg, unsigned long old_nr, unsigned long new_nr);

/* Mark an allocated block: flags on the head, PG_tail and the distance to
 * the head on every other page, so any interior pointer finds its head
 * (slabs need this; large blocks mark only their head). */
void prep_compound_page(page *head, unsigned long nr_pages, uint16_t flags);

/* Drain the per-CPU pagesets, then give every free, still-resident block of
 * at least `min_order` back to the OS (madvise); returns pages released.
 * For malloc_trim and compaction.  Takes vmscan_lock (so no reclaim pass
 * runs meanwhile); hugetlb-backed blocks stay.  Each zone's use_peak and
 * rounds start again (retention, mm/vmscan.h). */
unsigned long zone_reclaim_all(unsigned min_order);

/* Give address space back: unmap whole free MAX_ORDER blocks at the top of
 * every zone (the zones' brk trim), after draining the per-CPU pagesets.
 * For RLIMIT_AS pressure (a huge mapping failed) and malloc_trim.  Returns
 * the pages unmapped.  Descriptors stay mapped, so lock-free readers never
 * fault. */
unsigned long zone_shrink_all();

/* --- for reclaim (mm/vmscan.cc); caller holds z->lock --- */

/* Take free block pg off the free lists (and free_lru) for reclaim: it
 * becomes PG_isolated, neither free nor allocated, until put back. */
void __isolate_free_block(zone *z, page *pg);

/* Return an isolated block whose memory was given back: freed as
 * PG_reported (merging with its buddies). */
void __putback_reported_block(zone *z, page *pg, unsigned order);

/* The smallest free block whose descriptors are given back with it: order 8
 * (256 descriptors, 12 KiB) always holds a whole descriptor page past the
 * head's. */
constexpr unsigned DESC_OFF_MIN_ORDER = 8;

/* The whole pages of mem_map that hold the descriptors of a block of
 * `order` at pg, past the head's page: given back with the block when it
 * is reported (order >= DESC_OFF_MIN_ORDER, else 0), resident while it is
 * not.  Residency counts them in a read block's nr_resident. */
unsigned long block_descriptor_pages(const page *pg, unsigned order);

/* Return an isolated block whose residency mincore read: `resident` of its
 * pages are resident (exact, PG_scanned); with none it goes back
 * PG_reported after the caller gave it back (no refault when taken again:
 * it was never touched). */
void __putback_scanned_block(zone *z, page *pg, unsigned order, uint32_t resident);

/* Unmap the whole free MAX_ORDER blocks at the top of z (the brk trim):
 * every one, or (idle_reported_only) only blocks already given back and
 * free for at least min_age ms at `now` (decay: a zone that grew for a burst
 * shrinks back, descriptors included).  Returns the pages unmapped. */
unsigned long __zone_shrink_top(zone *z, bool idle_reported_only, uint32_t now, uint32_t min_age);

/* --- internals, exposed for unit tests --- */
void __free_one_page(zone *z, unsigned long pfn, unsigned order, bool reported);
/* Zone growth: fresh memory whose descriptors were never touched (zero). */
void __free_one_page_fresh(zone *z, unsigned long pfn, unsigned order, bool reported, bool fresh);
/* The same, for a block free since `free_time` (reclaim puts blocks back
 * with the time they became free). */
void __free_one_page_at(zone *z, unsigned long pfn, unsigned order, bool reported, bool fresh,
                        uint32_t free_time);
page *__rmqueue(zone *z, unsigned order, migratetype mt, bool *zeroed);
/* Free [pfn, pfn + nr) as the largest aligned blocks that fit (merging).
 * Caller holds z->lock.  The _at form takes the time the blocks became free
 * (one clock read for a bulk free, not one per block). */
void __free_pages_range(zone *z, unsigned long pfn, unsigned long nr, bool reported);
void __free_pages_range_at(zone *z, unsigned long pfn, unsigned long nr, bool reported,
                           uint32_t now);

/* Walk the zone and check the buddy invariants listed in mmzone.h.
 * Caller holds z->lock.  Returns nullptr if they hold, else what broke. */
const char *__zone_verify(zone *z);

/* Fallback order when a migrate type's lists are empty (the kernel's table). */
extern const migratetype fallbacks[MIGRATE_TYPES][MIGRATE_TYPES - 1];

/* Counters for stats (vmstat-style names). */
struct page_alloc_stats {
    unsigned long pgalloc;          /* blocks allocated */
    unsigned long pgfree;           /* blocks freed */
    unsigned long pgfallback;       /* allocations served from another migrate type */
    unsigned long pageblock_claims; /* fallbacks that claimed a whole pageblock */
    unsigned long zone_grow;        /* times a zone was grown */
    unsigned long run_fit;          /* large allocations served from a run across buddy
                                     * boundaries (__rmqueue_run) */
    unsigned long zone_lock;        /* zone lock holds by the allocation and free paths
                                     * (alloc_pages*, free_pages*, pageset refill/drain) */
    unsigned long memfd_lost;       /* memory-file zones whose descriptor the program closed
                                     * (zone_backing_check) */
    unsigned long memfd_sandboxed;  /* memory-file zones made anonymous under a seccomp filter
                                     * (zone_memfd_sandbox_check) */
};
extern page_alloc_stats pa_stats;   /* updated under the zone locks (approximate totals) */

} // namespace kalloc
