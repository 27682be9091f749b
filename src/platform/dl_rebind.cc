/*
 * platform/dl_rebind.cc - rewrite the allocator relocations of libraries
 * loaded with RTLD_DEEPBIND (see dl_rebind.h).
 *
 * Walks each object's dynamic section (link_map l_ld): the symbol and
 * string tables, DT_RELA and DT_JMPREL.  glibc has already relocated the
 * section's pointers on x86-64 (they are absolute); a pointer below the
 * object's load address is taken as an offset, as the vDSO's are.
 *
 * Nothing here allocates: dlinfo and dl_iterate_phdr do not, and the
 * RTLD_NEXT lookups (dlsym) run once, outside kalloc's locks.
 */
#include "platform/dl_rebind.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>

#include "platform/compiler.h"

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
    void *d = dlsym(RTLD_DEFAULT, name);
    *looked = d != nullptr;
    if (!d)
        return nullptr;
    if (d != own) {
        /* Another object's definition, not a canonical PLT entry of the
         * executable's (an undefined symbol with an address). */
        Dl_info gi, oi;
        const ElfW(Sym) *sym = nullptr;
        if (dladdr1(d, &gi, (void **)&sym, RTLD_DL_SYMENT) && dladdr(own, &oi) &&
            gi.dli_fbase != oi.dli_fbase && sym && sym->st_shndx != SHN_UNDEF)
            return d;
    }
#if defined(__x86_64__)
    void *v = dlvsym(RTLD_DEFAULT, name, "GLIBC_2.2.5");
    if (v && v != own && v != dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5"))
        return v;
#endif
    return nullptr;
}

/* dl_malloc_preceded's answer: PRECEDED_UNKNOWN until a thread looks. */
enum { PRECEDED_UNKNOWN, PRECEDED_LOOKING, PRECEDED_NO, PRECEDED_YES };
constinit int preceded_state = PRECEDED_UNKNOWN;
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

} // namespace kalloc
