// Size classes made at run time (src/mm/slab_dynamic.h): a request size
// that dominates its fixed class and wastes at least 1/32 of the class's
// block gets a class of its own (up to 1 KiB counted at thread-cache
// refills); spread-out sizes and sizes that fit well do not.  Observed through malloc_usable_size, the class size.
// Each test runs in its own process (gtest_discover_tests), so classes made
// by one test do not leak into another.
#include <gtest/gtest.h>

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

using kt::check;
using kt::fill;
using kt::opaque;

// The fixed classes above 1 KiB (slab_common.h): 8 per doubling, those up
// to 8 KiB widened to fill their slabs (1280 -> 1344: 3 in a page either
// way), written out here as the specification.
size_t fixed_class(size_t n) {
  static const size_t upto8k[] = {1152, 1344, 1472, 1600, 1664, 1792, 1920, 2048,
                                  2304, 2688, 2944, 3264, 3392, 3584, 3840, 4096,
                                  4672, 5440, 5632, 6528, 6656, 7168, 7680, 8192};
  for (size_t c : upto8k)
    if (n <= c) return c;
  size_t base = 8192;
  while (base * 2 < n) base *= 2;
  size_t step = base / 8;
  return (n + step - 1) / step * step;
}

// The tests that expect classes to be made skip when the option is set in the
// environment (a whole-suite run with KALLOC_DYNAMIC_CLASSES=0 exported).
#define SKIP_IF_DYNAMIC_CLASSES_SET()                                              \
  do {                                                                             \
    if (getenv("KALLOC_DYNAMIC_CLASSES"))                                          \
      GTEST_SKIP() << "KALLOC_DYNAMIC_CLASSES is set in the environment";          \
  } while (0)

TEST(DynamicClass, AHotSizeGetsAnExactClass) {
  SKIP_IF_DYNAMIC_CLASSES_SET();
  const size_t n = 4368;  // sqlite's page-cache entry: a 4 KiB page and its header
  void *first = malloc(opaque(n));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(malloc_usable_size(first), fixed_class(n));  // 4672 before learning
  std::vector<void *> v;
  for (unsigned i = 0; i < 3000; i++) {
    void *p = malloc(opaque(n));
    ASSERT_NE(p, nullptr);
    ASSERT_EQ((uintptr_t)p % 16, 0u);
    fill(p, n, i);
    v.push_back(p);
  }
  EXPECT_EQ(malloc_usable_size(v.back()), n);
  EXPECT_EQ(malloc_usable_size(first), fixed_class(n)) << "a block keeps its class";
  // A class made for a hot size takes a slab that wastes at most 1/64
  // (slab_common.h, choose_order's dense rule): 15 objects in 64 KiB, where
  // the fixed classes' rule (1/8 from 4 KiB) would take 7 in 32 KiB.
  {
    FILE *f = tmpfile();
    ASSERT_NE(f, nullptr);
    kalloc_stats_print_fd(fileno(f));
    rewind(f);
    char line[512];
    unsigned objs = 0, pages = 0;
    while (fgets(line, sizeof line, f)) {
      char name[64];
      unsigned long a, c, b, num, size;
      if (sscanf(line, " %63s %lu %lu %lu %lu %lu %u %u", name, &a, &c, &b, &num, &size, &objs, &pages) == 8 &&
          strcmp(name, "kmalloc-4368") == 0)
        break;
      objs = pages = 0;
    }
    fclose(f);
    EXPECT_EQ(objs, 15u) << "objects per slab of the 4368 B class";
    EXPECT_EQ(pages, 16u) << "pages per slab of the 4368 B class";
  }
  // Requests that round to the same 16 bytes, and a little smaller ones that
  // the new class fits better than the fixed one, use it too.
  void *a = malloc(opaque(n - 5)), *b = malloc(opaque(n - 100));
  EXPECT_EQ(malloc_usable_size(a), n);
  EXPECT_EQ(malloc_usable_size(b), n);
  // Sizes just above it keep the fixed class.
  void *c = malloc(opaque(n + 1));
  EXPECT_EQ(malloc_usable_size(c), fixed_class(n + 1));
  for (unsigned i = 0; i < v.size(); i++) ASSERT_EQ(check(v[i], n, i), n) << i;
  // Every block of the new class is distinct and freeing them all works.
  std::sort(v.begin(), v.end());
  for (size_t i = 1; i < v.size(); i++) ASSERT_GE((char *)v[i] - (char *)v[i - 1], (ptrdiff_t)n);
  for (void *p : v) free(p);
  free(a);
  free(b);
  free(c);
  free(first);
  // Reused after the frees, still exact, and realloc within it stays.
  void *d = malloc(opaque(n));
  EXPECT_EQ(malloc_usable_size(d), n);
  fill(d, n, 7);
  void *e = realloc(d, opaque(n + 4000));
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(check(e, n, 7), n);
  free(e);
}

// With another thread alive the process is multi-threaded, and requests
// above 1 KiB vote one in 16 with a weight of 16 (slab_dynamic.h): a hot
// size must still get its class, about as soon (1,024 votes' worth: 3,000
// requests leave a margin of some 120 sampled votes against the 64 needed).
TEST(DynamicClass, AHotSizeGetsAnExactClassWithThreads) {
  SKIP_IF_DYNAMIC_CLASSES_SET();
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread other([&] {
    std::unique_lock<std::mutex> lk(m);
    cv.wait(lk, [&] { return done; });
  });
  const size_t n = 4368;
  std::vector<void *> v;
  unsigned made_at = 0;
  for (unsigned i = 0; i < 3000; i++) {
    void *p = malloc(opaque(n));
    ASSERT_NE(p, nullptr);
    fill(p, n, i);
    v.push_back(p);
    if (!made_at && malloc_usable_size(p) == n) made_at = i + 1;
  }
  {
    std::lock_guard<std::mutex> lk(m);
    done = true;
  }
  cv.notify_all();
  other.join();
  std::printf("class made at request %u\n", made_at);
  EXPECT_NE(made_at, 0u) << "no class after 3,000 requests";
  EXPECT_EQ(malloc_usable_size(v.back()), n);
  for (unsigned i = 0; i < v.size(); i++) ASSERT_EQ(check(v[i], n, i), n) << i;
  for (void *p : v) free(p);
}

TEST(DynamicClass, ASizeThatFitsItsClassGetsNone) {
  const size_t n = 5328;  // class 5440: 2.1% wasted, under 1/32
  std::vector<void *> v;
  for (unsigned i = 0; i < 3000; i++) v.push_back(malloc(opaque(n)));
  EXPECT_EQ(malloc_usable_size(v.back()), fixed_class(n));
  for (void *p : v) free(p);
}

TEST(DynamicClass, SpreadSizesGetNone) {
  std::mt19937_64 rng(42);
  std::vector<void *> live(256, nullptr);
  for (unsigned i = 0; i < 200000; i++) {
    size_t n = 1025 + rng() % (32768 - 1024);
    unsigned k = (unsigned)(rng() % live.size());
    free(live[k]);
    live[k] = malloc(opaque(n));
    ASSERT_NE(live[k], nullptr);
    ASSERT_EQ(malloc_usable_size(live[k]), fixed_class(n)) << n << " at request " << i;
  }
  for (void *p : live) free(p);
}

TEST(DynamicClass, ASmallHotSizeGetsAnExactClass) {
  SKIP_IF_DYNAMIC_CLASSES_SET();
  // redis's values of redis-benchmark -d 200: 277,551 live blocks of 193..208
  // bytes at its peak, in 224-byte blocks.  Up to 1 KiB only thread-cache
  // refills vote (56 of a window of 64 make the class, once the live
  // objects save 32 KiB: about 2,100 requests here).
  const size_t n = 200;
  void *first = malloc(opaque(n));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(malloc_usable_size(first), 224u);  // fixed_small_class(200)
  std::vector<void *> v;
  for (unsigned i = 0; i < 300000 && malloc_usable_size(v.empty() ? first : v.back()) != 208; i++) {
    void *p = malloc(opaque(n));
    ASSERT_NE(p, nullptr);
    ASSERT_EQ((uintptr_t)p % 16, 0u);
    fill(p, n, i);
    v.push_back(p);
  }
  ASSERT_EQ(malloc_usable_size(v.back()), 208u) << "no class after " << v.size() << " requests";
  EXPECT_EQ(malloc_usable_size(first), 224u) << "a block keeps its class";
  // The fast path serves it now: the same 16 bytes and the smaller sizes the
  // new class fits better (193..208); 209..224 keep the fixed class; 192 is
  // the fixed class 192.
  void *a = malloc(opaque(193)), *b = malloc(opaque(208)), *c = malloc(opaque(209));
  void *d = malloc(opaque(192));
  EXPECT_EQ(malloc_usable_size(a), 208u);
  EXPECT_EQ(malloc_usable_size(b), 208u);
  EXPECT_EQ(malloc_usable_size(c), 224u);
  EXPECT_EQ(malloc_usable_size(d), 192u);
  std::vector<void *> w;
  for (unsigned i = 0; i < 5000; i++) {
    void *p = malloc(opaque(n));
    ASSERT_EQ(malloc_usable_size(p), 208u) << i;
    fill(p, n, ~i);
    w.push_back(p);
  }
  for (unsigned i = 0; i < v.size(); i++) ASSERT_EQ(check(v[i], n, i), n) << i;
  for (unsigned i = 0; i < w.size(); i++) ASSERT_EQ(check(w[i], n, ~i), n) << i;
  std::sort(w.begin(), w.end());
  for (size_t i = 1; i < w.size(); i++) ASSERT_GE((char *)w[i] - (char *)w[i - 1], 208) << i;
  for (void *p : v) free(p);
  for (void *p : w) free(p);
  free(a);
  free(b);
  free(c);
  free(d);
  free(first);
  // Freed and reused from the thread cache: still exact.
  for (unsigned i = 0; i < 1000; i++) {
    void *p = malloc(opaque(n));
    ASSERT_EQ(malloc_usable_size(p), 208u) << i;
    free(p);
  }
}

TEST(DynamicClass, ASmallHotSizeWithFewLiveBlocksGetsNone) {
  // containers' strings of 193..201 bytes: every refill of class 224 is for
  // them, but only ~344 are live at its peak (5.5 KiB to save): not worth a
  // slot.  Rounds of 344 allocations then 344 frees run the bin dry and
  // over, so refills (the votes) keep coming.
  const size_t n = 200;
  std::vector<void *> v(344);
  for (unsigned r = 0; r < 3000; r++) {
    for (unsigned i = 0; i < v.size(); i++) {
      v[i] = malloc(opaque(n));
      ASSERT_NE(v[i], nullptr);
      fill(v[i], n, r + i);
    }
    ASSERT_EQ(malloc_usable_size(v.back()), 224u) << "a class made at round " << r;
    for (unsigned i = 0; i < v.size(); i++) ASSERT_EQ(check(v[i], n, r + i), n);
    for (void *p : v) free(p);
  }
}

TEST(DynamicClass, SmallSizesThatShareAClassEvenlyGetNone) {
  // 129..160 in equal parts, all kept (the bins run dry: refills vote): half
  // the refills of class 160 are for 144 bytes (10% wasted), half for 160
  // (none).  The sizes that fit vote against, so no class is made (python's
  // objects: 144 and 160 about as often).
  std::mt19937_64 rng(7);
  std::vector<void *> v;
  for (unsigned i = 0; i < 400000; i++) {
    size_t n = 129 + rng() % 32;
    void *p = malloc(opaque(n));
    ASSERT_NE(p, nullptr);
    v.push_back(p);
    ASSERT_EQ(malloc_usable_size(p), 160u) << n << " at request " << i;
  }
  for (void *p : v) free(p);
}

TEST(DynamicClass, SlotsAreBoundedAndEveryBlockStaysValid) {
  SKIP_IF_DYNAMIC_CLASSES_SET();
  // Twelve hot sizes, each wasting a lot in its fixed class; only eight
  // slots exist, so some keep their fixed class; all blocks stay usable.
  std::vector<size_t> sizes;
  for (unsigned k = 0; k < 12; k++) sizes.push_back(2064 + 1024 * k);  // base + 16: most waste
  std::vector<std::pair<void *, size_t>> blocks;
  unsigned exact = 0;
  for (size_t n : sizes) {
    void *p = nullptr;
    for (unsigned i = 0; i < 2000; i++) {
      p = malloc(opaque(n));
      ASSERT_NE(p, nullptr);
      fill(p, n, (uint32_t)(n + i));
      blocks.push_back({p, n + i});
    }
    size_t u = malloc_usable_size(p);
    ASSERT_TRUE(u == n || u == fixed_class(n)) << n << " -> " << u;
    exact += u == n;
  }
  EXPECT_EQ(exact, 8u);
  for (size_t i = 0; i < blocks.size(); i++) {
    size_t n = sizes[i / 2000];
    ASSERT_EQ(check(blocks[i].first, n, (uint32_t)blocks[i].second), n) << i;
    free(blocks[i].first);
  }
}

// Stride classes (slab_dynamic.h): a single-page class whose objects are
// built to last and are at least half of the slab bytes in use gets, at its
// first MiB, a class of the same size in 16-page slabs, so objects handed
// out one after another keep one stride across pages (tidy's document tree).

// Stride classes are not made under KALLOC_MESH (meshing merges single pages).
#define SKIP_IF_STRIDE_CLASSES_OFF()                                               \
  do {                                                                             \
    SKIP_IF_DYNAMIC_CLASSES_SET();                                                 \
    const char *mesh = getenv("KALLOC_MESH");                                      \
    if (mesh && *mesh && strcmp(mesh, "0") != 0)                                   \
      GTEST_SKIP() << "KALLOC_MESH is set: no stride classes";                     \
  } while (0)

// Pages per slab of the classes named kmalloc-<size> in the statistics
// (the fixed class and any made at run time), largest first.
std::vector<unsigned> slab_pages_of(size_t size) {
  std::vector<unsigned> out;
  FILE *f = tmpfile();
  if (!f) return out;
  kalloc_stats_print_fd(fileno(f));
  rewind(f);
  char line[512], want[64];
  snprintf(want, sizeof want, "kmalloc-%zu", size);
  while (fgets(line, sizeof line, f)) {
    char name[64];
    unsigned long a, c, b, num, sz;
    unsigned objs, pages;
    if (sscanf(line, " %63s %lu %lu %lu %lu %lu %u %u", name, &a, &c, &b, &num, &sz, &objs, &pages) == 8 &&
        strcmp(name, want) == 0)
      out.push_back(pages);
  }
  fclose(f);
  std::sort(out.rbegin(), out.rend());
  return out;
}

// Of the objects handed out one after another, the share whose successor
// 26 places on lies 26 objects further (tidy walks one node in 26).
double share_at_one_stride(const std::vector<void *> &v, size_t from, size_t size) {
  size_t same = 0, all = 0;
  for (size_t i = from; i + 26 < v.size(); i++, all++)
    same += (char *)v[i + 26] - (char *)v[i] == (ptrdiff_t)(26 * size);
  return all ? (double)same / (double)all : 0;
}

TEST(StrideClass, ALongLivedPopulationKeepsOneStrideAcrossPages) {
  SKIP_IF_STRIDE_CLASSES_OFF();
  // 104-byte nodes (class 112: 36 to a page, 64 bytes left), kept: 4.2 MB.
  const size_t n = 104;
  std::vector<void *> v;
  v.reserve(40000);
  for (unsigned i = 0; i < 40000; i++) {
    void *p = malloc(opaque(n));
    ASSERT_NE(p, nullptr);
    fill(p, n, i);
    v.push_back(p);
  }
  // In single-page slabs a step of 26 objects crosses a page boundary 26
  // times in 36 (the stride changes there); in 16-page slabs once in 22.
  EXPECT_GE(share_at_one_stride(v, 20000, 112), 0.9);
  std::vector<unsigned> pages = slab_pages_of(112);
  ASSERT_EQ(pages.size(), 2u) << "the fixed class and its stride class";
  EXPECT_EQ(pages[0], 16u);
  EXPECT_EQ(pages[1], 1u);
  EXPECT_EQ(malloc_usable_size(v.back()), 112u);
  for (unsigned i = 0; i < v.size(); i++) ASSERT_EQ(check(v[i], n, i), n) << i;
  // Freed in a random order and allocated again: every block stays valid.
  std::mt19937_64 rng(7);
  std::shuffle(v.begin(), v.end(), rng);
  for (size_t i = 0; i < v.size() / 2; i++) free(v[i]);
  for (size_t i = 0; i < v.size() / 2; i++) {
    v[i] = malloc(opaque(n));
    ASSERT_NE(v[i], nullptr);
    fill(v[i], n, (uint32_t)i);
  }
  for (size_t i = 0; i < v.size() / 2; i++) ASSERT_EQ(check(v[i], n, (uint32_t)i), n) << i;
  for (void *p : v) free(p);
}

// The frees punch no holes in a stride slab (slab_dynamic.h): its pages
// whose objects are all freed go back at malloc_trim (and the timed pass).
TEST(StrideClass, TheFreePagesOfAStrideSlabGoBackAtTrim) {
  SKIP_IF_STRIDE_CLASSES_OFF();
  const size_t n = 104;
  std::vector<void *> v;
  for (unsigned i = 0; i < 40000; i++) {
    void *p = malloc(opaque(n));
    ASSERT_NE(p, nullptr);
    fill(p, n, i);
    v.push_back(p);
  }
  ASSERT_EQ(slab_pages_of(112).at(0), 16u);
  // Keep the objects that touch a page whose number is a multiple of 4.
  auto kept = [](void *p) {
    uintptr_t first = (uintptr_t)p >> 12, last = ((uintptr_t)p + 111) >> 12;
    return first % 4 == 0 || last % 4 == 0;
  };
  std::vector<size_t> keep;
  std::vector<uintptr_t> freed_pages;
  for (size_t i = 20000; i < v.size(); i++) {   // the stride class's objects
    if (kept(v[i])) {
      keep.push_back(i);
      continue;
    }
    uintptr_t pg = (uintptr_t)v[i] >> 12;
    if (freed_pages.empty() || freed_pages.back() != pg) freed_pages.push_back(pg);
    free(v[i]);
  }
  malloc_trim(0);
  size_t resident = 0, counted = 0;
  for (uintptr_t pg : freed_pages) {
    unsigned char vec = 0;
    if (pg % 4 == 0 || (pg + 1) % 4 == 0 || (pg - 1) % 4 == 0) continue;  // may hold a kept object's end
    ASSERT_EQ(mincore((void *)(pg << 12), 4096, &vec), 0);
    counted++;
    resident += vec & 1;
  }
  ASSERT_GT(counted, 100u);
  EXPECT_LE(resident * 10, counted) << resident << " of " << counted << " free pages still resident";
  for (size_t i : keep) ASSERT_EQ(check(v[i], n, (uint32_t)i), n) << i;
  for (size_t i = 0; i < 20000; i++) free(v[i]);
  for (size_t i : keep) free(v[i]);
}

TEST(StrideClass, APopulationWhoseObjectsComeBackGetsNone) {
  // Rounds of 1,000 allocated and 700 of the live ones freed: most of what
  // the slabs hand out comes back to them (more than a thread cache holds),
  // while the population grows past its first MiB.  (What the thread cache
  // serves again never reaches the slabs: a population that grows through
  // frees the cache absorbs looks built to last there.)
  const size_t n = 104;
  std::mt19937_64 rng(3);
  std::vector<void *> v;
  for (unsigned round = 0; round < 80; round++) {
    for (unsigned i = 0; i < 1000; i++) {
      void *p = malloc(opaque(n));
      ASSERT_NE(p, nullptr);
      v.push_back(p);
    }
    for (unsigned i = 0; i < 700; i++) {
      size_t k = rng() % v.size();
      free(v[k]);
      v[k] = v.back();
      v.pop_back();
    }
  }
  ASSERT_GE(v.size() * 112, (size_t)2 << 20) << "the population passed its first MiB";
  EXPECT_EQ(slab_pages_of(112), std::vector<unsigned>{1u});
  for (void *p : v) free(p);
}

// PHP's arrays, in whole class sizes (no run-time class): per element a
// key string, a header, the elements (class 160), the value's string and a
// small object; class 160 is 45% of the bytes (until session 48 a class
// needed half), class 64 18%.
TEST(StrideClass, AThirdOfTheHeapInOneClassGetsAStride) {
  SKIP_IF_STRIDE_CLASSES_OFF();
  std::vector<void *> v;
  for (unsigned i = 0; i < 20000; i++)
    for (size_t n : {48, 64, 160, 48, 32}) {
      void *p = malloc(opaque(n));
      ASSERT_NE(p, nullptr);
      v.push_back(p);
    }
  std::vector<unsigned> pages = slab_pages_of(160);
  ASSERT_EQ(pages.size(), 2u) << "the fixed class and its stride class";
  EXPECT_EQ(pages[0], 16u);
  EXPECT_EQ(slab_pages_of(64), std::vector<unsigned>{1u}) << "a fifth of the bytes: no stride";
  for (void *p : v) free(p);
}

TEST(StrideClass, AClassThatIsNotMostOfTheHeapGetsNone) {
  // Three classes of about a sixth, a third and a half of the bytes: the
  // sixth keeps its single pages.
  std::vector<void *> v;
  for (unsigned i = 0; i < 20000; i++)
    for (size_t n : {104, 200, 312}) {
      void *p = malloc(opaque(n));
      ASSERT_NE(p, nullptr);
      v.push_back(p);
    }
  EXPECT_EQ(slab_pages_of(112), std::vector<unsigned>{1u});
  for (void *p : v) free(p);
}

TEST(DynamicClass, AForkedChildKeepsAndCanMakeClasses) {
  SKIP_IF_DYNAMIC_CLASSES_SET();
  std::vector<void *> v;
  for (unsigned i = 0; i < 2000; i++) v.push_back(malloc(opaque(4368)));
  ASSERT_EQ(malloc_usable_size(v.back()), 4368u);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = malloc_usable_size(malloc(4368)) != 4368;
    void *p = nullptr;
    for (unsigned i = 0; i < 2000; i++) p = malloc(2064);
    bad |= (malloc_usable_size(p) != 2064) << 1;
    for (void *q : v) free(q);
    _exit(bad);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  for (void *q : v) free(q);
}

// Run by DynamicClassEnv.* below with KALLOC_DYNAMIC_CLASSES=0 in a fresh process.
TEST(DynamicClassEnvChild, OffKeepsTheFixedClasses) {
  if (!getenv("KALLOC_DYNAMIC_CLASS_TEST_CHILD"))
    GTEST_SKIP() << "only run by DynamicClassEnv.OptionSwitchesItOff, in a fresh process";
  std::vector<void *> v;
  for (unsigned i = 0; i < 3000; i++) v.push_back(malloc(opaque(4368)));
  EXPECT_EQ(malloc_usable_size(v.back()), fixed_class(4368));
  for (void *p : v) free(p);
}

TEST(DynamicClassEnv, OptionSwitchesItOff) {
  EXPECT_EQ(kt::run_self("DynamicClassEnvChild.*",
                         {{"KALLOC_DYNAMIC_CLASSES", "0"}, {"KALLOC_DYNAMIC_CLASS_TEST_CHILD", "1"}}),
            0);
}

// Run by SecureEnv.ASetGroupIdProgramKeepsTheDefaults in a set-group-ID
// copy of this binary (AT_SECURE) with KALLOC_DYNAMIC_CLASSES=0: the option
// must be ignored, as glibc ignores MALLOC_* there, so the hot size still
// gets its class.  Exit status 77: the kernel did not set AT_SECURE.
TEST(SecureEnvChild, OptionsAreIgnored) {
  if (!getenv("KALLOC_SECURE_TEST_CHILD"))
    GTEST_SKIP() << "only run by SecureEnv.ASetGroupIdProgramKeepsTheDefaults";
  if (!getauxval(AT_SECURE)) _exit(77);
  std::vector<void *> v;
  for (unsigned i = 0; i < 3000; i++) v.push_back(malloc(opaque(4368)));
  size_t usable = malloc_usable_size(v.back());
  EXPECT_GE(usable, 4368u);
  EXPECT_NE(usable, fixed_class(4368)) << "KALLOC_DYNAMIC_CLASSES=0 was obeyed";
  for (void *p : v) free(p);
}

// A set-user-ID or set-group-ID program keeps every default: the options of
// whoever runs it would otherwise steer a privileged process (print its heap
// statistics, take the hugetlb pool, create memory files).  The test copies
// this binary, makes the copy set-group-ID "nogroup" (root runs it with
// another effective group: AT_SECURE) and runs its child test.
TEST(SecureEnv, ASetGroupIdProgramKeepsTheDefaults) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (to make a set-group-ID copy)";
  struct group *g = getgrnam("nogroup");
  if (!g) GTEST_SKIP() << "no group nogroup";
  char dir[] = "/tmp/kalloc-secure.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string copy = std::string(dir) + "/self";
  {
    int in = open("/proc/self/exe", O_RDONLY), out = open(copy.c_str(), O_WRONLY | O_CREAT, 0755);
    ASSERT_GE(in, 0);
    ASSERT_GE(out, 0);
    char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) ASSERT_EQ(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
  }
  ASSERT_EQ(chown(copy.c_str(), 0, g->gr_gid), 0);
  ASSERT_EQ(chmod(copy.c_str(), 02755), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("KALLOC_DYNAMIC_CLASSES", "0", 1);
    setenv("KALLOC_SECURE_TEST_CHILD", "1", 1);
    execl(copy.c_str(), "kt_secure_child", "--gtest_filter=SecureEnvChild.*", (char *)nullptr);
    _exit(127);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  unlink(copy.c_str());
  rmdir(dir);
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) GTEST_SKIP() << dir << " is mounted nosuid: no AT_SECURE";
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

}  // namespace
