// Restartable sequences on per-CPU pointer arrays (platform/rseq.h):
// single-thread semantics (LIFO, capacity, stop word), then many more
// threads than CPUs pushing and popping tokens while a drainer stops the
// blocks and empties them: every token must be found exactly once at the
// end (a sequence that committed after a preemption or a drain would lose
// or duplicate one).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "platform/cpu.h"
#include "platform/rseq.h"

using namespace kalloc;

namespace {

constexpr unsigned kShift = 12;      // 4 KiB per CPU block
constexpr unsigned kOff = 64;        // the array's offset in a block
constexpr unsigned kCap = 100;       // slots used (fits in the block)

struct Region {
  char* base = nullptr;
  size_t len = 0;
  Region() {
    len = (size_t)nr_cpu_ids() << kShift;
    base = (char*)mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  ~Region() { munmap(base, len); }
  uint32_t* stop(unsigned cpu) { return (uint32_t*)(base + ((size_t)cpu << kShift)); }
  rseq_percpu_array* arr(unsigned cpu) {
    return (rseq_percpu_array*)(base + ((size_t)cpu << kShift) + kOff);
  }
};

bool Usable() { return rseq_percpu_init() && rseq_thread_registered(); }

}  // namespace

TEST(Rseq, PushPopIsLifoWithinCapacity) {
  if (!Usable()) GTEST_SKIP() << "no rseq registration or membarrier rseq fence here";
  Region r;
  void* in[150];
  for (unsigned i = 0; i < 150; i++) in[i] = (void*)(uintptr_t)(0x1000 + i);
  // Pushing 150 where 100 fit pushes 100 (counts are per CPU; this thread
  // may migrate between calls, so every later check sums over all CPUs).
  unsigned pushed = rseq_percpu_push(r.base, nr_cpu_ids(), kShift, kOff, in, 150, kCap);
  ASSERT_EQ(pushed, kCap);
  unsigned total = 0;
  for (unsigned c = 0; c < nr_cpu_ids(); c++) total += r.arr(c)->count;
  EXPECT_EQ(total, kCap);
  // Pinned to one CPU, a pop returns the last pushed first.
  cpu_set_t one, old;
  sched_getaffinity(0, sizeof(old), &old);
  unsigned cpu = rseq_current_cpu();
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  for (unsigned c = 0; c < nr_cpu_ids(); c++) r.arr(c)->count = 0;
  ASSERT_EQ(rseq_percpu_push(r.base, nr_cpu_ids(), kShift, kOff, in, 5, kCap), 5u);
  void* out[10] = {};
  ASSERT_EQ(rseq_percpu_pop(r.base, nr_cpu_ids(), kShift, kOff, out, 3), 3u);
  EXPECT_EQ(out[0], in[4]);
  EXPECT_EQ(out[1], in[3]);
  EXPECT_EQ(out[2], in[2]);
  ASSERT_EQ(rseq_percpu_pop(r.base, nr_cpu_ids(), kShift, kOff, out, 10), 2u);
  EXPECT_EQ(out[0], in[1]);
  EXPECT_EQ(out[1], in[0]);
  EXPECT_EQ(rseq_percpu_pop(r.base, nr_cpu_ids(), kShift, kOff, out, 10), 0u);
  // A stopped block: nothing moves.
  ASSERT_EQ(rseq_percpu_push(r.base, nr_cpu_ids(), kShift, kOff, in, 5, kCap), 5u);
  *r.stop(cpu) = 1;
  EXPECT_EQ(rseq_percpu_pop(r.base, nr_cpu_ids(), kShift, kOff, out, 10), RSEQ_PERCPU_STOPPED);
  EXPECT_EQ(rseq_percpu_push(r.base, nr_cpu_ids(), kShift, kOff, in, 5, kCap), RSEQ_PERCPU_STOPPED);
  EXPECT_EQ(r.arr(cpu)->count, 5u);
  *r.stop(cpu) = 0;
  // A CPU at or past the region's end (hot-added after it was mapped):
  // nothing moves, nothing is written past the region.
  EXPECT_EQ(rseq_percpu_push(r.base, cpu, kShift, kOff, in, 5, kCap), RSEQ_PERCPU_STOPPED);
  EXPECT_EQ(rseq_percpu_pop(r.base, cpu, kShift, kOff, out, 5), RSEQ_PERCPU_STOPPED);
  EXPECT_EQ(r.arr(cpu)->count, 5u);
  // A full array takes nothing.
  r.arr(cpu)->count = kCap;
  EXPECT_EQ(rseq_percpu_push(r.base, nr_cpu_ids(), kShift, kOff, in, 5, kCap), 0u);
  sched_setaffinity(0, sizeof(old), &old);
}

TEST(Rseq, TokensSurvivePreemptionMigrationAndDrains) {
  if (!Usable()) GTEST_SKIP() << "no rseq registration or membarrier rseq fence here";
  Region r;
  constexpr unsigned kThreads = 16, kTokensPer = 200, kRounds = 200000;
  const unsigned ncpu = nr_cpu_ids();
  std::atomic<bool> stop{false};
  std::vector<std::vector<uintptr_t>> held(kThreads);
  std::vector<uintptr_t> drained;
  std::atomic<unsigned> drains{0};
  std::thread drainer([&] {
    while (!stop.load()) {
      for (unsigned c = 0; c < ncpu; c++) __atomic_store_n(r.stop(c), 1, __ATOMIC_SEQ_CST);
      ASSERT_TRUE(rseq_fence());
      for (unsigned c = 0; c < ncpu; c++) {
        rseq_percpu_array* a = r.arr(c);
        for (unsigned i = 0; i < a->count; i++) drained.push_back((uintptr_t)a->slots[i]);
        a->count = 0;
      }
      for (unsigned c = 0; c < ncpu; c++) __atomic_store_n(r.stop(c), 0, __ATOMIC_SEQ_CST);
      drains++;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < kThreads; t++) {
    ts.emplace_back([&, t] {
      std::vector<uintptr_t>& mine = held[t];
      for (unsigned i = 0; i < kTokensPer; i++) mine.push_back(((uintptr_t)t << 32) | (i + 1));
      unsigned seed = t * 7919 + 1;
      void* buf[32];
      for (unsigned round = 0; round < kRounds; round++) {
        seed = seed * 1103515245 + 12345;
        unsigned n = 1 + (seed >> 16) % 32;
        if ((seed >> 8) & 1) {
          n = n < mine.size() ? n : (unsigned)mine.size();
          if (!n) continue;
          for (unsigned i = 0; i < n; i++) buf[i] = (void*)mine[mine.size() - n + i];
          unsigned got = rseq_percpu_push(r.base, nr_cpu_ids(), kShift, kOff, buf, n, kCap);
          if (got == RSEQ_PERCPU_STOPPED) continue;
          mine.resize(mine.size() - n);  // the first `got` of buf went in, the rest come back
          for (unsigned i = got; i < n; i++) mine.push_back((uintptr_t)buf[i]);
        } else {
          unsigned got = rseq_percpu_pop(r.base, nr_cpu_ids(), kShift, kOff, buf, n);
          if (got == RSEQ_PERCPU_STOPPED) continue;
          for (unsigned i = 0; i < got; i++) mine.push_back((uintptr_t)buf[i]);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  stop = true;
  drainer.join();
  std::vector<uintptr_t> all = drained;
  for (auto& h : held) all.insert(all.end(), h.begin(), h.end());
  for (unsigned c = 0; c < ncpu; c++)
    for (unsigned i = 0; i < r.arr(c)->count; i++) all.push_back((uintptr_t)r.arr(c)->slots[i]);
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), (size_t)kThreads * kTokensPer);
  for (size_t i = 1; i < all.size(); i++) ASSERT_NE(all[i], all[i - 1]) << "token duplicated";
  EXPECT_GT(drains.load(), 0u);
}
