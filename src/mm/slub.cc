/*
 * mm/slub.cc - slab caches (mirrors mm/slub.c, without per-CPU slabs: the
 * per-thread object caches of the malloc layer play that part).
 *
 * Invariants, per cache, under c->lock:
 *   - a slab is on exactly one of partial / full, or is the spare empty_slab;
 *   - for every slab: inuse + (objects on freelist) + (objects - carved)
 *     == objects;
 *   - a slab on full has inuse == objects; on partial 0 < inuse < objects
 *     (or inuse < objects while it is being filled);
 *   - active_objects == sum of inuse.
 */
#include "mm/slab.h"

#include "mm/compaction.h"
#include "mm/page_alloc.h"
#include "platform/options.h"
#include "platform/printk.h"

namespace kalloc {

kmem_cache kmalloc_caches[NR_KMALLOC_CLASSES];

static void kmem_cache_init_locked(kmem_cache *c, unsigned idx)
{
    const kmalloc_class &k = kmalloc_info[idx];
    c->size = k.size;
    c->objects = k.objects;
    c->order = k.order;
    c->index = (uint8_t)idx;
    INIT_LIST_HEAD(&c->partial);
    INIT_LIST_HEAD(&c->full);
    c->migratetype = MIGRATE_RECLAIMABLE;
    c->life_ratio = 1024;
    c->initialized = true;
}

static inline kmem_cache *cache_lock(kmem_cache *c)
{
    spin_lock(&c->lock);
    if (unlikely(!c->initialized))
        kmem_cache_init_locked(c, (unsigned)(c - kmalloc_caches));
    return c;
}

/* A new slab from the buddy allocator, every page tagged with the class. */
static page *allocate_slab(kmem_cache *c)
{
    page *pg = alloc_pages(c->order, (migratetype)c->migratetype, nullptr);
    if (!pg)
        return nullptr;
    unsigned long n = 1ul << c->order;
    prep_compound_page(pg, n, PG_slab);
    uint8_t *classes = zone_slab_class_map(pg->zone) + page_to_pfn(pg);
    uint8_t *owners = zone_slab_owner_map(pg->zone) + page_to_pfn(pg);
    for (unsigned long i = 0; i < n; i++) {
        classes[i] = c->index;
        owners[i] = 0;                  /* no owner yet */
    }
    pg->order = c->order;
    pg->nr_pages = (uint32_t)n;
    pg->slab_cache = c;
    pg->freelist = nullptr;
    pg->inuse = 0;
    pg->objects = c->objects;
    pg->carved = 0;
    pg->slab_list = SLAB_NONE;
    return pg;
}

static void discard_slab(kmem_cache *c, page *pg)
{
    unsigned long n = 1ul << c->order;
    uint8_t *classes = zone_slab_class_map(pg->zone) + page_to_pfn(pg);
    uint8_t *owners = zone_slab_owner_map(pg->zone) + page_to_pfn(pg);
    for (unsigned long i = 0; i < n; i++)
        classes[i] = owners[i] = 0;
    free_pages(pg, c->order);
}

static inline void set_slab_list(kmem_cache *c, page *pg, slab_list_id to)
{
    if (pg->slab_list == to)
        return;
    if (pg->slab_list == SLAB_PARTIAL) {
        list_del(&pg->lru);
        c->nr_partial--;
    } else if (pg->slab_list == SLAB_FULL) {
        list_del(&pg->lru);
        c->nr_full--;
    }
    if (to == SLAB_PARTIAL) {
        list_add(&pg->lru, &c->partial);
        c->nr_partial++;
    } else if (to == SLAB_FULL) {
        list_add(&pg->lru, &c->full);
        c->nr_full++;
    }
    pg->slab_list = to;
}

/* The thread cache `owner` takes objects from slab pg: it owns the slab now
 * (frees of its objects by other threads are remote frees). */
static inline void set_slab_owner(kmem_cache *c, page *pg, unsigned owner)
{
    uint8_t *owners = zone_slab_owner_map(pg->zone) + page_to_pfn(pg);
    if (owners[0] == owner)
        return;
    for (unsigned long i = 0; i < (1ul << c->order); i++)
        owners[i] = (uint8_t)owner;
}

/* Take up to `want` objects from slab pg onto the chain (head and tail pointers). */
static unsigned take_from_slab(kmem_cache *c, page *pg, unsigned want, void **head, void **tail)
{
    unsigned got = 0;
    char *base = (char *)page_address(pg);
    while (got < want) {
        void *obj;
        if (pg->freelist) {
            obj = pg->freelist;
            pg->freelist = *(void **)obj;
        } else if (pg->carved < pg->objects) {
            obj = base + (size_t)pg->carved * c->size;
            pg->carved++;
        } else {
            break;
        }
        *(void **)obj = nullptr;
        if (*tail)
            *(void **)*tail = obj;
        else
            *head = obj;
        *tail = obj;
        got++;
    }
    pg->inuse = (uint16_t)(pg->inuse + got);
    return got;
}

void *kmem_cache_alloc_bulk(kmem_cache *c, unsigned want, unsigned *got_out, unsigned owner)
{
    void *head = nullptr, *tail = nullptr;
    unsigned got = 0;
    cache_lock(c);
    while (got < want) {
        page *pg;
        if (!list_empty(&c->partial)) {
            pg = list_first_entry(&c->partial, page, lru);
        } else if (c->empty_slab) {
            pg = c->empty_slab;
            c->empty_slab = nullptr;
        } else {
            /* Allocate with the cache lock held: lock order cache -> zone. */
            pg = allocate_slab(c);
            if (!pg)
                break;
            c->nr_slabs++;
        }
        got += take_from_slab(c, pg, want - got, &head, &tail);
        set_slab_owner(c, pg, owner);
        set_slab_list(c, pg, pg->inuse == pg->objects ? SLAB_FULL : SLAB_PARTIAL);
    }
    c->active_objects += got;
    c->nr_refills++;
    c->life_allocs += got;
    unsigned long window = (unsigned long)SLAB_LIFE_WINDOW * c->objects;
    if (c->life_allocs >= (window > 512 ? window : 512))
        __slab_lifetime_update(c);
    spin_unlock(&c->lock);
    *got_out = got;
    return head;
}

void kmem_cache_free_bulk(kmem_cache *c, void *head, unsigned n)
{
    page *to_free[8];
    unsigned nr_to_free = 0;
    cache_lock(c);
    void *obj = head;
    for (unsigned i = 0; i < n; i++) {
        void *next = *(void **)obj;
        zone *z = page_zone_of((uintptr_t)obj);
        page *pg = compound_head(virt_to_page(z, (uintptr_t)obj));
        *(void **)obj = pg->freelist;
        pg->freelist = obj;
        pg->inuse--;
        if (pg->inuse == 0) {
            set_slab_list(c, pg, SLAB_NONE);
            if (!c->empty_slab) {
                c->empty_slab = pg;
            } else {
                c->nr_slabs--;
                if (nr_to_free == ARRAY_SIZE(to_free)) {
                    discard_slab(c, pg);           /* rare: many slabs emptied at once */
                } else {
                    to_free[nr_to_free++] = pg;
                }
            }
        } else if (pg->slab_list == SLAB_PARTIAL) {
            /* Falling to a quarter full: last in line for allocation, so
             * it may drain and empty. */
            if (pg->inuse == pg->objects / 4)
                list_move_tail(&pg->lru, &c->partial);
        } else {
            set_slab_list(c, pg, SLAB_PARTIAL);     /* from full: the head */
        }
        obj = next;
    }
    c->active_objects -= n;
    c->nr_flushes++;
    c->life_frees += n;
    spin_unlock(&c->lock);
    for (unsigned i = 0; i < nr_to_free; i++)
        discard_slab(c, to_free[i]);
    if (nr_to_free)
        compaction_slab_pages_freed((unsigned long)nr_to_free << c->order);
}

void __slab_lifetime_update(kmem_cache *c)
{
    unsigned long r = c->life_allocs ? c->life_frees * 1024 / c->life_allocs : 1024;
    if (r > 1024)
        r = 1024;
    c->life_ratio = (uint16_t)((c->life_ratio + r) / 2);
    c->life_allocs = c->life_frees = 0;
    migratetype mt = (migratetype)c->migratetype;
    if (!option_get(OPT_LIFETIME))
        return;                     /* learned (life_ratio) but not applied */
    if (mt == MIGRATE_RECLAIMABLE && c->life_ratio < SLAB_LIFE_LONG)
        mt = MIGRATE_LONGLIVED;
    else if (mt == MIGRATE_LONGLIVED && c->life_ratio > SLAB_LIFE_SHORT)
        mt = MIGRATE_RECLAIMABLE;
    if (mt != c->migratetype) {
        c->migratetype = mt;
        c->nr_life_changes++;
    }
}

unsigned long kmem_cache_order_partial_all()
{
    unsigned long sorted = 0;
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        cache_lock(c);
        /* Fullness in eighths, so near-equal slabs are ordered by pageblock
         * and address instead. */
        auto less = [c](list_head *a, list_head *b) {
            page *pa = list_entry(a, page, lru), *pb = list_entry(b, page, lru);
            unsigned ua = pa->inuse * 8u / c->objects, ub = pb->inuse * 8u / c->objects;
            if (ua != ub)
                return ua > ub;                 /* fullest slab first */
            unsigned long fa = page_to_pfn(pa), fb = page_to_pfn(pb);
            uint16_t na = READ_ONCE(pa->zone->pageblock_nr_free[fa >> pageblock_order]);
            uint16_t nb = READ_ONCE(pb->zone->pageblock_nr_free[fb >> pageblock_order]);
            if (pa->zone != pb->zone)
                return pa->zone->id < pb->zone->id;
            if (na != nb)
                return na < nb;                 /* fullest pageblock first */
            return fa < fb;                     /* lowest address first */
        };
        list_sort(&c->partial, less);
        sorted += c->nr_partial;
        spin_unlock(&c->lock);
    }
    return sorted;
}

bool kmem_cache_obj_is_free(kmem_cache *c, page *head, void *obj)
{
    bool found = false;
    cache_lock(c);
    char *base = (char *)page_address(head);
    if ((size_t)((char *)obj - base) / c->size >= head->carved)
        found = true;
    for (void *o = head->freelist; o && !found; o = *(void **)o)
        if (o == obj)
            found = true;
    spin_unlock(&c->lock);
    return found;
}

void kmem_cache_shrink_all()
{
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        cache_lock(c);
        page *pg = c->empty_slab;
        c->empty_slab = nullptr;
        if (pg)
            c->nr_slabs--;
        spin_unlock(&c->lock);
        if (pg)
            discard_slab(c, pg);
    }
}

void kmem_cache_lock_all()
{
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
        spin_lock(&kmalloc_caches[i].lock);
}

void kmem_cache_unlock_all()
{
    for (unsigned i = NR_KMALLOC_CLASSES; i-- > 1;)
        spin_unlock(&kmalloc_caches[i].lock);
}

void kmem_cache_reinit_locks()
{
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
        spin_lock_init(&kmalloc_caches[i].lock);
}

} // namespace kalloc
