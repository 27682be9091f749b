/*
 * mm/slab_common.h - kmalloc size classes (mirrors mm/slab_common.c).
 *
 * The fixed classes, all multiples of 16 (the minimum alignment), laid out
 * from a base layout:
 *   16 .. 128    step 16        (8 classes)
 *   160 .. 256   step 32        (4 classes: 4 per doubling)
 *   288 .. 32768 8 per doubling (56 classes: step 32, 64, ... 2048)
 * 68 classes, indices 1..68; index 0 means "not a slab object".
 *
 * Classes filled to their slabs.  A base class above 256 B and up to 8 KiB
 * is widened to the largest size (a multiple of 16 up to 1 KiB, of 64
 * above) that still fits as many objects in the same slab: 640 B objects
 * leave 256 B of each 4 KiB page unused (6 of them), 672 B ones 64 B, so
 * the class is 672 and requests of 641..672 B, which took a 704 B object
 * in an 8 KiB slab of 11 (745 B a piece), take a slab slot of 683 B.  The
 * memory per object (slab bytes / objects) of every request's class is
 * never more than the base layout's (tests/unit checks it), and less for
 * a fifth of the sizes (103 of 496 from 256 B to 8 KiB, by 16 B).
 * Modelled over uniform requests of 16..1024 B, the memory per object is
 * 8.3% -> 6.7% above the requested bytes; 600..4096 B, 8.3% -> 6.5%.
 * Above 8 KiB a slab's unused tail is whole pages that are never touched
 * (so not resident without a hugepage), and widening would move objects
 * onto them.  The cost: fewer classes are multiples of 32 and 64 below
 * 1 KiB, so an aligned request there may take a larger class
 * (kmalloc_aligned searches up).
 *
 * Worst-case waste per object, counted as slab bytes / objects against the
 * request (r = the previous class + 16, the unit no allocator with 16-byte
 * alignment can beat), is 12.1% up to 256 B, 15.1% from there to 4 KiB and
 * 25% above (26 KiB objects, 2 in a 64 KiB slab whose last 3 pages are
 * never touched); tests/unit checks the table.
 *
 * Eight more slots, classes 69..76, are filled at run time with the sizes a
 * program uses most (mm/slab_dynamic.h).  The tables are built by constexpr
 * functions: kmalloc_info[], kmalloc_fast[], kmalloc_index_small[] and
 * kmalloc_bin_offset_small[] (size -> class up to 1 KiB) and
 * kmalloc_index_medium[] (1..32 KiB) are writable for the dynamic slots but
 * constant-initialised, so nothing runs at start-up; the fixed layout's
 * lookups stay read-only (kmalloc_index_fixed_{small,medium}_table).
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

constexpr unsigned NR_KMALLOC_STATIC = 69;    /* 0 unused + 68 fixed classes */
constexpr unsigned NR_KMALLOC_DYNAMIC = 8;    /* classes made at run time (mm/slab_dynamic.h) */
constexpr unsigned NR_KMALLOC_CLASSES = NR_KMALLOC_STATIC + NR_KMALLOC_DYNAMIC;
constexpr size_t KMALLOC_MAX_SIZE = 32768;     /* larger requests bypass the slabs */
constexpr size_t KMALLOC_SMALL_MAX = 1024;     /* table lookup up to here */
constexpr size_t KMALLOC_MIN_ALIGN = 16;

struct kmalloc_class {
    uint32_t size;       /* object size */
    uint32_t slab_mask;  /* slab bytes - 1: p & slab_mask = offset of p in its slab */
    uint64_t recip;      /* ceil(2^32 / size): offset / size == (offset * recip) >> 32 */
    uint16_t objects;    /* objects per slab */
    uint8_t order;       /* slab order (slab = 2^order pages) */
    uint16_t tcache_max; /* thread cache capacity for this class */
};

/* A thread cache bin's most objects (kmalloc_class::tcache_max, within 32
 * KiB of them): 128 until session 49; 256 let the small classes' bins of a
 * multi-threaded program hold a batch of up to 256 objects between two
 * trips to the slabs (malloc/tcache.h, TCACHE_SINGLE_MAX_OBJECTS). */
constexpr unsigned KMALLOC_TCACHE_MAX_OBJECTS = 256;

namespace detail {

/* The base layout (see the file comment): classes before filling. */
constexpr uint32_t base_class_size(unsigned idx)
{
    if (idx <= 8)
        return 16 * idx;
    if (idx <= 12)
        return 128 + 32 * (idx - 8);
    unsigned i = idx - 13;              /* 0.. */
    unsigned doubling = i / 8;          /* 256 -> 512 is doubling 0 */
    unsigned step = i % 8 + 1;
    uint32_t base = 256u << doubling;
    return base + step * (base / 8);
}

/* The slab order of a class: the smallest order (0..5) whose slab holds at
 * least 2 objects and wastes little (at most 1/16 of itself below 4 KiB,
 * 1/8 from 4 KiB), else the one that wastes least.
 * Small slabs fit the free pages a heap with scattered survivors has, and
 * a slab of a class with a few live objects pins less: with 8 objects at
 * least below 4 KiB, 4 up to 16 KiB and 1/16 everywhere (the rule until
 * then; 640 B objects in 8 KiB slabs, 3840 B in 32 KiB, 7 KiB in 64 KiB,
 * 14 KiB in 128 KiB) fragmentation peaked at 368.0 MiB, frag-churn at
 * 194.8 (now 349.7 and 186.0), for 2.6% more instructions on
 * fragmentation (a slab per few objects) and under 0.4% elsewhere.
 * A slab per object would cost a page allocation per malloc.
 * dense: a class made at run time for a program's hot size
 * (mm/slab_dynamic.h), which has many objects by the time it is made, so
 * a larger slab pins little more and its tail matters more: at most 1/64
 * wasted (sqlite3's 4,368 B page-cache entries: 15 in 64 KiB, 4,369 B
 * each, where the fixed rule's 7 in 32 KiB cost 4,681). */
constexpr uint8_t choose_order(uint32_t size, bool dense = false)
{
    unsigned min_objs = 2;
    unsigned best = 0;
    unsigned long best_waste_ppm = ~0ul;
    for (unsigned o = 0; o <= 5; o++) {
        unsigned long bytes = 4096ul << o;
        unsigned long objs = bytes / size;
        if (objs < min_objs)
            continue;
        unsigned long waste_ppm = (bytes % size) * 1000000 / bytes;
        if (waste_ppm <= (dense ? 15625ul : size >= 4096 ? 125000ul : 62500ul))   /* good enough: the smallest */
            return (uint8_t)o;
        if (waste_ppm < best_waste_ppm) {
            best_waste_ppm = waste_ppm;
            best = o;
        }
    }
    return (uint8_t)best;
}

/* The base classes widened to fill their slabs (see the file comment). */
constexpr uint32_t CLASS_FILL_MIN = 256;    /* base classes above this ... */
constexpr uint32_t CLASS_FILL_MAX = 8192;   /* ... and up to this are widened */

/* Size of fixed class idx (1..68): the base class, widened to the largest
 * size that fits as many objects in its slab, below the next base class. */
constexpr uint32_t class_size(unsigned idx)
{
    uint32_t base = base_class_size(idx);
    if (base <= CLASS_FILL_MIN || base > CLASS_FILL_MAX)
        return base;
    uint8_t order = choose_order(base);
    unsigned long bytes = 4096ul << order;
    unsigned long objs = bytes / base;
    uint32_t unit = base > 1024 ? 64 : 16;
    uint32_t wide = (uint32_t)(bytes / objs) / unit * unit;
    /* Not into the next class, nor to a size that would pick another slab
     * order (5632 -> 5952 would take 5 objects in 32 KiB, not 11 in 64). */
    return wide < base_class_size(idx + 1) && choose_order(wide) == order ? wide : base;
}

constexpr kmalloc_class make_class_size(uint32_t size, bool dense = false);
constexpr kmalloc_class make_class_size_order(uint32_t size, uint8_t order);

constexpr kmalloc_class make_class(unsigned idx)
{
    /* A dynamic slot not made yet: the size of the largest class, so that
     * capacities computed from it are small and nothing divides by zero;
     * no slab of it exists, and its fast-free entry passes nothing. */
    if (idx >= NR_KMALLOC_STATIC)
        return make_class_size(KMALLOC_MAX_SIZE);
    if (idx == 0)   /* not a slab: every offset but 0 fails the free fast path's
                       boundary check, and bin 0 never has room */
        return kmalloc_class{0, 0xffffffffu, 0, 0, 0, 0};
    return make_class_size(class_size(idx));
}

/* The facts of a class of `size` bytes (a multiple of 16, at most
 * KMALLOC_MAX_SIZE): also used at run time for dynamic classes (dense:
 * see choose_order). */
constexpr kmalloc_class make_class_size(uint32_t size, bool dense)
{
    return make_class_size_order(size, choose_order(size, dense));
}

/* The same with a given slab order (a stride class, mm/slab_dynamic.h). */
constexpr kmalloc_class make_class_size_order(uint32_t size, uint8_t order)
{
    uint32_t bytes = 4096u << order;
    uint64_t recip = ((1ull << 32) + size - 1) / size;
    /* Thread cache capacity: 32 KiB of objects, between 2 and
     * KMALLOC_TCACHE_MAX_OBJECTS of them (see tcache.h: 128 while the
     * process has one thread cache, and the per-thread byte budget on top). */
    unsigned tmax = 32768 / size;
    if (tmax > KMALLOC_TCACHE_MAX_OBJECTS)
        tmax = KMALLOC_TCACHE_MAX_OBJECTS;
    if (tmax < 2)
        tmax = 2;
    return kmalloc_class{size, bytes - 1, recip, (uint16_t)(bytes / size), order, (uint16_t)tmax};
}

struct kmalloc_class_table { kmalloc_class c[NR_KMALLOC_CLASSES]; };

constexpr kmalloc_class_table make_table()
{
    kmalloc_class_table t{};
    for (unsigned i = 0; i < NR_KMALLOC_CLASSES; i++)
        t.c[i] = make_class(i);
    return t;
}

constexpr unsigned index_of(size_t size)
{
    for (unsigned i = 1; i < NR_KMALLOC_STATIC; i++)
        if (class_size(i) >= size)
            return i;
    return 0;
}

/* (size + 15) >> 4 for sizes up to 1 KiB -> class index. */
struct kmalloc_small_index_t { uint8_t idx[KMALLOC_SMALL_MAX / 16 + 1]; };

constexpr kmalloc_small_index_t make_small_index()
{
    kmalloc_small_index_t t{};
    for (unsigned i = 0; i <= KMALLOC_SMALL_MAX / 16; i++)
        t.idx[i] = (uint8_t)index_of(i == 0 ? 1 : i * 16);
    return t;
}

} // namespace detail

/* Writable (dynamic classes fill their slots once, before any request can
 * map to them; mm/slab_dynamic.cc), but constant-initialised. */
extern detail::kmalloc_class_table kmalloc_info_table __hidden;
inline constexpr kmalloc_class *kmalloc_info = kmalloc_info_table.c;
/* The fixed layout's lookup up to 1 KiB, read-only (kmalloc_index_static). */
inline constexpr auto kmalloc_index_fixed_small_table = detail::make_small_index();
/* The lookup kmalloc_index uses up to 1 KiB: the fixed layout, with the
 * sizes a dynamic class took pointing at it (mm/slab_dynamic.cc). */
extern detail::kmalloc_small_index_t kmalloc_index_small_table __hidden;
inline constexpr uint8_t *kmalloc_index_small = kmalloc_index_small_table.idx;

/* The free-object key: a free object has it in its second word, wherever
 * it sits (a slab's freelist, a thread cache's bin or remote list, a sheaf,
 * the barn), and an object handed out has that word cleared (the malloc
 * layer clears it).  So a free() that finds the key is probably a double
 * free, or the free of an object never handed out, and is checked on the
 * slow path (glibc's tcache key).  The slab layer writes it on every object
 * it carves, and on the never-carved objects of every page a carve touches
 * (so a free of a neighbour that was never handed out is caught too; the
 * objects of a slab's untouched pages read zero, and are not written, so no
 * page is faulted in for them), and again on objects it unparks from holes.
 * Random, set once by kalloc_init (a constant before it). */
extern uint64_t slab_free_key __hidden;

/* Free pointers (mm/slub.c's get_freepointer / set_freepointer).  A free
 * object's first word links it to the next free object of its list (a
 * slab's freelist, a thread cache's bin or remote list, a chain on its way
 * between them, a sheaf in the barn); nothing else in kalloc keeps its
 * lists in the program's memory.  Every read and write of such a link goes
 * through these two functions.
 *
 * With KALLOC_FREELIST_HARDENED (CMake option KALLOC_HARDENED, or the
 * library libkalloc-hardened.so built beside libkalloc.so), a link is
 * stored as the kernel's CONFIG_SLAB_FREELIST_HARDENED stores it:
 *   stored = next ^ slab_freeptr_random ^ bswap(address of the link)
 * so a program that writes into a freed object (a use after free) turns
 * the link into garbage rather than into an address it chose, and the
 * code that would follow it finds it misaligned and stops with a message
 * (get_freepointer_checked, freeptr_corrupted; glibc's "unaligned tcache
 * chunk detected"): always for zero or a 16-byte aligned value written
 * there (the random value's low 4 bits are fixed, mm/slub.cc), 15 times
 * in 16 for others.  The encoding depends only on where the link is
 * stored, so a chain is still spliced in O(1) through its tail.  A list's
 * end is a null pointer once decoded, not in memory: code never tests the
 * word itself.  The default build stores links as they are (the mask is
 * 0) and compiles to the same code as before.
 *
 * slab_freeptr_random is drawn once, when the process's first slab is
 * made, before any link exists (slab_freeptr_seed, mm/slub.cc). */
#ifndef KALLOC_FREELIST_HARDENED
#define KALLOC_FREELIST_HARDENED 0
#endif
extern uint64_t slab_freeptr_random __hidden;

/* The value a link stored at `where` is exclusive-ored with. */
static __fastpath uintptr_t freeptr_mask(const void *where)
{
#if KALLOC_FREELIST_HARDENED
    return (uintptr_t)slab_freeptr_random ^ __builtin_bswap64((uintptr_t)where);
#else
    (void)where;
    return 0;
#endif
}

/* The next free object after obj on its list (nullptr at the end). */
static __fastpath void *get_freepointer(const void *obj)
{
    return (void *)((uintptr_t) * (void *const *)obj ^ freeptr_mask(obj));
}

/* Link obj to next (nullptr: obj ends its list).  Stored as a pointer, not
 * an integer, so the compiler knows the store cannot change slab_free_key
 * or slab_freeptr_random (the free fast path would load its key twice). */
static __fastpath void set_freepointer(void *obj, const void *next)
{
    *(void **)obj = (void *)((uintptr_t)next ^ freeptr_mask(obj));
}

/* Whether a link read from a free object can be one: a list's end or a
 * 16-byte aligned object (every kalloc object is).  Always true in the
 * default build, where links are not encoded and the check would catch
 * only what a program wrote there by chance. */
static __fastpath bool freeptr_plausible(const void *next)
{
#if KALLOC_FREELIST_HARDENED
    return ((uintptr_t)next & (KMALLOC_MIN_ALIGN - 1)) == 0;
#else
    (void)next;
    return true;
#endif
}

/* A free object's link that cannot be one: the object was written after it
 * was freed (or memory near it was overrun).  Prints obj and aborts. */
__cold __noreturn void freeptr_corrupted(const void *obj, const void *next);

/* An object being handed out to the program: the free-object key in its
 * second word cleared (so its free is not taken for a double free), and its
 * link too.  The program then never reads a link: a heap address in the
 * default build (an ASLR leak through an uninitialised read), and in the
 * hardened one an encoded link, which with the object's own address and
 * its neighbour's (a fresh slab's link usually is) would give
 * slab_freeptr_random away.  And a program that writes its new object a
 * byte at a time ran faster with the link gone: Hoard's cache-thrash with
 * one thread (8-byte objects, each byte stored and read back 2,000 times)
 * took 0.36-0.44 s of user time with the stale link, 0.25-0.36 without
 * (mimalloc 0.26-0.39; 10 interleaved runs on the AMD EPYC VM; the same
 * instructions, and no fault or system call: some store-forwarding or
 * memory-dependence effect of the byte stores over the 8-byte link, which
 * this machine's lack of hardware counters left unexplained; the hardened
 * build, which cleared the link already, ran as fast); with 4 threads
 * cache-thrash 1.53 -> 1.24 s and cache-scratch 1.32 -> 1.08 s (medians of
 * 5).  One store more in malloc's fast path (18 -> 19 instructions); the
 * two stores share one 16-byte line of the object. */
static __fastpath void slab_obj_handed_out(void *obj)
{
    ((void **)obj)[0] = nullptr;
    ((void **)obj)[1] = nullptr;
}

/* get_freepointer for code that follows the link: checked first (free in
 * the default build). */
static __fastpath void *get_freepointer_checked(const void *obj)
{
    void *next = get_freepointer(obj);
    if (unlikely(!freeptr_plausible(next)))
        freeptr_corrupted(obj, next);
    return next;
}

/* The malloc fast path's table: (size + 15) >> 4 -> class index * 16, the
 * byte offset of the class's bin in a thread cache (bins are 16 bytes), so
 * the lookup needs no shift. */
namespace detail {
struct kmalloc_small_offset_t { uint16_t off[KMALLOC_SMALL_MAX / 16 + 1]; };

constexpr kmalloc_small_offset_t make_small_offset()
{
    kmalloc_small_offset_t t{};
    for (unsigned i = 0; i <= KMALLOC_SMALL_MAX / 16; i++)
        t.off[i] = (uint16_t)(index_of(i == 0 ? 1 : i * 16) * 16);
    return t;
}
} // namespace detail
/* Writable as kmalloc_index_small, and rewritten with it (the fast path
 * reads it with a relaxed load: the same mov). */
extern detail::kmalloc_small_offset_t kmalloc_bin_offset_small_table __hidden;
inline constexpr uint16_t *kmalloc_bin_offset_small = kmalloc_bin_offset_small_table.off;

/* The class map's byte for the first page of a slab while that page is a
 * hole (mm/slub.cc): the cache's index with this bit, so page_slab_cache
 * still finds the cache (masking it off), while the pointer fast paths,
 * whose table has no class there, send a free of an object on that page to
 * the slow path's check (a double free of an object parked in the hole).
 * The other hole pages have class 0. */
constexpr uint8_t SLAB_CLASS_HOLE = 0x80;
static_assert(NR_KMALLOC_CLASSES < SLAB_CLASS_HOLE, "the hole bit is free in every class index");

/* What the free fast path needs per class, 16 bytes an entry so that the
 * same idx << 4 indexes this table and the thread cache's bins. */
struct kmalloc_fast_class {
    uint64_t divc;       /* 2^64 / size rounded up (0 for class 0): for offsets
                          * below 2^32, off % size == 0 exactly when
                          * off * divc (mod 2^64) < divc (Lemire et al.,
                          * "Faster remainder by direct computation", 2019) */
    uint32_t slab_mask;  /* slab bytes - 1 (all ones for class 0) */
    uint32_t limit;      /* objects * size: offsets at or past it are the
                          * slab's unused tail (0 for class 0: nothing passes) */
};
static_assert(sizeof(kmalloc_fast_class) == 16, "one shift indexes both tables");

namespace detail {
constexpr kmalloc_fast_class make_fast_class(const kmalloc_class &k)
{
    return kmalloc_fast_class{k.size ? ~0ull / k.size + 1 : 0, k.slab_mask,
                              (uint32_t)k.objects * k.size};
}

/* Every byte value of the class map has an entry: the classes, and after
 * them entries like class 0's for the values with SLAB_CLASS_HOLE. */
struct kmalloc_fast_table_t { kmalloc_fast_class c[256]; };

constexpr kmalloc_fast_table_t make_fast_table()
{
    kmalloc_fast_table_t t{};
    for (unsigned i = 0; i < 256; i++)
        t.c[i] = i < NR_KMALLOC_STATIC ? make_fast_class(make_class(i))
                                       : kmalloc_fast_class{0, 0xffffffffu, 0};  /* as class 0 */
    return t;
}

/* Sizes 1025 .. KMALLOC_MAX_SIZE, by (size + 15) >> 4: the class index. */
constexpr unsigned KMALLOC_MEDIUM_FIRST = (KMALLOC_SMALL_MAX + 16) >> 4;
constexpr unsigned KMALLOC_MEDIUM_SLOTS = (KMALLOC_MAX_SIZE >> 4) - KMALLOC_MEDIUM_FIRST + 1;
struct kmalloc_medium_table_t { uint8_t idx[KMALLOC_MEDIUM_SLOTS]; };

constexpr kmalloc_medium_table_t make_medium_index()
{
    kmalloc_medium_table_t t{};
    for (unsigned i = 0; i < KMALLOC_MEDIUM_SLOTS; i++)
        t.idx[i] = (uint8_t)index_of((size_t)(i + KMALLOC_MEDIUM_FIRST) * 16);
    return t;
}
} // namespace detail

/* Writable as kmalloc_info: a dynamic class's slot is filled before any
 * slab of it exists. */
extern detail::kmalloc_fast_table_t kmalloc_fast_table __hidden;
inline constexpr kmalloc_fast_class *kmalloc_fast = kmalloc_fast_table.c;

/* The class of a request above KMALLOC_SMALL_MAX, by 16-byte steps: the
 * fixed classes' layout, with the sizes a dynamic class took pointing at
 * it (mm/slab_dynamic.cc rewrites entries, one byte store each). */
extern detail::kmalloc_medium_table_t kmalloc_index_medium_table __hidden;
inline constexpr uint8_t *kmalloc_index_medium = kmalloc_index_medium_table.idx;
/* The fixed layout's lookup above 1 KiB, read-only (kmalloc_index_static). */
inline constexpr auto kmalloc_index_fixed_medium_table = detail::make_medium_index();

static_assert(detail::class_size(NR_KMALLOC_STATIC - 1) == 32768, "the last class is 32 KiB");
static_assert(detail::class_size(12) == 256 && detail::class_size(13) == 288, "class layout");

/* Fixed size class of a request (1 .. KMALLOC_MAX_SIZE); size 0 is class 1. */
static __fastpath unsigned kmalloc_index_static(size_t size)
{
    if (likely(size <= KMALLOC_SMALL_MAX))
        return kmalloc_index_fixed_small_table.idx[(size + 15) >> 4];
    return kmalloc_index_fixed_medium_table.idx[((size + 15) >> 4) - detail::KMALLOC_MEDIUM_FIRST];
}

/* Size class of a request (1 .. KMALLOC_MAX_SIZE), dynamic classes
 * included: the smallest class that fits. */
static __fastpath unsigned kmalloc_index(size_t size)
{
    if (likely(size <= KMALLOC_SMALL_MAX))
        return __atomic_load_n(&kmalloc_index_small[(size + 15) >> 4], __ATOMIC_ACQUIRE);
    return __atomic_load_n(&kmalloc_index_medium[((size + 15) >> 4) - detail::KMALLOC_MEDIUM_FIRST],
                           __ATOMIC_ACQUIRE);
}

static inline size_t kmalloc_size(unsigned idx) { return kmalloc_info[idx].size; }

} // namespace kalloc
