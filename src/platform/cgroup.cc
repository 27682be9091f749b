/*
 * platform/cgroup.cc - reading memory.max / memory.high (see cgroup.h).
 */
#include "platform/cgroup.h"

#include "platform/os.h"

namespace kalloc {

namespace {

constexpr size_t PATH_MAX_LEN = 512;

/* Append s to buf at *len (truncating safely). */
void append(char *buf, size_t *len, const char *s)
{
    while (*s && *len < PATH_MAX_LEN - 1)
        buf[(*len)++] = *s++;
    buf[*len] = 0;
}

/* A limit file: a number, or "max" / an absurdly large v1 value (none). */
uint64_t read_limit(const char *path)
{
    char buf[64];
    if (os_read_file(path, buf, sizeof(buf)) <= 0)
        return 0;
    if (buf[0] < '0' || buf[0] > '9')
        return 0;                          /* "max" */
    uint64_t v = 0;
    for (const char *s = buf; *s >= '0' && *s <= '9'; s++)
        v = v * 10 + (uint64_t)(*s - '0');
    if (v >= (1ull << 62))                 /* v1's "unlimited" (PAGE_COUNTER_MAX) */
        return 0;
    return v;
}

uint64_t tighter(uint64_t a, uint64_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return a < b ? a : b;
}

} // namespace

void cgroup_read_limits(cgroup_limits *out, const char *root)
{
    *out = {};
    char self[2048];
    if (os_read_file("/proc/self/cgroup", self, sizeof(self)) <= 0)
        return;
    /* Find the v2 line ("0::/path") and the v1 memory line ("N:memory:/path"
     * or a list containing memory). */
    const char *v2 = nullptr, *v1 = nullptr;
    for (char *line = self; *line;) {
        char *nl = line;
        while (*nl && *nl != '\n')
            nl++;
        char saved = *nl;
        *nl = 0;
        char *c1 = line;
        while (*c1 && *c1 != ':')
            c1++;
        if (*c1) {
            char *ctrl = c1 + 1, *c2 = ctrl;
            while (*c2 && *c2 != ':')
                c2++;
            if (*c2) {
                *c2 = 0;
                if (line[0] == '0' && c1 == line + 1 && ctrl == c2)
                    v2 = c2 + 1;
                for (char *w = ctrl; *w;) {      /* "cpu,memory" lists */
                    char *e = w;
                    while (*e && *e != ',')
                        e++;
                    if (e - w == 6 && __builtin_memcmp(w, "memory", 6) == 0)
                        v1 = c2 + 1;
                    w = *e ? e + 1 : e;
                }
            }
        }
        if (!saved)
            break;
        line = nl + 1;
    }
    /* v2 only when the memory controller is enabled there (memory.max exists
     * at the group or, for the root, nowhere: then try v1). */
    for (int version = 2; version >= 1; version--) {
        const char *rel = version == 2 ? v2 : v1;
        if (!rel)
            continue;
        char path[PATH_MAX_LEN];
        size_t base = 0;
        append(path, &base, root);
        if (version == 1)
            append(path, &base, "/memory");
        size_t len = base;
        append(path, &len, rel);
        /* Probe: does this hierarchy have the memory files at the group? */
        const char *fmax = version == 2 ? "/memory.max" : "/memory.limit_in_bytes";
        const char *fhigh = version == 2 ? "/memory.high" : "/memory.soft_limit_in_bytes";
        bool found = false;
        uint64_t lmax = 0, lhigh = 0;
        /* Walk from the group up to the hierarchy root. */
        while (len >= base) {
            size_t l = len;
            append(path, &l, fmax);
            char probe[8];
            if (os_read_file(path, probe, sizeof(probe)) > 0) {
                found = true;
                lmax = tighter(lmax, read_limit(path));
                l = len;
                append(path, &l, fhigh);
                lhigh = tighter(lhigh, read_limit(path));
            }
            path[len] = 0;
            if (len == base)
                break;
            while (len > base && path[len - 1] != '/')
                len--;
            if (len > base)
                len--;              /* drop the '/' */
            path[len] = 0;
        }
        if (found) {
            out->max = lmax;
            out->high = lhigh;
            out->version = version;
            return;
        }
    }
}

} // namespace kalloc
