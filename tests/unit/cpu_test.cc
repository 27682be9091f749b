// The current CPU, from glibc's rseq area or sched_getcpu(): exact when the
// thread is pinned, with and without glibc's rseq registration (ctest runs
// this file a second time with GLIBC_TUNABLES=glibc.pthread.rseq=0).
#include <gtest/gtest.h>

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "platform/cpu.h"

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
