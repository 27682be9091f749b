/*
 * mm/vmscan.cc - watermarks, decay and kswapd (see vmscan.h).
 *
 * Lock order: vmscan_lock -> per_cpu_pages.lock -> zone.lock.
 */
#include "mm/vmscan.h"

#include <unistd.h>

#include "mm/khugepaged.h"
#include "mm/mesh.h"
#include "mm/page_alloc.h"
#include "mm/percpu_sheaves.h"
#include "mm/slab.h"
#include "mm/vmalloc.h"
#include "platform/cgroup.h"
#include "platform/kthread.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/printk.h"
#include "mm/per_cpu_pages.h"
#include "platform/timekeeping.h"

namespace kalloc {

reclaim_stats vm_reclaim_stats;
uint32_t vmscan_clock_skew;
int vmscan_pending;
int rounds_retaining;   /* some zone keeps free memory across a round's drop (wmark_rounds) */
long thread_rounds_pages;   /* pages threads in rounds will take back (vmscan_thread_rounds_add) */
uint32_t thread_rounds_time; /* the last round of a thread in a streak (vmscan_thread_round_seen) */
int rss_check_due;      /* the next pass reads the RSS for round retention's guard */
size_t rss_growth_pending; /* bytes mapped or faulted in under round retention since the
                            * last RSS read, not all in the RSS yet (the guard adds them) */
uint32_t vmscan_next_tick;
int kswapd_start_pending;
int kswapd_idle;
void (*vmscan_tcache_decay_hook)(uint32_t now);

namespace {

spinlock_t vmscan_lock = SPINLOCK_INIT;  /* one reclaim pass at a time (see vmscan.h) */
bool vmscan_inited;                      /* vmscan_init ran */
cgroup_limits cg_limits;                 /* the process's cgroup limits, once cg_limits_state is CG_READ */
/* CG_*: cg_limits is read at its first use (cg_limits_get), not at start-up:
 * the dozen files of a cgroup v1 hierarchy cost a `cat` ~130 us of its
 * ~500 us under kalloc on this VM, and nothing uses the limits before the
 * first timed pass (update_cgroup_pressure) or the statistics. */
enum { CG_UNREAD, CG_READING, CG_READ };
int cg_limits_state;
uint64_t cg_limit_override;              /* tests: a limit instead of the cgroup's (bytes) */
unsigned cg_pressure;                    /* 0 .. 1024, recomputed by timed passes */
unsigned long last_timed_work = 1;       /* pages the last timed pass gave back */

/* kswapd */
enum { KSWAPD_OFF, KSWAPD_STARTING, KSWAPD_RUNNING };
int kswapd_state;               /* KSWAPD_* */
int kswapd_wanted;              /* asked for (option or kalloc_background) */
unsigned kswapd_gen;            /* the running thread's generation; bumped to stop it */
int kswapd_wait_word;           /* futex: 0 sleeping, 1 woken */
/* KALLOC_BACKGROUND=1 starts the thread only in a process that has a thread
 * of its own already (process_single_threaded, platform/kthread.h: a
 * single-threaded program stays one); 2 and kalloc_background(1) start it
 * in any process. */
int kswapd_needs_threads;       /* the start waits for the program's first thread */
int kswapd_deferred;            /* a start found the process single-threaded: the timed hooks look again */

inline void stat_add(unsigned long &c, unsigned long v) { __atomic_fetch_add(&c, v, __ATOMIC_RELAXED); }

/* Round retention's RSS guard (see __setup_zone_wmarks): the free memory
 * kept across a round's drop must not raise the process's RSS high-water
 * mark.  While it is kept, and the process grows by other memory (blocks
 * taken from given-back memory, fresh huge mappings: rss_growth_pending,
 * counted whole as they may all be touched), the RSS is read (VmRSS and
 * VmHWM of /proc/self/status: 3 system calls, once per pass at most); if the RSS plus that
 * growth comes within RSS_GUARD_SLACK of the mark, the zone's round
 * retention stops until its next round, and the pass gives the kept memory
 * back. */
struct rss_guard {
    size_t growth;      /* rss_growth_pending when the pass started */
    bool read;          /* read in this pass */
    bool at_peak;       /* RSS plus growth within the slack of its high-water mark */
};

/* The RSS at the guard's last reading (bytes; 0: none yet).  Written by
 * passes under vmscan_lock, read racily by nobody else. */
uint64_t rss_guard_last;

/* Growth the allocator counted (rss_growth_pending) is what raises the mark.
 * Without it (a timed pass), an RSS at its mark is no reason to give the kept
 * memory back: kept memory is resident already, and a zone keeping it at a
 * round's peak is at the mark by design (with every timed pass blocking
 * there, a round that ran longer than a pass interval lost its retention:
 * Reclaim.RoundsKeepWhatTheNextRoundTakesBack failed on a loaded machine).
 * What a timed pass can see is growth nobody counted (pages in use touched
 * later, memory outside the allocator): a rise of the RSS since the last
 * reading, by more than the slack. */
bool rss_guard_at_peak(rss_guard *g)
{
    if (!g->read) {
        g->read = true;
        uint64_t rss, hwm;
        os_resident_and_peak(&rss, &hwm);
        uint64_t slack = hwm / 64 > RSS_GUARD_SLACK ? hwm / 64 : RSS_GUARD_SLACK;
        uint64_t last = rss_guard_last;
        rss_guard_last = rss;
        bool growing = g->growth || (last && rss > last + slack);
        g->at_peak = !rss || !hwm || (growing && rss + g->growth + slack >= hwm);
        stat_add(vm_reclaim_stats.rss_checks, 1);
    }
    return g->at_peak;
}

/* Timed passes run every decay period / 4 (250 ms by default). */
uint32_t tick_period()
{
    long d = option_get(OPT_DECAY_MS);
    if (d <= 0)
        return 250;
    return d / 4 < 10 ? 10 : (uint32_t)(d / 4);
}

void update_cgroup_pressure()
{
    uint64_t limit = vmscan_cgroup_limit();
    unsigned p = 0;
    if (limit) {
        uint64_t rss = os_resident_bytes();
        uint64_t ratio = rss * 1024 / limit;          /* 1024 = at the limit */
        constexpr uint64_t start = 768, full = 922;   /* 75% .. 90% of the limit */
        if (ratio >= full)
            p = 1024;
        else if (ratio > start)
            p = (unsigned)((ratio - start) * 1024 / (full - start));
        if (p)
            stat_add(vm_reclaim_stats.cgroup_pressure, 1);
    }
    WRITE_ONCE(cg_pressure, p);
}

} // namespace

uint32_t vmscan_now() { return (uint32_t)ktime_get_coarse_ms() + READ_ONCE(vmscan_clock_skew); }

/* ---------------------------------------------------------------------------
 * Watermarks
 * ------------------------------------------------------------------------- */

/* The low watermark before any refault: 1 MiB, or half of what is in use
 * when that is less (a heap under 2 MiB). */
constexpr unsigned long WMARK_LOW_MIN_PAGES = (1ul << 20) >> PAGE_SHIFT;
constexpr unsigned WMARK_LOW_MIN_SHIFT = 1;

void __setup_zone_wmarks(zone *z)
{
    constexpr unsigned long floor = WMARK_SMALL_HEAP_PAGES;       /* 4 MiB */
    constexpr unsigned long ceiling = (32ul << 20) >> PAGE_SHIFT;  /* 32 MiB */
    unsigned long low;
    unsigned long boosted = 0;     /* of low, the part above the cap the boost allowed */
    unsigned long in_use = z->spanned_pages - z->nr_free_pages;
    long fixed = option_get(OPT_FREE_HIGH);
    if (fixed > 0) {
        low = (unsigned long)fixed >> PAGE_SHIFT;
    } else {
        /* A thirty-second of what is in use (4..32 MiB).  Free resident
         * memory at the peak is RSS the program does not use: at
         * frag-churn's peak (the 8 KiB .. 256 KiB phase growing while the
         * earlier phases' free pages sit in small blocks of slab
         * pageblocks) a quarter kept 26 MiB free and resident; an eighth
         * took its peak RSS from 172.3 to 164.2 MiB (5 runs, medians) for
         * 4.5% more minor faults and the same CPU time; a thirty-second
         * from 168.4 to 160.6 MiB (5 runs; user 2.80 -> 2.55 s, system
         * 0.44 -> 0.49 s, faults 130K -> 128K: within their spread), and
         * 0.4-1.1 MiB less on idle-drift, python3 and g++.  (The kernel's
         * min_free_kbytes grows with the square root of memory: 1.4 MiB
         * for 128 MiB.)  (In 2026-11, before the workingset and slab holes,
         * an eighth cost frag-churn 1.79 s against 1.51.) */
        unsigned long cap = in_use / 32;
        if (cap < floor)
            cap = floor;
        /* At least twice the largest block the program was seen to take
         * back (glibc's trim threshold is twice its mmap threshold, which
         * follows the largest block freed): with one block as large as the
         * level, freeing it crossed `low` and the pass gave it back, past
         * `high`, and the next allocation faulted it in again.  jq's join
         * (a 13 MiB heap cycling a 4 MiB string) fell into that loop in
         * runs slowed by load: 17K passes, each giving back the block,
         * 17.6M pages refaulted, the run 6.0 -> 10.4-11.3 s. */
        if (cap < 2 * z->workingset_block)
            cap = 2 * z->workingset_block;
        if (cap > ceiling)
            cap = ceiling;
        /* Past the ceiling while the zone thrashes (watermark_boost, set by
         * __zone_thrash_check): free memory given back is taken back many
         * times the use a second, so the pages a pass gives back are
         * faulted in again at once. */
        cap += z->watermark_boost;
        /* Up to that, only as much as the program has been seen to reuse
         * (refaults: z->workingset): a program that frees memory and never
         * takes it back keeps little, whatever it used before. */
        low = z->workingset;
        /* The floor, before refaults: 1 MiB, but no more than half of what
         * is in use.  A heap of ~1.2 MiB in use (realloc-string) kept 1 MiB
         * free and resident beside it; with half (and refaults counted only
         * when resident memory was short, __workingset_refault) its peak
         * went 6.23 -> 5.90 MiB (glibc 5.21; 9 runs, medians) for 6.0K ->
         * 12.2K faults and +0.03 s of system time; a quarter gave 5.67 MiB
         * but 24K faults and +0.07 s (5% of its CPU time). */
        unsigned long floor_min = in_use >> WMARK_LOW_MIN_SHIFT;
        if (floor_min > WMARK_LOW_MIN_PAGES)
            floor_min = WMARK_LOW_MIN_PAGES;
        if (low < floor_min)
            low = floor_min;
        if (low > cap)
            low = cap;
        const unsigned long unboosted = cap - z->watermark_boost;
        if (low > unboosted)
            boosted = low - unboosted;
    }
    /* The band between the marks: a quarter of the usual level, the boost
     * left out.  A band that grew with it made each pass over a round's
     * retained memory give back a quarter of the boost more than the
     * retention keeps: rounds of 64 MiB on a loaded machine (where the
     * first rounds' refaults came fast enough to boost) refaulted up to
     * 4.7K pages a round where they refaulted none. */
    unsigned long band = (low - boosted) / 4;
    /* Retention: in a heap whose use moves within a quarter of its recent
     * peak, free memory the program takes back (the workingset) is kept
     * resident up to the room under that peak, so the resident memory the
     * zone counts never rises above what the peak held (use_peak plus the
     * band); see vmscan.h.  A larger drop (a spike's end) gets the usual
     * level, unless the zone is in rounds (below): bounded by the zone's
     * sum alone, retention across drops raised python3's and redis-expiry's
     * peaks by 1.6 and 3.5 MiB (in-use pages a program never touched count
     * as resident here, so that bound is not one on RSS); rounds have the
     * RSS guard. */
    unsigned long retained = 0;
    bool beyond_peak = false;   /* keeps more than the room under the zone's peak */
    /* Steady: the use within a quarter of its recent peak
     * (ROUNDS_DROP_SHIFT).  Below that, a drop: a round if the use comes
     * back within an eighth (__zone_use_rises).  The gap between the drop's
     * mark and the round's keeps a use that wanders around one of them from
     * counting a round at every pass.  Until session 47 steady meant within
     * an eighth of the use itself (8/9 of the peak), above the round's 7/8:
     * kv-ttl's expiry moved its use by ~1% around those marks and counted a
     * round every 0-4 ms (20 in 40 ms), which then kept its spike's
     * workingset across the spike's end into its calm and idle phases once
     * a proactive compaction no longer reset the rounds (zone_reclaim_all);
     * random-sizes, whose use churns at 85-89% of its peak, had its
     * retention from such rounds (with steady at 7/8 it faulted 8% more). */
    bool steady = in_use >= z->use_peak - (z->use_peak >> ROUNDS_DROP_SHIFT);
    if (!steady)
        z->use_dropped = 1;         /* a large drop: a round if the use comes back */
    /* Rounds: a program whose use came back near its peak after a large
     * drop (recently: ROUNDS_WINDOW_MS) keeps the workingset across the next
     * drop too, under the RSS guard (rss_guard_at_peak): its next round takes
     * back what the last one freed (mimalloc-bench's mstress refaulted its
     * rounds' memory, 1.3 M faults a run). */
    const uint32_t now = vmscan_now();
    bool rounds = !steady && z->round_time && !z->rounds_blocked &&
                  z->round_streak >= ROUNDS_MIN_STREAK &&
                  (uint32_t)(now - z->round_time) < ROUNDS_WINDOW_MS;
    /* Threads in rounds out of step (thread-rounds): the zone's use stays
     * near its peak, so the room under it is small, while each thread's
     * frees are what the next round (its own or another thread's) takes
     * back: the room grows by what those threads are below their peaks
     * (while some thread's round is recent), not under the RSS guard (it
     * tripped at such rounds' peak, where the RSS is at its mark by
     * design, and stopped the zone's own rounds with them). */
    long tr = READ_ONCE(thread_rounds_pages);
    uint32_t trt = READ_ONCE(thread_rounds_time);
    unsigned long extra =
        tr > 0 && trt && (uint32_t)(now - trt) < ROUNDS_WINDOW_MS ? (unsigned long)tr : 0;
    /* The room under the peak counts only where the zone's own rules keep
     * it (a steady heap, or recent rounds the guard did not stop). */
    unsigned long under = (steady || rounds) && z->use_peak > in_use ? z->use_peak - in_use : 0;
    if (fixed <= 0 && (under || extra)) {
        unsigned long room = under + extra;
        /* At most the workingset (memory seen refaulting), shares or not:
         * counting the shares as workingset took thread-rounds from 52K to
         * 45K faults (11 runs, peak RSS level) and the round test's peak
         * from 295.2 to 298.2 MB (9 runs, faults level), and left the
         * shares as their only bound. */
        unsigned long keep = z->workingset < room ? z->workingset : room;
        if (keep > low) {
            retained = keep - low;
            low = keep;
            beyond_peak = keep > under;
        }
    }
    z->wmark_retained = retained;
    z->wmark_rounds = retained && !steady && !beyond_peak;
    if (z->wmark_rounds && !READ_ONCE(rounds_retaining))
        WRITE_ONCE(rounds_retaining, 1);
    unsigned p = READ_ONCE(cg_pressure);
    low = low * (1024 - p) / 1024;
    band = band * (1024 - p) / 1024;
    /* Free memory reclaim must leave in whole hugepages does not count:
     * else every free above the mark would run a pass that finds only it. */
    unsigned long kept = z->nr_thp_kept;
    z->_watermark[WMARK_LOW] = low + kept;
    z->_watermark[WMARK_HIGH] = low - band + kept;
    z->_watermark[WMARK_MIN] = low + band + kept;
}

/* See vmscan.h (Thrashing). */
void __zone_thrash_check(zone *z, uint32_t cpu_ms, unsigned long use)
{
    unsigned long refaults = z->nr_refault - z->refault_snap;
    uint32_t dt = z->refault_snap_time ? cpu_ms - z->refault_snap_time : 0;
    /* Refaults a CPU second, against the use and an absolute floor; a window
     * counts once it is THRASH_WINDOW_MS long (frag-churn's phase changes
     * take back 10 times its use a second for 100 ms), or earlier once it
     * has seen a whole window's worth at that rate. */
    unsigned long rate = (unsigned long)THRASH_REFAULT_RATIO * use;
    if (rate < THRASH_MIN_RATE)
        rate = THRASH_MIN_RATE;
    if (z->refault_snap_time && dt < THRASH_WINDOW_MS && refaults * 1000 < rate * THRASH_WINDOW_MS)
        return;     /* too soon for a rate */
    z->refault_snap = z->nr_refault;
    z->refault_snap_time = cpu_ms ? cpu_ms : 1;
    if (!dt || dt > 1000u * 60)
        return;     /* the first pass, or a clock gone wrong: no rate to read */
    bool thrashing = refaults * 1000 >= rate * (dt > THRASH_WINDOW_MS ? dt : THRASH_WINDOW_MS);
    if (thrashing) {
        unsigned long boost = z->watermark_boost ? 2 * z->watermark_boost : use >> THRASH_BOOST_SHIFT;
        unsigned long max = use >> THRASH_BOOST_MAX_SHIFT;
        z->watermark_boost = boost < max ? boost : max;
        stat_add(vm_reclaim_stats.thrash_boosts, 1);
    } else {
        /* Slowly: a boost that stopped the refaults sees calm windows
         * while it is still needed (the workingset, which low follows,
         * decays on its own once the program stops taking memory back). */
        uint32_t t = dt < THRASH_BOOST_DECAY_MS ? dt : THRASH_BOOST_DECAY_MS;
        z->watermark_boost -= (z->watermark_boost * t + THRASH_BOOST_DECAY_MS - 1) / THRASH_BOOST_DECAY_MS;
    }
}

void vmscan_note_growth(size_t bytes)
{
    /* Whether some zone keeps memory across a drop is only known once its
     * watermarks are set again: the next pass sets them, then checks. */
    if (READ_ONCE(rounds_retaining) || READ_ONCE(vmscan_pending)) {
        __atomic_fetch_add(&rss_growth_pending, bytes, __ATOMIC_RELAXED);
        WRITE_ONCE(rss_check_due, 1);
        WRITE_ONCE(vmscan_pending, 1);
    }
}

void __zone_round(zone *z)
{
    uint32_t now = vmscan_now();
    bool recent = z->round_time && (uint32_t)(now - z->round_time) < ROUNDS_WINDOW_MS;
    z->round_streak = !recent ? 1 : z->round_streak < 255 ? z->round_streak + 1 : 255;
    z->use_dropped = 0;
    z->rounds_blocked = 0;
    z->round_time = now ? now : 1;
}

void __zone_retention_check(zone *z, unsigned long pages)
{
    /* Round retention: every RETENTION_RSS_CHECK_PAGES faulted in, the next
     * pass reads the process's RSS (not under this lock: rss_guard_at_peak). */
    if (z->wmark_rounds) {
        z->retention_faulted += pages;
        if (z->retention_faulted >= RETENTION_RSS_CHECK_PAGES) {
            __atomic_fetch_add(&rss_growth_pending, z->retention_faulted << PAGE_SHIFT, __ATOMIC_RELAXED);
            z->retention_faulted = 0;
            WRITE_ONCE(rss_check_due, 1);
            WRITE_ONCE(vmscan_pending, 1);
        }
    }
    __setup_zone_wmarks(z);
    unsigned long seen = zone_free_resident_seen(z), low = z->_watermark[WMARK_LOW];
    if (seen > low && z->nr_free_lru && !READ_ONCE(vmscan_pending) && !zone_pass_futile(z, seen, low)) {
        WRITE_ONCE(vmscan_pending, 1);
        vm_reclaim_stats.wmark_low_hits++;
    }
}

/* ---------------------------------------------------------------------------
 * Reclaim
 * ------------------------------------------------------------------------- */

/* After a watermark pass over z that met `seen` (z->lock held). */
static void __zone_note_pass(zone *z, const scan_control &sc, unsigned long seen, uint32_t now)
{
    if (sc.nr_read && !sc.nr_reclaimed && !sc.nr_decayed) {
        z->futile_seen = seen;
        z->futile_until = (now + VMSCAN_FUTILE_MS) | 1;
    } else {
        z->futile_until = 0;
    }
}

/* Whether the calling thread runs under a seccomp filter: then this pass
 * makes no call glibc's malloc never makes (mincore, process_madvise: a
 * sandbox allowing what glibc's malloc calls may kill the process on them).
 * Asked once per pass that wants it, from the calling thread's status (a
 * filter can be installed at any time, by any thread, and only applies to
 * it; os_seccomp_filtered remembers one it has seen). */
static bool sc_filtered(scan_control *sc)
{
    if (sc->filtered == 0)
        sc->filtered = os_seccomp_filtered() ? 1 : -1;
    return sc->filtered > 0;
}

/* Whether this pass may read residency with mincore. */
static bool residency_allowed(scan_control *sc)
{
    if (sc->residency == 0)
        sc->residency = option_get(OPT_RESIDENCY) != 0 && !sc_filtered(sc) ? 1 : -1;
    return sc->residency > 0;
}

/* Whether a pass gives a batch of n blocks back with one call
 * (os_decommit_many: a kernel that takes it, and no seccomp filter, asked
 * as for residency, or for the batch where worth it:
 * os_decommit_worth_asking). */
static bool batch_allowed(scan_control *sc, unsigned n)
{
    return n > 1 && os_decommit_batches() && (sc->filtered || os_decommit_worth_asking(n)) &&
           !sc_filtered(sc);
}

/* Give an isolated batch's ranges back (no lock held), with one call where
 * batch_allowed. */
static void decommit_batch(zone *z, scan_control *sc, const os_range *r, unsigned n)
{
    if (zone_decommit_many(z, r, n, batch_allowed(sc, n))) {
        stat_add(vm_reclaim_stats.madvise_batches, 1);
        stat_add(vm_reclaim_stats.madvise_batched_ranges, n);
    }
}

/* The free lists' small blocks (orders below VMSCAN_MIN_ORDER are not on
 * free_lru): when the age list ran out with free resident memory still
 * over the target, take resident order-1 then order-0 blocks from the
 * heads of the free lists, at most VMSCAN_SMALL_MAX pages per call.  Such
 * blocks are what is left between slab pages that stay allocated (a
 * thousand sleeping threads' cached objects keep one or two objects in most
 * slabs: 105 MiB of order-0/1 fragments resident, all else given back).  A
 * program that takes them again refaults, which raises the workingset and
 * with it the watermark, so a churning heap stops paying for them.  Each is
 * its own madvise call: bounded per call, as the kernel bounds a direct
 * reclaim's batch.  Returns the resident pages its first walk left in whole
 * hugepages (kept, as shrink_zone's: they must not hold the watermark
 * pass after pass).  Caller holds vmscan_lock, not z->lock. */
static unsigned long shrink_zone_small(zone *z, scan_control *sc)
{
    page *batch[VMSCAN_BATCH];
    unsigned long done = 0, kept = 0;
    for (bool first = true; done < VMSCAN_SMALL_MAX; first = false) {
        unsigned n = 0;
        unsigned order[VMSCAN_BATCH];
        spin_lock(&z->lock);
        unsigned long resident = z->nr_free_resident;
        for (unsigned o = VMSCAN_MIN_ORDER; o-- > 0 && n < VMSCAN_BATCH && resident > sc->target;) {
            for (list_head &l : z->free_area[o].free_list) {
                for (list_head *e = l.next; e != &l && n < VMSCAN_BATCH && resident > sc->target;) {
                    page *pg = list_entry(e, page, lru);
                    if (pg->flags & PG_reported)
                        break;                  /* resident blocks are at the head */
                    e = e->next;
                    unsigned long pfn = page_to_pfn(pg);
                    if (z->nr_hugetlb_pages && (z->pageblock_thp[pfn >> pageblock_order] & PB_HUGETLB))
                        continue;
                    if (khugepaged_keep_resident(z, pfn, o) || khugepaged_pageblock_filling(z, pfn)) {
                        if (first)
                            kept += pg->nr_resident;
                        continue;               /* giving it back splits a hugepage */
                    }
                    resident -= pg->nr_resident;
                    __isolate_free_block(z, pg);
                    order[n] = o;
                    batch[n++] = pg;
                }
            }
        }
        spin_unlock(&z->lock);
        if (!n)
            break;
        os_range ranges[VMSCAN_BATCH];
        for (unsigned i = 0; i < n; i++)
            ranges[i] = {page_address(batch[i]), PAGE_SIZE << order[i]};
        decommit_batch(z, sc, ranges, n);
        for (unsigned i = 0; i < n; i++)
            khugepaged_note_reclaim(z, page_to_pfn(batch[i]), order[i]);
        spin_lock(&z->lock);
        for (unsigned i = 0; i < n; i++) {
            sc->nr_reclaimed += batch[i]->nr_resident;
            __putback_reported_block(z, batch[i], order[i]);
            done += 1ul << order[i];
        }
        spin_unlock(&z->lock);
        stat_add(vm_reclaim_stats.pgscan, n);
    }
    if (done)
        stat_add(vm_reclaim_stats.pgreclaim_small, done);
    return kept;
}

/* Residency (vmscan.h): read how many pages of the free blocks near the
 * age list's head are really resident, so the watermarks count pages the
 * program touched, not the blocks' sizes.  Blocks found untouched are given
 * back at once (madvise: a swapped-out page is not resident either, and must
 * read as zero once reported) without counting as a refault when taken
 * again; the others stay, with their count exact (PG_scanned).  Called when
 * free resident memory is over the target; reads every unread block it
 * finds, up to VMSCAN_RESIDENCY_MAX (not only down to the target: a block
 * left unread would push the zone over again at the next free, and a pass
 * costs more than a read).  Caller holds vmscan_lock, not z->lock. */
static void shrink_zone_residency(zone *z, scan_control *sc)
{
    page *batch[VMSCAN_BATCH];
    uint32_t resident[VMSCAN_BATCH];
    unsigned long read = 0, untouched = 0, uncounted = 0, counted = 0;
    while (read < VMSCAN_RESIDENCY_MAX) {
        unsigned n = 0;
        spin_lock(&z->lock);
        /* Unread blocks are the newest (freed or split since the last
         * pass): from the head; blocks read go back to the head too, so the
         * walk looks past those read in this call. */
        unsigned walk = (unsigned)read + 4 * VMSCAN_BATCH;
        for (page *pg = free_lru_first(z); pg && n < VMSCAN_BATCH && walk--;) {
            page *next = free_lru_next(z, pg);
            if (!(pg->flags & PG_scanned) && pg->nr_resident > 1 &&
                !khugepaged_pageblock_filling(z, page_to_pfn(pg))) {   /* resident: huge */
                __isolate_free_block(z, pg);
                batch[n++] = pg;
            }
            pg = next;
        }
        spin_unlock(&z->lock);
        if (!n)
            break;
        os_range none[VMSCAN_BATCH];     /* blocks found with no resident page */
        unsigned nr_none = 0;
        for (unsigned i = 0; i < n; i++) {
            unsigned long pages = 1ul << batch[i]->order;
            long r = os_resident_pages(page_address(batch[i]), pages);
            if (r < 0) {
                r = (long)batch[i]->nr_resident;   /* unknown: as counted */
                sc->residency = -1;
            } else if (r == 0) {
                none[nr_none++] = {page_address(batch[i]), PAGE_SIZE << batch[i]->order};
                untouched += pages;
            } else {
                /* What keeping it costs: its resident pages and the pages
                 * of its descriptors (they go with it once reported): a
                 * 4 MiB block with 3 pages touched holds 15. */
                r += (long)block_descriptor_pages(batch[i], batch[i]->order);
                if (r > (long)pages)
                    r = (long)pages;
            }
            counted += batch[i]->nr_resident;
            if ((unsigned long)r < batch[i]->nr_resident)
                uncounted += batch[i]->nr_resident - (unsigned long)r;
            resident[i] = (uint32_t)r;
        }
        /* Given back before they go back on the lists as reported (they must
         * read as zero: a swapped-out page is not resident either), with one
         * call where batch_allowed (one each, before: 0.77M madvise calls in
         * jq's join). */
        if (nr_none) {
            decommit_batch(z, sc, none, nr_none);
            for (unsigned i = 0; i < n; i++)
                if (!resident[i])
                    khugepaged_note_reclaim(z, page_to_pfn(batch[i]), batch[i]->order);
        }
        spin_lock(&z->lock);
        for (unsigned i = 0; i < n; i++)
            __putback_scanned_block(z, batch[i], batch[i]->order, resident[i]);
        spin_unlock(&z->lock);
        read += n;
        if (sc->residency < 0)
            break;
    }
    /* What the reads found phantom, for the watermark check's discount
     * (zone_free_resident_seen).  Reads that failed found nothing. */
    if (counted >= PHANTOM_MIN_SAMPLE && sc->residency > 0) {
        unsigned long found = (uncounted << PHANTOM_SHIFT) / counted;
        spin_lock(&z->lock);
        long ratio = z->phantom_ratio;
        ratio += ((long)found - ratio) >> PHANTOM_LEARN_SHIFT;
        z->phantom_ratio = (uint16_t)(ratio < 0 ? 0 : ratio > (long)PHANTOM_ONE ? PHANTOM_ONE : ratio);
        spin_unlock(&z->lock);
    }
    sc->nr_read += (unsigned)read;
    sc->nr_counted += counted;
    sc->nr_uncounted += uncounted;
    sc->nr_untouched += untouched;
    stat_add(vm_reclaim_stats.residency_reads, read);
    stat_add(vm_reclaim_stats.residency_untouched, untouched);
    stat_add(vm_reclaim_stats.residency_uncounted, uncounted);
}

void shrink_zone(zone *z, scan_control *sc)
{
    struct victim {
        page *pg;          /* isolated block head */
        unsigned order;    /* its order */
        bool decayed;      /* taken for its age, not for the watermark */
    } batch[VMSCAN_BATCH];
    unsigned long kept = 0;        /* pages left resident in hugepages (rotated to the head) */
    /* The pageblocks of the blocks kept, to ask after the lock is dropped
     * whether they are underused (khugepaged_split_underused); asked once
     * per call, and the scan runs again if one was split. */
    unsigned long underused[VMSCAN_UNDERUSED_CHECK];
    unsigned nr_underused = 0;
    bool underused_checked = false;
    if (z->backing != ZONE_BACKING_ANON && sc_filtered(sc))
        zone_memfd_sandbox_check(false);   /* no MADV_REMOVE under a filter */
    if (sc->target != ~0ul && READ_ONCE(z->nr_free_resident) > sc->target) {
        if (residency_allowed(sc)) {
            shrink_zone_residency(z, sc);
        } else if (READ_ONCE(z->phantom_ratio)) {
            /* No reads (a seccomp filter since): no discount they cannot correct. */
            spin_lock(&z->lock);
            z->phantom_ratio = 0;
            spin_unlock(&z->lock);
        }
    }
again:
    for (unsigned rounds = 0; rounds < 4096; rounds++) {
        unsigned n = 0;
        spin_lock(&z->lock);
        unsigned long resident = z->nr_free_resident;
        while (n < VMSCAN_BATCH && !free_lru_empty(z) && kept < z->nr_free_lru) {
            page *pg = free_lru_last(z);
            bool over = resident > sc->target;
            int32_t age = (int32_t)(sc->now - pg->free_time);
            bool old = sc->decay_age != UINT32_MAX && age >= 0 && (uint32_t)age >= sc->decay_age;
            if (!over && !old)
                break;       /* the tail is the coldest: nothing older behind it */
            unsigned order = pg->order;
            /* A hugepage being filled keeps its rest; a whole one under
             * half free keeps its pieces (giving one back splits it). */
            bool filling = !old && khugepaged_pageblock_filling(z, page_to_pfn(pg));
            if (filling || (!old && khugepaged_keep_resident(z, page_to_pfn(pg), order))) {
                free_lru_del(z, pg);
                free_lru_add(z, pg);
                kept += 1ul << order;
                unsigned long pb = page_to_pfn(pg) >> pageblock_order;
                if (!filling && !underused_checked && nr_underused < VMSCAN_UNDERUSED_CHECK) {
                    unsigned k = 0;
                    while (k < nr_underused && underused[k] != pb)
                        k++;
                    if (k == nr_underused)
                        underused[nr_underused++] = pb;
                }
                continue;
            }
            resident -= pg->nr_resident;
            __isolate_free_block(z, pg);
            batch[n++] = {pg, order, !over};
            sc->nr_blocks++;
            if (order > sc->max_order)
                sc->max_order = order;
        }
        spin_unlock(&z->lock);
        if (!n)
            break;
        os_range ranges[VMSCAN_BATCH];
        for (unsigned i = 0; i < n; i++)
            ranges[i] = {page_address(batch[i].pg), PAGE_SIZE << batch[i].order};
        decommit_batch(z, sc, ranges, n);
        for (unsigned i = 0; i < n; i++)
            khugepaged_note_reclaim(z, page_to_pfn(batch[i].pg), batch[i].order);
        spin_lock(&z->lock);
        for (unsigned i = 0; i < n; i++) {
            if (batch[i].decayed)
                sc->nr_decayed += batch[i].pg->nr_resident;
            else
                sc->nr_reclaimed += batch[i].pg->nr_resident;
            __putback_reported_block(z, batch[i].pg, batch[i].order);
        }
        spin_unlock(&z->lock);
        stat_add(vm_reclaim_stats.pgscan, n);
    }
    /* Kept for their hugepage, but a hugepage that is mostly free objects
     * in slabs (which the free lists do not show) is split, as the kernel
     * splits underused hugepages (deferred_split_scan), and the scan runs
     * again to give back its free blocks. */
    if (nr_underused && !underused_checked) {
        underused_checked = true;
        unsigned split = 0;
        for (unsigned k = 0; k < nr_underused; k++)
            split += khugepaged_split_underused(z, underused[k]);
        if (split) {
            kept = 0;
            goto again;
        }
    }
    unsigned long kept_small = 0;
    if (sc->target != ~0ul && READ_ONCE(z->nr_free_resident) > sc->target)
        kept_small = shrink_zone_small(z, sc);
    if (sc->target != ~0ul && (kept || kept_small || z->nr_thp_kept)) {
        spin_lock(&z->lock);
        /* A block met again after the list wrapped was counted twice. */
        if (kept > z->nr_free_lru)
            kept = z->nr_free_lru;
        kept += kept_small;
        /* What this pass met, not the most ever met: hugepages split or
         * taken since then no longer hold the watermark up (a freed burst
         * kept 4.6 MiB free and resident behind a stale count). */
        z->nr_thp_kept = kept;
        __setup_zone_wmarks(z);
        spin_unlock(&z->lock);
    }
}

/* ---------------------------------------------------------------------------
 * The reclaim trace (KALLOC_TRACE_VMSCAN, see vmscan.h)
 * ------------------------------------------------------------------------- */

struct vmscan_trace_entry {
    uint32_t now;              /* the pass's clock (vmscan_now, ms) */
    uint16_t zone;             /* zone id */
    uint8_t timed;             /* a timed pass (decay) */
    uint8_t over;              /* the zone was over WMARK_LOW (as seen) */
    uint32_t in_use;           /* pages in use */
    uint32_t use_peak;         /* recent peak of pages in use */
    uint32_t workingset;       /* pages taken back recently */
    uint32_t workingset_block; /* the largest of those refaults */
    uint32_t low, high;        /* watermarks */
    uint32_t resident;         /* free resident pages counted (upper bounds) */
    uint32_t seen;             /* the same, less the phantom discount */
    uint32_t unread;           /* counts of the unread blocks on the age list */
    uint32_t retained;         /* how far retention holds low above its usual level */
    uint32_t boost;            /* watermark_boost (thrashing) */
    uint32_t refaulted;        /* nr_refault, ever (low 32 bits) */
    uint16_t phantom_ratio;    /* /1024 */
    uint8_t round_streak;      /* rounds in a row */
    uint8_t rounds_blocked;    /* the RSS guard stopped round retention */
    uint32_t round_age;        /* ms since the last round (0: none) */
    uint32_t read;             /* blocks read (mincore) */
    uint32_t counted;          /* their counts before the reads */
    uint32_t uncounted;        /* of which the reads found not resident */
    uint32_t untouched;        /* pages of blocks with no resident page */
    uint32_t reclaimed;        /* pages given back for the watermark */
    uint32_t decayed;          /* pages given back for their age */
    uint32_t blocks;           /* blocks given back */
    uint8_t max_order;         /* the largest of them */
};

/* A ring, under vmscan_lock, mapped at the first traced pass: 352 KiB that a
 * static array put in every process's data (RLIMIT_DATA and mlockall count
 * it even untouched). */
static vmscan_trace_entry *vmscan_trace;
static unsigned long vmscan_trace_next;                     /* entries ever written */

static inline uint32_t trace_u32(unsigned long v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

/* Entries the ring keeps: the option, at most VMSCAN_TRACE_MAX (0: off). */
static inline unsigned long trace_keep()
{
    long keep = option_get(OPT_TRACE_VMSCAN);
    return keep <= 0 ? 0 : keep > (long)VMSCAN_TRACE_MAX ? VMSCAN_TRACE_MAX : (unsigned long)keep;
}

/* The state the pass found zone z in (z->lock held). */
static void trace_zone_state(vmscan_trace_entry *e, zone *z, uint32_t now, bool timed, bool over)
{
    *e = {};
    e->now = now;
    e->zone = z->id;
    e->timed = timed;
    e->over = over;
    e->in_use = trace_u32(z->spanned_pages - z->nr_free_pages);
    e->use_peak = trace_u32(z->use_peak);
    e->workingset = trace_u32(z->workingset);
    e->workingset_block = trace_u32(z->workingset_block);
    e->low = trace_u32(z->_watermark[WMARK_LOW]);
    e->high = trace_u32(z->_watermark[WMARK_HIGH]);
    e->resident = trace_u32(z->nr_free_resident);
    e->seen = trace_u32(zone_free_resident_seen(z));
    e->unread = trace_u32(z->nr_free_unscanned);
    e->retained = trace_u32(z->wmark_retained);
    e->boost = trace_u32(z->watermark_boost);
    e->refaulted = (uint32_t)z->nr_refault;
    e->phantom_ratio = z->phantom_ratio;
    e->round_streak = z->round_streak;
    e->rounds_blocked = z->rounds_blocked;
    e->round_age = z->round_time ? now - z->round_time : 0;
}

/* What the pass did (its scan_control), and the entry kept in the ring. */
static void trace_zone_pass(const vmscan_trace_entry &e, const scan_control &sc)
{
    if (!vmscan_trace) {
        vmscan_trace = (vmscan_trace_entry *)os_map(sizeof(vmscan_trace_entry) * VMSCAN_TRACE_MAX, true);
        if (!vmscan_trace)
            return;
    }
    vmscan_trace_entry *t = &vmscan_trace[vmscan_trace_next++ % trace_keep()];
    *t = e;
    t->read = sc.nr_read;
    t->counted = trace_u32(sc.nr_counted);
    t->uncounted = trace_u32(sc.nr_uncounted);
    t->untouched = trace_u32(sc.nr_untouched);
    t->reclaimed = trace_u32(sc.nr_reclaimed);
    t->decayed = trace_u32(sc.nr_decayed);
    t->blocks = sc.nr_blocks;
    t->max_order = (uint8_t)sc.max_order;
}

void print_vmscan_trace(printbuf &out)
{
    const unsigned long keep = trace_keep();
    if (!keep)
        return;
    spin_lock(&vmscan_lock);
    unsigned long end = vmscan_trace_next, start = end > keep ? end - keep : 0;
    if (!end || !vmscan_trace) {    /* no pass: nothing to say (a shell's many processes) */
        spin_unlock(&vmscan_lock);
        return;
    }
    out.printf("vmscan trace: pid %d, %lu passes over zones, the last %lu (pages; ms)\n",
               (int)getpid(), end, end - start);
    for (unsigned long i = start; i < end; i++) {
        const vmscan_trace_entry &e = vmscan_trace[i % keep];
        out.printf("mm_vmscan_zone: t=%u zone=%u timed=%u over=%u in_use=%u peak=%u ws=%u ws_block=%u "
                   "low=%u high=%u resident=%u seen=%u unread=%u phantom=%u retained=%u boost=%u "
                   "refaulted=%u rounds=%u/%u%s read=%u counted=%u uncounted=%u untouched=%u reclaimed=%u "
                   "decayed=%u blocks=%u max_order=%u\n",
                   e.now, e.zone, e.timed, e.over, e.in_use, e.use_peak, e.workingset,
                   e.workingset_block, e.low, e.high, e.resident, e.seen, e.unread, e.phantom_ratio,
                   e.retained, e.boost, e.refaulted, e.round_streak, e.round_age, e.rounds_blocked ? "/blocked" : "",
                   e.read, e.counted, e.uncounted, e.untouched, e.reclaimed, e.decayed, e.blocks,
                   e.max_order);
    }
    spin_unlock(&vmscan_lock);
}

bool vmscan_run(uint32_t now, bool timed, bool wait, bool from_kswapd)
{
    if (wait)
        spin_lock(&vmscan_lock);
    else if (!spin_trylock(&vmscan_lock))
        return false;
    WRITE_ONCE(vmscan_pending, 0);   /* crossings from here on flag a new pass */
    if (timed)
        update_cgroup_pressure();
    long decay = option_get(OPT_DECAY_MS);
    unsigned long reclaimed = 0, decayed = 0, shrunk = 0;
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    /* Round retention's RSS guard: after RETENTION_RSS_CHECK_PAGES faulted in
     * under it, a fresh huge mapping, and at every timed pass (pages in use
     * may be touched later). */
    rss_guard rg = {};
    rg.growth = __atomic_exchange_n(&rss_growth_pending, 0, __ATOMIC_RELAXED);
    const bool rss_check = READ_ONCE(rss_check_due) || timed;
    WRITE_ONCE(rss_check_due, 0);
    bool retaining = false;
    int residency = 0;   /* scan_control.residency, asked once per pass */
    /* The process's CPU time, for the thrashing check (0: refused, no check). */
    const uint32_t cpu_ms = (uint32_t)(ktime_get_process_cpu_ns() / 1000000);
    for (unsigned i = 0; i < nz; i++) {
        zone *z = zones[i];
        if (READ_ONCE(z->flags) & ZONE_RECLAIM_ACTIVE)
            drain_zone_pages(z);   /* the pagesets' surplus first, so it can be reclaimed */
        spin_lock(&z->lock);
        if (rss_check) {
            __setup_zone_wmarks(z);
            if (z->wmark_rounds) {
                spin_unlock(&z->lock);
                bool at_peak = rss_guard_at_peak(&rg);   /* system calls: not under the lock */
                spin_lock(&z->lock);
                if (at_peak) {
                    z->rounds_blocked = 1;
                    stat_add(vm_reclaim_stats.rounds_blocked, 1);
                }
            }
        }
        if (timed) {
            z->workingset -= z->workingset / 8;   /* forgotten over a few seconds */
            z->workingset_block -= z->workingset_block / 8;
            z->phantom_ratio -= z->phantom_ratio / 8;   /* learnt again by the next reads */
            unsigned long in_use = z->spanned_pages - z->nr_free_pages;
            if (z->use_peak > in_use)             /* the peak too, towards the use */
                z->use_peak -= (z->use_peak - in_use + 7) / 8;
            z->nr_thp_kept = 0;                   /* counted again by the next watermark pass */
        }
        if (cpu_ms)
            __zone_thrash_check(z, cpu_ms, z->use_peak);
        __setup_zone_wmarks(z);
        retaining |= z->wmark_rounds;
        const unsigned long seen = zone_free_resident_seen(z);
        bool over = seen > z->_watermark[WMARK_LOW];
        unsigned long high = z->_watermark[WMARK_HIGH];
        bool any = z->nr_free_lru != 0;
        const bool trace = unlikely(trace_keep() != 0);
        vmscan_trace_entry te;
        if (trace)
            trace_zone_state(&te, z, now, timed, over);
        spin_unlock(&z->lock);
        if (over || (any && timed)) {   /* over with none on the age list: shrink_zone_small */
            scan_control sc = {};
            sc.target = over ? high : ~0ul;
            sc.decay_age = timed && decay > 0 ? (uint32_t)decay : UINT32_MAX;
            sc.now = now;
            sc.residency = residency;
            shrink_zone(z, &sc);
            residency = sc.residency;
            if (over) {
                spin_lock(&z->lock);
                __zone_note_pass(z, sc, seen, now);
                spin_unlock(&z->lock);
            }
            reclaimed += sc.nr_reclaimed;
            decayed += sc.nr_decayed;
            if (trace)
                trace_zone_pass(te, sc);
        }

        if (timed && decay > 0) {
            /* A zone that grew for a burst gives the address space and the
             * descriptors back once the top has been idle for a period. */
            spin_lock(&z->lock);
            unsigned long unmapped = __zone_shrink_top(z, true, now, (uint32_t)decay);
            spin_unlock(&z->lock);
            stat_add(vm_reclaim_stats.pgshrink, unmapped);
            shrunk += unmapped;
        }
    }
    WRITE_ONCE(rounds_retaining, retaining ? 1 : 0);  /* set again by any zone that starts */
    if (timed)
        WRITE_ONCE(last_timed_work, reclaimed + decayed + shrunk);
    if (timed) {
        khugepaged_scan(KHUGEPAGED_COLLAPSE_BATCH, from_kswapd ? 0 : KHUGEPAGED_SLOWPATH_BUDGET_NS);
        stat_add(vm_reclaim_stats.decay_runs, 1);
    }
    spin_unlock(&vmscan_lock);
    stat_add(vm_reclaim_stats.pgreclaim, reclaimed);
    stat_add(vm_reclaim_stats.pgdecay, decayed);
    /* The slab holes queued since the last pass (mm/slub.cc: a batch's
     * wait is bounded by the passes a freeing program runs).  Only tried:
     * the caller may hold a cache lock, and a flush in progress does it. */
    slab_holes_flush_try();
    return true;
}

/* Other layers' caches.  Only with no allocator lock held: they take locks
 * that come before vmscan_lock (tcache_list_lock, kmem_cache.lock). */
static void run_decay_hooks(uint32_t now)
{
    /* The per-CPU sheaves, when their threads went idle (no visit to the
     * slabs since the previous pass). */
    pcs_flush_idle();
    /* The slab caches' spare empty slabs (one per class): a busy class
     * makes a new spare at once, an idle one gives its pages back. */
    kmem_cache_shrink_all();
    /* Free pages inside the partial slabs of classes idle since the last
     * pass (slab holes, mm/slub.cc). */
    kmem_cache_punch_holes_all(true);
    /* Half-empty slabs merged onto shared physical pages (KALLOC_MESH,
     * mm/mesh.h; single-threaded processes only). */
    mesh_timed();
    /* Huge areas kept mapped for reuse (mm/vmalloc.h). */
    long decay = option_get(OPT_DECAY_MS);
    if (decay > 0)
        vmalloc_decay(now, (uint32_t)decay);
    /* The per-CPU pagesets: drain the idle ones, decay high (mm/per_cpu_pages). */
    pcp_decay_all(ktime_get_coarse_ms());
    if (auto h = READ_ONCE(vmscan_tcache_decay_hook))
        h(now);
}

uint32_t vmscan_hooks_next;

int vcache_high_pending;

void vmscan_malloc_slowpath()
{
    /* Not set up yet (the first malloc, before its zone): set up, which
     * puts the hooks' first pass a period away.  The pass had run there,
     * reading every cache's descriptor: 11 page faults in a short process,
     * each of those pages faulted again when its cache was set up.  (Set up
     * here, not skipped: a process whose first blocks are huge areas makes
     * no zone, and its cached areas must still decay.) */
    if (unlikely(!READ_ONCE(vmscan_inited))) {
        vmscan_init();
        return;
    }
    if (unlikely(READ_ONCE(vcache_high_pending))) {
        WRITE_ONCE(vcache_high_pending, 0);
        vmalloc_evict_at_high(vmscan_now());
    }
    kswapd_run_if_wanted();
    if (kswapd_running() || spin_lock_bypass)
        return;                 /* kswapd runs the hooks */
    uint32_t now = vmscan_now();
    if ((int32_t)(now - READ_ONCE(vmscan_hooks_next)) < 0)
        return;
    WRITE_ONCE(vmscan_hooks_next, now + tick_period());
    if (unlikely(READ_ONCE(kswapd_deferred)) && !process_single_threaded()) {
        WRITE_ONCE(kswapd_deferred, 0);         /* the program has threads now */
        WRITE_ONCE(kswapd_start_pending, 1);
        kswapd_run_if_wanted();
        if (kswapd_running())
            return;
    }
    run_decay_hooks(now);
}

static bool any_zone_over_min()
{
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nz; i++) {
        zone *z = zones[i];
        if (zone_free_resident_seen(z) > READ_ONCE(z->_watermark[WMARK_MIN]) &&
            READ_ONCE(z->nr_free_lru))
            return true;
    }
    return false;
}

void __vmscan_tick_slow(uint32_t now)
{
    bool timed = (int32_t)(now - READ_ONCE(vmscan_next_tick)) >= 0;
    if (READ_ONCE(kswapd_state) == KSWAPD_RUNNING) {
        /* kswapd does the timed work (and moves vmscan_next_tick); a
         * crossing wakes it, and only a zone above WMARK_MIN makes this
         * thread reclaim itself. */
        if (READ_ONCE(vmscan_pending)) {
            wakeup_kswapd();
            if (any_zone_over_min() && vmscan_run(now, false, false))
                stat_add(vm_reclaim_stats.direct_reclaim, 1);
        }
        return;
    }
    if (timed)
        WRITE_ONCE(vmscan_next_tick, now + tick_period());   /* no stampede */
    bool pending = READ_ONCE(vmscan_pending);
    if (vmscan_run(now, timed, false) && pending)
        stat_add(vm_reclaim_stats.direct_reclaim, 1);
}

/* ---------------------------------------------------------------------------
 * kswapd
 * ------------------------------------------------------------------------- */

static bool nothing_to_decay()
{
    if (READ_ONCE(vmscan_tcache_decay_hook))
        return false;      /* its caches may need time-driven passes */
    unsigned nzp = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nzp; i++)
        if (zone_pcp_pages(zones[i]))
            return false;  /* pagesets hold pages: their idle drain is time-driven */
    if (vmscan_cgroup_limit())
        return false;      /* the RSS check is periodic */
    if (READ_ONCE(last_timed_work))
        return false;      /* the last pass found work: more may come due (zone tops) */
    unsigned nz = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < nz; i++)
        if (READ_ONCE(zones[i]->nr_free_lru))
            return false;
    return true;
}

static void *kswapd(void *arg)
{
    unsigned gen = (unsigned)(uintptr_t)arg;
    while (READ_ONCE(kswapd_gen) == gen) {
        uint32_t now = vmscan_now();
        bool timed = (int32_t)(now - READ_ONCE(vmscan_next_tick)) >= 0;
        if (timed || READ_ONCE(vmscan_pending)) {
            if (timed)
                WRITE_ONCE(vmscan_next_tick, now + tick_period());
            vmscan_run(now, timed, true, true);
            stat_add(vm_reclaim_stats.kswapd_runs, 1);
            if (timed)
                run_decay_hooks(now);
        }
        /* Sleep.  The word is cleared before pending is checked, so a
         * waker that sets pending and then the word is never lost. */
        WRITE_ONCE(kswapd_wait_word, 0);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (READ_ONCE(vmscan_pending))
            continue;
        bool idle = nothing_to_decay();
        if (idle) {
            WRITE_ONCE(kswapd_idle, 1);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (!nothing_to_decay()) {      /* a free raced with going idle */
                WRITE_ONCE(kswapd_idle, 0);
                idle = false;
            }
        }
        int32_t left = (int32_t)(READ_ONCE(vmscan_next_tick) - vmscan_now());
        unsigned timeout = left <= 0 ? 1 : (unsigned)left;
        kthread_wait(&kswapd_wait_word, 0, idle ? 0 : timeout);
        WRITE_ONCE(kswapd_idle, 0);
    }
    return nullptr;
}

void wakeup_kswapd()
{
    stat_add(vm_reclaim_stats.kswapd_wake, 1);
    /* A futex wake only when the word was clear: set, a wake since kswapd
     * last cleared it is on its way (its futex wait on 0 returns at once).
     * Every crossing used to make the call: 54K a Blender run with
     * KALLOC_BACKGROUND=1, while kswapd slept some hundreds of times. */
    if (__atomic_exchange_n(&kswapd_wait_word, 1, __ATOMIC_SEQ_CST) == 0)
        kthread_wake(&kswapd_wait_word);
}

void kswapd_run_if_wanted()
{
    if (!READ_ONCE(kswapd_start_pending) || spin_lock_bypass)
        return;
    if (READ_ONCE(kswapd_needs_threads) && process_single_threaded()) {
        /* Not in a single-threaded process (see kswapd_needs_threads):
         * vmscan_malloc_slowpath's timed part looks again. */
        WRITE_ONCE(kswapd_start_pending, 0);
        WRITE_ONCE(kswapd_deferred, 1);
        return;
    }
    int expected = KSWAPD_OFF;
    if (!__atomic_compare_exchange_n(&kswapd_state, &expected, KSWAPD_STARTING, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;
    WRITE_ONCE(kswapd_start_pending, 0);
    if (!READ_ONCE(kswapd_wanted)) {
        WRITE_ONCE(kswapd_state, KSWAPD_OFF);
        return;
    }
    unsigned gen = __atomic_add_fetch(&kswapd_gen, 1, __ATOMIC_ACQ_REL);
    /* pthread_create may call malloc: that call sees KSWAPD_STARTING and
     * no pending start, so it does not recurse here. */
    bool ok = kthread_run(kswapd, (void *)(uintptr_t)gen);
    WRITE_ONCE(kswapd_state, ok ? KSWAPD_RUNNING : KSWAPD_OFF);
    if (!ok && option_get(OPT_VERBOSE))
        fdprintk(2, "kalloc: warning: cannot start the background reclaimer\n");
}

void kswapd_set_wanted(bool on)
{
    vmscan_init();
    WRITE_ONCE(kswapd_needs_threads, 0);    /* the program asked: any process */
    WRITE_ONCE(kswapd_deferred, 0);
    WRITE_ONCE(kswapd_wanted, on ? 1 : 0);
    if (on) {
        WRITE_ONCE(kswapd_start_pending, 1);
        kswapd_run_if_wanted();
        return;
    }
    WRITE_ONCE(kswapd_start_pending, 0);
    int expected = KSWAPD_RUNNING;
    if (__atomic_compare_exchange_n(&kswapd_state, &expected, KSWAPD_OFF, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        __atomic_add_fetch(&kswapd_gen, 1, __ATOMIC_ACQ_REL);   /* the thread exits */
        WRITE_ONCE(kswapd_wait_word, 1);
        kthread_wake(&kswapd_wait_word);
    }
}

bool kswapd_running() { return READ_ONCE(kswapd_state) == KSWAPD_RUNNING; }

void vmscan_lock_for_fork() { spin_lock(&vmscan_lock); }
void vmscan_unlock_for_fork() { spin_unlock(&vmscan_lock); }

void vmscan_after_fork_child(bool locks_taken)
{
    if (locks_taken)
        spin_lock_init(&vmscan_lock);
    if (cg_limits_state == CG_READING)
        cg_limits_state = CG_UNREAD;    /* the reading thread is not here */
    /* The parent's thread does not exist here, and is not restarted unless
     * the child asks (kalloc_background(1)).  Stored only where they
     * differ: a program that never asked for the thread writes nothing
     * here (no copy of the page in each child). */
    if (kswapd_state != KSWAPD_OFF)
        kswapd_gen++;
    WRITE_IF_CHANGED(kswapd_state, KSWAPD_OFF);
    WRITE_IF_CHANGED(kswapd_wanted, 0);
    WRITE_IF_CHANGED(kswapd_start_pending, 0);
    WRITE_IF_CHANGED(kswapd_needs_threads, 0);
    WRITE_IF_CHANGED(kswapd_deferred, 0);
    WRITE_IF_CHANGED(kswapd_idle, 0);
    WRITE_IF_CHANGED(kswapd_wait_word, 0);
}

/* ---------------------------------------------------------------------------
 * Init, cgroup
 * ------------------------------------------------------------------------- */

void vmscan_init()
{
    if (READ_ONCE(vmscan_inited))
        return;
    options_init();
    /* The THP mode is read when a decision first needs it (khugepaged_mode). */
    vmscan_next_tick = vmscan_now() + tick_period();
    vmscan_hooks_next = vmscan_next_tick;   /* nothing to decay before the first period */
    if (long bg = option_get(OPT_BACKGROUND)) {
        kswapd_wanted = 1;
        kswapd_needs_threads = bg == 1;
        WRITE_ONCE(kswapd_start_pending, 1);   /* started by a later malloc slow path */
    }
    WRITE_ONCE(vmscan_inited, true);
}

/* The cgroup's limits, read by the first caller; while another thread
 * reads them, none (a pass without pressure: harmless). */
static const cgroup_limits *cg_limits_get()
{
    int st = __atomic_load_n(&cg_limits_state, __ATOMIC_ACQUIRE);
    if (likely(st == CG_READ))
        return &cg_limits;
    if (st == CG_UNREAD &&
        __atomic_compare_exchange_n(&cg_limits_state, &st, CG_READING, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
        cgroup_read_limits(&cg_limits, "/sys/fs/cgroup");
        __atomic_store_n(&cg_limits_state, CG_READ, __ATOMIC_RELEASE);
        return &cg_limits;
    }
    return nullptr;
}

uint64_t vmscan_cgroup_limit()
{
    uint64_t o = READ_ONCE(cg_limit_override);
    if (o)
        return o;
    const cgroup_limits *l = cg_limits_get();
    return l ? cgroup_limit(*l) : 0;
}

unsigned vmscan_cgroup_pressure() { return READ_ONCE(cg_pressure); }

void vmscan_set_cgroup_limit(uint64_t bytes)
{
    WRITE_ONCE(cg_limit_override, bytes);
    update_cgroup_pressure();
}

void vmscan_reread_cgroup()
{
    /* Read once: by cg_limits_get if they were never read (nothing if
     * another thread is reading them now), else again here. */
    if (__atomic_load_n(&cg_limits_state, __ATOMIC_ACQUIRE) == CG_READ)
        cgroup_read_limits(&cg_limits, "/sys/fs/cgroup");
    else if (!cg_limits_get())
        return;
    update_cgroup_pressure();
}

void print_reclaim_stats(printbuf &out)
{
    const reclaim_stats &s = vm_reclaim_stats;
    out.printf("reclaim: pgreclaim %lu pgdecay %lu pgtrim %lu pgshrink %lu pgscan %lu "
               "wmark_low_hits %lu direct_reclaim %lu kswapd_wake %lu kswapd_runs %lu "
               "decay_runs %lu pgreclaim_small %lu rss_checks %lu rounds_blocked %lu thrash_boosts %lu "
               "kswapd %s\n",
               s.pgreclaim, s.pgdecay, s.pgtrim, s.pgshrink, s.pgscan, s.wmark_low_hits, s.direct_reclaim,
               s.kswapd_wake, s.kswapd_runs, s.decay_runs, s.pgreclaim_small, s.rss_checks,
               s.rounds_blocked, s.thrash_boosts, kswapd_running() ? "on" : "off");
    out.printf("reclaim: residency_reads %lu residency_untouched %lu residency_uncounted %lu "
               "madvise_batches %lu madvise_batched_ranges %lu\n",
               s.residency_reads, s.residency_untouched, s.residency_uncounted,
               s.madvise_batches, s.madvise_batched_ranges);
    out.printf("reclaim: thread_rounds %lu (in a streak) thread_rounds_pages %ld now, %lu at most\n",
               s.thread_rounds, READ_ONCE(thread_rounds_pages), s.thread_rounds_pages_max);
    uint64_t limit = vmscan_cgroup_limit();
    const cgroup_limits *cg = cg_limits_get();
    out.printf("reclaim: cgroup v%d limit_kb %lu pressure %u/1024 (passes under pressure %lu)\n",
               cg ? cg->version : 0, (unsigned long)(limit >> 10), vmscan_cgroup_pressure(),
               s.cgroup_pressure);
    static const char *const modes[] = {"unknown", "never", "madvise", "always"};
    out.printf("thp: mode %s thp_madvised %lu thp_fault_advised %lu thp_fault_slow %lu thp_nohuge %lu "
               "thp_collapsed %lu thp_collapse_failed %lu thp_split_underused %lu hugetlb_pages %lu "
               "hugetlb_fallbacks %lu\n",
               modes[khugepaged_mode()], s.thp_madvised, s.thp_fault_advised, s.thp_fault_slow, s.thp_nohuge,
               s.thp_collapsed, s.thp_collapse_failed, s.thp_split_underused, s.hugetlb_pages,
               s.hugetlb_fallbacks);
    vmalloc_stats v = vmalloc_get_stats();
    out.printf("vmalloc: areas %lu live_kb %lu allocs %lu cache_hits %lu (lent %lu) cached_kb %lu "
               "retain_kb %lu workingset_kb %lu peak_kb %lu\n",
               v.nr_areas, v.bytes >> 10, v.nr_allocs, v.nr_cache_hits, v.nr_lent, v.cached_bytes >> 10,
               v.retain_bytes >> 10, v.workingset_bytes >> 10, v.peak_bytes >> 10);
}

} // namespace kalloc
