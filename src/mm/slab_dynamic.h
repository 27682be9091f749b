/*
 * mm/slab_dynamic.h - size classes made at run time for the request sizes a
 * program uses most (the kernel's dedicated caches: kmem_cache_create for
 * a structure, next to the generic kmalloc-N caches).
 *
 * The fixed classes above 1 KiB are 8 per doubling, so a request just above
 * a class boundary wastes up to 11% of its block: sqlite's page-cache
 * entries of 4,368 bytes (a 4 KiB page and its header) take 4,672-byte
 * blocks, 4,104-byte ones too (12%).  glibc fits them to 16 bytes.  When one
 * request size (rounded to 16) clearly dominates the requests of a fixed
 * class and the class wastes at least 1/32 of a block on it, that size gets
 * a class of its own: a slot among NR_KMALLOC_DYNAMIC, filled once and kept
 * for the life of the process.  Up to 1 KiB the same: redis's 200-byte
 * values (193..208-byte requests) take 224-byte blocks, 277,551 of them at
 * its peak (4.2 MiB of rounding, 3.9% of its peak RSS).
 *
 * Learning: requests above KMALLOC_SMALL_MAX all reach __kmalloc_slow, which
 * calls kmalloc_dynamic_note.  Each fixed class keeps one candidate size and
 * a vote count (Misra-Gries with one counter: a request of the candidate's
 * size adds one, any other takes one away, at zero the next size becomes the
 * candidate), in one 32-bit word read and written with relaxed atomics: no
 * lock and no read-modify-write (a lost vote between threads only delays the
 * decision).  DYN_CLASS_VOTES net votes make the class.  Sizes drawn from a
 * spread (most workloads) never get there.  Up to 1 KiB only the misses of
 * the malloc fast path (thread-cache refills) vote, in windows
 * (kmalloc_dynamic_note_small), so the fast path is unchanged.
 *
 * Making a class (kmalloc_dynamic_create, under dyn_class_lock, a try-lock):
 * the slot's kmalloc_info and kmalloc_fast entries are written first, then
 * the entries of kmalloc_index_medium (up to 1 KiB: kmalloc_index_small
 * and kmalloc_bin_offset_small) for the sizes the new class fits
 * better than their current one are pointed at it (release stores; the
 * lookup is an acquire load), so a request can map to the slot only after
 * its facts are visible.  Its kmem_cache is set up on first use, as every
 * cache is.  Objects of the new class live in slabs of their own, denser
 * than the fixed classes' (make_class_size(size, true): at most 1/64 of a
 * slab unused; the size is hot, so a larger slab pins little); blocks
 * already handed out keep their old class.
 *
 * KALLOC_DYNAMIC_CLASSES=0 switches it off (the first class that would be
 * made stops all counting instead).
 *
 * Invariants: a slot is written once; kmalloc_index(n) is always a class of
 * at least n bytes; dynamic slots are never in size order with the fixed
 * classes (loops that need the order use the fixed classes only:
 * kmalloc_index_static).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/single_threaded.h>

#include "mm/slab_common.h"
#include "platform/compiler.h"

namespace kalloc {

constexpr unsigned DYN_CLASS_VOTES = 1024;    /* net votes that make a class */
constexpr unsigned DYN_CLASS_MIN_WASTE = 32;  /* at least 1/32 of the block wasted */

/* Per fixed class: candidate size / 16 (low 16 bits) and its votes (high
 * 16 bits; up to 1 KiB see kmalloc_dynamic_note_small); high 16 bits
 * 0xffff: no more slots, stop counting. */
extern uint32_t kmalloc_dyn_vote[NR_KMALLOC_STATIC] __hidden;

/* Make a class of `size` for requests of fixed class idx.  Returns false
 * only when a class up to 1 KiB is not worth a slot yet (see
 * DYN_SMALL_MIN_SAVING); true when made, or when not made for another
 * reason (made meanwhile, the lock busy, no slot left, switched off). */
__slowpath bool kmalloc_dynamic_create(unsigned idx, uint32_t size);

/* Up to 1 KiB (only misses of the malloc fast path, mostly thread-cache
 * refills, get here; each stands for the 8-64 requests the refill serves):
 * votes in windows of DYN_SMALL_WINDOW, the first size that wastes at least
 * 1/32 of its block in a window is the candidate, and DYN_SMALL_QUORUM votes
 * for it in one window make its class.  Sizes that fit their class count in
 * the window and not for the candidate: a class has only 2-4 sizes (by 16)
 * up to 1 KiB, one or two of them fitting, so a size that shares its class
 * evenly (python's 144 and 160 bytes) gets none.  The vote word: candidate
 * size / 16 (bits 0-15), its votes (16-23), votes in the window (24-31). */
constexpr unsigned DYN_SMALL_WINDOW = 64;
constexpr unsigned DYN_SMALL_QUORUM = 56;     /* 7/8 of the window */
/* And the class must be worth a slot: its live objects (kmem_cache
 * active_objects, thread-cached ones included) times the bytes the new
 * class saves on each must reach DYN_SMALL_MIN_SAVING when the quorum is
 * met; otherwise the window slides by 8 votes and the test comes again.  A
 * new class costs a slab and a thread-cache bin per thread (8-32 KiB), and
 * leaves the old class's slabs part-used: containers' 208-byte strings
 * (344 live at its peak, 5.5 KiB to save) and python's 336-byte objects
 * (991, 15.8 KiB) get none; redis's 200-byte values get theirs after about
 * 2,100 requests (1,200 without the bar). */
constexpr unsigned long DYN_SMALL_MIN_SAVING = 32 << 10;

static inline void kmalloc_dynamic_note_small(unsigned idx, uint32_t s16, bool fits)
{
    uint32_t w = __atomic_load_n(&kmalloc_dyn_vote[idx], __ATOMIC_RELAXED);
    if ((w >> 16) == 0xffff)
        return;                                 /* no more slots */
    uint32_t cand = w & 0xffff, votes = (w >> 16) & 0xff, seen = (w >> 24) + 1;
    if (!fits) {
        if (!votes)
            cand = s16;
        votes += cand == s16;
    }
    if (seen == DYN_SMALL_WINDOW) {
        if (votes < DYN_SMALL_QUORUM)
            w = 0;
        else if (kmalloc_dynamic_create(idx, cand << 4))
            return;
        else    /* not worth a slot yet: slide the window by 8 votes, ask again then */
            w = cand | (votes - 8) << 16 | (DYN_SMALL_WINDOW - 8) << 24;
    } else {
        w = cand | votes << 16 | seen << 24;
    }
    __atomic_store_n(&kmalloc_dyn_vote[idx], w, __ATOMIC_RELAXED);
}

/* Above 1 KiB in a process with threads, one request in DYN_VOTE_SAMPLE
 * (drawn per thread: xorshift32) votes, with that weight.  Every vote is a
 * store to the class's vote word, and with threads on several CPUs those
 * words bounced between the CPUs' caches at every request that votes: a
 * tenth of many-threads' and alloc-test's CPU time (user 1.07 -> 0.95 s
 * and 3.18 -> 2.82 s with no votes above 1 KiB; 8 and 6 interleaved runs).
 * A single-threaded process votes at every request, as before.  Up to
 * 1 KiB votes are per refill already (and redis, whose background threads
 * make it multi-threaded, needs its 208-byte class early). */
constexpr unsigned DYN_VOTE_SAMPLE = 16;
extern __thread uint32_t kmalloc_dyn_vote_rng __attribute__((tls_model("initial-exec")));

static inline unsigned kmalloc_dynamic_vote_weight()
{
    if (__libc_single_threaded)
        return 1;
    uint32_t x = kmalloc_dyn_vote_rng;
    if (unlikely(!x))
        x = (uint32_t)((uintptr_t)&kmalloc_dyn_vote_rng >> 4) | 1;   /* differs per thread */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    kmalloc_dyn_vote_rng = x;
    return x % DYN_VOTE_SAMPLE ? 0 : DYN_VOTE_SAMPLE;
}

/* A request of `size` bytes (size <= KMALLOC_MAX_SIZE) that kmalloc_index
 * mapped to class idx: every request above KMALLOC_SMALL_MAX, and up to it
 * the ones that missed the malloc fast path. */
static inline void kmalloc_dynamic_note(size_t size, unsigned idx)
{
    if (idx >= NR_KMALLOC_STATIC)
        return;                                 /* a dynamic class: exact, or a stride class */
    uint32_t s16 = (uint32_t)((size + 15) >> 4) | (size == 0);   /* malloc(0): 16 */
    uint32_t csize = kmalloc_info[idx].size;
    bool fits = (csize - (s16 << 4)) * DYN_CLASS_MIN_WASTE < csize;
    if (size <= KMALLOC_SMALL_MAX)
        return kmalloc_dynamic_note_small(idx, s16, fits);
    if (fits)
        return;                                 /* fits well enough */
    const unsigned weight = kmalloc_dynamic_vote_weight();
    if (!weight)
        return;                                 /* not sampled */
    uint32_t w = __atomic_load_n(&kmalloc_dyn_vote[idx], __ATOMIC_RELAXED);
    uint32_t cand = w & 0xffff, votes = w >> 16;
    if (votes == 0xffff)
        return;
    if (cand == s16) {
        votes += weight;
        if (votes >= DYN_CLASS_VOTES) {
            kmalloc_dynamic_create(idx, s16 << 4);
            return;
        }
        w = cand | votes << 16;
    } else {
        /* Misra-Gries with weights: another size takes `weight` votes away,
         * and becomes the candidate with what is left over. */
        w = votes >= weight ? cand | (votes - weight) << 16 : s16 | (weight - votes) << 16;
    }
    __atomic_store_n(&kmalloc_dyn_vote[idx], w, __ATOMIC_RELAXED);
}

/* Dynamic classes made so far (0 .. NR_KMALLOC_DYNAMIC), stride classes
 * included. */
unsigned kmalloc_dynamic_nr();

/*
 * Stride classes: a fixed class's size again, in slabs of 16 pages.
 *
 * A fixed class up to 1 KiB has single-page slabs, so the objects a
 * program allocates one after another lie at one stride only within a page:
 * the stride changes at every page (its unused tail) and between slabs not
 * adjacent in address order.  A program that builds a structure in
 * allocation order and then walks it (tidy's document tree: 104-byte nodes,
 * every walk reading one node of each input line) gets no help from the
 * CPU's stride prefetcher there, where glibc's heap, grown in allocation
 * order, keeps one stride throughout (docs/architecture.md, *Strides across
 * slabs*).  Larger slabs for every class cost peak RSS where populations
 * come and go (a slab empties less often).  So the larger slab is given
 * only to a population that is being built to last: when a fixed
 * single-page class of at most STRIDE_CLASS_ANY_MAX bytes, or up to 1 KiB
 * one whose size leaves a page's tail unused, first holds
 * STRIDE_CLASS_MIN_BYTES of objects, those are at least half of the bytes
 * all classes have handed out, and they are long-lived (kmem_cache
 * life_ratio at most SLAB_LIFE_LONG: few of the objects the slabs handed
 * out in the last windows came back to them), its sizes are
 * pointed at a new class of the same object size whose slabs are
 * 2^STRIDE_CLASS_ORDER pages (__slab_lifetime_update, under the fixed
 * class's lock; dyn_class_lock is a leaf).  The objects already handed out
 * stay in the fixed class's slabs: what they pin is bounded by the
 * population at the decision (1-1.5 MiB), and it is made once per class.
 * At most STRIDE_CLASS_MAX of the NR_KMALLOC_DYNAMIC slots, so the
 * hot-size classes above keep theirs.  The frees punch no holes in a
 * stride slab (each look walks its freelist of up to 1,365 objects:
 * containers' 80-byte map nodes, freed a map at a time, spent 1.4% more
 * instructions and ~7% more time there); its free pages go back with the
 * timed pass (an idle class's slabs at least half free), trim and
 * compaction, and the whole slab when it empties.
 * Not under KALLOC_MESH (meshing merges single pages);
 * KALLOC_DYNAMIC_CLASSES=0 switches these off too.
 */
constexpr unsigned long STRIDE_CLASS_MIN_BYTES = 1ul << 20;
/* Sizes that divide the page lose the stride only where consecutive slabs
 * are not adjacent (bench/tools/stridewalk with 120-byte objects, class
 * 128: 7.05 ns a node in single pages, 2.87 in 16-page slabs, glibc 6.32);
 * above this (512 B, 1 KiB: 8 and 4 to a page) they keep single pages. */
constexpr uint32_t STRIDE_CLASS_ANY_MAX = 256;
constexpr uint8_t STRIDE_CLASS_ORDER = 4;     /* 64 KiB slabs */
constexpr unsigned STRIDE_CLASS_MAX = 4;

/* Make the stride class of fixed class idx (an order-0 class up to 1 KiB)
 * and point its sizes at it.  False only when dyn_class_lock was busy (ask
 * again later); true when made or when it cannot be (no slot, switched
 * off). */
__slowpath bool kmalloc_dynamic_create_stride(unsigned idx);

/* Stride classes made so far (0 .. STRIDE_CLASS_MAX). */
unsigned kmalloc_dynamic_nr_stride();

/* Bit i: dynamic slot NR_KMALLOC_STATIC + i is a stride class (written
 * under dyn_class_lock before any request maps to the slot). */
extern uint32_t kmalloc_stride_slots __hidden;

static inline bool kmalloc_is_stride_class(unsigned idx)
{
    return idx >= NR_KMALLOC_STATIC &&
           (__atomic_load_n(&kmalloc_stride_slots, __ATOMIC_RELAXED) >> (idx - NR_KMALLOC_STATIC)) & 1;
}

/* After fork, in the child: the lock may have been held by a thread the
 * child does not have. */
void kmalloc_dynamic_reinit_lock();

} // namespace kalloc
