/*
 * mm/vmstat.cc - buddyinfo / pagetypeinfo / extfrag / vmstat / slabinfo
 * views (see vmstat.h).
 */
#include "mm/vmstat.h"

#include "mm/mesh.h"

#include "mm/compaction.h"
#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/khugepaged.h"
#include "mm/slab.h"
#include "mm/slab_dynamic.h"
#include "mm/vmscan.h"

namespace kalloc {

void print_buddyinfo(printbuf &out)
{
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    out.printf("buddyinfo (free blocks per order, 4 KiB .. 4 MiB):\n");
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        out.printf("  zone %3u %-11s", i, "");
        for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
            out.printf(" %6lu", z->free_area[o].nr_free);
        out.printf("\n");
        for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++) {
            out.printf("  zone %3u %-11s", i, migratetype_names[mt]);
            for (unsigned o = 0; o < NR_PAGE_ORDERS; o++) {
                unsigned long cnt = 0;
                list_head *l = &z->free_area[o].free_list[mt];
                for (list_head *e = l->next; e != l; e = e->next)
                    cnt++;
                out.printf(" %6lu", cnt);
            }
            out.printf("\n");
        }
        unsigned long blocks[MIGRATE_TYPES] = {};
        for (unsigned long pfn = 0; pfn < z->spanned_pages; pfn += pageblock_nr_pages)
            blocks[get_pageblock_migratetype(z, pfn)]++;
        out.printf("  zone %3u pageblocks: %lu unmovable, %lu movable, %lu reclaimable,"
                   " %lu long-lived; spanned %lu pages, free %lu (resident %lu), reported %lu\n",
                   i, blocks[MIGRATE_UNMOVABLE], blocks[MIGRATE_MOVABLE],
                   blocks[MIGRATE_RECLAIMABLE], blocks[MIGRATE_LONGLIVED], z->spanned_pages, z->nr_free_pages,
                   z->nr_free_resident, z->nr_reported);
        out.printf("  zone %3u watermarks (free resident pages): min %lu low %lu high %lu;"
                   " reclaimable %lu isolated %lu hugetlb %lu; unread %lu, phantom %u/%u\n",
                   i, z->_watermark[WMARK_MIN], z->_watermark[WMARK_LOW],
                   z->_watermark[WMARK_HIGH], z->nr_free_lru, z->nr_isolated, z->nr_hugetlb_pages,
                   z->nr_free_unscanned, (unsigned)z->phantom_ratio, PHANTOM_ONE);
        out.printf("  zone %3u workingset %lu (largest block %lu) refaulted %lu use_peak %lu retained %lu%s"
                   " boost %lu\n",
                   i, z->workingset, z->workingset_block, z->nr_refault, z->use_peak, z->wmark_retained,
                   z->wmark_rounds ? " (rounds)" : "", z->watermark_boost);
        for (unsigned c = 0, nc = zone_nr_pcp(z); c < nc; c++) {
            per_cpu_pages *pcp = &z->per_cpu_pageset[c];
            out.printf("  zone %3u pcp cpu %u: count %d high %d (min %d max %d) batch %d "
                       "free_count %d refills %lu drains %lu runs hit %lu miss %lu drained %lu\n",
                       i, c, READ_ONCE(pcp->count), READ_ONCE(pcp->high), READ_ONCE(pcp->high_min),
                       READ_ONCE(pcp->high_max), READ_ONCE(pcp->batch), READ_ONCE(pcp->free_count),
                       READ_ONCE(pcp->nr_refill), READ_ONCE(pcp->nr_drain),
                       READ_ONCE(pcp->nr_run_hit), READ_ONCE(pcp->nr_run_miss),
                       READ_ONCE(pcp->nr_run_drain));
        }
        spin_unlock(&z->lock);
    }
    print_reclaim_stats(out);
    thp_coverage zc, pc;
    if (get_thp_coverage(&zc, true) && get_thp_coverage(&pc, false))
        out.printf("hugepages: zones rss_kb %lu anon_huge_kb %lu hugetlb_kb %lu; process rss_kb %lu "
                   "anon_huge_kb %lu\n",
                   (unsigned long)(zc.rss >> 10), (unsigned long)(zc.anon_huge >> 10),
                   (unsigned long)(zc.hugetlb >> 10), (unsigned long)(pc.rss >> 10),
                   (unsigned long)(pc.anon_huge >> 10));
}

void __zone_pagetype_counts(zone *z, pagetype_counts *c)
{
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++) {
            list_head *l = &z->free_area[o].free_list[mt];
            for (list_head *e = l->next; e != l; e = e->next) {
                c->free_blocks[o][mt]++;
                c->free_pages[mt] += 1ul << o;
            }
        }
    /* Which types of allocation each pageblock holds: walk the blocks. */
    unsigned long spanned = z->spanned_pages;
    unsigned long nr_blocks = (spanned + pageblock_nr_pages - 1) >> pageblock_order;
    uint8_t held[ZONE_MAX_PAGEBLOCKS];   /* a bit per migrate type */
    for (unsigned long b = 0; b < nr_blocks; b++)
        held[b] = 0;
    for (unsigned long pfn = 0; pfn < spanned;) {
        page *pg = pfn_to_page(z, pfn);
        uint16_t flags = READ_ONCE(pg->flags);
        unsigned long n = 1;
        if (flags & (PG_buddy | PG_pcp)) {
            n = 1ul << READ_ONCE(pg->order);
        } else if (flags & PG_head) {
            n = (flags & PG_slab) ? 1ul << READ_ONCE(pg->order) : READ_ONCE(pg->nr_pages);
            unsigned mt = READ_ONCE(pg->migratetype);
            if (n == 0 || n > spanned - pfn)
                n = 1;      /* being set up by another thread: look again page by page */
            if (mt < MIGRATE_TYPES)
                for (unsigned long b = pfn >> pageblock_order; b <= (pfn + n - 1) >> pageblock_order; b++)
                    held[b] = (uint8_t)(held[b] | (1u << mt));
        }
        if (n > spanned - pfn)
            n = spanned - pfn;
        pfn += n;
    }
    for (unsigned long b = 0; b < nr_blocks; b++) {
        unsigned mt = z->pageblock_mt[b];
        c->nr_pageblocks[mt]++;
        if (!held[b]) {
            c->nr_empty_pageblocks++;
        } else if (held[b] & (held[b] - 1)) {
            c->nr_mixed[mt]++;
            c->nr_mixed_total++;
        }
    }
}

void get_pagetype_counts(pagetype_counts *c)
{
    *c = {};
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        __zone_pagetype_counts(z, c);
        spin_unlock(&z->lock);
    }
}

void print_pagetypeinfo(printbuf &out)
{
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    out.printf("pagetypeinfo (pageblock order %u, %lu pages per block):\n", pageblock_order,
               pageblock_nr_pages);
    out.printf("  free pages count per migrate type at order");
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        out.printf(" %6u", o);
    out.printf("\n");
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        static pagetype_counts c;    /* 500 bytes: under print_lock (stats.cc), not on the stack */
        c = {};
        spin_lock(&z->lock);
        __zone_pagetype_counts(z, &c);
        spin_unlock(&z->lock);
        for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++) {
            out.printf("  zone %3u, type %12s                           ", i, migratetype_names[mt]);
            for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
                out.printf(" %6lu", c.free_blocks[o][mt]);
            out.printf("\n");
        }
        out.printf("  zone %3u number of blocks type ", i);
        for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++)
            out.printf(" %s %lu", migratetype_names[mt], c.nr_pageblocks[mt]);
        out.printf("\n  zone %3u number of mixed blocks ", i);
        for (unsigned mt = 0; mt < MIGRATE_TYPES; mt++)
            out.printf(" %s %lu", migratetype_names[mt], c.nr_mixed[mt]);
        out.printf(" (total %lu; %lu blocks hold no allocation)\n", c.nr_mixed_total,
                   c.nr_empty_pageblocks);
    }
}

void print_extfrag(printbuf &out)
{
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    out.printf("extfrag_index (per order; -1.000: a free block of the order exists):\n");
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        out.printf("  zone %3u", i);
        for (unsigned o = 0; o < NR_PAGE_ORDERS; o++) {
            int idx = __fragmentation_index(z, o);
            out.printf(" %s%d.%03d", idx < 0 ? "-" : "", (idx < 0 ? -idx : idx) / 1000,
                       (idx < 0 ? -idx : idx) % 1000);
        }
        unsigned score = __fragmentation_score_zone(z);
        out.printf("  score %u (compact_defer_shift %u)\n", score, z->compact_defer_shift);
        spin_unlock(&z->lock);
    }
    out.printf("  fragmentation score (all zones, 0..100: free memory not in free 2 MiB blocks): %u\n",
               fragmentation_score());
}

void print_vmstat(printbuf &out)
{
    unsigned long life[MIGRATE_TYPES] = {}, changes = 0;
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!kmem_cache_ready(c))
            continue;           /* never used (and its page stays untouched) */
        spin_lock(&c->lock);
        life[c->migratetype]++;
        changes += c->nr_life_changes;
        spin_unlock(&c->lock);
    }
    zone_totals t = get_zone_totals();
    const compact_event_stats &cs = compact_stats;
    out.printf("vmstat:\n");
    out.printf("  nr_free_pages %lu\n  nr_free_resident %lu\n  pgalloc %lu\n  pgfree %lu\n"
               "  pgfallback %lu\n  pageblock_claims %lu\n  zone_grow %lu\n  run_fit %lu\n"
               "  pgreclaim %lu\n  memfd_lost %lu\n  memfd_sandboxed %lu\n",
               t.free_pages, t.free_resident, pa_stats.pgalloc, pa_stats.pgfree,
               pa_stats.pgfallback, pa_stats.pageblock_claims, pa_stats.zone_grow,
               pa_stats.run_fit, t.reported, READ_ONCE(pa_stats.memfd_lost),
               READ_ONCE(pa_stats.memfd_sandboxed));
    out.printf("  compact_stall %lu\n  compact_success %lu\n  compact_fail %lu\n"
               "  compact_deferred %lu\n  compact_wake %lu\n  compact_full %lu\n"
               "  compact_free_scanned %lu\n  compact_slabs_ordered %lu\n  compact_released %lu\n",
               READ_ONCE(cs.compact_stall), READ_ONCE(cs.compact_success),
               READ_ONCE(cs.compact_fail), READ_ONCE(cs.compact_deferred),
               READ_ONCE(cs.compact_wake), READ_ONCE(cs.compact_full),
               READ_ONCE(cs.compact_free_scanned), READ_ONCE(cs.compact_slabs_ordered),
               READ_ONCE(cs.compact_released));
    out.printf("  slab_classes_shortlived %lu\n  slab_classes_longlived %lu\n"
               "  slab_lifetime_changes %lu\n  slab_classes_dynamic %u\n  slab_classes_stride %u\n",
               life[MIGRATE_RECLAIMABLE], life[MIGRATE_LONGLIVED], changes, kmalloc_dynamic_nr(),
               kmalloc_dynamic_nr_stride());
    out.printf("  slab_holes_punched %lu\n  slab_holes_refaulted %lu\n  slab_hole_pages %lu\n"
               "  slab_hole_madvise %lu\n  slab_hole_batched %lu\n  slab_holes_cancelled %lu\n"
               "  slab_hole_queued %u\n  slab_holes_deferred %lu\n",
               READ_ONCE(slab_holes.punched), READ_ONCE(slab_holes.refaulted),
               READ_ONCE(slab_holes.hole_pages), READ_ONCE(slab_holes.madvise_calls),
               READ_ONCE(slab_holes.batched), READ_ONCE(slab_holes.cancelled),
               slab_holes_queued(), READ_ONCE(slab_holes.deferred));
    out.printf("  mesh_pages %lu\n  mesh_success %lu\n  mesh_attempt %lu\n  mesh_fail_overlap %lu\n"
               "  unmesh %lu\n  mesh_skip_threads %lu\n  mesh_passes %lu\n  mesh_fail_map %lu\n",
               READ_ONCE(mesh_stats.mesh_pages), READ_ONCE(mesh_stats.mesh_success),
               READ_ONCE(mesh_stats.mesh_attempt), READ_ONCE(mesh_stats.mesh_fail_overlap),
               READ_ONCE(mesh_stats.unmesh), READ_ONCE(mesh_stats.mesh_skip_threads),
               READ_ONCE(mesh_stats.mesh_passes), READ_ONCE(mesh_stats.mesh_fail_map));
}

void print_slabinfo(printbuf &out, const unsigned long cached[NR_KMALLOC_CLASSES])
{
    /* active_objs: handed out to the program; cached: in thread caches
     * (bins and remote lists); barn: in the barn's sheaves; num_objs -
     * (active + cached + barn): free in the slabs (freelists, uncarved
     * tails, parked objects); partial: slabs on the partial lists. */
    out.printf("slabinfo:\n  %-14s %10s %8s %6s %10s %8s %10s %12s %8s %8s\n", "# name",
               "active_objs", "cached", "barn", "num_objs", "objsize", "objperslab",
               "pagesperslab", "slabs", "partial");
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        spin_lock(&c->lock);
        unsigned long active = c->active_objects - c->barn_objects, slabs = c->nr_slabs;
        unsigned long barn = c->barn_objects, partial = c->nr_partial;
        spin_unlock(&c->lock);
        const kmalloc_class &k = kmalloc_info[i];
        if (!slabs && !active)
            continue;
        char name[24];
        ksnprintf(name, sizeof(name), "kmalloc-%u", k.size);
        unsigned long a = active > cached[i] ? active - cached[i] : 0;
        out.printf("  %-14s %10lu %8lu %6lu %10lu %8u %10u %12u %8lu %8lu\n", name, a,
                   active - a, barn, slabs * k.objects, k.size, k.objects, 1u << k.order, slabs,
                   partial);
    }
}

zone_totals get_zone_totals()
{
    zone_totals t = {};
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        t.spanned_pages += z->spanned_pages;
        t.free_pages += z->nr_free_pages;
        t.free_resident += z->nr_free_resident;
        t.reported += z->nr_reported;
        t.meta_pages += z->nr_meta_pages;
        spin_unlock(&z->lock);
    }
    t.nr_zones = n;
    return t;
}

} // namespace kalloc
