// Concurrency: multi-threaded stress with verified contents, cross-thread
// frees (producer/consumer, and after the allocating threads have exited),
// and thread churn with pthread_key / thread_local destructors that use the
// allocator after its per-thread cleanup may have run.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;

struct Block {
  void *p = nullptr;
  size_t n = 0;
  uint32_t seed = 0;
};

void FillBlock(const Block &b) {
  if (b.n > 64 * KiB)
    kt::fill_sparse(b.p, b.n, b.seed);
  else
    kt::fill(b.p, b.n, b.seed);
}

// Checks the first n bytes (n <= b.n) of a block filled by FillBlock.
bool CheckBlock(const Block &b, size_t n) {
  if (b.n > 64 * KiB) return kt::check_sparse(b.p, n, b.seed, n == b.n) == n;
  return kt::check(b.p, n, b.seed) == n;
}

size_t RandomSize(kt::Rng &rng) {
  uint64_t r = rng.below(1000);
  if (r < 700) return 1 + rng.below(256);
  if (r < 900) return 257 + rng.below(8 * KiB);
  if (r < 990) return 8 * KiB + rng.below(56 * KiB + 1);
  return 1 * MiB;
}

kalloc_stats Stats() {
  kalloc_stats s{};
  kalloc_stats_get(&s);
  return s;
}

// ---------------------------------------------------------------------------
// (a) multi-threaded stress
// ---------------------------------------------------------------------------

void StressThread(int id, int ops, std::atomic<int> *errors) {
  kt::Rng rng(static_cast<uint64_t>(id) * 7919 + 1);
  constexpr int kSlots = 512;
  std::vector<Block> slots(kSlots);
  uint32_t seed = static_cast<uint32_t>(id) << 24;
  for (int op = 0; op < ops; ++op) {
    Block &b = slots[rng.below(kSlots)];
    if (!b.p) {
      size_t n = RandomSize(rng);
      void *p = nullptr;
      switch (rng.below(5)) {
        case 0:
          p = calloc(1, n);
          if (p && !kt::all_bytes_are(p, n, 0)) errors->fetch_add(1);
          break;
        case 1:
          p = memalign(64, n);
          if (p && !kt::is_aligned(p, 64)) errors->fetch_add(1);
          break;
        case 2:
          p = realloc(nullptr, n);
          break;
        default:
          p = malloc(n);
          break;
      }
      if (!p || !kt::is_aligned(p, 16) || malloc_usable_size(p) < n) {
        errors->fetch_add(1);
        continue;
      }
      b = Block{p, n, ++seed};
      FillBlock(b);
    } else {
      if (!CheckBlock(b, b.n)) errors->fetch_add(1);
      if (rng.below(2) == 0) {
        free(b.p);
        b = Block{};
      } else {
        size_t n = RandomSize(rng);
        void *r = realloc(b.p, n);
        if (!r) {
          errors->fetch_add(1);
          continue;
        }
        b.p = r;
        if (!CheckBlock(b, std::min(n, b.n))) errors->fetch_add(1);
        b.n = n;
        b.seed = ++seed;
        FillBlock(b);
      }
    }
  }
  for (Block &b : slots) {
    if (b.p) {
      if (!CheckBlock(b, b.n)) errors->fetch_add(1);
      free(b.p);
    }
  }
}

TEST(Threads, StressEightThreadsVerifiedContents) {
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) ts.emplace_back(StressThread, t, 120000, &errors);
  for (auto &t : ts) t.join();
  EXPECT_EQ(errors.load(), 0) << "corrupted, misaligned or failed allocations";
}

// ---------------------------------------------------------------------------
// (b) producer / consumer cross-thread frees
// ---------------------------------------------------------------------------

class BlockQueue {
 public:
  explicit BlockQueue(size_t cap) : cap_(cap) {}
  void Push(const Block &b) {
    std::unique_lock<std::mutex> l(m_);
    not_full_.wait(l, [&] { return q_.size() < cap_; });
    q_.push_back(b);
    not_empty_.notify_one();
  }
  // Returns false when closed and drained.
  bool Pop(Block *out) {
    std::unique_lock<std::mutex> l(m_);
    not_empty_.wait(l, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    *out = q_.front();
    q_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void Close() {
    std::lock_guard<std::mutex> l(m_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Block> q_;
  size_t cap_;
  bool closed_ = false;
};

TEST(Threads, ProducerConsumerCrossThreadFree) {
  BlockQueue q(4096);
  std::atomic<int> errors{0};
  std::atomic<long> consumed{0};
  constexpr int kPerProducer = 60000;
  kalloc_thread_flush();
  const kalloc_stats before = Stats();
  std::vector<std::thread> producers, consumers;
  for (int c = 0; c < 4; ++c) {
    consumers.emplace_back([&, c] {
      kt::Rng rng(1000 + static_cast<uint64_t>(c));
      Block b;
      while (q.Pop(&b)) {
        if (!CheckBlock(b, b.n)) errors.fetch_add(1);
        if (rng.below(8) == 0) {
          // realloc of a block another thread allocated.
          size_t n = RandomSize(rng);
          void *r = realloc(b.p, n);
          if (!r) {
            errors.fetch_add(1);
            continue;
          }
          b.p = r;
          if (!CheckBlock(b, std::min(n, b.n))) errors.fetch_add(1);
          b.n = n;
        }
        free(b.p);
        consumed.fetch_add(1);
      }
    });
  }
  for (int p = 0; p < 4; ++p) {
    producers.emplace_back([&, p] {
      kt::Rng rng(static_cast<uint64_t>(p) + 1);
      for (int i = 0; i < kPerProducer; ++i) {
        size_t n = RandomSize(rng);
        if (n == MiB && rng.below(4) != 0) n = 100;  // fewer big blocks here
        Block b{malloc(n), n, static_cast<uint32_t>(p * kPerProducer + i)};
        if (!b.p) {
          errors.fetch_add(1);
          continue;
        }
        FillBlock(b);
        q.Push(b);
      }
    });
  }
  for (auto &t : producers) t.join();
  q.Close();
  for (auto &t : consumers) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(consumed.load(), 4L * kPerProducer);
  kalloc_thread_flush();
  const kalloc_stats after = Stats();
  // Blocks freed by other threads must be credited back, not leaked.
  EXPECT_LT(after.in_use, before.in_use + 16 * MiB)
      << "in_use " << before.in_use << " -> " << after.in_use;
}

TEST(Threads, FreeAfterAllocatingThreadsExited) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::vector<Block>> blocks(kThreads);
  kalloc_thread_flush();
  const kalloc_stats before = Stats();
  for (int round = 0; round < 2; ++round) {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        kt::Rng rng(static_cast<uint64_t>(t) * 31 + static_cast<uint64_t>(round));
        auto &v = blocks[static_cast<size_t>(t)];
        v.reserve(kPerThread);
        for (int i = 0; i < kPerThread; ++i) {
          size_t n = 1 + rng.below(rng.below(10) == 0 ? 20000 : 300);
          Block b{malloc(n), n, static_cast<uint32_t>(t * kPerThread + i)};
          if (b.p) FillBlock(b);
          v.push_back(b);
        }
        // Free a few of our own so the thread's caches are non-trivial at exit.
        for (int i = 0; i < kPerThread; i += 10) {
          free(v[static_cast<size_t>(i)].p);
          v[static_cast<size_t>(i)].p = nullptr;
        }
      });
    }
    for (auto &t : ts) t.join();  // all allocating threads are gone now

    // Free from the main thread and from a set of new threads.
    std::atomic<int> errors{0};
    std::vector<std::thread> freers;
    for (int t = 0; t < kThreads; ++t) {
      if (t % 2 == 0) continue;
      freers.emplace_back([&, t] {
        for (Block &b : blocks[static_cast<size_t>(t)]) {
          if (!b.p) continue;
          if (!CheckBlock(b, b.n)) errors.fetch_add(1);
          free(b.p);
        }
      });
    }
    for (int t = 0; t < kThreads; t += 2) {
      for (Block &b : blocks[static_cast<size_t>(t)]) {
        if (!b.p) continue;
        if (!CheckBlock(b, b.n)) errors.fetch_add(1);
        free(b.p);
      }
    }
    for (auto &t : freers) t.join();
    EXPECT_EQ(errors.load(), 0) << "round " << round;
    for (auto &v : blocks) v.clear();
  }
  kalloc_thread_flush();
  const kalloc_stats after = Stats();
  EXPECT_LT(after.in_use, before.in_use + 16 * MiB)
      << "in_use " << before.in_use << " -> " << after.in_use;
}

// ---------------------------------------------------------------------------
// (c) thread churn with pthread_key and thread_local destructors
// ---------------------------------------------------------------------------

std::mutex g_leftover_mu;
std::vector<Block> g_leftovers;  // blocks threads leave behind for main to free
std::atomic<int> g_churn_errors{0};
std::atomic<int> g_key_dtor_runs{0};
std::atomic<int> g_tl_dtor_runs{0};
pthread_key_t g_key;

void Leave(const Block &b) {
  std::lock_guard<std::mutex> l(g_leftover_mu);
  g_leftovers.push_back(b);
}

void KeyDestructor(void *v) {
  auto *b = static_cast<Block *>(v);
  if (!CheckBlock(*b, b->n)) g_churn_errors.fetch_add(1);
  free(b->p);
  free(b);
  // Allocate again in the destructor: some memory freed here, some handed on.
  void *q = malloc(200);
  if (!q) g_churn_errors.fetch_add(1);
  memset(q, 1, 200);
  free(q);
  Block left{malloc(77), 77, 0x77};
  if (!left.p) g_churn_errors.fetch_add(1);
  FillBlock(left);
  Leave(left);
  g_key_dtor_runs.fetch_add(1);
}

struct TlsOwner {
  Block b;
  std::vector<int> v;  // heap-backed member
  TlsOwner() {
    b = Block{malloc(333), 333, 0x333};
    FillBlock(b);
    v.resize(100, 7);
  }
  ~TlsOwner() {
    if (!CheckBlock(b, b.n)) g_churn_errors.fetch_add(1);
    free(b.p);
    // thread_local destructors run after pthread_key destructors in glibc,
    // possibly after the allocator tore its per-thread cache down.
    for (int i = 0; i < 10; ++i) {
      void *q = malloc(16u << i);
      if (!q) g_churn_errors.fetch_add(1);
      memset(q, 2, 16u << i);
      free(q);
    }
    Block left{calloc(1, 4000), 4000, 0x4000};
    if (!left.p) g_churn_errors.fetch_add(1);
    FillBlock(left);
    Leave(left);
    g_tl_dtor_runs.fetch_add(1);
  }
};
thread_local TlsOwner *t_force_init = nullptr;

void ChurnThreadBody(int id) {
  thread_local TlsOwner owner;
  t_force_init = &owner;
  kt::Rng rng(static_cast<uint64_t>(id) + 99);
  std::vector<Block> mine;
  for (int i = 0; i < 40; ++i) {
    size_t n = 1 + rng.below(i % 13 == 0 ? 100000 : 500);
    Block b{malloc(n), n, static_cast<uint32_t>(id * 100 + i)};
    if (!b.p) {
      g_churn_errors.fetch_add(1);
      continue;
    }
    FillBlock(b);
    mine.push_back(b);
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    if (i % 8 == 0) {
      Leave(mine[i]);
    } else {
      if (!CheckBlock(mine[i], mine[i].n)) g_churn_errors.fetch_add(1);
      free(mine[i].p);
    }
  }
  auto *kb = static_cast<Block *>(malloc(sizeof(Block)));
  *kb = Block{malloc(1000), 1000, static_cast<uint32_t>(id)};
  FillBlock(*kb);
  pthread_setspecific(g_key, kb);
}

void FreeLeftovers() {
  std::vector<Block> v;
  {
    std::lock_guard<std::mutex> l(g_leftover_mu);
    v.swap(g_leftovers);
  }
  for (Block &b : v) {
    if (!CheckBlock(b, b.n)) g_churn_errors.fetch_add(1);
    free(b.p);
  }
}

uint64_t LiveThreads() {
  uint64_t n = 0;
  DIR *d = opendir("/proc/self/task");
  if (!d) return 0;
  while (struct dirent *e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

TEST(Threads, ChurnThousandsOfShortLivedThreads) {
  ASSERT_EQ(pthread_key_create(&g_key, KeyDestructor), 0);
  g_churn_errors = 0;
  g_key_dtor_runs = 0;
  g_tl_dtor_runs = 0;
  // Warm up the main thread's cache.
  free(malloc(100));
  const kalloc_stats base = Stats();
  const uint64_t live0 = LiveThreads();
  constexpr int kTotal = 3000;
  constexpr int kBatch = 6;
  uint64_t caches_at_500 = 0, mapped_at_500 = 0, max_caches = 0;
  int started = 0;
  while (started < kTotal) {
    std::vector<pthread_t> ts;
    for (int i = 0; i < kBatch && started < kTotal; ++i, ++started) {
      pthread_t t;
      auto *arg = new int(started);
      ASSERT_EQ(pthread_create(
                    &t, nullptr,
                    [](void *a) -> void * {
                      int id = *static_cast<int *>(a);
                      delete static_cast<int *>(a);
                      ChurnThreadBody(id);
                      return nullptr;
                    },
                    arg),
                0);
      ts.push_back(t);
    }
    max_caches = std::max(max_caches, Stats().nr_thread_caches);
    for (pthread_t t : ts) pthread_join(t, nullptr);
    if (started % 60 == 0) FreeLeftovers();
    if (started == 498 || started == 500) {
      kalloc_stats s = Stats();
      caches_at_500 = s.nr_thread_caches;
      mapped_at_500 = s.mapped;
    }
  }
  FreeLeftovers();
  const kalloc_stats end = Stats();
  EXPECT_EQ(g_churn_errors.load(), 0);
  EXPECT_EQ(g_key_dtor_runs.load(), kTotal);
  EXPECT_EQ(g_tl_dtor_runs.load(), kTotal);
  // Thread caches are released when threads exit: the count comes back to
  // about the number of live threads instead of growing with every thread.
  EXPECT_LE(caches_at_500, base.nr_thread_caches + 4)
      << "baseline " << base.nr_thread_caches << " (live threads " << live0 << ")";
  EXPECT_LE(end.nr_thread_caches, base.nr_thread_caches + 4)
      << "nr_thread_caches " << base.nr_thread_caches << " -> " << end.nr_thread_caches
      << " after " << kTotal << " threads exited";
  EXPECT_LE(max_caches, base.nr_thread_caches + kBatch + 4);
  // Memory of exited threads is reused: no growth proportional to the
  // number of threads between thread 500 and thread 3000.
  EXPECT_LT(end.mapped, mapped_at_500 + 64 * MiB)
      << "mapped " << mapped_at_500 << " -> " << end.mapped;
  EXPECT_LT(end.in_use, base.in_use + 8 * MiB) << "in_use " << base.in_use << " -> " << end.in_use;
  pthread_key_delete(g_key);
}

// Many threads doing large and huge allocations at the same time (page
// allocator and mmap paths under contention).
TEST(Threads, ConcurrentLargeAndHuge) {
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([&, t] {
      kt::Rng rng(static_cast<uint64_t>(t) + 5);
      Block live[8];
      for (int i = 0; i < 1500; ++i) {
        Block &b = live[rng.below(8)];
        if (b.p) {
          if (!CheckBlock(b, b.n)) errors.fetch_add(1);
          free(b.p);
          b = Block{};
        } else {
          size_t n = rng.below(10) == 0 ? (8 * MiB + rng.below(8 * MiB))
                                        : (64 * KiB + rng.below(2 * MiB));
          b = Block{malloc(n), n, static_cast<uint32_t>(t * 100000 + i)};
          if (!b.p || !kt::is_aligned(b.p, 16)) {
            errors.fetch_add(1);
            b = Block{};
            continue;
          }
          kt::fill_sparse(b.p, n, b.seed);
        }
      }
      for (Block &b : live) {
        if (!b.p) continue;
        if (!CheckBlock(b, b.n)) errors.fetch_add(1);
        free(b.p);
      }
    });
  }
  for (auto &t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
}

// Threads with the smallest stack pthreads allow (16 KiB on x86-64; programs
// that run many threads set it small) go through every slow path: refills
// and flushes, large and huge blocks, calloc of reused memory (its zeroing
// reads residency into a buffer on the stack), watermark reclaim (isolation
// batches, residency reads), malloc_trim, compaction, the statistics views,
// and the thread's exit.  A slow path that needed more stack than that would
// run into the guard page below it and kill the process.
// A calloc'd block reads zero: every 512th byte and the last 64.
bool ZeroSparse(const void *p, size_t n) {
  const unsigned char *c = static_cast<const unsigned char *>(p);
  for (size_t i = 0; i < n; i += 512)
    if (c[i]) return false;
  return kt::all_bytes_are(c + (n > 64 ? n - 64 : 0), n > 64 ? 64 : n, 0);
}

struct SmallStackArgs {
  int index;
  int devnull;
  std::atomic<int> *errors;
};

void SmallStackChurn(SmallStackArgs *a);

// The program's own frames take part of the stack too: the churn runs below
// 2 KiB of them.  With the library of 2026-12-06 (4 KiB buffers for reading
// /proc/self/status in the reclaim passes' RSS guard and seccomp check) this
// test died of SIGSEGV with 2 KiB here (3 runs of 3; it passed with 1 KiB);
// with 256-byte buffers it passes with 3 KiB and dies with 4.
constexpr size_t kSmallStackFrame = 2048;

void *SmallStackThread(void *arg) {
  volatile char frame[kSmallStackFrame];
  for (size_t i = 0; i < sizeof(frame); i += 64) frame[i] = static_cast<char>(i);
  SmallStackChurn(static_cast<SmallStackArgs *>(arg));
  return frame[64] == 64 ? nullptr : arg;
}

__attribute__((noinline)) void SmallStackChurn(SmallStackArgs *a) {
  kt::Rng rng(static_cast<uint64_t>(a->index) + 77);
  Block live[64];
  for (int i = 0; i < 6000; ++i) {
    Block &b = live[rng.below(64)];
    if (b.p) {
      if (!CheckBlock(b, b.n)) a->errors->fetch_add(1);
      if (rng.below(4) == 0) {
        size_t n = RandomSize(rng);
        void *q = realloc(b.p, n);
        if (!q) {
          a->errors->fetch_add(1);
          continue;
        }
        b = Block{q, n, static_cast<uint32_t>(a->index * 1000003 + i)};
        FillBlock(b);
        continue;
      }
      free(b.p);
      b = Block{};
    } else {
      size_t n = rng.below(100) == 0 ? 6 * MiB + rng.below(4 * MiB) : RandomSize(rng);
      bool zero = rng.below(2) == 0;
      void *p = zero ? calloc(1, n) : malloc(n);
      if (!p || (zero && !ZeroSparse(p, n))) {
        a->errors->fetch_add(1);
        free(p);
        continue;
      }
      b = Block{p, n, static_cast<uint32_t>(a->index * 1000003 + i)};
      FillBlock(b);
    }
    if (i % 1500 == 1499) {
      malloc_trim(0);
      kalloc_compact();
      kalloc_stats_print_fd(a->devnull);
      struct mallinfo2 mi = mallinfo2();
      if (mi.uordblks == 0) a->errors->fetch_add(1);
    }
  }
  for (Block &b : live) {
    if (!b.p) continue;
    if (!CheckBlock(b, b.n)) a->errors->fetch_add(1);
    free(b.p);
  }
}

TEST(Threads, SmallStacksRunEverySlowPath) {
  long min = sysconf(_SC_THREAD_STACK_MIN);
  size_t stack = min > 16384 ? static_cast<size_t>(min) : 16384;
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(devnull, 0);
  std::atomic<int> errors{0};
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, stack), 0);
  pthread_t ts[4];
  SmallStackArgs args[4];
  for (int t = 0; t < 4; ++t) {
    args[t] = SmallStackArgs{t, devnull, &errors};
    ASSERT_EQ(pthread_create(&ts[t], &attr, SmallStackThread, &args[t]), 0);
  }
  for (pthread_t t : ts) pthread_join(t, nullptr);
  pthread_attr_destroy(&attr);
  close(devnull);
  EXPECT_EQ(errors.load(), 0);
}

}  // namespace

// Many threads that each allocate and free about a megabyte of small
// objects, then sleep: their caches must hold a share of a global budget,
// not a full cache each (tcache.h: TCACHE_TOTAL_BYTES shared by the live
// caches).  Measured on 2026-11-23: with a fixed 512 KiB per thread, 400
// such threads kept 185 MB of slab pages; with the shared budget, 20-30 MB
// when all threads exist before their bursts (as here), up to ~70 MB when
// early threads finish before later ones are created (bigger shares).
// The bound below is 400 x 160 KiB = 62.5 MiB.
TEST(Threads, SleepingThreadsDoNotHoldFullCaches) {
  constexpr int kThreads = 400;
  std::atomic<int> done{0};
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> started{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&, t] {
      // Every thread has its cache before any starts its burst (a thread
      // pool), so the shares do not depend on how the threads interleave.
      free(malloc(16));
      started++;
      while (started.load() < kThreads)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      uint32_t s = 2654435761u * (uint32_t)(t + 1);
      std::vector<void *> ps;
      ps.reserve(4096);
      size_t total = 0;
      while (total < MiB) {
        s = s * 1103515245u + 12345u;
        size_t n = 16 + (s >> 8) % 1024;
        void *p = malloc(n);
        ASSERT_NE(p, nullptr);
        memset(p, 0x5a, n);
        ps.push_back(p);
        total += n;
      }
      for (void *p : ps)
        free(p);
      std::vector<void *>().swap(ps);
      done++;
      std::unique_lock<std::mutex> lk(m);
      cv.wait(lk, [&] { return release; });
    });
  }
  while (done.load() < kThreads)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  struct kalloc_stats st;
  ASSERT_EQ(kalloc_stats_get(&st), 0);
  {
    std::lock_guard<std::mutex> lk(m);
    release = true;
  }
  cv.notify_all();
  for (auto &th : ts)
    th.join();
  std::printf("slab memory while %d threads sleep: %llu KiB\n", kThreads,
              (unsigned long long)(st.slab_bytes / KiB));
  EXPECT_GE(st.nr_thread_caches, (uint64_t)kThreads);
  EXPECT_LT(st.slab_bytes, (uint64_t)kThreads * 160 * KiB)
      << "slab memory held while " << kThreads << " threads sleep: " << st.slab_bytes / KiB << " KiB";
}
