/*
 * platform/kthread.h - a background thread of the allocator, and the futex
 * it sleeps on.
 *
 * Mirrors the kernel's kthread_run() and wait_event_timeout(): kalloc's
 * background reclaimer (mm/vmscan.h, kswapd) is an ordinary pthread with
 * every signal blocked, detached, that never calls malloc.  Creating it may
 * allocate inside glibc (pthread_create's thread descriptor and TLS), so the
 * caller must hold no allocator lock and must not be inside kalloc_init.
 *
 * The futex helpers wait on / wake a 32-bit word, like spinlock_t's slow
 * paths.  No allocation.
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

/* Whether the process has only ever had its main thread (glibc's
 * __libc_single_threaded, which turns false at the first pthread_create and
 * stays so).  A thread of kalloc's own would change what such a program may
 * do: fork from a signal handler (glibc's fork skips its malloc locks only
 * in a single-threaded process), unshare(CLONE_NEWUSER) and setns into a
 * user namespace (EINVAL with threads), set*id calls after per-thread
 * capability changes (PR_SET_KEEPCAPS, capset: glibc aborts the process when
 * the call's result differs between threads, as setpriv's --reuid with
 * --regid does). */
bool process_single_threaded();

/* Start fn(arg) on a new detached thread with all signals blocked (a small
 * 64 KiB stack).  False (errno preserved) when the thread cannot be created. */
bool kthread_run(void *(*fn)(void *), void *arg);

/* Sleep while *word == val, at most timeout_ms (0: no timeout), or until
 * kthread_wake(word).  Spurious wake-ups are possible. */
void kthread_wait(int *word, int val, unsigned timeout_ms);

/* Wake the threads sleeping on word. */
void kthread_wake(int *word);

} // namespace kalloc
