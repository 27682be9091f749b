/*
 * platform/os.h - the operating system as the allocator sees it.
 *
 * The only place (with printk, options and cpu) that talks to the kernel:
 * reserving and returning address space (mmap/munmap/mremap), giving pages
 * back (madvise), and writing bytes to a file descriptor.  Everything above
 * calls these, so the page allocator can be tested on a fake platform and
 * a zone's backing can change (anonymous memory now, a memory file later)
 * without touching the buddy code.
 *
 * All functions are async-signal-safe system-call wrappers; none allocates.
 * Failures return nullptr/false with errno set by the kernel.
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

constexpr size_t OS_PAGE_SIZE = 4096;

/* Map `len` bytes of fresh zeroed read-write memory exactly at `addr`,
 * failing (nullptr, errno EEXIST) instead of replacing anything already
 * mapped there: `addr` is passed as a hint (no MAP_FIXED_NOREPLACE, which
 * sandboxes may kill on), and a mapping that lands elsewhere is undone.  `fd` < 0: anonymous memory; otherwise a
 * shared mapping of `fd` at `offset` (memory-file backed zones). */
void *os_map_fixed(void *addr, size_t len, int fd, uint64_t offset);

/* Map `len` bytes of fresh zeroed memory anywhere (metadata, huge blocks).
 * `noreserve`: MAP_NORESERVE, for large descriptor arrays touched lazily. */
void *os_map(size_t len, bool noreserve);

/* Map `len` bytes that read as zero and cannot be written yet (private,
 * PROT_READ, MAP_NORESERVE): readers never fault, and until a part is made
 * writable (os_protect_rw) it counts neither against RLIMIT_DATA nor, under
 * mlockall, as locked memory (the kernel maps its zero page). */
void *os_map_readonly(size_t len);

/* Make [addr, addr + len) of such a mapping writable (mprotect); false when
 * refused (errno ENOMEM: RLIMIT_DATA, the mapping count, the commit
 * limit). */
bool os_protect_rw(void *addr, size_t len);

void os_unmap(void *addr, size_t len);

/* Grow or shrink a mapping in place (mremap without MREMAP_MAYMOVE). */
bool os_remap_inplace(void *addr, size_t old_len, size_t new_len);

/* Move a mapping to `new_addr` (mremap MREMAP_MAYMOVE|MREMAP_FIXED); the
 * kernel moves the page tables, no bytes are copied. */
void *os_remap_fixed(void *addr, size_t old_len, size_t new_len, void *new_addr);

/* Give the pages back (MADV_DONTNEED): they read as zero afterwards and no
 * longer count in the resident set. */
void os_decommit(void *addr, size_t len);

/* One range of os_decommit_many. */
struct os_range {
    void *addr;                  /* page aligned */
    size_t len;                  /* bytes, a multiple of the page size */
};

/* Give n ranges of private anonymous memory back (MADV_DONTNEED each).  When
 * `batch` is true (the caller checked os_seccomp_filtered() in this pass: a
 * sandbox may kill the process on a call glibc's malloc never makes) and the
 * kernel takes it, with one process_madvise(PIDFD_SELF, ranges,
 * MADV_DONTNEED) call: the kernel then flushes the TLBs once for the batch,
 * not once per range.  In a multi-threaded process each flush is an
 * inter-processor interrupt to every other CPU running it: 22 us a range on
 * this project's VM with a second thread running, 2.7 us batched by 32.  A
 * single-threaded process flushes locally, and still pays a system call
 * and a flush per range: 4.5 us a range of 2 pages, 2.6 us batched by 32.
 * Linux 6.13 allows any advice on the calling process, 6.15 knows
 * PIDFD_SELF; on an older kernel the first call fails and every later one
 * loops over madvise.  True when one call gave the whole batch back. */
bool os_decommit_many(const os_range *r, unsigned n, bool batch);

/* Whether os_decommit_many would use one call for a batch now (the kernel
 * has not refused one): callers ask before paying for the
 * os_seccomp_filtered() check. */
bool os_decommit_batches();

/* Make a private anonymous range (page aligned) read as zero without making
 * it resident: its resident pages are cleared with memset, but not those
 * that read zero already (the shared zero page a read mapped, which a
 * memset would copy); the others (never touched, given back, or swapped out)
 * are dropped with MADV_DONTNEED, 32 runs per call (os_decommit_many), so
 * they fault in as zero pages when touched.  mincore tells which is which,
 * 4 MiB per call through a 1 KiB stack vector.  Under a seccomp filter (no
 * mincore there) the whole range is dropped. */
void os_zero_range(void *addr, size_t len);

/* Whether the (mapped, 4 KiB) page at p reads all zero: a page with
 * contents usually shows it in its first line, so the loop stops there. */
bool os_page_reads_zero(const char *p);

/* Give the pages back whatever maps them: not `shared` (anonymous private
 * memory) MADV_DONTNEED as os_decommit; otherwise the range is a shared
 * mapping of a memory file and MADV_REMOVE frees the file pages behind it
 * (MADV_DONTNEED would only drop this mapping's page-table entries and keep
 * the file pages, so nothing would be given back). */
void os_decommit_backed(void *addr, size_t len, bool shared);

/* The identity (st_dev, st_ino) of the file open as fd; false when fd is
 * not open.  Tells whether a descriptor kalloc keeps still names its file:
 * a program may close every descriptor it did not open (a daemon's start)
 * and open its own files under the same numbers. */
bool os_fd_identity(int fd, uint64_t *dev, uint64_t *ino);

/* Shared anonymous memory (MAP_SHARED | MAP_ANONYMOUS): seen by a fork
 * child and its parent alike.  nullptr on failure. */
void *os_map_shared(size_t len);

/* Wait while *word == val (at most timeout_ms), or wake one waiter, on a
 * word in shared memory: across processes (not FUTEX_PRIVATE). */
void os_futex_wait_shared(int *word, int val, unsigned timeout_ms);
void os_futex_wake_shared(int *word);

/* The soft RLIMIT_DATA in bytes, or ~0 when unlimited (or unknown).  Under
 * a seccomp filter (os_seccomp_filtered: prlimit64 may be killed) the value
 * last read. */
uint64_t os_data_limit();

/* The soft RLIMIT_AS in bytes, as os_data_limit. */
uint64_t os_as_limit();

/* Read the soft RLIMIT_AS and RLIMIT_DATA now, without a seccomp check
 * (once: a second call keeps the first read): only while the process is
 * starting, from the library's constructor when the library was loaded
 * with the process (its malloc is the process's: an object dlopen'ed later
 * comes after libc in the global scope), or from os_limits_at_load before
 * that constructor has run.  glibc's own start-up has just made the same
 * system call (prlimit64, for the stack limit), so a filter the process
 * inherited allows it, and the program has run no code yet that could have
 * installed one; a library dlopen'ed by a sandboxed process could be
 * killed by it. */
void os_read_limits_at_load();

/* Called first thing by the shared library's constructor (preload/): from
 * then on a first growth that finds no limits read at load reads them with
 * the seccomp check. */
void os_note_load_constructor();

/* The limits read at load (~0: unlimited), reading them now if the shared
 * library's constructor has not run yet: a malloc from an earlier
 * constructor at start-up (libselinux's, in sed, ls or cp: a dependency of
 * the program, initialised before the preloaded library).  Nothing but
 * start-up can call kalloc before its constructor: in a dlopen the
 * constructor of an object that depends only on libc runs before any
 * object of that dlopen can call it.  False when they were not read and
 * cannot be now: the constructor ran and found another allocator ahead of
 * kalloc, a library dlopen'ed later, the static library (no constructor). */
bool os_limits_at_load(uint64_t *as, uint64_t *data);

/* This process's id (the system call: right in a fork child at once). */
int os_getpid();

/* Open `path` to append a report (O_WRONLY | O_CREAT | O_APPEND |
 * O_CLOEXEC, mode 0644): the fd, or -1 (errno kept). */
int os_open_append(const char *path);

/* Whether the child `pid` has exited (waitid WNOHANG | WNOWAIT: its status
 * is left for the program to reap). */
bool os_child_exited(int pid);

/* A memory file (memfd_create, MFD_CLOEXEC) of `size` bytes, sparse (no
 * page allocated until touched).  The fd (never 0, 1 or 2: a program
 * started with those closed still prints to them), or -1 with errno set. */
int os_memfd_create(const char *name, uint64_t size);

/* Map `len` bytes of memory file `fd` at `offset` exactly at `addr`,
 * replacing whatever is mapped there (MAP_SHARED | MAP_FIXED).  False with
 * errno set on failure (the old mapping may then be gone: callers only
 * replace kalloc's own mappings). */
bool os_map_file_replace(void *addr, size_t len, int fd, uint64_t offset);

/* Whether [addr, addr + len) is mapped at all (madvise MADV_NORMAL, which
 * changes nothing on kalloc's mappings and fails with ENOMEM on a hole).
 * After a failed os_map_file_replace it tells whether the old mapping is
 * still there: the kernel refuses a mapping that would pass
 * vm.max_map_count before it unmaps anything.  errno is kept. */
bool os_is_mapped(void *addr, size_t len);

/* Free the file pages of [offset, offset + len) of `fd`, keeping its size
 * (fallocate PUNCH_HOLE | KEEP_SIZE); they read as zero afterwards. */
void os_punch_hole(int fd, uint64_t offset, uint64_t len);

/* Copy the data of memory file `from` into `to` (of the same size, empty),
 * only the ranges that hold pages (lseek SEEK_DATA / SEEK_HOLE), with
 * copy_file_range and a pread/pwrite fallback through a stack buffer.
 * False with errno set on failure. */
bool os_copy_file_data(int from, int to, uint64_t size);

/* Copy the data ranges of memory file `fd` (lseek SEEK_DATA / SEEK_HOLE,
 * up to `size`) from `src`, a mapping of the file, to the same offsets of
 * `dst`, memory of at least `size` bytes; the holes are not read.  False
 * with errno set when the ranges cannot be found. */
bool os_copy_file_ranges_to_memory(int fd, uint64_t size, const char *src, char *dst);

/* A pipe (pipe2 O_CLOEXEC) into fds[0] (read end) and fds[1]; false on failure. */
bool os_pipe(int fds[2]);

/* Read one byte from fd, retrying on EINTR; false at end of file or on error.
 * errno preserved. */
bool os_read_byte(int fd, char *c);

/* Close a file descriptor, errno preserved. */
void os_close(int fd);

/* Block every signal in the calling thread (rt_sigprocmask); *old gets the
 * mask to give back to os_restore_signals. */
void os_block_signals(uint64_t *old);
void os_restore_signals(uint64_t old);

/* Threads of this process (Threads: in /proc/self/status), 0 if unknown. */
unsigned os_nr_threads();

/* True when a seccomp filter (or strict mode) is installed on this thread
 * ("Seccomp:" not 0 in /proc/thread-self/status, else /proc/self/status),
 * and when neither can be read (a sandbox without /proc, or no file
 * descriptor left: assume the worst, but ask again next time).  A filter
 * seen once is remembered for the process (filters are never removed): no
 * more reads.  A filter may kill the process on a system call glibc's
 * malloc never makes (membarrier, mincore, process_madvise), so kalloc leaves such calls out
 * under any filter, unless KALLOC_TRUST_SECCOMP=1 says the filter allows
 * them (Docker's default profile allows both and answers EPERM, never a
 * kill, for what it denies): then this is always false. */
bool os_seccomp_filtered();

/* Whether a batch of n ranges is worth asking os_seccomp_filtered about,
 * to give it back with one process_madvise call: with 2 or more in a
 * process that has had threads (each madvise there ends with a TLB
 * shootdown interrupting the CPUs running the others: 22 us a range on
 * this project's VM against 2.7 us batched), with OS_DECOMMIT_ASK_MIN or
 * more in a single-threaded one, where the question (an open, four reads
 * and a close of the thread's status, ~11K instructions) costs more than
 * the few local calls it would save.  Otherwise a madvise each. */
constexpr unsigned OS_DECOMMIT_ASK_MIN = 5;
bool os_decommit_worth_asking(unsigned n);

/* One allocator call on the calling thread (malloc_trim) in which
 * os_seccomp_filtered reads the thread's status at most once: the thread
 * is inside kalloc, so it installs no filter meanwhile (another thread's
 * filter synchronised onto it, SECCOMP_FILTER_FLAG_TSYNC, is the race any
 * check followed by a call already has).  A trim asked 1.7 times per call
 * (its page and slab-hole batches), each an open, four reads and a close.
 * Scopes nest; the outermost one ends the caching. */
struct os_seccomp_scope {
    os_seccomp_scope();
    ~os_seccomp_scope();
    os_seccomp_scope(const os_seccomp_scope &) = delete;
    os_seccomp_scope &operator=(const os_seccomp_scope &) = delete;
    bool outermost;     /* this scope started the caching and ends it */
};

/* How many of the npages pages from addr (page aligned) are resident
 * (mincore, 4 MiB per call through a stack vector), or -1 when mincore
 * fails.  Callers check os_seccomp_filtered() first: a sandbox's filter may
 * kill the process on mincore. */
long os_resident_pages(void *addr, size_t npages);

/* Ask for transparent hugepages on a 2 MiB aligned range (MADV_HUGEPAGE). */
void os_hugepage(void *addr, size_t len);

/* Ask for no transparent hugepages on a range (MADV_NOHUGEPAGE), so a fault
 * in a sparse, reclaimed range maps 4 KiB, not 2 MiB. */
void os_nohugepage(void *addr, size_t len);

/* Collapse a 2 MiB aligned range into a hugepage now (MADV_COLLAPSE, Linux
 * >= 6.1).  Returns 0 on success, else the errno (EINVAL: the kernel does not
 * know MADV_COLLAPSE; EAGAIN/ENOMEM: no hugepage available now). */
int os_collapse(void *addr, size_t len);

/* Fault [addr, addr + len) in for writing now (MADV_POPULATE_WRITE, Linux
 * >= 5.14) without changing its contents.  Returns 0, else the errno
 * (EINVAL: the kernel does not know MADV_POPULATE_WRITE; EPERM: a seccomp
 * filter refuses it).  Those two are remembered: later calls return them
 * without a system call. */
int os_populate_write(void *addr, size_t len);

/* [addr, addr + len) reads as zero (never touched, or given back) and is
 * about to be used whole (calloc of a large block): make it resident and
 * writable now with one MADV_POPULATE_WRITE, or with memset where the call
 * fails (a kernel before 5.14, remembered; a filter's EPERM).  Unlike
 * leaving it to the program, a read before the first write cannot map the
 * shared zero page, whose copy-on-write at that write costs a second fault
 * and, in a multi-threaded process, a TLB shootdown of every CPU. */
void os_populate_zeroed(void *addr, size_t len);

/* Like os_map_fixed (anonymous) but backed by reserved hugetlbfs pages
 * (MAP_HUGETLB, 2 MiB pages); addr and len 2 MiB aligned.  nullptr when no
 * hugepages are reserved or free (the caller falls back to os_map_fixed). */
void *os_map_fixed_hugetlb(void *addr, size_t len);

/* Read up to len - 1 bytes of a (small, /proc or /sys) file into buf, NUL
 * terminated.  Returns the bytes read, or -1.  errno preserved. */
long os_read_file(const char *path, char *buf, size_t len);

/* A number after `key` (e.g. "HugePages_Free:") in a buffer read from a
 * /proc file; `dflt` when the key is absent. */
uint64_t os_parse_field(const char *buf, const char *key, uint64_t dflt);

/* The numbers after keys[0..n) in a file of "Key: value" lines
 * (/proc/self/status), read line by line through a small buffer on the
 * stack, so any thread's slow path may call it: vals[k] is set for each key
 * found and left as it is otherwise.  Lines longer than the buffer (the CPU
 * and node masks of a large machine) are skipped; reading stops once every
 * key is found.  False if the file could not be opened (no /proc, no
 * descriptor left).  errno preserved. */
bool os_read_fields(const char *path, const char *const *keys, uint64_t *vals, unsigned n);

/* Resident memory, from /proc/self/smaps, of the mappings inside the given
 * address ranges ([lo, hi) pairs), or of the whole process when nr == 0
 * (/proc/self/smaps_rollup).  Streams the file through a stack buffer: no
 * allocation.  Fields in bytes; false when the file cannot be read. */
struct smaps_usage {
    uint64_t rss;             /* Rss */
    uint64_t anon_huge;       /* AnonHugePages: anonymous memory mapped by 2 MiB THPs */
    uint64_t hugetlb;         /* Private_Hugetlb + Shared_Hugetlb (MAP_HUGETLB pages) */
};
bool os_smaps_usage(const uintptr_t (*ranges)[2], unsigned nr, smaps_usage *out);

/* write(2) all of buf, retrying on EINTR / short writes; errno preserved.
 * Never raises SIGXFSZ: past RLIMIT_FSIZE the write fails and SIGXFSZ
 * stays pending and blocked in the calling thread. */
void os_write(int fd, const char *buf, size_t len);

/* Resident set size of the process in bytes (from /proc/self/statm), 0 if
 * unknown. */
uint64_t os_resident_bytes();

/* The process's resident set and its high-water mark in bytes (VmRSS and
 * VmHWM of /proc/self/status: open, read, close, which the seccomp check
 * makes too; no getrusage, which sandboxes that allow what glibc's malloc
 * calls may kill).  False (both 0 or one unknown) when they cannot be read. */
bool os_resident_and_peak(uint64_t *rss, uint64_t *peak);

/* Resident set and the part of it backed by transparent hugepages, in
 * bytes, from /proc/self/smaps_rollup (Rss, AnonHugePages), read into a
 * stack buffer without allocating.  False (both 0) when the file cannot be
 * read (kernels before 4.14, no /proc). */
bool os_smaps_rollup(uint64_t *rss, uint64_t *anon_huge);

/* A 64-bit random seed (AT_RANDOM bytes mixed with the clock). */
uint64_t os_random_seed();

} // namespace kalloc
