// cache_thrash.cc - Hoard's "cache-thrash" benchmark (Berger et al., ASPLOS
// 2000; also in mimalloc-bench).
//
// Models ACTIVE false sharing: worker threads start together and each
// repeatedly allocates a small object, writes to it intensely and frees it.
// An allocator that serves small requests of different threads from the same
// cache line (e.g. one shared free list or heap) makes the threads' writes
// ping-pong that line between cores.  Between bursts each worker hands one
// object to its neighbour, which frees it, so freed small objects also move
// between threads, as they do in real programs.
//
// Measures: time is dominated by the writes, so it shows cache-line
// contention caused by the allocator's placement of concurrent small objects.
// Checked work: each worker reads back what it wrote; the sums are compared
// with values computed independently of memory.
#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

namespace {

uint64_t scribble(volatile unsigned char* p, size_t size, int64_t reps, uint64_t salt) {
  uint64_t s = 0;
  for (int64_t r = 0; r < reps; ++r)
    for (size_t j = 0; j < size; ++j) {
      p[j] = (unsigned char)(r * 3 + j + salt);
      s += p[j];
    }
  return s;
}

uint64_t expected(size_t size, int64_t reps, uint64_t salt) {
  uint64_t s = 0;
  for (int64_t r = 0; r < reps; ++r)
    for (size_t j = 0; j < size; ++j) s += (unsigned char)(r * 3 + j + salt);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "cache-thrash", "active false sharing: concurrent small objects of different threads");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t threads = a.num("threads", 4, "worker threads");
  int64_t iters = a.iters("iterations", 50000, scale, "allocate/write/free cycles per thread");
  int64_t reps = a.num("repetitions", 2000, "writes to each byte per cycle");
  int64_t size = a.num("size", 8, "object size in bytes");
  a.done();
  if (threads < 1 || size < 1) kb::die("cache-thrash", "bad options");

  kb::Timer t;
  std::atomic<int64_t> ready{0};
  // mailbox[i]: an object handed to thread i by thread i-1, freed by thread i.
  std::vector<std::atomic<void*>> mailbox(threads);
  for (auto& m : mailbox) m.store(nullptr);
  std::vector<uint64_t> got(threads, 0);
  std::vector<std::thread> ts;
  for (int64_t i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();  // start together
      uint64_t s = 0;
      for (int64_t it = 0; it < iters; ++it) {
        auto* p = static_cast<unsigned char*>(std::malloc(size));
        if (!p) kb::die("cache-thrash", "malloc returned NULL");
        s += scribble(p, size, reps, (uint64_t)i);
        if (it % 16 == 15) {
          // hand it to the neighbour; free whatever we were handed
          void* old = mailbox[(i + 1) % threads].exchange(p);
          std::free(old);
          std::free(mailbox[i].exchange(nullptr));
        } else {
          std::free(p);
        }
      }
      got[i] = s;
    });
  for (auto& th : ts) th.join();
  for (auto& m : mailbox) std::free(m.exchange(nullptr));
  uint64_t sum = 0;
  for (int64_t i = 0; i < threads; ++i) {
    if (got[i] != (uint64_t)iters * expected(size, reps, (uint64_t)i))
      kb::die("cache-thrash", "read back a value that was not written");
    sum = kb::mix(sum, got[i]);
  }
  char d[128];
  std::snprintf(d, sizeof d, "threads=%ld iterations=%ld repetitions=%ld size=%ld", (long)threads,
                (long)iters, (long)reps, (long)size);
  kb::report("cache-thrash", sum, d, t.secs());
  return 0;
}
