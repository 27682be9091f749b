/*
 * malloc/tcache.cc - creating, refilling, flushing and retiring thread
 * caches (see tcache.h), and kalloc's one-time initialisation.
 *
 * Lock order: tcache_list_lock -> kmem_cache.lock -> zone.lock.
 */
#include "malloc/tcache.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "malloc/fork.h"
#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/percpu_sheaves.h"
#include "mm/slab.h"
#include "mm/vmscan.h"
#include "platform/cpu.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/printk.h"
#include "platform/rseq.h"

namespace kalloc {

__thread tcache *tcache_current __attribute__((tls_model("initial-exec"))) = &tcache_boot;
__thread uint8_t tcache_state __attribute__((tls_model("initial-exec"))) = TCACHE_NONE;
tcache tcache_boot;     /* all bins empty with no room: every fast path misses */

namespace {

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
__start_state int init_state;        /* INIT_* */
pthread_key_t tcache_pthread_key;

spinlock_t tcache_list_lock = SPINLOCK_INIT;
tcache *tcache_list;                 /* live caches */
tcache *tcache_free_list;            /* retired caches for reuse (linked by next) */
char *tcache_carve_next;             /* the newest metadata block's first cache never handed out */
char *tcache_carve_end;              /* that block's end */
unsigned long nr_tcaches;            /* live caches */
size_t tcache_share = TCACHE_MAX_BYTES; /* each cache's budget for nr_tcaches caches (tcache_budget);
                                       * written with nr_tcaches, under tcache_list_lock */
uint16_t owner_users[256];           /* live caches per owner id (an "arena" of slabs) */

void tcache_thread_exit(void *arg);

/* A bin's capacity the first time it is refilled: about 4 KiB of objects
 * (one object from 4 KiB up), within the class's maximum and
 * TCACHE_SINGLE_MAX_OBJECTS (tcache.h). */
unsigned tcache_start_cap(unsigned idx)
{
    unsigned cap = (unsigned)(4096 / kmalloc_info[idx].size);
    unsigned max = kmalloc_info[idx].tcache_max;
    if (max > TCACHE_SINGLE_MAX_OBJECTS)
        max = TCACHE_SINGLE_MAX_OBJECTS;
    return cap < 1 ? 1 : cap > max ? max : cap;
}

/* A remote list's capacity: batches of up to 32 objects and 8 KiB (at
 * least 4 objects) whatever the bin's capacity (a thread that only frees
 * others' objects has empty bins); its bytes count against the budget
 * (remote_bytes).  The byte limit matters for the classes a thread frees
 * remotely only now and then: their lists fill slowly and, until they go
 * back, pin free objects in their owners' slabs.  With 32 objects of every
 * class a thread could hold 770 KiB there, 240 KiB with the limit: larson's
 * peak RSS 17.0 -> 15.4 MiB (7 interleaved rounds, medians); batches of the
 * classes up to 256 B, where most remote frees are, stay 32 objects. */
unsigned tcache_remote_cap(unsigned idx)
{
    unsigned max = kmalloc_info[idx].tcache_max;
    unsigned n = (unsigned)(TCACHE_REMOTE_BYTES / kmalloc_info[idx].size);
    n = n < 4 ? 4 : n > 32 ? 32 : n;
    return max < n ? max : n;
}

/* Carve a tcache from allocator metadata pages (MIGRATE_UNMOVABLE), one at
 * a time: a block's caches are not threaded onto the free list up front,
 * which wrote every 4 KiB page of it (16 KiB resident in a single-threaded
 * program, 2.3 KiB used). */
tcache *tcache_alloc_locked()
{
    constexpr size_t sz = align_up(sizeof(tcache), 64);
    if (tcache_free_list) {
        tcache *tc = tcache_free_list;
        tcache_free_list = tc->next;
        return tc;
    }
    if (!tcache_carve_next || tcache_carve_next + sz > tcache_carve_end) {
        constexpr unsigned order = 2;   /* 16 KiB: 5 caches of 2.8 KiB per block */
        page *pg = alloc_pages(order, MIGRATE_UNMOVABLE, nullptr);
        if (!pg)
            return nullptr;
        prep_compound_page(pg, 1ul << order, PG_meta);
        pg->nr_pages = 1u << order;
        __atomic_fetch_add(&page_zone(pg)->nr_meta_pages, 1ul << order, __ATOMIC_RELAXED);
        tcache_carve_next = (char *)page_address(pg);
        tcache_carve_end = tcache_carve_next + (PAGE_SIZE << order);
    }
    tcache *tc = (tcache *)tcache_carve_next;
    tcache_carve_next += sz;
    return tc;
}

/* This thread's share of TCACHE_TOTAL_BYTES for nr_tcaches live caches,
 * computed when the count changes, not at every slow path (a division). */
void tcache_share_update_locked()
{
    unsigned long n = nr_tcaches;
    size_t share = TCACHE_TOTAL_BYTES / (n ? n : 1);
    WRITE_ONCE(tcache_share, share < TCACHE_MIN_BYTES   ? TCACHE_MIN_BYTES
                             : share > TCACHE_MAX_BYTES ? TCACHE_MAX_BYTES
                                                        : share);
}

void tcache_register_locked(tcache *tc)
{
    tc->prev = nullptr;
    tc->next = tcache_list;
    if (tcache_list)
        tcache_list->prev = tc;
    tcache_list = tc;
    nr_tcaches++;
    tcache_share_update_locked();
}

void tcache_unregister_locked(tcache *tc)
{
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        tcache_list = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    nr_tcaches--;
    tcache_share_update_locked();
    tc->next = tcache_free_list;
    tcache_free_list = tc;
}

/*
 * Owner ids play the part of jemalloc's arenas: slabs belong to an owner id
 * (mm/slab.h), and threads with different ids never take objects from each
 * other's slabs.  There are 4 ids per CPU (jemalloc's default number of
 * arenas), at most 255; a new cache gets the id with the fewest live caches.
 * So a few threads each get their own slabs (no false sharing, local frees
 * stay local), while a thousand threads share 8 ids on 2 CPUs, so free
 * objects in their slabs are not split a thousand ways.
 */
unsigned tcache_nr_owner_ids()
{
    unsigned n = 4 * nr_cpu_ids();
    return n < 4 ? 4 : n > SLAB_OWNER_POOL - 1 ? SLAB_OWNER_POOL - 1 : n;
}

/* The id with the fewest live caches; SLAB_OWNER_POOL when every id has
 * one and `pool` (per-CPU sheaves work for this thread): the threads beyond
 * 4 per CPU share the pool's slabs through the per-CPU arrays instead of
 * sharing ids round robin (mm/percpu_sheaves.h). */
uint8_t tcache_pick_owner_locked(bool pool)
{
    /* With no other cache live every id is free and id 1 wins: the number
     * of CPUs (a sysfs read) is not asked for the process's first cache. */
    if (!nr_tcaches && !owner_users[1])
        return 1;
    unsigned n = tcache_nr_owner_ids(), best = 1;
    for (unsigned id = 2; id <= n; id++)
        if (owner_users[id] < owner_users[best])
            best = id;
    if (pool && owner_users[best] > 0)
        return (uint8_t)SLAB_OWNER_POOL;
    return (uint8_t)best;
}

/* A cache with owner id `id` goes away. */
void tcache_put_owner_locked(uint8_t id)
{
    if (--owner_users[id] == 0)
        slab_owner_set_live(id, false);
}

void tcache_thread_exit(void *arg)
{
    tcache *tc = (tcache *)arg;
    tcache_current = &tcache_boot;
    tcache_state = TCACHE_DEAD;
    tcache_flush_all(tc);
    /* An exited thread takes nothing back. */
    vmscan_thread_rounds_add(-__atomic_exchange_n(&tc->round_share, 0, __ATOMIC_RELAXED));
    spin_lock(&tcache_list_lock);
    tcache_put_owner_locked(tc->owner_id);
    tcache_unregister_locked(tc);
    spin_unlock(&tcache_list_lock);
}

} // namespace

bool kalloc_init()
{
    if (likely(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_DONE))
        return true;
    int expected = INIT_NONE;
    if (!__atomic_compare_exchange_n(&init_state, &expected, INIT_RUNNING, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return false;       /* running (maybe in this very thread): go direct */
    options_init();
    slab_free_key = os_random_seed() | 1;
    if (pthread_key_create(&tcache_pthread_key, tcache_thread_exit) != 0)
        panic("cannot create the thread-cache key");
    kalloc_register_fork_handlers();
    slab_owner_set_live(SLAB_OWNER_SHARED, true);   /* the large classes' pool, for good */
    __atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
    return true;
}

tcache *tcache_get()
{
    if (tcache_state == TCACHE_ACTIVE)
        return tcache_current;
    if (tcache_state != TCACHE_NONE)
        return nullptr;
    if (!kalloc_init() || !option_get(OPT_TCACHE))
        return nullptr;
    tcache_state = TCACHE_INIT;
    /* Before tcache_list_lock: the first call maps the arrays under
     * pcs_drain_lock, which comes first in the lock order.  Asked only once
     * the owner ids may all be taken (a racy count: a pool decision made
     * on a stale one is only a choice of owner id), so programs with fewer
     * threads never map them nor register for membarrier. */
    const unsigned nr = READ_ONCE(nr_tcaches);
    /* A second thread: the zones get a pageset per CPU (one so far: the
     * number of CPUs is read only now, mm/per_cpu_pages.h). */
    if (nr >= 1)
        pcp_set_nr_cpus(nr_cpu_ids());
    /* (The owner ids are at least 4: the first caches never ask for the
     * number of CPUs there either.) */
    const bool pool = nr >= 4 && nr >= tcache_nr_owner_ids() && pcs_enabled() &&
                      rseq_thread_registered();
    spin_lock(&tcache_list_lock);
    /* The owner id's slab lists made writable first (mm/slab.h); refused
     * (no memory), the thread goes without a cache, as when none can be
     * made. */
    const uint8_t owner = tcache_pick_owner_locked(pool);
    tcache *tc = kmem_cache_node_row_ready(owner) ? tcache_alloc_locked() : nullptr;
    if (tc) {
        memset(tc->bins, 0, sizeof(tc->bins));
        memset(tc->remote, 0, sizeof(tc->remote));
        memset(tc->nr_flush_runs, 0, sizeof(tc->nr_flush_runs));
        memset(tc->cap_bucket, 0, sizeof(tc->cap_bucket));
        tc->cap_buckets = 0;
        /* Bins start with no room: the first refill of a class gives it
         * some (tcache_refill), so unused classes cost no budget. */
        tc->cap_bytes = tc->remote_bytes = 0;
        tc->round_net = tc->round_hi = tc->round_prev_hi = tc->round_share = 0;
        tc->round_time = 0;
        tc->round_streak = tc->round_trough = 0;
        for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
            tc->remote[i].avail = tc->remote[i].cap = tcache_remote_cap(i);
        tc->owner_id = owner;
        tc->pcs = tc->owner_id == SLAB_OWNER_POOL;
        if (owner_users[tc->owner_id]++ == 0)
            slab_owner_set_live(tc->owner_id, true);
        tc->tid = (unsigned long)pthread_self();
        tcache_register_locked(tc);
    }
    spin_unlock(&tcache_list_lock);
    if (!tc) {
        tcache_state = TCACHE_NONE;
        return nullptr;
    }
    /* May call malloc (glibc's second-level key blocks): that call sees
     * TCACHE_INIT and is served straight from the slabs. */
    pthread_setspecific(tcache_pthread_key, tc);
    tcache_current = tc;
    tcache_state = TCACHE_ACTIVE;
    return tc;
}

namespace {
void tcache_enforce_budget(tcache *tc);
size_t tcache_budget(const tcache *tc);
void tcache_make_room(tcache *tc, unsigned idx, size_t need, size_t budget);

/* Row of cap_bucket for a bin of `bytes` (> 0) of capacity (the last row
 * takes anything larger: the walks below stay correct, only slower). */
inline unsigned cap_bucket_of(size_t bytes)
{
    unsigned k = 63u - (unsigned)__builtin_clzll(bytes);
    return k < TCACHE_CAP_BUCKETS ? k : TCACHE_CAP_BUCKETS - 1;
}

/* Set bin idx's capacity, keeping cap_bytes and the rows of cap_bucket in
 * step (every change of a bin's cap goes through here; avail is the
 * caller's). */
void tcache_set_cap(tcache *tc, unsigned idx, unsigned cap)
{
    tcache_bin *b = &tc->bins[idx];
    const size_t size = kmalloc_info[idx].size;
    const size_t old = (size_t)b->cap * size, now = (size_t)cap * size;
    const unsigned w = idx / 64;
    const uint64_t bit = 1ull << (idx % 64);
    if (old) {
        unsigned k = cap_bucket_of(old);
        tc->cap_bucket[k][w] &= ~bit;
        bool empty = true;
        for (unsigned j = 0; j < TCACHE_CAP_WORDS; j++)
            empty &= !tc->cap_bucket[k][j];
        if (empty)
            tc->cap_buckets &= ~(1u << k);
    }
    if (now) {
        unsigned k = cap_bucket_of(now);
        tc->cap_bucket[k][w] |= bit;
        tc->cap_buckets |= 1u << k;
    }
    b->cap = (uint16_t)cap;
    tc->cap_bytes = tc->cap_bytes - old + now;
}

/* The bin with the most bytes of capacity (0 when every bin is 0), and
 * those bytes: a walk of the top row of cap_bucket, a few classes. */
unsigned tcache_top_bin(const tcache *tc, size_t *top_bytes)
{
    *top_bytes = 0;
    if (!tc->cap_buckets)
        return 0;
    const unsigned k = 31u - (unsigned)__builtin_clz(tc->cap_buckets);
    unsigned top = 0;
    for (unsigned w = 0; w < TCACHE_CAP_WORDS; w++) {
        for (uint64_t bits = tc->cap_bucket[k][w]; bits; bits &= bits - 1) {
            unsigned i = w * 64 + (unsigned)__builtin_ctzll(bits);
            size_t bytes = (size_t)tc->bins[i].cap * kmalloc_info[i].size;
            if (bytes > *top_bytes) {
                *top_bytes = bytes;
                top = i;
            }
        }
    }
    return top;
}
} // namespace

namespace {
uint32_t round_expire_last;   /* when tcache_round_expire last walked the caches */

/* Take away the shares of threads whose last round is older than
 * ROUNDS_WINDOW_MS: a thread that stopped its rounds (asleep, or doing
 * something else) keeps its share until its own next slow path otherwise.
 * Run by a thread completing a round, at most every ROUNDS_WINDOW_MS / 4,
 * and only if the registry's lock is free (a try: never waits). */
void tcache_round_expire(const tcache *self, uint32_t now)
{
    if ((uint32_t)(now - READ_ONCE(round_expire_last)) < ROUNDS_WINDOW_MS / 4)
        return;
    if (!spin_trylock(&tcache_list_lock))
        return;
    WRITE_ONCE(round_expire_last, now);
    for (tcache *t = tcache_list; t; t = t->next) {
        if (t == self || !READ_ONCE(t->round_share))
            continue;
        if ((uint32_t)(now - READ_ONCE(t->round_time)) < ROUNDS_WINDOW_MS)
            continue;
        long old = __atomic_exchange_n(&t->round_share, 0, __ATOMIC_RELAXED);
        vmscan_thread_rounds_add(-old);
    }
    spin_unlock(&tcache_list_lock);
}
} // namespace

void tcache_round_account(tcache *tc, long bytes)
{
    const long net = tc->round_net += bytes;
    if (net > tc->round_hi)
        tc->round_hi = net;
    uint32_t now = 0;
    if (!tc->round_trough) {
        if (tc->round_hi >= TCACHE_ROUND_MIN_BYTES && net < tc->round_hi / 8) {
            tc->round_trough = 1;
            tc->round_prev_hi = tc->round_hi;
            tc->round_hi = net;
        }
    } else if (net >= tc->round_prev_hi - tc->round_prev_hi / 8) {
        now = vmscan_now();
        bool recent = tc->round_time && (uint32_t)(now - tc->round_time) < ROUNDS_WINDOW_MS;
        tc->round_streak = !recent ? 1 : tc->round_streak < 255 ? tc->round_streak + 1 : 255;
        tc->round_time = now ? now : 1;
        tc->round_trough = 0;
        if (tc->round_streak >= ROUNDS_MIN_STREAK) {
            __atomic_fetch_add(&vm_reclaim_stats.thread_rounds, 1, __ATOMIC_RELAXED);
            vmscan_thread_round_seen(tc->round_time);
            tcache_round_expire(tc, tc->round_time);
        }
    }
    /* The share: what the thread is below its peak, while its rounds are
     * recent and other threads run (one thread's rounds are the zone's:
     * __zone_round, under the RSS guard); published in steps of
     * TCACHE_ROUND_STEP pages (an atomic exchange and add each), or at
     * once when it falls to zero. */
    long share = 0;
    if (tc->round_streak >= ROUNDS_MIN_STREAK && READ_ONCE(nr_tcaches) > 1) {
        if (!now)
            now = vmscan_now();
        if ((uint32_t)(now - tc->round_time) < ROUNDS_WINDOW_MS) {
            long top = tc->round_hi > tc->round_prev_hi ? tc->round_hi : tc->round_prev_hi;
            share = top > net ? (top - net) >> PAGE_SHIFT : 0;
        }
    }
    long delta = share - READ_ONCE(tc->round_share);
    if (delta >= TCACHE_ROUND_STEP || delta <= -TCACHE_ROUND_STEP || (!share && delta)) {
        /* Exchanged: another thread may take a stale share away meanwhile
         * (tcache_round_expire). */
        long old = __atomic_exchange_n(&tc->round_share, share, __ATOMIC_RELAXED);
        vmscan_thread_rounds_add(share - old);
    }
}

void *tcache_refill(tcache *tc, unsigned idx)
{
    tcache_bin *b = &tc->bins[idx];
    tc->nr_flush_runs[idx] = 0;
    tcache_enforce_budget(tc);
    /* The bin ran dry: let it hold more next time, within the budget. */
    size_t size = kmalloc_info[idx].size;
    unsigned max = kmalloc_info[idx].tcache_max;
    const bool single = READ_ONCE(nr_tcaches) == 1;
    if (single && max > TCACHE_SINGLE_MAX_OBJECTS)
        max = TCACHE_SINGLE_MAX_OBJECTS;    /* one thread: see tcache.h */
    if (single && vmscan_small_heap()) {
        /* One thread and a small heap: TCACHE_SMALL_HEAP_BYTES of objects
         * (a bin keeps the room it already has).  Not with more threads:
         * xmalloc (2 producers, 2 consumers, a 3 MiB heap) refilled 2.2x
         * as often for +1.6% instructions and +5.6% CPU time (7 runs), the
         * refills contending for the cache locks. */
        unsigned small = (unsigned)(TCACHE_SMALL_HEAP_BYTES / size);
        small = small < 2 ? 2 : small;
        if (small < max)
            max = small > b->cap ? small : b->cap;
    }
    unsigned grow = !b->cap ? tcache_start_cap(idx)
                    : 2 * b->cap <= max ? b->cap
                    : b->cap < max      ? max - b->cap
                                        : 0;
    size_t budget = tcache_budget(tc);
    if (grow && tc->cap_bytes + (size_t)grow * size > budget)
        tcache_make_room(tc, idx, (size_t)grow * size, budget);
    if (grow && tc->cap_bytes + (size_t)grow * size <= budget) {
        tcache_set_cap(tc, idx, b->cap + grow);
        b->avail += grow;
    }
    unsigned want = b->cap / 2;     /* plus the one returned */
    if (want > b->avail)
        want = b->avail;
    unsigned got = 0;
    unsigned owner = size > SLAB_SHARED_ABOVE ? SLAB_OWNER_SHARED : tc->owner_id;
    /* A sheaf of our own objects that other threads freed, if one fits. */
    void *chain = b->head ? nullptr
                          : kmem_cache_barn_take(&kmalloc_caches[idx], owner, b->avail + 1, &got);
    if (!chain && tc->pcs)
        chain = alloc_from_pcs_bulk(&kmalloc_caches[idx], want + 1, &got, owner);
    else if (!chain)
        chain = kmem_cache_alloc_bulk(&kmalloc_caches[idx], want + 1, &got, owner,
                                      b->avail + 1);   /* whole slab freelists up to the room */
    if (!chain)
        return nullptr;
    tcache_round_account(tc, (long)got * (long)size);
    void *obj = chain;
    if (got > 1) {
        void *rest = get_freepointer_checked(obj);
        /* chain's last link is nullptr; splice onto the bin (empty, unless
         * this is a refill without a malloc miss) */
        if (b->head) {
            void *last = rest;
            for (void *n; (n = get_freepointer_checked(last));)
                last = n;
            set_freepointer(last, b->head);
        }
        b->head = rest;
        b->avail -= got - 1;
    }
    return obj;
}

namespace {

/* Where a cache's own objects go back (a bin's, never a remote list's):
 * a pool cache's to the current CPU's sheaf, the others' to the slabs. */
inline void tcache_free_own(tcache *tc, unsigned idx, void *chain, unsigned n)
{
    tcache_round_account(tc, -(long)n * (long)kmalloc_info[idx].size);
    if (tc->pcs)
        free_to_pcs_bulk(&kmalloc_caches[idx], chain, n);
    else
        kmem_cache_free_bulk(&kmalloc_caches[idx], chain, n);
}

/* Keep the `keep` hottest objects of bin idx (those nearest the head) and
 * give the colder rest back to the slabs. */
void tcache_bin_flush_to(tcache *tc, unsigned idx, unsigned keep)
{
    tcache_bin *b = &tc->bins[idx];
    unsigned count = b->cap - b->avail;
    if (count <= keep)
        return;
    unsigned n = count - keep;
    void *chain;
    if (keep == 0) {
        chain = b->head;
        b->head = nullptr;
    } else {
        void *cut = b->head;
        for (unsigned i = 1; i < keep; i++)
            cut = get_freepointer_checked(cut);
        chain = get_freepointer_checked(cut);
        set_freepointer(cut, nullptr);
    }
    /* The chain is off the list before the slabs get it (see
     * tcache_bin_give_back); avail catches up after. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    tcache_free_own(tc, idx, chain, n);
    b->avail += n;
}

/* Give the colder half of bin idx (rounded up) back to the slabs. */
void tcache_bin_flush_half(tcache *tc, unsigned idx)
{
    tcache_bin *b = &tc->bins[idx];
    tcache_bin_flush_to(tc, idx, (b->cap - b->avail) / 2);
}

/* Detach a whole list from its bin and give it back to the slabs.  The
 * list is detached *before* the slabs get it: if another thread forks in
 * between, the child's orphan recovery (tcache_recover_bin) must not find
 * objects on the list that the slabs already have (a double free in the
 * child); at worst the child loses them. */
void tcache_bin_give_back(tcache *tc, tcache_bin *b, unsigned idx)
{
    unsigned n = b->cap - b->avail;
    void *chain = b->head;
    WRITE_ONCE(b->head, nullptr);
    WRITE_ONCE(b->avail, b->cap);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (!n)
        return;
    if (b == &tc->bins[idx]) {
        tcache_free_own(tc, idx, chain, n);
    } else {
        tcache_round_account(tc, -(long)n * (long)kmalloc_info[idx].size);
        kmem_cache_free_bulk(&kmalloc_caches[idx], chain, n);
    }
}

/* Give the whole remote list of class idx back to the slabs. */
void tcache_remote_flush(tcache *tc, unsigned idx)
{
    tcache_bin *r = &tc->remote[idx];
    unsigned n = r->cap - r->avail;
    tc->remote_bytes -= (size_t)n * kmalloc_info[idx].size;
    if (n && !r->mixed && r->owner) {
        /* One owner: park the list whole in the barn (mm/slab.h).  Detached
         * first, as in tcache_bin_give_back. */
        void *chain = r->head;
        WRITE_ONCE(r->head, nullptr);
        WRITE_ONCE(r->avail, r->cap);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        tcache_round_account(tc, -(long)n * (long)kmalloc_info[idx].size);
        kmem_cache_barn_put(&kmalloc_caches[idx], chain, n, r->owner);
        return;
    }
    tcache_bin_give_back(tc, r, idx);
}

/* This thread's share of TCACHE_TOTAL_BYTES (racy read: a stale share
 * only moves the budget for one slow path); at least TCACHE_POOL_MIN_BYTES
 * for a pool cache (tcache.h). */
size_t tcache_budget(const tcache *tc)
{
    size_t share = READ_ONCE(tcache_share);
    return tc->pcs && share < TCACHE_POOL_MIN_BYTES ? TCACHE_POOL_MIN_BYTES : share;
}

/* Keep the cache within its budget: once the capacities add up to more
 * than the budget, the bins holding more than half the largest one's bytes
 * are halved (the excess objects go back) until they add up to 3/4 of it,
 * so the bins never hold more than the budget; the remote lists go back
 * when they hold more than the budget too.  Both checks are O(1) unless
 * they act.
 * Largest first: halving every bin at once gave little budget back from the
 * small classes' bins (2 KiB at most) and made them flush at every few frees.
 * On alloc-test (sizes up to 256 KiB, all classes in use) a draining 32 KiB
 * bin's room of 8 objects went over the budget 73 times per run, and each
 * time the 16 B bin was halved with the rest, down to 1..4 objects: 46,000
 * of its 88,000 flushes (callgrind, --scale=0.1: 553.5M -> 540.6M
 * instructions; frag-churn, whose bins of past phases the budget takes back,
 * 225.6M -> 225.7M).
 * 3/4: stopping just under the budget kept many-threads' caches fuller than
 * halving every bin had (which left about half the budget): peak RSS
 * medians 50.5..52.6 -> 53.6..55.9 MiB in 4 paired sets of 5..9 runs; with
 * 3/4, 54.3 -> 54.8 and 56.0 -> 56.2 (9 and 11 runs); 1/2 cost larson 1%
 * more instructions. */
__attribute__((noinline)) void __tcache_enforce_budget(tcache *tc, size_t budget)
{
    const size_t target = tc->cap_bytes > budget ? budget - budget / 4 : budget;
    while (tc->cap_bytes > target) {
        size_t top;
        if (!tcache_top_bin(tc, &top))
            break;
        /* The bins over half of the top one's bytes are in its row of
         * cap_bucket or the row below: halve those (rows copied first,
         * halving moves a bin down a row). */
        const unsigned k = cap_bucket_of(top);
        uint64_t rows[2][TCACHE_CAP_WORDS];
        for (unsigned w = 0; w < TCACHE_CAP_WORDS; w++) {
            rows[0][w] = tc->cap_bucket[k][w];
            rows[1][w] = k ? tc->cap_bucket[k - 1][w] : 0;
        }
        for (unsigned r = 0; r < 2; r++) {
            for (unsigned w = 0; w < TCACHE_CAP_WORDS; w++) {
                for (uint64_t bits = rows[r][w]; bits; bits &= bits - 1) {
                    unsigned i = w * 64 + (unsigned)__builtin_ctzll(bits);
                    tcache_bin *b = &tc->bins[i];
                    unsigned keep = b->cap / 2, cut = b->cap - keep;
                    if (!cut || 2 * (size_t)b->cap * kmalloc_info[i].size <= top)
                        continue;
                    tcache_bin_flush_to(tc, i, keep);
                    tcache_set_cap(tc, i, keep);
                    b->avail -= cut;      /* objects <= keep now, so avail stays >= 0 */
                }
            }
        }
    }
    if (tc->remote_bytes > budget)
        for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
            if (tc->remote[i].avail != tc->remote[i].cap)
                tcache_remote_flush(tc, i);
}

/* The check every refill and flush makes: inline, the work out of line. */
void tcache_enforce_budget(tcache *tc)
{
    size_t budget = tcache_budget(tc);
    if (unlikely(tc->cap_bytes > budget || tc->remote_bytes > budget))
        __tcache_enforce_budget(tc, budget);
}

/* Bin idx refilled and may grow by `need` bytes, but the budget is full:
 * halve the largest bin while it holds at least twice what bin idx would,
 * until the growth fits.  So the budget goes to the bins that refill: a
 * bin halved by a run of frees (tcache_flush_push) grows back instead of
 * staying small behind bins that filled the budget first.  On alloc-test
 * (all 68 classes in use, the large ones' bins 32 KiB each) the 16 B bin
 * stayed at 8 objects once its first drain had halved it, and flushed
 * 14,700 times a run. */
void tcache_make_room(tcache *tc, unsigned idx, size_t need, size_t budget)
{
    const size_t want = (size_t)tc->bins[idx].cap * kmalloc_info[idx].size + need;
    while (tc->cap_bytes + need > budget) {
        /* The top row bounds the largest bin: under 2^(k+1) bytes.  When
         * that is not twice `want`, no bin qualifies and the row need not
         * be walked (a full budget of equal bins made every refill walk
         * them: thread-rounds spent 400 instructions a refill here). */
        if (!tc->cap_buckets ||
            (2ull << (31u - (unsigned)__builtin_clz(tc->cap_buckets))) <= 2 * want)
            return;
        size_t top_bytes;
        unsigned top = tcache_top_bin(tc, &top_bytes);
        if (top_bytes < 2 * want)
            return;
        tcache_bin *b = &tc->bins[top];
        unsigned keep = b->cap / 2, cut = b->cap - keep;
        tcache_bin_flush_to(tc, top, keep);
        tcache_set_cap(tc, top, keep);
        b->avail -= cut;      /* objects <= keep now, so avail stays >= 0 */
    }
}

} // namespace

/* The room a bin that only frees shrinks to.  0 for a class above 64 B
 * whose population has fallen under an eighth of its peak (kmem_cache
 * active_peak): the end of a burst being freed, where each further free goes
 * straight to its slab, so the burst's last frees leave nothing in the cache
 * to pin an otherwise empty slab.  TCACHE_DRAIN_CAP otherwise: the tiny
 * classes, where a lock per free costs the most (frag-churn's tiny phase:
 * +18% instructions with 0 for every class at every drain), and the bulk of
 * a burst, batched (0 for the whole drain cost fragmentation +12.5%
 * instructions at --scale=0.1; from an eighth of the peak, +2.7%). */
static inline unsigned tcache_drain_cap(unsigned idx)
{
    const kmem_cache *c = &kmalloc_caches[idx];
    return kmalloc_info[idx].size > TCACHE_DRAIN_TINY &&
                   READ_ONCE(c->active_objects) * 8 < READ_ONCE(c->active_peak)
               ? 0
               : TCACHE_DRAIN_CAP;
}

void tcache_flush_push(tcache *tc, unsigned idx, void *obj)
{
    tcache_bin *b = &tc->bins[idx];
    if (tc->nr_flush_runs[idx] < 255)
        tc->nr_flush_runs[idx]++;
    if (!b->cap && tc->nr_flush_runs[idx] >= 2) {
        /* The slabs stopped emptying: batch the frees again (within the
         * class's maximum: 2 objects of 32 KiB, not 8). */
        unsigned cap = TCACHE_DRAIN_CAP < kmalloc_info[idx].tcache_max ? TCACHE_DRAIN_CAP
                                                                        : kmalloc_info[idx].tcache_max;
        /* A draining bin with no room left (tcache_drain_cap), or whose room
         * would not fit the budget: straight to the slab, nothing to flush
         * or to budget.  Room given past the budget was taken back at once
         * from the largest bins (tcache_enforce_budget), flushing them:
         * thread-churn (each short-lived thread frees 1,500 blocks over ~70
         * classes, most of 1-40 KB) made 10,442 budget passes flushing
         * 87,580 bins for 60,000 frees.  Taking the room from the largest
         * bin when it holds twice as much (tcache_make_room, as a refill
         * does) kept half of that cost; frees are not hot, refills are. */
        if (!tcache_drain_cap(idx) ||
            tc->cap_bytes + (size_t)cap * kmalloc_info[idx].size > tcache_budget(tc)) {
            ((uint64_t *)obj)[1] = slab_free_key;   /* as on the bin: a double free is checked */
            tcache_free_own(tc, idx, obj, 1);
            return;
        }
        tcache_set_cap(tc, idx, cap);
        b->avail = cap;
    }
    if (tc->nr_flush_runs[idx] >= 2) {
        /* Only frees since the last refill: nothing here is hot.  Give the
         * whole bin back and halve its room (see tcache.h). */
        tcache_bin_flush_to(tc, idx, 0);
        const unsigned drain_cap = tcache_drain_cap(idx);
        if (b->cap > drain_cap) {
            unsigned keep = drain_cap && b->cap / 2 > drain_cap ? b->cap / 2 : drain_cap;
            unsigned cut = b->cap - keep;
            tcache_set_cap(tc, idx, keep);
            b->avail -= cut;      /* the bin is empty: avail was cap */
        }
    } else {
        tcache_bin_flush_half(tc, idx);
    }
    tcache_enforce_budget(tc);
    if (b->avail) {
        set_freepointer(obj, b->head);
        ((uint64_t *)obj)[1] = slab_free_key;
        b->head = obj;
        b->avail--;
    } else {
        ((uint64_t *)obj)[1] = slab_free_key;   /* as on the bin: a double free is checked */
        tcache_free_own(tc, idx, obj, 1);
    }
}

void tcache_remote_free_full(tcache *tc, unsigned idx, void *obj, unsigned owner)
{
    int saved = errno;                /* free never changes errno */
    tcache_remote_flush(tc, idx);
    errno = saved;
    tcache_remote_free(tc, idx, obj, owner);
}

void tcache_flush_all(tcache *tc)
{
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        tcache_remote_flush(tc, i);
        tcache_bin_give_back(tc, &tc->bins[i], i);
    }
}

bool tcache_contains(tcache *tc, unsigned idx, void *obj)
{
    for (void *o = tc->bins[idx].head; o; o = get_freepointer_checked(o))
        if (o == obj)
            return true;
    for (void *o = tc->remote[idx].head; o; o = get_freepointer_checked(o))
        if (o == obj)
            return true;
    return false;
}

void tcache_count_cached(unsigned long out[NR_KMALLOC_CLASSES], unsigned long *nr)
{
    for (unsigned i = 0; i < NR_KMALLOC_CLASSES; i++)
        out[i] = 0;
    spin_lock(&tcache_list_lock);
    for (tcache *tc = tcache_list; tc; tc = tc->next)
        for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++)
            out[i] += READ_ONCE(tc->bins[i].cap) - READ_ONCE(tc->bins[i].avail) +
                      READ_ONCE(tc->remote[i].cap) - READ_ONCE(tc->remote[i].avail);
    *nr = nr_tcaches;
    spin_unlock(&tcache_list_lock);
}

void tcache_lock_for_fork() { spin_lock(&tcache_list_lock); }
void tcache_unlock_for_fork() { spin_unlock(&tcache_list_lock); }

namespace {

/* Whether obj is a plausible object of class idx: in a zone, on a slab page
 * of that class.  Reads only kalloc's own metadata (never faults). */
bool obj_of_class(void *obj, unsigned idx)
{
    zone *z = page_zone_of((uintptr_t)obj);
    if (!z)
        return false;
    page *pg = virt_to_page(z, (uintptr_t)obj);
    if (!(pg->flags & PG_slab))
        return false;
    page *head = compound_head(pg);
    return (head->flags & PG_slab) && page_slab_cache(head) == &kmalloc_caches[idx] &&
           ((uintptr_t)obj - (uintptr_t)page_address(head)) % kmalloc_info[idx].size == 0;
}

/*
 * The cache of a thread that does not exist in the fork child.  That thread
 * may have been anywhere in a fast path when fork() copied memory (no lock
 * protects a tcache), so its bin's head and avail may disagree by the
 * object in flight.  The list itself is always well formed from the head
 * (each link is written before the head is updated, and x86 stores are seen
 * in order), so walk it up to the count it claims, stopping at a null or
 * implausible link, and give back what was found; an object in flight is
 * lost, as glibc loses every other thread's tcache.
 */
void tcache_recover_bin(tcache_bin *b, unsigned i)
{
    unsigned max = b->cap <= kmalloc_info[i].tcache_max ? b->cap : kmalloc_info[i].tcache_max;
    unsigned claimed = b->avail <= max ? max - b->avail : 0;
    void *head = b->head, *last = nullptr;
    unsigned n = 0;
    for (void *o = head; o && n < claimed && obj_of_class(o, i); o = get_freepointer(o)) {
        last = o;
        n++;
    }
    if (n) {
        set_freepointer(last, nullptr);
        kmem_cache_free_bulk(&kmalloc_caches[i], head, n);
    }
    b->head = nullptr;
    b->avail = b->cap = max;
}

void tcache_recover_orphan(tcache *tc)
{
    for (unsigned i = 1; i < NR_KMALLOC_CLASSES; i++) {
        tcache_recover_bin(&tc->bins[i], i);
        tcache_recover_bin(&tc->remote[i], i);
    }
}

} // namespace

/* In the child only the forking thread exists: the other threads' caches
 * go back to the slabs (as far as they can be trusted) instead of leaking. */
void tcache_after_fork_child()
{
    spin_lock_init(&tcache_list_lock);
    tcache *mine = tcache_state == TCACHE_ACTIVE ? tcache_current : nullptr;
    tcache *tc = tcache_list;
    while (tc) {
        tcache *next = tc->next;
        if (tc != mine) {
            /* Memory-file zones (KALLOC_MESH): the child's copy was made
             * while the other threads ran on, so their lists may be torn:
             * their objects are left where they are (leaked). */
            if (!zone_memfd_fork_copied())
                tcache_recover_orphan(tc);
            tcache_put_owner_locked(tc->owner_id);
            tcache_unregister_locked(tc);
        }
        tc = next;
    }
    if (mine)
        mine->tid = (unsigned long)pthread_self();
    /* The other threads' rounds are gone with them. */
    thread_rounds_pages = mine ? mine->round_share : 0;
}

} // namespace kalloc
