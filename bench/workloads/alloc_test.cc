// alloc_test.cc - modelled on ithare's "alloc-test" (random sizes drawn from a
// Pareto-like distribution over a random-replacement working set, as used to
// compare jemalloc, tcmalloc, mimalloc, rpmalloc ...).
//
// Models a general-purpose program: each thread keeps a working set of live
// blocks and repeatedly replaces a random one.  Sizes follow a Pareto
// (power-law) distribution: most requests are small, a heavy tail is large,
// up to --max bytes, so every size-class range of the allocator is hit,
// including the large-object path, in proportions like real programs.  A
// fraction of the replaced blocks is handed to another thread to free.
//
// Measures: mixed-size malloc/free throughput and memory overhead (peak RSS
// against the live bytes, which are printed).
// Checked work: blocks are stamped (header, trailer, one byte per page) and
// verified before being freed; the checksum covers every block's tag.
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Block {
  void* p = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
};

size_t pareto(kb::Rng& rng, double xm, double alpha, size_t max) {
  double u = 1.0 - rng.uniform();  // (0, 1]
  double x = xm / std::pow(u, 1.0 / alpha);
  return x >= (double)max ? max : (size_t)x;
}

struct Inbox {
  std::mutex m;
  std::vector<Block> blocks;
};

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "alloc-test", "random Pareto-distributed sizes over a working set");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t threads = a.num("threads", 2, "worker threads");
  int64_t ops = a.iters("ops", 6000000, scale, "replacements per thread");
  int64_t live = a.num("live", 100000, "working set: live blocks per thread");
  int64_t min_size = a.num("min", 8, "Pareto scale x_m (smallest size)");
  double alpha = a.real("alpha", 1.2, "Pareto shape (smaller = heavier tail)");
  int64_t max_size = a.num("max", 262144, "largest size (the tail is cut here)");
  int64_t remote = a.num("remote", 8, "one replacement in N is freed by another thread (0 = none)");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (threads < 1 || live < 1 || min_size < 1 || max_size < min_size) kb::die("alloc-test", "bad options");

  kb::Timer t;
  std::vector<Inbox> inbox(threads);
  std::vector<uint64_t> sums(threads, 0), live_bytes(threads, 0);
  std::vector<std::thread> ts;
  std::atomic<int64_t> running{threads};   // threads still doing replacements
  for (int64_t i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      kb::Rng rng(seed * 104729 + i);
      std::vector<Block> set(live);
      std::vector<Block> outgoing;
      uint64_t sum = 0;
      auto drain = [&](bool all) {
        std::vector<Block> mine;
        {
          std::lock_guard<std::mutex> l(inbox[i].m);
          if (!all && inbox[i].blocks.size() < 64) return;
          mine.swap(inbox[i].blocks);
        }
        for (auto& b : mine) {
          if (!kb::check_stamp(b.p, b.size, b.tag)) kb::die("alloc-test", "remote block corrupted");
          std::free(b.p);
        }
      };
      for (int64_t op = 0; op < ops; ++op) {
        Block& b = set[rng.below(live)];
        if (b.p) {
          if (!kb::check_stamp(b.p, b.size, b.tag)) kb::die("alloc-test", "block corrupted");
          sum += b.tag ^ b.size;
          if (remote > 0 && threads > 1 && rng.below(remote) == 0) {
            outgoing.push_back(b);
            if (outgoing.size() >= 64) {
              auto& dst = inbox[(i + 1 + rng.below(threads - 1)) % threads];
              std::lock_guard<std::mutex> l(dst.m);
              dst.blocks.insert(dst.blocks.end(), outgoing.begin(), outgoing.end());
              outgoing.clear();
            }
          } else {
            std::free(b.p);
          }
        }
        b.size = pareto(rng, (double)min_size, alpha, (size_t)max_size);
        b.tag = rng.next();
        b.p = std::malloc(b.size);
        if (!b.p) kb::die("alloc-test", "malloc returned NULL");
        kb::stamp(b.p, b.size, b.tag);
        if ((op & 1023) == 0) drain(false);
      }
      // Until every thread has done its replacements, keep freeing what the
      // others send here: else one in --remote of their replacements piles
      // up in this inbox, and the peak RSS depends on which thread the
      // scheduler let finish first (it was bimodal: 24 or 42-49 MiB under
      // kalloc, 23 or 32 under glibc, from run to run).
      running.fetch_sub(1);
      while (running.load() > 0) {
        drain(true);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      uint64_t bytes = 0;
      for (auto& b : set) {
        bytes += b.size;
        if (!kb::check_stamp(b.p, b.size, b.tag)) kb::die("alloc-test", "block corrupted at exit");
        sum += b.tag;
        std::free(b.p);
      }
      for (auto& b : outgoing) std::free(b.p);
      sums[i] = sum;
      live_bytes[i] = bytes;
    });
  for (auto& th : ts) th.join();
  for (int64_t i = 0; i < threads; ++i) {
    std::lock_guard<std::mutex> l(inbox[i].m);
    for (auto& b : inbox[i].blocks) {
      if (!kb::check_stamp(b.p, b.size, b.tag)) kb::die("alloc-test", "remote block corrupted");
      std::free(b.p);
    }
  }
  uint64_t sum = 0, bytes = 0;
  for (int64_t i = 0; i < threads; ++i) { sum = kb::mix(sum, sums[i]); bytes += live_bytes[i]; }
  char d[160];
  std::snprintf(d, sizeof d, "threads=%ld ops=%ld live=%ld final_live_kib=%lu", (long)threads,
                (long)(threads * ops), (long)(threads * live), (unsigned long)(bytes / 1024));
  kb::report("alloc-test", sum, d, t.secs());
  return 0;
}
