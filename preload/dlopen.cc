/*
 * preload/dlopen.cc - dlopen, forwarded to glibc's; after a load with
 * RTLD_DEEPBIND the new objects' malloc family is rebound to kalloc
 * (platform/dl_rebind.h says why: PHP's extensions).
 *
 * dlopen looks at its caller (the return address) to pick the namespace and
 * the caller's RPATH/RUNPATH for the search, so a wrapper that calls it
 * would make every dlopen look like kalloc's.  Without RTLD_DEEPBIND this
 * one is a jump to glibc's dlopen with the caller's return address still
 * on the stack (x86-64 assembly; elsewhere kalloc exports no dlopen).  With it, glibc's dlopen is called from here, then the
 * symbols are rebound; what glibc would have taken from the caller is
 * worked out first (dl_caller_file: $ORIGIN in the name, a bare name
 * along the caller's RPATH/RUNPATH) and glibc gets the resulting path.
 * dlopen itself is among the symbols rebound, so a deep-bound library's
 * own dlopen calls come here too (their loads are rebound in turn).
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>

#include "platform/dl_rebind.h"
#include "platform/os.h"

using namespace kalloc;

extern "C" {

/* glibc's dlopen (RTLD_NEXT), found by the constructor below or at the
 * first call. */
__attribute__((visibility("hidden"))) void *(*kalloc_real_dlopen)(const char *, int) = nullptr;

static void *dlopen_unavailable(const char *, int) { return nullptr; }

/* Find glibc's dlopen (dlsym's RTLD_NEXT looks after this library). */
__attribute__((visibility("hidden"), noinline)) void *(*kalloc_dlopen_resolve())(const char *, int)
{
    if (!kalloc_real_dlopen)
        kalloc_real_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    return kalloc_real_dlopen ? kalloc_real_dlopen : dlopen_unavailable;
}

/* The malloc family as exported by preload/override.cc. */
void *__libc_malloc(size_t);
void __libc_free(void *);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void *__libc_valloc(size_t);
void *__libc_pvalloc(size_t);
int __posix_memalign(void **, size_t, size_t);
void cfree(void *);
void free_sized(void *, size_t);
void free_aligned_sized(void *, size_t, size_t);

/* An RTLD_DEEPBIND load: glibc's dlopen, then the rebinding. */
__attribute__((visibility("hidden"), noinline)) void *kalloc_dlopen_deepbind(const char *file, int mode)
{
    /* Reached by a jump from dlopen: the return address is the caller's. */
    char path[4096];
    const char *name = dl_caller_file(file, __builtin_return_address(0), path, sizeof path);
    void *h = kalloc_dlopen_resolve()(name, mode);
    /* Behind another allocator (platform/dl_rebind.h) the process's malloc
     * is not kalloc's: the library keeps its bindings, as without kalloc. */
    if (h && (mode & RTLD_DEEPBIND) && !dl_malloc_preceded((const void *)&malloc, (const void *)&free)) {
        static const dl_rebind_symbol syms[] = {
            {"malloc", (void *)malloc},
            {"free", (void *)free},
            {"calloc", (void *)calloc},
            {"realloc", (void *)realloc},
            {"reallocarray", (void *)reallocarray},
            {"posix_memalign", (void *)posix_memalign},
            {"aligned_alloc", (void *)aligned_alloc},
            {"memalign", (void *)memalign},
            {"valloc", (void *)valloc},
            {"pvalloc", (void *)pvalloc},
            {"malloc_usable_size", (void *)malloc_usable_size},
            {"malloc_trim", (void *)malloc_trim},
            {"cfree", (void *)cfree},
            {"free_sized", (void *)free_sized},
            {"free_aligned_sized", (void *)free_aligned_sized},
            {"dlopen", (void *)dlopen},
            {"__libc_malloc", (void *)__libc_malloc},
            {"__libc_free", (void *)__libc_free},
            {"__libc_calloc", (void *)__libc_calloc},
            {"__libc_realloc", (void *)__libc_realloc},
            {"__libc_memalign", (void *)__libc_memalign},
            {"__libc_valloc", (void *)__libc_valloc},
            {"__libc_pvalloc", (void *)__libc_pvalloc},
            {"__posix_memalign", (void *)__posix_memalign},
        };
        dl_rebind(h, syms, sizeof(syms) / sizeof(syms[0]));
    }
    return h;
}

} // extern "C"

/* dlopen itself: RTLD_DEEPBIND (0x8) -> kalloc_dlopen_deepbind; else a
 * jump to glibc's, found first if need be (the arguments saved around the
 * call), so glibc sees the program's return address. */
#if defined(__x86_64__)
static_assert(RTLD_DEEPBIND == 0x8, "the jump below tests bit 3");
asm(R"(
    .pushsection .text
    .globl dlopen
    .type dlopen, @function
dlopen:
    testl $0x8, %esi
    jnz 2f
    movq kalloc_real_dlopen(%rip), %rax
    testq %rax, %rax
    jz 1f
    jmpq *%rax
1:  pushq %rdi
    pushq %rsi
    subq $8, %rsp
    call kalloc_dlopen_resolve
    addq $8, %rsp
    popq %rsi
    popq %rdi
    jmpq *%rax
2:  jmp kalloc_dlopen_deepbind
    .size dlopen, .-dlopen
    .popsection
)");
#endif

/* The library has the constructor below: a first growth before it has run
 * may read the limits at load (platform/os.h, os_limits_at_load; this
 * replaces the static library's weak default, false). */
extern "C" {
__attribute__((visibility("hidden"))) bool kalloc_load_constructor = true;
}

/* At load time: glibc's dlopen, and whether another allocator precedes
 * kalloc (platform/dl_rebind.h), so that neither lookup runs later inside a
 * call (a fork child's first reallocarray, say).  Where kalloc's malloc is
 * the process's (it was loaded with the process), the resource limits for
 * the zone's first growth (platform/os.h), unless an earlier constructor's
 * malloc read them already. */
__attribute__((constructor)) static void kalloc_dlopen_init()
{
    os_note_load_constructor();
    kalloc_dlopen_resolve();
    if (!dl_malloc_preceded((const void *)&malloc, (const void *)&free))
        os_read_limits_at_load();
}
