// livepeak.c - LD_PRELOAD shim: peak of live REQUESTED heap bytes, and the
// resident memory that is not heap, for a lower bound on any allocator's
// peak RSS.
//
// Build: cc -O2 -shared -fPIC -o /tmp/livepeak.so bench/tools/livepeak.c
//        (keep "livepeak" in the file name: the report tells the shim's own
//        mappings from the program's by that name)
// Run:   LIVEPEAK_OUT=/tmp/lp LD_PRELOAD=/tmp/livepeak.so prog ...
//        appends one line per process to /tmp/lp at exit.
//        bench/tools/livefloor.py runs every bench/compare.py row this way
//        and prints the floor (live peak + non-heap) against the peers.
// -DREPORT_ONLY builds a variant that does not interpose malloc & co. and
// only writes the exit report (the non-heap figures without the headers).
//
// Every allocation call is forwarded to glibc (__libc_malloc & co.) with a
// 16-byte header in front of the returned pointer: {requested size, offset
// from the real block start to the user pointer}.  A global atomic counter
// holds the sum of live requested sizes: it is increased AFTER the real
// allocation returned and decreased BEFORE the real free, so it never exceeds
// what the program really holds at any instant (a conservative peak).  Its
// maximum is kept with a CAS loop.  malloc_usable_size returns the requested
// size, so programs that grow into the usable size (redis sds) see no slack.
//
// Threads created with pthread_create are wrapped: when a thread ends (return
// or pthread_exit) it counts the resident pages of its whole stack mapping
// (pthread_getattr_np + mincore: guard, stack, TLS, struct pthread).
//
// At exit (destructor, or an interposed _exit/_Exit) one line is appended to
// $LIVEPEAK_OUT (open O_APPEND, one write):
//   livepeak_bytes=<max> livepeak16_bytes=<max, sizes rounded as alignment forces>
//   pid= ppid= comm= forked= nonheap_kib=<file+stack+vdso+bss>
//   file_kib= stack_kib= vdso_kib= bss_kib= smallanon_kib= heap_kib= biganon_kib=
//   shim_kib= rss_kib= vmhwm_kib= live_exit_bytes= threads_at_peak= max_live_threads=
//   stk_threads= stk_min_kib= stk_sum_kib= stk_max_kib= appanon_kib=<own mmaps>
//   nreg= reg_overflow= big_at_peak_bytes= big_freed_bytes= big_untouched_bytes=
// Mapping classes (from /proc/self/smaps at exit):
//   file      inode != 0 (executable, libraries, locale files, ...)
//   stack     [stack] (the main thread's)
//   vdso      [vdso] [vvar] [vsyscall]
//   bss       anonymous, starts exactly where a file mapping ends (a
//             library's .bss / ld.so data)
//   smallanon other anonymous mappings < 1 MiB, not [heap] (NOT in
//             nonheap_kib: they can be glibc mmapped chunks or thread stacks)
//   heap      [heap];  biganon: other anonymous mappings >= 1 MiB
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void __libc_free(void*);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);

#define HDR 16

struct hdr {
  size_t req;  // requested size
  size_t off;  // user pointer - real block start
};

static _Atomic long long g_live;       // live requested bytes now
static _Atomic long long g_max;        // maximum of g_live
static _Atomic int g_threads = 1;      // live threads (main included)
static _Atomic int g_max_threads = 1;  // maximum of g_threads
static _Atomic int g_threads_at_peak = 1;
static _Atomic long g_stk_n, g_stk_sum, g_stk_max;  // per-thread stack resident (KiB)
static _Atomic long g_stk_min = -1;
static _Atomic int g_reported;
static int g_forked;
#define BIG (64u << 10)                  // a "big" block: requested size >= 64 KiB
static _Atomic long long g_big;          // live requested bytes in big blocks
static _Atomic long long g_big_at_peak;  // g_big when g_max was last raised
static _Atomic long long g_big_freed, g_big_untouched;  // big frees: interior bytes, of which not resident
static int g_pid;  // pid of this process (0: not yet known)

static inline void live_add(long long n) {
  long long t = atomic_fetch_add_explicit(&g_live, n, memory_order_relaxed) + n;
  long long m = atomic_load_explicit(&g_max, memory_order_relaxed);
  while (t > m) {
    if (atomic_compare_exchange_weak_explicit(&g_max, &m, t, memory_order_relaxed,
                                              memory_order_relaxed)) {
      atomic_store_explicit(&g_threads_at_peak, atomic_load(&g_threads), memory_order_relaxed);
      atomic_store_explicit(&g_big_at_peak, atomic_load_explicit(&g_big, memory_order_relaxed),
                            memory_order_relaxed);
      break;
    }
  }
}
static inline void live_sub(long long n) { atomic_fetch_sub_explicit(&g_live, n, memory_order_relaxed); }

// The same with every size rounded as the alignment rule forces (C17 7.22.3
// with DR 445, x86-64 SysV): a block of n >= 16 bytes can hold a long double,
// so it must start on a 16-byte boundary, and blocks of n >= 16 are at least
// round_up(n, 16) apart; 9-15 bytes need 8-byte alignment (16 apart); 5-8
// need 8, 3-4 need 4, 1-2 need n.  (This is a floor for a conforming
// allocator, not for arbitrary memory use.)
static _Atomic long long g_live16, g_max16;
static inline long long r16(size_t n) {
  if (n <= 2) return (long long)n;
  if (n <= 4) return 4;
  if (n <= 8) return 8;
  return (long long)((n + 15) & ~(size_t)15);
}
static inline void live16_add(long long n) {
  long long t = atomic_fetch_add_explicit(&g_live16, n, memory_order_relaxed) + n;
  long long m = atomic_load_explicit(&g_max16, memory_order_relaxed);
  while (t > m && !atomic_compare_exchange_weak_explicit(&g_max16, &m, t, memory_order_relaxed,
                                                         memory_order_relaxed)) {}
}
static inline void live16_sub(long long n) { atomic_fetch_sub_explicit(&g_live16, n, memory_order_relaxed); }

static inline void* finish(void* real, size_t off, size_t n) {
  if (!real) return NULL;
  char* u = (char*)real + off;
  struct hdr* h = (struct hdr*)(u - HDR);
  h->req = n;
  h->off = off;
  if (n >= BIG) atomic_fetch_add_explicit(&g_big, (long long)n, memory_order_relaxed);
  live16_add(r16(n));
  live_add((long long)n);
  return u;
}

static inline struct hdr* hdr_of(void* p) { return (struct hdr*)((char*)p - HDR); }

#ifndef REPORT_ONLY  // REPORT_ONLY: no malloc interposition, only the exit report (nonheap, appanon, stacks)
void* malloc(size_t n) {
  if (n > SIZE_MAX - 4096) { errno = ENOMEM; return NULL; }
  return finish(__libc_malloc(n + HDR), HDR, n);
}

void free(void* p) {
  if (!p) return;
  struct hdr* h = hdr_of(p);
  size_t n = h->req;
  live_sub((long long)n);
  live16_sub(r16(n));
  if (n >= BIG) {
    atomic_fetch_sub_explicit(&g_big, (long long)n, memory_order_relaxed);
    // How much of the block's page-aligned interior was never made resident?
    uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)p + n) & ~(uintptr_t)4095;
    if (hi > lo) {
      long long tot = 0, un = 0;
      unsigned char vec[256];
      for (uintptr_t a = lo; a < hi; a += 256 * 4096u) {
        size_t len = hi - a < 256 * 4096u ? hi - a : 256 * 4096u;
        if (mincore((void*)a, len, vec) != 0) break;
        for (size_t i = 0; i < len / 4096; ++i) tot += 4096, un += (vec[i] & 1) ? 0 : 4096;
      }
      atomic_fetch_add_explicit(&g_big_freed, tot, memory_order_relaxed);
      atomic_fetch_add_explicit(&g_big_untouched, un, memory_order_relaxed);
    }
  }
  __libc_free((char*)p - h->off);
}

void* calloc(size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n) || n > SIZE_MAX - 4096) { errno = ENOMEM; return NULL; }
  return finish(__libc_calloc(1, n + HDR), HDR, n);
}

static void* aligned(size_t align, size_t n) {
  if (align <= HDR) return malloc(n);
  if (n > SIZE_MAX - 2 * align) { errno = ENOMEM; return NULL; }
  // real is align-aligned; the user pointer is real + align, header just before.
  return finish(__libc_memalign(align, n + align), align, n);
}

void* realloc(void* p, size_t n) {
  if (!p) return malloc(n);
  if (n == 0) { free(p); return NULL; }
  if (n > SIZE_MAX - 4096) { errno = ENOMEM; return NULL; }
  struct hdr* h = hdr_of(p);
  size_t old = h->req;
  if (h->off == HDR) {
    void* r = __libc_realloc((char*)p - HDR, n + HDR);
    if (!r) return NULL;
    struct hdr* nh = (struct hdr*)r;
    nh->req = n;
    nh->off = HDR;
    if (old >= BIG) atomic_fetch_sub_explicit(&g_big, (long long)old, memory_order_relaxed);
    if (n >= BIG) atomic_fetch_add_explicit(&g_big, (long long)n, memory_order_relaxed);
    if (r16(n) >= r16(old)) live16_add(r16(n) - r16(old));
    else live16_sub(r16(old) - r16(n));
    if (n >= old) live_add((long long)(n - old));
    else live_sub((long long)(old - n));
    return (char*)r + HDR;
  }
  void* q = aligned(h->off, n);  // keep the alignment
  if (!q) return NULL;
  memcpy(q, p, old < n ? old : n);
  free(p);
  return q;
}

void* reallocarray(void* p, size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) { errno = ENOMEM; return NULL; }
  return realloc(p, n);
}

void* memalign(size_t align, size_t n) { return aligned(align, n); }
void* aligned_alloc(size_t align, size_t n) { return aligned(align, n); }
int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1))) return EINVAL;
  void* p = aligned(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(size_t n) { return aligned((size_t)sysconf(_SC_PAGESIZE), n); }
void* pvalloc(size_t n) {
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  return aligned(ps, (n + ps - 1) & ~(ps - 1));
}
size_t malloc_usable_size(void* p) { return p ? hdr_of(p)->req : 0; }

#endif  // REPORT_ONLY

// ---------------------------------------------------------------- threads

struct start {
  void* (*fn)(void*);
  void* arg;
};

static void stack_account(void) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
  void* addr;
  size_t size;
  if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)addr & ~(uintptr_t)(ps - 1);
    uintptr_t hi = (uintptr_t)addr + size;
    long pages = 0;
    unsigned char vec[256];
    for (uintptr_t a = lo; a < hi; a += 256 * (uintptr_t)ps) {
      size_t len = hi - a < 256 * (uintptr_t)ps ? hi - a : 256 * (uintptr_t)ps;
      if (mincore((void*)a, len, vec) != 0) continue;
      for (size_t i = 0; i < (len + ps - 1) / ps; ++i) pages += vec[i] & 1;
    }
    long kib = pages * (ps / 1024);
    atomic_fetch_add(&g_stk_n, 1);
    atomic_fetch_add(&g_stk_sum, kib);
    long m = atomic_load(&g_stk_max);
    while (kib > m && !atomic_compare_exchange_weak(&g_stk_max, &m, kib)) {}
    m = atomic_load(&g_stk_min);
    while ((m < 0 || kib < m) && !atomic_compare_exchange_weak(&g_stk_min, &m, kib)) {}
  }
  pthread_attr_destroy(&attr);
}

static void* trampoline(void* v) {
  struct start s = *(struct start*)v;
  __libc_free(v);
  int t = atomic_fetch_add(&g_threads, 1) + 1;
  int m = atomic_load(&g_max_threads);
  while (t > m && !atomic_compare_exchange_weak(&g_max_threads, &m, t)) {}
  void* r = s.fn(s.arg);
  stack_account();
  atomic_fetch_sub(&g_threads, 1);
  return r;
}

typedef int (*create_fn)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
int pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*fn)(void*), void* arg) {
  static create_fn real;
  if (!real) real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
  struct start* s = __libc_malloc(sizeof *s);
  if (!s) return EAGAIN;
  s->fn = fn;
  s->arg = arg;
  int rc = real(t, a, trampoline, s);
  if (rc) __libc_free(s);
  return rc;
}

typedef void (*exit_fn)(void*) __attribute__((noreturn));
void pthread_exit(void* r) {
  static exit_fn real;
  if (!real) real = (exit_fn)dlsym(RTLD_NEXT, "pthread_exit");
  stack_account();
  atomic_fetch_sub(&g_threads, 1);
  real(r);
}

// ------------------------------------------------- program's own mmaps
// Anonymous memory the program maps itself (not through malloc: e.g. GCC's
// garbage-collected heap, jemalloc's metadata in redis when it calls
// mallctl/nallocx) is resident under every allocator.  glibc's malloc and
// pthread stacks map with internal calls that do not come here.  The
// intervals are kept exactly (munmap/mremap trim or split them); at exit
// their resident pages are counted with mincore (appanon_kib).

#define MAXREG 262144
static struct { uintptr_t lo, hi; } g_reg[MAXREG];
static int g_nreg;
static int g_reg_overflow;
static atomic_flag g_reg_lock = ATOMIC_FLAG_INIT;
static void reg_lock(void) { while (atomic_flag_test_and_set_explicit(&g_reg_lock, memory_order_acquire)) {} }
static void reg_unlock(void) { atomic_flag_clear_explicit(&g_reg_lock, memory_order_release); }

static void reg_add(uintptr_t lo, uintptr_t hi) {
  reg_lock();
  if (g_nreg < MAXREG) g_reg[g_nreg].lo = lo, g_reg[g_nreg].hi = hi, ++g_nreg;
  else g_reg_overflow = 1;
  reg_unlock();
}
static void reg_remove(uintptr_t lo, uintptr_t hi) {
  reg_lock();
  for (int i = 0; i < g_nreg; ++i) {
    uintptr_t a = g_reg[i].lo, b = g_reg[i].hi;
    if (b <= lo || a >= hi) continue;
    if (lo <= a && hi >= b) {  // covered: delete
      g_reg[i] = g_reg[--g_nreg];
      --i;
    } else if (lo <= a) {
      g_reg[i].lo = hi;
    } else if (hi >= b) {
      g_reg[i].hi = lo;
    } else {  // a hole in the middle: split
      g_reg[i].hi = lo;
      if (g_nreg < MAXREG) g_reg[g_nreg].lo = hi, g_reg[g_nreg].hi = b, ++g_nreg;
      else g_reg_overflow = 1;
    }
  }
  reg_unlock();
}

static long resident_kib(uintptr_t lo, uintptr_t hi) {
  long ps = 4096, pages = 0;
  unsigned char vec[256];
  lo &= ~(uintptr_t)(ps - 1);
  for (uintptr_t a = lo; a < hi; a += 256 * (uintptr_t)ps) {
    size_t len = hi - a < 256 * (uintptr_t)ps ? hi - a : 256 * (uintptr_t)ps;
    if (mincore((void*)a, len, vec) != 0) continue;
    for (size_t i = 0; i < (len + ps - 1) / ps; ++i) pages += vec[i] & 1;
  }
  return pages * 4;
}

typedef void* (*mmap_fn)(void*, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void*, size_t);
typedef void* (*mremap_fn)(void*, size_t, size_t, int, ...);
static mmap_fn real_mmap;
static munmap_fn real_munmap;
static mremap_fn real_mremap;

static void* do_mmap(void* a, size_t len, int prot, int flags, int fd, off_t off) {
  if (!real_mmap) real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
  void* p = real_mmap(a, len, prot, flags, fd, off);
  if (p != MAP_FAILED && len) {
    if (flags & MAP_FIXED) reg_remove((uintptr_t)p, (uintptr_t)p + len);
    if (flags & MAP_ANONYMOUS) reg_add((uintptr_t)p, (uintptr_t)p + len);
  }
  return p;
}
void* mmap(void* a, size_t len, int prot, int flags, int fd, off_t off) { return do_mmap(a, len, prot, flags, fd, off); }
void* mmap64(void* a, size_t len, int prot, int flags, int fd, off_t off) { return do_mmap(a, len, prot, flags, fd, off); }
int munmap(void* a, size_t len) {
  if (!real_munmap) real_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
  int r = real_munmap(a, len);
  if (r == 0) reg_remove((uintptr_t)a, (uintptr_t)a + ((len + 4095) & ~(size_t)4095));
  return r;
}
void* mremap(void* old, size_t olen, size_t nlen, int flags, ...) {
  if (!real_mremap) real_mremap = (mremap_fn)dlsym(RTLD_NEXT, "mremap");
  void* na = NULL;
  if (flags & MREMAP_FIXED) {
    __builtin_va_list ap;
    __builtin_va_start(ap, flags);
    na = __builtin_va_arg(ap, void*);
    __builtin_va_end(ap);
  }
  // Was the old range tracked (anonymous, the program's)?
  int tracked = 0;
  reg_lock();
  for (int i = 0; i < g_nreg; ++i)
    if (g_reg[i].lo <= (uintptr_t)old && g_reg[i].hi > (uintptr_t)old) tracked = 1;
  reg_unlock();
  void* r = (flags & MREMAP_FIXED) ? real_mremap(old, olen, nlen, flags, na) : real_mremap(old, olen, nlen, flags);
  if (r != MAP_FAILED && tracked) {
    reg_remove((uintptr_t)old, (uintptr_t)old + olen);
    reg_add((uintptr_t)r, (uintptr_t)r + nlen);
  }
  return r;
}

static long appanon_kib(void) {
  long k = 0;
  reg_lock();
  for (int i = 0; i < g_nreg; ++i) k += resident_kib(g_reg[i].lo, g_reg[i].hi);
  reg_unlock();
  return k;
}

// ---------------------------------------------------------------- report

static char g_buf[1 << 16];

// The report must not fault in pages of its own before it has read smaps:
// raw system calls and hand-written parsing (no libc code that the program
// may not have run), static buffers (no stack growth), and the shim's own
// file mappings are counted apart (shim_kib), not as the program's.
static long sys3(long nr, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}
static int raw_open(const char* p) { return (int)sys3(SYS_open, (long)p, O_RDONLY | O_CLOEXEC, 0); }
static long raw_read(int fd, char* b, long n) { return sys3(SYS_read, fd, (long)b, n); }
static void raw_close(int fd) { sys3(SYS_close, fd, 0, 0); }

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
static unsigned long long hexval(const char** pp) {
  const char* p = *pp;
  unsigned long long v = 0;
  while (is_hex(*p)) v = v * 16 + (unsigned)(*p <= '9' ? *p - '0' : *p - 'a' + 10), ++p;
  *pp = p;
  return v;
}
static unsigned long long decval(const char** pp) {
  const char* p = *pp;
  while (*p == ' ' || *p == '\t') ++p;
  unsigned long long v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + (unsigned)(*p - '0'), ++p;
  *pp = p;
  return v;
}
static const char* skip_field(const char* p) {  // skip one field and the blanks after it
  while (*p && *p != ' ') ++p;
  while (*p == ' ') ++p;
  return p;
}
static int streq(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}
static int starts(const char* a, const char* b) {
  while (*b && *a == *b) ++a, ++b;
  return *b == 0;
}
static int contains(const char* a, const char* b) {
  for (; *a; ++a)
    if (starts(a, b)) return 1;
  return 0;
}

// Parse /proc/self/smaps in chunks; classify each mapping and sum its Rss.
struct cls {
  long file, stack, vdso, bss, smallanon, heap, biganon, shim, total;
};

static void classify(struct cls* c) {
  for (long* f = &c->file; f <= &c->total; ++f) *f = 0;
  int fd = raw_open("/proc/self/smaps");
  if (fd < 0) return;
  static char line[4096];
  unsigned long ll = 0;
  int kind = -1;            // class of the current mapping
  unsigned long long prev_end = 0;   // end of the previous mapping
  int prev_file = 0;        // previous mapping was file-backed
  int prev_shim = 0;        // previous mapping was the shim's (file or .bss)
  long n;
  while ((n = raw_read(fd, g_buf, sizeof g_buf)) > 0) {
    for (long i = 0; i < n; ++i) {
      char ch = g_buf[i];
      if (ch != '\n') {
        if (ll < sizeof line - 1) line[ll++] = ch;
        continue;
      }
      line[ll] = 0;
      ll = 0;
      // A mapping header: "lo-hi perms offset dev inode [name]".
      const char* p = line;
      if (is_hex(*p)) {
        unsigned long long lo = hexval(&p);
        if (*p == '-') {
          ++p;
          unsigned long long hi = hexval(&p);
          while (*p == ' ') ++p;
          p = skip_field(p);  // perms
          p = skip_field(p);  // offset
          p = skip_field(p);  // dev
          unsigned long long inode = decval(&p);
          while (*p == ' ') ++p;
          const char* nm = p;
          int is_file = inode != 0 || nm[0] == '/';
          if (is_file && contains(nm, "livepeak")) kind = 7;
          else if (is_file) kind = 0;
          else if (streq(nm, "[stack]")) kind = 1;
          else if (streq(nm, "[vdso]") || streq(nm, "[vvar]") || streq(nm, "[vsyscall]")) kind = 2;
          else if (streq(nm, "[heap]")) kind = 5;
          else if (prev_shim && lo == prev_end) kind = 7;  // the shim's own .bss
          else if (prev_file && lo == prev_end) kind = 3;
          else if (hi - lo < (1u << 20)) kind = 4;
          else kind = 6;
          prev_end = hi;
          prev_file = is_file;
          prev_shim = kind == 7;
          continue;
        }
      }
      if (starts(line, "Rss:") && kind >= 0) {
        const char* q = line + 4;
        long kib = (long)decval(&q);
        long* f[] = {&c->file, &c->stack, &c->vdso, &c->bss, &c->smallanon, &c->heap, &c->biganon, &c->shim};
        *f[kind] += kib;
        c->total += kib;
      }
    }
  }
  raw_close(fd);
}

static long status_kib(const char* key) {
  int fd = raw_open("/proc/self/status");
  if (fd < 0) return -1;
  static char b[8192];
  long n = raw_read(fd, b, sizeof b - 1);
  raw_close(fd);
  if (n <= 0) return -1;
  b[n] = 0;
  for (const char* p = b; *p; ++p)
    if (starts(p, key)) {
      const char* q = p + strlen(key);
      return (long)decval(&q);
    }
  return -1;
}

static void report(void) {
  if (atomic_exchange(&g_reported, 1)) return;
  static struct cls c;
  classify(&c);  // first: before anything else runs
  long hwm = status_kib("VmHWM:");
  long appanon = appanon_kib();
  const char* out = getenv("LIVEPEAK_OUT");
  if (!out) return;
  char comm[64] = "?";
  int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, comm, sizeof comm - 1);
    if (n > 0) comm[n - (comm[n - 1] == '\n')] = 0;
    close(fd);
  }
  static char line[1024];
  int len = snprintf(line, sizeof line,
                     "livepeak_bytes=%lld livepeak16_bytes=%lld pid=%d ppid=%d comm=%s forked=%d nonheap_kib=%ld "
                     "file_kib=%ld stack_kib=%ld vdso_kib=%ld bss_kib=%ld smallanon_kib=%ld "
                     "heap_kib=%ld biganon_kib=%ld shim_kib=%ld rss_kib=%ld vmhwm_kib=%ld live_exit_bytes=%lld "
                     "threads_at_peak=%d max_live_threads=%d stk_threads=%ld stk_min_kib=%ld "
                     "stk_sum_kib=%ld stk_max_kib=%ld appanon_kib=%ld nreg=%d reg_overflow=%d "
                     "big_at_peak_bytes=%lld big_freed_bytes=%lld big_untouched_bytes=%lld\n",
                     (long long)atomic_load(&g_max), (long long)atomic_load(&g_max16), (int)getpid(), (int)getppid(), comm, g_forked,
                     c.file + c.stack + c.vdso + c.bss, c.file, c.stack, c.vdso, c.bss, c.smallanon,
                     c.heap, c.biganon, c.shim, c.total, hwm, (long long)atomic_load(&g_live),
                     atomic_load(&g_threads_at_peak), atomic_load(&g_max_threads),
                     atomic_load(&g_stk_n), atomic_load(&g_stk_min), atomic_load(&g_stk_sum),
                     atomic_load(&g_stk_max), appanon, g_nreg, g_reg_overflow,
                     (long long)atomic_load(&g_big_at_peak), (long long)atomic_load(&g_big_freed),
                     (long long)atomic_load(&g_big_untouched));
  fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ssize_t w = write(fd, line, (size_t)len);
    (void)w;
    close(fd);
  }
}

static void on_fork_child(void) { g_forked = 1; g_pid = (int)getpid(); }

__attribute__((constructor)) static void lp_init(void) {
  g_pid = (int)getpid();
  pthread_atfork(NULL, NULL, on_fork_child);
}
__attribute__((destructor)) static void lp_fini(void) { report(); }

// A vfork child (no atfork handler ran: another pid) shares the parent's
// memory: it must not report (it would set the parent's g_reported).
void _exit(int st) {
  if ((int)getpid() == g_pid) report();
  syscall(SYS_exit_group, st);
  __builtin_unreachable();
}
void _Exit(int st) {
  if ((int)getpid() == g_pid) report();
  syscall(SYS_exit_group, st);
  __builtin_unreachable();
}
