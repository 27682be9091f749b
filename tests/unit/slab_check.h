// Shared by the unit tests: check a slab cache's books under its lock.
// Every partial slab is on its owner's partial list and every full one on
// no list (as in SLUB; found by a walk of the zones), its objects add up
// (inuse + free + never carved + parked in holes == objects), a freelist's
// tail is where freelist_tail says, full slabs are full and partial ones
// are not, and the totals match the cache's counters (objects parked in the
// barn count as in use).
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "mm/slab.h"

inline unsigned long freelist_len(kalloc::page *pg)
{
    using namespace kalloc;
    unsigned long n = 0;
    for (void *o = pg->freelist; o; o = get_freepointer(o))
        n++;
    return n;
}

inline void *freelist_last(kalloc::page *pg)
{
    void *last = nullptr;
    for (void *o = pg->freelist; o; o = kalloc::get_freepointer(o))
        last = o;
    return last;
}

// The partial list of owner o of cache c, or nullptr when the row was never
// set up.  Reading c->partial[o] would set the row up (slab.h), and a test
// that walked every owner's list that way touched all 256 rows, which
// Slab.OwnerRowsOfUnusedIdsStayUntouched then saw when run in the same
// process.
inline kalloc::list_head *partial_list_if_set(kalloc::kmem_cache *c, unsigned o)
{
    using namespace kalloc;
    if (o != 0 && o < SLAB_OWNER_POOL && !kmem_cache_node_row_rw[o])
        return nullptr;         /* an id never handed out: its row is not even writable */
    list_head *l = &kmem_cache_node_row(o)[c->index].partial;
    return l->next ? l : nullptr;
}

// What a free() of a slab address that was never handed out meets
// (allocate_slab, slab_key_reached): the zone's class map names the cache
// on the slab's first page and on the pages carving reached (up to the page
// of the last carved object's start) but for holes, 0 on the others; the
// never-carved objects that start on a reached page that is not a hole
// carry the free-object key.  Caller holds c->lock.
inline void check_slab_tags(kalloc::kmem_cache *c, kalloc::page *pg)
{
    using namespace kalloc;
    if (pg->flags & PG_mesh_alias)
        return;
    const uint8_t *classes = zone_slab_class_map(page_zone(pg)) + page_to_pfn(pg);
    const unsigned npages = 1u << c->order;
    const uint32_t holes = pg->nr_holes ? pg[1].slab_hole_mask : 0;
    const unsigned reached = pg->carved ? (unsigned)(((size_t)(pg->carved - 1) * c->size) >> PAGE_SHIFT) : 0;
    for (unsigned p = 0; p < npages; p++) {
        bool tagged = p == 0 || (p <= reached && !(holes & (1u << p)));
        unsigned want = !tagged ? 0 : p == 0 && (holes & 1u) ? (c->index | SLAB_CLASS_HOLE) : c->index;
        EXPECT_EQ(classes[p], want) << "page " << p << " of a slab of " << c->size
                                                     << " B objects, " << pg->carved << " carved";
    }
    const char *base = (const char *)page_address(pg);
    for (unsigned i = pg->carved; i < pg->objects; i++) {
        size_t off = (size_t)i * c->size;
        unsigned p = (unsigned)(off >> PAGE_SHIFT);
        if (p > reached)
            break;
        if (!(holes & (1u << p)))
            EXPECT_EQ(((const uint64_t *)(base + off))[1], slab_free_key)
                << "never-carved object " << i << " of " << c->size << " B on reached page " << p;
    }
}

// The full slabs of cache c: on no list (as in SLUB), so found by walking
// every zone's block heads (free blocks, slabs and large blocks skip their
// tails, whose descriptors may be stale), as slab_pageblock_free_bytes
// does.  Takes each zone's lock (inside c->lock: the lock order).
inline std::vector<kalloc::page *> full_slabs(kalloc::kmem_cache *c)
{
    using namespace kalloc;
    std::vector<page *> out;
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nz; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        for (unsigned long pfn = 0; pfn < z->spanned_pages;) {
            page *p = pfn_to_page(z, pfn);
            const unsigned flags = p->flags;
            const unsigned order = p->order <= MAX_ORDER ? p->order : 0;
            unsigned long step = 1;
            if (flags & (PG_buddy | PG_pcp | PG_isolated)) {
                step = 1ul << order;
            } else if ((flags & (PG_head | PG_slab)) == (PG_head | PG_slab)) {
                kmem_cache *sc = page_slab_cache(p);
                if (sc == c && p->slab_list == SLAB_FULL)
                    out.push_back(p);
                step = 1ul << sc->order;
            } else if ((flags & (PG_head | PG_large)) == (PG_head | PG_large) && p->nr_pages) {
                step = p->nr_pages;
            } else if (flags & PG_head) {
                step = 1ul << order;
            }
            pfn += step;
        }
        spin_unlock(&z->lock);
    }
    return out;
}

inline void check_cache(kalloc::kmem_cache *c)
{
    using namespace kalloc;
    spin_lock(&c->lock);
    unsigned long inuse = 0, slabs = 0;
    auto check = [&](page *pg, bool full) {
        EXPECT_TRUE(pg->flags & PG_slab);
        EXPECT_EQ(pg->slab_list, full ? SLAB_FULL : SLAB_PARTIAL);
        EXPECT_EQ(page_slab_cache(pg), c);
        check_slab_tags(c, pg);
        unsigned parked = pg->nr_holes ? pg[1].slab_parked : 0;
        EXPECT_EQ(pg->inuse + freelist_len(pg) + (pg->objects - pg->carved) + parked,
                  pg->objects);
        if (pg->freelist)   /* freelist_tail names the freelist's last object */
            EXPECT_EQ(freelist_last(pg), (char *)page_address(pg) + pg->freelist_tail);
        if (full)
            EXPECT_EQ(pg->inuse, pg->objects);
        else
            EXPECT_LT(pg->inuse, pg->objects);
        inuse += pg->inuse;
        slabs++;
    };
    for (unsigned o = 0; o < NR_SLAB_OWNERS; o++)
        if (list_head *l = partial_list_if_set(c, o))
            for (list_head *e = l->next; e != l; e = e->next) {
                page *pg = list_entry(e, page, lru);
                /* a slab on partial[o] is owned by o */
                EXPECT_EQ(&c->partial[zone_slab_owner_map(page_zone(pg))[page_to_pfn(pg)]], l);
                check(pg, false);
            }
    std::vector<page *> full = full_slabs(c);
    EXPECT_EQ(full.size(), c->nr_full);
    for (page *pg : full)
        check(pg, true);
    if (c->empty_slab) {
        page *pg = c->empty_slab;
        EXPECT_EQ(pg->inuse, 0);
        unsigned parked = pg->nr_holes ? pg[1].slab_parked : 0;
        EXPECT_EQ(freelist_len(pg) + (pg->objects - pg->carved) + parked, pg->objects);
        slabs++;
    }
    EXPECT_EQ(inuse, c->active_objects);
    EXPECT_EQ(slabs, c->nr_slabs);
    spin_unlock(&c->lock);
}

