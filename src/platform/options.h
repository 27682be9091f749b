/*
 * platform/options.h - kalloc's run-time options, read from the environment.
 *
 * One table of options (like mimalloc's options.c), each read from a
 * KALLOC_<NAME> environment variable by scanning `environ` directly: getenv
 * is not used, so reading works before libc has finished starting up and
 * never allocates.  Values accept 1/0, on/off, yes/no, true/false, and
 * numbers with K, M or G suffixes.  A malformed value prints a warning and
 * keeps the default.  A set-user-ID or set-group-ID program (AT_SECURE)
 * reads none and keeps every default, as glibc ignores MALLOC_* there.
 *
 * Options are read once, on the first allocation that reaches a slow path
 * (options_init); if `environ` is not yet set then (a malloc from
 * .preinit_array), they are read when the library is initialised
 * (options_init is idempotent until it has seen an environment).
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

enum option_id {
    OPT_STATS,          /* KALLOC_STATS=1: print statistics at exit */
    OPT_TCACHE,         /* KALLOC_TCACHE=0: no thread caches (every call takes the slow path) */
    OPT_FREE_HIGH,      /* KALLOC_FREE_HIGH=bytes: the low watermark of free-but-resident memory
                           per zone (reclaim starts above it); 0 = auto (the refaulted workingset, 1M (in-use / 2 if less) .. in-use / 32 clamped to 4M .. 32M, at least twice the largest block taken back; past the cap while refaults run at 8x the use per CPU second) */
    OPT_DECAY_MS,       /* KALLOC_DECAY_MS=ms: free memory idle this long is given back (0 = never) */
    OPT_BACKGROUND,     /* KALLOC_BACKGROUND=1: a background reclaimer thread (kswapd) once the
                           program has a thread of its own; 2 in any process (mm/vmscan.cc) */
    OPT_THP,            /* KALLOC_THP=0: leave transparent hugepages alone (no madvise); 1 dense
                           pageblocks collapsed; 2 also fresh pageblocks huge at their first
                           fault; 3 (default) the same while such faults are measured cheap */
    OPT_THP_FAULT_US,   /* KALLOC_THP_FAULT_US: a hugepage's first fault costing more thread
                           CPU time than this is slow (KALLOC_THP=3 backs off) */
    OPT_HUGETLB,        /* KALLOC_HUGETLB=1: map zones from reserved hugetlbfs pages when there are some,
                         * keeping as many unreserved as in use (a forked child's copies); 2: all of them */
    OPT_VERBOSE,        /* KALLOC_VERBOSE=1: warnings for unusual events (mmap failures) */
    OPT_LIFETIME,       /* KALLOC_LIFETIME=1: slabs of size classes learned to be long-lived
                           go to MIGRATE_LONGLIVED pageblocks (default 0: measured, not applied) */
    OPT_SLAB_HOLES,     /* KALLOC_SLAB_HOLES=0: never give back pages of slabs still in use
                           (default 1: mm/slub.cc, slab holes) */
    OPT_MESH,           /* KALLOC_MESH=1: zones backed by a memory file, and half-empty slabs of
                           a size class merged onto one physical page (mm/mesh.h), as frees
                           and timed passes find them; 2: only from kalloc_compact and
                           malloc_trim(0); default 0 */
    OPT_DYNAMIC_CLASSES,/* KALLOC_DYNAMIC_CLASSES=0: only the fixed size classes (default 1:
                           up to 8 classes made at run time for hot sizes, mm/slab_dynamic.h) */
    OPT_PERCPU_SHEAVES, /* KALLOC_PERCPU_SHEAVES=0: no per-CPU object arrays for the threads beyond
                           4 per CPU (default 1 where rseq works: mm/percpu_sheaves.h) */
    OPT_RESIDENCY,      /* KALLOC_RESIDENCY=0: watermarks count every page of a free block as
                           resident, never reading which pages are (default 1: mincore at
                           watermark reclaim, mm/vmscan.h "Residency") */
    OPT_TRUST_SECCOMP,  /* KALLOC_TRUST_SECCOMP=1: the process's seccomp filter allows mincore and
                         * membarrier (Docker's default profile does): use them under one */
    OPT_TRACE_VMSCAN,   /* KALLOC_TRACE_VMSCAN=N: keep the last N (at most VMSCAN_TRACE_MAX)
                           reclaim passes' zone states, printed at exit (mm/vmscan.h, trace) */
    OPT_FAULT_AROUND,   /* KALLOC_FAULT_AROUND=0: never fault a large block in when it is handed
                           out (default 1: while probes show the program touches its large
                           blocks whole, malloc/large.h) */
    OPT_COUNT
};

struct option_desc {
    const char *name;   /* environment variable without the KALLOC_ prefix */
    long value;         /* current value (default until read) */
    const char *help;   /* one line for documentation */
};

extern option_desc options[OPT_COUNT];

/* KALLOC_STATS_FILE=path: the exit report (KALLOC_STATS, KALLOC_TRACE_VMSCAN)
 * goes to that file, appended, instead of stderr, and is made even without
 * KALLOC_STATS; "%p" in it stands for the process id.  For programs that
 * close stderr before they exit (coreutils' sort and tar, xz), whose report
 * was lost, and for process trees (one file each).  Points into environ
 * (null: not set; never set under AT_SECURE). */
extern const char *option_stats_file;

/* Scan environ (idempotent; cheap once done). */
void options_init();

/* Whether the process runs under valgrind (LD_PRELOAD names its
 * vgpreload_*.so, seen by the scan): system calls valgrind does not know are
 * left alone (platform/os.cc). */
extern bool options_valgrind;   /* set by the scan */
static inline bool options_under_valgrind() { return options_valgrind; }

/* Whether the valgrind tool replaces malloc & co. (memcheck, helgrind, drd,
 * massif, dhat: a vgpreload_<tool>.so beside valgrind's core one): it
 * redirects them by code address (preload/override.cc).  Not under
 * callgrind or cachegrind, which then count kalloc's own paths. */
extern bool options_valgrind_malloc;    /* set by the scan */
static inline bool options_valgrind_replaces_malloc() { return options_valgrind_malloc; }

static inline long option_get(option_id id) { return options[id].value; }

} // namespace kalloc
