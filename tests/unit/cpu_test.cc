// The current CPU, from glibc's rseq area or sched_getcpu(): exact when the
// thread is pinned, with and without glibc's rseq registration (ctest runs
// this file a second time with GLIBC_TUNABLES=glibc.pthread.rseq=0).
#include <gtest/gtest.h>

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "platform/cpu.h"
#include "platform/timekeeping.h"

#include <time.h>

using namespace kalloc;

namespace {

bool rseq_disabled_by_tunable()
{
    const char *t = getenv("GLIBC_TUNABLES");
    return t && strstr(t, "glibc.pthread.rseq=0");
}

} // namespace

TEST(Cpu, RseqRegistrationMatchesTheEnvironment)
{
    if (rseq_disabled_by_tunable())
        EXPECT_FALSE(cpu_uses_rseq()) << "glibc was told not to register rseq";
    else
        RecordProperty("uses_rseq", cpu_uses_rseq() ? "yes" : "no (old glibc or kernel)");
}

TEST(Cpu, PinnedThreadSeesItsCpu)
{
    cpu_set_t allowed;
    ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    int checked = 0;
    for (int c = 0; c < CPU_SETSIZE && checked < 8; c++) {
        if (!CPU_ISSET(c, &allowed))
            continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
        sched_yield();   // make sure the migration happened
        for (int i = 0; i < 100; i++)
            ASSERT_EQ(raw_smp_processor_id(), (unsigned)c);
        checked++;
    }
    sched_setaffinity(0, sizeof(allowed), &allowed);
    EXPECT_GT(checked, 0);
    EXPECT_LT(raw_smp_processor_id(), (unsigned)CPU_SETSIZE);
}

// The allocator's clocks come from the vDSO directly (not libc's
// interposable clock_gettime: see platform/timekeeping.cc) and agree with
// the system's: each reading lies between two of clock_gettime's.
TEST(Timekeeping, VdsoClocksAgreeWithTheSystem)
{
    EXPECT_TRUE(ktime_uses_vdso()) << "no __vdso_clock_gettime found: every reading is a system call";
    for (int i = 0; i < 1000; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        unsigned long ns = ktime_get_ns();
        clock_gettime(CLOCK_MONOTONIC, &b);
        ASSERT_LE((unsigned long)a.tv_sec * 1000000000ul + (unsigned long)a.tv_nsec, ns);
        ASSERT_GE((unsigned long)b.tv_sec * 1000000000ul + (unsigned long)b.tv_nsec, ns);
    }
    struct timespec c;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &c);
    unsigned long ms = ktime_get_coarse_ms(), sys_ms = (unsigned long)c.tv_sec * 1000 + (unsigned long)c.tv_nsec / 1000000;
    EXPECT_GE(ms, sys_ms);
    EXPECT_LE(ms, sys_ms + 50);
    unsigned long t0 = ktime_get_thread_cpu_ns();
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 20000000; i++)
        x = x + i;
    EXPECT_GT(ktime_get_thread_cpu_ns(), t0 + 1000000) << "20M additions took under 1 ms of CPU time";
}
