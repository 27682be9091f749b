// sleeping_threads.cc - a thousand threads that allocate, free, then sleep
// (issue 4).
//
// Models a thread-per-connection server (or a big thread pool) after a busy
// period: every one of --threads threads (default 1000) allocates about
// --per-thread KiB (default 1024) of small objects of mixed sizes (16-1024 B),
// frees them all (in a scattered order) and then sleeps, blocked on a
// condition variable, without another allocator call.  While they all
// sleep, whatever the allocator keeps in per-thread caches or per-thread
// heaps is resident for nothing: a thousand threads must not hold a thousand
// caches' worth of memory.
//
// Threads have 256 KiB stacks (pthread_attr_setstacksize), so their stacks
// cost the same few touched pages under every allocator.
//
// Reports (`rss_phase <name> <KiB>`):
//   start      before any thread is created
//   asleep     as soon as every thread has freed its objects and sleeps
//   asleep_1s  one second later, still all asleep
//   end        after all threads were woken and joined
// Checked work: every object is stamped and verified before it is freed.
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "common.h"

namespace {

std::mutex g_mu;
std::condition_variable g_cv_main, g_cv_threads;
int g_asleep = 0;
bool g_wake = false;
size_t g_per_thread = 1 << 20;
uint64_t g_seed = 1;
std::atomic<uint64_t> g_sum{0};
std::atomic<int> g_failed{0};

constexpr size_t kMaxObjs = 16384;

uint64_t kKey(uint64_t id, size_t i) { return kb::mix(g_seed ^ (id << 20), i); }

void* worker(void* arg) {
  const uint64_t id = (uint64_t)(uintptr_t)arg;
  kb::Rng rng(kb::mix(g_seed, id));
  void* ptrs[kMaxObjs];  // on the stack: the thread's bookkeeping allocates nothing
  uint32_t sizes[kMaxObjs];
  size_t n = 0, bytes = 0;
  while (bytes < g_per_thread && n < kMaxObjs) {
    size_t size = 16 + rng.below(1ull << rng.range(4, 10));  // 16..1039, log-spread
    void* p = std::malloc(size);
    if (!p) { g_failed.fetch_add(1); break; }
    kb::stamp(p, size, kKey(id, n));
    ptrs[n] = p;
    sizes[n++] = (uint32_t)size;
    bytes += size;
  }
  uint64_t sum = 0;
  // free in a scattered order: k -> (k * 7919) mod n (7919 is prime)
  size_t step = (n % 7919 == 0) ? 7907 : 7919;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (k * step) % n;
    if (!kb::check_stamp(ptrs[i], sizes[i], kKey(id, i))) g_failed.fetch_add(1);
    sum = kb::mix(sum, sizes[i] + i);
    std::free(ptrs[i]);
  }
  g_sum.fetch_add(kb::mix(sum, id), std::memory_order_relaxed);
  std::unique_lock<std::mutex> lk(g_mu);
  ++g_asleep;
  g_cv_main.notify_one();
  g_cv_threads.wait(lk, [] { return g_wake; });
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "sleeping-threads", "N threads allocate and free about 1 MiB each, then sleep");
  double scale = a.real("scale", 1.0, "work multiplier (not used: --threads and --per-thread set the size)");
  int64_t nthreads = a.num("threads", 1000, "threads");
  int64_t per_kib = a.num("per-thread", 1024, "KiB each thread allocates (then frees) before it sleeps");
  int64_t sleep_ms = a.num("sleep", 1000, "ms between the asleep and asleep_1s samples");
  g_seed = a.num("seed", 1, "random seed");
  a.done();
  (void)scale;
  g_per_thread = (size_t)per_kib << 10;

  kb::Timer t;
  kb::print_phase("start", kb::vmrss_kib());
  std::vector<pthread_t> tids((size_t)nthreads);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 << 10);
  for (int64_t i = 0; i < nthreads; ++i)
    if (pthread_create(&tids[(size_t)i], &attr, worker, (void*)(uintptr_t)i) != 0)
      kb::die("sleeping-threads", "pthread_create failed");
  pthread_attr_destroy(&attr);
  {
    std::unique_lock<std::mutex> lk(g_mu);
    g_cv_main.wait(lk, [&] { return g_asleep == nthreads; });
  }
  const long asleep = kb::vmrss_kib();
  kb::sleep_ms(sleep_ms);
  const long asleep_1s = kb::vmrss_kib();
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_wake = true;
  }
  g_cv_threads.notify_all();
  for (auto& tid : tids) pthread_join(tid, nullptr);
  kb::print_phase("asleep", asleep);
  kb::print_phase("asleep_1s", asleep_1s);
  kb::print_phase("end", kb::vmrss_kib());
  if (g_failed.load()) kb::die("sleeping-threads", "an object was corrupted or malloc failed");
  char d[120];
  std::snprintf(d, sizeof d, "threads=%ld per_thread_kib=%ld", (long)nthreads, (long)per_kib);
  kb::report("sleeping-threads", g_sum.load(), d, t.secs());
  return 0;
}
