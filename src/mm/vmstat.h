/*
 * mm/vmstat.h - kernel-style views of the page and slab allocators
 * (/proc/buddyinfo, /proc/pagetypeinfo, /proc/slabinfo), printed into a
 * printbuf without allocating.
 */
#pragma once

#include "mm/slab_common.h"
#include "platform/printk.h"

namespace kalloc {

/* Free blocks per order, per zone, and per migrate type. */
void print_buddyinfo(printbuf &out);

/* Per size class: active objects, total objects, object size, objects per
 * slab, pages per slab.  cached[i]: objects of class i sitting in thread
 * caches (handed out by the slabs, but free). */
void print_slabinfo(printbuf &out, const unsigned long cached[NR_KMALLOC_CLASSES]);

/* Page-level totals, summed over zones (taking each zone lock briefly). */
struct zone_totals {
    unsigned long spanned_pages;
    unsigned long free_pages;
    unsigned long free_resident;
    unsigned long reported;
    unsigned long meta_pages;
    unsigned long nr_zones;
};
zone_totals get_zone_totals();

} // namespace kalloc
