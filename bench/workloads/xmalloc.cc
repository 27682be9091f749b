// xmalloc.cc - the "xmalloc-test" producer/consumer benchmark (Lever & Boreham,
// as in the mimalloc-bench suite).
//
// Models a pipeline: producer threads allocate objects and hand them over a
// queue to consumer threads, which read and free them.  Every free is a
// remote free and the memory flows one way, from producers to consumers, so
// an allocator must send freed memory back to the allocating threads (or
// share it) to avoid growing without bound.
//
// Measures: throughput of one-way cross-thread alloc/free; the peak RSS shows
// whether freed memory gets back to the producers.
// Checked work: producers fill each object with a value-derived pattern and
// add it to a checksum; consumers verify the pattern and add the same value;
// both checksums must agree.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr size_t kBatch = 64;

struct Batch {
  void* obj[kBatch];
  uint32_t size[kBatch];
  uint64_t val[kBatch];
  size_t n;
};

// Bounded queue of batches: producers block when it is full, so the live
// memory stays bounded however fast producers run.
class Queue {
 public:
  explicit Queue(size_t cap) : cap_(cap) {}
  void push(Batch* b) {
    std::unique_lock<std::mutex> l(m_);
    if (q_.size() >= cap_) {
      // Full: sleep until consumers have drained it to half (hysteresis, so
      // producers and consumers do not wake each other for every batch).
      ++blocked_;
      not_full_.wait(l, [&] { return q_.size() <= cap_ / 2; });
      --blocked_;
    }
    q_.push_back(b);
    not_empty_.notify_one();
  }
  // Takes up to `max` batches at once (fewer lock round trips); returns
  // false once the queue is closed and drained.
  bool pop(std::vector<Batch*>& out, size_t max) {
    std::unique_lock<std::mutex> l(m_);
    not_empty_.wait(l, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    while (!q_.empty() && out.size() < max) {
      out.push_back(q_.front());
      q_.pop_front();
    }
    if (blocked_ && q_.size() <= cap_ / 2) not_full_.notify_all();
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> l(m_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Batch*> q_;
  size_t cap_;
  size_t blocked_ = 0;
  bool closed_ = false;
};

void fill(void* p, uint32_t size, uint64_t v) {
  uint64_t* w = static_cast<uint64_t*>(p);
  size_t words = size / 8;
  for (size_t i = 0; i < words; ++i) w[i] = v + i;
}

uint64_t verify(const void* p, uint32_t size, uint64_t v) {
  const uint64_t* w = static_cast<const uint64_t*>(p);
  size_t words = size / 8;
  for (size_t i = 0; i < words; ++i)
    if (w[i] != v + i) kb::die("xmalloc", "object corrupted between producer and consumer");
  return v * 31 + size;
}

}  // namespace

int main(int argc, char** argv) {
  kb::Args a(argc, argv, "xmalloc", "producer/consumer: objects freed by the thread that receives them");
  double scale = a.real("scale", 1.0, "work multiplier");
  int64_t threads = a.num("threads", 4, "threads in all (half producers, half consumers)");
  int64_t objects = a.iters("objects", 12000000, scale, "objects produced in all");
  int64_t min_size = a.num("min", 16, "minimum object size");
  int64_t max_size = a.num("max", 256, "maximum object size");
  int64_t queue = a.num("queue", 256, "queue capacity in batches");
  uint64_t seed = a.num("seed", 1, "random seed");
  a.done();
  if (threads < 2) threads = 2;
  if (min_size < 8 || max_size < min_size) kb::die("xmalloc", "bad sizes");
  int64_t producers = threads / 2, consumers = threads - producers;

  kb::Timer t;
  Queue q((size_t)queue);
  std::vector<uint64_t> psum(producers, 0), csum(consumers, 0);
  std::vector<std::thread> ps, cs;
  for (int64_t c = 0; c < consumers; ++c)
    cs.emplace_back([&, c] {
      uint64_t s = 0;
      std::vector<Batch*> got;
      while (q.pop(got, 16)) {
        for (Batch* b : got) {
          for (size_t i = 0; i < b->n; ++i) {
            s += verify(b->obj[i], b->size[i], b->val[i]);
            std::free(b->obj[i]);
          }
          delete b;
        }
        got.clear();
      }
      csum[c] = s;
    });
  for (int64_t p = 0; p < producers; ++p)
    ps.emplace_back([&, p] {
      kb::Rng rng(seed * 7777 + p);
      int64_t mine = objects / producers + (p < objects % producers ? 1 : 0);
      uint64_t s = 0;
      while (mine > 0) {
        Batch* b = new Batch;
        b->n = (size_t)std::min<int64_t>(mine, kBatch);
        for (size_t i = 0; i < b->n; ++i) {
          uint32_t sz = (uint32_t)rng.range(min_size, max_size);
          void* o = std::malloc(sz);
          if (!o) kb::die("xmalloc", "malloc returned NULL");
          uint64_t v = rng.next();
          fill(o, sz, v);
          b->obj[i] = o;
          b->size[i] = sz;
          b->val[i] = v;
          s += v * 31 + sz;
        }
        mine -= (int64_t)b->n;
        q.push(b);
      }
      psum[p] = s;
    });
  for (auto& th : ps) th.join();
  q.close();
  for (auto& th : cs) th.join();
  uint64_t produced = 0, consumed = 0;
  for (auto s : psum) produced += s;
  for (auto s : csum) consumed += s;
  if (produced != consumed) kb::die("xmalloc", "consumers did not see what producers made");
  char d[128];
  std::snprintf(d, sizeof d, "producers=%ld consumers=%ld objects=%ld", (long)producers,
                (long)consumers, (long)objects);
  kb::report("xmalloc", produced, d, t.secs());
  return 0;
}
