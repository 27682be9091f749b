/*
 * mm/vmstat.cc - buddyinfo / pagetypeinfo / slabinfo views (see vmstat.h).
 */
#include "mm/vmstat.h"

#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/khugepaged.h"
#include "mm/slab.h"
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
        out.printf("  zone %3u pageblocks: %lu unmovable, %lu movable, %lu reclaimable;"
                   " spanned %lu pages, free %lu (resident %lu), reported %lu\n",
                   i, blocks[MIGRATE_UNMOVABLE], blocks[MIGRATE_MOVABLE],
                   blocks[MIGRATE_RECLAIMABLE], z->spanned_pages, z->nr_free_pages,
                   z->nr_free_resident, z->nr_reported);
        out.printf("  zone %3u watermarks (free resident pages): min %lu low %lu high %lu;"
                   " reclaimable %lu isolated %lu hugetlb %lu\n",
                   i, z->_watermark[WMARK_MIN], z->_watermark[WMARK_LOW],
                   z->_watermark[WMARK_HIGH], z->nr_free_lru, z->nr_isolated, z->nr_hugetlb_pages);
        for (unsigned c = 0; c < z->nr_pcp; c++) {
            per_cpu_pages *pcp = &z->per_cpu_pageset[c];
            out.printf("  zone %3u pcp cpu %u: count %d high %d batch %d refills %lu drains %lu\n",
                       i, c, READ_ONCE(pcp->count), READ_ONCE(pcp->high), READ_ONCE(pcp->batch),
                       READ_ONCE(pcp->nr_refill), READ_ONCE(pcp->nr_drain));
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

void print_slabinfo(printbuf &out, const unsigned long cached[NR_KMALLOC_CLASSES])
{
    out.printf("slabinfo:\n  %-14s %10s %10s %8s %10s %12s %8s\n", "# name", "active_objs",
               "num_objs", "objsize", "objperslab", "pagesperslab", "slabs");
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        spin_lock(&c->lock);
        unsigned long active = c->active_objects, slabs = c->nr_slabs;
        spin_unlock(&c->lock);
        const kmalloc_class &k = kmalloc_info[i];
        if (!slabs && !active)
            continue;
        char name[24];
        ksnprintf(name, sizeof(name), "kmalloc-%u", k.size);
        unsigned long a = active > cached[i] ? active - cached[i] : 0;
        out.printf("  %-14s %10lu %10lu %8u %10u %12u %8lu\n", name, a, slabs * k.objects,
                   k.size, k.objects, 1u << k.order, slabs);
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
