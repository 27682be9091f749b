// Migrate-type grouping: the fallback and claim rules of __rmqueue checked
// step by step against a reference model written from the rules (not from
// the code), mixed-pageblock counts against the test's own record of what
// each pageblock holds, and the per-size-class lifetime learning.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "mm/page_alloc.h"
#include "mm/slab.h"
#include "mm/vmstat.h"
#include "platform/options.h"
#include "zone_check.h"

using namespace kalloc;

namespace {

// What the rules say __rmqueue(z, order, mt) must do, from the free lists as
// they are before the call.
struct prediction {
    bool fallback;        // served from another type's list
    page *block;          // fallback: the block it takes (head of its list)
    migratetype from;     // fallback: the list's type
    bool claim;           // fallback: the pageblock(s) become mt
};

unsigned long model_pageblock_free(zone *z, unsigned long pfn)
{
    // Sum of the free blocks (all lists) whose pages lie in pfn's pageblock.
    unsigned long start = pfn & ~(pageblock_nr_pages - 1), n = 0;
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        for (auto &l : z->free_area[o].free_list)
            for (list_head *e = l.next; e != &l; e = e->next) {
                unsigned long p = page_to_pfn(list_entry(e, page, lru));
                if (p >= start && p < start + pageblock_nr_pages)
                    n += 1ul << o;
            }
    return n;
}

prediction predict(zone *z, unsigned order, migratetype mt)
{
    prediction p{};
    for (unsigned o = order; o < NR_PAGE_ORDERS; o++)
        if (!list_empty(&z->free_area[o].free_list[mt]))
            return p;                                   // no fallback
    p.fallback = true;
    // Claim: the largest block whose pageblock mt may claim (a block of a
    // pageblock or more always; a smaller one for a large request or a type
    // other than movable, when half its pageblock is free), in the table's
    // order of types at each order.
    bool may = order >= pageblock_order / 2 || mt != MIGRATE_MOVABLE;
    for (int o = MAX_ORDER; o >= (int)order; o--)
        for (migratetype f : fallbacks[mt]) {
            list_head *l = &z->free_area[o].free_list[f];
            if (list_empty(l))
                continue;
            page *b = list_first_entry(l, page, lru);
            if ((unsigned)o >= pageblock_order ||
                (may && model_pageblock_free(z, page_to_pfn(b)) >= pageblock_nr_pages / 2)) {
                p.block = b;
                p.from = f;
                p.claim = true;
                return p;
            }
        }
    // Steal: otherwise the smallest block that fits, nothing claimed.
    for (unsigned o = order; o < NR_PAGE_ORDERS; o++)
        for (migratetype f : fallbacks[mt]) {
            list_head *l = &z->free_area[o].free_list[f];
            if (list_empty(l))
                continue;
            p.block = list_first_entry(l, page, lru);
            p.from = f;
            return p;
        }
    p.block = nullptr;                                  // nothing at all: nullptr
    return p;
}

struct live_block {
    unsigned long pfn;
    unsigned order;
    migratetype mt;
};

} // namespace

TEST(Migrate, FallbackAndClaimRulesAgainstReferenceModel)
{
    // A zone of our own (32 MiB), driven through __rmqueue directly so
    // nothing else (per-CPU lists, growth, other tests) takes part.
    zone *z = zone_create(8u << MAX_ORDER);
    ASSERT_NE(z, nullptr);
    std::mt19937_64 rng(4242);
    std::vector<live_block> live;
    unsigned long fallbacks_seen = 0, claims_seen = 0;
    for (int step = 0; step < 6000; step++) {
        bool alloc = live.empty() || rng() % 100 < 60;
        spin_lock(&z->lock);
        if (alloc) {
            migratetype mt = (migratetype)(rng() % MIGRATE_TYPES);
            unsigned r = rng() % 100;
            unsigned order = r < 70 ? 0 : r < 90 ? 1 + rng() % 4 : r < 98 ? 5 + rng() % 4 : 9;
            prediction p = predict(z, order, mt);
            unsigned long fb0 = pa_stats.pgfallback, cl0 = pa_stats.pageblock_claims;
            page *pg = __rmqueue(z, order, mt, nullptr);
            if (!pg) {
                EXPECT_TRUE(p.fallback && !p.block) << "step " << step << ": nothing free predicted";
                spin_unlock(&z->lock);
                continue;
            }
            unsigned long pfn = page_to_pfn(pg);
            if (!p.fallback) {
                EXPECT_EQ(pa_stats.pgfallback, fb0) << "step " << step << ": own type had a block";
            } else {
                ASSERT_NE(p.block, nullptr) << "step " << step;
                fallbacks_seen++;
                EXPECT_EQ(pa_stats.pgfallback, fb0 + 1) << "step " << step;
                unsigned long bpfn = page_to_pfn(p.block);
                EXPECT_EQ(pfn, bpfn) << "step " << step << ": not the block the claim and steal "
                                        "rules pick";
                EXPECT_EQ(pa_stats.pageblock_claims, cl0 + (p.claim ? 1 : 0)) << "step " << step;
                EXPECT_EQ(get_pageblock_migratetype(z, pfn), p.claim ? mt : p.from)
                    << "step " << step << " " << migratetype_names[mt] << " from "
                    << migratetype_names[p.from];
                claims_seen += p.claim;
            }
            prep_compound_page(pg, 1ul << order, PG_large);
            pg->nr_pages = 1u << order;
            pg->migratetype = mt;           // as alloc_pages() records it
            live.push_back({pfn, order, mt});
        } else {
            size_t i = rng() % live.size();
            live_block b = live[i];
            live[i] = live.back();
            live.pop_back();
            __free_one_page(z, b.pfn, b.order, false);
        }
        if (step % 500 == 0) {
            ASSERT_EQ(__zone_verify(z), nullptr);
            // Mixed pageblocks against the test's own record.
            std::map<unsigned long, unsigned> held;
            for (auto &b : live)
                for (unsigned long pb = b.pfn >> pageblock_order;
                     pb <= (b.pfn + (1ul << b.order) - 1) >> pageblock_order; pb++)
                    held[pb] |= 1u << b.mt;
            unsigned long mixed = 0;
            for (auto &[pb, mask] : held)
                mixed += (mask & (mask - 1)) != 0;
            unsigned long nr_blocks = z->spanned_pages >> pageblock_order;
            pagetype_counts c = {};
            __zone_pagetype_counts(z, &c);
            EXPECT_EQ(c.nr_mixed_total, mixed) << "step " << step;
            EXPECT_EQ(c.nr_empty_pageblocks, nr_blocks - held.size()) << "step " << step;
            unsigned long sum = 0, sum_mixed = 0;
            for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++) {
                sum += c.nr_pageblocks[mt];
                sum_mixed += c.nr_mixed[mt];
            }
            EXPECT_EQ(sum, nr_blocks);
            EXPECT_EQ(sum_mixed, c.nr_mixed_total);
        }
        spin_unlock(&z->lock);
        if (HasFailure())
            break;
    }
    EXPECT_GT(fallbacks_seen, 20u) << "the sequence must exercise fallbacks";
    EXPECT_GT(claims_seen, 5u);
    EXPECT_GT(fallbacks_seen - claims_seen, 5u) << "and steals";
    spin_lock(&z->lock);
    for (auto &b : live)
        __free_one_page(z, b.pfn, b.order, false);
    EXPECT_EQ(__zone_verify(z), nullptr);
    EXPECT_EQ(z->nr_free_pages, z->spanned_pages) << "every page came back";
    pagetype_counts c = {};
    __zone_pagetype_counts(z, &c);
    EXPECT_EQ(c.nr_mixed_total, 0u);
    EXPECT_EQ(c.nr_empty_pageblocks, z->spanned_pages >> pageblock_order);
    spin_unlock(&z->lock);
}

TEST(Migrate, SizeClassLifetimeIsLearned)
{
    // Class A only grows (objects never come back): long-lived after a few
    // windows, and its new slabs go to long-lived pageblocks.  Class B churns
    // (everything handed out comes back): short-lived.  When A starts to
    // churn it becomes short-lived again.  (Applied with KALLOC_LIFETIME=1;
    // learned, not applied, by default.)
    long saved_option = options[OPT_LIFETIME].value;
    options[OPT_LIFETIME].value = 1;
    kmem_cache *a = &kmalloc_caches[kmalloc_index(208)];
    kmem_cache *b = &kmalloc_caches[kmalloc_index(1100)];
    std::vector<std::pair<void *, unsigned>> a_chains;
    auto window = [](kmem_cache *c) {
        return std::max<unsigned long>(512, (unsigned long)SLAB_LIFE_WINDOW * c->objects);
    };
    kmem_cache_free_bulk(a, kmem_cache_alloc(a), 1);     // initialise both
    kmem_cache_free_bulk(b, kmem_cache_alloc(b), 1);
    for (int w = 0; w < 6; w++) {
        unsigned long need = window(a) + 1;
        while (need) {
            unsigned got = 0;
            void *chain = kmem_cache_alloc_bulk(a, need > 64 ? 64 : (unsigned)need, &got, 0);
            ASSERT_GT(got, 0u);
            a_chains.push_back({chain, got});
            need -= got;
        }
        for (unsigned long left = window(b) + 1; left;) {
            unsigned got = 0;
            void *chain = kmem_cache_alloc_bulk(b, left > 64 ? 64 : (unsigned)left, &got, 0);
            ASSERT_GT(got, 0u);
            kmem_cache_free_bulk(b, chain, got);
            left -= got;
        }
    }
    EXPECT_EQ(a->migratetype, MIGRATE_LONGLIVED) << "life_ratio " << a->life_ratio;
    EXPECT_EQ(b->migratetype, MIGRATE_RECLAIMABLE) << "life_ratio " << b->life_ratio;
    // A's latest slab was allocated as long-lived, in a long-lived pageblock.
    unsigned got = 0;
    void *chain = kmem_cache_alloc_bulk(a, a->objects, &got, 0);
    ASSERT_GT(got, 0u);
    a_chains.push_back({chain, got});
    void *last = chain;
    for (unsigned i = 1; i < got; i++)
        last = get_freepointer(last);
    zone *z = page_zone_of((uintptr_t)last);
    page *head = compound_head(virt_to_page(z, (uintptr_t)last));
    EXPECT_EQ(head->migratetype, MIGRATE_LONGLIVED);
    EXPECT_EQ(get_pageblock_migratetype(z, page_to_pfn(head)), MIGRATE_LONGLIVED);
    // A now churns: everything comes back, and more is churned.
    for (auto &[c, n] : a_chains)
        kmem_cache_free_bulk(a, c, n);
    for (int w = 0; w < 4; w++)
        for (unsigned long left = window(a) + 1; left;) {
            void *c = kmem_cache_alloc_bulk(a, left > 64 ? 64 : (unsigned)left, &got, 0);
            ASSERT_GT(got, 0u);
            kmem_cache_free_bulk(a, c, got);
            left -= got;
        }
    EXPECT_EQ(a->migratetype, MIGRATE_RECLAIMABLE) << "life_ratio " << a->life_ratio;
    EXPECT_GE(a->nr_life_changes, 2u);
    options[OPT_LIFETIME].value = saved_option;
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Migrate, LifetimeIsLearnedButNotAppliedByDefault)
{
    if (getenv("KALLOC_LIFETIME"))
        GTEST_SKIP() << "KALLOC_LIFETIME is set in the environment (classes may be regrouped before the test)";
    long saved_option = options[OPT_LIFETIME].value;
    options[OPT_LIFETIME].value = 0;
    kmem_cache *c = &kmalloc_caches[kmalloc_index(2000)];
    kmem_cache_free_bulk(c, kmem_cache_alloc(c), 1);
    std::vector<std::pair<void *, unsigned>> chains;
    unsigned long window = std::max<unsigned long>(512, (unsigned long)SLAB_LIFE_WINDOW * c->objects);
    for (unsigned long left = 6 * window; left;) {
        unsigned got = 0;
        void *chain = kmem_cache_alloc_bulk(c, left > 64 ? 64 : (unsigned)left, &got, 0);
        ASSERT_GT(got, 0u);
        chains.push_back({chain, got});
        left -= got;
    }
    EXPECT_LT(c->life_ratio, SLAB_LIFE_LONG) << "the growth was seen";
    EXPECT_EQ(c->migratetype, MIGRATE_RECLAIMABLE) << "but new slabs stay short-lived";
    for (auto &[chain, n] : chains)
        kmem_cache_free_bulk(c, chain, n);
    options[OPT_LIFETIME].value = saved_option;
}
