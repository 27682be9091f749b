// Per-CPU pagesets: count never exceeds high after a free, refill and drain
// keep every page accounted, draining returns pages to the buddy allocator,
// and pages freed on another CPU land there correctly.  The adaptive high
// stays within [high_min, high_max], rises under frees and decays back when
// idle (time is driven through pcp_decay_all's `now`, not sleeps); idle
// pagesets are drained; runs of large allocations keep every page accounted
// and allocations exact.
#include <gtest/gtest.h>

#include <sched.h>

#include <algorithm>
#include <random>
#include <vector>

#include "mm/mmzone.h"
#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/vmscan.h"
#include "platform/options.h"
#include "platform/cpu.h"
#include "platform/timekeeping.h"
#include "zone_check.h"

using namespace kalloc;

namespace {

unsigned long list_pages(per_cpu_pages *pcp)
{
    unsigned long n = 0;
    for (auto &l : pcp->lists)
        for (list_head *e = l.next; e != &l; e = e->next)
            n += list_entry(e, page, lru)->nr_pages;
    return n;
}

page *alloc_marked(unsigned order)
{
    page *pg = alloc_pages(order, MIGRATE_RECLAIMABLE, nullptr);
    if (pg) {
        prep_compound_page(pg, 1ul << order, PG_meta);
        pg->nr_pages = 1u << order;
    }
    return pg;
}

bool pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0;
}

void unpin()
{
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    sched_setaffinity(0, sizeof(all), &all);
}

// A test clock for pcp_decay_all, far ahead of the real one (so every
// pageset looks idle to it) and moving only forward across tests.
unsigned long test_now()
{
    static unsigned long t = ktime_get_coarse_ms() + 100000000ul;
    return t;
}
unsigned long advance_test_clock(unsigned long ms)
{
    static unsigned long offset = 0;
    offset += ms;
    return test_now() + offset;
}

// A large block as large.cc makes it: only the head marked.
page *alloc_large(unsigned long nr)
{
    page *pg = alloc_pages_exact(nr, MIGRATE_MOVABLE, nullptr);
    if (pg) {
        pg->flags = PG_large | PG_head;
        pg->compound_head = 0;
        pg->nr_pages = (uint32_t)nr;
    }
    return pg;
}

// Free pages in the zones' buddy lists plus pages on the pagesets, and the
// pages spanned: free + allocated = spanned.
struct page_totals {
    unsigned long buddy, pcp, spanned;
};
page_totals totals()
{
    page_totals t = {};
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        t.buddy += z->nr_free_pages;
        t.spanned += z->spanned_pages;
        spin_unlock(&z->lock);
        t.pcp += zone_pcp_pages(z);
    }
    return t;
}

void check_pageset(per_cpu_pages *pcp, const char *when)
{
    spin_lock(&pcp->lock);
    int count = pcp->count, high = pcp->high, lo = pcp->high_min, hi = pcp->high_max;
    unsigned long on_lists = list_pages(pcp);
    spin_unlock(&pcp->lock);
    ASSERT_LT(count, high) << when;
    ASSERT_GE(high, lo) << when;
    ASSERT_LE(high, hi) << when;
    ASSERT_EQ((unsigned long)count, on_lists) << when << ": count does not match the lists";
}

// For one test: watermarks far above what it frees (KALLOC_FREE_HIGH
// 256 MiB), so no reclaim pass runs and drains the pagesets under
// ZONE_RECLAIM_ACTIVE; the option and the watermarks are put back after.
struct high_watermarks {
    long saved = options[OPT_FREE_HIGH].value;
    high_watermarks() { set(256l << 20); }
    ~high_watermarks() { set(saved); }
    static void set(long free_high)
    {
        options[OPT_FREE_HIGH].value = free_high;
        for (unsigned i = 0; i < nr_zones; i++) {
            spin_lock(&zones[i]->lock);
            __setup_zone_wmarks(zones[i]);
            spin_unlock(&zones[i]->lock);
        }
    }
};

// Empty the pagesets and make sure a MAX_ORDER block is free (so nothing a
// test allocates next grows a zone); the zone it came from.
zone *drain_and_make_room()
{
    drain_all_pages();
    page *room = alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, nullptr);
    if (!room)
        return nullptr;
    zone *z = page_zone(room);
    free_pages(room, MAX_ORDER);
    return z;
}

} // namespace

TEST(PerCpuPages, CountStaysBelowHighAfterEveryFree)
{
    std::mt19937 rng(3);
    // Blocks of order 0..3 (second = order) and large runs (second = 100 +
    // pages), freed in random order: after every free, every pageset has
    // count < high and high within [high_min, high_max].
    std::vector<std::pair<page *, unsigned>> live;
    for (int i = 0; i < 4000; i++) {
        if (i % 4 == 3) {
            unsigned nr = 9 + rng() % 200;
            page *pg = alloc_large(nr);
            ASSERT_NE(pg, nullptr);
            live.push_back({pg, 100 + nr});
            continue;
        }
        unsigned order = rng() % (PAGE_ALLOC_COSTLY_ORDER + 1);
        page *pg = alloc_marked(order);
        ASSERT_NE(pg, nullptr);
        live.push_back({pg, order});
    }
    std::shuffle(live.begin(), live.end(), rng);
    for (auto &[pg, what] : live) {
        zone *z = page_zone(pg);
        if (what >= 100)
            free_pages_exact(pg, what - 100);
        else
            free_pages(pg, what);
        for (unsigned c = 0; c < z->nr_pcp; c++)
            ASSERT_NO_FATAL_FAILURE(check_pageset(&z->per_cpu_pageset[c], "after a free"));
    }
    verify_all_zones();
    drain_all_pages();
    verify_all_zones();
}

TEST(PerCpuPages, BatchFollowsZoneSize)
{
    // The zone a page comes from now (zone 0 may have been shrunk to
    // nothing by an earlier test in the same process: vmscan's zone-top
    // trim), while the page keeps it from shrinking.
    page *pg = alloc_marked(0);
    ASSERT_NE(pg, nullptr);
    zone *z = page_zone(pg);
    ASSERT_GT(z->spanned_pages, 0u);
    int batch = z->per_cpu_pageset[0].batch;
    EXPECT_GE(batch, 1);
    EXPECT_LE(batch, 63);
    EXPECT_EQ((batch + 1) & batch, 0) << "batch is 2^n - 1";
    // zone_highsize: high_min is the low watermark split among the CPUs, at
    // least 4 batches; high_max is 1/PCP_HIGH_MAX_FRACTION of the zone split
    // among them, at least high_min.
    int lo = z->per_cpu_pageset[0].high_min, hi = z->per_cpu_pageset[0].high_max;
    EXPECT_GE(lo, 4 * batch);
    EXPECT_GE(hi, lo);
    EXPECT_LE((unsigned long)hi,
              std::max<unsigned long>(z->spanned_pages / PCP_HIGH_MAX_FRACTION / z->nr_pcp,
                                       (unsigned long)lo));
    EXPECT_LT((unsigned long)lo * z->nr_pcp, z->spanned_pages / 2) << "high_min is a watermark";
    for (unsigned c = 0; c < z->nr_pcp; c++) {
        EXPECT_EQ(z->per_cpu_pageset[c].high_min, lo);
        EXPECT_EQ(z->per_cpu_pageset[c].high_max, hi);
    }
    free_pages(pg, 0);
}

TEST(PerCpuPages, DrainReturnsEverythingToTheBuddyAllocator)
{
    std::vector<page *> pgs;
    for (int i = 0; i < 300; i++)
        pgs.push_back(alloc_marked(0));
    for (page *pg : pgs)
        free_pages(pg, 0);
    drain_all_pages();
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        EXPECT_EQ(zone_pcp_pages(z), 0u);
        for (unsigned c = 0; c < z->nr_pcp; c++)
            EXPECT_EQ(list_pages(&z->per_cpu_pageset[c]), 0u);
    }
    verify_all_zones();
}

TEST(PerCpuPages, PagesFreedOnAnotherCpu)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || !pin_to_cpu(0))
        GTEST_SKIP() << "needs two CPUs and sched_setaffinity";
    pcp_set_nr_cpus(nr_cpu_ids());    // as a process's second thread cache does
    drain_all_pages();
    std::vector<page *> pgs;
    for (int i = 0; i < 40; i++) {
        page *pg = alloc_marked(1);
        ASSERT_NE(pg, nullptr);
        memset(page_address(pg), 0x77, 2 * PAGE_SIZE);
        pgs.push_back(pg);
    }
    ASSERT_TRUE(pin_to_cpu(1));
    zone *z = page_zone(pgs[0]);
    ASSERT_GE(z->nr_pcp, 2u);
    per_cpu_pages *pcp1 = &z->per_cpu_pageset[1];
    unsigned long others = zone_pcp_pages(z) - (unsigned long)pcp1->count;
    // The first lands on CPU 1's pageset (high is at least 4 batches).
    free_pages(pgs[0], 1);
    EXPECT_EQ(pgs[0]->flags, PG_pcp);
    EXPECT_GE(pcp1->count, 2);
    // The rest: on CPU 1's pageset or, past high, back to the zone.
    for (size_t i = 1; i < pgs.size(); i++)
        free_pages(pgs[i], 1);
    EXPECT_EQ(zone_pcp_pages(z) - (unsigned long)pcp1->count, others)
        << "pages went to another CPU's pageset";
    verify_all_zones();
    if (!pcp1->count) {                   // a drain emptied it: put one back
        pgs.push_back(alloc_marked(1));
        free_pages(pgs.back(), 1);
    }
    ASSERT_GT(pcp1->count, 0);
    // Allocating on CPU 1 gets those pages back from its own pageset.
    page *again = alloc_marked(1);
    ASSERT_NE(again, nullptr);
    bool found = false;
    for (page *pg : pgs)
        found |= pg == again;
    EXPECT_TRUE(found) << "CPU 1's pageset did not serve the pages freed on CPU 1";
    free_pages(again, 1);
    unpin();
    drain_all_pages();
    verify_all_zones();
}

// A zone has one pageset until the process has a second thread
// (pcp_set_nr_cpus, from the thread caches): reading the number of CPUs was
// ~20 us of a short process.  Then every zone gets one per CPU, set up
// before nr_pcp says so, with the first one's sizes until the zone's batch
// and high are recomputed for them.
TEST(PerCpuPages, OnePagesetUntilTheProcessHasThreads)
{
    spin_lock(&zone_list_lock);
    const unsigned saved = pcp_nr_cpus;
    pcp_nr_cpus = 0;                  // as in a process with one thread
    spin_unlock(&zone_list_lock);
    zone *z = zone_create(16ul << MAX_ORDER);
    ASSERT_NE(z, nullptr);
    EXPECT_EQ(z->nr_pcp, 1u) << "a zone of a single-threaded process";
    // A page through the one pageset, from any CPU.
    page *pg = alloc_marked(0);
    ASSERT_NE(pg, nullptr);
    free_pages(pg, 0);
    const int lo1 = z->per_cpu_pageset[0].high_min;
    // What a second thread cache asks for (no more: the zones keep it, and
    // later tests in the same process size their pagesets by it).
    const unsigned want = std::max(saved, std::min(nr_cpu_ids(), PCP_MAX_CPUS));
    pcp_set_nr_cpus(want);
    EXPECT_EQ(z->nr_pcp, want);
    EXPECT_EQ(pcp_nr_cpus, want);
    for (unsigned c = 0; c < z->nr_pcp; c++) {
        per_cpu_pages *pcp = &z->per_cpu_pageset[c];
        EXPECT_GE(pcp->batch, 1) << "pageset " << c;
        EXPECT_EQ(pcp->high_min, z->per_cpu_pageset[0].high_min) << "pageset " << c;
        EXPECT_GE(pcp->high, pcp->high_min) << "pageset " << c;
        if (c)
            EXPECT_EQ(list_pages(pcp), 0u) << "a new pageset starts empty";
    }
    // The low watermark is shared among the pagesets now.
    EXPECT_LE(z->per_cpu_pageset[0].high_min, std::max(lo1, 4 * z->per_cpu_pageset[0].batch));
    pcp_set_nr_cpus(1);               // never fewer
    EXPECT_EQ(z->nr_pcp, want);
    // Pages through every pageset the CPUs can reach keep the books.
    std::vector<page *> pgs;
    for (int i = 0; i < 64; i++)
        pgs.push_back(alloc_marked(0));
    for (page *p : pgs)
        if (p)
            free_pages(p, 0);
    drain_all_pages();
    for (unsigned c = 0; c < z->nr_pcp; c++)
        ASSERT_EQ(list_pages(&z->per_cpu_pageset[c]), 0u) << "pageset " << c;
    verify_all_zones();
}

// A CPU that frees a lot without allocating raises its high (and gives back
// bigger batches); unused, high decays back to high_min one step per
// PCP_DECAY_INTERVAL_MS and the pageset is drained.
TEST(PerCpuPages, HighRisesUnderFreesAndDecaysWhenIdle)
{
    if (!pin_to_cpu(0))
        GTEST_SKIP() << "needs sched_setaffinity";
    // No reclaim pass: a zone over its low watermark is ZONE_RECLAIM_ACTIVE,
    // whose pagesets hold little (what the frees below would otherwise
    // cross, depending on the refaults earlier tests left counted).
    high_watermarks hw;
    // Plenty of free memory in the zone, so it is not short (ZONE_BELOW_HIGH).
    std::vector<page *> big;
    for (int i = 0; i < 16; i++)
        big.push_back(alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, nullptr));
    for (page *pg : big)
        free_pages(pg, MAX_ORDER);
    std::vector<page *> pgs;
    for (int i = 0; i < 3000; i++) {
        page *pg = alloc_marked(0);
        ASSERT_NE(pg, nullptr);
        pgs.push_back(pg);
    }
    zone *z = page_zone(pgs[0]);
    per_cpu_pages *pcp = &z->per_cpu_pageset[raw_smp_processor_id() % z->nr_pcp];
    // Bring high down to high_min first (decay passes on the test clock).
    for (int i = 0; i < 200 && pcp->high > pcp->high_min; i++)
        pcp_decay_all(advance_test_clock(PCP_DECAY_INTERVAL_MS));
    ASSERT_EQ(pcp->high, pcp->high_min);
    ASSERT_LT(pcp->high_min, pcp->high_max) << "zone too small for an adaptive high";
    int before = pcp->high, top = before;
    unsigned long drains0 = pcp->nr_drain;
    for (page *pg : pgs) {
        bool here = page_zone(pg) == z;
        free_pages(pg, 0);
        if (!here)
            continue;
        ASSERT_NO_FATAL_FAILURE(check_pageset(pcp, "free-heavy"));
        top = std::max(top, pcp->high);
    }
    unsigned long drains = pcp->nr_drain - drains0;
    EXPECT_GT(top, before) << "high did not rise under a free-heavy pattern";
    // Bigger batches to the zone: far fewer drains than one per batch.
    EXPECT_LT(drains, pgs.size() / (unsigned long)pcp->batch / 2);
    EXPECT_FALSE(READ_ONCE(z->flags) & ZONE_BELOW_HIGH);
    // Idle: the first pass notes the use, the next (PCP_IDLE_MS later)
    // drains it whole; each decay step lowers high by about 1/8, never below
    // high_min, and it reaches high_min.
    static_assert(PCP_DECAY_INTERVAL_MS >= PCP_IDLE_MS);
    int prev = pcp->high;
    for (int i = 0; i < 200; i++) {
        pcp_decay_all(advance_test_clock(PCP_DECAY_INTERVAL_MS));
        if (i > 0)
            ASSERT_EQ(pcp->count, 0) << "an idle pageset was not drained";
        ASSERT_LE(pcp->high, prev);
        ASSERT_GE(pcp->high, pcp->high_min);
        if (prev > pcp->high_min)
            ASSERT_LT(pcp->high, prev) << "a decay step did not lower high";
        prev = pcp->high;
    }
    EXPECT_EQ(pcp->high, pcp->high_min);
    unpin();
    verify_all_zones();
}

// The zone short of free memory: a free lowers high toward high_min and gives
// pages back at once.
TEST(PerCpuPages, HighComesDownWhenTheZoneIsShort)
{
    if (!pin_to_cpu(0))
        GTEST_SKIP() << "needs sched_setaffinity";
    std::vector<page *> pgs;
    for (int i = 0; i < 2000; i++)
        pgs.push_back(alloc_marked(0));
    zone *z = page_zone(pgs[0]);
    per_cpu_pages *pcp = &z->per_cpu_pageset[raw_smp_processor_id() % z->nr_pcp];
    // Raise high with frees, then mark the zone short.
    for (int i = 0; i < 1000; i++)
        free_pages(pgs[i], 0);
    int raised = pcp->high;
    spin_lock(&z->lock);
    z->flags |= ZONE_BELOW_HIGH;
    spin_unlock(&z->lock);
    int fell = 0, i = 1000;
    for (; i < 2000; i++) {
        int h = pcp->high;
        bool here = page_zone(pgs[i]) == z;
        free_pages(pgs[i], 0);
        if (!here)
            continue;
        ASSERT_NO_FATAL_FAILURE(check_pageset(pcp, "zone short"));
        ASSERT_TRUE(pcp->high <= h || !(READ_ONCE(z->flags) & ZONE_BELOW_HIGH))
            << "high rose while the zone was short";
        fell += pcp->high < h;
        if (!(READ_ONCE(z->flags) & ZONE_BELOW_HIGH))
            break;      // a drain found the zone above its watermark again
    }
    for (i++; i < 2000; i++)
        free_pages(pgs[i], 0);
    if (raised > pcp->high_min)
        EXPECT_GT(fell, 0) << "high never came down while the zone was short";
    unpin();
    drain_all_pages();
    verify_all_zones();
}

// Pagesets unused for PCP_IDLE_MS go back to the buddy allocator whole, with
// every page accounted; a pageset just used is left alone.
TEST(PerCpuPages, IdlePagesetsAreDrainedToTheBuddyAllocator)
{
    // A pass on the test clock first: the slow paths' own passes (real
    // time) wait PCP_DECAY_CHECK_MS after it, so they stay out of the way.
    pcp_decay_all(advance_test_clock(PCP_DECAY_CHECK_MS));
    // Watermarks well above what the test frees: no reclaim pass, so no
    // ZONE_RECLAIM_ACTIVE trimming of the pagesets (tested in vmscan_test).
    high_watermarks hw;
    std::vector<page *> small, large;
    for (int i = 0; i < 200; i++)
        small.push_back(alloc_marked(i % 3));
    for (int i = 0; i < 6; i++)
        large.push_back(alloc_large(9 + 7 * i));
    for (size_t i = 0; i < small.size(); i++)
        free_pages(small[i], i % 3);
    for (int i = 0; i < 6; i++)
        free_pages_exact(large[i], 9 + 7 * i);
    page_totals t0 = totals();
    ASSERT_GT(t0.pcp, 0u);
    // A pass notes the use: whatever was used since the last pass stays.
    unsigned long t = advance_test_clock(PCP_DECAY_CHECK_MS);
    pcp_decay_all(t);
    page_totals t1 = totals();
    EXPECT_EQ(t1.buddy + t1.pcp, t0.buddy + t0.pcp);
    EXPECT_GT(t1.pcp, 0u) << "a pageset used since the last pass was drained";
    // Not yet PCP_IDLE_MS: still there (a decay step may give back what is
    // above the lowered high, not everything).
    pcp_decay_all(advance_test_clock(PCP_IDLE_MS - PCP_DECAY_CHECK_MS - 1));
    EXPECT_GT(totals().pcp, 0u) << "drained before PCP_IDLE_MS";
    // PCP_IDLE_MS unused: every pageset is drained.
    pcp_decay_all(advance_test_clock(PCP_DECAY_CHECK_MS + 1));
    page_totals t2 = totals();
    EXPECT_EQ(t2.pcp, 0u);
    EXPECT_EQ(t2.spanned, t0.spanned);
    EXPECT_EQ(t2.buddy, t0.buddy + t0.pcp) << "pages lost or double counted by the idle drain";
    verify_all_zones();
}

// Large allocations through the pageset: a 9-page allocation costs 9 pages
// (the tail of its 16-page block goes back at once), a freed run is reused
// without the zone, a larger run is split exactly, and every page is
// accounted at every step.
TEST(PerCpuPages, LargeRunsKeepEveryPageAccountedAndExact)
{
    if (!pin_to_cpu(0))
        GTEST_SKIP() << "needs sched_setaffinity";
    // Watermarks well above what the test frees: no reclaim pass drains the
    // pagesets under ZONE_RECLAIM_ACTIVE between the steps (whether one
    // runs depended on how many refaults earlier steps had counted).
    high_watermarks hw;
    // Enough free memory that nothing below grows a zone.
    ASSERT_NE(drain_and_make_room(), nullptr);
    page_totals t0 = totals();
    auto in_use = [&](const page_totals &t) {
        return (long)(t.spanned - t.buddy - t.pcp) - (long)(t0.spanned - t0.buddy - t0.pcp);
    };

    page *a = alloc_large(9);
    ASSERT_NE(a, nullptr);
    zone *z = page_zone(a);
    per_cpu_pages *pcp = &z->per_cpu_pageset[raw_smp_processor_id() % z->nr_pcp];
    page_totals t = totals();
    ASSERT_EQ(t.spanned, t0.spanned);
    EXPECT_EQ(in_use(t), 9) << "a 9-page allocation does not cost 9 pages";
    EXPECT_EQ(t.pcp, t0.pcp) << "a miss put pages on the pageset";
    verify_all_zones();

    free_pages_exact(a, 9);
    t = totals();
    EXPECT_EQ(in_use(t), 0);
    ASSERT_EQ(t.pcp, t0.pcp + 9) << "the freed run is not on the pageset";
    verify_all_zones();

    unsigned long hits = pcp->nr_run_hit;
    unsigned long locks = pa_stats.zone_lock;
    page *b = alloc_large(9);
    EXPECT_EQ(b, a) << "the run was not reused";
    EXPECT_EQ(pcp->nr_run_hit, hits + 1);
    EXPECT_EQ(pa_stats.zone_lock, locks) << "a run from the pageset took the zone lock";
    EXPECT_EQ(in_use(totals()), 9);
    free_pages_exact(b, 9);

    // A 16-page run split for 10: the 6 left go back to the buddy allocator.
    page *c = alloc_large(16);
    ASSERT_NE(c, nullptr);
    drain_all_pages();
    free_pages_exact(c, 16);
    page_totals before = totals();
    ASSERT_EQ(before.pcp, 16u) << "the freed run did not stay on the pageset";
    page *d = alloc_large(10);
    EXPECT_EQ(d, c) << "the 16-page run was not used for 10 pages";
    t = totals();
    EXPECT_EQ(in_use(t), 10);
    EXPECT_EQ(t.pcp, before.pcp - 16);
    EXPECT_EQ(t.buddy, before.buddy + 6);
    verify_all_zones();
    free_pages_exact(d, 10);

    // A 30-page run split for 20: the 10 left stay on the pageset as a run.
    page *e = alloc_large(30);
    ASSERT_NE(e, nullptr);
    drain_all_pages();
    free_pages_exact(e, 30);
    before = totals();
    ASSERT_EQ(before.pcp, 30u) << "the freed run did not stay on the pageset";
    page *f = alloc_large(20);
    EXPECT_EQ(f, e);
    t = totals();
    EXPECT_EQ(in_use(t), 20);
    EXPECT_EQ(t.pcp, before.pcp - 20);
    EXPECT_EQ(t.buddy, before.buddy);
    EXPECT_EQ(t.pcp, 10u);
    verify_all_zones();
    free_pages_exact(f, 20);

    drain_all_pages();
    t = totals();
    EXPECT_EQ(t.pcp, 0u);
    EXPECT_EQ(in_use(t), 0) << "pages lost through the pageset runs";
    verify_all_zones();
    unpin();
}

// Two run allocations missing in a row give every run on the pageset back
// to the zone (pcp_drain_runs_locked): they merge with their free neighbours
// there, where the caller's best fit sees them.  One miss keeps them, so a
// program alternating two sizes keeps both runs.  Fails with runs kept
// until high, and with runs given back at every miss.
TEST(PerCpuPages, TwoRunMissesInARowGiveThePagesetsRunsBackToTheZone)
{
    if (!pin_to_cpu(0))
        GTEST_SKIP() << "needs sched_setaffinity";
    high_watermarks hw;
    zone *rz = drain_and_make_room();
    ASSERT_NE(rz, nullptr);
    // A heap that is not small (zone_small_heap: small heaps keep their runs).
    std::vector<page *> ballast;
    while (zone_small_heap(rz) && ballast.size() < 64) {
        page *pg = alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        prep_compound_page(pg, 1ul << MAX_ORDER, PG_meta);
        pg->nr_pages = 1u << MAX_ORDER;
        ballast.push_back(pg);
    }
    ASSERT_FALSE(zone_small_heap(rz));
    ASSERT_NE(drain_and_make_room(), nullptr);

    // Alternating sizes: after one miss each, both runs stay and are hit.
    page *x = alloc_large(20);
    ASSERT_NE(x, nullptr);
    zone *z = page_zone(x);
    per_cpu_pages *pcp = &z->per_cpu_pageset[raw_smp_processor_id() % z->nr_pcp];
    drain_all_pages();
    free_pages_exact(x, 20);                   // pageset: [20]
    page *y = alloc_large(12);                 // a miss (the first)
    ASSERT_NE(y, nullptr);
    free_pages_exact(y, 12);                   // pageset: [20, 12]
    EXPECT_EQ(totals().pcp, 32u) << "one miss gave the runs back";
    unsigned long hits = pcp->nr_run_hit;
    for (int i = 0; i < 4; i++) {
        page *x2 = alloc_large(20);
        EXPECT_EQ(x2, x) << "the 20-page run was not kept for the next 20 pages";
        free_pages_exact(x2, 20);
        page *y2 = alloc_large(12);
        EXPECT_EQ(y2, y) << "the 12-page run was not kept for the next 12 pages";
        free_pages_exact(y2, 12);
    }
    EXPECT_EQ(pcp->nr_run_hit, hits + 8);
    verify_all_zones();

    // Two neighbours of 20 and 12 pages, both freed: both runs sit on the
    // pageset, unmerged.
    page *a = alloc_large(20);
    ASSERT_NE(a, nullptr);
    page *b = alloc_large(12);
    ASSERT_NE(b, nullptr);
    drain_all_pages();
    free_pages_exact(a, 20);
    free_pages_exact(b, 12);
    page_totals before = totals();
    ASSERT_EQ(before.pcp, 32u) << "the freed runs did not stay on the pageset";

    // 100 pages (no run holds them: the first miss) keep the runs; then 24
    // pages (the second miss in a row) give them back first.
    unsigned long misses = pcp->nr_run_miss;
    page *big = alloc_large(100);
    ASSERT_NE(big, nullptr);
    EXPECT_EQ(totals().pcp, 32u) << "the first miss gave the runs back";
    page *c = alloc_large(24);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(pcp->nr_run_miss, misses + 2);
    page_totals t = totals();
    EXPECT_EQ(t.pcp, 0u) << "the runs stayed on the pageset after two misses in a row";
    verify_all_zones();
    if (page_zone(b) == z && b == a + 20)
        EXPECT_EQ(c, a) << "the two runs did not merge into one the 24 pages could use";
    free_pages_exact(c, 24);
    free_pages_exact(big, 100);
    drain_all_pages();
    for (page *pg : ballast)
        free_pages(pg, MAX_ORDER);
    drain_all_pages();
    verify_all_zones();
    unpin();
}
