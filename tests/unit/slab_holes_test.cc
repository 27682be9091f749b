// Slab holes (mm/slub.cc): pages of a slab in use whose objects are all free
// are given back (madvise) and their objects parked; the live objects keep
// their contents, the parked ones come back when the slab needs them, and a
// slab with holes that empties goes back to the buddy allocator correctly.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/slab.h"
#include "platform/os.h"
#include "slab_check.h"

using namespace kalloc;

namespace {

bool resident(const void *addr)
{
    unsigned char v = 0;
    void *pg = (void *)((uintptr_t)addr & ~(uintptr_t)(PAGE_SIZE - 1));
    EXPECT_EQ(mincore(pg, PAGE_SIZE, &v), 0);
    return v & 1;
}

page *head_of(void *obj)
{
    zone *z = page_zone_of((uintptr_t)obj);
    return compound_head(virt_to_page(z, (uintptr_t)obj));
}

void fill(void *obj, size_t n, unsigned seed)
{
    unsigned char *b = (unsigned char *)obj;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed * 31 + i * 7 + 1);
}

bool check(const void *obj, size_t n, unsigned seed)
{
    const unsigned char *b = (const unsigned char *)obj;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed * 31 + i * 7 + 1))
            return false;
    return true;
}

// The fixed class whose objects are exactly `size` bytes (0 if none).
unsigned fixed_class_of_size(size_t size)
{
    for (unsigned i = 1; i < NR_KMALLOC_STATIC; i++)
        if (kmalloc_info[i].size == size)
            return i;
    return 0;
}

// Allocate `nslabs` whole new slabs of cache c: returns their objects by slab
// (index order).  Objects from slabs the cache had before are given back.
std::map<page *, std::vector<void *>> whole_slabs(kmem_cache *c, unsigned nslabs)
{
    std::vector<void *> all;
    const kmalloc_class &k = kmalloc_info[c - kmalloc_caches];
    unsigned want = (nslabs + 1) * k.objects;
    unsigned got = 0;
    void *chain = kmem_cache_alloc_bulk(c, want, &got, 0);
    EXPECT_EQ(got, want);
    for (void *o = chain; o; o = get_freepointer(o))
        all.push_back(o);
    std::map<page *, std::vector<void *>> by;
    for (void *o : all)
        by[head_of(o)].push_back(o);
    std::map<page *, std::vector<void *>> out;
    for (auto &[pg, v] : by) {
        if (v.size() == k.objects && out.size() < nslabs) {
            std::sort(v.begin(), v.end());
            out[pg] = v;
        } else {
            for (void *o : v)
                kmem_cache_free(c, o);
        }
    }
    EXPECT_EQ(out.size(), nslabs);
    return out;
}

// One whole new slab of cache c (earlier tests' empty slabs given back
// first): returns it, its objects in `objs` (index order).
page *one_whole_slab(kmem_cache *c, std::vector<void *> &objs)
{
    kmem_cache_shrink_all();
    auto slabs = whole_slabs(c, 1);
    objs = slabs.begin()->second;
    return slabs.begin()->first;
}

// The pages of a slab that some object overlaps and whose overlapping
// objects are all outside `live` (the test's own model of what must become
// a hole).
uint32_t expected_holes(kmem_cache *c, const std::set<unsigned> &live)
{
    uint32_t m = 0;
    for (unsigned p = 0; p < (1u << c->order); p++) {
        bool free = true, any = false;   // (a page past the last object is left alone)
        for (unsigned i = 0; i < c->objects; i++) {
            size_t a = (size_t)i * c->size, b = a + c->size - 1;
            if ((a >> PAGE_SHIFT) <= p && p <= (b >> PAGE_SHIFT)) {
                any = true;
                if (live.count(i))
                    free = false;
            }
        }
        if (free && any)
            m |= 1u << p;
    }
    return m;
}

// Hole pages of every slab of every cache (the slab_holes.hole_pages gauge
// must say the same).
unsigned long total_hole_pages()
{
    unsigned long n = 0;
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        spin_lock(&c->lock);
        for (unsigned o = 0; o < NR_SLAB_OWNERS; o++)
            if (list_head *l = partial_list_if_set(c, o))
                for (list_head *e = l->next; e != l; e = e->next)
                    n += list_entry(e, page, lru)->nr_holes;
        if (kmem_cache_ready(c))
            for (page *pg : full_slabs(c))
                n += pg->nr_holes;
        if (c->empty_slab)
            n += c->empty_slab->nr_holes;
        spin_unlock(&c->lock);
    }
    return n;
}

} // namespace

// Live objects keep their contents through punching and refaulting; the
// pages that become holes are exactly those whose objects are all free
// (objects straddling pages included), are no longer resident, and the
// parked objects come back as usable objects distinct from the live ones.
TEST(SlabHoles, PatternsSurvivePunchAndRefault)
{
    // Classes with multi-page slabs of 3 objects or more (holes whatever
    // object is kept), spread over
    // the sizes: the first (objects straddle pages), the one with the
    // largest slab, and three between; the orders come from the class
    // table, which chooses them (slab_common.h).
    std::vector<unsigned> multi;
    unsigned largest = 0;
    for (unsigned i = 0; i < NR_KMALLOC_STATIC; i++)
        if (kmalloc_info[i].order >= 1 && kmalloc_info[i].order <= 5 && kmalloc_info[i].objects >= 3) {
            multi.push_back(i);
            if (kmalloc_info[i].order > kmalloc_info[largest].order)
                largest = i;
        }
    ASSERT_GE(multi.size(), 5u);
    std::set<unsigned> picked = {multi.front(), largest, multi[multi.size() / 4],
                                 multi[multi.size() / 2], multi.back()};
    for (unsigned idx : picked) {
        SCOPED_TRACE(idx);
        kmem_cache *c = &kmalloc_caches[idx];
        ASSERT_GE(kmalloc_info[idx].order, 1u);
        kmem_cache_shrink_all();
        auto slabs = whole_slabs(c, 3);
        // Live: object 0 of every slab, and the last one of the second
        // (when the slab has more than 2 pages).
        std::map<void *, unsigned> live;
        std::vector<void *> to_free;
        std::map<page *, std::set<unsigned>> live_idx;
        unsigned k = 0;
        for (auto &[pg, objs] : slabs) {
            for (unsigned i = 0; i < objs.size(); i++) {
                bool keep = i == 0 || (k == 1 && i + 1 == objs.size() && c->order >= 2);
                fill(objs[i], c->size, (unsigned)(uintptr_t)objs[i]);
                if (keep) {
                    live[objs[i]] = (unsigned)(uintptr_t)objs[i];
                    live_idx[pg].insert(i);
                } else {
                    to_free.push_back(objs[i]);
                }
            }
            k++;
        }
        unsigned long punched_before = slab_holes.punched;
        for (void *o : to_free)
            kmem_cache_free(c, o);
        spin_lock(&c->lock);
        for (auto &[pg, objs] : slabs)
            __slab_punch_holes(c, pg);      // whatever the frees did not punch already
        spin_unlock(&c->lock);
        slab_holes_flush();                 // the holes' batch goes back (mm/slub.cc)
        check_cache(c);
        for (auto &[pg, objs] : slabs) {
            uint32_t want = expected_holes(c, live_idx[pg]);
            ASSERT_NE(want, 0u);
            ASSERT_EQ(pg->nr_holes, (unsigned)__builtin_popcount(want));
            EXPECT_EQ(pg[1].slab_hole_mask, want);
            for (unsigned p = 0; p < (1u << c->order); p++) {
                const char *a = (const char *)page_address(pg) + ((size_t)p << PAGE_SHIFT);
                if (want & (1u << p))
                    EXPECT_FALSE(resident(a)) << "hole page " << p << " still resident";
            }
            // A parked object is free for the double-free check; a live one is not.
            for (unsigned i = 0; i < objs.size(); i++) {
                bool is_live = live_idx[pg].count(i);
                EXPECT_EQ(kmem_cache_obj_is_free(c, pg, objs[i]), !is_live) << "object " << i;
            }
        }
        EXPECT_GT(slab_holes.punched, punched_before);
        EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
        for (auto &[o, seed] : live)
            ASSERT_TRUE(check(o, c->size, seed)) << "live object changed by punching";

        // Refault: allocate until the three slabs are full again.
        unsigned long refaulted_before = slab_holes.refaulted;
        std::set<void *> fresh;
        std::vector<void *> others;
        size_t need = to_free.size();
        for (int guard = 0; fresh.size() < need && guard < 10000; guard++) {
            void *o = kmem_cache_alloc(c);
            ASSERT_NE(o, nullptr);
            if (slabs.count(head_of(o))) {
                ASSERT_FALSE(live.count(o)) << "a live object handed out again";
                ASSERT_TRUE(fresh.insert(o).second) << "an object handed out twice";
                fill(o, c->size, 99);
            } else {
                others.push_back(o);
            }
        }
        ASSERT_EQ(fresh.size(), need);
        EXPECT_GT(slab_holes.refaulted, refaulted_before);
        EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
        for (auto &[pg, objs] : slabs) {
            EXPECT_EQ(pg->nr_holes, 0u);
            EXPECT_EQ(pg->inuse, c->objects);
        }
        for (auto &[o, seed] : live)
            ASSERT_TRUE(check(o, c->size, seed)) << "live object changed by the refault";
        for (void *o : fresh)
            ASSERT_TRUE(check(o, c->size, 99)) << "new objects overlap";
        check_cache(c);
        for (void *o : fresh)
            kmem_cache_free(c, o);
        for (void *o : others)
            kmem_cache_free(c, o);
        for (auto &[o, seed] : live)
            kmem_cache_free(c, o);
        kmem_cache_shrink_all();
        check_cache(c);
    }
}

// A slab with holes whose last object comes back is empty like any other,
// and goes back to the buddy allocator: mostly holes, given back whole
// (not resident); otherwise resident.  The zone's books stay right.
TEST(SlabHoles, EmptySlabWithHolesIsFreed)
{
    for (unsigned idx : {52u, 33u}) {
        SCOPED_TRACE(idx);
        kmem_cache *c = &kmalloc_caches[idx];
        std::vector<void *> objs;
        page *pg = one_whole_slab(c, objs);
        // 8192 B: keep object 0 (pages 0-1), 6 of 8 pages become holes;
        // 1664 B: keep objects 0-9 (pages 0-4), 3 of 8 pages become holes.
        std::vector<void *> keep;
        std::set<unsigned> live;
        for (unsigned i = 0; i < objs.size(); i++) {
            if (idx == 52 ? i == 0 : i < 10) {
                keep.push_back(objs[i]);
                live.insert(i);
            } else {
                kmem_cache_free(c, objs[i]);
            }
        }
        spin_lock(&c->lock);
        __slab_punch_holes(c, pg);
        unsigned holes = pg->nr_holes;
        spin_unlock(&c->lock);
        slab_holes_flush();     // given back (queued ones: QueuedHolesLeaveTheBatch...)
        ASSERT_EQ(holes, (unsigned)__builtin_popcount(expected_holes(c, live)));
        ASSERT_GT(holes, 0u);
        EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
        zone *z = page_zone(pg);
        unsigned long pfn = page_to_pfn(pg);
        char *base = (char *)page_address(pg);
        for (void *o : keep)
            kmem_cache_free(c, o);
        kmem_cache_shrink_all();    // the spare, if it became one, goes back too
        check_cache(c);
        EXPECT_FALSE(pfn_to_page(z, pfn)->flags & PG_slab) << "the empty slab was not freed";
        EXPECT_EQ(zone_slab_class_map(z)[pfn], 0);
        EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
        if (2 * holes >= (1u << c->order))
            for (unsigned p = 0; p < (1u << c->order); p++)
                EXPECT_FALSE(resident(base + ((size_t)p << PAGE_SHIFT))) << "page " << p;
        drain_all_pages();
        spin_lock(&z->lock);
        const char *err = __zone_verify(z);
        spin_unlock(&z->lock);
        EXPECT_EQ(err, nullptr) << err;
        // The memory is usable again, as a slab or anything else.
        auto again = whole_slabs(c, 2);
        for (auto &[p2, v] : again)
            for (void *o : v) {
                fill(o, c->size, 5);
                ASSERT_TRUE(check(o, c->size, 5));
            }
        for (auto &[p2, v] : again)
            for (void *o : v)
                kmem_cache_free(c, o);
        kmem_cache_shrink_all();
    }
}

// Frees alone give pages back when a class is being freed (no refill in
// between): a slab that keeps one object loses its other pages without any
// explicit call.
TEST(SlabHoles, FreesOfADrainingClassPunch)
{
    const unsigned idx = fixed_class_of_size(8192);
    ASSERT_EQ(kmalloc_info[idx].size, 8192u);
    ASSERT_GE(kmalloc_info[idx].order, 2u) << "8 KiB objects, at least 2 per slab";
    kmem_cache *c = &kmalloc_caches[idx];
    // Keeping object 0, the hole pages of one slab: all but object 0's two.
    const unsigned holes_per_slab = (1u << kmalloc_info[idx].order) - 2;
    kmem_cache_shrink_all();
    // malloc_trim's pass: forgets a deferral left by an earlier test's
    // refaults in this class (when all tests run in one process).
    kmem_cache_punch_holes_all(false);
    auto slabs = whole_slabs(c, 48);
    unsigned long before = slab_holes.punched;
    std::vector<void *> keep;
    for (auto &[pg, objs] : slabs)
        for (unsigned i = 0; i < objs.size(); i++) {
            if (i == 0)
                keep.push_back(objs[i]);
            else
                kmem_cache_free(c, objs[i]);
        }
    // The frees of the first slabs come before the class counts as being
    // freed (cache_freeing: 16 frees with no refill, one per slab here):
    // allow 20 slabs for that.
    EXPECT_GE(slab_holes.punched - before, (48u - 20) * holes_per_slab)
        << "frees of a draining class gave back little";
    check_cache(c);
    for (void *o : keep)
        kmem_cache_free(c, o);
    kmem_cache_shrink_all();
    check_cache(c);
}

// The timed pass punches only classes that got frees and no refill since the
// previous pass (their free objects have been idle a tick period); the frees
// themselves did not (too few to call the class "being freed").
// malloc_trim's pass punches whatever the state.
TEST(SlabHoles, TimedPassPunchesIdleClassesOnly)
{
    kmem_cache *c = &kmalloc_caches[57];   // 13312 B, 9 per 32-page slab; no other test uses it
    auto slabs = whole_slabs(c, 2);
    auto it = slabs.begin();
    page *a = it->first;
    auto &objs_a = it->second;
    ++it;
    page *b = it->first;
    auto &objs_b = it->second;
    kmem_cache_punch_holes_all(true);      // the previous pass
    for (unsigned i = 4; i < objs_a.size(); i++)
        kmem_cache_free(c, objs_a[i]);
    spin_lock(&c->lock);
    EXPECT_EQ(a->nr_holes, 0u) << "5 frees after a refill punched already";
    spin_unlock(&c->lock);
    // A refill between the passes: not idle, nothing punched.
    void *o = kmem_cache_alloc(c);
    kmem_cache_free(c, o);
    kmem_cache_punch_holes_all(true);
    EXPECT_EQ(a->nr_holes, 0u) << "a class that refilled since the last pass was punched";
    // Frees, no refill, next pass: punched.
    o = kmem_cache_alloc(c);
    kmem_cache_punch_holes_all(true);
    kmem_cache_free(c, o);
    kmem_cache_punch_holes_all(true);
    std::set<unsigned> live_a{0, 1, 2, 3};
    EXPECT_EQ(a->nr_holes, (unsigned)__builtin_popcount(expected_holes(c, live_a)));
    EXPECT_GT(a->nr_holes, 0u);
    // Slab b, at most half free after these frees, is left to malloc_trim's pass.
    for (unsigned i = 6; i < objs_b.size(); i++)
        kmem_cache_free(c, objs_b[i]);
    kmem_cache_punch_holes_all(true);
    EXPECT_EQ(b->nr_holes, 0u) << "a slab more than half full was punched by the timed pass";
    kmem_cache_punch_holes_all(false);
    std::set<unsigned> live_b{0, 1, 2, 3, 4, 5};
    EXPECT_EQ(b->nr_holes, (unsigned)__builtin_popcount(expected_holes(c, live_b)));
    EXPECT_GT(b->nr_holes, 0u);
    EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
    check_cache(c);
    for (unsigned i = 0; i < 4; i++)
        kmem_cache_free(c, objs_a[i]);
    for (unsigned i = 0; i < 6; i++)
        kmem_cache_free(c, objs_b[i]);
    kmem_cache_shrink_all();
    check_cache(c);
    EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
}

// malloc_trim's pass skips a cache nothing was freed into since the last
// trim pass looked at all its slabs (nothing there became free); frees
// after that pass must not be skipped by the next one.
TEST(SlabHoles, TrimPassAfterFreesIsNotSkipped)
{
    // A multi-page class of 6-8 objects under half a page each (1152 B, 7
    // in 2 pages today): one free object frees no page, and whole_slabs'
    // own frees and the test's stay under SLAB_HOLES_FLUSH_STREAK, so the
    // frees below do not punch by themselves (the class is not being freed).
    unsigned idx = 0;
    for (unsigned i = 1; i < NR_KMALLOC_STATIC && !idx; i++)
        if (kmalloc_info[i].order >= 1 && kmalloc_info[i].objects >= 6 && kmalloc_info[i].objects <= 8 &&
            kmalloc_info[i].size <= PAGE_SIZE / 2)
            idx = i;
    ASSERT_NE(idx, 0u);
    SCOPED_TRACE(idx);
    kmem_cache *c = &kmalloc_caches[idx];
    std::vector<void *> objs;
    page *a = one_whole_slab(c, objs);
    kmem_cache_free(c, objs.back());        // partly used: the trim pass looks at it
    kmem_cache_punch_holes_all(false);     // a trim: one object free, no page
    EXPECT_EQ(a->nr_holes, 0u);
    EXPECT_EQ(c->trim_flushes, c->nr_flushes) << "the trim pass did not look at the slabs";
    kmem_cache_punch_holes_all(false);     // nothing freed since: skipped, nothing changes
    EXPECT_EQ(a->nr_holes, 0u);
    // A few frees right after the slab was handed out: the class is not
    // being freed, the frees punch nothing themselves.
    for (unsigned i = 3; i + 1 < objs.size(); i++)
        kmem_cache_free(c, objs[i]);
    spin_lock(&c->lock);
    EXPECT_EQ(a->nr_holes, 0u) << "the frees punched already: nothing left for the trim to show";
    spin_unlock(&c->lock);
    kmem_cache_punch_holes_all(false);     // the next trim: must look again
    std::set<unsigned> live{0, 1, 2};
    EXPECT_EQ(a->nr_holes, (unsigned)__builtin_popcount(expected_holes(c, live)));
    EXPECT_GT(a->nr_holes, 0u) << "the trim after the frees skipped the class";
    for (unsigned i = 0; i < 3; i++)
        EXPECT_TRUE(resident(objs[i]));
    EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
    check_cache(c);
    for (unsigned i = 0; i < 3; i++)
        kmem_cache_free(c, objs[i]);
    kmem_cache_shrink_all();
    check_cache(c);
}

// A class whose frees' holes are refaulted soon after (within
// KALLOC_DECAY_MS) is cycled through, not freed: its frees stop punching
// holes (each hole costs a madvise and a fault when it comes back), until a
// timed pass finds the class idle.  Short-lived threads that each free at
// exit what the next one allocates again punched 270K holes in 200 threads.
TEST(SlabHoles, HolesRefaultedSoonDeferTheFrees)
{
    const unsigned idx = fixed_class_of_size(8192);
    ASSERT_EQ(kmalloc_info[idx].size, 8192u);
    kmem_cache *c = &kmalloc_caches[idx];
    const unsigned per = kmalloc_info[idx].objects;
    kmem_cache_shrink_all();
    kmem_cache_punch_holes_all(false);     // forget earlier tests' state
    auto slabs = whole_slabs(c, 32);
    std::vector<void *> keep, freed;
    for (auto &[pg, objs] : slabs)
        for (unsigned i = 0; i < objs.size(); i++)
            (i == 0 ? keep : freed).push_back(objs[i]);
    // Round 1: the frees punch (the class is being freed).
    unsigned long punched0 = slab_holes.punched, deferred0 = slab_holes.deferred;
    for (void *o : freed)
        kmem_cache_free(c, o);
    ASSERT_GT(slab_holes.punched, punched0) << "the first round's frees punched nothing";
    EXPECT_EQ(c->holes_defer_ms, 0u);
    // The same objects are wanted again at once: the refill unparks them.
    unsigned got = 0;
    void *chain = kmem_cache_alloc_bulk(c, (unsigned)freed.size(), &got, 0);
    ASSERT_EQ(got, (unsigned)freed.size());
    EXPECT_EQ(slab_holes.deferred, deferred0 + 1) << "a refault within the decay time was not seen";
    EXPECT_NE(c->holes_defer_ms, 0u);
    EXPECT_EQ(c->holes_defer_shift, 1u);
    // Round 2: the same frees punch nothing, and the objects are intact.
    std::vector<void *> again;
    for (void *o = chain; o; o = get_freepointer(o))
        again.push_back(o);
    for (void *o : again)
        fill(o, c->size, 3);
    for (void *o : again)
        ASSERT_TRUE(check(o, c->size, 3));
    unsigned long punched1 = slab_holes.punched;
    for (void *o : again)
        kmem_cache_free(c, o);
    EXPECT_EQ(slab_holes.punched, punched1) << "a deferred class's frees punched holes";
    check_cache(c);
    // A timed pass that finds the class idle (no refill since the previous
    // pass) ends the deferral, and punches the idle free pages itself.
    kmem_cache_punch_holes_all(true);      // refilled since the previous pass: busy
    EXPECT_NE(c->holes_defer_ms, 0u) << "a pass after a refill ended the deferral";
    unsigned long punched2 = slab_holes.punched;
    kmem_cache_punch_holes_all(true);      // no refill since: idle
    EXPECT_EQ(c->holes_defer_ms, 0u);
    EXPECT_EQ(c->holes_defer_shift, 0u);
    EXPECT_GT(slab_holes.punched, punched2) << "the idle class's free pages stayed";
    EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
    for (void *o : keep)
        kmem_cache_free(c, o);
    kmem_cache_shrink_all();
    check_cache(c);
    EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
    (void)per;
}

// Hole pages are given back in batches (one system call for up to 32
// ranges): until the batch goes back they are queued, still resident.  A
// slab that needs its parked objects before that takes its ranges out of
// the batch, so the batch going back later cannot zero the objects it has
// handed out again since; and the same for a slab with queued holes that
// empties and goes back to the buddy allocator resident (its pages' next
// owner writes them).  Without the cancel both fail: the flush at the end
// zeroes what was written.
namespace {

// The batch is for anonymous zones: memory-file zones (KALLOC_MESH) give
// their holes back at once (MADV_REMOVE).
bool zones_batch_holes()
{
    kmem_cache *c = &kmalloc_caches[fixed_class_of_size(8192)];
    void *o = kmem_cache_alloc(c);
    bool anon = page_zone_of((uintptr_t)o)->backing_fd < 0;
    kmem_cache_free(c, o);
    return anon;
}

// Objects of one whole new 8 KiB slab, object 0 kept, the others freed, and
// the slab's holes punched into an empty batch (not given back).  Returns
// the slab; `objs` its objects, `want` its hole mask.
page *queued_holes(kmem_cache *c, std::vector<void *> &objs, uint32_t &want)
{
    kmem_cache_shrink_all();
    kmem_cache_punch_holes_all(false);      // forget earlier tests' state; empties the batch
    auto slabs = whole_slabs(c, 1);
    page *pg = slabs.begin()->first;
    objs = slabs.begin()->second;
    for (unsigned i = 0; i < objs.size(); i++)
        fill(objs[i], c->size, 11);         // every page resident
    for (unsigned i = 1; i < objs.size(); i++)
        kmem_cache_free(c, objs[i]);
    spin_lock(&c->lock);
    if (!pg->nr_holes)
        __slab_punch_holes(c, pg);
    want = pg[1].slab_hole_mask;
    spin_unlock(&c->lock);
    return pg;
}

} // namespace

TEST(SlabHoles, QueuedHolesLeaveTheBatchWhenTheSlabNeedsThem)
{
    if (!zones_batch_holes())
        GTEST_SKIP() << "memory-file zones (KALLOC_MESH) give holes back at once";
    const unsigned idx = fixed_class_of_size(8192);
    kmem_cache *c = &kmalloc_caches[idx];
    std::vector<void *> objs;
    uint32_t want = 0;
    page *pg = queued_holes(c, objs, want);
    ASSERT_NE(want, 0u);
    const char *base = (const char *)page_address(pg);
    unsigned queued = 0;
    for (unsigned p = 0; p < (1u << c->order); p++)
        if ((want & (1u << p)) && resident(base + ((size_t)p << PAGE_SHIFT)))
            queued++;
    ASSERT_EQ(queued, (unsigned)__builtin_popcount(want)) << "the holes went back before the batch";
    // The slab needs its objects again: they come out of the batch.
    unsigned long cancelled = slab_holes.cancelled;
    std::vector<void *> again;
    for (int guard = 0; again.size() < objs.size() - 1 && guard < 10000; guard++) {
        void *o = kmem_cache_alloc(c);
        ASSERT_NE(o, nullptr);
        if (head_of(o) == pg) {
            again.push_back(o);
            fill(o, c->size, 12);
        } else {
            kmem_cache_free(c, o);
        }
    }
    ASSERT_EQ(again.size(), objs.size() - 1);
    EXPECT_EQ(slab_holes.cancelled - cancelled, (unsigned long)queued);
    slab_holes_flush();
    ASSERT_TRUE(check(objs[0], c->size, 11)) << "the live object changed";
    for (void *o : again)
        ASSERT_TRUE(check(o, c->size, 12)) << "an object handed out again was zeroed by the batch";
    for (void *o : again)
        kmem_cache_free(c, o);
    kmem_cache_free(c, objs[0]);
    kmem_cache_shrink_all();
    check_cache(c);
    EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
}

TEST(SlabHoles, QueuedHolesLeaveTheBatchWhenTheSlabIsFreed)
{
    if (!zones_batch_holes())
        GTEST_SKIP() << "memory-file zones (KALLOC_MESH) give holes back at once";
    // 1664 B, objects 0-9 kept: 3 of 8 pages are holes; 8192 B, object 0
    // kept: 6 of 8 (EmptySlabWithHolesIsFreed).  Both empty slabs go back
    // resident: their holes were never given back.
    for (unsigned idx : {33u, 52u}) {
        SCOPED_TRACE(idx);
        const unsigned nkeep = idx == 33 ? 10 : 1;
        kmem_cache *c = &kmalloc_caches[idx];
        kmem_cache_shrink_all();
        kmem_cache_punch_holes_all(false);
        auto slabs = whole_slabs(c, 1);
        page *pg = slabs.begin()->first;
        auto objs = slabs.begin()->second;
        for (void *o : objs)
            fill(o, c->size, 11);
        for (unsigned i = nkeep; i < objs.size(); i++)
            kmem_cache_free(c, objs[i]);
        spin_lock(&c->lock);
        if (!pg->nr_holes)
            __slab_punch_holes(c, pg);
        unsigned holes = pg->nr_holes;
        spin_unlock(&c->lock);
        ASSERT_GT(holes, 0u);
        unsigned long cancelled = slab_holes.cancelled;
        zone *z = page_zone(pg);
        unsigned long pfn = page_to_pfn(pg);
        for (unsigned i = 0; i < nkeep; i++)
            kmem_cache_free(c, objs[i]);
        kmem_cache_shrink_all();
        ASSERT_FALSE(pfn_to_page(z, pfn)->flags & PG_slab) << "the empty slab was not freed";
        EXPECT_GE(slab_holes.cancelled - cancelled, (unsigned long)holes);   // (and other slabs')
        for (unsigned p = 0; p < (1u << c->order); p++)
            EXPECT_TRUE(resident((const char *)page_address(pg) + ((size_t)p << PAGE_SHIFT)))
                << "page " << p << ": a queued hole went back";
        // Its pages' next owner: take blocks of the slab's order from the page
        // allocator until one is those pages, write it, then let the batch go back.
        std::vector<page *> taken;
        page *mine = nullptr;
        for (int i = 0; i < 4096 && !mine; i++) {
            bool zeroed = false;
            page *p2 = alloc_pages(c->order, MIGRATE_RECLAIMABLE, &zeroed);
            ASSERT_NE(p2, nullptr);
            if (p2 == pg)
                mine = p2;
            else
                taken.push_back(p2);
        }
        ASSERT_NE(mine, nullptr) << "the freed slab's pages were not handed out again";
        const size_t bytes = PAGE_SIZE << c->order;
        fill(page_address(mine), bytes, 13);
        slab_holes_flush();
        EXPECT_TRUE(check(page_address(mine), bytes, 13)) << "the new owner's data was zeroed by the batch";
        free_pages(mine, c->order);
        for (page *p2 : taken)
            free_pages(p2, c->order);
        kmem_cache_shrink_all();
        check_cache(c);
        EXPECT_EQ(slab_holes.hole_pages, total_hole_pages());
    }
}

// The frees that fill the holes' batch give it back once they have let the
// cache lock go (its system call is not made with the lock held, which the
// class's other threads would wait on): no free returns with the batch
// full.  Without that it would sit full until the next hole is queued.
TEST(SlabHoles, AFullBatchGoesBackWhenTheFreesReturn)
{
    if (!zones_batch_holes())
        GTEST_SKIP() << "memory-file zones (KALLOC_MESH) give holes back at once";
    const unsigned idx = fixed_class_of_size(8192);
    kmem_cache *c = &kmalloc_caches[idx];
    kmem_cache_shrink_all();
    kmem_cache_punch_holes_all(false);      // forget earlier tests' state; empties the batch
    auto slabs = whole_slabs(c, 96);
    std::vector<void *> keep;
    unsigned long batched = slab_holes.batched, calls = slab_holes.madvise_calls;
    unsigned most = 0;
    for (auto &[pg, objs] : slabs)
        for (unsigned i = 0; i < objs.size(); i++) {
            fill(objs[i], c->size, 21);     // resident, so giving back is real work
            if (i == 0) {
                keep.push_back(objs[i]);
            } else {
                kmem_cache_free(c, objs[i]);
                unsigned q = slab_holes_queued();
                most = std::max(most, q);
                ASSERT_LT(q, 32u) << "a free returned with the holes' batch full";
            }
        }
    // 96 slabs of 4 objects in 8 pages, one kept in each: its last 6 pages
    // one range once the class counts as being freed; the batch filled.
    EXPECT_GT(most, 0u);
    if (os_decommit_batches() && !os_seccomp_filtered()) {   // one call per batch here
        EXPECT_GE(slab_holes.batched - batched, 32u) << "no batch went back";
        EXPECT_LT(slab_holes.madvise_calls - calls, slab_holes.batched - batched);
    }
    for (void *o : keep)
        ASSERT_TRUE(check(o, c->size, 21));
    for (void *o : keep)
        kmem_cache_free(c, o);
    kmem_cache_shrink_all();
    check_cache(c);
}
