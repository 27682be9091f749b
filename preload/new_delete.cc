/*
 * preload/new_delete.cc - every C++ operator new / delete form, forwarding
 * to the malloc layer.  operator new follows the standard: on failure it
 * calls the installed new_handler and retries, and throws std::bad_alloc
 * when there is none; the nothrow forms return nullptr instead.
 */
#include <new>

#include "malloc/malloc.h"

using namespace kalloc;

#define EXPORT __attribute__((visibility("default")))

namespace {

__attribute__((noinline)) void *new_slow(size_t size, size_t align, bool nothrow)
{
    for (;;) {
        void *p = align <= 16 ? kmalloc(size) : kmalloc_aligned(align, size);
        if (p)
            return p;
        std::new_handler h = std::get_new_handler();
        if (!h) {
            if (nothrow)
                return nullptr;
            throw std::bad_alloc();
        }
        if (nothrow) {
            try {
                h();
            } catch (...) {
                return nullptr;
            }
        } else {
            h();
        }
    }
}

inline void *new_impl(size_t size)
{
    void *p = kmalloc(size);
    return __builtin_expect(p != nullptr, 1) ? p : new_slow(size, 0, false);
}

inline void *new_nothrow(size_t size) noexcept
{
    void *p = kmalloc(size);
    return __builtin_expect(p != nullptr, 1) ? p : new_slow(size, 0, true);
}

inline void *new_aligned(size_t size, std::align_val_t al)
{
    void *p = kmalloc_aligned((size_t)al, size);
    return p ? p : new_slow(size, (size_t)al, false);
}

inline void *new_aligned_nothrow(size_t size, std::align_val_t al) noexcept
{
    void *p = kmalloc_aligned((size_t)al, size);
    return p ? p : new_slow(size, (size_t)al, true);
}

} // namespace

EXPORT void *operator new(size_t size) { return new_impl(size); }
EXPORT void *operator new[](size_t size) { return new_impl(size); }
EXPORT void *operator new(size_t size, const std::nothrow_t &) noexcept { return new_nothrow(size); }
EXPORT void *operator new[](size_t size, const std::nothrow_t &) noexcept { return new_nothrow(size); }
EXPORT void *operator new(size_t size, std::align_val_t al) { return new_aligned(size, al); }
EXPORT void *operator new[](size_t size, std::align_val_t al) { return new_aligned(size, al); }
EXPORT void *operator new(size_t size, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return new_aligned_nothrow(size, al);
}
EXPORT void *operator new[](size_t size, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return new_aligned_nothrow(size, al);
}

EXPORT void operator delete(void *p) noexcept { kfree(p); }
EXPORT void operator delete[](void *p) noexcept { kfree(p); }
EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { kfree(p); }
EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { kfree(p); }
EXPORT void operator delete(void *p, size_t) noexcept { kfree(p); }
EXPORT void operator delete[](void *p, size_t) noexcept { kfree(p); }
EXPORT void operator delete(void *p, std::align_val_t) noexcept { kfree(p); }
EXPORT void operator delete[](void *p, std::align_val_t) noexcept { kfree(p); }
EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { kfree(p); }
EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { kfree(p); }
EXPORT void operator delete(void *p, size_t, std::align_val_t) noexcept { kfree(p); }
EXPORT void operator delete[](void *p, size_t, std::align_val_t) noexcept { kfree(p); }
