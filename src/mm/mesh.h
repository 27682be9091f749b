/*
 * mm/mesh.h - meshing: two half-empty slabs share one physical page.
 *
 * kalloc's physical-page compaction.  The kernel has no counterpart: its
 * compaction (mm/compaction.c, kalloc's mm/compaction.cc) moves pages and
 * fixes up the page tables that map them, which a user-space allocator
 * cannot do for a program's raw pointers.  What it can do, in a zone backed
 * by a memory file (KALLOC_MESH=1, zone->backing == ZONE_BACKING_MEMFD),
 * is the reverse: keep every virtual address and change which physical page
 * backs it (the idea of the Mesh allocator, Powers et al., PLDI 2019).
 *
 * Two slabs A and B of the same size class whose live objects sit at
 * disjoint offsets are merged: B's live objects are copied into A's page at
 * the same offsets, B's virtual range is mapped onto A's file offsets, and
 * B's old file page is punched out.  Both addresses stay valid; one
 * physical page is given back.  B's descriptor becomes an alias of A
 * (PG_mesh_alias); frees through B addresses reach A's freelist in the slab
 * free slow path (the address translated by a - b).
 *
 * Invariants:
 *   - an alias maps its virtual range onto its primary's file offsets; its
 *     own file offsets are a hole;
 *   - a primary's freelist holds only primary addresses, and a slot is free
 *     in the merged slab only if it was free in every slab merged into it;
 *   - meshing runs only when the process has one thread, with all signals
 *     blocked around the copy and remap (no one writes B during the copy).
 *
 * Lock order: kmem_cache.lock -> zone.lock (as the slab allocator).
 */
#pragma once

#include "mm/mmzone.h"

namespace kalloc {

struct kmem_cache;

/* Counters (relaxed atomic adds), in kalloc_vmstat and the stats report. */
struct mesh_stats {
    unsigned long mesh_pages;     /* aliases now: physical pages saved (a gauge) */
    unsigned long mesh_success;   /* pairs merged (a count) */
    unsigned long mesh_attempt;   /* pairs whose occupancy was compared */
    unsigned long mesh_fail_overlap; /* of those, with a slot live in both */
    unsigned long unmesh;         /* aliases given back when their merged slab emptied */
    unsigned long mesh_skip_threads; /* passes skipped: the process had more than one thread */
    unsigned long mesh_passes;    /* passes run */
    unsigned long mesh_fail_map;  /* remaps refused (vm.max_map_count): pair left, pass ended */
};
extern mesh_stats mesh_stats;

/* The meshing pass: in every order-0 size class, partial slabs of
 * memory-file zones at most half in use are paired when their live objects
 * are disjoint (bounded search: each slab against the next MESH_SEARCH
 * candidates), and merged.  Only when the process has exactly one thread
 * (see the file comment).  Caller holds compact_lock (mm/compaction.h) and
 * no cache or zone lock.  Returns the physical pages given back. */
unsigned long mesh_all();

/* The timed pass (vmscan's decay hooks, every DECAY_MS / 4 at most, run by
 * a thread in the allocator's slow path): mesh_all over the order-0 caches
 * of at least MESH_TIMED_MIN_SLABS slabs that are at most half in use and
 * got frees since their last pass.  Takes compact_lock (trylock: skipped
 * while a compaction runs); caller holds no allocator lock. */
constexpr unsigned long MESH_TIMED_MIN_SLABS = 64;
unsigned long mesh_timed();


/* Slab a emptied (caller holds c->lock): each alias's virtual range goes
 * back to its own file offsets (a hole: it reads zero) and its page to the
 * buddy allocator as reported memory.  a stays a slab. */
void __mesh_unmesh(kmem_cache *c, page *a);

/* After fork, in the child: map every alias of zone z onto its primary's
 * offsets in the child's new memory file fd (zone_memfd_fork_child). */
void mesh_remap_aliases(zone *z, int fd);

/* After fork, in a child that cannot make a memory file: copy every alias
 * page of zone z (what its address reads: its primary's page) into
 * `image`, the zone's private copy, at the alias's own offset.  Each alias
 * then has its own copy; frees through it still go to its primary, whose
 * copy keeps the links, and unmeshing gives the alias's page back with
 * MADV_DONTNEED. */
void mesh_copy_aliases(zone *z, char *image);

} // namespace kalloc
