/*
 * mm/mmzone.cc - creating and growing zones; the pointer -> zone table.
 *
 * Zones live at addresses kalloc picks itself (a randomised run of 4 GiB
 * aligned slots well away from where the kernel puts mmap()s and the heap),
 * mapped only where nothing is (os_map_fixed: the address as a hint, a
 * mapping that lands elsewhere undone), so nothing is ever overwritten and
 * an address taken by someone else simply moves kalloc to the next slot.
 * Growing in steps, instead of reserving 4 GiB up front, keeps kalloc within
 * RLIMIT_AS limits: when the limit is reached, growth fails and malloc
 * returns NULL with ENOMEM.
 */
#include "mm/mmzone.h"

#include <errno.h>
#include <string.h>

#include "mm/khugepaged.h"
#include "mm/mesh.h"
#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/vmscan.h"
#include "platform/cpu.h"
#include "platform/kthread.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/printk.h"

namespace kalloc {

void *zone_table[NR_ZONE_SLOTS];
zone *zones[MAX_NR_ZONES];
unsigned nr_zones;
spinlock_t zone_list_lock = SPINLOCK_INIT;

const char *const migratetype_names[MIGRATE_TYPES] = {"Unmovable", "Movable", "Reclaimable",
                                                       "LongLived"};

namespace {

/* Slots are handed out upward from a random start in [32 TiB, 48 TiB). */
constexpr uintptr_t SLOT_BASE = 0x2000;   /* slot index: 0x2000 << 32 = 32 TiB */
constexpr uintptr_t SLOT_RANGE = 0x1000;
uintptr_t next_slot;                       /* 0 until first use */
uint8_t slot_taken[NR_ZONE_SLOTS];         /* handed out (to a zone or a vmalloc region) */

} // namespace

uintptr_t __reserve_zone_slots(unsigned nr_slots)
{
    /* The first reservation finds nothing taken: it writes the map without
     * reading it first (a read of the never-touched page maps the zero page,
     * and the write then faults it again: one fault at start, not two). */
    bool first = !next_slot;
    if (first)
        next_slot = SLOT_BASE + (os_random_seed() % SLOT_RANGE);
    for (unsigned tries = 0; tries < 4096; tries++) {
        uintptr_t s = next_slot;
        if (s + nr_slots >= NR_ZONE_SLOTS) {
            next_slot = SLOT_BASE;        /* wrap once to the bottom of the range */
            continue;
        }
        bool taken = false;
        for (unsigned i = 0; i < nr_slots && !first; i++)
            if (slot_taken[s + i])
                taken = true;
        first = false;
        next_slot = s + (taken ? 1 : nr_slots);
        if (!taken) {
            for (unsigned i = 0; i < nr_slots; i++)
                slot_taken[s + i] = 1;
            return s << ZONE_SLOT_SHIFT;
        }
    }
    return 0;
}

/* The top a zone grows to: 1/8 of the zone more (4 MiB .. 64 MiB), ending
 * on a MAX_ORDER boundary and holding a free block of min_pages above what
 * the zone has (rounded up to a power of two: a buddy block, aligned to its
 * size).  *need: the lowest top that holds that block.  Returns 0 when it
 * would not fit under max_pages.
 *
 * A first growth of 1 MiB was tried (2026-12-07): the program's first
 * allocations of three migrate types then shared one pageblock, and each
 * request of a type that may not claim it took the largest free block of
 * another type (the kernel's fallback), so cat's 39 pages in use left 217
 * free pages in 94 blocks of 1-4 pages and the next 128 KiB buffer grew the
 * zone anyway.  So growth keeps whole MAX_ORDER blocks, and only a growth
 * the kernel refuses goes smaller (__zone_grow). */
static unsigned long zone_grow_top(const zone *z, unsigned long min_pages, unsigned long *need)
{
    constexpr unsigned long block = 1ul << MAX_ORDER;
    const unsigned long spanned = z->spanned_pages;
    const unsigned long size = 1ul << ceil_log2(min_pages ? min_pages : 1);
    *need = align_up(spanned, size) + size;
    unsigned long step = spanned / 8;
    if (step < block)
        step = block;
    if (step > 16 * block)
        step = 16 * block;
    unsigned long top = align_up(spanned + step > *need ? spanned + step : *need, block);
    if (top > z->max_pages)
        top = z->max_pages;
    return top >= *need ? top : 0;
}

bool zone_backing_check(zone *z)
{
    if (z->backing != ZONE_BACKING_MEMFD)
        return false;
    uint64_t dev, ino;
    if (os_fd_identity(z->backing_fd, &dev, &ino) && dev == z->backing_dev && ino == z->backing_ino)
        return true;
    /* Not closed by kalloc: the number may be the program's now. */
    z->backing_fd = -1;
    z->backing = ZONE_BACKING_MEMFD_LOST;
    z->full = true;
    __atomic_fetch_add(&pa_stats.memfd_lost, 1ul, __ATOMIC_RELAXED);
    return false;
}

/* Whether memory-file zones may map `bytes` more under RLIMIT_DATA.  The
 * kernel counts only private writable mappings against it (VmData), so a
 * program capping its heap with the limit would find no cap at all with
 * KALLOC_MESH=1 (one ran to 24 GB and the OOM killer); kalloc counts its
 * memory files' mapped pages with VmData, as if they were private. */
static bool zone_memfd_within_data_limit(unsigned long bytes)
{
    uint64_t limit = os_data_limit();
    if (limit == ~0ull)
        return true;
    static const char *const keys[] = {"VmData:"};
    uint64_t data_kb = 0;
    if (!os_read_fields("/proc/self/status", keys, &data_kb, 1))
        return true;            /* unknown (no /proc): the kernel's own count only */
    uint64_t shared = 0;
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nz; i++)
        if (zones[i]->backing != ZONE_BACKING_ANON)
            shared += (uint64_t)READ_ONCE(zones[i]->spanned_pages) << PAGE_SHIFT;
    return (data_kb << 10) + shared + bytes <= limit;
}

/* Under RLIMIT_AS or RLIMIT_DATA a growth takes at most half of the room
 * left below the limit (against VmSize and VmData), in 64-page steps, but
 * at least what the request needs (need): the program's own mappings
 * (thread stacks, files, Python's 1 MiB arenas) must still fit beside the
 * zone, which otherwise takes 4 MiB or 1/8 of itself at a time while
 * glibc's heap grows by 132 KiB.  Half, not a quarter: Python under
 * `ulimit -v` (the smallest limit, in steps of 1 MB, at which a json dump
 * runs; glibc 16 MB) needed 18 MB with no cap, 19 with half, 20 with a
 * quarter (its arenas, sparser than kalloc's slabs, then took the room).
 * Unlimited (the usual case): top as it is, with no read of /proc. */
static unsigned long zone_grow_within_limits(const zone *z, unsigned long top, unsigned long need)
{
    /* The first growth (at the first malloc) takes the limits read when the
     * library was loaded (or, before its constructor, while the process
     * starts), with no seccomp check: that check is a read of
     * /proc/thread-self/status, ~50 us in a fresh process (the kernel makes
     * its /proc entries), a twentieth of what a shell's child costs in all.
     * A program that lowers a limit before its first malloc has its first
     * growth capped by the older limit (the kernel still refuses a mapping
     * past the new one: the step halves). */
    uint64_t as, data;
    os_seccomp_scope one_read;  /* both limits ask about a filter: once (a /proc read each) */
    if (z->spanned_pages || z->id || !os_limits_at_load(&as, &data)) {
        as = os_as_limit();
        data = os_data_limit();
    }
    if (as == ~0ull && data == ~0ull)
        return top;
    static const char *const keys[] = {"VmSize:", "VmData:"};
    uint64_t kb[2] = {0, 0};
    if (!os_read_fields("/proc/self/status", keys, kb, 2))
        return top;             /* unknown (no /proc): refusals still halve the step */
    uint64_t used[2] = {kb[0] << 10, kb[1] << 10}, limit[2] = {as, data}, room = ~0ull;
    for (unsigned i = 0; i < 2; i++) {
        uint64_t r = limit[i] > used[i] ? limit[i] - used[i] : 0;
        if (r < room)
            room = r;
    }
    unsigned long cap = z->spanned_pages + ((room / 2) >> PAGE_SHIFT & ~63ul);
    if (cap < need)
        cap = need;
    return top < cap ? top : cap;
}

/* Map the zone's pages [spanned_pages, top), their descriptors (whole
 * pageblocks of them) and their slab-map bytes.  On failure nothing of the
 * data range stays mapped; EEXIST (someone else's mapping in the way) makes
 * the zone full, anything else (ENOMEM: RLIMIT_AS, RLIMIT_DATA, the mapping
 * count) may pass. */
static bool __zone_map_range(zone *z, unsigned long top)
{
    const unsigned long first = z->spanned_pages, nr = top - first;
    if (z->backing != ZONE_BACKING_ANON && !zone_memfd_within_data_limit(nr << PAGE_SHIFT))
        return false;           /* as the kernel refuses private memory past the limit */
    uintptr_t addr = z->zone_start + (first << PAGE_SHIFT);
    void *p = z->backing == ZONE_BACKING_ANON ? zone_map_hugetlb(z, (void *)addr, nr << PAGE_SHIFT) : nullptr;
    if (!p)
        p = os_map_fixed((void *)addr, nr << PAGE_SHIFT, z->backing_fd, addr - z->zone_start);
    bool ok = p != nullptr;
    /* The descriptors of the new pages that have none yet (a zone that shrank
     * kept them), in whole pageblocks (24 KiB, page aligned), so a walk over
     * a pageblock the top cuts reads zero descriptors past it, never a
     * fault. */
    unsigned long mm_to = align_up(top, pageblock_nr_pages);
    if (ok && mm_to > z->mem_map_pages) {
        ok = os_map_fixed(z->mem_map + z->mem_map_pages, (mm_to - z->mem_map_pages) * sizeof(page), -1, 0);
        if (ok)
            z->mem_map_pages = mm_to;
    }
    /* The slab maps' bytes for the new pages (a page of each map covers
     * 4,096 pages of the zone). */
    unsigned long maps_to = align_up(top, PAGE_SIZE);
    if (ok && maps_to > z->slab_maps_rw) {
        size_t len = maps_to - z->slab_maps_rw;
        ok = os_protect_rw(zone_slab_class_map(z) + z->slab_maps_rw, len) &&
             os_protect_rw(zone_slab_owner_map(z) + z->slab_maps_rw, len);
        if (ok)
            z->slab_maps_rw = maps_to;
    }
    if (ok)
        return true;
    bool full = errno == EEXIST;
    if (p)
        os_unmap(p, nr << PAGE_SHIFT);
    /* zone_map_hugetlb's marks (it maps whole pageblocks only) */
    for (unsigned long pb = align_up(first, pageblock_nr_pages) >> pageblock_order; pb < top >> pageblock_order;
         pb++) {
        if (z->pageblock_thp[pb] & PB_HUGETLB)
            z->nr_hugetlb_pages -= pageblock_nr_pages;
        z->pageblock_thp[pb] = 0;
    }
    if (full)
        z->full = true;
    return false;
}

bool __zone_grow(zone *z, unsigned long min_pages)
{
    if (z->full || z->spanned_pages + min_pages > z->max_pages)
        return false;
    /* Growth maps the memory file: never a file the program opened under
     * the number kalloc's descriptor had (it would share the heap's bytes). */
    if (z->backing != ZONE_BACKING_ANON) {
        zone_memfd_sandbox_check(false);
        if (z->backing != ZONE_BACKING_ANON && !zone_backing_check(z))
            return false;
    }
    unsigned long need;
    unsigned long top = zone_grow_top(z, min_pages, &need);
    if (!top)
        return false;
    top = zone_grow_within_limits(z, top, need);
    int saved = errno;
    bool ok = __zone_map_range(z, top);
    /* Refused (RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK under mlockall, the
     * commit limit): the last pages under the limit may still hold the
     * block asked for, as glibc's heap uses them.  Half as much each time,
     * down to the block alone; the top is then no MAX_ORDER boundary (the
     * next growth ends on one again). */
    while (!ok && !z->full && top > need) {
        unsigned long half = z->spanned_pages + (top - z->spanned_pages) / 2;
        top = half > need ? half : need;
        ok = __zone_map_range(z, top);
    }
    errno = saved;
    if (!ok)
        return false;
    const unsigned long first = z->spanned_pages;
    /* No descriptor is written here: a zero descriptor is a valid one (its
     * zone is found from its address, page_zone), and the free path sets up
     * each block's head; the rest stay untouched (not resident) until their
     * pages are taken (PG_desc_off, page_alloc.cc).  A pageblock the old top
     * cut keeps its type. */
    for (unsigned long pfn = align_up(first, pageblock_nr_pages); pfn < top; pfn += pageblock_nr_pages)
        set_pageblock_migratetype(z, pfn, MIGRATE_MOVABLE);
    if (z->backing == ZONE_BACKING_ANON)
        khugepaged_zone_grown(z, first, top - first);
    WRITE_ONCE(z->spanned_pages, top);
    if (z->per_cpu_pageset)
        pcp_update_batch_high(z);
    /* Fresh anonymous memory is zero and not resident: PG_reported, in the
     * largest aligned blocks.  Above a top that was not a MAX_ORDER boundary
     * they may merge with free blocks below it, whose descriptors are not
     * all zero: then not "fresh" (descriptors given back when kept off). */
    const bool fresh = !(first & ((1ul << MAX_ORDER) - 1));
    for (unsigned long pfn = first; pfn < top;) {
        unsigned order = pfn ? __builtin_ctzl(pfn) : MAX_ORDER;
        if (order > MAX_ORDER)
            order = MAX_ORDER;
        while (pfn + (1ul << order) > top)
            order--;
        __free_one_page_fresh(z, pfn, order, true, fresh);
        pfn += 1ul << order;
    }
    __setup_zone_wmarks(z);
    pa_stats.zone_grow++;
    return true;
}

zone *zone_create(unsigned long min_pages)
{
    spin_lock(&zone_list_lock);
    options_init();
    vmscan_init();
    zone *z = nullptr;
    if (nr_zones >= MAX_NR_ZONES)
        goto out;
    {
        /* header, slab maps, per-CPU pagesets: reserved readable, the
         * header and pagesets made writable now, the maps as the zone
         * grows (__zone_map_range) */
        /* One pageset until the process has a second thread cache
         * (pcp_set_nr_cpus): room for PCP_MAX_CPUS, the used ones writable. */
        unsigned ncpu = pcp_nr_cpus ? pcp_nr_cpus : 1;
        size_t pcp_bytes = align_up(ncpu * sizeof(per_cpu_pages), PAGE_SIZE);
        size_t meta = ZONE_HDR_SIZE + ZONE_SLAB_MAPS_SIZE + pcp_reserve_bytes();
        char *m = (char *)os_map_readonly(meta);
        if (!m)
            goto out;
        if (!os_protect_rw(m, ZONE_HDR_SIZE) ||
            !os_protect_rw(m + ZONE_HDR_SIZE + ZONE_SLAB_MAPS_SIZE, pcp_bytes)) {
            os_unmap(m, meta);
            z = nullptr;
            goto out;
        }
        z = (zone *)m;
        z->type = ZONE_NORMAL;
        z->backing = ZONE_BACKING_ANON;
        z->backing_fd = -1;
        if (option_get(OPT_MESH) && !os_seccomp_filtered()) {
            /* The file spans the data pages; sparse, pages appear as they
             * are touched.  No memfd (old kernel, EMFILE), or a seccomp
             * filter (which may kill the call): anonymous. */
            int fd = os_memfd_create("kalloc", (uint64_t)ZONE_MAX_PAGES << PAGE_SHIFT);
            if (fd >= 0 && os_fd_identity(fd, &z->backing_dev, &z->backing_ino)) {
                z->backing = ZONE_BACKING_MEMFD;
                z->backing_fd = fd;
            } else if (fd >= 0) {
                os_close(fd);
            }
        }
        z->id = (uint16_t)nr_zones;
        z->max_pages = ZONE_MAX_PAGES;
        z->compact_order_failed = MAX_ORDER + 1;
        free_lru_init(z);
        for (auto &fa : z->free_area)
            for (auto &l : fa.free_list)
                INIT_LIST_HEAD(&l);
        pcp_init(z, (per_cpu_pages *)(m + ZONE_HDR_SIZE + ZONE_SLAB_MAPS_SIZE), ncpu);
        int saved = errno;
        for (;;) {
            uintptr_t start = __reserve_zone_slots(1);
            if (!start)
                break;
            z->zone_start = start;
            z->mem_map = (page *)(start + (ZONE_MAX_PAGES << PAGE_SHIFT));
            z->spanned_pages = 0;
            z->mem_map_pages = 0;
            z->full = false;
            /* The first growth maps at the slot's start; EEXIST means the
             * slot is someone else's, so try the next one. */
            if (__zone_grow(z, min_pages ? min_pages : 1))
                break;
            if (!z->full)
                break;          /* out of memory */
        }
        errno = saved;
        if (!z->spanned_pages) {
            if (z->backing_fd >= 0)
                os_close(z->backing_fd);
            if (z->mem_map_pages)   /* mapped before a later step was refused */
                os_unmap(z->mem_map, z->mem_map_pages * sizeof(page));
            os_unmap(m, meta);
            z = nullptr;
            goto out;
        }
        WRITE_ONCE(zone_table[z->zone_start >> ZONE_SLOT_SHIFT], (void *)z);
        zones[nr_zones] = z;
        __atomic_store_n(&nr_zones, nr_zones + 1, __ATOMIC_RELEASE);
    }
out:
    spin_unlock(&zone_list_lock);
    return z;
}

/* ---------------------------------------------------------------------------
 * fork() with memory-file zones
 * ------------------------------------------------------------------------- */

namespace {
int fork_pipe[2] = {-1, -1};   /* child -> parent: "my copy is made"; -1: no memory-file zone */
bool fork_copied;              /* (child) zone_memfd_fork_child copied the memory files */

/* Where no pipe can be made (the program has no descriptor left): the
 * child says "copied" in shared memory instead, and the parent waits on
 * it with a futex, looking every FORK_SYNC_POLL_MS whether the child died. */
struct fork_sync_page {
    int done;                  /* the child has its copy (futex word) */
    int pid;                   /* the child, written first thing in it (0: not yet) */
};
fork_sync_page *fork_sync;     /* mapped at the first fork that needs it; kept */
bool fork_sync_used;           /* this fork waits on fork_sync, not on the pipe */
constexpr unsigned FORK_SYNC_POLL_MS = 20;
constexpr unsigned FORK_SYNC_NO_PID_MS = 10000;   /* a child that never wrote its pid */
}

bool zone_memfd_fork_copied() { return fork_copied; }

void zone_memfd_fork_prepare()
{
    WRITE_IF_CHANGED(fork_pipe[0], -1);
    WRITE_IF_CHANGED(fork_pipe[1], -1);
    WRITE_IF_CHANGED(fork_sync_used, false);
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    bool any = false;
    for (unsigned i = 0; i < nz; i++)
        any |= zones[i]->backing != ZONE_BACKING_ANON;
    if (!any)
        return;
    zone_memfd_sandbox_check(false);
    any = false;
    for (unsigned i = 0; i < nz; i++) {
        zone_backing_check(zones[i]);
        any |= zones[i]->backing != ZONE_BACKING_ANON;
    }
    if (!any || os_pipe(fork_pipe))
        return;
    if (!fork_sync)
        fork_sync = (fork_sync_page *)os_map_shared(PAGE_SIZE);
    if (!fork_sync)
        panic("fork: no pipe and no shared page for the memory-file zones' copy (KALLOC_MESH)");
    __atomic_store_n(&fork_sync->done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fork_sync->pid, 0, __ATOMIC_RELAXED);
    fork_sync_used = true;
}

void zone_memfd_fork_parent()
{
    if (fork_sync_used) {
        /* Until the child says it has its copy, or is seen to have died (or
         * never started: fork failed, or it was killed before its first
         * step, given FORK_SYNC_NO_PID_MS). */
        unsigned waited = 0;
        while (!__atomic_load_n(&fork_sync->done, __ATOMIC_ACQUIRE)) {
            os_futex_wait_shared(&fork_sync->done, 0, FORK_SYNC_POLL_MS);
            int pid = __atomic_load_n(&fork_sync->pid, __ATOMIC_ACQUIRE);
            waited += FORK_SYNC_POLL_MS;
            if (pid ? os_child_exited(pid) : waited >= FORK_SYNC_NO_PID_MS)
                break;
        }
        fork_sync_used = false;
        return;
    }
    if (fork_pipe[0] < 0)
        return;
    os_close(fork_pipe[1]);
    /* One byte when the child has its copy; end of file when it died (or
     * fork failed: then no child holds the write end either). */
    char c;
    os_read_byte(fork_pipe[0], &c);
    os_close(fork_pipe[0]);
    fork_pipe[0] = fork_pipe[1] = -1;
}

/* Zone z (memory-file backed, in a fork child) as private anonymous memory
 * with the same contents: the file's data and each meshed alias's page
 * copied into a fresh anonymous mapping, which is then moved over the
 * zone (mremap: page tables move, bytes do not).  No more meshing in it
 * (mesh passes need a memory file). */
static void zone_memfd_to_anon(zone *z)
{
    size_t len = z->spanned_pages << PAGE_SHIFT;
    char *image = (char *)os_map(len, true);
    if (!image || !os_copy_file_ranges_to_memory(z->backing_fd, len, (const char *)z->zone_start, image))
        panic("fork: cannot copy a memory-file zone for the child (KALLOC_MESH)");
    mesh_copy_aliases(z, image);
    if (os_remap_fixed(image, len, len, (void *)z->zone_start) != (void *)z->zone_start)
        panic("fork: cannot map the child's copy of a memory-file zone (KALLOC_MESH)");
    os_close(z->backing_fd);
    z->backing_fd = -1;
    z->backing = ZONE_BACKING_ANON;
}

/* Zone z (memory-file backed, lost or not) as private anonymous memory
 * through its mapping alone: every page outside the free blocks (on the
 * free lists or a per-CPU pageset) is copied from the zone's address (an
 * alias reads its primary's page) into a fresh anonymous mapping, which
 * mremap then moves over the zone.  Free blocks read zero in the copy,
 * which is what any free page may hold (a reported one must), and
 * so do pages that read zero (never written: not copied, so not made
 * resident in the copy).  Makes no call beyond mmap and mremap, so it
 * works without a descriptor (ZONE_BACKING_MEMFD_LOST) and under a seccomp
 * filter that kills the file calls.  The caller makes sure nothing writes
 * the zone meanwhile: a fork child, or a process with one thread and its
 * signals blocked.  Grows again, anonymous, when the file was lost.  False
 * (nothing changed) when there is no room for the copy and `must` is
 * false; a fork child (`must`) cannot run on its parent's pages: panic. */
static bool zone_memfd_copy_to_anon(zone *z, const char *why, bool must)
{
    size_t len = z->spanned_pages << PAGE_SHIFT;
    char *image = (char *)os_map(len, true);
    if (!image) {
        if (!must)
            return false;
        panic("%s: cannot copy a memory-file zone (KALLOC_MESH)", why);
    }
    for (unsigned long pfn = 0; pfn < z->spanned_pages;) {
        const page *pg = pfn_to_page(z, pfn);
        if (pg->flags & PG_buddy) {
            pfn += 1ul << pg->order;
            continue;
        }
        if ((pg->flags & PG_pcp) && pg->nr_pages) {
            pfn += pg->nr_pages;      /* a pageset's block or run (not a power of two) */
            continue;
        }
        const char *from = (const char *)z->zone_start + (pfn << PAGE_SHIFT);
        if (!os_page_reads_zero(from))
            memcpy(image + (pfn << PAGE_SHIFT), from, PAGE_SIZE);
        pfn++;
    }
    if (os_remap_fixed(image, len, len, (void *)z->zone_start) != (void *)z->zone_start) {
        /* A filter's refusal happens before the call: the zone is as it
         * was.  Any other failure may have unmapped it. */
        if (!must && (errno == EPERM || errno == EACCES || errno == ENOSYS)) {
            os_unmap(image, len);
            return false;
        }
        panic("%s: cannot map the copy of a memory-file zone (KALLOC_MESH)", why);
    }
    if (z->backing == ZONE_BACKING_MEMFD_LOST)
        z->full = false;
    else
        os_close(z->backing_fd);
    z->backing_fd = -1;
    z->backing = ZONE_BACKING_ANON;
    return true;
}

void zone_memfd_sandbox_check(bool one_thread)
{
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    bool any = false;
    for (unsigned i = 0; i < nz; i++)
        any |= zones[i]->backing != ZONE_BACKING_ANON;
    if (!any || !os_seccomp_filtered())
        return;
    if (!one_thread && !process_single_threaded() && os_nr_threads() != 1)
        return;
    int saved = errno;
    uint64_t old_mask;
    os_block_signals(&old_mask);
    for (unsigned i = 0; i < nz; i++)
        if (zones[i]->backing != ZONE_BACKING_ANON) {
            if (zone_memfd_copy_to_anon(zones[i], "seccomp", false))
                pa_stats.memfd_sandboxed++;
        }
    os_restore_signals(old_mask);
    errno = saved;
}

/* (Child) the shared page is the parent's too: the child's own forks get
 * a page of their own, so a parent and a child that fork at once never
 * wait on one word. */
static void zone_memfd_fork_sync_drop()
{
    if (fork_sync) {
        os_unmap(fork_sync, PAGE_SIZE);
        fork_sync = nullptr;
    }
}

void zone_memfd_fork_child()
{
    WRITE_IF_CHANGED(fork_copied, fork_pipe[0] >= 0 || fork_sync_used);
    if (!fork_copied) {
        zone_memfd_fork_sync_drop();
        return;
    }
    if (fork_sync_used)
        __atomic_store_n(&fork_sync->pid, os_getpid(), __ATOMIC_RELEASE);
    else
        os_close(fork_pipe[0]);
    const bool filtered = os_seccomp_filtered();
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nz; i++) {
        zone *z = zones[i];
        if (z->backing == ZONE_BACKING_MEMFD_LOST || (z->backing_fd >= 0 && filtered)) {
            /* No descriptor, or a seccomp filter that may kill the file
             * calls (memfd_create, lseek, copy_file_range): through the
             * mapping (the parent waits). */
            zone_memfd_copy_to_anon(z, "fork", true);
            continue;
        }
        if (z->backing_fd < 0)
            continue;
        uint64_t size = (uint64_t)ZONE_MAX_PAGES << PAGE_SHIFT;
        int fd = os_memfd_create("kalloc", size);
        if (fd >= 0 && !os_copy_file_data(z->backing_fd, fd, (uint64_t)z->spanned_pages << PAGE_SHIFT)) {
            os_close(fd);
            fd = -1;
        }
        if (fd < 0) {
            /* No memory file here (a seccomp filter installed since the
             * zone was made refuses memfd_create: man-db's sandbox, then a
             * fork): the child's zone becomes private anonymous memory. */
            zone_memfd_to_anon(z);
            continue;
        }
        if (!os_map_file_replace((void *)z->zone_start, z->spanned_pages << PAGE_SHIFT, fd, 0))
            panic("fork: cannot map the child's copy of a memory-file zone (KALLOC_MESH)");
        mesh_remap_aliases(z, fd);
        os_close(z->backing_fd);
        z->backing_fd = fd;
        os_fd_identity(fd, &z->backing_dev, &z->backing_ino);
    }
    if (fork_sync_used) {
        __atomic_store_n(&fork_sync->done, 1, __ATOMIC_RELEASE);
        os_futex_wake_shared(&fork_sync->done);
        fork_sync_used = false;
        zone_memfd_fork_sync_drop();
        return;
    }
    zone_memfd_fork_sync_drop();
    os_write(fork_pipe[1], "", 1);
    os_close(fork_pipe[1]);
    fork_pipe[0] = fork_pipe[1] = -1;
}

} // namespace kalloc
