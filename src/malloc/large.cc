/*
 * malloc/large.cc - page-granular allocations from the buddy allocator:
 * placement, colours and fault-around (see large.h).
 */
#include "malloc/large.h"

#include <errno.h>
#include <string.h>

#include "malloc/tcache.h"
#include "mm/khugepaged.h"
#include "mm/page_alloc.h"
#include "mm/vmscan.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/spinlock.h"

namespace kalloc {

unsigned long nr_large_pages;
unsigned long nr_large_allocs;

/* The next colour of this thread's large blocks, in turn (large.h). */
static __thread uint32_t large_colour_next __attribute__((tls_model("initial-exec")));

/* The colour of a block of nr pages holding size bytes aligned to align. */
static unsigned large_pick_colour(unsigned long nr, size_t size, size_t align)
{
    size_t unit = align > LARGE_COLOUR_UNIT ? align : LARGE_COLOUR_UNIT;
    size_t slack = (nr << PAGE_SHIFT) - size;   /* < PAGE_SIZE: nr is size's page count */
    if (unit >= PAGE_SIZE || slack < unit || slack >= PAGE_SIZE)
        return 0;
    unsigned colours = (unsigned)(slack / unit) + 1;
    return (unsigned)(large_colour_next++ % colours * unit);
}

/* Fault-around (large.h): what the probes read.  Constant-initialised;
 * written under lock, read without it (an estimate). */
struct large_fault_around {
    spinlock_t lock;          /* guards the writes below (a probe read at most every
                               * LARGE_PROBE_MIN_MS, so never contended for long) */
    uint32_t touched;         /* pages of the probes read that the program touched
                               * (decayed with probed) */
    uint32_t probed;          /* pages of the probes read (halved with touched past
                               * LARGE_PROBE_DECAY_PAGES) */
    uint32_t last_read;       /* vmscan_now() of the last probe read, or of the first
                               * probe made (0: none yet) */
};
static large_fault_around fault_around = {SPINLOCK_INIT, 0, 0, 0};

large_fault_around_stats large_fa_stats;

/* MADV_POPULATE_WRITE was refused (EINVAL: a kernel before 5.14; EPERM: a
 * seccomp filter): fault-around is off for good, and no probe is left. */
static bool fault_around_refused;

/* Blocks this thread gave out reading zero while fault-around was on: every
 * LARGE_PROBE_EVERY-th of them is left to the program's faults (a probe). */
static __thread uint32_t fault_around_turn __attribute__((tls_model("initial-exec")));

/* Whether the probes say the program touches its large blocks whole. */
static inline bool fault_around_on()
{
    uint32_t probed = READ_ONCE(fault_around.probed), touched = READ_ONCE(fault_around.touched);
    return probed >= LARGE_PROBE_MIN_PAGES &&
           (uint64_t)touched * LARGE_FAULT_AROUND_DEN >= (uint64_t)probed * LARGE_FAULT_AROUND_NUM;
}

/* Block pg (nr pages at addr) reads zero and is about to be handed out:
 * fault it in now, or leave it as a probe. */
static void large_fault_around(page *pg, void *addr, unsigned long nr)
{
    const zone *z = page_zone(pg);
    if (!option_get(OPT_FAULT_AROUND) || z->backing != ZONE_BACKING_ANON || READ_ONCE(fault_around_refused))
        return;
    /* Where a fault may map a hugepage, the first touch maps it all anyway,
     * and the pages resident at the free would not tell what was touched. */
    if (khugepaged_range_may_be_huge(z, page_to_pfn(pg), nr))
        return;
    if (fault_around_on() && vmscan_cgroup_pressure() == 0 &&
        ++fault_around_turn % LARGE_PROBE_EVERY != 0) {
        int err = os_populate_write(addr, nr << PAGE_SHIFT);
        if (err == 0) {
            __atomic_fetch_add(&large_fa_stats.populated, nr, __ATOMIC_RELAXED);
            return;
        }
        if (err == EINVAL || err == EPERM) {
            WRITE_ONCE(fault_around_refused, true);
            return;
        }
    }
    /* The first probe starts the reads' clock: none is read before
     * LARGE_PROBE_MIN_MS (large.h; racy, a hint like the rest). */
    if (unlikely(!READ_ONCE(fault_around.last_read)))
        WRITE_ONCE(fault_around.last_read, vmscan_now());
    pg->flags |= PG_probe;
}

/* A probe is freed: read how many of its pages the program touched (at most
 * every LARGE_PROBE_MIN_MS, and never under a seccomp filter, which may kill
 * the process on mincore).  Returns that count, or -1 when not read. */
static __attribute__((noinline)) long large_probe_read(page *head, unsigned long nr)
{
    uint32_t now = vmscan_now();
    if ((uint32_t)(now - READ_ONCE(fault_around.last_read)) < LARGE_PROBE_MIN_MS ||
        !spin_trylock(&fault_around.lock))
        return -1;
    long touched = -1;
    if ((uint32_t)(now - fault_around.last_read) >= LARGE_PROBE_MIN_MS &&
        !khugepaged_range_may_be_huge(page_zone(head), page_to_pfn(head), nr)) {
        /* (A pageblock made huge since the block was handed out, or
         * collapsed, would show pages the program never touched.) */
        fault_around.last_read = now;
        if (!os_seccomp_filtered())
            touched = os_resident_pages(page_address(head), nr);
    }
    if (touched >= 0) {
        uint32_t probed = fault_around.probed + (uint32_t)nr;
        uint32_t got = fault_around.touched + (uint32_t)touched;
        while (probed > LARGE_PROBE_DECAY_PAGES) {
            probed /= 2;
            got /= 2;
        }
        WRITE_ONCE(fault_around.probed, probed);
        WRITE_ONCE(fault_around.touched, got);
        /* The hugepage policy's view of it (mm/khugepaged.h). */
        bool whole = fault_around_on();
        if (READ_ONCE(khugepaged_large_written_whole) != whole)
            WRITE_ONCE(khugepaged_large_written_whole, whole);
        large_fa_stats.probes_read++;
        large_fa_stats.probe_pages += nr;
        large_fa_stats.probe_touched += (unsigned long)touched;
    }
    spin_unlock(&fault_around.lock);
    return touched;
}

void large_fault_around_reinit_lock() { spin_lock_init(&fault_around.lock); }

const char *large_fault_around_state(unsigned *touched, unsigned *probed)
{
    *touched = READ_ONCE(fault_around.touched);
    *probed = READ_ONCE(fault_around.probed);
    if (!option_get(OPT_FAULT_AROUND) || READ_ONCE(fault_around_refused))
        return "disabled";
    return fault_around_on() ? "on" : "off";
}

void *kmalloc_large(size_t size, size_t align, bool zero)
{
    unsigned long nr = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
    if (nr == 0)
        nr = 1;
    bool zeroed = false;
    page *pg;
    if (align <= PAGE_SIZE) {
        pg = alloc_pages_exact(nr, MIGRATE_MOVABLE, &zeroed);
    } else {
        /* Buddy blocks are aligned to their size: ask for one at least as
         * large as the alignment and give back the tail. */
        unsigned order = ceil_log2(nr);
        unsigned aorder = floor_log2(align) - PAGE_SHIFT;
        if (aorder > order)
            order = aorder;
        pg = alloc_pages(order, MIGRATE_MOVABLE, &zeroed);
        if (pg && nr < (1ul << order))
            free_pages_exact(pg + nr, (1ul << order) - nr);
    }
    if (!pg)
        return nullptr;
    /* Only the head is marked: a large block is recognised by its head page
     * alone (classify() in malloc.cc), and PG_head never outlives the block
     * (__free_one_page clears it), so the tails need no descriptor writes
     * (256 of them for 1 MiB). */
    pg->flags = PG_large | PG_head;
    pg->compound_head = 0;
    pg->nr_pages = (uint32_t)nr;
    pg->colour = (uint16_t)large_pick_colour(nr, size, align);
    __atomic_fetch_add(&nr_large_pages, nr, __ATOMIC_RELAXED);
    __atomic_fetch_add(&nr_large_allocs, 1, __ATOMIC_RELAXED);
    tcache_round_note((long)(nr << PAGE_SHIFT));
    void *p = large_address(pg);
    /* calloc.  Memory known to read zero (fresh, or given back) is faulted
     * in with one call, not left to the program: a program that reads a
     * calloc'd page before writing it (counters, tables, a check) maps the
     * shared zero page and then takes a second, copy-on-write fault at the
     * write, whose TLB flush interrupts every other CPU running a thread of
     * the process.  random-sizes (4 threads, a third of its blocks calloc'd
     * and checked zero, then written): 37% of all CPU time was in those
     * flushes; 1.20 -> 0.57 s (3 runs each, medians).  A 1 MiB calloc
     * written whole then freed and trimmed, 2,000 times: 355 -> 187 us each
     * (one call instead of 256 faults).  The price: a calloc'd block the
     * program leaves mostly untouched is resident whole (the same 1 MiB
     * with one page written: 27 -> 151 us, 1 MiB of RSS until freed), as
     * every calloc served from glibc's heap or tcmalloc's is.  Huge blocks
     * (vmalloc, above 4 MiB), where sparse tables live and glibc's calloc
     * is lazy (mmap), stay untouched. */
    if (zero && !zeroed)
        memset(p, 0, large_size(pg));
    else if (zero)
        os_populate_zeroed(page_address(pg), nr << PAGE_SHIFT);
    else if (zeroed)
        large_fault_around(pg, page_address(pg), nr);
    return p;
}

void kfree_large(page *head)
{
    unsigned long nr = head->nr_pages;
    long touched = -1;
    if (unlikely(head->flags & PG_probe)) {
        head->flags &= (uint16_t)~PG_probe;
        touched = large_probe_read(head, nr);
    }
    __atomic_fetch_sub(&nr_large_pages, nr, __ATOMIC_RELAXED);
    tcache_round_note(-(long)(nr << PAGE_SHIFT));
    /* A probe read found part of it touched: to the zone with that count
     * (none: given back now), so the reclaim pass its free would start does
     * not read it again (a short process that frees a buffer it used in
     * part, such as `cat` of a small file: one status read and one mincore
     * fewer, and with none touched one madvise as well).  Written whole, it
     * counts as any freed block does. */
    if (touched >= 0 && (unsigned long)touched < nr)
        free_pages_read(head, nr, (unsigned long)touched);
    else
        free_pages_exact(head, nr);
}

bool kmalloc_large_grow(page *head, size_t new_size)
{
    unsigned long nr = head->nr_pages;
    unsigned long want = (new_size + head->colour + PAGE_SIZE - 1) >> PAGE_SHIFT;
    if (want <= nr)
        return true;
    if (!grow_pages_exact_inplace(head, nr, want))
        return false;
    head->nr_pages = (uint32_t)want;
    __atomic_fetch_add(&nr_large_pages, want - nr, __ATOMIC_RELAXED);
    tcache_round_note((long)((want - nr) << PAGE_SHIFT));
    return true;
}

void kmalloc_large_shrink(page *head, size_t new_size)
{
    unsigned long nr = head->nr_pages;
    unsigned long keep = (new_size + head->colour + PAGE_SIZE - 1) >> PAGE_SHIFT;
    if (keep == 0 || keep >= nr)
        return;
    head->nr_pages = (uint32_t)keep;
    __atomic_fetch_sub(&nr_large_pages, nr - keep, __ATOMIC_RELAXED);
    tcache_round_note(-(long)((nr - keep) << PAGE_SHIFT));
    free_pages_exact(head + keep, nr - keep);
}

} // namespace kalloc
