/*
 * mm/compaction.h - compaction of free memory (mirrors mm/compaction.c).
 *
 * The kernel's compaction moves in-use pages from the start of a zone (the
 * migrate scanner) into free pages found from its end (the free scanner),
 * so that free memory ends up in whole pageblocks.  kalloc cannot move a
 * live object: the program holds raw pointers to it.  Compaction therefore
 * works on free memory only:
 *   1. drain: the per-CPU pagesets go back to the buddy allocator (where
 *      free pages merge with their buddies) and every cache's spare empty
 *      slab is freed;
 *   2. the free scanner: each zone's free lists are ordered so that the
 *      next allocations fill the holes of the fullest pageblocks first
 *      (coarsely in a proactive compaction), and in a full compaction at
 *      the low end of the zone first (kalloc's zones shrink from the top,
 *      so the scanner starts from the bottom: the mirror image of the
 *      kernel's);
 *      in a full compaction, every cache's partial slabs are ordered the
 *      same way (fullest slab, in the fullest pageblock, lowest address
 *      first), so new objects go where objects already live and the other
 *      slabs and pageblocks drain;
 *   3. give back: free pageblocks are returned to the OS through the
 *      reclaim path (zone_reclaim_all); a full compaction (kalloc_compact)
 *      returns every free page and unmaps the zones' free tops.  Either
 *      forgets each zone's peak and rounds, as malloc_trim does (retention,
 *      mm/vmscan.h; zone_reclaim_all).
 *
 * Fragmentation, per zone, the kernel's two measures for order-9 (2 MiB,
 * pageblock) blocks:
 *   fragmentation_index(order)  (/sys/kernel/debug/extfrag/extfrag_index)
 *       -1000 when a free block of the order exists, else 0..1000: near 0
 *       the zone lacks memory, near 1000 it has plenty but in pieces;
 *       direct compaction runs only above extfrag_threshold (500);
 *   fragmentation score (extfrag_for_order, what proactive compaction uses)
 *       0..100: the share of free pages that are not in free pageblocks.
 *
 * When it runs:
 *   direct     an allocation of a costly order (> 3: large blocks) found
 *              no free block and is about to grow a zone, while a zone has
 *              the pages free but in pieces (index > 500): drain the
 *              per-CPU lists and retry (counted as compact_stall);
 *   proactive  (the kernel's kcompactd, run in the freeing thread: kalloc
 *              starts no thread) checked once per COMPACT_CHECK_PAGES slab
 *              pages emptied; runs on zones whose score is above
 *              compaction_wmark_high (90) with at least
 *              COMPACT_MIN_FRAGMENTED pages of free memory in pieces; it
 *              succeeded when the score is below compaction_wmark_low (80);
 *   full       kalloc_compact(), on demand.
 * Direct and proactive compaction that do not help are deferred with
 * backoff, per zone (defer_compaction / compaction_deferred, the kernel's
 * compact_considered / compact_defer_shift): after a failure the next
 * 2^shift requests are skipped, shift growing to COMPACT_MAX_DEFER_SHIFT.
 *
 * Lock order: compact_lock -> kmem_cache.lock -> per_cpu_pages.lock ->
 * zone.lock.  compact_lock serialises compaction runs (direct compaction,
 * which may run under a kmem_cache lock, does not take it); the proactive
 * trigger only try-locks it.  The deferral fields of struct zone are under
 * zone.lock.
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

constexpr int extfrag_threshold = 500;            /* direct compaction above this index */
constexpr unsigned COMPACT_MAX_DEFER_SHIFT = 6;   /* at most 64 requests skipped */
constexpr unsigned compaction_wmark_high = 90;    /* proactive: start above this score */
constexpr unsigned compaction_wmark_low = 80;     /* proactive: succeeded below this score */
constexpr unsigned long COMPACT_CHECK_PAGES = 2048;     /* 8 MiB of slab pages emptied */
constexpr unsigned long COMPACT_MIN_FRAGMENTED = 1024;  /* 4 MiB of free pages in pieces */

enum compact_mode : uint8_t {
    COMPACT_DIRECT,     /* an allocation about to grow a zone: drain and retry */
    COMPACT_PROACTIVE,  /* the score is high: drain, order free blocks, give back free pageblocks */
    COMPACT_FULL,       /* kalloc_compact(): drain, order free blocks and partial slabs,
                           give back every free page */
};

/* The kernel's struct contig_page_info. */
struct contig_page_info {
    unsigned long free_pages;           /* free pages in the zone */
    unsigned long free_blocks_total;    /* free blocks of any order */
    unsigned long free_blocks_suitable; /* free blocks of at least the order asked for */
};

/* Fill *info for `order` from z's free lists.  Caller holds z->lock. */
void __fill_contig_page_info(zone *z, unsigned order, contig_page_info *info);

/* The kernel's fragmentation index for `order`: -1000 if a free block that
 * large exists, else 0..1000 (see above).  Caller holds z->lock. */
int __fragmentation_index(zone *z, unsigned order);

/* The zone's fragmentation score, 0..100: the share of its free pages that
 * are not in free pageblocks (extfrag_for_order(pageblock_order)).  Free
 * pages on per-CPU lists count as free pieces.  Caller holds z->lock. */
unsigned __fragmentation_score_zone(zone *z);

/* The score over all zones, each weighted by its size (the kernel's node
 * score).  Takes each zone lock in turn. */
unsigned fragmentation_score();

/* Deferral (the kernel's functions, same meaning).  Caller holds z->lock. */
void __defer_compaction(zone *z, int order);
bool __compaction_deferred(zone *z, int order);
void __compaction_defer_reset(zone *z, int order, bool alloc_success);

/* Direct compaction for an allocation of `order` (> PAGE_ALLOC_COSTLY_ORDER)
 * that found no free block: if a zone has the pages free but in pieces and
 * compaction is not deferred there, drain the per-CPU lists and retry.
 * The block (as __rmqueue gives it) or nullptr.  May be called with a
 * kmem_cache lock held. */
page *try_to_compact_pages(unsigned order, migratetype mt, bool *zeroed);

/* The slab layer emptied `nr` slab pages (called without locks): every
 * COMPACT_CHECK_PAGES pages, check the zones and compact those whose score
 * is high (proactive compaction). */
void compaction_slab_pages_freed(unsigned long nr);

/* Run a proactive or full compaction of every zone now.  Returns the pages
 * given back to the OS.  Takes compact_lock; call without allocator locks. */
unsigned long compact_memory(compact_mode mode);

/* The free scanner on zone z (see compaction.cc): fills
 * z->pageblock_nr_free and orders z's free lists, exactly (merge sort) or
 * coarsely (one bucketing pass).  Returns the free blocks seen.  Caller
 * holds z->lock.  Exposed for tests. */
unsigned long __isolate_free_scan(zone *z, bool exact);

/* Counters (vmstat names), updated with relaxed atomics. */
struct compact_event_stats {
    unsigned long compact_stall;     /* direct compactions run */
    unsigned long compact_success;   /* runs that helped (allocation served / score low) */
    unsigned long compact_fail;      /* runs that did not */
    unsigned long compact_deferred;  /* runs skipped by deferral */
    unsigned long compact_wake;      /* proactive checks that found work (kcompactd wakes) */
    unsigned long compact_full;      /* full compactions (kalloc_compact) */
    unsigned long compact_free_scanned;  /* free blocks the free scanner ordered */
    unsigned long compact_slabs_ordered; /* partial slabs ordered for allocation */
    unsigned long compact_released;  /* pages given back to the OS by compaction */
};
extern compact_event_stats compact_stats;

extern spinlock_t compact_lock;

} // namespace kalloc
