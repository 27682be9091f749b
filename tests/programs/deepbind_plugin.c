/* deepbind_plugin.c - a plugin as PHP's extensions are: the host loads it
 * with dlopen(RTLD_DEEPBIND), so its own calls to the malloc family bind to
 * glibc's allocator first (its dependencies come before the global scope),
 * and memory crosses between the two in both directions.  Built four
 * times: as libkalloc_deep_plugin.so (loaded with RTLD_DEEPBIND; its
 * RUNPATH is $ORIGIN/sub), as libkalloc_plain_plugin.so (loaded by bare
 * name, plainly), as libkalloc_name_plugin.so (loaded by bare name with
 * RTLD_DEEPBIND) and as sub/libkalloc_sub_plugin.so (loaded by bare name
 * by the deep plugin, found only through the deep plugin's RUNPATH). */
#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* Allocated by the constructor, which runs inside dlopen: before kalloc can
 * rebind this object, so under kalloc it is glibc's block. */
static char *early;

#define EXPORT __attribute__((visibility("default")))

__attribute__((constructor)) static void plugin_init(void)
{
    early = malloc(100);
    if (early)
        strcpy(early, "allocated in the plugin's constructor");
}

EXPORT char *plugin_early(void)
{
    char *e = early;
    early = NULL;
    return e;
}

EXPORT char *plugin_strdup(const char *s)
{
    char *p = malloc(strlen(s) + 1);
    return p ? strcpy(p, s) : NULL;
}

EXPORT void *plugin_calloc(size_t n, size_t size) { return calloc(n, size); }
EXPORT void plugin_free(void *p) { free(p); }
EXPORT void *plugin_realloc(void *p, size_t n) { return realloc(p, n); }
EXPORT size_t plugin_usable_size(void *p) { return malloc_usable_size(p); }
EXPORT int plugin_memalign(void **out, size_t align, size_t n) { return posix_memalign(out, align, n); }

/* A data pointer to malloc (a GLOB_DAT / 64-bit relocation, not a call). */
EXPORT void *(*plugin_malloc_ptr)(size_t) = malloc;

/* dlopen called from this object: glibc searches this object's RUNPATH for
 * a bare name (not the host's), also when kalloc wraps the call. */
EXPORT void *plugin_dlopen(const char *name, int mode)
{
    void *volatile h = dlopen(name, mode);   /* not a tail call: the caller stays this object */
    return h;
}
