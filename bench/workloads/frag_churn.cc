// frag_churn.cc - a long-running fragmentation churn, in the spirit of the
// "espresso"/"cfrac" traces and of Wilson & Johnstone's fragmentation studies
// (and of mimalloc-bench's "mstress"/"rptest" phases).
//
// Models a long-lived program whose allocation mix changes over time: it
// runs through phases, each with its own size mix (tiny objects, small
// strings, medium buffers, large buffers, a mixed phase), and in every phase
// it frees most of the previous phase's objects in random order, keeping a
// scattered fraction alive as long-lived survivors.  Those survivors pin
// partially used pages/slabs, so an allocator that cannot reuse holes for
// the next phase's different sizes, or never returns emptied memory, grows.
//
// Measures: time, and mainly peak RSS against the live bytes (both printed;
// the final RSS after everything is freed is printed too).
// Hugepage coverage: after the churn of each phase of every cycle but the
// first (the heap at its steady size), AnonHugePages and Rss are summed and
// printed as one `thp_coverage churn <KiB> <KiB>` line.
// Checked work: every block is stamped and verified before it is freed.
#include <vector>

#include "common.h"

namespace {

struct Block {
  void* p;
  size_t size;
  uint64_t tag;
};

struct Phase {
  const char* name;
  size_t lo, hi;   // uniform size range
  double weight;   // share of the phase's bytes budget
};

const Phase kPhases[] = {
    {"tiny", 8, 64, 1.0},         {"small", 64, 512, 1.0},
    {"medium", 512, 8192, 1.0},   {"large", 8192, 262144, 1.0},
    {"mixed-small", 8, 1024, 1.0}, {"huge", 262144, 2097152, 0.5},
};

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "frag-churn", "phases of different size mixes with scattered survivors");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t cycles = a.iters("cycles", 3, scale, "passes through all phases");
  int64_t budget_mib = a.iters("budget", 32, std::min(1.0, scale * 3), "live MiB allocated per phase");
  int64_t churn = a.iters("churn", 2, std::min(1.0, scale * 2), "replace-all passes inside a phase");
  int64_t keep = a.num("keep", 10, "percent of a phase's blocks kept as long-lived survivors");
  int64_t max_survivors = a.num("survivors", 60000, "cap on long-lived survivors (oldest freed first)");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();

  kb::Timer t;
  kb::Rng rng(seed);
  std::vector<Block> survivors, cur;
  uint64_t sum = 0, peak_live = 0, live = 0;
  auto release = [&](Block& b) {
    if (!kb::check_stamp(b.p, b.size, b.tag)) kb::die("frag-churn", "block corrupted");
    sum = kb::mix(sum, b.tag + b.size);
    live -= b.size;
    std::free(b.p);
  };
  auto make = [&](size_t lo, size_t hi) {
    Block b;
    b.size = rng.range(lo, hi);
    b.tag = rng.next();
    b.p = std::malloc(b.size);
    if (!b.p) kb::die("frag-churn", "malloc returned NULL");
    kb::stamp(b.p, b.size, b.tag);
    live += b.size;
    if (live > peak_live) peak_live = live;
    return b;
  };
  const size_t budget = (size_t)budget_mib << 20;
  int64_t nphases = 0;
  kb::ThpSample churn_thp;
  for (int64_t c = 0; c < cycles; ++c) {
    for (const Phase& ph : kPhases) {
      ++nphases;
      size_t bytes = (size_t)(budget * ph.weight);
      // Fill the phase's budget with its size mix.
      size_t got = 0;
      while (got < bytes) {
        cur.push_back(make(ph.lo, ph.hi));
        got += cur.back().size;
      }
      // Churn: replace random blocks with new ones of the same mix.
      for (int64_t pass = 0; pass < churn; ++pass)
        for (size_t k = 0; k < cur.size(); ++k) {
          Block& b = cur[rng.below(cur.size())];
          release(b);
          b = make(ph.lo, ph.hi);
        }
      if (c > 0 || cycles == 1) {
        kb::ThpSample now;
        now.take();
        churn_thp.add(now);
      }
      // End of phase: free most blocks in random order, keep a scattered few.
      for (size_t k = cur.size(); k > 1; --k) std::swap(cur[k - 1], cur[rng.below(k)]);
      for (auto& b : cur) {
        if ((int64_t)rng.below(100) < keep && b.size <= 65536)
          survivors.push_back(b);
        else
          release(b);
      }
      cur.clear();
      // Old survivors die eventually (oldest first, in scattered positions).
      if ((int64_t)survivors.size() > max_survivors) {
        size_t extra = survivors.size() - (size_t)max_survivors;
        for (size_t k = 0; k < extra; ++k) release(survivors[k]);
        survivors.erase(survivors.begin(), survivors.begin() + (ptrdiff_t)extra);
      }
    }
  }
  uint64_t survivor_bytes = 0;
  for (auto& b : survivors) survivor_bytes += b.size;
  long rss_with_survivors = kb::current_rss_kib();
  for (auto& b : survivors) release(b);
  kb::print_thp("churn", churn_thp);
  char d[200];
  std::snprintf(d, sizeof d,
                "phases=%ld peak_live_kib=%lu survivor_kib=%lu rss_with_survivors_kib=%ld",
                (long)nphases, (unsigned long)(peak_live >> 10),
                (unsigned long)(survivor_bytes >> 10), rss_with_survivors);
  kb::report("frag-churn", sum, d, t.secs());
  return live == 0 ? 0 : 1;
}
