// Pointer -> zone -> struct page lookup: O(1), exact for kalloc memory,
// nullptr (and no fault) for everything else.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstdlib>

#include "malloc/malloc.h"
#include "mm/page_alloc.h"

using namespace kalloc;

static int a_global[64];

TEST(Lookup, EveryByteOfABlockFindsItsPage)
{
    for (unsigned order : {0u, 3u, 9u, 10u}) {
        page *pg = alloc_pages(order, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        prep_compound_page(pg, 1ul << order, PG_large);
        pg->nr_pages = 1u << order;
        uintptr_t a = (uintptr_t)page_address(pg);
        for (uintptr_t off = 0; off < (PAGE_SIZE << order); off += 777) {
            zone *z = page_zone_of(a + off);
            ASSERT_EQ(z, page_zone(pg));
            page *p = virt_to_page(z, a + off);
            ASSERT_EQ(p, pg + off / PAGE_SIZE);
            ASSERT_EQ(compound_head(p), pg);
        }
        free_pages(pg, order);
    }
}

TEST(Lookup, ForeignPointersAreNotOurs)
{
    int local = 0;
    void *heap = std::malloc(100);   // glibc's malloc in this test binary
    void *map = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (const void *p : {(const void *)&local, (const void *)a_global, (const void *)heap,
                          (const void *)map, (const void *)nullptr, (const void *)1,
                          (const void *)~0ul, (const void *)(1ul << 47), (const void *)(3ul << 62)}) {
        EXPECT_EQ(page_zone_of((uintptr_t)p), nullptr) << p;
        EXPECT_FALSE(kowns(p)) << p;
    }
    std::free(heap);
    munmap(map, 1 << 20);
}

TEST(Lookup, AddressesPastTheZoneSpanAreNotOurs)
{
    page *pg = alloc_pages(0, MIGRATE_MOVABLE, nullptr);
    ASSERT_NE(pg, nullptr);
    zone *z = page_zone(pg);
    uintptr_t end = z->zone_start + (READ_ONCE(z->spanned_pages) << PAGE_SHIFT);
    EXPECT_EQ(page_zone_of(end), nullptr);
    EXPECT_EQ(page_zone_of(z->zone_start + ZONE_SLOT_SIZE - 1), nullptr);
    EXPECT_EQ(page_zone_of(z->zone_start + (ZONE_MAX_PAGES << PAGE_SHIFT)), nullptr);
    EXPECT_EQ(page_zone_of(z->zone_start + (ZONE_MAX_PAGES << PAGE_SHIFT)), nullptr);
    EXPECT_EQ(page_zone_of(z->zone_start), z);
    prep_compound_page(pg, 1, PG_large);
    pg->nr_pages = 1;
    free_pages(pg, 0);
}
