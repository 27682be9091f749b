/*
 * mm/vmscan.h - giving free memory back to the OS: watermarks, decay, and
 * the background reclaimer (kswapd).
 *
 * Mirrors mm/vmscan.c (kswapd, balance_pgdat, shrink_zone) and the
 * watermark set-up of mm/page_alloc.c (__setup_per_zone_wmarks).  What the
 * kernel reclaims is in-use pages; what kalloc reclaims is free pages that
 * are still resident: they cost the program RSS and nothing else, so they
 * are given back with madvise(MADV_DONTNEED) and become PG_reported.
 *
 * MADV_DONTNEED, not MADV_FREE: the RSS drops at once (MADV_FREE pages stay
 * in the resident set and in the cgroup's usage until the kernel is short of
 * memory, which is exactly what the watermarks and the cgroup policy are
 * meant to avoid), and a reported block is known to read as zero, which
 * calloc relies on (a MADV_FREE page may keep its old contents).
 *
 * Three things give memory back:
 *   1. Watermarks (zone->_watermark, per zone, on nr_free_resident).  A free
 *      that pushes a zone above WMARK_LOW flags reclaim; the next slow path
 *      (or kswapd) gives the coldest resident free blocks back until the
 *      zone is under WMARK_HIGH.  The watermarks follow the zone's in-use
 *      memory the program has been seen to reuse (the workingset: refaults of
 *      reclaimed blocks, forgotten over a few seconds), at least 1 MiB (half
 *      the use in a heap under 2 MiB) and at most in-use / 32
 *      clamped to 4 MiB .. 32 MiB, or twice the largest block taken back
 *      (workingset_block) if more, and past that by watermark_boost while
 *      the zone thrashes (given-back memory taken back at 8 times the use
 *      per CPU second: "Thrashing" below); KALLOC_FREE_HIGH fixes low
 *      instead).  Retention: while the use stays within a quarter of the
 *      zone's recent peak of in-use pages (use_peak, raised by allocations,
 *      decayed by timed passes) the low watermark rises to what the program
 *      has been seen to reuse (the workingset, no longer capped), at most
 *      the room under that peak; the band around it stays a quarter of the
 *      usual level.  The resident memory the zone counts (in use plus free
 *      resident) then never passes the peak's use plus that band, and a
 *      steady churn of large blocks stops refaulting them (an allocation
 *      that faults pages in while retention is in effect sets the
 *      watermarks again: __zone_use_rises).  Rounds: once the use has come
 *      back within an eighth of its peak after a drop of more than a
 *      quarter twice in a row (round_time,
 *      round_streak >= ROUNDS_MIN_STREAK, each within ROUNDS_WINDOW_MS of
 *      the one before: the kernel activates a page on its second reference,
 *      not its first), the next drops keep the workingset too, under an
 *      RSS guard: while such memory is kept and the process grows by other
 *      memory (blocks faulted in, fresh huge mappings), a pass reads the
 *      process's RSS and its high-water mark, and if the RSS plus that growth
 *      comes near the mark, the kept memory goes back (rounds_blocked, until
 *      the next round): kept memory never raises the RSS peak by more than
 *      the slack.  Threads in rounds out of step keep the zone near its
 *      peak, so it sees no round: the malloc layer counts each thread's use
 *      and adds what threads in a streak of rounds are below their peaks
 *      (thread_rounds_pages) to the room under the zone's peak, not under
 *      the guard (at such rounds' peak the RSS is at its mark by design).
 *      While a
 *      zone is over WMARK_LOW and has not allocated since
 *      (ZONE_RECLAIM_ACTIVE) its per-CPU pagesets hold at most 4 batches between passes, none after a pass, and fall to zero as the process nears its cgroup's
 *      memory.high / memory.max.
 *   2. Decay: a resident free block idle for KALLOC_DECAY_MS (1 s) is given
 *      back whatever the watermarks say, so an idle program drifts down to
 *      what it uses (jemalloc's dirty decay).  Without a background thread,
 *      decay runs from allocator slow paths (page allocation and free,
 *      vmscan_tick), at most every DECAY_MS / 4; a program that makes no
 *      call at all keeps its memory until its next call - that is what the
 *      background thread is for.
 *   3. kswapd (KALLOC_BACKGROUND=1 or kalloc_background(1)): a thread that
 *      sleeps on a futex and runs the same pass every DECAY_MS / 4, or when a
 *      zone crosses WMARK_LOW; with nothing left to decay it sleeps until
 *      woken.  It is created from a malloc slow path after kalloc_init, never
 *      during it, never in a forked child (the child asks again with
 *      kalloc_background(1)).  KALLOC_BACKGROUND=1 waits until the program
 *      has a thread of its own (a single-threaded program stays one: see
 *      process_single_threaded, platform/kthread.h; the timed hooks of
 *      vmscan_malloc_slowpath look again); 2 and kalloc_background(1) start
 *      it in any process.
 *
 * Residency: a free block counts its pages in nr_free_resident, but a block
 * the program freed may hold pages it never touched (a 40 KB block of which
 * it wrote 64 bytes, carved from memory given back earlier): such pages cost
 * nothing, yet counted whole they pushed the zone over its watermarks, and
 * reclaim gave back (and the program faulted in again) the pages that were
 * touched.  Each free block head keeps nr_resident, an upper bound of its
 * resident pages (all of them when freed; the sum of its parts when merged;
 * at most its size, of the block it was split from, when split).  When a
 * zone is over its watermark, reclaim first reads the residency of the
 * newest unread blocks with mincore (shrink_zone_residency): a block with
 * none resident is given back at once, the others keep an exact count
 * (PG_scanned) and stay.  The watermarks then compare pages the program
 * touched.  Never under a seccomp filter (checked each pass, from the
 * calling thread's status), nor with KALLOC_RESIDENCY=0.
 *
 * Phantom pages: the reads come after a crossing, so a program that frees
 * blocks it wrote only in part crosses on pages that do not exist, and each
 * such crossing is a pass (a seccomp check, a mincore per unread block, a
 * madvise for the blocks found untouched) that finds nothing to give back: jq
 * joining a 2 MB string (each append allocates twice the new length, copies
 * the old string into its first half and frees it) ran 134-150K passes, 2-5
 * s of system time.  So each zone learns, from its reads, which part of the
 * unread blocks' counts turns out not to be resident (phantom_ratio: the
 * pages the reads uncounted over the pages they read, each pass a quarter
 * of the way, an eighth forgotten per timed pass), and the watermark checks
 * compare zone_free_resident_seen: nr_free_resident less that part of
 * nr_free_unscanned (the unread blocks on the age list: the population the
 * reads sample).  The discount is at most half the low watermark, so free
 * memory that is real (a program that changes from writing a tenth of its
 * blocks to writing them whole) starts a pass at 1.5 x low at the latest,
 * and that pass's reads bring the ratio down.  Without reads (a seccomp
 * filter, KALLOC_RESIDENCY=0) nothing is learnt, and the first pass that
 * may not read (a filter installed since) sets the ratio to zero.
 *
 * Age: every free block carries free_time (when it became free, coarse
 * ms).  Resident blocks of order >= VMSCAN_MIN_ORDER are also on the zone's
 * free_lru, newest at the head, so reclaim takes the coldest in O(1) from
 * the tail, of any order.  Smaller blocks are left to the per-CPU pagesets
 * and to malloc_trim (a 4 KiB madvise costs more than the page is worth),
 * except when free resident memory is still over the target once the age
 * list is empty: then up to VMSCAN_SMALL_MAX pages of them per call go back
 * from the free lists' resident heads (shrink_zone_small).
 *
 * Reclaim isolates a batch of blocks (off the lists, PG_isolated), drops the
 * zone lock for the madvise calls, and puts them back as PG_reported, so
 * allocation never waits for a madvise.  A batch goes back with one
 * process_madvise call (os_decommit_many: one system call and one TLB
 * flush for the batch, not one per block; in a multi-threaded process each
 * flush is a shootdown of every CPU running it), unless a seccomp filter is
 * seen in the pass or the kernel refuses the call.
 *
 * Timed passes (kswapd, or the slow-path decay) also drain idle per-CPU
 * pagesets (pcp_decay_all) and shrink the slab caches' spare slabs; an upper
 * layer may add its own pass through vmscan_tcache_decay_hook (null by
 * default), called with no lock held.
 *
 * Lock order: vmscan_lock -> per_cpu_pages.lock -> zone.lock.  vmscan_lock
 * serialises reclaim passes (only one isolates at a time, and fork's prepare
 * handler takes it so no block is isolated in the child).  Slow paths take
 * it with trylock only (they may hold a kmem_cache lock); hooks run without
 * it (they take tcache_list_lock / kmem_cache locks, which come before it).
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

/* Smallest order on the age list (free_lru), which reclaim and decay take
 * from (16 KiB); smaller blocks only go back when the list has nothing
 * left and free resident memory is still over the target (shrink_zone_small). */
constexpr unsigned VMSCAN_MIN_ORDER = 2;
/* Pages in blocks below VMSCAN_MIN_ORDER one shrink_zone call gives back
 * at most (shrink_zone_small: one madvise call per block). */
constexpr unsigned long VMSCAN_SMALL_MAX = 256;
/* Round retention (__setup_zone_wmarks): how long after the last round it
 * holds, how many rounds in a row it needs (one is a program that fills,
 * empties, refills and ends: kept, its memory stayed resident after the
 * end: fragmentation's end phase 48-52 MiB with 13.5 live, 30-32 with two),
 * the pages faulted in under it between two RSS reads, and how near
 * the RSS high-water mark (at least; 1/64 of it above 128 MiB) the guard
 * stops it. */
constexpr uint32_t ROUNDS_WINDOW_MS = 2000;
constexpr uint8_t ROUNDS_MIN_STREAK = 2;
constexpr unsigned ROUNDS_DROP_SHIFT = 2;      /* steady within use_peak >> this of it; below, a drop */
constexpr unsigned long RETENTION_RSS_CHECK_PAGES = 256;
constexpr uint64_t RSS_GUARD_SLACK = 2ull << 20;
/* Thrashing (__zone_thrash_check): a zone whose passes see given-back
 * memory taken back at THRASH_REFAULT_RATIO times its use per second of the
 * process's CPU time or more (over THRASH_WINDOW_MS of it at least; CPU
 * time, not wall time, so a loaded machine that slows the program down
 * does not hide the rate: realloc churn on a machine with 5 busy loops
 * besides kept thrashing, 5-11 s where it ran 0.3-0.6)
 * (and THRASH_MIN_RATE pages a second: a small heap's refaults cost little
 * whatever their ratio) raises the usual level's cap by watermark_boost: a
 * THRASH_BOOST_SHIFT'th of the use at first, doubled while the refaults
 * go on, at most THRASH_BOOST_MAX_SHIFT'th of it; calm windows take it
 * off in THRASH_BOOST_DECAY_MS.  (The kernel's watermark_boost raises its watermarks after
 * fragmenting fallbacks and kswapd drops it once they are met.) */
constexpr unsigned THRASH_REFAULT_RATIO = 8;
constexpr uint32_t THRASH_WINDOW_MS = 250;
constexpr uint32_t THRASH_BOOST_DECAY_MS = 2000;
constexpr unsigned long THRASH_MIN_RATE = 16384;
constexpr unsigned THRASH_BOOST_SHIFT = 2;
constexpr unsigned THRASH_BOOST_MAX_SHIFT = 1;
/* Blocks isolated per hold of the zone lock. */
constexpr unsigned VMSCAN_BATCH = 32;
/* Free blocks whose residency one shrink_zone call reads at most
 * (shrink_zone_residency: one mincore call each, ~0.7 us). */
constexpr unsigned long VMSCAN_RESIDENCY_MAX = 8 * VMSCAN_BATCH;
/* Pageblocks a shrink_zone call asks, after dropping the zone lock, whether
 * their kept hugepage is underused (khugepaged_split_underused). */
constexpr unsigned VMSCAN_UNDERUSED_CHECK = 16;

/* Counters (vmstat-style names); relaxed atomic adds, approximate totals. */
struct reclaim_stats {
    unsigned long pgreclaim;        /* pages given back by watermark reclaim */
    unsigned long pgdecay;          /* pages given back because they were idle (decay) */
    unsigned long pgtrim;           /* pages given back by malloc_trim (zone_reclaim_all) */
    unsigned long pgshrink;         /* idle reported pages unmapped from the top of zones */
    unsigned long pgscan;           /* free blocks isolated by reclaim or decay */
    unsigned long pgreclaim_small;  /* of pgreclaim, pages in order-0/1 blocks (shrink_zone_small) */
    unsigned long wmark_low_hits;   /* frees that pushed a zone above WMARK_LOW */
    unsigned long direct_reclaim;   /* passes run by an allocating / freeing thread */
    unsigned long kswapd_wake;      /* wake-ups sent to kswapd */
    unsigned long kswapd_runs;      /* passes run by kswapd */
    unsigned long decay_runs;       /* timed passes (decay, cgroup check, THP scan) */
    unsigned long cgroup_pressure;  /* timed passes that found RSS near the cgroup limit */
    unsigned long thp_madvised;     /* pageblocks madvised MADV_HUGEPAGE */
    unsigned long thp_nohuge;       /* pageblocks madvised MADV_NOHUGEPAGE */
    unsigned long thp_collapsed;    /* pageblocks collapsed with MADV_COLLAPSE */
    unsigned long thp_collapse_failed; /* MADV_COLLAPSE attempts that failed (EAGAIN...) */
    unsigned long thp_fault_advised; /* fresh pageblocks made huge before their first fault */
    unsigned long thp_fault_slow;   /* of those, probed and found slow (KALLOC_THP=3 backed off) */
    unsigned long thp_split_underused; /* whole hugepages reclaim split: half free, slabs' free objects counted */
    unsigned long hugetlb_pages;    /* pages mapped from hugetlbfs */
    unsigned long hugetlb_fallbacks;/* zone growths that wanted hugetlb pages and fell back */
    unsigned long rss_checks;       /* RSS reads by round retention's guard */
    unsigned long thrash_boosts;    /* windows that found a zone thrashing and raised its boost */
    unsigned long rounds_blocked;   /* round retentions the guard stopped (RSS at its high-water mark) */
    unsigned long residency_reads;  /* free blocks whose resident pages mincore read */
    unsigned long residency_untouched; /* of their pages, in blocks found wholly not resident (given back) */
    unsigned long residency_uncounted; /* pages those reads took out of nr_free_resident */
    unsigned long madvise_batches;  /* process_madvise calls that gave a reclaim (or trim) batch back */
    unsigned long madvise_batched_ranges; /* blocks those calls gave back */
    unsigned long thread_rounds;    /* rounds threads completed in a streak (malloc/tcache.h) */
    unsigned long thread_rounds_pages_max; /* the highest thread_rounds_pages seen (racy) */
};
extern reclaim_stats vm_reclaim_stats;

/* ---------------------------------------------------------------------------
 * Time
 * ------------------------------------------------------------------------- */

/* Tests move time forward with this (added to the clock). */
extern uint32_t vmscan_clock_skew;

/* Now, in coarse milliseconds (wraps; compare with signed differences). */
uint32_t vmscan_now();

static inline uint32_t block_age(uint32_t now, uint32_t t) { return now - t; }

/* ---------------------------------------------------------------------------
 * Watermarks
 * ------------------------------------------------------------------------- */

/* Recompute z's watermarks from its in-use memory, the options and the
 * cgroup pressure (the kernel's __setup_per_zone_wmarks).  Caller holds
 * z->lock. */
void __setup_zone_wmarks(zone *z);

static inline unsigned long wmark_pages(const zone *z, zone_watermarks w)
{
    return z->_watermark[w];
}

/* A zone with less than this in use is a small heap: its watermark cap is
 * the 4 MiB floor, its refaults beside enough resident free memory are not
 * workingset (__workingset_refault), and a single-threaded process's thread
 * cache bins stay small (malloc/tcache.h).  (The watermark floor, 1 MiB,
 * is half the use under 2 MiB: __setup_zone_wmarks.) */
constexpr unsigned long WMARK_SMALL_HEAP_PAGES = (4ul << 20) >> PAGE_SHIFT;

/* Whether z is a small heap (fewer than WMARK_SMALL_HEAP_PAGES in use).
 * Under z->lock, or racily for slow-path policy. */
static inline bool zone_small_heap(const zone *z)
{
    return READ_ONCE(z->spanned_pages) - READ_ONCE(z->nr_free_pages) < WMARK_SMALL_HEAP_PAGES;
}

/* Phantom pages (see the file comment): phantom_ratio is in 1/PHANTOM_ONE;
 * a pass's reads move it PHANTOM_LEARN_SHIFT of the way to what they found
 * (reads of fewer than PHANTOM_MIN_SAMPLE counted pages leave it), and each
 * timed pass takes an eighth off it. */
constexpr unsigned PHANTOM_SHIFT = 10;
constexpr unsigned PHANTOM_ONE = 1u << PHANTOM_SHIFT;
constexpr unsigned PHANTOM_LEARN_SHIFT = 2;
constexpr unsigned long PHANTOM_MIN_SAMPLE = 16;

/* Free resident pages as the watermarks see them: nr_free_resident less the
 * pages of unread blocks' counts expected to be phantom (phantom_ratio of
 * nr_free_unscanned), a discount of at most half the low watermark.  Caller
 * holds z->lock (or reads racily, for a hint). */
static inline unsigned long zone_free_resident_seen(const zone *z)
{
    unsigned long resident = READ_ONCE(z->nr_free_resident);
    /* A small heap's watermark is up to half its use: no discount there
     * (realloc-string's peak RSS +8.5% with one). */
    if (zone_small_heap(z))
        return resident;
    unsigned long phantom = (READ_ONCE(z->nr_free_unscanned) * READ_ONCE(z->phantom_ratio)) >> PHANTOM_SHIFT;
    unsigned long cap = READ_ONCE(z->_watermark[WMARK_LOW]) / 2;
    if (phantom > cap)
        phantom = cap;
    return resident > phantom ? resident - phantom : 0;
}

/* Set when a zone crossed WMARK_LOW (or kswapd sleeps and there is new
 * reclaimable memory): the next vmscan_tick acts.  Written under a zone
 * lock, read racily. */
extern int vmscan_pending;
extern int rss_check_due;      /* the next pass reads the RSS (round retention's guard) */
extern int rounds_retaining;   /* some zone keeps free memory across a round's drop */
/* Set while kswapd sleeps with nothing to decay (no timeout): new
 * reclaimable memory must wake it. */
extern int kswapd_idle;

/* A watermark pass that read blocks' residency and gave nothing back: the
 * free resident count was over WMARK_LOW only by its upper bounds.  They
 * come back at once in a program that takes a block out of a larger one
 * and frees it again (expand gives each half the whole block's count, an
 * upper bound, and the free adds them up when they merge): malloc(256 KiB)
 * and free in a loop ran such a pass (a seccomp check, a mincore) at every
 * free, ~30 us a pair, 7x jemalloc's time.  In a larger heap the phantom
 * discount learnt from such reads (zone_free_resident_seen) stops them; a
 * small heap has none, so there, for VMSCAN_FUTILE_MS after such a pass,
 * frees start a pass only when the count passes the one that pass met by
 * a quarter of WMARK_LOW (a margin for counts that wobble; with a whole
 * WMARK_LOW, realloc-string's peak RSS rose 5.9 -> 6.6 MiB); timed passes
 * run as before.  z->lock held. */
constexpr uint32_t VMSCAN_FUTILE_MS = 100;

static inline bool zone_pass_futile(const zone *z, unsigned long seen, unsigned long low)
{
    return z->futile_until && zone_small_heap(z) && (int32_t)(vmscan_now() - z->futile_until) < 0 &&
           seen <= z->futile_seen + low / 4;
}

/* Called by the page allocator, z->lock held, after a free added resident
 * memory: notes a WMARK_LOW crossing (or new work for an idle kswapd) for
 * the next tick. */
static inline void __zone_watermark_check(zone *z)
{
    if (!z->nr_free_lru)
        return;
    unsigned long seen;
    if (unlikely(z->nr_free_resident > z->_watermark[WMARK_LOW]) &&
        (seen = zone_free_resident_seen(z)) > z->_watermark[WMARK_LOW]) {
        /* The program is freeing: the pagesets hold little until the zone
         * next allocates (the kernel's ZONE_RECLAIM_ACTIVE, nr_pcp_high). */
        if (!(z->flags & ZONE_RECLAIM_ACTIVE))
            WRITE_ONCE(z->flags, z->flags | ZONE_RECLAIM_ACTIVE);
        if (!READ_ONCE(vmscan_pending) && !zone_pass_futile(z, seen, z->_watermark[WMARK_LOW])) {
            WRITE_ONCE(vmscan_pending, 1);
            vm_reclaim_stats.wmark_low_hits++;
        }
    } else if (unlikely(READ_ONCE(kswapd_idle)) && !READ_ONCE(vmscan_pending)) {
        WRITE_ONCE(vmscan_pending, 1);
    }
}

/* Whether the process's heap is small: one zone with less than
 * WMARK_SMALL_HEAP_PAGES in use (racy reads: for slow-path policy only,
 * such as the thread caches' bin sizes, malloc/tcache.h). */
static inline bool vmscan_small_heap()
{
    if (__atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE) != 1)
        return false;
    return zone_small_heap(zones[0]);
}

/* Workingset (the kernel's mm/workingset.c, for free memory): an allocation
 * took nr pages of a block that reclaim had given back, so the program
 * reuses free memory reclaim took from it: raise the zone's workingset,
 * which the low watermark follows (__setup_zone_wmarks).  In a small heap
 * only when the zone held fewer resident free pages than nr (the caller has
 * taken the block off its list): the kernel counts a refault only if a
 * larger workingset would have kept the page (its refault distance); here,
 * when resident free memory was there but in blocks that did not fit,
 * keeping more of it would not have spared the fault.  Counting those kept
 * realloc-string's watermark at 1.0-1.5 MiB beside 1.2 MiB in use.  Not in
 * larger heaps: there kv-ttl's peak rose 196.1 -> 198.7 MiB (4 runs) with
 * it.  The largest such refault (workingset_block) sets a floor under the
 * usual level's cap: twice the block, so a program cycling one large block
 * is not left with a level the block alone crosses.  Caller holds z->lock. */
static inline void __workingset_refault(zone *z, unsigned long nr)
{
    z->nr_refault += nr;
    if (z->nr_free_resident >= nr && zone_small_heap(z))
        return;     /* resident free memory was there, in blocks that did not fit */
    /* At most the zone: the usual level caps what it keeps (4..32 MiB), and
     * retention the rest (the room under the recent peak). */
    z->workingset = z->workingset + nr < z->spanned_pages ? z->workingset + nr : z->spanned_pages;
    if (nr > z->workingset_block)
        z->workingset_block = nr;
}

/* Retention (see the file comment): resident memory grew by an allocation
 * from given-back blocks while the watermark keeps reused free memory; set
 * the watermarks again (the room under the peak shrank) and flag reclaim if
 * free resident memory is now over WMARK_LOW.  Caller holds z->lock. */
void __zone_retention_check(zone *z, unsigned long pages);

/* Thrashing (THRASH_REFAULT_RATIO above): how fast z takes given-back
 * memory back, against `use` (its recent peak of pages in use, which moves
 * less than the use across a phase change), read by every watermark pass
 * (z->refault_snap, once a window); raises or decays z->watermark_boost.
 * realloc churn of 1-100 KB blocks in a 55 MiB heap (1,000 slots, each
 * replaced or resized at random, written whole) took back ~4 times its use
 * every 250 ms: with the usual 4 MiB level, every pass gave back what the
 * next allocations faulted in again (435K faults, 1.86 s against glibc's
 * 0.56 s); a fixed 16 MiB level ran it in 0.56 s with 20K faults.
 * frag-churn, whose peak the /32 cap keeps down, takes back 1.6 times its
 * use a second over its run, 10 times in 100 ms bursts at phase changes
 * (a 50 ms window boosted it: peak 151.8 -> 167.5 MB).  cpu_ms: the
 * process's CPU time in ms (ktime_get_process_cpu_ns).  Caller holds
 * z->lock. */
void __zone_thrash_check(zone *z, uint32_t cpu_ms, unsigned long use);

/* The use came back near its peak after a large drop: a round. */
void __zone_round(zone *z);

/* Memory outside the zones grew by a fresh mapping of `bytes` (a huge block
 * mapped afresh): while some zone keeps free memory across a round's drop,
 * the next pass reads the process's RSS (round retention's guard). */
void vmscan_note_growth(size_t bytes);

/* Threads in rounds (the malloc layer's per-thread signal, malloc/tcache.h):
 * pages that threads which have each gone from their peak use to near zero
 * and back, twice in a row, are below their last peak now, so their next
 * round takes them back.  The zone's retention may keep that much more
 * than the room under its own peak (__setup_zone_wmarks), under the RSS
 * guard.  The malloc layer adds and takes away its threads' shares. */
extern long thread_rounds_pages;
extern uint32_t thread_rounds_time;   /* vmscan_now() at the last round of a thread in a streak */
/* A thread completed a round in a streak at `now`: the shares count for
 * ROUNDS_WINDOW_MS from here (no round anywhere since: none counts). */
static inline void vmscan_thread_round_seen(uint32_t now)
{
    WRITE_ONCE(thread_rounds_time, now ? now : 1);
}
static inline void vmscan_thread_rounds_add(long pages)
{
    if (!pages)
        return;
    long now = __atomic_add_fetch(&thread_rounds_pages, pages, __ATOMIC_RELAXED);
    if (now > 0 && (unsigned long)now > READ_ONCE(vm_reclaim_stats.thread_rounds_pages_max))
        WRITE_ONCE(vm_reclaim_stats.thread_rounds_pages_max, (unsigned long)now);
}

/* Set when a zone's use reached a new high: the next malloc slow path
 * unmaps the huge areas cached for reuse that have been idle a while
 * (vmalloc_evict_at_high, mm/vmalloc.h).  Written under a zone lock, read
 * racily. */
extern int vcache_high_pending;

/* An allocation took `pages` pages off z's free lists (reported: from
 * blocks given back or never touched, so resident memory grew).  Raises
 * use_peak (a new high flags the huge-area cache: vcache_high_pending) and
 * notes a round; with retention in effect a growth of resident
 * memory is checked against the peak (__zone_retention_check).  Caller
 * holds z->lock. */
static inline void __zone_use_rises(zone *z, bool reported, unsigned long pages)
{
    unsigned long in_use = z->spanned_pages - z->nr_free_pages;
    if (in_use > z->use_peak) {
        z->use_peak = in_use;
        /* A new high, against the highest use so far, not the recent peak
         * (which timed passes decay): PHP building a 400K-entry array six
         * times, its hash's 5, 10 and 20 MiB copies freed and taken back
         * each round, saw the decayed peak passed early in every build and
         * lost its cached areas, faulting 10-24K pages a round.  The mark
         * sits a 32nd above the use that set it, so a heap creeping up by
         * a few pages a round does not count. */
        if (in_use > z->vcache_high_mark) {
            z->vcache_high_mark = in_use + in_use / 32;
            if (!READ_ONCE(vcache_high_pending))
                WRITE_ONCE(vcache_high_pending, 1);
        }
    }
    if (unlikely(z->use_dropped) && in_use >= z->use_peak - z->use_peak / 8)
        __zone_round(z);
    if (unlikely(reported && z->wmark_retained))
        __zone_retention_check(z, pages);
}

/* ---------------------------------------------------------------------------
 * Reclaim
 * ------------------------------------------------------------------------- */

/* What one shrink_zone pass may give back. */
struct scan_control {
    unsigned long target;   /* reclaim while nr_free_resident > target (ULONG_MAX: no watermark work) */
    uint32_t decay_age;     /* also reclaim blocks idle at least this long (UINT32_MAX: none) */
    uint32_t now;           /* the pass's clock */
    unsigned long nr_reclaimed;  /* out: pages given back for the watermark */
    unsigned long nr_decayed;    /* out: pages given back because they were idle */
    int residency;               /* mincore allowed in this pass: 0 not asked yet, 1 yes, -1 no */
    int filtered;                /* a seccomp filter on this thread: 0 not asked yet, 1 yes, -1 no */
    /* out, for the trace (KALLOC_TRACE_VMSCAN): */
    unsigned nr_read;            /* blocks whose residency was read */
    unsigned long nr_counted;    /* their counts (upper bounds) before the reads */
    unsigned long nr_uncounted;  /* of those, pages the reads found not resident */
    unsigned long nr_untouched;  /* pages of the blocks found with no resident page */
    unsigned nr_blocks;          /* blocks given back by the watermark and decay loop */
    unsigned max_order;          /* the largest of them */
};

/* Give back the coldest resident free blocks of z per sc.  Takes z->lock,
 * dropping it around the madvise calls.  Caller holds vmscan_lock. */
void shrink_zone(zone *z, scan_control *sc);

/* One pass over every zone: watermarks (every zone over WMARK_LOW goes down
 * to WMARK_HIGH) and, when `timed`, decay, the cgroup check and the THP
 * scan.  Takes vmscan_lock (trylock when !wait; returns false if busy).
 * from_kswapd: the background thread, which may spend longer (more
 * MADV_COLLAPSE calls per pass, each 3-5 ms of copying). */
bool vmscan_run(uint32_t now, bool timed, bool wait, bool from_kswapd = false);

/* The slow-path hook (page allocation and free, with no zone lock held):
 * cheap unless a zone crossed WMARK_LOW or the decay period has passed; then
 * wakes kswapd or runs the pass itself. */
void __vmscan_tick_slow(uint32_t now);
extern uint32_t vmscan_next_tick;   /* clock value of the next timed pass */
static inline void vmscan_tick()
{
    uint32_t now = vmscan_now();
    if (unlikely(READ_ONCE(vmscan_pending) || (int32_t)(now - READ_ONCE(vmscan_next_tick)) >= 0))
        __vmscan_tick_slow(now);
}

/* Hooks for other layers (null until they register): give back what their
 * caches have held idle since `now - decay`.  Called with no lock held: by
 * kswapd after each timed pass, else by vmscan_malloc_slowpath at most once
 * per tick period (never from the page allocator's tick, whose callers may
 * hold kmem_cache or tcache locks). */
extern void (*vmscan_tcache_decay_hook)(uint32_t now);  /* set by an upper layer, or null */

/* ---------------------------------------------------------------------------
 * kswapd
 * ------------------------------------------------------------------------- */

/* Set when a background thread is wanted but not running (option or
 * kalloc_background); malloc slow paths then call kswapd_run_if_wanted. */
extern int kswapd_start_pending;

/* Start kswapd if it is wanted and not running.  The caller holds no
 * allocator lock and kalloc_init has completed (pthread_create may
 * allocate). */
void kswapd_run_if_wanted();

/* kalloc_background(): want (1) or stop wanting (0) the thread; starting
 * happens here (the caller is the program, holding nothing). */
void kswapd_set_wanted(bool on);

/* The malloc layer's slow paths call this (no allocator lock held,
 * kalloc_init done): starts kswapd when wanted, and runs the decay hooks
 * when they are due and there is no kswapd. */
void vmscan_malloc_slowpath();
extern uint32_t vmscan_hooks_next;   /* clock value when vmscan_malloc_slowpath next acts */
static inline bool vmscan_malloc_slowpath_due()
{
    return READ_ONCE(kswapd_start_pending) || READ_ONCE(vcache_high_pending) ||
           (int32_t)(vmscan_now() - READ_ONCE(vmscan_hooks_next)) >= 0;
}

/* Whether kswapd is running (a thread exists and has not been told to stop). */
bool kswapd_running();

/* Wake kswapd now (a zone crossed a watermark). */
void wakeup_kswapd();

/* fork(): prepare takes vmscan_lock (no block isolated across fork);
 * the child has no kswapd and does not start one unless asked again. */
void vmscan_lock_for_fork();
void vmscan_unlock_for_fork();
void vmscan_after_fork_child(bool locks_taken);

/* Options and cgroup limits, read once (first zone creation; idempotent). */
void vmscan_init();

/* The cgroup limit in bytes the watermarks react to (0: none) and the
 * current pressure, 0 (none) .. 1024 (watermarks at zero). */
uint64_t vmscan_cgroup_limit();
unsigned vmscan_cgroup_pressure();
/* Tests: re-read the cgroup (after moving the process) or set a limit. */
void vmscan_set_cgroup_limit(uint64_t bytes);
void vmscan_reread_cgroup();

/* One line per counter, for the stats report. */
struct printbuf;
void print_reclaim_stats(printbuf &out);

/* The reclaim trace (the kernel's mm_vmscan_* tracepoints, kept in memory):
 * with KALLOC_TRACE_VMSCAN=N, each pass records, for every zone it worked
 * on, the zone's state as the pass found it (use, recent peak, workingset and
 * its largest block, watermarks, free resident pages counted and seen after
 * the phantom discount, unread pages, retention and rounds) and what the pass
 * did (blocks read and what they held, pages given back and blocks); the
 * last N (at most VMSCAN_TRACE_MAX) are printed at exit, oldest first, one
 * mm_vmscan_zone line each.  Written under vmscan_lock into a static ring
 * (untouched, so not resident, unless the option is on).  Found both
 * give-back/refault loops of session 24 (docs/architecture.md, Reclaim). */
constexpr unsigned VMSCAN_TRACE_MAX = 4096;
void print_vmscan_trace(printbuf &out);

} // namespace kalloc
