// Invalid and double frees must abort with one line naming the call and the
// pointer ("kalloc: free(): invalid pointer 0x...", "kalloc: free(): double
// free detected 0x...", "kalloc: realloc(): invalid pointer 0x...").
// kalloc-specific: glibc's messages carry no pointer, and glibc does not
// detect every case below.
#include <gtest/gtest.h>

#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

using kt::opaque;

constexpr const char *kFreeMsg = "free\\(\\).*0x[0-9a-fA-F]+";
constexpr const char *kReallocMsg = "realloc\\(\\).*0x[0-9a-fA-F]+";

char g_global_array[8192] __attribute__((aligned(64)));

class Death : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Free through an opaque pointer so the compiler cannot see (and warn about,
// or drop) the bad free.
void Free(void *p) { free(opaque(p)); }

TEST_F(Death, FreeStackPointer) {
  EXPECT_DEATH(
      {
        alignas(16) char buf[256];
        kt::escape(buf);
        Free(buf);
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        alignas(64) char buf[8192];
        kt::escape(buf);
        Free(buf + 4096);
      },
      kFreeMsg);
}

TEST_F(Death, FreeGlobalPointer) {
  EXPECT_DEATH(Free(g_global_array), kFreeMsg);
  EXPECT_DEATH(Free(g_global_array + 4096), kFreeMsg);
}

TEST_F(Death, FreeInteriorPointerSmall) {
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(64)));
        Free(p + 16);
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(64)));
        Free(p + 8);
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(1000)));
        Free(p + 512);
      },
      kFreeMsg);
}

TEST_F(Death, FreeInteriorPointerLarge) {
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(1 << 20)));
        Free(p + 4096 + 16);
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(1 << 20)));
        Free(p + 4096);  // page aligned, but still inside the block
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(16 << 20)));
        Free(p + (1 << 20));
      },
      kFreeMsg);
}

TEST_F(Death, DoubleFreeSmall) {
  EXPECT_DEATH(
      {
        void *p = malloc(opaque<size_t>(32));
        Free(p);
        Free(p);
      },
      kFreeMsg);
}

// free(a); free(b); free(a): glibc's tcache catches this too.
TEST_F(Death, DoubleFreeSmallWithOtherFreeInBetween) {
  EXPECT_DEATH(
      {
        void *a = malloc(opaque<size_t>(32));
        void *b = malloc(opaque<size_t>(32));
        Free(a);
        Free(b);
        Free(a);
      },
      kFreeMsg);
}

// An object of n bytes whose neighbour in its slab (p + its usable size)
// was never handed out: taken after 1 MiB of objects of its class, so the
// class's older slabs (what gtest holds) are full and objects come from a
// fresh slab in address order, and placed so that the neighbour is in the
// same slab: both on one page below 4 KiB; at a multiple of twice the size
// (rounded to a power of two) above, as slabs are aligned to their size and
// hold at least two objects.
char *ObjectBeforeOneNeverHandedOut(size_t n) {
  size_t usable = malloc_usable_size(opaque(malloc(opaque(n))));
  size_t align = usable < 4096 ? 4096 : std::bit_ceil(2 * usable);
  for (size_t taken = 0;; taken += usable) {
    char *p = static_cast<char *>(malloc(opaque(n)));
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    bool placed = usable < 4096 ? a / 4096 == (a + usable) / 4096 : a % align == 0;
    if (taken >= (1u << 20) && placed) return p;
  }
}

// free(p + size): the next object of p's slab, never handed out (the
// mimalloc-bench security test invalid_free_close).  It was taken for a
// free object, pushed on the thread cache, and handed out twice; in the
// smaller classes the push made the bin's list loop on itself, so every
// later malloc returned it.  glibc reports it too ("free(): invalid
// pointer").
TEST_F(Death, FreeOfAnObjectNeverHandedOut) {
  for (size_t n : {16, 48, 256, 1024, 2048, 4096, 8192, 16384, 32768}) {
    SCOPED_TRACE(n);
    EXPECT_DEATH(
        {
          char *p = ObjectBeforeOneNeverHandedOut(n);
          Free(p + malloc_usable_size(p));
        },
        kFreeMsg);
  }
}

// A double free of an object whose page was given back while its slab holds
// other objects (a slab hole, docs/architecture.md): the page reads zero, so
// the object no longer carries the free-object key; the zone's class map
// sends frees there to the slow path, which finds it parked.  8000-byte
// objects (two pages each, two in a 16 KiB slab): one of each slab freed,
// the other kept, then malloc_trim(0) punches the holes (KALLOC_THP=1: no
// hugepage kept whole, see slab_holes_test.cc), and one freed object is
// freed again.  first_page: the freed ones are the slabs' first objects,
// whose page keeps naming the cache with the hole bit (SLAB_CLASS_HOLE).
void DoubleFreeInASlabHole(bool first_page) {
  setenv("KALLOC_THP", "1", 1);
  EXPECT_DEATH(
      {
        std::vector<char *> freed;
        for (int i = 0; i < 512; i++) {
          char *p = static_cast<char *>(malloc(opaque<size_t>(8000)));
          memset(p, 1, 8000);
          if ((reinterpret_cast<uintptr_t>(p) % 16384 == 0) == first_page) freed.push_back(p);
        }
        for (char *p : freed) Free(p);
        malloc_trim(0);
        Free(freed[freed.size() / 2]);
      },
      kFreeMsg);
  unsetenv("KALLOC_THP");
}

TEST_F(Death, DoubleFreeOfAnObjectInASlabHole) { DoubleFreeInASlabHole(false); }
TEST_F(Death, DoubleFreeOfAnObjectInAHoleOnASlabsFirstPage) { DoubleFreeInASlabHole(true); }

// A write into a freed object's first word (its link to the next free
// object) is caught by the next malloc that would follow the link, in the
// hardened library; libkalloc.so does not encode its links (skipped there).
void *MallocOpaque(size_t n) { return opaque(malloc(n)); }

TEST_F(Death, WriteAfterFreeIsCaughtWhenHardened) {
  if (!kalloc_hardened())
    GTEST_SKIP() << "libkalloc.so stores free-list links as they are (libkalloc-hardened.so runs this)";
  const char *msg = "malloc\\(\\): corrupted free list: free object 0x[0-9a-fA-F]+";
  for (size_t n : {16, 64, 200, 1024, 4000, 30000}) {
    SCOPED_TRACE(n);
    // Zero, an aligned pointer, or a fill pattern over the link.
    EXPECT_DEATH(
        {
          void *keep = MallocOpaque(n);
          void *p = MallocOpaque(n);
          Free(p);
          memset(opaque(p), 0, 16);
          void *a = MallocOpaque(n);
          void *b = MallocOpaque(n);
          Free(a);
          Free(b);
          Free(keep);
        },
        msg);
    EXPECT_DEATH(
        {
          alignas(16) static char target[64];
          void *p = MallocOpaque(n);
          Free(p);
          *(void **)opaque(p) = target;
          void *a = MallocOpaque(n);
          void *b = MallocOpaque(n);
          Free(a);
          Free(b);
        },
        msg);
    EXPECT_DEATH(
        {
          void *p = MallocOpaque(n);
          Free(p);
          memset(opaque(p), 'A', 16);
          void *a = MallocOpaque(n);
          void *b = MallocOpaque(n);
          Free(a);
          Free(b);
        },
        msg);
  }
}

// Objects that went back to their slabs: the write is found when the slab
// hands the object's link out again (the refill's walk or the bin's pop).
TEST_F(Death, WriteAfterFreeOfASlabObjectIsCaughtWhenHardened) {
  if (!kalloc_hardened())
    GTEST_SKIP() << "libkalloc.so stores free-list links as they are (libkalloc-hardened.so runs this)";
  EXPECT_DEATH(
      {
        std::vector<void *> v;
        for (int i = 0; i < 4000; i++)
          v.push_back(MallocOpaque(48));
        for (int i = 0; i < 4000; i += 2)   // the odd ones keep the slabs in use
          Free(v[i]);
        kalloc_thread_flush();      // every cached object back to its slab
        memset(opaque(v[1234]), 0x5a, 8);
        for (int i = 0; i < 4000; i += 2)
          v[i] = MallocOpaque(48);
        for (void *p : v)
          Free(p);
      },
      "malloc\\(\\): corrupted free list: free object 0x[0-9a-fA-F]+");
}

// A large block starts at its colour (malloc/large.h): the start of its
// first page, or a cache line past its start, is not a block.
TEST_F(Death, FreeOfALargeBlocksPageStartOrColourMissed) {
  auto coloured = [] {
    for (int i = 0; i < 64; ++i) {
      char *p = static_cast<char *>(malloc(opaque<size_t>(100000 + 8 * static_cast<size_t>(i))));
      if (reinterpret_cast<uintptr_t>(p) & 4095) return p;
    }
    return static_cast<char *>(nullptr);
  };
  char *probe = coloured();
  ASSERT_NE(probe, nullptr) << "no large block with a colour in 64";
  EXPECT_DEATH(
      {
        char *p = coloured();
        Free(reinterpret_cast<void *>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095}));
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        char *p = coloured();
        Free(p + 64);
      },
      kFreeMsg);
  free(probe);
}

TEST_F(Death, DoubleFreeLarge) {
  EXPECT_DEATH(
      {
        void *p = malloc(opaque<size_t>(1 << 20));
        Free(p);
        Free(p);
      },
      kFreeMsg);
}

TEST_F(Death, DoubleFreeHuge) {
  EXPECT_DEATH(
      {
        void *p = malloc(opaque<size_t>(16 << 20));
        Free(p);
        Free(p);
      },
      kFreeMsg);
}

TEST_F(Death, FreeMmapPointer) {
  EXPECT_DEATH(
      {
        void *m = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        Free(static_cast<char *>(m) + 4096);
      },
      kFreeMsg);
}

TEST_F(Death, DoubleFreeAligned) {
  EXPECT_DEATH(
      {
        void *p = memalign(opaque<size_t>(4096), opaque<size_t>(100));
        Free(p);
        Free(p);
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        void *p = memalign(opaque<size_t>(1 << 21), opaque<size_t>(3 << 20));
        Free(p);
        Free(p);
      },
      kFreeMsg);
}

TEST_F(Death, ReallocInvalidPointer) {
  EXPECT_DEATH(
      {
        alignas(16) char buf[128];
        kt::escape(buf);
        void *r = realloc(opaque<void *>(buf), opaque<size_t>(256));
        kt::escape(r);
      },
      kReallocMsg);
  EXPECT_DEATH(
      {
        void *r = realloc(opaque<void *>(g_global_array), opaque<size_t>(10));
        kt::escape(r);
      },
      kReallocMsg);
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(64)));
        void *r = realloc(opaque<void *>(p + 16), opaque<size_t>(100));
        kt::escape(r);
      },
      kReallocMsg);
}

// realloc's and malloc_usable_size's in-place fast paths (malloc.h
// kusable_fast) accept only an object's start or a large block's head page:
// a page-aligned pointer inside a large block, or into a freed one, is
// reported, not resized or measured.
TEST_F(Death, ReallocInsideOrAfterALargeBlock) {
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(64 << 10)));
        void *r = realloc(opaque<void *>(p + 4096), opaque<size_t>(8000));
        kt::escape(r);
      },
      kReallocMsg);
  EXPECT_DEATH(
      {
        void *p = malloc(opaque<size_t>(64 << 10));
        Free(p);
        void *r = realloc(opaque(p), opaque<size_t>(65000));
        kt::escape(r);
      },
      kReallocMsg);
}

TEST_F(Death, UsableSizeOfABadPointer) {
  constexpr const char *kUsableMsg = "malloc_usable_size\\(\\).*0x[0-9a-fA-F]+";
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(64)));
        kt::escape(reinterpret_cast<void *>(malloc_usable_size(opaque<void *>(p + 16))));
      },
      kUsableMsg);
  EXPECT_DEATH(
      {
        char *p = static_cast<char *>(malloc(opaque<size_t>(64 << 10)));
        kt::escape(reinterpret_cast<void *>(malloc_usable_size(opaque<void *>(p + 8192))));
      },
      kUsableMsg);
  EXPECT_DEATH(
      {
        void *p = malloc(opaque<size_t>(64 << 10));
        Free(p);
        kt::escape(reinterpret_cast<void *>(malloc_usable_size(opaque(p))));
      },
      kUsableMsg);
}

TEST_F(Death, ReallocAfterFree) {
  EXPECT_DEATH(
      {
        void *p = malloc(opaque<size_t>(48));
        Free(p);
        void *r = realloc(opaque(p), opaque<size_t>(4000));
        kt::escape(r);
      },
      "realloc\\(\\).*0x[0-9a-fA-F]+|free\\(\\).*0x[0-9a-fA-F]+");
}

TEST_F(Death, KallocFreeInvalidPointer) {
  EXPECT_DEATH(
      {
        alignas(16) char buf[64];
        kt::escape(buf);
        kalloc_free(opaque<void *>(buf));
      },
      kFreeMsg);
  EXPECT_DEATH(
      {
        void *p = kalloc_malloc(opaque<size_t>(32));
        kalloc_free(opaque(p));
        kalloc_free(opaque(p));
      },
      kFreeMsg);
}

// The message is printed once and names the right pointer: check the exact
// address in the fast (fork-only) style, where the child shares our layout.
TEST(DeathExactPointer, MessageNamesTheFreedPointer) {
  GTEST_FLAG_SET(death_test_style, "fast");
  char buf[64];
  snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(
                                       reinterpret_cast<uintptr_t>(g_global_array + 32)));
  std::string re = std::string("free\\(\\).*0x0*") + buf;
  EXPECT_DEATH(Free(g_global_array + 32), re);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
}

// A bad free must not have corrupted anything before the abort: only the
// message line is expected, and the process dies by SIGABRT.
TEST_F(Death, BadFreeDiesWithSigabrt) {
  EXPECT_EXIT(Free(g_global_array + 64), ::testing::KilledBySignal(SIGABRT), kFreeMsg);
  EXPECT_EXIT(
      {
        void *p = malloc(opaque<size_t>(16 << 20));
        Free(p);
        Free(p);
      },
      ::testing::KilledBySignal(SIGABRT), kFreeMsg);
}

}  // namespace
