// Every entry point at once, under every option set: worker threads in
// generations (each generation's blocks are freed, reallocated and checked
// by the next ones: cross-thread frees of blocks whose thread exited) doing
// random malloc, calloc, realloc, reallocarray, posix_memalign,
// aligned_alloc, memalign, valloc, C++ new/delete (sized and aligned),
// free_sized, malloc_usable_size writes, over sizes from 0 to 16 MiB (slab
// classes, large blocks, huge mappings); beside them a thread calling
// malloc_trim(0), kalloc_compact(), kalloc_thread_flush() and the
// statistics at random moments; and a fork in the middle of it all whose
// child checks and frees what it can reach (and, before the threads start,
// the same from the main thread alone, with a fork and, under
// KALLOC_MESH=1, slabs merged).  Every block carries a pattern
// checked before every free and realloc (calloc's zeroes too), and its
// alignment and usable size are checked when it is handed out.
//
// The option sets are the non-default paths the other tests exercise one
// at a time: each runs the same workload in a fresh process (run_self), so
// a combination no other test reaches (a trim racing a fork beside
// KALLOC_TCACHE=0, a compaction beside the background reclaimer, ...)
// shows here as a wrong byte, a failed allocation or a crash.  Two sets run
// under an address-space limit (KT_CHAOS_AS_MB): allocations then fail, and
// each failure must be NULL with ENOMEM, a failed realloc must leave its
// block whole, and allocation must work again once memory is freed.
#include <gtest/gtest.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <new>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "../common/hugetlb_pool.h"
#include "kalloc/kalloc.h"

namespace {

constexpr unsigned kSlots = 4096;
constexpr unsigned kWorkers = 4;
constexpr unsigned kGenerations = 3;
constexpr unsigned kOpsPerWorker = 12000;   // per generation
constexpr size_t kLiveLimit = 160u << 20;   // only frees above this many live bytes

enum Kind : uint8_t { kMalloc, kCalloc, kAligned, kAlignedAlloc, kNewArray, kNewAligned };

struct Block {
  void *p = nullptr;
  size_t n = 0;       // bytes requested (the pattern covers them)
  uint32_t seed = 0;
  uint32_t align = 0; // kAligned / kNewAligned: the alignment asked for
  Kind kind = kMalloc;
};

struct Slot {
  std::atomic<uint8_t> busy{0};
  Block b;
};

Slot slots[kSlots];
std::atomic<size_t> live_bytes{0};
std::atomic<unsigned> errors{0};
std::atomic<bool> maintenance_stop{false};
std::atomic<unsigned long> nr_alloc{0}, nr_realloc{0}, nr_free{0}, nr_usable{0}, nr_maint{0};
std::atomic<int> fork_status{-1};   // the forked child's wait status (-1: no fork)
// KT_CHAOS_AS_MB: the run has an address-space limit this many MiB above
// its start, so allocations fail: each failure must be NULL with ENOMEM
// (posix_memalign: the code), a failed realloc must leave its block whole,
// and everything must work again once memory is freed.
bool oom_mode = false;
// KT_CHAOS_THREADS: workers per generation (the same operations in all);
// more than 4 per CPU makes pool threads, which use the per-CPU sheaves.
unsigned nr_workers = kWorkers;
std::atomic<unsigned long> nr_enomem{0};
char first_error[512];
std::atomic<bool> error_noted{false};

void note_error(const char *what, const Block &b, size_t at) {
  errors.fetch_add(1);
  if (!error_noted.exchange(true))
    snprintf(first_error, sizeof first_error, "%s: block %p of %zu bytes (kind %d, align %u, seed %u) at byte %zu",
             what, b.p, b.n, (int)b.kind, b.align, b.seed, at);
}

// Blocks up to 8 KiB are filled and checked whole, larger ones sparsely
// (the first and last 64 bytes of every page, and the block's tail).
void fill_block(const Block &b) {
  if (b.n <= 8192)
    kt::fill(b.p, b.n, b.seed);
  else
    kt::fill_sparse(b.p, b.n, b.seed);
}

bool check_block(const Block &b, size_t prefix, bool whole) {
  if (b.seed == 0) return true;   // never written (see allocate)
  size_t at = b.n <= 8192 ? kt::check(b.p, std::min(prefix, b.n), b.seed)
                          : kt::check_sparse(b.p, std::min(prefix, b.n), b.seed, whole);
  prefix = std::min(prefix, b.n);
  if (at != prefix) {
    note_error("pattern", b, at);
    return false;
  }
  return true;
}

size_t random_size(kt::Rng &r) {
  uint64_t c = r.below(1000);
  if (c < 550) return r.below(513);                         // slab classes, 0 included
  if (c < 770) return 512 + r.below(8 * 1024);              // larger classes
  if (c < 890) return 8 * 1024 + r.below(56 * 1024);        // up to the first large blocks
  if (c < 990) return 64 * 1024 + r.below(1u << 20);        // large blocks
  if (c < 995) return (1u << 20) + r.below(3u << 20);       // up to 4 MiB
  return (4u << 20) + r.below(4u << 20);                    // huge mappings
}

size_t random_align(kt::Rng &r) {
  uint64_t c = r.below(100);
  if (c < 70) return size_t(16) << r.below(5);              // 16 .. 256
  if (c < 95) return size_t(512) << r.below(8);             // 512 .. 64 KiB
  return size_t(2) << 20;                                   // 2 MiB
}

// Hands out a block of one of the kinds; false if the allocator failed.
bool allocate(kt::Rng &r, Block *b, uint32_t seed) {
  size_t n = random_size(r);
  Block x;
  x.n = n;
  x.seed = seed;
  int code = 0;   // posix_memalign's result
  bool sets_errno = true;
  errno = 0;
  switch (r.below(9)) {
    case 0:
    case 1:
    case 2:
      x.kind = kMalloc;
      x.p = malloc(n);
      break;
    case 3: {
      x.kind = kCalloc;
      size_t m = 1 + r.below(8);
      x.n = n / m * m;
      x.p = calloc(x.n / m, m);
      break;
    }
    case 4: {
      x.kind = kAligned;
      x.align = (uint32_t)random_align(r);
      switch (r.below(4)) {
        case 0:
          sets_errno = false;
          code = posix_memalign(&x.p, x.align, n);
          if (code != 0) x.p = nullptr;
          break;
        case 1:   // (C11: a multiple of the alignment; free_aligned_sized takes it back)
          x.kind = kAlignedAlloc;
          x.n = (n + x.align - 1) / x.align * x.align;
          x.p = aligned_alloc(x.align, x.n);
          break;
        case 2:
          x.p = memalign(x.align, n);
          break;
        default:
          x.align = 4096;
          x.p = valloc(n);
          break;
      }
      break;
    }
    case 5:
      x.kind = kNewArray;
      sets_errno = false;
      x.p = new (std::nothrow) unsigned char[n];
      break;
    case 6:
      x.kind = kNewAligned;
      sets_errno = false;
      x.align = (uint32_t)(size_t(32) << r.below(8));
      x.p = ::operator new(n, std::align_val_t(x.align), std::nothrow);
      break;
    default: {
      x.kind = kMalloc;
      size_t count = 1 + r.below(4), each = n / 4 + 1;
      x.n = count * each;
      x.p = reallocarray(nullptr, count, each);
      break;
    }
  }
  if (!x.p) {
    if (!oom_mode)
      note_error("allocation failed", x, 0);
    else if (sets_errno ? errno != ENOMEM : (x.kind == kAligned && code != ENOMEM && code != 0))
      note_error("a failed allocation without ENOMEM", x, (size_t)(sets_errno ? errno : code));
    else
      nr_enomem.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if ((uintptr_t)x.p % 16 != 0 || (x.align && (uintptr_t)x.p % x.align != 0)) note_error("misaligned", x, 0);
  if (x.kind != kNewArray && x.kind != kNewAligned && malloc_usable_size(x.p) < x.n)
    note_error("usable size below the request", x, malloc_usable_size(x.p));
  if (x.kind == kCalloc) {
    bool zero = x.n <= 65536 ? kt::all_bytes_are(x.p, x.n, 0) : true;
    if (x.n > 65536)   // every 512th byte and the tail of a large calloc
      for (size_t i = 0; i < x.n && zero; i += 512) zero = ((unsigned char *)x.p)[i] == 0;
    if (!zero || (x.n && ((unsigned char *)x.p)[x.n - 1] != 0)) note_error("calloc not zero", x, 0);
  }
  // A large block from malloc is left unwritten one time in four (a buffer
  // sized for the worst case and not used: freed as it was handed out).
  if (x.kind == kMalloc && x.n > 65536 && r.below(4) == 0)
    x.seed = 0;
  else
    fill_block(x);
  live_bytes.fetch_add(x.n);
  nr_alloc.fetch_add(1, std::memory_order_relaxed);
  *b = x;
  return true;
}

void release(Block *b, kt::Rng &r) {
  check_block(*b, b->n, true);
  nr_free.fetch_add(1, std::memory_order_relaxed);
  live_bytes.fetch_sub(b->n);
  switch (b->kind) {
    case kNewArray:
      delete[] static_cast<unsigned char *>(b->p);
      break;
    case kNewAligned:
      if (r.below(2))
        ::operator delete(b->p, b->n, std::align_val_t(b->align));
      else
        ::operator delete(b->p, std::align_val_t(b->align));
      break;
    case kAlignedAlloc:
      if (r.below(2))
        kalloc_free_aligned_sized(b->p, b->align, b->n);
      else
        free(b->p);
      break;
    default:
      if (r.below(4) == 0)
        kalloc_free_sized(b->p, b->n);
      else
        free(b->p);
      break;
  }
  *b = Block{};
}

// realloc (only for blocks from the C functions): the prefix survives.
void reallocate(Block *b, kt::Rng &r, uint32_t seed) {
  size_t n = r.below(3) ? random_size(r) : b->n + r.below(64);   // sometimes a small step
  check_block(*b, b->n, true);
  nr_realloc.fetch_add(1, std::memory_order_relaxed);
  errno = 0;
  void *q = realloc(b->p, n);
  if (!q && n) {
    if (!oom_mode) {
      note_error("realloc failed", *b, n);
    } else if (errno != ENOMEM) {
      note_error("a failed realloc without ENOMEM", *b, (size_t)errno);
    } else {
      nr_enomem.fetch_add(1, std::memory_order_relaxed);
      check_block(*b, b->n, true);   // untouched and still valid
    }
    return;
  }
  Block nb = *b;   // (still the old size: it says how the block was filled)
  nb.p = q;
  size_t keep = n < b->n ? n : b->n;
  if (q && keep) check_block(nb, keep, false);
  live_bytes.fetch_sub(b->n);
  if (!q) {   // realloc(p, 0) freed it
    *b = Block{};
    return;
  }
  nb.n = n;
  nb.seed = seed;
  nb.kind = kMalloc;
  nb.align = 0;
  if ((uintptr_t)q % 16 != 0) note_error("realloc misaligned", nb, 0);
  fill_block(nb);
  live_bytes.fetch_add(n);
  *b = nb;
}

// Writes the whole usable size (glibc: all of it may be used) and restores
// the pattern.
void use_usable_size(Block *b) {
  if (b->kind == kNewArray || b->kind == kNewAligned || b->n > 65536 || b->seed == 0) return;
  check_block(*b, b->n, true);
  size_t u = malloc_usable_size(b->p);
  if (u < b->n) {
    note_error("usable size shrank", *b, u);
    return;
  }
  memset(b->p, 0xa5, u);
  fill_block(*b);
  nr_usable.fetch_add(1, std::memory_order_relaxed);
}

Slot *lock_random_slot(kt::Rng &r) {
  for (;;) {
    Slot *s = &slots[r.below(kSlots)];
    if (!s->busy.exchange(1, std::memory_order_acquire)) return s;
  }
}

void unlock_slot(Slot *s) { s->busy.store(0, std::memory_order_release); }

// A thread with a 256 KiB stack (an address-space limit leaves little room
// for 8 MiB ones); where it cannot be made (the limit), fn runs here.
struct Task {
  void (*fn)(unsigned, unsigned);
  unsigned a, b;
  pthread_t t;
  bool started;
};

void *task_main(void *arg) {
  Task *k = static_cast<Task *>(arg);
  k->fn(k->a, k->b);
  return nullptr;
}

// Set while a task runs on its caller's thread because its own thread
// could not be created (under KT_CHAOS_AS_MB the limit can take the
// stack): maintenance() then stops after a bounded number of rounds
// instead of waiting for maintenance_stop, which that same thread sets.
thread_local bool task_inline = false;
std::atomic<unsigned> nr_inline_tasks{0};

void task_start(Task *k) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  k->started = pthread_create(&k->t, &attr, task_main, k) == 0;
  pthread_attr_destroy(&attr);
  if (!k->started) {
    if (!oom_mode) {
      Block none;
      note_error("pthread_create failed", none, 0);
    }
    nr_inline_tasks.fetch_add(1, std::memory_order_relaxed);
    task_inline = true;
    k->fn(k->a, k->b);
    task_inline = false;
  }
}

void task_join(Task *k) {
  if (k->started) pthread_join(k->t, nullptr);
}

// The child of a fork made while every other thread may be inside malloc:
// it checks, reallocates and frees what it can reach (slots not held at the
// fork), allocates its own, and exits 0 if everything held.
[[noreturn]] void forked_child(uint64_t seed) {
  kt::Rng r(seed);
  unsigned bad = errors.load();
  error_noted.store(bad != 0);   // the child's first error is its own
  for (unsigned i = 0; i < 400; i++) {
    Slot *s = &slots[r.below(kSlots)];
    if (s->busy.exchange(1)) continue;   // held by a thread that is not here
    if (s->b.p) {
      if (r.below(2))
        release(&s->b, r);
      else if (s->b.kind != kNewArray && s->b.kind != kNewAligned)
        reallocate(&s->b, r, 900000 + i);
    } else {
      allocate(r, &s->b, 800000 + i);
    }
    s->busy.store(0);
  }
  malloc_trim(0);
  kalloc_compact();
  Task t{[](unsigned, unsigned) {   // a thread in the child too
            void *p = malloc(1000);
            free(p);
          },
          0, 0, {}, false};
  task_start(&t);
  task_join(&t);
  if (errors.load() != bad) {
    char msg[600];
    int len = snprintf(msg, sizeof msg, "forked child: %u errors; the first: %s\n", errors.load() - bad,
                       error_noted.load() ? first_error : "(noted before the fork)");
    if (len > 0) (void)!write(2, msg, (size_t)len);
    _exit(3);
  }
  _exit(0);
}

void worker(unsigned gen, unsigned id) {
  kt::Rng r(1000 * gen + id + 1);
  uint32_t seed = (gen * 64 + id) * 1000000u;
  const unsigned ops = kOpsPerWorker * kWorkers / nr_workers;
  for (unsigned op = 0; op < ops; op++) {
    // (Not with KALLOC_MESH=1: its zones are memory files the child copies
    // after the fork while the other threads write on, a documented limit,
    // docs/architecture.md, Meshing, "Known limits".)
    if (gen == 1 && id == 0 && op == ops / 2 && !getenv("KALLOC_MESH")) {
      pid_t pid = fork();
      if (pid == 0) forked_child(seed + op);
      int st = 0;
      if (pid > 0 && waitpid(pid, &st, 0) == pid) fork_status.store(st);
      if (pid < 0 || fork_status.load() != st || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        Block none;
        note_error("the forked child failed", none, (size_t)st);
      }
    }
    Slot *s = lock_random_slot(r);
    Block *b = &s->b;
    bool full = live_bytes.load(std::memory_order_relaxed) > kLiveLimit;
    if (!b->p) {
      if (!full) allocate(r, b, ++seed);
    } else {
      uint64_t c = r.below(10);
      if (full || c < 5)
        release(b, r);
      else if (c < 8 && b->kind != kNewArray && b->kind != kNewAligned)
        reallocate(b, r, ++seed);
      else
        use_usable_size(b);
    }
    unlock_slot(s);
  }
  if (r.below(2)) kalloc_thread_flush();
}

void maintenance() {
  kt::Rng r(77);
  FILE *devnull = fopen("/dev/null", "w");
  for (unsigned round = 0; !maintenance_stop.load() && !(task_inline && round == 200); round++) {
    switch (r.below(7)) {
      case 0: malloc_trim(0); break;
      case 1: kalloc_compact(); break;
      case 2: {
        struct kalloc_stats s {};
        if (kalloc_stats_get(&s) != 0) {
          Block none;
          note_error("kalloc_stats_get", none, 0);
        }
        break;
      }
      case 3: {
        struct kalloc_vmstat v {};
        v.size = sizeof v;
        kalloc_vmstat_get(&v);
        break;
      }
      case 4: {
        struct mallinfo2 m = mallinfo2();
        kt::escape(m.uordblks);
        break;
      }
      case 5:
        if (devnull) malloc_info(0, devnull);
        break;
      default: kalloc_thread_flush(); break;
    }
    nr_maint.fetch_add(1, std::memory_order_relaxed);
    usleep((useconds_t)r.below(3000));
  }
  if (devnull) fclose(devnull);
}

// The single-threaded phase before the threads: the same operations from
// the main thread, kalloc_compact() every 2,000 of them (meshing merges
// only in a single-threaded process), and a fork with no other thread.
void single_threaded_phase() {
  kt::Rng r(99);
  uint32_t seed = 90000000u;
  for (unsigned op = 0; op < kOpsPerWorker; op++) {
    if (op == kOpsPerWorker / 2) {
      pid_t pid = fork();
      if (pid == 0) forked_child(seed);
      int st = -1;
      if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        Block none;
        note_error("the single-threaded fork's child failed", none, (size_t)st);
      }
    }
    if (op % 2000 == 1999) kalloc_compact();
    Slot *s = lock_random_slot(r);
    Block *b = &s->b;
    if (!b->p) {
      if (live_bytes.load() <= kLiveLimit) allocate(r, b, ++seed);
    } else if (r.below(10) < 6) {   // mostly frees: half-empty slabs to merge
      release(b, r);
    } else if (b->kind != kNewArray && b->kind != kNewAligned) {
      reallocate(b, r, ++seed);
    }
    unlock_slot(s);
  }
}

// The address-space limit of KT_CHAOS_AS_MB: that many MiB above what the
// process maps now.
void limit_address_space(long headroom_mib) {
  FILE *f = fopen("/proc/self/status", "r");
  long vm_kib = 0;
  char line[256];
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmSize:", 7) == 0) vm_kib = atol(line + 7);
  if (f) fclose(f);
  struct rlimit rl;
  getrlimit(RLIMIT_AS, &rl);
  rl.rlim_cur = (rlim_t)(vm_kib + headroom_mib * 1024) * 1024;
  setrlimit(RLIMIT_AS, &rl);
}

void lift_address_space_limit() {
  struct rlimit rl;
  getrlimit(RLIMIT_AS, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_AS, &rl);
}

// Runs the workload; the result is in `errors` and `first_error`.
void run_chaos() {
  if (const char *as = getenv("KT_CHAOS_AS_MB")) {
    oom_mode = true;
    limit_address_space(atol(as));
  }
  single_threaded_phase();
  Task m{[](unsigned, unsigned) { maintenance(); }, 0, 0, {}, false};
  task_start(&m);
  if (const char *n = getenv("KT_CHAOS_THREADS")) nr_workers = (unsigned)std::min(std::max(atoi(n), 1), 64);
  for (unsigned g = 0; g < kGenerations; g++) {
    std::vector<Task> ts(nr_workers);
    for (unsigned i = 0; i < nr_workers; i++) {
      ts[i] = Task{worker, g, i, {}, false};
      task_start(&ts[i]);
    }
    for (auto &t : ts) task_join(&t);
  }
  maintenance_stop.store(true);
  task_join(&m);
  kt::Rng r(5);
  for (Slot &s : slots)
    if (s.b.p) release(&s.b, r);
  if (live_bytes.load() != 0) {
    Block none;
    note_error("live bytes left", none, live_bytes.load());
  }
  if (oom_mode) {
    // Everything freed, the limit still on: what failed works again.
    std::vector<Block> again;
    for (unsigned i = 0; i < 2000; i++) {
      Block b;
      b.n = i % 10 == 0 ? (256u << 10) : 16 + i % 1000;
      b.seed = 70000000u + i;
      b.p = malloc(b.n);
      if (!b.p) {
        note_error("no allocation after everything was freed", b, i);
        break;
      }
      fill_block(b);
      again.push_back(b);
    }
    for (Block &b : again) {
      check_block(b, b.n, true);
      free(b.p);
    }
    lift_address_space_limit();
  }
}

// Runs ChaosChild.Workload in a fresh process with `env` set.
void chaos_under(std::initializer_list<std::pair<const char *, const char *>> env) {
  std::vector<std::pair<const char *, const char *>> e(env);
  e.push_back({"KT_CHAOS_CHILD", "1"});
  std::string filter = "ChaosChild.Workload";
  int status = -1;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (const auto &v : e) setenv(v.first, v.second, 1);
    std::string arg = "--gtest_filter=" + filter;
    execl("/proc/self/exe", "kt_child", arg.c_str(), static_cast<char *>(nullptr));
    _exit(127);
  }
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died with signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's checks failed (its output above)";
}

}  // namespace

TEST(ChaosChild, Workload) {
  if (!getenv("KT_CHAOS_CHILD")) GTEST_SKIP() << "run by the Chaos.* tests in a fresh process";
  run_chaos();
  kalloc_vmstat v = kt::vmstat_now();
  std::printf("[ figures  ] %lu allocations, %lu reallocs, %lu frees, %lu usable-size writes, "
              "%lu maintenance calls; fork beside threads: %s; slab pairs merged %lu\n",
              nr_alloc.load(), nr_realloc.load(), nr_free.load(), nr_usable.load(), nr_maint.load(),
              fork_status.load() == -1 ? "none" : fork_status.load() == 0 ? "the child passed" : "the child failed",
              (unsigned long)v.mesh_success);
  if (getenv("KT_CHAOS_THREADS")) {
    std::string l = kt::stats_line("percpu sheaves:");
    std::printf("[ figures  ] %s\n", l.c_str());
    size_t at = l.find("refills=");
    // Where kalloc turned them off (glibc registered no rseq area, e.g.
    // GLIBC_TUNABLES=glibc.pthread.rseq=0, or no membarrier rseq fence),
    // the workload still ran and was checked on the per-thread paths.
    if (l.find("not used") == std::string::npos)
      EXPECT_TRUE(at != std::string::npos && std::stoul(l.substr(at + 8)) > 0)
          << "no pool thread used the per-CPU sheaves: " << l;
    else
      std::printf("[ figures  ] the per-CPU sheaves are off in this process (no rseq "
                  "registration or membarrier fence): the pool threads used their own paths\n");
  }
  if (oom_mode) {
    std::printf("[ figures  ] %lu allocations and reallocs failed with ENOMEM under the limit; "
                "%u tasks ran on their caller's thread (no thread could be created)\n",
                nr_enomem.load(), nr_inline_tasks.load());
    EXPECT_GT(nr_enomem.load(), 100u) << "the address-space limit was not reached";
  }
  if (getenv("KALLOC_MESH")) {
    EXPECT_GT(v.mesh_success, 0u) << "the single-threaded phase merged no slabs";
  }
  EXPECT_EQ(errors.load(), 0u) << first_error;
}

TEST(Chaos, Defaults) { chaos_under({}); }
TEST(Chaos, BackgroundReclaimAndFastDecay) { chaos_under({{"KALLOC_BACKGROUND", "1"}, {"KALLOC_DECAY_MS", "20"}}); }
TEST(Chaos, EveryFreshPageblockHuge) { chaos_under({{"KALLOC_THP", "2"}}); }
TEST(Chaos, NoThreadCaches) { chaos_under({{"KALLOC_TCACHE", "0"}}); }
TEST(Chaos, LifetimeSplitFixedClasses) { chaos_under({{"KALLOC_LIFETIME", "1"}, {"KALLOC_DYNAMIC_CLASSES", "0"}}); }
TEST(Chaos, NoResidencyNoFaultAroundNoHoles) {
  chaos_under({{"KALLOC_RESIDENCY", "0"}, {"KALLOC_FAULT_AROUND", "0"}, {"KALLOC_SLAB_HOLES", "0"}});
}
TEST(Chaos, SmallWatermarks) { chaos_under({{"KALLOC_FREE_HIGH", "64K"}}); }
TEST(Chaos, NoPercpuSheaves) { chaos_under({{"KALLOC_PERCPU_SHEAVES", "0"}}); }
TEST(Chaos, PoolThreadsOnPercpuSheaves) { chaos_under({{"KT_CHAOS_THREADS", "24"}}); }
TEST(Chaos, Meshing) { chaos_under({{"KALLOC_MESH", "1"}}); }
TEST(Chaos, HugetlbWhereReservedSmallPagesElse) {
  kt::HugetlbPoolLock lock;   // its forks copy hugetlb pages: no other test drains the pool meanwhile
  chaos_under({{"KALLOC_HUGETLB", "1"}});
}
TEST(Chaos, UnderAnAddressSpaceLimit) { chaos_under({{"KT_CHAOS_AS_MB", "96"}}); }
TEST(Chaos, UnderAnAddressSpaceLimitNoThreadCaches) {
  chaos_under({{"KT_CHAOS_AS_MB", "96"}, {"KALLOC_TCACHE", "0"}});
}
TEST(Chaos, NoHugepagesNoDecay) { chaos_under({{"KALLOC_THP", "0"}, {"KALLOC_DECAY_MS", "0"}}); }
