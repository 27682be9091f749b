// realloc_string.cc - realloc-heavy string building, in the spirit of
// mimalloc-bench's "glibc-simple"/"cfrac" string paths and of C programs that
// grow buffers one append at a time (log formatting, JSON writers, readline).
//
// Models C code that builds many strings at once by appending small pieces
// with realloc to the exact new length (no capacity doubling: the worst
// case, as naive C code does), interleaved between many strings so that a
// growing string usually cannot just extend into the space after it.  When a
// string reaches its target length it is verified, sometimes shrunk with
// realloc (trimming), and freed, and a new one starts.
//
// Measures: realloc throughput: in-place growth within size classes, the
// copying cost when moving between classes, and mremap-style growth for
// large strings.
// Checked work: the content of every finished string is hashed and compared
// with a hash computed incrementally from the appended pieces.
#include <cmath>
#include <vector>

#include "common.h"

namespace {

struct Str {
  char* p = nullptr;
  size_t len = 0, target = 0;
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the content so far
};

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "realloc-string", "strings grown by realloc, one small append at a time");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t strings = a.iters("strings", 25000, scale, "strings built in all");
  int64_t parallel = a.num("parallel", 64, "strings being built at once (interleaved)");
  int64_t max_len = a.num("max", 65536, "longest target length");
  int64_t max_piece = a.num("piece", 48, "longest appended piece");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (parallel < 1 || max_len < 16 || max_piece < 1) kb::die("realloc-string", "bad options");

  kb::Timer t;
  kb::Rng rng(seed);
  std::vector<Str> cur(parallel);
  auto target = [&] {
    // log-uniform target lengths: many short strings, some long ones
    double lg = rng.uniform() * std::log2((double)max_len / 16.0);
    return (size_t)(16.0 * std::exp2(lg));
  };
  for (auto& s : cur) s.target = target();
  char piece[4096];
  uint64_t sum = 0, reallocs = 0;
  int64_t done = 0;
  while (done < strings) {
    Str& s = cur[rng.below(parallel)];
    size_t n = 1 + rng.below(max_piece);
    uint64_t r = rng.next();
    for (size_t k = 0; k < n; ++k) piece[k] = (char)('a' + ((r >> (k % 56)) + k) % 26);
    char* np = static_cast<char*>(std::realloc(s.p, s.len + n + 1));
    if (!np) kb::die("realloc-string", "realloc returned NULL");
    ++reallocs;
    s.p = np;
    std::memcpy(s.p + s.len, piece, n);
    s.len += n;
    s.p[s.len] = '\0';
    s.h = kb::hash_bytes(piece, n, s.h);
    if (s.len >= s.target) {
      if (kb::hash_bytes(s.p, s.len) != s.h || std::strlen(s.p) != s.len)
        kb::die("realloc-string", "string content lost across realloc");
      if (rng.below(4) == 0) {  // trim: shrink in place, then check the prefix survived
        size_t keep = s.len / 2;
        s.p = static_cast<char*>(std::realloc(s.p, keep + 1));
        if (!s.p) kb::die("realloc-string", "shrinking realloc returned NULL");
        ++reallocs;
        s.p[keep] = '\0';
        s.h = kb::hash_bytes(s.p, keep);
        s.len = keep;
      }
      sum = kb::mix(sum, s.h + s.len);
      std::free(s.p);
      s = Str{};
      s.target = target();
      ++done;
    }
  }
  for (auto& s : cur) {
    if (s.p && kb::hash_bytes(s.p, s.len) != s.h) kb::die("realloc-string", "string content lost");
    std::free(s.p);
  }
  char d[128];
  std::snprintf(d, sizeof d, "strings=%ld reallocs=%lu", (long)strings, (unsigned long)reallocs);
  kb::report("realloc-string", sum, d, t.secs());
  return 0;
}
