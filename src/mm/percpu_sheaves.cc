/*
 * mm/percpu_sheaves.cc - per-CPU arrays of free objects for oversubscribed
 * threads (see percpu_sheaves.h).  Mirrors the sheaf paths of Linux 6.18's
 * mm/slub.c (alloc_from_pcs, free_to_pcs, pcs_flush_all), with rseq in
 * place of the kernel's local_lock.
 *
 * Lock order: (compact_lock ->) pcs_drain_lock, nothing taken under it (the
 * drained objects go to the slabs after it is dropped).  The arrays
 * themselves take no lock (platform/rseq.h).
 */
#include "mm/percpu_sheaves.h"

#include "platform/cpu.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/rseq.h"
#include "platform/spinlock.h"

namespace kalloc {

namespace {

constexpr unsigned PCS_ARRAY_BYTES = 8 + PCS_SLOTS * sizeof(void *);
constexpr unsigned PCS_HEADER = 64;   /* the stop word's cache line */
static_assert(PCS_HEADER + NR_KMALLOC_CLASSES * PCS_ARRAY_BYTES <= 1u << PCS_SHIFT,
              "every class's array fits in a CPU block");

enum { PCS_UNKNOWN, PCS_ON, PCS_OFF };
int pcs_state;                  /* PCS_*: pcs_enabled's answer, once known */
char *pcs_region;               /* pcs_nr_cpus blocks of 2^PCS_SHIFT bytes */
unsigned pcs_nr_cpus;           /* blocks in pcs_region (nr_cpu_ids at set-up) */
spinlock_t pcs_drain_lock = SPINLOCK_INIT; /* one drainer at a time; the set-up */
unsigned long pcs_nr_stopped;   /* operations that found their CPU's block stopped (racy) */
unsigned long pcs_nr_refill;    /* arrays found empty by a refill: a slab visit (racy: a lost
                                 * update only delays an idle flush) */
unsigned long pcs_nr_overflow;  /* arrays found full by a flush: a slab visit (racy) */
unsigned long pcs_nr_flush_all; /* pcs_flush_all calls that drained something */
unsigned long pcs_events_seen;  /* pcs_nr_refill + pcs_nr_overflow at the previous pcs_flush_idle */

inline unsigned pcs_off(unsigned idx) { return PCS_HEADER + idx * PCS_ARRAY_BYTES; }

inline uint32_t *pcs_stop_word(unsigned cpu)
{
    return (uint32_t *)(pcs_region + ((size_t)cpu << PCS_SHIFT));
}

inline rseq_percpu_array *pcs_array(unsigned cpu, unsigned idx)
{
    return (rseq_percpu_array *)(pcs_region + ((size_t)cpu << PCS_SHIFT) + pcs_off(idx));
}

/* Objects class idx's arrays hold: PCS_BYTES of them, at most PCS_SLOTS;
 * 0 (no array: straight to the slabs) for classes where that is under 2. */
inline unsigned pcs_cap(unsigned idx)
{
    uint32_t size = kmalloc_info[idx].size;   /* 0: a dynamic slot not made yet */
    unsigned n = size ? PCS_BYTES / size : 0;
    return n < 2 ? 0 : n > PCS_SLOTS ? PCS_SLOTS : n;
}

inline void *next_of(void *obj) { return get_freepointer_checked(obj); }

/* Link objs[0..n) into a chain, objs[n-1]'s link set to `tail`. */
inline void link_chain(void *const *objs, unsigned n, void *tail)
{
    for (unsigned i = 0; i + 1 < n; i++)
        set_freepointer(objs[i], objs[i + 1]);
    set_freepointer(objs[n - 1], tail);
}

__attribute__((noinline)) bool pcs_setup()
{
    spin_lock(&pcs_drain_lock);
    int s = pcs_state;
    if (s == PCS_UNKNOWN) {
        s = PCS_OFF;
        if (option_get(OPT_PERCPU_SHEAVES) && rseq_percpu_init()) {
            unsigned n = nr_cpu_ids();
            void *m = os_map((size_t)n << PCS_SHIFT, true);
            if (m) {
                pcs_region = (char *)m;
                pcs_nr_cpus = n;
                s = PCS_ON;
            }
        }
        __atomic_store_n(&pcs_state, s, __ATOMIC_RELEASE);
    }
    spin_unlock(&pcs_drain_lock);
    return s == PCS_ON;
}

/* Whether this thread can use the arrays: rseq registered for it (a CPU
 * brought online after set-up has no block: the sequences check that). */
inline bool pcs_usable() { return rseq_thread_registered(); }

} // namespace

bool pcs_enabled()
{
    int s = __atomic_load_n(&pcs_state, __ATOMIC_ACQUIRE);
    if (likely(s != PCS_UNKNOWN))
        return s == PCS_ON;
    return pcs_setup();
}

bool pcs_in_use() { return READ_ONCE(pcs_region) != nullptr; }

void *alloc_from_pcs_bulk(kmem_cache *c, unsigned want, unsigned *got, unsigned owner)
{
    unsigned idx = c->index, cap = pcs_cap(idx);
    if (!cap || !pcs_usable())
        return kmem_cache_alloc_bulk(c, want, got, owner);
    if (want > PCS_BATCH)
        want = PCS_BATCH;
    void *buf[PCS_BATCH];
    unsigned k = rseq_percpu_pop(pcs_region, pcs_nr_cpus, PCS_SHIFT, pcs_off(idx), buf, want);
    if (k == RSEQ_PERCPU_STOPPED) {
        WRITE_ONCE(pcs_nr_stopped, READ_ONCE(pcs_nr_stopped) + 1);
        return kmem_cache_alloc_bulk(c, want, got, owner);
    }
    if (k) {
        link_chain(buf, k, nullptr);
        *got = k;
        return buf[0];
    }
    /* The array is empty: one visit to the slabs for the caller and half
     * an array. */
    WRITE_ONCE(pcs_nr_refill, READ_ONCE(pcs_nr_refill) + 1);
    unsigned total;
    void *chain = kmem_cache_alloc_bulk(c, want + cap / 2, &total, owner);
    if (!chain || total <= want) {
        *got = chain ? total : 0;
        return chain;
    }
    void *last = chain;
    for (unsigned i = 1; i < want; i++)
        last = next_of(last);
    void *rest = next_of(last);
    set_freepointer(last, nullptr);
    *got = want;
    /* The rest onto the array, PCS_BATCH at a time (a bounded stack). */
    unsigned nrest = total - want;
    while (nrest) {
        unsigned m = nrest < PCS_BATCH ? nrest : PCS_BATCH;
        for (unsigned i = 0; i < m; i++) {
            buf[i] = rest;
            if (i + 1 < nrest)
                rest = next_of(rest);
        }
        unsigned pushed = rseq_percpu_push(pcs_region, pcs_nr_cpus, PCS_SHIFT, pcs_off(idx), buf, m, cap);
        if (pushed == RSEQ_PERCPU_STOPPED)
            pushed = 0;
        nrest -= pushed;
        if (pushed < m) {   /* another thread filled it meanwhile (or a drain) */
            kmem_cache_free_bulk(c, buf[pushed], nrest);   /* still linked from there */
            break;
        }
    }
    return chain;
}

void free_to_pcs_bulk(kmem_cache *c, void *head, unsigned n)
{
    unsigned idx = c->index, cap = pcs_cap(idx);
    if (!cap || !pcs_usable())
        return kmem_cache_free_bulk(c, head, n);
    void *buf[PCS_BATCH];
    void *p = head;
    while (n) {
        unsigned m = n < PCS_BATCH ? n : PCS_BATCH;
        for (unsigned i = 0; i < m; i++) {
            buf[i] = p;
            if (i + 1 < n)          /* the chain's last link is not read */
                p = next_of(p);
        }
        unsigned pushed = rseq_percpu_push(pcs_region, pcs_nr_cpus, PCS_SHIFT, pcs_off(idx), buf, m, cap);
        if (pushed == RSEQ_PERCPU_STOPPED) {
            WRITE_ONCE(pcs_nr_stopped, READ_ONCE(pcs_nr_stopped) + 1);
            return kmem_cache_free_bulk(c, buf[0], n);  /* still linked from buf[0] */
        }
        n -= pushed;
        if (pushed < m) {
            /* Full: half the array goes to the slabs with the rest of the
             * chain (still linked from buf[pushed]), in one visit. */
            WRITE_ONCE(pcs_nr_overflow, READ_ONCE(pcs_nr_overflow) + 1);
            void *head2 = buf[pushed];
            unsigned total = n;
            for (unsigned taken = 0; taken < cap / 2;) {
                unsigned want = cap / 2 - taken < PCS_BATCH ? cap / 2 - taken : PCS_BATCH;
                unsigned k = rseq_percpu_pop(pcs_region, pcs_nr_cpus, PCS_SHIFT, pcs_off(idx), buf, want);
                if (k == RSEQ_PERCPU_STOPPED || !k)
                    break;
                link_chain(buf, k, head2);
                head2 = buf[0];
                total += k;
                taken += k;
            }
            return kmem_cache_free_bulk(c, head2, total);
        }
    }
}

unsigned long pcs_flush_all()
{
    if (!READ_ONCE(pcs_region))
        return 0;
    /* The chains are taken under the lock and given to the slabs after it
     * is dropped: a free that empties slabs may start a compaction run
     * (compaction_slab_pages_freed), which drains the sheaves itself. */
    void *heads[NR_KMALLOC_CLASSES];
    unsigned counts[NR_KMALLOC_CLASSES];
    spin_lock(&pcs_drain_lock);
    const unsigned ncpu = pcs_nr_cpus;
    for (unsigned cpu = 0; cpu < ncpu; cpu++)
        __atomic_store_n(pcs_stop_word(cpu), 1, __ATOMIC_SEQ_CST);
    unsigned long total = 0;
    const bool fenced = rseq_fence();
    for (unsigned idx = 1; idx < NR_KMALLOC_CLASSES; idx++) {
        heads[idx] = nullptr;
        counts[idx] = 0;
        if (!fenced || !pcs_cap(idx))
            continue;
        /* No sequence can commit now: the arrays are ours until the stop
         * words are cleared.  One chain per class over all CPUs. */
        for (unsigned cpu = 0; cpu < ncpu; cpu++) {
            rseq_percpu_array *a = pcs_array(cpu, idx);
            unsigned k = a->count;
            if (!k)
                continue;
            link_chain(a->slots, k, heads[idx]);
            heads[idx] = a->slots[0];
            counts[idx] += k;
            a->count = 0;
        }
        total += counts[idx];
    }
    for (unsigned cpu = 0; cpu < ncpu; cpu++)
        __atomic_store_n(pcs_stop_word(cpu), 0, __ATOMIC_RELEASE);
    if (total)
        pcs_nr_flush_all++;
    spin_unlock(&pcs_drain_lock);
    for (unsigned idx = 1; idx < NR_KMALLOC_CLASSES; idx++)
        if (counts[idx])
            kmem_cache_free_bulk(&kmalloc_caches[idx], heads[idx], counts[idx]);
    return total;
}

unsigned long pcs_flush_idle()
{
    if (!READ_ONCE(pcs_region))
        return 0;
    unsigned long e = READ_ONCE(pcs_nr_refill) + READ_ONCE(pcs_nr_overflow);
    if (e != READ_ONCE(pcs_events_seen)) {
        WRITE_ONCE(pcs_events_seen, e);
        return 0;
    }
    unsigned long held[NR_KMALLOC_CLASSES];
    if (!pcs_count_cached(held))
        return 0;
    return pcs_flush_all();
}

bool pcs_contains(unsigned idx, const void *obj)
{
    if (!READ_ONCE(pcs_region) || !pcs_cap(idx))
        return false;
    for (unsigned cpu = 0; cpu < pcs_nr_cpus; cpu++) {
        rseq_percpu_array *a = pcs_array(cpu, idx);
        unsigned n = READ_ONCE(a->count);
        n = n > PCS_SLOTS ? PCS_SLOTS : n;
        for (unsigned i = 0; i < n; i++)
            if (READ_ONCE(a->slots[i]) == obj)
                return true;
    }
    return false;
}

unsigned long pcs_count_cached(unsigned long out[NR_KMALLOC_CLASSES])
{
    unsigned long total = 0;
    for (unsigned idx = 0; idx < NR_KMALLOC_CLASSES; idx++) {
        unsigned long n = 0;
        if (READ_ONCE(pcs_region) && idx && pcs_cap(idx))
            for (unsigned cpu = 0; cpu < pcs_nr_cpus; cpu++)
                n += READ_ONCE(pcs_array(cpu, idx)->count);
        out[idx] = n;
        total += n;
    }
    return total;
}

void pcs_get_stats(pcs_stats *out)
{
    out->refills = READ_ONCE(pcs_nr_refill);
    out->overflows = READ_ONCE(pcs_nr_overflow);
    out->stopped = READ_ONCE(pcs_nr_stopped);
    out->flush_all = READ_ONCE(pcs_nr_flush_all);
}

void pcs_lock_for_fork() { spin_lock(&pcs_drain_lock); }
void pcs_unlock_for_fork() { spin_unlock(&pcs_drain_lock); }
void pcs_reinit_lock() { spin_lock_init(&pcs_drain_lock); }

} // namespace kalloc
