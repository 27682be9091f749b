/*
 * platform/timekeeping.h - a cheap monotonic clock for the allocator's
 * housekeeping (per-CPU pageset decay, idle drains).
 *
 * Mirrors the kernel's ktime_get_coarse_*() (kernel/time/timekeeping.c):
 * CLOCK_MONOTONIC_COARSE through the vDSO (called directly, not through
 * libc's interposable clock_gettime), no system call, a few nanoseconds, with the resolution of the kernel's tick (1..10 ms), which
 * is all that deciding "idle for a second" needs.  Never allocates; safe in
 * any thread and in a fork child.
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

/* Milliseconds since an arbitrary fixed point (boot); never goes back. */
unsigned long ktime_get_coarse_ms();

/* Nanoseconds, CLOCK_MONOTONIC (vDSO, ~20 ns): for budgets of work that
 * costs milliseconds (the hugepage collapses of a reclaim pass). */
unsigned long ktime_get_ns();

/* CPU time of the calling thread in nanoseconds (CLOCK_THREAD_CPUTIME_ID, a
 * system call, ~0.3 us): what a page fault cost this thread, waits for the
 * CPU left out (the hugepage policy's fault probe, mm/khugepaged.h).  Like
 * the kernel's task_sched_runtime(). */
unsigned long ktime_get_thread_cpu_ns();

/* CPU time of the whole process in nanoseconds (CLOCK_PROCESS_CPUTIME_ID,
 * a system call, ~0.3 us; 0 if refused): how much work the program did,
 * whatever else runs on the machine (the reclaim's thrashing check,
 * mm/vmscan.h: a rate per wall second fell under its threshold when a
 * loaded machine slowed the program down). */
unsigned long ktime_get_process_cpu_ns();

/* Whether the clock is read through the vDSO (else the system call). */
bool ktime_uses_vdso();

} // namespace kalloc
