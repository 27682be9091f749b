// Slab accounting: objects handed out and taken back in bulk keep every
// slab's books balanced (inuse + free + never carved == objects), never
// overlap, and empty slabs go back to the buddy allocator.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "mm/page_alloc.h"
#include "mm/slab.h"
#include "slab_check.h"

using namespace kalloc;


TEST(Slab, BulkAllocFreeKeepsBooksBalanced)
{
    std::mt19937 rng(7);
    for (unsigned idx : {1u, 4u, 12u, 13u, 28u, 44u, 52u, 68u}) {
        kmem_cache *c = &kmalloc_caches[idx];
        std::vector<void *> objs;
        std::set<uintptr_t> seen;
        unsigned long base_active;
        spin_lock(&c->lock);
        base_active = c->active_objects;
        spin_unlock(&c->lock);
        for (int round = 0; round < 40; round++) {
            unsigned want = 1 + rng() % 64;
            unsigned got = 0;
            void *chain = kmem_cache_alloc_bulk(c, want, &got, 0);
            ASSERT_EQ(got, want);
            for (void *o = chain; o;) {
                void *next = *(void **)o;
                uintptr_t a = (uintptr_t)o;
                ASSERT_EQ(a % 16, 0u);
                ASSERT_TRUE(seen.insert(a).second) << "object handed out twice";
                memset(o, 0xa5, c->size);       // the whole object is ours
                objs.push_back(o);
                o = next;
            }
            // Free a random part, one by one and in a chain.
            std::shuffle(objs.begin(), objs.end(), rng);
            unsigned nfree = (unsigned)(rng() % (objs.size() + 1));
            for (unsigned i = 0; i < nfree; i++) {
                void *o = objs.back();
                objs.pop_back();
                seen.erase((uintptr_t)o);
                kmem_cache_free(c, o);
            }
            check_cache(c);
        }
        // Free the rest as one chain.
        if (!objs.empty()) {
            for (size_t i = 0; i + 1 < objs.size(); i++)
                *(void **)objs[i] = objs[i + 1];
            kmem_cache_free_bulk(c, objs[0], (unsigned)objs.size());
        }
        check_cache(c);
        spin_lock(&c->lock);
        EXPECT_EQ(c->active_objects, base_active);
        EXPECT_LE(c->nr_slabs, 1u) << "empty slabs beyond the spare were not given back";
        spin_unlock(&c->lock);
    }
}

TEST(Slab, SlabPagesAreTaggedWithTheirClass)
{
    kmem_cache *c = &kmalloc_caches[44];   // 4096-byte objects, multi-page slabs
    unsigned got;
    void *o = kmem_cache_alloc_bulk(c, 5, &got, 0);
    ASSERT_EQ(got, 5u);
    for (void *p = o; p; p = *(void **)p) {
        zone *z = page_zone_of((uintptr_t)p);
        ASSERT_NE(z, nullptr);
        page *pg = virt_to_page(z, (uintptr_t)p);
        EXPECT_EQ(zone_slab_class_map(z)[page_to_pfn(pg)], 44);
        EXPECT_TRUE(pg->flags & PG_slab);
        EXPECT_EQ(compound_head(pg)->slab_cache, c);
    }
    kmem_cache_free_bulk(c, o, got);
    check_cache(c);
}

// kmem_cache_free_bulk finds an object's slab with a mask (virt_to_block_head):
// every slab must be a naturally aligned buddy block, also after large
// allocations of odd page counts have split blocks around it.
TEST(Slab, SlabsAreAlignedToTheirSize)
{
    std::vector<std::pair<page *, unsigned>> odd;
    for (unsigned n = 9; n < 40; n += 3) {
        bool zeroed;
        page *pg = alloc_pages_exact(n, MIGRATE_RECLAIMABLE, &zeroed);
        ASSERT_NE(pg, nullptr);
        odd.push_back({pg, n});
    }
    for (unsigned idx = 1; idx < NR_KMALLOC_CLASSES; idx++) {
        kmem_cache *c = &kmalloc_caches[idx];
        unsigned got;
        void *o = kmem_cache_alloc_bulk(c, 3 * kmalloc_info[idx].objects, &got, 0);
        ASSERT_GT(got, 0u);
        const uintptr_t bytes = PAGE_SIZE << kmalloc_info[idx].order;
        for (void *p = o; p; p = *(void **)p) {
            zone *z = page_zone_of((uintptr_t)p);
            ASSERT_NE(z, nullptr);
            page *head = compound_head(virt_to_page(z, (uintptr_t)p));
            EXPECT_EQ((uintptr_t)page_address(head) & (bytes - 1), 0u) << "class " << idx;
            EXPECT_EQ(virt_to_block_head((uintptr_t)p, bytes), head) << "class " << idx;
        }
        kmem_cache_free_bulk(c, o, got);
        check_cache(c);
    }
    for (auto [pg, n] : odd)
        free_pages_exact(pg, n);
}

TEST(Slab, ShrinkGivesSparesBack)
{
    kmem_cache *c = &kmalloc_caches[20];
    unsigned got;
    void *o = kmem_cache_alloc_bulk(c, 3, &got, 0);
    kmem_cache_free_bulk(c, o, got);
    kmem_cache_shrink_all();
    spin_lock(&c->lock);
    EXPECT_EQ(c->empty_slab, nullptr);
    spin_unlock(&c->lock);
    check_cache(c);
}

TEST(Slab, BarnParksWholeSheavesForTheirOwner)
{
    // A sheaf of owner 7's objects is parked whole and handed back whole, only
    // to owner 7 and only when it fits; parked objects stay counted as in use
    // from the slabs' side, count as free for the double-free check, and
    // shrink_all sends them back to their slabs with the books balanced.
    kmem_cache *c = &kmalloc_caches[6];   // 96-byte objects
    kmem_cache_shrink_all();
    unsigned got = 0;
    void *chain = kmem_cache_alloc_bulk(c, 20, &got, 7);
    ASSERT_EQ(got, 20u);
    std::vector<void *> objs;
    for (void *p = chain; p; p = *(void **)p)
        objs.push_back(p);
    ASSERT_EQ(objs.size(), 20u);
    spin_lock(&c->lock);
    unsigned long active = c->active_objects;
    spin_unlock(&c->lock);

    kmem_cache_barn_put(c, chain, 20, 7);
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_barn, 1u);
    EXPECT_EQ(c->barn_objects, 20u);
    EXPECT_EQ(c->active_objects, active);
    spin_unlock(&c->lock);
    check_cache(c);
    zone *z = page_zone_of((uintptr_t)objs[3]);
    page *head = compound_head(virt_to_page(z, (uintptr_t)objs[3]));
    EXPECT_TRUE(kmem_cache_obj_is_free(c, head, objs[3])) << "a parked object must count as free";

    EXPECT_EQ(kmem_cache_barn_take(c, 8, 64, &got), nullptr) << "another owner took the sheaf";
    EXPECT_EQ(kmem_cache_barn_take(c, 7, 19, &got), nullptr) << "a sheaf larger than the room was taken";
    got = 0;
    void *back = kmem_cache_barn_take(c, 7, 20, &got);
    ASSERT_EQ(back, chain);
    EXPECT_EQ(got, 20u);
    unsigned n = 0;
    for (void *p = back; p; p = *(void **)p)
        n++;
    EXPECT_EQ(n, 20u);
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_barn, 0u);
    EXPECT_EQ(c->barn_objects, 0u);
    spin_unlock(&c->lock);

    kmem_cache_barn_put(c, back, 20, 7);
    kmem_cache_shrink_all();
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_barn, 0u);
    EXPECT_EQ(c->active_objects, active - 20);
    spin_unlock(&c->lock);
    check_cache(c);
    EXPECT_TRUE(kmem_cache_obj_is_free(c, head, objs[3]));
}
