// kalloc inside the seccomp sandboxes of real programs: filters written
// after OpenSSH's pre-auth child (an allow list; anything else kills the
// process) and Chromium's baseline policy (mmap flags outside those glibc
// uses kill; madvise advices other than MADV_DONTNEED fail with EPERM).
// Each test forks a child, installs the filter there, and runs a heap
// through growth, large and huge blocks, realloc, trim, compaction and
// calloc; the child must exit 0 (a SIGSYS means kalloc made a call the
// sandbox forbids).  After the filter the child makes no call of its own but
// malloc & co. and _exit.
#include <gtest/gtest.h>

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

void allow(std::vector<sock_filter> &f, int nr) {
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

void deny(std::vector<sock_filter> &f, int nr, int err) {
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)));
}

// Allow call nr when argument `arg` (low word) has no bit outside `mask`;
// kill otherwise.  The accumulator holds the call number again after it.
void allow_arg_mask(std::vector<sock_filter> &f, int nr, unsigned arg, uint32_t mask) {
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4));
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(offsetof(struct seccomp_data, args) + 8 * arg)));
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, ~mask, 0, 1));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

// OpenSSH 9's pre-auth filter (sandbox-seccomp-filter.c), x86-64: file
// calls fail with EACCES, the calls below are allowed, anything else kills.
bool openssh_preauth_filter() {
  std::vector<sock_filter> f = kt::seccomp_prologue();
  for (int nr : {__NR_lstat, __NR_fstat, __NR_open, __NR_openat, __NR_newfstatat, __NR_stat, __NR_shmget,
                 __NR_shmat, __NR_shmdt})
    deny(f, nr, EACCES);
  for (int nr : {__NR_brk, __NR_clock_gettime, __NR_close, __NR_exit, __NR_exit_group, __NR_futex, __NR_geteuid,
                 __NR_getpgid, __NR_getpid, __NR_getrandom, __NR_gettimeofday, __NR_getuid, __NR_madvise,
                 __NR_mremap, __NR_munmap, __NR_nanosleep, __NR_clock_nanosleep, __NR_poll, __NR_pselect6,
                 __NR_read, __NR_rt_sigprocmask, __NR_select, __NR_shutdown, __NR_time, __NR_write})
    allow(f, nr);
  allow_arg_mask(f, __NR_mmap, 2, PROT_READ | PROT_WRITE | PROT_NONE);
  allow_arg_mask(f, __NR_mprotect, 2, PROT_READ | PROT_WRITE | PROT_NONE);
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  return kt::seccomp_install(f);
}

// Chromium's baseline policy on what an allocator calls: mmap with a flag
// outside MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK |
// MAP_NORESERVE | MAP_FIXED | MAP_DENYWRITE | MAP_LOCKED kills
// (RestrictMmapFlags), madvise other than MADV_DONTNEED fails with EPERM,
// and calls it does not list (mincore, process_madvise, membarrier) kill.
bool chromium_baseline_filter() {
  std::vector<sock_filter> f = kt::seccomp_prologue();
  allow_arg_mask(f, __NR_mmap, 3,
                 MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE | MAP_FIXED |
                     MAP_DENYWRITE | MAP_LOCKED);
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)__NR_madvise, 0, 4));
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, args[2])));
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_DONTNEED, 0, 1));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  for (int nr : {__NR_mincore, 440 /* process_madvise */, __NR_membarrier}) {
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  }
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return kt::seccomp_install(f);
}

// The heap's work under the filter; returns 0 or the first failed step.
int heap_workout() {
  // 1: small objects of many classes, 96 MiB: the zone grows several times.
  std::vector<void *> small;
  small.reserve(400000);
  for (size_t i = 0; i < 400000; i++) {
    size_t n = 16 + (i * 37) % 480;
    void *p = malloc(n);
    if (!p) return 1;
    memset(p, (int)(i & 0xff), n);
    small.push_back(p);
  }
  // 2: large blocks (64 KiB .. 1 MiB) and huge ones (16-48 MiB), realloc'd.
  std::vector<void *> big;
  for (size_t i = 0; i < 64; i++) {
    size_t n = (64u << 10) << (i % 5);
    void *p = malloc(n);
    if (!p) return 2;
    memset(p, 1, n);
    big.push_back(p);
  }
  unsigned char *h = (unsigned char *)malloc(16u << 20);
  if (!h) return 3;
  memset(h, 5, 16u << 20);
  h = (unsigned char *)realloc(h, 48u << 20);
  if (!h || h[(16u << 20) - 1] != 5) return 4;
  h = (unsigned char *)realloc(h, 20u << 20);
  if (!h || h[0] != 5) return 5;
  // 3: every other small object and every block freed; trim, compaction.
  for (size_t i = 0; i < small.size(); i += 2) free(small[i]);
  for (void *p : big) free(p);
  free(h);
  malloc_trim(0);
  kalloc_compact();
  // 4: the survivors kept their bytes; calloc'd memory reads zero.
  for (size_t i = 1; i < small.size(); i += 2)
    if (((unsigned char *)small[i])[0] != (unsigned char)(i & 0xff)) return 6;
  for (int r = 0; r < 8; r++) {
    size_t n = (size_t)(1u << 20) << (r % 4);
    unsigned char *z = (unsigned char *)calloc(1, n);
    if (!z) return 7;
    for (size_t k = 0; k < n; k += 4096)
      if (z[k]) return 8;
    memset(z, 0xee, n);
    free(z);
  }
  for (size_t i = 1; i < small.size(); i += 2) free(small[i]);
  malloc_trim(0);
  return 0;
}

void run_sandboxed(bool (*install)()) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    void *warm = malloc(100);   // the heap exists before the filter, as in a forked sandbox child
    free(warm);
    if (!install()) _exit(0);   // the kernel refuses filters: nothing to test
    _exit(heap_workout());
  }
  kt::expect_sandboxed_child_exits_cleanly(
      pid, "1 small, 2 large, 3-5 huge and realloc, 6 survivors, 7 calloc NULL, 8 calloc not zero");
}

}  // namespace

// The previous library died of SIGSYS at the first zone growth (prlimit64,
// which reads RLIMIT_AS and RLIMIT_DATA; the filter does not list it).
TEST(Sandbox, OpenSshPreauthFilter) { run_sandboxed(openssh_preauth_filter); }

// The previous library died of SIGSYS at the first zone growth
// (MAP_FIXED_NOREPLACE).
TEST(Sandbox, ChromiumBaselinePolicy) { run_sandboxed(chromium_baseline_filter); }
