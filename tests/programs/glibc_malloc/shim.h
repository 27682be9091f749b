/* shim.h - a small stand-in for the parts of glibc's test framework
 * (support/) that glibc's malloc tests use, so those tests, taken from
 * Debian's glibc-source package at test time (glibc_malloc.sh), build as
 * standalone programs.  Written for kalloc; none of glibc's code.  Each
 * helper does what its glibc namesake is documented to do: the x* wrappers
 * exit with a message on failure, TEST_* record a failure and go on (or
 * exit), FAIL_* print and exit. */
#ifndef KALLOC_GLIBC_SHIM_H
#define KALLOC_GLIBC_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* libc-diag.h: the tests silence warnings about what they do on purpose. */
#define KSHIM_STR1(s) #s
#define KSHIM_STR(s) KSHIM_STR1(s)
#define DIAG_PUSH_NEEDS_COMMENT _Pragma("GCC diagnostic push")
#define DIAG_POP_NEEDS_COMMENT _Pragma("GCC diagnostic pop")
#define DIAG_IGNORE_NEEDS_COMMENT(version, option) _Pragma(KSHIM_STR(GCC diagnostic ignored option))
#define DIAG_IGNORE_Os_NEEDS_COMMENT(version, option) DIAG_IGNORE_NEEDS_COMMENT(version, option)
#define DIAG_PUSH_NEEDS_COMMENT_CLANG
#define DIAG_POP_NEEDS_COMMENT_CLANG
#define DIAG_IGNORE_NEEDS_COMMENT_CLANG(version, option)

/* array_length.h */
#ifndef array_length
#define array_length(var) (sizeof(var) / sizeof((var)[0]))
#endif

/* support/test-driver.h: seconds a test may take (glibc_malloc.sh runs
 * each under timeout(1) with room to spare). */
#define DEFAULT_TIMEOUT 20

/* malloc-size.h: the alignment every malloc result has on x86-64 (glibc's
 * MALLOC_ALIGNMENT, which kalloc keeps too). */
#define MALLOC_ALIGNMENT (2 * sizeof(size_t) < __alignof__(long double) ? __alignof__(long double) : 2 * sizeof(size_t))
#define MALLOC_ALIGN_MASK (MALLOC_ALIGNMENT - 1)

/* support/check.h */
#define EXIT_UNSUPPORTED 77
static int kshim_failures;
static inline void support_record_failure(void) { __atomic_fetch_add(&kshim_failures, 1, __ATOMIC_RELAXED); }
static inline int support_record_failure_is_failed(void) { return __atomic_load_n(&kshim_failures, __ATOMIC_RELAXED) != 0; }
#define KSHIM_WHERE() printf("error: %s:%d: ", __FILE__, __LINE__)
#define FAIL(...) (KSHIM_WHERE(), printf(__VA_ARGS__), putchar('\n'), support_record_failure())
#define FAIL_RET(...) do { FAIL(__VA_ARGS__); return 1; } while (0)
#define FAIL_EXIT(status, ...) do { KSHIM_WHERE(); printf(__VA_ARGS__); putchar('\n'); fflush(stdout); exit(status); } while (0)
#define FAIL_EXIT1(...) FAIL_EXIT(1, __VA_ARGS__)
#define FAIL_UNSUPPORTED(...) do { printf("warning: unsupported: "); printf(__VA_ARGS__); putchar('\n'); fflush(stdout); exit(EXIT_UNSUPPORTED); } while (0)
#define TEST_VERIFY(expr) do { if (!(expr)) { KSHIM_WHERE(); printf("not true: %s\n", #expr); support_record_failure(); } } while (0)
#define TEST_VERIFY_EXIT(expr) do { if (!(expr)) { KSHIM_WHERE(); printf("not true: %s\n", #expr); fflush(stdout); exit(1); } } while (0)
#define TEST_COMPARE(left, right) do { long long l_ = (long long)(left), r_ = (long long)(right); \
    if (l_ != r_) { KSHIM_WHERE(); printf("%s (%lld) != %s (%lld)\n", #left, l_, #right, r_); support_record_failure(); } } while (0)

/* support/support.h, support/xunistd.h, support/xthread.h, ... */
static inline void kshim_die(const char *what) { printf("error: %s: %s\n", what, strerror(errno)); fflush(stdout); exit(1); }
static inline void *xmalloc(size_t n) { void *p = malloc(n); if (!p) kshim_die("malloc"); return p; }
static inline void *xcalloc(size_t n, size_t s) { void *p = calloc(n, s); if (!p) kshim_die("calloc"); return p; }
static inline void *xrealloc(void *o, size_t n) { void *p = realloc(o, n); if (!p && n) kshim_die("realloc"); return p; }
static inline char *xstrdup(const char *s) { char *p = strdup(s); if (!p) kshim_die("strdup"); return p; }
static inline char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *r;
    va_start(ap, fmt);
    int n = vasprintf(&r, fmt, ap);
    va_end(ap);
    if (n < 0)
        kshim_die("asprintf");
    return r;
}
static inline long xsysconf(int name) { errno = 0; long r = sysconf(name); if (r < 0) kshim_die("sysconf"); return r; }
static inline pid_t xfork(void) { pid_t p = fork(); if (p < 0) kshim_die("fork"); return p; }
static inline pid_t xwaitpid(pid_t p, int *st, int fl) { pid_t r = waitpid(p, st, fl); if (r < 0) kshim_die("waitpid"); return r; }
static inline void *xmmap(void *a, size_t l, int prot, int fl, int fd)
{
    void *p = mmap(a, l, prot, fl, fd, 0);
    if (p == MAP_FAILED) kshim_die("mmap");
    return p;
}
static inline void xmunmap(void *a, size_t l) { if (munmap(a, l)) kshim_die("munmap"); }
static inline int xopen(const char *p, int fl, mode_t m) { int fd = open(p, fl, m); if (fd < 0) kshim_die("open"); return fd; }
static inline void xclose(int fd) { if (close(fd)) kshim_die("close"); }
static inline void xpipe(int fds[2]) { if (pipe(fds)) kshim_die("pipe"); }
static inline void xwrite(int fd, const void *b, size_t l) { if (write(fd, b, l) != (ssize_t)l) kshim_die("write"); }
static inline void xsignal(int s, void (*h)(int)) { if (signal(s, h) == SIG_ERR) kshim_die("signal"); }
static inline void xraise(int s) { if (raise(s)) kshim_die("raise"); }
#define KSHIM_PT(call, what) do { int e_ = (call); if (e_) { errno = e_; kshim_die(what); } } while (0)
static inline pthread_t xpthread_create(pthread_attr_t *a, void *(*f)(void *), void *arg)
{
    pthread_t t;
    KSHIM_PT(pthread_create(&t, a, f, arg), "pthread_create");
    return t;
}
static inline void *xpthread_join(pthread_t t) { void *r; KSHIM_PT(pthread_join(t, &r), "pthread_join"); return r; }
static inline void xpthread_detach(pthread_t t) { KSHIM_PT(pthread_detach(t), "pthread_detach"); }
static inline void xpthread_cancel(pthread_t t) { KSHIM_PT(pthread_cancel(t), "pthread_cancel"); }
static inline void xpthread_kill(pthread_t t, int s) { KSHIM_PT(pthread_kill(t, s), "pthread_kill"); }
static inline void xpthread_mutex_lock(pthread_mutex_t *m) { KSHIM_PT(pthread_mutex_lock(m), "pthread_mutex_lock"); }
static inline void xpthread_mutex_unlock(pthread_mutex_t *m) { KSHIM_PT(pthread_mutex_unlock(m), "pthread_mutex_unlock"); }
static inline void xpthread_sigmask(int h, const sigset_t *s, sigset_t *o) { KSHIM_PT(pthread_sigmask(h, s, o), "pthread_sigmask"); }
static inline void xpthread_attr_init(pthread_attr_t *a) { KSHIM_PT(pthread_attr_init(a), "pthread_attr_init"); }
static inline void xpthread_attr_destroy(pthread_attr_t *a) { KSHIM_PT(pthread_attr_destroy(a), "pthread_attr_destroy"); }
static inline void xpthread_attr_setstacksize(pthread_attr_t *a, size_t s) { KSHIM_PT(pthread_attr_setstacksize(a, s), "pthread_attr_setstacksize"); }
static inline void xpthread_attr_setdetachstate(pthread_attr_t *a, int s) { KSHIM_PT(pthread_attr_setdetachstate(a, s), "pthread_attr_setdetachstate"); }
static inline void xpthread_attr_setguardsize(pthread_attr_t *a, size_t s) { KSHIM_PT(pthread_attr_setguardsize(a, s), "pthread_attr_setguardsize"); }
static inline void xpthread_barrier_init(pthread_barrier_t *b, pthread_barrierattr_t *a, unsigned n) { KSHIM_PT(pthread_barrier_init(b, a, n), "pthread_barrier_init"); }
static inline void xpthread_barrier_destroy(pthread_barrier_t *b) { KSHIM_PT(pthread_barrier_destroy(b), "pthread_barrier_destroy"); }
static inline int xpthread_barrier_wait(pthread_barrier_t *b)
{
    int r = pthread_barrier_wait(b);
    if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD) { errno = r; kshim_die("pthread_barrier_wait"); }
    return r == PTHREAD_BARRIER_SERIAL_THREAD;
}
static inline void xpthread_barrierattr_init(pthread_barrierattr_t *a) { KSHIM_PT(pthread_barrierattr_init(a), "pthread_barrierattr_init"); }
static inline void xpthread_barrierattr_destroy(pthread_barrierattr_t *a) { KSHIM_PT(pthread_barrierattr_destroy(a), "pthread_barrierattr_destroy"); }
static inline void xpthread_barrierattr_setpshared(pthread_barrierattr_t *a, int s) { KSHIM_PT(pthread_barrierattr_setpshared(a, s), "pthread_barrierattr_setpshared"); }
/* Memory shared with forked children (glibc's is an mmap too). */
static inline void *support_shared_allocate(size_t s)
{
    return xmmap(NULL, s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
}
static inline void support_shared_free(void *p) { (void)p; }
static inline void write_message(const char *m) { ssize_t r = write(STDOUT_FILENO, m, strlen(m)); (void)r; }
static inline int create_temp_file(const char *base, char **name)
{
    char *t = xasprintf("%s/%sXXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", base);
    int fd = mkstemp(t);
    if (fd < 0)
        kshim_die("mkstemp");
    if (name)
        *name = t;
    else
        free(t);
    return fd;
}
static inline void ignore_stderr(void) {}
#endif
