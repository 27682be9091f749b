/*
 * platform/options.cc - the option table and the environ scanner.
 */
#include "platform/options.h"

#include <string.h>
#include <sys/auxv.h>

#include "platform/printk.h"

extern "C" char **environ;

namespace kalloc {

/* Constant-initialised: valid before any constructor has run. */
option_desc options[OPT_COUNT] = {
    {"STATS", 0, "print kernel-style statistics on stderr at exit"},
    {"TCACHE", 1, "per-thread object caches (0 = every malloc/free takes the locked path)"},
    {"FREE_HIGH", 0, "low watermark: free resident bytes per zone before reclaim (0 = auto)"},
    {"DECAY_MS", 1000, "free memory idle for this many ms is given back to the OS (0 = never)"},
    {"BACKGROUND", 0, "background reclaimer thread (kswapd): 1 once the program has a thread of its own (a single-threaded program stays one), 2 in any process"},
    {"THP", 3, "transparent hugepages: 0 none, 1 dense pageblocks collapsed and sparse ones out, 2 also fresh pageblocks huge at their first fault, 3 the same while that first fault is measured cheap"},
    {"THP_FAULT_US", 1000, "KALLOC_THP=3: a hugepage's first fault costing more CPU time than this (us) is slow, and fresh pageblocks keep small pages for a while"},
    {"HUGETLB", 0, "map zones from reserved hugetlbfs pages (MAP_HUGETLB) when available (1: keeping as many free as in use, for fork; 2: all)"},
    {"VERBOSE", 0, "print warnings for unusual events"},
    {"LIFETIME", 0, "group slabs of size classes learned to be long-lived in their own pageblocks"},
    {"SLAB_HOLES", 1, "give back the free pages of partly used slabs (0 = only whole empty slabs)"},
    {"MESH", 0, "back zones with a memory file and merge half-empty slabs with disjoint objects onto one physical page (meshing): 1 as frees find them, 2 only from kalloc_compact / malloc_trim(0)"},
    {"DYNAMIC_CLASSES", 1, "make up to 8 size classes at run time for the request sizes a program uses most (0 = fixed classes only)"},
    {"PERCPU_SHEAVES", 1, "per-CPU arrays of free objects, changed with rseq, for the threads beyond 4 per CPU (0 = those threads go to the slabs under their locks)"},
    {"RESIDENCY", 1, "read with mincore which pages of free blocks are resident before watermark reclaim (0 = count every page of a freed block as resident)"},
    {"TRUST_SECCOMP", 0, "the seccomp filter the process runs under (a container's) allows mincore and membarrier, as Docker's default profile does: use them (residency reads, calloc of reused huge areas, per-CPU arrays) instead of leaving them out"},
    {"TRACE_VMSCAN", 0, "keep the last N reclaim passes (at most 4096) with each zone's watermarks, use, workingset and what the pass read and gave back, and print them on stderr at exit (mm_vmscan_zone lines)"},
    {"FAULT_AROUND", 1, "fault a large block that reads zero in with one call when it is handed out, while blocks read at their free show the program touches its large blocks whole (0: never)"},
};

namespace {

bool options_read;   /* environ has been scanned */
bool options_warned; /* a scan has claimed the right to print the warnings (threads
                        may scan at once before options_read is seen: one prints) */

bool parse_value(const char *s, long *out)
{
    static const struct { const char *word; long v; } words[] = {
        {"on", 1}, {"yes", 1}, {"true", 1}, {"off", 0}, {"no", 0}, {"false", 0},
    };
    for (auto &w : words)
        if (strcasecmp(s, w.word) == 0) {
            *out = w.v;
            return true;
        }
    if (*s < '0' || *s > '9')
        return false;
    long v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    switch (*s) {
    case 'k': case 'K': v <<= 10; s++; break;
    case 'm': case 'M': v <<= 20; s++; break;
    case 'g': case 'G': v <<= 30; s++; break;
    }
    if (*s == 'i' || *s == 'b' || *s == 'B')   /* KiB, KB, MiB ... */
        while (*s == 'i' || *s == 'b' || *s == 'B')
            s++;
    if (*s)
        return false;
    *out = v;
    return true;
}

} // namespace

void options_init()
{
    if (likely(options_read))
        return;
    char **env = environ;
    if (!env)
        return;                 /* too early: try again on a later slow path */
    /* Only the first scan prints: two threads whose first slow paths race both scan
     * (the values they store are the same), but a bad value is reported once. */
    bool warn = !__atomic_exchange_n(&options_warned, true, __ATOMIC_RELAXED);
    /* A set-user-ID, set-group-ID or file-capability program (AT_SECURE)
     * keeps the defaults, as glibc ignores MALLOC_* and GLIBC_TUNABLES
     * there: the options of whoever runs it would otherwise steer a
     * privileged process (print its heap statistics and trace on stderr,
     * take the hugetlb pool, create memory files). */
    const bool secure = getauxval(AT_SECURE) != 0;
    for (; *env; env++) {
        const char *e = *env;
        if (strncmp(e, "LD_PRELOAD=", 11) == 0) {
            /* valgrind's core preload is always there; a tool that replaces
             * malloc & co. (memcheck, helgrind, drd, massif, dhat) adds its
             * own; callgrind, cachegrind and none do not. */
            for (const char *v = strstr(e, "/vgpreload_"); v; v = strstr(v + 1, "/vgpreload_")) {
                options_valgrind = true;
                if (strncmp(v + 11, "core-", 5) != 0)
                    options_valgrind_malloc = true;
            }
        }
        if (secure || strncmp(e, "KALLOC_", 7) != 0)
            continue;
        e += 7;
        if (strncmp(e, "STATS_FILE=", 11) == 0) {
            option_stats_file = e[11] ? e + 11 : nullptr;
            continue;
        }
        for (auto &o : options) {
            size_t n = strlen(o.name);
            if (strncmp(e, o.name, n) != 0 || e[n] != '=')
                continue;
            long v;
            if (parse_value(e + n + 1, &v))
                o.value = v;
            else if (warn)
                fdprintk(2, "kalloc: warning: ignoring KALLOC_%s=%s (not a number or on/off)\n",
                         o.name, e + n + 1);
        }
    }
    options_read = true;
}

bool options_valgrind;
bool options_valgrind_malloc;
const char *option_stats_file;

/* A program whose first malloc runs from .preinit_array finds `environ`
 * still null (libc sets it in its own initialiser, after the executable's
 * preinit functions): read the options when this library is initialised,
 * at the latest.  The decisions taken before stay (the first zone, the
 * first thread's cache); every later one sees the options.  Before, the
 * paths that call options_init again were seldom taken (a new zone, a
 * run-time class, the exit report), so such a process ran with most
 * defaults (API test Lifecycle.OptionsReachAProcessThatAllocatedInPreinit). */
__attribute__((constructor)) static void options_read_at_load()
{
    options_init();
}

} // namespace kalloc
