/*
 * platform/dl_rebind.cc - rewrite the allocator relocations of libraries
 * loaded with RTLD_DEEPBIND (see dl_rebind.h).
 *
 * Walks each object's dynamic section (link_map l_ld): the symbol and
 * string tables, DT_RELA and DT_JMPREL.  glibc has already relocated the
 * section's pointers on x86-64 (they are absolute); a pointer below the
 * object's load address is taken as an offset, as the vDSO's are.
 *
 * Nothing here allocates: dlinfo, dladdr1 and dl_iterate_phdr do not, and
 * the RTLD_NEXT lookups (dlsym) run once, outside kalloc's locks.
 */
#include "platform/dl_rebind.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <ctype.h>
#include <stddef.h>
#include <unistd.h>

#include "platform/compiler.h"
#include "platform/os.h"

namespace kalloc {

constinit bool dl_rebound = false;
using free_fn = void (*)(void *);
using realloc_fn = void *(*)(void *, size_t);
using usable_size_fn = size_t (*)(void *);
constinit free_fn dl_next_free = nullptr;
constinit realloc_fn dl_next_realloc = nullptr;
constinit usable_size_fn dl_next_usable_size = nullptr;
constinit free_fn dl_global_free = nullptr;

namespace {

/* Resolve glibc's free, realloc and malloc_usable_size and let pointers of
 * glibc's reach kalloc (the malloc layer hands them over, see the header). */
void accept_glibc_pointers()
{
    if (READ_ONCE(dl_rebound))
        return;
    dl_next_free = (free_fn)dlsym(RTLD_NEXT, "free");
    dl_next_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    dl_next_usable_size = (usable_size_fn)dlsym(RTLD_NEXT, "malloc_usable_size");
    if (dl_next_free && dl_next_realloc && dl_next_usable_size)
        __atomic_store_n(&dl_rebound, true, __ATOMIC_RELEASE);
}

} // namespace

void *dl_global_override(const char *name, const void *own, bool *looked)
{
    void *d = dlsym(RTLD_DEFAULT, name);
    *looked = d != nullptr;
    if (!d || d == own)
        return nullptr;
    /* Another object's definition, not a canonical PLT entry of the
     * executable's (an undefined symbol with an address). */
    Dl_info gi, oi;
    const ElfW(Sym) *sym = nullptr;
    if (dladdr1(d, &gi, (void **)&sym, RTLD_DL_SYMENT) && dladdr(own, &oi) &&
        gi.dli_fbase != oi.dli_fbase && sym && sym->st_shndx != SHN_UNDEF)
        return d;
    return nullptr;
}

namespace {

/* The definition of `name` a program linked against glibc binds to, when
 * it is not kalloc's (nullptr otherwise: kalloc's comes first, or nothing
 * could be looked up yet).  Two lookups, because a library may define only
 * the version programs are linked against, hidden (glibc's
 * libc_malloc_debug.so defines malloc@GLIBC_2.2.5 so): dlsym finds the first
 * default or unversioned definition, which is kalloc's unless another
 * library precedes it; dlvsym with the version finds the first versioned one,
 * skipping kalloc's unversioned definition, so it precedes kalloc only when
 * it differs from the first one after kalloc (RTLD_NEXT, glibc's).  *looked
 * says whether the lookups could run (not during the dynamic linker's own
 * start-up). */
void *foreign_definition(const char *name, const void *own, bool *looked)
{
    if (void *d = dl_global_override(name, own, looked))
        return d;
    if (!*looked)
        return nullptr;
#if defined(__x86_64__)
    void *v = dlvsym(RTLD_DEFAULT, name, "GLIBC_2.2.5");
    if (v && v != own && v != dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5"))
        return v;
#endif
    return nullptr;
}

/* dl_malloc_preceded's answer: PRECEDED_UNKNOWN until a thread looks. */
enum { PRECEDED_UNKNOWN, PRECEDED_LOOKING, PRECEDED_NO, PRECEDED_YES };
__start_state constinit int preceded_state = PRECEDED_UNKNOWN;
constinit __thread bool preceded_looking;   /* this thread is inside the lookup */

} // namespace

bool dl_malloc_preceded(const void *own_malloc, const void *own_free)
{
    int s = __atomic_load_n(&preceded_state, __ATOMIC_ACQUIRE);
    if (likely(s >= PRECEDED_NO))
        return s == PRECEDED_YES;
    if (preceded_looking)
        return false;                   /* dlsym or dladdr allocating: kalloc's own */
    int expect = PRECEDED_UNKNOWN;
    if (!__atomic_compare_exchange_n(&preceded_state, &expect, PRECEDED_LOOKING, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        while ((s = __atomic_load_n(&preceded_state, __ATOMIC_ACQUIRE)) == PRECEDED_LOOKING)
            sched_yield();              /* another thread is looking: its answer */
        return s == PRECEDED_YES;
    }
    preceded_looking = true;
    bool looked;
    bool preceded = foreign_definition("malloc", own_malloc, &looked) != nullptr;
    if (!looked) {
        /* Too early (the dynamic linker's own start-up allocations): no
         * answer yet, ask again at the next call. */
        preceded_looking = false;
        __atomic_store_n(&preceded_state, PRECEDED_UNKNOWN, __ATOMIC_RELEASE);
        return false;
    }
    if (preceded) {
        /* The process's free: the same library's. */
        dl_global_free = (free_fn)foreign_definition("free", own_free, &looked);
        accept_glibc_pointers();
        if (!dl_global_free || !READ_ONCE(dl_rebound))
            preceded = false;           /* nothing to forward to: stay kalloc */
    }
    preceded_looking = false;
    __atomic_store_n(&preceded_state, preceded ? PRECEDED_YES : PRECEDED_NO, __ATOMIC_RELEASE);
    return preceded;
}

void *dl_next_symbol(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

#if defined(__x86_64__)

namespace {

/* The PT_GNU_RELRO range of the object loaded at `base` (dl_iterate_phdr). */
struct relro_range {
    uintptr_t base;     /* in: the object's load address (link_map l_addr) */
    const char *name;   /* in: its name (link_map l_name), to tell objects at base 0 apart */
    uintptr_t start;    /* out: first byte of its RELRO segment (0: none) */
    uintptr_t end;      /* out: one past its last byte */
};

int find_relro(struct dl_phdr_info *info, size_t, void *arg)
{
    relro_range *r = (relro_range *)arg;
    if (info->dlpi_addr != r->base || strcmp(info->dlpi_name ? info->dlpi_name : "", r->name) != 0)
        return 0;
    for (unsigned i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            r->start = info->dlpi_addr + ph->p_vaddr;
            r->end = r->start + ph->p_memsz;
        }
    }
    return 1;
}

/* Point the slot at addr, through a writable window if it is in RELRO. */
void write_slot(void **slot, void *addr, const relro_range &relro)
{
    uintptr_t a = (uintptr_t)slot;
    if (a >= relro.start && a < relro.end) {
        void *page = (void *)(a & ~(uintptr_t)4095);
        if (mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0)
            return;
        __atomic_store_n(slot, addr, __ATOMIC_RELAXED);
        mprotect(page, 4096, PROT_READ);
        return;
    }
    __atomic_store_n(slot, addr, __ATOMIC_RELAXED);
}

/* Rebind one object's relocations; returns how many were rewritten. */
unsigned rebind_object(struct link_map *l, const dl_rebind_symbol *syms, unsigned n)
{
    if (!l->l_ld)
        return 0;
    const ElfW(Sym) *symtab = nullptr;
    const char *strtab = nullptr;
    const ElfW(Rela) *tabs[2] = {nullptr, nullptr};
    size_t sizes[2] = {0, 0};
    bool rela_plt = false;
    auto ptr = [l](ElfW(Addr) p) { return p < l->l_addr ? p + l->l_addr : p; };
    for (const ElfW(Dyn) *d = l->l_ld; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)ptr(d->d_un.d_ptr); break;
        case DT_STRTAB: strtab = (const char *)ptr(d->d_un.d_ptr); break;
        case DT_RELA: tabs[0] = (const ElfW(Rela) *)ptr(d->d_un.d_ptr); break;
        case DT_RELASZ: sizes[0] = d->d_un.d_val; break;
        case DT_JMPREL: tabs[1] = (const ElfW(Rela) *)ptr(d->d_un.d_ptr); break;
        case DT_PLTRELSZ: sizes[1] = d->d_un.d_val; break;
        case DT_PLTREL: rela_plt = d->d_un.d_val == DT_RELA; break;
        }
    }
    if (!symtab || !strtab)
        return 0;
    if (!rela_plt)
        tabs[1] = nullptr;
    relro_range relro{l->l_addr, l->l_name ? l->l_name : "", 0, 0};
    bool relro_known = false;
    unsigned done = 0;
    for (unsigned t = 0; t < 2; t++) {
        if (!tabs[t])
            continue;
        for (size_t i = 0; i < sizes[t] / sizeof(ElfW(Rela)); i++) {
            const ElfW(Rela) *r = &tabs[t][i];
            unsigned type = ELF64_R_TYPE(r->r_info), si = ELF64_R_SYM(r->r_info);
            if (!si || r->r_addend != 0 ||
                (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && type != R_X86_64_64))
                continue;
            const ElfW(Sym) *s = &symtab[si];
            if (s->st_shndx != SHN_UNDEF)
                continue;           /* the object's own definition: keep it */
            const char *name = strtab + s->st_name;
            for (unsigned k = 0; k < n; k++) {
                if (strcmp(name, syms[k].name) != 0)
                    continue;
                void **slot = (void **)(l->l_addr + r->r_offset);
                if (__atomic_load_n(slot, __ATOMIC_RELAXED) != syms[k].addr) {
                    if (!relro_known) {
                        dl_iterate_phdr(find_relro, &relro);
                        relro_known = true;
                    }
                    write_slot(slot, syms[k].addr, relro);
                    done++;
                }
                break;
            }
        }
    }
    return done;
}

} // namespace

unsigned dl_rebind(void *handle, const dl_rebind_symbol *syms, unsigned n)
{
    struct link_map *lm = nullptr;
    if (!handle || dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || !lm)
        return 0;
    /* glibc's allocator, for the pointers it handed out to the library
     * before its slots were rewritten (see the header). */
    accept_glibc_pointers();
    unsigned done = 0;
    for (struct link_map *l = lm; l; l = l->l_next)
        done += rebind_object(l, syms, n);
    return done;
}

#else

unsigned dl_rebind(void *, const dl_rebind_symbol *, unsigned) { return 0; }

#endif

namespace {

/* Append src[0..n) to buf at *at; false when it does not fit (with the NUL). */
bool put(char *buf, size_t len, size_t *at, const char *src, size_t n)
{
    if (*at + n >= len)
        return false;
    memcpy(buf + *at, src, n);
    *at += n;
    buf[*at] = 0;
    return true;
}

/* Whether path names an ELF object this process could load: glibc skips
 * a file of another class or machine and goes on searching.  Read with
 * raw system calls (os_read_file): never a cancellation point. */
bool loadable_elf(const char *path)
{
    union {
        ElfW(Ehdr) eh;
        char bytes[sizeof(ElfW(Ehdr)) + 1];   /* os_read_file's NUL */
    } u;
    long got = os_read_file(path, u.bytes, sizeof(u.bytes));
    const ElfW(Ehdr) &eh = u.eh;
    return got == (long)sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
           eh.e_ident[EI_CLASS] == (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) &&
           eh.e_type == ET_DYN &&
#if defined(__x86_64__)
           eh.e_machine == EM_X86_64;
#elif defined(__aarch64__)
           eh.e_machine == EM_AARCH64;
#else
           true;
#endif
}

/* The directory $ORIGIN means in an object's names: its file's directory
 * (the executable's, from /proc/self/exe, for the main program), into
 * buf; its length, 0 when unknown. */
size_t origin_of(const struct link_map *lm, char *buf, size_t len)
{
    size_t n;
    if (lm->l_name && lm->l_name[0] == '/') {
        n = strlen(lm->l_name);
        if (n >= len)
            return 0;
        memcpy(buf, lm->l_name, n + 1);
    } else if (!lm->l_name || !lm->l_name[0]) {
        ssize_t r = readlink("/proc/self/exe", buf, len - 1);
        if (r <= 0)
            return 0;
        n = (size_t)r;
        buf[n] = 0;
    } else {
        return 0;      /* a relative name: glibc's own origin would be a guess too */
    }
    while (n > 1 && buf[n - 1] != '/')
        n--;
    if (n > 1)
        n--;           /* drop the slash, except for "/" itself */
    buf[n] = 0;
    return n;
}

/* `file` with $ORIGIN and ${ORIGIN} replaced by lm's directory, in buf
 * (the other DSTs, $LIB and $PLATFORM, mean the same for every caller:
 * left to glibc).  Apart from the search, so that only one of their
 * buffers is on the stack. */
__attribute__((noinline)) const char *expand_origin(const char *file, const struct link_map *lm,
                                                    char *buf, size_t len)
{
    if (getauxval(AT_SECURE))
        return file;            /* glibc restricts $ORIGIN there: its rules, not ours */
    char origin[4096];
    size_t on = origin_of(lm, origin, sizeof origin);
    if (!on)
        return file;
    size_t at = 0;
    bool replaced = false;
    buf[0] = 0;
    for (const char *p = file; *p;) {
        size_t skip = !strncmp(p, "$ORIGIN", 7) && !(isalnum((unsigned char)p[7]) || p[7] == '_') ? 7
                      : !strncmp(p, "${ORIGIN}", 9)                                               ? 9
                                                                                                  : 0;
        if (skip) {
            if (!put(buf, len, &at, origin, on))
                return file;
            p += skip;
            replaced = true;
        } else {
            if (!put(buf, len, &at, p, 1))
                return file;
            p++;
        }
    }
    return replaced ? buf : file;
}

/* A bare name: the first loadable file in lm's own directories, up to the
 * defaults, in buf. */
__attribute__((noinline)) const char *search_caller_dirs(const char *file, struct link_map *lm,
                                                         char *buf, size_t len)
{
    /* glibc first looks for the name among the objects already loaded
     * (their names and sonames), whoever calls: such a name stays bare. */
    if (void *loaded = dlopen(file, RTLD_LAZY | RTLD_NOLOAD)) {
        dlclose(loaded);            /* the probe's reference */
        return file;
    }
    Dl_serinfo size;
    constexpr size_t space_len = 8192;
    if (dlinfo(lm, RTLD_DI_SERINFOSIZE, &size) != 0 || size.dls_size > space_len)
        return file;
    /* Mapped, not on the stack: the thread that calls dlopen may have a
     * small one (os_read_fields). */
    char *space = (char *)os_map(space_len, false);
    if (!space)
        return file;
    Dl_serinfo *si = (Dl_serinfo *)space;
    si->dls_size = size.dls_size;
    si->dls_cnt = size.dls_cnt;
    const char *found = file;
    if (dlinfo(lm, RTLD_DI_SERINFO, si) == 0) {
        size_t fn = strlen(file);
        /* dls_serpath is declared with one element; dlinfo filled dls_cnt. */
        const Dl_serpath *paths = (const Dl_serpath *)(space + offsetof(Dl_serinfo, dls_serpath));
        for (unsigned i = 0; i < si->dls_cnt; i++) {
            const Dl_serpath &d = paths[i];
            if (d.dls_flags & LA_SER_DEFAULT)
                break;              /* the cache, then the defaults: any caller's */
            const char *dir = d.dls_name;
            size_t dn = strlen(dir), at = 0;
            if (!dn)
                continue;
            buf[0] = 0;
            if (!put(buf, len, &at, dir, dn) || (dir[dn - 1] != '/' && !put(buf, len, &at, "/", 1)) ||
                !put(buf, len, &at, file, fn))
                continue;
            if (loadable_elf(buf)) {
                found = buf;
                break;
            }
        }
    }
    os_unmap(space, space_len);
    return found;
}

} // namespace

const char *dl_caller_file(const char *file, const void *caller, char *buf, size_t len)
{
    if (!file || !file[0] || len < 2)
        return file;
    bool dst = strchr(file, '$') != nullptr;
    if (!dst && strchr(file, '/'))
        return file;            /* a path: no search, whoever calls (PHP's extensions) */
    Dl_info info;
    struct link_map *lm = nullptr;
    if (!dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
        return file;
    return dst ? expand_origin(file, lm, buf, len) : search_caller_dirs(file, lm, buf, len);
}

} // namespace kalloc
