/*
 * platform/compiler.h - compiler annotations used by every layer.
 *
 * Mirrors include/linux/compiler.h: likely()/unlikely(), READ_ONCE/WRITE_ONCE,
 * and the attributes that keep fast paths inline and slow paths out of line.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* A function on the malloc/free fast path: always inlined. */
#define __fastpath  inline __attribute__((always_inline))
/* A slow path: never inlined, kept out of the fast path's instruction cache. */
#define __slowpath  __attribute__((noinline))
#define __cold      __attribute__((noinline, cold))
#define __noreturn  __attribute__((noreturn))
/* Exported from libkalloc.so (everything else is hidden). */
#define __export    __attribute__((visibility("default")))
/* On extern declarations of data the fast paths read: -fvisibility=hidden
 * covers definitions only, and a default-visibility declaration costs a GOT
 * indirection per access. */
#define __hidden    __attribute__((visibility("hidden")))

#define READ_ONCE(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* State every process reads, then writes, at its first malloc: in the
 * file-backed data (one page, written once) rather than the BSS, where the
 * read maps the zero page and the write faults the page again (two page
 * faults for each such page, in every process). */
#define __start_state __attribute__((section(".data.kalloc_start")))

/* Store v in x only if x differs: for the fork handlers, which run in a
 * process whose every writable page the previous fork made copy-on-write,
 * so that a store of the same value costs no page fault (and the child, no
 * copy of the page). */
#define WRITE_IF_CHANGED(x, v)                    \
    do {                                          \
        auto __v = (v);                           \
        if (READ_ONCE(x) != __v)                  \
            WRITE_ONCE(x, __v);                   \
    } while (0)

namespace kalloc {

constexpr inline size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
constexpr inline size_t align_down(size_t x, size_t a) { return x & ~(a - 1); }
constexpr inline bool is_pow2(size_t x) { return x && !(x & (x - 1)); }
/* Smallest n with (1 << n) >= x; x >= 1. */
constexpr inline unsigned ceil_log2(size_t x) { return x <= 1 ? 0 : 64 - __builtin_clzl(x - 1); }
constexpr inline unsigned floor_log2(size_t x) { return 63 - __builtin_clzl(x); }
/* Bits set in x (the kernel's hweight32).  Not __builtin_popcount: without
 * -mpopcnt (baseline x86-64 has no POPCNT) GCC calls libgcc's
 * __popcountdi2, which made libkalloc.so load libgcc_s.so.1 into every
 * process (~100 KiB of RSS and one more library to map at start). */
constexpr inline unsigned hweight32(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
}
static_assert(hweight32(0) == 0 && hweight32(0xffffffffu) == 32 && hweight32(0x80000001u) == 2, "hweight32");

} // namespace kalloc
