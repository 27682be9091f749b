// random_sizes.cc - threads that keep slots of blocks of random sizes up to
// 2 MiB, written whole, and replace, grow or shrink them at random: the
// stress program of kalloc's drop-in sweep (session 17), made a benchmark
// when it showed kalloc 1.4x slower than tcmalloc and mimalloc there
// (session 19), in the spirit of mimalloc-bench's random-size tests.
//
// Models programs whose buffers come in every size (compression, image and
// document processing, databases' sort and hash buffers): per thread a table
// of slots; each step picks one at random and frees it (5 in 10 when it
// holds a block), reallocs it to a new random size (3 in 10: its old bytes
// are checked up to the smaller size), or, when empty, fills it with malloc
// (7 in 10) or calloc (3 in 10: checked to read zero).  Sizes come in tiers:
// 60% up to 256 B, 30% up to 16 KiB, 8% up to 256 KiB, 2% up to 2 MiB; every
// block is written whole (memset), as a program fills its buffers, so each
// page the allocator hands out is touched.  More threads than CPUs by
// default (4), so page-level locks and memory given back between threads
// show.
//
// Measures: throughput of mixed small/large/huge requests and realloc across
// size classes, and the cost of giving memory back and faulting it in again
// (minor faults); peak RSS against the live bytes (printed).
// Checked work: every block is checked (head, one byte per page, tail)
// before it is freed or realloc'd; the checksum covers every block's tag.
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Slot {
  unsigned char* p = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
};

size_t tiered_size(kb::Rng& rng, size_t max) {
  uint64_t k = rng.below(100);
  size_t top = k < 60 ? 256 : k < 90 ? 16384 : k < 98 ? 262144 : max;
  if (top > max) top = max;
  return (size_t)rng.range(1, top);
}

// The block's bytes: the tag's low byte everywhere, then the stamp (head,
// one byte per page, tail) over it.
void fill(Slot& s) {
  std::memset(s.p, (int)(s.tag & 0xff), s.size);
  kb::stamp(s.p, s.size, s.tag);
}

// The first n bytes of a block filled with `tag` (n <= its size) still hold
// them: head, one byte per page, and the last of the n.
bool check_prefix(const unsigned char* p, size_t size, uint64_t tag, size_t n) {
  if (n == size) return kb::check_stamp(p, size, tag);
  size_t head = n < 8 ? n : 8;
  for (size_t i = 0; i < head; i++)
    if (p[i] != (unsigned char)(tag >> (8 * i))) return false;
  for (size_t off = 4096; off + 1 < n; off += 4096)
    if (p[off] != (unsigned char)(tag >> 8)) return false;
  if (n > 8 && n - 1 < size - 1 && (n - 1) % 4096 != 0 && p[n - 1] != (unsigned char)(tag & 0xff))
    return false;
  return true;
}

bool all_zero(const unsigned char* p, size_t n) {
  for (size_t off = 0; off < n; off += 512)
    if (p[off]) return false;
  return n == 0 || p[n - 1] == 0;
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "random-sizes", "blocks of random sizes up to 2 MiB, written whole");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t threads = a.num("threads", 4, "worker threads");
  int64_t ops = a.iters("ops", 50000, scale, "steps per thread");
  int64_t slots = a.num("slots", 4096, "slots per thread");
  int64_t max_size = a.num("max", 2 << 20, "largest size");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (threads < 1 || slots < 1 || max_size < 256) kb::die("random-sizes", "bad options");

  kb::Timer t;
  std::vector<uint64_t> sums(threads, 0), peak_live(threads, 0);
  std::vector<std::thread> ts;
  for (int64_t i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      kb::Rng rng(seed * 7919 + i);
      std::vector<Slot> table(slots);
      uint64_t sum = 0, live = 0, peak = 0;
      for (int64_t op = 0; op < ops; ++op) {
        Slot& s = table[rng.below(slots)];
        uint64_t k = rng.below(10);
        if (s.p && k < 5) {
          if (!kb::check_stamp(s.p, s.size, s.tag)) kb::die("random-sizes", "block corrupted");
          sum = kb::mix(sum, s.tag ^ s.size);
          std::free(s.p);
          live -= s.size;
          s = Slot();
        } else if (s.p && k < 8) {
          if (!kb::check_stamp(s.p, s.size, s.tag)) kb::die("random-sizes", "block corrupted");
          size_t n = tiered_size(rng, (size_t)max_size);
          auto* q = static_cast<unsigned char*>(std::realloc(s.p, n));
          if (!q) kb::die("random-sizes", "realloc returned NULL");
          if (!check_prefix(q, s.size, s.tag, n < s.size ? n : s.size))
            kb::die("random-sizes", "realloc lost the block's contents");
          live += n;
          live -= s.size;
          s.p = q;
          s.size = n;
          s.tag = rng.next();
          fill(s);
        } else if (!s.p) {
          s.size = tiered_size(rng, (size_t)max_size);
          s.tag = rng.next();
          if (k < 3) {
            s.p = static_cast<unsigned char*>(std::calloc(1, s.size));
            if (!s.p) kb::die("random-sizes", "calloc returned NULL");
            if (!all_zero(s.p, s.size)) kb::die("random-sizes", "calloc memory not zeroed");
          } else {
            s.p = static_cast<unsigned char*>(std::malloc(s.size));
            if (!s.p) kb::die("random-sizes", "malloc returned NULL");
          }
          fill(s);
          live += s.size;
        }
        if (live > peak) peak = live;
      }
      for (auto& s : table) {
        if (!s.p) continue;
        if (!kb::check_stamp(s.p, s.size, s.tag)) kb::die("random-sizes", "block corrupted at exit");
        sum = kb::mix(sum, s.tag);
        std::free(s.p);
      }
      sums[i] = sum;
      peak_live[i] = peak;
    });
  for (auto& th : ts) th.join();
  uint64_t sum = 0, peak = 0;
  for (int64_t i = 0; i < threads; ++i) {
    sum = kb::mix(sum, sums[i]);
    peak += peak_live[i];
  }
  char d[160];
  std::snprintf(d, sizeof d, "threads=%ld ops=%ld slots=%ld peak_live_kib=%lu", (long)threads,
                (long)(threads * ops), (long)(threads * slots), (unsigned long)(peak / 1024));
  kb::report("random-sizes", sum, d, t.secs());
  return 0;
}
