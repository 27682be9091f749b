/*
 * mm/vmalloc.h - huge allocations: one mapping each (kalloc's vmalloc).
 *
 * Requests above the largest buddy block (4 MiB) get a mapping of their own,
 * placed by kalloc inside vmalloc regions: address ranges of one or more
 * 4 GiB slots, split into 2 MiB chunks.  An area starts on a chunk boundary
 * (so it is 2 MiB aligned: hugepage friendly, and any alignment up to the
 * region size is a matter of picking the chunk).  Chunks are reserved for
 * the whole area, but only the page-rounded size is mapped.
 *
 * vmalloc_table[] (one entry per 4 GiB, like zone_table) finds an area's
 * region in O(1); the region's per-chunk array (chunk_state) says where each
 * area starts and how long its mapping is.  Freeing unmaps; realloc grows in
 * place with mremap when the next chunks are free, else moves the mapping
 * with mremap (no copy) into a fresh range it has claimed first.
 *
 * Freed areas are kept mapped in a small cache (VCACHE_SLOTS areas, oldest
 * evicted first) and reused by a later request that fits (at most twice its
 * size, shrunk to it in place; or lent whole to a large block, see
 * vmalloc_cached), but only as much as the program has been
 * seen to reuse: each area unmapped leaves a shadow (its size and time, as
 * the kernel's workingset leaves shadow entries of evicted pages), and a
 * fresh mapping a shadow would have served within VSHADOW_WINDOW_MS is a
 * refault, which adds its size to the workingset (so do cache hits).  The
 * cache holds at most that workingset, and never so much that the live
 * areas and the cache together pass the recent peak of live bytes by more
 * than VCACHE_OVER_PEAK.  So a
 * program that allocates and frees a 16 MiB scratch buffer in a loop maps it
 * twice and then pays no mmap, munmap or page faults per iteration (glibc
 * raises its mmap threshold after such a free, to the same effect), and a
 * program in rounds (mimalloc-bench's mstress: some 230 MiB of 4-10 MiB
 * blocks a round) keeps a round's areas from its second round on; but a
 * growing array's old copy, freed for one twice as large, which no later
 * request reuses, is unmapped at once instead of staying resident while the
 * program grows.  Areas cached for a decay period (KALLOC_DECAY_MS) are
 * unmapped by the timed passes (leaving no shadow), which also decay the
 * peak and the workingset.  malloc_trim, and any mapping failure
 * (RLIMIT_AS), empty the cache.
 *
 * Locking: one vmap_lock for all regions (huge allocations are rare and
 * mmap itself dominates their cost).
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

constexpr unsigned VMAP_CHUNK_SHIFT = 21;            /* 2 MiB */
constexpr size_t VMAP_CHUNK_SIZE = 1ul << VMAP_CHUNK_SHIFT;

struct vm_region;
/* One entry per ZONE_SLOT_SIZE of the address space (256 KiB), mapped at the
 * first region's creation (null before: no huge block yet), so a process
 * that never makes one holds no such table in its data (RLIMIT_DATA, locked
 * by mlockall).  Read with an acquire load; written under zone_list_lock. */
extern vm_region **vmalloc_table;

constexpr unsigned VCACHE_SLOTS = 32;
/* How far above the recent peak of live bytes the live areas and the cache
 * may reach, once the program reuses areas (see above). */
constexpr size_t VCACHE_OVER_PEAK = 64ul << 20;
/* Shadows of unmapped areas kept (a ring: the newest overwrites the oldest),
 * and how long one counts. */
constexpr unsigned VSHADOW_SLOTS = 64;
constexpr uint32_t VSHADOW_WINDOW_MS = 2000;

/* Map a huge area of at least `size` bytes aligned to `align` (a power of
 * two; <= 2 MiB costs nothing extra).  *zeroed (if given) tells whether it
 * reads as zero (a fresh mapping) or was reused from the cache.  nullptr on
 * failure (errno ENOMEM). */
void *vmalloc(size_t size, size_t align, bool *zeroed = nullptr);

/* A large request (size <= LARGE_MAX_SIZE, the zone's block sizes) served
 * from a cached area (at least size, at most VLEND_MAX_RATIO times it),
 * lent whole: the mapping stays as it is, the pages past the block's
 * page-rounded size are slack, outside its usable size and given back
 * (MADV_DONTNEED) while it lives, and its free caches the whole area
 * again.  nullptr (errno untouched) when no cached area fits.
 *
 * Memory the program freed is used before fresh memory, as glibc's heap
 * serves a freed chunk's space to the next smaller request: `file` over
 * /usr/bin mallocs a 7 MiB read buffer per file and, now and then, a
 * second one or a 2.5-4 MB block, one after the other in the same space
 * under glibc; kalloc kept the second buffer's area cached beside the zone
 * pages the smaller blocks were faulted into, and the zone's watermark kept
 * those resident as its workingset (peak RSS 34.9 MB against glibc's 28.0).
 * Lent whole, not shrunk: the area goes back to the cache as it was (less
 * the slack's pages, faulted in again by its next user), for the huge
 * request that will ask for it again.  Up to three times the request, not
 * twice as for huge requests: the 2.5 and 2.9 MB blocks fit the 7 MiB area
 * only so (`file`: 33.6 MB with twice, 30.7 with three times; the slack's
 * drop costs no resident memory, only faults when the area is next used
 * whole). */
constexpr size_t VLEND_MAX_RATIO = 3;
void *vmalloc_cached(size_t size);

/* Unmap every cached free area and forget the retention's workingset and
 * peak (malloc_trim); returns the bytes released. */
size_t vmalloc_drain_cache();

/* Timed pass (mm/vmscan's decay hooks, no allocator lock held): unmap the
 * cached areas freed at least min_age ms before `now`, and decay the
 * retention's peak and workingset.  Returns the bytes released. */
size_t vmalloc_decay(uint32_t now, uint32_t min_age);

/* A zone's use reached a new high (the process is growing by other memory):
 * unmap the cached areas freed at least VCACHE_HIGH_MIN_AGE_MS ago, leaving
 * shadows (an eviction under pressure, as the kernel's).  A cached area is
 * memory the program freed; kept resident while the heap grows past its
 * peak, it raises the process's RSS peak by its size (LibreOffice's rounds
 * of a 64 MiB block left one cached through the rest of a conversion: 303
 * MB against glibc's 215).  Areas freed more recently stay: the program
 * may be in a round that takes them back.  Returns the bytes unmapped.
 * Takes vmap_lock: call with no allocator lock held. */
constexpr uint32_t VCACHE_HIGH_MIN_AGE_MS = 20;
size_t vmalloc_evict_at_high(uint32_t now);

/* The mapped length of the area starting at p, or 0 if p is not the start
 * of a live huge area (so free(p) of anything else is reported). */
size_t vmalloc_size(const void *p);

/* Whether p lies anywhere inside a vmalloc region (for error messages). */
bool is_vmalloc_addr(const void *p);

/* Unmap the area at p (vmalloc_size(p) must be non-zero). */
void vfree(void *p);

/* Resize the area at p to at least new_size bytes, in place or by moving
 * the mapping; returns the (possibly new) address or nullptr (p intact). */
void *vrealloc(void *p, size_t new_size);

/* Totals for statistics. */
struct vmalloc_stats {
    unsigned long nr_areas;     /* live huge areas */
    unsigned long bytes;        /* bytes mapped by them */
    unsigned long nr_allocs;    /* huge allocations made (a count) */
    unsigned long cached_bytes; /* bytes of freed areas kept mapped for reuse */
    unsigned long nr_cache_hits;/* allocations served from the cache (a count) */
    unsigned long nr_lent;      /* of them, large requests lent a whole area (vmalloc_cached) */
    unsigned long nr_regions;   /* regions of reserved address space (never given back) */
    unsigned long region_bytes; /* address space those regions reserve */
    unsigned long retain_bytes; /* what the cache may hold now (its workingset under the room below the peak) */
    unsigned long workingset_bytes; /* the cache's workingset: bytes reused (refaults of shadows, cache hits) */
    unsigned long peak_bytes;   /* retention's recent peak of live bytes */
};
vmalloc_stats vmalloc_get_stats();

void vmap_lock_for_fork();
void vmap_unlock_for_fork();
void vmap_reinit_lock();

} // namespace kalloc
