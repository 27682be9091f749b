// common.h - shared helpers for the kalloc benchmark workloads.
//
// Every workload is a plain executable that uses the ordinary malloc surface;
// the allocator under test is chosen at run time with LD_PRELOAD.
//
// Command line: options are "--name=value" (or "name=value").  Every workload
// understands
//   --scale=F     multiply the amount of work (iterations) by F (default 1.0);
//                 the smoke test uses a tiny scale, compare.py --quick a small one
//   --threads=N   number of worker threads (where the workload has threads)
//   --seed=N      random seed (default fixed, so checksums are reproducible)
//   --help        list the options and their defaults
// plus its own options.  On success a workload prints one line
//   <name>: ok checksum=<hex> <details>
// and exits 0; the checksum depends only on the options (never on the
// allocator), so compare.py checks it is the same under every allocator.
// On any failed check it prints "<name>: FAILED ..." to stderr and exits 1.
#pragma once

#include <malloc.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kb {

[[noreturn]] inline void die(const char* name, const char* what) {
  std::fprintf(stderr, "%s: FAILED: %s\n", name, what);
  std::fflush(stderr);
  std::exit(1);
}

// Small, fast, deterministic PRNG (xoshiro256**), seeded by splitmix64.
struct Rng {
  uint64_t s[4];
  explicit Rng(uint64_t seed) {
    uint64_t x = seed + 0x9e3779b97f4a7c15ull;
    for (auto& w : s) {
      uint64_t z = (x += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      w = z ^ (z >> 31);
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
  }
  // uniform in [0, n)
  uint64_t below(uint64_t n) { return (uint64_t)(((unsigned __int128)next() * n) >> 64); }
  // uniform in [lo, hi]
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  double uniform() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }
};

inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

inline uint64_t hash_bytes(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

class Args {
 public:
  Args(int argc, char** argv, const char* name, const char* about)
      : name_(name), about_(about) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") { help_ = true; continue; }
      if (a.rfind("--", 0) == 0) a = a.substr(2);
      auto eq = a.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "%s: bad argument '%s' (expected --name=value)\n", name, argv[i]);
        std::exit(2);
      }
      kv_[a.substr(0, eq)] = a.substr(eq + 1);
    }
  }
  int64_t num(const char* key, int64_t def, const char* what) {
    doc(key, std::to_string(def), what);
    auto it = kv_.find(key);
    if (it == kv_.end()) return def;
    used_.push_back(key);
    return std::strtoll(it->second.c_str(), nullptr, 0);
  }
  double real(const char* key, double def, const char* what) {
    doc(key, std::to_string(def), what);
    auto it = kv_.find(key);
    if (it == kv_.end()) return def;
    used_.push_back(key);
    return std::strtod(it->second.c_str(), nullptr);
  }
  std::string str(const char* key, const char* def, const char* what) {
    doc(key, def, what);
    auto it = kv_.find(key);
    if (it == kv_.end()) return def;
    used_.push_back(key);
    return it->second;
  }
  // An iteration count: default * scale, at least `min`.
  int64_t iters(const char* key, int64_t def, double scale, const char* what, int64_t min = 1) {
    int64_t v = num(key, def, what);
    if (kv_.count(key)) return v;  // an explicit value is taken as is
    int64_t s = (int64_t)((double)v * scale);
    return s < min ? min : s;
  }
  // Call after reading every option: handles --help and unknown options.
  void done() {
    if (help_) {
      std::printf("%s - %s\noptions:\n%s", name_, about_, help_text_.c_str());
      std::exit(0);
    }
    for (auto& [k, v] : kv_) {
      bool known = false;
      for (auto& u : used_) known |= (u == k);
      if (!known) {
        std::fprintf(stderr, "%s: unknown option --%s (see --help)\n", name_, k.c_str());
        std::exit(2);
      }
    }
  }

 private:
  void doc(const char* key, const std::string& def, const char* what) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "  --%-12s %s (default %s)\n", key, what, def.c_str());
    help_text_ += buf;
  }
  const char* name_;
  const char* about_;
  bool help_ = false;
  std::map<std::string, std::string> kv_;
  std::vector<std::string> used_;
  std::string help_text_;
};

struct Timer {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double secs() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

// Current resident set size in KiB (from /proc/self/statm), 0 if unknown.
inline long current_rss_kib() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long pages = 0, rss = 0;
  if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  std::fclose(f);
  return rss * 4;  // 4 KiB pages on x86-64
}

// VmRSS of this process in KiB, from /proc/self/status, 0 if unknown.  Read
// with open/read into a stack buffer: no malloc, so it can be called from a
// sampler thread without giving that thread an allocator cache.
inline long vmrss_kib() {
  int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char* p = std::strstr(buf, "VmRSS:");
  if (!p) return 0;
  return std::strtol(p + 6, nullptr, 10);
}

// Hugepage coverage of this process: AnonHugePages and Rss in KiB, from
// /proc/self/smaps_rollup (open/read into a stack buffer: no malloc).  False
// when the file cannot be read (no THP support, or an old kernel).
inline bool thp_usage(long* anon_huge_kib, long* rss_kib) {
  int fd = ::open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8192];
  ssize_t n = 0, r;
  while (n < (ssize_t)sizeof buf - 1 && (r = ::read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += r;
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  const char* rss = std::strstr(buf, "\nRss:");
  const char* ahp = std::strstr(buf, "\nAnonHugePages:");
  if (!rss || !ahp) return false;
  *rss_kib = std::strtol(rss + 5, nullptr, 10);
  *anon_huge_kib = std::strtol(ahp + 15, nullptr, 10);
  return true;
}

// Machine-readable lines that compare.py parses (before the "ok" line):
//   rss_phase <name> <KiB>     the VmRSS at the end of a named phase
//   live_kib <name> <KiB>      the bytes the program holds at that point
//   rss_sample <ms> <KiB>      one VmRSS sample of a time series
//   thp_coverage <name> <AnonHugePages KiB> <Rss KiB>
//                              hugepage coverage at a steady phase (issue 4:
//                              >= 80% of Rss in hugepages); several lines with
//                              one name are summed
// KB_PHASE_STATS=1: the allocator's malloc_stats() on stderr at the end of
// each phase (a diagnostic: what the allocator holds at that point).
inline void phase_stats(const char* phase) {
  static const bool on = std::getenv("KB_PHASE_STATS") != nullptr;
  if (!on) return;
  std::fprintf(stderr, "== phase %s\n", phase);
  malloc_stats();
}

// `stats`: false where the phase lines are printed after the fact (the
// program called phase_stats when the phase ended).
inline void print_phase(const char* phase, long rss_kib, long live_kib = -1, bool stats = true) {
  std::printf("rss_phase %s %ld\n", phase, rss_kib);
  if (live_kib >= 0) std::printf("live_kib %s %ld\n", phase, live_kib);
  std::fflush(stdout);
  if (stats) phase_stats(phase);
}

// A hugepage coverage sample, taken now and printed later (print_thp), so a
// phase boundary inside threads or a timed loop does not print.
struct ThpSample {
  long anon_huge_kib = 0, rss_kib = 0;
  bool ok = false;
  void take() { ok = thp_usage(&anon_huge_kib, &rss_kib); }
  void add(const ThpSample& o) {
    anon_huge_kib += o.anon_huge_kib;
    rss_kib += o.rss_kib;
    ok = ok || o.ok;
  }
};

inline void print_thp(const char* phase, const ThpSample& s) {
  if (!s.ok) return;
  std::printf("thp_coverage %s %ld %ld\n", phase, s.anon_huge_kib, s.rss_kib);
  std::fflush(stdout);
}

// Sleep for `ms` milliseconds (nanosleep: no allocator call).
inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

// Stamp a block of `size` bytes with a tag: first 8 bytes (or fewer), last
// byte, and one byte per 4 KiB page in between (so every page is touched, as
// a real program would, without the cost of filling the whole block).
inline void stamp(void* p, size_t size, uint64_t tag) {
  unsigned char* c = static_cast<unsigned char*>(p);
  size_t head = size < 8 ? size : 8;
  std::memcpy(c, &tag, head);
  for (size_t off = 4096; off + 1 < size; off += 4096) c[off] = (unsigned char)(tag >> 8);
  if (size > 8) c[size - 1] = (unsigned char)(tag ^ 0x5a);
}

inline bool check_stamp(const void* p, size_t size, uint64_t tag) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  size_t head = size < 8 ? size : 8;
  uint64_t t = 0;
  std::memcpy(&t, c, head);
  uint64_t want = tag;
  if (head < 8) want &= (1ull << (8 * head)) - 1;
  if (t != want) return false;
  for (size_t off = 4096; off + 1 < size; off += 4096)
    if (c[off] != (unsigned char)(tag >> 8)) return false;
  if (size > 8 && c[size - 1] != (unsigned char)(tag ^ 0x5a)) return false;
  return true;
}

inline void report(const char* name, uint64_t checksum, const std::string& details, double secs) {
  std::printf("%s: ok checksum=%016" PRIx64 " %s secs=%.3f rss_kib=%ld\n", name, checksum,
              details.c_str(), secs, current_rss_kib());
  std::fflush(stdout);
}

}  // namespace kb
