// thread_rounds.cc - threads that each work in rounds: allocate a batch of
// blocks of mixed sizes, use them, free them all, start again.
//
// Models the commonest shape of a server or a batch program's heap: each
// worker thread handles one request (a parse, a query, a compile unit) at a
// time, builds its objects and buffers, and drops all of them when the
// request is done.  Nothing keeps the threads in step (they start together
// and drift apart), so the process's total use swings under its peak while
// each thread's own use goes from zero to its batch and back, over and over
// (mimalloc-bench's "mstress" has the same shape with its threads in step).  An
// allocator that gives a finished round's memory back to the OS at once
// has the next round fault it in again; one that keeps everything holds
// every thread's peak at once.
//
// Sizes come in tiers, as a request's objects do: 60% 16-256 B (nodes,
// strings), 30% 256 B-4 KiB, 8% 4-32 KiB (buffers), 2% 32-256 KiB.  Every
// block is written whole (memset) and stamped; the stamps are checked when
// the round frees it, in an order that alternates between the order of
// allocation and the reverse (queues and stacks of work).
//
// Measures: time, page faults and peak RSS against the live bytes (the
// largest sum of the threads' batches is printed as peak_live_kib).
// Checked work: every block is checked before it is freed; the checksum
// covers every block's tag and size.
#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Block {
  unsigned char* p;
  size_t size;
  uint64_t tag;
};

size_t tiered_size(kb::Rng& rng) {
  uint64_t k = rng.below(100);
  if (k < 60) return (size_t)rng.range(16, 256);
  if (k < 90) return (size_t)rng.range(257, 4096);
  if (k < 98) return (size_t)rng.range(4097, 32768);
  return (size_t)rng.range(32769, 262144);
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "thread-rounds", "threads allocating, using and freeing batches in rounds");
  double scale = a.real("scale", 1.0, "work multiplier (scales --rounds)");
  int64_t threads = a.num("threads", 4, "worker threads");
  int64_t rounds = a.iters("rounds", 60, scale, "rounds per thread");
  int64_t batch = a.num("batch", 6000, "blocks allocated per round");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (threads < 1 || batch < 1) kb::die("thread-rounds", "bad options");

  kb::Timer t;
  std::vector<uint64_t> sums(threads, 0);
  std::atomic<int64_t> live{0}, peak{0};
  std::vector<std::thread> ts;
  for (int64_t i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      kb::Rng rng(seed * 6151 + i);
      std::vector<Block> blocks((size_t)batch);
      uint64_t sum = 0;
      for (int64_t r = 0; r < rounds; ++r) {
        int64_t bytes = 0;
        for (auto& b : blocks) {
          b.size = tiered_size(rng);
          b.tag = rng.next();
          b.p = static_cast<unsigned char*>(std::malloc(b.size));
          if (!b.p) kb::die("thread-rounds", "malloc returned NULL");
          std::memset(b.p, (int)(b.tag & 0xff), b.size);
          kb::stamp(b.p, b.size, b.tag);
          bytes += (int64_t)b.size;
        }
        int64_t now = live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
        int64_t old = peak.load(std::memory_order_relaxed);
        while (now > old && !peak.compare_exchange_weak(old, now, std::memory_order_relaxed)) {
        }
        const size_t n = blocks.size();
        for (size_t k = 0; k < n; ++k) {
          Block& b = blocks[(r & 1) ? n - 1 - k : k];
          if (!kb::check_stamp(b.p, b.size, b.tag))
            kb::die("thread-rounds", "block corrupted");
          sum = kb::mix(sum, b.tag ^ b.size);
          std::free(b.p);
        }
        live.fetch_sub(bytes, std::memory_order_relaxed);
      }
      sums[i] = sum;
    });
  for (auto& th : ts) th.join();
  uint64_t sum = 0;
  for (uint64_t s : sums) sum = kb::mix(sum, s);

  char d[160];
  std::snprintf(d, sizeof d, "threads=%lld rounds=%lld batch=%lld peak_live_kib=%lld",
                (long long)threads, (long long)rounds, (long long)batch, (long long)(peak.load() >> 10));
  kb::report("thread-rounds", sum, d, t.secs());
  return 0;
}
