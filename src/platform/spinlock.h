/*
 * platform/spinlock.h - the allocator's lock.
 *
 * Named after the kernel's spinlock_t because it plays the same role (short
 * critical sections around zone and slab lists), but a user-space thread
 * can be preempted while holding it, so it is a futex mutex: spin briefly,
 * then sleep in the kernel (Drepper's three-state mutex, "Futexes Are
 * Tricky").  Constant-initialised (all zero), so usable before any
 * constructor; no allocation.  Only slow paths take it.
 *
 * States: 0 unlocked, 1 locked, 2 locked with (possible) waiters.
 *
 * fork(): between kalloc's atfork prepare handler (which takes every lock)
 * and its parent/child handlers, the forking thread holds everything, yet
 * other atfork handlers (registered before kalloc's) run in that window and
 * may malloc.  spin_lock_bypass is set for the forking thread in that
 * window: its lock operations are no-ops, since it already owns every lock.
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

struct spinlock_t {
    int state;   /* 0 free, 1 held, 2 held and contended */
};

#define SPINLOCK_INIT {0}

/* Set (per thread) while this thread holds every allocator lock for fork. */
extern __thread bool spin_lock_bypass __attribute__((tls_model("initial-exec")));

void __spin_lock_slow(spinlock_t *lock);
void __spin_unlock_wake(spinlock_t *lock);

static inline void spin_lock(spinlock_t *lock)
{
    if (unlikely(spin_lock_bypass))
        return;
    int expected = 0;
    if (likely(__atomic_compare_exchange_n(&lock->state, &expected, 1, false,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        return;
    __spin_lock_slow(lock);
}

static inline bool spin_trylock(spinlock_t *lock)
{
    if (unlikely(spin_lock_bypass))
        return true;
    int expected = 0;
    return __atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static inline void spin_unlock(spinlock_t *lock)
{
    if (unlikely(spin_lock_bypass))
        return;
    if (unlikely(__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2))
        __spin_unlock_wake(lock);
}

/* After fork() in the child: the lock is free whoever held it. */
static inline void spin_lock_init(spinlock_t *lock) { lock->state = 0; }

} // namespace kalloc
