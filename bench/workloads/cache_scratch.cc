// cache_scratch.cc - Hoard's "cache-scratch" benchmark (Berger et al., ASPLOS
// 2000; also in mimalloc-bench).
//
// Models PASSIVE false sharing: the main thread allocates one small object
// per worker, back to back (so several share a cache line), and hands one to
// each worker.  Each worker frees the object it was given and then, many
// times, allocates an object of the same size, writes to it intensely and
// frees it.  An allocator that gives the freed (shared-line) memory back to
// the worker that freed it makes workers on different cores write to the
// same cache line; a good one keeps per-thread memory on separate lines.
//
// Measures: time is dominated by the writes, so it shows cache-line ping-pong
// caused by where the allocator places small objects of different threads.
// Checked work: each worker reads back what it wrote; the sums are compared
// with the values computed independently of memory.
#include <thread>
#include <vector>

#include "common.h"

namespace {

// Write `reps` times to every byte of p[0..size), reading back as we go.
uint64_t scribble(volatile unsigned char* p, size_t size, int64_t reps, uint64_t salt) {
  uint64_t s = 0;
  for (int64_t r = 0; r < reps; ++r)
    for (size_t j = 0; j < size; ++j) {
      p[j] = (unsigned char)(r + j + salt);
      s += p[j];
    }
  return s;
}

uint64_t expected(size_t size, int64_t reps, uint64_t salt) {
  uint64_t s = 0;
  for (int64_t r = 0; r < reps; ++r)
    for (size_t j = 0; j < size; ++j) s += (unsigned char)(r + j + salt);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "cache-scratch", "passive false sharing: small objects handed out by one thread");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t threads = a.num("threads", 4, "worker threads");
  int64_t iters = a.iters("iterations", 50000, scale, "allocate/write/free cycles per thread");
  int64_t reps = a.num("repetitions", 2000, "writes to each byte per cycle");
  int64_t size = a.num("size", 8, "object size in bytes");
  a.done();
  if (threads < 1 || size < 1) kb::die("cache-scratch", "bad options");

  kb::Timer t;
  // Back-to-back small objects, allocated by the main thread.
  std::vector<unsigned char*> given(threads);
  for (auto& p : given) {
    p = static_cast<unsigned char*>(std::malloc(size));
    if (!p) kb::die("cache-scratch", "malloc returned NULL");
    std::memset(p, 0, size);
  }
  std::vector<uint64_t> got(threads, 0);
  std::vector<std::thread> ts;
  for (int64_t i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      std::free(given[i]);  // a remote free of the object the main thread made
      uint64_t s = 0;
      for (int64_t it = 0; it < iters; ++it) {
        auto* p = static_cast<unsigned char*>(std::malloc(size));
        if (!p) kb::die("cache-scratch", "malloc returned NULL");
        s += scribble(p, size, reps, (uint64_t)i);
        std::free(p);
      }
      got[i] = s;
    });
  for (auto& th : ts) th.join();
  uint64_t sum = 0;
  for (int64_t i = 0; i < threads; ++i) {
    if (got[i] != (uint64_t)iters * expected(size, reps, (uint64_t)i))
      kb::die("cache-scratch", "read back a value that was not written");
    sum = kb::mix(sum, got[i]);
  }
  char d[128];
  std::snprintf(d, sizeof d, "threads=%ld iterations=%ld repetitions=%ld size=%ld", (long)threads,
                (long)iters, (long)reps, (long)size);
  kb::report("cache-scratch", sum, d, t.secs());
  return 0;
}
