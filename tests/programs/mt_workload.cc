// A multi-threaded C++ workload for tests/programs/mt_workload.sh.
//
// Built as an ordinary executable (not linked with kalloc) and run with and
// without LD_PRELOAD=libkalloc.so; its stdout must be identical.  Everything
// it prints is deterministic: per-thread checksums and error counts.
//
//   phase 1  8 threads each fill, erase from and rehash an
//            std::unordered_map<std::string, std::vector<uint64_t>> and grow
//            std::strings (independent per-thread churn)
//   phase 2  a ring of 8 threads: thread i sends items (strings, vectors,
//            over-aligned objects, occasionally a large buffer) to thread
//            i+1 through a queue, so nearly every free happens on another
//            thread than the malloc; every item is verified on arrival
//   phase 3  20 rounds of 8 short-lived threads whose objects outlive them
//            and are freed by the main thread
//   phase 4  8 threads of C calls: malloc/realloc chains, calloc (checked
//            zeroed), aligned_alloc/posix_memalign (alignment checked),
//            malloc_usable_size (checked >= request)
//   phase 5  64 threads at once (8 per CPU on 2 CPUs and more: kalloc's
//            threads beyond 4 per CPU use its per-CPU sheaves): maps of
//            strings built and thinned, then heap strings handed to the
//            next thread across a barrier, verified and freed there
#include <malloc.h>
#include <stdlib.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <barrier>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kThreads = 8;

std::uint64_t mix(std::uint64_t x) {  // splitmix64
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::uint64_t fnv(const void *p, std::size_t n) {
    const unsigned char *c = static_cast<const unsigned char *>(p);
    std::uint64_t h = 1469598103934665603ull;
    for (std::size_t i = 0; i < n; ++i) { h ^= c[i]; h *= 1099511628211ull; }
    return h;
}

std::atomic<std::uint64_t> g_errors{0};

void error(const char *what, int thread, std::uint64_t detail) {
    g_errors.fetch_add(1);
    std::fprintf(stderr, "ERROR: %s (thread %d, detail %llu)\n", what, thread,
                 static_cast<unsigned long long>(detail));
}

std::string make_text(std::uint64_t seed, std::size_t len) {
    std::string s;
    for (std::size_t i = 0; i < len; ++i) s.push_back(static_cast<char>('a' + (mix(seed + i) % 26)));
    return s;
}

// ---------------------------------------------------------------- phase 1
std::uint64_t phase1(int t) {
    std::unordered_map<std::string, std::vector<std::uint64_t>> map;
    std::uint64_t sum = 0;
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 40000; ++i) {
            std::uint64_t k = mix(static_cast<std::uint64_t>(t) << 32 | static_cast<std::uint64_t>(i));
            std::string key("k");
            key += std::to_string(k % 100000);
            key += '-';
            key += std::to_string(round);
            auto &v = map[key];
            v.push_back(k);
            if (k % 5 == 0) v.resize(v.size() + k % 40, k);
        }
        for (auto it = map.begin(); it != map.end();) {
            if (it->second.size() % 2 == 0) it = map.erase(it);
            else ++it;
        }
        map.rehash(map.size() / 2 + 1);
        std::string grow;
        for (int i = 0; i < 20000; ++i) grow += std::to_string(i * (t + 1));
        sum += fnv(grow.data(), grow.size());
    }
    for (const auto &kv : map) {
        sum += fnv(kv.first.data(), kv.first.size());
        for (std::uint64_t x : kv.second) sum += x;
    }
    return sum + map.size();
}

// ---------------------------------------------------------------- phase 2
struct alignas(64) Aligned {
    std::uint64_t v[8];
};

struct Item {
    std::uint32_t from = 0, seq = 0;
    std::string text;
    std::vector<std::uint32_t> nums;
    std::unique_ptr<Aligned> aligned;
    std::unique_ptr<unsigned char[]> big;
    std::size_t big_len = 0;
};

template <typename T>
class Queue {
public:
    static constexpr std::size_t kCapacity = 4096;
    T pop() {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return !q_.empty(); });
        T x = std::move(q_.front());
        q_.pop_front();
        return x;
    }
    // Bounded: fails when the queue holds kCapacity items already.
    bool try_push(T &x) {
        {
            std::lock_guard<std::mutex> lk(m_);
            if (q_.size() >= kCapacity) return false;
            q_.push_back(std::move(x));
        }
        cv_.notify_one();
        return true;
    }
    bool try_pop(T &out) {
        std::lock_guard<std::mutex> lk(m_);
        if (q_.empty()) return false;
        out = std::move(q_.front());
        q_.pop_front();
        return true;
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<T> q_;
};

constexpr std::uint32_t kItemsPerThread = 200000;

std::unique_ptr<Item> make_item(std::uint32_t from, std::uint32_t seq) {
    auto it = std::make_unique<Item>();
    std::uint64_t r = mix(static_cast<std::uint64_t>(from) << 32 | seq);
    it->from = from;
    it->seq = seq;
    it->text = make_text(r, r % 300);
    it->nums.resize(r % 100);
    for (std::size_t i = 0; i < it->nums.size(); ++i) it->nums[i] = static_cast<std::uint32_t>(r + i);
    if (seq % 7 == 0) {
        it->aligned = std::make_unique<Aligned>();
        for (int i = 0; i < 8; ++i) it->aligned->v[i] = r ^ static_cast<std::uint64_t>(i);
    }
    if (seq % 997 == 0) {
        it->big_len = (64u << 10) << (r % 7);  // 64 KiB .. 4 MiB
        it->big.reset(new unsigned char[it->big_len]);
        std::memset(it->big.get(), static_cast<int>(r & 0xff), it->big_len);
    }
    return it;
}

std::uint64_t check_item(const Item &it, int t) {
    std::uint64_t r = mix(static_cast<std::uint64_t>(it.from) << 32 | it.seq);
    if (it.text != make_text(r, r % 300)) error("item text corrupted", t, it.seq);
    if (it.nums.size() != r % 100) error("item vector size", t, it.seq);
    for (std::size_t i = 0; i < it.nums.size(); ++i)
        if (it.nums[i] != static_cast<std::uint32_t>(r + i)) { error("item vector corrupted", t, it.seq); break; }
    if (it.aligned) {
        if (reinterpret_cast<std::uintptr_t>(it.aligned.get()) % 64 != 0) error("alignas(64) new misaligned", t, it.seq);
        for (int i = 0; i < 8; ++i)
            if (it.aligned->v[i] != (r ^ static_cast<std::uint64_t>(i))) { error("aligned object corrupted", t, it.seq); break; }
    }
    std::uint64_t sum = fnv(it.text.data(), it.text.size()) + it.nums.size() + it.seq;
    if (it.big) {
        for (std::size_t i = 0; i < it.big_len; i += 4093)
            if (it.big[i] != static_cast<unsigned char>(r & 0xff)) { error("large buffer corrupted", t, it.seq); break; }
        if (it.big[it.big_len - 1] != static_cast<unsigned char>(r & 0xff)) error("large buffer tail", t, it.seq);
        sum += it.big_len;
    }
    return sum;
}

Queue<std::unique_ptr<Item>> g_queues[kThreads];

std::uint64_t phase2(int t) {
    Queue<std::unique_ptr<Item>> &out = g_queues[(t + 1) % kThreads];
    Queue<std::unique_ptr<Item>> &in = g_queues[t];
    std::uint64_t sum = 0;
    std::uint32_t received = 0;
    std::uint32_t expect_seq = 0;
    auto take = [&](std::unique_ptr<Item> item) {
        if (item->from != static_cast<std::uint32_t>((t + kThreads - 1) % kThreads)) error("item from wrong thread", t, item->from);
        if (item->seq != expect_seq) error("item out of order", t, item->seq);
        expect_seq = item->seq + 1;
        sum += check_item(*item, t);
        ++received;
        // item is destroyed here: on another thread than the one that made it
    };
    for (std::uint32_t seq = 0; seq < kItemsPerThread; ++seq) {
        std::unique_ptr<Item> made = make_item(static_cast<std::uint32_t>(t), seq);
        std::unique_ptr<Item> item;
        // When the next thread's queue is full, keep draining our own: every
        // thread does, so the ring cannot deadlock.
        while (!out.try_push(made)) {
            if (in.try_pop(item)) take(std::move(item));
            else std::this_thread::yield();
        }
        while (in.try_pop(item)) take(std::move(item));
    }
    while (received < kItemsPerThread) take(in.pop());
    return sum;
}

// ---------------------------------------------------------------- phase 3
std::uint64_t phase3() {
    std::mutex m;
    std::vector<std::unique_ptr<std::string>> survivors;
    std::vector<std::vector<std::uint64_t> *> raw;
    for (int round = 0; round < 20; ++round) {
        std::vector<std::thread> ts;
        for (int t = 0; t < kThreads; ++t) {
            ts.emplace_back([&, t, round] {
                std::vector<std::unique_ptr<std::string>> mine;
                for (int i = 0; i < 2000; ++i)
                    mine.push_back(std::make_unique<std::string>(make_text(static_cast<std::uint64_t>(round * 100 + t) * 10000 + i, (i * 13) % 200)));
                auto *v = new std::vector<std::uint64_t>(1000 + static_cast<std::size_t>(t) * 100, static_cast<std::uint64_t>(round));
                std::lock_guard<std::mutex> lk(m);
                for (auto &s : mine) survivors.push_back(std::move(s));
                raw.push_back(v);
            });
        }
        for (auto &th : ts) th.join();
        if (round % 5 == 2) {  // the main thread frees what the dead threads made
            survivors.clear();
            survivors.shrink_to_fit();
        }
    }
    std::uint64_t sum = 0;
    for (const auto &s : survivors) sum += fnv(s->data(), s->size());
    for (auto *v : raw) {
        for (std::uint64_t x : *v) sum += x;
        delete v;
    }
    return sum + survivors.size() + raw.size();
}

// ---------------------------------------------------------------- phase 4
std::uint64_t phase4(int t) {
    std::uint64_t sum = 0;
    for (int i = 0; i < 50000; ++i) {
        std::uint64_t r = mix(static_cast<std::uint64_t>(t) * 1000003u + static_cast<std::uint64_t>(i));
        // realloc chain, keeping the content
        std::size_t n = 1 + r % 64;
        unsigned char *p = static_cast<unsigned char *>(std::malloc(n));
        if (!p) { error("malloc returned NULL", t, n); continue; }
        std::memset(p, 0x5a, n);
        for (int step = 0; step < 6; ++step) {
            std::size_t nn = (step % 2 == 0) ? n * 3 + r % 1000 : n / 2 + 1;
            unsigned char *q = static_cast<unsigned char *>(std::realloc(p, nn));
            if (!q) { error("realloc returned NULL", t, nn); break; }
            for (std::size_t k = 0; k < (nn < n ? nn : n); ++k)
                if (q[k] != 0x5a) { error("realloc lost content", t, k); break; }
            if (malloc_usable_size(q) < nn) error("malloc_usable_size < request", t, nn);
            std::memset(q, 0x5a, nn);
            p = q;
            n = nn;
        }
        sum += n;
        std::free(p);
        // calloc must hand out zeroed memory, also when recycling
        std::size_t cn = 1 + r % 5000;
        unsigned char *c = static_cast<unsigned char *>(std::calloc(cn, 1 + i % 3));
        if (!c) { error("calloc returned NULL", t, cn); continue; }
        for (std::size_t k = 0; k < cn * (1 + i % 3); ++k)
            if (c[k] != 0) { error("calloc memory not zeroed", t, k); break; }
        std::memset(c, 0xff, cn);
        std::free(c);
        // aligned allocations
        std::size_t align = std::size_t{16} << (r % 9);  // 16 .. 4096
        void *a = std::aligned_alloc(align, align * (1 + r % 4));
        if (!a || reinterpret_cast<std::uintptr_t>(a) % align != 0) error("aligned_alloc misaligned", t, align);
        std::free(a);
        void *pm = nullptr;
        if (posix_memalign(&pm, align * 2, 100 + r % 300) != 0 || reinterpret_cast<std::uintptr_t>(pm) % (align * 2) != 0)
            error("posix_memalign", t, align * 2);
        std::free(pm);
        sum += align;
    }
    return sum;
}

// ---------------------------------------------------------------- phase 5
constexpr int kManyThreads = 64;
constexpr int kHandoff = 1500;
std::vector<std::string *> g_handoff[kManyThreads];
std::barrier<> g_many_barrier(kManyThreads);

std::uint64_t phase5(int t) {
    std::uint64_t sum = 0;
    for (int round = 0; round < 3; ++round) {
        std::map<std::string, std::string> m;
        for (int i = 0; i < 3000; ++i) {
            std::uint64_t k = mix(static_cast<std::uint64_t>(t) << 40 | static_cast<std::uint64_t>(round) << 20 |
                                  static_cast<std::uint64_t>(i));
            m[make_text(k, 8 + k % 24)] = make_text(k >> 7, 16 + k % 300);
        }
        for (auto it = m.begin(); it != m.end();) {
            if (it->second.size() % 3 == 0) it = m.erase(it);
            else ++it;
        }
        for (const auto &kv : m) sum += fnv(kv.first.data(), kv.first.size()) ^ kv.second.size();
    }
    // Heap strings for the next thread, which frees them.
    auto &mine = g_handoff[t];
    for (int i = 0; i < kHandoff; ++i) {
        std::uint64_t k = mix(static_cast<std::uint64_t>(t) << 32 | static_cast<std::uint64_t>(i) | 1ull << 62);
        mine.push_back(new std::string(make_text(k, 24 + k % 1000)));
    }
    g_many_barrier.arrive_and_wait();
    int from = (t + kManyThreads - 1) % kManyThreads;
    for (int i = 0; i < kHandoff; ++i) {
        std::string *s = g_handoff[from][static_cast<std::size_t>(i)];
        std::uint64_t k = mix(static_cast<std::uint64_t>(from) << 32 | static_cast<std::uint64_t>(i) | 1ull << 62);
        if (*s != make_text(k, 24 + k % 1000)) error("handed-off string changed", t, static_cast<std::uint64_t>(i));
        sum += fnv(s->data(), s->size());
        delete s;
    }
    g_many_barrier.arrive_and_wait();   // every thread is done reading before the vectors go
    g_handoff[from].clear();
    g_handoff[from].shrink_to_fit();
    return sum;
}

template <typename F>
std::vector<std::uint64_t> run_threads(F f, int n = kThreads) {
    std::vector<std::uint64_t> res(static_cast<std::size_t>(n));
    std::vector<std::thread> ts;
    for (int t = 0; t < n; ++t) ts.emplace_back([&, t] { res[static_cast<std::size_t>(t)] = f(t); });
    for (auto &th : ts) th.join();
    return res;
}

void print(const char *phase, const std::vector<std::uint64_t> &res) {
    for (std::size_t t = 0; t < res.size(); ++t)
        std::printf("%s thread %zu checksum %016llx\n", phase, t, static_cast<unsigned long long>(res[t]));
}

}  // namespace

int main() {
    print("phase1", run_threads(phase1));
    print("phase2", run_threads(phase2));
    std::printf("phase3 checksum %016llx\n", static_cast<unsigned long long>(phase3()));
    print("phase4", run_threads(phase4));
    print("phase5", run_threads(phase5, kManyThreads));
    std::printf("errors %llu\n", static_cast<unsigned long long>(g_errors.load()));
    return g_errors.load() == 0 ? 0 : 1;
}
