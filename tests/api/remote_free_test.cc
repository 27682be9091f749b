// Remote frees: an object freed by a thread other than the one whose cache
// took it from its slab is not recycled into the freeing thread's own
// allocations (that is what makes threads share cache lines in Hoard's
// cache-scratch), yet it is not lost: it goes back to its slab in a batch.
#include <gtest/gtest.h>

#include <kalloc/kalloc.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <cstring>
#include <thread>
#include <vector>

TEST(RemoteFree, FreedForeignObjectIsNotHandedBackToTheFreeingThread)
{
    // The main thread allocates small objects back to back (they share
    // cache lines), as cache-scratch does.
    constexpr int N = 8;
    void *given[N];
    for (auto &p : given)
        p = malloc(8);
    std::set<uintptr_t> lines;
    for (void *p : given)
        lines.insert((uintptr_t)p / 64);
    for (int i = 0; i < N; i++) {
        std::thread t([&, i] {
            uintptr_t foreign = (uintptr_t)given[i];
            free(given[i]);
            for (int k = 0; k < 1000; k++) {
                void *q = malloc(8);
                ASSERT_NE((uintptr_t)q, foreign) << "the freed foreign object came straight back";
                EXPECT_EQ(lines.count((uintptr_t)q / 64), 0u)
                    << "a new object shares a cache line with the other threads' objects";
                free(q);
            }
        });
        t.join();
    }
}

TEST(RemoteFree, LargeClassesShareOnePoolAcrossThreads)
{
    // Classes above 1 KiB have one pool for all threads (mm/slab.h,
    // SLAB_OWNER_SHARED): an object that large shares no cache line with
    // another, so a foreign one freed by this thread goes on this thread's
    // own bin and is the next one it gets (LIFO), where a small one (the
    // test above) and a 1 KiB one go back to their owner's slabs.
    for (size_t size : {1025ul, 2000ul, 4096ul, 5000ul, 30000ul}) {
        void *given = malloc(size);
        ASSERT_NE(given, nullptr);
        std::thread t([&] {
            void *w = malloc(size);   // this thread's cache, with room in the class's bin
            free(given);
            void *q = malloc(size);
            EXPECT_EQ(q, given) << size << " B: the freed object was not reused by the freeing thread";
            free(q);
            free(w);
        });
        t.join();
    }
    for (size_t size : {64ul, 1024ul}) {
        void *given = malloc(size);
        ASSERT_NE(given, nullptr);
        std::thread t([&] {
            void *w = malloc(size);
            free(given);
            void *q = malloc(size);
            EXPECT_NE(q, given) << size << " B: a remote free was recycled by the freeing thread";
            free(q);
            free(w);
        });
        t.join();
    }
}

TEST(RemoteFree, ReallocKeepsALargeClassObjectInThisThreadsBin)
{
    // realloc that moves a block frees the old one through the validated
    // path (free_slab_object): an object of the shared pool goes to this
    // thread's bin like any other free of it, not to a remote list and the
    // barn (realloc-string, single-threaded, parked 4-11 objects per class
    // there: +2.6 MiB of peak RSS).
    for (size_t size : {1100ul, 2000ul, 5000ul, 20000ul}) {
        void *w = malloc(size);   // the bin has objects and room
        void *p = malloc(size);
        ASSERT_NE(p, nullptr);
        memset(p, 0x3c, size);
        void *q = realloc(p, size * 3);
        ASSERT_NE(q, nullptr);
        ASSERT_NE(q, p) << size << " B: grown threefold, it must move to another class";
        void *r = malloc(size);
        EXPECT_EQ(r, p) << size << " B: the block realloc left was not back in this thread's bin";
        free(r);
        free(q);
        free(w);
    }
}

TEST(RemoteFree, RemoteFreesAreReturnedToTheSlabs)
{
    // A producer allocates, a consumer frees everything: after the consumer
    // exits (its cache, remote lists included, is flushed), nothing is lost.
    kalloc_thread_flush();
    kalloc_stats before;
    kalloc_stats_get(&before);
    std::vector<void *> objs;
    std::thread producer([&] {
        for (int i = 0; i < 100000; i++)
            objs.push_back(malloc(48));
    });
    producer.join();
    std::thread consumer([&] {
        for (void *p : objs)
            free(p);
    });
    consumer.join();
    objs.clear();
    objs.shrink_to_fit();
    kalloc_thread_flush();
    kalloc_stats after;
    kalloc_stats_get(&after);
    // 100000 * 48 B were allocated and freed: in_use must be back near the
    // start (allow 1 MiB for the test's own bookkeeping).
    EXPECT_LT(after.in_use, before.in_use + (1u << 20))
        << "remote frees did not reach the slabs";
}

TEST(RemoteFree, RemoteListsOfLargerClassesGoBackInSmallBatches)
{
    // A thread that frees another thread's 1 KiB objects now and then holds
    // at most 8 KiB of them (TCACHE_REMOTE_BYTES): after 16 remote frees,
    // while it is still alive, at least 4 objects are back where their
    // owner's next refill finds them.  (Batches of 32 objects kept all 16.)
    // 1 KiB is the largest class with owners: above it, one pool is shared
    // and a free goes on the freeing thread's own bin (the test above).
    constexpr int N = 16;
    constexpr size_t kSize = 1024;
    std::vector<void *> given(N);
    for (auto &p : given)
        p = malloc(kSize);
    std::set<void *> freed(given.begin(), given.end());
    std::atomic<int> stage{0};
    std::thread t([&] {
        for (void *p : given)
            free(p);
        stage.store(1);
        while (stage.load() != 2)
            std::this_thread::yield();
    });
    while (stage.load() != 1)
        std::this_thread::yield();
    kalloc_thread_flush();      // the owner's bin is empty: its next malloc refills
    std::vector<void *> again;
    for (int i = 0; i < 4 * N; i++)
        again.push_back(malloc(kSize));
    int back = 0;
    for (void *p : again)
        back += (int)freed.count(p);
    stage.store(2);
    t.join();
    for (void *p : again)
        free(p);
    EXPECT_GE(back, 4) << "remote frees of 1 KiB objects stayed on the freeing thread's list";
}
