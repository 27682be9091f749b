/*
 * mm/per_cpu_pages.cc - per-CPU pagesets (see per_cpu_pages.h).
 *
 * Large blocks through the pagesets (tests/unit/pcp_large_bench, 2-core
 * shared machine, medians of 3 runs; malloc + touch + free of one size, 1
 * and 2 threads, in a zone grown to ~68 MiB): CPU time per pair 101..107 ns
 * -> 52 ns and zone-lock holds per pair 3 -> 0 for 40, 100 and 300 KiB; 16
 * mallocs then 16 frees: 40 KiB 86 -> 52 ns, 3 -> 0 holds; 100 KiB 94 -> 84
 * ns, 3 -> 0.75; 300 KiB 104 -> 105 ns, 3 -> 1.12 (16 x 300 KiB exceeds
 * high_max).  In a 4 MiB zone 40 and 100 KiB pairs still need no zone lock
 * (102 -> 53 ns), 300 KiB pairs take 2 holds instead of 3.  Full table in
 * the "Per-CPU pagesets" section of docs/architecture.md.
 */
#include "mm/per_cpu_pages.h"

#include "mm/page_alloc.h"
#include "mm/vmscan.h"
#include "platform/cpu.h"
#include "platform/timekeeping.h"

namespace kalloc {

/* Last pcp_decay_all pass and last high decay (ktime_get_coarse_ms). */
static unsigned long pcp_last_check_ms;
static unsigned long pcp_last_decay_ms;

static inline unsigned pindex(unsigned order, migratetype mt) { return order * MIGRATE_TYPES + mt; }
static inline unsigned run_pindex(unsigned long nr_pages)
{
    return NR_LOWORDER_PCP_LISTS + ceil_log2(nr_pages) - PCP_RUN_MIN_ORDER;
}
static inline bool is_run_pindex(unsigned pi) { return pi >= NR_LOWORDER_PCP_LISTS; }

unsigned pcp_nr_cpus;

static inline per_cpu_pages *this_cpu_pcp(zone *z)
{
    /* nr_pcp grows (pcp_set_nr_cpus): the pagesets below it are set up. */
    return &z->per_cpu_pageset[raw_smp_processor_id() % zone_nr_pcp(z)];
}

static inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline int max_int(int a, int b) { return a > b ? a : b; }
static inline int min_int(int a, int b) { return a < b ? a : b; }

/* ---------------------------------------------------------------------------
 * Sizes: batch, high_min, high_max, the zone's watermarks
 * ------------------------------------------------------------------------- */

static unsigned long int_sqrt(unsigned long x)
{
    unsigned long r = 0;
    for (unsigned long bit = 1ul << 62; bit; bit >>= 2) {
        if (x >= r + bit) {
            x -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
    }
    return r;
}

/*
 * The zone's min watermark as the kernel sets it by default
 * (init_per_zone_wmark_min: min_free_kbytes = sqrt(16 * KiB), 128 KiB ..
 * 256 MiB), and the gap between min, low and high (max(min / 4, 0.1% of
 * the zone), watermark_scale_factor = 10).  The zone's size is what it
 * spans: kalloc's zones grow with the heap.  (Until zones carry their own
 * watermarks; these only size the pagesets.)
 */
static void pcp_wmarks(const zone *z, unsigned long *low, unsigned long *high)
{
    unsigned long kb = z->spanned_pages * (PAGE_SIZE / 1024);
    unsigned long min_kb = int_sqrt(kb * 16);
    if (min_kb < 128)
        min_kb = 128;
    if (min_kb > 262144)
        min_kb = 262144;
    unsigned long min = min_kb / (PAGE_SIZE / 1024);
    unsigned long gap = min / 4;
    if (gap < z->spanned_pages / 1000)
        gap = z->spanned_pages / 1000;
    *low = min + gap;
    *high = min + 2 * gap;
}

void __zone_update_below_high(zone *z)
{
    unsigned long f = z->flags;
    if (z->nr_free_pages < z->pcp_high_wmark)
        f |= ZONE_BELOW_HIGH;
    else
        f &= ~ZONE_BELOW_HIGH;
    if (f != z->flags)
        WRITE_ONCE(z->flags, f);
}

void pcp_init(zone *z, per_cpu_pages *pcps, unsigned nr)
{
    z->per_cpu_pageset = pcps;
    z->nr_pcp = nr;
    for (unsigned i = 0; i < nr; i++)
        for (auto &l : pcps[i].lists)
            INIT_LIST_HEAD(&l);
    pcp_update_batch_high(z);
}

void pcp_set_nr_cpus(unsigned nr)
{
    if (nr > PCP_MAX_CPUS)
        nr = PCP_MAX_CPUS;
    if (nr <= READ_ONCE(pcp_nr_cpus))
        return;
    spin_lock(&zone_list_lock);
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE), grown = 0;
    bool ok = true;
    for (unsigned i = 0; i < nz; i++, grown++) {
        zone *z = zones[i];
        const unsigned old = z->nr_pcp;
        if (old >= nr)
            continue;
        per_cpu_pages *pcps = z->per_cpu_pageset;
        uintptr_t from = align_up((uintptr_t)&pcps[old], PAGE_SIZE);
        uintptr_t to = align_up((uintptr_t)&pcps[nr], PAGE_SIZE);
        if (to > from && !os_protect_rw((void *)from, to - from)) {
            ok = false;     /* no memory: this zone and the rest keep what they have */
            break;
        }
        /* The new pagesets start with the first one's sizes (recomputed for
         * nr CPUs below, under the zone lock), so none is used with a batch
         * or high of 0 meanwhile. */
        for (unsigned c = old; c < nr; c++) {
            per_cpu_pages *pcp = &pcps[c];
            spin_lock_init(&pcp->lock);
            for (auto &l : pcp->lists)
                INIT_LIST_HEAD(&l);
            pcp->batch = READ_ONCE(pcps[0].batch);
            pcp->high_min = READ_ONCE(pcps[0].high_min);
            pcp->high_max = READ_ONCE(pcps[0].high_max);
            pcp->high = pcp->high_min;
        }
        __atomic_store_n(&z->nr_pcp, nr, __ATOMIC_RELEASE);
    }
    if (ok)
        WRITE_ONCE(pcp_nr_cpus, nr);
    spin_unlock(&zone_list_lock);
    for (unsigned i = 0; i < grown; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        pcp_update_batch_high(z);
        spin_unlock(&z->lock);
    }
}

void pcp_update_batch_high(zone *z)
{
    /* The kernel's zone_batchsize(). */
    unsigned long batch = z->spanned_pages >> 10;
    if (batch > (1ul << 20) / PAGE_SIZE)
        batch = (1ul << 20) / PAGE_SIZE;
    batch /= 4;
    if (batch < 1)
        batch = 1;
    batch = (1ul << floor_log2(batch + batch / 2)) - 1;
    if (batch < 1)
        batch = 1;
    /* The kernel's zone_highsize(): the low watermark (high_min) or a
     * fraction of the zone (high_max) split among the CPUs, at least 4
     * batches. */
    unsigned long low, hw;
    pcp_wmarks(z, &low, &hw);
    z->pcp_high_wmark = hw;
    unsigned ncpu = zone_nr_pcp(z) ? zone_nr_pcp(z) : 1;
    unsigned long high_min = low / ncpu, high_max = z->spanned_pages / PCP_HIGH_MAX_FRACTION / ncpu;
    if (high_min < 4 * batch)
        high_min = 4 * batch;
    if (high_max < high_min)
        high_max = high_min;
    for (unsigned i = 0, nc = zone_nr_pcp(z); i < nc; i++) {
        per_cpu_pages *pcp = &z->per_cpu_pageset[i];
        WRITE_ONCE(pcp->batch, (int)batch);
        WRITE_ONCE(pcp->high_min, (int)high_min);
        WRITE_ONCE(pcp->high_max, (int)high_max);
        /* A new pageset starts at high_min; the others move into the new
         * bounds now (without their lock: a racing update of the pageset's
         * own clamps again at its next use). */
        int high = READ_ONCE(pcp->high);
        WRITE_ONCE(pcp->high, high ? clamp_int(high, (int)high_min, (int)high_max) : (int)high_min);
    }
}

/* ---------------------------------------------------------------------------
 * Moving pages between a pageset and the zone
 * ------------------------------------------------------------------------- */

/* Move up to `count` blocks of `order` from the zone to list, under one hold
 * of the zone lock.  Returns how many. */
static int rmqueue_bulk(zone *z, unsigned order, int count, migratetype mt, list_head *list)
{
    int got = 0;
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    for (; got < count; got++) {
        bool zeroed = false;
        page *pg = __rmqueue(z, order, mt, &zeroed);
        if (!pg)
            break;
        pg->flags = PG_pcp | (zeroed ? PG_reported : 0);
        pg->order = (uint8_t)order;
        pg->nr_pages = 1u << order;
        list_add_tail(&pg->lru, list);
    }
    __zone_update_below_high(z);
    spin_unlock(&z->lock);
    return got;
}

/*
 * Give `pages` pages' worth of blocks and runs back to the zone, coldest
 * (list tail) first, starting with list `pi` and going round the lists, under
 * one hold of the zone lock (the kernel's free_pcppages_bulk).  A block is
 * freed whole, so a run may give back more than asked.  Caller holds
 * pcp->lock.
 */
static void free_pcppages_bulk(zone *z, int pages, per_cpu_pages *pcp, unsigned pi)
{
    if (pages > pcp->count)
        pages = pcp->count;
    const uint32_t now = vmscan_now();   /* one clock read for the whole drain */
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    unsigned empty_in_a_row = 0;
    while (pages > 0 && empty_in_a_row < NR_PCP_LISTS) {
        list_head *list = &pcp->lists[pi];
        empty_in_a_row = list_empty(list) ? empty_in_a_row + 1 : 0;
        while (pages > 0 && !list_empty(list)) {
            page *pg = list_entry(list->prev, page, lru);
            list_del(&pg->lru);
            unsigned long nr = pg->nr_pages;
            bool reported = pg->flags & PG_reported;
            pcp->count -= (int)nr;
            pages -= (int)nr;
            if (is_run_pindex(pi))
                __free_pages_range_at(z, page_to_pfn(pg), nr, false, now);
            else
                __free_one_page_at(z, page_to_pfn(pg), pg->order, reported, false, now);
        }
        pi = (pi + 1) % NR_PCP_LISTS;
    }
    pcp->nr_drain++;
    __zone_update_below_high(z);
    spin_unlock(&z->lock);
}

/* ---------------------------------------------------------------------------
 * The adaptive high (Linux 6.7+: nr_pcp_alloc, nr_pcp_high, nr_pcp_free)
 * ------------------------------------------------------------------------- */

/* Blocks of `order` to refill with; raises high (a larger high would have
 * avoided the zone).  Caller holds pcp->lock. */
static int nr_pcp_alloc(per_cpu_pages *pcp, zone *z, unsigned order)
{
    int base_batch = READ_ONCE(pcp->batch);
    int high_min = READ_ONCE(pcp->high_min), high_max = READ_ONCE(pcp->high_max);
    int high = pcp->high = clamp_int(pcp->high, high_min, high_max);
    if (high < base_batch)
        return 1;
    int batch = order ? base_batch : base_batch << pcp->alloc_factor;
    if (high_min != high_max && !(READ_ONCE(z->flags) & ZONE_BELOW_HIGH))
        high = pcp->high = min_int(high + batch, high_max);
    if (!order) {
        int max_nr_alloc = max_int(high - pcp->count - base_batch, base_batch);
        /* Double the refill each time order-0 pages are refilled without a
         * free in between. */
        if (batch <= max_nr_alloc && pcp->alloc_factor < PCP_BATCH_SCALE_MAX)
            pcp->alloc_factor++;
        batch = min_int(batch, max_nr_alloc);
    }
    if (batch > 1)
        batch = max_int(batch >> order, 2);
    return batch;
}

/* The count at which this free gives pages back; moves pcp->high within
 * [high_min, high_max].  Caller holds pcp->lock. */
static int nr_pcp_high(per_cpu_pages *pcp, zone *z, int batch)
{
    int high_min = READ_ONCE(pcp->high_min), high_max = READ_ONCE(pcp->high_max);
    int high = pcp->high = clamp_int(pcp->high, high_min, high_max);
    if (high_min == high_max)
        return high;
    if (READ_ONCE(z->flags) & ZONE_RECLAIM_ACTIVE) {
        /* Reclaim is giving free memory back: hold little (the kernel's
         * nr_pcp_high under ZONE_RECLAIM_ACTIVE). */
        int free_count = max_int(pcp->free_count, batch);
        pcp->high = max_int(high - free_count, high_min);
        return min_int(batch << 2, pcp->high);
    }
    if (READ_ONCE(z->flags) & ZONE_BELOW_HIGH) {
        /* The zone is short: come down, and give back at once. */
        int free_count = max_int(pcp->free_count, batch);
        pcp->high = max_int(high - free_count, high_min);
        high = max_int(pcp->count, high_min);
    } else if (pcp->count >= high) {
        /* high should hold what this CPU frees in a row plus a batch. */
        int need_high = pcp->free_count + batch;
        if (pcp->high < need_high)
            pcp->high = clamp_int(need_high, high_min, high_max);
    }
    return high;
}

/* Pages to give back: a batch, or more after many frees in a row (fewer
 * trips to the zone lock), leaving at least a batch.  Caller holds
 * pcp->lock. */
static int nr_pcp_free(per_cpu_pages *pcp, int batch, int high)
{
    if (high < batch)
        return 1;
    return clamp_int(pcp->free_count, batch, high - batch);
}

/* free_count stops growing here: the kernel's 32 batches, or twice
 * high_min when that is more.  (The kernel's zones have batches of 63 and a
 * high_min of a few batches; kalloc's smaller zones have batches of 1..31
 * and a high_min, from the watermark's square root, of up to 50 batches, so
 * 32 batches alone would never let frees raise high.) */
static inline int free_count_max(per_cpu_pages *pcp, int batch)
{
    return max_int(batch << PCP_BATCH_SCALE_MAX, 2 * READ_ONCE(pcp->high_min));
}

/* An allocation or a free: counted, not timed (see pcp_decay_all). */
static inline void pcp_touch(per_cpu_pages *pcp) { pcp->uses++; }

/* Put a block or run on list pi and give pages back when count reaches high
 * (the kernel's free_unref_page_commit).  Caller holds pcp->lock; returns
 * whether pages went back to the zone. */
static bool free_unref_page_commit(zone *z, per_cpu_pages *pcp, page *pg, unsigned pi,
                                   unsigned long nr)
{
    pcp_touch(pcp);
    pcp->alloc_factor >>= 1;
    pcp->freed_pages += nr;
    list_add(&pg->lru, &pcp->lists[pi]);
    pcp->count += (int)nr;
    int batch = READ_ONCE(pcp->batch);
    if (pcp->free_count < free_count_max(pcp, batch))
        pcp->free_count += (int)nr;
    int high = nr_pcp_high(pcp, z, batch);
    if (pcp->count < high)
        return false;
    /* The kernel's amount, and at least enough to end below the (possibly
     * just lowered) high: count < high holds after every free. */
    int to_free = nr_pcp_free(pcp, batch, high);
    if (to_free < pcp->count - pcp->high + 1)
        to_free = pcp->count - pcp->high + 1;
    free_pcppages_bulk(z, to_free, pcp, pi);
    return true;
}

/* ---------------------------------------------------------------------------
 * Blocks of order 0..3
 * ------------------------------------------------------------------------- */

page *rmqueue_pcplist(zone *z, unsigned order, migratetype mt, bool *zeroed)
{
    per_cpu_pages *pcp = this_cpu_pcp(z);
    list_head *list = &pcp->lists[pindex(order, mt)];
    bool refilled = false;
    spin_lock(&pcp->lock);
    pcp_touch(pcp);
    /* On allocation, fewer pages are batch freed (nr_pcp_free). */
    pcp->free_count >>= 1;
    if (list_empty(list)) {
        int got = rmqueue_bulk(z, order, nr_pcp_alloc(pcp, z, order), mt, list);
        pcp->count += got << order;
        pcp->nr_refill++;
        refilled = true;
        if (!got) {
            spin_unlock(&pcp->lock);
            pcp_decay_tick();
            return nullptr;
        }
    }
    page *pg = list_first_entry(list, page, lru);
    list_del(&pg->lru);
    pcp->count -= 1 << order;
    spin_unlock(&pcp->lock);
    if (zeroed)
        *zeroed = pg->flags & PG_reported;
    pg->flags = 0;
    if (refilled)
        pcp_decay_tick();
    return pg;
}

void free_unref_page(zone *z, page *pg, unsigned order)
{
    per_cpu_pages *pcp = this_cpu_pcp(z);
    migratetype mt = get_pageblock_migratetype(z, page_to_pfn(pg));
    spin_lock(&pcp->lock);
    pg->flags = PG_pcp;
    pg->order = (uint8_t)order;
    pg->nr_pages = 1u << order;
    pg->compound_head = 0;
    bool drained = free_unref_page_commit(z, pcp, pg, pindex(order, mt), 1ul << order);
    spin_unlock(&pcp->lock);
    if (drained)
        pcp_decay_tick();
}

/* ---------------------------------------------------------------------------
 * Runs of large allocations
 * ------------------------------------------------------------------------- */

/* Runs looked at per allocation before giving up on a list (an exact fit is
 * the common case: malloc and free of the same size). */
constexpr unsigned PCP_RUN_SCAN = 4;

/* Whether the pageset holds a run (racy without pcp->lock: a hint). */
static inline bool pcp_holds_runs(const per_cpu_pages *pcp)
{
    for (unsigned pi = NR_LOWORDER_PCP_LISTS; pi < NR_PCP_LISTS; pi++)
        if (READ_ONCE(pcp->lists[pi].next) != &pcp->lists[pi])
            return true;
    return false;
}

/*
 * Run allocations missed twice in a row (PCP_RUN_DRAIN_MISSES): give every
 * run on the pageset back to the zone, under one hold of the zone lock (the
 * caller takes it next anyway).  Runs kept on a pageset do not merge, and
 * only a request of their own size class takes them; while sizes vary,
 * those kept between the frees that make them and the next request they
 * fit cut the zone's free memory into runs too short for the requests that
 * come, and the zone grows around them.  A Python program caching 100-400 KB
 * values (20,000 replacements over 1,200 keys, ~300 MiB live; no reclaim, to
 * see the placement alone): 388-394 MiB with runs kept until high, 353 MiB
 * when misses give them back (glibc 337, no runs at all 348)
 * (docs/architecture.md, "Large blocks: colouring").  Not in a small heap
 * (zone_small_heap): its pageset holds a run or two, and the runs given back
 * pushed its small watermark over at every miss (a reclaim pass each).  A
 * miss no longer raises high either: the run it needed was of another size,
 * not one a larger high would have kept.  Caller holds pcp->lock.
 */
static void pcp_drain_runs_locked(zone *z, per_cpu_pages *pcp)
{
    if (!pcp_holds_runs(pcp))
        return;
    const uint32_t now = vmscan_now();
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    for (unsigned pi = NR_LOWORDER_PCP_LISTS; pi < NR_PCP_LISTS; pi++) {
        while (!list_empty(&pcp->lists[pi])) {
            page *pg = list_entry(pcp->lists[pi].prev, page, lru);
            list_del(&pg->lru);
            pcp->count -= (int)pg->nr_pages;
            __free_pages_range_at(z, page_to_pfn(pg), pg->nr_pages, false, now);
        }
    }
    pcp->nr_drain++;
    pcp->nr_run_drain++;
    __zone_update_below_high(z);
    spin_unlock(&z->lock);
}

static inline void set_pcp_run(page *pg, unsigned long nr)
{
    pg->flags = PG_pcp;
    pg->order = (uint8_t)ceil_log2(nr);
    pg->nr_pages = (uint32_t)nr;
    pg->compound_head = 0;
}

page *rmqueue_pcp_run(zone *z, unsigned long nr)
{
    per_cpu_pages *pcp = this_cpu_pcp(z);
    list_head *list = &pcp->lists[run_pindex(nr)];
    /* Racy peek: a pageset with no run at all is a miss with nothing to
     * give back, so it takes no lock (a run added meanwhile is only missed
     * once). */
    if (!pcp_holds_runs(pcp)) {
        WRITE_ONCE(pcp->nr_run_miss, READ_ONCE(pcp->nr_run_miss) + 1);   /* racy statistic */
        return nullptr;
    }
    spin_lock(&pcp->lock);
    pcp_touch(pcp);
    pcp->free_count >>= 1;
    /* The first exact fit among the first few runs, else the smallest that
     * holds nr. */
    page *best = nullptr;
    unsigned scanned = 0;
    for (list_head *e = list->next; e != list && scanned < PCP_RUN_SCAN; e = e->next, scanned++) {
        page *pg = list_entry(e, page, lru);
        if (pg->nr_pages < nr)
            continue;
        if (!best || pg->nr_pages < best->nr_pages)
            best = pg;
        if (pg->nr_pages == nr)
            break;
    }
    if (!best) {
        /* A miss: the caller goes to the zone.  At the second in a row,
         * the runs this pageset holds are not what the program asks for
         * now: they go back to the zone first, where they merge with their
         * free neighbours and the caller's best fit sees them
         * (pcp_drain_runs_locked). */
        pcp->nr_run_miss++;
        if (++pcp->run_misses >= PCP_RUN_DRAIN_MISSES && !zone_small_heap(z)) {
            pcp->run_misses = 0;
            pcp_drain_runs_locked(z, pcp);
        }
        spin_unlock(&pcp->lock);
        return nullptr;
    }
    list_del(&best->lru);
    unsigned long have = best->nr_pages;
    pcp->count -= (int)have;
    pcp->nr_run_hit++;
    pcp->run_misses = 0;
    if (have > nr) {
        /* Split: a rest of 9 pages or more stays here as a run, a smaller
         * one goes back to the buddy allocator. */
        page *rest = best + nr;
        unsigned long left = have - nr;
        if (left >= PCP_RUN_MIN_PAGES) {
            set_pcp_run(rest, left);
            list_add(&rest->lru, &pcp->lists[run_pindex(left)]);
            pcp->count += (int)left;
        } else {
            spin_lock(&z->lock);
            pa_stats.zone_lock++;
            __free_pages_range(z, page_to_pfn(rest), left, false);
            spin_unlock(&z->lock);
        }
    }
    spin_unlock(&pcp->lock);
    best->flags = 0;
    return best;
}

bool free_unref_run(zone *z, page *pg, unsigned long nr)
{
    per_cpu_pages *pcp = this_cpu_pcp(z);
    /* A run that high could never hold would go straight back: the caller
     * gives it to the zone without the pageset's lock. */
    if ((long)nr >= (long)READ_ONCE(pcp->high_max))
        return false;
    spin_lock(&pcp->lock);
    set_pcp_run(pg, nr);
    bool drained = free_unref_page_commit(z, pcp, pg, run_pindex(nr), nr);
    spin_unlock(&pcp->lock);
    if (drained)
        pcp_decay_tick();
    return true;
}

/* ---------------------------------------------------------------------------
 * Draining and decay
 * ------------------------------------------------------------------------- */

void drain_all_pages()
{
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        for (unsigned c = 0, nc = zone_nr_pcp(z); c < nc; c++) {
            per_cpu_pages *pcp = &z->per_cpu_pageset[c];
            spin_lock(&pcp->lock);
            if (pcp->count)
                free_pcppages_bulk(z, pcp->count, pcp, 0);
            spin_unlock(&pcp->lock);
        }
    }
}

unsigned long drain_zone_pages(zone *z)
{
    unsigned long drained = 0;
    for (unsigned c = 0, nc = zone_nr_pcp(z); c < nc; c++) {
        per_cpu_pages *pcp = &z->per_cpu_pageset[c];
        int keep = 0;                   /* see per_cpu_pages.h */
        if (READ_ONCE(pcp->count) <= keep)
            continue;                   /* racy peek */
        spin_lock(&pcp->lock);
        if (pcp->count > keep) {
            drained += (unsigned long)(pcp->count - keep);
            free_pcppages_bulk(z, pcp->count - keep, pcp, 0);
        }
        spin_unlock(&pcp->lock);
    }
    return drained;
}

int decay_pcp_high(zone *z, per_cpu_pages *pcp)
{
    int todo = 0;
    int high_min = READ_ONCE(pcp->high_min), high_max = READ_ONCE(pcp->high_max);
    int batch = READ_ONCE(pcp->batch);
    pcp->high = clamp_int(pcp->high, high_min, high_max);
    /* Lower high periodically so pages a CPU no longer needs go back, but
     * not by more than a maximal batch at once (latency). */
    if (pcp->high > high_min) {
        pcp->high = max_int(max_int(pcp->count - (batch << PCP_BATCH_SCALE_MAX),
                                    pcp->high - (pcp->high >> 3)),
                            high_min);
        if (pcp->high > high_min)
            todo++;
    }
    int to_drain = pcp->count - pcp->high;
    if (to_drain > 0) {
        free_pcppages_bulk(z, to_drain, pcp, 0);
        todo++;
    }
    return todo;
}

void pcp_decay_all(unsigned long now_ms)
{
    /* A pass ran now: the next tick waits PCP_DECAY_CHECK_MS from here. */
    unsigned long check = READ_ONCE(pcp_last_check_ms);
    if ((long)(now_ms - check) > 0)
        __atomic_compare_exchange_n(&pcp_last_check_ms, &check, now_ms, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
    unsigned long last = READ_ONCE(pcp_last_decay_ms);
    bool decay = (long)(now_ms - last) >= (long)PCP_DECAY_INTERVAL_MS &&
                 __atomic_compare_exchange_n(&pcp_last_decay_ms, &last, now_ms, false,
                                             __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        for (unsigned c = 0, nc = zone_nr_pcp(z); c < nc; c++) {
            per_cpu_pages *pcp = &z->per_cpu_pageset[c];
            /* Racy peek: nothing to do for an empty pageset at high_min. */
            if (!READ_ONCE(pcp->count) && (!decay || READ_ONCE(pcp->high) <= READ_ONCE(pcp->high_min)))
                continue;
            spin_lock(&pcp->lock);
            if (pcp->uses != pcp->uses_seen) {
                /* Used since the last pass: last used about now. */
                pcp->uses_seen = pcp->uses;
                pcp->last_used_ms = now_ms;
            } else if (pcp->count && (long)(now_ms - pcp->last_used_ms) >= (long)PCP_IDLE_MS) {
                free_pcppages_bulk(z, pcp->count, pcp, 0);     /* idle: drain it whole */
            }
            if (decay)
                decay_pcp_high(z, pcp);
            spin_unlock(&pcp->lock);
        }
    }
}

void pcp_decay_tick()
{
    unsigned long now = ktime_get_coarse_ms();
    unsigned long last = READ_ONCE(pcp_last_check_ms);
    if ((long)(now - last) < (long)PCP_DECAY_CHECK_MS)
        return;
    if (!__atomic_compare_exchange_n(&pcp_last_check_ms, &last, now, false, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;     /* another CPU runs this pass */
    pcp_decay_all(now);
}

/* ---------------------------------------------------------------------------
 * Statistics and fork
 * ------------------------------------------------------------------------- */

unsigned long zone_pcp_pages(zone *z)
{
    unsigned long n = 0;
    for (unsigned c = 0, nc = zone_nr_pcp(z); c < nc; c++)
        n += (unsigned long)READ_ONCE(z->per_cpu_pageset[c].count);
    return n;
}

unsigned long zone_freed_pages(zone *z)
{
    unsigned long n = __atomic_load_n(&z->freed_pages, __ATOMIC_RELAXED);
    for (unsigned c = 0, nc = zone_nr_pcp(z); c < nc; c++)
        n += READ_ONCE(z->per_cpu_pageset[c].freed_pages);
    return n;
}

void pcp_lock_all(unsigned nz)
{
    for (unsigned i = 0; i < nz; i++)
        for (unsigned c = 0; c < zones[i]->nr_pcp; c++)
            spin_lock(&zones[i]->per_cpu_pageset[c].lock);
}

void pcp_unlock_all(unsigned nz)
{
    for (unsigned i = nz; i-- > 0;)
        for (unsigned c = zones[i]->nr_pcp; c-- > 0;)
            spin_unlock(&zones[i]->per_cpu_pageset[c].lock);
}

void pcp_reinit_locks(unsigned nz)
{
    for (unsigned i = 0; i < nz; i++)
        for (unsigned c = 0; c < zones[i]->nr_pcp; c++)
            spin_lock_init(&zones[i]->per_cpu_pageset[c].lock);
}

} // namespace kalloc
