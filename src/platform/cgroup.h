/*
 * platform/cgroup.h - the memory limits of the process's control group.
 *
 * Mirrors what the kernel's memcg reclaim reacts to (memory.high, the
 * throttling limit, and memory.max, the OOM limit).  kalloc reads them once,
 * at the first zone's creation, without allocating: /proc/self/cgroup names
 * the group; cgroup v2 (the "0::/path" line, files memory.max and
 * memory.high under /sys/fs/cgroup/path) is preferred, else cgroup v1's
 * memory controller ("N:memory:/path", memory.limit_in_bytes and
 * memory.soft_limit_in_bytes under /sys/fs/cgroup/memory/path).  A group's
 * effective limit is the smallest along its path to the root, so every
 * ancestor is read.  "max" and v1's huge "unlimited" values read as none.
 *
 * vmscan uses the result to lower the watermarks as the process's RSS
 * nears the limit (see mm/vmscan.h).
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

struct cgroup_limits {
    uint64_t max;      /* memory.max / memory.limit_in_bytes; 0 = no limit */
    uint64_t high;     /* memory.high / memory.soft_limit_in_bytes; 0 = no limit */
    int version;       /* 2, 1, or 0 when no memory cgroup was found */
};

/* Read the limits of the calling process's cgroup.  `root` is the cgroup
 * file-system mount ("/sys/fs/cgroup"; tests may point elsewhere). */
void cgroup_read_limits(cgroup_limits *out, const char *root);

/* The tighter of high and max (0: no limit). */
static inline uint64_t cgroup_limit(const cgroup_limits &l)
{
    if (!l.high)
        return l.max;
    if (!l.max)
        return l.high;
    return l.high < l.max ? l.high : l.max;
}

} // namespace kalloc
