/*
 * malloc/api.cc - the public kalloc_ API (include/kalloc/kalloc.h): each
 * function forwards to the malloc layer, with the fast paths inlined here.
 * Also the KALLOC_STATS=1 report at exit (to KALLOC_STATS_FILE if set).
 */
#include "kalloc/kalloc.h"

#include "malloc/malloc.h"
#include "malloc/stats.h"
#include "mm/compaction.h"
#include "mm/vmscan.h"
#include "platform/options.h"
#include "platform/os.h"
#include "platform/printk.h"

using namespace kalloc;

extern "C" {

__export const char *kalloc_version(void) { return "0.1.0"; }
__export int kalloc_hardened(void) { return KALLOC_FREELIST_HARDENED; }
__export void *kalloc_malloc(size_t size) { return kmalloc(size); }
__export void kalloc_free(void *p) { kfree(p); }
__export void *kalloc_calloc(size_t n, size_t size) { return kcalloc(n, size); }
__export void *kalloc_realloc(void *p, size_t size) { return krealloc(p, size); }
__export void *kalloc_reallocarray(void *p, size_t n, size_t size) { return kreallocarray(p, n, size); }
__export void *kalloc_aligned_alloc(size_t align, size_t size) { return kaligned_alloc(align, size); }
__export int kalloc_posix_memalign(void **out, size_t align, size_t size)
{
    return kposix_memalign(out, align, size);
}
__export void *kalloc_memalign(size_t align, size_t size) { return kaligned_alloc(align, size); }
__export void *kalloc_valloc(size_t size) { return kvalloc(size); }
__export void *kalloc_pvalloc(size_t size) { return kpvalloc(size); }
__export void kalloc_free_sized(void *p, size_t size) { kfree_sized(p, size); }
__export void kalloc_free_aligned_sized(void *p, size_t align, size_t size) { kfree_sized(p, size); }
__export size_t kalloc_usable_size(const void *p) { return ksize(p); }
__export int kalloc_trim(size_t pad) { return ktrim(pad); }
__export int kalloc_background(int enable)
{
    if (enable >= 0) {
        kalloc_init();
        kswapd_set_wanted(enable != 0);
    }
    return kswapd_running() ? 1 : 0;
}
__export int kalloc_owns(const void *p) { return kowns(p) ? 1 : 0; }
__export int kalloc_stats_get(struct kalloc_stats *out)
{
    stats_get(out);
    return 0;
}
__export int kalloc_vmstat_get(struct kalloc_vmstat *out) { return stats_vmstat_get(out); }
__export size_t kalloc_compact(void)
{
    if (tcache_state == TCACHE_ACTIVE)
        tcache_flush_all(tcache_current);
    return (size_t)compact_memory(COMPACT_FULL) << PAGE_SHIFT;
}
__export void kalloc_stats_print(void) { stats_print(2); }
__export void kalloc_stats_print_fd(int fd) { stats_print(fd); }
__export void kalloc_thread_flush(void)
{
    if (tcache_state == TCACHE_ACTIVE)
        tcache_flush_all(tcache_current);
}

} // extern "C"

/* KALLOC_STATS_FILE's path with "%p" replaced by the process id, in buf
 * (false: too long). */
static bool stats_file_path(const char *pattern, char *buf, size_t size)
{
    size_t n = 0;
    for (const char *s = pattern; *s; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            char digits[16];
            unsigned d = 0;
            for (unsigned pid = (unsigned)os_getpid(); d == 0 || pid; pid /= 10)
                digits[d++] = (char)('0' + pid % 10);
            while (d && n + 1 < size)
                buf[n++] = digits[--d];
            if (d)
                return false;
            s++;
        } else if (n + 1 < size) {
            buf[n++] = *s;
        } else {
            return false;
        }
    }
    buf[n] = 0;
    return true;
}

/* KALLOC_STATS=1: the report at exit, and KALLOC_TRACE_VMSCAN=N the reclaim
 * trace after it, on stderr or in KALLOC_STATS_FILE (libkalloc's destructor
 * runs after the program's, since it was loaded first). */
__attribute__((destructor)) static void kalloc_exit_report()
{
    options_init();
    const char *file = option_stats_file;
    if (!option_get(OPT_STATS) && !file && !option_get(OPT_TRACE_VMSCAN))
        return;
    int fd = 2;
    if (file) {
        char path[4096];
        int f = stats_file_path(file, path, sizeof path) ? os_open_append(path) : -1;
        if (f >= 0)
            fd = f;
        else
            fdprintk(2, "kalloc: cannot open KALLOC_STATS_FILE=%s: the report goes to stderr\n", file);
    }
    if (option_get(OPT_STATS) || file)
        stats_print(fd);
    if (option_get(OPT_TRACE_VMSCAN))
        trace_print(fd);
    if (fd != 2)
        os_close(fd);
}
