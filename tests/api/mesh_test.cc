// Memory-file zones and meshing (KALLOC_MESH=1, mm/mesh.h) through the
// public API.  Each MeshChild test runs in a fresh process started by the
// Mesh test of the same name, with KALLOC_MESH=1 in its environment and
// KALLOC_TEST_MESH_CHILD naming it; run directly, MeshChild tests skip.
//   - the zones are mapped from a memory file (memfd "kalloc");
//   - memory given back leaves the file (MADV_REMOVE, not MADV_DONTNEED);
//   - fork: the child sees the parent's data as of the fork, and neither
//     sees the other's later writes (single- and multi-threaded parents).
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "kalloc/kalloc.h"

using kt::check;
using kt::fill;

namespace {

bool mesh_child(const char *name) {
  const char *c = getenv("KALLOC_TEST_MESH_CHILD");
  return c && strcmp(c, name) == 0;
}

#define MESH_CHILD(name) \
  if (!mesh_child(name)) GTEST_SKIP() << "run by the Mesh test of the same name, with KALLOC_MESH=1";

void run_mesh_child(const char *name, const char *mesh = "1") {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("KALLOC_MESH", mesh, 1);
    setenv("KALLOC_TEST_MESH_CHILD", name, 1);
    std::string filter = std::string("--gtest_filter=MeshChild.") + name;
    execl("/proc/self/exe", "mesh_test", filter.c_str(), (char *)nullptr);
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "MeshChild." << name << " failed";
}

// The mapping of /proc/self/maps that holds p, or "".
std::string mapping_of(const void *p) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return "";
  char line[512];
  std::string out;
  while (fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi) {
      out = line;
      break;
    }
  }
  fclose(f);
  return out;
}

// Bytes of file pages held by kalloc's memory files (st_blocks of every
// open "/memfd:kalloc" descriptor).
long memfd_bytes() {
  long total = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent *e = readdir(d)) {
    char path[64], target[128];
    snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (strncmp(target, "/memfd:kalloc", 13) != 0) continue;
    struct stat st;
    if (stat(path, &st) == 0) total += (long)st.st_blocks * 512;
  }
  closedir(d);
  return total;
}

TEST(MeshChild, ZonesAreMemoryFileBacked) {
  MESH_CHILD("ZonesAreMemoryFileBacked");
  void *small = malloc(64), *large = malloc(256 << 10);
  ASSERT_NE(small, nullptr);
  ASSERT_NE(large, nullptr);
  EXPECT_NE(mapping_of(small).find("memfd:kalloc"), std::string::npos) << mapping_of(small);
  EXPECT_NE(mapping_of(large).find("memfd:kalloc"), std::string::npos) << mapping_of(large);
  EXPECT_NE(mapping_of(small).find(" rw-s "), std::string::npos) << mapping_of(small);
  free(small);
  free(large);
}

// 64 MiB of 64 KiB blocks written, freed and trimmed: the file pages go.
TEST(MeshChild, GivenBackLeavesTheFile) {
  MESH_CHILD("GivenBackLeavesTheFile");
  std::vector<void *> ps;
  for (int i = 0; i < 1024; i++) {
    void *p = malloc(64 << 10);
    ASSERT_NE(p, nullptr);
    memset(p, 0x5a, 64 << 10);
    ps.push_back(p);
  }
  long full = memfd_bytes();
  EXPECT_GE(full, 64l << 20);
  for (void *p : ps) free(p);
  malloc_trim(0);
  long after = memfd_bytes();
  EXPECT_LE(after, full - (48l << 20)) << "file bytes " << full << " -> " << after;
}

// Objects of several size classes filled before the fork; the child checks
// them, overwrites them and mallocs; the parent checks its own are intact and
// overwrites them; the child checks its writes were not touched.
void fork_isolation(bool with_thread) {
  std::atomic<bool> stop{false};
  std::thread t;
  std::vector<void *> spin;   // the helper thread's own churn
  if (with_thread)
    t = std::thread([&] {
      while (!stop.load()) {
        void *p = malloc(48);
        if (p) memset(p, 1, 48);
        free(p);
      }
    });
  const size_t sizes[] = {16, 64, 200, 1000, 5000, 40000, 300000};
  std::vector<std::pair<void *, size_t>> objs;
  for (int r = 0; r < 200; r++)
    for (size_t s : sizes) {
      void *p = malloc(s);
      ASSERT_NE(p, nullptr);
      fill(p, s, (uint32_t)objs.size());
      objs.push_back({p, s});
    }
  int to_child[2], to_parent[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(to_parent), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char c;
    int bad = 0;
    for (size_t i = 0; i < objs.size(); i++)
      if (check(objs[i].first, objs[i].second, (uint32_t)i) != objs[i].second) bad |= 1;
    for (size_t i = 0; i < objs.size(); i++) fill(objs[i].first, objs[i].second, (uint32_t)(i + 100000));
    for (int i = 0; i < 1000; i++) {   // the child's heap works
      void *p = malloc(100 + i);
      if (!p) bad |= 2;
      else { memset(p, 7, 100 + i); free(p); }
    }
    if (write(to_parent[1], "c", 1) != 1) bad |= 4;
    if (read(to_child[0], &c, 1) != 1) bad |= 4;    // the parent has overwritten its copy
    for (size_t i = 0; i < objs.size(); i++)
      if (check(objs[i].first, objs[i].second, (uint32_t)(i + 100000)) != objs[i].second) bad |= 8;
    _exit(bad);
  }
  char c;
  ASSERT_EQ(read(to_parent[0], &c, 1), 1);
  size_t bad = 0;
  for (size_t i = 0; i < objs.size(); i++)
    if (check(objs[i].first, objs[i].second, (uint32_t)i) != objs[i].second) bad++;
  EXPECT_EQ(bad, 0u) << "the child's writes reached the parent";
  for (size_t i = 0; i < objs.size(); i++) fill(objs[i].first, objs[i].second, (uint32_t)(i + 200000));
  ASSERT_EQ(write(to_child[1], "p", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child: 1 data at fork wrong, 2 malloc, 4 pipe, 8 parent's writes seen";
  for (size_t i = 0; i < objs.size(); i++) {
    EXPECT_EQ(check(objs[i].first, objs[i].second, (uint32_t)(i + 200000)), objs[i].second);
    free(objs[i].first);
  }
  if (with_thread) {
    stop = true;
    t.join();
  }
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) close(fd);
}

TEST(MeshChild, ForkCopiesSingleThreaded) {
  MESH_CHILD("ForkCopiesSingleThreaded");
  fork_isolation(false);
}

TEST(MeshChild, ForkCopiesWithThreads) {
  MESH_CHILD("ForkCopiesWithThreads");
  fork_isolation(true);
}

TEST(Mesh, ZonesAreMemoryFileBacked) { run_mesh_child("ZonesAreMemoryFileBacked"); }
TEST(Mesh, GivenBackLeavesTheFile) { run_mesh_child("GivenBackLeavesTheFile"); }
TEST(Mesh, ForkCopiesSingleThreaded) { run_mesh_child("ForkCopiesSingleThreaded"); }
TEST(Mesh, ForkCopiesWithThreads) { run_mesh_child("ForkCopiesWithThreads"); }

}  // namespace
