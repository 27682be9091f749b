// Huge blocks (> 4 MiB) are reused from a small cache of freed areas: reuse
// must never leak old contents through calloc, and a freed huge block must
// still be reported when freed again.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cstdio>
#include <cerrno>

#include <sys/syscall.h>
#include <sys/wait.h>

#include "api_test_util.h"

TEST(HugeReuse, CallocOfAReusedAreaIsZero)
{
    for (int round = 0; round < 4; round++) {
        size_t n = (size_t)(12 + round) << 20;
        unsigned char *p = (unsigned char *)malloc(n);
        ASSERT_NE(p, nullptr);
        memset(p, 0xab, n);
        free(p);
        unsigned char *q = (unsigned char *)calloc(1, n);
        ASSERT_NE(q, nullptr);
        for (size_t i = 0; i < n; i += 4093)
            ASSERT_EQ(q[i], 0) << "offset " << i;
        ASSERT_EQ(q[n - 1], 0);
        free(q);
    }
}

static long resident_kib()
{
    long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

// calloc of a reused area clears what the last user touched and drops the
// rest (os_zero_range): a 32 MiB block of which 3 pages were written does
// not come back as 32 MiB of resident zeroes.  It did (memset of the whole
// area), so programs that calloc huge blocks and use a few pages of each
// peaked far higher once freed areas were kept for reuse.
TEST(HugeReuse, CallocOfAReusedAreaStaysUntouched)
{
    malloc_trim(0);
    const size_t n = 32u << 20;
    unsigned char *p = (unsigned char *)malloc(n);
    ASSERT_NE(p, nullptr);
    p[0] = 1;
    p[n / 2] = 2;
    p[n - 1] = 3;
    free(p);
    const long before = resident_kib();
    ASSERT_GT(before, 0);
    unsigned char *q = (unsigned char *)calloc(1, n);
    ASSERT_NE(q, nullptr);
    const long after = resident_kib();
    ASSERT_EQ(q, p) << "the freed area was not reused: nothing to check";
    EXPECT_LT(after - before, 8 * 1024) << "calloc made " << (after - before) << " KiB resident"
                                        << (q == p ? " (the area was reused)" : "");
    for (size_t i = 0; i < n; i += 4093)
        ASSERT_EQ(q[i], 0) << "offset " << i;
    ASSERT_EQ(q[0], 0);
    ASSERT_EQ(q[n / 2], 0);
    ASSERT_EQ(q[n - 1], 0);
    free(q);
    malloc_trim(0);
}

// A program that reads what it did not write maps the shared zero page
// there, which mincore counts as resident: numpy's zeros of a 72 MB matrix,
// written every 10th row and then summed, had its whole area cleared in
// place at the next calloc (every page copied and resident: 102.7 MB peak
// against glibc's 38.8 from the third call on).  Only resident pages that
// do not read zero are cleared in place; the zero page's mappings stay as
// they are.  Also with scattered writes (more runs than a chunk cleared one
// by one before) nothing is made resident.
TEST(HugeReuse, CallocOfAnAreaReadButNotWrittenStaysUntouched)
{
    malloc_trim(0);
    const size_t n = 64u << 20;
    for (size_t stride : {(size_t)1 << 20, (size_t)32 << 10}) {
        long grew = 0;
        for (int round = 0; round < 4; round++) {
            const long before = resident_kib();
            unsigned char *q = (unsigned char *)calloc(1, n);
            ASSERT_NE(q, nullptr);
            const long after = resident_kib();
            unsigned long sum = 0;
            for (size_t i = 0; i < n; i += 4096)   // reads every page: zero pages
                sum += q[i];
            ASSERT_EQ(sum, 0ul) << "round " << round << ": a reused area read non-zero";
            ASSERT_EQ(q[n - 1], 0);
            for (size_t i = 0; i < n; i += stride)  // writes a few of them
                q[i] = (unsigned char)(round + 1);
            if (round >= 2 && after - before > grew)
                grew = after - before;
            free(q);
        }
        // The old clearing made all 64 MiB resident at the calloc itself.
        EXPECT_LT(grew, 8L << 10) << "calloc of a reused area grew RSS by " << grew
                                  << " KiB (stride " << stride << ")";
    }
    malloc_trim(0);
}

TEST(HugeReuse, ScratchBufferLoopKeepsContentsPerIteration)
{
    for (int i = 0; i < 50; i++) {
        size_t n = 16u << 20;
        unsigned char *p = (unsigned char *)malloc(n);
        ASSERT_NE(p, nullptr);
        p[0] = (unsigned char)i;
        p[n - 1] = (unsigned char)(i + 1);
        ASSERT_EQ(p[0], (unsigned char)i);
        ASSERT_EQ(p[n - 1], (unsigned char)(i + 1));
        free(p);
    }
}

// A program that allocates and frees more than the cache's usual 64 MiB of
// huge blocks in rounds (mimalloc-bench's mstress): once it has mapped again
// what the cache gave back, the cache keeps a round's worth (retention,
// mm/vmalloc.h), so the later rounds take no page faults for their blocks.
TEST(HugeReuse, RoundsOfHugeBlocksStopFaulting)
{
    malloc_trim(0);                       // the cache starts empty
    constexpr int N = 24;
    constexpr size_t sz = 6ul << 20;      // 144 MiB a round
    long faults[4];
    for (int round = 0; round < 4; round++) {
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        unsigned char *p[N];
        for (int i = 0; i < N; i++) {
            p[i] = (unsigned char *)malloc(sz);
            ASSERT_NE(p[i], nullptr);
            memset(p[i], round + i, sz);
        }
        getrusage(RUSAGE_SELF, &r1);
        faults[round] = r1.ru_minflt - r0.ru_minflt;
        for (int i = 0; i < N; i++) {
            ASSERT_EQ(p[i][sz / 2], (unsigned char)(round + i));
            free(p[i]);
        }
    }
    EXPECT_GT(faults[0], 0);
    EXPECT_LT(faults[2] * 4, faults[0]) << faults[0] << " " << faults[1] << " " << faults[2];
    EXPECT_LT(faults[3] * 4, faults[0]) << faults[0] << " " << faults[3];
    malloc_trim(0);
}

// A huge area cached for reuse does not stay resident while the heap grows
// past its peak: rounds of a 32 MiB block (cached from the second round on),
// a pause, then 24 MiB of 256 KiB blocks written (the zone's use at a new
// high): the cached area is unmapped, so from the rounds' end the process
// grows by less than those 24 MiB (by about -8 MiB).  The previous library
// kept it (LibreOffice's conversions peaked 88 MB above glibc's that way):
// RSS +24 MiB.
TEST(HugeReuse, ACachedAreaDoesNotStayResidentThroughANewHigh)
{
    malloc_trim(0);
    constexpr size_t huge = 32ul << 20;
    for (int round = 0; round < 4; round++) {
        unsigned char *p = (unsigned char *)malloc(huge);
        ASSERT_NE(p, nullptr);
        memset(p, round + 1, huge);
        ASSERT_EQ(p[huge / 2], (unsigned char)(round + 1));
        free(p);
    }
    long before = resident_kib();         // the cached area resident
    usleep(60 * 1000);                    // the rounds are over
    constexpr int N = 96;
    constexpr size_t sz = 256 << 10;      // 24 MiB in all, from the zone
    unsigned char *q[N];
    for (int i = 0; i < N; i++) {
        q[i] = (unsigned char *)malloc(sz);
        ASSERT_NE(q[i], nullptr);
        memset(q[i], i, sz);
    }
    long after = resident_kib();
    std::printf("[ figures  ] RSS %+ld KiB from the rounds' end, 24 MiB of new blocks written\n",
                after - before);
    EXPECT_LT(after - before, 8L << 10) << "the cached 32 MiB area stayed resident";
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(q[i][sz - 1], (unsigned char)i);
        free(q[i]);
    }
    // Rounds taken up again after it work as before (a fresh area).
    unsigned char *p = (unsigned char *)calloc(1, huge);
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < huge; i += 4096)
        ASSERT_EQ(p[i], 0);
    free(p);
    malloc_trim(0);
}

// A block of the large sizes (here 2.5 MiB) asked for while a freed huge
// area is cached is lent that area whole, as glibc's heap serves a freed
// chunk's space to the next smaller request, instead of fresh zone pages
// beside the cached area (`file` over /usr/bin: 34.9 MB peak RSS against
// glibc's 28.0 that way).  The area's pages past the block are given back
// while it lives; its free caches the whole area again, for the huge
// request that asks for it next.  The previous library put the block in
// the zone: RSS +2,636 KiB, and the block at another address.
TEST(HugeReuse, ALargeBlockIsLentACachedArea)
{
    malloc_trim(0);
    constexpr size_t huge = 7ul << 20;
    unsigned char *area = nullptr;
    for (int round = 0; round < 3; round++) {        // reused: the cache keeps it
        unsigned char *p = (unsigned char *)malloc(huge);
        ASSERT_NE(p, nullptr);
        memset(p, 0x5a, huge);
        area = p;
        free(p);
    }
    constexpr size_t large = (5ul << 20) / 2;        // 2.5 MiB: a zone size
    const long before = resident_kib();
    unsigned char *q = (unsigned char *)malloc(large);
    ASSERT_NE(q, nullptr);
    memset(q, 0x11, large);
    const long after = resident_kib();
    std::printf("[ figures  ] RSS %+ld KiB for a 2.5 MiB block written whole\n", after - before);
    EXPECT_EQ(q, area) << "the cached area was not lent";
    EXPECT_LT(after - before, 512) << "the block took fresh pages beside the cached area";
    EXPECT_GE(malloc_usable_size(q), large);
    EXPECT_LT(malloc_usable_size(q), large + 4096) << "the slack counted as usable";
    free(q);

    // calloc lent the same area: zeroes, where the last block and the slack were.
    constexpr size_t third = 3ul << 20;
    unsigned char *c = (unsigned char *)calloc(1, third);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c, area);
    for (size_t i = 0; i < third; i += 1021)
        ASSERT_EQ(c[i], 0) << "offset " << i;
    ASSERT_EQ(c[third - 1], 0);
    memset(c, 0x22, third);
    // Grown and shrunk within its area: in place, contents kept.
    unsigned char *g = (unsigned char *)realloc(c, third + (512 << 10));
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g, c);
    ASSERT_EQ(g[0], 0x22);
    ASSERT_EQ(g[third - 1], 0x22);
    memset(g + third, 0x33, 512 << 10);
    unsigned char *s = (unsigned char *)realloc(g, 2ul << 20);
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(s[0], 0x22);
    ASSERT_EQ(s[(2ul << 20) - 1], 0x22);
    free(s);

    // The huge request gets its area back, whole and writable.
    unsigned char *h = (unsigned char *)malloc(huge);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h, area);
    memset(h, 0x44, huge);
    ASSERT_EQ(h[huge - 1], 0x44);
    free(h);
    malloc_trim(0);
}

// A block realloc must move to 1 MiB or more gets a huge area of its own
// (REALLOC_HUGE_MIN, malloc/large.h), so its later growth is an mremap: no
// copy, and no old copy left free and resident beside the new one.  `ls` of
// a 19,457-entry directory doubles its entry array by realloc to 5.3 MB; with
// zone blocks up to 4 MiB, the 2.66 MB copy stayed free and resident while
// the 5.3 MB one was made (peak RSS 8.8-9.0 MB against glibc's 7.0-7.3).
// A slab object grown to 1.3 MB must move; then 2.6 and 5.2 MB.  The
// previous library moved it into the zone (huge_bytes unchanged).
TEST(HugeReuse, AnArrayReallocGrowsPastOneMiBByMremap)
{
    malloc_trim(0);
    kalloc_stats st0{}, st1{};
    unsigned char *a = (unsigned char *)malloc(16 << 10);
    ASSERT_NE(a, nullptr);
    memset(a, 0x61, 16 << 10);
    const long before = resident_kib();
    kalloc_stats_get(&st0);
    size_t n = 1300000;
    unsigned char *b = (unsigned char *)realloc(a, n);
    ASSERT_NE(b, nullptr);
    kalloc_stats_get(&st1);
    ASSERT_EQ(b[0], 0x61);
    ASSERT_EQ(b[(16 << 10) - 1], 0x61);
    memset(b + (16 << 10), 0x62, n - (16 << 10));
    EXPECT_GE(st1.huge_bytes, st0.huge_bytes + n) << "the 1.3 MB block is not a huge area";
    long peak = 0;
    for (int step = 0; step < 2; step++) {        // 2.6 MB, 5.2 MB
        unsigned char *c = (unsigned char *)realloc(b, 2 * n);
        ASSERT_NE(c, nullptr);
        ASSERT_EQ(c[0], 0x61);
        ASSERT_EQ(c[16 << 10], 0x62);
        ASSERT_EQ(c[n - 1], step == 0 ? 0x62 : 0x63);
        memset(c + n, 0x63 + step, n);
        b = c;
        n *= 2;
        long r = resident_kib();
        if (r > peak)
            peak = r;
    }
    std::printf("[ figures  ] RSS %+ld KiB at the peak for a 5.2 MB array\n", peak - before);
    EXPECT_LT(peak - before, (long)(n >> 10) + 1024) << "an old copy stayed resident beside the array";
    free(b);
    malloc_trim(0);
}

TEST(HugeReuseDeathTest, DoubleFreeOfALentAreaIsReported)
{
    testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_DEATH(
        {
            for (int i = 0; i < 3; i++)
                free(malloc(7u << 20));
            void *p = malloc(3u << 20);
            free(p);
            free(p);
        },
        "free\\(\\).*0x[0-9a-f]+");
}

TEST(HugeReuseDeathTest, DoubleFreeOfACachedAreaIsReported)
{
    testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_DEATH(
        {
            void *p = malloc(16u << 20);
            free(p);
            free(p);
        },
        "free\\(\\).*0x[0-9a-f]+");
}

// A sandbox that answers mremap with an error (EPERM, or ENOSYS as an
// emulator may): realloc of a huge block cannot grow, move or shrink it
// with mremap, so it copies (growth) or leaves the block as it is
// (shrink), as glibc does; never NULL with memory to spare.  The previous
// library returned NULL at the first growth.
TEST(HugeReuse, ReallocWhereMremapIsRefused)
{
    for (int err : {EPERM, ENOSYS}) {
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            if (!kt::seccomp_errno_on_syscalls({__NR_mremap}, err))
                _exit(0);   // the kernel refuses filters: nothing to test
            const size_t n = 64u << 20;
            unsigned char *a = (unsigned char *)malloc(n);
            if (!a) _exit(1);
            for (size_t i = 0; i < n; i += 4096) a[i] = (unsigned char)(i >> 12);
            errno = 0;
            a = (unsigned char *)realloc(a, 2 * n);   // grow: copied
            if (!a) _exit(2);
            int bad = 0;
            for (size_t i = 0; i < n; i += 4096) bad |= a[i] != (unsigned char)(i >> 12);
            memset(a + n, 7, n);
            unsigned char *b = (unsigned char *)realloc(a, n / 2);   // shrink: kept
            if (!b) _exit(3);
            for (size_t i = 0; i < n / 2; i += 4096) bad |= b[i] != (unsigned char)(i >> 12);
            b = (unsigned char *)realloc(b, 3 * n);   // grow again
            if (!b) _exit(4);
            for (size_t i = 0; i < n / 2; i += 4096) bad |= b[i] != (unsigned char)(i >> 12);
            if (errno != 0) _exit(6);                 // success leaves errno alone
            free(b);
            _exit(bad ? 5 : 0);
        }
        kt::expect_sandboxed_child_exits_cleanly(pid, "1 malloc, 2-4 realloc returned NULL, 5 contents, 6 errno");
    }
}
