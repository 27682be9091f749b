/*
 * mm/per_cpu_pages.h - per-CPU pagesets (the kernel's struct per_cpu_pages,
 * in mm/page_alloc.c).
 *
 * Each zone has one pageset per possible CPU: lists of free blocks of order
 * 0..PAGE_ALLOC_COSTLY_ORDER (3) per migrate type, so most slab-page
 * allocations and frees touch only the current CPU's pageset, not the zone.
 *   count  pages on the lists
 *   batch  pages moved to or from the zone at once, under one hold of the
 *          zone lock (rmqueue_bulk / free_pcppages_bulk)
 *   high   when a free pushes count to high, a batch goes back to the zone
 * batch follows the kernel's zone_batchsize (a quarter of zone pages / 1024,
 * at most 1 MiB of pages, rounded to 2^n - 1: 63 for zones of 1 GiB and
 * more); high starts at 6 * batch, as the kernel's classic pcp high.
 *
 * The CPU comes from rseq (platform/cpu.h) and may be stale by the time the
 * pageset is used (the thread migrated), so each pageset has a lock; it is
 * normally uncontended.  Pages on a pageset are neither free in the buddy
 * sense (not on free_area, not merged) nor allocated: their head page has
 * PG_pcp and the block's order, and keeps PG_reported if the block was
 * given back to the OS.
 *
 * Lock order: kmem_cache.lock -> per_cpu_pages.lock -> zone.lock.
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

constexpr unsigned NR_PCP_ORDERS = PAGE_ALLOC_COSTLY_ORDER + 1;
constexpr unsigned NR_PCP_LISTS = NR_PCP_ORDERS * MIGRATE_TYPES;

struct per_cpu_pages {
    spinlock_t lock;              /* protects everything below */
    int count;                    /* pages on the lists */
    int high;                     /* count at which a free drains a batch */
    int batch;                    /* pages per refill / drain */
    unsigned long nr_refill;      /* rmqueue_bulk calls (a count) */
    unsigned long nr_drain;       /* free_pcppages_bulk calls (a count) */
    list_head lists[NR_PCP_LISTS];/* [order * MIGRATE_TYPES + migratetype] */
};

/* Set up a zone's pagesets (zone creation; nr = number of CPUs). */
void pcp_init(zone *z, per_cpu_pages *pcps, unsigned nr);

/* Recompute batch and high from the zone's size (after it grew). */
void pcp_update_batch_high(zone *z);

/* A block of `order` (<= PAGE_ALLOC_COSTLY_ORDER) from the current CPU's
 * pageset of zone z, refilled from the zone in a batch when empty;
 * nullptr when the zone has nothing of the kind. */
page *rmqueue_pcplist(zone *z, unsigned order, migratetype mt, bool *zeroed);

/* Give a block of `order` (<= PAGE_ALLOC_COSTLY_ORDER) to the current CPU's
 * pageset; a batch goes back to the zone when count reaches high. */
void free_unref_page(zone *z, page *pg, unsigned order);

/* Empty every pageset of every zone into the buddy allocator (the kernel's
 * drain_all_pages): before reclaim, for malloc_trim, in tests. */
void drain_all_pages();

/* Pages held by z's pagesets (racy sum, for statistics). */
unsigned long zone_pcp_pages(zone *z);

/* fork() support: take / release / reset every pageset lock. */
void pcp_lock_all(unsigned nr_zones_locked);
void pcp_unlock_all(unsigned nr_zones_locked);
void pcp_reinit_locks(unsigned nr_zones_locked);

} // namespace kalloc
