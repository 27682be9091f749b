// Helpers shared by the unit and API tests of batched give-back
// (os_decommit_many: one process_madvise call per reclaim batch in a
// multi-threaded process).
#ifndef KALLOC_TESTS_COMMON_MADVISE_BATCH_UTIL_H
#define KALLOC_TESTS_COMMON_MADVISE_BATCH_UTIL_H

#include <atomic>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <thread>
#include <unistd.h>

namespace kt {

// Whether this kernel takes MADV_DONTNEED through process_madvise on the
// calling thread (Linux 6.13: any advice on itself; 6.15: PIDFD_SELF).
inline bool kernel_batches_madvise() {
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  void *m = mmap(nullptr, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  memset(m, 1, 2 * pg);
  struct iovec iov[2] = {{m, pg}, {(char *)m + pg, pg}};
  long rc = syscall(SYS_process_madvise, -10000 /* PIDFD_SELF */, iov, 2, MADV_DONTNEED, 0);
  bool ok = rc == (long)(2 * pg) && ((unsigned char *)m)[0] == 0 && ((unsigned char *)m)[pg] == 0;
  munmap(m, 2 * pg);
  return ok;
}

// A second thread that only sleeps, so the process is multi-threaded while
// it lives; joined however the scope ends (an ASSERT returns early, and a
// joinable std::thread would terminate the process).
struct idle_thread {
  std::atomic<bool> stop{false};
  std::thread t{[this] {
    while (!stop.load()) usleep(1000);
  }};
  ~idle_thread() {
    stop = true;
    t.join();
  }
};

}  // namespace kt

#endif  // KALLOC_TESTS_COMMON_MADVISE_BATCH_UTIL_H
