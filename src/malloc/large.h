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

/* realloc (krealloc, malloc.cc) that grows a block to this size or more gives
 * it whole pages (a large block) even below KMALLOC_MAX_SIZE, and keeps it so
 * while realloc leaves it this large: a block realloc grows is likely to
 * grow again, and a large block grows in place into the free pages after it
 * (kmalloc_large_grow; alloc_pages_exact leaves the rest of its power-of-two
 * block free right there), as glibc's chunks grow into the top or a free
 * neighbour, where a size class moves at every class step (8 per doubling),
 * copying, and keeps a partly used slab in each class it went through
 * (slabs of 4..32 pages above 4 KiB).  realloc-string (64 strings grown by
 * appends to 16 B .. 64 KiB): peak RSS 8.2 -> 6.9 MiB, 12% fewer instructions
 * (from 8 KiB: 7.9 MiB; from 16 KiB: 8.1; from 2 KiB 7.0; from 1 KiB 6.5,
 * but a whole page for a 1 KiB block is too much to pay when it does not
 * grow again).  Costs up to a page less 1 byte per such block (a size class
 * up to 11%). */
constexpr size_t REALLOC_PAGES_MIN = 4096;

/* size <= LARGE_MAX_SIZE; align a power of two <= LARGE_MAX_SIZE.  zero: the
 * block must read as zero, and is made resident (calloc: memset, or
 * os_populate_zeroed when it already reads zero).  nullptr when out of
 * memory. */
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
