/*
 * platform/cpu.cc - current CPU from glibc's rseq area (see cpu.h).
 */
#include "platform/cpu.h"

#include <sched.h>
#include <unistd.h>

#include "platform/rseq.h"

namespace kalloc {

namespace {

unsigned cached_nr_cpus;

} // namespace

bool cpu_uses_rseq() { return rseq_libc_registers(); }

unsigned raw_smp_processor_id()
{
    if (likely(rseq_libc_registers())) {
        uint32_t cpu = rseq_current_cpu();
        if (likely((int32_t)cpu >= 0))
            return cpu;
    }
    int cpu = sched_getcpu();
    return cpu < 0 ? 0 : (unsigned)cpu;
}

unsigned nr_cpu_ids()
{
    unsigned n = READ_ONCE(cached_nr_cpus);
    if (!n) {
        long c = sysconf(_SC_NPROCESSORS_CONF);
        n = c > 0 ? (unsigned)c : 1;
        WRITE_ONCE(cached_nr_cpus, n);
    }
    return n;
}

} // namespace kalloc
