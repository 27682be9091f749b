// Huge allocations: placement, alignment, lookup, in-place and moving resize.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "mm/vmalloc.h"
#include "mm/vmscan.h"

using namespace kalloc;

TEST(Vmalloc, AreasAreChunkAlignedAndFoundByStartOnly)
{
    void *p = vmalloc(5 << 20, 4096);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ((uintptr_t)p % VMAP_CHUNK_SIZE, 0u);
    EXPECT_EQ(vmalloc_size(p), 5ul << 20);
    EXPECT_EQ(vmalloc_size((char *)p + 4096), 0u);
    EXPECT_TRUE(is_vmalloc_addr((char *)p + 12345));
    memset(p, 1, 5 << 20);
    vfree(p);
    EXPECT_EQ(vmalloc_size(p), 0u);
}

// A freed area is kept for reuse only once the program has been seen to
// reuse one: the first free of a 16 MiB scratch buffer unmaps it (leaving a
// shadow); mapping 16 MiB again is a refault of that shadow, and from then
// on the buffer stays mapped between its frees and allocations.
TEST(Vmalloc, FreedAreasAreReusedFromTheCache)
{
    vmalloc_drain_cache();
    bool zeroed = false;
    char *p0 = (char *)vmalloc(16 << 20, 4096, &zeroed);
    ASSERT_NE(p0, nullptr);
    EXPECT_TRUE(zeroed) << "a fresh mapping reads as zero";
    vfree(p0);
    EXPECT_EQ(vmalloc_get_stats().cached_bytes, 0u) << "kept before any reuse was seen";
    char *p = (char *)vmalloc(16 << 20, 4096, &zeroed);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(zeroed);
    EXPECT_GE(vmalloc_get_stats().workingset_bytes, 16ul << 20) << "the shadow's refault was not seen";
    memset(p, 0xab, 16 << 20);
    vfree(p);
    EXPECT_EQ(vmalloc_size(p), 0u) << "a cached area is not live (a second free must be caught)";
    EXPECT_EQ(vmalloc_get_stats().cached_bytes, 16ul << 20);
    // Same size, and a smaller one within 2x: both reuse it, no new mapping.
    char *q = (char *)vmalloc(16 << 20, 4096, &zeroed);
    EXPECT_EQ(q, p);
    EXPECT_FALSE(zeroed) << "a reused area is dirty";
    EXPECT_EQ((unsigned char)q[12345], 0xab);
    vfree(q);
    char *r = (char *)vmalloc(10 << 20, 4096, &zeroed);
    EXPECT_EQ(r, p);
    EXPECT_EQ(vmalloc_size(r), 10ul << 20) << "shrunk in place to what was asked";
    vfree(r);
    // Much smaller requests do not take a big cached area.
    char *s = (char *)vmalloc(9 << 19, 4096, &zeroed);   /* 4.5 MiB: 10 MiB is more than twice */
    EXPECT_NE(s, p);
    vfree(s);
    EXPECT_GT(vmalloc_drain_cache(), 0u);
    EXPECT_EQ(vmalloc_get_stats().cached_bytes, 0u);
}

// A growing array (each copy twice the last, the old one freed): no later
// request fits an old copy, so none is kept resident while the program
// grows.  Before, the cache kept them (up to 64 MiB): frag-churn's peak RSS
// 159-165 MiB against 152 without them.
TEST(Vmalloc, AGrowingArraysOldCopiesAreNotKept)
{
    vmalloc_drain_cache();
    void *old = nullptr;
    for (size_t sz = 5ul << 20; sz <= 80ul << 20; sz *= 2) {
        void *p = vmalloc(sz, 4096);
        ASSERT_NE(p, nullptr);
        ((char *)p)[sz - 1] = 1;
        if (old)
            vfree(old);
        old = p;
        EXPECT_EQ(vmalloc_get_stats().cached_bytes, 0u) << sz;
    }
    vfree(old);
    vmalloc_drain_cache();
}

// Rounds of huge blocks, 144 MiB a round, all freed at each round's end
// (mimalloc-bench's mstress): the first round's frees unmap everything
// (no reuse seen yet); the second round maps it afresh, each mapping a
// refault of a shadow, so its frees keep the whole round, and the later
// rounds map nothing.  Live areas and the cache never pass the recent peak
// of live bytes by more than VCACHE_OVER_PEAK, and areas idle for a decay
// period are unmapped.
TEST(Vmalloc, RoundsOfHugeBlocksAreKeptUnderTheirPeak)
{
    vmalloc_drain_cache();
    constexpr int N = 24;
    constexpr size_t sz = 6ul << 20;       // 144 MiB a round
    static_assert(N <= VCACHE_SLOTS && N <= VSHADOW_SLOTS);
    void *p[N];
    unsigned long hits[4];
    for (int round = 0; round < 4; round++) {
        unsigned long h0 = vmalloc_get_stats().nr_cache_hits;
        for (int i = 0; i < N; i++) {
            p[i] = vmalloc(sz, 4096);
            ASSERT_NE(p[i], nullptr);
            ((char *)p[i])[0] = (char)i;
            vmalloc_stats s = vmalloc_get_stats();
            EXPECT_LE(s.bytes + s.cached_bytes, s.peak_bytes + VCACHE_OVER_PEAK) << round << " " << i;
        }
        hits[round] = vmalloc_get_stats().nr_cache_hits - h0;
        for (int i = 0; i < N; i++)
            vfree(p[i]);
        vmalloc_stats s = vmalloc_get_stats();
        EXPECT_LE(s.cached_bytes, s.peak_bytes + VCACHE_OVER_PEAK) << round;
        if (round == 0)
            EXPECT_EQ(s.cached_bytes, 0u) << "kept before any reuse was seen";
    }
    EXPECT_EQ(hits[0], 0u) << "drained: the first round maps everything";
    EXPECT_EQ(hits[1], 0u) << "before any reuse nothing is kept";
    EXPECT_EQ(hits[2], (unsigned long)N) << "the third round maps nothing";
    EXPECT_EQ(hits[3], (unsigned long)N);
    EXPECT_EQ(vmalloc_get_stats().cached_bytes, N * sz);
    // Idle for a decay period: given back.
    EXPECT_EQ(vmalloc_decay(vmscan_now() + 2000, 1000), N * sz);
    EXPECT_EQ(vmalloc_get_stats().cached_bytes, 0u);
    vmalloc_drain_cache();
}

// A growing table rebuilt in rounds (PHP's 400K-entry array: its hash copied
// into 5, 10 and 20 MiB blocks, each old copy freed once the new one is
// filled, the last freed at the round's end), with a timed pass in every
// round.  From the third round on every request is a cache hit.  Until
// session 48 each pass took an eighth off the workingset even while the
// rounds reused it, so the cache's bound fell just under a round's three
// areas and the oldest (5 MiB) went at the round's last free; the next
// round's 5 MiB request then took the 10 MiB area (shrinking it), the 10 MiB
// request the 20 MiB one, and the 20 MiB request was mapped afresh: one hit
// short in every round.
TEST(Vmalloc, RoundsOfAGrowingTableKeepTheirAreasAcrossTimedPasses)
{
    vmalloc_drain_cache();
    constexpr size_t MiB = 1ul << 20;
    unsigned long hits[6];
    for (int round = 0; round < 6; round++) {
        unsigned long h0 = vmalloc_get_stats().nr_cache_hits;
        void *a = vmalloc(5 * MiB, 4096);
        ASSERT_NE(a, nullptr);
        void *b = vmalloc(10 * MiB, 4096);
        ASSERT_NE(b, nullptr);
        vfree(a);
        void *c = vmalloc(20 * MiB, 4096);
        ASSERT_NE(c, nullptr);
        vfree(b);
        // A timed pass while the table is in use (areas idle under a
        // decay period stay).
        vmalloc_decay(vmscan_now(), 1000);
        vfree(c);
        hits[round] = vmalloc_get_stats().nr_cache_hits - h0;
    }
    for (int round = 2; round < 6; round++)
        EXPECT_EQ(hits[round], 3u) << "round " << round;
    // An idle program's workingset still fades: passes with no reuse.
    size_t ws = vmalloc_get_stats().workingset_bytes;
    vmalloc_decay(vmscan_now(), 1000);
    vmalloc_decay(vmscan_now(), 1000);
    EXPECT_LT(vmalloc_get_stats().workingset_bytes, ws);
    vmalloc_drain_cache();
}

TEST(Vmalloc, LargeAlignments)
{
    // Up to and beyond the 4 GiB region alignment (the address, not just the
    // chunk index, must be aligned).
    for (size_t align : {1ul << 22, 1ul << 26, 1ul << 30, 1ul << 33, 1ul << 36, 1ul << 40}) {
        void *p = vmalloc(1 << 20, align);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ((uintptr_t)p % align, 0u) << align;
        memset(p, 2, 1 << 20);
        vfree(p);
    }
}

TEST(Vmalloc, ReallocKeepsContentsGrowingAndShrinking)
{
    size_t n = 6 << 20;
    unsigned char *p = (unsigned char *)vmalloc(n, 4096);
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < n; i += 4096)
        p[i] = (unsigned char)(i >> 12);
    // Block the in-place path with a neighbour, so one of the grows moves.
    void *blocker = vmalloc(3 << 20, 4096);
    ASSERT_NE(blocker, nullptr);
    for (size_t target : {9ul << 20, 40ul << 20, 7ul << 20, 100ul << 20}) {
        unsigned char *q = (unsigned char *)vrealloc(p, target);
        ASSERT_NE(q, nullptr);
        for (size_t i = 0; i < std::min(n, target); i += 4096)
            ASSERT_EQ(q[i], (unsigned char)(i >> 12)) << "offset " << i;
        for (size_t i = n; i < target; i += 4096)
            q[i] = (unsigned char)(i >> 12);
        n = target;
        p = q;
        EXPECT_EQ(vmalloc_size(p), n);
    }
    vfree(p);
    vfree(blocker);
}

// A size the kernel will never map (64 TiB) fails in one mmap: no region is
// reserved for it (it once reserved 64 TiB of zone slots and scanned a
// 128 MiB chunk table on every attempt).
TEST(Vmalloc, ImpossibleSizeReservesNothing)
{
    void *small = vmalloc(4 << 20, 4096);
    ASSERT_NE(small, nullptr);
    vmalloc_stats before = vmalloc_get_stats();
    for (int i = 0; i < 3; i++) {
        errno = 0;
        EXPECT_EQ(vmalloc(size_t(1) << 46, 4096), nullptr);
        EXPECT_EQ(errno, ENOMEM);
    }
    vmalloc_stats after = vmalloc_get_stats();
    EXPECT_EQ(after.nr_regions, before.nr_regions);
    EXPECT_EQ(after.region_bytes, before.region_bytes);
    vfree(small);
}
