/*
 * mm/mm_types.h - struct page, the descriptor of one 4 KiB page.
 *
 * Mirrors include/linux/mm_types.h.  Every page of every zone has one
 * descriptor in the zone's mem_map, an array kept apart from the pages
 * themselves: data pages never hold allocator metadata, so a program that
 * overruns a block cannot corrupt the allocator's view of other blocks.
 *
 * What the fields mean depends on the page's state (its flags):
 *   PG_buddy         head of a free block of 2^order pages on a free list
 *   PG_slab          a page of a slab (every page of it; slab fields valid
 *                    on the head page, compound_head on all)
 *   PG_large         head of a large allocation of nr_pages pages
 *   PG_meta          allocator metadata (never freed)
 *   PG_tail          a page inside an allocated block other than its head;
 *                    compound_head says how far back the head is
 *   PG_pcp           head of a free block of 2^order pages held by a per-CPU
 *                    pageset (not on the zone's free lists, not merged)
 *   PG_reported      (free blocks) the memory was given back to the OS with
 *                    madvise: it reads as zero and is not resident.  Named
 *                    after the kernel's free page reporting.
 *   PG_lru           (free blocks) on the zone's age list of reclaimable
 *                    resident blocks (zone->free_lru, mm/vmscan.h)
 *   PG_desc_off      (free blocks of order >= 8, PG_reported) the whole pages
 *                    of mem_map past the head's descriptor were given back
 *                    too (zero, not resident): 4-8 KiB of mem_map per 1 MiB,
 *                    44 KiB per 4 MiB; a zero descriptor is a valid one, so
 *                    nothing is set up when the block leaves the free lists
 *   PG_isolated      head of a free block that reclaim took off the free
 *                    lists to madvise it without the zone lock (the kernel's
 *                    isolated pages); it goes back as PG_reported.
 *   PG_reclaimed     (free blocks) reclaim or trim gave it back, or a part
 *                    of it (a merged block), as opposed to fresh pages from
 *                    zone growth: allocating from it again is a refault of
 *                    the pages it does not hold (mm/vmscan.h, workingset)
 *   PG_scanned       (free blocks, not PG_reported) nr_resident was read with
 *                    mincore: exact, not an upper bound
 *   PG_probe         (PG_large head) a block given out reading zero and left
 *                    to the program's faults: its residency is read when it
 *                    is freed (malloc/large.h, fault-around)
 * A slab of 2 or more pages may have holes (mm/slub.cc, "slab holes"): pages
 * the slab still owns whose memory was given back because every object
 * overlapping them is free.  The head's nr_holes counts them; the second
 * page's descriptor (a PG_tail page, whose other fields are unused) keeps
 * which pages (slab_hole_mask) and how many free objects they hold off the
 * freelist (slab_parked).
 *   PG_meshed        (slab head) other slabs share its physical page (mm/mesh.h)
 *   PG_mesh_alias    (slab head) merged into mesh_primary's physical page
 * A page inside a free block that is not its head has no meaningful state.
 *
 * 48 bytes (0.78% less of every heap than the kernel's 64): the zone is
 * found from the descriptor's address (mem_map lies in the zone's own 4 GiB
 * slot, page_zone), a slab's cache from the zone's slab_class map
 * (page_slab_cache), and the age-list link is two 32-bit pfns.
 */
#pragma once

#include <stdint.h>

#include "mm/list.h"

namespace kalloc {

struct zone;

/* A link in a zone-local list of pages (the zone's free_lru): pfns, not
 * pointers, so a link is 8 bytes.  PFN_LIST_HEAD names the list's head,
 * which the zone keeps (mm/mmzone.h has the operations). */
struct pfn_list_node {
    uint32_t next;           /* pfn of the following entry, or PFN_LIST_HEAD */
    uint32_t prev;           /* pfn of the preceding entry, or PFN_LIST_HEAD */
};
constexpr uint32_t PFN_LIST_HEAD = 0xffffffffu;

enum pageflags : uint16_t {
    PG_buddy = 1u << 0,
    PG_slab = 1u << 1,
    PG_large = 1u << 2,
    PG_meta = 1u << 3,
    PG_tail = 1u << 4,
    PG_reported = 1u << 5,
    PG_head = 1u << 6,    /* head of an allocated block (slab, large or meta) */
    PG_pcp = 1u << 7,     /* head of a free block on a per-CPU pageset (order in `order`) */
    PG_isolated = 1u << 8,/* head of a free block being reclaimed (off the lists, see vmscan.h) */
    PG_lru = 1u << 9,     /* (PG_buddy) the block is on zone->free_lru (resident, reclaimable) */
    PG_reclaimed = 1u << 11, /* (PG_buddy) reclaim gave it (or part of it) back: taking it again is a refault */
    PG_desc_off = 1u << 10, /* (PG_buddy, order >= 8, reported) descriptors past the head's
                               page are zero and not resident; set up again on allocation */
    PG_meshed = 1u << 12,   /* (PG_slab head) other slabs were merged into this one (mm/mesh.h):
                               their virtual ranges map this slab's file pages; mesh_next
                               links them */
    PG_mesh_alias = 1u << 13, /* (PG_slab head, off every list) this slab was merged into
                               mesh_primary: its range maps the primary's file pages, its own
                               file pages are a hole; frees through it are translated */
    PG_scanned = 1u << 14,  /* (PG_buddy, not PG_reported) nr_resident is exact: mincore read
                               the block's residency (mm/vmscan.h, "Residency") and nothing
                               unread has merged into it since */
    PG_probe = 1u << 15,    /* (PG_large head) given out reading zero and not faulted in
                               ahead: its residency, read when it is freed, says how much of
                               a large block the program touches (malloc/large.h, fault-around) */
};

struct page {
    uint16_t flags;          /* pageflags */
    uint8_t order;           /* PG_buddy: order of the free block; slab: slab order */
    uint8_t migratetype;     /* PG_buddy: the free list (migrate type) the block is on; an allocated head: the type asked for */
    uint32_t compound_head;  /* PG_tail: pages back to the head page (0 on a head) */
    list_head lru;           /* free_area list when PG_buddy; slab partial/full list when PG_slab */

    union {
        /* --- slab pages (valid on the head page of a slab) --- */
        void *freelist;      /* first free object in the slab, linked through each object's first word */
        struct page *mesh_primary; /* PG_mesh_alias: the slab it was merged into */
        /* --- PG_buddy, resident, order >= VMSCAN_MIN_ORDER: the zone's
         * age list of reclaimable free blocks (zone->free_lru, newest first;
         * pfn links, mm/mmzone.h) */
        pfn_list_node free_lru;
        /* --- the second page of a slab of order >= 1 (PG_tail) --- */
        struct {
            uint32_t slab_hole_mask;  /* head->nr_holes != 0: bit i set when page i of the
                                       * slab is a hole (given back with madvise, reads zero) */
            uint16_t slab_parked;     /* head->nr_holes != 0: free objects overlapping a
                                       * hole page, kept off the freelist (parked) */
            uint16_t slab_punch_inuse;/* the head's inuse when holes were last looked for
                                       * (set when the slab is allocated: objects) */
        };
    };
    uint16_t inuse;          /* objects handed out of this slab (to thread caches or the program) */
    uint16_t objects;        /* objects the slab holds */
    union {
        uint16_t carved;     /* PG_slab head: objects carved so far; the rest were never touched
                              * (bump area) */
        uint16_t colour;     /* PG_large head: bytes between the first page's start and the
                              * block the program got (a multiple of 64, < PAGE_SIZE; SLAB's
                              * cache colouring, malloc/large.h) */
    };
    uint8_t slab_list;       /* which kmem_cache list the slab is on (SLAB_PARTIAL, SLAB_FULL, SLAB_NONE) */
    uint8_t nr_holes;        /* PG_slab head: pages of the slab that are holes (0 for most;
                              * a slab page's size class is in the zone's slab_class map) */

    /* --- large allocations (valid on the head page) --- */
    union {
        uint32_t nr_pages;   /* PG_large: pages in the allocation; PG_slab: pages in the slab
                              * (written, not read, for slabs) */
        uint32_t mesh_next;  /* PG_meshed head and PG_mesh_alias: pfn + 1 of the next alias of
                              * the primary (0: the end), a chain from the primary (mm/mesh.h) */
        uint32_t nr_resident;/* PG_buddy head, not PG_reported: pages of the block that may be
                              * resident, 1..2^order (an upper bound; exact with PG_scanned).  A
                              * block the program freed counts all its pages; mincore finds the
                              * ones it never touched (mm/vmscan.h, "Residency") */
    };
    union {
        uint32_t free_time;  /* PG_buddy: when the block became free (vmscan_now(), ms, wraps) */
        uint32_t freelist_tail; /* PG_slab head, freelist not empty: byte offset in the slab of
                                   the freelist's last object, so a whole freelist is spliced
                                   onto a chain in O(1) */
    };
};

static_assert(sizeof(page) == 48, "struct page is 48 bytes (mem_map: 1.17% of the heap)");

} // namespace kalloc
