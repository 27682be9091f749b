// Running out of address space (RLIMIT_AS): every allocation function must
// return NULL with errno = ENOMEM (operator new must throw std::bad_alloc),
// never crash or abort, and the allocator must recover once memory is freed.
// Each test runs in a forked child so the limit does not affect other tests.
#include <gtest/gtest.h>

#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

using kt::opaque;
constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;
constexpr size_t kHeadroom = 256 * MiB;

size_t VmSizeBytes() {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
  }
  fclose(f);
  return kb * 1024;
}

// Pointer storage that does not come from the allocator under test.
struct PtrArray {
  void **v = nullptr;
  size_t n = 0, cap = 0;
  explicit PtrArray(size_t c) : cap(c) {
    void *m = mmap(nullptr, c * sizeof(void *), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    KT_CHILD_CHECK(m != MAP_FAILED, 90);
    v = static_cast<void **>(m);
  }
};

void LimitAddressSpace(size_t headroom) {
  size_t vm = VmSizeBytes();
  KT_CHILD_CHECK(vm > 0, 91);
  struct rlimit rl;
  rl.rlim_cur = rl.rlim_max = vm + headroom;
  KT_CHILD_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, 92);
}

// Allocates blocks of `size` with `fn` until it returns NULL; the loop must
// end with errno == ENOMEM, within a bound.  Returns the number of blocks.
template <class AllocFn>
size_t ExhaustWith(PtrArray &arr, size_t size, AllocFn fn, int code) {
  size_t start = arr.n;
  const size_t bound = 2 * kHeadroom / (size < 16 ? 16 : size) + 100000;
  for (;;) {
    KT_CHILD_CHECK(arr.n < arr.cap && arr.n - start < bound, code);  // limit not effective?
    errno = 0;
    void *p = fn(size);
    if (!p) {
      KT_CHILD_CHECK(errno == ENOMEM, code + 1);
      break;
    }
    KT_CHILD_CHECK(kt::is_aligned(p, 16), code + 2);
    // Touch the first and last byte: the memory must really be usable.
    static_cast<volatile char *>(p)[0] = 1;
    static_cast<volatile char *>(p)[size - 1] = 2;
    arr.v[arr.n++] = p;
  }
  return arr.n - start;
}

void WaitForChild(pid_t pid) {
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) {
    FAIL() << "child killed by signal " << WTERMSIG(status) << " (" << strsignal(WTERMSIG(status))
           << ")";
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child failed a check (see its stderr), code "
                                    << WEXITSTATUS(status);
}

// The scenario of the brief: 1 MiB, then 100 KiB, then 64-byte blocks until
// NULL; then all allocation functions fail cleanly; free some, and they work.
void ExhaustAndRecoverChild() {
  PtrArray arr(2 * kHeadroom / 64 + 400000);  // mapped before the limit is set
  LimitAddressSpace(kHeadroom);

  size_t n1m = ExhaustWith(arr, 1 * MiB, [](size_t n) { return malloc(n); }, 10);
  fprintf(stderr, "[child] 1 MiB blocks before ENOMEM: %zu\n", n1m);
  // Much of the 256 MiB of headroom must actually be usable.
  KT_CHILD_CHECK(n1m >= 64, 13);
  size_t first_100k = arr.n;
  size_t n100k = ExhaustWith(arr, 100 * KiB, [](size_t n) { return malloc(n); }, 20);
  size_t first_64 = arr.n;
  size_t n64 = ExhaustWith(arr, 64, [](size_t n) { return malloc(n); }, 30);
  fprintf(stderr, "[child] then 100 KiB blocks: %zu, 64-byte blocks: %zu\n", n100k, n64);

  // Everything fails cleanly now.
  errno = 0;
  KT_CHILD_CHECK(malloc(opaque(1 * MiB)) == nullptr && errno == ENOMEM, 40);
  errno = 0;
  KT_CHILD_CHECK(calloc(opaque(1 * MiB), 1) == nullptr && errno == ENOMEM, 41);
  errno = 0;
  KT_CHILD_CHECK(memalign(opaque<size_t>(4096), opaque(2 * MiB)) == nullptr && errno == ENOMEM, 42);
  errno = 0;
  KT_CHILD_CHECK(aligned_alloc(opaque<size_t>(64), opaque(4 * MiB)) == nullptr && errno == ENOMEM,
                 43);
  errno = 0;
  KT_CHILD_CHECK(valloc(opaque(8 * MiB)) == nullptr && errno == ENOMEM, 44);
  void *mem = reinterpret_cast<void *>(0x1230);
  KT_CHILD_CHECK(posix_memalign(&mem, 4096, opaque(8 * MiB)) == ENOMEM, 45);
  KT_CHILD_CHECK(mem == reinterpret_cast<void *>(0x1230), 46);

  // realloc failure leaves the block intact.
  void *keep = arr.v[0];
  kt::fill(keep, 4096, 77);
  errno = 0;
  KT_CHILD_CHECK(realloc(keep, opaque(200 * MiB)) == nullptr && errno == ENOMEM, 47);
  KT_CHILD_CHECK(kt::check(keep, 4096, 77) == 4096, 48);

  // operator new throws, nothrow new returns null.
  bool threw = false;
  try {
    kt::escape(::operator new(opaque(8 * MiB)));
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  KT_CHILD_CHECK(threw, 49);
  threw = false;
  try {
    kt::escape(::operator new[](opaque(8 * MiB), std::align_val_t{4096}));
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  KT_CHILD_CHECK(threw, 50);
  KT_CHILD_CHECK(::operator new(opaque(8 * MiB), std::nothrow) == nullptr, 51);

  // Free half of the 1 MiB blocks, some 100 KiB and some 64-byte blocks.
  for (size_t i = 1; i < first_100k; i += 2) {
    free(arr.v[i]);
    arr.v[i] = nullptr;
  }
  for (size_t i = first_100k; i < first_64; i += 3) {
    free(arr.v[i]);
    arr.v[i] = nullptr;
  }
  for (size_t i = first_64; i < arr.n; i += 5) {
    free(arr.v[i]);
    arr.v[i] = nullptr;
  }
  // Now allocation works again, in every size class.
  void *a = malloc(opaque(1 * MiB));
  KT_CHILD_CHECK(a != nullptr, 60);
  memset(a, 1, 1 * MiB);
  void *b = malloc(opaque(100 * KiB));
  KT_CHILD_CHECK(b != nullptr, 61);
  memset(b, 2, 100 * KiB);
  void *c = malloc(opaque<size_t>(64));
  KT_CHILD_CHECK(c != nullptr, 62);
  void *d = calloc(1000, 10);
  KT_CHILD_CHECK(d != nullptr && kt::all_bytes_are(d, 10000, 0), 63);
  void *e = nullptr;
  try {
    e = ::operator new(opaque(512 * KiB));
  } catch (...) {
    KT_CHILD_CHECK(!"operator new failed after memory was freed", 64);
  }
  free(a);
  free(b);
  free(c);
  free(d);
  ::operator delete(e);
  for (size_t i = 0; i < arr.n; ++i) free(arr.v[i]);
  // Everything freed: the full headroom is usable again for 1 MiB blocks.
  arr.n = 0;
  size_t again = ExhaustWith(arr, 1 * MiB, [](size_t n) { return malloc(n); }, 70);
  fprintf(stderr, "[child] 1 MiB blocks after freeing everything: %zu\n", again);
  KT_CHILD_CHECK(again + 8 >= n1m / 2, 73);
  _exit(0);
}

TEST(OutOfMemory, ExhaustThenRecover) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ExhaustAndRecoverChild();
  WaitForChild(pid);
}

// --- running out of mappings (vm.max_map_count) --------------------------

struct Blk {
  void *p;
  size_t n;
  uint32_t seed;
};

// Mostly small blocks, some of a page or more, a few large and huge.
size_t RandomSize(kt::Rng &rng) {
  uint64_t r = rng.below(1000);
  if (r < 600) return 8 + rng.below(504);
  if (r < 850) return 512 + rng.below(8 * KiB);
  if (r < 970) return 8 * KiB + rng.below(248 * KiB);
  if (r < 995) return 256 * KiB + rng.below(2 * MiB - 256 * KiB);
  return 2 * MiB + rng.below(6 * MiB);
}

// With every mapping the process may make taken (kt::mapping_hog), each
// call either works (the block usable) or fails cleanly (NULL and ENOMEM;
// realloc's block intact); trim and compaction run; nothing live changes;
// with the mappings given back, even a huge block is had again.  Zone
// growth, huge blocks, hugepage advice and reclaim's madvise calls all want
// mappings (a split): none of their refusals may crash or corrupt.
void NoMappingLeftChild(long max_maps) {
  const size_t kCap = 20000;
  void *m = mmap(nullptr, kCap * sizeof(Blk), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  KT_CHILD_CHECK(m != MAP_FAILED, 80);
  Blk *live = static_cast<Blk *>(m);
  size_t n = 0;
  kt::Rng rng(42);
  uint32_t seed = 1;
  for (; n < 3000; n++) {
    size_t sz = RandomSize(rng);
    void *p = malloc(sz);
    KT_CHILD_CHECK(p != nullptr, 81);
    kt::fill_sparse(p, sz, seed);
    live[n] = {p, sz, seed++};
  }
  for (size_t i = 0; i < n; i += 3) free(live[i].p), live[i].p = nullptr;

  kt::mapping_hog hog(max_maps);
  KT_CHILD_CHECK(hog.exhausted(), 82);
  size_t tried = 0, refused = 0, realloc_refused = 0;
  for (int round = 0; round < 3; round++) {
    for (int k = 0; k < 2000 && n < kCap; k++) {
      size_t sz = RandomSize(rng);
      errno = 0;
      void *p = (k % 7 == 0) ? calloc(1, sz) : malloc(sz);
      tried++;
      if (!p) {
        KT_CHILD_CHECK(errno == ENOMEM, 83);
        refused++;
        continue;
      }
      if (k % 7 == 0) KT_CHILD_CHECK(kt::all_bytes_are(p, sz < 8192 ? sz : 8192, 0), 84);
      kt::fill_sparse(p, sz, seed);
      live[n++] = {p, sz, seed++};
    }
    for (size_t i = 0; i < n; i++) {
      if (!live[i].p) continue;
      uint64_t r = rng.below(10);
      if (r < 4) {
        KT_CHILD_CHECK(kt::check_sparse(live[i].p, live[i].n, live[i].seed) == live[i].n, 85);
        free(live[i].p);
        live[i].p = nullptr;
      } else if (r == 4) {
        size_t sz = RandomSize(rng);
        errno = 0;
        void *q = realloc(live[i].p, sz);
        if (!q) {
          KT_CHILD_CHECK(errno == ENOMEM, 86);
          realloc_refused++;
          continue;  // the old block stays, checked below
        }
        size_t keep = sz < live[i].n ? sz : live[i].n;
        KT_CHILD_CHECK(kt::check_sparse(q, keep, live[i].seed, false) == keep, 87);
        kt::fill_sparse(q, sz, seed);
        live[i] = {q, sz, seed++};
      }
    }
    malloc_trim(0);
    kalloc_compact();
    for (size_t i = 0; i < n; i++)
      if (live[i].p)
        KT_CHILD_CHECK(kt::check_sparse(live[i].p, live[i].n, live[i].seed) == live[i].n, 88);
  }
  hog.release();
  fprintf(stderr, "[child] %ld mappings taken; %zu of %zu allocations and %zu reallocs refused "
          "while none was left\n", 2 * hog.splits, refused, tried, realloc_refused);
  void *big = malloc(opaque(6 * MiB));
  KT_CHILD_CHECK(big != nullptr, 89);
  memset(big, 0x5a, 6 * MiB);
  free(big);
  for (size_t i = 0; i < n; i++)
    if (live[i].p) {
      KT_CHILD_CHECK(kt::check_sparse(live[i].p, live[i].n, live[i].seed) == live[i].n, 90);
      free(live[i].p);
    }
  _exit(0);
}

TEST(OutOfMappings, EveryCallWorksOrFailsCleanly) {
  long max = kt::max_map_count();
  if (max < 0 || max > (1l << 20))
    GTEST_SKIP() << "vm.max_map_count is " << max << ": too many mappings to take in a test";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) NoMappingLeftChild(max);
  WaitForChild(pid);
}

// Each block size on its own, through several allocation functions.
template <class AllocFn>
void ExhaustSingleChild(size_t size, AllocFn fn, void (*freefn)(void *) = free) {
  PtrArray arr(2 * kHeadroom / 64 + 400000);
  LimitAddressSpace(kHeadroom);
  for (int round = 0; round < 2; ++round) {
    size_t got = ExhaustWith(arr, size, fn, 10);
    KT_CHILD_CHECK(got * size >= 32 * MiB, 13);
    // Free the first half (a contiguous run in allocation order, so even an
    // allocator that cannot reuse scattered holes for aligned requests gets
    // room back); allocation of the same size works again.
    for (size_t i = 0; i < arr.n / 2; ++i) {
      freefn(arr.v[i]);
      arr.v[i] = nullptr;
    }
    void *p = fn(size);
    KT_CHILD_CHECK(p != nullptr, 15);
    freefn(p);
    for (size_t i = 0; i < arr.n; ++i) freefn(arr.v[i]);
    arr.n = 0;
  }
  _exit(0);
}

TEST(OutOfMemory, Malloc1MiBOnly) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ExhaustSingleChild(1 * MiB, [](size_t n) { return malloc(n); });
  WaitForChild(pid);
}

TEST(OutOfMemory, Malloc100KiBOnly) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ExhaustSingleChild(100 * KiB, [](size_t n) { return malloc(n); });
  WaitForChild(pid);
}

TEST(OutOfMemory, Malloc64BytesOnly) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ExhaustSingleChild(64, [](size_t n) { return malloc(n); });
  WaitForChild(pid);
}

TEST(OutOfMemory, Calloc300KiBOnly) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ExhaustSingleChild(300 * KiB, [](size_t n) { return calloc(1, n); });
  WaitForChild(pid);
}

TEST(OutOfMemory, Memalign4096Only) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ExhaustSingleChild(3000, [](size_t n) { return memalign(4096, n); });
  WaitForChild(pid);
}

TEST(OutOfMemory, KallocMalloc3MiBOnly) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ExhaustSingleChild(
        3 * MiB, [](size_t n) { return kalloc_malloc(n); }, kalloc_free);
  WaitForChild(pid);
}

// --- the last megabytes under a limit --------------------------------------

uint64_t SpannedPages() {
  kalloc_vmstat v{};
  v.size = sizeof v;
  KT_CHILD_CHECK(kalloc_vmstat_get(&v) == 0, 70);
  return v.nr_spanned_pages;
}

// Under RLIMIT_AS with 3 MiB of room, kalloc's zone still grows into it:
// a growth the kernel refuses is tried again smaller (a zone grows in whole
// 4 MiB blocks otherwise, which never fit).  64-byte blocks until NULL; the
// zones must have taken at least 2 of the 3 MiB, and each block is usable.
void LastMegabytesChild() {
  PtrArray arr(2 * kHeadroom / 64 + 400000);
  uint64_t before = SpannedPages();
  LimitAddressSpace(3 * MiB);
  size_t n = ExhaustWith(arr, 64, [](size_t n) { return malloc(n); }, 71);
  uint64_t grown = SpannedPages() - before;
  fprintf(stderr, "[child] 64-byte blocks: %zu; zones grew by %llu KiB under 3 MiB of room\n", n,
          (unsigned long long)grown * 4);
  KT_CHILD_CHECK(grown * 4096 >= 2 * MiB, 75);
  for (size_t i = 0; i < arr.n; ++i) free(arr.v[i]);
  _exit(0);
}

TEST(OutOfMemory, TheLastMegabytesUnderALimitAreUsed) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) LastMegabytesChild();
  WaitForChild(pid);
}

// Under RLIMIT_AS a zone grows by at most half of the room left, so the
// program's own mappings still fit beside it (thread stacks, files, Python's
// 1 MiB arenas; glibc's heap grows 132 KiB at a time).  6 MiB of room:
// after the zones' first growth under the limit (4 MiB or more otherwise),
// the program can still map 2.5 MiB.
void RoomForTheProgramChild() {
  PtrArray arr(2 * kHeadroom / 64 + 400000);
  uint64_t before = SpannedPages();
  LimitAddressSpace(6 * MiB);
  while (arr.n % 256 != 0 || SpannedPages() == before) {   // (the snapshot reads /proc)
    void *p = malloc(opaque<size_t>(64));
    KT_CHILD_CHECK(p != nullptr && arr.n < arr.cap, 76);
    arr.v[arr.n++] = p;
  }
  uint64_t grown = SpannedPages() - before;
  const size_t own_len = 5 * MiB / 2;
  void *own = mmap(nullptr, own_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  fprintf(stderr, "[child] first growth under 6 MiB of room: %llu KiB; a 2.5 MiB mmap: %s\n",
          (unsigned long long)grown * 4, own == MAP_FAILED ? "refused" : "mapped");
  KT_CHILD_CHECK(grown * 4096 <= 3 * MiB, 77);
  KT_CHILD_CHECK(own != MAP_FAILED, 78);
  munmap(own, own_len);
  // And the rest of the room is still the allocator's when it needs it.
  ExhaustWith(arr, 64, [](size_t n) { return malloc(n); }, 79);
  for (size_t i = 0; i < arr.n; ++i) free(arr.v[i]);
  _exit(0);
}

TEST(OutOfMemory, AGrowthLeavesRoomForTheProgramsOwnMappings) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) RoomForTheProgramChild();
  WaitForChild(pid);
}

// Grow one block with realloc until it fails: NULL + ENOMEM, old block intact.
TEST(OutOfMemory, ReallocGrowthFailsCleanly) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    LimitAddressSpace(kHeadroom);
    size_t n = 1 * MiB;
    void *p = malloc(n);
    KT_CHILD_CHECK(p != nullptr, 10);
    kt::fill_sparse(p, n, 3);
    for (;;) {
      size_t m = n + 8 * MiB;
      KT_CHILD_CHECK(m < 2 * kHeadroom, 11);
      errno = 0;
      void *r = realloc(p, m);
      if (!r) {
        KT_CHILD_CHECK(errno == ENOMEM, 12);
        KT_CHILD_CHECK(kt::check_sparse(p, n, 3) == n, 13);
        break;
      }
      KT_CHILD_CHECK(kt::check_sparse(r, n, 3) == n, 14);
      p = r;
      n = m;
      kt::fill_sparse(p, n, 3);
    }
    fprintf(stderr, "[child] realloc reached %zu MiB\n", n / MiB);
    KT_CHILD_CHECK(n >= 64 * MiB, 15);
    free(p);
    void *q = malloc(64 * MiB);
    KT_CHILD_CHECK(q != nullptr, 16);
    free(q);
    _exit(0);
  }
  WaitForChild(pid);
}

}  // namespace

// A size no machine maps (64 TiB; the kernel's overcommit check refuses it)
// fails at once with ENOMEM, and leaves no trace: no address space reserved
// and no tables touched for it (they once were: each attempt reserved 64 TiB
// of slots and scanned a 128 MiB chunk table).
static long StatusKiB(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':') v = atol(line + n + 1);
  if (f) fclose(f);
  return v;
}

TEST(OutOfMemory, ImpossibleSizeFailsWithoutATrace) {
  const size_t huge = size_t(1) << 46;
  void *warm = malloc(64);   // the allocator is set up before the baseline
  const long rss0 = StatusKiB("VmRSS"), vsz0 = StatusKiB("VmSize");
  for (int i = 0; i < 4; ++i) {
    errno = 0;
    void *p = malloc(huge + (size_t)i * 4096);
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_THROW((void)::operator new(huge), std::bad_alloc);
    EXPECT_EQ(::operator new(huge, std::nothrow), nullptr);
  }
  const long rss1 = StatusKiB("VmRSS"), vsz1 = StatusKiB("VmSize");
  EXPECT_LT(rss1 - rss0, 8 * 1024) << "KiB of RSS added by failed requests";
  EXPECT_LT(vsz1 - vsz0, 1024 * 1024) << "KiB of address space kept by failed requests";
  free(warm);
}
