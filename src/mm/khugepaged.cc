/*
 * mm/khugepaged.cc - the hugepage policy for pageblocks (see khugepaged.h).
 */
#include "mm/khugepaged.h"

#include <errno.h>

#include "mm/per_cpu_pages.h"
#include "mm/vmscan.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/timekeeping.h"

namespace kalloc {

thp_mode thp_enabled;
thp_mode thp_system;
uint32_t thp_process_checked;  /* ktime_get_coarse_ms() of the last look at THP_enabled */

namespace {

bool collapse_works = true;    /* MADV_COLLAPSE is known (cleared on EINVAL) */
bool populate_works = true;    /* MADV_POPULATE_WRITE is known (cleared on EINVAL) */

/* KALLOC_THP=3's state, shared by all zones.  Written under whichever zone
 * lock the caller holds, so two zones may race: a lost update costs one
 * probe more or less, never a wrong mapping. */
unsigned long fault_skip;      /* fresh pageblocks left to keep small before the next probe */
unsigned long fault_backoff;   /* the last skip after a slow probe (0: the last probe was cheap) */

inline void stat_add(unsigned long &c, unsigned long v) { __atomic_fetch_add(&c, v, __ATOMIC_RELAXED); }

void *pageblock_address(zone *z, unsigned long pb)
{
    return (void *)(z->zone_start + ((pb << pageblock_order) << PAGE_SHIFT));
}

constexpr size_t PAGEBLOCK_BYTES = pageblock_nr_pages << PAGE_SHIFT;

} // namespace

/* The system's mode for this process: never where the process has THP
 * turned off (prctl(PR_SET_THP_DISABLE), inherited across fork and exec:
 * "THP_enabled: 0" in /proc/self/status, Linux >= 5.0); the kernel then
 * maps no hugepage whatever the advice. */
static thp_mode thp_mode_for_process(thp_mode system)
{
    if (system <= THP_NEVER)
        return system;
    static const char *const keys[] = {"THP_enabled:"};
    uint64_t on = 1;            /* no such line (older kernel): as the system says */
    os_read_fields("/proc/self/status", keys, &on, 1);
    return on ? system : THP_NEVER;
}

void khugepaged_recheck_process()
{
    khugepaged_mode();          /* the system's mode first (read at the first need) */
    thp_mode system = READ_ONCE(thp_system);
    uint32_t now = (uint32_t)ktime_get_coarse_ms();
    if (system <= THP_NEVER || now - READ_ONCE(thp_process_checked) < KHUGEPAGED_PROCESS_RECHECK_MS)
        return;
    WRITE_ONCE(thp_process_checked, now);
    WRITE_ONCE(thp_enabled, thp_mode_for_process(system));
}

void khugepaged_init()
{
    if (READ_ONCE(thp_enabled) != THP_UNKNOWN)
        return;
    char buf[128];
    thp_mode m = THP_NEVER;     /* no THP support at all reads as never */
    if (os_read_file("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf)) > 0) {
        /* "always [madvise] never": the bracketed word is the mode. */
        for (const char *s = buf; *s; s++)
            if (*s == '[') {
                if (s[1] == 'a')
                    m = THP_ALWAYS;
                else if (s[1] == 'm')
                    m = THP_MADVISE;
                break;
            }
    }
    thp_system = m;
    /* The process's switch is read when a decision first needs it
     * (khugepaged_recheck_process, before a fresh pageblock's advice or a
     * scan), not here: a short process (a shell's child, git's) makes
     * neither, and the read of /proc/self/status was a third of kalloc's
     * system calls at start.  Until then the system's mode stands; what it
     * may do meanwhile in a process with THP turned off (MADV_NOHUGEPAGE on
     * a growth in `always` mode) the kernel ignores there. */
    thp_process_checked = (uint32_t)ktime_get_coarse_ms() - KHUGEPAGED_PROCESS_RECHECK_MS;
    __atomic_store_n(&thp_enabled, m, __ATOMIC_RELEASE);   /* after thp_system */
}

/* Make the first page of [addr, 2 MiB) resident now, the pageblock having
 * just been advised MADV_HUGEPAGE, and tell whether that fault was slow: it
 * cost this thread more CPU time than KALLOC_THP_FAULT_US.  On this
 * machine's VM a hugepage whose 2 MiB the guest kernel had reported to the
 * host costs 1.7-4 ms to fault (the host faults it in again), one freed
 * less than ~2 s ago 0.1 ms, and 512 small faults 0.75 ms. */
static bool thp_fault_probe_slow(void *addr)
{
    unsigned long t0 = ktime_get_thread_cpu_ns();
    int err = os_populate_write(addr, PAGE_SIZE);
    unsigned long dt = ktime_get_thread_cpu_ns() - t0;
    if (err == EINVAL) {
        populate_works = false;     /* kernel < 5.14: no probe, no more advice */
        return false;
    }
    return dt > (unsigned long)option_get(OPT_THP_FAULT_US) * 1000;
}

bool khugepaged_large_written_whole;

bool __khugepaged_fresh_pageblocks(zone *z, unsigned long pfn, unsigned order, migratetype mt)
{
    /* Large blocks under 2 MiB are cut from power-of-two blocks whose tails
     * wait on the free lists for a smaller request: in a hugepage those
     * tails are resident (idle-drift's burst peaked 22 MiB higher, 7 MiB
     * without them).  Their pageblocks are left to the dense-block collapse.
     * Larger ones only while the program is seen to write its large blocks
     * whole: 40 blocks of 1,500 KiB (order 9) written at two places each
     * peaked at 21-47 MiB against 2.9 with small pages (each first touch
     * mapped 2 MiB; how many depends on the probes' backoff on this VM),
     * 52-74 MiB against 27 beside a 24 MiB heap. */
    if (mt == MIGRATE_MOVABLE &&
        (order < pageblock_order || !READ_ONCE(khugepaged_large_written_whole)))
        return false;
    /* A memory-file zone (KALLOC_MESH): its hugepages are shmem's, governed
     * by /sys/kernel/mm/transparent_hugepage/shmem_enabled, not by madvise. */
    if (z->backing != ZONE_BACKING_ANON)
        return false;
    /* `never`: nothing.  In `always` mode fresh pageblocks were advised
     * MADV_NOHUGEPAGE when the zone grew (khugepaged_zone_grown), so the
     * same rule as in `madvise` mode decides. */
    long mode = option_get(OPT_THP);
    if (mode < THP_OPT_FIRST_FAULT || z->spanned_pages - z->nr_free_pages < KHUGEPAGED_FAULT_MIN_INUSE)
        return false;
    khugepaged_recheck_process();   /* after the cheap tests: a small process never reads it */
    if (khugepaged_mode() < THP_MADVISE)
        return false;
    if (z->nr_hugetlb_pages)
        return false;           /* KALLOC_HUGETLB: hugetlbfs pages, or ordinary ones by choice */
    bool measured = mode >= THP_OPT_MEASURED;
    if (measured) {
        if (!populate_works)
            return false;
        unsigned long skip = READ_ONCE(fault_skip);
        if (skip) {
            WRITE_ONCE(fault_skip, skip - 1);
            return false;       /* backing off after a slow probe */
        }
    }
    unsigned long first = pfn >> pageblock_order;
    unsigned long last = (pfn + (1ul << order) - 1) >> pageblock_order;
    for (unsigned long pb = first; pb <= last; pb++) {
        uint8_t f = z->pageblock_thp[pb];
        if (!(f & PB_THP_HUGE))
            os_hugepage(pageblock_address(z, pb), PAGEBLOCK_BYTES);
        stat_add(vm_reclaim_stats.thp_fault_advised, 1);
        /* Not resident at all, so the next fault maps a whole hugepage (also
         * when the block was made huge before and then given back whole). */
        WRITE_ONCE(z->pageblock_thp[pb],
                   (uint8_t)((f | PB_THP_HUGE | PB_THP_COLLAPSED | PB_THP_FAULT | PB_THP_FILLING) &
                             ~(PB_THP_NOHUGE | PB_THP_RECLAIMED)));
        if (!measured)
            continue;
        /* Probe the fault now, on the page the caller uses first. */
        void *addr = pb == first ? (void *)(z->zone_start + (pfn << PAGE_SHIFT))
                                 : pageblock_address(z, pb);
        if (thp_fault_probe_slow(addr)) {
            /* Keep the next fresh pageblocks small: 16, then 64, 256, 1024
             * of them (2 GiB) after each slow probe in a row, so slow probes
             * are O(log) of the heap's growth (3 for fragmentation's
             * 200 MiB).  The rest of this request stays small too. */
            unsigned long b = READ_ONCE(fault_backoff);
            b = b ? (b * 4 > KHUGEPAGED_FAULT_BACKOFF_MAX ? KHUGEPAGED_FAULT_BACKOFF_MAX : b * 4)
                  : KHUGEPAGED_FAULT_BACKOFF_MIN;
            WRITE_ONCE(fault_backoff, b);
            WRITE_ONCE(fault_skip, b);
            stat_add(vm_reclaim_stats.thp_fault_slow, 1);
            break;
        }
        WRITE_ONCE(fault_backoff, 0ul);
    }
    return true;
}

/* Set once by the slab layer; null: only the free lists count. */
static pageblock_free_bytes_fn pageblock_free_bytes = nullptr;

void khugepaged_register_free_bytes(pageblock_free_bytes_fn fn)
{
    if (READ_ONCE(pageblock_free_bytes) != fn)
        WRITE_ONCE(pageblock_free_bytes, fn);
}

/* A pageblock the free lists call dense (at most 1/8 free) may still be
 * mostly free objects in slabs, or holes: collapsing it would make all of
 * that resident (alloc-test's peak RSS went 30 -> 42-51 MiB in one run in
 * three, 11 collapses against 5).  Asked only before a block is made huge
 * or collapsed, not at every pass. */
static bool pageblock_dense(zone *z, unsigned long pb)
{
    pageblock_free_bytes_fn fn = READ_ONCE(pageblock_free_bytes);
    if (!fn)
        return true;
    return fn(z, pb << pageblock_order) <= ((unsigned long)KHUGEPAGED_DENSE_FREE << PAGE_SHIFT);
}

/* Whether pageblock pb's pages are resident, all but at most
 * KHUGEPAGED_DENSE_FREE of them (mincore): allocated is not written.  A
 * large block the program writes in part (rsync's receiver touched 12% of
 * its buffers' pages) makes its pageblock dense to the free lists, and
 * MADV_COLLAPSE then makes the untouched pages resident (as MADV_HUGEPAGE
 * lets the kernel's khugepaged do: its max_ptes_none is 511): `rsync -a` of
 * 13.5K files (199 MB) peaked at 60-108 MB against glibc's 7.6 MB, its
 * receiver with 46 collapses of 2 MiB for 0.6 MiB in use at the end.  With
 * no residency reads (a seccomp filter, KALLOC_RESIDENCY=0) nothing is
 * known, and no pageblock is made huge by the scan.  *allowed caches
 * whether reads may be made, per scan (0: not asked yet). */
static bool pageblock_resident(zone *z, unsigned long pb, int *allowed)
{
    if (*allowed == 0)
        *allowed = option_get(OPT_RESIDENCY) != 0 && !os_seccomp_filtered() ? 1 : -1;
    if (*allowed < 0)
        return false;
    long n = os_resident_pages(pageblock_address(z, pb), pageblock_nr_pages);
    return n >= 0 && (unsigned long)n + KHUGEPAGED_DENSE_FREE >= pageblock_nr_pages;
}

bool khugepaged_pageblock_whole(const zone *z, unsigned long pfn)
{
    if (option_get(OPT_THP) < THP_OPT_FIRST_FAULT)
        return false;
    uint8_t f = READ_ONCE(z->pageblock_thp[pfn >> pageblock_order]);
    return (f & PB_THP_FAULT) ||
           (f & (PB_THP_HUGE | PB_THP_COLLAPSED | PB_THP_RECLAIMED)) ==
               (PB_THP_HUGE | PB_THP_COLLAPSED);
}

bool khugepaged_range_may_be_huge(const zone *z, unsigned long pfn, unsigned long nr)
{
    /* The mode not read yet: every growth so far was advised small
     * (khugepaged_zone_grown), and the flags that make a block huge are
     * set only after a read (the fault advice and the scan read it first),
     * so only hugetlbfs pages can be huge: no read here (a short process's
     * first large block, ls's or cat's buffer). */
    const thp_mode mode = READ_ONCE(thp_enabled);
    for (unsigned long pb = pfn >> pageblock_order, last = (pfn + nr - 1) >> pageblock_order;
         pb <= last; pb++) {
        uint8_t f = READ_ONCE(z->pageblock_thp[pb]);
        if (f & PB_HUGETLB)
            return true;
        if (mode == THP_NEVER || mode == THP_UNKNOWN)
            continue;
        if (f & (PB_THP_HUGE | PB_THP_FAULT | PB_THP_COLLAPSED))
            return true;
        if (mode == THP_ALWAYS && !(f & PB_THP_NOHUGE))
            return true;
    }
    return false;
}

bool khugepaged_pageblock_filling(const zone *z, unsigned long pfn)
{
    if (option_get(OPT_THP) < THP_OPT_FIRST_FAULT)
        return false;
    uint8_t f = READ_ONCE(z->pageblock_thp[pfn >> pageblock_order]);
    return (f & (PB_THP_FAULT | PB_THP_FILLING)) == (PB_THP_FAULT | PB_THP_FILLING);
}

bool khugepaged_keep_resident(const zone *z, unsigned long pfn, unsigned order)
{
    if (order >= pageblock_order || !khugepaged_pageblock_whole(z, pfn))
        return false;
    return z->pageblock_nr_free[pfn >> pageblock_order] < KHUGEPAGED_SPARSE_FREE;
}

bool khugepaged_pageblock_sparse(zone *z, unsigned long pb, pageblock_free_bytes_fn fn)
{
    const unsigned long pfn = pb << pageblock_order;
    /* Counting walks the pageblock's 512 descriptors.  A block counted
     * dense cannot be half free before at least the missing bytes have been
     * freed in the zone: fragmentation's free phase otherwise counted the
     * same kept blocks on every watermark pass (5,909 counts, 21% of its
     * instructions), and the frees' slab holes counted them again for every
     * slab they looked at (345 counts at --scale=0.1, 2.7%).  Read before
     * counting, so a free the count misses is still ahead of the mark. */
    const uint32_t freed = (uint32_t)zone_freed_pages(z);
    const uint32_t next = READ_ONCE(z->pageblock_split_next[pb]);
    if (next && (int32_t)(next - freed) > 0)
        return false;
    unsigned long free_pages = fn(z, pfn) >> PAGE_SHIFT;
    if (free_pages < KHUGEPAGED_SPARSE_FREE) {
        uint32_t mark = freed + (uint32_t)(KHUGEPAGED_SPARSE_FREE - free_pages);
        WRITE_ONCE(z->pageblock_split_next[pb], mark ? mark : 1u);
        return false;
    }
    khugepaged_note_reclaim(z, pfn, 0);
    return true;
}

bool khugepaged_split_underused(zone *z, unsigned long pb)
{
    const unsigned long pfn = pb << pageblock_order;
    pageblock_free_bytes_fn fn = READ_ONCE(pageblock_free_bytes);
    if (!fn || !khugepaged_pageblock_whole(z, pfn))
        return false;
    if (!khugepaged_pageblock_sparse(z, pb, fn))
        return false;
    __atomic_fetch_add(&vm_reclaim_stats.thp_split_underused, 1, __ATOMIC_RELAXED);
    return true;
}

void khugepaged_note_reclaim(zone *z, unsigned long pfn, unsigned order)
{
    unsigned long last = (pfn + (1ul << order) - 1) >> pageblock_order;
    const thp_mode mode = khugepaged_mode();
    const bool thp = mode > THP_NEVER && option_get(OPT_THP);
    for (unsigned long pb = pfn >> pageblock_order; pb <= last; pb++) {
        uint8_t f = READ_ONCE(z->pageblock_thp[pb]);
        if (f & PB_HUGETLB)
            continue;
        if (thp && !(f & PB_THP_NOHUGE) && ((f & PB_THP_HUGE) || mode == THP_ALWAYS)) {
            /* A range given back inside a range the kernel may collapse:
             * its khugepaged would fill the holes again (max_ptes_none is
             * 511 by default: one present page is enough), so an idle
             * program's RSS would climb back by 2 MiB per collapse
             * (idle-drift-scattered: 67 -> 92 MiB in 20 s of idle).  Small
             * pages from now; the scan makes the block huge again once it
             * is dense (and collapses it: PB_THP_COLLAPSED goes). */
            os_nohugepage(pageblock_address(z, pb), PAGEBLOCK_BYTES);
            f = (uint8_t)((f | PB_THP_NOHUGE) &
                          ~(PB_THP_HUGE | PB_THP_COLLAPSED | PB_THP_RECLAIMED | PB_THP_FAULT |
                            PB_THP_FILLING));
            WRITE_ONCE(z->pageblock_thp[pb], f);
            stat_add(vm_reclaim_stats.thp_nohuge, 1);
            continue;
        }
        if (f & (PB_THP_HUGE | PB_THP_COLLAPSED))
            f |= PB_THP_RECLAIMED;
        /* A range given back splits the hugepage: the pageblock's other
         * reported pieces stay unbacked now. */
        WRITE_ONCE(z->pageblock_thp[pb], (uint8_t)(f & ~(PB_THP_FAULT | PB_THP_FILLING)));
    }
}

void khugepaged_scan(unsigned max_collapse, unsigned long budget_ns)
{
    khugepaged_recheck_process();   /* a program may turn THP off (Redis does, at start) */
    const thp_mode mode = khugepaged_mode();
    if (mode <= THP_NEVER || !option_get(OPT_THP))
        return;
    unsigned collapses = 0;
    int residency = 0;          /* pageblock_resident's: reads allowed (1), not (-1), not asked (0) */
    unsigned long start_ns = budget_ns ? ktime_get_ns() : 0;
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nz; i++) {
        zone *z = zones[i];
        if (z->backing != ZONE_BACKING_ANON)
            continue;           /* shmem THP: shmem_enabled decides (see above) */
        unsigned long spanned = READ_ONCE(z->spanned_pages);
        unsigned long nr_pb = spanned >> pageblock_order;
        /* A small heap (under KHUGEPAGED_FAULT_MIN_INUSE in use) keeps small
         * pages: a hugepage would make up to 2 MiB resident, a large share
         * of it, for TLB reach it hardly needs (realloc-string's 3.6 MiB
         * zone: one collapse, +0.6 MiB peak RSS). */
        bool small = spanned - READ_ONCE(z->nr_free_pages) < KHUGEPAGED_FAULT_MIN_INUSE;
        for (unsigned long pb = 0; pb < nr_pb; pb++) {
            uint8_t f = READ_ONCE(z->pageblock_thp[pb]);
            if (f & PB_HUGETLB)
                continue;
            unsigned nfree = READ_ONCE(z->pageblock_nr_free[pb]);   /* racy: a hint */
            if (nfree <= KHUGEPAGED_DENSE_FREE) {
                if (small && !(f & PB_THP_HUGE))
                    continue;
                bool want = !(f & PB_THP_COLLAPSED) || (f & PB_THP_RECLAIMED);
                if ((!(f & PB_THP_HUGE) || (want && collapse_works && collapses < max_collapse)) &&
                    (!pageblock_dense(z, pb) || !pageblock_resident(z, pb, &residency)))
                    continue;      /* dense pages, sparse contents (or pages never written) */
                if (!(f & PB_THP_HUGE)) {
                    os_hugepage(pageblock_address(z, pb), PAGEBLOCK_BYTES);
                    f = (uint8_t)((f | PB_THP_HUGE) & ~PB_THP_NOHUGE);
                    f &= (uint8_t)~PB_THP_COLLAPSED;
                    stat_add(vm_reclaim_stats.thp_madvised, 1);
                }
                /* Build the hugepage now: when the block first became dense
                 * and once it has refilled after reclaim. */
                want = !(f & PB_THP_COLLAPSED) || (f & PB_THP_RECLAIMED);
                if (want && collapse_works && collapses < max_collapse &&
                    (!budget_ns || !collapses || ktime_get_ns() - start_ns < budget_ns)) {
                    collapses++;
                    int err = os_collapse(pageblock_address(z, pb), PAGEBLOCK_BYTES);
                    if (err == 0) {
                        stat_add(vm_reclaim_stats.thp_collapsed, 1);
                    } else if (err == EINVAL) {
                        collapse_works = false;     /* kernel < 6.1: silently off */
                    } else {
                        stat_add(vm_reclaim_stats.thp_collapse_failed, 1);
                    }
                    /* Tried either way: do not retry every pass. */
                    f = (uint8_t)((f | PB_THP_COLLAPSED) & ~PB_THP_RECLAIMED);
                }
                WRITE_ONCE(z->pageblock_thp[pb], f);
            } else if (nfree >= KHUGEPAGED_SPARSE_FREE && !(f & PB_THP_NOHUGE) &&
                       ((f & PB_THP_HUGE) || mode == THP_ALWAYS) &&
                       (f & (PB_THP_FAULT | PB_THP_FILLING)) != (PB_THP_FAULT | PB_THP_FILLING)) {
                /* Sparse: small pages, so reclaim is not undone by a 2 MiB
                 * fault.  In `always` mode every sparse block needs it; in
                 * `madvise` mode only the ones kalloc made huge.  Not one
                 * the program is still filling (sparse because it started
                 * empty). */
                os_nohugepage(pageblock_address(z, pb), PAGEBLOCK_BYTES);
                f = (uint8_t)((f | PB_THP_NOHUGE) & ~(PB_THP_HUGE | PB_THP_COLLAPSED |
                                                      PB_THP_RECLAIMED | PB_THP_FAULT |
                                                      PB_THP_FILLING));
                WRITE_ONCE(z->pageblock_thp[pb], f);
                stat_add(vm_reclaim_stats.thp_nohuge, 1);
            }
        }
    }
}

void khugepaged_zone_grown(zone *z, unsigned long pfn, unsigned long nr)
{
    /* (Before session 39 fresh memory in `always` mode got a hugepage at
     * its first touch: one slab page made 2 MiB resident that kalloc
     * counted as given back, and the residency tests read 16 resident
     * pages where one was touched.) */
    /* The pageblocks the range touches: a growth need not start or end on
     * a pageblock boundary (mm/mmzone.h). */
    unsigned long first = pfn >> pageblock_order;
    unsigned long last = (pfn + nr + pageblock_nr_pages - 1) >> pageblock_order;
    /* Also while the mode is not read yet: reading it (sysfs, ~15 us in a
     * fresh process) would cost a short process more than this advice (one
     * madvise), and `always` mode would make each pageblock it touches a
     * hugepage.  Blocks advised small follow the `madvise` mode's rules in
     * every mode (see khugepaged_fault_advise). */
    const thp_mode mode = READ_ONCE(thp_enabled);
    if ((mode != THP_ALWAYS && mode != THP_UNKNOWN) || !nr)
        return;
    if (z->pageblock_thp[first] & PB_HUGETLB)
        return;                 /* mapped from hugetlbfs (a growth is all or none) */
    for (unsigned long pb = first; pb < last; pb++)
        WRITE_ONCE(z->pageblock_thp[pb], (uint8_t)PB_THP_NOHUGE);
    os_nohugepage((void *)(z->zone_start + (pfn << PAGE_SHIFT)), nr << PAGE_SHIFT);
    stat_add(vm_reclaim_stats.thp_nohuge, last - first);
}

void *zone_map_hugetlb(zone *z, void *addr, size_t len)
{
    /* Not under a seccomp filter: sandboxes kill on MAP_HUGETLB (Chromium's). */
    if (!option_get(OPT_HUGETLB) || os_seccomp_filtered())
        return nullptr;
    if (((uintptr_t)addr | len) & (PAGEBLOCK_BYTES - 1))
        return nullptr;
    char buf[2048];
    if (os_read_file("/proc/meminfo", buf, sizeof(buf)) <= 0)
        return nullptr;
    uint64_t free_huge = os_parse_field(buf, "HugePages_Free:", 0);
    uint64_t rsvd = os_parse_field(buf, "HugePages_Rsvd:", 0);
    uint64_t hsize = os_parse_field(buf, "Hugepagesize:", 0) << 10;
    void *p = nullptr;
    if (hsize == PAGEBLOCK_BYTES && free_huge > rsvd) {
        /* The pool's pages nobody has reserved, against what this mapping
         * reserves and, unless KALLOC_HUGETLB=2, what a forked child may
         * need: hugetlb memory is private copy-on-write across fork(), and
         * a write that finds no free hugepage to copy to kills the child
         * with SIGBUS (the kernel keeps the reserving parent's pages).  So
         * the process keeps as many unreserved as it holds, and a child
         * can write all of them once (session 39: Chaos under
         * KALLOC_HUGETLB=1 with a 128-page pool, its child of a fork beside
         * threads died of SIGBUS in 3 runs of 3). */
        uint64_t avail = free_huge - rsvd, want = len / hsize, held = 0;
        if (option_get(OPT_HUGETLB) != 2) {
            unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
            for (unsigned i = 0; i < n; i++)
                held += READ_ONCE(zones[i]->nr_hugetlb_pages) >> pageblock_order;
            want += held + want;        /* after the mapping: held + want kept free */
        }
        if (avail >= want)
            p = os_map_fixed_hugetlb(addr, len);
    }
    if (!p) {
        stat_add(vm_reclaim_stats.hugetlb_fallbacks, 1);
        return nullptr;
    }
    unsigned long first = ((uintptr_t)addr - z->zone_start) >> PAGE_SHIFT;
    for (unsigned long pfn = first; pfn < first + (len >> PAGE_SHIFT); pfn += pageblock_nr_pages)
        z->pageblock_thp[pfn >> pageblock_order] = PB_HUGETLB;
    z->nr_hugetlb_pages += len >> PAGE_SHIFT;
    stat_add(vm_reclaim_stats.hugetlb_pages, len >> PAGE_SHIFT);
    return p;
}

bool get_thp_coverage(thp_coverage *out, bool zones_only)
{
    *out = {};
    smaps_usage u;
    bool ok;
    if (!zones_only) {
        ok = os_smaps_usage(nullptr, 0, &u);
    } else {
        constexpr unsigned MAX_RANGES = 64;
        uintptr_t ranges[MAX_RANGES][2];
        unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE), n = 0;
        for (unsigned i = 0; i < nz; i++) {
            uintptr_t lo = zones[i]->zone_start, hi = lo + ZONE_SLOT_SIZE;
            if (n && ranges[n - 1][1] == lo)
                ranges[n - 1][1] = hi;          /* adjacent slots: one range */
            else if (n < MAX_RANGES)
                ranges[n][0] = lo, ranges[n++][1] = hi;
        }
        if (!n)
            return true;
        ok = os_smaps_usage(ranges, n, &u);
    }
    if (!ok)
        return false;
    out->rss = u.rss;
    out->anon_huge = u.anon_huge;
    out->hugetlb = u.hugetlb;
    return true;
}

} // namespace kalloc
