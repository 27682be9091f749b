// micro.cc - Google Benchmark microbenchmarks of the malloc surface.
//
// A plain binary: the allocator under test is chosen at run time with
// LD_PRELOAD (compare.py --micro runs it under every allocator).
//
//   BM_MallocFree/<size>          malloc+free pairs per size class, 1/2/8 threads
//   BM_BatchLifo/<size>/<n>       n mallocs, then n frees in reverse order
//   BM_BatchRandom/<size>/<n>     n mallocs, then n frees in random order
//   BM_ReallocGrow/<max>          realloc growth from 16 bytes to <max> by 1.5x steps
//   BM_Calloc/<size>              calloc+free (the zeroing cost included)
//   BM_Aligned/<align>/<size>     aligned_alloc (posix_memalign-like) + free
//   BM_CrossThreadFree/<size>     batches allocated here, freed by another thread
//   BM_NewDelete/<size>           operator new/delete pairs (the C++ path)
//
// Items processed = allocations, so the reported items_per_second compare
// directly between allocators.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <vector>

namespace {

void touch(void* p, size_t size) {
  // Write the first and last byte, as any real user does.
  static_cast<volatile char*>(p)[0] = 1;
  static_cast<volatile char*>(p)[size - 1] = 2;
}

void BM_MallocFree(benchmark::State& state) {
  const size_t size = (size_t)state.range(0);
  for (auto _ : state) {
    void* p = std::malloc(size);
    benchmark::DoNotOptimize(p);
    touch(p, size);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MallocFree)
    ->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096)->Arg(32768)->Arg(1 << 20)
    ->Threads(1)->Threads(2)->Threads(8);

void BM_NewDelete(benchmark::State& state) {
  const size_t size = (size_t)state.range(0);
  for (auto _ : state) {
    char* p = new char[size];
    benchmark::DoNotOptimize(p);
    touch(p, size);
    delete[] p;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NewDelete)->Arg(32)->Arg(256)->Threads(1)->Threads(2);

void BM_BatchLifo(benchmark::State& state) {
  const size_t size = (size_t)state.range(0);
  const size_t n = (size_t)state.range(1);
  std::vector<void*> ptrs(n);
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) {
      ptrs[i] = std::malloc(size);
      touch(ptrs[i], size);
    }
    benchmark::DoNotOptimize(ptrs.data());
    for (size_t i = n; i-- > 0;) std::free(ptrs[i]);
  }
  state.SetItemsProcessed(state.iterations() * (int64_t)n);
}
BENCHMARK(BM_BatchLifo)
    ->Args({16, 1000})->Args({64, 1000})->Args({256, 1000})->Args({1024, 1000})
    ->Args({64, 100000})->Args({4096, 10000})->Threads(1)->Threads(2);

void BM_BatchRandom(benchmark::State& state) {
  const size_t size = (size_t)state.range(0);
  const size_t n = (size_t)state.range(1);
  std::vector<void*> ptrs(n);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(42);
  std::shuffle(order.begin(), order.end(), rng);
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) {
      ptrs[i] = std::malloc(size);
      touch(ptrs[i], size);
    }
    benchmark::DoNotOptimize(ptrs.data());
    for (size_t i = 0; i < n; ++i) std::free(ptrs[order[i]]);
  }
  state.SetItemsProcessed(state.iterations() * (int64_t)n);
}
BENCHMARK(BM_BatchRandom)
    ->Args({16, 1000})->Args({64, 1000})->Args({256, 1000})->Args({1024, 1000})
    ->Args({64, 100000})->Args({4096, 10000})->Threads(1)->Threads(2);

void BM_ReallocGrow(benchmark::State& state) {
  const size_t max = (size_t)state.range(0);
  int64_t steps = 0;
  for (auto _ : state) {
    size_t size = 16;
    char* p = static_cast<char*>(std::malloc(size));
    p[0] = 7;
    while (size < max) {
      size = size + size / 2;
      p = static_cast<char*>(std::realloc(p, size));
      p[size - 1] = 1;
      ++steps;
    }
    if (p[0] != 7) state.SkipWithError("realloc lost the content");
    std::free(p);
  }
  state.SetItemsProcessed(steps);
}
BENCHMARK(BM_ReallocGrow)->Arg(4096)->Arg(1 << 20)->Arg(16 << 20)->Threads(1)->Threads(2);

void BM_Calloc(benchmark::State& state) {
  const size_t size = (size_t)state.range(0);
  for (auto _ : state) {
    char* p = static_cast<char*>(std::calloc(1, size));
    benchmark::DoNotOptimize(p);
    if (p[size / 2] != 0) state.SkipWithError("calloc memory not zero");
    p[size / 2] = 1;  // dirty it, so the next calloc must clear it again
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Calloc)->Arg(64)->Arg(4096)->Arg(65536)->Arg(1 << 20)->Threads(1)->Threads(2);

void BM_Aligned(benchmark::State& state) {
  const size_t align = (size_t)state.range(0);
  const size_t size = (size_t)state.range(1);
  for (auto _ : state) {
    void* p = std::aligned_alloc(align, size);
    benchmark::DoNotOptimize(p);
    if (reinterpret_cast<uintptr_t>(p) & (align - 1)) state.SkipWithError("misaligned");
    touch(p, size);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Aligned)
    ->Args({16, 64})->Args({64, 64})->Args({64, 1024})->Args({4096, 4096})->Args({4096, 65536})
    ->Threads(1)->Threads(2);

// Cross-thread free: every benchmark thread allocates batches of objects and
// posts them to its neighbour's mailbox; whatever arrives in its own mailbox
// (allocated by another thread) it frees.  With one thread a batch is freed
// by the same thread, which is the baseline.
constexpr int kMaxThreads = 64;
constexpr size_t kBatch = 32;
struct alignas(64) Mailbox {
  std::atomic<void*> head{nullptr};
};
Mailbox g_mail[kMaxThreads];

void free_chain(void* p) {
  while (p) {
    void* next = *static_cast<void**>(p);
    std::free(p);
    p = next;
  }
}

void BM_CrossThreadFree(benchmark::State& state) {
  const size_t size = std::max<size_t>((size_t)state.range(0), sizeof(void*));
  const int me = state.thread_index();
  const int n = state.threads();
  for (auto _ : state) {
    void* head = nullptr;
    for (size_t i = 0; i < kBatch; ++i) {
      void* p = std::malloc(size);
      *static_cast<void**>(p) = head;
      head = p;
    }
    // Post to the neighbour; if it has not taken the last batch yet, free
    // that one ourselves (it is ours anyway).
    free_chain(g_mail[(me + 1) % n].head.exchange(head, std::memory_order_acq_rel));
    free_chain(g_mail[me].head.exchange(nullptr, std::memory_order_acq_rel));
  }
  // All threads have left the loop (the loop end is a barrier): drain.
  free_chain(g_mail[me].head.exchange(nullptr, std::memory_order_acq_rel));
  state.SetItemsProcessed(state.iterations() * (int64_t)kBatch);
}
BENCHMARK(BM_CrossThreadFree)->Arg(16)->Arg(256)->Arg(4096)->Threads(1)->Threads(2)->Threads(8);

}  // namespace

BENCHMARK_MAIN();
