/*
 * kalloc/kalloc.h - the public C API of kalloc.
 *
 * kalloc is a drop-in malloc whose insides mirror the Linux kernel's memory
 * manager (zones, a buddy page allocator, SLUB-like slab caches).  It is used
 * in two ways:
 *
 *   1. LD_PRELOAD=/path/to/libkalloc.so program
 *      The shared library exports the whole glibc malloc surface (malloc,
 *      free, calloc, realloc, posix_memalign, ..., every C++ operator
 *      new/delete) and becomes the program's allocator without a rebuild.
 *      Linking a program against libkalloc.so (CMake target kalloc::kalloc,
 *      pkg-config kalloc) has the same effect.
 *
 *   2. The kalloc_ functions below, from either library.  The static library
 *      (kalloc::kalloc_static) exports only these prefixed functions, so a
 *      program can use kalloc next to the system malloc.  Memory from a
 *      kalloc_ function must be released with kalloc_free / kalloc_realloc.
 *
 * Semantics follow glibc's malloc (see docs/architecture.md for the details
 * kalloc guarantees): every block is aligned to at least 16 bytes,
 * failures return NULL with errno = ENOMEM, kalloc_free(NULL) does nothing,
 * and an invalid or double free prints one line naming the call and the
 * pointer on stderr, then aborts.
 *
 * Every function here is thread-safe and async-signal-unsafe, like malloc.
 */
#ifndef KALLOC_KALLOC_H
#define KALLOC_KALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KALLOC_EXPORT __attribute__((visibility("default")))
#define KALLOC_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#else
#define KALLOC_EXPORT
#define KALLOC_MALLOC_ATTR
#endif

#define KALLOC_VERSION_MAJOR 0
#define KALLOC_VERSION_MINOR 1
#define KALLOC_VERSION_PATCH 0

/** The library's version as "major.minor.patch". */
KALLOC_EXPORT const char *kalloc_version(void);

/** 1 when this library encodes the links between free objects
 *  (libkalloc-hardened.so, or a build with -DKALLOC_HARDENED=ON), else 0.
 *  Encoded, a link a program overwrites after a free (a use after free)
 *  decodes to a misaligned pointer, and the next malloc of that size class
 *  that would follow it aborts with "malloc(): corrupted free list" and the
 *  object's address instead of handing out memory the program chose; a
 *  zero or a 16-byte aligned value written over the link is always caught.
 *  Objects are handed out with the link cleared.  Costs 6 instructions on
 *  the malloc fast path and 3 on free's. */
KALLOC_EXPORT int kalloc_hardened(void);

/* ---------------------------------------------------------------------------
 * Allocation
 * ------------------------------------------------------------------------- */

/** Like malloc(3): at least `size` bytes aligned to 16, or NULL with
 *  errno = ENOMEM.  kalloc_malloc(0) returns a unique, freeable pointer. */
KALLOC_EXPORT KALLOC_MALLOC_ATTR void *kalloc_malloc(size_t size);

/** Like calloc(3): `n * size` zeroed bytes; NULL with errno = ENOMEM when
 *  the product overflows or memory runs out. */
KALLOC_EXPORT KALLOC_MALLOC_ATTR void *kalloc_calloc(size_t n, size_t size);

/** Like realloc(3).  kalloc_realloc(NULL, n) is kalloc_malloc(n);
 *  kalloc_realloc(p, 0) frees p and returns NULL (as glibc does).  On failure
 *  NULL is returned with errno = ENOMEM and p is left valid and unchanged. */
KALLOC_EXPORT void *kalloc_realloc(void *ptr, size_t size);

/** Like reallocarray(3): kalloc_realloc(ptr, n * size) with overflow
 *  checking (ENOMEM on overflow). */
KALLOC_EXPORT void *kalloc_reallocarray(void *ptr, size_t n, size_t size);

/** Like aligned_alloc(3).  `alignment` must be a power of two (a value that
 *  is not is rounded up to the next power of two, as glibc 2.36 does);
 *  any power of two up to at least 1 GiB works. */
KALLOC_EXPORT KALLOC_MALLOC_ATTR void *kalloc_aligned_alloc(size_t alignment, size_t size);

/** Like posix_memalign(3): returns 0, EINVAL (alignment not a power of two
 *  multiple of sizeof(void *)) or ENOMEM; *memptr is untouched on failure
 *  and errno is not changed. */
KALLOC_EXPORT int kalloc_posix_memalign(void **memptr, size_t alignment, size_t size);

/** Like memalign(3) (alignment rounded up to a power of two). */
KALLOC_EXPORT KALLOC_MALLOC_ATTR void *kalloc_memalign(size_t alignment, size_t size);

/** Like valloc(3): page aligned. */
KALLOC_EXPORT KALLOC_MALLOC_ATTR void *kalloc_valloc(size_t size);

/** Like pvalloc(3): page aligned, size rounded up to whole pages. */
KALLOC_EXPORT KALLOC_MALLOC_ATTR void *kalloc_pvalloc(size_t size);

/* ---------------------------------------------------------------------------
 * Release
 * ------------------------------------------------------------------------- */

/** Like free(3).  Never changes errno.  A pointer kalloc did not hand out,
 *  an interior pointer or a detected double free aborts with a message. */
KALLOC_EXPORT void kalloc_free(void *ptr);

/** C23 free_sized: `size` must be the size that was requested. */
KALLOC_EXPORT void kalloc_free_sized(void *ptr, size_t size);

/** C23 free_aligned_sized: for memory from kalloc_aligned_alloc. */
KALLOC_EXPORT void kalloc_free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* ---------------------------------------------------------------------------
 * Introspection and control
 * ------------------------------------------------------------------------- */

/** Like malloc_usable_size(3): the number of bytes that may be written at
 *  ptr (>= the requested size); 0 for NULL. */
KALLOC_EXPORT size_t kalloc_usable_size(const void *ptr);

/** Like malloc_trim(3): give free memory back to the operating system.
 *  Returns 1 if any memory was released, 0 otherwise. */
KALLOC_EXPORT int kalloc_trim(size_t pad);

/** Start (enable = 1) or stop (enable = 0) the background reclaimer, a
 *  thread that gives idle free memory back to the operating system even
 *  while the program makes no calls (the kernel's kswapd; also
 *  KALLOC_BACKGROUND=1, which waits until the program has a thread of its
 *  own, and =2).  This call starts it in any process: a single-threaded
 *  program that forks from signal handlers, calls unshare(CLONE_NEWUSER) or
 *  changes its credentials with per-thread capabilities (glibc aborts a
 *  set*id call whose result differs between threads) must not ask for it.
 *  enable < 0 only asks.  A forked child has no
 *  such thread until it calls this again.  Returns 1 if the thread is
 *  running afterwards, else 0. */
KALLOC_EXPORT int kalloc_background(int enable);

/** Whether `ptr` lies in memory kalloc manages (1) or not (0).  Never
 *  faults, whatever the pointer. */
KALLOC_EXPORT int kalloc_owns(const void *ptr);

/** A snapshot of kalloc's counters, in bytes unless stated otherwise.
 *  Figures are gathered without stopping other threads, so they are
 *  consistent per field but may be slightly stale relative to each other. */
struct kalloc_stats {
    uint64_t mapped;          /**< address space committed by zones and huge mappings */
    uint64_t resident;        /**< resident set of the whole process (from /proc/self/statm) */
    uint64_t in_use;          /**< bytes handed out to the program (by size class / pages) */
    uint64_t slab_bytes;      /**< bytes in slab pages (in use and free objects) */
    uint64_t slab_objects;    /**< objects currently handed out from slabs (incl. thread caches' view) */
    uint64_t large_bytes;     /**< bytes in large (page-granular, buddy) allocations */
    uint64_t huge_bytes;      /**< bytes in huge (direct mmap, "vmalloc") allocations */
    uint64_t free_pages;      /**< free buddy pages in all zones, counted in 4 KiB pages */
    uint64_t free_resident_pages; /**< of free_pages, those still backed by memory */
    uint64_t reclaimed_pages; /**< pages given back to the OS with madvise so far */
    uint64_t nr_zones;        /**< zones created so far */
    uint64_t nr_thread_caches;/**< thread caches alive */
    uint64_t nr_slab_refills; /**< slow-path refills of thread caches from slabs (a count) */
    uint64_t nr_slab_flushes; /**< slow-path flushes of thread caches to slabs (a count) */
    uint64_t nr_large_allocs; /**< large allocations made so far (a count) */
    uint64_t nr_huge_allocs;  /**< huge allocations made so far (a count) */
};

/** Fill *out with the current counters.  Returns 0. */
KALLOC_EXPORT int kalloc_stats_get(struct kalloc_stats *out);

/** Print kernel-style views to stderr: buddyinfo (free blocks per order and
 *  migrate type, per zone), pagetypeinfo (pageblocks per type, mixed
 *  pageblocks), extfrag (fragmentation index and score), vmstat counters
 *  (page allocator, compaction, reclaim), hugepage coverage, slabinfo (per
 *  size class) and totals.  Also what
 *  malloc_stats() prints, and what KALLOC_STATS=1 prints at exit. */
KALLOC_EXPORT void kalloc_stats_print(void);

/** Same as kalloc_stats_print, written to file descriptor `fd`. */
KALLOC_EXPORT void kalloc_stats_print_fd(int fd);

/* ---------------------------------------------------------------------------
 * Memory management views and compaction
 * ------------------------------------------------------------------------- */

/** Version of struct kalloc_vmstat this header describes. */
#define KALLOC_VMSTAT_VERSION 14  /* 2: thp_fault_advised; 3: thp_fault_slow; 4: thp_split_underused;
                                     5: mesh_*; 6: thp_kept_pages; 7: residency_*,
                                     workingset_refault; 8: madvise_batch*; 9: run_fit;
                                     10: slab_hole*; 11: large_fault_around*, large_probe*;
                                     12: thread_rounds*; 13: mesh_fail_map, memfd_lost;
                                     14: memfd_sandboxed */

/** Room in the per-migrate-type arrays of struct kalloc_vmstat. */
#define KALLOC_MIGRATE_TYPES_MAX 8
/** Indices of the per-migrate-type arrays (see docs/architecture.md). */
#define KALLOC_MIGRATE_UNMOVABLE 0   /**< allocator metadata */
#define KALLOC_MIGRATE_MOVABLE 1     /**< large blocks */
#define KALLOC_MIGRATE_RECLAIMABLE 2 /**< slabs of short-lived size classes */
#define KALLOC_MIGRATE_LONGLIVED 3   /**< slabs of long-lived size classes */

/** A vmstat-style snapshot of the page allocator, pageblock grouping,
 *  fragmentation, compaction and reclaim, with /proc/self/smaps_rollup's
 *  hugepage figures.  Pages are 4 KiB pages; counts of events are totals
 *  since start-up.
 *
 *  ABI rule: the caller sets `size` to sizeof(struct kalloc_vmstat) as it
 *  was compiled (and should zero the rest).  kalloc fills at most `size`
 *  bytes, then sets `size` to the bytes it filled and `version` to its
 *  KALLOC_VMSTAT_VERSION.  Fields are only ever appended, never moved or
 *  removed, so a program built against an older header keeps working with
 *  a newer kalloc, and fields a older kalloc does not know are left as the
 *  caller set them. */
struct kalloc_vmstat {
    uint32_t size;                /**< in: the caller's sizeof; out: bytes filled */
    uint32_t version;             /**< out: KALLOC_VMSTAT_VERSION of the library */
    /* --- page allocator --- */
    uint64_t nr_spanned_pages;    /**< pages mapped by the zones */
    uint64_t nr_free_pages;       /**< free pages in the buddy allocator */
    uint64_t nr_free_resident;    /**< of those, still backed by memory */
    uint64_t pgalloc;             /**< blocks allocated from the buddy lists */
    uint64_t pgfree;              /**< blocks freed */
    uint64_t pgfallback;          /**< allocations served from another migrate type */
    uint64_t pageblock_claims;    /**< fallbacks that claimed a whole pageblock */
    uint64_t zone_grow;           /**< times a zone was grown */
    uint64_t pgreclaim;           /**< pages given back to the OS (madvise) so far */
    /* --- pagetypeinfo (pageblocks are 2 MiB) --- */
    uint64_t nr_migrate_types;    /**< entries used in the arrays below */
    uint64_t nr_pageblocks[KALLOC_MIGRATE_TYPES_MAX];       /**< pageblocks tagged with each type */
    uint64_t nr_mixed_pageblocks[KALLOC_MIGRATE_TYPES_MAX]; /**< of those, holding allocations of >1 type */
    uint64_t nr_free_pages_type[KALLOC_MIGRATE_TYPES_MAX];  /**< free pages on each type's lists */
    uint64_t nr_mixed_total;      /**< pageblocks holding allocations of more than one type */
    uint64_t nr_empty_pageblocks; /**< pageblocks holding no allocation */
    /* --- fragmentation --- */
    uint64_t fragmentation_score; /**< 0..100: share of free pages not in free 2 MiB blocks */
    int64_t fragmentation_index;  /**< the kernel's extfrag index for order 9, highest zone's:
                                       -1000 (a free 2 MiB block exists) or 0..1000 */
    /* --- compaction --- */
    uint64_t compact_stall;       /**< direct compactions (an allocation about to grow a zone) */
    uint64_t compact_success;     /**< compactions that helped */
    uint64_t compact_fail;        /**< compactions that did not */
    uint64_t compact_deferred;    /**< compactions skipped by the backoff */
    uint64_t compact_wake;        /**< proactive compactions run */
    uint64_t compact_full;        /**< kalloc_compact() calls */
    uint64_t compact_free_scanned;  /**< free blocks ordered by the free scanner */
    uint64_t compact_slabs_ordered; /**< partial slabs ordered for allocation */
    uint64_t compact_released;    /**< pages given back to the OS by compaction */
    /* --- slab lifetimes --- */
    uint64_t slab_classes_shortlived; /**< size classes whose new slabs are short-lived */
    uint64_t slab_classes_longlived;  /**< size classes whose new slabs are long-lived */
    uint64_t slab_lifetime_changes;   /**< times a class changed between the two */
    /* --- hugepages (from /proc/self/smaps_rollup; 0 when unreadable) --- */
    uint64_t rss_bytes;           /**< Rss of the whole process */
    uint64_t anon_huge_bytes;     /**< AnonHugePages: of Rss, backed by transparent hugepages */
    /* --- reclaim (mm/vmscan: watermarks, decay, kswapd) and hugepages --- */
    uint64_t pgreclaim_wmark;     /**< pages given back by watermark reclaim (crossing low) */
    uint64_t pgdecay;             /**< pages given back because they stayed free ~1 s (decay) */
    uint64_t pgtrim;              /**< pages given back by malloc_trim / kalloc_trim */
    uint64_t pgshrink;            /**< idle pages unmapped from the tops of zones */
    uint64_t pgscan;              /**< free blocks isolated by reclaim or decay */
    uint64_t wmark_low_hits;      /**< frees that pushed a zone over its low watermark */
    uint64_t direct_reclaim;      /**< reclaim passes run by the program's own threads */
    uint64_t kswapd_wake;         /**< wake-ups sent to the background reclaimer */
    uint64_t kswapd_runs;         /**< passes run by the background reclaimer */
    uint64_t decay_runs;          /**< timed passes (decay, cgroup check, THP scan) */
    uint64_t cgroup_pressure;     /**< timed passes that found RSS near the cgroup limit */
    uint64_t thp_madvised;        /**< pageblocks marked MADV_HUGEPAGE (dense) */
    uint64_t thp_nohuge;          /**< pageblocks marked MADV_NOHUGEPAGE (sparse; in THP `always`
                                       mode also every pageblock a zone grows by) */
    uint64_t thp_collapsed;       /**< pageblocks collapsed with MADV_COLLAPSE */
    uint64_t hugetlb_pages;       /**< 4 KiB pages mapped from hugetlbfs (KALLOC_HUGETLB=1) */
    /* --- version 2 --- */
    uint64_t thp_fault_advised;   /**< fresh pageblocks of a busy zone marked MADV_HUGEPAGE before
                                       their first touch (their first fault maps a hugepage) */
    /* --- version 3 --- */
    uint64_t thp_fault_slow;      /**< of those, the ones whose first fault was measured slow
                                       (KALLOC_THP=3: fresh pageblocks then keep small pages
                                       for a while) */
    /* --- version 4 --- */
    uint64_t thp_split_underused; /**< whole hugepages reclaim split because at least half of
                                       them was free, counting the free objects of their slabs
                                       (the kernel's split of underused hugepages) */
    /* --- version 5: meshing (KALLOC_MESH=1; zero otherwise) --- */
    uint64_t mesh_pages;          /**< slab pages merged into another's physical page now */
    uint64_t mesh_success;        /**< pairs of slabs merged */
    uint64_t mesh_attempt;        /**< pairs of slabs compared */
    uint64_t mesh_fail_overlap;   /**< of those, with an object live in both */
    uint64_t unmesh;              /**< merged pages given back when their slab emptied */
    uint64_t mesh_skip_threads;   /**< passes skipped: the process had more than one thread */
    /* --- version 6 --- */
    uint64_t thp_kept_pages;      /**< free resident pages the latest watermark passes left in
                                       place because they lie in whole hugepages under half
                                       free (reclaim would split them; decay and trim still
                                       take them); part of kalloc_stats' free_resident_pages */
    /* --- version 7: residency (KALLOC_RESIDENCY, on by default) --- */
    uint64_t residency_reads;     /**< free blocks whose resident pages reclaim read (mincore)
                                       before giving memory back */
    uint64_t residency_untouched; /**< pages of those blocks found wholly not resident (never
                                       touched by the program): given back without a refault
                                       to come */
    uint64_t residency_uncounted; /**< pages those reads found not resident in blocks counted
                                       resident: nr_free_resident (and the watermarks) no
                                       longer count them */
    uint64_t workingset_refault;  /**< pages allocated again from blocks reclaim had given back
                                       (the kernel's workingset_refault): what giving back cost */
    /* --- version 8 --- */
    uint64_t madvise_batches;     /**< process_madvise calls that gave a batch of free blocks
                                       back at once (Linux 6.15+, no seccomp filter seen: one
                                       system call and one TLB flush for the batch instead of one
                                       per block; before version 9, multi-threaded processes only) */
    uint64_t madvise_batched_ranges; /**< free blocks those calls gave back */
    /* --- version 9 --- */
    uint64_t run_fit;             /**< large allocations placed by best fit in a run of free
                                       blocks that are not buddies (across buddy boundaries:
                                       resident runs first, then any free memory before the
                                       heap grows) */
    /* --- version 10: slab holes (free pages inside slabs still in use) --- */
    uint64_t slab_holes_punched;  /**< pages made holes (queued to be given back) */
    uint64_t slab_holes_refaulted;/**< hole pages given back, then needed again by their slab */
    uint64_t slab_holes_cancelled;/**< hole pages taken out of the batch before it went back
                                       (their slab needed them, or was freed): never given back */
    uint64_t slab_hole_pages;     /**< pages that are holes now */
    uint64_t slab_hole_madvise;   /**< system calls that gave holes back (one process_madvise
                                       per batch of up to 32 ranges where allowed) */
    uint64_t slab_hole_batched;   /**< ranges those batch calls gave back */
    /* --- version 11: fault-around for large blocks (KALLOC_FAULT_AROUND) --- */
    uint64_t large_fault_around;  /**< pages of large blocks that read zero faulted in with one
                                       call when handed out (the program touched its large
                                       blocks whole, as probes showed) */
    uint64_t large_probes_read;   /**< large blocks left to the program's faults (probes) whose
                                       touched pages were counted at their free */
    uint64_t large_probe_pages;   /**< the pages of those probes */
    uint64_t large_probe_touched; /**< of which the program had touched (resident at the free) */
    /* --- version 12: threads in rounds --- */
    uint64_t thread_rounds;       /**< rounds threads completed in a streak (a thread's use back
                                       near its peak after falling under an eighth of it, the
                                       second time or more in a row) */
    int64_t thread_rounds_pages;  /**< pages threads in rounds are below their peaks now: free
                                       memory reclaim keeps for their next rounds */
    /* --- version 13 --- */
    uint64_t mesh_fail_map;       /**< pairs of slabs left unmerged because the kernel refused
                                       the remap (vm.max_map_count reached); each ends its pass */
    uint64_t memfd_lost;          /**< memory-file zones (KALLOC_MESH) whose descriptor the
                                       program closed: no more growth or meshing in them */
    /* --- version 14 --- */
    uint64_t memfd_sandboxed;     /**< memory-file zones made private anonymous memory because
                                       a seccomp filter may kill the calls meshing makes
                                       (memfd_create, fallocate, lseek): no more meshing in them */
};

/** Fill *out (see the ABI rule above: set out->size first).  Returns 0, or
 *  -1 with errno = EINVAL when out is NULL or out->size is smaller than the
 *  two header fields.  Takes the allocator's locks briefly; walks every
 *  pageblock's descriptors, so it costs about a microsecond per 2 MiB of
 *  heap. */
KALLOC_EXPORT int kalloc_vmstat_get(struct kalloc_vmstat *out);

/** Compact now (the kernel's mm/compaction, on free memory: objects never
 *  move): flush the calling thread's cache, drain the per-CPU page lists,
 *  free empty slabs, order free pages and partial slabs so new allocations
 *  fill the fullest slabs and 2 MiB pageblocks first, and give every free
 *  page back to the operating system.  Returns the bytes given back (whose
 *  memory was resident before the call). */
KALLOC_EXPORT size_t kalloc_compact(void);

/** Flush the calling thread's cache back to the slab layer (as done when a
 *  thread exits).  Useful before measuring. */
KALLOC_EXPORT void kalloc_thread_flush(void);

#ifdef __cplusplus
}
#endif

#endif /* KALLOC_KALLOC_H */
