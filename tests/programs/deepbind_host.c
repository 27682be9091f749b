/* deepbind_host.c - memory crossing between a program and a plugin loaded
 * with RTLD_DEEPBIND (deepbind_plugin.c), as PHP does with its extensions:
 * under a preloaded allocator glibc's free would get the allocator's
 * blocks and abort (jemalloc, tcmalloc and mimalloc users report it).
 * Every line it prints must be the same as with the system allocator.
 *
 * Also checks that a dlopen by bare name still finds a library through
 * its caller's RUNPATH (this program's, or the deep plugin's for its own
 * dlopen), plainly and with RTLD_DEEPBIND, and that $ORIGIN in a name is
 * the caller's directory: dlopen searches its caller's paths, so a dlopen
 * that kalloc wraps must still look like the caller's.
 *
 *   deepbind_host DIR    (DIR holds libkalloc_deep_plugin.so)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *sym(void *h, const char *name)
{
    void *s = dlsym(h, name);
    if (!s) {
        printf("missing %s: %s\n", name, dlerror());
        exit(1);
    }
    return s;
}

/* A block of the library's freed by the host, and one of the host's freed
 * by the library. */
static void cross_both_ways(void *lib, const char *name)
{
    char *(*l_strdup)(const char *) = sym(lib, "plugin_strdup");
    void (*l_free)(void *) = sym(lib, "plugin_free");
    char msg[128];
    snprintf(msg, sizeof msg, "%s allocated, host frees", name);
    char *x = l_strdup(msg);
    puts(x);
    free(x);
    snprintf(msg, sizeof msg, "host allocated, %s frees", name);
    char *y = strdup(msg);
    puts(y);
    l_free(y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    /* Found only through this executable's RUNPATH (the caller's). */
    void *plain = dlopen("libkalloc_plain_plugin.so", RTLD_NOW | RTLD_LOCAL);
    printf("plain dlopen by name: %s\n", plain ? "found" : dlerror());

    char path[4096];
    snprintf(path, sizeof path, "%s/libkalloc_deep_plugin.so", argv[1]);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
        printf("dlopen failed: %s\n", dlerror());
        return 1;
    }
    /* Deep-bound by bare name: this program's RUNPATH again. */
    void *deep_plain = dlopen("libkalloc_name_plugin.so", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    printf("deep-bound dlopen by name: %s\n", deep_plain ? "found" : dlerror());
    /* $ORIGIN: this program's directory, where the plugins are. */
    void *origin = dlopen("$ORIGIN/libkalloc_deep_plugin.so", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    printf("deep-bound dlopen of $ORIGIN/...: %s\n", origin == h ? "same object" : origin ? "other object" : dlerror());
    /* The deep plugin's own dlopen by bare name: only its RUNPATH
     * ($ORIGIN/sub) has the library, this program's does not. */
    void *(*p_dlopen)(const char *, int) = sym(h, "plugin_dlopen");
    void *sub = p_dlopen("libkalloc_sub_plugin.so", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    printf("the plugin's deep-bound dlopen by name: %s\n", sub ? "found" : dlerror());
    if (sub)
        cross_both_ways(sub, "sub-plugin");
    void *sub_plain = p_dlopen("libkalloc_sub_plugin.so", RTLD_NOW | RTLD_LOCAL);
    printf("the plugin's dlopen by name: %s\n", sub_plain ? "found" : dlerror());

    /* A name already loaded: other/libkalloc_soname.so by path, then its
     * soname bare and deep-bound, with another file of that name in this
     * program's RUNPATH: glibc gives the loaded one. */
    snprintf(path, sizeof path, "%s/other/libkalloc_soname.so", argv[1]);
    void *first = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    void *again = dlopen("libkalloc_soname.so", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    int (*which)(void) = again ? (int (*)(void))dlsym(again, "soname_which") : NULL;
    printf("a loaded soname by bare name: %s, build %d\n", first && first == again ? "the same object" : "another object",
           which ? which() : -1);

    char *(*p_early)(void) = sym(h, "plugin_early");
    char *(*p_strdup)(const char *) = sym(h, "plugin_strdup");
    void *(*p_calloc)(size_t, size_t) = sym(h, "plugin_calloc");
    void (*p_free)(void *) = sym(h, "plugin_free");
    void *(*p_realloc)(void *, size_t) = sym(h, "plugin_realloc");
    size_t (*p_usable)(void *) = sym(h, "plugin_usable_size");
    int (*p_memalign)(void **, size_t, size_t) = sym(h, "plugin_memalign");
    void *(**p_malloc_ptr)(size_t) = sym(h, "plugin_malloc_ptr");

    cross_both_ways(h, "plugin");
    char *c = p_realloc(strdup("host allocated, plugin reallocates"), 5000);
    puts(c);
    printf("usable >= 5000 (host asks): %d\n", malloc_usable_size(c) >= 5000);
    free(c);
    char *d = realloc(p_strdup("plugin allocated, host reallocates"), 70000);
    puts(d);
    printf("usable >= 70000 (plugin asks): %d\n", p_usable(d) >= 70000);
    p_free(d);
    char *e = p_early();
    puts(e ? e : "(no early block)");
    e = realloc(e, 300);
    printf("early block reallocated: %s\n", e ? e : "(null)");
    printf("early usable >= 300: %d\n", e && malloc_usable_size(e) >= 300);
    free(e);
    void *f = (*p_malloc_ptr)(64);
    memset(f, 0x5a, 64);
    free(f);
    void *g = NULL;
    printf("posix_memalign in the plugin: %d\n", p_memalign(&g, 4096, 10000));
    printf("aligned: %d\n", ((uintptr_t)g & 4095) == 0);
    free(g);

    /* Many blocks both ways, sizes from 1 byte to 300 KiB. */
    enum { N = 20000 };
    static void *blocks[N];
    unsigned long x = 12345, sum = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            x = x * 6364136223846793005ul + 1442695040888963407ul;
            size_t n = 1 + (x >> 33) % ((i % 100) ? 512 : 300000);
            blocks[i] = (x >> 20) & 1 ? p_calloc(1, n) : calloc(1, n);
            memset(blocks[i], i & 0xff, n < 64 ? n : 64);
        }
        for (int i = 0; i < N; i++) {
            sum += ((unsigned char *)blocks[i])[0];
            if ((i + round) & 1)
                p_free(blocks[i]);
            else
                free(blocks[i]);
        }
    }
    printf("checksum %lu\n", sum);
    puts("ok");
    return 0;
}
