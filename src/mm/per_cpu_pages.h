/*
 * mm/per_cpu_pages.h - per-CPU pagesets (the kernel's struct per_cpu_pages,
 * in mm/page_alloc.c, as of Linux 6.7+).
 *
 * Each zone has one pageset per possible CPU, so most page allocations and
 * frees touch only the current CPU's pageset, not the zone lock.  It holds:
 *   - blocks of order 0..PAGE_ALLOC_COSTLY_ORDER (3) per migrate type
 *     (slab pages), refilled and drained in batches;
 *   - runs of 9..512 pages (PCP_RUN_MIN_PAGES..PCP_RUN_MAX_PAGES) freed by
 *     large allocations (malloc of 32 KiB + 1 .. 2 MiB), one list per size
 *     class 2^(k-1) < pages <= 2^k, k = 4..pageblock_order.  The kernel keeps
 *     lists for orders 0..3 and for pageblock_order (THP); kalloc's large
 *     blocks are exact page counts, not orders (a 10-page malloc costs 10
 *     pages), so these lists hold exact runs: a free of 10 pages is a
 *     10-page run, and the next malloc of 10 pages takes it back without
 *     the zone lock.  A run that is larger than the request is split, the
 *     rest staying on the pageset (9 pages or more) or going back to the
 *     buddy allocator.  A second miss in a row first gives every run on
 *     the pageset back to the zone (they merge there; kept, runs of sizes
 *     no longer asked for cut the free memory into pieces:
 *     pcp_drain_runs_locked); a miss takes a buddy block and gives its tail
 *     back under one hold of the zone lock (page_alloc.cc), so the tail
 *     stays mergeable and a realloc can still grow into it.
 *
 * The kernel's counters, with its adaptive high (6.7+):
 *   count       pages on the lists (blocks and runs)
 *   batch       pages moved to or from the zone at once (rmqueue_bulk /
 *               free_pcppages_bulk); the kernel's zone_batchsize: a quarter
 *               of zone pages / 1024, at most 1 MiB of pages, rounded to
 *               2^n - 1 (63 for zones of 1 GiB and more)
 *   high        when a free pushes count to high, pages go back to the zone
 *   high_min    what high decays to: the zone's low watermark shared among
 *               the CPUs, at least 4 * batch (zone_highsize)
 *   high_max    what high may grow to: 1/32 of the zone shared among the
 *               CPUs (PCP_HIGH_MAX_FRACTION), at least high_min
 *   free_count  pages freed since the last allocation (halved by each
 *               allocation): a CPU that frees a lot without allocating
 *               raises high to free_count + batch (nr_pcp_high) and gives
 *               back bigger batches, up to high - batch (nr_pcp_free)
 *   alloc_factor  each order-0 refill without a free in between doubles the
 *               refill (batch << alloc_factor, at most 2^PCP_BATCH_SCALE_MAX);
 *               a free halves it (nr_pcp_alloc); each refill raises high by
 *               a batch: a larger high would have avoided the zone
 * When the zone is short of free memory (ZONE_BELOW_HIGH: free pages under
 * the zone's high watermark), high comes down toward high_min instead and
 * frees give pages back at once.
 *
 * Decay and idle drain (the kernel's vmstat_update -> decay_pcp_high, and
 * the expiry of remote pagesets): each pageset records when it was last
 * used, on a coarse clock (platform/timekeeping.h).  Reading the clock on
 * every allocation and free would cost ~6 ns each (a fifth of a pageset
 * hit), so an allocation or free only counts `uses`, and each decay pass
 * stamps last_used_ms on the pagesets whose count moved since the last
 * pass.  pcp_decay_tick(), called from slow paths (a refill or a drain) on
 * any CPU, runs pcp_decay_all() at most every PCP_DECAY_CHECK_MS: pagesets
 * unused for PCP_IDLE_MS are drained whole (a thread that moved to another
 * CPU or exited leaves nothing behind), and once per PCP_DECAY_INTERVAL_MS
 * every pageset's high loses 1/8 toward high_min, with what is above the
 * new high given back.  pcp_decay_all() is public for a background
 * reclaimer.
 *
 * The CPU comes from rseq (platform/cpu.h) and may be stale by the time the
 * pageset is used (the thread migrated), so each pageset has a lock; it is
 * normally uncontended.  Pages on a pageset are neither free in the buddy
 * sense (not on free_area, not merged) nor allocated: the head page of each
 * block or run has PG_pcp, `order` (its list's order or size class) and
 * nr_pages (its length); a block keeps PG_reported if it was given back to
 * the OS.  Invariants (tests/unit/pcp_test.cc):
 *   - count = the pages on the lists; after a free, count < high;
 *   - high_min <= high <= high_max whenever the lock is released by an
 *     allocation, a free or a decay;
 *   - a run on list k has 2^(k-1) < nr_pages <= 2^k pages.
 *
 * Lock order: kmem_cache.lock -> per_cpu_pages.lock -> zone.lock.  No path
 * holds two pageset locks, except pcp_lock_all (fork), in (zone, CPU) order.
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

/* Lists for blocks of order 0..PAGE_ALLOC_COSTLY_ORDER, per migrate type. */
constexpr unsigned NR_PCP_ORDERS = PAGE_ALLOC_COSTLY_ORDER + 1;
constexpr unsigned NR_LOWORDER_PCP_LISTS = NR_PCP_ORDERS * MIGRATE_TYPES;
/* Lists for runs of large allocations, by size class 4..pageblock_order. */
constexpr unsigned PCP_RUN_MIN_ORDER = PAGE_ALLOC_COSTLY_ORDER + 1;
constexpr unsigned PCP_RUN_MAX_ORDER = pageblock_order;
constexpr unsigned NR_PCP_RUN_LISTS = PCP_RUN_MAX_ORDER - PCP_RUN_MIN_ORDER + 1;
constexpr unsigned long PCP_RUN_MIN_PAGES = (1ul << (PCP_RUN_MIN_ORDER - 1)) + 1;   /* 9 */
constexpr unsigned long PCP_RUN_MAX_PAGES = 1ul << PCP_RUN_MAX_ORDER;                /* 512 */
constexpr unsigned NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_RUN_LISTS;

/* Run allocations missing in a row that give the pageset's runs back to the
 * zone (pcp_drain_runs_locked): 2, so that a program alternating two sizes
 * (a 64 KiB buffer freed, then a 100 KiB one) keeps both runs: giving them
 * back at every miss made such a loop 64 ns -> 12 us per malloc and free
 * beside a 100 MB heap (each block then faulted in again). */
constexpr unsigned PCP_RUN_DRAIN_MISSES = 2;
/* high_max is the zone's pages / this, split among the CPUs.  The kernel's
 * MIN_PERCPU_PAGELIST_HIGH_FRACTION is 8, but a free page kept on a
 * pageset is resident memory that does not merge: with 8, bench/'s
 * frag-churn peaked 17% higher (196 -> 230 MiB: the zone grew around the
 * unmerged runs) and alloc-test 14% higher (24.4 -> 27.8 MiB); with 32
 * both are level with the fixed high of before. */
constexpr unsigned PCP_HIGH_MAX_FRACTION = 32;

/* The kernel's CONFIG_PCP_BATCH_SCALE_MAX: refills grow to batch << 5 and
 * free_count stops growing at batch << 5 (or 2 * high_min, if more). */
constexpr int PCP_BATCH_SCALE_MAX = 5;
/* A pageset unused this long is drained whole. */
constexpr unsigned long PCP_IDLE_MS = 1000;
/* high decays one step (1/8) this often, as the kernel's vmstat_update. */
constexpr unsigned long PCP_DECAY_INTERVAL_MS = 1000;
/* Slow paths run pcp_decay_all at most this often. */
constexpr unsigned long PCP_DECAY_CHECK_MS = 100;

struct per_cpu_pages {
    spinlock_t lock;              /* protects everything below */
    int count;                    /* pages on the lists */
    int high;                     /* count at which a free gives pages back to the zone */
    int high_min;                 /* floor of high (zone_highsize of the low watermark) */
    int high_max;                 /* ceiling of high (1/8 of the zone per CPU) */
    int batch;                    /* pages per refill / drain (zone_batchsize) */
    int free_count;               /* pages freed since the last allocation, halved by each allocation */
    uint8_t alloc_factor;         /* order-0 refills are batch << alloc_factor */
    uint8_t run_misses;           /* run allocations that found no run since the last that did
                                   * (PCP_RUN_DRAIN_MISSES of them give the runs back) */
    unsigned long uses;           /* allocations and frees so far (a count; wraps) */
    unsigned long uses_seen;      /* `uses` when a decay pass last saw it change */
    unsigned long last_used_ms;   /* that pass's time: no use since, if uses == uses_seen */
    unsigned long nr_refill;      /* rmqueue_bulk calls (a count) */
    unsigned long nr_drain;       /* free_pcppages_bulk calls (a count) */
    unsigned long nr_run_hit;     /* large allocations served from a run (a count) */
    unsigned long nr_run_miss;    /* large allocations that found no run (a count) */
    unsigned long nr_run_drain;   /* misses that gave the runs back (pcp_drain_runs_locked) */
    unsigned long freed_pages;    /* pages freed onto this pageset, ever: with zone freed_pages,
                                   * khugepaged_split_underused's bound (counted here, under
                                   * the pageset's lock, so a free writes no shared line) */
    list_head lists[NR_PCP_LISTS];/* [order * MIGRATE_TYPES + mt] for blocks; then the run classes */
};

/* Pagesets a zone has room for (its metadata reserves PCP_MAX_CPUS of
 * them, 114 KiB of address space, made writable as they are used).  A CPU
 * numbered higher shares one (cpu % nr_pcp): each pageset has its lock. */
constexpr unsigned PCP_MAX_CPUS = 256;

/* Pagesets per zone: 1 until the process makes a second thread cache
 * (pcp_set_nr_cpus), then the possible CPUs (nr_cpu_ids, at most
 * PCP_MAX_CPUS).  One thread needs one pageset; reading the number of CPUs
 * (sysfs, ~20 us in a fresh process) is left to processes with threads.
 * Written under zone_list_lock. */
extern unsigned pcp_nr_cpus;

/* z's pagesets in use.  nr_pcp only grows (pcp_set_nr_cpus), with a
 * release once the new pagesets are set up: read with an acquire, so a
 * loop over them sees each one set up (outside zone_list_lock). */
static inline unsigned zone_nr_pcp(const zone *z) { return __atomic_load_n(&z->nr_pcp, __ATOMIC_ACQUIRE); }

/* The pagesets' part of a zone's metadata reservation, in bytes. */
constexpr size_t pcp_reserve_bytes()
{
    return (PCP_MAX_CPUS * sizeof(per_cpu_pages) + 4095) & ~(size_t)4095;
}

/* Set up a zone's pagesets (zone creation, zone_list_lock held): pcps has
 * room for PCP_MAX_CPUS, the first nr writable. */
void pcp_init(zone *z, per_cpu_pages *pcps, unsigned nr);

/* The process has a second thread: every zone gets min(nr, PCP_MAX_CPUS)
 * pagesets (their pages made writable, the new ones set up, then nr_pcp
 * raised with a release: this_cpu_pcp reads it with no lock), and the
 * zones made later as many.  Takes zone_list_lock (so no fork locks the
 * pagesets meanwhile), then each zone's lock for its batch and high; call
 * with no allocator lock held.  Idempotent. */
void pcp_set_nr_cpus(unsigned nr);

/* Recompute batch, high_min and high_max from the zone's size (after it
 * grew or shrank; the kernel's zone_set_pageset_high_and_batch).  Caller
 * holds z->lock. */
void pcp_update_batch_high(zone *z);

/* A block of `order` (<= PAGE_ALLOC_COSTLY_ORDER) from the current CPU's
 * pageset of zone z, refilled from the zone in a batch when empty;
 * nullptr when the zone has nothing of the kind. */
page *rmqueue_pcplist(zone *z, unsigned order, migratetype mt, bool *zeroed);

/* Give a block of `order` (<= PAGE_ALLOC_COSTLY_ORDER) to the current CPU's
 * pageset; pages go back to the zone when count reaches high. */
void free_unref_page(zone *z, page *pg, unsigned order);

/* Exactly nr_pages (PCP_RUN_MIN_PAGES..PCP_RUN_MAX_PAGES) pages from a run
 * on the current CPU's pageset of zone z (a large allocation); nullptr when
 * it has none that fits: the caller goes to the zone.  Runs are never
 * PG_reported (they come from freed large blocks). */
page *rmqueue_pcp_run(zone *z, unsigned long nr_pages);

/* Give a run of nr_pages (PCP_RUN_MIN_PAGES..PCP_RUN_MAX_PAGES) pages to
 * the current CPU's pageset (a large block, or the tail of one, freed).
 * False, with nothing done, when the run is at least high_max: the caller
 * frees it to the zone. */
bool free_unref_run(zone *z, page *pg, unsigned long nr_pages);

/* Empty every pageset of every zone into the buddy allocator (the kernel's
 * drain_all_pages): before reclaim, for malloc_trim, in tests. */
void drain_all_pages();

/* Reclaim is active in z (ZONE_RECLAIM_ACTIVE): give back everything its
 * pagesets hold (nr_pcp_high lets them keep at most 4 batches then), so the
 * blocks merge with their free buddies and reclaim can take them (the
 * kernel's drain_zone_pages).  Keeping 4 batches left, after a freed burst,
 * up to 60 resident pages scattered over the zone, each keeping its free
 * buddies from merging: smaller, resident free blocks and more free block
 * heads (a descriptor page each).  Takes the pagesets' locks and z->lock;
 * returns the pages given back. */
unsigned long drain_zone_pages(zone *z);

/* One housekeeping pass at time now_ms (ktime_get_coarse_ms(), or a test's
 * clock): stamp the pagesets used since the last pass with now_ms, drain
 * every pageset unused since now_ms - PCP_IDLE_MS, and, if
 * PCP_DECAY_INTERVAL_MS passed since the last decay, decay every pageset's
 * high (decay_pcp_high).  Takes each pageset lock in turn, never two; call
 * with no allocator lock held.  For a background reclaimer. */
void pcp_decay_all(unsigned long now_ms);

/* pcp_decay_all(now) if PCP_DECAY_CHECK_MS passed since the last pass
 * (one caller wins).  Called from slow paths with no lock held. */
void pcp_decay_tick();

/* Decrease pcp->high one step toward high_min and give back what is above
 * it; returns nonzero while there is more to do.  Caller holds pcp->lock. */
int decay_pcp_high(zone *z, per_cpu_pages *pcp);

/* ZONE_BELOW_HIGH bookkeeping after the zone's free pages changed: set it
 * when they are under the zone's high watermark, clear it when they are
 * back above.  Caller holds z->lock. */
void __zone_update_below_high(zone *z);

/* Pages held by z's pagesets (racy sum, for statistics). */
unsigned long zone_pcp_pages(zone *z);

/* Pages freed in z, ever: the zone's count and its pagesets' (racy sum;
 * khugepaged_split_underused's bound, which tolerates overcounts). */
unsigned long zone_freed_pages(zone *z);

/* fork() support: take / release / reset every pageset lock. */
void pcp_lock_all(unsigned nr_zones_locked);
void pcp_unlock_all(unsigned nr_zones_locked);
void pcp_reinit_locks(unsigned nr_zones_locked);

} // namespace kalloc
