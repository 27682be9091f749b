/*
 * malloc/stats.cc - statistics: gathered on demand from the layers' own
 * counters (nothing is counted on the fast path).
 *
 * in_use = slab objects handed out minus those sitting in thread caches,
 * times their size, plus large and huge blocks.
 */
#include "malloc/stats.h"

#include <errno.h>
#include <string.h>

#include "malloc/large.h"
#include "malloc/tcache.h"
#include "mm/compaction.h"
#include "mm/mesh.h"
#include "mm/page_alloc.h"
#include "mm/percpu_sheaves.h"
#include "mm/slab.h"
#include "mm/vmalloc.h"
#include "mm/vmscan.h"
#include "mm/vmstat.h"
#include "platform/options.h"
#include "platform/os.h"

namespace kalloc {

/* Objects cached above the slabs, per class: in thread caches and in the
 * per-CPU sheaves (both count as handed out in kmem_cache.active_objects).
 * Returns the sheaves' total. */
static unsigned long count_cached(unsigned long cached[NR_KMALLOC_CLASSES], unsigned long *nr_tc)
{
    unsigned long pcs[NR_KMALLOC_CLASSES];
    tcache_count_cached(cached, nr_tc);
    unsigned long total = pcs_count_cached(pcs);
    for (unsigned i = 0; i < NR_KMALLOC_CLASSES; i++)
        cached[i] += pcs[i];
    return total;
}

void stats_get(kalloc_stats *out)
{
    unsigned long cached[NR_KMALLOC_CLASSES], nr_tc;
    count_cached(cached, &nr_tc);
    uint64_t slab_bytes = 0, slab_obj = 0, slab_in_use = 0, refills = 0, flushes = 0;
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        spin_lock(&c->lock);
        unsigned long active = c->active_objects - c->barn_objects, slabs = c->nr_slabs;
        refills += c->nr_refills;
        flushes += c->nr_flushes;
        spin_unlock(&c->lock);
        const kmalloc_class &k = kmalloc_info[i];
        unsigned long live = active > cached[i] ? active - cached[i] : 0;
        slab_bytes += (uint64_t)slabs * (PAGE_SIZE << k.order);
        slab_obj += live;
        slab_in_use += (uint64_t)live * k.size;
    }
    zone_totals zt = get_zone_totals();
    vmalloc_stats vs = vmalloc_get_stats();
    uint64_t large = (uint64_t)READ_ONCE(nr_large_pages) << PAGE_SHIFT;
    *out = {};
    out->mapped = ((uint64_t)zt.spanned_pages << PAGE_SHIFT) + vs.bytes + vs.cached_bytes;
    out->resident = os_resident_bytes();
    out->in_use = slab_in_use + large + vs.bytes;
    out->slab_bytes = slab_bytes;
    out->slab_objects = slab_obj;
    out->large_bytes = large;
    out->huge_bytes = vs.bytes;
    out->free_pages = zt.free_pages;
    out->free_resident_pages = zt.free_resident;
    out->reclaimed_pages = zt.reported;
    out->nr_zones = zt.nr_zones;
    out->nr_thread_caches = nr_tc;
    out->nr_slab_refills = refills;
    out->nr_slab_flushes = flushes;
    out->nr_large_allocs = READ_ONCE(nr_large_allocs);
    out->nr_huge_allocs = vs.nr_allocs;
}

int stats_vmstat_get(kalloc_vmstat *out)
{
    if (!out || out->size < offsetof(kalloc_vmstat, nr_spanned_pages)) {
        errno = EINVAL;
        return -1;
    }
    static_assert(MIGRATE_TYPES <= KALLOC_MIGRATE_TYPES_MAX, "room for every migrate type");
    static_assert(KALLOC_MIGRATE_LONGLIVED == MIGRATE_LONGLIVED, "public indices match");
    kalloc_vmstat v = {};
    zone_totals zt = get_zone_totals();
    v.nr_spanned_pages = zt.spanned_pages;
    v.nr_free_pages = zt.free_pages;
    v.nr_free_resident = zt.free_resident;
    v.pgalloc = READ_ONCE(pa_stats.pgalloc);
    v.pgfree = READ_ONCE(pa_stats.pgfree);
    v.pgfallback = READ_ONCE(pa_stats.pgfallback);
    v.pageblock_claims = READ_ONCE(pa_stats.pageblock_claims);
    v.zone_grow = READ_ONCE(pa_stats.zone_grow);
    v.pgreclaim = zt.reported;
    static pagetype_counts pc;     /* ~500 bytes, under vmstat_lock */
    static spinlock_t vmstat_lock = SPINLOCK_INIT;
    spin_lock(&vmstat_lock);
    get_pagetype_counts(&pc);
    v.nr_migrate_types = MIGRATE_TYPES;
    for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++) {
        v.nr_pageblocks[mt] = pc.nr_pageblocks[mt];
        v.nr_mixed_pageblocks[mt] = pc.nr_mixed[mt];
        v.nr_free_pages_type[mt] = pc.free_pages[mt];
    }
    v.nr_mixed_total = pc.nr_mixed_total;
    v.nr_empty_pageblocks = pc.nr_empty_pageblocks;
    spin_unlock(&vmstat_lock);
    v.fragmentation_score = fragmentation_score();
    v.fragmentation_index = -1000;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        spin_lock(&zones[i]->lock);
        int idx = __fragmentation_index(zones[i], pageblock_order);
        v.thp_kept_pages += zones[i]->nr_thp_kept;
        v.workingset_refault += zones[i]->nr_refault;
        spin_unlock(&zones[i]->lock);
        if (idx > v.fragmentation_index)
            v.fragmentation_index = idx;
    }
    const compact_event_stats &cs = compact_stats;
    v.compact_stall = READ_ONCE(cs.compact_stall);
    v.compact_success = READ_ONCE(cs.compact_success);
    v.compact_fail = READ_ONCE(cs.compact_fail);
    v.compact_deferred = READ_ONCE(cs.compact_deferred);
    v.compact_wake = READ_ONCE(cs.compact_wake);
    v.compact_full = READ_ONCE(cs.compact_full);
    v.compact_free_scanned = READ_ONCE(cs.compact_free_scanned);
    v.compact_slabs_ordered = READ_ONCE(cs.compact_slabs_ordered);
    v.compact_released = READ_ONCE(cs.compact_released);
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!kmem_cache_ready(c))
            continue;           /* never used (and its page stays untouched) */
        spin_lock(&c->lock);
        if (c->migratetype == MIGRATE_LONGLIVED)
            v.slab_classes_longlived++;
        else
            v.slab_classes_shortlived++;
        v.slab_lifetime_changes += c->nr_life_changes;
        spin_unlock(&c->lock);
    }
    os_smaps_rollup(&v.rss_bytes, &v.anon_huge_bytes);
    const reclaim_stats &r = vm_reclaim_stats;
    v.pgreclaim_wmark = READ_ONCE(r.pgreclaim);
    v.pgdecay = READ_ONCE(r.pgdecay);
    v.pgtrim = READ_ONCE(r.pgtrim);
    v.pgshrink = READ_ONCE(r.pgshrink);
    v.pgscan = READ_ONCE(r.pgscan);
    v.wmark_low_hits = READ_ONCE(r.wmark_low_hits);
    v.direct_reclaim = READ_ONCE(r.direct_reclaim);
    v.kswapd_wake = READ_ONCE(r.kswapd_wake);
    v.kswapd_runs = READ_ONCE(r.kswapd_runs);
    v.decay_runs = READ_ONCE(r.decay_runs);
    v.cgroup_pressure = READ_ONCE(r.cgroup_pressure);
    v.thp_madvised = READ_ONCE(r.thp_madvised);
    v.thp_nohuge = READ_ONCE(r.thp_nohuge);
    v.thp_collapsed = READ_ONCE(r.thp_collapsed);
    v.hugetlb_pages = READ_ONCE(r.hugetlb_pages);
    v.thp_fault_advised = READ_ONCE(r.thp_fault_advised);
    v.thp_fault_slow = READ_ONCE(r.thp_fault_slow);
    v.thp_split_underused = READ_ONCE(r.thp_split_underused);
    v.mesh_pages = READ_ONCE(mesh_stats.mesh_pages);
    v.mesh_success = READ_ONCE(mesh_stats.mesh_success);
    v.mesh_attempt = READ_ONCE(mesh_stats.mesh_attempt);
    v.mesh_fail_overlap = READ_ONCE(mesh_stats.mesh_fail_overlap);
    v.unmesh = READ_ONCE(mesh_stats.unmesh);
    v.mesh_skip_threads = READ_ONCE(mesh_stats.mesh_skip_threads);
    v.residency_reads = READ_ONCE(r.residency_reads);
    v.residency_untouched = READ_ONCE(r.residency_untouched);
    v.residency_uncounted = READ_ONCE(r.residency_uncounted);
    v.madvise_batches = READ_ONCE(r.madvise_batches);
    v.madvise_batched_ranges = READ_ONCE(r.madvise_batched_ranges);
    v.run_fit = READ_ONCE(pa_stats.run_fit);
    v.slab_holes_punched = READ_ONCE(slab_holes.punched);
    v.slab_holes_refaulted = READ_ONCE(slab_holes.refaulted);
    v.slab_holes_cancelled = READ_ONCE(slab_holes.cancelled);
    v.slab_hole_pages = READ_ONCE(slab_holes.hole_pages);
    v.slab_hole_madvise = READ_ONCE(slab_holes.madvise_calls);
    v.slab_hole_batched = READ_ONCE(slab_holes.batched);
    v.large_fault_around = READ_ONCE(large_fa_stats.populated);
    v.large_probes_read = READ_ONCE(large_fa_stats.probes_read);
    v.large_probe_pages = READ_ONCE(large_fa_stats.probe_pages);
    v.large_probe_touched = READ_ONCE(large_fa_stats.probe_touched);
    v.thread_rounds = READ_ONCE(r.thread_rounds);
    v.thread_rounds_pages = READ_ONCE(thread_rounds_pages);
    v.mesh_fail_map = READ_ONCE(mesh_stats.mesh_fail_map);
    v.memfd_lost = READ_ONCE(pa_stats.memfd_lost);
    v.memfd_sandboxed = READ_ONCE(pa_stats.memfd_sandboxed);
    size_t len = out->size < sizeof(v) ? out->size : sizeof(v);
    v.size = (uint32_t)len;
    v.version = KALLOC_VMSTAT_VERSION;
    memcpy(out, &v, len);
    return 0;
}

void trace_print(int fd)
{
    static printbuf out;          /* not on the (possibly small) stack */
    out.fd = fd;
    out.len = 0;
    print_vmscan_trace(out);
    out.flush();
}

void stats_print(int fd)
{
    static printbuf out;          /* 4 KiB: not on the (possibly small) stack */
    static spinlock_t print_lock = SPINLOCK_INIT;
    spin_lock(&print_lock);
    out.fd = fd;
    out.len = 0;
    unsigned long cached[NR_KMALLOC_CLASSES], nr_tc;
    unsigned long pcs_objects = count_cached(cached, &nr_tc);
    kalloc_stats s;
    stats_get(&s);
    out.printf("----- kalloc %s%s statistics -----\n", kalloc_version(),
               KALLOC_FREELIST_HARDENED ? " (hardened: encoded free lists)" : "");
    print_buddyinfo(out);
    print_pagetypeinfo(out);
    print_extfrag(out);
    print_vmstat(out);
    uint64_t rss, anon_huge;
    if (os_smaps_rollup(&rss, &anon_huge))
        out.printf("hugepages: AnonHugePages %lu kB of Rss %lu kB (%lu%%)\n", anon_huge >> 10,
                   rss >> 10, rss ? anon_huge * 100 / rss : 0);
    print_slabinfo(out, cached);
    out.printf("page allocator: pgalloc %lu pgfree %lu fallbacks %lu pageblock claims %lu "
               "zone grows %lu run fits %lu zone lock holds %lu\n",
               pa_stats.pgalloc, pa_stats.pgfree, pa_stats.pgfallback, pa_stats.pageblock_claims,
               pa_stats.zone_grow, pa_stats.run_fit, pa_stats.zone_lock);
    const large_fault_around_stats &fa = large_fa_stats;
    unsigned fa_touched, fa_probed;
    const char *fa_state = large_fault_around_state(&fa_touched, &fa_probed);
    out.printf("large: fault-around %s (recent probes: %u of %u pages touched) populated_pages %lu "
               "probes_read %lu probe_pages %lu probe_touched %lu\n",
               fa_state, fa_touched, fa_probed, READ_ONCE(fa.populated), READ_ONCE(fa.probes_read),
               READ_ONCE(fa.probe_pages), READ_ONCE(fa.probe_touched));
    out.printf("kalloc: totals mapped_kb=%lu process_rss_kb=%lu in_use_kb=%lu slab_kb=%lu "
               "large_kb=%lu huge_kb=%lu free_kb=%lu free_resident_kb=%lu reclaimed_kb=%lu "
               "zones=%lu threads=%lu refills=%lu flushes=%lu large=%lu huge=%lu\n",
               s.mapped >> 10, s.resident >> 10, s.in_use >> 10, s.slab_bytes >> 10,
               s.large_bytes >> 10, s.huge_bytes >> 10, s.free_pages * 4, s.free_resident_pages * 4,
               s.reclaimed_pages * 4, s.nr_zones, s.nr_thread_caches, s.nr_slab_refills,
               s.nr_slab_flushes, s.nr_large_allocs, s.nr_huge_allocs);
    pcs_stats ps;
    pcs_get_stats(&ps);
    out.printf("percpu sheaves: %s objects=%lu refills=%lu overflows=%lu stopped=%lu drains=%lu\n",
               pcs_in_use() ? "in use" : "not used", pcs_objects, ps.refills, ps.overflows,
               ps.stopped, ps.flush_all);
    out.flush();
    spin_unlock(&print_lock);
}

struct mallinfo2 stats_mallinfo2()
{
    kalloc_stats s;
    stats_get(&s);
    struct mallinfo2 mi = {};
    mi.arena = s.mapped - s.huge_bytes;             /* zone memory */
    mi.ordblks = s.free_pages ? 1 : 0;
    mi.hblks = vmalloc_get_stats().nr_areas;      /* live huge blocks */
    mi.hblkhd = s.huge_bytes;
    mi.uordblks = s.in_use - s.huge_bytes;
    mi.fordblks = mi.arena > mi.uordblks ? mi.arena - mi.uordblks : 0;
    mi.keepcost = s.free_resident_pages << 12;
    return mi;
}

int stats_malloc_info(int options, FILE *fp)
{
    if (options != 0)
        return EINVAL;          /* glibc returns the error number, errno untouched */
    kalloc_stats s;
    stats_get(&s);
    char buf[1024];
    size_t n = ksnprintf(buf, sizeof(buf),
                         "<malloc version=\"kalloc-%s\">\n"
                         "<heap nr=\"0\">\n"
                         "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
                         "<total type=\"rest\" count=\"%lu\" size=\"%lu\"/>\n"
                         "<system type=\"current\" size=\"%lu\"/>\n"
                         "<system type=\"max\" size=\"%lu\"/>\n"
                         "<aspace type=\"total\" size=\"%lu\"/>\n"
                         "<aspace type=\"mprotect\" size=\"%lu\"/>\n"
                         "</heap>\n"
                         "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
                         "<total type=\"rest\" count=\"%lu\" size=\"%lu\"/>\n"
                         "<total type=\"mmap\" count=\"%lu\" size=\"%lu\"/>\n"
                         "<system type=\"current\" size=\"%lu\"/>\n"
                         "<system type=\"max\" size=\"%lu\"/>\n"
                         "<aspace type=\"total\" size=\"%lu\"/>\n"
                         "<aspace type=\"mprotect\" size=\"%lu\"/>\n"
                         "</malloc>\n",
                         kalloc_version(), s.free_pages, s.free_pages * 4096, s.mapped, s.mapped,
                         s.mapped, s.mapped, s.free_pages, s.free_pages * 4096, s.nr_huge_allocs,
                         s.huge_bytes, s.mapped, s.mapped, s.mapped, s.mapped);
    fwrite(buf, 1, n, fp);
    return 0;
}

} // namespace kalloc
