/*
 * mm/vmalloc.cc - huge allocations in kalloc-placed mappings (see vmalloc.h).
 *
 * chunk_state[i] of a region:
 *   CHUNK_FREE     no area here
 *   CHUNK_FOREIGN  someone else mapped here; never used
 *   n > 0          an area starts here, spanning n chunks; mapped[i] holds
 *                  its mapped length in bytes
 *   CHUNK_TAIL     inside an area that starts earlier
 */
#include "mm/vmalloc.h"

#include <errno.h>

#include "mm/page_alloc.h"
#include "mm/vmscan.h"
#include "platform/os.h"
#include "platform/printk.h"

namespace kalloc {

namespace {

constexpr uint32_t CHUNK_FREE = 0;
constexpr uint32_t CHUNK_TAIL = 0xffffffffu;
constexpr uint32_t CHUNK_FOREIGN = 0xfffffffeu;
constexpr size_t CHUNKS_PER_SLOT = ZONE_SLOT_SIZE / VMAP_CHUNK_SIZE;

} // namespace

struct vm_region {
    uint8_t type;             /* ZONE_VMALLOC */
    uintptr_t start;          /* first byte (slot aligned) */
    unsigned long nr_chunks;  /* region size in chunks */
    unsigned long nr_free;    /* CHUNK_FREE chunks */
    vm_region *next;          /* all regions, newest first */
    uint32_t *chunk_state;    /* per chunk, see above */
    uint64_t *mapped;         /* per area start: mapped bytes */
};

vm_region **vmalloc_table;

namespace {

spinlock_t vmap_lock = SPINLOCK_INIT;
vm_region *regions;
vmalloc_stats vstats;

/* mapped[] of an area's first chunk: its mapped length in bytes (bits
 * 0..46), VMAP_CACHED for a freed area kept mapped for reuse, and the
 * slack of an area lent whole to a smaller block (vmalloc_cached): pages
 * mapped past the block's usable end (bits 47..62), which the block's
 * usable size leaves out and its free takes back with the area. */
constexpr uint64_t VMAP_CACHED = 1ull << 63;
constexpr unsigned VMAP_SLACK_SHIFT = 47;
constexpr uint64_t VMAP_LEN_MASK = (1ull << VMAP_SLACK_SHIFT) - 1;
constexpr uint64_t VMAP_SLACK_MAX = (VMAP_CACHED >> VMAP_SLACK_SHIFT) - 1;   /* pages */
/* A lent area is at most VLEND_MAX_RATIO times a block of at most a
 * MAX_ORDER block's size, so its slack fits its bits. */
static_assert(VLEND_MAX_RATIO * (1ull << MAX_ORDER) <= VMAP_SLACK_MAX, "a lent area's slack fits mapped[]");

/* The mapped length, and the usable bytes (the length less the slack). */
inline size_t area_len(uint64_t m) { return (size_t)(m & VMAP_LEN_MASK); }
inline size_t area_usable(uint64_t m)
{
    return area_len(m) - (size_t)((m & ~VMAP_CACHED) >> VMAP_SLACK_SHIFT) * OS_PAGE_SIZE;
}
struct vcache_entry {
    void *addr;          /* start of the area */
    size_t bytes;        /* mapped length */
    vm_region *r;        /* its region */
    unsigned long i;     /* its first chunk */
    uint32_t free_time;  /* when it was freed (vmscan_now, ms) */
};
vcache_entry vcache[VCACHE_SLOTS];   /* oldest first */
unsigned vcache_n;                   /* entries in use */

/* Retention (see vmalloc.h), under vmap_lock. */
size_t vpeak;            /* live bytes at the recent peak (decayed towards the live bytes) */
size_t vworkingset;      /* bytes the program reused: mapped afresh where a shadow says the
                          * cache would have served them, or taken from the cache (decayed) */
unsigned long vreuses;   /* reuses counted into vworkingset (a count) */
unsigned long vreuses_at_decay; /* vreuses at the last timed pass that looked */

/* Shadows of unmapped areas (the kernel's workingset shadow entries,
 * mm/workingset.c): the size and time of each area a free or an eviction
 * unmapped, newest overwriting oldest.  A fresh mapping that one of them
 * would have served (the cache's fit: at least the size, at most twice it)
 * within VSHADOW_WINDOW_MS is a refault: the program reuses huge areas of
 * that size, and vworkingset grows by it. */
struct vshadow_entry {
    size_t bytes;        /* mapped length of the unmapped area (0: unused) */
    uint32_t time;       /* when it was unmapped (vmscan_now, ms) */
};
vshadow_entry vshadow[VSHADOW_SLOTS];
unsigned vshadow_next;   /* the slot the next shadow overwrites */

void __vshadow_add(size_t bytes)
{
    vshadow[vshadow_next] = {bytes, vmscan_now()};
    vshadow_next = (vshadow_next + 1) % VSHADOW_SLOTS;
}

/* Whether a fresh mapping of `bytes` is a refault; consumes the shadow. */
bool __vshadow_refault(size_t bytes)
{
    uint32_t now = vmscan_now();
    for (vshadow_entry &e : vshadow) {
        if (e.bytes >= bytes && e.bytes <= 2 * bytes && (uint32_t)(now - e.time) < VSHADOW_WINDOW_MS) {
            e.bytes = 0;
            return true;
        }
    }
    return false;
}

/* What the cache may hold: as much as the program has been seen to reuse
 * (vworkingset), up to the room under the recent peak of live bytes plus
 * VCACHE_OVER_PEAK, so the live areas and the cache never hold more than
 * that.  (Holding the cache to the peak itself kept mstress, whose threads
 * free and map in rounds that overlap, at 1.0 M faults instead of 0.77 M.)
 * Nothing before any reuse: a freed area that is never asked for again (a
 * growing array's old copy, freed for one twice as large, which the cache
 * cannot serve) is unmapped at once, as glibc does, instead of staying
 * resident while the program grows (frag-churn's peak 159-165 -> 152 MiB,
 * fragmentation's 341.8 -> 334.6, with nothing cached). */
size_t __vcache_retain()
{
    size_t room = (vpeak > vstats.bytes ? vpeak - vstats.bytes : 0) + VCACHE_OVER_PEAK;
    return vworkingset < room ? vworkingset : room;
}

vm_region *region_create(unsigned long min_chunks)
{
    unsigned nr_slots = (unsigned)((min_chunks + CHUNKS_PER_SLOT - 1) / CHUNKS_PER_SLOT);
    unsigned long nr_chunks = (unsigned long)nr_slots * CHUNKS_PER_SLOT;
    size_t meta = align_up(sizeof(vm_region), 16) + nr_chunks * (sizeof(uint32_t) + sizeof(uint64_t));
    char *m = (char *)os_map(align_up(meta, OS_PAGE_SIZE), true);
    if (!m)
        return nullptr;
    vm_region *r = (vm_region *)m;
    r->type = ZONE_VMALLOC;
    r->nr_chunks = nr_chunks;
    r->nr_free = nr_chunks;
    r->mapped = (uint64_t *)(m + align_up(sizeof(vm_region), 16));
    r->chunk_state = (uint32_t *)(r->mapped + nr_chunks);
    spin_lock(&zone_list_lock);
    vm_region **table = vmalloc_table;
    if (!table) {
        table = (vm_region **)os_map(NR_ZONE_SLOTS * sizeof(vm_region *), true);
        if (table)
            __atomic_store_n(&vmalloc_table, table, __ATOMIC_RELEASE);
    }
    r->start = table ? __reserve_zone_slots(nr_slots) : 0;
    if (r->start)
        for (unsigned i = 0; i < nr_slots; i++)
            WRITE_ONCE(table[(r->start >> ZONE_SLOT_SHIFT) + i], r);
    spin_unlock(&zone_list_lock);
    if (!r->start) {
        os_unmap(m, align_up(meta, OS_PAGE_SIZE));
        return nullptr;
    }
    r->next = regions;
    regions = r;
    vstats.nr_regions++;
    vstats.region_bytes += (size_t)nr_slots << ZONE_SLOT_SHIFT;
    return r;
}

/* First run of n free chunks whose address is a multiple of
 * align_chunks chunks (the region itself is only 4 GiB aligned, so for
 * larger alignments the first candidate is not chunk 0). */
long find_free_run(vm_region *r, unsigned long n, unsigned long align_chunks)
{
    if (r->nr_free < n)
        return -1;
    size_t align = align_chunks << VMAP_CHUNK_SHIFT;
    unsigned long first = (align_up(r->start, align) - r->start) >> VMAP_CHUNK_SHIFT;
    for (unsigned long i = first; i + n <= r->nr_chunks; i += align_chunks) {
        unsigned long j = 0;
        while (j < n && r->chunk_state[i + j] == CHUNK_FREE)
            j++;
        if (j == n)
            return (long)i;
        /* skip past the blocker, staying aligned */
        i = first + align_up(i - first + j + 1, align_chunks) - align_chunks;
    }
    return -1;
}

void mark_area(vm_region *r, unsigned long i, unsigned long n, uint64_t bytes)
{
    r->chunk_state[i] = (uint32_t)n;
    for (unsigned long j = 1; j < n; j++)
        r->chunk_state[i + j] = CHUNK_TAIL;
    r->mapped[i] = bytes;
    r->nr_free -= n;
}

void clear_area(vm_region *r, unsigned long i)
{
    unsigned long n = r->chunk_state[i];
    for (unsigned long j = 0; j < n; j++)
        r->chunk_state[i + j] = CHUNK_FREE;
    r->mapped[i] = 0;
    r->nr_free += n;
}

/* Claim and map a range of n chunks (mapping `bytes` of it) aligned to
 * align_chunks; returns the address or nullptr.  Caller holds vmap_lock. */
void *__vmap_range(unsigned long n, unsigned long align_chunks, size_t bytes, vm_region **rout,
                   unsigned long *iout, bool map)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        for (vm_region *r = regions; r; r = r->next) {
            long i;
            while ((i = find_free_run(r, n, align_chunks)) >= 0) {
                void *addr = (void *)(r->start + ((uintptr_t)i << VMAP_CHUNK_SHIFT));
                if (map && !os_map_fixed(addr, bytes, -1, 0)) {
                    if (errno != EEXIST)
                        return nullptr;         /* out of memory */
                    r->chunk_state[i] = CHUNK_FOREIGN;   /* someone else's: skip it */
                    r->nr_free--;
                    continue;
                }
                mark_area(r, (unsigned long)i, n, bytes);
                *rout = r;
                *iout = (unsigned long)i;
                return addr;
            }
        }
        /* No region has room: before reserving address space and chunk
         * tables for a new one, check the kernel would map this much at all
         * (an accounted mapping anywhere, given back at once), so a request
         * that can never succeed (malloc(1ul << 46)) fails in one system
         * call, not after scanning and leaking tables sized for it. */
        if (attempt == 0) {
            void *probe = map ? os_map(bytes, false) : (void *)1;
            if (!probe)
                return nullptr;                 /* ENOMEM from mmap */
            if (map)
                os_unmap(probe, bytes);
            if (!region_create(n + align_chunks))
                return nullptr;
        }
    }
    return nullptr;
}

bool lookup(const void *p, vm_region **rout, unsigned long *iout)
{
    uintptr_t a = (uintptr_t)p;
    if (a >> ADDRESS_BITS)
        return false;
    vm_region **table = __atomic_load_n(&vmalloc_table, __ATOMIC_ACQUIRE);
    vm_region *r = table ? READ_ONCE(table[a >> ZONE_SLOT_SHIFT]) : nullptr;
    if (!r || (a & (VMAP_CHUNK_SIZE - 1)))
        return false;
    unsigned long i = (a - r->start) >> VMAP_CHUNK_SHIFT;
    if (i >= r->nr_chunks)
        return false;
    uint32_t s = r->chunk_state[i];
    if (s == CHUNK_FREE || s == CHUNK_TAIL || s == CHUNK_FOREIGN)
        return false;
    if (r->mapped[i] & VMAP_CACHED)     /* freed, kept for reuse: not live */
        return false;
    *rout = r;
    *iout = i;
    return true;
}

/* Unmap cache entry k and forget it; `shadow`: leave a shadow (an area
 * the cache had to drop, not one idle for a decay period).  Caller holds
 * vmap_lock. */
void __vcache_evict(unsigned k, bool shadow)
{
    vcache_entry e = vcache[k];
    e.r->mapped[e.i] &= ~VMAP_CACHED;
    clear_area(e.r, e.i);
    os_unmap(e.addr, e.bytes);
    vstats.cached_bytes -= e.bytes;
    if (shadow)
        __vshadow_add(e.bytes);
    for (unsigned j = k + 1; j < vcache_n; j++)
        vcache[j - 1] = vcache[j];
    vcache_n--;
}

/* Evict the oldest areas until the cache holds at most `limit` bytes and
 * has a free slot if `slot`.  Caller holds vmap_lock. */
void __vcache_trim(size_t limit, bool slot)
{
    while (vcache_n && (vstats.cached_bytes > limit || (slot && vcache_n == VCACHE_SLOTS)))
        __vcache_evict(0, true);
}

/* A cached area for `bytes` aligned to `align`: the smallest that holds it
 * and is at most twice as large, shrunk in place to `bytes`; or, `lend`,
 * at most VLEND_MAX_RATIO times as large, kept whole with the rest as
 * slack (vmalloc_cached: the caller drops the slack's pages).  Caller holds
 * vmap_lock. */
void *__vcache_take(size_t bytes, size_t align, bool lend = false)
{
    size_t most = (lend ? VLEND_MAX_RATIO : 2) * bytes;
    int best = -1;
    for (unsigned k = 0; k < vcache_n; k++) {
        const vcache_entry &e = vcache[k];
        if (e.bytes >= bytes && e.bytes <= most && !((uintptr_t)e.addr & (align - 1)) &&
            (best < 0 || e.bytes < vcache[best].bytes))
            best = (int)k;
    }
    if (best < 0)
        return nullptr;
    vcache_entry e = vcache[best];
    for (unsigned j = (unsigned)best + 1; j < vcache_n; j++)
        vcache[j - 1] = vcache[j];
    vcache_n--;
    vstats.cached_bytes -= e.bytes;
    vm_region *r = e.r;
    r->mapped[e.i] = e.bytes;           /* live again */
    if (lend) {
        r->mapped[e.i] |= (uint64_t)((e.bytes - bytes) / OS_PAGE_SIZE) << VMAP_SLACK_SHIFT;
        return e.addr;
    }
    unsigned long old_n = r->chunk_state[e.i];
    unsigned long n = (bytes + VMAP_CHUNK_SIZE - 1) >> VMAP_CHUNK_SHIFT;
    if (bytes < e.bytes && os_remap_inplace(e.addr, e.bytes, bytes)) {
        for (unsigned long j = n; j < old_n; j++)
            r->chunk_state[e.i + j] = CHUNK_FREE;
        r->nr_free += old_n - n;
        r->chunk_state[e.i] = (uint32_t)n;
        r->mapped[e.i] = bytes;
    }
    return e.addr;
}

/* Count the area at p (just made live) in the statistics and the
 * retention's peak; returns its mapped length.  Caller holds vmap_lock. */
size_t __vaccount_live(void *p)
{
    vm_region *r = nullptr;
    unsigned long i = 0;
    size_t len = lookup(p, &r, &i) ? area_len(r->mapped[i]) : 0;
    vstats.bytes += len;
    vstats.nr_areas++;
    vstats.nr_allocs++;
    if (vstats.bytes > vpeak)
        vpeak = vstats.bytes;
    return len;
}

/* A huge request's mapped length (page rounded), or 0 when it cannot be
 * served (overflow, or more than 64 TiB); errno is then ENOMEM. */
size_t vmap_bytes(size_t size)
{
    size_t bytes = align_up(size, OS_PAGE_SIZE);
    if (bytes < size || bytes > (1ul << 46)) {
        errno = ENOMEM;
        return 0;
    }
    return bytes;
}

} // namespace

size_t vmalloc_drain_cache()
{
    spin_lock(&vmap_lock);
    size_t released = vstats.cached_bytes;
    while (vcache_n)
        __vcache_evict(0, false);
    /* Everything given back: retention starts over. */
    vworkingset = 0;
    for (vshadow_entry &e : vshadow)
        e.bytes = 0;
    vpeak = vstats.bytes;
    spin_unlock(&vmap_lock);
    return released;
}

void *vmalloc(size_t size, size_t align, bool *zeroed)
{
    int saved = errno;
    size_t bytes = vmap_bytes(size);
    if (!bytes)
        return nullptr;
    unsigned long n = (bytes + VMAP_CHUNK_SIZE - 1) >> VMAP_CHUNK_SHIFT;
    unsigned long align_chunks = align > VMAP_CHUNK_SIZE ? align >> VMAP_CHUNK_SHIFT : 1;
    vm_region *r;
    unsigned long i;
    spin_lock(&vmap_lock);
    bool fresh = false;
    void *p = __vcache_take(bytes, align > OS_PAGE_SIZE ? align : OS_PAGE_SIZE);
    if (p) {
        vstats.nr_cache_hits++;
        vworkingset += bytes;       /* reused: what keeps the cache holding it */
        vreuses++;
    } else {
        p = __vmap_range(n, align_chunks, bytes, &r, &i, true);
        if (!p) {
            /* Out of memory or address space (RLIMIT_AS): what the cache and
             * the free tops of the zones hold may be what is missing.  (Lock
             * order vmap_lock -> zone.lock, as for fork.) */
            while (vcache_n)
                __vcache_evict(0, false);
            zone_shrink_all();
            p = __vmap_range(n, align_chunks, bytes, &r, &i, true);
        }
        fresh = true;
    }
    if (p) {
        __vaccount_live(p);
        if (fresh) {
            /* Mapped afresh where an unmapped area would have served it:
             * a cache that had kept it would have spared these faults (the
             * workingset).  The room under the peak shrank: the cache
             * follows. */
            if (__vshadow_refault(bytes)) {
                vworkingset += bytes;
                vreuses++;
            }
            __vcache_trim(__vcache_retain(), false);
        }
        if (vworkingset > vpeak + VCACHE_OVER_PEAK)
            vworkingset = vpeak + VCACHE_OVER_PEAK;
        if (zeroed)
            *zeroed = fresh;
    }
    spin_unlock(&vmap_lock);
    if (p && fresh) {
        /* The process grows outside the zones: free memory they keep
         * across a round's drop must not raise its RSS peak (vmscan.h). */
        vmscan_note_growth(size);
        vmscan_tick();
    }
    errno = p ? saved : ENOMEM;
    return p;
}

void *vmalloc_cached(size_t size)
{
    if (!READ_ONCE(vcache_n))
        return nullptr;                 /* racy peek: the common case takes no lock */
    size_t bytes = align_up(size, OS_PAGE_SIZE);
    size_t len = 0;
    spin_lock(&vmap_lock);
    void *p = __vcache_take(bytes, OS_PAGE_SIZE, true);
    if (p) {
        len = __vaccount_live(p);
        vstats.nr_cache_hits++;
        vstats.nr_lent++;
        vworkingset += bytes;           /* reused, as any cache hit */
        vreuses++;
    }
    spin_unlock(&vmap_lock);
    /* The slack holds no memory while the block lives (however long that
     * is); the area is the block's alone now, so no lock is needed. */
    if (len > bytes)
        os_decommit((char *)p + bytes, len - bytes);
    return p;
}

size_t vmalloc_size(const void *p)
{
    vm_region *r;
    unsigned long i;
    spin_lock(&vmap_lock);
    size_t s = lookup(p, &r, &i) ? area_usable(r->mapped[i]) : 0;
    spin_unlock(&vmap_lock);
    return s;
}

bool is_vmalloc_addr(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    vm_region **table = __atomic_load_n(&vmalloc_table, __ATOMIC_ACQUIRE);
    return !(a >> ADDRESS_BITS) && table && READ_ONCE(table[a >> ZONE_SLOT_SHIFT]);
}

void vfree(void *p)
{
    vm_region *r;
    unsigned long i;
    spin_lock(&vmap_lock);
    if (!lookup(p, &r, &i)) {
        spin_unlock(&vmap_lock);
        panic("free(): invalid pointer %p (not a live huge block)", p);
    }
    size_t bytes = area_len(r->mapped[i]);   /* an area lent whole comes back whole */
    vstats.nr_areas--;
    vstats.bytes -= bytes;
    size_t limit = __vcache_retain();
    if (bytes <= limit) {
        /* Keep it mapped for reuse; evict the oldest to stay in bounds. */
        __vcache_trim(limit - bytes, true);
        r->mapped[i] = bytes | VMAP_CACHED;
        vcache[vcache_n++] = {p, bytes, r, i, vmscan_now()};
        vstats.cached_bytes += bytes;
    } else {
        clear_area(r, i);
        /* Unmap under the lock: the range must not be handed out before it is gone. */
        os_unmap(p, bytes);
        __vshadow_add(bytes);
    }
    spin_unlock(&vmap_lock);
}

size_t vmalloc_decay(uint32_t now, uint32_t min_age)
{
    spin_lock(&vmap_lock);
    size_t before = vstats.cached_bytes;
    /* Oldest first: stop at the first area freed less than min_age ago.
     * What decay unmaps leaves no shadow: it is not churn. */
    while (vcache_n && (int32_t)(now - vcache[0].free_time) >= (int32_t)min_age)
        __vcache_evict(0, false);
    /* The workingset fades only over passes with no reuse: a program in
     * rounds of huge blocks reuses them once a round, and a pass or two
     * within each round took an eighth off each time, so the cache's
     * bound fell just under a round's areas and the oldest went at each
     * round's last free (PHP rounds of a 400K-entry array: 5, 10 and 20
     * MiB copies, 36.7 MB reused a round, held to 34.7; the next round's
     * requests then each took the next larger area, shrinking it, and its
     * largest was mapped afresh: 5K faults a round). */
    if (vreuses == vreuses_at_decay)
        vworkingset -= vworkingset / 8;
    vreuses_at_decay = vreuses;
    if (vpeak > vstats.bytes)
        vpeak -= (vpeak - vstats.bytes + 7) / 8;
    __vcache_trim(__vcache_retain(), false);
    size_t released = before - vstats.cached_bytes;
    spin_unlock(&vmap_lock);
    return released;
}

size_t vmalloc_evict_at_high(uint32_t now)
{
    if (!READ_ONCE(vcache_n))
        return 0;                       /* racy peek: the common case takes no lock */
    spin_lock(&vmap_lock);
    size_t before = vstats.cached_bytes;
    while (vcache_n && (int32_t)(now - vcache[0].free_time) >= (int32_t)VCACHE_HIGH_MIN_AGE_MS)
        __vcache_evict(0, true);
    size_t released = before - vstats.cached_bytes;
    spin_unlock(&vmap_lock);
    return released;
}

void *vrealloc(void *p, size_t new_size)
{
    int saved = errno;
    size_t bytes = vmap_bytes(new_size);
    if (!bytes)
        return nullptr;
    unsigned long n = (bytes + VMAP_CHUNK_SIZE - 1) >> VMAP_CHUNK_SHIFT;
    vm_region *r;
    unsigned long i;
    spin_lock(&vmap_lock);
    if (!lookup(p, &r, &i)) {
        spin_unlock(&vmap_lock);
        panic("realloc(): invalid pointer %p (not a live huge block)", p);
    }
    size_t old_bytes = area_len(r->mapped[i]);
    size_t old_usable = area_usable(r->mapped[i]);
    if (old_usable < old_bytes && bytes <= old_bytes) {
        /* A lent area (vmalloc_cached): the block grows or shrinks within
         * it and the slack follows, so the area stays whole for the cache;
         * what a shrink leaves is given back as the slack was. */
        r->mapped[i] = old_bytes | (uint64_t)((old_bytes - bytes) / OS_PAGE_SIZE) << VMAP_SLACK_SHIFT;
        spin_unlock(&vmap_lock);
        if (bytes < old_usable)
            os_decommit((char *)p + bytes, old_usable - bytes);
        errno = saved;
        return p;
    }
    r->mapped[i] = old_bytes;           /* any slack is the block's again */
    unsigned long old_n = r->chunk_state[i];
    void *result = nullptr;
    if (bytes == old_bytes) {
        result = p;
    } else if (n <= old_n) {
        /* Shrink in place (or grow within the chunks it already owns). */
        if (os_remap_inplace(p, old_bytes, bytes)) {
            for (unsigned long j = n; j < old_n; j++)
                r->chunk_state[i + j] = CHUNK_FREE;
            r->nr_free += old_n - n;
            r->chunk_state[i] = (uint32_t)n;
            r->mapped[i] = bytes;
            result = p;
        }
    } else {
        /* Grow in place when the following chunks are free. */
        bool room = i + n <= r->nr_chunks;
        for (unsigned long j = old_n; room && j < n; j++)
            room = r->chunk_state[i + j] == CHUNK_FREE;
        if (room && os_remap_inplace(p, old_bytes, bytes)) {
            for (unsigned long j = old_n; j < n; j++)
                r->chunk_state[i + j] = CHUNK_TAIL;
            r->nr_free -= n - old_n;
            r->chunk_state[i] = (uint32_t)n;
            r->mapped[i] = bytes;
            result = p;
        } else {
            /* Move: claim a new range (mapping it, so nobody else is there),
             * then let mremap move the pages over it, without copying. */
            vm_region *nr;
            unsigned long ni;
            void *q = __vmap_range(n, 1, bytes, &nr, &ni, true);
            if (q) {
                if (os_remap_fixed(p, old_bytes, bytes, q)) {
                    clear_area(r, i);
                    result = q;
                } else {
                    clear_area(nr, ni);
                    os_unmap(q, bytes);
                }
            }
        }
    }
    if (result) {
        vstats.bytes += bytes;
        vstats.bytes -= old_bytes;
        if (vstats.bytes > vpeak)
            vpeak = vstats.bytes;
        errno = saved;
    } else {
        errno = ENOMEM;
    }
    spin_unlock(&vmap_lock);
    return result;
}

vmalloc_stats vmalloc_get_stats()
{
    spin_lock(&vmap_lock);
    vmalloc_stats s = vstats;
    s.retain_bytes = __vcache_retain();
    s.workingset_bytes = vworkingset;
    s.peak_bytes = vpeak;
    spin_unlock(&vmap_lock);
    return s;
}

void vmap_lock_for_fork() { spin_lock(&vmap_lock); }
void vmap_unlock_for_fork() { spin_unlock(&vmap_lock); }
void vmap_reinit_lock() { spin_lock_init(&vmap_lock); }

} // namespace kalloc
