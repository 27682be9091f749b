// fragmentation.cc - the fragmentation workload of issue 4: fill, free a
// random 90%, refill with other sizes.
//
// Models a program that builds a large population of small objects (a cache,
// a parse tree, a message backlog), drops most of it in no particular order,
// and then goes on with objects of different sizes.  The 10% survivors are
// scattered over every page the population used, so an allocator cannot
// simply return whole pages; what matters is whether it can reuse the holes
// for the new sizes (or group the survivors), and how much it gives back.
//
// Phases (each ends with an `rss_phase <name> <KiB>` and a `live_kib` line):
//   start   before anything is allocated (the baseline)
//   fill    --live MiB of mixed small objects (16-528 B, log-spread)
//   free    a random --free % of them freed (default 90%)
//   refill  objects of other sizes (600-4096 B) until the live bytes are back
//           at the fill level: an allocator that reuses its holes stays near
//           the fill RSS
//   end     everything freed
// The fill and refill phases also print `thp_coverage <phase> <AnonHugePages>
// <Rss>` (KiB): hugepage coverage of a heap at its steady size.
// Peak RSS is measured outside (compare.py: GNU time's maximum RSS).
// Checked work: every block is stamped and verified before it is freed.
#include <vector>

#include "common.h"

namespace {

// The size and stamp tag of object i are a hash of (seed, i), so the workload
// keeps only one pointer per object (8 bytes of bookkeeping, not 24).
struct Pop {
  std::vector<void*> ptrs;
  uint64_t seed;
  size_t lo, hi;  // 0, 0: the fill mix; else uniform in [lo, hi]
  uint64_t h(size_t i) const { return kb::mix(seed, i * 0x9e3779b97f4a7c15ull + 1); }
  size_t size(size_t i) const {
    uint64_t x = h(i);
    if (lo == 0) return 16 + (size_t)((x >> 8) % (1ull << (4 + (x & 0xff) % 6)));  // 16..527, log-spread
    return lo + (size_t)((x >> 8) % (hi - lo + 1));
  }
};

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "fragmentation", "fill with small objects, free a random 90%, refill with other sizes");
  double scale = a.real("scale", 1.0, "work multiplier (scales --live)");
  int64_t live_mib = a.num("live", 160, "MiB of small objects in the fill phase (times --scale)");
  int64_t free_pct = a.num("free", 90, "percent of the fill population freed");
  int64_t lo2 = a.num("refill-min", 600, "smallest refill size");
  int64_t hi2 = a.num("refill-max", 4096, "largest refill size");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();

  kb::Timer t;
  const size_t target = (size_t)((double)(live_mib << 20) * scale) + 4096;
  uint64_t sum = 0;
  size_t live = 0;
  Pop fill{{}, kb::mix(seed, 1), 0, 0}, refill{{}, kb::mix(seed, 2), (size_t)lo2, (size_t)hi2};
  fill.ptrs.reserve(target / 180 + 16);  // one reservation: mean fill size is about 200 B
  refill.ptrs.reserve(target / (size_t)lo2 + 16);
  auto make = [&](Pop& pop) {
    size_t i = pop.ptrs.size(), size = pop.size(i);
    void* p = std::malloc(size);
    if (!p) kb::die("fragmentation", "malloc returned NULL");
    kb::stamp(p, size, pop.h(i));
    live += size;
    pop.ptrs.push_back(p);
  };
  auto release = [&](Pop& pop, size_t i) {
    size_t size = pop.size(i);
    if (!kb::check_stamp(pop.ptrs[i], size, pop.h(i))) kb::die("fragmentation", "block corrupted");
    sum = kb::mix(sum, pop.h(i) + size);
    live -= size;
    std::free(pop.ptrs[i]);
    pop.ptrs[i] = nullptr;
  };
  // the bookkeeping (the used part of the pointer arrays) is reported as live too
  auto live_kib = [&] { return (long)((live + (fill.ptrs.size() + refill.ptrs.size()) * 8) >> 10); };

  kb::print_phase("start", kb::vmrss_kib(), live_kib());
  while (live < target) make(fill);
  const size_t nfill = fill.ptrs.size();
  kb::print_phase("fill", kb::vmrss_kib(), live_kib());
  kb::ThpSample fill_thp;
  fill_thp.take();
  kb::print_thp("fill", fill_thp);

  // Free a random free_pct% in a scattered order: k -> (k * P + off) mod n
  // is a permutation of 0..n-1 when P is prime and does not divide n.
  size_t P = 1000003;
  if (nfill % P == 0) P = 999983;
  const size_t off = (size_t)(kb::mix(seed, 3) % (nfill ? nfill : 1));
  const size_t nfree = nfill * (size_t)free_pct / 100;
  for (size_t k = 0; k < nfill; ++k) {
    size_t i = (size_t)(((unsigned __int128)k * P + off) % nfill);
    if ((size_t)(kb::mix(seed ^ 0x5bd1e995, i) % 100) < (size_t)free_pct) release(fill, i);
  }
  size_t nfreed = 0;
  for (void* p : fill.ptrs) nfreed += (p == nullptr);
  kb::print_phase("free", kb::vmrss_kib(), live_kib());

  // refill with other sizes until the live bytes are back at the fill level
  while (live < target) make(refill);
  kb::print_phase("refill", kb::vmrss_kib(), live_kib());
  kb::ThpSample refill_thp;
  refill_thp.take();
  kb::print_thp("refill", refill_thp);

  for (size_t i = 0; i < nfill; ++i)
    if (fill.ptrs[i]) release(fill, i);
  for (size_t i = 0; i < refill.ptrs.size(); ++i) release(refill, i);
  kb::print_phase("end", kb::vmrss_kib(), live_kib());

  char d[160];
  std::snprintf(d, sizeof d, "fill_objects=%zu freed=%zu (target %zu) refill_objects=%zu target_kib=%zu",
                nfill, nfreed, nfree, refill.ptrs.size(), target >> 10);
  kb::report("fragmentation", sum, d, t.secs());
  return live == 0 ? 0 : 1;
}
