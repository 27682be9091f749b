/*
 * mm/slub.cc - slab caches (mirrors mm/slub.c, without per-CPU slabs: the
 * per-thread object caches of the malloc layer play that part).
 *
 * Invariants, per cache, under c->lock:
 *   - a slab is on exactly one of partial[owner] / full, or is the spare
 *     empty_slab; a slab on partial[o] has owner o in the slab owner map
 *     (o == 0: nobody), and o is 0 or a live owner;
 *   - for every slab: inuse + (objects on freelist) + (objects - carved)
 *     == objects;
 *   - a slab with a non-empty freelist has its last object at byte offset
 *     freelist_tail (whose link is nullptr);
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
kmem_cache_node kmem_cache_node_table[NR_SLAB_OWNERS][NR_KMALLOC_CLASSES];

static void kmem_cache_init_locked(kmem_cache *c, unsigned idx)
{
    const kmalloc_class &k = kmalloc_info[idx];
    c->size = k.size;
    c->objects = k.objects;
    c->order = k.order;
    c->index = (uint8_t)idx;
    c->partial.index = c->nr_owner_partial.index = (uint8_t)idx;  /* lists set up on use */
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

/* Owner ids whose thread cache is alive (set by the malloc layer). */
static bool slab_owner_live[NR_SLAB_OWNERS];

static void write_slab_owner(kmem_cache *c, page *pg, unsigned owner);

/* The list a partial slab goes on: its owner's, or 0 if that owner is gone
 * (then the slab becomes unowned). */
static inline unsigned slab_owner_fixup(kmem_cache *c, page *pg)
{
    uint8_t o = zone_slab_owner_map(pg->zone)[page_to_pfn(pg)];
    if (o && !READ_ONCE(slab_owner_live[o])) {
        write_slab_owner(c, pg, 0);
        o = 0;
    }
    return o;
}

static inline uint8_t slab_owner(page *pg)
{
    return zone_slab_owner_map(pg->zone)[page_to_pfn(pg)];
}

static inline void set_slab_list(kmem_cache *c, page *pg, slab_list_id to)
{
    if (pg->slab_list == to)
        return;
    if (pg->slab_list == SLAB_PARTIAL) {
        unsigned o = slab_owner(pg);
        list_del(&pg->lru);
        c->nr_partial--;
        if (--c->nr_owner_partial[o] == 0)
            c->partial_owners[o / 64] &= ~(1ull << (o % 64));
    } else if (pg->slab_list == SLAB_FULL) {
        list_del(&pg->lru);
        c->nr_full--;
    }
    if (to == SLAB_PARTIAL) {
        unsigned o = slab_owner_fixup(c, pg);
        if (o && c->nr_owner_partial[o] >= SLAB_OWNER_PARTIAL_MAX) {
            write_slab_owner(c, pg, 0);     /* the owner has enough */
            o = 0;
        }
        list_add(&pg->lru, &c->partial[o]);
        c->nr_owner_partial[o]++;
        c->partial_owners[o / 64] |= 1ull << (o % 64);
        c->nr_partial++;
    } else if (to == SLAB_FULL) {
        list_add(&pg->lru, &c->full);
        c->nr_full++;
    }
    pg->slab_list = to;
}

/* Set the owner of every page of slab pg (the zone's slab owner map). */
static void write_slab_owner(kmem_cache *c, page *pg, unsigned owner)
{
    uint8_t *owners = zone_slab_owner_map(pg->zone) + page_to_pfn(pg);
    for (unsigned long i = 0; i < (1ul << c->order); i++)
        owners[i] = (uint8_t)owner;
}

/* Take objects from slab pg onto the front of *chain: up to `want`, or its
 * whole freelist when that fits in `max` (max >= want).  A whole freelist
 * (its length is carved - inuse) is spliced in O(1) through its tail
 * (freelist_tail), without touching the objects under the lock: objects a
 * slab got back from other threads are cold in this CPU's cache, and
 * walking them one by one cost a cache miss each with the lock held (the
 * thread takes that miss when it hands the object out instead, outside any
 * lock).  Otherwise objects are popped one by one.  Carved objects are
 * pushed highest first, so the chain hands them out in address order. */
static unsigned take_from_slab(kmem_cache *c, page *pg, unsigned want, unsigned max, void **chain)
{
    unsigned got = 0;
    if (pg->freelist) {
        unsigned nfree = (unsigned)(pg->carved - pg->inuse);
        if (nfree <= max) {
            void *tail = (char *)page_address(pg) + pg->freelist_tail;
            *(void **)tail = *chain;           /* was nullptr: the freelist's end */
            *chain = pg->freelist;
            pg->freelist = nullptr;
            got = nfree;
        } else {
            while (got < want && pg->freelist) {
                void *obj = pg->freelist;
                pg->freelist = *(void **)obj;
                *(void **)obj = *chain;
                *chain = obj;
                got++;
            }
        }
    }
    unsigned carve = pg->objects - pg->carved, left = got < want ? want - got : 0;
    if (carve > left)
        carve = left;
    if (carve) {
        char *base = (char *)page_address(pg);
        for (unsigned i = pg->carved + carve; i-- > pg->carved;) {
            void *obj = base + (size_t)i * c->size;
            *(void **)obj = *chain;
            *chain = obj;
        }
        pg->carved = (uint16_t)(pg->carved + carve);
        got += carve;
    }
    pg->inuse = (uint16_t)(pg->inuse + got);
    return got;
}

/* Slab pg (off the lists) becomes owner's. */
static inline page *claim_slab(kmem_cache *c, page *pg, unsigned owner)
{
    if (slab_owner(pg) != owner)
        write_slab_owner(c, pg, owner);
    return pg;
}

/* Before a new slab is allocated: another owner's partial slab to borrow
 * free objects from, so free objects are not stranded in the slabs of owners
 * that do not need them: the coldest (list tail) of an owner that has at
 * least two, with the most free objects, if at least half its objects are
 * free.  (An owner's only partial slab is where its next objects come from:
 * borrowing it would put two threads' objects in one cache line, the false
 * sharing remote frees avoid.)
 * The slab stays its owner's: the objects borrowed become remote frees for
 * the borrower, the owner's own objects stay local frees for it.  Hence the
 * half-free rule: borrowing nearly full slabs (a few objects each) fed a
 * cycle on many-threads, where the borrowed objects came back as remote
 * frees, scattered over the owners' slabs a few at a time, whose refills
 * then found only nearly full slabs and borrowed in turn: 10 slabs visited
 * per refill, a third of all frees going back to the slabs. */
static page *borrow_partial(kmem_cache *c, unsigned owner)
{
    page *best = nullptr;
    for (unsigned w = 0; w < NR_SLAB_OWNERS / 64; w++) {
        uint64_t bits = c->partial_owners[w];
        if (w == owner / 64)
            bits &= ~(1ull << (owner % 64));
        while (bits) {
            unsigned o = w * 64 + (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (c->nr_owner_partial[o] < 2)
                continue;               /* leave an owner its last slab */
            page *pg = list_entry(c->partial[o].prev, page, lru);   /* its coldest */
            if (!best || pg->inuse < best->inuse)
                best = pg;
        }
    }
    if (best && 2u * best->inuse > best->objects)
        return nullptr;                 /* more than half full: a new slab instead */
    return best;
}

/* The slab a refill by thread cache `owner` takes objects from: its own
 * partial slab, else an unowned one (claimed), else the spare empty slab or
 * a new one (claimed); nullptr when out of memory.  The slab is off the
 * lists on return. */
static page *get_partial_or_new(kmem_cache *c, unsigned owner)
{
    page *pg;
    if (!list_empty(&c->partial[owner])) {
        pg = list_first_entry(&c->partial[owner], page, lru);
    } else if (owner && !list_empty(&c->partial[0])) {
        pg = list_first_entry(&c->partial[0], page, lru);
    } else if (c->empty_slab) {
        pg = c->empty_slab;
        c->empty_slab = nullptr;
        return claim_slab(c, pg, owner);
    } else if (c->nr_partial && (pg = borrow_partial(c, owner))) {
        set_slab_list(c, pg, SLAB_NONE);
        return pg;                      /* not claimed: see borrow_partial */
    } else {
        /* Allocate with the cache lock held: lock order cache -> zone. */
        pg = allocate_slab(c);
        if (!pg)
            return nullptr;
        c->nr_slabs++;
        return claim_slab(c, pg, owner);
    }
    set_slab_list(c, pg, SLAB_NONE);
    return claim_slab(c, pg, owner);
}

void *kmem_cache_alloc_bulk(kmem_cache *c, unsigned want, unsigned *got_out, unsigned owner,
                            unsigned max)
{
    void *head = nullptr;
    unsigned got = 0;
    owner &= NR_SLAB_OWNERS - 1;
    if (max < want)
        max = want;
    cache_lock(c);
    while (got < want) {
        page *pg = get_partial_or_new(c, owner);
        if (!pg)
            break;
        got += take_from_slab(c, pg, want - got, max - got, &head);
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

/* `run` objects just went back on slab pg's freelist: update its count
 * and lists.  Caller holds c->lock. */
static inline void slab_objects_freed(kmem_cache *c, page *pg, unsigned run, page **to_free,
                                      unsigned *nr_to_free, unsigned max_to_free)
{
    unsigned old = pg->inuse;
    pg->inuse = (uint16_t)(old - run);
    if (pg->inuse == 0) {
        set_slab_list(c, pg, SLAB_NONE);
        if (c->empty_refills != c->nr_refills)
            c->nr_empty_run = 0;          /* a refill since the last empty */
        c->empty_refills = c->nr_refills;
        if (c->nr_empty_run < SLAB_DRAIN_EMPTIES)
            c->nr_empty_run++;
        bool draining = c->nr_empty_run >= SLAB_DRAIN_EMPTIES;
        if (draining && c->empty_slab) {
            page *spare = c->empty_slab;      /* not needed: goes back too */
            c->empty_slab = nullptr;
            c->nr_slabs--;
            if (*nr_to_free == max_to_free)
                discard_slab(c, spare);
            else
                to_free[(*nr_to_free)++] = spare;
        }
        if (!c->empty_slab && !draining) {
            c->empty_slab = pg;
        } else {
            c->nr_slabs--;
            if (*nr_to_free == max_to_free)
                discard_slab(c, pg);               /* rare: many slabs emptied at once */
            else
                to_free[(*nr_to_free)++] = pg;
        }
    } else if (pg->slab_list == SLAB_PARTIAL) {
        /* Falling to a quarter full: last in line for allocation, so it
         * may drain and empty. */
        unsigned q = pg->objects / 4u;
        if (old > q && pg->inuse <= q)
            list_move_tail(&pg->lru, &c->partial[slab_owner(pg)]);
    } else {
        set_slab_list(c, pg, SLAB_PARTIAL);         /* from full: the head */
    }
}

/* Consecutive objects of one slab (the usual case: a thread cache gives
 * back what it took together) cost one range check each; the slab's page
 * is looked up and its count and lists updated once per run. */
void kmem_cache_free_bulk(kmem_cache *c, void *head, unsigned n)
{
    page *to_free[8];
    unsigned nr_to_free = 0;
    const uintptr_t slab_bytes = PAGE_SIZE << c->order;
    page *pg = nullptr;
    uintptr_t base = 0;
    unsigned run = 0;
    cache_lock(c);
    void *obj = head;
    for (unsigned i = 0; i < n; i++) {
        void *next = *(void **)obj;
        if ((uintptr_t)obj - base >= slab_bytes) {
            if (pg)
                slab_objects_freed(c, pg, run, to_free, &nr_to_free, ARRAY_SIZE(to_free));
            pg = virt_to_block_head((uintptr_t)obj, slab_bytes);
            base = (uintptr_t)obj & ~(slab_bytes - 1);
            run = 0;
        }
        if (!pg->freelist)
            pg->freelist_tail = (uint32_t)((uintptr_t)obj - base);
        *(void **)obj = pg->freelist;
        pg->freelist = obj;
        run++;
        obj = next;
    }
    if (pg)
        slab_objects_freed(c, pg, run, to_free, &nr_to_free, ARRAY_SIZE(to_free));
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
        if (!READ_ONCE(c->initialized))
            continue;
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
        for (unsigned o = 0; o < NR_SLAB_OWNERS; o++)
            if (c->partial_owners[o / 64] & (1ull << (o % 64)))
                list_sort(&c->partial[o], less);
        sorted += c->nr_partial;
        spin_unlock(&c->lock);
    }
    return sorted;
}

void slab_owner_set_live(unsigned owner, bool live)
{
    owner &= NR_SLAB_OWNERS - 1;
    if (!owner)
        return;
    WRITE_ONCE(slab_owner_live[owner], live);
    if (live)
        return;
    /* Its partial slabs become unowned, in every cache that is set up. */
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!READ_ONCE(c->initialized))
            continue;
        spin_lock(&c->lock);
        list_head *l = &c->partial[owner];
        while (!list_empty(l)) {
            page *pg = list_first_entry(l, page, lru);
            write_slab_owner(c, pg, 0);
            list_move(&pg->lru, &c->partial[0]);
            c->nr_owner_partial[0]++;
            c->partial_owners[0] |= 1;
        }
        c->nr_owner_partial[owner] = 0;
        c->partial_owners[owner / 64] &= ~(1ull << (owner % 64));
        spin_unlock(&c->lock);
    }
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
    for (unsigned i = 0; i < c->nr_barn && !found; i++)       /* parked in the barn */
        for (void *o = c->barn[i].head; o && !found; o = *(void **)o)
            if (o == obj)
                found = true;
    spin_unlock(&c->lock);
    return found;
}

void kmem_cache_barn_put(kmem_cache *c, void *head, unsigned n, unsigned owner)
{
    cache_lock(c);
    if (c->nr_barn < SLAB_BARN_SHEAVES) {
        c->barn[c->nr_barn++] = slab_sheaf{head, (uint16_t)n, (uint8_t)owner};
        c->barn_objects += n;
        c->nr_flushes++;
        spin_unlock(&c->lock);
        return;
    }
    spin_unlock(&c->lock);
    kmem_cache_free_bulk(c, head, n);
}

void *kmem_cache_barn_take(kmem_cache *c, unsigned owner, unsigned max, unsigned *got)
{
    if (!READ_ONCE(c->nr_barn))
        return nullptr;                 /* racy peek: the common miss takes no lock */
    void *head = nullptr;
    cache_lock(c);
    for (unsigned i = 0; i < c->nr_barn; i++) {
        slab_sheaf &sh = c->barn[i];
        if (sh.owner == owner && sh.nr <= max) {
            head = sh.head;
            *got = sh.nr;
            c->barn_objects -= sh.nr;
            sh = c->barn[--c->nr_barn];
            c->nr_refills++;
            break;
        }
    }
    spin_unlock(&c->lock);
    return head;
}

void kmem_cache_shrink_all()
{
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        kmem_cache *c = &kmalloc_caches[i];
        if (!READ_ONCE(c->initialized))
            continue;       /* never used: nothing to give back (and its pages stay untouched) */
        slab_sheaf sheaves[SLAB_BARN_SHEAVES];
        cache_lock(c);
        page *pg = c->empty_slab;
        c->empty_slab = nullptr;
        if (pg)
            c->nr_slabs--;
        unsigned nr = c->nr_barn;
        for (unsigned k = 0; k < nr; k++)
            sheaves[k] = c->barn[k];
        c->nr_barn = 0;
        c->barn_objects = 0;
        spin_unlock(&c->lock);
        if (pg)
            discard_slab(c, pg);
        for (unsigned k = 0; k < nr; k++)
            kmem_cache_free_bulk(c, sheaves[k].head, sheaves[k].nr);
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
