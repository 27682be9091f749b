/*
 * malloc/tcache.h - per-thread object caches, the malloc fast path's data.
 *
 * Each thread has one tcache: per size class, a LIFO list of free objects
 * (linked through their first word) and how much room is left.  malloc pops,
 * free pushes: no lock, no atomic read-modify-write.  An empty bin is
 * refilled, a full one half flushed, in bulk from / to the slab layer under
 * the cache lock (kmem_cache_alloc_bulk / kmem_cache_free_bulk).  This plays
 * the part of SLUB's per-CPU slab and sheaves, per thread instead of per CPU
 * (below the slabs, per-CPU pagesets do the same for pages: mm/per_cpu_pages.h).
 *
 * Remote frees.  Each cache has an owner id (1..4 x CPUs, like jemalloc's
 * arenas; caches share ids when there are more threads, or, where per-CPU
 * sheaves work, the further ones share the pool id and refill from and
 * flush to per-CPU arrays instead of the slabs: mm/percpu_sheaves.h); a slab belongs to
 * one owner id (the zone's slab owner map, mm/slab.h) and refills take only
 * from their own id's slabs or unowned ones.
 * A free of an object whose slab another cache owns is a remote free: it
 * goes on the freeing thread's remote list for that class (never reused by
 * this thread) and back to the slab in a batch when the list is full
 * (32 objects, fewer for classes over 256 B: at most TCACHE_REMOTE_BYTES).  So a
 * thread never recycles another thread's object into its own allocations:
 * objects handed between threads do not make threads write to one cache
 * line (the false sharing of Hoard's cache-scratch), and remote frees are
 * deferred and batched under one hold of the cache lock.
 *
 * Life cycle (tcache_state, thread-local):
 *   TCACHE_NONE    no cache yet; tcache_current points at tcache_boot, whose
 *                  bins are all empty with no room, so both fast paths miss
 *                  and the slow path creates the cache;
 *   TCACHE_INIT    being created (a malloc from pthread_setspecific recurses
 *                  here and is served straight from the slabs);
 *   TCACHE_ACTIVE  in use;
 *   TCACHE_DEAD    the thread is exiting and its cache was flushed (by the
 *                  pthread key destructor); later allocations from other
 *                  destructors go straight to the slabs, so nothing leaks.
 * Objects in a tcache have slab_free_key (mm/slab_common.h) in their
 * second word, as every free object has: a free that finds it there is
 * probably a double free and is checked on the slow path.
 *
 * Size.  Each bin has a capacity `cap`, at most the class's tcache_max
 * (32 KiB of objects, 2..256 of them; at most TCACHE_SINGLE_MAX_OBJECTS
 * while the process has a single thread cache), and while a single-threaded process's
 * heap is small (one zone under 4 MiB in use, vmscan_small_heap) bins grow
 * only to 8 KiB of objects
 * (TCACHE_SMALL_HEAP_BYTES): there each class's cached objects keep its
 * slabs, and a single-threaded realloc-string held 360 KiB in its bins
 * beside 30 KiB of live objects in the classes below 4 KiB.  It starts at an eighth of that and
 * doubles on each refill while the cache's total capacity (cap_bytes) stays
 * within the thread's budget, so only the classes a thread really cycles
 * through get big bins; when the budget is full, the largest bin is halved
 * for it if that bin holds at least twice what the refilling one would
 * (tcache_make_room; the largest bins are found through rows of bins by
 * the power of two of their bytes, cap_bucket), so the budget follows the refills.  The budget is TCACHE_TOTAL_BYTES shared by the live
 * caches, between TCACHE_MIN_BYTES and TCACHE_MAX_BYTES per thread
 * (tcache_budget()): up to 16 threads get 512 KiB each, a thousand get
 * 16 KiB each, except the pool caches (the threads beyond 4 per CPU, which
 * refill from and flush to the per-CPU sheaves): at least
 * TCACHE_POOL_MIN_BYTES each.  Their objects all come from the pool's
 * slabs, so a sleeping pool thread's bins pin few slabs of their own; on
 * sleeping-threads (1,000 threads, 2 CPUs) 64 KiB instead of 16 KiB took
 * user CPU from 2.9 to 2.0 s for 188 -> 216 MiB while asleep (4 interleaved
 * runs, medians; 32 KiB: 2.4 s and 207 MiB, 128 KiB: 1.8 s and 259 MiB).
 * When a slow path finds cap_bytes over the budget (more
 * threads appeared; a draining bin gets room again only within it), the largest bins'
 * capacities are halved down to 3/4 of the budget, and the excess objects
 * go back to the slabs.  A bin that overflows twice with no refill in between belongs to
 * a thread that is only freeing that class (a burst being freed): from then
 * on each overflow gives the whole bin back (nothing in it is hot) and
 * halves its capacity, down to TCACHE_DRAIN_CAP objects; for a class above
 * 64 B whose population fell under an eighth of its peak (the end of a
 * burst), down to 0 at once, and each free goes straight to its slab
 * (tcache.cc, tcache_drain_cap), so when the thread stops its cache pins no
 * (or few) otherwise empty slabs; the next refills grow it again (jemalloc's tcache GC shrinks
 * bins that go unused in the same way).  A cache is only trimmed by its own thread, so a thread that
 * goes to sleep keeps what it held at its last slow path; with many threads
 * that is the small share, so a thousand sleeping threads do not hold a
 * thousand full caches.
 */
#pragma once

#include "mm/slab_common.h"
#include "platform/spinlock.h"

namespace kalloc {

constexpr size_t TCACHE_MAX_BYTES = 512 * 1024;        /* per thread, at most */
constexpr size_t TCACHE_MIN_BYTES = 16 * 1024;         /* per thread, at least */
constexpr size_t TCACHE_POOL_MIN_BYTES = 64 * 1024;    /* per pool thread (per-CPU sheaves), at least */
/* Shared by all live caches.  16 MiB until 2026-12-03: on many-threads (64
 * threads, 2 CPUs) the caches held 10-12 MiB at the peak, more than the
 * program's own 8-10 MiB; at 8 MiB peak RSS medians 28.9 -> 25.8 and 28.1 ->
 * 27.9 MiB (6 and 8 interleaved runs; means 28.8 -> 25.2, 28.3 -> 26.4), user
 * CPU 1.54 -> 1.54 and 1.50 -> 1.46 s, slab refills 10-13K -> 16-23K a run.
 * 4 MiB (64 KiB a thread, the pool threads' floor): 23.8 MiB but user CPU
 * +4%.  Programs with up to 16 threads keep 512 KiB each, as before. */
constexpr size_t TCACHE_TOTAL_BYTES = 8 * 1024 * 1024;
/* A bin's most objects while the process has one thread cache (nr_tcaches
 * == 1; the class table allows KMALLOC_TCACHE_MAX_OBJECTS, 256, with more),
 * and any bin's starting capacity at most.  With threads, refills and
 * flushes take slab cache locks other threads contend for, and bins of up
 * to 256 objects hold a thread's batch (interleaved runs, medians:
 * alloc-test 0.64 -> 0.57 s, thread-rounds 0.61 -> 0.57, sleeping-threads
 * 1.46 -> 1.38, larson's user time 0.74 -> 0.70 s, peak RSS level).  One
 * thread's locks are uncontended, and its bins' objects are what an idle
 * program keeps: bins of 256 objects for every process raised idle-drift's
 * RSS 2 s after its freed burst by 0.6 MiB (the 16-byte class's starting
 * capacity, 4 KiB of objects: 256 where it had been 128), to within 0.4 MiB
 * of issue 4's bound.  A bin that grew past it while other threads lived
 * keeps its room when they are gone; the drain rules shrink it as before. */
constexpr unsigned TCACHE_SINGLE_MAX_OBJECTS = 128;
constexpr unsigned TCACHE_DRAIN_CAP = 8;   /* objects a bin of a tiny class that only frees shrinks to */
constexpr size_t TCACHE_DRAIN_TINY = 64;  /* classes up to this size keep TCACHE_DRAIN_CAP; larger ones
                                           * go to 0 at the end of a burst (tcache_drain_cap) */
constexpr size_t TCACHE_REMOTE_BYTES = 8 * 1024; /* a remote list's batch, at most (4..32 objects) */
constexpr size_t TCACHE_SMALL_HEAP_BYTES = 8 * 1024; /* a bin's growth limit in a single-threaded
                                                     * small heap (vmscan_small_heap): 2..128 objects */

/* Rows of tcache::cap_bucket: a bin holds at most max(32 KiB, 2 objects)
 * of capacity (kmalloc_class::tcache_max), under 2^17 bytes. */
constexpr unsigned TCACHE_CAP_BUCKETS = 17;
static_assert(2 * KMALLOC_MAX_SIZE < (1u << TCACHE_CAP_BUCKETS), "a bin's bytes fit a row");
constexpr unsigned TCACHE_CAP_WORDS = (NR_KMALLOC_CLASSES + 63) / 64;

struct tcache_bin {
    void *head;       /* first free object, or nullptr */
    uint32_t avail;   /* room left: cap - objects on the list (the fast paths' counter) */
    uint16_t cap;     /* capacity, 0..tcache_max (0 in tcache_boot); slow paths only */
    uint8_t owner;    /* remote lists: owner id of the objects' slabs (the first one's) */
    uint8_t mixed;    /* remote lists: objects of more than one owner id */
};

struct tcache {
    uint8_t owner_id;                    /* 1..tcache_nr_owner_ids(), or SLAB_OWNER_POOL: whose slabs
                                          * this cache refills from */
    uint8_t pcs;                         /* refills from and flushes to the per-CPU sheaves
                                          * (mm/percpu_sheaves.h): owner_id is SLAB_OWNER_POOL */
    uint8_t _pad[14];                    /* keeps bins 16-byte aligned */
    tcache_bin bins[NR_KMALLOC_CLASSES]; /* per size class; bins[0] unused */
    tcache_bin remote[NR_KMALLOC_CLASSES]; /* remote frees waiting for a batch (cap as the bin's when emptied) */
    uint8_t nr_flush_runs[NR_KMALLOC_CLASSES]; /* flushes of bins[i] since its last refill (saturates) */
    size_t cap_bytes;                    /* sum of bins[i].cap * size: what the bins may hold */
    uint64_t cap_bucket[TCACHE_CAP_BUCKETS][TCACHE_CAP_WORDS]; /* bit i of row k: bins[i].cap * size
                                          * is in [2^k, 2^(k+1)) (tcache_set_cap), so the largest
                                          * bins are found without a walk of every class */
    uint32_t cap_buckets;                /* bit k: row k of cap_bucket is not empty */
    size_t remote_bytes;                 /* bytes on the remote lists */
    /* Rounds (tcache_round_account; mm/vmscan.h, thread_rounds_pages): the
     * thread's use, counted where objects and large blocks cross between
     * this cache and the layers below (slow paths only). */
    long round_net;                      /* bytes taken (refills, large blocks) less bytes given back */
    long round_hi;                       /* the highest round_net since the last trough */
    long round_prev_hi;                  /* round_hi when the last trough began */
    long round_share;                    /* pages this thread has added to thread_rounds_pages */
    uint32_t round_time;                 /* vmscan_now() at the last round (0: none) */
    uint8_t round_streak;                /* rounds in a row, each within ROUNDS_WINDOW_MS of the last */
    uint8_t round_trough;                /* round_net fell under an eighth of round_hi, not back yet */
    tcache *next;                        /* registry of live caches (tcache_list) */
    tcache *prev;
    unsigned long tid;                   /* owning thread (pthread_self) */
};

enum tcache_state_t : uint8_t { TCACHE_NONE, TCACHE_INIT, TCACHE_ACTIVE, TCACHE_DEAD };

extern __thread tcache *tcache_current __attribute__((tls_model("initial-exec")));
extern __thread uint8_t tcache_state __attribute__((tls_model("initial-exec")));
extern tcache tcache_boot __hidden;

/* A thread in rounds: its use (round_net) goes from its peak to under an
 * eighth of it (a trough) and back to within an eighth of that peak (a
 * round), as a worker that handles one request, batch or unit at a time
 * does.  After ROUNDS_MIN_STREAK rounds in a row, each within
 * ROUNDS_WINDOW_MS of the one before (as a zone's rounds, mm/vmscan.h),
 * what the thread is below its peak is memory its next round takes back:
 * its share of thread_rounds_pages, which lets reclaim keep that much free
 * memory resident (not under the RSS guard: at such rounds' peak the RSS is
 * at its mark by design; shares expire, tcache.cc).  A zone sees no round when threads
 * are out of step (their sum stays near its peak while each one frees its
 * batch), and reclaim gave back each thread's batch for another thread to
 * fault in again: thread-rounds, 4 threads x 6,000 blocks a round, ~80K
 * faults a run against tcmalloc's 33K.  Peaks under TCACHE_ROUND_MIN_BYTES
 * are not rounds: small batches are what the watermarks' usual level keeps. */
constexpr long TCACHE_ROUND_MIN_BYTES = 2l << 20;
constexpr long TCACHE_ROUND_STEP = 16;   /* pages: a share is published when it moves this much */

/* Count `bytes` (negative: given back) in tc's use and update its rounds
 * and its share of thread_rounds_pages.  Slow paths only. */
void tcache_round_account(tcache *tc, long bytes);

/* The same for the calling thread's cache, if it has one (large blocks). */
static inline void tcache_round_note(long bytes)
{
    if (tcache_state == TCACHE_ACTIVE)
        tcache_round_account(tcache_current, bytes);
}

/* The calling thread's cache, created if needed; nullptr when the thread
 * must go straight to the slabs (recursion during creation, thread exiting,
 * KALLOC_TCACHE=0, or out of memory). */
tcache *tcache_get();

/* Refill bin idx from the slabs and pop one object (nullptr: out of memory). */
void *tcache_refill(tcache *tc, unsigned idx);

/* Bin idx is full: flush half of it to the slabs, then push obj. */
void tcache_flush_push(tcache *tc, unsigned idx, void *obj);

/* The remote list of class idx is full: give it back to the slabs, then
 * put obj on it. */
__slowpath void tcache_remote_free_full(tcache *tc, unsigned idx, void *obj, unsigned owner);

/* A remote free of obj (class idx, its slab owned by `owner`): onto the
 * remote list, which goes back in a batch when full: to the cache's barn as
 * one sheaf when all its objects have one owner, else to the slabs. */
static inline void tcache_remote_free(tcache *tc, unsigned idx, void *obj, unsigned owner)
{
    tcache_bin *r = &tc->remote[idx];
    if (unlikely(!r->avail))
        return tcache_remote_free_full(tc, idx, obj, owner);
    if (r->avail == r->cap) {
        r->owner = (uint8_t)owner;
        r->mixed = 0;
    } else if (r->owner != owner) {
        r->mixed = 1;
    }
    tc->remote_bytes += kmalloc_info[idx].size;
    set_freepointer(obj, r->head);
    ((uint64_t *)obj)[1] = slab_free_key;
    r->head = obj;
    r->avail--;
}

/* Return every cached object to the slabs. */
void tcache_flush_all(tcache *tc);

/* Whether obj is on tc's bin or remote list idx (double-free check). */
bool tcache_contains(tcache *tc, unsigned idx, void *obj);

/* Objects held by all live thread caches, per class (racy snapshot). */
void tcache_count_cached(unsigned long out[NR_KMALLOC_CLASSES], unsigned long *nr_caches);

/* One-time global set-up (options, pthread key, fork handlers).  Returns
 * false while another call is in progress (the caller goes direct). */
bool kalloc_init();

/* fork() support. */
void tcache_lock_for_fork();
void tcache_unlock_for_fork();
void tcache_after_fork_child();

} // namespace kalloc
