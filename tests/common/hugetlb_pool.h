// Helpers shared by the unit and API tests that map zones from the
// system's hugetlbfs pool (KALLOC_HUGETLB).
//
// The pool is one per machine: tests that take pages from it while another
// test process's forked child copies its inherited hugetlb pages could
// leave that child none to copy to (SIGBUS: a write to private hugetlb
// memory after fork() that finds no free hugepage).  kalloc keeps as many
// of the pool's pages unreserved as the process holds, which protects a
// process from its own children, not from other processes draining the
// pool; so these tests take the pool in turn, under a file lock.
#ifndef KALLOC_TESTS_COMMON_HUGETLB_POOL_H
#define KALLOC_TESTS_COMMON_HUGETLB_POOL_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

namespace kt {

// Holds the machine-wide lock of the hugetlbfs pool's tests while in scope.
class HugetlbPoolLock {
 public:
  HugetlbPoolLock() {
    fd_ = open("/tmp/kalloc-tests-hugetlb-pool.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ >= 0) flock(fd_, LOCK_EX);
  }
  ~HugetlbPoolLock() {
    if (fd_ >= 0) close(fd_);   // closing the last descriptor drops the lock
  }
  HugetlbPoolLock(const HugetlbPoolLock &) = delete;
  HugetlbPoolLock &operator=(const HugetlbPoolLock &) = delete;

 private:
  int fd_ = -1;
};

// One field of /proc/meminfo ("HugePages_Free:" ...), or -1.
inline long meminfo_field(const char *name) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(name);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, name, n) == 0) v = atol(line + n);
  fclose(f);
  return v;
}

// The pool's hugepages no mapping has reserved (HugePages_Free minus
// HugePages_Rsvd), or -1.
inline long hugetlb_unreserved() {
  long free_pages = meminfo_field("HugePages_Free:"), rsvd = meminfo_field("HugePages_Rsvd:");
  return free_pages < 0 || rsvd < 0 ? -1 : free_pages - rsvd;
}

}  // namespace kt

#endif
