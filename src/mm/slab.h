/*
 * mm/slab.h - slab caches for the kmalloc size classes (interface of slub.cc).
 *
 * One kmem_cache per size class.  A slab is a block of 2^order pages from
 * the buddy allocator (MIGRATE_RECLAIMABLE) holding objects of one size; its
 * state lives in the head page's struct page (freelist, inuse, carved), never
 * in the slab's own memory.  Free objects are linked through their first word.
 * Objects past `carved` were never handed out: new slabs are carved lazily,
 * so untouched memory stays untouched (not resident).  The head page also
 * keeps where the freelist ends (freelist_tail), so a whole freelist joins
 * a refill's chain in O(1), without reading the (cold) objects under the lock.
 *
 * The slab layer hands out and takes back objects in bulk (a linked chain),
 * for the thread caches above it (malloc layer); kmem_cache_alloc/free move
 * one object, for callers without a thread cache.
 *
 * Slab lists, per cache, like SLUB's kmem_cache_node:
 *   partial  slabs with free objects and objects in use, one list per
 *            owner (the thread cache whose id is in the zone's slab owner
 *            map; list 0 for slabs nobody owns).  A refill by thread cache
 *            o takes from partial[o], then claims a slab from partial[0],
 *            then the spare empty slab, then takes over the coldest
 *            partial slab of another owner that has at least two (the
 *            kernel's get_any_partial; not a slab more than three quarters
 *            in use of the owner that last took one from it: kmem_cache_node.took_from),
 *            and only then allocates a new slab.  So threads with
 *            different ids rarely share a slab (little false sharing between
 *            them, as with jemalloc's arenas), an object freed by its
 *            allocating thread is almost always a local free, and free
 *            objects are not stranded in the slabs of one id.  Objects freed by other
 *            threads go back to the owner's slabs (remote frees).  An owner
 *            keeps at most SLAB_OWNER_PARTIAL_MAX partial slabs per cache;
 *            further ones become unowned, so free objects do not pile up in
 *            slabs only an idle thread may use.  When a cache goes away
 *            (thread exit), its slabs become unowned.
 *            Each list is kept roughly fullest first: a slab that comes
 *            back from full goes to the head, one that falls to a quarter
 *            full goes to the tail (it may drain and empty), and compaction
 *            sorts the lists (fullest slab, in the fullest pageblock,
 *            lowest address first: kmem_cache_order_partial_all)
 *   full     slabs with no free object: on no list, as in SLUB (without
 *            SLUB's debug lists), only counted (nr_full); a free into one
 *            finds it through the object's address and puts it on a partial
 *            list.  Linking them cost every full->partial move two writes
 *            to the neighbours' descriptors and every partial->full move a
 *            third, each a likely cache miss where a random free order
 *            meets slab after slab
 *   one empty slab is kept as a spare (empty_slab) so a cache that empties
 *   and refills does not bounce pages through the buddy allocator; further
 *   empty slabs go back to the buddy allocator at once.  A cache that is
 *   draining (SLAB_DRAIN_EMPTIES slabs empty with no refill in between: the
 *   program is freeing this class, not cycling through it) keeps no spare:
 *   the spare goes back with the slab that emptied (the kernel's SLUB keeps
 *   empty slabs only below min_partial; kalloc keeps one while it cycles).
 *
 * Lifetime (what migrate type new slabs get, see mmzone.h): per cache,
 * the objects handed out and given back are counted over windows of
 * SLAB_LIFE_WINDOW slabs' worth of allocations (at least 512 objects);
 * life_ratio is the running average (halved each window) of the share that
 * came back, in 1/1024.  Below 256 the class is long-lived
 * (MIGRATE_LONGLIVED), above 768 short-lived again (MIGRATE_RECLAIMABLE,
 * where every class starts), when KALLOC_LIFETIME=1 (otherwise only
 * life_ratio is kept, see mmzone.h).  Counted on the slow paths only (bulk
 * refills and flushes of the thread caches).
 *
 * Slab holes (slub.cc): a page of a slab of 2 or more pages whose objects
 * are all free (on the slab's freelist, or never carved) is given back with
 * madvise(MADV_DONTNEED) while the slab stays in use; its free objects are
 * parked off the freelist until the slab needs them (then they are threaded
 * back and the pages fault in again as zero pages).
 *
 * Lock order: (compact_lock ->) kmem_cache.lock -> zone.lock.  Holes are
 * punched (the madvise calls included) and filled under kmem_cache.lock.
 */
#pragma once

#include "mm/mmzone.h"
#include "mm/slab_common.h"

namespace kalloc {

enum slab_list_id : uint8_t { SLAB_NONE, SLAB_PARTIAL, SLAB_FULL };

constexpr unsigned NR_SLAB_OWNERS = 256;   /* owner ids are bytes; 0 = nobody */
/* The owner id of the slabs of classes above SLAB_SHARED_ABOVE: one pool
 * that every thread cache refills from and frees into (never a thread's own
 * id).  Objects that large share no cache line with another, so separate
 * owners buy nothing against false sharing there, and a pool per owner id
 * kept free objects apart per thread (see tcache_refill). */
constexpr unsigned SLAB_OWNER_SHARED = NR_SLAB_OWNERS - 1;
constexpr uint32_t SLAB_SHARED_ABOVE = 1024;
/* The owner id of the thread caches created once every id 1..4 x CPUs has
 * one, when per-CPU sheaves are in use (mm/percpu_sheaves.h): they share
 * slabs, and the per-CPU arrays hold only objects of this id's slabs. */
constexpr unsigned SLAB_OWNER_POOL = NR_SLAB_OWNERS - 2;
constexpr unsigned SLAB_BARN_SHEAVES = 8;  /* full sheaves a cache's barn holds */

/* A sheaf: a chain of free objects, all from slabs of one owner id, moved
 * whole (SLUB's sheaves and barn, Linux 6.18). */
struct slab_sheaf {
    void *head;        /* the objects, linked through their first words, null-terminated */
    uint16_t nr;       /* how many */
    uint8_t owner;     /* the owner id of their slabs */
};
constexpr unsigned SLAB_OWNER_PARTIAL_MAX = 4096; /* partial slabs one owner keeps per cache */

/* One owner id's part of one cache (the kernel's struct kmem_cache_node,
 * with owner ids for nodes).  They live apart from struct kmem_cache, a row
 * per owner id (kmem_cache_node_row), so the memory touched grows with the
 * owner ids in use (4 per CPU), not with the 256 an owner byte can name.
 * Inside struct kmem_cache, these lists took 4.6 KiB per class, 340 KiB of
 * BSS resident in a program using every class.  The rows of nobody (0),
 * SLAB_OWNER_POOL and SLAB_OWNER_SHARED are static; those of the thread
 * caches' ids are in a mapping made readable at the first such id and
 * writable a row at a time as ids are handed out (tcache_get), so the
 * 473 KB of rows of ids never used count neither against RLIMIT_DATA nor
 * as memory mlockall locks (they were BSS until 2026-12-07). */
struct kmem_cache_node {
    list_head partial;           /* this owner's slabs with some free objects */
    uint16_t nr_partial;         /* slabs on partial */
    uint8_t took_from;           /* whose partial slab this owner last took over (0: none);
                                  * here, not a 256-byte array in kmem_cache, so a cache
                                  * used at start-up touches fewer pages */
};

extern kmem_cache_node kmem_cache_node_fixed[3][NR_KMALLOC_CLASSES]; /* 0, POOL, SHARED */
extern kmem_cache_node (*kmem_cache_node_table)[NR_KMALLOC_CLASSES];  /* ids 1..POOL-1 */
extern bool kmem_cache_node_row_rw[NR_SLAB_OWNERS];  /* the id's row is mapped writable */

/* Make owner id o's row usable (map the table, make the row writable);
 * false when the kernel refuses (no memory): the id must not be used. */
bool kmem_cache_node_row_ready(unsigned o);
/* kmem_cache_node_row of an id whose row was never made ready (a caller
 * that did not go through tcache_get): readies it or panics. */
__cold kmem_cache_node *kmem_cache_node_row_slow(unsigned o);

static inline kmem_cache_node *kmem_cache_node_row(unsigned o)
{
    if (o == 0 || o >= SLAB_OWNER_POOL)
        return kmem_cache_node_fixed[o ? o - SLAB_OWNER_POOL + 1 : 0];
    if (unlikely(!__atomic_load_n(&kmem_cache_node_row_rw[o], __ATOMIC_ACQUIRE)))
        return kmem_cache_node_row_slow(o);
    return kmem_cache_node_table[o];
}

/* c->partial[o] and c->nr_owner_partial[o] read as arrays of the cache but
 * index its column of owner o's row (get_node(c, o) in the kernel).  A list
 * is set up on first use (a zero head is an unused one), so the pages of
 * rows of classes never used stay untouched.  Caller holds c->lock. */
struct kmem_cache_partial_lists {
    uint8_t index;               /* the cache's size class (its column) */
    list_head &operator[](unsigned o) const
    {
        list_head &l = kmem_cache_node_row(o)[index].partial;
        if (unlikely(!l.next))
            INIT_LIST_HEAD(&l);
        return l;
    }
};
struct kmem_cache_partial_counts {
    uint8_t index;               /* the cache's size class (its column) */
    uint16_t &operator[](unsigned o) const { return kmem_cache_node_row(o)[index].nr_partial; }
};

struct kmem_cache {
    spinlock_t lock;             /* protects the lists and counters below, and the
                                  * cache's column of kmem_cache_node_table */
    uint32_t size;               /* object size */
    uint16_t objects;            /* objects per slab */
    uint8_t order;               /* pages per slab = 2^order */
    uint8_t index;               /* size class index */
    kmem_cache_partial_lists partial; /* partial[o]: slabs with some free objects, of owner id o */
    page *empty_slab;            /* one spare empty slab, or nullptr */
    unsigned long nr_partial;    /* slabs on all partial lists */
    kmem_cache_partial_counts nr_owner_partial; /* nr_owner_partial[o]: slabs on partial[o] */
    uint64_t partial_owners[NR_SLAB_OWNERS / 64]; /* bit o: partial[o] is not empty */
    slab_sheaf barn[SLAB_BARN_SHEAVES]; /* full sheaves of remote-freed objects, by owner */
    unsigned nr_barn;            /* sheaves in barn[] */
    unsigned long barn_objects;  /* objects in the barn (counted in active_objects) */
    unsigned long nr_full;       /* full slabs: on no list, as in SLUB (a full slab is found
                                  * again through its objects' frees), counted only */
    unsigned long nr_slabs;      /* slabs owned, including the spare */
    unsigned long active_objects;/* objects handed out (to thread caches or the program) */
    unsigned long active_peak;   /* the most active_objects at a refill since a refill last
                                  * found them under an eighth of it (set at refills) */
    unsigned long nr_refills;    /* bulk allocations (thread cache refills) */
    unsigned long nr_flushes;    /* bulk frees (thread cache flushes) */
    unsigned long empty_refills; /* nr_refills when a slab last became empty */
    unsigned nr_empty_run;       /* slabs emptied since the last refill: SLAB_DRAIN_EMPTIES or
                                  * more means the cache is draining, and keeps no spare */
    uint8_t migratetype;         /* what new slabs ask for: MIGRATE_RECLAIMABLE or MIGRATE_LONGLIVED */
    uint16_t life_ratio;         /* running share of objects given back per window, in 1/1024 */
    bool stride_checked;         /* its population reached STRIDE_CLASS_MIN_BYTES once: the stride
                                  * class was decided (mm/slab_dynamic.h) */
    unsigned long life_allocs;   /* objects handed out in the current window */
    unsigned long life_frees;    /* objects given back in the current window */
    unsigned long nr_life_changes; /* times migratetype changed (a count) */
    unsigned long flushes_at_refill; /* nr_flushes at the last refill (bulk frees since: a
                                  * class being freed, see slub.cc cache_freeing) */
    unsigned long punch_refills; /* nr_refills at the last timed hole pass (idle: unchanged) */
    unsigned long punch_flushes; /* nr_flushes at the last timed hole pass (nothing new: unchanged) */
    unsigned long trim_flushes;  /* nr_flushes when malloc_trim's hole pass last looked at every
                                  * slab (0: never): unchanged, no slab has a new free page */
    unsigned long holes_freed_ms;/* coarse ms when its frees last punched holes (0: never, or
                                  * forgotten once a refault was counted) */
    unsigned long holes_defer_ms;/* its frees punch no holes before this time (coarse ms): their
                                  * last holes were refaulted within KALLOC_DECAY_MS (cache_freeing) */
    uint8_t holes_defer_shift;   /* deferrals in a row: the next lasts KALLOC_DECAY_MS << shift
                                  * (up to SLAB_HOLES_DEFER_MAX_SHIFT); 0 once a timed pass finds
                                  * the class idle */
    unsigned long mesh_flushes;  /* nr_flushes at the last meshing pass over it (mm/mesh.h): a
                                  * timed pass skips a cache with no frees since */
    unsigned long mesh_active;   /* active_objects at the last meshing pass over it, raised
                                  * when it grows: frees that take it 1/4 lower start a pass */
};

constexpr unsigned SLAB_DRAIN_EMPTIES = 4;      /* slabs emptied with no refill: draining */
constexpr unsigned SLAB_HOLES_DEFER_MAX_SHIFT = 6; /* frees' holes deferred at most 64 x KALLOC_DECAY_MS */
constexpr unsigned SLAB_LIFE_WINDOW = 4;        /* slabs' worth of objects per window */
constexpr uint16_t SLAB_LIFE_LONG = 256;        /* life_ratio below this: long-lived */
constexpr uint16_t SLAB_LIFE_SHORT = 768;       /* life_ratio above this: short-lived */

extern kmem_cache kmalloc_caches[NR_KMALLOC_CLASSES];

/* Bit i: kmalloc_caches[i] is set up (its lists, lazily, on first use;
 * set with a release once its fields are written).  Apart from the caches
 * (9 pages of them) so that a loop over every class and a refill's peek at
 * a barn read one word, not the page of a cache never used: that read
 * faulted in the zero page, and the cache's set-up faulted the page again
 * (a short process's first mallocs took 14 faults more). */
extern uint64_t kmem_cache_ready_mask[(NR_KMALLOC_CLASSES + 63) / 64];

static inline bool kmem_cache_ready(const kmem_cache *c)
{
    unsigned i = (unsigned)(c - kmalloc_caches);
    return __atomic_load_n(&kmem_cache_ready_mask[i / 64], __ATOMIC_ACQUIRE) >> (i % 64) & 1;
}

/* The cache a slab page belongs to: its size class in the zone's slab_class
 * map (struct page keeps no pointer to it). */
static inline kmem_cache *page_slab_cache(const page *pg)
{
    return &kmalloc_caches[zone_slab_class_map(page_zone(pg))[page_to_pfn(pg)] & (SLAB_CLASS_HOLE - 1)];
}

/* Take up to `want` objects of cache `c`, linked through their first words
 * (the last link nullptr); returns the first (nullptr when out of memory) and
 * stores how many in *got.  With max > want, a slab's whole freelist is taken
 * (in O(1), see take_from_slab) when it fits in max: up to max objects.
 * The slabs they come from become owned by thread cache `owner` (0: none),
 * in the zone's slab map. */
void *kmem_cache_alloc_bulk(kmem_cache *c, unsigned want, unsigned *got, unsigned owner,
                            unsigned max = 0);

/* The malloc layer tells which thread-cache owner ids are alive.  When an
 * id dies, the partial slabs it owned become unowned (partial[0]) in every
 * cache, and its full slabs become unowned when they next get a free. */
void slab_owner_set_live(unsigned owner, bool live);

/* Give back a chain of `n` objects (linked through their first words, last
 * one's link ignored) that all belong to cache c. */
void kmem_cache_free_bulk(kmem_cache *c, void *head, unsigned n);

static inline void *kmem_cache_alloc(kmem_cache *c)
{
    unsigned got;
    return kmem_cache_alloc_bulk(c, 1, &got, 0);
}
static inline void kmem_cache_free(kmem_cache *c, void *obj) { kmem_cache_free_bulk(c, obj, 1); }

/* Pages first..last of the slab that object i of cache c overlaps, as a mask. */
static inline uint32_t obj_page_mask(const kmem_cache *c, unsigned i)
{
    unsigned long off = (unsigned long)i * c->size;
    unsigned first = (unsigned)(off >> PAGE_SHIFT), last = (unsigned)((off + c->size - 1) >> PAGE_SHIFT);
    return (uint32_t)(((2ull << last) - 1) & ~((1ull << first) - 1));
}

/* Whether object i of slab `head` (cache c) overlaps one of its holes: it is
 * free (parked).  Read without the lock by free()'s slow path: an object in
 * use never overlaps a hole, so a stale read can only miss a parked one. */
static inline bool slab_obj_parked(const kmem_cache *c, const page *head, unsigned i)
{
    return READ_ONCE(head->nr_holes) && (obj_page_mask(c, i) & READ_ONCE(head[1].slab_hole_mask));
}

/* Whether obj (a valid object address of cache c, in slab `head`) is free
 * in the slab: on its freelist or never carved.  Takes c->lock. */
bool kmem_cache_obj_is_free(kmem_cache *c, page *head, void *obj);

/* The barn (SLUB's, Linux 6.18): remote frees come back in sheaves, chains
 * of objects that all belong to one owner's slabs.  Instead of putting each
 * object back on its slab (a page lookup and a freelist write per object,
 * under the lock), a sheaf is parked whole in the cache's barn, and the next
 * refill by a thread cache of that owner takes it whole: O(1) under the lock
 * both ways.  Objects only go back to their owner's threads, so the barn
 * keeps remote frees' false-sharing protection.  A full barn sends the sheaf
 * to the slabs as before; kmem_cache_shrink_all empties the barns.
 * barn_put: n objects of owner `owner` (n >= 1).  barn_take: a sheaf of
 * owner `owner` of at most `max` objects, or nullptr; *got its size. */
void kmem_cache_barn_put(kmem_cache *c, void *head, unsigned n, unsigned owner);
void *kmem_cache_barn_take(kmem_cache *c, unsigned owner, unsigned max, unsigned *got);

/* Give every spare empty slab back to the buddy allocator, and the barns'
 * sheaves to their slabs (malloc_trim, timed reclaim passes). */
void kmem_cache_shrink_all();

/* Slab holes (see slub.cc).  Counters, relaxed atomic adds. */
struct slab_hole_stats {
    unsigned long punched;      /* pages given back from slabs in use (slab_holes_punched) */
    unsigned long refaulted;    /* hole pages whose objects went back on a freelist because
                                 * the slab needed them (slab_holes_refaulted) */
    unsigned long hole_pages;   /* pages that are holes now (a gauge) */
    unsigned long madvise_calls;/* system calls that gave them back (madvise, or one
                                 * process_madvise for a batch) */
    unsigned long batched;      /* ranges given back in batches of more than one */
    unsigned long cancelled;    /* hole pages taken out of the batch before it went back
                                 * (their slab needed them, or was freed) */
    unsigned long deferred;     /* times a class's frees stopped punching holes because their
                                 * holes came back within KALLOC_DECAY_MS (slab_holes_deferred) */
};
extern slab_hole_stats slab_holes;

/* Look for pages of slab pg whose objects are all free and give them back
 * (park their objects; the pages go back with the holes' batch, by the
 * time slab_holes_flush returns at the latest).  Caller holds c->lock.
 * Returns the pages given back.  Exposed for tests; the slab layer calls it itself:
 *   - when a slab of a cache being freed (draining, see above, or 16 bulk
 *     frees with no refill) falls to half full or less and has lost a
 *     page's worth of objects since it was last looked at, and on the spare
 *     empty slab of such a cache (the frees give memory back, with no
 *     background thread);
 *   - kmem_cache_punch_holes_all.
 * keep_huge: punch nothing in a slab whose pageblock is one whole hugepage
 * that is not sparse (the frees' rule, slub.cc slab_in_whole_hugepage),
 * asked only once a page is found to punch. */
unsigned long __slab_punch_holes(kmem_cache *c, page *pg, bool keep_huge = false);

/* Give the holes' batch back now: hole pages are queued (up to 32 ranges,
 * process-wide) and go back with one system call when the batch is full,
 * at the end of each reclaim pass and of kmem_cache_punch_holes_all, or
 * here.  Takes the batch's lock (innermost); call with no zone or pageset
 * lock held.  _try: not if another thread holds that lock (then false). */
void slab_holes_flush();
bool slab_holes_flush_try();

/* Ranges in the holes' batch now (a gauge; at most 32, and never 32 once
 * the frees that filled it have let their cache lock go). */
unsigned slab_holes_queued();

/* Punch holes in the partial slabs of every cache (slabs of 2 or more
 * pages, at least half free).  idle_only: only caches that took no refill
 * since the previous such pass and got frees since (timed passes: their free
 * objects have been idle a tick period); otherwise every cache (malloc_trim,
 * kalloc_compact).  Takes each cache lock in turn.  Returns the pages given
 * back. */
unsigned long kmem_cache_punch_holes_all(bool idle_only);

/* Compaction's steering: sort every cache's partial list so allocation
 * takes the fullest slab first, then the one in the fullest pageblock (the
 * zones' pageblock_nr_free, filled by the compaction scan), then the lowest
 * address.  Returns the slabs sorted. */
unsigned long kmem_cache_order_partial_all();

/* The end of a lifetime window of cache c (under c->lock): update
 * life_ratio and migratetype (exposed for tests). */
void __slab_lifetime_update(kmem_cache *c);

/* For mm/mesh.cc: take c->lock (setting the cache up on first use); move a
 * slab between the lists (caller holds c->lock). */
kmem_cache *kmem_cache_lock(kmem_cache *c);
void __slab_set_list(kmem_cache *c, page *pg, slab_list_id to);

/* For fork(): take / release / reset every cache lock. */
void kmem_cache_lock_all();
void kmem_cache_unlock_all();
void kmem_cache_reinit_locks();

} // namespace kalloc
