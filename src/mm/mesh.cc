/*
 * mm/mesh.cc - meshing (see mesh.h).
 *
 * A pass, per order-0 size class, under the class's lock:
 *   1. candidates: partial slabs of memory-file zones, at most half in use,
 *      without holes, not aliases themselves (up to MESH_MAX_CAND);
 *   2. an occupancy bitmap each: every carved slot, less the slab's freelist
 *      (objects in thread caches, pagesets or the barn count as live);
 *   3. pairing: each slab against the next MESH_SEARCH candidates, the first
 *      with disjoint bits is merged into it (a primary keeps taking partners
 *      while it stays at most half in use);
 *   4. merge B into A: copy B's live objects into A's page at the same
 *      offsets, map B's virtual page onto A's file offset (MAP_FIXED), punch
 *      B's own file page, rebuild A's freelist from the union of the bits.
 * All signals are blocked across a pass, and it runs only when the process
 * has one thread: nothing writes B between the copy and the remap.
 */
#include "mm/mesh.h"

#include <string.h>

#include "mm/compaction.h"
#include "mm/page_alloc.h"
#include "mm/slab.h"
#include "mm/vmscan.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/printk.h"

namespace kalloc {

struct mesh_stats mesh_stats;

namespace {

constexpr unsigned MESH_MAX_CAND = 256;   /* slabs compared per class and round */
constexpr unsigned MESH_SEARCH = 64;      /* partners tried per slab (Mesh's t) */
constexpr unsigned MESH_WORDS = 8;        /* 512 slots: every order-0 class of >= 8 bytes */
constexpr unsigned MESH_MAX_ROUNDS = 64;  /* rounds per class and pass (bounds the time) */
constexpr unsigned MESH_TIMED_ROUNDS = 4; /* the same for timed and free-triggered passes */

inline void stat_add(unsigned long &c, long v) { __atomic_fetch_add(&c, (unsigned long)v, __ATOMIC_RELAXED); }

constexpr uint32_t MESH_THREADS_RECHECK_MS = 1000;
uint32_t mesh_threads_recheck;            /* vmscan_now() before which timed passes skip (under
                                           * compact_lock) */

/* Under compact_lock (one pass at a time): not on the stack. */
page *cand[MESH_MAX_CAND];
uint64_t occ[MESH_MAX_CAND][MESH_WORDS];
bool merged_away[MESH_MAX_CAND];
bool mesh_map_failed;                     /* a remap was refused in this pass: stop it */

inline uint64_t file_offset(const zone *z, const void *addr) { return (uintptr_t)addr - z->zone_start; }

/* Occupancy of slab pg: carved slots not on its freelist.  False when the
 * freelist does not have the length the counters say (then left alone). */
bool slab_occupancy(kmem_cache *c, page *pg, uint64_t *bits)
{
    memset(bits, 0, MESH_WORDS * sizeof(uint64_t));
    for (unsigned i = 0; i < pg->carved; i++)
        bits[i / 64] |= 1ull << (i % 64);
    unsigned listed = pg->carved - pg->inuse, n = 0;
    char *base = (char *)page_address(pg);
    for (void *o = pg->freelist; o; o = get_freepointer(o)) {
        size_t off = (size_t)((char *)o - base);
        if (off >= PAGE_SIZE || off % c->size || ++n > listed)
            return false;
        unsigned i = (unsigned)(off / c->size);
        bits[i / 64] &= ~(1ull << (i % 64));
    }
    return n == listed;
}

bool disjoint(const uint64_t *a, const uint64_t *b)
{
    uint64_t x = 0;
    for (unsigned w = 0; w < MESH_WORDS; w++)
        x |= a[w] & b[w];
    return !x;
}

/* Rebuild slab a's freelist: every slot below `carved` whose bit is clear,
 * lowest address first. */
void rebuild_freelist(kmem_cache *c, page *a, const uint64_t *bits, unsigned carved)
{
    char *base = (char *)page_address(a);
    void *head = nullptr;
    uint32_t tail = 0;
    for (unsigned i = carved; i-- > 0;) {
        if (bits[i / 64] & (1ull << (i % 64)))
            continue;
        void *obj = base + (size_t)i * c->size;
        if (!head)
            tail = (uint32_t)((size_t)i * c->size);
        set_freepointer(obj, head);
        head = obj;
    }
    a->freelist = head;
    a->freelist_tail = tail;
    a->carved = (uint16_t)carved;
}

/* Merge slab b into slab a (both order 0, same cache and zone, disjoint
 * bits).  Caller holds c->lock; the process has one thread and signals are
 * blocked. */
bool mesh_pair(kmem_cache *c, page *a, uint64_t *occa, page *b, const uint64_t *occb)
{
    zone *z = page_zone(a);
    int fd = z->backing_fd;
    char *abase = (char *)page_address(a), *bbase = (char *)page_address(b);
    unsigned carved = a->carved > b->carved ? a->carved : b->carved;
    for (unsigned w = 0; w < MESH_WORDS; w++)
        for (uint64_t m = occb[w]; m; m &= m - 1) {
            unsigned i = w * 64 + (unsigned)__builtin_ctzll(m);
            memcpy(abase + (size_t)i * c->size, bbase + (size_t)i * c->size, c->size);
        }
    if (!os_map_file_replace(bbase, PAGE_SIZE, fd, file_offset(z, abase))) {
        /* B keeps (or gets back) its own page, whose data is untouched; the
         * copies landed in slots free in A, whose links are rebuilt.  A
         * refusal for want of mappings (vm.max_map_count: the remap splits
         * the zone's mapping) comes before anything is unmapped, and mapping
         * B back would be refused the same way: only a hole is mapped
         * again.  No more pairs are tried in this pass. */
        mesh_map_failed = true;
        stat_add(mesh_stats.mesh_fail_map, 1);
        if (!os_is_mapped(bbase, PAGE_SIZE) &&
            !os_map_file_replace(bbase, PAGE_SIZE, fd, file_offset(z, bbase)))
            panic("mesh: cannot map a slab page back (%p)", (void *)bbase);
        rebuild_freelist(c, a, occa, a->carved);
        return false;
    }
    os_punch_hole(fd, file_offset(z, bbase), PAGE_SIZE);
    for (unsigned w = 0; w < MESH_WORDS; w++)
        occa[w] |= occb[w];
    rebuild_freelist(c, a, occa, carved);
    a->inuse = (uint16_t)(a->inuse + b->inuse);
    __slab_set_list(c, b, SLAB_NONE);
    c->nr_slabs--;
    if (a->inuse == a->objects && carved == a->objects)
        __slab_set_list(c, a, SLAB_FULL);
    zone_slab_owner_map(z)[page_to_pfn(b)] = zone_slab_owner_map(z)[page_to_pfn(a)];
    b->flags |= PG_mesh_alias;
    b->mesh_primary = a;
    b->inuse = 0;
    b->objects = 0;                 /* no free objects of its own (pageblock estimates) */
    b->carved = (uint16_t)carved;   /* object addresses through b valid below this */
    b->mesh_next = (a->flags & PG_meshed) ? a->mesh_next : 0;
    a->mesh_next = (uint32_t)page_to_pfn(b) + 1;
    a->flags |= PG_meshed;
    __atomic_fetch_add(&z->nr_mesh_aliases, 1ul, __ATOMIC_RELAXED);
    stat_add(mesh_stats.mesh_pages, 1);
    stat_add(mesh_stats.mesh_success, 1);
    return true;
}

/* One round over up to MESH_MAX_CAND candidates of cache c.  Returns the
 * pages given back; *more when the lists had more candidates. */
unsigned long mesh_cache_round(kmem_cache *c, unsigned *cursor, bool *more)
{
    unsigned n = 0, seen = 0;
    *more = false;
    for (unsigned o = 0; o < NR_SLAB_OWNERS && n < MESH_MAX_CAND; o++) {
        if (!(c->partial_owners[o / 64] & (1ull << (o % 64))))
            continue;
        list_head *l = &c->partial[o];
        for (list_head *it = l->next; it != l && n < MESH_MAX_CAND; it = it->next) {
            page *pg = list_entry(it, page, lru);
            if (page_zone(pg)->backing != ZONE_BACKING_MEMFD || pg->nr_holes ||
                2u * pg->inuse > pg->objects || !pg->inuse)
                continue;
            if (seen++ < *cursor)
                continue;           /* taken by an earlier round */
            if (!slab_occupancy(c, pg, occ[n]))
                continue;
            merged_away[n] = false;
            cand[n++] = pg;
        }
    }
    if (n == MESH_MAX_CAND) {
        *more = true;
        *cursor = seen;
    }
    unsigned long saved = 0;
    for (unsigned i = 0; i < n; i++) {
        if (merged_away[i])
            continue;
        page *a = cand[i];
        for (unsigned j = i + 1; j < n && j <= i + MESH_SEARCH && !mesh_map_failed; j++) {
            if (merged_away[j] || page_zone(cand[j]) != page_zone(a))
                continue;
            if (2u * a->inuse > a->objects)
                break;              /* a is no longer half empty */
            stat_add(mesh_stats.mesh_attempt, 1);
            if (!disjoint(occ[i], occ[j])) {
                stat_add(mesh_stats.mesh_fail_overlap, 1);
                continue;
            }
            page *b = cand[j];
            if (b->flags & PG_meshed)
                continue;           /* a primary stays one (its aliases map its page) */
            if (mesh_pair(c, a, occ[i], b, occ[j])) {
                merged_away[j] = true;
                saved++;
            }
        }
    }
    return saved;
}

/* Whether a timed pass should look at cache c (racy reads: a hint). */
bool mesh_timed_due(kmem_cache *c)
{
    if (!kmem_cache_ready(c) || c->order != 0)
        return false;
    unsigned long slabs = READ_ONCE(c->nr_slabs), active = READ_ONCE(c->active_objects);
    unsigned long last = READ_ONCE(c->mesh_active);
    return slabs >= MESH_TIMED_MIN_SLABS && 2 * active <= slabs * c->objects &&
           READ_ONCE(c->nr_flushes) != READ_ONCE(c->mesh_flushes) &&
           (active > last || 4 * active <= 3 * last);
}

unsigned long __mesh_all(bool timed)
{
    if (!option_get(OPT_MESH))
        return 0;
    /* A process that had threads at the last look is not asked again for
     * MESH_THREADS_RECHECK_MS: the frees of a threaded program would read
     * /proc at every bulk free of a class due for a pass. */
    uint32_t now = vmscan_now();
    if (timed && (int32_t)(now - mesh_threads_recheck) < 0)
        return 0;
    if (os_nr_threads() != 1) {
        stat_add(mesh_stats.mesh_skip_threads, 1);
        mesh_threads_recheck = now + MESH_THREADS_RECHECK_MS;
        return 0;
    }
    stat_add(mesh_stats.mesh_passes, 1);
    /* Candidates are slabs of zones whose memory file kalloc still holds
     * (the process has one thread: nothing closes it during the pass). */
    zone_memfd_sandbox_check(true);
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nz; i++)
        zone_backing_check(zones[i]);
    uint64_t old_mask;
    os_block_signals(&old_mask);
    mesh_map_failed = false;
    unsigned long saved = 0;
    for (unsigned idx = 1; idx < NR_KMALLOC_CLASSES; idx++) {
        kmem_cache *c = &kmalloc_caches[idx];
        if (!kmem_cache_ready(c) || c->order != 0 || (timed && !mesh_timed_due(c)))
            continue;
        kmem_cache_lock(c);
        c->mesh_flushes = c->nr_flushes;
        c->mesh_active = c->active_objects;
        if (c->objects < 2 || c->objects > MESH_WORDS * 64 || c->nr_partial < 2) {
            spin_unlock(&c->lock);
            continue;
        }
        unsigned cursor = 0;
        bool more = true;
        for (unsigned r = 0; more && !mesh_map_failed && r < (timed ? MESH_TIMED_ROUNDS : MESH_MAX_ROUNDS); r++)
            saved += mesh_cache_round(c, &cursor, &more);
        spin_unlock(&c->lock);
    }
    os_restore_signals(old_mask);
    return saved;
}

} // namespace

unsigned long mesh_all() { return __mesh_all(false); }

unsigned long mesh_timed()
{
    if (option_get(OPT_MESH) != 1)
        return 0;                   /* KALLOC_MESH=2: on demand only */
    bool any = false;
    for (unsigned idx = 1; idx < NR_KMALLOC_CLASSES && !any; idx++)
        any = mesh_timed_due(&kmalloc_caches[idx]);
    if (!any || !spin_trylock(&compact_lock))
        return 0;
    unsigned long saved = __mesh_all(true);
    spin_unlock(&compact_lock);
    return saved;
}

void __mesh_unmesh(kmem_cache *c, page *a)
{
    (void)c;
    zone *z = page_zone(a);
    uint32_t next = a->mesh_next;
    a->flags &= (uint16_t)~PG_meshed;
    a->nr_pages = 1;
    while (next) {
        unsigned long pfn = next - 1;
        page *b = pfn_to_page(z, pfn);
        next = b->mesh_next;
        void *baddr = page_address(b);
        zone_slab_class_map(z)[pfn] = 0;
        zone_slab_owner_map(z)[pfn] = 0;
        __atomic_fetch_sub(&z->nr_mesh_aliases, 1ul, __ATOMIC_RELAXED);
        stat_add(mesh_stats.mesh_pages, -1);
        if (z->backing == ZONE_BACKING_ANON) {
            /* A zone made anonymous in a fork child (zone_memfd_fork_child):
             * the alias has its own copy of the page; given back, it is zero. */
            os_decommit(baddr, PAGE_SIZE);
        } else if (!zone_backing_check(z) ||
                   !os_map_file_replace(baddr, PAGE_SIZE, z->backing_fd, file_offset(z, baddr))) {
            /* (Its own file page cannot be mapped without the file, which the
             * program closed.  A private page there would make the zone's
             * MADV_REMOVE fail on ranges across it and leave file pages that
             * read as given back but are not zero.) */
            /* Still mapping a's page: never handed out again (leaked). */
            b->flags = PG_meta | PG_head;
            continue;
        }
        stat_add(mesh_stats.unmesh, 1);
        spin_lock(&z->lock);
        __free_one_page(z, pfn, 0, true);     /* its own offsets are a hole: zero */
        spin_unlock(&z->lock);
    }
    a->mesh_next = 0;
}

/* Call fn(b) for every meshed alias b of zone z (a descriptor walk). */
template <typename Fn>
static void for_each_alias(zone *z, Fn fn)
{
    if (!z->nr_mesh_aliases)
        return;
    for (unsigned long pfn = 0; pfn < z->spanned_pages; pfn++) {
        page *b = pfn_to_page(z, pfn);
        if ((b->flags & (PG_mesh_alias | PG_buddy)) == PG_mesh_alias)
            fn(b, pfn);
    }
}

void mesh_copy_aliases(zone *z, char *image)
{
    /* Its own file offset is a hole; through its address it reads its
     * primary's page, which holds its objects. */
    for_each_alias(z, [image](page *b, unsigned long pfn) {
        memcpy(image + (pfn << PAGE_SHIFT), page_address(b), PAGE_SIZE);
    });
}

void mesh_remap_aliases(zone *z, int fd)
{
    for_each_alias(z, [z, fd](page *b, unsigned long) {
        if (!os_map_file_replace(page_address(b), PAGE_SIZE, fd,
                                 file_offset(z, page_address(b->mesh_primary))))
            panic("fork: cannot map a meshed page in the child (KALLOC_MESH)");
    });
}

} // namespace kalloc
