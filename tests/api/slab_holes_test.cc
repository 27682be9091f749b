// Slab holes through the public API (libkalloc.so is this process's malloc):
// 8 KiB objects (multi-page slabs), those at 16 KiB-aligned addresses kept
// live (one in two, in every slab whatever its order), the rest freed.
// Without holes every slab stays whole; with them the process's RSS drops by
// about the freed objects' pages, by the
// frees alone (the class is being freed) and by malloc_trim(0), and the
// live objects keep their contents, the memory is usable again, and
// KALLOC_SLAB_HOLES=0 (a child) gives nothing back this way.
#include <gtest/gtest.h>

#include <malloc.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

using kt::check;
using kt::fill;

namespace {

long rss_kib()
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res * (long)(sysconf(_SC_PAGESIZE) / 1024);
}

constexpr size_t kObj = 8000;      // kmalloc-8192: slabs of 2 or more objects
constexpr size_t kCount = 4096;    // 32 MiB of slabs

// Allocate kCount objects, keep those at 16 KiB boundaries, free the rest;
// returns the RSS drop from before the frees to after `then` (KiB).  Checks
// the kept objects.
std::vector<uint32_t> kept_seeds;   // the kept objects' fill seeds

template <class F>
long punch_pattern(std::vector<void *> &kept, F then)
{
    std::vector<void *> objs(kCount);
    std::vector<uint32_t> seeds;
    for (size_t i = 0; i < kCount; i++) {
        objs[i] = malloc(kObj);
        EXPECT_NE(objs[i], nullptr);
        fill(objs[i], kObj, (uint32_t)i);
    }
    long before = rss_kib();
    for (size_t i = 0; i < kCount; i++) {
        if ((uintptr_t)objs[i] % 16384 == 0) {
            kept.push_back(objs[i]);
            seeds.push_back((uint32_t)i);
        } else
            free(objs[i]);
    }
    then();
    long after = rss_kib();
    for (size_t k = 0; k < kept.size(); k++)
        EXPECT_EQ(check(kept[k], kObj, seeds[k]), kObj) << "kept object " << k << " changed";
    kept_seeds = seeds;
    return before - after;
}

} // namespace

// The figures below are the holes' alone: with KALLOC_THP >= 2 (the default
// is 3) a pageblock that is still one whole hugepage and at least half in use
// keeps its pages (punching one would split it; compact_test checks that
// rule), and this pattern keeps exactly half.  So the test runs in a child
// with KALLOC_THP=1; the child's gtest failures become its exit status.
static bool in_thp1_child(const char *test)
{
    const char *thp = getenv("KALLOC_THP");
    if (thp && thp[0] == '1' && thp[1] == 0)
        return true;
    pid_t pid = fork();
    if (pid == 0) {
        setenv("KALLOC_THP", "1", 1);
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
            _exit(2);
        self[n] = 0;
        std::string filter = std::string("--gtest_filter=SlabHoles.") + test;
        execl(self, self, filter.c_str(), (char *)nullptr);
        _exit(2);
    }
    int st = 0;
    EXPECT_EQ(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
        << "the KALLOC_THP=1 child failed (status " << st << ")";
    return false;
}

TEST(SlabHoles, FreesOfOneInFourGiveTheirPagesBack)
{
    if (!in_thp1_child("FreesOfOneInFourGiveTheirPagesBack"))
        return;
    std::vector<void *> kept;
    long drop = punch_pattern(kept, [] {});
    // Half of 32 MiB freed, in whole pages.
    std::printf("[ figures  ] %zu x %zu B, %zu kept: RSS dropped %ld KiB by the frees\n",
                kCount, kObj, kept.size(), drop);
    EXPECT_GE(kept.size(), kCount / 2 - 16);
    EXPECT_GE(drop, 12 * 1024) << "the frees gave little back";
    long drop2 = rss_kib();
    EXPECT_EQ(malloc_trim(0), 1);
    drop2 -= rss_kib();
    long total = drop + drop2;
    std::printf("[ figures  ] and %ld KiB more by malloc_trim(0) (total %ld KiB)\n", drop2, total);
    EXPECT_GE(total, 14 * 1024) << "malloc_trim left the free pages of partly used slabs";
    // The memory is usable again: allocate the freed ones again, check everything.
    std::vector<void *> again;
    for (size_t i = 0; i < kCount - kept.size(); i++) {
        void *p = malloc(kObj);
        ASSERT_NE(p, nullptr);
        fill(p, kObj, (uint32_t)(100000 + i));
        again.push_back(p);
    }
    for (size_t k = 0; k < kept.size(); k++)
        ASSERT_EQ(check(kept[k], kObj, kept_seeds[k]), kObj) << "kept object " << k;
    for (size_t i = 0; i < again.size(); i++)
        ASSERT_EQ(check(again[i], kObj, (uint32_t)(100000 + i)), kObj) << "new object " << i;
    for (void *p : again)
        free(p);
    for (void *p : kept)
        free(p);
}

TEST(SlabHoles, OptionOffKeepsPartlyUsedSlabsWhole)
{
    // In a child started with KALLOC_SLAB_HOLES=0: the same pattern gives
    // (almost) nothing back, so the figure above is the holes' doing.
    if (getenv("SLAB_HOLES_CHILD")) {
        std::vector<void *> kept;
        long drop = punch_pattern(kept, [] { malloc_trim(0); });
        std::printf("[ figures  ] KALLOC_SLAB_HOLES=0: RSS dropped %ld KiB\n", drop);
        std::fflush(stdout);
        _exit(drop < 4 * 1024 ? 0 : 3);
    }
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        setenv("SLAB_HOLES_CHILD", "1", 1);
        setenv("KALLOC_SLAB_HOLES", "0", 1);
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
            _exit(2);
        self[n] = 0;
        execl(self, self, "--gtest_filter=SlabHoles.OptionOffKeepsPartlyUsedSlabsWhole",
              (char *)nullptr);
        _exit(2);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0) << "with the option off, RSS still dropped (or the child failed)";
}

// Slab holes go back in batches of one process_madvise call (Linux 6.15+),
// which glibc's malloc never makes: a sandbox that kills on it must be no
// harm.  In a child under such a filter the same pattern gives its holes
// back (one madvise each), by the frees and by malloc_trim, and the child
// lives and keeps its objects.
TEST(SlabHoles, AFilterThatKillsProcessMadviseIsNoHarm)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        alarm(60);
        if (!kt::seccomp_kill_on({__NR_process_madvise}))
            _exit(20);
        std::vector<void *> kept;
        long drop = punch_pattern(kept, [] { malloc_trim(0); });
        if (::testing::Test::HasFailure())
            _exit(21);               // a kept object changed
        for (void *p : kept)
            free(p);
        _exit(drop >= 12 * 1024 ? 0 : 22);
    }
    ASSERT_NO_FATAL_FAILURE(kt::expect_sandboxed_child_exits_cleanly(
        pid, "20: no filter, 21: a kept object changed, 22: little given back"));
}

namespace {

// Whether process_madvise(PIDFD_SELF, MADV_DONTNEED) works here (Linux
// 6.15+, no filter refusing it): what kalloc's batches use.
bool process_madvise_self_works()
{
    void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    *(volatile char *)p = 1;
    struct iovec iov = {p, 4096};
    long rc = syscall(SYS_process_madvise, -10000 /* PIDFD_SELF_THREAD */, &iov, 1UL, MADV_DONTNEED, 0U);
    munmap(p, 4096);
    return rc == 4096;
}

} // namespace

// The holes of the pattern above go back in batches (one process_madvise
// for up to 32 ranges), seen through kalloc_vmstat (version 10): far fewer
// system calls than ranges.  Where the kernel has no such call, each range
// is a madvise of its own and the test only checks the counters agree.
TEST(SlabHoles, HolesGoBackInBatches)
{
    if (!in_thp1_child("HolesGoBackInBatches"))
        return;
    struct kalloc_vmstat before {}, after {};
    before.size = after.size = sizeof before;
    ASSERT_EQ(kalloc_vmstat_get(&before), 0);
    ASSERT_GE(before.version, 10u);
    std::vector<void *> kept;
    long drop = punch_pattern(kept, [] {});
    ASSERT_EQ(kalloc_vmstat_get(&after), 0);
    unsigned long punched = after.slab_holes_punched - before.slab_holes_punched;
    unsigned long calls = after.slab_hole_madvise - before.slab_hole_madvise;
    unsigned long batched = after.slab_hole_batched - before.slab_hole_batched;
    std::printf("[ figures  ] %lu hole pages, %lu system calls, %lu ranges in batches, %lu pages "
                "cancelled; RSS dropped %ld KiB\n", punched, calls, batched,
                (unsigned long)(after.slab_holes_cancelled - before.slab_holes_cancelled), drop);
    EXPECT_GE(punched, 2048u) << "the frees punched few holes";
    if (process_madvise_self_works()) {
        EXPECT_GE(batched, 512u) << "the holes did not go back in batches";
        EXPECT_LT(calls * 8, batched) << "batches of a few ranges";
    } else {
        EXPECT_EQ(batched, 0u);
        EXPECT_GT(calls, 0u);
    }
    for (void *p : kept)
        free(p);
}
