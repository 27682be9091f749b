// Buddy allocator invariants after long random operation sequences, checked
// against a reference model: every page free or allocated exactly once, no
// two free buddies left unmerged, and everything coalesces back at the end.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <map>
#include <random>
#include <vector>

#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/vmscan.h"
#include "platform/options.h"
#include "zone_check.h"
#include "mm/slab.h"

using namespace kalloc;

namespace {

struct block {
    page *pg;
    unsigned long nr;       // pages
    bool exact;             // from alloc_pages_exact
    unsigned order;
    uint8_t fill;
};

// Reference model: which pages (by address) are allocated.
struct model {
    std::map<uintptr_t, unsigned long> live;   // start -> pages

    void add(void *p, unsigned long nr)
    {
        uintptr_t a = (uintptr_t)p;
        auto it = live.lower_bound(a);
        if (it != live.end())
            ASSERT_GE(it->first, a + nr * PAGE_SIZE) << "overlaps a live block after it";
        if (it != live.begin()) {
            --it;
            ASSERT_LE(it->first + it->second * PAGE_SIZE, a) << "overlaps a live block before it";
        }
        live[a] = nr;
    }
    void remove(void *p) { live.erase((uintptr_t)p); }
};

} // namespace

TEST(Buddy, FallbacksTableIsNearestLifetimeFirst)
{
    // The kernel's table, extended with kalloc's long-lived slabs (mmzone.h).
    const migratetype expect[MIGRATE_TYPES][MIGRATE_TYPES - 1] = {
        {MIGRATE_LONGLIVED, MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE},   // unmovable
        {MIGRATE_RECLAIMABLE, MIGRATE_LONGLIVED, MIGRATE_UNMOVABLE}, // movable
        {MIGRATE_MOVABLE, MIGRATE_LONGLIVED, MIGRATE_UNMOVABLE},     // reclaimable
        {MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE},   // long-lived
    };
    for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++) {
        unsigned seen = 1u << mt;
        for (unsigned i = 0; i < MIGRATE_TYPES - 1; i++) {
            EXPECT_EQ(fallbacks[mt][i], expect[mt][i]) << migratetype_names[mt] << " #" << i;
            seen |= 1u << fallbacks[mt][i];
        }
        EXPECT_EQ(seen, (1u << MIGRATE_TYPES) - 1) << "every other type once";
    }
}

TEST(Buddy, BlocksAreAlignedToTheirOrder)
{
    for (unsigned order = 0; order <= MAX_ORDER; order++) {
        page *pg = alloc_pages(order, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        EXPECT_EQ(page_to_pfn(pg) % (1ul << order), 0u) << "order " << order;
        EXPECT_EQ((uintptr_t)page_address(pg) % (PAGE_SIZE << order), 0u);
        prep_compound_page(pg, 1ul << order, PG_large);
        pg->nr_pages = 1u << order;
        free_pages(pg, order);
    }
    verify_all_zones();
}

TEST(Buddy, RandomSequenceAgainstReferenceModel)
{
    std::mt19937_64 rng(12345);
    std::vector<block> live;
    model m;
    const migratetype types[] = {MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE,
                                 MIGRATE_LONGLIVED};
    for (int step = 0; step < 20000; step++) {
        bool do_alloc = live.empty() || (rng() % 100) < 55;
        if (do_alloc && live.size() < 3000) {
            block b{};
            b.exact = rng() % 3 == 0;
            migratetype mt = types[rng() % 4];
            // Mostly small orders, as real use; sometimes large.
            unsigned r = rng() % 100;
            b.order = r < 60 ? 0 : r < 80 ? 1 + rng() % 3 : r < 97 ? 4 + rng() % 4 : 8 + rng() % 3;
            if (b.exact) {
                b.nr = 1 + rng() % (1ul << b.order);
                b.pg = alloc_pages_exact(b.nr, mt, nullptr);
            } else {
                b.nr = 1ul << b.order;
                b.pg = alloc_pages(b.order, mt, nullptr);
            }
            ASSERT_NE(b.pg, nullptr);
            prep_compound_page(b.pg, b.nr, PG_large);
            b.pg->nr_pages = (uint32_t)b.nr;
            void *addr = page_address(b.pg);
            ASSERT_NO_FATAL_FAILURE(m.add(addr, b.nr));
            b.fill = (uint8_t)rng();
            // Touch first and last byte: the memory is really ours and mapped.
            ((uint8_t *)addr)[0] = b.fill;
            ((uint8_t *)addr)[b.nr * PAGE_SIZE - 1] = b.fill;
            live.push_back(b);
        } else if (!live.empty()) {
            size_t i = rng() % live.size();
            block b = live[i];
            live[i] = live.back();
            live.pop_back();
            uint8_t *addr = (uint8_t *)page_address(b.pg);
            ASSERT_EQ(addr[0], b.fill) << "a live block was overwritten";
            ASSERT_EQ(addr[b.nr * PAGE_SIZE - 1], b.fill) << "a live block was overwritten";
            m.remove(addr);
            if (b.exact)
                free_pages_exact(b.pg, b.nr);
            else
                free_pages(b.pg, b.order);
        }
        if (step % 2000 == 0)
            ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (block &b : live) {
        uint8_t *addr = (uint8_t *)page_address(b.pg);
        ASSERT_EQ(addr[0], b.fill);
        if (b.exact)
            free_pages_exact(b.pg, b.nr);
        else
            free_pages(b.pg, b.order);
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    // Everything coalesces back: with no allocation left, each zone is made of
    // MAX_ORDER blocks only (other tests in this binary may hold slab pages,
    // so count only zones without allocated pages).
    kmem_cache_shrink_all();
    drain_all_pages();
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        bool empty = z->nr_free_pages + z->nr_meta_pages == z->spanned_pages;
        if (empty && z->nr_meta_pages == 0) {
            EXPECT_EQ(z->free_area[MAX_ORDER].nr_free << MAX_ORDER, z->spanned_pages)
                << "zone " << i << " did not coalesce into whole MAX_ORDER blocks";
            for (unsigned o = 0; o < MAX_ORDER; o++)
                EXPECT_EQ(z->free_area[o].nr_free, 0u) << "order " << o;
        }
        spin_unlock(&z->lock);
    }
}

TEST(Buddy, FallbackClaimsWholePageblocksForLongLivedTypes)
{
    // A run of unmovable order-0 allocations must not spread over many
    // pageblocks: after the first fallback the pageblock is claimed, so the
    // following allocations come from the same block.
    std::vector<page *> pgs;
    for (int i = 0; i < 256; i++) {
        page *pg = alloc_pages(0, MIGRATE_UNMOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        prep_compound_page(pg, 1, PG_meta);
        pg->nr_pages = 1;
        pgs.push_back(pg);
    }
    std::map<std::pair<zone *, unsigned long>, int> blocks;
    for (page *pg : pgs) {
        blocks[{page_zone(pg), page_to_pfn(pg) >> pageblock_order}]++;
        EXPECT_EQ(get_pageblock_migratetype(page_zone(pg), page_to_pfn(pg)), MIGRATE_UNMOVABLE);
    }
    EXPECT_LE(blocks.size(), 2u) << "256 unmovable pages spread over " << blocks.size()
                                 << " pageblocks";
    for (page *pg : pgs)
        free_pages(pg, 0);
    verify_all_zones();
}

TEST(Buddy, ReportedBlocksReadAsZero)
{
    // Fresh zone memory comes back "zeroed"; so does memory reclaimed with
    // madvise (zone_reclaim_all): the flag must never lie.
    bool zeroed = false;
    page *pg = alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, &zeroed);
    ASSERT_NE(pg, nullptr);
    prep_compound_page(pg, 1ul << MAX_ORDER, PG_large);
    pg->nr_pages = 1u << MAX_ORDER;
    memset(page_address(pg), 0x5a, PAGE_SIZE << MAX_ORDER);
    free_pages(pg, MAX_ORDER);
    zone_reclaim_all(0);
    for (int i = 0; i < 8; i++) {
        // A freed block is dirty again (merging keeps it unreported), so
        // reclaim before every round.
        zone_reclaim_all(0);
        zeroed = false;
        page *q = alloc_pages(MAX_ORDER - 2, MIGRATE_MOVABLE, &zeroed);
        ASSERT_NE(q, nullptr);
        ASSERT_TRUE(zeroed) << "after reclaim_all every free block is reported";
        const uint8_t *b = (const uint8_t *)page_address(q);
        for (size_t off = 0; off < (PAGE_SIZE << (MAX_ORDER - 2)); off += 511)
            ASSERT_EQ(b[off], 0) << "a reported block is not zero";
        prep_compound_page(q, 1ul << (MAX_ORDER - 2), PG_large);
        q->nr_pages = 1u << (MAX_ORDER - 2);
        free_pages(q, MAX_ORDER - 2);
    }
    verify_all_zones();
}

// Blocks of order o allocated and written, every other one freed and given
// back (reported holes that cannot merge); then a held block whose buddy is
// a hole, and whose order o + 1 buddy is held, is freed: merged with the
// hole, it is the only resident free block of order o + 1 (its first or
// second half resident).  Returns that block's freed half (nullptr, with a
// test failure, if the layout had none); `held` keeps the blocks in use.
static page *free_beside_a_reclaimed_hole(unsigned o, std::map<unsigned long, page *> &held)
{
    const unsigned long n = 1ul << o;
    std::vector<page *> holes;
    for (int i = 0; i < 64; i++) {
        page *pg = alloc_pages(o, MIGRATE_MOVABLE, nullptr);
        EXPECT_NE(pg, nullptr);
        if (!pg)
            return nullptr;
        prep_compound_page(pg, n, PG_large);
        pg->nr_pages = n;
        memset(page_address(pg), 0x6b, PAGE_SIZE * n);
        if (i % 2)
            holes.push_back(pg);
        else
            held[page_to_pfn(pg)] = pg;
    }
    for (page *pg : holes)
        free_pages(pg, o);
    zone_reclaim_all(0);   // every free block is reported now, the holes too
    page *freed = nullptr;
    for (auto &[pfn, pg] : held) {
        unsigned long pair = pfn ^ (2 * n);
        if (pfn % (2 * n) == 0 && !held.count(pfn + n) && (held.count(pair) || held.count(pair + n))) {
            freed = pg;
            break;
        }
    }
    EXPECT_NE(freed, nullptr) << "no held block with a free buddy and a held neighbour pair";
    if (!freed)
        return nullptr;
    held.erase(page_to_pfn(freed));
    free_pages(freed, o);
    return freed;
}

static void free_held(std::map<unsigned long, page *> &held, unsigned o)
{
    for (auto &[pfn, h] : held)
        free_pages(h, o);
    held.clear();
}

TEST(Buddy, AResidentBlockIsTakenBeforeASmallerReportedOne)
{
    // Free memory that reclaim gave back (reported) faults in again when it
    // is used; a resident free block of a larger order costs nothing.  So
    // __rmqueue_smallest splits the smallest resident block that fits before
    // it takes a smaller reported one: taking the reported block first made
    // realloc-string refault while 2 MiB of resident free memory waited
    // (peak RSS 6.93 -> 6.63 MiB).  Order 4: no pageset in the way.
    constexpr unsigned o = PAGE_ALLOC_COSTLY_ORDER + 1;
    constexpr unsigned long n = 1ul << o;
    std::map<unsigned long, page *> held;   // pfn -> block
    page *freed = free_beside_a_reclaimed_hole(o, held);
    ASSERT_NE(freed, nullptr);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    bool zeroed = true;
    page *pg = alloc_pages(o, MIGRATE_MOVABLE, &zeroed);
    ASSERT_NE(pg, nullptr);
    EXPECT_FALSE(zeroed) << "a reported block was taken with a resident one free";
    EXPECT_EQ(pg, freed) << "not the resident block's half that was in use";
    prep_compound_page(pg, n, PG_large);
    pg->nr_pages = n;
    held[page_to_pfn(pg)] = pg;
    free_held(held, o);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Buddy, TakingABlockMergedWithAReclaimedBuddyIsARefault)
{
    // The merged block (a freed, resident half and a half reclaim gave back)
    // is resident with a count of n; taken whole, its given-back half faults
    // in: n pages of refault for the workingset (mm/vmscan.h).  Before, only
    // reported blocks counted, and such blocks' refaults went unseen.
    constexpr unsigned o = PAGE_ALLOC_COSTLY_ORDER + 1;
    constexpr unsigned long n = 1ul << o;
    std::map<unsigned long, page *> held;
    page *freed = free_beside_a_reclaimed_hole(o, held);
    ASSERT_NE(freed, nullptr);
    zone *z = page_zone(freed);
    spin_lock(&z->lock);
    unsigned long refault0 = z->nr_refault;
    spin_unlock(&z->lock);
    bool zeroed = true;
    page *pg = alloc_pages(o + 1, MIGRATE_MOVABLE, &zeroed);
    ASSERT_NE(pg, nullptr);
    EXPECT_FALSE(zeroed) << "the merged block, half resident, was not the one taken";
    EXPECT_EQ(page_to_pfn(pg), page_to_pfn(freed) & ~(2 * n - 1));
    spin_lock(&z->lock);
    unsigned long refaulted = z->nr_refault - refault0;
    spin_unlock(&z->lock);
    EXPECT_EQ(refaulted, n) << "the given-back half is a refault";
    prep_compound_page(pg, 2 * n, PG_large);
    pg->nr_pages = 2 * n;
    free_pages(pg, o + 1);
    free_held(held, o);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Buddy, ShrinkGivesTheFreeTopBackAndTheZoneRegrows)
{
    std::vector<page *> blocks;
    for (int i = 0; i < 48; i++) {
        page *pg = alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        prep_compound_page(pg, 1ul << MAX_ORDER, PG_large);
        pg->nr_pages = 1u << MAX_ORDER;
        blocks.push_back(pg);
    }
    zone *z = page_zone(blocks.back());
    unsigned long spanned = z->spanned_pages;
    for (page *pg : blocks)
        free_pages(pg, MAX_ORDER);
    blocks.clear();
    unsigned long released = zone_shrink_all();
    EXPECT_GT(released, 0u);
    EXPECT_LT(z->spanned_pages, spanned) << "the free top of the zone was not unmapped";
    EXPECT_EQ(z->spanned_pages % (1ul << MAX_ORDER), 0u);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    // The address range past the end is not ours any more...
    EXPECT_EQ(page_zone_of(z->zone_start + (z->spanned_pages << PAGE_SHIFT)), nullptr);
    // ...and the zone grows again over it (descriptors are kept, not remapped).
    for (int i = 0; i < 48; i++) {
        page *pg = alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        prep_compound_page(pg, 1ul << MAX_ORDER, PG_large);
        pg->nr_pages = 1u << MAX_ORDER;
        memset(page_address(pg), 0x3c, PAGE_SIZE << MAX_ORDER);
        blocks.push_back(pg);
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (page *pg : blocks)
        free_pages(pg, MAX_ORDER);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Buddy, GrowInPlaceTakesTheFollowingFreePages)
{
    bool zeroed;
    page *pg = alloc_pages_exact(10, MIGRATE_MOVABLE, &zeroed);
    ASSERT_NE(pg, nullptr);
    prep_compound_page(pg, 10, PG_large);
    pg->nr_pages = 10;
    unsigned long pfn = page_to_pfn(pg);
    // The 6 pages after a 10-page block of an order-4 block are free.
    ASSERT_TRUE(grow_pages_exact_inplace(pg, 10, 16));
    pg->nr_pages = 16;
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    memset(page_address(pg), 0x11, 16 * PAGE_SIZE);
    // Further growth either succeeds with all pages free, or changes nothing.
    unsigned long free_before = page_zone(pg)->nr_free_pages;
    if (grow_pages_exact_inplace(pg, 16, 300)) {
        pg->nr_pages = 300;
        EXPECT_EQ(page_zone(pg)->nr_free_pages, free_before - 284);
    } else {
        EXPECT_EQ(page_zone(pg)->nr_free_pages, free_before);
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    // A neighbour in use blocks growth, and nothing is taken.
    page *next = pfn_to_page(page_zone(pg), pfn + pg->nr_pages);
    page *blocker = nullptr;
    if (next->flags & PG_buddy) {
        // Allocate exactly the page after the block to block it.
        ASSERT_TRUE(grow_pages_exact_inplace(pg, pg->nr_pages, pg->nr_pages + 1));
        blocker = pfn_to_page(page_zone(pg), pfn + pg->nr_pages);
        prep_compound_page(blocker, 1, PG_large);
        blocker->nr_pages = 1;
        unsigned long free_now = page_zone(pg)->nr_free_pages;
        EXPECT_FALSE(grow_pages_exact_inplace(pg, pg->nr_pages, pg->nr_pages + 2));
        EXPECT_EQ(page_zone(pg)->nr_free_pages, free_now);
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    free_pages_exact(pg, pg->nr_pages);
    if (blocker)
        free_pages_exact(blocker, 1);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// Two order-9 blocks of MIGRATE_MOVABLE pageblocks (runs are looked for on
// that type's lists; in a fresh process the first pageblock may hold
// metadata) with their middles freed after everything else free was given
// back: 300 pages (100..400) of one, 400 (50..450) of the other, each split
// into aligned blocks that cannot merge into an order-9 block.  Watermark
// reclaim leaves the runs resident while the set-up lives (in a fresh
// process the zone is small: its usual level is half of a few hundred
// pages in use); given_back() gives them back too.  The destructor frees
// everything.
struct two_holes {
    static constexpr unsigned o = 9;
    static constexpr unsigned long n = 1ul << o;
    std::vector<page *> others;   // order-9 blocks not in movable pageblocks
    page *a = nullptr, *b = nullptr;
    bool holes = false;           // a and b have their middles freed
    zone *z = nullptr;
    long saved_free_high = options[OPT_FREE_HIGH].value;

    void set_free_high(long v)
    {
        options[OPT_FREE_HIGH].value = v;
        spin_lock(&z->lock);
        __setup_zone_wmarks(z);
        spin_unlock(&z->lock);
    }
    static void keep(page *pg, unsigned long nr)
    {
        prep_compound_page(pg, nr, PG_large);
        pg->nr_pages = (uint32_t)nr;
    }
    // Call with ASSERT_NO_FATAL_FAILURE.
    void set_up()
    {
        while (!b && others.size() < 16) {
            page *pg = alloc_pages(o, MIGRATE_MOVABLE, nullptr);
            ASSERT_NE(pg, nullptr);
            keep(pg, n);
            memset(page_address(pg), 0x5e, n * PAGE_SIZE);
            if (get_pageblock_migratetype(page_zone(pg), page_to_pfn(pg)) != MIGRATE_MOVABLE)
                others.push_back(pg);
            else if (!a)
                a = pg;
            else
                b = pg;
        }
        ASSERT_NE(b, nullptr) << "no two order-9 blocks in movable pageblocks";
        ASSERT_EQ(page_zone(a), page_zone(b));
        z = page_zone(a);
        set_free_high(64l << 20);
        zone_reclaim_all(0);   // every other free block is given back (reported)
        // Each block keeps its head and its tail as two large blocks.
        free_pages_exact(a + 100, 300);
        keep(a, 100);
        keep(a + 400, n - 400);
        free_pages_exact(b + 50, 400);
        keep(b, 50);
        keep(b + 450, n - 450);
        holes = true;
        drain_all_pages();     // the runs went to the pagesets: into the zone, as aligned blocks
        ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    }
    void given_back()
    {
        zone_reclaim_all(0);
        ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    }
    // alloc_pages_exact(nr) must take the run at `at` (a hole, 10 pages
    // longer), across buddy boundaries: reported as zeroed or not, as
    // `zeroed` says, its pages reading `fill`, the run's last 10 pages left
    // free, the zone not grown.  The block is freed again (everything
    // merges back: verified by the destructor).  Call with
    // ASSERT_NO_FATAL_FAILURE.
    void expect_run_fit(unsigned long nr, page *at, bool zeroed, uint8_t fill)
    {
        spin_lock(&z->lock);
        unsigned long free0 = z->nr_free_pages, spanned0 = z->spanned_pages;
        unsigned long fits0 = pa_stats.run_fit;
        spin_unlock(&z->lock);
        bool got_zeroed = !zeroed;
        page *r = alloc_pages_exact(nr, MIGRATE_MOVABLE, &got_zeroed);
        ASSERT_NE(r, nullptr);
        EXPECT_EQ(r, at) << "not the best-fitting run";
        EXPECT_EQ(got_zeroed, zeroed) << (zeroed ? "every page of the run was given back: it reads zero"
                                                 : "a block that was given back was taken while a "
                                                   "resident run fit");
        EXPECT_EQ(pa_stats.run_fit, fits0 + 1);
        EXPECT_EQ(z->nr_free_pages, free0 - nr) << "the run's last 10 pages must stay free";
        EXPECT_EQ(z->spanned_pages, spanned0);
        keep(r, nr);
        const uint8_t *p = (const uint8_t *)page_address(r);
        for (size_t off = 0; off < nr * PAGE_SIZE; off += 1009)
            ASSERT_EQ(p[off], fill) << "the run's pages are the ones written (or given back) before";
        ASSERT_NO_FATAL_FAILURE(verify_all_zones());
        free_pages_exact(r, nr);
    }
    ~two_holes()
    {
        if (holes) {
            free_pages_exact(a, 100);
            free_pages_exact(a + 400, n - 400);
            free_pages_exact(b, 50);
            free_pages_exact(b + 450, n - 450);
        } else {
            if (a)
                free_pages(a, o);
            if (b)
                free_pages(b, o);
        }
        for (page *pg : others)
            free_pages(pg, o);
        drain_all_pages();
        if (z)
            set_free_high(saved_free_high);
        verify_all_zones();
    }
};

// A large block takes a resident run of free blocks that are not buddies
// (page_alloc.cc, "Runs across buddy boundaries") before it faults in a
// block reclaim gave back: the best-fitting run, from its lowest address.
// A 290-page request must get the 300-page hole (resident, not zeroed); the
// library before runs split a reported order-9 block (zeroed, elsewhere).
TEST(Buddy, ALargeBlockTakesTheBestResidentRunAcrossBuddyBoundaries)
{
    two_holes h;
    ASSERT_NO_FATAL_FAILURE(h.set_up());
    // The run's pages are the ones the program wrote and nobody else's.
    ASSERT_NO_FATAL_FAILURE(h.expect_run_fit(290, h.a + 100, false, 0x5e));
}

// With nothing resident, a large block still takes the best-fitting run
// (page_alloc.cc, "Runs across buddy boundaries": the second pass, over
// any free memory), not an aligned buddy block: placed so, blocks of
// random sizes leave the zone's free memory in runs the next large block
// fits into, where aligned blocks made random-sizes' zone span twice the
// pages in use.  Both holes given back, a 390-page request must get the
// 400-page hole (zeroed: every page of it was given back) rather than
// split a free order-9 block; the previous library took the order-9 block.
TEST(Buddy, ALargeBlockTakesTheBestFittingRunOfGivenBackMemory)
{
    two_holes h;
    ASSERT_NO_FATAL_FAILURE(h.set_up());
    ASSERT_NO_FATAL_FAILURE(h.given_back());
    ASSERT_NO_FATAL_FAILURE(h.expect_run_fit(390, h.b + 50, true, 0));
}

// Large blocks of random sizes taken and freed, with everything free given
// back now and then (so blocks that were given back sit beside freed
// resident ones, and runs across buddy boundaries are taken): no two live
// blocks overlap (reference model), every page keeps what was written to
// it, memory reported as zero reads zero, and the zone invariants hold
// throughout.
TEST(Buddy, RunsAcrossBuddyBoundariesAgainstReferenceModel)
{
    std::mt19937_64 rng(4242);
    struct large {
        page *pg;
        unsigned long nr;
        uint8_t fill;
    };
    std::vector<large> live;
    model m;
    const unsigned long fits0 = pa_stats.run_fit;
    auto check_and_free = [&](size_t i) {
        large b = live[i];
        live[i] = live.back();
        live.pop_back();
        uint8_t *addr = (uint8_t *)page_address(b.pg);
        for (unsigned long p = 0; p < b.nr; p++)
            ASSERT_EQ(addr[p * PAGE_SIZE + (p & 511) * 8], (uint8_t)(b.fill + p))
                << "page " << p << " of a live block was overwritten";
        m.remove(addr);
        free_pages_exact(b.pg, b.nr);
    };
    for (int step = 0; step < 8000; step++) {
        if ((live.empty() || rng() % 100 < 52) && live.size() < 300) {
            large b{};
            b.nr = 9 + rng() % 504;
            bool zeroed = false;
            b.pg = alloc_pages_exact(b.nr, MIGRATE_MOVABLE, &zeroed);
            ASSERT_NE(b.pg, nullptr);
            prep_compound_page(b.pg, b.nr, PG_large);
            b.pg->nr_pages = (uint32_t)b.nr;
            uint8_t *addr = (uint8_t *)page_address(b.pg);
            ASSERT_NO_FATAL_FAILURE(m.add(addr, b.nr));
            b.fill = (uint8_t)rng();
            for (unsigned long p = 0; p < b.nr; p++) {
                uint8_t *q = addr + p * PAGE_SIZE + (p & 511) * 8;
                if (zeroed)
                    ASSERT_EQ(*q, 0) << "a block reported as zero is not";
                *q = (uint8_t)(b.fill + p);
            }
            live.push_back(b);
        } else if (!live.empty()) {
            ASSERT_NO_FATAL_FAILURE(check_and_free(rng() % live.size()));
        }
        if (step % 64 == 63)
            drain_all_pages();     // the pagesets' runs into the zone, where runs are looked for
        if (step % 1000 == 999) {
            zone_reclaim_all(0);   // every free block given back
            ASSERT_NO_FATAL_FAILURE(verify_all_zones());
        }
    }
    EXPECT_GT(pa_stats.run_fit - fits0, 20u) << "the sequence hardly took runs: it tests little";
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    while (!live.empty())
        ASSERT_NO_FATAL_FAILURE(check_and_free(live.size() - 1));
    drain_all_pages();
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// A zone whose growth the kernel refuses (RLIMIT_AS) grows in smaller steps
// (__zone_grow halves the step, down to the block asked for), so its top
// stops being a MAX_ORDER boundary: blocks of every order and type taken and
// freed across such tops must keep the buddy invariants (__zone_verify: no
// free block past the top, buddies merged below it, counts).  In a forked
// child, which the limit binds.
TEST(Buddy, GrowthUnderALimitKeepsTheInvariantsAcrossUnalignedTops)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        zone *z = zone_create(1ul << MAX_ORDER);
        if (!z)
            _exit(10);
        FILE *f = fopen("/proc/self/status", "r");
        unsigned long vm_kb = 0;
        char line[256];
        while (f && fgets(line, sizeof line, f))
            sscanf(line, "VmSize: %lu kB", &vm_kb);
        if (f)
            fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (vm_kb << 10) + (12ul << 20);
        if (!vm_kb || setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(11);
        std::mt19937_64 rng(77);
        struct held { unsigned long pfn; unsigned order; };
        std::vector<held> live;
        live.reserve(4096);
        unsigned long unaligned_tops = 0, grows = 0;
        for (int step = 0; step < 4000; step++) {
            spin_lock(&z->lock);
            if (live.empty() || rng() % 100 < 70) {
                unsigned r = rng() % 100;
                unsigned order = r < 60 ? rng() % 3 : r < 90 ? 3 + rng() % 4 : 7 + rng() % 4;
                migratetype mt = (migratetype)(rng() % MIGRATE_TYPES);
                page *pg = __rmqueue(z, order, mt, nullptr);
                if (!pg && __zone_grow(z, 1ul << order)) {
                    grows++;
                    unaligned_tops += (z->spanned_pages & ((1ul << MAX_ORDER) - 1)) != 0;
                    pg = __rmqueue(z, order, mt, nullptr);
                }
                if (pg) {
                    prep_compound_page(pg, 1ul << order, PG_large);
                    pg->nr_pages = 1u << order;
                    pg->migratetype = mt;
                    live.push_back({page_to_pfn(pg), order});
                }
            } else {
                size_t i = rng() % live.size();
                held b = live[i];
                live[i] = live.back();
                live.pop_back();
                __free_one_page(z, b.pfn, b.order, false);
            }
            const char *why = step % 200 == 0 ? __zone_verify(z) : nullptr;
            spin_unlock(&z->lock);
            if (why) {
                fprintf(stderr, "step %d: %s\n", step, why);
                _exit(12);
            }
        }
        spin_lock(&z->lock);
        for (auto &b : live)
            __free_one_page(z, b.pfn, b.order, false);
        const char *why = __zone_verify(z);
        bool all_back = z->nr_free_pages == z->spanned_pages;
        unsigned long spanned = z->spanned_pages;
        spin_unlock(&z->lock);
        fprintf(stderr, "grows %lu, %lu of them to a top that is no MAX_ORDER boundary; spanned %lu\n",
                grows, unaligned_tops, spanned);
        if (why) {
            fprintf(stderr, "at the end: %s\n", why);
            _exit(13);
        }
        _exit(!all_back ? 14 : unaligned_tops == 0 ? 15 : 0);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st)) << "child killed by signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    EXPECT_EQ(WEXITSTATUS(st), 0) << "10: no zone, 11: no limit, 12/13: invariant broken, "
                                      "14: pages lost, 15: no unaligned top reached";
}
