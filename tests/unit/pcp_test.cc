// Per-CPU pagesets: count never exceeds high after a free, refill and drain
// keep every page accounted, draining returns pages to the buddy allocator,
// and pages freed on another CPU land there correctly.
#include <gtest/gtest.h>

#include <sched.h>

#include <random>
#include <vector>

#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "zone_check.h"

using namespace kalloc;

namespace {

unsigned long list_pages(per_cpu_pages *pcp)
{
    unsigned long n = 0;
    for (auto &l : pcp->lists)
        for (list_head *e = l.next; e != &l; e = e->next)
            n += 1ul << list_entry(e, page, lru)->order;
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

} // namespace

TEST(PerCpuPages, CountStaysBelowHighAfterEveryFree)
{
    std::mt19937 rng(3);
    std::vector<std::pair<page *, unsigned>> live;
    for (int i = 0; i < 4000; i++) {
        unsigned order = rng() % (PAGE_ALLOC_COSTLY_ORDER + 1);
        page *pg = alloc_marked(order);
        ASSERT_NE(pg, nullptr);
        live.push_back({pg, order});
    }
    std::shuffle(live.begin(), live.end(), rng);
    for (auto &[pg, order] : live) {
        zone *z = pg->zone;
        free_pages(pg, order);
        for (unsigned c = 0; c < z->nr_pcp; c++) {
            per_cpu_pages *pcp = &z->per_cpu_pageset[c];
            spin_lock(&pcp->lock);
            int count = pcp->count, high = pcp->high;
            unsigned long on_lists = list_pages(pcp);
            spin_unlock(&pcp->lock);
            ASSERT_LT(count, high) << "cpu " << c;
            ASSERT_EQ((unsigned long)count, on_lists) << "count does not match the lists";
        }
    }
    verify_all_zones();
}

TEST(PerCpuPages, BatchFollowsZoneSize)
{
    page *pg = alloc_marked(0);     // make sure a zone exists
    ASSERT_NE(pg, nullptr);
    free_pages(pg, 0);
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    ASSERT_GT(n, 0u);
    zone *z = zones[0];
    int batch = z->per_cpu_pageset[0].batch;
    EXPECT_GE(batch, 1);
    EXPECT_LE(batch, 63);
    EXPECT_EQ((batch + 1) & batch, 0) << "batch is 2^n - 1";
    EXPECT_EQ(z->per_cpu_pageset[0].high, 6 * batch);
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
    drain_all_pages();
    std::vector<page *> pgs;
    for (int i = 0; i < 40; i++) {
        page *pg = alloc_marked(1);
        ASSERT_NE(pg, nullptr);
        memset(page_address(pg), 0x77, 2 * PAGE_SIZE);
        pgs.push_back(pg);
    }
    ASSERT_TRUE(pin_to_cpu(1));
    for (page *pg : pgs)
        free_pages(pg, 1);
    zone *z = pgs[0]->zone;
    ASSERT_GE(z->nr_pcp, 2u);
    EXPECT_GT(zone_pcp_pages(z), 0u);
    verify_all_zones();
    // Allocating on CPU 1 gets those pages back from its own pageset.
    page *again = alloc_marked(1);
    ASSERT_NE(again, nullptr);
    bool found = false;
    for (page *pg : pgs)
        found |= pg == again;
    EXPECT_TRUE(found) << "CPU 1's pageset did not serve the pages freed on CPU 1";
    free_pages(again, 1);
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    sched_setaffinity(0, sizeof(all), &all);
    drain_all_pages();
    verify_all_zones();
}
