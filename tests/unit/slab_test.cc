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
                void *next = get_freepointer(o);
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
                set_freepointer(objs[i], objs[i + 1]);
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
    for (void *p = o; p; p = get_freepointer(p)) {
        zone *z = page_zone_of((uintptr_t)p);
        ASSERT_NE(z, nullptr);
        page *pg = virt_to_page(z, (uintptr_t)p);
        EXPECT_EQ(zone_slab_class_map(z)[page_to_pfn(pg)], 44);
        EXPECT_TRUE(pg->flags & PG_slab);
        EXPECT_EQ(page_slab_cache(compound_head(pg)), c);
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
    for (unsigned idx = 1; idx < NR_KMALLOC_STATIC; idx++) {
        kmem_cache *c = &kmalloc_caches[idx];
        unsigned got;
        void *o = kmem_cache_alloc_bulk(c, 3 * kmalloc_info[idx].objects, &got, 0);
        ASSERT_GT(got, 0u);
        const uintptr_t bytes = PAGE_SIZE << kmalloc_info[idx].order;
        for (void *p = o; p; p = get_freepointer(p)) {
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

// Full slabs are on no list, as in SLUB: linking them cost a full->partial
// move two random descriptor writes (the neighbours' links) and the
// partial->full one a third.  They are counted (nr_full), found again by a
// free of one of their objects, and by a walk of the zones (full_slabs).
TEST(Slab, FullSlabsAreOnNoListUntilAFree)
{
    kmem_cache *c = &kmalloc_caches[8];
    spin_lock(&c->lock);
    const unsigned long full0 = c->nr_full;
    spin_unlock(&c->lock);
    const unsigned per = kmalloc_info[8].objects;
    std::vector<void *> objs;
    for (unsigned round = 0; round < 3; round++) {
        unsigned got;
        void *chain = kmem_cache_alloc_bulk(c, per, &got, 0, per);
        ASSERT_EQ(got, per);
        for (void *o = chain; o; o = get_freepointer(o))
            objs.push_back(o);
    }
    std::set<page *> slabs;
    for (void *o : objs)
        slabs.insert(compound_head(virt_to_page(page_zone_of((uintptr_t)o), (uintptr_t)o)));
    unsigned full_here = 0;
    for (page *pg : slabs)
        if (pg->slab_list == SLAB_FULL) {
            full_here++;
            EXPECT_EQ(pg->inuse, pg->objects);
            EXPECT_EQ(pg->lru.next, nullptr) << "a full slab linked on a list";
        }
    EXPECT_GE(full_here, 2u) << "3 slabs' worth of objects filled fewer than 2 slabs";
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_full, full0 + full_here);
    std::vector<page *> walked = full_slabs(c);
    spin_unlock(&c->lock);
    EXPECT_EQ(walked.size(), full0 + full_here);
    for (page *pg : slabs)
        if (pg->slab_list == SLAB_FULL)
            EXPECT_NE(std::find(walked.begin(), walked.end(), pg), walked.end());
    check_cache(c);
    // A free into a full slab puts it on a partial list.
    void *o = nullptr;
    page *pg = nullptr;
    for (void *x : objs) {
        page *h = compound_head(virt_to_page(page_zone_of((uintptr_t)x), (uintptr_t)x));
        if (h->slab_list == SLAB_FULL) {
            o = x;
            pg = h;
            break;
        }
    }
    ASSERT_NE(o, nullptr);
    objs.erase(std::find(objs.begin(), objs.end(), o));
    kmem_cache_free(c, o);
    EXPECT_EQ(pg->slab_list, SLAB_PARTIAL);
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_full, full0 + full_here - 1);
    spin_unlock(&c->lock);
    check_cache(c);
    for (size_t i = 0; i + 1 < objs.size(); i++)
        set_freepointer(objs[i], objs[i + 1]);
    kmem_cache_free_bulk(c, objs[0], (unsigned)objs.size());
    check_cache(c);
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
    for (void *p = chain; p; p = get_freepointer(p))
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
    got = 0;
    void *back = kmem_cache_barn_take(c, 7, 20, &got);
    ASSERT_EQ(back, chain);
    EXPECT_EQ(got, 20u);
    unsigned n = 0;
    for (void *p = back; p; p = get_freepointer(p))
        n++;
    EXPECT_EQ(n, 20u);
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_barn, 0u);
    EXPECT_EQ(c->barn_objects, 0u);
    spin_unlock(&c->lock);

    kmem_cache_barn_put(c, back, 20, 7);
    // A room smaller than the sheaf takes the sheaf's first objects; the rest
    // stays parked for the next refill (it used to wait for a timed pass).
    got = 0;
    void *part = kmem_cache_barn_take(c, 7, 6, &got);
    ASSERT_EQ(part, chain);
    EXPECT_EQ(got, 6u);
    n = 0;
    for (void *p = part; p; p = get_freepointer(p), n++)
        EXPECT_EQ(p, objs[n]) << "the sheaf's head, in order";
    EXPECT_EQ(n, 6u);
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_barn, 1u);
    EXPECT_EQ(c->barn_objects, 14u);
    spin_unlock(&c->lock);
    EXPECT_TRUE(kmem_cache_obj_is_free(c, head, objs[6])) << "the rest is still parked";
    EXPECT_FALSE(kmem_cache_obj_is_free(c, head, objs[5])) << "a taken object is not";
    got = 0;
    void *rest = kmem_cache_barn_take(c, 7, 64, &got);
    ASSERT_EQ(rest, objs[6]);
    EXPECT_EQ(got, 14u);
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_barn, 0u);
    EXPECT_EQ(c->barn_objects, 0u);
    spin_unlock(&c->lock);
    void *last = rest;
    while (get_freepointer(last))
        last = get_freepointer(last);
    set_freepointer(last, part);      // one chain of all 20 again: the 14, then the 6
    kmem_cache_barn_put(c, rest, 20, 7);
    kmem_cache_shrink_all();
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_barn, 0u);
    EXPECT_EQ(c->active_objects, active - 20);
    spin_unlock(&c->lock);
    check_cache(c);
    EXPECT_TRUE(kmem_cache_obj_is_free(c, head, objs[3]));
}

namespace {

// The objects of a chain, checked: null-terminated, no repeats, all in c.
std::vector<void *> chain_objects(kmem_cache *c, void *chain)
{
    std::vector<void *> v;
    std::set<void *> seen;
    for (void *o = chain; o; o = get_freepointer(o)) {
        zone *z = page_zone_of((uintptr_t)o);
        EXPECT_NE(z, nullptr);
        if (!z)
            break;
        EXPECT_EQ(page_slab_cache(compound_head(virt_to_page(z, (uintptr_t)o))), c);
        EXPECT_TRUE(seen.insert(o).second) << "an object twice in a chain";
        v.push_back(o);
        if (v.size() > 100000)
            break;
    }
    return v;
}

page *slab_of(void *o)
{
    return compound_head(virt_to_page(page_zone_of((uintptr_t)o), (uintptr_t)o));
}

void free_chain(kmem_cache *c, std::vector<void *> &objs)
{
    if (objs.empty())
        return;
    for (size_t i = 0; i + 1 < objs.size(); i++)
        set_freepointer(objs[i], objs[i + 1]);
    kmem_cache_free_bulk(c, objs[0], (unsigned)objs.size());
    objs.clear();
}

} // namespace

TEST(Slab, WholeFreelistsAreSplicedUpToMax)
{
    // Two full slabs of owner 0 get every other object back (freelists of
    // objects/2 each, in a scattered order).  A refill with room for a
    // freelist takes it whole (beyond `want`), a chain with every object
    // once and a null end; with want beyond the first slab, both freelists
    // come whole, spliced; one with less room pops only `want`.
    kmem_cache *c = &kmalloc_caches[30];
    kmem_cache_shrink_all();
    unsigned per = kmalloc_info[30].objects, got = 0;
    std::vector<void *> all = chain_objects(c, kmem_cache_alloc_bulk(c, 2 * per, &got, 0));
    ASSERT_EQ(got, 2 * per);
    ASSERT_EQ(all.size(), 2u * per);
    std::vector<void *> keep, back;
    for (size_t i = 0; i < all.size(); i++)
        (i % 2 ? back : keep).push_back(all[i]);
    std::shuffle(back.begin(), back.end(), std::mt19937(3));
    unsigned nback = (unsigned)back.size();
    free_chain(c, back);
    check_cache(c);

    // Room for everything: one freelist whole, although want is 1.
    void *chain = kmem_cache_alloc_bulk(c, 1, &got, 0, 2 * per);
    std::vector<void *> taken = chain_objects(c, chain);
    EXPECT_EQ(got, nback / 2);
    EXPECT_EQ(taken.size(), (size_t)got);
    check_cache(c);
    free_chain(c, taken);
    check_cache(c);

    // want beyond one freelist: both whole, the second spliced before the first.
    chain = kmem_cache_alloc_bulk(c, nback / 2 + 1, &got, 0, 2 * per);
    taken = chain_objects(c, chain);
    EXPECT_EQ(got, nback);
    EXPECT_EQ(taken.size(), (size_t)got);
    check_cache(c);
    free_chain(c, taken);
    check_cache(c);

    // Room for less than one freelist: exactly want, popped one by one.
    chain = kmem_cache_alloc_bulk(c, 3, &got, 0, per / 2 - 1);
    taken = chain_objects(c, chain);
    EXPECT_EQ(got, 3u);
    EXPECT_EQ(taken.size(), 3u);
    check_cache(c);
    free_chain(c, taken);
    free_chain(c, keep);
    check_cache(c);
    spin_lock(&c->lock);
    EXPECT_EQ(c->active_objects, 0u);
    spin_unlock(&c->lock);
}

TEST(Slab, TakesOverAnotherOwnersColdPartialSlab)
{
    // Owner 5 has two partial slabs, one free object each.  A refill by
    // owner 6 (no slabs of its own, none unowned, no spare) takes over the
    // one of owner 5's slabs with the fewest objects in use instead of
    // allocating a new slab (get_any_partial); the slab becomes owner 6's.
    // Owner 5 keeps its last partial slab: owner 7 gets a new slab.
    kmem_cache *c = &kmalloc_caches[31];
    kmem_cache_shrink_all();
    for (unsigned o : {5u, 6u, 7u})
        slab_owner_set_live(o, true);
    unsigned per = kmalloc_info[31].objects, got = 0;
    ASSERT_GE(per, 4u);
    std::vector<void *> a = chain_objects(c, kmem_cache_alloc_bulk(c, per, &got, 5));
    std::vector<void *> b = chain_objects(c, kmem_cache_alloc_bulk(c, per, &got, 5));
    ASSERT_EQ(a.size(), (size_t)per);
    ASSERT_EQ(b.size(), (size_t)per);
    page *sa = slab_of(a[0]), *sb = slab_of(b[0]);
    ASSERT_NE(sa, sb);
    // Slab a: two objects free, slab b: one (a has fewer in use).
    std::vector<void *> back{a[per - 1], a[per - 2], b[per - 1]};
    a.resize(per - 2);
    b.resize(per - 1);
    free_chain(c, back);
    check_cache(c);
    spin_lock(&c->lock);
    const unsigned long owner5 = c->nr_owner_partial[5];
    const bool unowned_empty = list_empty(&c->partial[0]);
    const page *spare = c->empty_slab;
    unsigned long slabs = c->nr_slabs;
    spin_unlock(&c->lock);
    ASSERT_EQ(owner5, 2u);      // not under the lock: a failed ASSERT returns
    ASSERT_TRUE(unowned_empty);
    ASSERT_EQ(spare, nullptr);

    std::vector<void *> six = chain_objects(c, kmem_cache_alloc_bulk(c, 2, &got, 6));
    ASSERT_EQ(six.size(), 2u);
    EXPECT_EQ(slab_of(six[0]), sa) << "did not take over owner 5's emptier slab";
    EXPECT_EQ(slab_of(six[1]), sa);
    EXPECT_EQ(zone_slab_owner_map(page_zone(sa))[page_to_pfn(sa)], 6) << "the slab taken over kept its owner";
    check_cache(c);
    spin_lock(&c->lock);
    EXPECT_EQ(c->nr_slabs, slabs) << "a new slab while another owner's held free objects";
    EXPECT_EQ(c->nr_owner_partial[5], 1u);
    spin_unlock(&c->lock);

    // Owner 5's last partial slab stays its own.
    std::vector<void *> seven = chain_objects(c, kmem_cache_alloc_bulk(c, 1, &got, 7));
    ASSERT_EQ(seven.size(), 1u);
    EXPECT_NE(slab_of(seven[0]), sb) << "took an owner's last partial slab";
    EXPECT_EQ(zone_slab_owner_map(page_zone(sb))[page_to_pfn(sb)], 5);
    page *s7 = slab_of(seven[0]);
    EXPECT_EQ(zone_slab_owner_map(page_zone(s7))[page_to_pfn(s7)], 7);
    check_cache(c);

    // No exchange: owner 6 took slab a from owner 5, so owner 5 does not
    // take back one of owner 6's nearly full slabs (a new slab instead).
    // Owner 6 gets two partial slabs with one free object each: a, and a
    // new one c2 after a's last free object.
    std::vector<void *> one{six.back()};
    six.pop_back();
    free_chain(c, one);
    std::vector<void *> more = chain_objects(c, kmem_cache_alloc_bulk(c, per, &got, 6));
    ASSERT_EQ(more.size(), (size_t)per);
    page *c2 = slab_of(more.back());      // the chain's back: taken last (slabs in order)
    ASSERT_NE(c2, sa);
    one.assign(1, more.back());
    more.pop_back();
    free_chain(c, one);
    one.assign(1, a.back());
    a.pop_back();
    free_chain(c, one);
    check_cache(c);
    spin_lock(&c->lock);
    const unsigned long owner6 = c->nr_owner_partial[6];
    const page *spare6 = c->empty_slab;
    spin_unlock(&c->lock);
    ASSERT_EQ(owner6, 2u);
    ASSERT_EQ(spare6, nullptr);
    // Owner 5 uses up its own partial slab b, then refills again.
    std::vector<void *> five = chain_objects(c, kmem_cache_alloc_bulk(c, 1, &got, 5));
    ASSERT_EQ(five.size(), 1u);
    ASSERT_EQ(slab_of(five[0]), sb);
    std::vector<void *> five2 = chain_objects(c, kmem_cache_alloc_bulk(c, 1, &got, 5));
    ASSERT_EQ(five2.size(), 1u);
    page *s5 = slab_of(five2[0]);
    EXPECT_NE(s5, sa) << "owner 5 took back a nearly full slab from the owner that took one of its";
    EXPECT_NE(s5, c2) << "owner 5 took back a nearly full slab from the owner that took one of its";
    check_cache(c);
    free_chain(c, five);
    free_chain(c, five2);
    free_chain(c, more);

    free_chain(c, seven);
    free_chain(c, six);
    free_chain(c, a);
    free_chain(c, b);
    for (unsigned o : {5u, 6u, 7u})
        slab_owner_set_live(o, false);
    check_cache(c);
    spin_lock(&c->lock);
    EXPECT_EQ(c->active_objects, 0u);
    spin_unlock(&c->lock);
}

TEST(Slab, OwnerRowsOfUnusedIdsStayUntouched)
{
    // The per-owner partial lists live in a row per owner id
    // (kmem_cache_node_row): a cache used by owner 3 sets up its lists in
    // rows 0 and 3 only, so a program touches memory for the owner ids it
    // has, not for all 256 (which cost 4.6 KiB per class when they were
    // inside struct kmem_cache: 340 KiB resident in a program using every
    // class); and the rows of ids never used are not even writable (they
    // count neither against RLIMIT_DATA nor as locked memory).
    const unsigned idx = 57;
    kmem_cache *c = &kmalloc_caches[idx];
    slab_owner_set_live(3, true);
    unsigned per = kmalloc_info[idx].objects, got = 0;
    std::vector<void *> a = chain_objects(c, kmem_cache_alloc_bulk(c, per + 1, &got, 3));
    ASSERT_EQ(a.size(), (size_t)per + 1);
    std::vector<void *> one{a.front()};  // the first slab's (slabs come in order)
    a.erase(a.begin());
    free_chain(c, one);                 // a partial slab (or two) of owner 3
    spin_lock(&c->lock);
    EXPECT_GE(c->nr_owner_partial[3], 1u);
    EXPECT_FALSE(list_empty(&c->partial[3]));
    for (unsigned o : {4u, 17u, 255u})
        if (o >= SLAB_OWNER_POOL || kmem_cache_node_row_rw[o]) {
            EXPECT_EQ(kmem_cache_node_row(o)[idx].partial.next, nullptr) << "row " << o;
            EXPECT_EQ(kmem_cache_node_row(o)[idx].nr_partial, 0u);
        }
    EXPECT_TRUE(kmem_cache_node_row_rw[3]);
    EXPECT_FALSE(kmem_cache_node_row_rw[200]) << "no test uses owner id 200";
    EXPECT_FALSE(kmem_cache_node_row_rw[201]);
    spin_unlock(&c->lock);
    EXPECT_LE(sizeof(kmem_cache), 1024u);
    free_chain(c, a);
    slab_owner_set_live(3, false);
    check_cache(c);
}

// kmem_cache_free_bulk counts the bytes it frees in their zone's freed_pages
// (khugepaged_split_underused's bound), once per zone met, rounded up to a
// page: also when every object of the chain lands in another slab (each its
// own run, as in a random free order).
TEST(Slab, BulkFreeCountsFreedBytesInTheZone)
{
    const unsigned idx = 12;
    kmem_cache *c = &kmalloc_caches[idx];
    const unsigned per = kmalloc_info[idx].objects;
    const uintptr_t bytes = PAGE_SIZE << kmalloc_info[idx].order;
    unsigned got;
    std::vector<void *> all = chain_objects(c, kmem_cache_alloc_bulk(c, 3 * per, &got, 0));
    ASSERT_EQ(got, 3 * per);
    // By slab; the first object of each stays allocated (no slab empties).
    std::vector<std::vector<void *>> by_slab;
    std::vector<uintptr_t> bases;
    for (void *o : all) {
        uintptr_t b = (uintptr_t)o & ~(bytes - 1);
        size_t k = std::find(bases.begin(), bases.end(), b) - bases.begin();
        if (k == bases.size()) {
            bases.push_back(b);
            by_slab.emplace_back();
        }
        by_slab[k].push_back(o);
    }
    ASSERT_GE(by_slab.size(), 2u);
    std::vector<void *> chain, kept;
    for (auto &v : by_slab)
        kept.push_back(v[0]);
    for (size_t i = 1;; i++) {           // interleaved: slab 0, 1, 2, 0, 1, 2...
        bool any = false;
        for (auto &v : by_slab)
            if (i < v.size()) {
                chain.push_back(v[i]);
                any = true;
            }
        if (!any)
            break;
    }
    zone *z = page_zone_of((uintptr_t)chain[0]);
    ASSERT_NE(z, nullptr);
    for (void *o : chain)
        ASSERT_EQ(page_zone_of((uintptr_t)o), z);
    for (size_t i = 0; i + 1 < chain.size(); i++)
        set_freepointer(chain[i], chain[i + 1]);
    unsigned long before = __atomic_load_n(&z->freed_pages, __ATOMIC_RELAXED);
    kmem_cache_free_bulk(c, chain[0], (unsigned)chain.size());
    unsigned long after = __atomic_load_n(&z->freed_pages, __ATOMIC_RELAXED);
    EXPECT_EQ(after - before, (chain.size() * c->size + PAGE_SIZE - 1) / PAGE_SIZE);
    check_cache(c);
    for (size_t i = 0; i + 1 < kept.size(); i++)
        set_freepointer(kept[i], kept[i + 1]);
    kmem_cache_free_bulk(c, kept[0], (unsigned)kept.size());
    check_cache(c);
}

// A free object's link that points outside its slab (a program wrote into
// the object after freeing it) is reported when the slab layer would follow
// it, in either build: the slab's freelist pops and the hole scan check that
// each link is one of the slab's objects (slab_freelist_next).
TEST(SlabDeath, ALinkOutsideItsSlabIsReportedNotFollowed)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            kmem_cache *c = &kmalloc_caches[4];   // 64 B objects, 64 in an order-0 slab
            unsigned got = 0;
            std::vector<void *> v;
            for (void *o = kmem_cache_alloc_bulk(c, 40, &got, 0); o; o = get_freepointer(o))
                v.push_back(o);
            for (unsigned i = 0; i < 30; i++)
                kmem_cache_free(c, v[i]);       // v[29] heads the slab's freelist
            alignas(64) static char outside[64];
            set_freepointer(v[29], outside);    // aligned, but not the slab's
            kmem_cache_alloc_bulk(c, 5, &got, 0, 5);   // pops one by one
        },
        "corrupted free list");
    // Inside the slab but not at an object's start (16-byte aligned, so only
    // the multiple-of-size test sees it).
    EXPECT_DEATH(
        {
            kmem_cache *c = &kmalloc_caches[4];
            unsigned got = 0;
            std::vector<void *> v;
            for (void *o = kmem_cache_alloc_bulk(c, 40, &got, 0); o; o = get_freepointer(o))
                v.push_back(o);
            for (unsigned i = 0; i < 30; i++)
                kmem_cache_free(c, v[i]);
            set_freepointer(v[29], (char *)v[35] + 16);
            kmem_cache_alloc_bulk(c, 5, &got, 0, 5);
        },
        "corrupted free list");
}
