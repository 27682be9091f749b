/*
 * platform/os.cc - system-call wrappers for memory and output (see os.h).
 */
#include "platform/os.h"
#include "platform/kthread.h"

#include "platform/options.h"
#include "platform/printk.h"
#include "platform/timekeeping.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <limits.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace kalloc {

/* open, read, pread, write and close are cancellation points in glibc;
 * through syscall(2) they are not, so a thread with a pending
 * pthread_cancel is never cancelled inside kalloc (holding a lock, as the
 * cgroup pressure check holds vmscan_lock while it reads /proc). */
static inline int sys_open(const char *path, int flags)
{
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, 0);
}
static inline ssize_t sys_read(int fd, void *buf, size_t n) { return syscall(SYS_read, fd, buf, n); }
static inline ssize_t sys_pread(int fd, void *buf, size_t n, off_t off)
{
    return syscall(SYS_pread64, fd, buf, n, off);
}
static inline ssize_t sys_write(int fd, const void *buf, size_t n) { return syscall(SYS_write, fd, buf, n); }
static inline int sys_close(int fd) { return (int)syscall(SYS_close, fd); }

void *os_map_fixed(void *addr, size_t len, int fd, uint64_t offset)
{
    /* addr as a hint, not MAP_FIXED_NOREPLACE: sandboxes check mmap's flags
     * against those glibc passes, and Chromium's kills the process on any
     * other (RestrictMmapFlags).  The kernel takes a hint whose whole range
     * is free as it is, and never replaces a mapping for one; a mapping that
     * lands elsewhere means something is there: undone, EEXIST. */
    int flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED;
    void *p = mmap(addr, len, PROT_READ | PROT_WRITE, flags, fd, (off_t)offset);
    if (p == MAP_FAILED)
        return nullptr;
    if (p != addr) {
        munmap(p, len);
        errno = EEXIST;
        return nullptr;
    }
    return p;
}

void *os_map(size_t len, bool noreserve)
{
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0);
    void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

void *os_map_readonly(size_t len)
{
    void *p = mmap(nullptr, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

bool os_protect_rw(void *addr, size_t len)
{
    return mprotect(addr, len, PROT_READ | PROT_WRITE) == 0;
}

void os_unmap(void *addr, size_t len)
{
    int saved = errno;
    munmap(addr, len);
    errno = saved;
}

bool os_remap_inplace(void *addr, size_t old_len, size_t new_len)
{
    void *p = mremap(addr, old_len, new_len, 0);
    return p != MAP_FAILED;
}

void *os_remap_fixed(void *addr, size_t old_len, size_t new_len, void *new_addr)
{
    void *p = mremap(addr, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, new_addr);
    return p == MAP_FAILED ? nullptr : p;
}

/* madvise(advice) that drops [addr, addr + len), which then reads zero
 * (MADV_DONTNEED, MADV_REMOVE).  Where the kernel refuses (EINVAL: locked
 * pages, after mlockall(MCL_FUTURE) or a program's mlock of a block it then
 * freed; EPERM or EINVAL from a seccomp filter that does not list the
 * advice, as Chromium's and OpenSSH's do for MADV_REMOVE; EAGAIN) the range
 * is cleared in place instead, 64 KiB at a time, so that a lock on a few
 * pages costs only their chunk: reclaim marks what it gave back as reading
 * zero, and calloc hands such memory out without clearing it (before
 * session 40, calloc under mlockall returned old bytes; before session 44,
 * calloc in a memory-file zone under an EPERM filter).  Only ENOMEM (not
 * mapped: nothing to clear) is left as it is. */
static void drop_or_zero(void *addr, size_t len, int advice)
{
    if (madvise(addr, len, advice) == 0 || errno == ENOMEM)
        return;
    constexpr uintptr_t CHUNK = 64 << 10;
    char *p = (char *)addr, *end = p + len;
    while (p < end) {
        size_t n = CHUNK - ((uintptr_t)p & (CHUNK - 1));
        if (n > (size_t)(end - p))
            n = (size_t)(end - p);
        if (madvise(p, n, advice) != 0 && errno != ENOMEM)
            memset(p, 0, n);
        p += n;
    }
}

void os_decommit(void *addr, size_t len)
{
    int saved = errno;
    drop_or_zero(addr, len, MADV_DONTNEED);
    errno = saved;
}

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
/* include/uapi/linux/pidfd.h: the calling thread, no descriptor needed. */
constexpr int PIDFD_SELF_THREAD = -10000;

/* process_madvise for MADV_DONTNEED on this process: 0 not tried yet,
 * 1 works, -1 refused (an older kernel): madvise from then on. */
static int batch_state;

bool os_decommit_batches()
{
    /* Valgrind 3.19 does not know process_madvise: its "unhandled syscall
     * 440" warning on the program's stderr is worth more than the batch. */
    return READ_ONCE(batch_state) >= 0 && !options_under_valgrind();
}

bool os_decommit_many(const os_range *r, unsigned n, bool batch)
{
    static_assert(sizeof(os_range) == sizeof(struct iovec) &&
                  offsetof(os_range, addr) == offsetof(struct iovec, iov_base) &&
                  offsetof(os_range, len) == offsetof(struct iovec, iov_len));
    if (!n)
        return false;
    int saved = errno;
    if (batch && n > 1 && os_decommit_batches() && n <= IOV_MAX) {
        size_t total = 0;
        for (unsigned i = 0; i < n; i++)
            total += r[i].len;
        long rc = syscall(SYS_process_madvise, PIDFD_SELF_THREAD, (const struct iovec *)r,
                          (size_t)n, MADV_DONTNEED, 0u);
        if (rc == (long)total) {
            if (!READ_ONCE(batch_state))
                WRITE_ONCE(batch_state, 1);
            errno = saved;
            return true;
        }
        /* ENOSYS (before 5.10), EINVAL (MADV_DONTNEED on itself before
         * 6.13), EBADF (PIDFD_SELF before 6.15), EPERM: never again.  A
         * partial count: the rest below (MADV_DONTNEED twice is harmless). */
        if (rc < 0 && (errno == ENOSYS || errno == EINVAL || errno == EBADF || errno == EPERM ||
                       errno == ESRCH))
            WRITE_ONCE(batch_state, -1);
    }
    for (unsigned i = 0; i < n; i++)
        drop_or_zero(r[i].addr, r[i].len, MADV_DONTNEED);
    errno = saved;
    return false;
}

/* Drop [p, p + n) (it reads zero after), or clear it in place when the
 * kernel refuses. */
static void zero_by_drop(char *p, size_t n)
{
    drop_or_zero(p, n, MADV_DONTNEED);
}

bool os_page_reads_zero(const char *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < 4096 / sizeof *w; i += 8)
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    return true;
}

void os_zero_range(void *addr, size_t len)
{
    constexpr size_t pg = 4096;
    /* 4 MiB per mincore call: its vector is on the stack of whatever thread
     * callocs (os_read_fields says why that stack may be small). */
    constexpr size_t chunk_pages = 1024;
    constexpr unsigned batch = 32;      /* ranges dropped per call (os_decommit_many) */
    int saved = errno;
    /* Sandboxes allow what glibc's malloc calls (madvise among them) and may
     * kill the process on anything else: no mincore under a seccomp filter,
     * so all of it is dropped, as in a fresh mapping. */
    if (os_seccomp_filtered()) {
        zero_by_drop((char *)addr, len);
        errno = saved;
        return;
    }
    unsigned char vec[chunk_pages];
    os_range drop[batch];
    unsigned ndrop = 0;
    char *p = (char *)addr;
    size_t left = len;
    while (left) {
        size_t n = left < chunk_pages * pg ? left : chunk_pages * pg;
        size_t npages = (n + pg - 1) / pg;
        if (mincore(p, n, vec) != 0) {
            zero_by_drop(p, n);
            p += n;
            left -= n;
            continue;
        }
        for (size_t i = 0; i < npages;) {
            size_t j = i;
            bool res = vec[i] & 1;
            while (j < npages && (bool)(vec[j] & 1) == res)
                j++;
            if (res) {
                /* Resident: the program's own pages, cleared in place (the
                 * area's reuse: no fault when it writes them again), but
                 * not those that read zero already.  mincore counts the
                 * shared zero page a read mapped as resident, and clearing
                 * it copies it: a program that read what it had not written
                 * (numpy's zeros of a 72 MB matrix, written every 10th row,
                 * then summed) had every page of it made resident at its
                 * next calloc, 102.7 MB peak against glibc's 38.8. */
                for (size_t k = i; k < j;) {
                    if (os_page_reads_zero(p + k * pg)) {
                        k++;
                        continue;
                    }
                    size_t m = k + 1;
                    while (m < j && !os_page_reads_zero(p + m * pg))
                        m++;
                    memset(p + k * pg, 0, (m - k) * pg);
                    k = m + 1;          /* page m, if any, read zero */
                }
            } else {
                /* Not resident: never touched or given back (reads zero
                 * already) or swapped out (holds the old contents): dropped,
                 * `batch` runs per call, so scattered runs cost few calls. */
                size_t off = i * pg, end = j * pg < n ? j * pg : n;
                drop[ndrop++] = os_range{p + off, end - off};
                if (ndrop == batch) {
                    os_decommit_many(drop, ndrop, true);
                    ndrop = 0;
                }
            }
            i = j;
        }
        p += n;
        left -= n;
    }
    if (ndrop)
        os_decommit_many(drop, ndrop, true);
    errno = saved;
}

void os_decommit_backed(void *addr, size_t len, bool shared)
{
    int saved = errno;
    drop_or_zero(addr, len, shared ? MADV_REMOVE : MADV_DONTNEED);
    errno = saved;
}

bool os_fd_identity(int fd, uint64_t *dev, uint64_t *ino)
{
    int saved = errno;
    struct stat st;
    /* The system call, not libc's fstat, which tools such as fakeroot wrap. */
    bool ok = fd >= 0 && syscall(SYS_fstat, fd, &st) == 0;
    errno = saved;
    if (!ok)
        return false;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return true;
}

void *os_map_shared(size_t len)
{
    void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

void os_futex_wait_shared(int *word, int val, unsigned timeout_ms)
{
    int saved = errno;
    struct timespec ts = {(time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000};
    syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, nullptr, 0);
    errno = saved;
}

void os_futex_wake_shared(int *word)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
    errno = saved;
}

int os_getpid() { return (int)syscall(SYS_getpid); }

int os_open_append(const char *path)
{
    int saved = errno;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    errno = saved;
    return fd < 0 ? -1 : fd;
}

/* The soft limits last read (~0: unlimited, or never read). */
static uint64_t soft_limit_seen[2] = {~0ull, ~0ull};

/* The soft limit `resource` in bytes, ~0 when unlimited or unreadable,
 * read now (prlimit64: the caller knows it is allowed), and remembered in
 * soft_limit_seen[slot]. */
static uint64_t read_soft_limit(int resource, unsigned slot)
{
    int saved = errno;
    struct rlimit rl;
    long rc = syscall(SYS_prlimit64, 0, resource, nullptr, &rl);
    errno = saved;
    uint64_t v = rc != 0 || rl.rlim_cur == RLIM_INFINITY ? ~0ull : (uint64_t)rl.rlim_cur;
    WRITE_ONCE(soft_limit_seen[slot], v);
    return v;
}

/* glibc's malloc never asks for a limit, and a sandbox may kill the process
 * on prlimit64 (OpenSSH's pre-auth filter does): under a seccomp filter the
 * limit last read is used. */
static uint64_t os_soft_limit(int resource, unsigned slot)
{
    if (os_seccomp_filtered())
        return READ_ONCE(soft_limit_seen[slot]);
    return read_soft_limit(resource, slot);
}

uint64_t os_data_limit() { return os_soft_limit(RLIMIT_DATA, 0); }

/* soft_limit_seen holds the limits read at load once this is set. */
__start_state static bool limits_at_load_read;

/* Whether the library has a constructor that reads the limits at load: the
 * shared library's preload/ layer defines this true (preload/dlopen.cc);
 * the static library has no such constructor, and this weak default says
 * so.  Not const: a const one is a constant expression, which the compiler
 * folds whatever the definition that wins at link time. */
extern "C" {
__attribute__((weak, visibility("hidden"))) bool kalloc_load_constructor = false;
}

/* The constructor has started (os_note_load_constructor). */
__start_state static bool load_constructor_ran;

void os_read_limits_at_load()
{
    if (READ_ONCE(limits_at_load_read))
        return;
    read_soft_limit(RLIMIT_DATA, 0);
    read_soft_limit(RLIMIT_AS, 1);
    WRITE_ONCE(limits_at_load_read, true);
}

void os_note_load_constructor() { WRITE_ONCE(load_constructor_ran, true); }

bool os_limits_at_load(uint64_t *as, uint64_t *data)
{
    if (!READ_ONCE(limits_at_load_read)) {
        if (!kalloc_load_constructor || READ_ONCE(load_constructor_ran))
            return false;
        os_read_limits_at_load();   /* still starting: before kalloc's constructor */
    }
    *as = READ_ONCE(soft_limit_seen[1]);
    *data = READ_ONCE(soft_limit_seen[0]);
    return true;
}

uint64_t os_as_limit() { return os_soft_limit(RLIMIT_AS, 1); }

bool os_child_exited(int pid)
{
    int saved = errno;
    siginfo_t si;
    si.si_pid = 0;
    bool gone = syscall(SYS_waitid, P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT, nullptr) != 0 ||
                si.si_pid == pid;
    errno = saved;
    return gone;
}

int os_memfd_create(const char *name, uint64_t size)
{
    int fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fd <= 2) {
        /* A program started with stdin, stdout or stderr closed: its next
         * print to that number would write into the heap's file.  Above 2. */
        int high = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3);
        int saved = errno;
        sys_close(fd);
        errno = saved;
        if (high < 0)
            return -1;
        fd = high;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        int saved = errno;
        sys_close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

bool os_map_file_replace(void *addr, size_t len, int fd, uint64_t offset)
{
    void *p = mmap(addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)offset);
    return p == addr;
}

bool os_is_mapped(void *addr, size_t len)
{
    int saved = errno;
    bool mapped = madvise(addr, len, MADV_NORMAL) == 0 || errno != ENOMEM;
    errno = saved;
    return mapped;
}

void os_punch_hole(int fd, uint64_t offset, uint64_t len)
{
    int saved = errno;
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len);
    errno = saved;
}

/* Call range(data, hole) for each range of memory file fd that holds pages
 * (lseek SEEK_DATA / SEEK_HOLE) below `size`, clipped to it; false when a
 * seek or range() fails. */
template <typename Range>
static bool for_each_data_range(int fd, uint64_t size, Range range)
{
    off_t pos = 0;
    while ((uint64_t)pos < size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO;          /* no data past pos */
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return false;
        if ((uint64_t)hole > size)
            hole = (off_t)size;
        if (data < hole && !range(data, hole))
            return false;
        pos = hole;
    }
    return true;
}

bool os_copy_file_data(int from, int to, uint64_t size)
{
    constexpr size_t buf_len = 64 * 1024;
    char *buf = nullptr;
    bool ok = for_each_data_range(from, size, [from, to, &buf](off_t data, off_t hole) {
        off_t in = data, out = data;
        while (in < hole) {
            ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(hole - in), 0);
            if (n > 0)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            if (n == 0)
                break;
            /* copy_file_range unsupported here: copy through a buffer,
             * mapped, not on the stack of the thread that forks. */
            if (!buf && !(buf = (char *)os_map(buf_len, false)))
                return false;
            ssize_t r = sys_pread(from, buf, (size_t)(hole - in) < buf_len ? (size_t)(hole - in) : buf_len, in);
            if (r <= 0)
                return false;
            for (ssize_t done = 0; done < r;) {
                ssize_t w = pwrite(to, buf + done, (size_t)(r - done), in + done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return false;
                done += w;
            }
            in += r;
            out = in;
        }
        return true;
    });
    if (buf)
        os_unmap(buf, buf_len);
    return ok;
}

bool os_copy_file_ranges_to_memory(int fd, uint64_t size, const char *src, char *dst)
{
    return for_each_data_range(fd, size, [src, dst](off_t data, off_t hole) {
        memcpy(dst + data, src + data, (size_t)(hole - data));
        return true;
    });
}

bool os_pipe(int fds[2])
{
    return pipe2(fds, O_CLOEXEC) == 0;
}

bool os_read_byte(int fd, char *c)
{
    int saved = errno;
    ssize_t n;
    do
        n = sys_read(fd, c, 1);
    while (n < 0 && errno == EINTR);
    errno = saved;
    return n == 1;
}

void os_close(int fd)
{
    int saved = errno;
    sys_close(fd);
    errno = saved;
}

void os_block_signals(uint64_t *old)
{
    uint64_t all = ~0ull;
    int saved = errno;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, old, sizeof(all));
    errno = saved;
}

void os_restore_signals(uint64_t old)
{
    int saved = errno;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof(old));
    errno = saved;
}

unsigned os_nr_threads()
{
    static const char *const keys[] = {"Threads:"};
    uint64_t threads = 0;
    if (!os_read_fields("/proc/self/status", keys, &threads, 1))
        return 0;
    return (unsigned)threads;
}

bool os_decommit_worth_asking(unsigned n)
{
    return n >= OS_DECOMMIT_ASK_MIN || (n > 1 && !process_single_threaded());
}

/* os_seccomp_scope: 0 outside one, 1 inside one (not read yet), 2 inside
 * one after a read found no filter. */
static __thread uint8_t seccomp_scope __attribute__((tls_model("initial-exec")));

os_seccomp_scope::os_seccomp_scope() : outermost(seccomp_scope == 0)
{
    if (outermost)
        seccomp_scope = 1;
}

os_seccomp_scope::~os_seccomp_scope()
{
    if (outermost)
        seccomp_scope = 0;
}

bool os_seccomp_filtered()
{
    static bool filtered;        /* seen once: filters are never removed */
    if (option_get(OPT_TRUST_SECCOMP))
        return false;            /* the user vouches for the filter (a container's) */
    if (READ_ONCE(filtered))
        return true;
    if (seccomp_scope == 2)
        return false;            /* read in this scope: none */
    /* The calling thread's: a filter installed without TSYNC is only in the
     * thread that installed it (and threads it creates later). */
    static const char *const keys[] = {"Seccomp:"};
    uint64_t mode = 0;
    if (!os_read_fields("/proc/thread-self/status", keys, &mode, 1) &&
        !os_read_fields("/proc/self/status", keys, &mode, 1))
        return true;             /* unknown: not remembered */
    if (mode == 0) {
        if (seccomp_scope)
            seccomp_scope = 2;
        return false;
    }
    if (!__atomic_exchange_n(&filtered, true, __ATOMIC_RELAXED) && option_get(OPT_VERBOSE))
        fdprintk(2, "kalloc: note: a seccomp filter: mincore, membarrier and process_madvise left out "
                    "(KALLOC_TRUST_SECCOMP=1 if the filter allows them)\n");
    return true;
}

long os_resident_pages(void *addr, size_t npages)
{
    constexpr size_t chunk = 1024;
    unsigned char vec[chunk];
    int saved = errno;
    long resident = 0;
    for (size_t off = 0; off < npages; off += chunk) {
        size_t n = npages - off < chunk ? npages - off : chunk;
        if (mincore((char *)addr + off * 4096, n * 4096, vec) != 0) {
            errno = saved;
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            resident += vec[i] & 1;
    }
    errno = saved;
    return resident;
}

void os_hugepage(void *addr, size_t len)
{
    int saved = errno;
    madvise(addr, len, MADV_HUGEPAGE);
    errno = saved;
}

void os_write(int fd, const char *buf, size_t len)
{
    int saved = errno;
    /* The program did not ask for this output: a write past its file-size
     * limit must not kill it with SIGXFSZ (OpenSSH's pre-auth child runs
     * with RLIMIT_FSIZE 0, and KALLOC_STATS's report at its exit killed
     * it when stderr was a file).  SIGXFSZ is blocked for the write
     * (rt_sigprocmask: sandboxes allow it); when the write fails with
     * EFBIG the signal it raised stays pending and blocked in this thread
     * (consuming it takes calls sandboxes refuse), and kalloc's later
     * writes past the limit fail the same way, quietly (to a pipe or a
     * terminal they still go out: a fatal error's line is not lost);
     * otherwise the mask is restored. */
    uint64_t xfsz = 1ull << (SIGXFSZ - 1), old = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &xfsz, &old, sizeof(xfsz));
    bool efbig = false;
    while (len) {
        ssize_t n = sys_write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            efbig = errno == EFBIG;
            break;
        }
        buf += n;
        len -= (size_t)n;
    }
    if (!efbig && !(old & xfsz))
        syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &xfsz, nullptr, sizeof(xfsz));
    errno = saved;
}

bool os_resident_and_peak(uint64_t *rss, uint64_t *peak)
{
    static const char *const keys[] = {"VmRSS:", "VmHWM:"};
    uint64_t kb[2] = {0, 0};
    *rss = *peak = 0;
    if (!os_read_fields("/proc/self/status", keys, kb, 2))
        return false;
    *rss = kb[0] << 10;
    *peak = kb[1] << 10;
    return *rss && *peak;
}

uint64_t os_resident_bytes()
{
    int saved = errno;
    char buf[128];
    uint64_t rss = 0;
    int fd = sys_open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = sys_read(fd, buf, sizeof(buf) - 1);
        sys_close(fd);
        if (n > 0) {
            buf[n] = 0;
            const char *s = buf;
            while (*s && *s != ' ')     /* skip size */
                s++;
            while (*s == ' ')
                s++;
            while (*s >= '0' && *s <= '9')
                rss = rss * 10 + (uint64_t)(*s++ - '0');
            rss *= OS_PAGE_SIZE;
        }
    }
    errno = saved;
    return rss;
}

bool os_smaps_rollup(uint64_t *rss, uint64_t *anon_huge)
{
    smaps_usage u{};
    bool ok = os_smaps_usage(nullptr, 0, &u);
    *rss = ok ? u.rss : 0;
    *anon_huge = ok ? u.anon_huge : 0;
    return ok;
}

uint64_t os_random_seed()
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    if (r)
        for (int i = 0; i < 8; i++)
            seed = (seed << 8 | (seed >> 56)) ^ r[i];
    seed ^= (uint64_t)ktime_get_ns() * 0xbf58476d1ce4e5b9ull;
    seed ^= seed >> 31;
    return seed;
}

} // namespace kalloc

/* ---------------------------------------------------------------------------
 * Hugepages and /proc readers (appended: reclaim and THP support)
 * ------------------------------------------------------------------------- */

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

namespace kalloc {

void os_nohugepage(void *addr, size_t len)
{
    int saved = errno;
    madvise(addr, len, MADV_NOHUGEPAGE);
    errno = saved;
}

int os_collapse(void *addr, size_t len)
{
    int saved = errno;
    int r = madvise(addr, len, MADV_COLLAPSE) == 0 ? 0 : errno;
    errno = saved;
    return r;
}

int os_populate_write(void *addr, size_t len)
{
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
    static int refused;      /* EINVAL (unknown advice) or EPERM (filtered), once seen */
    int r = READ_ONCE(refused);
    if (r)
        return r;
    int saved = errno;
    r = madvise(addr, len, MADV_POPULATE_WRITE) == 0 ? 0 : errno;
    errno = saved;
    if (r == EINVAL || r == EPERM)
        WRITE_ONCE(refused, r);
    return r;
}

void os_populate_zeroed(void *addr, size_t len)
{
    if (os_populate_write(addr, len) != 0)
        memset(addr, 0, len);    /* the pages read zero: this only faults them in */
}

void *os_map_fixed_hugetlb(void *addr, size_t len)
{
    int saved = errno;
    void *p = mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED) {
        errno = saved;
        return nullptr;
    }
    if (p != addr) {
        munmap(p, len);
        errno = saved;
        return nullptr;
    }
    errno = saved;
    return p;
}

long os_read_file(const char *path, char *buf, size_t len)
{
    int saved = errno;
    long total = -1;
    int fd = sys_open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        total = 0;
        while ((size_t)total < len - 1) {
            ssize_t n = sys_read(fd, buf + total, len - 1 - (size_t)total);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            total += n;
        }
        buf[total] = 0;
        sys_close(fd);
    }
    errno = saved;
    return total;
}

static bool starts_with(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return false;
    return true;
}

static uint64_t parse_u64(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (uint64_t)(*s++ - '0');
    return v;
}

uint64_t os_parse_field(const char *buf, const char *key, uint64_t dflt)
{
    for (const char *line = buf; line && *line;) {
        if (starts_with(line, key))
            return parse_u64(line + __builtin_strlen(key));
        while (*line && *line != '\n')
            line++;
        if (*line)
            line++;
    }
    return dflt;
}

/* Feed the lines of fd, NUL-terminated without their newline, to line(),
 * through buf[len]: a line longer than the buffer is given cut at the
 * buffer's size, its rest as further lines (long_lines), or skipped.  line()
 * returns false to stop reading. */
template <class F>
static void read_lines(int fd, char *buf, size_t len, bool long_lines, F &&line)
{
    size_t have = 0;
    bool skipping = false;       /* inside a skipped line longer than the buffer */
    bool go = true;
    while (go) {
        ssize_t got = sys_read(fd, buf + have, len - 1 - have);
        if (got < 0 && errno == EINTR)
            continue;
        bool eof = got <= 0;
        if (got > 0)
            have += (size_t)got;
        size_t start = 0;
        for (size_t nl = 0; nl < have && go; nl++) {
            if (buf[nl] != '\n')
                continue;
            buf[nl] = 0;
            if (!skipping)
                go = line(buf + start);
            skipping = false;
            start = nl + 1;
        }
        if (go && start < have && (eof || (start == 0 && have == len - 1))) {
            /* No newline: a last line at EOF, or a line longer than the buffer. */
            buf[have] = 0;
            if (eof ? !skipping : long_lines)
                go = line(buf);
            else if (!eof)
                skipping = true;
            start = have;
        }
        for (size_t i = start; i < have; i++)
            buf[i - start] = buf[i];
        have -= start;
        if (eof)
            break;
    }
}

/* os_read_fields (os.h): a 256-byte buffer, line by line.  The malloc slow
 * paths that read /proc/self/status (reclaim's RSS guard and seccomp check,
 * on whatever thread frees) must fit on the smallest stack a program may
 * give a thread (16 KiB): with a 4 KiB buffer for each read, two of them in
 * one reclaim pass, kalloc's deepest slow path took 13.5 KiB of such a
 * thread's stack where glibc's malloc takes 7.3 KiB (8.6 KiB now;
 * Threads.SmallStacksRunEverySlowPath). */
bool os_read_fields(const char *path, const char *const *keys, uint64_t *vals, unsigned n)
{
    int saved = errno;
    int fd = sys_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return false;
    }
    char buf[256];
    unsigned found = 0;
    read_lines(fd, buf, sizeof(buf), false, [&](const char *line) {
        for (unsigned k = 0; k < n; k++)
            if (starts_with(line, keys[k])) {
                vals[k] = parse_u64(line + __builtin_strlen(keys[k]));
                found++;
            }
        return found < n;
    });
    sys_close(fd);
    errno = saved;
    return true;
}

static uint64_t parse_hex(const char **sp)
{
    const char *s = *sp;
    uint64_t v = 0;
    for (;; s++) {
        char c = *s;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uint64_t)(c - 'a' + 10);
        else
            break;
    }
    *sp = s;
    return v;
}

/* One line of smaps: a mapping header "lo-hi perms ..." decides whether the
 * following field lines ("Rss:  12 kB") count. */
static void smaps_line(char *line, const uintptr_t (*ranges)[2], unsigned nr, bool *counting,
                       smaps_usage *out)
{
    if ((*line >= '0' && *line <= '9') || (*line >= 'a' && *line <= 'f')) {
        const char *s = line;
        uint64_t lo = parse_hex(&s);
        uint64_t hi = *s == '-' ? (s++, parse_hex(&s)) : lo;
        if (nr) {
            *counting = false;
            for (unsigned i = 0; i < nr; i++)
                if (lo >= ranges[i][0] && hi <= ranges[i][1])
                    *counting = true;
        }
        return;
    }
    if (!*counting)
        return;
    if (starts_with(line, "Rss:"))
        out->rss += parse_u64(line + 4) << 10;
    else if (starts_with(line, "AnonHugePages:"))
        out->anon_huge += parse_u64(line + 14) << 10;
    else if (starts_with(line, "Private_Hugetlb:"))
        out->hugetlb += parse_u64(line + 16) << 10;
    else if (starts_with(line, "Shared_Hugetlb:"))
        out->hugetlb += parse_u64(line + 15) << 10;
}

bool os_smaps_usage(const uintptr_t (*ranges)[2], unsigned nr, smaps_usage *out)
{
    *out = {};
    int saved = errno;
    int fd = sys_open(nr ? "/proc/self/smaps" : "/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return false;
    }
    char buf[4096];
    bool counting = nr == 0;
    read_lines(fd, buf, sizeof(buf), true, [&](char *line) {
        smaps_line(line, ranges, nr, &counting, out);
        return true;
    });
    sys_close(fd);
    errno = saved;
    return true;
}

} // namespace kalloc
