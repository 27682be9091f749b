// Per-CPU sheaves (src/mm/percpu_sheaves.h): the thread caches created once
// every owner id has a thread (4 per CPU) refill from and flush to per-CPU
// arrays changed with rseq, and go to the slabs only once per half array.
// Checked here through the public surface: slab visits per cycle, what
// malloc_trim(0) leaves in the arrays, contents under trims and compaction
// from another thread, a double free of an object sitting in an array, and
// fork from such a thread.
#include <gtest/gtest.h>

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

using kt::opaque;

// Threads that take the owner ids 1..4 x CPUs (with the test's main thread)
// and wait, so the threads created after them are pool threads.
class OwnerIdHolders {
 public:
  OwnerIdHolders() {
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    unsigned n = (unsigned)(cpus < 1 ? 4 : 4 * cpus);
    if (n > 253) n = 253;
    free(malloc(16));  // the main thread's cache
    for (unsigned i = 0; i < n; i++) {
      ts_.emplace_back([this] {
        free(malloc(16));  // creates this thread's cache and owner id
        started_++;
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [this] { return release_; });
      });
    }
    while (started_.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~OwnerIdHolders() {
    {
      std::lock_guard<std::mutex> lk(m_);
      release_ = true;
    }
    cv_.notify_all();
    for (auto& t : ts_) t.join();
  }

 private:
  std::vector<std::thread> ts_;
  std::atomic<unsigned> started_{0};
  std::mutex m_;
  std::condition_variable cv_;
  bool release_ = false;
};

// The "percpu sheaves:" line of kalloc_stats_print_fd.
std::string SheavesLine() { return kt::stats_line("percpu sheaves:"); }

unsigned long SheafObjects() {
  std::string l = SheavesLine();
  size_t at = l.find("objects=");
  return at == std::string::npos ? ~0ul : std::stoul(l.substr(at + 8));
}

// One round: allocate n objects of `size`, fill, check, free them all.
bool Cycle(unsigned n, size_t size, uint32_t seed) {
  std::vector<void*> ps(n);
  for (unsigned i = 0; i < n; i++) {
    ps[i] = malloc(opaque(size));
    if (!ps[i]) return false;
    kt::fill(ps[i], size, seed + i);
  }
  bool ok = true;
  for (unsigned i = 0; i < n; i++) {
    ok &= kt::check(ps[i], size, seed + i) == size;
    free(ps[i]);
  }
  return ok;
}

}  // namespace

// 4 pool threads each cycle 160 objects of 48 B 1,000 times: a bin holds
// 128 of them, so every round refills and flushes.  Through the slabs alone
// each of those is a visit (about 57 objects a visit, 11,000 visits,
// measured with the arrays switched off); with the per-CPU arrays (256
// objects of 48 B) the rounds stay in the arrays (7-11 visits).
TEST(PercpuSheaves, PoolThreadsVisitTheSlabsRarely) {
  OwnerIdHolders holders;
  std::atomic<bool> ok{true};
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  constexpr unsigned kThreads = 4, kRounds = 1000, kObjects = 160;
  // Each thread stays on one CPU (two per CPU on two CPUs): a thread the
  // scheduler moves between its mallocs and its frees empties one CPU's
  // array and fills the other's, about one slab visit a round (790-1,150
  // in 7 of 200 unpinned runs beside four CPU hogs: a property of any
  // per-CPU cache, not what this test is about).
  std::vector<int> cpus;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  for (unsigned t = 0; t < kThreads; t++) {
    pool.emplace_back([&, t] {
      if (!cpus.empty()) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[t % cpus.size()], &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);  // unpinned if refused
      }
      free(malloc(16));  // this thread's cache (a pool one)
      ready++;
      while (!go.load()) std::this_thread::yield();
      for (unsigned r = 0; r < kRounds; r++) ok = ok && Cycle(kObjects, 48, t * 1000003u + r);
    });
  }
  while (ready.load() < (int)kThreads) std::this_thread::yield();
  const bool in_use = SheavesLine().find("in use") != std::string::npos;
  kalloc_stats before{};
  ASSERT_EQ(kalloc_stats_get(&before), 0);
  go = true;
  for (auto& th : pool) th.join();
  kalloc_stats after{};
  ASSERT_EQ(kalloc_stats_get(&after), 0);
  EXPECT_TRUE(ok.load()) << "an object's contents changed";
  if (!in_use)
    GTEST_SKIP() << "per-CPU sheaves are not used here (no rseq registration or membarrier "
                    "rseq fence): " << SheavesLine();
  const uint64_t visits = (after.nr_slab_refills - before.nr_slab_refills) +
                          (after.nr_slab_flushes - before.nr_slab_flushes);
  const uint64_t objects = (uint64_t)kThreads * kRounds * kObjects;
  std::printf("slab visits: %llu for %llu objects allocated and freed\n",
              (unsigned long long)visits, (unsigned long long)objects);
  EXPECT_LT(visits, objects / 1024) << "pool threads went to the slabs about every "
                                  << objects / (visits ? visits : 1) << " objects; "
                                  << SheavesLine();
  // The arrays hold objects now; malloc_trim(0) gives them all back.
  malloc_trim(0);
  EXPECT_EQ(SheafObjects(), 0ul) << SheavesLine();
}

// Pool threads allocate, fill, check and free mixed sizes while the main
// thread trims (which stops and drains every CPU's arrays) and compacts:
// no object may be handed out twice or lose its contents.
TEST(PercpuSheaves, DrainsDuringPoolTrafficKeepEveryObject) {
  OwnerIdHolders holders;
  std::atomic<bool> stop{false}, ok{true};
  std::atomic<unsigned long> cycles{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < 12; t++) {
    pool.emplace_back([&, t] {
      uint32_t s = 2654435761u * (t + 1);
      std::vector<std::pair<void*, size_t>> live;
      while (!stop.load() || cycles.load() < 200) {
        s = s * 1103515245u + 12345u;
        if (live.size() < 3000 && (s >> 28) < 9) {
          size_t n = 16 + (s >> 8) % 2048;
          void* p = malloc(n);
          if (!p) { ok = false; return; }
          kt::fill(p, n, (uint32_t)(uintptr_t)p);
          live.push_back({p, n});
        } else if (!live.empty()) {
          size_t i = (s >> 4) % live.size();
          auto [p, n] = live[i];
          if (kt::check(p, n, (uint32_t)(uintptr_t)p) != n) ok = false;
          free(p);
          live[i] = live.back();
          live.pop_back();
        }
        if ((s & 1023) == 0) cycles++;
      }
      for (auto [p, n] : live) {
        if (kt::check(p, n, (uint32_t)(uintptr_t)p) != n) ok = false;
        free(p);
      }
    });
  }
  for (int i = 0; i < 200; i++) {
    malloc_trim(0);
    if (i % 20 == 0) kalloc_compact();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop = true;
  for (auto& th : pool) th.join();
  EXPECT_TRUE(ok.load()) << "an object's contents changed under drains";
  malloc_trim(0);
  EXPECT_EQ(SheafObjects(), 0ul) << SheavesLine();
}

// An object freed twice by a pool thread, the first free having gone on to
// a per-CPU array (the bin overflowed behind it; it stays at the bottom of
// the array, whose overflows take the top half): the second free must be
// caught, not push the object a second time.  Without the arrays in the
// double-free check the second free went through (checked by removing
// pcs_contains from free_slab_object).
TEST(PercpuSheaves, DoubleFreeOfAnObjectInASheafAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        OwnerIdHolders holders;
        std::thread pool([] {
          void* p = malloc(opaque<size_t>(48));
          std::vector<void*> others;
          for (int i = 0; i < 600; i++) others.push_back(malloc(opaque<size_t>(48)));
          malloc_trim(0);  // the arrays start empty
          free(p);  // the coldest object of the bin: the first to be flushed
          for (void* o : others) free(o);
          free(opaque(p));
        });
        pool.join();
      },
      "double free.* 0x[0-9a-fA-F]+");
}

// fork() from a pool thread while other pool threads run: the child (one
// thread, the arrays copied) allocates and frees through them and exits
// cleanly; so does the parent.
TEST(PercpuSheaves, ForkFromAPoolThread) {
  OwnerIdHolders holders;
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 4; t++)
    busy.emplace_back([&, t] {
      while (!stop.load()) Cycle(500, 32 + 16 * t, t);
    });
  int status = -1;
  std::thread forker([&] {
    Cycle(500, 40, 7);
    pid_t pid = fork();
    if (pid == 0) {
      bool ok = true;
      for (int r = 0; r < 50; r++) ok &= Cycle(1000, 16 + 8 * (r % 40), r);
      malloc_trim(0);
      ok &= Cycle(1000, 100, 1);
      _exit(ok ? 0 : 3);
    }
    waitpid(pid, &status, 0);
  });
  forker.join();
  stop = true;
  for (auto& th : busy) th.join();
  ASSERT_TRUE(WIFEXITED(status)) << "child died, status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// A sandbox's seccomp filter allows what glibc's malloc calls and kills the
// process on anything else (OpenSSH's and Chromium's do): membarrier, which
// the per-CPU arrays need, is not on such a list.  Under a filter kalloc
// keeps the threads beyond 4 per CPU off the arrays; the filter here kills
// on membarrier alone (the child died of SIGSYS before: 12 threads on 2 CPUs).
TEST(PercpuSheaves, ASeccompFilterThatKillsMembarrierIsNoHarm) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(60);
    if (!kt::seccomp_kill_on({__NR_membarrier}))
      _exit(2);
    bool ok = true;
    {
      OwnerIdHolders holders;   // the threads after these are pool threads
      std::vector<std::thread> pool;
      std::atomic<int> bad{0};
      for (int t = 0; t < 4; t++)
        pool.emplace_back([&, t] {
          for (int r = 0; r < 200; r++)
            if (!Cycle(300, 24 + 16 * t, (uint32_t)r)) bad++;
        });
      for (auto& th : pool) th.join();
      ok = bad.load() == 0;
    }
    malloc_trim(0);
    _exit(ok ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << " (31 = SIGSYS: a system call the filter forbids)";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}
