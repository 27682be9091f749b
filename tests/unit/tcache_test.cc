// Thread caches: a cache is carved from its metadata block one at a time
// (the block's other pages stay untouched).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include "malloc/malloc.h"
#include "malloc/tcache.h"
#include "mm/mmzone.h"
#include "mm/page_alloc.h"

using namespace kalloc;

namespace {

bool resident(const void *p)
{
    unsigned char v = 0;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(PAGE_SIZE - 1);
    return mincore((void *)a, PAGE_SIZE, &v) == 0 && (v & 1);
}

} // namespace

// The first cache of a fresh metadata block writes only the pages it
// covers: before, carving threaded all 14 caches of the 16 KiB block onto
// the free list, so the whole block was resident in a one-thread program.
TEST(Tcache, CachesAreCarvedOneAtATime)
{
    tcache *tc = tcache_get();
    ASSERT_NE(tc, nullptr);
    zone *z = page_zone_of((uintptr_t)tc);
    ASSERT_NE(z, nullptr);
    page *pg = compound_head(virt_to_page(z, (uintptr_t)tc));
    ASSERT_TRUE(pg->flags & PG_meta);
    char *block = (char *)page_address(pg);
    if (tc != (tcache *)block)
        GTEST_SKIP() << "this thread's cache is not its block's first";
    char *last = block + (PAGE_SIZE << 2) - PAGE_SIZE;   // the block's last page
    EXPECT_FALSE(resident(last)) << "the whole metadata block was written";
}
