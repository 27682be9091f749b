/*
 * platform/rseq.h - restartable sequences on per-CPU arrays of pointers.
 *
 * The kernel's rseq (kernel/rseq.c, since Linux 4.18) lets a thread run a
 * short sequence of instructions that ends in one committing store, and
 * restarts it from an abort handler if the thread is preempted, migrated or
 * gets a signal before that store.  So a structure that belongs to a CPU can
 * be changed by whichever thread runs there with plain loads and stores: no
 * lock, no atomic read-modify-write, and no holder that can be preempted
 * while others wait (tcmalloc's per-CPU caches work this way).
 *
 * kalloc uses glibc's registration (glibc >= 2.35 registers an rseq area for
 * every thread, at __rseq_offset from the thread pointer, signature
 * RSEQ_SIG 0x53053053 on x86-64); it never registers one itself.  Where
 * glibc did not (older glibc, GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind,
 * seccomp filters), or on another architecture, rseq_percpu_available() is
 * false and callers use their locked path.
 *
 * The structure: a region of `ncpu` blocks of 2^shift bytes, one per CPU
 * (a thread on a CPU numbered ncpu or more, hot-added after the region was
 * mapped, gets RSEQ_PERCPU_STOPPED: the bound is checked inside the
 * sequence, so a migration between a check and the sequence cannot write
 * past the region).  A block starts with a 32-bit stop word; an array at offset `off`
 * (a multiple of 8) is a 32-bit count at `off` bytes into the block and its
 * slots (void *) from `off` + 8 (struct rseq_percpu_array).
 * A sequence reads the stop word inside its critical section: when it is
 * not 0 the operation fails (returns RSEQ_PERCPU_STOPPED) and changes
 * nothing.
 *
 * Stopping a CPU's block from another thread (draining it): set the stop
 * word, then rseq_fence(): membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)
 * restarts every sequence of this process that is running on another CPU,
 * and a preempted one restarts when it runs again, so once it returns no
 * sequence that read a 0 stop word can still commit, and the block can be
 * read and written with plain accesses until the stop word is cleared.
 * Needs MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ (Linux 5.10), done by
 * rseq_percpu_init(); without it, per-CPU arrays are not used.
 *
 * Invariants: a count is only written by a committing store inside a
 * sequence on its own CPU, or by a drainer while the block is stopped; slots
 * [0, count) hold the pointers.
 */
#pragma once

#include <stddef.h>

#include "platform/compiler.h"

/* Exported by glibc >= 2.35; weak so kalloc still loads on older glibc. */
extern "C" {
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
}

namespace kalloc {

/* struct rseq's layout (uapi/linux/rseq.h), the part kalloc uses. */
struct rseq_area {
    uint32_t cpu_id_start;  /* the CPU, always valid (0 if not registered) */
    uint32_t cpu_id;        /* the CPU, or negative when not registered */
    uint64_t rseq_cs;       /* the running critical section's descriptor, or 0 */
};

/* Whether glibc registers rseq areas in this process (it may still have
 * failed for a thread: see rseq_thread_registered). */
static inline bool rseq_libc_registers() { return &__rseq_size && __rseq_size > 0; }

/* The calling thread's area (valid when rseq_libc_registers()). */
static inline rseq_area *rseq_self()
{
    return (rseq_area *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

constexpr unsigned RSEQ_PERCPU_STOPPED = ~0u;   /* the block is stopped (or no rseq here) */

/* Whether per-CPU sequences can be used by this process (glibc registered
 * rseq, membarrier's rseq fence is available, no seccomp filter: a
 * sandbox's filter may kill the process on membarrier, which glibc's malloc
 * never calls).  Set up on the first call (the registration syscall);
 * cheap afterwards. */
bool rseq_percpu_init();

/* Whether the calling thread has a registered rseq area (its cpu_id is
 * valid).  Per thread: glibc may fail to register one for some threads. */
static inline bool rseq_thread_registered()
{
    return rseq_libc_registers() && (int32_t)READ_ONCE(rseq_self()->cpu_id) >= 0;
}

/* The layout of an array inside a block. */
struct rseq_percpu_array {
    uint32_t count;     /* pointers in slots[0, count) */
    uint32_t _pad;
    void *slots[];      /* as many as the block's layout gives it */
};

/* Pop up to `want` pointers from the top of the array at `off` of the
 * current CPU's block into out[0..): out[0] is the last one pushed.
 * Returns how many, or RSEQ_PERCPU_STOPPED.  Requires
 * rseq_thread_registered(). */
unsigned rseq_percpu_pop(char *region, unsigned ncpu, unsigned shift, unsigned off, void **out,
                         unsigned want);

/* Push up to `n` pointers in[0..n) onto the array at `off` of the
 * current CPU's block, holding at most `cap`.  Returns how many were
 * pushed (in[0] first; the rest did not fit), or RSEQ_PERCPU_STOPPED. */
unsigned rseq_percpu_push(char *region, unsigned ncpu, unsigned shift, unsigned off, void *const *in,
                          unsigned n, unsigned cap);

/* After setting stop words: wait until no sequence that read them as 0 can
 * commit (membarrier's rseq fence over every CPU).  False if it failed, or
 * if a seccomp filter was installed since the arrays were set up (then the
 * caller must not touch the blocks). */
bool rseq_fence();

/* The current CPU of a registered thread (may be stale). */
static inline unsigned rseq_current_cpu() { return READ_ONCE(rseq_self()->cpu_id); }

} // namespace kalloc
