/*
 * platform/cpu.cc - current CPU from glibc's rseq area (see cpu.h).
 */
#include "platform/cpu.h"

#include <sched.h>
#include <unistd.h>

/* Exported by glibc >= 2.35; weak so kalloc still loads on older glibc. */
extern "C" {
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
}

namespace kalloc {

namespace {

/* struct rseq's layout (uapi/linux/rseq.h): cpu_id_start, cpu_id, ... */
struct rseq_abi {
    uint32_t cpu_id_start;
    uint32_t cpu_id;
};

unsigned cached_nr_cpus;

} // namespace

bool cpu_uses_rseq() { return &__rseq_size && __rseq_size > 0; }

unsigned raw_smp_processor_id()
{
    if (likely(cpu_uses_rseq())) {
        auto *rs = (const rseq_abi *)((char *)__builtin_thread_pointer() + __rseq_offset);
        uint32_t cpu = READ_ONCE(rs->cpu_id);
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
