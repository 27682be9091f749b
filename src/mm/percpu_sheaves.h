/*
 * mm/percpu_sheaves.h - per-CPU arrays of free objects between the thread
 * caches of oversubscribed threads and the slabs (SLUB's per-CPU sheaves,
 * struct slub_percpu_sheaves in mm/slub.c since Linux 6.18: alloc_from_pcs,
 * free_to_pcs, pcs_flush_all).
 *
 * Why: with many more threads than CPUs, the thread caches' shared budget
 * (malloc/tcache.h) leaves each a few KiB, so their bins refill and flush
 * every few calls, each time under a kmem_cache lock.  A thousand threads on
 * two CPUs then queue on those locks, and a holder that is preempted stalls
 * the rest (sleeping-threads spent 4 s of user CPU where jemalloc spent 1).
 * The kernel's answer is per CPU, not per task: an array of free objects
 * per CPU and size class, changed without a lock by whichever thread runs
 * on that CPU.  In user space the thread can be preempted or migrated
 * halfway, so every change is a restartable sequence (platform/rseq.h): it
 * either commits on the CPU it started on or restarts.  A refill or flush of
 * a thread cache then moves objects between two arrays in warm memory, and
 * the slabs are visited once per PCS_SLOTS / 2 objects, not once per few.
 *
 * Who uses them: thread caches with the pool owner id (SLAB_OWNER_POOL),
 * given to the threads created once every owner id 1..4 x CPUs has one
 * (malloc/tcache.cc).  A class's arrays hold objects of one owner id, the
 * pool's (SLAB_OWNER_SHARED above SLAB_SHARED_ABOVE), so the pool threads'
 * frees of them are local frees; the first threads keep their own slabs and
 * never see these arrays, so programs with few threads run as before.
 *
 * Layout: one block of 2^PCS_SHIFT bytes per possible CPU, mapped on first
 * use (untouched pages cost nothing): a stop word, then per size class an
 * array of PCS_SLOTS pointers (rseq_percpu_array), of which a class uses
 * pcs_cap(idx): 64 KiB of objects, 2..PCS_SLOTS of them (none for classes
 * above 32 KiB), so at most 3.7 MiB per CPU if the pool threads use every
 * class on it, given back by pcs_flush_idle once they stop.  A refill that finds its array empty takes half an array
 * more than it needs from the slabs; a flush that finds it full sends half
 * of it to the slabs with what did not fit.  64 slots were too few: with
 * two threads per CPU cycling 160 objects of 48 B each (a bin's 128 and
 * 32 more), the array went empty and full at almost every round (up to
 * 2.4 slab visits per thread and round); it must hold more than a bin's
 * swing.
 * 64 KiB rather than 16 or 32: a visit moves more objects of the classes
 * above 256 B.  sleeping-threads (6 interleaved runs, medians, 16 / 32 /
 * 64 KiB): user CPU 1.89 / 1.62 / 1.34 s, RSS asleep 225 / 201 / 149 MiB,
 * peak 246 / 205 / 149 MiB; larson and many-threads level.
 *
 * Draining (pcs_flush_all: malloc_trim, kalloc_compact, timed passes that
 * found the arrays idle): under pcs_drain_lock, stop every block, fence
 * (membarrier: no sequence that started before can commit after), take
 * every array's objects, clear the stop words; then, with no lock held,
 * give them back to their slabs (a free that empties slabs may run
 * compaction, which drains again).  While a block is stopped, its CPU's
 * refills and flushes go to the slabs directly.
 *
 * Lock order: (compact_lock ->) pcs_drain_lock, held alone (no other lock
 * is taken under it, nor is it taken under kmem_cache.lock or zone.lock).
 * Objects in the arrays count as handed out (kmem_cache.active_objects), as
 * the thread caches' do.
 */
#pragma once

#include "mm/slab.h"

namespace kalloc {

constexpr unsigned PCS_SLOTS = 256;             /* pointers per array (the most a class uses) */
constexpr unsigned PCS_BYTES = 64 * 1024;       /* a class's array holds about this much */
constexpr unsigned PCS_SHIFT = 18;              /* 256 KiB per CPU block (158 KiB used) */
constexpr unsigned PCS_BATCH = 64;              /* pointers moved per sequence (a stack buffer) */

/* Whether per-CPU sheaves are in use: KALLOC_PERCPU_SHEAVES (default 1),
 * rseq registered by glibc and membarrier's rseq fence available; the
 * blocks are mapped on the first call that answers yes. */
bool pcs_enabled();

/* Whether the arrays were set up (some thread asked and they work). */
bool pcs_in_use();

/* For a pool thread cache: up to `want` objects of cache c as a chain
 * (linked through first words, last link nullptr), first from the current
 * CPU's array; an empty array is refilled from the slabs of owner `owner`
 * in the same visit.  *got: how many.  nullptr when out of memory. */
void *alloc_from_pcs_bulk(kmem_cache *c, unsigned want, unsigned *got, unsigned owner);

/* For a pool thread cache: give back a chain of n objects of cache c (last
 * link ignored) to the current CPU's array; when it is full, half of it
 * goes to the slabs with what did not fit, in one visit. */
void free_to_pcs_bulk(kmem_cache *c, void *head, unsigned n);

/* Give every array's objects back to the slabs.  Returns the objects. */
unsigned long pcs_flush_all();

/* A timed pass: flush all when no array has been refilled from or flushed
 * to the slabs since the previous call (the pool threads went idle). */
unsigned long pcs_flush_idle();

/* Whether obj (class idx) is in some CPU's array (racy: double-free check). */
bool pcs_contains(unsigned idx, const void *obj);

/* Objects in the arrays, per class (racy snapshot); returns their total. */
unsigned long pcs_count_cached(unsigned long out[NR_KMALLOC_CLASSES]);

/* Event counters (racy: the slow paths of several CPUs add to them). */
struct pcs_stats {
    unsigned long refills;      /* arrays found empty by a refill: a visit to the slabs */
    unsigned long overflows;    /* arrays found full by a flush: a visit to the slabs */
    unsigned long stopped;      /* operations that found their CPU's array stopped (a drain) */
    unsigned long flush_all;    /* drains that gave objects back */
};
void pcs_get_stats(pcs_stats *out);

/* fork(): pcs_drain_lock, taken before the kmem_cache locks. */
void pcs_lock_for_fork();
void pcs_unlock_for_fork();
void pcs_reinit_lock();

} // namespace kalloc
