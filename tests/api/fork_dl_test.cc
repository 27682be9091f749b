// fork() while other threads allocate, fork() from a signal handler that
// interrupted malloc, malloc inside pthread_atfork handlers, in constructors
// (including .preinit_array, before libkalloc's own initialisers), in
// destructors at exit, and around dlopen/dlsym/dlclose.
//
// Every scenario that could deadlock runs under a watchdog: a child that does
// not finish within its deadline is killed and the test fails.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "../common/hugetlb_pool.h"
#include "kalloc/kalloc.h"

namespace {

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;

double NowSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Waits for `pid` for at most `seconds`.  Returns the wait status, or -1 if
// the child had to be killed (after SIGKILL it is reaped).
int WaitWithTimeout(pid_t pid, double seconds) {
  const double deadline = NowSeconds() + seconds;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -2;
    if (NowSeconds() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    usleep(1000);
  }
}

std::string DescribeStatus(int status) {
  if (status == -1) return "timed out (deadlock?) and was killed";
  if (status == -2) return "waitpid failed";
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "status " + std::to_string(status);
}

bool ExitedZero(int status) { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// Runs fn() in a forked child, which must _exit(0) within `seconds`.
template <class Fn>
void RunInChildWithTimeout(Fn fn, double seconds) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    fn();
    _exit(0);
  }
  int status = WaitWithTimeout(pid, seconds);
  EXPECT_TRUE(ExitedZero(status)) << "child " << DescribeStatus(status);
}

// Some allocator work, with verification; returns false on any problem.
bool ExerciseAllocator(uint32_t seed) {
  const size_t sizes[] = {1, 24, 100, 1000, 5000, 40000, 300 * KiB, 2 * MiB, 16 * MiB};
  void *ps[sizeof sizes / sizeof sizes[0]];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    ps[i] = malloc(sizes[i]);
    if (!ps[i]) return false;
    kt::fill_sparse(ps[i], sizes[i], seed + static_cast<uint32_t>(i));
  }
  void *c = calloc(100, 100);
  if (!c || !kt::all_bytes_are(c, 10000, 0)) return false;
  c = realloc(c, 100000);
  if (!c) return false;
  free(c);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    if (kt::check_sparse(ps[i], sizes[i], seed + static_cast<uint32_t>(i)) != sizes[i]) return false;
    free(ps[i]);
  }
  return true;
}

// ---------------------------------------------------------------------------
// (d) fork while other threads allocate
// ---------------------------------------------------------------------------

void *ChildThreadAllocates(void *) {
  for (int i = 0; i < 2000; ++i) {
    void *p = malloc(static_cast<size_t>(16 + i % 3000));
    if (!p) return reinterpret_cast<void *>(1);
    memset(p, 3, 16);
    free(p);
  }
  return ExerciseAllocator(555) ? nullptr : reinterpret_cast<void *>(1);
}

TEST(Fork, ForkWhileOtherThreadsAllocate) {
  std::atomic<bool> stop{false};
  std::atomic<long> hammer_ops{0};
  std::vector<std::thread> hammers;
  for (int t = 0; t < 4; ++t) {
    hammers.emplace_back([&, t] {
      kt::Rng rng(static_cast<uint64_t>(t) + 17);
      void *slots[64] = {};
      while (!stop.load(std::memory_order_relaxed)) {
        void *&s = slots[rng.below(64)];
        if (s) {
          free(s);
          s = nullptr;
        } else {
          uint64_t r = rng.below(100);
          size_t n = r < 80 ? 1 + rng.below(1000) : r < 98 ? 1000 + rng.below(60000) : 1 * MiB + rng.below(4 * MiB);
          s = r % 7 == 0 ? realloc(nullptr, n) : malloc(n);
          if (s) memset(s, 1, n < 256 ? n : 256);
        }
        hammer_ops.fetch_add(1, std::memory_order_relaxed);
      }
      for (void *s : slots) free(s);
    });
  }
  // Blocks allocated by the main thread before the forks; children free them.
  std::vector<std::pair<void *, size_t>> inherited;
  for (size_t n : {size_t{32}, size_t{700}, 20 * KiB, 2 * MiB, 20 * MiB}) {
    void *p = malloc(n);
    ASSERT_NE(p, nullptr);
    kt::fill_sparse(p, n, static_cast<uint32_t>(n));
    inherited.emplace_back(p, n);
  }
  while (hammer_ops.load() < 1000) usleep(100);

  int failures = 0;
  std::string first_failure;
  for (int i = 0; i < 50; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << strerror(errno);
    if (pid == 0) {
      alarm(30);  // belt and braces: never outlive the test
      for (auto [p, n] : inherited) {
        KT_CHILD_CHECK(kt::check_sparse(p, n, static_cast<uint32_t>(n)) == n, 2);
        free(p);
      }
      KT_CHILD_CHECK(ExerciseAllocator(static_cast<uint32_t>(i)), 3);
      pthread_t th;
      KT_CHILD_CHECK(pthread_create(&th, nullptr, ChildThreadAllocates, nullptr) == 0, 4);
      void *ret = reinterpret_cast<void *>(1);
      KT_CHILD_CHECK(pthread_join(th, &ret) == 0, 5);
      KT_CHILD_CHECK(ret == nullptr, 6);
      KT_CHILD_CHECK(ExerciseAllocator(static_cast<uint32_t>(i) + 1000), 7);
      _exit(0);
    }
    int status = WaitWithTimeout(pid, 10.0);
    if (!ExitedZero(status)) {
      if (failures++ == 0) first_failure = "fork #" + std::to_string(i) + ": child " + DescribeStatus(status);
    }
  }
  stop = true;
  for (auto &t : hammers) t.join();
  for (auto [p, n] : inherited) {
    EXPECT_EQ(kt::check_sparse(p, n, static_cast<uint32_t>(n)), n);
    free(p);
  }
  EXPECT_EQ(failures, 0) << first_failure;
}

extern volatile bool g_atfork_handlers_enabled;

// A single-threaded process forks from a signal handler that interrupted
// malloc/free (glibc's tst-mallocfork2): neither side may deadlock or corrupt
// the heap.  glibc only supports this in processes that never created a
// thread, so the scenario runs in a freshly exec'ed copy of this binary.
std::atomic<int> g_sig_forks{0};
std::atomic<int> g_sig_fork_failures{0};

void ForkingSigHandler(int) {
  int saved = errno;
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid < 0) {
    g_sig_fork_failures.fetch_add(1);
  } else {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) g_sig_fork_failures.fetch_add(1);
    g_sig_forks.fetch_add(1);
  }
  errno = saved;
}

void SignalForkScenario() {
  g_atfork_handlers_enabled = false;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = ForkingSigHandler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  pid_t self = getpid();
  // Block SIGUSR1 while forking the sender, so that the signal only ever
  // interrupts the malloc/free loop below, not this fork().
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &usr1, &old), 0);
  pid_t sender = fork();  // a separate process, so we stay single-threaded
  if (sender == 0) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    for (int i = 0; i < 400; ++i) {
      if (kill(self, SIGUSR1) != 0) _exit(0);
      usleep(2000);
    }
    _exit(0);
  }
  ASSERT_EQ(sigprocmask(SIG_SETMASK, &old, nullptr), 0);
  ASSERT_GE(sender, 0);
  kt::Rng rng(42);
  void *slots[64] = {};
  bool alloc_failed = false;
  for (;;) {
    for (int k = 0; k < 1000; ++k) {
      void *&s = slots[rng.below(64)];
      free(s);
      size_t n = rng.below(10) == 0 ? 100 * KiB + rng.below(2 * MiB) : rng.below(70000);
      s = malloc(n);
      if (!s) alloc_failed = true;
    }
    int st = 0;
    if (waitpid(sender, &st, WNOHANG) == sender) break;
  }
  signal(SIGUSR1, SIG_IGN);
  for (void *s : slots) free(s);
  EXPECT_FALSE(alloc_failed);
  EXPECT_GT(g_sig_forks.load(), 0);
  EXPECT_EQ(g_sig_fork_failures.load(), 0);
  EXPECT_TRUE(ExerciseAllocator(9));
  g_atfork_handlers_enabled = true;
}

// fork() while one thread reads a FILE with getline (glibc holds the FILE's
// lock while getline grows its buffer with realloc) and another calls
// fflush(NULL) (the stdio list lock, then each FILE's lock).  glibc's fork
// takes the list lock before its malloc locks; an allocator whose atfork
// handler takes its locks first deadlocks with the two (kalloc did in 5 of 5
// runs of 1000 forks, as jemalloc does).
FILE *g_stdio_shared;

void *StdioReader(void *) {
  for (;;) {
    char *line = nullptr;   // a fresh buffer each pass: getline reallocs it under the FILE lock
    size_t cap = 0;
    rewind(g_stdio_shared);
    while (getline(&line, &cap, g_stdio_shared) > 0) {
    }
    free(line);
  }
  return nullptr;
}

void *StdioFlusher(void *) {
  for (;;) fflush(nullptr);
  return nullptr;
}

TEST(Fork, ForkWhileOtherThreadsUseStdio) {
  RunInChildWithTimeout(
      [] {
        g_stdio_shared = tmpfile();
        if (!g_stdio_shared) _exit(2);
        // Lines up to 200 KB: getline's buffer grows through many classes.
        for (int i = 0; i < 400; i++) fprintf(g_stdio_shared, "%0*d\n", (i * 7919) % 200000, i);
        fflush(g_stdio_shared);
        pthread_t a, b;
        if (pthread_create(&a, nullptr, StdioReader, nullptr) != 0 ||
            pthread_create(&b, nullptr, StdioFlusher, nullptr) != 0)
          _exit(3);
        for (int k = 0; k < 1000; k++) {
          pid_t p = fork();
          if (p < 0) _exit(4);
          if (p == 0) _exit(0);
          int st = 0;
          if (waitpid(p, &st, 0) != p || !WIFEXITED(st)) _exit(5);
        }
      },
      60.0);
}

TEST(Fork, ForkFromSignalHandlerInterruptingMalloc) {
  if (getenv("KALLOC_API_TEST_SIGFORK")) {
    SignalForkScenario();  // we are the re-exec'ed, never-threaded copy
    return;
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("KALLOC_API_TEST_SIGFORK", "1", 1);
    execl("/proc/self/exe", "fork_dl_test",
          "--gtest_filter=Fork.ForkFromSignalHandlerInterruptingMalloc", "--gtest_brief=1",
          static_cast<char *>(nullptr));
    _exit(127);
  }
  int status = WaitWithTimeout(pid, 30.0);
  EXPECT_TRUE(ExitedZero(status)) << "re-executed test " << DescribeStatus(status);
}

// ---------------------------------------------------------------------------
// (e) pthread_atfork handlers, constructors, destructors, dlopen
// ---------------------------------------------------------------------------

std::atomic<int> g_prepare_ok{0}, g_parent_ok{0}, g_child_ok{0}, g_atfork_bad{0};

bool SmallAllocWorks() {
  void *p = malloc(100);
  void *q = calloc(10, 100);
  void *r = malloc(200 * KiB);
  bool ok = p && q && r && kt::all_bytes_are(q, 1000, 0);
  if (p) memset(p, 1, 100);
  if (r) memset(r, 1, 4096);
  q = realloc(q, 5000);
  ok = ok && q;
  free(p);
  free(q);
  free(r);
  return ok;
}

// The handlers stay registered for the whole process; the signal-handler
// fork test turns them off (malloc from a handler that interrupted malloc is
// the test's own bug, not the allocator's).
volatile bool g_atfork_handlers_enabled = true;

void AtforkPrepare() {
  if (g_atfork_handlers_enabled) (SmallAllocWorks() ? g_prepare_ok : g_atfork_bad).fetch_add(1);
}
void AtforkParent() {
  if (g_atfork_handlers_enabled) (SmallAllocWorks() ? g_parent_ok : g_atfork_bad).fetch_add(1);
}
void AtforkChild() {
  if (g_atfork_handlers_enabled) (SmallAllocWorks() ? g_child_ok : g_atfork_bad).fetch_add(1);
}

// Records from constructors that run before main.
void *g_preinit_block = nullptr;
bool g_preinit_ok = false;
void *g_ctor_block = nullptr;
bool g_ctor_ok = false;
char *g_ctor_string = nullptr;

bool g_preinit_atfork = false;  // handlers registered from .preinit_array too

void PreinitAllocates(int, char **, char **envp) {
  // Runs from .preinit_array: before any shared library's initialiser,
  // libkalloc's included.
  for (char **e = envp; e && *e; ++e) {
    if (strcmp(*e, "KALLOC_API_TEST_PREINIT_ATFORK=1") == 0) {
      pthread_atfork(AtforkPrepare, AtforkParent, AtforkChild);
      g_preinit_atfork = true;
    }
  }
  g_preinit_block = malloc(4000);
  if (!g_preinit_block) return;
  memset(g_preinit_block, 0x5A, 4000);
  void *q = calloc(3, 1000);
  void *r = malloc(3 * MiB);
  g_preinit_ok = q && r && kt::all_bytes_are(q, 3000, 0);
  free(q);
  free(r);
}

__attribute__((section(".preinit_array"), used)) void (*const g_preinit_entry)(int, char **, char **) =
    PreinitAllocates;

__attribute__((constructor)) void ConstructorAllocates() {
  g_ctor_block = malloc(1000);
  g_ctor_string = strdup("made in a constructor");
  void *a = memalign(4096, 100);
  void *b = realloc(nullptr, 64 * KiB);
  g_ctor_ok = g_ctor_block && g_ctor_string && a && kt::is_aligned(a, 4096) && b;
  if (g_ctor_block) memset(g_ctor_block, 0xC7, 1000);
  free(a);
  free(b);
  // Early atfork handlers (registered before any test runs).
  pthread_atfork(AtforkPrepare, AtforkParent, AtforkChild);
}

int g_dtor_fd = -1;

__attribute__((destructor)) void DestructorAllocates() {
  if (g_dtor_fd < 0) return;
  bool ok = SmallAllocWorks();
  void *big = malloc(8 * MiB);
  ok = ok && big;
  free(big);
  std::vector<std::string> v(100, std::string(100, 'd'));  // C++ new at exit
  ok = ok && v[99].size() == 100;
  const char *msg = ok ? "ok" : "bad";
  ssize_t w = write(g_dtor_fd, msg, strlen(msg));
  (void)w;
}

TEST(Lifecycle, MallocInPreinitArrayBeforeLibraryInit) {
  ASSERT_NE(g_preinit_block, nullptr);
  EXPECT_TRUE(g_preinit_ok);
  EXPECT_TRUE(kt::all_bytes_are(g_preinit_block, 4000, 0x5A));
  EXPECT_GE(malloc_usable_size(g_preinit_block), 4000u);
  void *r = realloc(g_preinit_block, 40000);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(kt::all_bytes_are(r, 4000, 0x5A));
  g_preinit_block = nullptr;
  free(r);
}

TEST(Lifecycle, MallocInConstructor) {
  EXPECT_TRUE(g_ctor_ok);
  ASSERT_NE(g_ctor_block, nullptr);
  EXPECT_TRUE(kt::all_bytes_are(g_ctor_block, 1000, 0xC7));
  ASSERT_NE(g_ctor_string, nullptr);
  EXPECT_STREQ(g_ctor_string, "made in a constructor");
  free(g_ctor_block);
  free(g_ctor_string);
  g_ctor_block = nullptr;
  g_ctor_string = nullptr;
}

TEST(Lifecycle, MallocInDestructorAtExit) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    g_dtor_fd = fds[1];
    // Leave some memory live, as real programs do at exit.
    for (int i = 0; i < 100; ++i) kt::escape(malloc(static_cast<size_t>(i * 37 + 1)));
    exit(0);  // runs atexit handlers and destructors
  }
  close(fds[1]);
  int status = WaitWithTimeout(pid, 20.0);
  char buf[16] = {};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  EXPECT_TRUE(ExitedZero(status)) << "child " << DescribeStatus(status);
  ASSERT_GT(n, 0) << "destructor did not report";
  EXPECT_STREQ(buf, "ok");
}

TEST(Lifecycle, MallocInAtforkHandlers) {
  if (getenv("KALLOC_API_TEST_PREINIT_ATFORK")) {
    EXPECT_TRUE(g_preinit_atfork) << "handlers were not registered from .preinit_array";
  }
  RunInChildWithTimeout(
      [] {
        // Late handlers: registered after the allocator has certainly set up
        // its own, so they run in the opposite position relative to them.
        KT_CHILD_CHECK(pthread_atfork(AtforkPrepare, AtforkParent, AtforkChild) == 0, 2);
        // A second thread makes the process multi-threaded, so the allocator
        // really has to take its locks around fork.
        std::atomic<bool> stop{false};
        std::thread t([&] {
          while (!stop.load()) free(malloc(123));
        });
        const int sets = g_preinit_atfork ? 3 : 2;  // handler sets registered
        const int prepare0 = g_prepare_ok.load(), parent0 = g_parent_ok.load();
        for (int i = 0; i < 10; ++i) {
          g_child_ok = 0;
          pid_t pid = fork();
          KT_CHILD_CHECK(pid >= 0, 3);
          if (pid == 0) {
            // Early and late child handlers both ran and could allocate.
            KT_CHILD_CHECK(g_child_ok.load() == sets, 10);
            KT_CHILD_CHECK(g_atfork_bad.load() == 0, 11);
            KT_CHILD_CHECK(SmallAllocWorks(), 12);
            _exit(0);
          }
          int status = WaitWithTimeout(pid, 10.0);
          KT_CHILD_CHECK(ExitedZero(status), 4);
        }
        stop = true;
        t.join();
        KT_CHILD_CHECK(g_prepare_ok.load() - prepare0 == 10 * sets, 5);
        KT_CHILD_CHECK(g_parent_ok.load() - parent0 == 10 * sets, 6);
        KT_CHILD_CHECK(g_atfork_bad.load() == 0, 7);
      },
      60.0);
}

// The same, with a third set of handlers registered from .preinit_array,
// i.e. before libkalloc's initialisers ran (glibc's malloc does not depend on
// the registration order of atfork handlers).  Runs in a re-executed copy of
// this binary so that a deadlock there cannot affect other tests.
TEST(Lifecycle, MallocInAtforkHandlersRegisteredBeforeAllocatorInit) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("KALLOC_API_TEST_PREINIT_ATFORK", "1", 1);
    execl("/proc/self/exe", "fork_dl_test",
          "--gtest_filter=Lifecycle.MallocInAtforkHandlers", "--gtest_brief=1",
          static_cast<char *>(nullptr));
    _exit(127);
  }
  int status = WaitWithTimeout(pid, 30.0);
  EXPECT_TRUE(ExitedZero(status)) << "re-executed test " << DescribeStatus(status);
}

TEST(Dl, DlopenDlsymDlcloseLibm) {
  for (int i = 0; i < 20; ++i) {
    void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(h, nullptr) << dlerror();
    using Fn = double (*)(double);
    auto c = reinterpret_cast<Fn>(dlsym(h, "cos"));
    ASSERT_NE(c, nullptr) << dlerror();
    EXPECT_EQ(c(0.0), 1.0);
    EXPECT_EQ(dlclose(h), 0);
  }
  void *p = malloc(1000);
  EXPECT_NE(p, nullptr);
  free(p);
}

// Libraries that are not yet loaded make the dynamic loader allocate (link
// maps, scope arrays, TLS) and free on dlclose; dlerror allocates too.
TEST(Dl, DlopenFreshLibrariesAndDlerror) {
  const char *libs[] = {"libz.so.1", "libresolv.so.2", "libanl.so.1", "libutil.so.1",
                        "libcrypt.so.1"};
  int opened = 0;
  for (int round = 0; round < 5; ++round) {
    for (const char *lib : libs) {
      void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
      if (!h) continue;
      ++opened;
      void *p = malloc(static_cast<size_t>(100 + round));
      EXPECT_NE(p, nullptr);
      free(p);
      EXPECT_EQ(dlclose(h), 0);
    }
  }
  EXPECT_GT(opened, 0);
  for (int i = 0; i < 100; ++i) {
    void *h = dlopen("libdoes-not-exist-kalloc.so.9", RTLD_NOW);
    EXPECT_EQ(h, nullptr);
    const char *err = dlerror();
    ASSERT_NE(err, nullptr);
    EXPECT_NE(strstr(err, "libdoes-not-exist-kalloc"), nullptr);
    EXPECT_EQ(dlsym(RTLD_DEFAULT, "no_such_symbol_kalloc_test"), nullptr);
    EXPECT_NE(dlerror(), nullptr);
  }
}

TEST(Dl, DlopenFromThreadsWhileAllocating) {
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        void *h = dlopen(t % 2 ? "libz.so.1" : "libm.so.6", RTLD_NOW | RTLD_LOCAL);
        void *p = malloc(static_cast<size_t>(1000 * (i + 1)));
        if (!p) errors.fetch_add(1);
        free(p);
        if (h) dlclose(h);
      }
    });
  }
  for (auto &t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
}

// Threads started while the allocator is in use allocate their TLS/stack
// bookkeeping with malloc (thread start-up); many at once.
TEST(Lifecycle, ManyThreadsStartTogether) {
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 64; ++t) ts.emplace_back([&] { ok.fetch_add(SmallAllocWorks() ? 1 : 0); });
  for (auto &t : ts) t.join();
  EXPECT_EQ(ok.load(), 64);
}

}  // namespace

// KALLOC_HUGETLB=1 and fork(): hugetlb memory is private copy-on-write
// across fork, and a child's write that finds no free hugepage to copy to
// dies of SIGBUS (the kernel keeps the reserving parent's pages).  kalloc
// keeps as many of the pool's pages unreserved as it holds, so a child can
// write every block it inherited.  Before that rule (KALLOC_HUGETLB=2 still
// takes the whole pool) the child died of SIGBUS.  Needs a reserved pool
// (vm.nr_hugepages); skipped without one.
TEST(ForkHugetlbChild, WritesEveryInheritedBlock) {
  if (!getenv("KT_HUGETLB_CHILD")) GTEST_SKIP() << "run by ForkHugetlb.* in a fresh process";
  const long avail = kt::hugetlb_unreserved();
  ASSERT_GT(avail, 0);
  // Three quarters of the pool in small blocks (at most 512 MiB): kalloc
  // maps hugetlb pages while it keeps as many unreserved, then ordinary ones.
  size_t target = (size_t)avail * (2u << 20) / 4 * 3;
  if (target > (512u << 20)) target = 512u << 20;
  const size_t n = target / 560;
  char **blocks = static_cast<char **>(malloc(n * sizeof(char *)));
  ASSERT_NE(blocks, nullptr);
  for (size_t i = 0; i < n; i++) {
    size_t len = 96 + (i * 37) % 1024;
    blocks[i] = static_cast<char *>(malloc(len));
    ASSERT_NE(blocks[i], nullptr);
    memset(blocks[i], (int)(i & 0x7f), len);
  }
  kalloc_vmstat v{};
  v.size = sizeof v;
  ASSERT_EQ(kalloc_vmstat_get(&v), 0);
  const long held = (long)(v.hugetlb_pages >> 9);
  const char *mode = getenv("KALLOC_HUGETLB");
  const bool keep_half = !mode || strcmp(mode, "2") != 0;
  std::printf("[ figures  ] %zu blocks (%zu MiB); %ld of the pool's %ld unreserved hugepages mapped, %ld left\n",
              n, target >> 20, held, avail, kt::hugetlb_unreserved());
  ASSERT_GT(held, 0) << "no hugetlb pages were mapped";
  if (keep_half) {
    EXPECT_GE(kt::hugetlb_unreserved(), held) << "fewer hugepages left unreserved than held";
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Every page copied on write, then frees and new blocks.
    for (size_t i = 0; i < n; i++) {
      size_t len = 96 + (i * 37) % 1024;
      if (blocks[i][len - 1] != (char)(i & 0x7f)) _exit(3);
      memset(blocks[i], 0x55, len);
    }
    for (size_t i = 0; i < n; i += 2) free(blocks[i]);
    for (size_t i = 0; i < n / 4; i++) memset(malloc(200), 0x66, 200);
    _exit(0);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << "the child " << (WIFSIGNALED(st) ? "died of signal " : "exited with ")
      << (WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st)) << " (7: SIGBUS, no hugepage to copy to)";
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = 96 + (i * 37) % 1024;
    bad += blocks[i][0] != (char)(i & 0x7f) || blocks[i][len - 1] != (char)(i & 0x7f);
    free(blocks[i]);
  }
  EXPECT_EQ(bad, 0u) << "the parent's blocks changed";
  free(blocks);
}

TEST(ForkHugetlb, AChildWritesEveryBlockItInherited) {
  kt::HugetlbPoolLock lock;   // the pool is the machine's: one such test at a time
  const long avail = kt::hugetlb_unreserved();
  if (avail < 8) GTEST_SKIP() << "no reserved hugetlbfs pool (vm.nr_hugepages; " << avail << " unreserved)";
  EXPECT_EQ(kt::run_self("ForkHugetlbChild.*", {{"KALLOC_HUGETLB", "1"}, {"KT_HUGETLB_CHILD", "1"}}), 0);
}

// Options reach a process whose first malloc ran from .preinit_array
// (PreinitAllocates above), before libc has set `environ`: kalloc reads
// them at the latest when its library is initialised.  Before (session 39)
// they were read again only where a running process seldom goes (a new
// zone, a run-time class, the exit report), so such a process ran with
// most defaults: KALLOC_HUGETLB=1 never reached zone growth (this test's
// first half failed: no hugetlb page mapped and no fallback counted).
// Growth under the option maps hugetlbfs pages or, with no pool, counts a
// fallback; without it (the control half) neither.
TEST(LifecycleEnvChild, OptionsReachAProcessThatAllocatedInPreinit) {
  const char *mode = getenv("KT_PREINIT_OPTION_CHILD");
  if (!mode) GTEST_SKIP() << "run by Lifecycle.OptionsReachAProcessThatAllocatedInPreinit in a fresh process";
  ASSERT_TRUE(g_preinit_ok) << "the .preinit_array allocation did not run";
  std::vector<void *> v;
  for (unsigned i = 0; i < 48; i++) {   // 48 MiB: the zone grows
    v.push_back(malloc(1u << 20));
    ASSERT_NE(v.back(), nullptr);
    memset(v.back(), 1, 4096);
  }
  std::string l = kt::stats_line("thp:");
  size_t a = l.find("hugetlb_pages "), b = l.find("hugetlb_fallbacks ");
  ASSERT_TRUE(a != std::string::npos && b != std::string::npos) << l;
  unsigned long tried = std::stoul(l.substr(a + 14)) + std::stoul(l.substr(b + 18));
  std::printf("[ figures  ] %s\n", l.c_str());
  if (mode[0] == '1')
    EXPECT_GT(tried, 0u) << "KALLOC_HUGETLB=1 was not read: zone growth never tried hugetlbfs";
  else
    EXPECT_EQ(tried, 0u) << "hugetlbfs tried without the option (the control)";
  for (void *p : v) free(p);
}

TEST(Lifecycle, OptionsReachAProcessThatAllocatedInPreinit) {
  kt::HugetlbPoolLock lock;   // the child may take pages of the machine's pool
  EXPECT_EQ(kt::run_self("LifecycleEnvChild.*", {{"KALLOC_HUGETLB", "1"}, {"KT_PREINIT_OPTION_CHILD", "1"}}), 0);
  EXPECT_EQ(kt::run_self("LifecycleEnvChild.*", {{"KT_PREINIT_OPTION_CHILD", "0"}}), 0);
}
