// Compaction: the kernel's deferral arithmetic, the fragmentation measures,
// and a compaction run over a fragmented slab heap: every page stays
// accounted for (zone checker, slab books), no live object is touched (fill
// patterns), free memory is given back, and the free lists and partial
// slabs come out in the free scanner's order.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "mm/compaction.h"
#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/slab.h"
#include "mm/vmscan.h"
#include "mm/vmstat.h"
#include "platform/options.h"
#include "slab_check.h"
#include "zone_check.h"

using namespace kalloc;

namespace {

uint8_t pattern(const void *obj, size_t i) { return (uint8_t)(((uintptr_t)obj >> 4) * 31 + i); }

void fill(void *obj, size_t size)
{
    for (size_t i = 0; i < size; i++)
        ((uint8_t *)obj)[i] = pattern(obj, i);
}

bool intact(const void *obj, size_t size)
{
    for (size_t i = 0; i < size; i++)
        if (((const uint8_t *)obj)[i] != pattern(obj, i))
            return false;
    return true;
}

// A zone of our own whose free memory is all in single pages (score 100):
// every page taken, then every other one freed; *pfns gets them all, and the
// odd ones are still in use (zone_make_whole gives them back).  Call with
// ASSERT_NO_FATAL_FAILURE; *out is the zone.
void zone_in_single_pages(zone **out, std::vector<unsigned long> *pfns)
{
    zone *z = zone_create(4u << MAX_ORDER);
    ASSERT_NE(z, nullptr);
    spin_lock(&z->lock);
    while (page *pg = __rmqueue(z, 0, MIGRATE_MOVABLE, nullptr)) {
        prep_compound_page(pg, 1, PG_large);
        pg->nr_pages = 1;
        pfns->push_back(page_to_pfn(pg));
    }
    for (unsigned long pfn : *pfns)
        if (pfn % 2 == 0)
            __free_one_page(z, pfn, 0, false);
    const unsigned score = __fragmentation_score_zone(z);
    spin_unlock(&z->lock);
    ASSERT_EQ(score, 100u);
    *out = z;
}

// Everything zone_in_single_pages left in use comes back: the zone is whole
// again.  Caller holds z->lock.
void zone_make_whole_locked(zone *z, const std::vector<unsigned long> &pfns)
{
    for (unsigned long pfn : pfns)
        if (pfn % 2 == 1)
            __free_one_page(z, pfn, 0, false);
    EXPECT_EQ(__fragmentation_score_zone(z), 0u);
    EXPECT_EQ(z->nr_free_pages, z->spanned_pages);
    EXPECT_EQ(__zone_verify(z), nullptr);
}

} // namespace

TEST(Compaction, DeferralBacksOffLikeTheKernel)
{
    zone z = {};
    z.compact_order_failed = MAX_ORDER + 1;
    EXPECT_FALSE(__compaction_deferred(&z, 9)) << "never failed: not deferred";
    for (unsigned fails = 1; fails <= 8; fails++) {
        __defer_compaction(&z, 9);
        unsigned shift = std::min(fails, COMPACT_MAX_DEFER_SHIFT);
        EXPECT_EQ(z.compact_defer_shift, shift);
        // The next 2^shift - 1 requests are skipped, then one may run.
        for (unsigned i = 0; i + 1 < (1u << shift); i++)
            EXPECT_TRUE(__compaction_deferred(&z, 9)) << "fails " << fails << " i " << i;
        EXPECT_FALSE(__compaction_deferred(&z, 9)) << "fails " << fails;
        EXPECT_FALSE(__compaction_deferred(&z, 9)) << "stays allowed until the next failure";
    }
    EXPECT_FALSE(__compaction_deferred(&z, 8)) << "orders below the failed one are not deferred";
    __compaction_defer_reset(&z, 9, true);
    EXPECT_EQ(z.compact_defer_shift, 0u);
    EXPECT_EQ(z.compact_order_failed, 10);
    EXPECT_FALSE(__compaction_deferred(&z, 9));
}

TEST(Compaction, FragmentationIndexAndScore)
{
    zone *z = zone_create(4u << MAX_ORDER);     // 16 MiB of our own
    ASSERT_NE(z, nullptr);
    spin_lock(&z->lock);
    EXPECT_EQ(__fragmentation_index(z, pageblock_order), -1000) << "free 2 MiB blocks exist";
    EXPECT_EQ(__fragmentation_score_zone(z), 0u);
    // Take everything as single pages, give back every other one: plenty of
    // free memory, none of it in a 2 MiB block.
    std::vector<unsigned long> pfns;
    while (page *pg = __rmqueue(z, 0, MIGRATE_MOVABLE, nullptr)) {
        prep_compound_page(pg, 1, PG_large);
        pg->nr_pages = 1;
        pfns.push_back(page_to_pfn(pg));
    }
    if (pfns.size() != z->spanned_pages) {
        spin_unlock(&z->lock);      // a failed ASSERT under the lock would hang zone_reclaim_all
        FAIL() << pfns.size() << " pages taken of " << z->spanned_pages;
    }
    EXPECT_EQ(__fragmentation_index(z, pageblock_order), 0) << "no free memory: not fragmentation";
    for (unsigned long pfn : pfns)
        if (pfn % 2 == 0)
            __free_one_page(z, pfn, 0, false);
    EXPECT_GT(__fragmentation_index(z, pageblock_order), extfrag_threshold);
    EXPECT_EQ(__fragmentation_score_zone(z), 100u);
    EXPECT_EQ(__fragmentation_index(z, 0), -1000);
    // Free the rest: whole blocks again.
    for (unsigned long pfn : pfns)
        if (pfn % 2 == 1)
            __free_one_page(z, pfn, 0, false);
    EXPECT_EQ(__fragmentation_index(z, pageblock_order), -1000);
    EXPECT_EQ(__fragmentation_score_zone(z), 0u);
    EXPECT_EQ(__zone_verify(z), nullptr);
    spin_unlock(&z->lock);
}

TEST(Compaction, KeepsPagesAccountedAndLiveObjectsIntact)
{
    std::mt19937_64 rng(99);
    const unsigned classes[] = {1, 3, 8, 12, 17, 24, 30, 40};
    struct obj {
        void *p;
        kmem_cache *c;
    };
    std::vector<obj> objs;
    for (unsigned idx : classes) {
        kmem_cache *c = &kmalloc_caches[idx];
        for (int i = 0; i < 200; i++) {
            unsigned got = 0;
            void *chain = kmem_cache_alloc_bulk(c, 32, &got, 0);
            ASSERT_EQ(got, 32u);
            for (void *o = chain; o;) {
                void *next = get_freepointer(o);
                fill(o, c->size);
                objs.push_back({o, c});
                o = next;
            }
        }
    }
    // Free a random 90%.
    std::shuffle(objs.begin(), objs.end(), rng);
    size_t keep = objs.size() / 10;
    for (size_t i = keep; i < objs.size(); i++)
        kmem_cache_free(objs[i].c, objs[i].p);
    objs.resize(keep);
    zone_totals before = get_zone_totals();
    unsigned long released = compact_memory(COMPACT_FULL);
    zone_totals after = get_zone_totals();
    EXPECT_GT(released, 0u) << "emptied slabs were given back";
    EXPECT_EQ(after.free_resident, 0u) << "a full compaction leaves no free page resident";
    EXPECT_GE(after.reported, before.reported + released);
    for (auto &o : objs)
        ASSERT_TRUE(intact(o.p, o.c->size)) << "a live object was touched";
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (unsigned idx : classes)
        check_cache(&kmalloc_caches[idx]);
    // Partial slabs are in allocation order: fullest (in eighths) first.
    for (unsigned idx : classes) {
        kmem_cache *c = &kmalloc_caches[idx];
        spin_lock(&c->lock);
        unsigned prev = 8;
        // (objects taken without a thread cache: owner 0's list)
        for (list_head *e = c->partial[0].next; e != &c->partial[0]; e = e->next) {
            page *pg = list_entry(e, page, lru);
            unsigned eighths = pg->inuse * 8u / c->objects;
            EXPECT_LE(eighths, prev) << "kmalloc-" << c->size << ": not fullest first";
            prev = eighths;
        }
        spin_unlock(&c->lock);
    }
    // New objects fill the fullest slabs: the next allocation comes from
    // the partial list's head.
    kmem_cache *c = &kmalloc_caches[12];
    spin_lock(&c->lock);
    page *first = list_empty(&c->partial[0]) ? nullptr : list_first_entry(&c->partial[0], page, lru);
    spin_unlock(&c->lock);
    if (first) {
        void *o = kmem_cache_alloc(c);
        ASSERT_NE(o, nullptr);
        zone *z = page_zone_of((uintptr_t)o);
        EXPECT_EQ(compound_head(virt_to_page(z, (uintptr_t)o)), first);
        kmem_cache_free(c, o);
    }
    for (auto &o : objs)
        kmem_cache_free(o.c, o.p);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Compaction, FreeScannerOrdersFreeBlocksFullestPageblockFirst)
{
    // Fragment some pages, then run the free scanner on every zone, coarse
    // (proactive) then exact (full): on every free list resident blocks come
    // first; coarse: by their pageblock's free pages in 64-page buckets;
    // exact: by free pages, then address (reported blocks by address).
    // The order-0 fragments must stay resident for the check of their
    // order: a watermark this high keeps reclaim (which takes order-0/1
    // blocks over the watermark, shrink_zone_small) off them.
    const long saved_free_high = options[OPT_FREE_HIGH].value;
    options[OPT_FREE_HIGH].value = 256l << 20;
    std::mt19937_64 rng(5);
    std::vector<page *> pages;
    for (int i = 0; i < 3000; i++) {
        page *pg = alloc_pages(0, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        prep_compound_page(pg, 1, PG_large);
        pg->nr_pages = 1;
        pages.push_back(pg);
    }
    std::shuffle(pages.begin(), pages.end(), rng);
    for (size_t i = 0; i < pages.size(); i += 2)
        free_pages(pages[i], 0);
    drain_all_pages();
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    unsigned long resident_seen = 0, scanned = 0;
    for (bool exact : {false, true})
        for (unsigned i = 0; i < n; i++) {
            zone *z = zones[i];
            spin_lock(&z->lock);
            scanned += __isolate_free_scan(z, exact);
            for (unsigned o = 0; o < (exact ? NR_PAGE_ORDERS : pageblock_order); o++)
                for (auto &l : z->free_area[o].free_list) {
                    page *prev = nullptr;
                    for (list_head *e = l.next; e != &l; e = e->next) {
                        page *pg = list_entry(e, page, lru);
                        bool rep = pg->flags & PG_reported;
                        resident_seen += !rep;
                        if (prev && !(prev->flags & PG_reported) == !rep) {
                            unsigned long a = page_to_pfn(prev), b = page_to_pfn(pg);
                            uint16_t na = z->pageblock_nr_free[a >> pageblock_order];
                            uint16_t nb = z->pageblock_nr_free[b >> pageblock_order];
                            if (!exact && !rep)
                                EXPECT_LE(na / 64, nb / 64) << "zone " << i << " order " << o;
                            else if (!rep && na != nb)
                                EXPECT_LT(na, nb) << "zone " << i << " order " << o;
                            else if (exact)
                                EXPECT_LT(a, b) << "zone " << i << " order " << o;
                        }
                        prev = pg;
                    }
                }
            EXPECT_EQ(__zone_verify(z), nullptr);
            spin_unlock(&z->lock);
        }
    EXPECT_GT(resident_seen, 1000u) << "the freed pages are resident free blocks";
    EXPECT_GE(scanned, resident_seen);
    for (size_t i = 1; i < pages.size(); i += 2)
        free_pages(pages[i], 0);
    drain_all_pages();
    options[OPT_FREE_HIGH].value = saved_free_high;
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Compaction, ProactiveCompactionRunsWhenTheScoreIsHighAndBacksOff)
{
    // A zone of our own whose free memory is all in single pages (score
    // 100): the check made every COMPACT_CHECK_PAGES emptied slab pages
    // compacts it; compaction cannot merge pages that are in use, so the run
    // fails and the next checks are deferred.
    zone *z;
    std::vector<unsigned long> pfns;
    ASSERT_NO_FATAL_FAILURE(zone_in_single_pages(&z, &pfns));
    compact_event_stats s0 = compact_stats;
    compaction_slab_pages_freed(COMPACT_CHECK_PAGES);
    EXPECT_EQ(compact_stats.compact_wake, s0.compact_wake + 1) << "the high score woke compaction";
    EXPECT_GE(compact_stats.compact_fail, s0.compact_fail + 1) << "pages in use cannot merge";
    spin_lock(&z->lock);
    EXPECT_EQ(z->compact_defer_shift, 1u);
    EXPECT_EQ(__zone_verify(z), nullptr);
    spin_unlock(&z->lock);
    compact_event_stats s1 = compact_stats;
    compaction_slab_pages_freed(COMPACT_CHECK_PAGES);     // skipped: deferred once
    EXPECT_GE(compact_stats.compact_deferred, s1.compact_deferred + 1);
    compaction_slab_pages_freed(COMPACT_CHECK_PAGES);     // runs again, fails again
    spin_lock(&z->lock);
    EXPECT_EQ(z->compact_defer_shift, 2u);
    zone_make_whole_locked(z, pfns);
    spin_unlock(&z->lock);
}

TEST(Compaction, AProactiveRunThatGivesNothingBackKeepsThePeakAndRounds)
{
    // A zone of our own in single pages (score 100), at its peak of use and
    // in rounds (retention, mm/vmscan.h): a proactive compaction runs on it
    // (woken by emptied slab pages) and gives back no pageblock (none is
    // free), so it leaves the zone's peak and rounds, which the program's
    // next drops still need; malloc_trim's give-back forgets them.  Before,
    // every proactive run reset them: a program building a heap of small
    // objects, freeing it all and building it again woke one at each free
    // phase and refaulted its whole heap every round.
    zone *z;
    std::vector<unsigned long> pfns;
    ASSERT_NO_FATAL_FAILURE(zone_in_single_pages(&z, &pfns));
    spin_lock(&z->lock);
    const unsigned long peak = z->spanned_pages;      // every page was in use
    const uint32_t round = vmscan_now() | 1;
    z->use_peak = peak;
    z->round_time = round;
    z->round_streak = 3;
    spin_unlock(&z->lock);
    compact_event_stats s0 = compact_stats;
    compaction_slab_pages_freed(COMPACT_CHECK_PAGES);
    spin_lock(&z->lock);
    const unsigned long peak_after_compaction = z->use_peak;
    const uint32_t round_after_compaction = z->round_time;
    spin_unlock(&z->lock);
    EXPECT_EQ(compact_stats.compact_wake, s0.compact_wake + 1) << "the high score woke compaction";
    EXPECT_EQ(peak_after_compaction, peak) << "a proactive compaction that gave nothing back forgot the peak";
    EXPECT_EQ(round_after_compaction, round) << "a proactive compaction that gave nothing back forgot the rounds";
    zone_reclaim_all(0);   // malloc_trim's give-back
    spin_lock(&z->lock);
    EXPECT_EQ(z->use_peak, z->spanned_pages - z->nr_free_pages) << "a trim kept the old peak";
    EXPECT_EQ(z->round_time, 0u) << "a trim kept the rounds";
    zone_make_whole_locked(z, pfns);
    spin_unlock(&z->lock);
}
