/*
 * malloc/fork.cc - pthread_atfork handlers (see fork.h).
 *
 * Nothing is locked when the process is single-threaded (see prepare).
 * Lock order taken in prepare: glibc's stdio list lock (_IO_list_lock, see
 * prepare), compact_lock, pcs_drain_lock, tcache_list_lock, every
 * kmem_cache.lock (by class), the slab holes' batch lock (mm/slub.cc),
 * vmap_lock, vmscan_lock, zone_list_lock, every per_cpu_pages.lock (by
 * zone, then CPU), every zone.lock (by zone id).  Fault-around's lock
 * (malloc/large.cc) is only ever tried: not taken here, reset in the child.
 *
 * Memory-file zones (KALLOC_MESH=1) are mapped MAP_SHARED, so fork would
 * share them with the child: the child copies them (zone_memfd_fork_child)
 * while the parent waits in its handler, locks still held.
 */
#include "malloc/fork.h"

#include <pthread.h>
#include <sys/single_threaded.h>

#include "malloc/large.h"
#include "malloc/tcache.h"
#include "mm/compaction.h"
#include "mm/mmzone.h"
#include "mm/per_cpu_pages.h"
#include "mm/percpu_sheaves.h"
#include "mm/slab.h"
#include "mm/slab_dynamic.h"
#include "mm/vmalloc.h"
#include "mm/vmscan.h"

/* glibc's stdio list lock (exported, not declared in a public header);
 * weak, so another C library without them still links. */
extern "C" {
__attribute__((weak)) void _IO_list_lock(void);
__attribute__((weak)) void _IO_list_unlock(void);
__attribute__((weak)) void _IO_list_resetlock(void);
}

namespace kalloc {

namespace {

unsigned fork_nr_zones;   /* zones locked by prepare */
bool fork_locked;         /* prepare took the locks (the process had threads) */
bool fork_io_locked;      /* prepare took glibc's stdio list lock */

void kalloc_fork_prepare()
{
    /* A single-threaded process needs no locks across fork (as glibc): and
     * a fork from a signal handler that interrupted this very thread inside
     * kalloc must not wait for a lock that thread holds. */
    WRITE_IF_CHANGED(fork_locked, !__libc_single_threaded);
    if (!fork_locked) {
        zone_memfd_fork_prepare();
        return;
    }
    /* glibc's own fork takes the stdio list lock before its malloc locks,
     * and so must this handler, which runs before either: stdio calls
     * malloc with a FILE locked (getline, a buffer for fflush), and
     * fflush(NULL) holds the list lock while it waits for every FILE.  With
     * kalloc's locks taken first, a thread in getline's realloc (FILE lock
     * held) waits for them, fflush(NULL) (list lock held) waits for that
     * FILE, and fork waits for the list lock: none of the three returns.
     * The lock is recursive: fork's own _IO_list_lock nests inside. */
    fork_io_locked = _IO_list_lock && _IO_list_unlock && _IO_list_resetlock;
    if (fork_io_locked)
        _IO_list_lock();
    spin_lock(&compact_lock);
    pcs_lock_for_fork();        /* no drain in flight: the child's arrays are not stopped */
    tcache_lock_for_fork();
    kmem_cache_lock_all();
    vmap_lock_for_fork();
    vmscan_lock_for_fork();     /* no free block isolated by reclaim across fork */
    /* zone_list_lock before counting the zones, so none is created between
     * the count and the locks (nothing takes zone_list_lock while holding a
     * pageset or zone lock, so this order is safe). */
    spin_lock(&zone_list_lock);
    fork_nr_zones = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    pcp_lock_all(fork_nr_zones);
    for (unsigned i = 0; i < fork_nr_zones; i++)
        spin_lock(&zones[i]->lock);
    zone_memfd_fork_prepare();
    spin_lock_bypass = true;    /* other atfork handlers may malloc from here on */
}

void kalloc_fork_parent()
{
    /* Before any lock is let go: no free block is given back (punched)
     * while the child copies the memory files. */
    zone_memfd_fork_parent();
    if (!fork_locked)
        return;
    spin_lock_bypass = false;
    for (unsigned i = fork_nr_zones; i-- > 0;)
        spin_unlock(&zones[i]->lock);
    pcp_unlock_all(fork_nr_zones);
    spin_unlock(&zone_list_lock);
    vmscan_unlock_for_fork();
    vmap_unlock_for_fork();
    kmem_cache_unlock_all();
    tcache_unlock_for_fork();
    pcs_unlock_for_fork();
    spin_unlock(&compact_lock);
    if (fork_io_locked)
        _IO_list_unlock();      /* fork let go of its own hold before the parent handlers */
}

void kalloc_fork_child()
{
    zone_memfd_fork_child();    /* first: until then the child writes the parent's pages */
    if (!fork_locked) {
        vmscan_after_fork_child(false);     /* no kswapd in the child unless asked */
        return;
    }
    spin_lock_bypass = false;
    spin_lock_init(&compact_lock);
    spin_lock_init(&zone_list_lock);
    for (unsigned i = 0; i < fork_nr_zones; i++)
        spin_lock_init(&zones[i]->lock);
    pcp_reinit_locks(fork_nr_zones);
    vmscan_after_fork_child(true);
    vmap_reinit_lock();
    kmem_cache_reinit_locks();
    kmalloc_dynamic_reinit_lock();
    pcs_reinit_lock();
    tcache_after_fork_child();
    large_fault_around_reinit_lock();
    if (fork_io_locked)
        _IO_list_resetlock();   /* one thread now: free, whatever fork did with it */
}

} // namespace

void kalloc_register_fork_handlers()
{
    pthread_atfork(kalloc_fork_prepare, kalloc_fork_parent, kalloc_fork_child);
}

} // namespace kalloc
