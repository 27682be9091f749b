// Fault-around for large blocks (malloc/large.h) through the public API: a
// large block that reads zero (given back by malloc_trim(0)) is faulted in
// with one call when it is handed out, but only once probes (blocks left to
// the program's faults, read with mincore at their free) showed the program
// touches its large blocks whole; it stops when they show it does not; never
// with KALLOC_FAULT_AROUND=0 or under a seccomp filter that may kill on
// mincore; and threads churning large blocks keep their contents.  Each
// test runs in a fresh process (run_self): what the probes read is
// process-wide.
#include <gtest/gtest.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

constexpr size_t kBlock = 256 * 1024;   // a large block of 64 pages
constexpr size_t kPages = kBlock / 4096;

// Pages of [p, p + len) that are resident (p page-aligned).
size_t resident_pages(void *p, size_t len) {
  size_t n = (len + 4095) / 4096;
  std::vector<unsigned char> vec(n);
  if (mincore(p, len, vec.data()) != 0) return (size_t)-1;
  size_t r = 0;
  for (unsigned char c : vec) r += c & 1;
  return r;
}

// One round: a block that reads zero (everything free was given back), its
// residency right after malloc, then `touch` pages of it written, checked,
// freed and given back; then a pause longer than the probes' rate limit
// (one read per 8 ms).  Returns the pages resident right after malloc.
size_t round_trip(size_t touch, uint32_t seed) {
  void *p = malloc(kBlock);
  EXPECT_NE(p, nullptr);
  if (!p) return 0;
  EXPECT_TRUE(kt::is_aligned(p, 4096)) << "a page multiple has no colour";
  size_t res = resident_pages(p, kBlock);
  unsigned char *b = static_cast<unsigned char *>(p);
  for (size_t i = 0; i < touch; i++) kt::fill(b + i * 4096, 4096, seed + (uint32_t)i);
  for (size_t i = 0; i < touch; i++)
    EXPECT_EQ(kt::check(b + i * 4096, 4096, seed + (uint32_t)i), 4096u) << "page " << i;
  free(p);
  malloc_trim(0);
  usleep(12000);
  return res;
}

// A probe made and freed at once: the probes' reads wait LARGE_PROBE_MIN_MS
// from the first probe of the process (a short process reads none), so a
// test that frees its probe at once makes one first.
void first_probe() {
  malloc_trim(0);
  void *volatile p = malloc(kBlock);
  EXPECT_NE(p, nullptr);
  free(p);
}

// Whether the system maps hugepages at any fault ("always"): then a fault
// may map 2 MiB anywhere kalloc has not said MADV_NOHUGEPAGE, so kalloc
// neither faults blocks in ahead nor reads probes there.
bool thp_always() {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f) return false;
  char buf[128] = {0};
  bool always = fgets(buf, sizeof buf, f) && strstr(buf, "[always]");
  fclose(f);
  return always;
}

// Runs FaultAround.<test> again in a fresh process with KALLOC_FAULT_AROUND
// set to `option` (nullptr: unset, the default) and checks it passed: true
// in that child, which runs the test, false in the parent.
bool in_fresh_child(const char *test, const char *option) {
  if (getenv("KT_FA_CHILD")) return true;
  std::string filter = std::string("FaultAround.") + test;
  EXPECT_EQ(kt::run_self(filter.c_str(), {{"KT_FA_CHILD", "1"}, {"KALLOC_FAULT_AROUND", option}}), 0)
      << "the child running " << filter << " failed";
  return false;
}

// kalloc's counters just before and just after free(p).
struct FreeSeen {
  kalloc_vmstat v0, v1;
  kalloc_stats s0, s1;
};

FreeSeen free_and_count(void *p) {
  FreeSeen f{};
  f.v0 = kt::vmstat_now();
  EXPECT_EQ(kalloc_stats_get(&f.s0), 0);
  free(p);
  f.v1 = kt::vmstat_now();
  EXPECT_EQ(kalloc_stats_get(&f.s1), 0);
  return f;
}

}  // namespace

TEST(FaultAround, WholeBlocksAreFaultedInOnceProbesShowThem) {
  if (!in_fresh_child("WholeBlocksAreFaultedInOnceProbesShowThem", nullptr)) return;
  if (kt::seccomp_filtered()) GTEST_SKIP() << "under a seccomp filter kalloc reads no probe";
  if (thp_always()) GTEST_SKIP() << "transparent hugepages are `always`: no block is faulted in ahead";
  // Before any probe is read, a block that reads zero is left to the faults.
  kalloc_vmstat v0 = kt::vmstat_now();
  ASSERT_GE(v0.version, 11u);
  size_t first = round_trip(kPages, 1);
  EXPECT_LE(first, 1u) << "a block reading zero was faulted in before any probe was read";
  for (int i = 0; i < 7; i++) round_trip(kPages, 100 + i);
  kalloc_vmstat v1 = kt::vmstat_now();
  EXPECT_GE(v1.large_probes_read, 4u);
  EXPECT_GE(v1.large_probe_pages, 4 * kPages);
  EXPECT_EQ(v1.large_probe_touched, v1.large_probe_pages) << "every probe was written whole";
  // Now 7 blocks of every 8 are faulted in when handed out.
  size_t whole = 0;
  for (int i = 0; i < 16; i++) whole += round_trip(kPages, 1000 + i) == kPages;
  kalloc_vmstat v2 = kt::vmstat_now();
  std::printf("[ figures  ] probes read %lu (%lu of %lu pages touched); then %zu of 16 blocks "
              "resident when handed out, %lu pages faulted in ahead\n",
              (unsigned long)v1.large_probes_read, (unsigned long)v1.large_probe_touched,
              (unsigned long)v1.large_probe_pages, whole,
              (unsigned long)(v2.large_fault_around - v1.large_fault_around));
  EXPECT_GE(whole, 12u);
  EXPECT_LE(whole, 15u) << "every eighth block stays a probe";
  EXPECT_GE(v2.large_fault_around - v1.large_fault_around, whole * kPages);
}

TEST(FaultAround, BlocksTouchedInPartStayLazy) {
  if (!in_fresh_child("BlocksTouchedInPartStayLazy", nullptr)) return;
  if (kt::seccomp_filtered()) GTEST_SKIP() << "under a seccomp filter kalloc reads no probe";
  if (thp_always()) GTEST_SKIP() << "transparent hugepages are `always`: no probe is read";
  size_t most = 0;
  for (int i = 0; i < 24; i++) {
    size_t r = round_trip(2, 10 * i);   // a buffer sized for the worst case, 2 pages used
    if (r > most) most = r;
  }
  kalloc_vmstat v = kt::vmstat_now();
  std::printf("[ figures  ] probes read %lu (%lu of %lu pages touched), at most %zu pages "
              "resident when handed out\n",
              (unsigned long)v.large_probes_read, (unsigned long)v.large_probe_touched,
              (unsigned long)v.large_probe_pages, most);
  EXPECT_GE(v.large_probes_read, 8u);
  EXPECT_LE(v.large_probe_touched * 16, v.large_probe_pages);
  EXPECT_EQ(v.large_fault_around, 0u) << "blocks the program leaves mostly untouched were faulted in";
  EXPECT_LE(most, 2u);
}

TEST(FaultAround, TurnsOffWhenBlocksGoUntouched) {
  if (!in_fresh_child("TurnsOffWhenBlocksGoUntouched", nullptr)) return;
  if (kt::seccomp_filtered()) GTEST_SKIP() << "under a seccomp filter kalloc reads no probe";
  if (thp_always()) GTEST_SKIP() << "transparent hugepages are `always`: no block is faulted in ahead";
  for (int i = 0; i < 8; i++) round_trip(kPages, i);
  size_t whole = 0;
  for (int i = 0; i < 8; i++) whole += round_trip(kPages, 100 + i) == kPages;
  ASSERT_GE(whole, 5u) << "fault-around did not start";
  // The program turns to using 1 page of each block: the probes (one block
  // in 8) show it, and fault-around stops.
  int last_whole = -1;
  for (int i = 0; i < 64; i++)
    if (round_trip(1, 1000 + i) == kPages) last_whole = i;
  kalloc_vmstat v = kt::vmstat_now();
  std::printf("[ figures  ] the last block faulted in ahead was round %d of 64 with 1 page "
              "used; probes read %lu (%lu of %lu pages touched)\n",
              last_whole, (unsigned long)v.large_probes_read, (unsigned long)v.large_probe_touched,
              (unsigned long)v.large_probe_pages);
  EXPECT_LT(last_whole, 32) << "fault-around went on faulting in blocks the program leaves untouched";
  // And the last 16 rounds were all left to the faults.
  size_t late = 0;
  for (int i = 0; i < 16; i++) late += round_trip(1, 5000 + i) > 1;
  EXPECT_EQ(late, 0u);
}

// A probe the program never touched (a buffer sized for the worst case and
// not used: `cat` of an empty file) goes back at its free, read once: no
// reclaim pass reads it again.  The previous library put it on the lists as
// resident, so the pass its free started read it and gave it back.
TEST(FaultAround, AnUntouchedProbeGoesBackAtItsFree) {
  if (!in_fresh_child("AnUntouchedProbeGoesBackAtItsFree", nullptr)) return;
  if (kt::seccomp_filtered()) GTEST_SKIP() << "under a seccomp filter kalloc reads no probe";
  if (thp_always()) GTEST_SKIP() << "transparent hugepages are `always`: no probe is read";
  first_probe();
  malloc_trim(0);            // every free block reads zero: the next large block is a probe
  usleep(12000);             // past the probes' rate limit
  void *p = malloc(kBlock);
  ASSERT_NE(p, nullptr);
  const FreeSeen f = free_and_count(p);
  const kalloc_vmstat &v0 = f.v0, &v1 = f.v1;
  const kalloc_stats &s0 = f.s0, &s1 = f.s1;
  std::printf("[ figures  ] at the free: probes read +%lu, residency reads +%lu, pages given back +%lu\n",
              (unsigned long)(v1.large_probes_read - v0.large_probes_read),
              (unsigned long)(v1.residency_reads - v0.residency_reads),
              (unsigned long)(s1.reclaimed_pages - s0.reclaimed_pages));
  EXPECT_EQ(v1.large_probes_read, v0.large_probes_read + 1) << "the block was a probe, read at its free";
  EXPECT_EQ(v1.large_probe_touched, v0.large_probe_touched) << "nothing of it was touched";
  EXPECT_EQ(v1.residency_reads, v0.residency_reads) << "a reclaim pass read the block again";
  EXPECT_GE(s1.reclaimed_pages - s0.reclaimed_pages, kPages) << "the block was not given back at its free";
  // Handed out again, it reads zero (calloc) and keeps what is written.
  unsigned char *q = static_cast<unsigned char *>(calloc(1, kBlock));
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(kt::all_bytes_are(q, kBlock, 0));
  kt::fill(q, kBlock, 7);
  EXPECT_EQ(kt::check(q, kBlock, 7), kBlock);
  free(q);
}

// The same for a probe written in part (a buffer of which 2 of 64 pages
// were used: `cat` of a small file): its pages go to the zone counted by what
// the probe read, so no reclaim pass reads them again.  With a 64 KiB low
// watermark (KALLOC_FREE_HIGH) the previous library counted all 64 pages,
// crossed it and ran a pass that read the block.
TEST(FaultAround, AProbeWrittenInPartIsCountedByItsRead) {
  if (!getenv("KT_FA_CHILD")) {
    EXPECT_EQ(kt::run_self("FaultAround.AProbeWrittenInPartIsCountedByItsRead",
                           {{"KT_FA_CHILD", "1"}, {"KALLOC_FREE_HIGH", "64K"}}),
              0);
    return;
  }
  if (kt::seccomp_filtered()) GTEST_SKIP() << "under a seccomp filter kalloc reads no probe";
  if (thp_always()) GTEST_SKIP() << "transparent hugepages are `always`: no probe is read";
  first_probe();
  malloc_trim(0);
  usleep(12000);
  unsigned char *p = static_cast<unsigned char *>(malloc(kBlock));
  ASSERT_NE(p, nullptr);
  kt::fill(p, 4096, 1);
  kt::fill(p + kBlock / 2, 4096, 2);
  EXPECT_EQ(kt::check(p + kBlock / 2, 4096, 2), 4096u);
  const FreeSeen f = free_and_count(p);
  const kalloc_vmstat &v0 = f.v0, &v1 = f.v1;
  const kalloc_stats &s0 = f.s0, &s1 = f.s1;
  std::printf("[ figures  ] at the free: probes read +%lu (%lu pages touched), residency reads +%lu, "
              "free resident pages %+ld\n",
              (unsigned long)(v1.large_probes_read - v0.large_probes_read),
              (unsigned long)(v1.large_probe_touched - v0.large_probe_touched),
              (unsigned long)(v1.residency_reads - v0.residency_reads),
              (long)(s1.free_resident_pages - s0.free_resident_pages));
  EXPECT_EQ(v1.large_probes_read, v0.large_probes_read + 1) << "the block was a probe, read at its free";
  EXPECT_EQ(v1.large_probe_touched - v0.large_probe_touched, 2u);
  EXPECT_EQ(v1.residency_reads, v0.residency_reads) << "a reclaim pass read the block again";
  EXPECT_LE((long)(s1.free_resident_pages - s0.free_resident_pages), 2L)
      << "the free counted more resident pages than the probe read";
}

TEST(FaultAround, OptionOffNeverFaultsAhead) {
  if (!in_fresh_child("OptionOffNeverFaultsAhead", "0")) return;
  size_t most = 0;
  for (int i = 0; i < 16; i++) {
    size_t r = round_trip(kPages, 10 * i);
    if (r > most) most = r;
  }
  kalloc_vmstat v = kt::vmstat_now();
  EXPECT_EQ(v.large_fault_around, 0u);
  EXPECT_EQ(v.large_probes_read, 0u) << "with the option off no probe is read either";
  EXPECT_LE(most, 1u);
}

TEST(FaultAround, AFilterThatKillsMincoreIsNoHarm) {
  // A sandbox that kills on mincore (installed after start-up, as OpenSSH's
  // and Chromium's are): no probe is read, so no block is faulted in ahead,
  // and the child lives.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!kt::seccomp_kill_on({__NR_mincore})) _exit(0);   // the kernel refuses filters: nothing to test
    int bad = 0;
    for (int i = 0; i < 16; i++) {
      void *p = malloc(kBlock);
      if (!p) _exit(3);
      memset(p, i + 1, kBlock);
      for (size_t k = 0; k < kBlock; k += 4096)
        if (static_cast<unsigned char *>(p)[k] != (unsigned char)(i + 1)) bad = 1;
      free(p);
      malloc_trim(0);
      usleep(12000);
    }
    kalloc_vmstat v;
    memset(&v, 0, sizeof(v));
    v.size = sizeof(v);
    if (kalloc_vmstat_get(&v) != 0) _exit(4);
    if (bad) _exit(5);
    _exit(v.large_probes_read == 0 && v.large_fault_around == 0 ? 0 : 6);
  }
  kt::expect_sandboxed_child_exits_cleanly(
      pid, "3: malloc failed, 4: no vmstat, 5: contents lost, 6: a probe was read under the filter");
}

TEST(FaultAround, ThreadsKeepTheirContents) {
  // Four threads churn large blocks of 40 KiB .. 1 MiB, each written whole
  // with its own pattern and checked before its free, while one of them
  // gives everything free back now and then (so blocks read zero again):
  // fault-around, probes and their reads run concurrently.
  if (!in_fresh_child("ThreadsKeepTheirContents", nullptr)) return;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([t, &bad] {
      uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
      struct blk { void *p; size_t n; uint32_t seed; };
      std::vector<blk> live;
      for (int i = 0; i < 600; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if (live.size() > 8 || (!live.empty() && (x & 3) == 0)) {
          size_t k = (x >> 8) % live.size();
          if (kt::check_sparse(live[k].p, live[k].n, live[k].seed, true) != live[k].n) bad++;
          free(live[k].p);
          live[k] = live.back();
          live.pop_back();
        }
        size_t n = 40 * 1024 + (x >> 20) % (1024 * 1024 - 40 * 1024);
        void *p = malloc(n);
        if (!p) { bad++; continue; }
        memset(p, 0x5a, n);   // written whole, as the probes see it
        kt::fill_sparse(p, n, (uint32_t)(t * 100000 + i));
        live.push_back({p, n, (uint32_t)(t * 100000 + i)});
        if (t == 0 && i % 50 == 0) malloc_trim(0);
        if (i % 40 == 0) usleep(9000);
      }
      for (blk &b : live) {
        if (kt::check_sparse(b.p, b.n, b.seed, true) != b.n) bad++;
        free(b.p);
      }
    });
  for (auto &th : threads) th.join();
  kalloc_vmstat v = kt::vmstat_now();
  std::printf("[ figures  ] %lu pages faulted in ahead, %lu probes read (%lu of %lu pages touched)\n",
              (unsigned long)v.large_fault_around, (unsigned long)v.large_probes_read,
              (unsigned long)v.large_probe_touched, (unsigned long)v.large_probe_pages);
  EXPECT_EQ(bad.load(), 0) << "a block lost its contents";
  if (!kt::seccomp_filtered() && !thp_always()) {
    EXPECT_GT(v.large_fault_around, 0u) << "fault-around never ran";
  }
}

TEST(FaultAround, AFilterRefusingPopulateIsNoHarm) {
  // KALLOC_TRUST_SECCOMP=1 (probes are read under the filter) and a filter
  // that answers MADV_POPULATE_WRITE with EPERM: the probes turn
  // fault-around on, its first call is refused, and from then on blocks are
  // left to the program's faults with no probe left (nothing to learn for).
  if (!getenv("KT_FA_CHILD")) {
    EXPECT_EQ(kt::run_self("FaultAround.AFilterRefusingPopulateIsNoHarm",
                           {{"KT_FA_CHILD", "1"}, {"KALLOC_FAULT_AROUND", nullptr},
                            {"KALLOC_TRUST_SECCOMP", "1"}}),
              0);
    return;
  }
  if (thp_always()) GTEST_SKIP() << "transparent hugepages are `always`: no probe is read";
  if (!kt::seccomp_errno_on_madvise(23 /* MADV_POPULATE_WRITE */, EPERM))
    GTEST_SKIP() << "the kernel refuses seccomp filters";
  for (int i = 0; i < 8; i++) round_trip(kPages, i);
  kalloc_vmstat v1 = kt::vmstat_now();
  ASSERT_GE(v1.large_probes_read, 4u) << "the probes were not read under a trusted filter";
  size_t whole = 0;
  for (int i = 0; i < 24; i++) whole += round_trip(kPages, 100 + i) == kPages;
  kalloc_vmstat v2 = kt::vmstat_now();
  std::printf("[ figures  ] probes read %lu then %lu; %zu of 24 blocks resident when handed out\n",
              (unsigned long)v1.large_probes_read, (unsigned long)v2.large_probes_read, whole);
  EXPECT_EQ(v2.large_fault_around, 0u);
  EXPECT_EQ(whole, 0u);
  EXPECT_LE(v2.large_probes_read, v1.large_probes_read + 1) << "probes went on being read";
  EXPECT_GE(v2.large_probes_read, 4u);
}
