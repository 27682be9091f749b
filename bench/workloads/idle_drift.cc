// idle_drift.cc - idle drift after a freed burst (issue 4).
//
// Models a service that handles a burst (a big request, a batch job, a
// traffic spike) and then goes idle: a --burst MiB of mixed sizes is
// allocated and freed, about 5% of it (--keep) stays live, and then the
// program makes no allocator call at all for 2 s.  The question is how much
// of the freed memory the allocator gives back to the kernel by itself, and
// how fast: an idle program should drift down to what it uses.
//
// --survivors=before     (default) the 5% long-lived objects are allocated
//                        before the burst, and the burst is freed entirely:
//                        measures the return/decay policy alone
// --survivors=scattered  a random 5% of the burst's own objects stay live,
//                        scattered over its pages: return policy plus
//                        fragmentation (the bench `idle-drift-scattered`)
// Sizes: half the bytes small (16-1024 B), 30% medium (1-32 KiB), 20% large
// (32 KiB-1 MiB).
//
// Reports (`rss_phase <name> <KiB>` with `live_kib <name> <KiB>`):
//   start   before anything is allocated (the baseline)
//   burst   at the peak of the burst
//   t0      right after the last free
//   t0.5, t1, t2   0.5, 1 and 2 s later (nanosleep, no allocator call)
// compare.py checks RSS(t2) - RSS(start) <= 1.1 * live + 2 MiB.
// Checked work: every block is stamped and verified before it is freed.
#include <cstring>
#include <vector>

#include "common.h"

namespace {

struct SizeClass {
  size_t lo, hi;  // uniform in [lo, hi]
  double share;   // share of the bytes
};
const SizeClass kMix[] = {{16, 1024, 0.5}, {1024, 32768, 0.3}, {32768, 1 << 20, 0.2}};

struct Block {
  void* p;
  uint32_t size;
  uint32_t keep;  // 1: stays live through the idle period
  uint64_t tag;
};

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "idle-drift", "a freed burst, then 2 s idle: how fast RSS comes back down");
  double scale = a.real("scale", 1.0, "work multiplier (scales --burst)");
  int64_t burst_mib = a.num("burst", 256, "MiB allocated in the burst (times --scale)");
  int64_t keep_pct = a.num("keep", 5, "percent of the burst's bytes that stay live");
  int64_t idle_ms = a.num("idle", 2000, "idle time after the burst, ms (samples at 0, 1/4, 1/2, 1 of it)");
  std::string surv = a.str("survivors", "before", "before: long-lived objects allocated before the burst; scattered: a random 5% of the burst");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (surv != "before" && surv != "scattered") kb::die("idle-drift", "--survivors must be before or scattered");
  const bool scattered = surv == "scattered";

  kb::Timer t;
  kb::Rng rng(seed);
  const size_t burst = (size_t)((double)(burst_mib << 20) * scale) + 65536;
  const size_t keep_bytes = burst * (size_t)keep_pct / 100;
  std::vector<Block> blocks;
  blocks.reserve(burst / 700 + 64);  // one reservation (the mean size is about 1 KiB)
  size_t live = 0;
  uint64_t sum = 0;
  double got[3] = {0, 0, 0};
  auto make = [&](uint32_t keep) {
    // the class furthest below its share of the bytes
    int c = 0;
    for (int k = 1; k < 3; ++k)
      if (got[k] / kMix[k].share < got[c] / kMix[c].share) c = k;
    Block b;
    b.size = (uint32_t)rng.range(kMix[c].lo, kMix[c].hi);
    b.tag = rng.next();
    b.keep = keep;
    b.p = std::malloc(b.size);
    if (!b.p) kb::die("idle-drift", "malloc returned NULL");
    kb::stamp(b.p, b.size, b.tag);
    got[c] += b.size;
    live += b.size;
    blocks.push_back(b);
  };
  auto live_kib = [&] { return (long)((live + blocks.size() * sizeof(Block)) >> 10); };

  const long rss_start = kb::vmrss_kib();
  kb::print_phase("start", rss_start, live_kib());
  if (!scattered) {
    while (live < keep_bytes) make(1);
    got[0] = got[1] = got[2] = 0;
  }
  const size_t before = live;
  while (live - before < burst) make(0);
  if (scattered) {
    // a random keep_pct% of the objects (by count, about the same by bytes)
    for (auto& b : blocks) b.keep = rng.below(100) < (uint64_t)keep_pct;
  }
  kb::print_phase("burst", kb::vmrss_kib(), live_kib());
  // free the rest in a random order (shuffle; the kept ones are skipped)
  for (size_t k = blocks.size(); k > 1; --k) std::swap(blocks[k - 1], blocks[rng.below(k)]);
  for (auto& b : blocks) {
    if (b.keep) continue;
    if (!kb::check_stamp(b.p, b.size, b.tag)) kb::die("idle-drift", "block corrupted");
    sum = kb::mix(sum, b.tag + b.size);
    live -= b.size;
    std::free(b.p);
    b.p = nullptr;
  }
  // samples: no allocator call from here until the end of the idle period
  const long samples_ms[4] = {0, idle_ms / 4, idle_ms / 2, idle_ms};
  const char* names[4] = {"t0", "t0.5", "t1", "t2"};
  long rss[4];
  kb::Timer idle;
  for (int s = 0; s < 4; ++s) {
    long wait = samples_ms[s] - (long)(idle.secs() * 1000.0);
    if (wait > 0) kb::sleep_ms(wait);
    rss[s] = kb::vmrss_kib();
  }
  const long live_now = live_kib();
  for (int s = 0; s < 4; ++s) kb::print_phase(names[s], rss[s], live_now);

  size_t kept = 0;
  for (auto& b : blocks) {
    if (!b.p) continue;
    ++kept;
    if (!kb::check_stamp(b.p, b.size, b.tag)) kb::die("idle-drift", "survivor corrupted");
    sum = kb::mix(sum, b.tag + b.size);
    live -= b.size;
    std::free(b.p);
  }
  const long above = rss[3] - rss_start;
  const bool within = (double)above <= 1.1 * (double)live_now + 2048.0;
  char d[200];
  std::snprintf(d, sizeof d, "survivors=%s objects=%zu kept=%zu live_kib=%ld rss_t2_above_start_kib=%ld within_10pct_2mib=%s",
                scattered ? "scattered" : "before", blocks.size(), kept, live_now, above,
                within ? "yes" : "no");
  kb::report("idle-drift", sum, d, t.secs());
  return live == 0 ? 0 : 1;
}
