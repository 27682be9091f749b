/*
 * mm/per_cpu_pages.cc - per-CPU pagesets (see per_cpu_pages.h).
 */
#include "mm/per_cpu_pages.h"

#include "mm/page_alloc.h"
#include "platform/cpu.h"

namespace kalloc {

static inline unsigned pindex(unsigned order, migratetype mt) { return order * MIGRATE_TYPES + mt; }

static inline per_cpu_pages *this_cpu_pcp(zone *z)
{
    return &z->per_cpu_pageset[raw_smp_processor_id() % z->nr_pcp];
}

void pcp_init(zone *z, per_cpu_pages *pcps, unsigned nr)
{
    z->per_cpu_pageset = pcps;
    z->nr_pcp = nr;
    for (unsigned i = 0; i < nr; i++)
        for (auto &l : pcps[i].lists)
            INIT_LIST_HEAD(&l);
    pcp_update_batch_high(z);
}

void pcp_update_batch_high(zone *z)
{
    /* The kernel's zone_batchsize(). */
    unsigned long batch = z->spanned_pages >> 10;
    if (batch > (1ul << 20) / PAGE_SIZE)
        batch = (1ul << 20) / PAGE_SIZE;
    batch /= 4;
    if (batch < 1)
        batch = 1;
    batch = (1ul << floor_log2(batch + batch / 2)) - 1;
    if (batch < 1)
        batch = 1;
    for (unsigned i = 0; i < z->nr_pcp; i++) {
        WRITE_ONCE(z->per_cpu_pageset[i].batch, (int)batch);
        WRITE_ONCE(z->per_cpu_pageset[i].high, (int)(6 * batch));
    }
}

/* Move up to `count` blocks of `order` from the zone to list, under one hold
 * of the zone lock.  Returns how many. */
static int rmqueue_bulk(zone *z, unsigned order, int count, migratetype mt, list_head *list)
{
    int got = 0;
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    for (; got < count; got++) {
        bool zeroed = false;
        page *pg = __rmqueue(z, order, mt, &zeroed);
        if (!pg)
            break;
        pg->flags = PG_pcp | (zeroed ? PG_reported : 0);
        pg->order = (uint8_t)order;
        list_add_tail(&pg->lru, list);
    }
    spin_unlock(&z->lock);
    return got;
}

page *rmqueue_pcplist(zone *z, unsigned order, migratetype mt, bool *zeroed)
{
    per_cpu_pages *pcp = this_cpu_pcp(z);
    list_head *list = &pcp->lists[pindex(order, mt)];
    spin_lock(&pcp->lock);
    if (list_empty(list)) {
        /* Refill a batch (at least one block) of this order. */
        int blocks = pcp->batch >> order;
        if (blocks < 1)
            blocks = 1;
        int got = rmqueue_bulk(z, order, blocks, mt, list);
        pcp->count += got << order;
        pcp->nr_refill++;
        if (!got) {
            spin_unlock(&pcp->lock);
            return nullptr;
        }
    }
    page *pg = list_first_entry(list, page, lru);
    list_del(&pg->lru);
    pcp->count -= 1 << order;
    spin_unlock(&pcp->lock);
    if (zeroed)
        *zeroed = pg->flags & PG_reported;
    pg->flags = 0;
    return pg;
}

/* Give `pages` pages' worth of blocks back to the zone, coldest (list tail)
 * first, going round the lists, under one hold of the zone lock (the
 * kernel's free_pcppages_bulk).  Caller holds pcp->lock. */
static void free_pcppages_bulk(zone *z, int pages, per_cpu_pages *pcp)
{
    spin_lock(&z->lock);
    pa_stats.zone_lock++;
    unsigned l = 0, empty_in_a_row = 0;
    while (pages > 0 && pcp->count > 0 && empty_in_a_row < NR_PCP_LISTS) {
        list_head *list = &pcp->lists[l];
        l = (l + 1) % NR_PCP_LISTS;
        if (list_empty(list)) {
            empty_in_a_row++;
            continue;
        }
        empty_in_a_row = 0;
        page *pg = list_entry(list->prev, page, lru);
        list_del(&pg->lru);
        unsigned order = pg->order;
        bool reported = pg->flags & PG_reported;
        pcp->count -= 1 << order;
        pages -= 1 << order;
        __free_one_page(z, page_to_pfn(pg), order, reported);
    }
    pcp->nr_drain++;
    spin_unlock(&z->lock);
}

void free_unref_page(zone *z, page *pg, unsigned order)
{
    per_cpu_pages *pcp = this_cpu_pcp(z);
    spin_lock(&pcp->lock);
    pg->flags = PG_pcp;
    pg->order = (uint8_t)order;
    pg->compound_head = 0;
    list_add(&pg->lru, &pcp->lists[pindex(order, (migratetype)get_pageblock_migratetype(
                                                          z, page_to_pfn(pg)))]);
    pcp->count += 1 << order;
    /* Over high: give back a batch, and enough to end at most at
     * high - batch whatever the block sizes were. */
    if (pcp->count >= pcp->high)
        free_pcppages_bulk(z, pcp->count - pcp->high + pcp->batch, pcp);
    spin_unlock(&pcp->lock);
}

void drain_all_pages()
{
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        for (unsigned c = 0; c < z->nr_pcp; c++) {
            per_cpu_pages *pcp = &z->per_cpu_pageset[c];
            spin_lock(&pcp->lock);
            if (pcp->count)
                free_pcppages_bulk(z, pcp->count, pcp);
            spin_unlock(&pcp->lock);
        }
    }
}

unsigned long zone_pcp_pages(zone *z)
{
    unsigned long n = 0;
    for (unsigned c = 0; c < z->nr_pcp; c++)
        n += (unsigned long)READ_ONCE(z->per_cpu_pageset[c].count);
    return n;
}

void pcp_lock_all(unsigned nz)
{
    for (unsigned i = 0; i < nz; i++)
        for (unsigned c = 0; c < zones[i]->nr_pcp; c++)
            spin_lock(&zones[i]->per_cpu_pageset[c].lock);
}

void pcp_unlock_all(unsigned nz)
{
    for (unsigned i = nz; i-- > 0;)
        for (unsigned c = zones[i]->nr_pcp; c-- > 0;)
            spin_unlock(&zones[i]->per_cpu_pageset[c].lock);
}

void pcp_reinit_locks(unsigned nz)
{
    for (unsigned i = 0; i < nz; i++)
        for (unsigned c = 0; c < zones[i]->nr_pcp; c++)
            spin_lock_init(&zones[i]->per_cpu_pageset[c].lock);
}

} // namespace kalloc
