// kv_ttl.cc - an in-house key-value store with TTL expiry (issue 4's
// server-like churn), sampled for RSS over time.
//
// Models a cache server (memcached/redis-like) over a day compressed into a
// few seconds: --threads workers (default 4) each serve their own shard of
// the key space (a std::unordered_map of std::string keys, ~20 characters,
// so they live on the heap) with SET (a fresh malloc'd value, a TTL),
// GET (verified value, lazy expiry) and DEL.  Expired keys are also
// removed actively by a timing wheel, as redis's active expire cycle does.
// The traffic goes through three phases, all workers together (a barrier):
//   warm   values 32 B-4 KiB, long TTLs: the cache fills up
//   spike  values 1-64 KiB, more SETs, short TTLs: a burst of big objects
//   calm   values 64 B-2 KiB, short TTLs, half of the keys: the live set
//          shrinks, and a good allocator gives the spike's memory back
// then an idle tail (--tail ms, no request at all).
// Time is logical (one tick per request of a worker), so what a GET returns
// and the checksum do not depend on the allocator or on scheduling.
//
// A sampler thread (which never allocates) reads VmRSS every --sample ms;
// printed at the end as `rss_sample <ms> <KiB>` lines, with
// `phase_mark <ms> <phase>` lines and `rss_phase <phase> <KiB>` + `live_kib`
// at the end of each phase, and `thp_coverage <phase> <AnonHugePages> <Rss>`
// (KiB) there and after the tail.
// Checked work: every value is stamped and verified on GET and before free.
#include <atomic>
#include <barrier>
#include <cmath>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace {

struct Entry {
  char* val;        // the value (malloc'd)
  uint32_t len;     // its length
  uint64_t expire;  // logical time of expiry
  uint64_t tag;     // stamp tag of the value
};

struct PhaseSpec {
  const char* name;
  size_t vmin, vmax;      // value sizes, log-uniform in [vmin, vmax]
  uint32_t set_pct;       // percent of SETs (the rest: 95% GET, 5% DEL)
  uint32_t keys_div;      // key space = keys / keys_div
  uint64_t ttl_min, ttl_max;  // TTL in ticks at 500000 requests per worker (scaled)
  double share;           // share of the requests
};

const PhaseSpec kPhases[] = {
    {"warm", 32, 4096, 30, 1, 40000, 160000, 0.40},
    {"spike", 1024, 32768, 55, 1, 2000, 10000, 0.20},
    {"calm", 64, 2048, 30, 2, 5000, 40000, 0.40},
};
constexpr int kNumPhases = 3;

constexpr uint64_t kSlot = 1024;  // timing wheel: ticks per slot
constexpr size_t kSlots = 256;    // covers 262144 ticks > the longest TTL

struct Shard {
  std::unordered_map<std::string, Entry> map;
  std::vector<uint32_t> wheel[kSlots];  // key ids by expiry slot
  uint64_t now = 0;
  uint64_t sum = 0, hits = 0, misses = 0, expired = 0, live = 0;
  bool failed = false;
};

void make_key(char* buf, size_t n, uint32_t worker, uint32_t id) {
  std::snprintf(buf, n, "session:%02x:%08x:v1", worker, id);
}

void drop(Shard& s, std::unordered_map<std::string, Entry>::iterator it) {
  Entry& e = it->second;
  if (!kb::check_stamp(e.val, e.len, e.tag)) s.failed = true;
  s.live -= e.len + it->first.size();
  std::free(e.val);
  s.map.erase(it);
}

// sampler state (written by the sampler thread only, read after it stops)
constexpr size_t kMaxSamples = 100000;
struct Sample {
  uint32_t ms;
  uint32_t kib;
};
Sample g_samples[kMaxSamples];
std::atomic<size_t> g_nsamples{0};
std::atomic<bool> g_stop{false};

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "kv-ttl", "a key-value store with TTL expiry: RSS over time");
  double scale = a.real("scale", 1.0, "work multiplier (requests and key space)");
  int64_t nthreads = a.num("threads", 4, "worker threads (one shard each)");
  int64_t ops = a.iters("ops", 500000, scale, "requests per worker", 2000);
  int64_t keys = a.iters("keys", 24000, std::min(1.0, scale * 2), "keys per worker", 256);
  int64_t sample_ms = a.num("sample", 100, "RSS sampling period, ms");
  int64_t tail_ms = a.num("tail", 1000, "idle time after the last request, ms");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();

  // TTLs scale with the requests, so every scale goes through the same story
  const double ttl_scale = std::min(1.5, (double)ops / 500000.0);
  kb::Timer t;
  std::thread sampler([&] {
    kb::Timer st;
    for (;;) {
      size_t n = g_nsamples.load(std::memory_order_relaxed);
      if (n < kMaxSamples) {
        g_samples[n] = {(uint32_t)(st.secs() * 1000.0), (uint32_t)kb::vmrss_kib()};
        g_nsamples.store(n + 1, std::memory_order_release);
      }
      if (g_stop.load(std::memory_order_acquire)) break;
      kb::sleep_ms(sample_ms);
    }
  });

  std::vector<Shard> shards((size_t)nthreads);
  std::atomic<uint64_t> live_total{0};
  long phase_rss[kNumPhases] = {0, 0, 0};
  long phase_live[kNumPhases] = {0, 0, 0};
  uint32_t phase_ms[kNumPhases] = {0, 0, 0};
  kb::ThpSample phase_thp[kNumPhases];
  int phase_done = 0;
  auto on_phase_end = [&]() noexcept {
    uint64_t live = 0;
    for (auto& s : shards) live += s.live;
    phase_rss[phase_done] = kb::vmrss_kib();
    kb::phase_stats(kPhases[phase_done].name);
    phase_thp[phase_done].take();
    phase_live[phase_done] = (long)(live >> 10);
    phase_ms[phase_done] = (uint32_t)(t.secs() * 1000.0);
    ++phase_done;
  };
  std::barrier sync((ptrdiff_t)nthreads, on_phase_end);

  auto work = [&](uint32_t w) {
    Shard& s = shards[w];
    kb::Rng rng(kb::mix(seed, w + 1));
    char kbuf[48];
    for (const PhaseSpec& ph : kPhases) {
      const int64_t n = (int64_t)((double)ops * ph.share);
      const uint32_t nkeys = (uint32_t)std::max<int64_t>(16, keys / ph.keys_div);
      const double lmin = std::log((double)ph.vmin), lspan = std::log((double)ph.vmax) - lmin;
      for (int64_t i = 0; i < n; ++i) {
        ++s.now;
        // active expiry: one wheel slot every kSlot ticks
        if (s.now % kSlot == 0) {
          auto& slot = s.wheel[(s.now / kSlot) % kSlots];
          for (uint32_t id : slot) {
            make_key(kbuf, sizeof kbuf, w, id);
            auto it = s.map.find(kbuf);
            if (it != s.map.end() && it->second.expire <= s.now) {
              drop(s, it);
              ++s.expired;
            }
          }
          slot.clear();
        }
        const uint32_t id = (uint32_t)rng.below(nkeys);
        make_key(kbuf, sizeof kbuf, w, id);
        const uint64_t r = rng.below(100);
        if (r < ph.set_pct) {
          const size_t len = (size_t)std::exp(lmin + lspan * rng.uniform());
          const uint64_t ttl = 1 + (uint64_t)((double)rng.range(ph.ttl_min, ph.ttl_max) * ttl_scale);
          Entry e{(char*)std::malloc(len), (uint32_t)len, s.now + ttl, rng.next()};
          if (!e.val) kb::die("kv-ttl", "malloc returned NULL");
          kb::stamp(e.val, len, e.tag);
          auto it = s.map.find(kbuf);
          if (it != s.map.end()) drop(s, it);
          auto ins = s.map.emplace(kbuf, e);
          s.live += len + ins.first->first.size();
          s.wheel[((s.now + ttl) / kSlot + 1) % kSlots].push_back(id);
          s.sum = kb::mix(s.sum, e.tag);
        } else {
          auto it = s.map.find(kbuf);
          if (it != s.map.end() && it->second.expire <= s.now) {  // lazy expiry
            drop(s, it);
            ++s.expired;
            it = s.map.end();
          }
          if (r < ph.set_pct + (100 - ph.set_pct) * 95 / 100) {  // GET
            if (it == s.map.end()) {
              ++s.misses;
              s.sum = kb::mix(s.sum, id);
            } else {
              const Entry& e = it->second;
              if (!kb::check_stamp(e.val, e.len, e.tag)) s.failed = true;
              ++s.hits;
              s.sum = kb::mix(s.sum, e.tag ^ e.len);
            }
          } else if (it != s.map.end()) {  // DEL
            drop(s, it);
          }
        }
      }
      sync.arrive_and_wait();
    }
  };
  std::vector<std::thread> workers;
  for (uint32_t w = 0; w < (uint32_t)nthreads; ++w) workers.emplace_back(work, w);
  for (auto& th : workers) th.join();
  uint64_t sum = 0, hits = 0, misses = 0, expired = 0, nkeys = 0, live = 0;
  bool failed = false;
  for (auto& s : shards) {
    sum = kb::mix(sum, s.sum);
    hits += s.hits;
    misses += s.misses;
    expired += s.expired;
    nkeys += s.map.size();
    live += s.live;
    failed |= s.failed;
  }
  // the idle tail: the store keeps its keys, nothing is requested
  kb::sleep_ms(tail_ms);
  const long rss_idle = kb::vmrss_kib();
  kb::phase_stats("idle");
  kb::ThpSample idle_thp;
  idle_thp.take();
  g_stop.store(true, std::memory_order_release);
  sampler.join();
  for (auto& s : shards) {
    while (!s.map.empty()) drop(s, s.map.begin());
    failed |= s.failed;
  }
  if (failed) kb::die("kv-ttl", "a value was corrupted");

  for (int p = 0; p < kNumPhases; ++p) {
    std::printf("phase_mark %u %s\n", phase_ms[p], kPhases[p].name);
    kb::print_phase(kPhases[p].name, phase_rss[p], phase_live[p], false);
    kb::print_thp(kPhases[p].name, phase_thp[p]);
  }
  kb::print_phase("idle", rss_idle, (long)(live >> 10), false);
  kb::print_thp("idle", idle_thp);
  const size_t ns = g_nsamples.load(std::memory_order_acquire);
  for (size_t i = 0; i < ns; ++i) std::printf("rss_sample %u %u\n", g_samples[i].ms, g_samples[i].kib);
  char d[200];
  std::snprintf(d, sizeof d, "threads=%ld ops=%ld hits=%lu misses=%lu expired=%lu keys_left=%lu",
                (long)nthreads, (long)ops, (unsigned long)hits, (unsigned long)misses,
                (unsigned long)expired, (unsigned long)nkeys);
  kb::report("kv-ttl", sum, d, t.secs());
  return 0;
}
