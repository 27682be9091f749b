/*
 * mm/vmstat.h - kernel-style views of the page and slab allocators
 * (/proc/buddyinfo, /proc/pagetypeinfo, /proc/slabinfo,
 * /sys/kernel/debug/extfrag, /proc/vmstat), printed into a printbuf without
 * allocating.
 *
 * A mixed pageblock holds allocations of more than one migrate type (an
 * allocated block's head page remembers the type it was asked for).  The
 * count walks the zone's descriptors under the zone lock; blocks that are
 * being set up by another thread at that moment may be missed, so under
 * concurrent allocation it is a close estimate, exact when quiet.
 */
#pragma once

#include "mm/mmzone.h"
#include "mm/slab_common.h"
#include "platform/printk.h"

namespace kalloc {

/* Free blocks per order, per zone, and per migrate type. */
void print_buddyinfo(printbuf &out);

/* /proc/pagetypeinfo: free blocks per order per migrate type, pageblocks
 * per type, mixed pageblocks; per zone. */
void print_pagetypeinfo(printbuf &out);

/* extfrag: the fragmentation index per order and the fragmentation score,
 * per zone (compaction.h). */
void print_extfrag(printbuf &out);

/* vmstat-style counters of the page allocator, compaction and the slab
 * lifetimes, one "name value" pair each. */
void print_vmstat(printbuf &out);

/* What pagetypeinfo shows for one zone (or summed over zones). */
struct pagetype_counts {
    unsigned long free_blocks[NR_PAGE_ORDERS][MIGRATE_TYPES]; /* free blocks per order and type */
    unsigned long free_pages[MIGRATE_TYPES];   /* free pages per type (the lists' type) */
    unsigned long nr_pageblocks[MIGRATE_TYPES];/* pageblocks per type (their tag) */
    unsigned long nr_mixed[MIGRATE_TYPES];     /* of those, holding allocations of >1 type */
    unsigned long nr_mixed_total;              /* pageblocks holding allocations of >1 type */
    unsigned long nr_empty_pageblocks;         /* pageblocks holding no allocation */
};

/* Add zone z's counts to *c.  Caller holds z->lock. */
void __zone_pagetype_counts(zone *z, pagetype_counts *c);

/* The sum over all zones (each zone lock taken in turn). */
void get_pagetype_counts(pagetype_counts *c);

/* Per size class: active objects, total objects, object size, objects per
 * slab, pages per slab.  cached[i]: objects of class i sitting in thread
 * caches (handed out by the slabs, but free). */
void print_slabinfo(printbuf &out, const unsigned long cached[NR_KMALLOC_CLASSES]);

/* Page-level totals, summed over zones (taking each zone lock briefly). */
struct zone_totals {
    unsigned long spanned_pages;  /* pages the zones span (their data, grown on demand) */
    unsigned long free_pages;     /* pages in free blocks on the buddy lists */
    unsigned long free_resident;  /* of those, counted resident (nr_free_resident) */
    unsigned long reported;       /* pages given back to the OS, ever (nr_reported) */
    unsigned long meta_pages;     /* pages of allocator metadata (nr_meta_pages) */
    unsigned long nr_zones;       /* zones set up */
};
zone_totals get_zone_totals();

} // namespace kalloc
