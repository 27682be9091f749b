/*
 * platform/timekeeping.cc - the coarse monotonic clock (see timekeeping.h).
 *
 * The clock is read through the vDSO's own __vdso_clock_gettime, found once
 * in the vDSO's symbol table (getauxval(AT_SYSINFO_EHDR)), never through
 * libc's clock_gettime: that symbol is interposable, and a preloaded
 * library that wraps it may allocate on its first call (libfaketime looks
 * its next definition up with dlsym, which mallocs: kalloc's malloc then
 * asked libfaketime for the time again, which it refused with -1, and the
 * process died of SIGSEGV).  Without a vDSO (or its symbol), the system
 * call.
 *
 * Invariant: vdso_clock is null (not looked up yet) or a function that
 * reads the clock; set once, racily (every racer finds the same answer).
 */
#include "platform/timekeeping.h"

#include <elf.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace kalloc {

namespace {

using clock_fn = int (*)(clockid_t, struct timespec *);

clock_fn vdso_clock;   /* __vdso_clock_gettime, or sys_clock_gettime; null: not looked up */

int sys_clock_gettime(clockid_t clk, struct timespec *ts)
{
    return (int)syscall(SYS_clock_gettime, clk, ts);
}

/* __vdso_clock_gettime in the vDSO's dynamic symbol table (DT_HASH gives
 * the number of symbols), or null. */
clock_fn vdso_lookup()
{
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (!base)
        return nullptr;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64)
        return nullptr;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    uintptr_t bias = 0;
    const Elf64_Dyn *dyn = nullptr;
    bool loaded = false;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !loaded) {
            bias = base + ph[i].p_offset - ph[i].p_vaddr;
            loaded = true;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = (const Elf64_Dyn *)(base + ph[i].p_offset);
        }
    }
    if (!loaded || !dyn)
        return nullptr;
    const Elf64_Sym *sym = nullptr;
    const char *str = nullptr;
    const Elf32_Word *hash = nullptr;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_SYMTAB)
            sym = (const Elf64_Sym *)(bias + dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_STRTAB)
            str = (const char *)(bias + dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_HASH)
            hash = (const Elf32_Word *)(bias + dyn->d_un.d_ptr);
    }
    if (!sym || !str || !hash)
        return nullptr;
    for (Elf32_Word i = 0; i < hash[1]; i++) {     /* nchain: the number of symbols */
        if (ELF64_ST_TYPE(sym[i].st_info) != STT_FUNC || sym[i].st_shndx == SHN_UNDEF)
            continue;
        if (strcmp(str + sym[i].st_name, "__vdso_clock_gettime") == 0)
            return (clock_fn)(bias + sym[i].st_value);
    }
    return nullptr;
}

__attribute__((noinline)) clock_fn vdso_resolve()
{
    clock_fn f = vdso_lookup();
    if (!f)
        f = sys_clock_gettime;
    __atomic_store_n(&vdso_clock, f, __ATOMIC_RELAXED);
    return f;
}

inline void read_clock(clockid_t clk, struct timespec *ts)
{
    clock_fn f = __atomic_load_n(&vdso_clock, __ATOMIC_RELAXED);
    if (unlikely(!f))
        f = vdso_resolve();
    if (unlikely(f(clk, ts) != 0)) {
        if (sys_clock_gettime(clk, ts) != 0)
            ts->tv_sec = ts->tv_nsec = 0;
    }
}

/* Clock clk in nanoseconds (0 if it cannot be read). */
unsigned long read_clock_ns(clockid_t clk)
{
    struct timespec ts;
    read_clock(clk, &ts);
    return (unsigned long)ts.tv_sec * 1000000000ul + (unsigned long)ts.tv_nsec;
}

} // namespace

unsigned long ktime_get_coarse_ms()
{
    struct timespec ts;
    read_clock(CLOCK_MONOTONIC_COARSE, &ts);
    return (unsigned long)ts.tv_sec * 1000 + (unsigned long)ts.tv_nsec / 1000000;
}

unsigned long ktime_get_ns() { return read_clock_ns(CLOCK_MONOTONIC); }

unsigned long ktime_get_thread_cpu_ns() { return read_clock_ns(CLOCK_THREAD_CPUTIME_ID); }

unsigned long ktime_get_process_cpu_ns() { return read_clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

bool ktime_uses_vdso()
{
    clock_fn f = __atomic_load_n(&vdso_clock, __ATOMIC_RELAXED);
    if (!f)
        f = vdso_resolve();
    return f != sys_clock_gettime;
}

} // namespace kalloc
