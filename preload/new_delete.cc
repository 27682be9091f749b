/*
 * preload/new_delete.cc - every C++ operator new / delete form, forwarding
 * to the malloc layer.  operator new follows the standard: on failure it
 * calls the installed new_handler and retries, and throws std::bad_alloc
 * when there is none; the nothrow forms return nullptr instead.
 *
 * libkalloc.so does not depend on libstdc++: a C program preloading it
 * would otherwise map and relocate the whole C++ runtime (about 1.5 MiB of
 * resident file pages, and its start-up time).  The failure path needs two
 * of the runtime's functions, std::get_new_handler and
 * std::__throw_bad_alloc: they are weak references, bound at load time when
 * the program has libstdc++ in its global scope (every C++ program linked
 * against it), else looked up in an already loaded libstdc++ (a C++
 * extension a C program dlopen()ed with RTLD_LOCAL).  With no libstdc++ at
 * all (libc++ programs), the throwing forms report and abort on failure.
 * The try/catch of the nothrow forms references the exception ABI; those
 * symbols are weak too (a frame is only unwound when a handler threw, so
 * the runtime is there).
 */
#include <dlfcn.h>

#include <new>

#include "malloc/malloc.h"

/* The exception ABI the try/catch below references, weak at the assembler
 * level (the personality routine is referenced from unwind data, not code). */
asm(".weak __cxa_begin_catch\n\t.weak __cxa_end_catch\n\t.weak __gxx_personality_v0");

/* libstdc++'s std::get_new_handler() and std::__throw_bad_alloc(), by
 * their mangled names, weak. */
extern "C" {
__attribute__((weak)) std::new_handler _ZSt15get_new_handlerv() noexcept;
__attribute__((weak, noreturn)) void _ZSt17__throw_bad_allocv();
}

using namespace kalloc;

#define EXPORT __attribute__((visibility("default")))

namespace {

/* The C++ runtime's two functions (see the header comment). */
struct cxx_runtime {
    std::new_handler (*get_new_handler)() noexcept;
    void (*throw_bad_alloc)();
};

__attribute__((noinline, cold)) cxx_runtime find_cxx_runtime()
{
    cxx_runtime rt{_ZSt15get_new_handlerv, _ZSt17__throw_bad_allocv};
    if (rt.get_new_handler && rt.throw_bad_alloc)
        return rt;
    /* Not global: an already loaded libstdc++ (RTLD_NOLOAD never loads one;
     * the handle is kept, as the library is in use). */
    if (void *h = dlopen("libstdc++.so.6", RTLD_NOLOAD | RTLD_LAZY)) {
        rt.get_new_handler = (std::new_handler(*)() noexcept)dlsym(h, "_ZSt15get_new_handlerv");
        rt.throw_bad_alloc = (void (*)())dlsym(h, "_ZSt17__throw_bad_allocv");
    }
    return rt;
}

__attribute__((noinline)) void *new_slow(size_t size, size_t align, bool nothrow)
{
    for (;;) {
        void *p = align <= 16 ? kmalloc(size) : kmalloc_aligned(align, size);
        if (p)
            return p;
        cxx_runtime rt = find_cxx_runtime();
        std::new_handler h = rt.get_new_handler ? rt.get_new_handler() : nullptr;
        if (!h) {
            if (nothrow)
                return nullptr;
            if (!rt.throw_bad_alloc)
                knew_oom_no_runtime(size);
            rt.throw_bad_alloc();
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
