// kalloc-specific behaviour: the exported symbol surface of libkalloc.so,
// glibc's __libc_* aliases, kalloc_owns, kalloc_stats_get / print,
// kalloc_free_sized, kalloc_version, kalloc_thread_flush.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

using kt::opaque;
constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;

char g_global_array[4096];
const char kGlobalConst[] = "a constant string in .rodata";

std::string DlsymOwner(const char *name) {
  void *sym = dlsym(RTLD_DEFAULT, name);
  if (!sym) return "<not found>";
  Dl_info info{};
  if (!dladdr(sym, &info) || !info.dli_fname) return "<unknown>";
  return info.dli_fname;
}

// Every C entry point glibc's malloc provides must be taken over, or glibc's
// own version runs on kalloc's pointers (or the reverse).
TEST(KallocExports, CMallocSurfaceResolvesToLibkalloc) {
  const char *names[] = {"malloc",          "free",           "calloc",
                         "realloc",         "reallocarray",   "posix_memalign",
                         "aligned_alloc",   "memalign",       "valloc",
                         "pvalloc",         "malloc_usable_size", "malloc_trim",
                         "mallopt",         "mallinfo",       "mallinfo2",
                         "malloc_stats",    "malloc_info",    "cfree",
                         "__libc_malloc",   "__libc_free",    "__libc_calloc",
                         "__libc_realloc",  "__libc_memalign", "__libc_valloc",
                         "__libc_pvalloc",  "__posix_memalign"};
  for (const char *n : names) {
    std::string owner = DlsymOwner(n);
    EXPECT_NE(owner.find("libkalloc"), std::string::npos)
        << n << " resolves to " << owner << ", not libkalloc.so";
  }
}

TEST(KallocExports, CxxOperatorsResolveToLibkalloc) {
  const char *names[] = {
      "_Znwm",                          // new(size_t)
      "_Znam",                          // new[](size_t)
      "_ZnwmRKSt9nothrow_t",            // new(size_t, nothrow)
      "_ZnamRKSt9nothrow_t",            // new[](size_t, nothrow)
      "_ZnwmSt11align_val_t",           // new(size_t, align)
      "_ZnamSt11align_val_t",           // new[](size_t, align)
      "_ZnwmSt11align_val_tRKSt9nothrow_t",
      "_ZnamSt11align_val_tRKSt9nothrow_t",
      "_ZdlPv",                         // delete(void*)
      "_ZdaPv",                         // delete[](void*)
      "_ZdlPvm",                        // delete(void*, size_t)
      "_ZdaPvm",                        // delete[](void*, size_t)
      "_ZdlPvRKSt9nothrow_t",
      "_ZdaPvRKSt9nothrow_t",
      "_ZdlPvSt11align_val_t",
      "_ZdaPvSt11align_val_t",
      "_ZdlPvmSt11align_val_t",
      "_ZdaPvmSt11align_val_t",
      "_ZdlPvSt11align_val_tRKSt9nothrow_t",
      "_ZdaPvSt11align_val_tRKSt9nothrow_t",
  };
  for (const char *n : names) {
    std::string owner = DlsymOwner(n);
    EXPECT_NE(owner.find("libkalloc"), std::string::npos)
        << n << " resolves to " << owner << ", not libkalloc.so";
  }
}

// Pointers from the __libc_* aliases and from malloc are interchangeable.
TEST(KallocExports, LibcAliasesInteroperateWithMalloc) {
  using MallocFn = void *(*)(size_t);
  using FreeFn = void (*)(void *);
  using CallocFn = void *(*)(size_t, size_t);
  using ReallocFn = void *(*)(void *, size_t);
  using MemalignFn = void *(*)(size_t, size_t);
  auto lmalloc = reinterpret_cast<MallocFn>(dlsym(RTLD_DEFAULT, "__libc_malloc"));
  auto lfree = reinterpret_cast<FreeFn>(dlsym(RTLD_DEFAULT, "__libc_free"));
  auto lcalloc = reinterpret_cast<CallocFn>(dlsym(RTLD_DEFAULT, "__libc_calloc"));
  auto lrealloc = reinterpret_cast<ReallocFn>(dlsym(RTLD_DEFAULT, "__libc_realloc"));
  auto lmemalign = reinterpret_cast<MemalignFn>(dlsym(RTLD_DEFAULT, "__libc_memalign"));
  ASSERT_TRUE(lmalloc && lfree && lcalloc && lrealloc && lmemalign);
  for (size_t n : {size_t{16}, size_t{5000}, 300 * KiB, 8 * MiB}) {
    void *p = lmalloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(kalloc_owns(p)) << "__libc_malloc(" << n << ") is not kalloc memory";
    EXPECT_GE(malloc_usable_size(p), n);
    p = realloc(p, n * 2);
    ASSERT_NE(p, nullptr);
    free(p);
    p = malloc(n);
    ASSERT_NE(p, nullptr);
    p = lrealloc(p, n + 1);
    ASSERT_NE(p, nullptr);
    lfree(p);
    p = lcalloc(1, n);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(kt::all_bytes_are(p, n, 0));
    free(p);
    p = lmemalign(4096, n);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(kt::is_aligned(p, 4096));
    free(p);
  }
}

// C23 free_sized / free_aligned_sized: worth exporting (glibc 2.36 has none).
TEST(KallocExports, FreeSizedIfExported) {
  using FreeSized = void (*)(void *, size_t);
  using FreeAlignedSized = void (*)(void *, size_t, size_t);
  auto fs = reinterpret_cast<FreeSized>(dlsym(RTLD_DEFAULT, "free_sized"));
  auto fas = reinterpret_cast<FreeAlignedSized>(dlsym(RTLD_DEFAULT, "free_aligned_sized"));
  if (!fs || !fas) GTEST_SKIP() << "free_sized/free_aligned_sized not exported";
  for (size_t n : {size_t{1}, size_t{100}, size_t{5000}, 200 * KiB, 4 * MiB}) {
    void *p = malloc(n);
    ASSERT_NE(p, nullptr);
    fs(p, n);
    p = aligned_alloc(256, n);
    ASSERT_NE(p, nullptr);
    fas(p, 256, n);
  }
}

TEST(KallocApi, VersionMatchesHeader) {
  const char *v = kalloc_version();
  ASSERT_NE(v, nullptr);
  std::string want = std::to_string(KALLOC_VERSION_MAJOR) + "." +
                     std::to_string(KALLOC_VERSION_MINOR) + "." +
                     std::to_string(KALLOC_VERSION_PATCH);
  EXPECT_EQ(std::string(v), want);
}

TEST(KallocApi, FreeSizedAndFreeAlignedSized) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{24}, size_t{1000}, 70 * KiB, 1 * MiB, 12 * MiB}) {
    void *p = kalloc_malloc(n);
    ASSERT_NE(p, nullptr);
    if (n) memset(p, 1, n);
    errno = 77;
    kalloc_free_sized(p, n);
    EXPECT_EQ(errno, 77);
    for (size_t a : {size_t{16}, size_t{64}, size_t{4096}, size_t{1} << 21}) {
      size_t sz = (n + a - 1) / a * a;  // aligned_alloc wants a multiple in C11
      if (sz == 0) sz = a;
      void *q = kalloc_aligned_alloc(a, sz);
      ASSERT_NE(q, nullptr);
      ASSERT_TRUE(kt::is_aligned(q, a));
      memset(q, 2, sz);
      kalloc_free_aligned_sized(q, a, sz);
    }
  }
}

TEST(KallocApi, OwnsKallocPointers) {
  std::vector<void *> mine;
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, 100 * KiB, 1 * MiB, 64 * MiB}) {
    void *p = malloc(opaque(n));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(kalloc_owns(p), 1) << "malloc(" << n << ") = " << p;
    mine.push_back(p);
    void *q = kalloc_malloc(opaque(n));
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(kalloc_owns(q), 1) << "kalloc_malloc(" << n << ") = " << q;
    kalloc_free(q);
  }
  void *c = calloc(10, 10);
  EXPECT_EQ(kalloc_owns(c), 1);
  free(c);
  void *m = memalign(1 << 20, 100);
  EXPECT_EQ(kalloc_owns(m), 1);
  free(m);
  int *n = new int(5);
  EXPECT_EQ(kalloc_owns(n), 1);
  delete n;
  for (void *p : mine) free(p);
}

TEST(KallocApi, DoesNotOwnForeignOrBogusAddresses) {
  int local = 0;
  char stack_buf[256];
  kt::escape(&local);
  kt::escape(stack_buf);
  EXPECT_EQ(kalloc_owns(&local), 0);
  EXPECT_EQ(kalloc_owns(stack_buf + 100), 0);
  EXPECT_EQ(kalloc_owns(g_global_array), 0);
  EXPECT_EQ(kalloc_owns(g_global_array + 2048), 0);
  EXPECT_EQ(kalloc_owns(kGlobalConst), 0);
  EXPECT_EQ(kalloc_owns(reinterpret_cast<const void *>(&DlsymOwner)), 0);
  EXPECT_EQ(kalloc_owns(nullptr), 0);
  // Must never fault, whatever the pointer.
  const uintptr_t bogus[] = {1,
                             16,
                             4096,
                             0xdeadbeef,
                             0x00007fffffffffffull,
                             0x0000800000000000ull,
                             0xffff800000000000ull,
                             0xffffffffff600000ull,  // vsyscall page
                             UINTPTR_MAX,
                             UINTPTR_MAX - 15};
  for (uintptr_t b : bogus)
    EXPECT_EQ(kalloc_owns(reinterpret_cast<const void *>(b)), 0) << std::hex << b;
  // A page mapped directly, behind kalloc's back.
  void *page = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  EXPECT_EQ(kalloc_owns(page), 0);
  EXPECT_EQ(kalloc_owns(static_cast<char *>(page) + 65536), 0);
  munmap(page, 1 << 20);
  // And a PROT_NONE one.
  void *none = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(none, MAP_FAILED);
  EXPECT_EQ(kalloc_owns(none), 0);
  munmap(none, 4096);
}

kalloc_stats Stats() {
  kalloc_stats s;
  memset(&s, 0xff, sizeof s);
  EXPECT_EQ(kalloc_stats_get(&s), 0);
  return s;
}

TEST(KallocApi, StatsAreSane) {
  void *p = malloc(opaque<size_t>(100));
  kalloc_stats s = Stats();
  EXPECT_GT(s.in_use, 0u);
  EXPECT_GE(s.mapped, s.in_use);
  EXPECT_GT(s.resident, 0u);
  EXPECT_GE(s.nr_zones, 1u);
  EXPECT_GE(s.nr_thread_caches, 1u);
  EXPECT_LT(s.nr_thread_caches, 1000u);
  EXPECT_LE(s.free_resident_pages, s.free_pages);
  EXPECT_LE(s.slab_bytes + s.large_bytes, s.mapped);
  free(p);
}

TEST(KallocApi, StatsInUseFollowsSmallAllocations) {
  kalloc_thread_flush();
  kalloc_stats before = Stats();
  std::vector<void *> v;
  for (int i = 0; i < 8192; ++i) {  // 8 MiB of live 1 KiB blocks
    void *p = malloc(opaque<size_t>(1024));
    ASSERT_NE(p, nullptr);
    memset(p, 1, 1024);
    v.push_back(p);
  }
  kalloc_stats during = Stats();
  EXPECT_GE(during.in_use, before.in_use + 7 * MiB)
      << "in_use " << before.in_use << " -> " << during.in_use;
  EXPECT_GE(during.slab_objects, before.slab_objects + 4096)
      << "slab_objects " << before.slab_objects << " -> " << during.slab_objects;
  EXPECT_GE(during.slab_bytes, before.slab_bytes + 6 * MiB);
  EXPECT_GE(during.mapped, during.in_use);
  for (void *p : v) free(p);
  kalloc_thread_flush();
  kalloc_stats after = Stats();
  EXPECT_LE(after.in_use + 6 * MiB, during.in_use)
      << "in_use " << during.in_use << " -> " << after.in_use << " after freeing 8 MiB";
  EXPECT_LE(after.slab_objects + 4096, during.slab_objects);
}

TEST(KallocApi, StatsFollowLargeAndHugeAllocations) {
  kalloc_stats before = Stats();
  void *a = malloc(opaque(16 * MiB));
  void *b = malloc(opaque(16 * MiB));
  void *c = malloc(opaque(64 * MiB));
  ASSERT_TRUE(a && b && c);
  memset(a, 1, 4096);
  kalloc_stats during = Stats();
  EXPECT_GE(during.in_use, before.in_use + 96 * MiB);
  EXPECT_GE(during.large_bytes + during.huge_bytes, before.large_bytes + before.huge_bytes + 96 * MiB);
  EXPECT_GE(during.nr_large_allocs + during.nr_huge_allocs,
            before.nr_large_allocs + before.nr_huge_allocs + 3);
  EXPECT_GE(during.mapped, before.mapped + 96 * MiB);
  free(a);
  free(b);
  free(c);
  kalloc_stats after = Stats();
  EXPECT_LE(after.in_use + 90 * MiB, during.in_use);
  EXPECT_LE(after.large_bytes + after.huge_bytes + 90 * MiB, during.large_bytes + during.huge_bytes);
}

TEST(KallocApi, TrimReleasesFreeMemory) {
  std::vector<void *> v;
  for (int i = 0; i < 128; ++i) {  // 32 MiB of page-granular blocks, touched
    void *p = malloc(opaque(256 * KiB));
    ASSERT_NE(p, nullptr);
    memset(p, 1, 256 * KiB);
    v.push_back(p);
  }
  for (void *p : v) free(p);
  kalloc_thread_flush();
  kalloc_stats before = Stats();
  int r = kalloc_trim(0);
  EXPECT_TRUE(r == 0 || r == 1) << r;
  kalloc_stats after = Stats();
  EXPECT_LE(after.free_resident_pages, before.free_resident_pages);
  if (r == 1) {
    EXPECT_GT(after.reclaimed_pages, before.reclaimed_pages) << "trim said it released memory";
  }
  // After a full trim (pad 0) the 32 MiB just freed is no longer kept resident.
  EXPECT_LT(after.free_resident_pages * 4096, 32 * MiB);
  r = malloc_trim(0);
  EXPECT_TRUE(r == 0 || r == 1) << r;
  void *p = malloc(opaque(256 * KiB));  // still works after trimming
  ASSERT_NE(p, nullptr);
  memset(p, 2, 256 * KiB);
  free(p);
}

TEST(KallocApi, StatsPrintWritesToFd) {
  char path[] = "/tmp/kalloc-api-stats-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  void *p = malloc(opaque<size_t>(3000));
  kalloc_stats_print_fd(fd);
  free(p);
  off_t len = lseek(fd, 0, SEEK_END);
  close(fd);
  EXPECT_GT(len, 0) << "kalloc_stats_print_fd wrote nothing";
}

TEST(KallocApi, ThreadFlushInOtherThreads) {
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([t] {
      std::vector<void *> v;
      for (int i = 0; i < 5000; ++i) v.push_back(malloc(16 + (i + t) % 500));
      for (size_t i = 0; i < v.size(); i += 2) free(v[i]);
      kalloc_thread_flush();
      for (size_t i = 1; i < v.size(); i += 2) free(v[i]);
      kalloc_thread_flush();
      kalloc_thread_flush();
    });
  }
  for (auto &t : ts) t.join();
  void *p = malloc(64);
  EXPECT_NE(p, nullptr);
  free(p);
}

// realloc that grows a block to 4 KiB or more gives it whole pages (large.h,
// REALLOC_PAGES_MIN), and a large block grows in place into the free pages
// after it, as glibc's chunks grow into the top.  A string built by small
// appends from 5 KB to 60 KB used to move at every size class step (8 per
// doubling: 22 moves, each a copy, each leaving a partly used slab behind);
// in whole pages it moves only when the next page is taken.
TEST(KallocApi, ReallocGrowsAnAppendedBlockInWholePagesInPlace) {
  char *p = static_cast<char *>(malloc(opaque<size_t>(4000)));
  ASSERT_NE(p, nullptr);
  memset(p, 'a', 4000);
  size_t len = 4000;
  unsigned moves = 0, not_pages = 0;
  for (size_t n = 4100; n <= 60000; n += 100) {
    char *q = static_cast<char *>(realloc(p, opaque(n)));
    ASSERT_NE(q, nullptr);
    if (q != p) moves++;
    if (malloc_usable_size(q) % 4096 != 0) not_pages++;
    memset(q + len, 'a' + (int)(n / 100 % 26), n - len);
    len = n;
    p = q;
  }
  EXPECT_LE(moves, 4u) << "an appended block moved at " << moves << " of 560 reallocs";
  EXPECT_EQ(not_pages, 0u) << "blocks realloc grew past 4 KiB that are not whole pages";
  // Shrinking to 4 KiB or more stays in place, in pages.
  char *q = static_cast<char *>(realloc(p, opaque<size_t>(20000)));
  EXPECT_EQ(q, p);
  EXPECT_EQ(malloc_usable_size(q), 20480u);
  EXPECT_EQ(q[19999], 'a' + (int)(20000 / 100 % 26));
  free(q);
}

// realloc's in-place fast path (malloc.h) and its slow path draw the same
// lines: a slab object stays while its class fits and is not twice too big;
// a large block stays while it keeps its page count, gives pages back when
// it needs fewer (at 4 KiB or more), and moves to a size class below that.
// Large blocks start at a colour (malloc/large.h): a multiple of 64 bytes in
// the slack their page rounding leaves, taken in turn, so that blocks
// allocated one after another start at different page offsets and a copy
// that shifts data by a few bytes from one to the next does not run with
// source and destination 1..31 bytes apart modulo 4 KiB, where glibc's
// memmove is 15x slower on AMD Zen (bench/tools/memmove_alias.c).  Fails
// with page-aligned large blocks.
TEST(KallocApi, LargeBlocksStartAtColoursInTheirSlack) {
  constexpr int kBlocks = 64;
  std::vector<char *> ps;
  std::vector<size_t> offsets;
  unsigned same_as_previous = 0;
  for (int i = 0; i < kBlocks; ++i) {
    const size_t n = 100000 + 8 * static_cast<size_t>(i);  // 25 pages: 1,896..2,400 B of slack
    char *p = static_cast<char *>(malloc(opaque(n)));
    ASSERT_NE(p, nullptr);
    const size_t off = reinterpret_cast<uintptr_t>(p) & 4095;
    const size_t usable = malloc_usable_size(p);
    EXPECT_EQ(off % 64, 0u) << "a colour is a whole number of cache lines";
    EXPECT_GE(usable, n);
    EXPECT_EQ(usable + off, 25u * 4096) << "the colour is taken from the slack, never an extra page";
    memset(p, i, usable);
    if (i && off == offsets.back()) same_as_previous++;
    offsets.push_back(off);
    ps.push_back(p);
  }
  EXPECT_LE(same_as_previous, 4u) << "blocks allocated in a row start at the same page offset";
  std::vector<size_t> distinct = offsets;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  EXPECT_GE(distinct.size(), 16u) << "large blocks are not coloured";
  for (int i = 0; i < kBlocks; ++i) {
    const size_t usable = malloc_usable_size(ps[i]);
    EXPECT_EQ(ps[i][0], static_cast<char>(i));
    EXPECT_EQ(ps[i][usable - 1], static_cast<char>(i));
  }
  // Growing in place keeps the colour and the contents; shrinking too.
  char *g = static_cast<char *>(realloc(ps[0], opaque<size_t>(101000)));
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g[100999 - 1000], 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(g) & 63, 0u);
  g = static_cast<char *>(realloc(g, opaque<size_t>(50000)));
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g[49999], 0);
  EXPECT_GE(malloc_usable_size(g), 50000u);
  ps[0] = g;
  for (char *p : ps) free(p);

  // calloc: every usable byte reads zero (these pages were just written).
  for (int i = 0; i < 8; ++i) {
    char *c = static_cast<char *>(calloc(1, opaque<size_t>(100000 + 8 * static_cast<size_t>(i))));
    ASSERT_NE(c, nullptr);
    const size_t usable = malloc_usable_size(c);
    size_t nonzero = 0;
    for (size_t k = 0; k < usable; ++k) nonzero += c[k] != 0;
    EXPECT_EQ(nonzero, 0u);
    free(c);
  }
  // No slack, no colour: a request of whole pages stays page-aligned.
  char *w = static_cast<char *>(malloc(opaque<size_t>(65536)));
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w) & 4095, 0u);
  EXPECT_EQ(malloc_usable_size(w), 65536u);
  free(w);
  // Alignment asked for is kept: a page, or a colour in multiples of it.
  for (size_t align : {128ul, 256ul, 1024ul, 4096ul}) {
    for (int i = 0; i < 8; ++i) {
      void *a = nullptr;
      ASSERT_EQ(posix_memalign(&a, align, opaque<size_t>(100000 + 8 * static_cast<size_t>(i))), 0);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % align, 0u) << align;
      EXPECT_GE(malloc_usable_size(a), 100000u);
      free(a);
    }
  }
}

TEST(KallocApi, ReallocInPlaceKeepsTheBlockUntilItMustShrink) {
  char *p = static_cast<char *>(malloc(opaque<size_t>(100)));
  ASSERT_NE(p, nullptr);
  const size_t cls = malloc_usable_size(p);
  memset(p, 'x', 100);
  EXPECT_EQ(realloc(p, opaque(cls)), p);
  EXPECT_EQ(realloc(p, opaque(cls / 2 + 1)), p);
  EXPECT_EQ(malloc_usable_size(p), cls);
  char *q = static_cast<char *>(realloc(p, opaque(cls / 2)));
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p) << "a class twice too big must move to a smaller one";
  EXPECT_LT(malloc_usable_size(q), cls);
  EXPECT_EQ(q[0], 'x');
  EXPECT_EQ(q[cls / 2 - 1], 'x');
  free(q);

  // The 16-byte class keeps any size from 1 to 16.
  p = static_cast<char *>(malloc(opaque<size_t>(16)));
  EXPECT_EQ(realloc(p, opaque<size_t>(1)), p);
  EXPECT_EQ(malloc_usable_size(p), 16u);
  free(p);

  // A large block: 10 pages less its colour (malloc/large.h), the bytes
  // before the block in its first page.
  p = static_cast<char *>(malloc(opaque<size_t>(40000)));
  ASSERT_NE(p, nullptr);
  const size_t colour = reinterpret_cast<uintptr_t>(p) & 4095;
  ASSERT_EQ(malloc_usable_size(p), 40960u - colour);
  memset(p, 'y', 40000);
  EXPECT_EQ(realloc(p, opaque<size_t>(40960 - colour)), p);
  EXPECT_EQ(realloc(p, opaque<size_t>(36865 - colour)), p);
  EXPECT_EQ(malloc_usable_size(p), 40960u - colour) << "same page count: nothing given back";
  EXPECT_EQ(realloc(p, opaque<size_t>(36864 - colour)), p);
  EXPECT_EQ(malloc_usable_size(p), 36864u - colour) << "a page fewer: its last page given back";
  EXPECT_EQ(realloc(p, opaque<size_t>(4096)), p);
  EXPECT_EQ(malloc_usable_size(p), (colour ? 8192u : 4096u) - colour);
  q = static_cast<char *>(realloc(p, opaque<size_t>(4095)));
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p) << "below 4 KiB a block takes a size class";
  EXPECT_EQ(q[0], 'y');
  EXPECT_EQ(q[4094], 'y');
  // realloc(p, 0) frees and returns nullptr, as glibc's does.
  EXPECT_EQ(realloc(q, opaque<size_t>(0)), nullptr);
}

}  // namespace

// kalloc_hardened() says which library this is; the hardened one hands out
// small objects with no trace of their free-list link (the first 16 bytes,
// link and key, read zero), whether carved fresh or reused.
// kalloc's writable static data (its PT_LOAD segments' memsz: data and BSS)
// is what every process pays under RLIMIT_DATA and locks whole under
// mlockall(MCL_CURRENT), used or not.  Tables sized for the whole address
// space or every owner id are mapped as they are used instead (the huge
// blocks' vmalloc_table at the first one, the slab-list rows of owner ids as
// they are handed out): 1,116 KB until 2026-12-07, 387 KB then.
TEST(KallocApi, StaticDataStaysSmall) {
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void *>(&kalloc_stats_get), &info), 0);
  struct Find {
    const char *name;
    size_t writable;
  } find{info.dli_fname, 0};
  dl_iterate_phdr(
      [](struct dl_phdr_info *pi, size_t, void *arg) {
        auto *f = static_cast<Find *>(arg);
        if (!pi->dlpi_name || strcmp(pi->dlpi_name, f->name) != 0) return 0;
        for (int i = 0; i < pi->dlpi_phnum; i++)
          if (pi->dlpi_phdr[i].p_type == PT_LOAD && (pi->dlpi_phdr[i].p_flags & PF_W))
            f->writable += pi->dlpi_phdr[i].p_memsz;
        return 1;
      },
      &find);
  ASSERT_GT(find.writable, 0u) << "no writable segment found for " << info.dli_fname;
  EXPECT_LT(find.writable, 512u * 1024) << info.dli_fname;
}

// Both libraries clear the free-list link (and the free key) of an object
// they hand out: the program never reads a heap address (or, hardened, an
// encoded link) in fresh memory.
TEST(KallocApi, HandsOutObjectsWithoutTheirLink) {
  const int h = kalloc_hardened();
  ASSERT_TRUE(h == 0 || h == 1) << h;
  for (size_t n : {16, 64, 256, 1000, 5000}) {
    std::vector<void *> v;
    for (int round = 0; round < 2; round++) {   // carved, then reused from the bin
      for (int i = 0; i < 300; i++) {
        void *p = kt::opaque(malloc(n));
        ASSERT_NE(p, nullptr);
        uint64_t w[2];
        memcpy(w, p, sizeof w);
        EXPECT_EQ(w[0], 0u) << n << " B, round " << round << ", object " << i;
        EXPECT_EQ(w[1], 0u) << n << " B, round " << round << ", object " << i;
        memset(p, 0xa5, 16);
        v.push_back(p);
      }
      for (void *p : v)
        free(p);
      v.clear();
    }
  }
}
