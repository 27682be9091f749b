/*
 * mm/khugepaged.h - transparent hugepages for dense pageblocks, none for
 * sparse ones; hugetlbfs-backed zones; hugepage coverage.
 *
 * Mirrors mm/khugepaged.c (collapsing ranges into hugepages) and the
 * madvise side of mm/huge_memory.c.  Pageblocks are 2 MiB and 2 MiB
 * aligned, the x86-64 hugepage, so each is either worth a hugepage or not:
 *   dense   (at most 1/8 of its pages on the free lists: slab or large
 *           memory that is mostly allocated) -> MADV_HUGEPAGE, and
 *           MADV_COLLAPSE (Linux >= 6.1) to build the hugepage now instead
 *           of waiting for the kernel's khugepaged; a block is collapsed when
 *           it first becomes dense and again once it has refilled after
 *           reclaim gave part of it back;
 *   sparse  (at least half free) -> MADV_NOHUGEPAGE, so a fault in a range
 *           reclaim gave back maps 4 KiB, not 2 MiB (THP would otherwise undo
 *           reclaim); and any block memory is given back from turns
 *           MADV_NOHUGEPAGE at once (khugepaged_note_reclaim), else the
 *           kernel's khugepaged collapses it and fills the holes.
 * Hugepages at the first fault (`madvise` mode; KALLOC_THP=2 always,
 * KALLOC_THP=3, the default, while that fault is measured cheap, see
 * below): a range
 * that is MADV_HUGEPAGE before it is first touched gets a whole hugepage at
 * its first page fault (no collapse, no copy; 0.1 ms measured on 6.18, where
 * the 4 KiB faults of 2 MiB cost 0.4 ms).  So when the allocator starts to
 * fill a pageblock that is wholly free and not resident (fresh from zone
 * growth, or wholly given back) with slabs or metadata, or with a large
 * block of 2 MiB or more (smaller ones leave the tail of their power-of-two
 * block free, which a hugepage would make resident), and the zone already
 * holds KHUGEPAGED_FAULT_MIN_INUSE pages in use (sustained demand: a small
 * program keeps small pages, a hugepage makes all 2 MiB resident), the
 * pageblock is advised at once (__khugepaged_fresh_pageblocks, under the
 * zone lock) and marked PB_THP_FAULT: the fault makes all 2 MiB resident, so
 * its free pieces are resident free memory (not PG_reported) that reclaim
 * and decay see, until reclaim gives a piece back (which splits the
 * hugepage: the flag goes) or the block turns sparse.  Such a block counts
 * as collapsed: it is collapsed again only after reclaim gave part of it
 * back and it refilled, and turns MADV_NOHUGEPAGE like any other once
 * sparse.
 * Measured (KALLOC_THP=3): each advised fresh pageblock is faulted in at
 * once (MADV_POPULATE_WRITE of the caller's first page) and timed with the
 * thread's CPU clock; a fault over KALLOC_THP_FAULT_US (1 ms) is slow, and
 * the next 16, then 64, 256, 1024 fresh pageblocks keep small pages.  On a
 * VM with free page reporting (this machine: virtio_balloon, reporting
 * order 9) a hugepage is a 2 MiB block the host has dropped and faults in
 * again: 1.7-4 ms, where one freed less than ~2 s ago costs 0.1 ms and the
 * 512 small faults it replaces 0.75 ms (docs/architecture.md has the
 * figures).  Watermark reclaim (KALLOC_THP >= 2) leaves the free pieces of
 * a pageblock that is still one whole hugepage resident until half of it is
 * free (khugepaged_keep_resident): giving one back would split it.  Decay
 * (a piece idle for KALLOC_DECAY_MS) still gives it back.
 * Only when /sys/kernel/mm/transparent_hugepage/enabled is `madvise` or
 * `always` (read once; `never`: nothing is done) and KALLOC_THP is on.
 * MADV_COLLAPSE failing with EINVAL (older kernel) turns collapsing off
 * silently.  The scan runs with the timed reclaim pass (kswapd or the slow
 * path decay), collapsing for at most KHUGEPAGED_SLOWPATH_BUDGET_NS per pass
 * on the program's thread and KHUGEPAGED_COLLAPSE_BATCH blocks per pass on
 * kswapd.
 *
 * KALLOC_HUGETLB=1: zone growth maps from reserved hugetlbfs pages
 * (MAP_HUGETLB) when /proc/meminfo shows enough free ones, and falls back to
 * ordinary pages when not (or when the mmap fails).  Such pageblocks are
 * PB_HUGETLB: never reclaimed (a hugetlb page given back might not be
 * available again, and a fault would then be SIGBUS).
 *
 * Locking: the pageblock_thp flags are written with vmscan_lock held (the
 * scan, reclaim) or the zone lock (growth, a fresh pageblock's first fill:
 * then the block is wholly free, so the scan, which only changes dense or
 * sparse-and-huge blocks, does not write it at the same time); readers are
 * racy by design.  KALLOC_THP=3's probe faults a page in under the zone lock
 * (the kernel's fault takes no kalloc lock); its backoff state is shared by
 * the zones and written under whichever zone lock is held (a lost update
 * costs a probe more or less).
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

enum thp_mode : uint8_t { THP_UNKNOWN, THP_NEVER, THP_MADVISE, THP_ALWAYS };
extern thp_mode thp_enabled;        /* the system's transparent_hugepage/enabled, or THP_NEVER
                                     * where this process has THP turned off (prctl); THP_UNKNOWN
                                     * until a decision first needs it (khugepaged_mode) */
extern thp_mode thp_system;         /* the system's transparent_hugepage/enabled */
extern uint32_t thp_process_checked; /* when THP_enabled was last read (coarse ms) */
constexpr uint32_t KHUGEPAGED_PROCESS_RECHECK_MS = 1000;

/* Read this process's THP switch again (at most every
 * KHUGEPAGED_PROCESS_RECHECK_MS): a program may turn THP off, or on, with
 * prctl(PR_SET_THP_DISABLE) while it runs. */
void khugepaged_recheck_process();

constexpr unsigned KHUGEPAGED_DENSE_FREE = pageblock_nr_pages / 8;   /* at most this free: dense */
constexpr unsigned KHUGEPAGED_SPARSE_FREE = pageblock_nr_pages / 2;  /* at least this free: sparse */
/* MADV_COLLAPSE calls per scan: each copies 2 MiB under the mm's lock
 * (0.6 ms measured on an idle machine, 3-5 ms on a loaded one), so a scan
 * on the program's own thread collapses while it has spent less than
 * KHUGEPAGED_SLOWPATH_BUDGET_NS (at least one block; a pass runs every
 * 250 ms, so at most 0.8% of the thread's time), kswapd up to
 * KHUGEPAGED_COLLAPSE_BATCH. */
constexpr unsigned KHUGEPAGED_COLLAPSE_BATCH = 16;
constexpr unsigned long KHUGEPAGED_SLOWPATH_BUDGET_NS = 2000000;

/* In use (allocated) pages a zone must hold before fresh pageblocks are
 * advised at their first fill (16 MiB: the bench's small programs, 3-10 MiB
 * of RSS, keep small pages). */
constexpr unsigned long KHUGEPAGED_FAULT_MIN_INUSE = 8 * pageblock_nr_pages;

/* KALLOC_THP values (platform/options.h). */
constexpr long THP_OPT_FIRST_FAULT = 2;   /* fresh pageblocks huge at their first fault */
constexpr long THP_OPT_MEASURED = 3;      /* the same, backing off while that fault is slow */

/* KALLOC_THP=3: fresh pageblocks kept small after a slow probe: the first
 * time, then 4 times more after each further slow probe in a row, at most
 * KHUGEPAGED_FAULT_BACKOFF_MAX (a cheap probe starts over). */
constexpr unsigned long KHUGEPAGED_FAULT_BACKOFF_MIN = 16;
constexpr unsigned long KHUGEPAGED_FAULT_BACKOFF_MAX = 1024;

/* Whether the malloc layer's probes say the program writes its large blocks
 * whole (malloc/large.h, fault-around on): only then are the fresh
 * pageblocks large blocks take made huge at their first fault.  Set by that
 * layer, read racily. */
extern bool khugepaged_large_written_whole;

/* Read the THP mode (idempotent). */
void khugepaged_init();

/* The THP mode (thp_enabled), read at the first call that needs it: not at
 * start, where the sysfs read was ~15 us of a short process's ~1.2 ms (a
 * shell's child, git's); a zone's growth before then advises its fresh
 * memory small, as in `always` mode (khugepaged_zone_grown). */
static inline thp_mode khugepaged_mode()
{
    thp_mode m = __atomic_load_n(&thp_enabled, __ATOMIC_ACQUIRE);
    if (unlikely(m == THP_UNKNOWN)) {
        khugepaged_init();
        m = __atomic_load_n(&thp_enabled, __ATOMIC_ACQUIRE);
    }
    return m;
}

/* The free bytes of the pageblock starting at start_pfn, counted by the
 * layer that knows what its allocated blocks hold (the slab allocator: its
 * slabs' free objects and holes, which the free lists cannot see).  Takes
 * the zone lock.  The page allocator cannot include the slab layer, so the
 * slab layer registers it (the kernel's shrinker-style inversion). */
typedef unsigned long (*pageblock_free_bytes_fn)(zone *z, unsigned long start_pfn);
void khugepaged_register_free_bytes(pageblock_free_bytes_fn fn);

/* Walk every zone's pageblocks and madvise those that changed between dense
 * and sparse; collapse up to max_collapse newly dense (or refilled) ones,
 * and no more once budget_ns has been spent on collapses (0: no time limit).
 * Caller holds vmscan_lock. */
void khugepaged_scan(unsigned max_collapse, unsigned long budget_ns);

/* The allocator takes 2^order pages at pfn out of a free block of at least
 * a pageblock that is wholly PG_reported (not resident): advise the
 * pageblocks they touch MADV_HUGEPAGE before the first fault when the zone
 * is busy (see above), and mark them PB_THP_FAULT: their free pieces are
 * resident from now on.  True when it did.  Caller holds z->lock. */
bool __khugepaged_fresh_pageblocks(zone *z, unsigned long pfn, unsigned order, migratetype mt);

/* Watermark reclaim would give back the free block [pfn, pfn + 2^order) of
 * z: true when that would split a hugepage worth keeping, so reclaim leaves
 * the block resident (decay, for blocks idle KALLOC_DECAY_MS, does not ask): its pageblock is still one whole hugepage (made huge at its
 * first fault, or collapsed, and nothing of it given back since) and less
 * than half of it is free (KHUGEPAGED_SPARSE_FREE; past that the scan turns
 * it MADV_NOHUGEPAGE and reclaim takes its free pieces again).  Giving back a
 * piece splits the hugepage (thp_split_pmd) and the pageblock's next faults
 * are small: kv-ttl's spike kept 0% of its hugepages without this.  Only
 * with KALLOC_THP >= 2.  Caller holds z->lock. */
/* Whether pfn's pageblock is still one whole hugepage (faulted in huge, or
 * collapsed and never split by a reclaim since) while KALLOC_THP >= 2: a
 * 4 KiB madvise inside it would split it.  Used by the frees' slab holes. */
bool khugepaged_pageblock_whole(const zone *z, unsigned long pfn);
bool khugepaged_keep_resident(const zone *z, unsigned long pfn, unsigned order);

/* Whether a fault in [pfn, pfn + nr) may map a hugepage, or has: the range
 * meets a pageblock made MADV_HUGEPAGE (or huge at its first fault, or
 * collapsed), a hugetlb one, or in `always` mode any pageblock that is not
 * MADV_NOHUGEPAGE.  There the pages resident say little about the pages the
 * program touched (malloc/large.h's probes), and a fault maps them all
 * anyway.  No lock: the flags are read racily (a hint). */
bool khugepaged_range_may_be_huge(const zone *z, unsigned long pfn, unsigned long nr);

/* Whether pfn's pageblock was made huge at its first fault and has only been
 * allocated from since (PB_THP_FILLING): a growing heap is filling it, so
 * its free rest is resident by design and watermark reclaim leaves it (and
 * the timed scan does not turn it small for being sparse).  Giving that
 * rest back split the hugepage, and the heap faulted the pages in again,
 * 4 KiB at a time (a 96 MiB burst with cheap hugepages: 13 pageblocks made
 * huge, all split, 738 pages refaulted).  Ends at the first free in it
 * (khugepaged_note_free), or when decay gives an idle piece back. */
bool khugepaged_pageblock_filling(const zone *z, unsigned long pfn);

/* A page-allocator free (free_pages, free_pages_exact: pages the program
 * held) at pfn: its pageblock is no longer only being filled.  No lock: an
 * atomic and, so the flags others write meanwhile (the scan's, under
 * vmscan_lock) are not lost; taken only when the flag is set (a read). */
static inline void khugepaged_note_free(zone *z, unsigned long pfn)
{
    uint8_t *f = &z->pageblock_thp[pfn >> pageblock_order];
    if (__builtin_expect(__atomic_load_n(f, __ATOMIC_RELAXED) & PB_THP_FILLING, 0))
        __atomic_fetch_and(f, (uint8_t)~PB_THP_FILLING, __ATOMIC_RELAXED);
}

/* Reclaim kept a free block of pageblock pb of z in place to leave its
 * hugepage whole (khugepaged_keep_resident, which sees only the free lists).
 * If the block is still one whole hugepage and at least half of it is free
 * counting its slabs' free and parked objects (the slab layer's count,
 * khugepaged_register_free_bytes), mark it split (khugepaged_note_reclaim),
 * so reclaim takes its free blocks, and return true: the kernel's split of
 * underused hugepages (thp_underused, deferred_split_scan).  Caller holds
 * vmscan_lock, not z->lock (the count takes it). */
bool khugepaged_split_underused(zone *z, unsigned long pb);

/* Whether pageblock pb of z is at least half free (KHUGEPAGED_SPARSE_FREE)
 * by fn's count; if so it is marked split (khugepaged_note_reclaim).  A
 * block counted dense is not counted again until enough has been freed in
 * its zone to make it half free (zone freed_pages, pageblock_split_next):
 * until then the answer is false without a count.  fn may take z->lock. */
bool khugepaged_pageblock_sparse(zone *z, unsigned long pb, pageblock_free_bytes_fn fn);

/* [pfn, pfn + 2^order) of z was given back (reclaim, decay, a slab's holes,
 * malloc_trim): its pageblocks are no longer whole hugepages, and one the
 * kernel may collapse (advised huge, or `always` mode) is advised
 * MADV_NOHUGEPAGE at once, since the kernel's khugepaged would fill the
 * holes again.  The flags are written racily by the frees' callers (slab
 * holes: no vmscan_lock); a lost update only delays the scan's next
 * decision for the block. */
void khugepaged_note_reclaim(zone *z, unsigned long pfn, unsigned order);

/* Pages [pfn, pfn + nr) of anonymous zone z were just mapped.  In `always`
 * mode the kernel would back each of their pageblocks with a hugepage at
 * its first fault, whatever kalloc hands out there: they are advised
 * MADV_NOHUGEPAGE (PB_THP_NOHUGE), so hugepages come only where kalloc's
 * own rules put them (a busy zone's fresh pageblocks, dense ones), as in
 * `madvise` mode, and the residency kalloc counts is the kernel's.  The
 * same while the mode is not read yet (THP_UNKNOWN): a short process's
 * growth is advised small rather than paying for the read.  Zone growth,
 * z->lock held. */
void khugepaged_zone_grown(zone *z, unsigned long pfn, unsigned long nr);

/* Map [addr, addr + len) of z from hugetlbfs pages when KALLOC_HUGETLB asks
 * for it and enough are free; nullptr otherwise (the caller maps ordinary
 * memory).  KALLOC_HUGETLB=1 leaves as many of the pool's pages unreserved
 * as the process holds, so a forked child can copy every one it writes
 * (else SIGBUS); =2 takes all it finds.  Zone growth, z->lock held. */
void *zone_map_hugetlb(zone *z, void *addr, size_t len);

/* Hugepage coverage: Rss, AnonHugePages and hugetlb bytes of kalloc's zones
 * (zones_only) or the whole process, from /proc/self/smaps(_rollup).
 * False when the file cannot be read. */
struct thp_coverage {
    uint64_t rss;          /* resident bytes */
    uint64_t anon_huge;    /* of which in transparent hugepages */
    uint64_t hugetlb;      /* hugetlbfs bytes (not in rss) */
};
bool get_thp_coverage(thp_coverage *out, bool zones_only);

} // namespace kalloc
