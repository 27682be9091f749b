// Reclaim (mm/vmscan): watermarks, decay driven by an injected clock, the
// free-block age list, isolation while other threads allocate, the cgroup
// policy, and the hugepage policy (mm/khugepaged).  Every test checks that
// live blocks keep their contents (fill patterns) and that the zones'
// invariants hold (zone_check.h) after reclaim.
#include <gtest/gtest.h>

#include <optional>

#include <algorithm>

#include <atomic>
#include <fcntl.h>
#include <random>
#include <signal.h>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "mm/khugepaged.h"
#include "mm/page_alloc.h"
#include "mm/per_cpu_pages.h"
#include "mm/vmscan.h"
#include "platform/cgroup.h"
#include "platform/options.h"
#include "platform/os.h"
#include "zone_check.h"
#include "../common/madvise_batch_util.h"
#include "../common/hugetlb_pool.h"

using namespace kalloc;

namespace {

struct blk {
    page *pg;
    unsigned order;
    uint8_t fill;
};

blk alloc_filled(unsigned order, uint8_t fill)
{
    page *pg = alloc_pages(order, MIGRATE_MOVABLE, nullptr);
    EXPECT_NE(pg, nullptr);
    if (!pg)
        return {nullptr, order, fill};
    prep_compound_page(pg, 1ul << order, PG_large);
    pg->nr_pages = 1u << order;
    memset(page_address(pg), fill, PAGE_SIZE << order);
    return {pg, order, fill};
}

// Every byte of a live block still holds its fill (checked page by page at a
// few offsets: reclaim works on whole pages).
void expect_filled(const blk &b)
{
    const uint8_t *p = (const uint8_t *)page_address(b.pg);
    for (size_t pg = 0; pg < (1ul << b.order); pg++)
        for (size_t off : {0ul, 1ul, 2047ul, 4095ul})
            ASSERT_EQ(p[pg * PAGE_SIZE + off], b.fill) << "a live block lost its contents";
}

// The end of a reclaim test: every live block still holds its fill, the
// zones are consistent, and again once the blocks are freed.
void expect_filled_then_free(const std::vector<blk> &live)
{
    for (const blk &b : live)
        ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (const blk &b : live)
        free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// Pages of [p, p + len) that are resident (mincore).
size_t resident_pages(void *p, size_t len)
{
    std::vector<unsigned char> v(len / PAGE_SIZE);
    EXPECT_EQ(mincore(p, len, v.data()), 0);
    size_t n = 0;
    for (unsigned char c : v)
        n += c & 1;
    return n;
}

// Options for one test, restored at the end.
struct option_guard {
    long saved[OPT_COUNT];
    option_guard() { for (unsigned i = 0; i < OPT_COUNT; i++) saved[i] = options[i].value; }
    ~option_guard() { for (unsigned i = 0; i < OPT_COUNT; i++) options[i].value = saved[i]; }
};

// The residency tests' options (the caller's option_guard restores them):
// low 1,024 pages (high 768), no decay, residency reads on.  False under a
// seccomp filter, where kalloc reads none: the test is skipped.
bool residency_reads_options()
{
    options[OPT_FREE_HIGH].value = 4l << 20;
    options[OPT_DECAY_MS].value = 0;
    options[OPT_RESIDENCY].value = 1;
    return !os_seccomp_filtered();
}
#define SKIP_UNLESS_RESIDENCY_READS()                                                     \
    do {                                                                                  \
        if (!residency_reads_options())                                                   \
            GTEST_SKIP() << "a seccomp filter: kalloc reads no residency under one";      \
    } while (0)

// Start from a clean slate: everything free is given back, so the zones hold
// no resident free memory, and what earlier tests' reads taught the
// watermark check (phantom_ratio) is forgotten: the watermarks see only what
// the test does.
void reclaim_everything()
{
    zone_reclaim_all(0);
    for (unsigned i = 0; i < __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE); i++) {
        spin_lock(&zones[i]->lock);
        zones[i]->phantom_ratio = 0;
        spin_unlock(&zones[i]->lock);
    }
}

unsigned long total(unsigned long zone::*field)
{
    unsigned long n = 0;
    for (unsigned i = 0; i < __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE); i++) {
        spin_lock(&zones[i]->lock);
        n += zones[i]->*field;
        spin_unlock(&zones[i]->lock);
    }
    return n;
}

// A workingset larger than any test's zone: the program reuses everything.
constexpr unsigned long kReusesEverything = (64ul << 30) >> PAGE_SHIFT;

} // namespace

TEST(Vmscan, WatermarksAreOrderedAndFollowTheOption)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 8l << 20;
    page *pg = alloc_pages(0, MIGRATE_MOVABLE, nullptr);   // at least one zone
    ASSERT_NE(pg, nullptr);
    free_pages(pg, 0);
    zone *z = zones[0];
    spin_lock(&z->lock);
    // No hugepage pieces kept: an earlier test in the same process may have
    // left some counted (nr_thp_kept), which sit on every mark (ubsan's
    // all-in-one run: low 2,112 pages for 2,048).
    const unsigned long saved_kept = z->nr_thp_kept;
    z->nr_thp_kept = 0;
    __setup_zone_wmarks(z);
    EXPECT_EQ(wmark_pages(z, WMARK_LOW), (8ul << 20) >> PAGE_SHIFT);
    EXPECT_LE(wmark_pages(z, WMARK_HIGH), wmark_pages(z, WMARK_LOW));
    EXPECT_GE(wmark_pages(z, WMARK_MIN), wmark_pages(z, WMARK_LOW));
    // Auto: the workingset (refaulted pages), at least 1 MiB (half the use
    // if less), at most in-use / 8 clamped to 4..32 MiB.
    options[OPT_FREE_HIGH].value = 0;
    unsigned long saved_ws = z->workingset, saved_peak = z->use_peak, saved_block = z->workingset_block;
    unsigned long saved_boost = z->watermark_boost;
    unsigned long in_use = z->spanned_pages - z->nr_free_pages;
    z->use_peak = in_use;              // at its peak: no retention (see below)
    z->watermark_boost = 0;            // not thrashing (see ThrashingRaisesTheLevelPastTheCap)
    z->workingset_block = 0;           // no large block taken back (see TheLevelKeeps...)
    z->workingset = 0;                 // no refault: 1 MiB
    __setup_zone_wmarks(z);
    EXPECT_EQ(wmark_pages(z, WMARK_LOW), std::min((1ul << 20) >> PAGE_SHIFT, in_use / 2));
    unsigned long cap = std::clamp(in_use / 8, (4ul << 20) >> PAGE_SHIFT, (32ul << 20) >> PAGE_SHIFT);
    z->workingset = (3ul << 20) >> PAGE_SHIFT;   // 3 MiB reused: followed up to the cap
    __setup_zone_wmarks(z);
    EXPECT_EQ(wmark_pages(z, WMARK_LOW), std::min(cap, (3ul << 20) >> PAGE_SHIFT));
    z->workingset = kReusesEverything;           // reuses everything: the cap
    __setup_zone_wmarks(z);
    EXPECT_EQ(wmark_pages(z, WMARK_LOW), cap);
    EXPECT_GE(wmark_pages(z, WMARK_LOW), (4ul << 20) >> PAGE_SHIFT);
    EXPECT_LE(wmark_pages(z, WMARK_LOW), (32ul << 20) >> PAGE_SHIFT);
    z->workingset = saved_ws;
    z->use_peak = saved_peak;
    z->workingset_block = saved_block;
    z->watermark_boost = saved_boost;
    z->nr_thp_kept = saved_kept;
    __setup_zone_wmarks(z);
    spin_unlock(&z->lock);
}

// Zone 0 (made if there is none yet).
static zone *first_zone()
{
    page *pg = alloc_pages(0, MIGRATE_MOVABLE, nullptr);
    EXPECT_NE(pg, nullptr);
    if (pg)
        free_pages(pg, 0);
    return zones[0];
}

// The counters the watermark tests make a zone read, saved and put back
// (under the zone lock, held by the caller) around a test's changes.
struct zone_counters {
    unsigned long workingset, use_peak, spanned_pages, nr_free_pages, nr_free_resident, nr_free_lru,
        nr_thp_kept, retention_faulted, workingset_block, watermark_boost, refault_snap, nr_refault,
        vcache_high_mark;
    uint32_t round_time, refault_snap_time;
    uint8_t use_dropped, rounds_blocked, wmark_rounds, round_streak;
    int pending, rss_due;
    static zone_counters save(const zone *z)
    {
        return {z->workingset,    z->use_peak,       z->spanned_pages,  z->nr_free_pages,
                z->nr_free_resident, z->nr_free_lru, z->nr_thp_kept,    z->retention_faulted,
                z->workingset_block, z->watermark_boost, z->refault_snap, z->nr_refault,
                z->vcache_high_mark, z->round_time,    z->refault_snap_time, z->use_dropped, z->rounds_blocked, z->wmark_rounds,
                z->round_streak,  READ_ONCE(vmscan_pending), READ_ONCE(rss_check_due)};
    }
    void restore(zone *z) const
    {
        z->workingset = workingset;
        z->use_peak = use_peak;
        z->spanned_pages = spanned_pages;
        z->nr_free_pages = nr_free_pages;
        z->nr_free_resident = nr_free_resident;
        z->nr_free_lru = nr_free_lru;
        z->nr_thp_kept = nr_thp_kept;
        z->retention_faulted = retention_faulted;
        z->workingset_block = workingset_block;
        z->watermark_boost = watermark_boost;
        z->refault_snap = refault_snap;
        z->nr_refault = nr_refault;
        z->vcache_high_mark = vcache_high_mark;
        z->refault_snap_time = refault_snap_time;
        z->round_time = round_time;
        z->use_dropped = use_dropped;
        z->rounds_blocked = rounds_blocked;
        z->wmark_rounds = wmark_rounds;
        z->round_streak = round_streak;
        __setup_zone_wmarks(z);
        WRITE_ONCE(vmscan_pending, pending);
        WRITE_ONCE(rss_check_due, rss_due);
    }
};

// The first zone, locked, its counters saved in *saved (put them back
// before unlocking), with the automatic watermarks (the caller holds an
// option_guard), no hugepage kept and no round or drop seen.
static zone *lock_zone_for_wmarks(zone_counters *saved)
{
    options_init();   /* the environment first (a KALLOC_FREE_HIGH there), then the override */
    options[OPT_FREE_HIGH].value = 0;
    zone *z = first_zone();
    spin_lock(&z->lock);
    *saved = zone_counters::save(z);
    z->nr_thp_kept = 0;
    z->workingset_block = 0;
    z->watermark_boost = 0;
    z->round_time = 0;
    z->round_streak = 0;
    z->use_dropped = 0;
    z->rounds_blocked = 0;
    z->retention_faulted = 0;
    return z;
}

// The watermark `w` __setup_zone_wmarks gives the first zone when its
// counters read `in_use` pages in use, `workingset` pages reused and a
// recent peak of `use_peak` pages in use (0: the use itself), no hugepage
// kept, with the automatic watermarks; under the zone's lock, and the
// counters and watermarks are put back.
static unsigned long wmark_with(unsigned long in_use, unsigned long workingset, unsigned long use_peak,
                                zone_watermarks w)
{
    option_guard og;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    z->spanned_pages = z->nr_free_pages + in_use;
    z->workingset = workingset;
    z->use_peak = use_peak ? use_peak : in_use;   // no round: a drop is a phase change
    __setup_zone_wmarks(z);
    unsigned long mark = wmark_pages(z, w);
    saved.restore(z);
    spin_unlock(&z->lock);
    return mark;
}

static unsigned long low_wmark_with(unsigned long in_use, unsigned long workingset)
{
    return wmark_with(in_use, workingset, 0, WMARK_LOW);
}

// A churning heap keeps at most a thirty-second of its use free and
// resident (4 MiB at least, 32 MiB at most), not an eighth: at frag-churn's
// peak the free resident memory is small blocks the growing phase cannot use
// (an eighth: peak RSS 168.4 MiB; a thirty-second: 160.6; a quarter, before
// that: 172.3).  The zone's counters are made to read the use for the call,
// under its lock, and put back.
TEST(Vmscan, ChurningHeapKeepsAThirtySecondOfItsUseResident)
{
    // reusing everything: 128 MiB in use -> 4 MiB, 512 MiB -> 16, 2 GiB -> the 32 MiB ceiling
    EXPECT_EQ(low_wmark_with((128ul << 20) >> PAGE_SHIFT, kReusesEverything), (4ul << 20) >> PAGE_SHIFT);
    EXPECT_EQ(low_wmark_with((512ul << 20) >> PAGE_SHIFT, kReusesEverything), (16ul << 20) >> PAGE_SHIFT);
    EXPECT_EQ(low_wmark_with((2048ul << 20) >> PAGE_SHIFT, kReusesEverything), (32ul << 20) >> PAGE_SHIFT);
}

// A heap that takes given-back memory back many times its use a second
// (thrashing) keeps more free and resident than the thirty-second cap: a
// quarter of its use more, doubled while it goes on (at most half), taken
// off again over a couple of seconds of calm.  realloc churn of 1-100 KB
// blocks in a 55 MiB heap refaulted 435K pages at the 4 MiB level (1.86 s
// against glibc's 0.56).  A burst as frag-churn's phase changes make (10
// times the use a second for 100 ms, then calm) does not count, nor does a
// small heap's fast churn (its refaults cost little).  The clock (the
// process's CPU time in ms) is the test's: every check is given its time.
TEST(Vmscan, ThrashingRaisesTheLevelPastTheCap)
{
    option_guard og;
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    const unsigned long use = 56 * MiB;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    z->spanned_pages = z->nr_free_pages + use;
    z->use_peak = use;
    z->workingset = use;                         // everything reused: the level is the cap
    const uint32_t t0 = 1000000;
    z->refault_snap_time = 0;
    __zone_thrash_check(z, t0, use);             // the first look: no rate yet
    __setup_zone_wmarks(z);
    const unsigned long capped = wmark_pages(z, WMARK_LOW);

    // frag-churn's burst: one use's worth in 100 ms, then nothing
    z->nr_refault += use;
    __zone_thrash_check(z, t0 + 100, use);
    __zone_thrash_check(z, t0 + 260, use);
    const unsigned long burst_boost = z->watermark_boost;

    // the churn: twice the use in 200 ms (a window's worth at 8x a second, early)
    z->nr_refault += 2 * use;
    __zone_thrash_check(z, t0 + 460, use);
    __setup_zone_wmarks(z);
    const unsigned long boost = z->watermark_boost;
    const unsigned long thrashing = wmark_pages(z, WMARK_LOW);
    // it goes on: doubled, at most half the use
    z->nr_refault += 2 * use;
    __zone_thrash_check(z, t0 + 700, use);
    const unsigned long doubled = z->watermark_boost;
    z->nr_refault += 3 * use;
    __zone_thrash_check(z, t0 + 900, use);
    const unsigned long most = z->watermark_boost;
    // calm: 8 windows of 250 ms with no refault
    uint32_t t = t0 + 900;
    for (int i = 0; i < 8; i++)
        __zone_thrash_check(z, t += 250, use);
    const unsigned long calm = z->watermark_boost;

    // a small heap (1 MiB) churning at 20 times its use a second: 5,120 pages a second
    z->spanned_pages = z->nr_free_pages + MiB;
    z->use_peak = MiB;
    z->watermark_boost = 0;
    z->nr_refault += 5 * MiB;
    __zone_thrash_check(z, t += 250, MiB);
    const unsigned long small = z->watermark_boost;
    saved.restore(z);
    spin_unlock(&z->lock);

    EXPECT_EQ(capped, 4 * MiB) << "56 MiB in use: the 4 MiB floor of the thirty-second cap";
    EXPECT_EQ(burst_boost, 0u) << "a 100 ms burst is no thrashing";
    EXPECT_EQ(boost, use / 4);
    EXPECT_EQ(thrashing, 4 * MiB + use / 4) << "the cap raised by the boost";
    EXPECT_EQ(doubled, use / 2);
    EXPECT_EQ(most, use / 2) << "at most half the use";
    EXPECT_LT(calm, use / 2 / 2) << "two seconds of calm take more than half of it off";
    EXPECT_GT(calm, 0u) << "but not all at once";
    EXPECT_EQ(small, 0u) << "a small heap's refaults cost little";
}

// A small heap keeps no more than half of its use free and resident before
// it refaults: 1 MiB in use, 512 KiB (the floor was 1 MiB whatever the heap:
// realloc-string, ~1.2 MiB in use, kept 1-1.4 MiB free and resident).
// The zone's counters read 1 MiB in use for the call, and are put back.
TEST(Vmscan, SmallHeapKeepsHalfItsUseBeforeRefaults)
{
    // 1 MiB in use, no refault yet
    EXPECT_EQ(low_wmark_with((1ul << 20) >> PAGE_SHIFT, 0), (512ul << 10) >> PAGE_SHIFT);
}

// A program that takes back a block as large as the usual level keeps twice
// that block free and resident (glibc's trim threshold is twice its mmap
// threshold): jq's join, a 13 MiB heap cycling a 4 MiB string, crossed the
// 4 MiB level at each free of it and gave it back at each pass (17K passes,
// the run 70% slower).  A refault counts only what it took from one block;
// the level stays within the 32 MiB ceiling and the workingset, and follows
// the block down as the timed passes forget it.
TEST(Vmscan, TheLevelKeepsTwiceTheLargestBlockTakenBack)
{
    option_guard og;
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    z->spanned_pages = z->nr_free_pages + 13 * MiB;
    z->use_peak = 13 * MiB;
    z->workingset = 0;
    __setup_zone_wmarks(z);
    const unsigned long before = wmark_pages(z, WMARK_LOW);   // no refault: the 1 MiB floor
    for (int i = 0; i < 8; i++)
        __workingset_refault(z, 4 * MiB);                      // the 4 MiB block, again and again
    __setup_zone_wmarks(z);
    const unsigned long cycling = wmark_pages(z, WMARK_LOW);
    const unsigned long block = z->workingset_block;
    z->workingset = 64 * MiB;
    z->workingset_block = 20 * MiB;                            // a 20 MiB block: the ceiling
    __setup_zone_wmarks(z);
    const unsigned long ceiling = wmark_pages(z, WMARK_LOW);
    z->workingset_block = 4 * MiB;
    z->workingset = 6 * MiB;                                   // less reused than two blocks
    __setup_zone_wmarks(z);
    const unsigned long by_workingset = wmark_pages(z, WMARK_LOW);
    saved.restore(z);
    spin_unlock(&z->lock);
    EXPECT_EQ(before, 1 * MiB);
    EXPECT_EQ(block, 4 * MiB);
    EXPECT_EQ(cycling, 8 * MiB) << "a 4 MiB block cycled: twice it, not the 4 MiB of a 32nd's floor";
    EXPECT_EQ(ceiling, 32 * MiB);
    EXPECT_EQ(by_workingset, 6 * MiB);
}

// Retention: a heap whose use moves within an eighth of its recent peak
// (a steady churn) keeps resident as much free memory as the program has
// been seen to take back (the workingset), but never more than the room
// under that peak, so resident memory (in use + free resident, at most the
// use plus WMARK_MIN) stays under what the peak held with the usual level,
// while the churn stops refaulting.  A larger drop is a phase change (the
// end of a spike): the usual level.
TEST(Vmscan, ReusedFreeMemoryIsKeptUnderTheRecentPeak)
{
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    const unsigned long usual = 8 * MiB;   // 256 MiB in use: a 32nd
    // 256 MiB in use, the peak at 280: 20 MiB reused is kept whole.
    EXPECT_EQ(wmark_with(256 * MiB, 20 * MiB, 280 * MiB, WMARK_LOW), 20 * MiB);
    // More reused than the room under the peak: the room.
    EXPECT_EQ(wmark_with(256 * MiB, 250 * MiB, 280 * MiB, WMARK_LOW), 24 * MiB);
    // The band stays a quarter of the usual level: at most the peak plus it.
    EXPECT_LE(256 * MiB + wmark_with(256 * MiB, 250 * MiB, 280 * MiB, WMARK_MIN), 280 * MiB + usual / 4);
    EXPECT_EQ(wmark_with(256 * MiB, 250 * MiB, 280 * MiB, WMARK_HIGH), 24 * MiB - usual / 4);
    // At the peak, or without reuse, the usual level.
    EXPECT_EQ(wmark_with(256 * MiB, 250 * MiB, 256 * MiB, WMARK_LOW), usual);
    EXPECT_EQ(wmark_with(256 * MiB, 2 * MiB, 280 * MiB, WMARK_LOW), 2 * MiB);
    // More than an eighth below the peak: a phase change, the usual level.
    EXPECT_EQ(wmark_with(256 * MiB, 250 * MiB, 512 * MiB, WMARK_LOW), usual);
}

// With retention in effect, an allocation that faults memory in (a block
// given back) shrinks the room under the peak: the watermarks are set again
// at once and reclaim is flagged when free resident memory is over them.
TEST(Vmscan, AFaultingAllocationUnderRetentionChecksThePeak)
{
    option_guard og;
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    z->spanned_pages = z->nr_free_pages + 256 * MiB;       // 256 MiB in use
    z->use_peak = 288 * MiB;
    z->workingset = 250 * MiB;
    z->nr_free_resident = 30 * MiB;
    z->nr_free_lru = 30 * MiB;
    __setup_zone_wmarks(z);
    unsigned long low_before = wmark_pages(z, WMARK_LOW), retained_before = z->wmark_retained;
    WRITE_ONCE(vmscan_pending, 0);
    z->spanned_pages += 16 * MiB;                          // 272 MiB in use now, by faults
    __zone_use_rises(z, true, 16 * MiB);
    unsigned long low_after = wmark_pages(z, WMARK_LOW);
    int pending = READ_ONCE(vmscan_pending);
    z->spanned_pages += 40 * MiB;                          // past the old peak
    __zone_use_rises(z, false, 40 * MiB);
    unsigned long peak_after = z->use_peak;
    saved.restore(z);
    spin_unlock(&z->lock);
    EXPECT_EQ(low_before, 32 * MiB);
    EXPECT_EQ(retained_before, 24 * MiB) << "32 MiB kept, 8 of them the usual level";
    EXPECT_EQ(low_after, 16 * MiB) << "the room under the peak: 288 - 272 MiB";
    EXPECT_EQ(pending, 1) << "30 MiB free and resident is over the new mark";
    EXPECT_EQ(peak_after, 312 * MiB) << "the use raised its peak";
}

// Rounds: once the use has come back near its peak after a large drop (a
// program in rounds, such as mimalloc-bench's mstress), the next drop keeps
// the workingset too, at most the room under the peak; not when the RSS
// guard found the process at its RSS high-water mark (rounds_blocked, until
// the next round), and not long after the last round.  Faults under it
// accumulate to an RSS read (rss_check_due).
TEST(Vmscan, RoundsKeepTheWorkingsetAcrossDrops)
{
    option_guard og;
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    const unsigned long base = z->nr_free_pages;
    auto use = [&](unsigned long pages) { z->spanned_pages = base + pages; };
    z->workingset = 200 * MiB;
    z->use_peak = 400 * MiB;
    // A first drop to 100 MiB: no round yet, the usual level (a 32nd).
    use(100 * MiB);
    __setup_zone_wmarks(z);
    const unsigned long first_drop = wmark_pages(z, WMARK_LOW);
    const bool dropped = z->use_dropped;
    // The use comes back near the peak: a round.
    use(380 * MiB);
    __zone_use_rises(z, false, 280 * MiB);
    const bool round = z->round_time != 0 && !z->use_dropped;
    // One round is no pattern yet (a program that fills, empties, refills
    // and ends): the next drop gets the usual level.
    use(100 * MiB);
    __setup_zone_wmarks(z);
    const unsigned long one_round = wmark_pages(z, WMARK_LOW);
    // The use comes back again soon after: the second round in a row.
    use(380 * MiB);
    __zone_use_rises(z, false, 280 * MiB);
    const unsigned streak = z->round_streak;
    // The next drop keeps the workingset (200 MiB, under the 300 of room).
    use(100 * MiB);
    __setup_zone_wmarks(z);
    const unsigned long second_drop = wmark_pages(z, WMARK_LOW);
    const bool rounds = z->wmark_rounds;
    // Faults under it: an RSS read is asked for after 256 pages.
    WRITE_ONCE(rss_check_due, 0);
    use(100 * MiB + 100);
    __zone_use_rises(z, true, 100);
    const int due_early = READ_ONCE(rss_check_due);
    use(100 * MiB + 300);
    __zone_use_rises(z, true, 200);
    const int due = READ_ONCE(rss_check_due);
    // The guard stopped it: the usual level until the next round.
    z->rounds_blocked = 1;
    __setup_zone_wmarks(z);
    const unsigned long blocked = wmark_pages(z, WMARK_LOW);
    // Long after the last round: the usual level.
    z->rounds_blocked = 0;
    z->round_time = vmscan_now() - ROUNDS_WINDOW_MS - 1;
    __setup_zone_wmarks(z);
    const unsigned long stale = wmark_pages(z, WMARK_LOW);
    saved.restore(z);
    spin_unlock(&z->lock);
    EXPECT_EQ(first_drop, 4 * MiB) << "the usual level: 100 MiB / 32, at least 4 MiB";
    EXPECT_TRUE(dropped);
    EXPECT_TRUE(round) << "coming back near the peak was not seen as a round";
    EXPECT_EQ(one_round, 4 * MiB) << "a single round kept the workingset across the next drop";
    EXPECT_EQ(streak, 2u);
    EXPECT_EQ(second_drop, 200 * MiB) << "the workingset was not kept across the round's drop";
    EXPECT_TRUE(rounds);
    EXPECT_EQ(due_early, 0);
    EXPECT_EQ(due, 1) << "256 pages faulted in under round retention asked for no RSS read";
    EXPECT_LT(blocked, 5 * MiB);
    EXPECT_LT(stale, 5 * MiB);
}

// A round is a drop of a quarter of the peak or more and a return within an
// eighth (ROUNDS_DROP_SHIFT).  A use that wanders around the 7/8 mark counts
// none: the drop mark used to be 8/9 of the peak, above the return mark, so
// a use of 7/8 was a drop at one pass and a return at the next allocation
// (kv-ttl's expiry: a "round" every 0-4 ms, 20 in 40 ms, and its spike's end
// then kept the spike's workingset through its calm and idle phases).
TEST(Vmscan, AUseWanderingNearThePeakCountsNoRound)
{
    option_guard og;
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    const unsigned long base = z->nr_free_pages;
    auto use = [&](unsigned long pages) { z->spanned_pages = base + pages; };
    z->workingset = 40 * MiB;
    z->use_peak = 400 * MiB;
    // Up and down between 7/8 and 8/9 of the peak, ten times.
    for (int i = 0; i < 10; i++) {
        use(350 * MiB);
        __setup_zone_wmarks(z);
        use(352 * MiB);
        __zone_use_rises(z, false, 2 * MiB);
    }
    const unsigned wander_streak = z->round_streak;
    const bool wander_dropped = z->use_dropped;
    // A real round still counts: down to 290 MiB (more than a quarter
    // below), back to 360 (within an eighth).
    use(290 * MiB);
    __setup_zone_wmarks(z);
    const bool dropped = z->use_dropped;
    use(360 * MiB);
    __zone_use_rises(z, false, 70 * MiB);
    const unsigned round_streak = z->round_streak;
    saved.restore(z);
    spin_unlock(&z->lock);
    EXPECT_EQ(wander_streak, 0u) << "a use moving by 2 MiB around 7/8 of its peak counted rounds";
    EXPECT_FALSE(wander_dropped);
    EXPECT_TRUE(dropped) << "a drop of 27% was not seen";
    EXPECT_EQ(round_streak, 1u) << "the return after it was not a round";
}

// A new high for the huge-area cache (vcache_high_pending: the next malloc
// slow path unmaps the areas idle 20 ms and more) is a use past the highest
// since the start by a 32nd, not past the recent peak, which timed passes
// decay: a program in rounds whose use creeps up by a few pages a round
// (PHP rebuilding an array: 32,926 -> 33,710 pages over six rounds) passed
// its decayed peak early in every round and lost the areas it takes back
// each round.
TEST(Vmscan, OnlyAUseBeyondTheHighestSoFarEvictsTheHugeAreaCache)
{
    option_guard og;
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    const int pending = READ_ONCE(vcache_high_pending);
    const unsigned long base = z->nr_free_pages;
    auto use = [&](unsigned long pages) { z->spanned_pages = base + pages; };
    z->use_peak = 0;
    z->vcache_high_mark = 0;
    WRITE_ONCE(vcache_high_pending, 0);
    use(128 * MiB);
    __zone_use_rises(z, false, 128 * MiB);
    const int first = READ_ONCE(vcache_high_pending);
    WRITE_ONCE(vcache_high_pending, 0);
    // The round's end, and timed passes decay the recent peak.
    use(8 * MiB);
    z->use_peak = 64 * MiB;
    // The next round comes back a little higher than the last.
    use(129 * MiB);
    __zone_use_rises(z, false, 121 * MiB);
    const int creeping = READ_ONCE(vcache_high_pending);
    const unsigned long peak = z->use_peak;
    // Growth by other memory, well past the high.
    use(160 * MiB);
    __zone_use_rises(z, false, 31 * MiB);
    const int higher = READ_ONCE(vcache_high_pending);
    saved.restore(z);
    WRITE_ONCE(vcache_high_pending, pending);
    spin_unlock(&z->lock);
    EXPECT_EQ(first, 1) << "the first high is a new high";
    EXPECT_EQ(creeping, 0) << "a round 1 MiB above the last one's high evicted the cache";
    EXPECT_EQ(peak, 129 * MiB) << "the recent peak follows the use";
    EXPECT_EQ(higher, 1) << "a use a quarter above the high did not count";
}

// Threads in rounds out of step (malloc/tcache.h): the zone's use stays near
// its peak (no room under it, no drop, no round of its own) while the
// threads are below their peaks by thread_rounds_pages; that much of the
// workingset is kept, beyond the room, and not under the RSS guard (at the
// peak of such rounds the RSS is at its mark by design, and the guard
// stopped the retention in all but the first rounds).  Nothing without it,
// nor once no thread has completed a round for ROUNDS_WINDOW_MS.
TEST(Vmscan, ThreadsInRoundsKeepWhatTheyWillTakeBack)
{
    option_guard og;
    const unsigned long MiB = (1ul << 20) >> PAGE_SHIFT;
    zone_counters saved;
    zone *z = lock_zone_for_wmarks(&saved);
    const unsigned long base = z->nr_free_pages;
    const long shared = READ_ONCE(thread_rounds_pages);
    const uint32_t shared_time = READ_ONCE(thread_rounds_time);
    vmscan_thread_round_seen(vmscan_now());      // a thread's round just now
    z->use_dropped = 0;
    z->rounds_blocked = 0;
    z->workingset = 100 * MiB;
    z->use_peak = 400 * MiB;
    z->spanned_pages = base + 400 * MiB;         // at the peak: no room under it
    WRITE_ONCE(thread_rounds_pages, 0);
    __setup_zone_wmarks(z);
    const unsigned long none = wmark_pages(z, WMARK_LOW);
    WRITE_ONCE(thread_rounds_pages, (long)(60 * MiB));
    __setup_zone_wmarks(z);
    const unsigned long kept = wmark_pages(z, WMARK_LOW), retained = z->wmark_retained;
    const bool guarded = z->wmark_rounds;
    z->rounds_blocked = 1;                       // the guard stopped the zone's own rounds
    __setup_zone_wmarks(z);
    const unsigned long blocked = wmark_pages(z, WMARK_LOW);
    // Far under the peak (more than a quarter: not steady) after two
    // rounds, the guard having stopped them: the shares only, not the
    // 120 MiB of room the rounds would keep.
    z->spanned_pages = base + 280 * MiB;
    z->round_time = vmscan_now();
    z->round_streak = ROUNDS_MIN_STREAK;
    __setup_zone_wmarks(z);
    const unsigned long blocked_drop = wmark_pages(z, WMARK_LOW);
    z->round_time = 0;
    z->round_streak = 0;
    z->rounds_blocked = 0;
    z->spanned_pages = base + 380 * MiB;         // 20 MiB of room: 80 MiB kept, within the workingset
    __setup_zone_wmarks(z);
    const unsigned long room = wmark_pages(z, WMARK_LOW);
    WRITE_ONCE(thread_rounds_pages, (long)(300 * MiB));
    __setup_zone_wmarks(z);
    const unsigned long capped = wmark_pages(z, WMARK_LOW);
    // No thread's round for longer than the window: the shares are stale.
    WRITE_ONCE(thread_rounds_time, vmscan_now() - ROUNDS_WINDOW_MS - 1);
    __setup_zone_wmarks(z);
    const unsigned long stale = wmark_pages(z, WMARK_LOW);
    WRITE_ONCE(thread_rounds_pages, shared);
    WRITE_ONCE(thread_rounds_time, shared_time);
    saved.restore(z);
    spin_unlock(&z->lock);
    EXPECT_EQ(none, 400 * MiB / 32 < 4 * MiB ? 4 * MiB : 400 * MiB / 32) << "the usual level";
    EXPECT_EQ(kept, 60 * MiB) << "what the threads will take back was not kept";
    EXPECT_EQ(retained, 60 * MiB - none);
    EXPECT_FALSE(guarded) << "thread rounds' retention is not the guard's";
    EXPECT_EQ(blocked, 60 * MiB);
    EXPECT_EQ(blocked_drop, 60 * MiB) << "the room of rounds the guard stopped was kept with the shares";
    EXPECT_EQ(room, 80 * MiB) << "the room under the peak and the threads' shares add up";
    EXPECT_EQ(capped, 100 * MiB) << "more than the workingset was kept";
    EXPECT_EQ(stale, 20 * MiB) << "shares kept with no thread's round for longer than the window (the room: 20 MiB)";
}

// In a small heap (under 4 MiB in use) a refault raises the workingset only
// when the zone held fewer resident free pages than it took: resident free
// memory in blocks that did not fit would not have spared the fault by being
// more.  In a larger heap every refault counts.  The zone's counters are set
// for the calls under its lock, and put back.
TEST(Vmscan, ARefaultBesideEnoughResidentFreeMemoryIsNotWorkingset)
{
    page *pg = alloc_pages(0, MIGRATE_MOVABLE, nullptr);   // at least one zone
    ASSERT_NE(pg, nullptr);
    free_pages(pg, 0);
    zone *z = zones[0];
    spin_lock(&z->lock);
    unsigned long saved_ws = z->workingset, saved_res = z->nr_free_resident,
                  saved_refault = z->nr_refault, saved_spanned = z->spanned_pages;
    z->spanned_pages = z->nr_free_pages + ((1ul << 20) >> PAGE_SHIFT);   // 1 MiB in use
    z->workingset = 0;
    z->nr_free_resident = 64;          // 64 resident free pages (in small blocks, say)
    __workingset_refault(z, 16);       // a 16-page block refaulted beside them
    unsigned long ws_enough = z->workingset, refaults = z->nr_refault - saved_refault;
    z->nr_free_resident = 8;           // short of resident free memory
    __workingset_refault(z, 16);
    unsigned long ws_short = z->workingset;
    z->workingset = 0;
    z->nr_free_resident = 64;
    z->spanned_pages = z->nr_free_pages + ((64ul << 20) >> PAGE_SHIFT);  // 64 MiB in use
    __workingset_refault(z, 16);
    unsigned long ws_large = z->workingset;
    z->spanned_pages = saved_spanned;
    z->workingset = saved_ws;
    z->nr_free_resident = saved_res;
    z->nr_refault = saved_refault;
    spin_unlock(&z->lock);
    EXPECT_EQ(refaults, 16u);          // still counted as a refault
    EXPECT_EQ(ws_enough, 0u);
    EXPECT_EQ(ws_short, 16u);
    EXPECT_EQ(ws_large, 16u);          // a larger heap: every refault counts
}

TEST(Vmscan, CrossingLowReclaimsColdestDownToHigh)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 4l << 20;       // low 1024 pages, high 768
    options[OPT_DECAY_MS].value = 0;               // no decay: only the watermark acts
    reclaim_everything();
    // 192 order-4 blocks (12 MiB); free every other one (1536 pages, above
    // low), so no two freed blocks are buddies and each stays order 4.  The
    // frees go straight into the zone (__free_one_page), with no tick, so
    // only the explicit pass below reclaims.
    std::vector<blk> blocks;
    for (int i = 0; i < 192; i++)
        blocks.push_back(alloc_filled(4, (uint8_t)(i + 1)));
    std::vector<blk> live;
    std::vector<blk> freed;
    for (size_t i = 0; i < blocks.size(); i++)
        (i % 2 ? freed : live).push_back(blocks[i]);
    zone *z = page_zone(freed[0].pg);
    for (blk &b : freed) {
        ASSERT_EQ(page_zone(b.pg), z);
        spin_lock(&z->lock);
        __free_one_page(z, page_to_pfn(b.pg), b.order, false);
        spin_unlock(&z->lock);
    }
    spin_lock(&z->lock);
    // Whole hugepages an earlier test left counted (nr_thp_kept) would
    // raise every mark by as much (512 pages: low read 1,536 once).
    z->nr_thp_kept = 0;
    __setup_zone_wmarks(z);
    unsigned long low = wmark_pages(z, WMARK_LOW), high = wmark_pages(z, WMARK_HIGH);
    const unsigned long resident = z->nr_free_resident;
    spin_unlock(&z->lock);
    ASSERT_GT(resident, low);     // not under the lock: a failed ASSERT returns
    EXPECT_TRUE(READ_ONCE(vmscan_pending)) << "crossing low flags reclaim";
    unsigned long hits = vm_reclaim_stats.wmark_low_hits;
    EXPECT_GE(hits, 1u);
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    spin_lock(&z->lock);
    EXPECT_LE(z->nr_free_resident, high) << "reclaim goes down to the high watermark";
    // ... and not much further: it stops within one block of high (blocks
    // are order 4 here, or merged pairs of the extra ones).
    EXPECT_GT(z->nr_free_resident + (1ul << 6), high);
    spin_unlock(&z->lock);
    EXPECT_FALSE(READ_ONCE(vmscan_pending));
    ASSERT_NO_FATAL_FAILURE(expect_filled_then_free(live));
}

// Residency: blocks the program freed count every page as resident, though
// it wrote only their first page.  192 order-4 blocks from memory given back
// (not resident), only the first page of each written, plus 16 never
// touched; every other one freed: 1,664 pages counted, 96 resident, over the
// low watermark (1,024).  The pass reads the blocks' residency first: the
// touched ones stay with a count of 1 (exact), their written page resident
// and intact, the untouched ones go back (reported, reading zero), and
// nothing else is given back: the zone is under its watermark in real pages.
// Without the reads (KALLOC_RESIDENCY=0) the same pass gives back written
// pages (second half), which a program then faults in again.
namespace {

struct residency_case {
    std::vector<blk> live, touched, untouched;   // first page written: live and touched
    zone *z = nullptr;
};

residency_case free_blocks_written_in_their_first_page()
{
    residency_case rc;
    reclaim_everything();
    std::vector<blk> all;
    for (int i = 0; i < 208; i++) {
        page *pg = alloc_pages(4, MIGRATE_MOVABLE, nullptr);
        EXPECT_NE(pg, nullptr);
        if (!pg)
            return rc;
        prep_compound_page(pg, 16, PG_large);
        pg->nr_pages = 16;
        uint8_t fill = i < 192 ? (uint8_t)(i + 1) : 0;   // never touched: reads zero
        if (i < 192)
            memset(page_address(pg), fill, PAGE_SIZE);
        all.push_back({pg, 4, fill});
    }
    rc.z = page_zone(all[0].pg);
    for (size_t i = 0; i < all.size(); i++) {
        EXPECT_EQ(page_zone(all[i].pg), rc.z);
        if (i % 2 == 0) {
            rc.live.push_back(all[i]);
            continue;
        }
        (i < 192 ? rc.touched : rc.untouched).push_back(all[i]);
        spin_lock(&rc.z->lock);
        __free_one_page(rc.z, page_to_pfn(all[i].pg), 4, false);
        spin_unlock(&rc.z->lock);
    }
    return rc;
}

// The first page of each live block still holds its fill; then all are freed.
void expect_first_pages_then_free(const std::vector<blk> &live)
{
    for (const blk &b : live) {
        const uint8_t *p = (const uint8_t *)page_address(b.pg);
        for (size_t off : {0ul, 2047ul, 4095ul})
            ASSERT_EQ(p[off], b.fill) << "a live block lost its contents";
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (const blk &b : live)
        free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

} // namespace

TEST(Vmscan, ResidencyCountsTheTouchedPagesOfFreedBlocks)
{
    option_guard og;
    SKIP_UNLESS_RESIDENCY_READS();
    reclaim_stats before = vm_reclaim_stats;
    residency_case rc = free_blocks_written_in_their_first_page();
    ASSERT_EQ(rc.touched.size(), 96u);
    zone *z = rc.z;
    spin_lock(&z->lock);
    z->nr_thp_kept = 0;     // an earlier test's kept hugepages would raise the marks
    __setup_zone_wmarks(z);
    unsigned long low = wmark_pages(z, WMARK_LOW);
    const unsigned long resident = z->nr_free_resident;
    spin_unlock(&z->lock);
    ASSERT_GT(resident, low) << "every page of a freed block counts at first";
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    spin_lock(&z->lock);
    EXPECT_LE(z->nr_free_resident, low) << "the touched pages fit under the watermark";
    for (const blk &b : rc.touched) {
        EXPECT_EQ(b.pg->flags & (PG_buddy | PG_reported | PG_scanned), PG_buddy | PG_scanned)
            << "a block with a written page was given back, or its count was not read";
        EXPECT_EQ(b.pg->order, 4u);
        EXPECT_EQ(b.pg->nr_resident, 1u) << "its count is not the one page written";
    }
    for (const blk &b : rc.untouched)
        EXPECT_EQ(b.pg->flags & (PG_buddy | PG_reported | PG_reclaimed), PG_buddy | PG_reported)
            << "a block never touched is still counted, or counts as a refault when taken again";
    spin_unlock(&z->lock);
    for (const blk &b : rc.touched) {
        EXPECT_EQ(resident_pages(page_address(b.pg), PAGE_SIZE << 4), 1u);
        EXPECT_EQ(((const uint8_t *)page_address(b.pg))[100], b.fill) << "a written page was given back";
    }
    for (const blk &b : rc.untouched)
        EXPECT_EQ(resident_pages(page_address(b.pg), PAGE_SIZE << 4), 0u);
    EXPECT_GE(vm_reclaim_stats.residency_reads - before.residency_reads, 96u + 8u);
    EXPECT_GE(vm_reclaim_stats.residency_untouched - before.residency_untouched, 8u * 16);
    EXPECT_GE(vm_reclaim_stats.residency_uncounted - before.residency_uncounted, 96u * 15 + 8u * 16);
    EXPECT_EQ(vm_reclaim_stats.pgreclaim, before.pgreclaim) << "watermark reclaim gave pages back";
    ASSERT_NO_FATAL_FAILURE(expect_first_pages_then_free(rc.live));
}

// An allocated block as the page allocator's callers leave it (a large
// block's head and tails), so __zone_verify accepts it.
void mark_allocated(page *pg, unsigned order)
{
    prep_compound_page(pg, 1ul << order, PG_large);
    pg->nr_pages = 1u << order;
}

// Every free block's count is an upper bound of its resident pages, and
// exact where it was read (PG_scanned), through the splits and merges that
// follow a pass: checked against mincore on every free block of the zone.
void expect_counts_bound_residency(zone *z, const char *when)
{
    spin_lock(&z->lock);
    std::vector<std::pair<page *, unsigned>> blocks;
    for (unsigned o = 0; o < NR_PAGE_ORDERS; o++)
        for (list_head &l : z->free_area[o].free_list)
            for (list_head *e = l.next; e != &l; e = e->next)
                blocks.push_back({list_entry(e, page, lru), o});
    for (auto [pg, o] : blocks) {
        size_t real = resident_pages(page_address(pg), PAGE_SIZE << o);
        if (pg->flags & PG_reported)
            EXPECT_EQ(real, 0u) << when << ": a reported block of order " << o << " is resident";
        else if (pg->flags & PG_scanned)   // its data pages and its descriptors' pages
            EXPECT_EQ(pg->nr_resident, std::min<size_t>(real + block_descriptor_pages(pg, o), 1ul << o))
                << when << ": a block read as exact (order " << o << ")";
        else
            EXPECT_GE(pg->nr_resident, real) << when << ": a count below the resident pages (order " << o << ")";
    }
    spin_unlock(&z->lock);
}

// A block freed unread and split; then blocks of 64 pages written in their
// first 4, freed (every other one) and read by a pass, then split by
// allocations (written whole, freed again: merges): whatever the pieces,
// their counts stay upper bounds, and exact ones stay exact.  A split once
// marked the halves of an unread block resident whole as read.  An order-8
// block read back resident keeps its descriptors (they went with reported
// blocks only: __zone_verify).
TEST(Vmscan, ResidencyCountsStayBoundsThroughSplitsAndMerges)
{
    option_guard og;
    SKIP_UNLESS_RESIDENCY_READS();
    reclaim_everything();
    // First, with no other resident free block: a block freed written in 4
    // of its 64 pages, unread (no pass), split by an allocation of 4 pages.
    // The allocation takes its first 4 pages (the written ones); the halves
    // left (4..63) are not resident, and must not be counted as read.
    {
        page *a = alloc_pages(6, MIGRATE_MOVABLE, nullptr);
        page *b = alloc_pages(6, MIGRATE_MOVABLE, nullptr);   // its buddy stays: no merge
        ASSERT_NE(a, nullptr);
        ASSERT_NE(b, nullptr);
        mark_allocated(a, 6);
        mark_allocated(b, 6);
        ASSERT_EQ(page_to_pfn(a) ^ 64, page_to_pfn(b)) << "the two blocks are not buddies";
        memset(page_address(a), 0x5a, 4 * PAGE_SIZE);
        zone *za = page_zone(a);
        spin_lock(&za->lock);
        __free_one_page(za, page_to_pfn(a), 6, false);
        page *piece = __rmqueue(za, 2, MIGRATE_MOVABLE, nullptr);
        spin_unlock(&za->lock);
        ASSERT_EQ(piece, a) << "the one resident free block was not the one split";
        expect_counts_bound_residency(za, "after splitting an unread block");
        spin_lock(&za->lock);
        __free_one_page(za, page_to_pfn(piece), 2, false);
        spin_unlock(&za->lock);
        free_pages(b, 6);
        ASSERT_NO_FATAL_FAILURE(verify_all_zones());
        reclaim_everything();
    }
    std::vector<page *> all;
    for (int i = 0; i < 64; i++) {
        page *pg = alloc_pages(6, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        mark_allocated(pg, 6);
        memset(page_address(pg), i + 1, 4 * PAGE_SIZE);
        all.push_back(pg);
    }
    page *big = alloc_pages(8, MIGRATE_MOVABLE, nullptr);
    ASSERT_NE(big, nullptr);
    mark_allocated(big, 8);
    memset(page_address(big), 0x77, PAGE_SIZE);
    zone *z = page_zone(all[0]);
    std::vector<page *> live;
    for (size_t i = 0; i < all.size(); i++) {
        if (i % 2 == 0) {
            live.push_back(all[i]);
            continue;
        }
        spin_lock(&z->lock);
        __free_one_page(z, page_to_pfn(all[i]), 6, false);
        spin_unlock(&z->lock);
    }
    spin_lock(&z->lock);
    __free_one_page(z, page_to_pfn(big), 8, false);
    spin_unlock(&z->lock);
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    expect_counts_bound_residency(z, "after the pass");
    // Splits and merges: 64 order-2 blocks written whole, then freed.
    std::vector<page *> small;
    for (int i = 0; i < 64; i++) {
        page *pg = alloc_pages(2, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(pg, nullptr);
        mark_allocated(pg, 2);
        memset(page_address(pg), 0x33, 4 * PAGE_SIZE);
        small.push_back(pg);
    }
    expect_counts_bound_residency(z, "after the splits");
    for (page *pg : small) {
        spin_lock(&z->lock);
        __free_one_page(z, page_to_pfn(pg), 2, false);
        spin_unlock(&z->lock);
    }
    expect_counts_bound_residency(z, "after the merges");
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (page *pg : live)
        free_pages(pg, 6);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// Phantom pages: in rounds, three order-9 blocks written in their first 64
// pages are freed, the zone over its low watermark (1,024 pages) only by the
// pages never touched (1,536 counted, 192 written).  The first passes read
// the blocks (their counts fall to the written pages) and learn that most of
// an unread block's count is phantom (phantom_ratio); after that such frees
// start no pass (each was a seccomp check and a mincore per block: jq's
// join ran 134-150K of them).  Blocks then freed written whole are over the
// watermark in real pages: a pass runs again, reclaims down to the high
// watermark, and the ratio falls.  Fails without the discount (a pass every
// round).  Not in a small heap (under 4 MiB in use): there the watermark is
// up to half the use, and no count is discounted.
TEST(Vmscan, PhantomPagesOfUnreadBlocksStopStartingPasses)
{
    option_guard og;
    SKIP_UNLESS_RESIDENCY_READS();
    reclaim_everything();
    // 8 MiB in use beside them (never written): not a small heap, where the
    // watermark check discounts nothing.
    page *ballast[2];
    for (page *&b : ballast) {
        b = alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, nullptr);
        ASSERT_NE(b, nullptr);
        mark_allocated(b, MAX_ORDER);
    }
    constexpr unsigned order = 9, nr = 3, written = 64, rounds = 16;
    zone *z = nullptr;
    std::vector<unsigned long> reads;   // residency reads per round
    std::vector<blk> live;              // one block per round stays, written whole
    for (unsigned round = 0; round < rounds; round++) {
        page *pg[nr];
        for (unsigned i = 0; i < nr; i++) {
            pg[i] = alloc_pages(order, MIGRATE_MOVABLE, nullptr);
            ASSERT_NE(pg[i], nullptr);
            mark_allocated(pg[i], order);
            memset(page_address(pg[i]), (int)round + 1, written * PAGE_SIZE);
        }
        if (round % 4 == 0)
            live.push_back(alloc_filled(2, (uint8_t)(round + 1)));
        z = page_zone(pg[0]);
        unsigned long before = vm_reclaim_stats.residency_reads;
        for (unsigned i = 0; i < nr; i++) {
            ASSERT_EQ(page_zone(pg[i]), z);
            free_pages(pg[i], order);
        }
        reads.push_back(vm_reclaim_stats.residency_reads - before);
    }
    EXPECT_GE(reads[0], 1u) << "the first crossing read no block";
    unsigned long late = 0;
    for (unsigned r = rounds / 2; r < rounds; r++)
        late += reads[r];
    EXPECT_EQ(late, 0u) << "frees over the watermark by phantom pages alone still start passes";
    spin_lock(&z->lock);
    unsigned learnt = z->phantom_ratio;
    spin_unlock(&z->lock);
    EXPECT_GE(learnt, PHANTOM_ONE / 3) << "the reads did not teach the ratio";
    // Now such frees written whole: 2,048 pages over the watermark; the
    // discount is at most half the low watermark (512 pages).
    unsigned long passes = vm_reclaim_stats.direct_reclaim;
    for (unsigned round = 0; round < 2; round++) {
        page *pg[nr + 1];
        for (unsigned i = 0; i < nr + 1; i++) {
            pg[i] = alloc_pages(order, MIGRATE_MOVABLE, nullptr);
            ASSERT_NE(pg[i], nullptr);
            mark_allocated(pg[i], order);
            memset(page_address(pg[i]), 0x6b, PAGE_SIZE << order);
        }
        for (unsigned i = 0; i < nr + 1; i++)
            free_pages(pg[i], order);
    }
    EXPECT_GT(vm_reclaim_stats.direct_reclaim, passes) << "real pages over the watermark started no pass";
    spin_lock(&z->lock);
    __setup_zone_wmarks(z);
    EXPECT_LE(z->nr_free_resident, wmark_pages(z, WMARK_LOW)) << "the pass left real pages over low";
    EXPECT_LT(z->phantom_ratio, learnt) << "reads of wholly written blocks did not lower the ratio";
    spin_unlock(&z->lock);
    for (page *b : ballast)
        free_pages(b, MAX_ORDER);
    spin_lock(&z->lock);
    if (zone_small_heap(z))
        EXPECT_EQ(zone_free_resident_seen(z), z->nr_free_resident) << "a small heap's count was discounted";
    spin_unlock(&z->lock);
    ASSERT_NO_FATAL_FAILURE(expect_filled_then_free(live));
}

TEST(Vmscan, WithoutResidencyTheTouchedPagesGoBack)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 4l << 20;
    options[OPT_DECAY_MS].value = 0;
    options[OPT_RESIDENCY].value = 0;
    reclaim_stats before = vm_reclaim_stats;
    residency_case rc = free_blocks_written_in_their_first_page();
    ASSERT_EQ(rc.touched.size(), 96u);
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    unsigned given_back = 0;
    for (const blk &b : rc.touched)
        given_back += resident_pages(page_address(b.pg), PAGE_SIZE << 4) == 0;
    // Down to high (768 pages) in blocks of 16 counted whole: 56 or more of
    // the 96 written pages go back.
    EXPECT_GE(given_back, 50u);
    EXPECT_EQ(vm_reclaim_stats.residency_reads, before.residency_reads);
    ASSERT_NO_FATAL_FAILURE(expect_first_pages_then_free(rc.live));
}

// Free memory over the watermark that is all order-0 fragments (each
// between allocated pages, so none can merge) is given back too once the
// age list has nothing left: a thousand sleeping threads' pinned slabs left
// 105 MiB of such fragments resident.  Fails with reclaim of order >= 2 only.
TEST(Vmscan, OrderZeroFragmentsOverTheWatermarkAreReclaimed)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 1l << 20;       // low 256 pages, high 192
    options[OPT_DECAY_MS].value = 0;               // only the watermark acts
    reclaim_everything();
    std::vector<blk> blocks;
    for (int i = 0; i < 1024; i++)
        blocks.push_back(alloc_filled(0, (uint8_t)(i + 1)));
    zone *z = page_zone(blocks[0].pg);
    std::vector<blk> live, freed;
    for (blk &b : blocks) {
        ASSERT_EQ(page_zone(b.pg), z);
        // Odd pages freed: each buddy (pfn ^ 1) is live, so each stays order 0.
        (page_to_pfn(b.pg) & 1 ? freed : live).push_back(b);
    }
    for (blk &b : freed) {
        spin_lock(&z->lock);
        __free_one_page(z, page_to_pfn(b.pg), 0, false);
        spin_unlock(&z->lock);
    }
    spin_lock(&z->lock);
    __setup_zone_wmarks(z);
    unsigned long high = wmark_pages(z, WMARK_HIGH);
    unsigned long small_resident = 0;
    for (blk &b : freed)
        if ((b.pg->flags & PG_buddy) && b.pg->order < VMSCAN_MIN_ORDER && !(b.pg->flags & PG_reported))
            small_resident++;
    spin_unlock(&z->lock);
    ASSERT_GT(small_resident, 2 * high) << "the frees left order-0 fragments over the watermark";
    unsigned long small = vm_reclaim_stats.pgreclaim_small;
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    EXPECT_GT(vm_reclaim_stats.pgreclaim_small, small) << "no order-0/1 block was given back";
    spin_lock(&z->lock);
    unsigned long reported = 0;
    for (blk &b : freed) {
        page *h = b.pg;   // its own head unless it merged: then a reported merge is fine too
        if ((h->flags & PG_buddy) && (h->flags & PG_reported))
            reported++;
    }
    EXPECT_GE(reported, std::min<unsigned long>(VMSCAN_SMALL_MAX, small_resident - high) / 2)
        << "order-0 fragments stayed resident";
    spin_unlock(&z->lock);
    ASSERT_NO_FATAL_FAILURE(expect_filled_then_free(live));
}

// Order-0 fragments inside pageblocks that are whole hugepages (less than
// half free) are kept resident, as the age list's blocks are, and count
// towards the kept pages that raise the watermarks: else the free memory
// stays over WMARK_LOW after the pass, and every later free starts another
// pass that finds only them (perl clearing big hashes: 14,000-17,000 such
// passes a run).  Fails with shrink_zone_small's skipped blocks uncounted.
TEST(Vmscan, FragmentsKeptInAHugepageRaiseTheWatermark)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 1l << 20;       // low 256 pages
    options[OPT_DECAY_MS].value = 0;               // only the watermark acts
    options[OPT_THP].value = THP_OPT_FIRST_FAULT;  // whole hugepages are kept
    reclaim_everything();
    std::vector<blk> blocks;
    for (int i = 0; i < 2048; i++)
        blocks.push_back(alloc_filled(0, (uint8_t)(i + 1)));
    zone *z = page_zone(blocks[0].pg);
    std::vector<unsigned long> pbs;
    for (blk &b : blocks) {
        ASSERT_EQ(page_zone(b.pg), z);
        unsigned long pb = page_to_pfn(b.pg) >> pageblock_order;
        if (std::find(pbs.begin(), pbs.end(), pb) == pbs.end())
            pbs.push_back(pb);
    }
    std::vector<uint8_t> saved;
    for (unsigned long pb : pbs) {
        saved.push_back(z->pageblock_thp[pb]);
        z->pageblock_thp[pb] = PB_THP_HUGE | PB_THP_COLLAPSED;     // one whole hugepage each
    }
    std::vector<blk> live, freed;
    for (blk &b : blocks)      // a quarter freed, each buddy live: order-0 fragments
        (page_to_pfn(b.pg) % 4 == 1 ? freed : live).push_back(b);
    for (blk &b : freed) {
        spin_lock(&z->lock);
        __free_one_page(z, page_to_pfn(b.pg), 0, false);
        spin_unlock(&z->lock);
    }
    spin_lock(&z->lock);
    z->nr_thp_kept = 0;
    __setup_zone_wmarks(z);
    const unsigned long low_before = wmark_pages(z, WMARK_LOW), resident = z->nr_free_resident;
    if (resident <= low_before + 128) {
        spin_unlock(&z->lock);      // a failed ASSERT under the lock would hang the next test
        FAIL() << "the frees left the fragments under the watermark: " << resident << " <= " << low_before
               << " + 128";
    }
    // The pageblocks the blocks filled (a thread that changed CPUs on a
    // busy machine may have taken its last pages from a pageblock it used
    // only a little of: that one is not a dense hugepage, so it is not
    // marked one, and its fragments may go back).
    std::vector<unsigned long> dense;
    for (size_t i = 0; i < pbs.size(); i++) {
        if (z->pageblock_nr_free[pbs[i]] < KHUGEPAGED_SPARSE_FREE)
            dense.push_back(pbs[i]);
        else
            z->pageblock_thp[pbs[i]] = saved[i];
    }
    spin_unlock(&z->lock);
    ASSERT_GE(dense.size(), 2u) << "the 2,048 pages filled fewer than two pageblocks";
    auto in_dense = [&](const blk &b) {
        return std::find(dense.begin(), dense.end(), page_to_pfn(b.pg) >> pageblock_order) != dense.end();
    };
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    spin_lock(&z->lock);
    unsigned long reported = 0, in_huge = 0;
    for (blk &b : freed) {
        if (!in_dense(b))
            continue;
        in_huge++;
        reported += (b.pg->flags & PG_buddy) && (b.pg->flags & PG_reported);
    }
    EXPECT_GE(in_huge, 256u);
    EXPECT_EQ(reported, 0u) << "a fragment of a whole hugepage was given back (splitting it)";
    EXPECT_GE(z->nr_thp_kept, in_huge / 2) << "the kept fragments were not counted";
    EXPECT_LE(z->nr_free_resident, wmark_pages(z, WMARK_LOW))
        << "still over WMARK_LOW: every free would start another pass";
    spin_unlock(&z->lock);
    for (size_t i = 0; i < pbs.size(); i++)
        z->pageblock_thp[pbs[i]] = saved[i];
    ASSERT_NO_FATAL_FAILURE(expect_filled_then_free(live));
}

// While reclaim is active (a free crossed WMARK_LOW and the zone has not
// allocated since), a pass drains the per-CPU pagesets whole, not down to 4
// batches: pages a pageset keeps are resident and keep their free buddies
// from merging, which after a freed burst left up to 60 pages scattered over
// the zone, with resident order-0/1 fragments beside them and more free
// block heads (a descriptor page each).  Fails with the former keep of
// 4 batches (the pageset below holds fewer than that).
TEST(Vmscan, APassWithReclaimActiveDrainsThePagesetsWhole)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 1l << 20;
    options[OPT_DECAY_MS].value = 0;
    reclaim_everything();
    drain_all_pages();
    // Live pages, and a few freed order-0 pages the CPU's pageset keeps.
    std::vector<blk> live, freed;
    for (int i = 0; i < 64; i++)
        (i % 4 == 3 ? freed : live).push_back(alloc_filled(0, (uint8_t)(i + 1)));
    zone *z = page_zone(live[0].pg);
    drain_all_pages();   // what the refills left (their size depends on earlier tests' pcp high)
    for (blk &b : freed)
        free_pages(b.pg, 0);
    ASSERT_GT(zone_pcp_pages(z), 0u) << "the pageset holds the freed pages";
    ASSERT_LE(zone_pcp_pages(z), 16u);
    spin_lock(&z->lock);
    WRITE_ONCE(z->flags, z->flags | ZONE_RECLAIM_ACTIVE);
    spin_unlock(&z->lock);
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    EXPECT_EQ(zone_pcp_pages(z), 0u) << "a pass with reclaim active leaves pages on the pagesets";
    ASSERT_NO_FATAL_FAILURE(expect_filled_then_free(live));
}

TEST(Vmscan, ReclaimTakesTheColdestBlocksFirst)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 64l << 20;
    options[OPT_DECAY_MS].value = 1000;
    reclaim_everything();
    // Two groups freed 5 s apart (injected clock): decay at 1 s after the
    // second group's free takes exactly the first group.
    // Blocks at 4k+1 go in group a, 4k+3 in group b, the even ones stay
    // allocated: no freed block has a free buddy, so none merges (a merge
    // makes a block young again).
    std::vector<blk> a, b, keep;
    for (int i = 0; i < 128; i++) {
        blk x = alloc_filled(5, (uint8_t)(0x11 + i % 4));
        (i % 2 == 0 ? keep : i % 4 == 1 ? a : b).push_back(x);
    }
    // The slow paths' own timed passes would decay on their own once the
    // clock jumps: hold them off, so only the explicit passes below run.
    WRITE_ONCE(vmscan_next_tick, vmscan_now() + 1000000);
    for (blk &x : a)
        free_pages(x.pg, x.order);
    vmscan_clock_skew += 5000;
    WRITE_ONCE(vmscan_next_tick, vmscan_now() + 1000000);
    for (blk &y : b)
        free_pages(y.pg, y.order);
    // The blocks just freed are young; the older ones are 5 s old.
    unsigned long decayed_before = vm_reclaim_stats.pgdecay;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    unsigned long decayed = vm_reclaim_stats.pgdecay - decayed_before;
    EXPECT_GE(decayed, a.size() << 5) << "every old block is given back";
    for (blk &x : a)
        EXPECT_EQ(resident_pages(page_address(x.pg), PAGE_SIZE << 5), 0u)
            << "an old free block is still resident";
    size_t young_resident = 0;
    for (blk &y : b)
        young_resident += resident_pages(page_address(y.pg), PAGE_SIZE << 5);
    EXPECT_EQ(young_resident, b.size() << 5) << "young free blocks are kept";
    // After another period they go too.
    vmscan_clock_skew += 1500;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    for (blk &y : b)
        EXPECT_EQ(resident_pages(page_address(y.pg), PAGE_SIZE << 5), 0u);
    for (blk &k : keep)
        ASSERT_NO_FATAL_FAILURE(expect_filled(k));
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (blk &k : keep)
        free_pages(k.pg, k.order);
    WRITE_ONCE(vmscan_next_tick, vmscan_now());
}

TEST(Vmscan, DecayedMemoryReadsAsZeroWhenReused)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 64l << 20;
    options[OPT_DECAY_MS].value = 1000;
    reclaim_everything();
    blk x = alloc_filled(6, 0xab);
    free_pages(x.pg, x.order);
    vmscan_clock_skew += 2000;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    // Whatever block comes back now is reported (known zero), and is zero.
    bool zeroed = false;
    page *pg = alloc_pages(6, MIGRATE_MOVABLE, &zeroed);
    ASSERT_NE(pg, nullptr);
    if (zeroed) {
        const uint8_t *p = (const uint8_t *)page_address(pg);
        for (size_t off = 0; off < (PAGE_SIZE << 6); off += 257)
            ASSERT_EQ(p[off], 0);
    }
    prep_compound_page(pg, 64, PG_large);
    free_pages(pg, 6);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Vmscan, ReclaimNeverTakesLiveMemoryUnderConcurrentUse)
{
    // One thread reclaims as hard as it can (watermarks at zero, decay of
    // everything) while another allocates, fills, checks and frees blocks of
    // every order: no live block may ever be given back, and every page stays
    // accounted.
    option_guard og;
    options[OPT_FREE_HIGH].value = 4096;           // low: one page
    options[OPT_DECAY_MS].value = 1;
    std::atomic<bool> stop{false};
    std::thread reclaimer([&] {
        while (!stop.load()) {
            vmscan_clock_skew += 10;
            vmscan_run(vmscan_now(), true, true);
        }
    });
    std::mt19937_64 rng(7);
    std::vector<blk> live;
    // The steps run in a function of their own, so that a failed assertion
    // (an allocation refused under strict overcommit when another process
    // has taken the commit limit) stops and joins the reclaimer and reports
    // the failure, instead of std::terminate on a joinable thread.
    auto steps = [&] {
        for (int step = 0; step < 6000; step++) {
            if (live.size() < 200 && (live.empty() || rng() % 100 < 55)) {
                unsigned order = rng() % 100 < 70 ? rng() % 4 : 4 + rng() % 7;
                blk b = alloc_filled(order, (uint8_t)(1 + rng() % 250));
                ASSERT_NE(b.pg, nullptr) << "order " << order << ", step " << step;
                live.push_back(b);
            } else {
                size_t i = rng() % live.size();
                ASSERT_NO_FATAL_FAILURE(expect_filled(live[i]));
                free_pages(live[i].pg, live[i].order);
                live[i] = live.back();
                live.pop_back();
            }
        }
    };
    steps();
    stop = true;
    reclaimer.join();
    ASSERT_FALSE(HasFatalFailure());
    for (blk &b : live)
        ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    EXPECT_EQ(total(&zone::nr_isolated), 0u) << "every isolated block went back";
    for (blk &b : live)
        free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Vmscan, TrimReturnsEveryFreePage)
{
    std::vector<blk> v;
    for (unsigned o = 0; o <= MAX_ORDER; o++)
        v.push_back(alloc_filled(o, 0x3c));
    for (blk &b : v)
        free_pages(b.pg, b.order);
    zone_reclaim_all(0);
    EXPECT_EQ(total(&zone::nr_free_resident), 0u);
    EXPECT_EQ(total(&zone::nr_free_lru), 0u);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// Reported free blocks of order 8 and up give back their descriptors past
// the head's page (PG_desc_off); taken again, every page of them has a
// working descriptor (its zone, from its address), and what is carved from
// them is intact.
TEST(Vmscan, ReportedBlocksGiveTheirDescriptorsBack)
{
    std::vector<blk> v;
    for (unsigned o = 8; o < MAX_ORDER; o++)
        for (int i = 0; i < 3; i++)
            v.push_back(alloc_filled(o, (uint8_t)(o * 3 + i)));
    // Keep every other block, so the freed ones cannot all merge upwards.
    std::vector<blk> kept, freed;
    for (size_t i = 0; i < v.size(); i++)
        (i % 2 ? kept : freed).push_back(v[i]);
    for (blk &b : freed)
        free_pages(b.pg, b.order);
    zone_reclaim_all(0);
    unsigned long off = 0;
    for (blk &b : freed) {
        zone *z = page_zone(b.pg);
        spin_lock(&z->lock);
        // The head of the free block now holding b (b itself, or a merge).
        for (unsigned o = b.order; o <= MAX_ORDER; o++) {
            unsigned long pfn = page_to_pfn(b.pg) & ~((1ul << o) - 1);
            page *h = pfn_to_page(z, pfn);
            if ((h->flags & PG_buddy) && h->order >= b.order) {
                off += (h->flags & PG_desc_off) != 0;
                EXPECT_TRUE(h->flags & PG_reported);
                break;
            }
        }
        spin_unlock(&z->lock);
    }
    EXPECT_GT(off, 0u) << "no reported block of order >= 8 gave its descriptors back";
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    // Take small and large pieces of them again.
    std::vector<blk> again;
    for (int i = 0; i < 40; i++) {
        blk b = alloc_filled((unsigned)(i % 9), (uint8_t)(0x40 + i));
        ASSERT_NE(b.pg, nullptr);
        for (unsigned long k = 0; k < (1ul << b.order); k++)
            ASSERT_EQ(page_zone(&b.pg[k]), page_zone_of((uintptr_t)page_address(b.pg))) << "page " << k;
        again.push_back(b);
    }
    for (blk &b : kept)
        ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    for (blk &b : again)
        ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (blk &b : again)
        free_pages(b.pg, b.order);
    for (blk &b : kept)
        free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// A block whose descriptors are off, split to hand out a smaller piece,
// keeps them off in its halves of order 8 and up (only their heads are
// written): the first split of a fresh 4 MiB block touched all 64 KiB of its
// mem_map, and every program paid for it at start-up.
TEST(Vmscan, SplitKeepsTheHalvesDescriptorsOff)
{
    blk b = alloc_filled(MAX_ORDER, 0x5e);
    ASSERT_NE(b.pg, nullptr);
    zone *z = page_zone(b.pg);
    unsigned long start = page_to_pfn(b.pg);
    free_pages(b.pg, b.order);
    zone_reclaim_all(0);
    spin_lock(&z->lock);
    bool off = (b.pg->flags & PG_buddy) && b.pg->order == MAX_ORDER && (b.pg->flags & PG_desc_off);
    spin_unlock(&z->lock);
    ASSERT_TRUE(off) << "the freed 4 MiB block is not reported with its descriptors off";
    // Take order-6 pieces until one comes from the block (other free
    // blocks are taken first when there are some).
    std::vector<blk> taken;
    bool inside = false;
    for (int i = 0; i < 4096 && !inside; i++) {   // earlier tests in the process may leave
                                                   // many free blocks (up to 256 MiB here)
        taken.push_back(alloc_filled(6, (uint8_t)(0x60 + i)));
        ASSERT_NE(taken.back().pg, nullptr);
        unsigned long pfn = page_to_pfn(taken.back().pg);
        inside = page_zone(taken.back().pg) == z && pfn >= start && pfn < start + (1ul << MAX_ORDER);
    }
    ASSERT_TRUE(inside);
    unsigned long halves = 0;
    spin_lock(&z->lock);
    for (unsigned o = 8u; o < MAX_ORDER; o++)
        for (unsigned long pfn = start; pfn < start + (1ul << MAX_ORDER); pfn += 1ul << o) {
            page *h = pfn_to_page(z, pfn);
            if ((h->flags & PG_buddy) && h->order == o && (h->flags & PG_reported)) {
                halves++;
                EXPECT_TRUE(h->flags & PG_desc_off) << "a reported half of order " << o;
                EXPECT_EQ(page_zone(h), z);
            }
        }
    spin_unlock(&z->lock);
    EXPECT_GE(halves, 2u);   // the halves of order 9 and 8 (order 7 and 6 ones carry no whole descriptor page)
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (blk &t : taken) {
        ASSERT_NO_FATAL_FAILURE(expect_filled(t));
        for (unsigned long k = 0; k < (1ul << t.order); k++)
            ASSERT_EQ(page_zone(&t.pg[k]), page_zone(t.pg)) << "page " << k;
        free_pages(t.pg, t.order);
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Vmscan, IdleZoneTopIsUnmappedAndDescriptorsGiveBack)
{
    option_guard og;
    options[OPT_DECAY_MS].value = 1000;
    // Grow a zone by a burst, free it, let decay run twice (give back, then
    // unmap the idle top): the zone shrinks, and it grows again on demand
    // with working descriptors.
    std::vector<blk> burst;
    for (int i = 0; i < 24; i++)
        burst.push_back(alloc_filled(MAX_ORDER, (uint8_t)i));
    unsigned long spanned_before = total(&zone::spanned_pages);
    for (blk &b : burst)
        free_pages(b.pg, b.order);
    vmscan_clock_skew += 2000;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    vmscan_clock_skew += 2000;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_LT(total(&zone::spanned_pages), spanned_before) << "the idle top was not unmapped";
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    burst.clear();
    for (int i = 0; i < 24; i++) {
        blk b = alloc_filled(MAX_ORDER - 1 - i % 3, (uint8_t)(i + 9));
        ASSERT_NE(b.pg, nullptr);
        EXPECT_EQ(page_zone(b.pg), page_zone_of((uintptr_t)page_address(b.pg)));
        burst.push_back(b);
    }
    for (blk &b : burst)
        ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (blk &b : burst)
        free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Vmscan, CgroupPressureLowersTheWatermarksToZero)
{
    option_guard og;
    options[OPT_FREE_HIGH].value = 256l << 20;     // normally keeps everything
    options[OPT_DECAY_MS].value = 0;
    reclaim_everything();
    std::vector<blk> v;
    for (int i = 0; i < 8; i++)
        v.push_back(alloc_filled(MAX_ORDER, 0x5a));
    for (blk &b : v)
        free_pages(b.pg, b.order);
    unsigned long resident = total(&zone::nr_free_resident);
    ASSERT_GE(resident, 8ul << MAX_ORDER);
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_GE(total(&zone::nr_free_resident), 8ul << MAX_ORDER) << "no pressure: kept";
    // A limit just above the RSS: pressure is full and everything reclaimable
    // goes back.
    uint64_t rss = os_resident_bytes();
    ASSERT_GT(rss, 0u);
    vmscan_set_cgroup_limit(rss + rss / 20);
    EXPECT_EQ(vmscan_cgroup_pressure(), 1024u);
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_EQ(total(&zone::nr_free_lru), 0u);
    // Far from the limit: no pressure.
    vmscan_set_cgroup_limit(rss * 4);
    EXPECT_EQ(vmscan_cgroup_pressure(), 0u);
    vmscan_set_cgroup_limit(0);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// A real cgroup: create one under ours with a memory limit, move a forked
// child into it, and check that the child reads the limit.
TEST(Vmscan, ReadsTheLimitOfARealCgroup)
{
    cgroup_limits mine;
    cgroup_read_limits(&mine, "/sys/fs/cgroup");
    if (mine.version == 0)
        GTEST_SKIP() << "no memory cgroup controller is visible (/proc/self/cgroup)";
    // Find our group's directory again (v2: unified mount; v1: memory).
    char self[2048];
    ASSERT_GT(os_read_file("/proc/self/cgroup", self, sizeof(self)), 0);
    std::string path;
    for (const char *line = self; *line;) {
        const char *nl = strchr(line, '\n');
        std::string l(line, nl ? nl - line : strlen(line));
        size_t c1 = l.find(':'), c2 = l.find(':', c1 + 1);
        std::string ctrl = l.substr(c1 + 1, c2 - c1 - 1), rel = l.substr(c2 + 1);
        if (mine.version == 2 && l[0] == '0' && ctrl.empty())
            path = "/sys/fs/cgroup" + rel;
        if (mine.version == 1 && (ctrl == "memory" || ctrl.find("memory") != std::string::npos))
            path = "/sys/fs/cgroup/memory" + rel;
        if (!nl)
            break;
        line = nl + 1;
    }
    ASSERT_FALSE(path.empty());
    std::string dir = path + "/kalloc-test-" + std::to_string(getpid());
    if (mkdir(dir.c_str(), 0755) != 0)
        GTEST_SKIP() << "cannot create " << dir << ": " << strerror(errno)
                     << " (not root, or the hierarchy is read-only)";
    std::string limit_file = dir + (mine.version == 2 ? "/memory.max" : "/memory.limit_in_bytes");
    std::string high_file = dir + (mine.version == 2 ? "/memory.high" : "/memory.soft_limit_in_bytes");
    auto write_file = [](const std::string &f, const std::string &v) {
        int fd = open(f.c_str(), O_WRONLY);
        if (fd < 0)
            return false;
        bool ok = write(fd, v.data(), v.size()) == (ssize_t)v.size();
        close(fd);
        return ok;
    };
    bool ok = write_file(limit_file, std::to_string(256l << 20)) &&
              write_file(high_file, std::to_string(192l << 20));
    if (!ok) {
        rmdir(dir.c_str());
        GTEST_SKIP() << "cannot set a memory limit in " << dir;
    }
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (!write_file(dir + "/cgroup.procs", std::to_string(getpid())))
            _exit(3);
        cgroup_limits l;
        cgroup_read_limits(&l, "/sys/fs/cgroup");
        if (l.max != (256ul << 20))
            _exit(4);
        if (l.high != (192ul << 20))
            _exit(5);
        vmscan_reread_cgroup();
        _exit(vmscan_cgroup_limit() == (192ul << 20) ? 0 : 6);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    rmdir(dir.c_str());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "3: could not join the cgroup; 4: max not read; "
                                         "5: high not read; 6: vmscan did not pick it up";
}

// Pages held (allocated, never touched: not resident) so the zone is not a
// small heap, whose pageblocks khugepaged leaves small
// (KHUGEPAGED_FAULT_MIN_INUSE).
struct thp_ballast {
    page *pg[KHUGEPAGED_FAULT_MIN_INUSE >> MAX_ORDER] = {};
    thp_ballast()
    {
        for (auto &p : pg) {
            p = alloc_pages(MAX_ORDER, MIGRATE_MOVABLE, nullptr);
            EXPECT_NE(p, nullptr);
            if (p) {
                prep_compound_page(p, 1ul << MAX_ORDER, PG_large);
                p->nr_pages = 1u << MAX_ORDER;
            }
        }
    }
    ~thp_ballast()
    {
        for (auto p : pg)
            if (p)
                free_pages(p, MAX_ORDER);
        vmscan_run(vmscan_now(), true, true);   /* its free blocks back to small pages */
    }
};

// KALLOC_THP=1 (collapses only) for a test under an option_guard; false when
// the machine has transparent hugepages off (the test skips).
static bool thp_collapse_mode()
{
    options[OPT_THP].value = 1;
    khugepaged_init();
    return thp_enabled != THP_NEVER;
}

TEST(Khugepaged, DensePageblocksAreMadeHugeAndSparseOnesNot)
{
    option_guard og;
    if (!thp_collapse_mode())
        GTEST_SKIP() << "transparent hugepages are off on this machine";
    thp_ballast ballast;
    // A whole pageblock allocated: dense.
    blk b = alloc_filled(pageblock_order, 0x42);
    ASSERT_NE(b.pg, nullptr);
    zone *z = page_zone(b.pg);
    unsigned long pb = page_to_pfn(b.pg) >> pageblock_order;
    EXPECT_EQ(z->pageblock_nr_free[pb], 0u);
    unsigned long madvised = vm_reclaim_stats.thp_madvised;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_TRUE(z->pageblock_thp[pb] & PB_THP_HUGE);
    EXPECT_GT(vm_reclaim_stats.thp_madvised, madvised);
    ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    // Freed: sparse, no hugepages.
    free_pages(b.pg, b.order);
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_FALSE(z->pageblock_thp[pb] & PB_THP_HUGE);
    EXPECT_TRUE(z->pageblock_thp[pb] & PB_THP_NOHUGE);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// A pageblock the free lists call dense (none of its pages free) whose
// contents the layer above says are mostly free (slabs of free objects, or
// holes) is not made huge: collapsing it would make all of that resident.
// The same block is made huge once its contents are said to be dense.
unsigned long fake_free_bytes;
unsigned long fake_pageblock_free_bytes(zone *, unsigned long) { return fake_free_bytes; }

TEST(Khugepaged, DenseFreeListsButSparseContentsStaySmall)
{
    option_guard og;
    if (!thp_collapse_mode())
        GTEST_SKIP() << "transparent hugepages are off on this machine";
    thp_ballast ballast;
    blk b = alloc_filled(pageblock_order, 0x42);
    ASSERT_NE(b.pg, nullptr);
    zone *z = page_zone(b.pg);
    unsigned long pb = page_to_pfn(b.pg) >> pageblock_order;
    EXPECT_EQ(z->pageblock_nr_free[pb], 0u);
    khugepaged_register_free_bytes(fake_pageblock_free_bytes);
    fake_free_bytes = (pageblock_nr_pages << PAGE_SHIFT) * 3 / 4;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_FALSE(z->pageblock_thp[pb] & PB_THP_HUGE) << "sparse contents were made huge";
    fake_free_bytes = 0;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_TRUE(z->pageblock_thp[pb] & PB_THP_HUGE) << "dense contents were left small";
    khugepaged_register_free_bytes(nullptr);
    ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// khugepaged_split_underused counts a kept pageblock (512 descriptors)
// only when enough has been freed in its zone since it was last counted
// dense for it to have become half free: fragmentation's free phase counted
// the same blocks on every watermark pass (21% of its instructions).
unsigned fake_counts;
unsigned long counted_free_bytes(zone *, unsigned long)
{
    fake_counts++;
    return fake_free_bytes;
}

TEST(Khugepaged, RangesWhereAFaultMayMapAHugepage)
{
    // malloc/large.h's fault-around neither faults in nor probes a block
    // where a fault may map a hugepage: the flags of every pageblock the
    // range meets, and the system's mode, decide.
    blk b = alloc_filled(pageblock_order + 1, 0x24);   // two pageblocks
    ASSERT_NE(b.pg, nullptr);
    zone *z = page_zone(b.pg);
    const unsigned long pfn = page_to_pfn(b.pg), pb = pfn >> pageblock_order;
    const uint8_t saved0 = z->pageblock_thp[pb], saved1 = z->pageblock_thp[pb + 1];
    const thp_mode saved_mode = thp_enabled;
    const unsigned long span = 2 * pageblock_nr_pages;
    for (thp_mode mode : {THP_NEVER, THP_MADVISE, THP_ALWAYS}) {
        thp_enabled = mode;
        z->pageblock_thp[pb] = z->pageblock_thp[pb + 1] = 0;
        EXPECT_EQ(khugepaged_range_may_be_huge(z, pfn, span), mode == THP_ALWAYS) << "mode " << mode;
        z->pageblock_thp[pb] = z->pageblock_thp[pb + 1] = PB_THP_NOHUGE;
        EXPECT_FALSE(khugepaged_range_may_be_huge(z, pfn, span)) << "mode " << mode;
        for (uint8_t f : {(uint8_t)PB_THP_HUGE, (uint8_t)PB_THP_FAULT, (uint8_t)PB_THP_COLLAPSED}) {
            z->pageblock_thp[pb + 1] = f;       // only the second pageblock
            EXPECT_EQ(khugepaged_range_may_be_huge(z, pfn, span), mode != THP_NEVER)
                << "mode " << mode << " flags " << (unsigned)f;
            EXPECT_FALSE(khugepaged_range_may_be_huge(z, pfn, pageblock_nr_pages))
                << "the first pageblock alone";
            EXPECT_EQ(khugepaged_range_may_be_huge(z, pfn + pageblock_nr_pages - 1, 2), mode != THP_NEVER)
                << "two pages across the boundary";
            z->pageblock_thp[pb + 1] = PB_THP_NOHUGE;
        }
        z->pageblock_thp[pb] = PB_HUGETLB;
        EXPECT_TRUE(khugepaged_range_may_be_huge(z, pfn, 1)) << "hugetlb, mode " << mode;
    }
    thp_enabled = saved_mode;
    z->pageblock_thp[pb] = saved0;
    z->pageblock_thp[pb + 1] = saved1;
    ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Khugepaged, ADenseBlockIsCountedAgainOnlyAfterEnoughFrees)
{
    option_guard og;
    options[OPT_THP].value = THP_OPT_FIRST_FAULT;
    blk b = alloc_filled(pageblock_order, 0x42);
    ASSERT_NE(b.pg, nullptr);
    zone *z = page_zone(b.pg);
    unsigned long pb = page_to_pfn(b.pg) >> pageblock_order;
    uint8_t saved = z->pageblock_thp[pb];
    z->pageblock_thp[pb] = PB_THP_HUGE | PB_THP_COLLAPSED;   /* one whole hugepage */
    z->pageblock_split_next[pb] = 0;                           /* not counted yet */
    khugepaged_register_free_bytes(counted_free_bytes);
    fake_counts = 0;
    const unsigned long quarter = pageblock_nr_pages / 4;
    fake_free_bytes = quarter << PAGE_SHIFT;                   /* dense: a quarter free */
    EXPECT_FALSE(khugepaged_split_underused(z, pb));
    EXPECT_EQ(fake_counts, 1u);
    EXPECT_FALSE(khugepaged_split_underused(z, pb));
    EXPECT_EQ(fake_counts, 1u) << "counted again with nothing freed since";
    // Frees elsewhere that cannot make it half free: still not counted.
    zone_note_freed(z, (KHUGEPAGED_SPARSE_FREE - quarter - 1) << PAGE_SHIFT);
    EXPECT_FALSE(khugepaged_split_underused(z, pb));
    EXPECT_EQ(fake_counts, 1u);
    // One page more could: counted, and now found half free, split.
    zone_note_freed(z, PAGE_SIZE);
    fake_free_bytes = (unsigned long)KHUGEPAGED_SPARSE_FREE << PAGE_SHIFT;
    EXPECT_TRUE(khugepaged_split_underused(z, pb));
    EXPECT_EQ(fake_counts, 2u);
    if (thp_enabled > THP_NEVER)    // split: small pages at once (AHugeBlockGivenBackTurnsSmallAtOnce)
        EXPECT_EQ(z->pageblock_thp[pb] & (PB_THP_HUGE | PB_THP_NOHUGE), PB_THP_NOHUGE);
    else
        EXPECT_TRUE(z->pageblock_thp[pb] & PB_THP_RECLAIMED);
    khugepaged_register_free_bytes(nullptr);
    z->pageblock_thp[pb] = saved;
    ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// A small heap (under KHUGEPAGED_FAULT_MIN_INUSE in use) keeps small pages:
// its dense pageblock is not made huge until the heap has grown.
TEST(Khugepaged, SmallHeapsKeepSmallPages)
{
    option_guard og;
    if (!thp_collapse_mode())
        GTEST_SKIP() << "transparent hugepages are off on this machine";
    blk b = alloc_filled(pageblock_order, 0x42);
    ASSERT_NE(b.pg, nullptr);
    zone *z = page_zone(b.pg);
    unsigned long pb = page_to_pfn(b.pg) >> pageblock_order;
    if (z->spanned_pages - z->nr_free_pages >= KHUGEPAGED_FAULT_MIN_INUSE)
        GTEST_SKIP() << "the test zone is not small";
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    EXPECT_FALSE(z->pageblock_thp[pb] & PB_THP_HUGE) << "a small heap's block was made huge";
    {
        thp_ballast ballast;
        if (ballast.pg[0] && page_zone(ballast.pg[0]) == z) {
            ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
            EXPECT_TRUE(z->pageblock_thp[pb] & PB_THP_HUGE) << "a large heap's block was left small";
        }
    }
    ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    free_pages(b.pg, b.order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// The smaps entry of the mapping holding addr: its VmFlags line and its
// AnonHugePages (KiB).  False when smaps cannot be read.
bool smaps_of(uintptr_t addr, std::string *vmflags, long *anon_huge_kib)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return false;
    char line[512];
    bool in = false, found = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char dash;
        if (sscanf(line, "%lx%c%lx", &lo, &dash, &hi) == 3 && dash == '-') {
            in = lo <= addr && addr < hi;
            found |= in;
            continue;
        }
        if (!in)
            continue;
        sscanf(line, "AnonHugePages: %ld", anon_huge_kib);
        if (!strncmp(line, "VmFlags:", 8))
            *vmflags = line + 8;
    }
    fclose(f);
    return found;
}

bool has_vmflag(const std::string &flags, const char *flag)
{
    return (" " + flags + " ").find(std::string(" ") + flag + " ") != std::string::npos;
}

unsigned long vmstat_counter(const char *name)
{
    char buf[16384];
    if (os_read_file("/proc/vmstat", buf, sizeof(buf)) <= 0)
        return 0;
    std::string key = std::string(name) + " ";
    return os_parse_field(buf, key.c_str(), 0);
}

// The zone's free blocks inside pageblock pb: are any of them PG_reported?
bool pageblock_has_reported(zone *z, unsigned long pb)
{
    spin_lock(&z->lock);
    bool any = false;
    unsigned long start = pb << pageblock_order;
    for (unsigned long p = start; p < start + pageblock_nr_pages;) {
        page *pg = pfn_to_page(z, p);
        if (pg->flags & PG_buddy) {
            any |= (pg->flags & PG_reported) != 0;
            p += 1ul << pg->order;
        } else {
            p++;
        }
    }
    spin_unlock(&z->lock);
    return any;
}

// A block of `order` from zone z (not touched), as a large allocation.
page *take_block(zone *z, unsigned order, migratetype mt, bool *zeroed)
{
    spin_lock(&z->lock);
    page *pg = __rmqueue(z, order, mt, zeroed);
    spin_unlock(&z->lock);
    if (pg) {
        prep_compound_page(pg, 1ul << order, PG_large);
        pg->nr_pages = 1u << order;
    }
    return pg;
}

// Take MAX_ORDER blocks from z until it has `pages` in use.
void fill_zone(zone *z, unsigned long pages, std::vector<page *> *held)
{
    bool zeroed;
    while (z->spanned_pages - z->nr_free_pages < pages) {
        page *pg = take_block(z, MAX_ORDER, MIGRATE_MOVABLE, &zeroed);
        if (!pg)
            break;
        held->push_back(pg);
    }
}

// The cheap route to hugepages: a fresh pageblock the allocator starts to
// fill with slabs (or with a large block of 2 MiB or more), in a zone
// already busy, is MADV_HUGEPAGE before its first touch, so
// the first fault maps a whole hugepage; its rest becomes resident free
// memory (not PG_reported), and once it is sparse it turns MADV_NOHUGEPAGE.
TEST(Khugepaged, FreshPageblocksOfABusyZoneAreHugeAtTheirFirstFault)
{
    option_guard og;
    options[OPT_THP].value = 2;
    options[OPT_DECAY_MS].value = 0;       // no decay: this test's free memory stays
    khugepaged_init();
    if (thp_enabled != THP_MADVISE)
        GTEST_SKIP() << "transparent_hugepage/enabled is not madvise here (never: no THP; "
                        "always: every fault is huge anyway)";
    // A zone of its own, 64 MiB, all fresh (reported).
    zone *z = zone_create(16ul << MAX_ORDER);
    ASSERT_NE(z, nullptr);
    bool zeroed = false;
    // Under KHUGEPAGED_FAULT_MIN_INUSE in use: fresh blocks keep small pages.
    page *small = take_block(z, pageblock_order, MIGRATE_RECLAIMABLE, &zeroed);
    ASSERT_NE(small, nullptr);
    EXPECT_TRUE(zeroed);
    unsigned long small_pb = page_to_pfn(small) >> pageblock_order;
    EXPECT_FALSE(z->pageblock_thp[small_pb] & (PB_THP_HUGE | PB_THP_FAULT))
        << "a zone with less than 16 MiB in use keeps small pages";
    // Fill the zone to 16 MiB in use (untouched: nothing resident).
    std::vector<page *> held;
    fill_zone(z, KHUGEPAGED_FAULT_MIN_INUSE, &held);
    ASSERT_GE(z->spanned_pages - z->nr_free_pages, KHUGEPAGED_FAULT_MIN_INUSE);
    unsigned long advised = vm_reclaim_stats.thp_fault_advised;
    unsigned long resident = z->nr_free_resident;
    // The next fresh pageblock (the other half of small's 4 MiB block):
    // advised before its first touch.
    page *pg = take_block(z, 0, MIGRATE_RECLAIMABLE, &zeroed);
    ASSERT_NE(pg, nullptr);
    EXPECT_TRUE(zeroed) << "fresh memory reads as zero";
    unsigned long pb = page_to_pfn(pg) >> pageblock_order;
    ASSERT_NE(pb, small_pb);
    uint8_t f = z->pageblock_thp[pb];
    EXPECT_TRUE(f & PB_THP_HUGE);
    EXPECT_TRUE(f & PB_THP_FAULT);
    EXPECT_EQ(vm_reclaim_stats.thp_fault_advised, advised + 1);
    EXPECT_FALSE(pageblock_has_reported(z, pb)) << "the rest of the pageblock is resident free memory";
    EXPECT_EQ(z->nr_free_resident, resident + pageblock_nr_pages - 1);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    uintptr_t addr = (uintptr_t)page_address(pg);
    std::string flags;
    long huge_kib = -1;
    ASSERT_TRUE(smaps_of(addr, &flags, &huge_kib));
    EXPECT_TRUE(has_vmflag(flags, "hg")) << "VmFlags:" << flags;
    // The first touch maps the whole pageblock as one hugepage (unless the
    // kernel had none to give: thp_fault_fallback counts that).
    unsigned long fallbacks = vmstat_counter("thp_fault_fallback");
    *(volatile char *)addr = 1;
    ASSERT_TRUE(smaps_of(addr, &flags, &huge_kib));
    if (vmstat_counter("thp_fault_fallback") == fallbacks)
        EXPECT_GE(huge_kib, 2048) << "the first fault of an advised pageblock maps 2 MiB";
    // A large block under 2 MiB from a fresh pageblock is not advised (the
    // tail of its power-of-two block would be resident in the hugepage).
    page *large = take_block(z, 4, MIGRATE_MOVABLE, &zeroed);
    ASSERT_NE(large, nullptr);
    unsigned long large_pb = page_to_pfn(large) >> pageblock_order;
    EXPECT_NE(large_pb, pb);
    EXPECT_FALSE(z->pageblock_thp[large_pb] & (PB_THP_HUGE | PB_THP_FAULT));
    EXPECT_TRUE(pageblock_has_reported(z, large_pb));
    free_pages(large, 4);
    // Freed again: the pageblock is sparse, so the scan turns it
    // MADV_NOHUGEPAGE and it is an ordinary (reclaimable) block again.
    free_pages(pg, 0);
    drain_all_pages();
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    f = z->pageblock_thp[pb];
    EXPECT_FALSE(f & (PB_THP_HUGE | PB_THP_FAULT));
    EXPECT_TRUE(f & PB_THP_NOHUGE);
    ASSERT_TRUE(smaps_of(addr, &flags, &huge_kib));
    EXPECT_TRUE(has_vmflag(flags, "nh")) << "VmFlags:" << flags;
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    for (page *h : held)
        free_pages(h, MAX_ORDER);
    free_pages(small, pageblock_order);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// Reclaim that gives back memory inside a pageblock kalloc made huge turns
// it to small pages at once (MADV_NOHUGEPAGE), not at the next scan: the
// kernel's khugepaged would otherwise collapse it again, filling the holes
// (max_ptes_none is 511 by default), and an idle program's RSS would climb
// back (idle-drift-scattered: 67 -> 92 MiB in 20 s of idle).  A watermark
// pass (not timed: no scan) gives the freed block back here.
TEST(Khugepaged, AHugeBlockGivenBackTurnsSmallAtOnce)
{
    option_guard og;
    if (!thp_collapse_mode())
        GTEST_SKIP() << "transparent hugepages are off on this machine";
    thp_ballast ballast;
    blk b = alloc_filled(pageblock_order, 0x42);
    ASSERT_NE(b.pg, nullptr);
    zone *z = page_zone(b.pg);
    unsigned long pb = page_to_pfn(b.pg) >> pageblock_order;
    ASSERT_TRUE(vmscan_run(vmscan_now(), true, true));
    ASSERT_TRUE(z->pageblock_thp[pb] & PB_THP_HUGE) << "dense: made huge by the scan";
    uintptr_t addr = (uintptr_t)page_address(b.pg);
    std::string flags;
    long huge_kib = -1;
    ASSERT_TRUE(smaps_of(addr, &flags, &huge_kib));
    EXPECT_TRUE(has_vmflag(flags, "hg")) << "VmFlags:" << flags;
    ASSERT_NO_FATAL_FAILURE(expect_filled(b));
    unsigned long nohuge = vm_reclaim_stats.thp_nohuge;
    free_pages(b.pg, b.order);
    drain_all_pages();
    options[OPT_FREE_HIGH].value = 4096;      // keep next to nothing free and resident
    ASSERT_TRUE(vmscan_run(vmscan_now(), false, true));
    EXPECT_TRUE(pageblock_has_reported(z, pb)) << "the freed block was given back";
    uint8_t f = z->pageblock_thp[pb];
    EXPECT_FALSE(f & (PB_THP_HUGE | PB_THP_FAULT | PB_THP_COLLAPSED));
    EXPECT_TRUE(f & PB_THP_NOHUGE);
    EXPECT_GT(vm_reclaim_stats.thp_nohuge, nohuge);
    ASSERT_TRUE(smaps_of(addr, &flags, &huge_kib));
    EXPECT_TRUE(has_vmflag(flags, "nh")) << "VmFlags:" << flags;
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// KALLOC_THP=0: fresh pageblocks are left alone however busy the zone.
TEST(Khugepaged, FreshPageblocksAreLeftAloneWithThpOff)
{
    option_guard og;
    options[OPT_THP].value = 0;
    khugepaged_init();
    zone *z = zone_create(16ul << MAX_ORDER);
    ASSERT_NE(z, nullptr);
    bool zeroed = false;
    page *first = take_block(z, pageblock_order, MIGRATE_RECLAIMABLE, &zeroed);
    ASSERT_NE(first, nullptr);
    std::vector<page *> held;
    fill_zone(z, KHUGEPAGED_FAULT_MIN_INUSE, &held);
    ASSERT_GE(z->spanned_pages - z->nr_free_pages, KHUGEPAGED_FAULT_MIN_INUSE);
    page *pg = take_block(z, 0, MIGRATE_RECLAIMABLE, &zeroed);
    ASSERT_NE(pg, nullptr);
    unsigned long pb = page_to_pfn(pg) >> pageblock_order;
    // No hugepage advice; in `always` mode the zone's growth advised it
    // small (khugepaged_zone_grown), and nothing changed that.
    EXPECT_EQ(z->pageblock_thp[pb] & ~PB_THP_NOHUGE, 0u);
    EXPECT_EQ(!!(z->pageblock_thp[pb] & PB_THP_NOHUGE), thp_enabled == THP_ALWAYS);
    EXPECT_TRUE(pageblock_has_reported(z, pb)) << "its rest is still not resident";
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
    free_pages(pg, 0);
    free_pages(first, pageblock_order);
    for (page *h : held)
        free_pages(h, MAX_ORDER);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// In `always` mode the kernel backs any pageblock with a hugepage at its
// first fault: a zone's fresh memory is advised MADV_NOHUGEPAGE when the
// zone grows, so kalloc's own rules decide, as in `madvise` mode (the
// residency tests read 16 resident pages for one touched before: every
// growth was huge at its first fault).  The mode is set here, whatever
// the machine's; the advice is read back from smaps' VmFlags ("nh").
TEST(Khugepaged, AlwaysModeAdvisesGrownMemorySmall)
{
    const thp_mode saved = thp_enabled;
    thp_enabled = THP_ALWAYS;
    zone *z = zone_create(16ul << MAX_ORDER);
    thp_enabled = saved;
    ASSERT_NE(z, nullptr);
    const unsigned long nr_pb = z->spanned_pages >> pageblock_order;
    ASSERT_GT(nr_pb, 0u);
    for (unsigned long pb = 0; pb < nr_pb; pb++)
        EXPECT_EQ(z->pageblock_thp[pb], PB_THP_NOHUGE) << "pageblock " << pb;
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0) {
        FILE *f = fopen("/proc/self/smaps", "r");
        ASSERT_NE(f, nullptr);
        char line[512];
        bool in = false, nh = false, found = false;
        while (fgets(line, sizeof line, f)) {
            unsigned long lo, hi;
            if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
                in = lo <= z->zone_start && z->zone_start < hi;
                found |= in;
            } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
                nh = strstr(line, " nh") != nullptr;
            }
        }
        fclose(f);
        EXPECT_TRUE(found) << "no mapping at the zone's start";
        EXPECT_TRUE(nh) << "the zone's memory is not advised MADV_NOHUGEPAGE";
    }
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// The mode is read when a decision first needs it, not at start (a sysfs
// read, ~15 us of a short process).  A growth before then is advised small,
// as in `always` mode, and reads nothing; khugepaged_mode() reads it then.
TEST(Khugepaged, ModeNotReadYetAdvisesGrownMemorySmallAndReadsItLater)
{
    const thp_mode saved = thp_enabled;
    thp_enabled = THP_UNKNOWN;
    zone *z = zone_create(16ul << MAX_ORDER);
    EXPECT_EQ(thp_enabled, THP_UNKNOWN) << "the growth read the mode";
    ASSERT_NE(z, nullptr);
    const unsigned long nr_pb = z->spanned_pages >> pageblock_order;
    ASSERT_GT(nr_pb, 0u);
    for (unsigned long pb = 0; pb < nr_pb; pb++)
        EXPECT_EQ(z->pageblock_thp[pb], PB_THP_NOHUGE) << "pageblock " << pb;
    const thp_mode read = khugepaged_mode();
    EXPECT_NE(read, THP_UNKNOWN);
    EXPECT_EQ(thp_enabled, read);
    thp_enabled = saved == THP_UNKNOWN ? read : saved;
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

TEST(Khugepaged, CoverageIsReadFromSmaps)
{
    blk b = alloc_filled(MAX_ORDER, 0x17);
    ASSERT_NE(b.pg, nullptr);
    thp_coverage zc, pc;
    ASSERT_TRUE(get_thp_coverage(&zc, true));
    ASSERT_TRUE(get_thp_coverage(&pc, false));
    EXPECT_GE(zc.rss, PAGE_SIZE << MAX_ORDER) << "the 4 MiB just written are resident";
    EXPECT_GE(pc.rss, zc.rss) << "the process holds at least the zones";
    EXPECT_LE(zc.anon_huge, zc.rss);
    uint64_t statm = os_resident_bytes();
    EXPECT_LE(pc.rss, statm * 2);
    EXPECT_GE(pc.rss * 2, statm);
    free_pages(b.pg, b.order);
}

TEST(Khugepaged, HugetlbFallsBackCleanly)
{
    kt::HugetlbPoolLock lock;   // the machine's pool: see tests/common/hugetlb_pool.h
    option_guard og;
    options[OPT_HUGETLB].value = 1;
    const long avail = kt::hugetlb_unreserved();
    unsigned long held = 0;
    for (unsigned i = 0; i < nr_zones; i++)
        held += zones[i]->nr_hugetlb_pages >> pageblock_order;
    unsigned long fallbacks = vm_reclaim_stats.hugetlb_fallbacks;
    unsigned long huge = vm_reclaim_stats.hugetlb_pages;
    zone *z = zone_create(1ul << MAX_ORDER);
    ASSERT_NE(z, nullptr);
    // A 4 MiB zone is 2 hugepages; KALLOC_HUGETLB=1 also keeps as many
    // unreserved as the process then holds (for a forked child's copies).
    if (avail < (long)(held + 4))
        EXPECT_GT(vm_reclaim_stats.hugetlb_fallbacks, fallbacks) << "too few hugepages: fell back";
    else
        EXPECT_GT(vm_reclaim_stats.hugetlb_pages, huge);
    // The zone works either way.
    spin_lock(&z->lock);
    bool zeroed = false;
    page *pg = __rmqueue(z, MAX_ORDER - 1, MIGRATE_MOVABLE, &zeroed);
    spin_unlock(&z->lock);
    ASSERT_NE(pg, nullptr);
    prep_compound_page(pg, 1ul << (MAX_ORDER - 1), PG_large);
    memset(page_address(pg), 0x6e, PAGE_SIZE << (MAX_ORDER - 1));
    free_pages(pg, MAX_ORDER - 1);
    ASSERT_NO_FATAL_FAILURE(verify_all_zones());
}

// os_decommit_many (platform/os.h) gives every range of a batch back and
// nothing else: 16 two-page ranges with a written page between each, in one
// process_madvise call where the kernel takes it (batch = true), single- and
// multi-threaded, and as a loop of madvise (batch = false).  The ranges read
// zero and are not resident; the pages between keep their bytes.
TEST(Os, DecommitManyGivesBackEveryRangeAndNothingElse)
{
    constexpr unsigned N = 16;
    const size_t len = 3 * N * PAGE_SIZE;
    // On a kernel that refuses process_madvise the batch is a loop of
    // madvise, with the same result.
    const bool kernel_takes_batches = kt::kernel_batches_madvise();
    for (bool threaded : {false, true}) {
        std::optional<kt::idle_thread> other;
        if (threaded)
            other.emplace();              // the process is multi-threaded
        for (bool batch : {true, false}) {
            char *m = (char *)mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            ASSERT_NE(m, MAP_FAILED);
            for (size_t i = 0; i < len / PAGE_SIZE; i++)
                memset(m + i * PAGE_SIZE, (int)(i + 1), PAGE_SIZE);
            os_range r[N];
            for (unsigned i = 0; i < N; i++)
                r[i] = {m + (3 * i + 1) * PAGE_SIZE, 2 * PAGE_SIZE};   // pages 3i+1, 3i+2
            bool one_call = os_decommit_many(r, N, batch);
            if (!batch)
                EXPECT_FALSE(one_call);
            else if (kernel_takes_batches)
                EXPECT_TRUE(one_call) << "a kernel that takes it: one call (threaded " << threaded << ")";
            for (unsigned i = 0; i < N; i++) {
                EXPECT_EQ(resident_pages(r[i].addr, r[i].len), 0u)
                    << "range " << i << " batch " << batch << " threaded " << threaded;
                for (size_t off : {0ul, PAGE_SIZE - 1, PAGE_SIZE, 2 * PAGE_SIZE - 1})
                    ASSERT_EQ(((char *)r[i].addr)[off], 0) << "range " << i << " batch " << batch;
                const char *kept = m + 3 * i * PAGE_SIZE;             // page 3i, written
                ASSERT_EQ(kept[0], (char)(3 * i + 1));
                ASSERT_EQ(kept[PAGE_SIZE - 1], (char)(3 * i + 1));
            }
            munmap(m, len);
        }
    }
}

// os_read_fields: "Key: value" lines read through a small buffer (the
// reclaim passes' RSS guard and seccomp check use it on any thread's stack).
// Read system calls this process made so far (/proc/self/io syscr), less
// the ones reading it takes.
static long read_syscalls()
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return -1;
    char line[128];
    long n = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "syscr: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

// Inside an os_seccomp_scope (one malloc_trim) the thread's status is read
// once; outside, at every check (a filter may be installed between two
// calls).
TEST(Os, SeccompScopeReadsTheStatusOnce)
{
    if (os_seccomp_filtered() || read_syscalls() < 0)
        GTEST_SKIP() << "under a seccomp filter (remembered: no reads), or no /proc/self/io";
    long base = read_syscalls();
    long empty = read_syscalls() - base;          // what a measurement costs
    base = read_syscalls();
    for (int i = 0; i < 8; i++)
        EXPECT_FALSE(os_seccomp_filtered());
    long outside = read_syscalls() - base - empty;
    long inside;
    {
        os_seccomp_scope scope;
        base = read_syscalls();
        for (int i = 0; i < 8; i++)
            EXPECT_FALSE(os_seccomp_filtered());
        {
            os_seccomp_scope nested;           // nests: still the one read
            EXPECT_FALSE(os_seccomp_filtered());
        }
        EXPECT_FALSE(os_seccomp_filtered());
        inside = read_syscalls() - base - empty;
    }
    base = read_syscalls();
    EXPECT_FALSE(os_seccomp_filtered());          // the scope ended: read again
    long after = read_syscalls() - base - empty;
    std::printf("[ figures  ] read calls for 8 checks: %ld outside a scope, %ld for 10 inside one; "
                "%ld for one after it\n", outside, inside, after);
    EXPECT_GE(outside, 8);
    EXPECT_GE(inside, 1);
    EXPECT_LE(inside * 4, outside) << "the scope did not keep the answer";
    EXPECT_GE(after, 1) << "the answer outlived its scope";
}

TEST(Os, ReadFieldsFindsKeysPastLongLinesAndAtTheEnd)
{
    char path[] = "/tmp/kalloc-fields-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string text = "Name:\tx\nLong:\t" + std::string(1000, 'f') + "\nVmRSS:\t  1234 kB\n" +
                       std::string(600, 'z') + "\nThreads:\t7\nSeccomp:\t2";   // no last newline
    ASSERT_EQ(write(fd, text.data(), text.size()), (ssize_t)text.size());
    close(fd);
    static const char *const keys[] = {"VmRSS:", "Threads:", "Seccomp:", "Missing:"};
    uint64_t vals[4] = {0, 0, 0, 99};
    EXPECT_TRUE(os_read_fields(path, keys, vals, 4));
    EXPECT_EQ(vals[0], 1234u);
    EXPECT_EQ(vals[1], 7u);
    EXPECT_EQ(vals[2], 2u);
    EXPECT_EQ(vals[3], 99u) << "a key not found leaves its value";
    // A line longer than the buffer is skipped whole, its key with it.
    static const char *const longkey[] = {"Long:"};
    uint64_t v = 5;
    EXPECT_TRUE(os_read_fields(path, longkey, &v, 1));
    EXPECT_EQ(v, 5u);
    // Keys found wherever the buffer's refills cut the lines.
    for (unsigned pad = 0; pad < 600; pad += 7) {
        std::string t;
        for (unsigned i = 0; i < pad; i += 1 + i % 37)
            t += std::string(1 + i % 37, 'a') + ":\t1\n";
        t += "VmHWM:\t" + std::to_string(pad + 1) + " kB\nTail:\t0\n";
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(write(fd, t.data(), t.size()), (ssize_t)t.size());
        close(fd);
        static const char *const hwm[] = {"VmHWM:"};
        uint64_t got = 0;
        EXPECT_TRUE(os_read_fields(path, hwm, &got, 1));
        EXPECT_EQ(got, pad + 1u) << "padding " << pad;
    }
    unlink(path);
    uint64_t none = 3;
    errno = 42;
    EXPECT_FALSE(os_read_fields("/nonexistent/status", keys, &none, 1));
    EXPECT_EQ(none, 3u);
    EXPECT_EQ(errno, 42);
}

// The callers read /proc/self/status as the whole-file parse did.
TEST(Os, StatusFieldsAgreeWithTheWholeFile)
{
    char buf[8192];
    ASSERT_GT(os_read_file("/proc/thread-self/status", buf, sizeof(buf)), 0);
    EXPECT_EQ(os_seccomp_filtered(), os_parse_field(buf, "Seccomp:", 0) != 0);
    unsigned before = os_nr_threads();
    ASSERT_GT(before, 0u);
    std::atomic<bool> go{false};
    std::thread t([&] {
        while (!go.load())
            usleep(1000);
    });
    EXPECT_EQ(os_nr_threads(), before + 1);
    go.store(true);
    t.join();
    uint64_t rss = 0, peak = 0;
    ASSERT_TRUE(os_resident_and_peak(&rss, &peak));
    uint64_t statm = os_resident_bytes();
    EXPECT_GE(peak, rss);
    // Two readings a moment apart: within a few MiB of each other.
    EXPECT_LT(rss > statm ? rss - statm : statm - rss, 8ull << 20);
}
