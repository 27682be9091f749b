// Conformance with glibc's malloc semantics (see /work/shared/glibc-semantics.md
// and include/kalloc/kalloc.h), run twice: through the normal names (malloc,
// calloc, ...; libkalloc.so overrides them for the whole process) and through
// the kalloc_ API.  Everything here also holds for glibc's own malloc, except
// the ENOMEM-keeps-errno check of posix_memalign (glibc sets errno there).
#include <gtest/gtest.h>

#include <malloc.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

using kt::opaque;

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;
constexpr size_t kSizeMax = SIZE_MAX;
constexpr size_t kPtrdiffMaxPlus1 = static_cast<size_t>(PTRDIFF_MAX) + 1;

struct Api {
  const char *name;
  void *(*malloc_)(size_t);
  void *(*calloc_)(size_t, size_t);
  void *(*realloc_)(void *, size_t);
  void *(*reallocarray_)(void *, size_t, size_t);
  int (*posix_memalign_)(void **, size_t, size_t);
  void *(*aligned_alloc_)(size_t, size_t);
  void *(*memalign_)(size_t, size_t);
  void *(*valloc_)(size_t);
  void *(*pvalloc_)(size_t);
  size_t (*usable_size_)(void *);
  void (*free_)(void *);
};

const Api kLibcApi = {
    "libc",
    [](size_t n) { return malloc(n); },
    [](size_t n, size_t m) { return calloc(n, m); },
    [](void *p, size_t n) { return realloc(p, n); },
    [](void *p, size_t n, size_t m) { return reallocarray(p, n, m); },
    [](void **pp, size_t a, size_t n) { return posix_memalign(pp, a, n); },
    [](size_t a, size_t n) { return aligned_alloc(a, n); },
    [](size_t a, size_t n) { return memalign(a, n); },
    [](size_t n) { return valloc(n); },
    [](size_t n) { return pvalloc(n); },
    [](void *p) { return malloc_usable_size(p); },
    [](void *p) { free(p); },
};

const Api kKallocApi = {
    "kalloc",
    [](size_t n) { return kalloc_malloc(n); },
    [](size_t n, size_t m) { return kalloc_calloc(n, m); },
    [](void *p, size_t n) { return kalloc_realloc(p, n); },
    [](void *p, size_t n, size_t m) { return kalloc_reallocarray(p, n, m); },
    [](void **pp, size_t a, size_t n) { return kalloc_posix_memalign(pp, a, n); },
    [](size_t a, size_t n) { return kalloc_aligned_alloc(a, n); },
    [](size_t a, size_t n) { return kalloc_memalign(a, n); },
    [](size_t n) { return kalloc_valloc(n); },
    [](size_t n) { return kalloc_pvalloc(n); },
    [](void *p) { return kalloc_usable_size(p); },
    [](void *p) { kalloc_free(p); },
};

class Conformance : public ::testing::TestWithParam<const Api *> {
 protected:
  const Api &A() const { return *GetParam(); }
};

std::string ApiName(const ::testing::TestParamInfo<const Api *> &info) {
  return info.param->name;
}

INSTANTIATE_TEST_SUITE_P(Api, Conformance, ::testing::Values(&kLibcApi, &kKallocApi), ApiName);

// --------------------------------------------------------------------------
// Alignment
// --------------------------------------------------------------------------

TEST_P(Conformance, EverySizeUpTo64KiBIs16ByteAligned) {
  // Keep a ring of live blocks so that consecutive allocations do not simply
  // reuse the same slot.
  constexpr size_t kRing = 61;
  void *ring[kRing] = {};
  size_t ring_size[kRing] = {};
  for (size_t n = 0; n <= 64 * KiB; ++n) {
    void *p = A().malloc_(opaque(n));
    ASSERT_NE(p, nullptr) << "size " << n;
    ASSERT_TRUE(kt::is_aligned(p, 16)) << "size " << n << " -> " << p;
    ASSERT_GE(A().usable_size_(p), n);
    if (n > 0) {
      static_cast<uint8_t *>(p)[n - 1] = static_cast<uint8_t>(n >> 3);
      static_cast<uint8_t *>(p)[0] = static_cast<uint8_t>(n);
    }
    size_t slot = n % kRing;
    if (ring[slot]) {
      size_t m = ring_size[slot];
      if (m > 0) {
        ASSERT_EQ(static_cast<uint8_t *>(ring[slot])[0], static_cast<uint8_t>(m)) << "size " << m;
        if (m > 1) {
          ASSERT_EQ(static_cast<uint8_t *>(ring[slot])[m - 1], static_cast<uint8_t>(m >> 3))
              << "size " << m;
        }
      }
      A().free_(ring[slot]);
    }
    ring[slot] = p;
    ring_size[slot] = n;
  }
  for (void *p : ring) A().free_(p);
}

TEST_P(Conformance, LargeAndHugeSizesAre16ByteAligned) {
  const size_t sizes[] = {64 * KiB + 1, 100000,    128 * KiB, 128 * KiB + 1, 256 * KiB + 1,
                          1 * MiB - 1,  1 * MiB,   1 * MiB + 1, 2 * MiB + 3,  4 * MiB,
                          5 * MiB,      5 * MiB + 17, 16 * MiB, 32 * MiB + 1, 64 * MiB};
  std::vector<std::pair<void *, size_t>> live;
  uint32_t seed = 1;
  for (size_t n : sizes) {
    void *p = A().malloc_(opaque(n));
    ASSERT_NE(p, nullptr) << "size " << n;
    EXPECT_TRUE(kt::is_aligned(p, 16)) << "size " << n << " -> " << p;
    EXPECT_GE(A().usable_size_(p), n) << "size " << n;
    kt::fill_sparse(p, n, seed++);
    live.emplace_back(p, n);
  }
  seed = 1;
  for (auto [p, n] : live) {
    EXPECT_EQ(kt::check_sparse(p, n, seed++), n) << "size " << n << " overwritten";
    A().free_(p);
  }
}

// --------------------------------------------------------------------------
// malloc(0), impossible sizes
// --------------------------------------------------------------------------

TEST_P(Conformance, MallocZeroIsUniqueAndFreeable) {
  std::vector<void *> v;
  std::set<void *> seen;
  for (int i = 0; i < 2000; ++i) {
    void *p = A().malloc_(opaque<size_t>(0));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(kt::is_aligned(p, 16));
    EXPECT_TRUE(seen.insert(p).second) << "malloc(0) returned " << p << " twice";
    v.push_back(p);
  }
  for (void *p : v) A().free_(p);
}

TEST_P(Conformance, ImpossibleSizesFailWithEnomem) {
  const size_t sizes[] = {kSizeMax,           kSizeMax - 1,        kSizeMax - 15,
                          kSizeMax - 4095,    kSizeMax - (1 << 20), kPtrdiffMaxPlus1,
                          kPtrdiffMaxPlus1 + 4096, static_cast<size_t>(PTRDIFF_MAX),
                          static_cast<size_t>(PTRDIFF_MAX) - 4095};
  for (size_t n : sizes) {
    errno = 0;
    void *p = A().malloc_(opaque(n));
    EXPECT_EQ(p, nullptr) << "malloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM) << "malloc(" << n << ")";
    if (p) A().free_(p);

    errno = 0;
    p = A().valloc_(opaque(n));
    EXPECT_EQ(p, nullptr) << "valloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM) << "valloc(" << n << ")";
    if (p) A().free_(p);

    // Alignment padding must not wrap around either.
    for (size_t a : {size_t{16}, size_t{64}, size_t{4096}, size_t{1} << 21}) {
      errno = 0;
      p = A().memalign_(opaque(a), opaque(n));
      EXPECT_EQ(p, nullptr) << "memalign(" << a << ", " << n << ")";
      EXPECT_EQ(errno, ENOMEM) << "memalign(" << a << ", " << n << ")";
      if (p) A().free_(p);
      errno = 0;
      p = A().aligned_alloc_(opaque(a), opaque(n));
      EXPECT_EQ(p, nullptr) << "aligned_alloc(" << a << ", " << n << ")";
      EXPECT_EQ(errno, ENOMEM) << "aligned_alloc(" << a << ", " << n << ")";
      if (p) A().free_(p);
    }
  }
}

// --------------------------------------------------------------------------
// calloc
// --------------------------------------------------------------------------

TEST_P(Conformance, CallocReturnsZeroedMemory) {
  const size_t sizes[] = {0,    1,     7,      16,        17,       100,     1000,    4095,
                          4096, 10000, 65536,  100000,    1 * MiB,  3 * MiB + 5, 16 * MiB};
  for (size_t n : sizes) {
    for (int form = 0; form < 3; ++form) {
      void *p = form == 0   ? A().calloc_(opaque(n), 1)
                : form == 1 ? A().calloc_(1, opaque(n))
                            : A().calloc_(opaque((n + 7) / 8), 8);
      size_t len = form == 2 ? (n + 7) / 8 * 8 : n;
      ASSERT_NE(p, nullptr) << "calloc size " << n;
      EXPECT_TRUE(kt::is_aligned(p, 16));
      EXPECT_TRUE(kt::all_bytes_are(p, len, 0)) << "calloc size " << n << " not zeroed";
      A().free_(p);
    }
  }
}

TEST_P(Conformance, CallocZeroesReusedDirtyBlocks) {
  const size_t sizes[] = {1,    8,    16,    24,    48,     100,    128,    500,     1000,
                          2048, 4096, 10000, 32768, 65536,  100000, 200000, 1 * MiB, 5 * MiB};
  for (size_t n : sizes) {
    const int rounds = n >= MiB ? 10 : 200;
    for (int r = 0; r < rounds; ++r) {
      void *d = A().malloc_(opaque(n));
      ASSERT_NE(d, nullptr);
      memset(d, 0xAB, A().usable_size_(d));
      A().free_(d);
      void *p = A().calloc_(1, opaque(n));
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(kt::all_bytes_are(p, n, 0)) << "calloc(1, " << n << ") round " << r
                                              << " returned dirty memory";
      memset(p, 0xAB, A().usable_size_(p));
      A().free_(p);
    }
    // Batch variant: many dirty blocks freed, then calloc'ed back.
    if (n <= 65536) {
      std::vector<void *> v;
      for (int i = 0; i < 300; ++i) {
        void *d = A().malloc_(opaque(n));
        ASSERT_NE(d, nullptr);
        memset(d, 0xAB, A().usable_size_(d));
        v.push_back(d);
      }
      for (void *d : v) A().free_(d);
      v.clear();
      for (int i = 0; i < 300; ++i) {
        void *p = A().calloc_(opaque(n), 1);
        ASSERT_NE(p, nullptr);
        ASSERT_TRUE(kt::all_bytes_are(p, n, 0)) << "calloc(" << n << ", 1) #" << i << " dirty";
        v.push_back(p);
      }
      for (void *p : v) A().free_(p);
    }
  }
}

TEST_P(Conformance, CallocOverflowFailsWithEnomem) {
  const std::pair<size_t, size_t> cases[] = {
      {kSizeMax / 2 + 1, 2},
      {2, kSizeMax / 2 + 1},
      {size_t{1} << 32, size_t{1} << 32},
      {kSizeMax, kSizeMax},
      {kSizeMax, 2},
      {(kSizeMax / 16) + 1, 16},
      {65537, 281470681808897ull},  // product wraps to exactly 2^64 + 1 -> 1
      {kPtrdiffMaxPlus1, 1},        // no overflow, but larger than PTRDIFF_MAX
      {size_t{1} << 31, size_t{1} << 32},
  };
  for (auto [n, m] : cases) {
    errno = 0;
    void *p = A().calloc_(opaque(n), opaque(m));
    EXPECT_EQ(p, nullptr) << "calloc(" << n << ", " << m << ")";
    EXPECT_EQ(errno, ENOMEM) << "calloc(" << n << ", " << m << ")";
    if (p) A().free_(p);
  }
  // A zero factor is not an overflow: a valid (minimal) block.
  void *p = A().calloc_(opaque<size_t>(0), opaque(kSizeMax));
  EXPECT_NE(p, nullptr);
  A().free_(p);
  p = A().calloc_(opaque(kSizeMax), opaque<size_t>(0));
  EXPECT_NE(p, nullptr);
  A().free_(p);
}

// --------------------------------------------------------------------------
// realloc / reallocarray
// --------------------------------------------------------------------------

TEST_P(Conformance, ReallocNullIsMalloc) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{24}, size_t{1000}, 70 * KiB, 2 * MiB, 20 * MiB}) {
    void *p = A().realloc_(nullptr, opaque(n));
    ASSERT_NE(p, nullptr) << "realloc(NULL, " << n << ")";
    EXPECT_TRUE(kt::is_aligned(p, 16));
    EXPECT_GE(A().usable_size_(p), n);
    kt::fill_sparse(p, n, 7);
    EXPECT_EQ(kt::check_sparse(p, n, 7), n);
    A().free_(p);
  }
}

TEST_P(Conformance, ReallocToZeroFreesAndReturnsNull) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{4096}, 100 * KiB, 1 * MiB, 16 * MiB}) {
    void *p = A().malloc_(opaque(n));
    ASSERT_NE(p, nullptr);
    void *r = A().realloc_(p, opaque<size_t>(0));
    EXPECT_EQ(r, nullptr) << "realloc(p, 0) of a " << n << "-byte block";
    if (r) A().free_(r);
  }
}

// Sweeps one block small -> large -> huge and back down, checking contents.
TEST_P(Conformance, ReallocKeepsContentsAcrossSizeClasses) {
  std::vector<size_t> up = {1,      2,      7,      16,       17,      31,      48,
                            64,     100,    255,    512,      1000,    2048,    4000,
                            4096,   8192,   10000,  32768,    65536,   100000,  262144,
                            1 * MiB, 3 * MiB + 7, 8 * MiB, 32 * MiB + 1, 64 * MiB};
  std::vector<size_t> sizes = up;
  sizes.insert(sizes.end(), up.rbegin() + 1, up.rend());
  // Some non-monotonic jumps as well.
  for (size_t n : {size_t{70000}, size_t{3}, 5 * MiB, size_t{200}, size_t{900000}, size_t{40}})
    sizes.push_back(n);

  uint32_t seed = 11;
  size_t cur = sizes[0];
  void *p = A().malloc_(cur);
  ASSERT_NE(p, nullptr);
  kt::fill(p, cur, seed);
  for (size_t i = 1; i < sizes.size(); ++i) {
    size_t n = sizes[i];
    void *r = A().realloc_(p, opaque(n));
    ASSERT_NE(r, nullptr) << "realloc " << cur << " -> " << n;
    ASSERT_TRUE(kt::is_aligned(r, 16));
    ASSERT_GE(A().usable_size_(r), n);
    size_t keep = std::min(cur, n);
    // A block filled sparsely (cur > 1 MiB) is checked sparsely; the tail
    // window is only valid when the whole old block is kept.
    size_t bad = cur > MiB ? kt::check_sparse(r, keep, seed, keep == cur)
                           : kt::check(r, keep, seed);
    ASSERT_EQ(bad, keep) << "realloc " << cur << " -> " << n << " lost byte " << bad;
    p = r;
    cur = n;
    ++seed;
    if (n > MiB)
      kt::fill_sparse(p, n, seed);
    else
      kt::fill(p, n, seed);
  }
  A().free_(p);
}

TEST_P(Conformance, ReallocByOneByteKeepsContents) {
  void *p = nullptr;
  size_t cur = 0;
  for (size_t n = 1; n <= 4200; ++n) {
    void *r = A().realloc_(p, opaque(n));
    ASSERT_NE(r, nullptr);
    ASSERT_TRUE(kt::is_aligned(r, 16));
    // Bytes 0..cur-1 were written as pattern(seed 3); byte cur is new.
    ASSERT_EQ(kt::check(r, cur, 3), cur) << "grow to " << n;
    static_cast<uint8_t *>(r)[cur] = kt::pattern_byte(cur, 3);
    p = r;
    cur = n;
  }
  for (size_t n = 4199; n >= 1; n -= 7) {
    void *r = A().realloc_(p, opaque(n));
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(kt::check(r, n, 3), n) << "shrink to " << n;
    p = r;
    if (n < 8) break;
  }
  A().free_(p);
}

TEST_P(Conformance, ReallocFailureLeavesBlockValid) {
  for (size_t n : {size_t{40}, size_t{1000}, 300 * KiB, 1 * MiB, 16 * MiB}) {
    void *p = A().malloc_(opaque(n));
    ASSERT_NE(p, nullptr);
    kt::fill_sparse(p, n, 5);
    for (size_t bad : {kSizeMax, kSizeMax - 4096, kPtrdiffMaxPlus1}) {
      errno = 0;
      void *r = A().realloc_(p, opaque(bad));
      EXPECT_EQ(r, nullptr) << "realloc(" << n << "-byte block, " << bad << ")";
      EXPECT_EQ(errno, ENOMEM);
      EXPECT_EQ(kt::check_sparse(p, n, 5), n) << "block changed by a failed realloc";
      errno = 0;
      r = A().reallocarray_(p, opaque(bad), opaque<size_t>(1));
      EXPECT_EQ(r, nullptr);
      EXPECT_EQ(errno, ENOMEM);
    }
    errno = 0;
    void *r = A().reallocarray_(p, opaque(kSizeMax / 2), opaque<size_t>(4));
    EXPECT_EQ(r, nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(kt::check_sparse(p, n, 5), n);
    // The block still works: it can be grown and freed.
    r = A().realloc_(p, n * 2);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(kt::check_sparse(r, n, 5), n);
    A().free_(r);
  }
}

TEST_P(Conformance, ReallocarrayMultipliesAndChecksOverflow) {
  void *p = A().reallocarray_(nullptr, opaque<size_t>(10), opaque<size_t>(10));
  ASSERT_NE(p, nullptr);
  EXPECT_GE(A().usable_size_(p), 100u);
  kt::fill(p, 100, 9);
  void *r = A().reallocarray_(p, opaque<size_t>(1000), opaque<size_t>(100));
  ASSERT_NE(r, nullptr);
  EXPECT_GE(A().usable_size_(r), 100000u);
  EXPECT_EQ(kt::check(r, 100, 9), 100u);
  p = r;
  const std::pair<size_t, size_t> overflow[] = {{kSizeMax, 2},
                                                {size_t{1} << 32, size_t{1} << 32},
                                                {2, kSizeMax / 2 + 1},
                                                {65537, 281470681808897ull}};
  for (auto [n, m] : overflow) {
    errno = 0;
    r = A().reallocarray_(p, opaque(n), opaque(m));
    EXPECT_EQ(r, nullptr) << n << " * " << m;
    EXPECT_EQ(errno, ENOMEM) << n << " * " << m;
    EXPECT_EQ(kt::check(p, 100, 9), 100u);
    errno = 0;
    r = A().reallocarray_(nullptr, opaque(n), opaque(m));
    EXPECT_EQ(r, nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  A().free_(p);
}

// --------------------------------------------------------------------------
// posix_memalign / aligned_alloc / memalign / valloc / pvalloc
// --------------------------------------------------------------------------

TEST_P(Conformance, PosixMemalignRejectsBadAlignmentWithEinval) {
  const size_t bad[] = {0,  1,    2,    3,    4,    5,           12,
                        24, 40,   48,   96,   4097, 3 * MiB,     (size_t{1} << 20) + 8,
                        kSizeMax, kSizeMax - 7};
  for (size_t a : bad) {
    void *sentinel = reinterpret_cast<void *>(uintptr_t{0x1234560});
    void *mem = sentinel;
    errno = 1234;
    int rc = A().posix_memalign_(&mem, opaque(a), opaque<size_t>(64));
    EXPECT_EQ(rc, EINVAL) << "alignment " << a;
    EXPECT_EQ(mem, sentinel) << "*memptr changed on failure, alignment " << a;
    EXPECT_EQ(errno, 1234) << "errno changed, alignment " << a;
    if (rc == 0 && mem != sentinel) A().free_(mem);
  }
}

TEST_P(Conformance, PosixMemalignEnomemLeavesMemptrUntouched) {
  const std::pair<size_t, size_t> cases[] = {{64, kSizeMax},
                                             {4096, kSizeMax - 4096},
                                             {16, kPtrdiffMaxPlus1},
                                             {size_t{1} << 30, kPtrdiffMaxPlus1},
                                             {size_t{1} << 63, 1}};
  for (auto [a, n] : cases) {
    void *sentinel = reinterpret_cast<void *>(uintptr_t{0xabcdef0});
    void *mem = sentinel;
    int rc = A().posix_memalign_(&mem, opaque(a), opaque(n));
    EXPECT_EQ(rc, ENOMEM) << "posix_memalign(" << a << ", " << n << ")";
    EXPECT_EQ(mem, sentinel) << "*memptr changed on failure";
    if (rc == 0 && mem != sentinel) A().free_(mem);
  }
}

// Stricter than glibc 2.36 (whose posix_memalign leaves errno = ENOMEM behind):
// glibc-semantics.md and kalloc.h both say posix_memalign does not set errno.
TEST_P(Conformance, PosixMemalignEnomemDoesNotChangeErrno) {
  for (auto [a, n] : {std::pair<size_t, size_t>{64, kSizeMax}, {16, kPtrdiffMaxPlus1}}) {
    void *mem = nullptr;
    errno = 4321;
    int rc = A().posix_memalign_(&mem, opaque(a), opaque(n));
    EXPECT_EQ(rc, ENOMEM);
    EXPECT_EQ(errno, 4321) << "posix_memalign(" << a << ", " << n << ") changed errno";
  }
}

enum class AlignFn { kPosixMemalign, kAlignedAlloc, kMemalign };

void *AlignedAllocVia(const Api &api, AlignFn fn, size_t a, size_t n) {
  switch (fn) {
    case AlignFn::kPosixMemalign: {
      void *p = nullptr;
      int rc = api.posix_memalign_(&p, a, n);
      return rc == 0 ? p : nullptr;
    }
    case AlignFn::kAlignedAlloc:
      return api.aligned_alloc_(a, n);
    case AlignFn::kMemalign:
      return api.memalign_(a, n);
  }
  return nullptr;
}

void AlignmentSweep(const Api &api, AlignFn fn, const char *fname) {
  for (int shift = 3; shift <= 30; ++shift) {
    const size_t a = size_t{1} << shift;
    std::vector<size_t> sizes;
    if (a <= MiB) {
      sizes = {0, 1, 8, a / 2 ? a / 2 : 1, a - 1, a, a + 1, 3 * a + 5, 100};
    } else {
      sizes = {1, 100, 4096, 64 * KiB + 3, 1 * MiB};
    }
    if (a <= 4 * MiB) sizes.push_back(4 * MiB + 1);  // larger than the alignment
    std::vector<std::pair<void *, size_t>> live;
    uint32_t seed = static_cast<uint32_t>(shift) * 100;
    for (size_t n : sizes) {
      void *p = AlignedAllocVia(api, fn, kt::opaque(a), kt::opaque(n));
      ASSERT_NE(p, nullptr) << fname << "(" << a << ", " << n << ")";
      ASSERT_TRUE(kt::is_aligned(p, std::max<size_t>(a, 16)))
          << fname << "(" << a << ", " << n << ") -> " << p;
      ASSERT_GE(api.usable_size_(p), n) << fname << "(" << a << ", " << n << ")";
      kt::fill_sparse(p, n, seed++);
      if (a >= 64 * MiB) {
        // Keep the address-space footprint small for the biggest alignments.
        EXPECT_EQ(kt::check_sparse(p, n, seed - 1), n);
        api.free_(p);
      } else {
        live.emplace_back(p, n);
      }
    }
    seed = static_cast<uint32_t>(shift) * 100;
    for (auto [p, n] : live) {
      EXPECT_EQ(kt::check_sparse(p, n, seed++), n)
          << fname << "(" << a << ", " << n << ") block overwritten";
      api.free_(p);
    }
  }
}

TEST_P(Conformance, PosixMemalignEveryPowerOfTwoUpTo1GiB) {
  AlignmentSweep(A(), AlignFn::kPosixMemalign, "posix_memalign");
}

TEST_P(Conformance, AlignedAllocEveryPowerOfTwoUpTo1GiB) {
  AlignmentSweep(A(), AlignFn::kAlignedAlloc, "aligned_alloc");
}

TEST_P(Conformance, MemalignEveryPowerOfTwoUpTo1GiB) {
  AlignmentSweep(A(), AlignFn::kMemalign, "memalign");
}

// Every size up to 8 KiB with the small alignments: the size classes are
// not all multiples of 32 or 64 (slab_common.h widens 640 B to 672), so an
// aligned request must search up to a class whose objects all are aligned.
TEST_P(Conformance, SmallAlignmentsEverySizeUpTo8KiB) {
  for (size_t a : {32, 64, 128, 256}) {
    std::vector<void *> live;
    for (size_t n = 1; n <= 8 * KiB; n += (n < 1100 ? 1 : 7)) {
      void *p = AlignedAllocVia(A(), AlignFn::kPosixMemalign, kt::opaque(a), kt::opaque(n));
      ASSERT_NE(p, nullptr) << "posix_memalign(" << a << ", " << n << ")";
      ASSERT_TRUE(kt::is_aligned(p, a)) << "posix_memalign(" << a << ", " << n << ") -> " << p;
      ASSERT_GE(A().usable_size_(p), n);
      static_cast<unsigned char *>(p)[n - 1] = static_cast<unsigned char>(n);
      live.push_back(p);
      if (live.size() == 64) {
        for (void *q : live) A().free_(q);
        live.clear();
      }
    }
    for (void *q : live) A().free_(q);
  }
}

TEST_P(Conformance, OneGiBAlignmentWithOneMiBSize) {
  void *p = nullptr;
  ASSERT_EQ(A().posix_memalign_(&p, opaque(size_t{1} << 30), opaque(1 * MiB)), 0);
  ASSERT_TRUE(kt::is_aligned(p, size_t{1} << 30)) << p;
  memset(p, 0x77, 1 * MiB);
  A().free_(p);
  p = A().aligned_alloc_(opaque(size_t{1} << 30), opaque(1 * MiB));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(kt::is_aligned(p, size_t{1} << 30)) << p;
  memset(p, 0x77, 1 * MiB);
  A().free_(p);
  p = A().memalign_(opaque(size_t{1} << 30), opaque(1 * MiB));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(kt::is_aligned(p, size_t{1} << 30)) << p;
  memset(p, 0x77, 1 * MiB);
  A().free_(p);
}

// memalign and (glibc 2.36) aligned_alloc round a non-power-of-two alignment
// up; failing with EINVAL is also acceptable.  A misaligned block is not.
TEST_P(Conformance, NonPowerOfTwoAlignmentRoundsUpOrFails) {
  const size_t aligns[] = {3, 24, 48, 100, 4097, 3 * 4096, (size_t{1} << 20) + 1};
  for (size_t a : aligns) {
    size_t next = 1;
    while (next < a) next <<= 1;
    for (int which = 0; which < 2; ++which) {
      errno = 0;
      void *p = which == 0 ? A().memalign_(opaque(a), opaque<size_t>(100))
                           : A().aligned_alloc_(opaque(a), opaque<size_t>(100));
      const char *fn = which == 0 ? "memalign" : "aligned_alloc";
      if (p == nullptr) {
        EXPECT_EQ(errno, EINVAL) << fn << "(" << a << ", 100) failed with errno " << errno;
      } else {
        EXPECT_TRUE(kt::is_aligned(p, std::max<size_t>(next, 16)))
            << fn << "(" << a << ", 100) -> " << p;
        EXPECT_GE(A().usable_size_(p), 100u);
        memset(p, 1, 100);
        A().free_(p);
      }
    }
  }
  // An alignment above the largest power of two fails with EINVAL, as in
  // glibc (kalloc said ENOMEM until 2026-12-03).
  for (size_t a : {SIZE_MAX, SIZE_MAX / 2 + 2}) {
    for (int which = 0; which < 2; ++which) {
      errno = 0;
      void *p = which == 0 ? A().memalign_(opaque(a), opaque<size_t>(10))
                           : A().aligned_alloc_(opaque(a), opaque<size_t>(10));
      EXPECT_EQ(p, nullptr);
      EXPECT_EQ(errno, EINVAL) << (which ? "aligned_alloc(" : "memalign(") << a << ", 10)";
    }
  }
  // memalign(0, n) and memalign(1, n) behave like malloc(n).
  for (size_t a : {size_t{0}, size_t{1}, size_t{2}}) {
    void *p = A().memalign_(opaque(a), opaque<size_t>(40));
    ASSERT_NE(p, nullptr) << "memalign(" << a << ", 40)";
    EXPECT_TRUE(kt::is_aligned(p, 16));
    A().free_(p);
  }
}

TEST_P(Conformance, VallocIsPageAligned) {
  const size_t pg = kt::page_size();
  std::vector<void *> v;
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, pg - 1, pg, pg + 1, 3 * pg, 100 * KiB,
                   1 * MiB, 5 * MiB + 3}) {
    for (int i = 0; i < 3; ++i) {
      void *p = A().valloc_(opaque(n));
      ASSERT_NE(p, nullptr) << "valloc(" << n << ")";
      EXPECT_TRUE(kt::is_aligned(p, pg)) << "valloc(" << n << ") -> " << p;
      EXPECT_GE(A().usable_size_(p), n);
      if (n) memset(p, 0x3C, n);
      v.push_back(p);
    }
  }
  for (void *p : v) A().free_(p);
}

TEST_P(Conformance, PvallocRoundsUpToWholePages) {
  const size_t pg = kt::page_size();
  for (size_t n : {size_t{1}, size_t{100}, pg - 1, pg, pg + 1, 5 * pg + 7, 1 * MiB + 1}) {
    void *p = A().pvalloc_(opaque(n));
    ASSERT_NE(p, nullptr) << "pvalloc(" << n << ")";
    EXPECT_TRUE(kt::is_aligned(p, pg)) << "pvalloc(" << n << ") -> " << p;
    size_t rounded = (n + pg - 1) / pg * pg;
    EXPECT_GE(A().usable_size_(p), rounded) << "pvalloc(" << n << ")";
    memset(p, 0x5A, rounded);  // all the rounded-up pages may be written
    A().free_(p);
  }
  void *p = A().pvalloc_(opaque<size_t>(0));
  if (p) {
    EXPECT_TRUE(kt::is_aligned(p, pg));
    A().free_(p);
  }
  for (size_t n : {kSizeMax, kSizeMax - 1, kSizeMax - pg + 2, kPtrdiffMaxPlus1}) {
    errno = 0;
    p = A().pvalloc_(opaque(n));
    EXPECT_EQ(p, nullptr) << "pvalloc(" << n << ")";
    EXPECT_EQ(errno, ENOMEM) << "pvalloc(" << n << ")";
    if (p) A().free_(p);
  }
}

// --------------------------------------------------------------------------
// malloc_usable_size
// --------------------------------------------------------------------------

void CheckUsableSizeWritable(const Api &api, size_t n) {
  constexpr int kBlocks = 6;
  void *b[kBlocks];
  size_t u[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    b[i] = api.malloc_(kt::opaque(n));
    ASSERT_NE(b[i], nullptr) << n;
    u[i] = api.usable_size_(b[i]);
    ASSERT_GE(u[i], n) << "malloc_usable_size < request " << n;
    kt::fill(b[i], u[i], static_cast<uint32_t>(n * 8 + i));
  }
  // Overwrite the whole usable size of the middle ones with a different byte.
  for (int i = 1; i < kBlocks; i += 2) memset(b[i], 0xEE, u[i]);
  for (int i = 0; i < kBlocks; ++i) {
    if (i % 2 == 1) {
      ASSERT_TRUE(kt::all_bytes_are(b[i], u[i], 0xEE)) << n;
    } else {
      ASSERT_EQ(kt::check(b[i], u[i], static_cast<uint32_t>(n * 8 + i)), u[i])
          << "writing the usable size of a neighbour of a " << n << "-byte block corrupted it";
    }
  }
  for (int i = 0; i < kBlocks; ++i) api.free_(b[i]);
}

TEST_P(Conformance, UsableSizeIsAtLeastRequestAndWritable) {
  for (size_t n = 0; n <= 2048; ++n) {
    CheckUsableSizeWritable(A(), n);
    if (HasFatalFailure()) return;
  }
  for (size_t n = 2049; n <= 70000; n += n / 16 + 1) {
    CheckUsableSizeWritable(A(), n);
    if (HasFatalFailure()) return;
  }
  for (size_t n : {128 * KiB, 200 * KiB + 3, 1 * MiB, 2 * MiB - 1, 4 * MiB + 100, 9 * MiB}) {
    CheckUsableSizeWritable(A(), n);
    if (HasFatalFailure()) return;
  }
}

TEST_P(Conformance, UsableSizeOfNullIsZero) {
  EXPECT_EQ(A().usable_size_(opaque<void *>(nullptr)), 0u);
}

// --------------------------------------------------------------------------
// No two live blocks overlap
// --------------------------------------------------------------------------

TEST_P(Conformance, LiveBlocksNeverOverlap) {
  kt::Rng rng(2024);
  struct Live {
    uintptr_t begin, end;
  };
  std::vector<Live> live;
  std::vector<void *> ptrs;
  for (int i = 0; i < 30000; ++i) {
    uint64_t r = rng.below(1000);
    size_t n = r < 800 ? rng.below(512) : r < 990 ? 512 + rng.below(64 * KiB) : 300 * KiB + rng.below(3 * MiB);
    void *p;
    switch (rng.below(6)) {
      case 0: p = A().calloc_(1, n); break;
      case 1: p = A().memalign_(size_t{64} << rng.below(8), n); break;
      case 2: p = A().realloc_(nullptr, n); break;
      default: p = A().malloc_(n); break;
    }
    ASSERT_NE(p, nullptr) << n;
    ptrs.push_back(p);
    // Free some as we go so that reused memory is checked as well.
    if (rng.below(3) == 0) {
      size_t victim = rng.below(ptrs.size());
      A().free_(ptrs[victim]);
      ptrs[victim] = ptrs.back();
      ptrs.pop_back();
    }
  }
  for (void *p : ptrs) {
    uintptr_t b = reinterpret_cast<uintptr_t>(p);
    live.push_back({b, b + std::max<size_t>(A().usable_size_(p), 1)});
  }
  std::sort(live.begin(), live.end(), [](const Live &a, const Live &b) { return a.begin < b.begin; });
  for (size_t i = 1; i < live.size(); ++i) {
    ASSERT_LE(live[i - 1].end, live[i].begin)
        << "block at 0x" << std::hex << live[i - 1].begin << " (usable " << std::dec
        << live[i - 1].end - live[i - 1].begin << ") overlaps block at 0x" << std::hex
        << live[i].begin;
  }
  for (void *p : ptrs) A().free_(p);
}

// --------------------------------------------------------------------------
// free
// --------------------------------------------------------------------------

TEST_P(Conformance, FreePreservesErrno) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{4096}, 100 * KiB, 1 * MiB, 16 * MiB,
                   64 * MiB}) {
    // Free several so that slow paths (cache flushes, unmapping) are hit.
    std::vector<void *> v;
    for (int i = 0; i < (n >= MiB ? 4 : 200); ++i) {
      void *p = A().malloc_(opaque(n));
      ASSERT_NE(p, nullptr);
      if (n) memset(p, 1, std::min<size_t>(n, 4096));
      v.push_back(p);
    }
    for (void *p : v) {
      errno = 1234;
      A().free_(p);
      ASSERT_EQ(errno, 1234) << "free of a " << n << "-byte block changed errno";
    }
  }
  void *p = A().memalign_(opaque(size_t{1} << 21), opaque<size_t>(10));
  ASSERT_NE(p, nullptr);
  errno = 1234;
  A().free_(p);
  EXPECT_EQ(errno, 1234);
  errno = 1234;
  A().free_(nullptr);
  EXPECT_EQ(errno, 1234);
}

TEST_P(Conformance, FreeNullIsNoop) {
  for (int i = 0; i < 100; ++i) A().free_(opaque<void *>(nullptr));
  void *p = A().malloc_(opaque<size_t>(10));
  EXPECT_NE(p, nullptr);
  A().free_(p);
}

}  // namespace
