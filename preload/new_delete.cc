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
 *
 * A program may replace the base forms (operator new(size_t), operator
 * delete(void*), their array and aligned forms) and leave the others to
 * the standard library, whose others call the bases: the sized delete that
 * C++14 compilers emit for `delete p` ends in the program's operator
 * delete(void*).  kalloc's exports of those other forms come before the
 * standard library's, so they must do the same: Firefox ESR replaces new
 * and delete(void*) with its own allocator, and its media decoder process
 * died when a library's sized delete reached kalloc with a block of that
 * allocator (2026-12-07).  The bases are looked up once (cxx_lookup:
 * dlsym of the global scope, platform/dl_rebind.h); when all are kalloc's,
 * as in nearly every program, each other form serves the request itself,
 * at the cost of one load and branch (cxx_own: operator delete(void*,
 * size_t) 43 -> 46 instructions a call, callgrind); when one is the
 * program's, each other form calls its base as libstdc++'s does.
 */
#include <dlfcn.h>
#include <sched.h>

#include <new>

#include "malloc/malloc.h"
#include "platform/dl_rebind.h"

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

/* The replaceable bases, by mangled name; cxx_base[i] is the program's
 * definition when it replaced base i (nullptr: kalloc's). */
enum cxx_base_id {
    CXX_NEW,            /* operator new(size_t) */
    CXX_NEW_ARR,        /* operator new[](size_t) */
    CXX_DEL,            /* operator delete(void*) */
    CXX_DEL_ARR,        /* operator delete[](void*) */
    CXX_NEW_AL,         /* operator new(size_t, align_val_t) */
    CXX_NEW_ARR_AL,     /* operator new[](size_t, align_val_t) */
    CXX_DEL_AL,         /* operator delete(void*, align_val_t) */
    CXX_DEL_ARR_AL,     /* operator delete[](void*, align_val_t) */
    NR_CXX_BASE
};
constexpr const char *cxx_base_name[NR_CXX_BASE] = {
    "_Znwm", "_Znam", "_ZdlPv", "_ZdaPv",
    "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t"};

enum { CXX_UNKNOWN, CXX_LOOKING, CXX_OWN, CXX_REPLACED };
constinit int cxx_state = CXX_UNKNOWN;       /* the lookup's answer (acquire/release) */
constinit void *cxx_base[NR_CXX_BASE] = {};  /* written before cxx_state is CXX_REPLACED */
constinit __thread bool cxx_looking;         /* this thread is inside the lookup */

const void *cxx_own_base(unsigned i)
{
    switch (i) {
    case CXX_NEW: return (const void *)static_cast<void *(*)(size_t)>(&::operator new);
    case CXX_NEW_ARR: return (const void *)static_cast<void *(*)(size_t)>(&::operator new[]);
    case CXX_DEL: return (const void *)static_cast<void (*)(void *) noexcept>(&::operator delete);
    case CXX_DEL_ARR: return (const void *)static_cast<void (*)(void *) noexcept>(&::operator delete[]);
    case CXX_NEW_AL:
        return (const void *)static_cast<void *(*)(size_t, std::align_val_t)>(&::operator new);
    case CXX_NEW_ARR_AL:
        return (const void *)static_cast<void *(*)(size_t, std::align_val_t)>(&::operator new[]);
    case CXX_DEL_AL:
        return (const void *)static_cast<void (*)(void *, std::align_val_t) noexcept>(&::operator delete);
    default:
        return (const void *)static_cast<void (*)(void *, std::align_val_t) noexcept>(&::operator delete[]);
    }
}

/* Look the bases up (once per process; a thread that finds another
 * looking waits for its answer; the looking thread's own calls, and calls
 * before the dynamic linker can answer, are kalloc's). */
__attribute__((noinline, cold)) bool cxx_lookup()
{
    if (cxx_looking)
        return true;
    int expect = CXX_UNKNOWN;
    if (!__atomic_compare_exchange_n(&cxx_state, &expect, CXX_LOOKING, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        int s;
        while ((s = __atomic_load_n(&cxx_state, __ATOMIC_ACQUIRE)) == CXX_LOOKING)
            sched_yield();
        return s != CXX_REPLACED;
    }
    cxx_looking = true;
    bool replaced = false, looked = true;
    for (unsigned i = 0; i < NR_CXX_BASE && looked; i++) {
        cxx_base[i] = dl_global_override(cxx_base_name[i], cxx_own_base(i), &looked);
        replaced |= cxx_base[i] != nullptr;
    }
    cxx_looking = false;
    __atomic_store_n(&cxx_state, !looked ? CXX_UNKNOWN : replaced ? CXX_REPLACED : CXX_OWN,
                     __ATOMIC_RELEASE);
    return !looked || !replaced;
}

/* Whether every base is kalloc's: the other forms serve requests
 * themselves.  One load and a branch once looked up. */
inline bool cxx_own()
{
    int s = __atomic_load_n(&cxx_state, __ATOMIC_ACQUIRE);
    if (__builtin_expect(s == CXX_OWN, 1))
        return true;
    return s == CXX_REPLACED ? false : cxx_lookup();
}

/* Base i as the standard library's other forms reach it: the program's
 * replacement, else kalloc's own. */
template <typename F> F cxx_call(unsigned i)
{
    void *f = cxx_base[i];
    return f ? (F)f : (F)cxx_own_base(i);
}

using new_fn = void *(*)(size_t);
using del_fn = void (*)(void *) noexcept;
using new_al_fn = void *(*)(size_t, std::align_val_t);
using del_al_fn = void (*)(void *, std::align_val_t) noexcept;

/* libstdc++'s nothrow forms: the base in a try block. */
__attribute__((noinline)) void *cxx_nothrow(unsigned i, size_t size) noexcept
{
    try {
        return cxx_call<new_fn>(i)(size);
    } catch (...) {
        return nullptr;
    }
}

__attribute__((noinline)) void *cxx_nothrow_al(unsigned i, size_t size, std::align_val_t al) noexcept
{
    try {
        return cxx_call<new_al_fn>(i)(size, al);
    } catch (...) {
        return nullptr;
    }
}

} // namespace

/* The bases. */
EXPORT void *operator new(size_t size) { return new_impl(size); }
EXPORT void *operator new(size_t size, std::align_val_t al) { return new_aligned(size, al); }
EXPORT void operator delete(void *p) noexcept { kfree(p); }
EXPORT void operator delete(void *p, std::align_val_t) noexcept { kfree(p); }
/* The array bases: the standard library's call the scalar ones. */
EXPORT void *operator new[](size_t size)
{
    if (__builtin_expect(cxx_own(), 1))
        return new_impl(size);
    return cxx_call<new_fn>(CXX_NEW)(size);
}
EXPORT void *operator new[](size_t size, std::align_val_t al)
{
    if (__builtin_expect(cxx_own(), 1))
        return new_aligned(size, al);
    return cxx_call<new_al_fn>(CXX_NEW_AL)(size, al);
}
EXPORT void operator delete[](void *p) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_fn>(CXX_DEL)(p);
}
EXPORT void operator delete[](void *p, std::align_val_t al) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_al_fn>(CXX_DEL_AL)(p, al);
}
/* The other forms: each calls its base. */
EXPORT void *operator new(size_t size, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return new_nothrow(size);
    return cxx_nothrow(CXX_NEW, size);
}
EXPORT void *operator new[](size_t size, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return new_nothrow(size);
    return cxx_nothrow(CXX_NEW_ARR, size);
}
EXPORT void *operator new(size_t size, std::align_val_t al, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return new_aligned_nothrow(size, al);
    return cxx_nothrow_al(CXX_NEW_AL, size, al);
}
EXPORT void *operator new[](size_t size, std::align_val_t al, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return new_aligned_nothrow(size, al);
    return cxx_nothrow_al(CXX_NEW_ARR_AL, size, al);
}
EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_fn>(CXX_DEL)(p);
}
EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_fn>(CXX_DEL_ARR)(p);
}
EXPORT void operator delete(void *p, size_t) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_fn>(CXX_DEL)(p);
}
EXPORT void operator delete[](void *p, size_t) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_fn>(CXX_DEL_ARR)(p);
}
EXPORT void operator delete(void *p, std::align_val_t al, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_al_fn>(CXX_DEL_AL)(p, al);
}
EXPORT void operator delete[](void *p, std::align_val_t al, const std::nothrow_t &) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_al_fn>(CXX_DEL_ARR_AL)(p, al);
}
EXPORT void operator delete(void *p, size_t, std::align_val_t al) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_al_fn>(CXX_DEL_AL)(p, al);
}
EXPORT void operator delete[](void *p, size_t, std::align_val_t al) noexcept
{
    if (__builtin_expect(cxx_own(), 1))
        return kfree(p);
    cxx_call<del_al_fn>(CXX_DEL_ARR_AL)(p, al);
}
