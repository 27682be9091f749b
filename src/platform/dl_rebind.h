/*
 * platform/dl_rebind.h - one allocator per process, even for libraries
 * loaded with RTLD_DEEPBIND.
 *
 * No kernel counterpart: this is the dynamic linker's side of being a
 * preloaded malloc.  A library that dlopen() loads with RTLD_DEEPBIND looks
 * its symbols up in its own dependencies first, libc among them, so its
 * calls to malloc and free go to glibc's allocator while the rest of the
 * process uses kalloc.  A pointer that crosses over (the program frees
 * what the library allocated, or the library frees a string libc made with
 * kalloc) crashes one allocator or the other: PHP loads every extension
 * this way, and crashes under any preloaded allocator (jemalloc, tcmalloc,
 * mimalloc and snmalloc users have all reported it).
 *
 * dl_rebind() runs after such a dlopen: in the loaded object and every
 * object loaded after it, each relocation of an undefined symbol named in
 * the table (GOT entries of calls, data pointers) is pointed at the table's
 * address, i.e. kalloc's entry point.  RELRO pages are made writable for
 * the write and read-only again.  Objects that define a symbol themselves
 * keep their own (libc, kalloc, a library with a private allocator).
 *
 * What the library allocated with glibc before its slots were rewritten
 * (its constructors run inside dlopen) may later reach kalloc's free or
 * realloc: once dl_rebind has run, the malloc layer hands a pointer outside
 * every kalloc zone and vmalloc region to glibc's own functions
 * (dl_next_free and friends, found with RTLD_NEXT) instead of reporting it.
 * Before any RTLD_DEEPBIND load such a pointer is reported as invalid, as
 * always.
 *
 * Limits: x86-64 relocations only (elsewhere dl_rebind does nothing);
 * dlmopen namespaces are left alone.
 */
#pragma once

#include <stddef.h>

namespace kalloc {

/* A symbol to rebind and the address its relocations get. */
struct dl_rebind_symbol {
    const char *name;   /* the symbol's name, as in the dynamic symbol table */
    void *addr;         /* what every relocation of it is pointed at */
};

/* After dlopen(..., RTLD_DEEPBIND) returned `handle`: rebind the symbols
 * of `syms` in its object and every object loaded after it.  Returns the
 * number of relocations rewritten.  Takes no lock of kalloc's; call it
 * outside the allocator's locks. */
unsigned dl_rebind(void *handle, const dl_rebind_symbol *syms, unsigned n);

/* Set (for good) when dl_rebind first ran, or when dl_malloc_preceded found
 * kalloc behind another allocator: glibc's pointers may reach kalloc. */
extern bool dl_rebound;

/*
 * Behind another allocator.  With LD_PRELOAD="other.so libkalloc.so" (or
 * glibc's libc_malloc_debug.so first) the other library's malloc is the
 * process's, and kalloc's exports serve only what the other does not
 * define: reallocarray under jemalloc, __libc_malloc (which
 * libc_malloc_debug calls to reach glibc's heap).  Those must then be what
 * they are without kalloc, glibc's, or a block from one allocator reaches
 * the other's free.
 *
 * dl_malloc_preceded(own_malloc, own_free) says whether the global scope's
 * malloc is another object's than kalloc's (own_*: kalloc's malloc and
 * free).  It looks once (dlsym, dlvsym, dladdr1), from kalloc's constructor
 * or the first call of such an entry point, outside kalloc's locks; when
 * preceded it also lets glibc's pointers reach kalloc's free (dl_rebound).
 * A call made while the same thread is looking (dlsym allocating) answers
 * false.  dl_next_symbol is dlsym(RTLD_NEXT): glibc's definition of a name;
 * dl_global_free the process's free (set when preceded).
 */
bool dl_malloc_preceded(const void *own_malloc, const void *own_free);

/* The global scope's definition of `name` (dlsym RTLD_DEFAULT: the
 * executable's, then the preloaded objects', then the rest in load order)
 * when it is another object's than kalloc's `own`: a C++ operator the
 * program replaced, which the standard library's other forms of it must
 * reach.  nullptr when it is kalloc's, or when nothing could be looked up
 * yet (*looked false: the dynamic linker's own start-up; ask again).
 * Calls dlsym and dladdr: outside kalloc's locks. */
void *dl_global_override(const char *name, const void *own, bool *looked);
void *dl_next_symbol(const char *name);
extern void (*dl_global_free)(void *);

/*
 * The caller's search.  glibc's dlopen takes two things from its caller
 * (the return address): the RPATH/RUNPATH a bare library name is searched
 * along, and the directory $ORIGIN in the name stands for.  A dlopen that
 * kalloc calls (the RTLD_DEEPBIND path, which must rebind after the load)
 * would make them libkalloc's.  dl_caller_file(file, caller, buf, len)
 * returns what to pass instead: `file` with $ORIGIN (or ${ORIGIN}) replaced
 * by the caller's directory, and for a bare name that names no object
 * already loaded (glibc matches those first) the first loadable file
 * (an ELF object of this machine's class) in the caller's own search
 * directories (dlinfo RTLD_DI_SERINFO of the caller's link map: DT_RPATH
 * and its loaders', LD_LIBRARY_PATH, DT_RUNPATH; the ld.so cache and the
 * default directories come after them and are the same for every caller),
 * written into buf; `file` itself when nothing is found or nothing
 * applies (a path with a slash, a caller in no object, buf too short, a
 * set-user-ID program, where glibc restricts $ORIGIN).  Not searched as
 * glibc does: the glibc-hwcaps subdirectories of each directory.
 */
const char *dl_caller_file(const char *file, const void *caller, char *buf, size_t len);

/* glibc's own functions (the next definitions after kalloc), found when
 * dl_rebind first ran; null before. */
extern void (*dl_next_free)(void *);
extern void *(*dl_next_realloc)(void *, size_t);
extern size_t (*dl_next_usable_size)(void *);

} // namespace kalloc
