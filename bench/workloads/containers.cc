// containers.cc - C++ standard containers churn, in the spirit of the
// allocation profile of C++ servers and compilers (and of mimalloc-bench's
// C++ tests): node-based containers (std::map, std::unordered_map), strings
// past the small-string buffer, and growing std::vector.
//
// Models C++ application code: an index (std::map<uint64_t, std::string>), a
// symbol table (std::unordered_map<std::string, std::vector<uint32_t>>),
// and batches of records in std::vector<std::string>, all continuously
// inserted into, updated, erased from and rebuilt.  Every operation goes
// through operator new/delete (i.e. malloc/free), mostly with small sizes
// (tree/hash nodes of 48-96 bytes, strings of 16-200 bytes) plus rehash and
// vector-growth buffers.
//
// Measures: small-object new/delete throughput and the memory overhead of
// many small nodes (peak RSS).
// Checked work: the containers' contents are tracked independently (counts
// and running sums) and compared; the checksum hashes the final contents.
#include <algorithm>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace {

std::string make_string(kb::Rng& rng, size_t lo, size_t hi) {
  size_t n = rng.range(lo, hi);
  std::string s(n, 'x');
  uint64_t r = rng.next();
  for (size_t i = 0; i < n; ++i) s[i] = (char)('A' + ((r >> (i % 59)) + i * 7) % 58);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "containers", "std::map / unordered_map / string / vector churn");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t rounds = a.iters("rounds", 80, scale, "rounds of churn");
  int64_t keys = a.num("keys", 60000, "key space of the map and the hash table");
  int64_t ops = a.iters("ops", 40000, std::min(1.0, scale * 10), "operations per round");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (keys < 16) kb::die("containers", "bad options");

  kb::Timer t;
  kb::Rng rng(seed);
  std::map<uint64_t, std::string> index;
  std::unordered_map<std::string, std::vector<uint32_t>> symbols;
  uint64_t index_len = 0;    // sum of the lengths of the strings in index
  uint64_t symbol_vals = 0;  // number of values in all of symbols' vectors
  uint64_t sum = 0;
  for (int64_t r = 0; r < rounds; ++r) {
    for (int64_t op = 0; op < ops; ++op) {
      uint64_t k = rng.below(keys);
      switch (rng.below(6)) {
        case 0:
        case 1: {  // insert or replace in the ordered index
          std::string v = make_string(rng, 8, 120);
          auto [it, fresh] = index.try_emplace(k);
          if (!fresh) index_len -= it->second.size();
          index_len += v.size();
          it->second = std::move(v);
          break;
        }
        case 2: {  // erase from the index
          auto it = index.find(k);
          if (it != index.end()) {
            index_len -= it->second.size();
            index.erase(it);
          }
          break;
        }
        case 3: {  // append to a symbol's list
          std::string name = "sym_" + std::to_string(k) + "_" + std::string(k % 40, 'q');
          auto& vec = symbols[name];
          size_t add = 1 + rng.below(8);
          for (size_t i = 0; i < add; ++i) vec.push_back((uint32_t)rng.next());
          symbol_vals += add;
          break;
        }
        case 4: {  // drop a symbol
          std::string name = "sym_" + std::to_string(k) + "_" + std::string(k % 40, 'q');
          auto it = symbols.find(name);
          if (it != symbols.end()) {
            symbol_vals -= it->second.size();
            symbols.erase(it);
          }
          break;
        }
        default: {  // range scan of the index
          auto it = index.lower_bound(k);
          for (int i = 0; i < 8 && it != index.end(); ++i, ++it) sum += it->second.size() + it->first;
        }
      }
    }
    // A batch of records: build, sort, dedupe, hash, throw away.
    std::vector<std::string> batch;
    for (int64_t i = 0; i < ops / 8; ++i) batch.push_back(make_string(rng, 4, 200));
    std::sort(batch.begin(), batch.end());
    batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
    for (auto& s : batch) sum = kb::mix(sum, kb::hash_bytes(s.data(), s.size()));
    // Every few rounds rebuild the hash table from scratch (rehash storms).
    if (r % 8 == 7) {
      std::unordered_map<std::string, std::vector<uint32_t>> fresh;
      for (auto& [name, vec] : symbols) fresh.emplace(name, vec);
      symbols.swap(fresh);
    }
  }
  // Verify the tracked totals against the containers.
  uint64_t len = 0, vals = 0;
  for (auto& [k, v] : index) { len += v.size(); sum = kb::mix(sum, k + kb::hash_bytes(v.data(), v.size())); }
  for (auto& [name, vec] : symbols) vals += vec.size();
  if (len != index_len || vals != symbol_vals) kb::die("containers", "container contents do not match the tracked totals");
  std::vector<std::string> names;
  for (auto& [name, vec] : symbols) names.push_back(name);
  std::sort(names.begin(), names.end());
  for (auto& n : names) {
    uint64_t h = kb::hash_bytes(n.data(), n.size());
    for (auto v : symbols[n]) h = kb::mix(h, v);
    sum = kb::mix(sum, h);
  }
  char d[160];
  std::snprintf(d, sizeof d, "rounds=%ld index=%zu symbols=%zu values=%lu", (long)rounds,
                index.size(), symbols.size(), (unsigned long)vals);
  kb::report("containers", sum, d, t.secs());
  return 0;
}
