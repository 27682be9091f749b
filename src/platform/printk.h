/*
 * platform/printk.h - formatted output and fatal errors without malloc.
 *
 * Mirrors the kernel's printk/panic: a small vsnprintf (kvsnprintf) that
 * writes into a caller's buffer, and output through write(2).  Supported
 * conversions: %s %c %d %i %u %x %p %% with the l, ll, z length modifiers,
 * a width, and the '-' and '0' flags.  No locale, no floating point, no
 * allocation: safe inside the allocator and before libc is initialised.
 */
#pragma once

#include <stdarg.h>

#include "platform/compiler.h"

namespace kalloc {

/* Format into buf (always NUL-terminated when size > 0); returns the length
 * written (truncated output is cut, never overflowed). */
size_t kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
size_t ksnprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Format and write to fd (buffered locally, at most 1 KiB per call). */
void fdprintk(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "kalloc: <message>\n" on stderr and abort().  Used for bad input
 * (invalid or double free) and broken invariants. */
__noreturn __cold void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A buffer that collects formatted lines and writes them out when full or
 * flushed: stats printing builds long reports without any allocation. */
struct printbuf {
    int fd;          /* where flush() writes */
    size_t len;      /* bytes in buf */
    char buf[4096];  /* pending output */

    void printf(const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    void flush();
};

} // namespace kalloc

/* The kernel's BUG_ON: a broken invariant is fatal. */
#define BUG_ON(cond)                                                          \
    do {                                                                      \
        if (unlikely(cond))                                                   \
            ::kalloc::panic("BUG at %s:%d: %s", __FILE__, __LINE__, #cond);   \
    } while (0)
