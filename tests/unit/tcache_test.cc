// Thread caches: a cache is carved from its metadata block one at a time
// (the block's other pages stay untouched); a cache over its budget halves
// its largest bins first, and a bin that refills takes room from them.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "malloc/malloc.h"
#include "malloc/tcache.h"
#include "mm/mmzone.h"
#include "mm/page_alloc.h"
#include "mm/vmscan.h"
#include "platform/options.h"

using namespace kalloc;

namespace {

bool resident(const void *p)
{
    unsigned char v = 0;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(PAGE_SIZE - 1);
    return mincore((void *)a, PAGE_SIZE, &v) == 0 && (v & 1);
}

} // namespace

// The first cache of a fresh metadata block writes only the pages it
// covers: before, carving threaded all 14 caches of the 16 KiB block onto
// the free list, so the whole block was resident in a one-thread program.
TEST(Tcache, CachesAreCarvedOneAtATime)
{
    tcache *tc = tcache_get();
    ASSERT_NE(tc, nullptr);
    zone *z = page_zone_of((uintptr_t)tc);
    ASSERT_NE(z, nullptr);
    page *pg = compound_head(virt_to_page(z, (uintptr_t)tc));
    ASSERT_TRUE(pg->flags & PG_meta);
    char *block = (char *)page_address(pg);
    if (tc != (tcache *)block)
        GTEST_SKIP() << "this thread's cache is not its block's first";
    char *last = block + (PAGE_SIZE << 2) - PAGE_SIZE;   // the block's last page
    EXPECT_FALSE(resident(last)) << "the whole metadata block was written";
}

// The bins of the 1..32 KiB classes (all but the 16 KiB one) fill the
// thread's budget.
static void fill_budget_with_medium_bins(tcache *tc, unsigned spare)
{
    std::vector<void *> v;
    for (int i = 0; i < 60; i++)            // within the bin: no flush
        v.push_back(kmalloc(16));
    for (void *p : v)
        kfree(p);
    for (unsigned idx = kmalloc_index(1025); idx < NR_KMALLOC_STATIC; idx++) {
        if (idx == spare)
            continue;
        v.clear();
        for (int i = 0; i < 4; i++)
            v.push_back(kmalloc(kmalloc_size(idx)));
        for (void *p : v)
            kfree(p);
    }
    (void)tc;
}

// Bins hold up to KMALLOC_TCACHE_MAX_OBJECTS (256) objects of the small
// classes in a process with more than one thread cache, and at most
// TCACHE_SINGLE_MAX_OBJECTS (128) while it has one (malloc/tcache.h).  A
// thread cycling batches of 250 16-byte blocks beside another thread grows
// its bin past 128 (the previous classes stopped every bin at 128).
TEST(Tcache, BinsOfAThreadedProcessHoldABatchOf256)
{
    const unsigned tiny = kmalloc_index(16);
    ASSERT_EQ(kmalloc_info[tiny].tcache_max, KMALLOC_TCACHE_MAX_OBJECTS);
    auto cycle = [] {
        std::vector<void *> v;
        for (int round = 0; round < 20; round++) {
            for (int i = 0; i < 250; i++)
                v.push_back(kmalloc(16));
            for (void *p : v)
                kfree(p);
            v.clear();
        }
    };
    unsigned cap = 0;
    std::mutex m;
    std::condition_variable cv;
    bool done = false, started = false;
    std::thread other([&] {             // a second thread cache, alive meanwhile
        kfree(kmalloc(64));
        std::unique_lock<std::mutex> l(m);
        started = true;
        cv.notify_all();
        cv.wait(l, [&] { return done; });
    });
    {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return started; });
    }
    std::thread t([&] {
        tcache_get();
        unsigned long cached[NR_KMALLOC_CLASSES], caches = 0;
        tcache_count_cached(cached, &caches);
        ASSERT_GE(caches, 2u);
        cycle();
        cap = tcache_get()->bins[tiny].cap;
    });
    t.join();
    {
        std::lock_guard<std::mutex> l(m);
        done = true;
        cv.notify_all();
    }
    other.join();
    EXPECT_GT(cap, TCACHE_SINGLE_MAX_OBJECTS) << "a threaded process's bin stopped at 128";
    EXPECT_LE(cap, KMALLOC_TCACHE_MAX_OBJECTS);
}

// A cache over its budget halves its largest bins first.  Here the bins of
// the 1..32 KiB classes fill the thread's 512 KiB, then 32 more threads
// make caches of their own, so each thread's share of TCACHE_TOTAL_BYTES
// falls under what the bins hold, and the next slow path of the first
// thread enforces it.  The 16 B bin (2 KiB) keeps its room: halving every
// bin took it from 128 objects to 64, and a cache that went over its budget
// again and again (alloc-test) took it to 1..4, a flush every few frees.
TEST(Tcache, OverBudgetHalvesLargestBinsFirst)
{
    const unsigned tiny = kmalloc_index(16), spare = kmalloc_index(16384);
    unsigned tiny_before = 0, tiny_after = 0;
    size_t bytes_before = 0, bytes_after = 0;
    std::mutex m;
    std::condition_variable cv;
    bool filled = false, done = false;
    int ready = 0;
    std::thread t([&] {
        tcache *tc = tcache_get();
        fill_budget_with_medium_bins(tc, spare);
        tiny_before = tc->bins[tiny].cap;
        bytes_before = tc->cap_bytes;
        std::unique_lock<std::mutex> l(m);
        filled = true;
        cv.notify_all();
        cv.wait(l, [&] { return ready == 32; });
        l.unlock();
        kfree(kmalloc(48));                 // a refill: the budget is enforced
        tiny_after = tc->bins[tiny].cap;
        bytes_after = tc->cap_bytes;
    });
    std::vector<std::thread> others;
    {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return filled; });
    }
    for (int i = 0; i < 32; i++)
        others.emplace_back([&] {
            kfree(kmalloc(64));             // a cache of its own
            std::unique_lock<std::mutex> l(m);
            ready++;
            cv.notify_all();
            cv.wait(l, [&] { return done; });
        });
    t.join();
    {
        std::lock_guard<std::mutex> l(m);
        done = true;
        cv.notify_all();
    }
    for (auto &o : others)
        o.join();
    // Its first refill's room (4 KiB of 16 B objects, at most
    // TCACHE_SINGLE_MAX_OBJECTS; the 60 objects never needed a second).
    EXPECT_EQ(tiny_before, std::min<unsigned>(kmalloc_info[tiny].tcache_max, TCACHE_SINGLE_MAX_OBJECTS));
    EXPECT_GT(bytes_before, TCACHE_TOTAL_BYTES / 33) << "the bins were within the smaller share";
    EXPECT_LT(bytes_after, bytes_before) << "nothing was halved";
    EXPECT_EQ(tiny_after, tiny_before) << "the 16 B bin was halved";
}

// A bin that only frees and has no room gets room again to batch its frees,
// but not past the budget: with the medium bins filling it, the thread frees
// blocks of the 16 KiB class another thread allocated, and every other bin
// keeps its room.  Before, the draining bin got 2 objects (32 KiB) over the
// budget and the budget was enforced at once, halving and flushing the
// largest bins: thread-churn's threads, which free half of their 3,000
// blocks of 8 B..40 KB at exit, made 10,442 such passes flushing 87,580
// bins for 60,000 frees (callgrind at 40 threads: 204.6 -> 188.8 M
// instructions in all).
TEST(Tcache, ADrainingBinTakesNoRoomPastTheBudget)
{
    const unsigned spare = kmalloc_index(16384);
    std::vector<void *> blocks;
    for (int i = 0; i < 64; i++) {
        void *p = kmalloc(16384);
        ASSERT_NE(p, nullptr);
        blocks.push_back(p);
    }
    std::vector<unsigned> before(NR_KMALLOC_CLASSES), after(NR_KMALLOC_CLASSES);
    size_t bytes_before = 0, bytes_after = 0;
    unsigned spare_cap = 0;
    std::thread t([&] {
        tcache *tc = tcache_get();
        fill_budget_with_medium_bins(tc, spare);
        for (unsigned i = 0; i < NR_KMALLOC_CLASSES; i++)
            before[i] = tc->bins[i].cap;
        bytes_before = tc->cap_bytes;
        for (void *p : blocks)
            kfree(p);
        for (unsigned i = 0; i < NR_KMALLOC_CLASSES; i++)
            after[i] = tc->bins[i].cap;
        bytes_after = tc->cap_bytes;
        spare_cap = tc->bins[spare].cap;
    });
    t.join();
    const unsigned drain = std::min<unsigned>(TCACHE_DRAIN_CAP, kmalloc_info[spare].tcache_max);
    ASSERT_GT(bytes_before + drain * 16384, TCACHE_MAX_BYTES) << "room would not pass the budget";
    unsigned changed = 0;
    for (unsigned i = 0; i < NR_KMALLOC_CLASSES; i++)
        if (i != spare && after[i] != before[i])
            changed++;
    EXPECT_EQ(changed, 0u) << "bins lost room to a draining one";
    EXPECT_EQ(spare_cap, 0u);
    EXPECT_LE(bytes_after, TCACHE_MAX_BYTES);
}

// A bin with no room whose frees are batched again gets TCACHE_DRAIN_CAP
// objects of room, but never more than its class's maximum: 2 objects of
// 16 KiB (32 KiB), not 8 (128 KiB, four times what the bin may hold; the
// next refill's growth then underflowed).
TEST(Tcache, BatchingAgainStaysWithinTheClassMaximum)
{
    const unsigned idx = kmalloc_index(16384);
    ASSERT_LT(kmalloc_info[idx].tcache_max, TCACHE_DRAIN_CAP);
    unsigned cap = 0;
    std::thread t([&] {
        tcache *tc = tcache_get();
        std::vector<void *> v;
        for (int i = 0; i < 16; i++)    // the class's population stays high: batching, not straight frees
            v.push_back(kmalloc(16384));
        tcache_bin *b = &tc->bins[idx];
        tcache_flush_all(tc);           // the bin empty
        tc->cap_bytes -= (size_t)b->cap * 16384;
        b->cap = 0;                     // a drained bin: no room ...
        b->avail = 0;
        tc->nr_flush_runs[idx] = 2;     // ... after a run of frees
        kfree(v.back());
        v.pop_back();
        cap = b->cap;
        for (void *p : v)
            kfree(p);
    });
    t.join();
    EXPECT_GE(cap, 1u);
    EXPECT_LE(cap, kmalloc_info[idx].tcache_max);
}

// A bin that refills while the bins of the larger classes fill the budget
// takes room from the largest of them: the 64 B bin gets its first room
// (64 objects) as it would in a cache with budget to spare.  Before, the
// budget went to the bins that filled it first (the 64 B bin got none),
// and a bin halved by a run of frees stayed small.
TEST(Tcache, RefillTakesRoomFromTheLargestBin)
{
    const unsigned idx = kmalloc_index(64);
    unsigned cap = 0;
    size_t bytes = 0;
    std::thread t([&] {
        tcache *tc = tcache_get();
        std::vector<void *> v;
        for (unsigned c = NR_KMALLOC_STATIC - 1; c > idx && tc->cap_bytes + 4096 <= TCACHE_MAX_BYTES; c--) {
            v.clear();
            for (int i = 0; i < 8; i++)
                v.push_back(kmalloc(kmalloc_size(c)));
            for (void *p : v)
                kfree(p);
        }
        bytes = tc->cap_bytes;
        kfree(kmalloc(64));
        cap = tc->bins[idx].cap;
    });
    t.join();
    EXPECT_GT(bytes + 4096, TCACHE_MAX_BYTES) << "the large bins did not fill the budget";
    EXPECT_EQ(cap, 4096 / 64u);
}

// Rounds (tcache_round_account): a thread whose use goes from its peak to
// under an eighth of it and back, twice in a row, shares what it is below
// its peak with reclaim (thread_rounds_pages), while other threads run and
// while its rounds are recent; a thread's share goes when it stops.
TEST(Tcache, AThreadInRoundsSharesWhatItWillTakeBack)
{
    if (!tcache_get())
        GTEST_SKIP() << "no thread cache (KALLOC_TCACHE=0)";
    const long MiB = 1l << 20, pages_per_mib = MiB >> PAGE_SHIFT;
    std::mutex m;
    std::condition_variable cv;
    bool ready = false, done = false;
    std::thread other([&] {       // a second live cache: rounds of one thread are the zone's
        tcache_get();
        std::unique_lock<std::mutex> l(m);
        ready = true;
        cv.notify_all();
        cv.wait(l, [&] { return done; });
    });
    {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return ready; });
    }
    tcache tc;
    memset(&tc, 0, sizeof(tc));
    const long before = READ_ONCE(thread_rounds_pages);
    auto share = [&] { return READ_ONCE(thread_rounds_pages) - before; };
    // Batches of 1 MiB are under TCACHE_ROUND_MIN_BYTES: no rounds.
    for (int i = 0; i < 4; i++) {
        tcache_round_account(&tc, MiB);
        tcache_round_account(&tc, -MiB);
    }
    const unsigned small_streak = tc.round_streak;
    const bool small_trough = tc.round_trough;
    // 4 MiB batches, with 256 KiB kept between them.
    tcache_round_account(&tc, 256 * 1024);
    tcache_round_account(&tc, 4 * MiB);                 // the first peak
    tcache_round_account(&tc, -4 * MiB);                // a trough
    const bool trough = tc.round_trough;
    tcache_round_account(&tc, 4 * MiB);                 // back within an eighth: round 1
    const unsigned streak1 = tc.round_streak;
    tcache_round_account(&tc, -2 * MiB);                // half way down: one round is no pattern
    const long share1 = share();
    tcache_round_account(&tc, -2 * MiB);
    tcache_round_account(&tc, 4 * MiB);                 // round 2
    const unsigned streak2 = tc.round_streak;
    const uint32_t round2_time = tc.round_time;
    tcache_round_account(&tc, -3 * MiB);                // 3 MiB under the peak
    const long share2 = share(), own2 = tc.round_share;
    tcache_round_account(&tc, 3 * MiB);                 // taken back
    const long share3 = share();
    tcache_round_account(&tc, -3 * MiB);
    // Long after the last round: no share.
    const uint32_t skew = vmscan_clock_skew;
    WRITE_ONCE(vmscan_clock_skew, skew + ROUNDS_WINDOW_MS + 1);
    tcache_round_account(&tc, -4096);
    const long stale = share();
    // A third round 1 s after the second (within the window), then the other
    // thread exits: one thread left.
    WRITE_ONCE(vmscan_clock_skew, skew + 1000);
    tcache_round_account(&tc, -MiB + 4096);             // a trough
    tcache_round_account(&tc, 4 * MiB);                 // round 3
    const unsigned streak3 = tc.round_streak;
    const bool seen_now =
        READ_ONCE(thread_rounds_time) == tc.round_time && (uint32_t)(tc.round_time - round2_time) >= 1000;
    tcache_round_account(&tc, -3 * MiB);
    const long share4 = share();
    WRITE_ONCE(vmscan_clock_skew, skew);
    {
        std::lock_guard<std::mutex> l(m);
        done = true;
    }
    cv.notify_all();
    other.join();
    tcache_round_account(&tc, -4096);
    const long alone = share();
    vmscan_thread_rounds_add(-tc.round_share);          // leave the count as found
    EXPECT_EQ(small_streak, 0u) << "1 MiB batches were counted as rounds";
    EXPECT_FALSE(small_trough);
    EXPECT_TRUE(trough) << "4 MiB down to 256 KiB is not a trough";
    EXPECT_EQ(streak1, 1u);
    EXPECT_EQ(share1, 0) << "a single round shared its memory";
    EXPECT_EQ(streak2, 2u);
    EXPECT_EQ(share2, 3 * pages_per_mib) << "the thread's 3 MiB under its peak were not shared";
    EXPECT_EQ(own2, 3 * pages_per_mib);
    EXPECT_EQ(share3, 0) << "memory taken back stayed shared";
    EXPECT_EQ(stale, 0) << "rounds long past still shared memory";
    EXPECT_EQ(streak3, 3u);
    EXPECT_TRUE(seen_now) << "the round was published with an earlier round's time";
    EXPECT_EQ(share4, 3 * pages_per_mib);
    if (!option_get(OPT_BACKGROUND))   // kswapd's thread has a cache of its own
        EXPECT_EQ(alone, 0) << "the rounds of the only thread left were shared (they are the zone's)";
}
