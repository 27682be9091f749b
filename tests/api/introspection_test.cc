// glibc's introspection and control entry points (mallopt, malloc_trim,
// mallinfo2, malloc_info, malloc_stats) and a few glibc-only behaviours that
// need them to observe the allocator.  Everything here also holds for glibc.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

namespace {

using kt::opaque;
constexpr size_t MiB = 1024 * 1024;

// Runs `fn` with fd 2 redirected to a temporary file; returns what was written.
template <class Fn>
std::string CaptureStderr(Fn fn) {
  fflush(stderr);
  char path[] = "/tmp/kalloc-api-stderr-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return "<mkstemp failed>";
  unlink(path);
  int saved = dup(2);
  dup2(fd, 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string out;
  lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(r));
  close(fd);
  return out;
}

TEST(Introspection, MalloptReturnsOne) {
  EXPECT_EQ(mallopt(M_ARENA_MAX, 4), 1);
  EXPECT_EQ(mallopt(M_ARENA_MAX, 0), 1);
  EXPECT_EQ(mallopt(opaque(12345), 1), 1) << "unknown parameter";
  EXPECT_EQ(mallopt(opaque(-12345), 77), 1) << "unknown parameter";
  EXPECT_EQ(mallopt(M_TRIM_THRESHOLD, 128 * 1024), 1);
  EXPECT_EQ(mallopt(M_TOP_PAD, 0), 1);
  EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  // The allocator still works afterwards.
  void *p = malloc(opaque<size_t>(300000));
  ASSERT_NE(p, nullptr);
  memset(p, 1, 300000);
  free(p);
}

TEST(Introspection, MallocTrimReturnsZeroOrOne) {
  std::vector<void *> v;
  for (int i = 0; i < 2000; ++i) {
    void *p = malloc(opaque<size_t>(i % 2 ? 4096 : 40000));
    ASSERT_NE(p, nullptr);
    memset(p, 1, 4096);
    v.push_back(p);
  }
  for (void *p : v) free(p);
  int r = malloc_trim(0);
  EXPECT_TRUE(r == 0 || r == 1) << r;
  r = malloc_trim(opaque<size_t>(1 << 20));
  EXPECT_TRUE(r == 0 || r == 1) << r;
  // Memory is usable after trimming.
  void *p = malloc(opaque<size_t>(40000));
  ASSERT_NE(p, nullptr);
  memset(p, 2, 40000);
  free(p);
}

TEST(Introspection, Mallinfo2FieldsAreSaneAndMove) {
  struct mallinfo2 before = mallinfo2();
  EXPECT_GT(before.arena + before.hblkhd, 0u);
  EXPECT_LE(before.uordblks, before.arena + before.hblkhd);
  EXPECT_LE(before.fordblks, before.arena + before.hblkhd);

  // 10 MB of live small blocks.
  std::vector<void *> v;
  for (int i = 0; i < 10240; ++i) {
    void *p = malloc(opaque<size_t>(1000));
    ASSERT_NE(p, nullptr);
    memset(p, 1, 1000);
    v.push_back(p);
  }
  struct mallinfo2 during = mallinfo2();
  EXPECT_GE(during.uordblks, before.uordblks + 9 * 1000 * 1000)
      << "uordblks " << before.uordblks << " -> " << during.uordblks
      << " after allocating 10 MB of 1000-byte blocks";
  EXPECT_LE(during.uordblks, during.arena + during.hblkhd);
  EXPECT_GE(during.arena + during.hblkhd, before.arena + before.hblkhd);
  for (void *p : v) free(p);
  struct mallinfo2 after = mallinfo2();
  EXPECT_LE(after.uordblks + 5 * 1000 * 1000, during.uordblks)
      << "uordblks " << during.uordblks << " -> " << after.uordblks << " after freeing 10 MB";

  // Big blocks count in uordblks or hblkhd.
  void *big[4];
  for (auto &b : big) {
    b = malloc(opaque(4 * MiB));
    ASSERT_NE(b, nullptr);
    memset(b, 1, 4096);
  }
  struct mallinfo2 withbig = mallinfo2();
  EXPECT_GE(withbig.uordblks + withbig.hblkhd, after.uordblks + after.hblkhd + 15 * MiB);
  for (auto &b : big) free(b);
}

TEST(Introspection, OldMallinfoDoesNotCrash) {
  // mallinfo() is deprecated; call it through dlsym so the build stays clean.
  using Fn = struct mallinfo (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "mallinfo"));
  ASSERT_NE(fn, nullptr);
  struct mallinfo mi = fn();
  EXPECT_GE(mi.uordblks, 0);
  EXPECT_GE(mi.arena, 0);
}

TEST(Introspection, MallocInfoWritesXmlToMemstream) {
  char *buf = nullptr;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(malloc_info(0, f), 0);
  ASSERT_EQ(fclose(f), 0);
  ASSERT_NE(buf, nullptr);
  EXPECT_GT(len, 0u);
  EXPECT_NE(strstr(buf, "<malloc"), nullptr) << buf;
  free(buf);  // the buffer was allocated by the stdio code with malloc
}

TEST(Introspection, MallocInfoWritesXmlToTmpfile) {
  FILE *f = tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(malloc_info(0, f), 0);
  fflush(f);
  rewind(f);
  std::string s;
  char buf[4096];
  size_t r;
  while ((r = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, r);
  fclose(f);
  EXPECT_NE(s.find("<malloc"), std::string::npos) << s;
  // Options other than 0: glibc returns EINVAL (the number; errno is left
  // alone), as kalloc does since 2026-12-03 (it returned -1).
  FILE *g = tmpfile();
  ASSERT_NE(g, nullptr);
  errno = 0;
  EXPECT_EQ(malloc_info(1, g), EINVAL);
  EXPECT_EQ(errno, 0);
  fclose(g);
}

TEST(Introspection, MallocStatsPrintsToStderr) {
  void *p = malloc(opaque<size_t>(1000));
  std::string out = CaptureStderr([] { malloc_stats(); });
  free(p);
  EXPECT_FALSE(out.empty()) << "malloc_stats() wrote nothing to stderr";
}

// realloc(p, 0) must free p: do it many times and watch the in-use figure.
TEST(Introspection, ReallocToZeroDoesNotLeak) {
  struct mallinfo2 before = mallinfo2();
  for (int i = 0; i < 20000; ++i) {
    void *p = malloc(opaque<size_t>(10000));
    ASSERT_NE(p, nullptr);
    static_cast<char *>(p)[0] = 1;
    void *r = realloc(p, opaque<size_t>(0));
    ASSERT_EQ(r, nullptr);
  }
  struct mallinfo2 after = mallinfo2();
  // 20000 leaked 10 KB blocks would be 200 MB.
  EXPECT_LT(after.uordblks + after.hblkhd, before.uordblks + before.hblkhd + 20 * MiB)
      << "realloc(p, 0) does not seem to free p";
}

// Mixed usage by library code that allocates internally and frees with free().
TEST(Introspection, LibcInternalAllocationsAreFreeable) {
  char *s = strdup("hello kalloc");
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(s, "hello kalloc");
  free(s);
  char *t = nullptr;
  ASSERT_GT(asprintf(&t, "%0*d", 100000, 7), 0);  // printf with a large width
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(strlen(t), 100000u);
  free(t);
  char *line = nullptr;
  size_t cap = 0;
  FILE *f = fopen("/proc/self/status", "r");
  ASSERT_NE(f, nullptr);
  ASSERT_GT(getline(&line, &cap, f), 0);
  fclose(f);
  free(line);
  char *rp = realpath("/proc/self/exe", nullptr);
  ASSERT_NE(rp, nullptr);
  free(rp);
}

}  // namespace

// A thread with a cancellation request pending is not cancelled inside the
// allocator: glibc's malloc_stats writes with cancellation off, and kalloc's
// output (and its reads of /proc, under a lock for the cgroup check) go
// through raw system calls.  The thread must reach its own
// pthread_testcancel after malloc_stats returned.
namespace {
std::atomic<int> g_stats_returned{0};
void *StatsWithCancelPending(void *) {
  pthread_cancel(pthread_self());   // deferred: pending until a cancellation point
  malloc_stats();
  void *p = malloc(100);
  free(p);
  g_stats_returned = 1;
  pthread_testcancel();
  return nullptr;
}
}  // namespace

TEST(Introspection, MallocStatsIsNotACancellationPoint) {
  std::string out = CaptureStderr([] {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, nullptr, StatsWithCancelPending, nullptr), 0);
    void *ret = nullptr;
    ASSERT_EQ(pthread_join(t, &ret), 0);
    EXPECT_EQ(ret, PTHREAD_CANCELED);
  });
  EXPECT_EQ(g_stats_returned.load(), 1) << "the thread was cancelled inside malloc_stats";
  EXPECT_FALSE(out.empty());
}

// kalloc's own output (statistics, trace, warnings) goes through write(2):
// past the program's RLIMIT_FSIZE it must not kill the program with
// SIGXFSZ (OpenSSH's pre-auth child runs with a limit of 0, and the
// KALLOC_STATS report at its exit killed it when stderr was a file).  The
// write fails (and the later ones past the limit, quietly); the program goes on.
TEST(Introspection, OutputPastTheFileSizeLimitDoesNotKill) {
  char path[] = "/tmp/kalloc-fsize-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct rlimit rl = {100, 100};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
    kalloc_stats_print_fd(fd);   // several KiB: past the limit at once
    kalloc_stats_print_fd(fd);
    void *p = malloc(100);
    free(p);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  if (WIFEXITED(status)) {
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_LE(st.st_size, 100) << "nothing past the limit";
  EXPECT_GT(st.st_size, 0) << "what fits is written";
  close(fd);
}
