/*
 * malloc/large.h - large allocations: whole pages from the buddy allocator.
 *
 * Requests above the largest size class (32 KiB) and up to a MAX_ORDER block
 * (4 MiB) get exactly the pages they need (alloc_pages_exact), tagged
 * PG_large on the head page with nr_pages; above that they are huge and go
 * to vmalloc.  The kernel's kmalloc_large.
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

constexpr size_t LARGE_MAX_SIZE = PAGE_SIZE << MAX_ORDER;   /* 4 MiB */

/* size <= LARGE_MAX_SIZE; align a power of two <= LARGE_MAX_SIZE.  zero: the
 * block must read as zero.  nullptr when out of memory. */
void *kmalloc_large(size_t size, size_t align, bool zero);

/* Free a large block; head is its (checked) head page. */
void kfree_large(page *head);

/* Shrink a large block in place to at least new_size bytes (> 0). */
void kmalloc_large_shrink(page *head, size_t new_size);

/* Grow a large block in place to at least new_size (<= LARGE_MAX_SIZE)
 * bytes, when the pages after it are free.  False, unchanged, otherwise. */
bool kmalloc_large_grow(page *head, size_t new_size);

static inline size_t large_size(const page *head) { return (size_t)head->nr_pages << PAGE_SHIFT; }

/* Pages in large blocks and large allocations made (counters). */
extern unsigned long nr_large_pages;
extern unsigned long nr_large_allocs;

} // namespace kalloc
