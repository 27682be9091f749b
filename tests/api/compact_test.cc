// Compaction through the public API (libkalloc.so is this process's malloc):
// kalloc_compact after a fragmenting pattern gives memory back without
// touching a live block; compaction under concurrent allocation and free
// from several threads and across fork(); the kalloc_vmstat snapshot is
// consistent and follows its ABI rule; the stats report shows the views.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

struct blk {
  void *p;
  size_t n;
  uint32_t seed;
};

// Allocate, fill and check blocks of random sizes (mostly small, some large),
// freeing at random, for `ops` operations.  Returns false on corruption.
bool churn(uint64_t seed, int ops, std::atomic<bool> *stop) {
  std::mt19937_64 rng(seed);
  std::vector<blk> live;
  live.reserve(4096);
  bool ok = true;
  for (int i = 0; i < ops && ok && !(stop && stop->load()); i++) {
    if (live.size() < 3000 && (live.empty() || rng() % 100 < 55)) {
      unsigned r = rng() % 100;
      size_t n = r < 85 ? 16 + rng() % 497 : r < 98 ? 512 + rng() % 8192 : 40000 + rng() % 200000;
      void *p = malloc(n);
      if (!p) return false;
      uint32_t s = (uint32_t)rng();
      kt::fill_sparse(p, n, s);
      live.push_back({p, n, s});
    } else {
      size_t k = rng() % live.size();
      blk b = live[k];
      live[k] = live.back();
      live.pop_back();
      if (kt::check_sparse(b.p, b.n, b.seed) != b.n) ok = false;
      free(b.p);
    }
  }
  for (blk &b : live) {
    if (kt::check_sparse(b.p, b.n, b.seed) != b.n) ok = false;
    free(b.p);
  }
  return ok;
}

}  // namespace

TEST(Compact, FragmentingPatternGivesMemoryBack) {
  // Many small objects (16..512 B), then a random 90% freed: most slabs keep
  // a few objects, some empty.  kalloc_compact must give memory back (RSS
  // and the free-resident figure go down) and leave every survivor intact.
  const size_t N = 400000;
  std::mt19937_64 rng(2026);
  std::vector<blk> objs(N);
  for (size_t i = 0; i < N; i++) {
    size_t n = 16 + rng() % 497;
    objs[i].p = malloc(n);
    ASSERT_NE(objs[i].p, nullptr);
    objs[i].n = n;
    objs[i].seed = (uint32_t)i;
    kt::fill(objs[i].p, n, objs[i].seed);
  }
  std::shuffle(objs.begin(), objs.end(), rng);
  size_t keep = N / 10;
  for (size_t i = keep; i < N; i++) free(objs[i].p);
  objs.resize(keep);
  kalloc_vmstat before = kt::vmstat_now();
  kalloc_stats s0;
  kalloc_stats_get(&s0);
  size_t released = kalloc_compact();
  kalloc_vmstat after = kt::vmstat_now();
  kalloc_stats s1;
  kalloc_stats_get(&s1);
  printf("[ figures  ] %zu objects of 16..512 B, 90%% freed: score %llu -> %llu, "
         "RSS %llu -> %llu KiB, free resident %llu -> %llu KiB, kalloc_compact gave back %zu KiB\n",
         N, (unsigned long long)before.fragmentation_score,
         (unsigned long long)after.fragmentation_score, (unsigned long long)s0.resident >> 10,
         (unsigned long long)s1.resident >> 10, (unsigned long long)before.nr_free_resident * 4,
         (unsigned long long)after.nr_free_resident * 4, released >> 10);
  EXPECT_GT(released, 0u);
  EXPECT_LT(s1.resident, s0.resident) << "RSS did not go down";
  EXPECT_LT(after.nr_free_resident, before.nr_free_resident);
  EXPECT_EQ(after.compact_full, before.compact_full + 1);
  EXPECT_GE(after.compact_released, before.compact_released + released / 4096);
  EXPECT_GE(after.pgreclaim, before.pgreclaim + released / 4096);
  for (blk &b : objs) ASSERT_EQ(kt::check(b.p, b.n, b.seed), b.n) << "a live object was touched";
  for (blk &b : objs) free(b.p);
}

TEST(Compact, ConcurrentAllocationAndFreeFromSeveralThreads) {
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; t++)
    workers.emplace_back([t, &bad] {
      if (!churn(100 + t, 150000, nullptr)) bad++;
    });
  std::thread compactor([&] {
    while (!stop.load()) {
      kalloc_compact();
      kalloc_vmstat v;
      memset(&v, 0, sizeof(v));
      v.size = sizeof(v);
      kalloc_vmstat_get(&v);
    }
  });
  for (auto &w : workers) w.join();
  stop = true;
  compactor.join();
  EXPECT_EQ(bad.load(), 0) << "a live block changed under compaction";
  kalloc_vmstat v = kt::vmstat_now();
  EXPECT_GT(v.compact_full, 0u);
}

TEST(Compact, ForkWhileOtherThreadsAllocateAndCompact) {
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<blk> mine;
  for (int i = 0; i < 2000; i++) {
    size_t n = 16 + (size_t)(i * 37) % 3000;
    void *p = malloc(n);
    ASSERT_NE(p, nullptr);
    kt::fill(p, n, (uint32_t)i);
    mine.push_back({p, n, (uint32_t)i});
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; t++)
    threads.emplace_back([t, &stop, &bad] {
      if (!churn(700 + t, 1 << 30, &stop)) bad++;
    });
  threads.emplace_back([&stop] {
    while (!stop.load()) kalloc_compact();
  });
  for (int f = 0; f < 20; f++) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child: compaction works, the parent's blocks are intact, and
      // allocation goes on.
      int rc = 0;
      kalloc_compact();
      for (blk &b : mine)
        if (kt::check(b.p, b.n, b.seed) != b.n) rc = 1;
      if (!churn(9000 + f, 20000, nullptr)) rc = 2;
      kalloc_compact();
      for (blk &b : mine)
        if (kt::check(b.p, b.n, b.seed) != b.n) rc = 3;
      _exit(rc);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child died";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "fork " << f;
  }
  stop = true;
  for (auto &t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  for (blk &b : mine) {
    EXPECT_EQ(kt::check(b.p, b.n, b.seed), b.n);
    free(b.p);
  }
}

TEST(Compact, VmstatSnapshotIsConsistent) {
  // Some of each kind of memory.
  std::vector<void *> ps;
  for (int i = 0; i < 5000; i++) ps.push_back(malloc(16 + i % 700));
  for (int i = 0; i < 20; i++) ps.push_back(malloc(100000 + i * 4096));
  kalloc_thread_flush();
  kalloc_vmstat v = kt::vmstat_now();
  EXPECT_EQ(v.size, sizeof(v));
  EXPECT_EQ(v.version, (uint32_t)KALLOC_VMSTAT_VERSION);
  EXPECT_EQ(v.nr_migrate_types, 4u);
  uint64_t blocks = 0, mixed = 0, free_by_type = 0;
  for (unsigned mt = 0; mt < KALLOC_MIGRATE_TYPES_MAX; mt++) {
    blocks += v.nr_pageblocks[mt];
    mixed += v.nr_mixed_pageblocks[mt];
    free_by_type += v.nr_free_pages_type[mt];
    EXPECT_LE(v.nr_mixed_pageblocks[mt], v.nr_pageblocks[mt]);
    if (mt >= v.nr_migrate_types) {
      EXPECT_EQ(v.nr_pageblocks[mt], 0u);
    }
  }
  EXPECT_EQ(blocks * 512, v.nr_spanned_pages) << "every 2 MiB pageblock has one type";
  EXPECT_EQ(mixed, v.nr_mixed_total);
  EXPECT_LE(v.nr_mixed_total + v.nr_empty_pageblocks, blocks);
  EXPECT_EQ(free_by_type, v.nr_free_pages);
  EXPECT_LE(v.nr_free_resident, v.nr_free_pages);
  EXPECT_LE(v.nr_free_pages, v.nr_spanned_pages);
  EXPECT_GT(v.nr_pageblocks[KALLOC_MIGRATE_MOVABLE] + v.nr_pageblocks[KALLOC_MIGRATE_RECLAIMABLE] +
                v.nr_pageblocks[KALLOC_MIGRATE_LONGLIVED],
            0u);
  EXPECT_LE(v.fragmentation_score, 100u);
  EXPECT_TRUE(v.fragmentation_index == -1000 ||
              (v.fragmentation_index >= 0 && v.fragmentation_index <= 1000));
  EXPECT_GE(v.pgalloc, 1u);
  EXPECT_EQ(v.slab_classes_shortlived + v.slab_classes_longlived > 0, true);
  if (v.rss_bytes) {
    EXPECT_LE(v.anon_huge_bytes, v.rss_bytes);
    kalloc_stats s;
    kalloc_stats_get(&s);
    EXPECT_GT(v.rss_bytes, s.in_use / 2) << "Rss should cover what is in use";
  }
  for (void *p : ps) free(p);

  // The ABI rule: an older, shorter struct gets only its bytes filled.
  unsigned char buf[sizeof(kalloc_vmstat) + 64];
  memset(buf, 0xEE, sizeof(buf));
  kalloc_vmstat *old = (kalloc_vmstat *)buf;
  uint32_t short_size = (uint32_t)offsetof(kalloc_vmstat, compact_stall);
  old->size = short_size;
  ASSERT_EQ(kalloc_vmstat_get(old), 0);
  EXPECT_EQ(old->size, short_size);
  EXPECT_EQ(old->version, (uint32_t)KALLOC_VMSTAT_VERSION);
  for (size_t i = short_size; i < sizeof(buf); i++) ASSERT_EQ(buf[i], 0xEE) << "byte " << i;
  // A newer, longer struct: kalloc fills what it knows and says so.
  memset(buf, 0xEE, sizeof(buf));
  old->size = sizeof(buf);
  ASSERT_EQ(kalloc_vmstat_get(old), 0);
  EXPECT_EQ(old->size, sizeof(kalloc_vmstat));
  for (size_t i = sizeof(kalloc_vmstat); i < sizeof(buf); i++) ASSERT_EQ(buf[i], 0xEE);
  // Too small or NULL: EINVAL.
  old->size = 4;
  errno = 0;
  EXPECT_EQ(kalloc_vmstat_get(old), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(kalloc_vmstat_get(nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST(Compact, StatsPrintShowsTheViews) {
  char path[] = "/tmp/kalloc_compact_statsXXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  kalloc_compact();
  kalloc_stats_print_fd(fd);
  std::string out;
  char buf[4096];
  lseek(fd, 0, SEEK_SET);
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, (size_t)n);
  close(fd);
  for (const char *want : {"pagetypeinfo", "number of blocks type", "number of mixed blocks",
                           "LongLived", "extfrag_index", "fragmentation score", "compact_stall ",
                           "compact_success ", "compact_fail ", "compact_deferred ", "pgreclaim ",
                           "pgfallback ", "pageblock_claims ", "compact_full ", "slabinfo"})
    EXPECT_NE(out.find(want), std::string::npos) << "missing: " << want << "\n" << out;
  if (access("/proc/self/smaps_rollup", R_OK) == 0) {
    EXPECT_NE(out.find("hugepages: AnonHugePages"), std::string::npos);
  }
}

// Hugepages at the first fault.  Each CompactThpChild test runs in a fresh
// process started by the Compact test after it, with its options in the
// environment and KALLOC_TEST_THP_CHILD naming it (a heap that has not grown
// yet, and the policy's state as a program starts); run directly, they skip.
// This process's THP switch ("THP_enabled:" in /proc/self/status: 0 after
// prctl(PR_SET_THP_DISABLE), inherited across exec); -1 if the kernel does
// not say (before Linux 5.0).
int process_thp_on() {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  int on = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "THP_enabled: %d", &on) == 1) break;
  fclose(f);
  return on;
}

// Whether the system's THP mode (transparent_hugepage/enabled) is madvise.
bool thp_system_madvise() {
  char mode[128] = {};
  int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY);
  if (fd >= 0) {
    if (read(fd, mode, sizeof(mode) - 1) < 0) mode[0] = 0;
    close(fd);
  }
  return strstr(mode, "[madvise]") != nullptr;
}

bool thp_child_setup(const char *name) {
  const char *child = getenv("KALLOC_TEST_THP_CHILD");
  if (!child || strcmp(child, name) != 0) return false;
  return thp_system_madvise() && process_thp_on() != 0;
}

// Fill 96 MiB with 1 KiB objects (slab pageblocks filled densely): about 40
// fresh pageblocks past the 16 MiB a zone holds before any is advised.
struct thp_fill {
  kalloc_vmstat before, after;
  std::vector<void *> ps;
  thp_fill() {
    before = kt::vmstat_now();
    ps.reserve((96u << 20) / 1024);
    for (size_t got = 0; got < (96u << 20); got += 1024) {
      void *p = malloc(1024);
      EXPECT_NE(p, nullptr);
      if (!p) break;
      memset(p, 0x5a, 1024);
      ps.push_back(p);
    }
    after = kt::vmstat_now();
  }
  ~thp_fill() {
    for (void *p : ps) free(p);
  }
  uint64_t advised() const { return after.thp_fault_advised - before.thp_fault_advised; }
  uint64_t slow() const { return after.thp_fault_slow - before.thp_fault_slow; }
  // The fill got at least 32 MiB of hugepages (else the kernel had none at hand).
  bool got_hugepages() const { return after.anon_huge_bytes >= before.anon_huge_bytes + (32u << 20); }
};

#define THP_CHILD(name)                                                             \
  if (!thp_child_setup(name))                                                       \
    GTEST_SKIP() << "run by the Compact test of the same name, in a fresh process, " \
                    "when transparent_hugepage/enabled is madvise and the process has THP on";

// A process with THP turned off (prctl(PR_SET_THP_DISABLE): inherited from
// its parent here; Redis turns it off itself at start) gets no hugepage
// whatever the advice, so kalloc gives none (it advised every fresh
// pageblock and kept dense ones resident as if they were huge), and it
// notices when the program turns THP on again, or off, while it runs (a
// look at most every second).
TEST(CompactThpChild, NoAdviceWhereTheProcessTurnedThpOff) {
  const char *child = getenv("KALLOC_TEST_THP_CHILD");
  if (!child || strcmp(child, "NoAdviceWhereTheProcessTurnedThpOff") != 0)
    GTEST_SKIP() << "run by the Compact test of the same name";
  ASSERT_EQ(process_thp_on(), 0) << "the parent turned THP off before starting this process";
  {
    thp_fill f;
    EXPECT_EQ(f.advised(), 0u) << "THP off: no fresh pageblock is advised";
    EXPECT_EQ(f.after.thp_madvised, f.before.thp_madvised);
  }
  // On again: after a second the next fresh pageblocks are advised.
  ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0), 0);
  usleep(1100 * 1000);
  {
    thp_fill f;
    EXPECT_GE(f.advised(), 24u) << "THP on again: the fresh pageblocks are made huge";
  }
  // Off while it runs (as Redis does).
  ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);
  usleep(1100 * 1000);
  {
    thp_fill f;
    EXPECT_EQ(f.advised(), 0u) << "THP turned off by the program: no more advice";
  }
}

// KALLOC_THP=2: every fresh pageblock of a busy zone is advised, so the heap
// that grows past 16 MiB fills hugepages without a collapse.
TEST(CompactThpChild, FirstFaultAlways) {
  THP_CHILD("FirstFaultAlways");
  thp_fill f;
  EXPECT_GE(f.advised(), 24u) << "96 MiB of new small objects: the fresh pageblocks were made huge";
  EXPECT_EQ(f.slow(), 0u) << "KALLOC_THP=2 does not probe";
  // Most of what was filled is in hugepages (they may have been lacking:
  // then the kernel counted thp_fault_fallback).
  EXPECT_GT(f.after.anon_huge_bytes, f.before.anon_huge_bytes + (32u << 20))
      << "thp_fault_advised " << f.advised();
}

// KALLOC_THP=3 (the default) when every probed fault is cheap (a limit of
// 100 s): the same as KALLOC_THP=2, each fresh pageblock probed.
TEST(CompactThpChild, FirstFaultMeasuredCheap) {
  THP_CHILD("FirstFaultMeasuredCheap");
  thp_fill f;
  EXPECT_GE(f.advised(), 24u) << "cheap faults: every fresh pageblock is made huge";
  EXPECT_EQ(f.slow(), 0u);
  EXPECT_GT(f.after.anon_huge_bytes, f.before.anon_huge_bytes + (32u << 20))
      << "thp_fault_advised " << f.advised();
}

// KALLOC_THP=3 when every probed fault is slow (a limit of 0 us): after the
// first slow probe the next 16 fresh pageblocks stay small, after the second
// 64, so a 40-pageblock growth makes 2 hugepages, not 40.
TEST(CompactThpChild, FirstFaultMeasuredSlowBacksOff) {
  THP_CHILD("FirstFaultMeasuredSlowBacksOff");
  thp_fill f;
  EXPECT_GE(f.advised(), 1u) << "the first fresh pageblock past 16 MiB is probed";
  EXPECT_EQ(f.slow(), f.advised()) << "each probe is slow with a 0 us limit";
  EXPECT_LE(f.advised(), 3u) << "slow faults: fresh pageblocks keep small pages";
}

// KALLOC_THP=3 with cheap faults, then 1/8 of every pageblock freed (whole
// slabs, so the buddy allocator gets free blocks of 16 KiB and more): the
// watermark reclaim that runs during the frees leaves those pieces resident,
// because giving one back would split the pageblock's hugepage.  Without
// that, 82 MiB of hugepages went down to 4.
TEST(CompactThpChild, ReclaimKeepsDenseHugepagesWhole) {
  THP_CHILD("ReclaimKeepsDenseHugepagesWhole");
  thp_fill f;
  ASSERT_GE(f.advised(), 24u);
  if (!f.got_hugepages()) GTEST_SKIP() << "the kernel had no hugepages at hand";
  uint64_t huge_filled = f.after.anon_huge_bytes;
  std::vector<void *> keep;
  size_t freed = 0;
  for (void *p : f.ps) {
    if (((uintptr_t)p & ((2u << 20) - 1)) < (256u << 10)) {
      free(p);
      freed++;
    } else {
      keep.push_back(p);
    }
  }
  f.ps.swap(keep);
  kalloc_thread_flush();
  ASSERT_GT(freed, (size_t)(8u << 20) / 1024) << "at least 8 MiB freed";
  kalloc_vmstat v = kt::vmstat_now();
  printf("freed %zu KiB; hugepages %lu -> %lu MiB; pgreclaim %lu -> %lu\n", freed,
         (unsigned long)(huge_filled >> 20), (unsigned long)(v.anon_huge_bytes >> 20),
         (unsigned long)f.after.pgreclaim_wmark, (unsigned long)v.pgreclaim_wmark);
  EXPECT_GT(v.wmark_low_hits, f.after.wmark_low_hits) << "the frees crossed the low watermark";
  EXPECT_GE(v.anon_huge_bytes, huge_filled - huge_filled / 8)
      << "hugepages split by reclaim: " << (huge_filled >> 20) << " -> "
      << (v.anon_huge_bytes >> 20) << " MiB";
}

// KALLOC_THP=3 with cheap faults, then every pageblock left mostly free
// objects: the 1 KiB objects' slabs are single pages (4 objects); of every 16
// pages the last 4 (an aligned 16 KiB buddy block, which reclaim may take) are
// freed whole, so the buddy allocator sees a quarter of each pageblock free
// (under the keep rule's half), and the other 12 keep one object each (13/16
// of every pageblock free in all).  Watermark reclaim counts the slabs'
// free objects too and splits such hugepages, as the kernel splits underused
// ones, so the free pages are given back.  Without that count they stayed
// resident in whole hugepages until decay.
TEST(CompactThpChild, ReclaimSplitsHugepagesOfMostlyFreeObjects) {
  THP_CHILD("ReclaimSplitsHugepagesOfMostlyFreeObjects");
  thp_fill f;
  ASSERT_GE(f.advised(), 24u);
  if (!f.got_hugepages()) GTEST_SKIP() << "the kernel had no hugepages at hand";
  uint64_t huge_filled = f.after.anon_huge_bytes;
  std::vector<void *> keep;
  size_t freed = 0;
  for (void *p : f.ps) {
    uintptr_t a = (uintptr_t)p;
    if (((a >> 12) & 15) < 12 && (a & 4095) == 0) {
      keep.push_back(p);
    } else {
      free(p);
      freed++;
    }
  }
  f.ps.swap(keep);
  kalloc_thread_flush();
  ASSERT_GT(freed, (size_t)(64u << 20) / 1024) << "at least 64 MiB freed";
  kalloc_vmstat v = kt::vmstat_now();
  printf("freed %zu KiB; hugepages %lu -> %lu MiB; pgreclaim %lu -> %lu\n", freed,
         (unsigned long)(huge_filled >> 20), (unsigned long)(v.anon_huge_bytes >> 20),
         (unsigned long)f.after.pgreclaim_wmark, (unsigned long)v.pgreclaim_wmark);
  EXPECT_GT(v.wmark_low_hits, f.after.wmark_low_hits) << "the frees crossed the low watermark";
  EXPECT_LE(v.anon_huge_bytes, f.before.anon_huge_bytes + huge_filled / 4)
      << "hugepages of mostly free objects kept whole: " << (huge_filled >> 20) << " -> "
      << (v.anon_huge_bytes >> 20) << " MiB";
  EXPECT_GE(v.pgreclaim_wmark - f.after.pgreclaim_wmark, (uint64_t)(16u << 20) / 4096)
      << "the free quarter of the filled pageblocks was given back";
  for (void *p : f.ps) EXPECT_EQ(*(volatile unsigned char *)p, 0x5a);
}

// KALLOC_THP=1: dense pageblocks are collapsed, none is advised at its first
// fault.
TEST(CompactThpChild, CollapseOnlyAdvisesNoFreshPageblock) {
  THP_CHILD("CollapseOnlyAdvisesNoFreshPageblock");
  thp_fill f;
  EXPECT_EQ(f.advised(), 0u);
  EXPECT_EQ(f.slow(), 0u);
}

// No KALLOC_THP: the default is KALLOC_THP=3, so fresh pageblocks are probed.
TEST(CompactThpChild, DefaultProbesFreshPageblocks) {
  THP_CHILD("DefaultProbesFreshPageblocks");
  thp_fill f;
  EXPECT_GE(f.advised(), 1u) << "the default advises (and probes) fresh pageblocks";
  EXPECT_LE(f.slow(), f.advised());
}

// KALLOC_THP=1 (collapses only), large blocks not faulted in when handed
// out: 40 blocks of 1 MiB (dense pageblocks to the free lists) of which the
// program writes one page each, as rsync's receiver writes part of its
// buffers.  The timed scan must not make those pageblocks huge: a collapse
// would make the untouched pages resident (`rsync -a` of 13.5K files peaked
// at 60-108 MB against glibc's 7.6).  Once the blocks are written whole the
// same scan does make them huge, so the first half is not passing only
// because the scan never runs here.
TEST(CompactThpChild, UntouchedLargeBlocksAreNotMadeHuge) {
  THP_CHILD("UntouchedLargeBlocksAreNotMadeHuge");
  constexpr size_t N = 40, SZ = 1u << 20;
  std::vector<unsigned char *> b(N);
  for (auto &p : b) {
    p = (unsigned char *)malloc(kt::opaque(SZ));
    ASSERT_NE(p, nullptr);
    p[0] = 1;
  }
  auto timed_passes = [] {
    for (int i = 0; i < 3; i++) {
      usleep(300 * 1000);     // past a timed pass's due time (250 ms)
      free(malloc(kt::opaque<size_t>(100)));   // slow paths run it
      free(malloc(kt::opaque<size_t>(300000)));
    }
  };
  kalloc_vmstat v0 = kt::vmstat_now();
  timed_passes();
  kalloc_vmstat v1 = kt::vmstat_now();
  ASSERT_GT(v1.decay_runs, v0.decay_runs) << "no timed pass ran";
  EXPECT_EQ(v1.thp_madvised, v0.thp_madvised) << "pageblocks of untouched blocks made huge";
  EXPECT_EQ(v1.thp_collapsed, v0.thp_collapsed) << "pageblocks of untouched blocks collapsed";
  EXPECT_LT(v1.rss_bytes, v0.rss_bytes + (8u << 20))
      << "RSS " << (v0.rss_bytes >> 20) << " -> " << (v1.rss_bytes >> 20) << " MiB";
  for (auto p : b) memset(p, 0x5a, SZ);
  kalloc_vmstat v2 = kt::vmstat_now();
  timed_passes();
  kalloc_vmstat v3 = kt::vmstat_now();
  EXPECT_GE(v3.thp_madvised - v2.thp_madvised, 8u)
      << "written whole, the dense pageblocks are made huge";
  for (auto p : b) {
    EXPECT_EQ(p[SZ - 1], 0x5a);
    free(p);
  }
}

// KALLOC_THP=2 (fresh pageblocks huge at their first fault, unmeasured):
// 40 blocks of 1,500 KiB (order 9, so their fresh pageblocks are candidates)
// written at two places each, as buffers sized for the worst case are.  The
// large blocks' probes see a page or two of 375 written, so no fresh
// pageblock of theirs is made huge: each first touch would map 2 MiB
// (the previous library: 47 MiB peak against 2.9 with small pages).
TEST(CompactThpChild, PartlyWrittenLargeBlocksGetNoFirstFaultHugepage) {
  THP_CHILD("PartlyWrittenLargeBlocksGetNoFirstFaultHugepage");
  constexpr size_t N = 40, SZ = 1500u << 10;
  std::vector<unsigned char *> b(N);
  kalloc_vmstat v0 = kt::vmstat_now();
  for (int round = 0; round < 3; round++) {
    for (auto &p : b) {
      p = (unsigned char *)malloc(kt::opaque(SZ));
      ASSERT_NE(p, nullptr);
      p[0] = 1;
      p[SZ / 2] = 2;
    }
    for (auto p : b) {
      EXPECT_EQ(p[SZ / 2], 2);
      free(p);
    }
    usleep(20 * 1000);      // probes are read at most every 8 ms
  }
  kalloc_vmstat v1 = kt::vmstat_now();
  EXPECT_EQ(v1.thp_fault_advised, v0.thp_fault_advised)
      << "fresh pageblocks of partly written large blocks made huge";
}

// The same blocks written whole, after a few freed blocks have shown it:
// their fresh pageblocks are made huge at the first fault.
TEST(CompactThpChild, LargeBlocksWrittenWholeGetFirstFaultHugepages) {
  THP_CHILD("LargeBlocksWrittenWholeGetFirstFaultHugepages");
  constexpr size_t N = 40, SZ = 1500u << 10;
  for (int i = 0; i < 6; i++) {   // probes: blocks written whole, freed
    unsigned char *p = (unsigned char *)malloc(kt::opaque(SZ));
    ASSERT_NE(p, nullptr);
    memset(p, 0x33, SZ);
    free(p);
    usleep(20 * 1000);
  }
  kalloc_vmstat v0 = kt::vmstat_now();
  std::vector<unsigned char *> b(N);
  for (auto &p : b) {
    p = (unsigned char *)malloc(kt::opaque(SZ));
    ASSERT_NE(p, nullptr);
    memset(p, 0x44, SZ);
  }
  kalloc_vmstat v1 = kt::vmstat_now();
  EXPECT_GE(v1.thp_fault_advised - v0.thp_fault_advised, 4u)
      << "written whole, large blocks' fresh pageblocks get hugepages at the first fault";
  for (auto p : b) {
    EXPECT_EQ(p[SZ - 1], 0x44);
    free(p);
  }
}

void run_thp_child(const char *name, const char *thp, const char *fault_us) {
  std::string filter = std::string("CompactThpChild.") + name;
  EXPECT_EQ(kt::run_self(filter.c_str(), {{"KALLOC_THP", thp},
                                          {"KALLOC_THP_FAULT_US", fault_us},
                                          {"KALLOC_TEST_THP_CHILD", name}}),
            0)
      << "CompactThpChild." << name << " failed";
}

TEST(Compact, FirstFaultAlways) { run_thp_child("FirstFaultAlways", "2", nullptr); }
TEST(Compact, NoAdviceWhereTheProcessTurnedThpOff) {
  if (!thp_system_madvise()) GTEST_SKIP() << "transparent_hugepage/enabled is not madvise";
  if (process_thp_on() != 1) GTEST_SKIP() << "no THP_enabled line, or THP already off here";
  ASSERT_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);
  run_thp_child("NoAdviceWhereTheProcessTurnedThpOff", "2", nullptr);
  prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
}
TEST(Compact, FirstFaultMeasuredCheap) {
  run_thp_child("FirstFaultMeasuredCheap", "3", "100000000");
}
TEST(Compact, FirstFaultMeasuredSlowBacksOff) {
  run_thp_child("FirstFaultMeasuredSlowBacksOff", "3", "0");
}
TEST(Compact, ReclaimKeepsDenseHugepagesWhole) {
  run_thp_child("ReclaimKeepsDenseHugepagesWhole", "3", "100000000");
}
TEST(Compact, ReclaimSplitsHugepagesOfMostlyFreeObjects) {
  run_thp_child("ReclaimSplitsHugepagesOfMostlyFreeObjects", "3", "100000000");
}
TEST(Compact, CollapseOnlyAdvisesNoFreshPageblock) {
  run_thp_child("CollapseOnlyAdvisesNoFreshPageblock", "1", nullptr);
}
TEST(Compact, UntouchedLargeBlocksAreNotMadeHuge) {
  EXPECT_EQ(kt::run_self("CompactThpChild.UntouchedLargeBlocksAreNotMadeHuge",
                         {{"KALLOC_THP", "1"},
                          {"KALLOC_FAULT_AROUND", "0"},
                          {"KALLOC_TEST_THP_CHILD", "UntouchedLargeBlocksAreNotMadeHuge"}}),
            0)
      << "CompactThpChild.UntouchedLargeBlocksAreNotMadeHuge failed";
}
TEST(Compact, PartlyWrittenLargeBlocksGetNoFirstFaultHugepage) {
  run_thp_child("PartlyWrittenLargeBlocksGetNoFirstFaultHugepage", "2", nullptr);
}
TEST(Compact, LargeBlocksWrittenWholeGetFirstFaultHugepages) {
  run_thp_child("LargeBlocksWrittenWholeGetFirstFaultHugepages", "2", nullptr);
}
TEST(Compact, DefaultProbesFreshPageblocks) {
  run_thp_child("DefaultProbesFreshPageblocks", nullptr, nullptr);
}
