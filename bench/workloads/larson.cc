// larson.cc - Larson & Krishnan's "larson" server benchmark (as in the Hoard,
// mimalloc-bench and rpmalloc suites).
//
// Models a long-running server: a pool of worker threads each owns a set of
// live blocks of random sizes and keeps replacing random ones (free + malloc).
// After every round the worker exits and a NEW thread inherits its blocks, so
// almost every free is of a block that another (often already dead) thread
// allocated.  This stresses cross-thread frees, remote-free queues, and the
// hand-back of a dead thread's cache.
//
// Measures: throughput of malloc/free with remote frees and thread churn; the
// peak RSS shows how well memory freed by other threads is reused.
// Checked work: every block is stamped with its size and a tag, verified
// before it is freed; the checksum sums the tags and sizes of every block.
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Slot {
  void* p;
  uint32_t size;
  uint64_t tag;
};

struct Shared {
  int64_t min_size, max_size;
};

// One round of one worker: `ops` random replacements in its partition.
uint64_t work(std::vector<Slot>& part, int64_t ops, uint64_t seed, const Shared& sh) {
  kb::Rng rng(seed);
  uint64_t sum = 0;
  for (int64_t i = 0; i < ops; ++i) {
    Slot& s = part[rng.below(part.size())];
    if (!kb::check_stamp(s.p, s.size, s.tag)) kb::die("larson", "block corrupted");
    sum = kb::mix(sum, s.tag + s.size);
    std::free(s.p);
    s.size = (uint32_t)rng.range(sh.min_size, sh.max_size);
    s.tag = rng.next();
    s.p = std::malloc(s.size);
    if (!s.p) kb::die("larson", "malloc returned NULL");
    kb::stamp(s.p, s.size, s.tag);
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "larson", "Larson server: blocks replaced by threads that did not allocate them");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t threads = a.num("threads", 8, "worker threads per round");
  int64_t rounds = a.iters("rounds", 100, scale, "rounds (thread generations)");
  int64_t ops = a.iters("ops", 25000, std::min(1.0, scale * 4), "replacements per thread per round");
  int64_t slots = a.num("slots", 2000, "live blocks per thread");
  Shared sh{a.num("min", 8, "minimum block size"), a.num("max", 1000, "maximum block size")};
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (threads < 1 || slots < 1 || sh.min_size < 1 || sh.max_size < sh.min_size) kb::die("larson", "bad options");

  kb::Timer t;
  // The main thread allocates the initial blocks: the first generation frees them.
  std::vector<std::vector<Slot>> parts(threads);
  kb::Rng init(seed);
  for (auto& part : parts) {
    part.resize(slots);
    for (auto& s : part) {
      s.size = (uint32_t)init.range(sh.min_size, sh.max_size);
      s.tag = init.next();
      s.p = std::malloc(s.size);
      if (!s.p) kb::die("larson", "malloc returned NULL");
      kb::stamp(s.p, s.size, s.tag);
    }
  }
  std::vector<uint64_t> sums(threads, 0);
  for (int64_t r = 0; r < rounds; ++r) {
    std::vector<std::thread> ts;
    ts.reserve(threads);
    for (int64_t i = 0; i < threads; ++i) {
      // Thread i of round r takes the partition thread i-1 had in round r-1:
      // blocks move between threads, not only between generations.
      size_t p = (size_t)((i + r) % threads);
      ts.emplace_back([&, i, r, p] {
        sums[i] = kb::mix(sums[i], work(parts[p], ops, seed * 1000003 + r * 7919 + i, sh));
      });
    }
    for (auto& th : ts) th.join();
  }
  uint64_t sum = 0;
  for (auto s : sums) sum ^= s;  // order-independent across threads
  for (auto& part : parts)
    for (auto& s : part) {
      if (!kb::check_stamp(s.p, s.size, s.tag)) kb::die("larson", "block corrupted at exit");
      sum = kb::mix(sum, s.tag);
      std::free(s.p);
    }
  char d[128];
  std::snprintf(d, sizeof d, "threads=%ld rounds=%ld ops=%ld", (long)threads, (long)rounds,
                (long)(threads * rounds * ops));
  kb::report("larson", sum, d, t.secs());
  return 0;
}
