/*
 * mm/mmzone.h - zones, free areas, migrate types and pageblocks.
 *
 * Mirrors include/linux/mmzone.h.  A zone is a region of address space that
 * kalloc reserved for itself: a ZONE_SLOT_SIZE (4 GiB) aligned slot.
 *
 *   slot:  [ data pages, growing upward ...  | mem_map, growing upward ... ]
 *          0                  ZONE_MAX_PAGES pages                   4 GiB
 *
 * So a descriptor's zone, pfn and page address follow from its own address
 * (page_zone, page_to_pfn, page_address): struct page has no zone field.
 *
 * Data pages grow on demand (__zone_grow: mmap right after what the zone
 * has, never over another mapping: os_map_fixed); the struct page
 * descriptors of the new pages (the mem_map, in the top 48 MiB of the slot)
 * are mapped in the same step, so metadata costs 1/64 of what is used, not
 * of what could be, and kalloc stays usable under tight RLIMIT_AS limits.  Growth maps whole MAX_ORDER
 * blocks; one the kernel refuses (an RLIMIT) is tried again with half as
 * much, down to what the request needs, so the zone's top need not be a
 * MAX_ORDER (or pageblock) boundary: buddies merge only below
 * spanned_pages, and descriptors are mapped in whole pageblocks, so a walk
 * over a pageblock the top cuts reads zero descriptors past it.
 *
 * Finding the zone of any pointer is O(1) and never faults: zone_table[] has
 * one entry per ZONE_SLOT_SIZE of the 47-bit address space (256 KiB of BSS),
 * pointing at the zone that owns that slot or at nothing.  The free fast
 * path then reads the page's entries in the zone's slab maps (a byte per
 * page of the slot each, reserved whole, zero where nothing is: the size
 * class of the slab the page belongs to, and the id of the thread cache that
 * owns the slab), so even a wild pointer into a slot is classified without a
 * fault;
 * struct page itself is read only for pages below spanned_pages
 * (page_zone_of checks).
 *
 * Invariants (checked by tests/unit):
 *   - every page in [zone_start, zone_start + spanned_pages) is either inside
 *     exactly one free block on exactly one free list, or inside exactly one
 *     allocated block;
 *   - a free block of order k starts at a pfn that is a multiple of 2^k and
 *     ends at or below spanned_pages (which need not be a multiple of
 *     2^MAX_ORDER: a growth under an RLIMIT);
 *   - no two free buddies of the same order are both on the free lists
 *     (__free_one_page merges them);
 *   - zone->free_area[k].nr_free counts the blocks on its lists;
 *   - on every free list, resident blocks come before PG_reported ones
 *     (allocation reuses backed memory first);
 *     zone->nr_free_pages = sum(nr_free * 2^k);
 *   - zone->free_lru holds exactly the resident free blocks of order >=
 *     VMSCAN_MIN_ORDER outside hugetlb pageblocks (PG_lru), newest first,
 *     and nr_free_lru counts their pages (mm/vmscan.h);
 *   - pageblock_nr_free[b] = free-list pages inside pageblock b;
 *   - no PG_reported free block lies in a PB_THP_FAULT pageblock (the
 *     pageblock's first fault made all of it resident);
 *   - a resident free block counts 1..2^k resident pages (nr_resident), a
 *     reported one none, and nr_free_resident is their sum; PG_desc_off only
 *     on reported blocks.
 *
 * Lock order: kmem_cache.lock -> per_cpu_pages.lock -> zone.lock -> zone_list_lock.
 */
#pragma once

#include "mm/mm_types.h"
#include "platform/compiler.h"
#include "platform/os.h"
#include "platform/spinlock.h"

namespace kalloc {

constexpr unsigned PAGE_SHIFT = 12;
constexpr size_t PAGE_SIZE = 1ul << PAGE_SHIFT;
constexpr unsigned MAX_ORDER = 10;                 /* largest block: 2^10 pages = 4 MiB */
constexpr unsigned NR_PAGE_ORDERS = MAX_ORDER + 1;
constexpr unsigned pageblock_order = 9;            /* 2 MiB, the x86-64 hugepage size */
constexpr size_t pageblock_nr_pages = 1ul << pageblock_order;
constexpr unsigned PAGE_ALLOC_COSTLY_ORDER = 3;

constexpr unsigned ZONE_SLOT_SHIFT = 32;           /* each zone may grow to 4 GiB */
constexpr size_t ZONE_SLOT_SIZE = 1ul << ZONE_SLOT_SHIFT;
constexpr size_t ZONE_SLOT_PAGES = ZONE_SLOT_SIZE >> PAGE_SHIFT;          /* 2^20 */
constexpr size_t ZONE_MEM_MAP_BYTES = ZONE_SLOT_PAGES * sizeof(page);     /* 48 MiB */
/* Data pages a zone may grow to: the slot less its mem_map. */
constexpr size_t ZONE_MAX_PAGES = ZONE_SLOT_PAGES - (ZONE_MEM_MAP_BYTES >> 12);
constexpr size_t ZONE_MAX_PAGEBLOCKS = ZONE_SLOT_PAGES >> pageblock_order;
constexpr unsigned ADDRESS_BITS = 47;              /* user address space on x86-64 */
constexpr size_t NR_ZONE_SLOTS = 1ul << (ADDRESS_BITS - ZONE_SLOT_SHIFT);

/*
 * Migrate types: what kalloc groups together so whole pageblocks empty.
 *
 * Mobility in kalloc.  A program's objects never move (it holds raw
 * pointers), so the kernel's question "can this page be moved?" becomes
 * "when will this memory become free again?".  Memory that will be free at
 * about the same time is kept in the same 2 MiB pageblocks, so that whole
 * pageblocks empty together and can be given back (or backed by one
 * hugepage).  The kernel's names are kept, with this meaning:
 *   MIGRATE_UNMOVABLE    allocator metadata: never freed
 *   MIGRATE_MOVABLE      large blocks handed to the program (page granular):
 *                        freed whole, one call frees them; in a memory-file
 *                        backed zone their physical pages can be moved
 *                        without changing their address
 *   MIGRATE_RECLAIMABLE  slabs of short-lived size classes: their objects
 *                        come back soon, so their slabs empty quickly
 *   MIGRATE_LONGLIVED    slabs of long-lived size classes: objects stay, so
 *                        their slabs stay occupied (kalloc's own type; the
 *                        kernel has none, its long-lived kernel objects are
 *                        unmovable)
 * Which of the last two a size class's new slabs get is learned from what
 * the program does (kmem_cache.migratetype, slub.cc: the share of objects
 * handed out that came back within a window of the class's own
 * allocations).  A slab keeps the type it was allocated with.  The split is
 * applied only with KALLOC_LIFETIME=1: on bench/frag-churn it raised peak
 * RSS by 7% (survivors of one class end up spread over two sets of
 * pageblocks), so by default every slab is MIGRATE_RECLAIMABLE and the
 * lifetimes are only measured.
 */
enum migratetype : uint8_t {
    MIGRATE_UNMOVABLE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_LONGLIVED,
    MIGRATE_TYPES
};

extern const char *const migratetype_names[MIGRATE_TYPES];

struct free_area {
    list_head free_list[MIGRATE_TYPES];  /* free blocks of this order, per migrate type */
    unsigned long nr_free;                /* blocks on all of this order's lists */
};

/* What backs a zone's pages.  Anonymous memory by default; with
 * KALLOC_MESH=1 a memory file (memfd) mapped MAP_SHARED at file offset =
 * address - zone_start, so a page's virtual range can be re-pointed at
 * another page's file offset (meshing, mm/mesh.h). */
enum zone_backing : uint8_t {
    ZONE_BACKING_ANON,
    ZONE_BACKING_MEMFD,
    ZONE_BACKING_MEMFD_LOST,  /* the program closed the memory file's descriptor (a
                               * daemon closing all it did not open): what is mapped
                               * stays the file's, shared; no growth (the zone is full),
                               * no meshing, aliases given back are leaked; a fork child
                               * copies it through the mapping */
};

enum zone_type : uint8_t {
    ZONE_NORMAL,     /* a buddy-managed zone */
    ZONE_VMALLOC,    /* a region of huge (direct mmap) allocations, see vmalloc.h */
};

/* Watermarks on free-but-resident pages (see mm/vmscan.h).  The kernel
 * keeps free memory above its watermarks; kalloc keeps free resident memory
 * below them, so the roles, not the values, carry the names:
 *   WMARK_LOW   above it, reclaim starts (kswapd is woken)
 *   WMARK_HIGH  reclaim stops when free resident memory is back under it
 *   WMARK_MIN   above it, the freeing thread reclaims itself (direct reclaim)
 * high <= low <= min. */
enum zone_watermarks : uint8_t {
    WMARK_MIN,
    WMARK_LOW,
    WMARK_HIGH,
    NR_WMARK
};

/* Transparent-hugepage state of a pageblock (mm/khugepaged.h). */
enum pageblock_thp_flags : uint8_t {
    PB_THP_HUGE = 1u << 0,      /* madvised MADV_HUGEPAGE (dense) */
    PB_THP_NOHUGE = 1u << 1,    /* madvised MADV_NOHUGEPAGE (sparse) */
    PB_THP_RECLAIMED = 1u << 2, /* part of it was given back since it was last made huge */
    PB_THP_COLLAPSED = 1u << 3, /* MADV_COLLAPSE succeeded since it was last made huge */
    PB_HUGETLB = 1u << 4,       /* mapped from hugetlbfs pages: never reclaimed */
    PB_THP_FAULT = 1u << 5,     /* made huge before its first touch (mm/khugepaged.h): a fault
                                 * maps all 2 MiB, so none of its free blocks is PG_reported */
    PB_THP_FILLING = 1u << 6,   /* (with PB_THP_FAULT) only allocated from since it was made huge
                                 * at its first fault: the program is filling it, so watermark
                                 * reclaim leaves its free rest alone; the first free of a page
                                 * in it ends this (khugepaged_note_free) */
};

struct per_cpu_pages;

/* zone->flags bits (the kernel's enum zone_flags). */
enum zone_flags : unsigned long {
    ZONE_BELOW_HIGH = 1ul << 0,   /* free pages under the high watermark: pagesets shrink */
    ZONE_RECLAIM_ACTIVE = 1ul << 1, /* free resident memory crossed WMARK_LOW and the zone has
                                     * not allocated since: pagesets hold at most 4 batches */
};

struct zone {
    zone_type type;               /* ZONE_NORMAL (must be the first member, see zone_table) */
    zone_backing backing;         /* what the pages are mapped from */
    uint16_t id;                  /* index in the zone list */
    int backing_fd;               /* ZONE_BACKING_MEMFD: the memory file; -1 otherwise.  Used
                                   * only after zone_backing_check (the program may have
                                   * closed it and opened its own file under the number) */
    spinlock_t lock;              /* protects free_area, counters, growth */
    uintptr_t zone_start;         /* first byte; ZONE_SLOT_SIZE aligned */
    unsigned long spanned_pages;  /* pages mapped so far (the zone grows upward, shrinks from the top) */
    unsigned long mem_map_pages;  /* pages whose descriptors are mapped (>= spanned_pages, whole
                                   * pageblocks; never shrinks) */
    unsigned long slab_maps_rw;   /* pages whose slab-map bytes are writable (>= spanned_pages,
                                   * PAGE_SIZE multiples; never shrinks); the rest of the maps
                                   * reads as zero (zone_create) */
    unsigned long max_pages;      /* pages it may grow to before it is full */
    bool full;                    /* growth failed (address space taken or exhausted) */
    unsigned long nr_free_pages;  /* pages in free blocks */
    unsigned long nr_free_resident; /* of those, pages that may be resident: the sum of the
                                     * non-PG_reported blocks' nr_resident (mm/vmscan.h, "Residency") */
    unsigned long nr_free_unscanned; /* of nr_free_resident, the counts of the blocks on the age
                                     * list not read (PG_lru, not PG_scanned): upper bounds, part
                                     * of which may be phantom (mm/vmscan.h, "Phantom pages") */
    unsigned long _watermark[NR_WMARK]; /* on nr_free_resident, in pages (mm/vmscan.h) */
    unsigned long workingset;     /* free memory the program has been seen to reuse, in pages:
                                   * raised by refaults, decayed by timed passes; the low
                                   * watermark follows it (mm/vmscan.h, workingset) */
    unsigned long nr_refault;     /* pages allocated again from reclaimed blocks (a count, ever) */
    unsigned long watermark_boost; /* pages the usual level's cap is raised by while the program
                                   * takes back given-back memory many times its use per CPU
                                   * second (thrashing): raised and decayed by watermark passes,
                                   * once a window (mm/vmscan.h, "Thrashing") */
    unsigned long refault_snap;   /* nr_refault when the thrashing check's window began */
    uint32_t refault_snap_time;   /* the process's CPU time (ms) then (0: no window yet) */
    unsigned long workingset_block; /* pages of the largest single refault that raised the
                                   * workingset, decayed with it: the usual level keeps twice
                                   * that (mm/vmscan.h, workingset) */
    unsigned long use_peak;       /* pages in use at the recent peak: raised by allocations
                                   * (take_free_block), decayed towards the use by timed passes;
                                   * reused free memory is kept resident below it (mm/vmscan.h,
                                   * retention) */
    unsigned long vcache_high_mark; /* a use past this is a new high (vcache_high_pending), and
                                   * sets it a 32nd above the use: the highest use since the
                                   * start or the last trim, plus that margin (use_peak decays) */
    unsigned long wmark_retained; /* pages the low watermark sits above its usual level to keep
                                   * reused free memory (retention; 0: none) */
    uint32_t round_time;          /* vmscan_now() when the use last came back near use_peak after
                                   * a large drop (a round; 0: never): retention across drops
                                   * while recent (mm/vmscan.h, rounds) */
    uint8_t use_dropped;          /* the use fell under 3/4 of use_peak since it was last near it */
    uint8_t round_streak;         /* rounds in a row, each within ROUNDS_WINDOW_MS of the one
                                   * before (saturates at 255): retention across drops needs
                                   * ROUNDS_MIN_STREAK (mm/vmscan.h, rounds) */
    uint8_t rounds_blocked;       /* the RSS guard found the process at its RSS high-water mark
                                   * while round retention held: none until the next round */
    uint8_t wmark_rounds;         /* wmark_retained comes from round retention (not a steady heap) */
    uint16_t phantom_ratio;       /* of unread blocks' counts, the part recent residency reads
                                   * found not resident, in 1/PHANTOM_ONE: the watermark check
                                   * discounts that part of nr_free_unscanned (mm/vmscan.h,
                                   * "Phantom pages"); decayed by timed passes */
    unsigned long retention_faulted; /* pages allocated from given-back blocks under round
                                   * retention since the last RSS check */
    pfn_list_node free_lru;       /* resident free blocks >= VMSCAN_MIN_ORDER, newest first (PG_lru);
                                   * the head of a pfn-linked list (free_lru_add and friends) */
    unsigned long nr_free_lru;    /* pages on free_lru */
    unsigned long nr_isolated;    /* pages reclaim took off the lists to madvise (PG_isolated) */
    unsigned long nr_thp_kept;    /* free resident pages the watermark passes since the last timed
                                   * one left in whole hugepages (khugepaged_keep_resident): the
                                   * watermarks sit this much higher (mm/vmscan.cc) */
    unsigned long futile_seen;    /* the free resident count a watermark pass met that read
                                   * blocks and found nothing to give back (their counts were
                                   * upper bounds, raised again by splits): until futile_until,
                                   * frees in a small heap start a pass only past it plus a
                                   * quarter of WMARK_LOW (zone_pass_futile, vmscan.h) */
    uint32_t futile_until;        /* vmscan_now() until which that holds (0: no such pass) */
    unsigned long nr_hugetlb_pages; /* pages mapped from hugetlbfs (KALLOC_HUGETLB) */
    unsigned long nr_reported;    /* pages given back to the OS (a count, ever) */
    unsigned long nr_large_pages; /* pages in large allocations */
    unsigned long nr_slab_pages;  /* pages in slabs */
    unsigned long nr_meta_pages;  /* pages of allocator metadata */
    unsigned long freed_pages;    /* objects and blocks freed in this zone, ever, in pages (slab
                                   * objects rounded up per free call; relaxed atomic adds); with
                                   * the pagesets' freed_pages, the most any pageblock's free bytes
                                   * can have grown by since it was counted
                                   * (khugepaged_split_underused) */
    unsigned long nr_mesh_aliases; /* slabs merged into another's physical page now (mm/mesh.h) */
    uint64_t backing_dev;         /* ZONE_BACKING_MEMFD: st_dev and st_ino of the memory */
    uint64_t backing_ino;         /* file, which backing_fd must still name (zone_backing_check) */
    struct free_area free_area[NR_PAGE_ORDERS]; /* the buddy allocator's free lists */
    uint8_t pageblock_mt[ZONE_MAX_PAGEBLOCKS]; /* migrate type of each 2 MiB pageblock */
    uint8_t pageblock_thp[ZONE_MAX_PAGEBLOCKS]; /* pageblock_thp_flags of each pageblock */
    uint16_t pageblock_nr_free[ZONE_MAX_PAGEBLOCKS]; /* free-list pages in each pageblock */
    struct page *mem_map;         /* descriptors of pages [0, spanned_pages), top of the slot */
    struct per_cpu_pages *per_cpu_pageset; /* one pageset per CPU (per_cpu_pages.h) */
    unsigned nr_pcp;              /* entries in per_cpu_pageset */
    unsigned long flags;          /* zone_flags; written under lock, read with READ_ONCE */
    unsigned long pcp_high_wmark; /* free pages under which ZONE_BELOW_HIGH is set (the kernel's
                                   * default high watermark, set with the pagesets' sizes) */
    /* --- compaction (mm/compaction.h), under lock --- */
    unsigned compact_considered;  /* compactions asked for since the last deferral */
    unsigned compact_defer_shift; /* skip up to 2^shift compactions after failures */
    int compact_order_failed;     /* lowest order a compaction failed for */
    /* --- splitting underused hugepages (khugepaged_split_underused) --- */
    uint32_t pageblock_split_next[ZONE_MAX_PAGEBLOCKS]; /* freed_pages (low 32 bits) before
                                   * which the pageblock cannot be half free: set when it was
                                   * counted and found dense (0: never counted) */
    /* followed (at ZONE_HDR_SIZE) by the slab maps: class then owner, ZONE_SLOT_PAGES bytes each */
};

/* The slab maps sit right after the zone descriptor, in the same mapping,
 * each page aligned: reserved whole and readable (a wild pointer reads 0),
 * writable only as far as the zone has grown (slab_maps_rw), so the 2 MiB
 * of a zone that never grows that far count neither against RLIMIT_DATA nor
 * as locked memory under mlockall.
 * slab_class[pfn]: the size class of the slab page pfn belongs to (0: not a
 * slab page).  slab_owner[pfn]: the owner id of that slab (0: none), an
 * arena-like id shared by thread caches (mm/slab.h); a free of an object
 * whose slab has another owner id is a remote free (malloc/tcache.h).  Two byte maps, not one of
 * pairs, so the free fast path reads each with a single instruction. */
constexpr size_t ZONE_HDR_SIZE = (sizeof(zone) + 4095) & ~size_t(4095);
constexpr size_t ZONE_SLAB_MAPS_SIZE = 2 * ZONE_SLOT_PAGES;
static inline uint8_t *zone_slab_class_map(zone *z) { return (uint8_t *)z + ZONE_HDR_SIZE; }
static inline uint8_t *zone_slab_owner_map(zone *z)
{
    return (uint8_t *)z + ZONE_HDR_SIZE + ZONE_SLOT_PAGES;
}

/* One entry per 4 GiB of address space: the zone (or vmalloc region) owning
 * it.  Constant-initialised to all nullptr. */
extern void *zone_table[NR_ZONE_SLOTS] __hidden;

/* The zone list: every ZONE_NORMAL zone, lowest first (allocation order). */
constexpr unsigned MAX_NR_ZONES = 1024;
extern zone *zones[MAX_NR_ZONES];
extern unsigned nr_zones;          /* entries used in zones[] (read with READ_ONCE) */
extern spinlock_t zone_list_lock;  /* protects zone creation and zone_table updates */

static inline uint8_t zone_table_type(const void *entry) { return *(const uint8_t *)entry; }

/* The zone of address p when p is inside a buddy zone's mapped span, else
 * nullptr.  Never faults. */
static inline zone *page_zone_of(uintptr_t p)
{
    if (unlikely(p >> ADDRESS_BITS))
        return nullptr;
    void *e = READ_ONCE(zone_table[p >> ZONE_SLOT_SHIFT]);
    if (!e || zone_table_type(e) != ZONE_NORMAL)
        return nullptr;
    zone *z = (zone *)e;
    if (((p - z->zone_start) >> PAGE_SHIFT) >= READ_ONCE(z->spanned_pages))
        return nullptr;
    return z;
}

static inline unsigned long zone_pfn(const zone *z, uintptr_t p)
{
    return (p - z->zone_start) >> PAGE_SHIFT;
}
static inline page *pfn_to_page(zone *z, unsigned long pfn) { return z->mem_map + pfn; }
/* A descriptor's zone: mem_map lies in the zone's own slot. */
static inline zone *page_zone(const page *pg)
{
    return (zone *)zone_table[(uintptr_t)pg >> ZONE_SLOT_SHIFT];
}
/* A descriptor's pfn: its index in the mem_map at a fixed offset of its slot. */
static inline unsigned long page_to_pfn(const page *pg)
{
    uintptr_t off = ((uintptr_t)pg & (ZONE_SLOT_SIZE - 1)) - (ZONE_MAX_PAGES << PAGE_SHIFT);
    return off / sizeof(page);
}
static inline void *page_address(const page *pg)
{
    return (void *)(((uintptr_t)pg & ~(ZONE_SLOT_SIZE - 1)) + (page_to_pfn(pg) << PAGE_SHIFT));
}

/* The zone's age list (zone->free_lru), linked by pfn through the blocks'
 * free_lru (mm_types.h pfn_list_node).  Under zone->lock. */
static inline pfn_list_node *__free_lru_node(zone *z, uint32_t pfn)
{
    return pfn == PFN_LIST_HEAD ? &z->free_lru : &z->mem_map[pfn].free_lru;
}
static inline void free_lru_init(zone *z) { z->free_lru.next = z->free_lru.prev = PFN_LIST_HEAD; }
static inline bool free_lru_empty(const zone *z) { return z->free_lru.next == PFN_LIST_HEAD; }
/* Add pg at the head (the newest end). */
static inline void free_lru_add(zone *z, page *pg)
{
    uint32_t pfn = (uint32_t)page_to_pfn(pg), next = z->free_lru.next;
    pg->free_lru.next = next;
    pg->free_lru.prev = PFN_LIST_HEAD;
    __free_lru_node(z, next)->prev = pfn;
    z->free_lru.next = pfn;
}
static inline void free_lru_del(zone *z, page *pg)
{
    __free_lru_node(z, pg->free_lru.prev)->next = pg->free_lru.next;
    __free_lru_node(z, pg->free_lru.next)->prev = pg->free_lru.prev;
    pg->free_lru.next = pg->free_lru.prev = 0;
}
/* The oldest block (the tail), or nullptr. */
static inline page *free_lru_last(zone *z)
{
    return z->free_lru.prev == PFN_LIST_HEAD ? nullptr : &z->mem_map[z->free_lru.prev];
}
/* The block after pg towards the tail (older), or nullptr. */
static inline page *free_lru_next(zone *z, const page *pg)
{
    return pg->free_lru.next == PFN_LIST_HEAD ? nullptr : &z->mem_map[pg->free_lru.next];
}
static inline page *free_lru_first(zone *z)
{
    return z->free_lru.next == PFN_LIST_HEAD ? nullptr : &z->mem_map[z->free_lru.next];
}
/* struct page of p, p inside zone z's span. */
static inline page *virt_to_page(zone *z, uintptr_t p) { return z->mem_map + zone_pfn(z, p); }
/* The head page of the allocated block containing pg. */
static inline page *compound_head(page *pg) { return pg - pg->compound_head; }
/* The first page of the naturally aligned block of block_bytes (PAGE_SIZE << order) holding p,
 * p inside a buddy zone (trusted: an object the allocator handed out).
 * Buddy blocks are aligned to their size and zones start on a slot
 * boundary, so a slab is found with a mask and one table load, without
 * page_zone_of's checks or compound_head. */
static inline page *virt_to_block_head(uintptr_t p, uintptr_t block_bytes)
{
    zone *z = (zone *)zone_table[p >> ZONE_SLOT_SHIFT];
    uint32_t off = (uint32_t)(p & ~(block_bytes - 1));
    return z->mem_map + (off >> PAGE_SHIFT);
}

/* Count pages freed in z (zone freed_pages; frees onto a per-CPU pageset
 * count in the pageset instead).  Relaxed atomic adds: slab frees add
 * without the zone lock. */
static inline void zone_note_freed_pages(zone *z, unsigned long nr)
{
    __atomic_fetch_add(&z->freed_pages, nr, __ATOMIC_RELAXED);
}

/* Count bytes of objects freed in z, rounded up to a page: an overcount
 * only makes khugepaged_split_underused count sooner.  Once per zone per
 * kmem_cache_free_bulk call. */
static inline void zone_note_freed(zone *z, unsigned long bytes)
{
    zone_note_freed_pages(z, (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT);
}

static inline migratetype get_pageblock_migratetype(const zone *z, unsigned long pfn)
{
    return (migratetype)z->pageblock_mt[pfn >> pageblock_order];
}
static inline void set_pageblock_migratetype(zone *z, unsigned long pfn, migratetype mt)
{
    z->pageblock_mt[pfn >> pageblock_order] = mt;
}

/* Give the pages of [addr, addr + len) inside zone z back to the OS,
 * whatever backs them (anonymous: MADV_DONTNEED; memory file: MADV_REMOVE,
 * which frees the file pages). */
static inline void zone_decommit(const zone *z, void *addr, size_t len)
{
    os_decommit_backed(addr, len, z->backing != ZONE_BACKING_ANON);
}

/* zone_decommit for n ranges of zone z: one call for the batch where
 * os_decommit_many can (anonymous memory, `batch`: see there).  True when
 * one call did. */
static inline bool zone_decommit_many(const zone *z, const os_range *r, unsigned n, bool batch)
{
    if (z->backing != ZONE_BACKING_ANON) {
        for (unsigned i = 0; i < n; i++)
            os_decommit_backed(r[i].addr, r[i].len, true);
        return false;
    }
    return os_decommit_many(r, n, batch);
}

/* Whether zone z's memory file may be used through backing_fd: true for a
 * ZONE_BACKING_MEMFD zone whose descriptor still names the file it made
 * (fstat).  Otherwise the program closed it (and may have opened its own
 * file under the number, which kalloc must never map, punch or copy): the
 * zone becomes ZONE_BACKING_MEMFD_LOST (backing_fd -1, full), counted in
 * pa_stats.memfd_lost; false.  False for other zones. */
bool zone_backing_check(zone *z);

/* Under a seccomp filter a sandbox may kill the calls memory-file zones
 * make and glibc's malloc never does (memfd_create, fallocate, lseek,
 * copy_file_range; OpenSSH's kills them): once the filter is seen, in a
 * process with one thread (`one_thread`, __libc_single_threaded or the
 * thread count), every memory-file zone is copied through its mapping into
 * private anonymous memory (mmap and mremap only), and meshes no more.
 * Called where such calls come next: a mesh pass, a reclaim pass over such
 * a zone, trim, a zone's growth, fork.  With threads it waits (a copy would
 * lose their writes); a fork child then copies through the mapping too.
 * Gives up, leaving the zones as they are, where there is no room for the
 * copy or the filter refuses mremap. */
void zone_memfd_sandbox_check(bool one_thread);

/* fork() with memory-file zones (KALLOC_MESH): their MAP_SHARED mappings
 * are shared with the child, so the child gives itself a copy.
 * zone_memfd_fork_prepare (the forking thread, before fork): a pipe, when
 * any zone is memory-file backed; zone_memfd_fork_parent: wait until the
 * child has its copy (the parent must not write the shared pages before);
 * zone_memfd_fork_child: copy each memory file's data into a new one, map
 * it over every mapped range at the same offsets (meshed aliases too), then
 * release the parent.  Callers hold zone_list_lock or are single-threaded. */
void zone_memfd_fork_prepare();
void zone_memfd_fork_parent();
void zone_memfd_fork_child();
/* In the fork child: whether zone_memfd_fork_child copied memory files.
 * Their copy is not a snapshot at the fork: the parent's other threads
 * wrote on while the child copied, so what those threads' caches hold
 * cannot be trusted in the child (malloc/tcache.cc leaks it). */
bool zone_memfd_fork_copied();

/* Reserve a new address-space slot (ZONE_SLOT_SIZE aligned, not used by
 * anyone) for a zone or a vmalloc region covering `nr_slots` slots; returns
 * its address or 0.  Does not map anything; the caller maps with
 * os_map_fixed and publishes the slot in zone_table.  Caller holds
 * zone_list_lock. */
uintptr_t __reserve_zone_slots(unsigned nr_slots);

/* Create a new buddy zone with at least `min_pages` mapped.  Takes
 * zone_list_lock.  nullptr when address space or memory is exhausted. */
zone *zone_create(unsigned long min_pages);

/* Map more pages at the top of the zone and free them into the buddy
 * allocator (as PG_reported blocks: fresh memory is zero and not resident).
 * Caller holds z->lock.  False when the zone cannot grow. */
bool __zone_grow(zone *z, unsigned long min_pages);

} // namespace kalloc
