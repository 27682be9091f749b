/*
 * platform/time.h - the clocks the allocator reads.
 *
 * Mirrors the kernel's jiffies / ktime_get_coarse: reclaim only needs to
 * know roughly how long a free block has been idle, so it reads
 * CLOCK_MONOTONIC_COARSE (a vDSO read of the last timer tick, a few
 * nanoseconds, resolution 1-4 ms) and never pays for a precise clock.
 * No allocation, async-signal-safe.
 */
#pragma once

#include <time.h>

#include "platform/compiler.h"

namespace kalloc {

/* Milliseconds on the coarse monotonic clock (wraps after ~49 days when
 * truncated to 32 bits; compare with signed differences). */
static inline uint64_t ktime_get_coarse_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

} // namespace kalloc
