/*
 * platform/cpu.h - which CPU the calling thread runs on.
 *
 * Reads cpu_id from the rseq area glibc (>= 2.35) registers for every thread
 * (__rseq_offset from the thread pointer, valid when __rseq_size > 0), and
 * falls back to sched_getcpu() where glibc did not register one (older glibc,
 * GLIBC_TUNABLES=glibc.pthread.rseq=0).  The answer may be stale by the time
 * it is used (the thread can migrate): callers use it to pick a structure that
 * is then locked, never as proof of exclusive access.
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

/* The current CPU number (0 .. nr_cpu_ids-1). */
unsigned raw_smp_processor_id();

/* Number of possible CPUs (from sysconf at first use). */
unsigned nr_cpu_ids();

/* Whether the CPU number comes from glibc's rseq registration. */
bool cpu_uses_rseq();

} // namespace kalloc
