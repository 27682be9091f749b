/*
 * malloc/large.h - large allocations: whole pages from the buddy allocator.
 *
 * Requests above the largest size class (32 KiB) and up to a MAX_ORDER block
 * (4 MiB) get exactly the pages they need (alloc_pages_exact), tagged
 * PG_large on the head page with nr_pages; above that they are huge and go
 * to vmalloc.  The kernel's kmalloc_large.  Two things on top: colours
 * (the start of a block in its last page's slack) and fault-around (a block
 * that reads zero faulted in with one call while probes show the program
 * writes its large blocks whole); both are explained below.
 *
 * Locking: no lock of its own on the allocation and free paths (the page
 * allocator's); fault-around's probe counts have a leaf lock that is only
 * ever tried (a probe read that finds it taken is skipped), so fork does
 * not take it and the child resets it.
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

/* A block realloc must move (it cannot grow in place) to REALLOC_HUGE_MIN
 * bytes or more gets a huge area of its own (mm/vmalloc.h) instead of zone
 * pages, so its later growth is an mremap: no copy, and no old copy left
 * free and resident beside the new one.  glibc's chunks of that size are
 * mappings already (its mmap threshold starts at 128 KiB).  `ls` of a
 * 19,457-entry directory doubles its entry array by realloc from 83 KB to
 * 5.3 MB; with zone blocks up to 4 MiB, the 2.66 MB copy stayed free and
 * resident under the zone's watermark while the 5.3 MB one was made (peak
 * RSS 8.8-9.0 MB against glibc's 7.0-7.3). */
constexpr size_t REALLOC_HUGE_MIN = 1ul << 20;

/*
 * Colouring (the SLAB allocator's cache colouring, mm/slab.c's colour_off and
 * colour_next; jemalloc's cache-oblivious large blocks).  Page-aligned blocks
 * put every program's headers at the same page offset, so a copy between
 * two of them that shifts the data by a few bytes (a prefix prepended: Python's
 * `header + value`, a message built around a payload) has its source and
 * destination 1..31 bytes apart modulo 4 KiB.  glibc's memmove (2.36) runs
 * 15-26x slower there on AMD Zen for copies of 16 KB to ~3/4 MiB (EPYC:
 * 2.7 GB/s against 41 GB/s for 256,000 bytes, bench/tools/memmove_alias.c).
 * So a large block the program did not ask to be aligned starts at a colour:
 * a multiple of LARGE_COLOUR_UNIT (a cache line) in its last page's slack
 * (the bytes the page rounding leaves unused; never an extra page), taken in
 * turn per thread (large_colour_next), so two blocks allocated one after
 * the other start at different offsets.  A request that fills its last page
 * (page multiples) has no slack and stays page-aligned.  The colour is kept
 * in the head's descriptor (page::colour); usable size is the pages less
 * the colour.  Blocks realloc makes (REALLOC_PAGES_MIN, above) are not
 * coloured: their slack is room to grow in place.
 */
constexpr size_t LARGE_COLOUR_UNIT = 64;

/* size <= LARGE_MAX_SIZE; align a power of two <= LARGE_MAX_SIZE: the
 * block's alignment (at least KMALLOC_MIN_ALIGN).  Aligned to less than a
 * page, it is coloured in multiples of max(align, LARGE_COLOUR_UNIT); a
 * caller that needs whole pages passes PAGE_SIZE.  zero: the block must
 * read as zero, and is made resident (calloc: memset, or os_populate_zeroed
 * when it already reads zero).  nullptr when out of memory. */
void *kmalloc_large(size_t size, size_t align, bool zero);

/* Free a large block; head is its (checked) head page. */
void kfree_large(page *head);

/* Shrink a large block in place to at least new_size bytes (> 0). */
void kmalloc_large_shrink(page *head, size_t new_size);

/* Grow a large block in place to at least new_size (<= LARGE_MAX_SIZE)
 * bytes, when the pages after it are free.  False, unchanged, otherwise. */
bool kmalloc_large_grow(page *head, size_t new_size);

/* The usable bytes of a large block: its pages less its colour. */
static inline size_t large_size(const page *head)
{
    return ((size_t)head->nr_pages << PAGE_SHIFT) - head->colour;
}

/* The address the program holds for a large block. */
static inline void *large_address(const page *head)
{
    return (char *)page_address(head) + head->colour;
}

/*
 * Fault-around (the kernel's mmap read-around, mm/filemap.c, which maps the
 * pages around a fault in one go and stops when they go unused: mmap_miss).
 * A large block that reads zero (fresh, or given back by reclaim) is
 * otherwise faulted in by the program a page at a time: a 256 KiB block is
 * 64 page faults, ~3.7 us each on this VM, where one MADV_POPULATE_WRITE
 * takes ~2.5 us a page (no exception entry and exit, no VMA lookup per
 * page).  So, while the program is seen to touch its large blocks whole, a
 * block that reads zero is faulted in when it is handed out.  What is seen:
 * probes.  A block handed out reading zero and not faulted in is a probe
 * (PG_probe); when it is freed, mincore counts the pages the program
 * touched (at most one read every LARGE_PROBE_MIN_MS, the first
 * LARGE_PROBE_MIN_MS after the first probe was made; none under a seccomp
 * filter).  The wait spares a short process (ls, cat: one buffer, freed
 * within a few ms) the read's seccomp check, a /proc read of 15-50 us in a
 * fresh process, and its mincore: ~55 us of a 1.3 ms `cat`.  Fault-around is on while the probes read (the last
 * LARGE_PROBE_DECAY_PAGES or so) were at least 15/16 touched and held at
 * least LARGE_PROBE_MIN_PAGES; even then every LARGE_PROBE_EVERY-th block
 * stays a probe, so a program that turns to leaving its blocks mostly
 * untouched (buffers sized for the worst case) turns it off again within a
 * few probes.  Not for calloc (always faulted in, above), memory-file zones,
 * pageblocks where a fault may map a hugepage (khugepaged_range_may_be_huge:
 * the first touch maps 2 MiB anyway, and a probe there would count pages
 * never touched), or under cgroup pressure.  Off: KALLOC_FAULT_AROUND=0, and for good once
 * MADV_POPULATE_WRITE is refused (a kernel before 5.14, or a filter's EPERM).
 */
constexpr unsigned LARGE_PROBE_EVERY = 8;             /* one block in 8 stays a probe */
constexpr uint32_t LARGE_PROBE_MIN_MS = 8;            /* probe reads at most this often */
constexpr uint32_t LARGE_PROBE_MIN_PAGES = 256;       /* probed before fault-around starts */
constexpr uint32_t LARGE_PROBE_DECAY_PAGES = 2048;    /* the probes' counts halve past this */
constexpr unsigned LARGE_FAULT_AROUND_NUM = 15;       /* on at touched/probed >= NUM/DEN */
constexpr unsigned LARGE_FAULT_AROUND_DEN = 16;

/* Fault-around's counters (kalloc_vmstat_get, kalloc_stats_print). */
struct large_fault_around_stats {
    unsigned long populated;      /* pages faulted in ahead (MADV_POPULATE_WRITE) */
    unsigned long probes_read;    /* probes whose residency was read at free */
    unsigned long probe_pages;    /* their pages */
    unsigned long probe_touched;  /* of which the program had touched */
};
extern large_fault_around_stats large_fa_stats;

/* What fault-around does now: "on" (the probes read say blocks are written
 * whole), "off" (they do not, or too few were read yet) or "disabled"
 * (KALLOC_FAULT_AROUND=0, or the kernel or a seccomp filter refused
 * MADV_POPULATE_WRITE); *touched and *probed get the probes' decayed
 * counts.  For kalloc_stats_print. */
const char *large_fault_around_state(unsigned *touched, unsigned *probed);

/* The fork child's: fault-around's lock (only ever tried, so fork's prepare
 * does not take it) may have been held by a thread the child does not have. */
void large_fault_around_reinit_lock();

/* Pages in large blocks and large allocations made (counters). */
extern unsigned long nr_large_pages;
extern unsigned long nr_large_allocs;

} // namespace kalloc
