// Helpers shared by the tests in tests/api/.
//
// The tests are compiled with -fno-builtin and -fno-allocation-dce so that the
// compiler neither folds malloc calls away nor reasons about their results;
// `opaque()` additionally hides constant sizes and pointer provenance from the
// optimiser (e.g. free() of a stack address, malloc(SIZE_MAX)).
#ifndef KALLOC_TESTS_API_TEST_UTIL_H
#define KALLOC_TESTS_API_TEST_UTIL_H

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include <gtest/gtest.h>

#include "kalloc/kalloc.h"

namespace kt {

// kalloc's vmstat snapshot now (the whole struct this header knows).
inline kalloc_vmstat vmstat_now() {
  kalloc_vmstat v;
  memset(&v, 0, sizeof(v));
  v.size = sizeof(v);
  EXPECT_EQ(kalloc_vmstat_get(&v), 0);
  return v;
}

// Returns v unchanged, but the compiler cannot know that.
template <class T>
inline T opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

// Keeps a value "used" so stores to it cannot be dropped.
template <class T>
inline void escape(T v) {
  asm volatile("" : : "r"(v) : "memory");
}

inline bool is_aligned(const void *p, size_t a) {
  return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}

inline size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// A byte pattern that depends on the position and a per-block seed, so that a
// block overwritten by (a copy of) another block is detected.
inline uint8_t pattern_byte(size_t i, uint32_t seed) {
  uint32_t x = static_cast<uint32_t>(i) * 0x9E3779B1u + seed * 0x85EBCA6Bu;
  x ^= x >> 15;
  return static_cast<uint8_t>(x ^ (static_cast<uint32_t>(i) >> 8));
}

inline void fill(void *p, size_t n, uint32_t seed) {
  auto *b = static_cast<uint8_t *>(p);
  for (size_t i = 0; i < n; ++i) b[i] = pattern_byte(i, seed);
}

// Index of the first byte that does not match, or n if all do.
inline size_t check(const void *p, size_t n, uint32_t seed) {
  auto *b = static_cast<const uint8_t *>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != pattern_byte(i, seed)) return i;
  return n;
}

// Cheaper variant for big blocks: fill/check only the first and last 64 bytes
// of every 4 KiB (relative to p), plus the last 64 bytes of the block.
// check_sparse(p, k, seed, /*tail=*/false) verifies any prefix k of a block
// filled with fill_sparse (or fill) with the same seed.
inline void fill_sparse(void *p, size_t n, uint32_t seed) {
  auto *b = static_cast<uint8_t *>(p);
  for (size_t off = 0; off < n; off += 4096) {
    for (size_t i = off; i < off + 64 && i < n; ++i) b[i] = pattern_byte(i, seed);
    for (size_t i = off + 4032; i < off + 4096 && i < n; ++i) b[i] = pattern_byte(i, seed);
  }
  for (size_t i = n > 64 ? n - 64 : 0; i < n; ++i) b[i] = pattern_byte(i, seed);
}

inline size_t check_sparse(const void *p, size_t n, uint32_t seed, bool tail = true) {
  auto *b = static_cast<const uint8_t *>(p);
  for (size_t off = 0; off < n; off += 4096) {
    for (size_t i = off; i < off + 64 && i < n; ++i)
      if (b[i] != pattern_byte(i, seed)) return i;
    for (size_t i = off + 4032; i < off + 4096 && i < n; ++i)
      if (b[i] != pattern_byte(i, seed)) return i;
  }
  if (tail)
    for (size_t i = n > 64 ? n - 64 : 0; i < n; ++i)
      if (b[i] != pattern_byte(i, seed)) return i;
  return n;
}

inline bool all_bytes_are(const void *p, size_t n, uint8_t v) {
  auto *b = static_cast<const uint8_t *>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != v) return false;
  return true;
}

// The line of kalloc_stats_print_fd's report that starts with `prefix`
// ("percpu sheaves:", ...), without its newline; empty if there is none.
inline std::string stats_line(const char *prefix) {
  int fds[2];
  if (pipe(fds) != 0) return "";
  kalloc_stats_print_fd(fds[1]);
  close(fds[1]);
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) all.append(buf, (size_t)n);
  close(fds[0]);
  size_t at = all.find(prefix);
  if (at == std::string::npos) return "";
  return all.substr(at, all.find('\n', at) - at);
}

// Small deterministic PRNG (xorshift64*), one per thread.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) { return next() % n; }
};

// For forked children, where gtest assertions cannot be used: print and exit.
#define KT_CHILD_CHECK(cond, code)                                               \
  do {                                                                           \
    if (!(cond)) {                                                               \
      char kt_msg_[256];                                                         \
      int kt_len_ = snprintf(kt_msg_, sizeof kt_msg_,                            \
                             "child check failed at %s:%d: %s (errno=%d)\n",   \
                             __FILE__, __LINE__, #cond, errno);                  \
      if (kt_len_ > 0) {                                                         \
        ssize_t kt_w_ = write(2, kt_msg_, static_cast<size_t>(kt_len_));         \
        (void)kt_w_;                                                             \
      }                                                                          \
      _exit(code);                                                               \
    }                                                                            \
  } while (0)

// Runs this test binary again in a fresh process, with `env` set (a nullptr
// value unsets the variable) and only the tests `filter` matches (gtest
// syntax).  For options kalloc reads once at start-up, which a fork() alone
// would inherit.  Returns the child's wait status (waitpid's), or -1 if it
// could not be started.
inline int run_self_status(const char *filter,
                           std::initializer_list<std::pair<const char *, const char *>> env) {
  std::string arg = std::string("--gtest_filter=") + filter;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    for (const auto &e : env) {
      if (e.second)
        setenv(e.first, e.second, 1);
      else
        unsetenv(e.first);
    }
    execl("/proc/self/exe", "kt_child", arg.c_str(), static_cast<char *>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return status;
}

// run_self_status's child's exit status (0: its tests passed), or -1 if it
// could not be started or did not exit.
inline int run_self(const char *filter,
                    std::initializer_list<std::pair<const char *, const char *>> env) {
  int status = run_self_status(filter, env);
  if (status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// Whether KSM may merge this process's pages (prctl(PR_SET_MEMORY_MERGE) by
// it or a parent, inherited across exec, and ksmd running): a merged page
// faults again on its next write, so tests that count page faults to tell
// kept memory from memory given back cannot tell there.
inline bool ksm_merging() {
  constexpr int kGetMemoryMerge = 68;  // PR_GET_MEMORY_MERGE (Linux 6.4)
  if (prctl(kGetMemoryMerge, 0, 0, 0, 0) != 1) return false;
  FILE *f = fopen("/sys/kernel/mm/ksm/run", "r");
  int run = 0;
  if (f) {
    if (fscanf(f, "%d", &run) != 1) run = 0;
    fclose(f);
  }
  return run == 1;
}

// Installs a seccomp filter on the calling process (for a forked child) that
// kills it on any of the system calls `nrs` (x86-64 numbers) and allows the
// rest: what a sandbox that allows what glibc's malloc calls does to the
// others (OpenSSH's, Chromium's, systemd's SystemCallFilter=).  False when
// the kernel refuses it.
// Whether a seccomp filter is installed on this thread ("Seccomp: 2" in its
// status): kalloc then makes no call a sandbox may kill on (mincore,
// membarrier), so tests of what those calls do skip.
inline bool seccomp_filtered() {
  FILE *f = fopen("/proc/thread-self/status", "r");
  if (!f)
    return false;
  char line[256];
  bool filtered = false;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Seccomp:", 8) == 0)
      filtered = atoi(line + 8) == 2;
  fclose(f);
  return filtered;
}

// The filters below: a prologue that allows every call of another
// architecture, then per-call rules on the system call number, and the
// installation (no_new_privs, then the filter for the calling thread).
inline std::vector<sock_filter> seccomp_prologue() {
  std::vector<sock_filter> f;
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  return f;
}

inline bool seccomp_install(std::vector<sock_filter> &f) {
  struct sock_fprog prog = {(unsigned short)f.size(), f.data()};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

// Each call of `nrs` answered with `action`, everything else allowed.
inline bool seccomp_on_syscalls(std::initializer_list<int> nrs, unsigned action) {
  std::vector<sock_filter> f = seccomp_prologue();
  for (int nr : nrs) {
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, action));
  }
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return seccomp_install(f);
}

inline bool seccomp_kill_on(std::initializer_list<int> nrs) {
  return seccomp_on_syscalls(nrs, SECCOMP_RET_KILL_PROCESS);
}

// A seccomp filter (for the calling thread and the threads it creates) that
// answers madvise(addr, len, advice) with errno `err` and allows everything
// else: a sandbox that refuses an advice glibc's malloc never gives.
inline bool seccomp_errno_on_madvise(int advice, int err) {
  std::vector<sock_filter> f = seccomp_prologue();
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)__NR_madvise, 1, 0));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])));  // low word
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)advice, 0, 1));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return seccomp_install(f);
}

// A seccomp filter (for the calling thread and the threads it creates) that
// kills the process on each system call of `nrs` and on madvise(addr, len,
// advice), and allows everything else: a sandbox with an allow list that
// checks madvise's advice (OpenSSH's).
inline bool seccomp_kill_on_calls_and_madvise(std::initializer_list<int> nrs, int advice) {
  std::vector<sock_filter> f = seccomp_prologue();
  for (int nr : nrs) {
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  }
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)__NR_madvise, 1, 0));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])));  // low word
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)advice, 0, 1));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return seccomp_install(f);
}

// A seccomp filter (for the calling thread and the threads it creates) that
// answers each system call of `nrs` with errno `err` and allows everything
// else: a sandbox that refuses calls it does not expect (man-db's refuses
// memfd_create) without killing.
inline bool seccomp_errno_on_syscalls(std::initializer_list<int> nrs, int err) {
  return seccomp_on_syscalls(nrs, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA));
}

// A forked child under a seccomp filter exited 0 (not killed by SIGSYS);
// `codes` explains the child's exit statuses in the failure message.
inline void expect_sandboxed_child_exits_cleanly(pid_t pid, const char *codes = "") {
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << " (31 = SIGSYS: a system call the filter forbids)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << codes;
}

// vm.max_map_count, or -1 when it cannot be read.
inline long max_map_count() {
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  long v = -1;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
  }
  return v;
}

// Takes every mapping the process may still make (vm.max_map_count): a
// PROT_NONE region whose every other page is made readable, each mprotect
// splitting it (two more mappings), until the kernel refuses with ENOMEM.
// Costs address space only (nothing is touched or committed).  release()
// unmaps it, giving the mappings back.  Meant for a child process.
struct mapping_hog {
  char *base = nullptr;
  size_t len = 0;
  long splits = 0;     // mprotect calls that succeeded
  int last_errno = 0;  // the refusal's errno (ENOMEM expected)
  explicit mapping_hog(long max) {
    size_t pages = 2 * (size_t)max + 64;
    len = pages * 4096;
    void *m = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return;
    base = (char *)m;
    for (size_t i = 1; i < pages; i += 2) {
      if (mprotect(base + i * 4096, 4096, PROT_READ) != 0) {
        last_errno = errno;
        break;
      }
      splits++;
    }
  }
  bool exhausted() const { return base && last_errno == ENOMEM; }
  void release() {
    if (base) munmap(base, len);
    base = nullptr;
  }
};

}  // namespace kt

#endif  // KALLOC_TESTS_API_TEST_UTIL_H
