/*
 * mm/slab_dynamic.cc - size classes made at run time (see slab_dynamic.h).
 *
 * Also the home of the writable class tables (kmalloc_info, kmalloc_fast,
 * kmalloc_index_small, kmalloc_bin_offset_small, kmalloc_index_medium):
 * constant-initialised from slab_common.h's
 * constexpr builders, so nothing runs before the first malloc.
 *
 * Lock order: dyn_class_lock is a leaf, taken with try-lock: from the
 * malloc slow path with no other allocator lock held (hot-size classes),
 * and under the fixed class's kmem_cache lock (stride classes, from
 * __slab_lifetime_update).  Nothing is locked under it.
 */
#include "mm/slab_dynamic.h"

#include "mm/slab.h"
#include "platform/options.h"
#include "platform/spinlock.h"

namespace kalloc {

constinit detail::kmalloc_class_table kmalloc_info_table = detail::make_table();
constinit detail::kmalloc_fast_table_t kmalloc_fast_table = detail::make_fast_table();
constinit detail::kmalloc_medium_table_t kmalloc_index_medium_table = detail::make_medium_index();
constinit detail::kmalloc_small_index_t kmalloc_index_small_table = detail::make_small_index();
constinit detail::kmalloc_small_offset_t kmalloc_bin_offset_small_table = detail::make_small_offset();
__start_state constinit uint32_t kmalloc_dyn_vote[NR_KMALLOC_STATIC] = {};
constinit uint32_t kmalloc_stride_slots = 0;
__thread uint32_t kmalloc_dyn_vote_rng __attribute__((tls_model("initial-exec")));  /* kmalloc_dynamic_vote_weight */

namespace {
constinit spinlock_t dyn_class_lock = {};
constinit unsigned nr_dyn_classes = 0;  /* slots filled, under dyn_class_lock (read with acquire) */
constinit unsigned nr_stride_classes = 0; /* of them stride classes, under dyn_class_lock */
} // namespace

unsigned kmalloc_dynamic_nr()
{
    return __atomic_load_n(&nr_dyn_classes, __ATOMIC_ACQUIRE);
}

unsigned kmalloc_dynamic_nr_stride()
{
    return READ_ONCE(nr_stride_classes);
}

bool kmalloc_dynamic_create_stride(unsigned idx)
{
    if (!spin_trylock(&dyn_class_lock))
        return false;
    if (nr_dyn_classes == NR_KMALLOC_DYNAMIC || nr_stride_classes == STRIDE_CLASS_MAX ||
        !option_get(OPT_DYNAMIC_CLASSES)) {
        spin_unlock(&dyn_class_lock);
        return true;
    }
    const uint32_t size = kmalloc_info[idx].size;
    unsigned slot = NR_KMALLOC_STATIC + nr_dyn_classes;
    kmalloc_info[slot] = detail::make_class_size_order(size, STRIDE_CLASS_ORDER);
    kmalloc_fast[slot] = detail::make_fast_class(kmalloc_info[slot]);
    WRITE_ONCE(nr_stride_classes, nr_stride_classes + 1);
    __atomic_store_n(&kmalloc_stride_slots, kmalloc_stride_slots | 1u << (slot - NR_KMALLOC_STATIC),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&nr_dyn_classes, nr_dyn_classes + 1, __ATOMIC_RELEASE);
    /* The sizes that still map to the fixed class (a hot-size class may
     * have taken some of them): the class (slow paths) first, then the
     * bin's offset (the malloc fast path), as kmalloc_dynamic_create. */
    for (int e = (int)(size >> 4); e >= 0; e--) {     /* entry 0: malloc(0), the 16-byte class's */
        uint8_t *ent = &kmalloc_index_small[e];
        const unsigned cur = __atomic_load_n(ent, __ATOMIC_RELAXED);
        if (cur != idx) {
            if (kmalloc_size(cur) < size)
                break;          /* below the class */
            continue;           /* a hot-size class's */
        }
        __atomic_store_n(ent, (uint8_t)slot, __ATOMIC_RELEASE);
        __atomic_store_n(&kmalloc_bin_offset_small[e], (uint16_t)(slot * 16), __ATOMIC_RELEASE);
    }
    spin_unlock(&dyn_class_lock);
    return true;
}

void kmalloc_dynamic_reinit_lock()
{
    spin_lock_init(&dyn_class_lock);
}

bool kmalloc_dynamic_create(unsigned idx, uint32_t size)
{
    /* Start the count again whatever happens: a busy lock or a size that
     * has its class already. */
    __atomic_store_n(&kmalloc_dyn_vote[idx], (size >> 4), __ATOMIC_RELAXED);
    if (!spin_trylock(&dyn_class_lock))
        return true;
    unsigned cur = kmalloc_index(size);
    if (kmalloc_size(cur) == size) {
        spin_unlock(&dyn_class_lock);
        return true;                    /* made meanwhile by another thread */
    }
    if (size <= KMALLOC_SMALL_MAX) {
        /* Worth a slot?  Read without the cache's lock: a
         * count a little stale only moves the decision by a few votes. */
        unsigned long live = READ_ONCE(kmalloc_caches[idx].active_objects);
        if (live * (kmalloc_size(idx) - size) < DYN_SMALL_MIN_SAVING) {
            spin_unlock(&dyn_class_lock);
            return false;
        }
    }
    options_init();
    if (nr_dyn_classes == NR_KMALLOC_DYNAMIC || !option_get(OPT_DYNAMIC_CLASSES)) {
        /* No slot left, or switched off: stop counting for every class. */
        for (unsigned i = 0; i < NR_KMALLOC_STATIC; i++)
            __atomic_store_n(&kmalloc_dyn_vote[i], 0xffffu << 16, __ATOMIC_RELAXED);
        spin_unlock(&dyn_class_lock);
        return true;
    }
    unsigned slot = NR_KMALLOC_STATIC + nr_dyn_classes;
    kmalloc_info[slot] = detail::make_class_size(size, true);
    kmalloc_fast[slot] = detail::make_fast_class(kmalloc_info[slot]);
    __atomic_store_n(&nr_dyn_classes, nr_dyn_classes + 1, __ATOMIC_RELEASE);
    /* The sizes that now fit best in the new class: from `size` down, while
     * their class is larger than it.  Up to 1 KiB two tables: the class
     * (slow paths) and its bin's offset (the malloc fast path); a thread
     * may see one rewritten and not yet the other, and either class fits
     * the request (the bin of the new class is empty until a refill, which
     * goes through kmalloc_index). */
    if (size <= KMALLOC_SMALL_MAX) {
        for (int e = (int)(size >> 4); e >= 0; e--) {     /* entry 0: malloc(0), the 16-byte class's */
            uint8_t *ent = &kmalloc_index_small[e];
            if (kmalloc_size(__atomic_load_n(ent, __ATOMIC_RELAXED)) <= size)
                break;
            __atomic_store_n(ent, (uint8_t)slot, __ATOMIC_RELEASE);
            __atomic_store_n(&kmalloc_bin_offset_small[e], (uint16_t)(slot * 16), __ATOMIC_RELEASE);
        }
        spin_unlock(&dyn_class_lock);
        return true;
    }
    for (unsigned e = size >> 4; e >= detail::KMALLOC_MEDIUM_FIRST; e--) {
        uint8_t *ent = &kmalloc_index_medium[e - detail::KMALLOC_MEDIUM_FIRST];
        if (kmalloc_size(__atomic_load_n(ent, __ATOMIC_RELAXED)) <= size)
            break;
        __atomic_store_n(ent, (uint8_t)slot, __ATOMIC_RELEASE);
    }
    spin_unlock(&dyn_class_lock);
    return true;
}

} // namespace kalloc
