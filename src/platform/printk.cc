/*
 * platform/printk.cc - kvsnprintf, fdprintk and panic (see printk.h).
 */
#include "platform/printk.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "platform/os.h"

namespace kalloc {

namespace {

struct out {
    char *buf;    /* where the text goes */
    size_t size;  /* bytes of buf */
    size_t len;   /* bytes written so far (may pass size: then the text is cut) */
    void put(char c)
    {
        if (len + 1 < size)
            buf[len] = c;
        len++;
    }
};

void put_num(out &o, unsigned long long v, unsigned base, bool neg, int width, bool zero,
             bool left, bool prefix)
{
    char tmp[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    int len = n + (neg ? 1 : 0) + (prefix ? 2 : 0);
    if (!left && !zero)
        for (; width > len; width--)
            o.put(' ');
    if (neg)
        o.put('-');
    if (prefix) {
        o.put('0');
        o.put('x');
    }
    if (!left && zero)
        for (; width > len; width--)
            o.put('0');
    while (n)
        o.put(tmp[--n]);
    if (left)
        for (; width > len; width--)
            o.put(' ');
}

} // namespace

size_t kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    out o{buf, size, 0};
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            o.put(*f);
            continue;
        }
        f++;
        bool left = false, zero = false;
        for (;; f++) {
            if (*f == '-')
                left = true;
            else if (*f == '0')
                zero = true;
            else
                break;
        }
        int width = 0;
        while (*f >= '0' && *f <= '9')
            width = width * 10 + (*f++ - '0');
        int lng = 0;
        while (*f == 'l' || *f == 'z') {
            lng++;
            f++;
        }
        switch (*f) {
        case 'd':
        case 'i': {
            long long v = lng ? va_arg(ap, long long) : va_arg(ap, int);
            bool neg = v < 0;
            put_num(o, neg ? 0ull - (unsigned long long)v : (unsigned long long)v, 10, neg,
                    width, zero, left, false);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
            put_num(o, v, *f == 'x' ? 16 : 10, false, width, zero, left, false);
            break;
        }
        case 'p':
            put_num(o, (uintptr_t)va_arg(ap, void *), 16, false, width, zero, left, true);
            break;
        case 'c':
            o.put((char)va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int n = (int)strlen(s);
            if (!left)
                for (int w = width; w > n; w--)
                    o.put(' ');
            while (*s)
                o.put(*s++);
            if (left)
                for (int w = width; w > n; w--)
                    o.put(' ');
            break;
        }
        case '%':
            o.put('%');
            break;
        case 0:
            f--;
            break;
        default:
            o.put('%');
            o.put(*f);
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = 0;
    return o.len < size ? o.len : (size ? size - 1 : 0);
}

size_t ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = kvsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

void fdprintk(int fd, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kvsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    os_write(fd, buf, n);
}

void panic(const char *fmt, ...)
{
    char buf[512];
    size_t n = ksnprintf(buf, sizeof(buf), "kalloc: ");
    va_list ap;
    va_start(ap, fmt);
    n += kvsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    buf[n++] = '\n';
    os_write(2, buf, n);
    abort();
}

void printbuf::printf(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kvsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (len + n > sizeof(buf))
        flush();
    memcpy(buf + len, line, n);
    len += n;
}

void printbuf::flush()
{
    os_write(fd, buf, len);
    len = 0;
}

} // namespace kalloc
