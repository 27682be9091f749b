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
#include <sys/resource.h>
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
  std::string filter = std::string("MeshChild.") + name;
  EXPECT_EQ(kt::run_self(filter.c_str(), {{"KALLOC_MESH", mesh}, {"KALLOC_TEST_MESH_CHILD", name}}), 0)
      << "MeshChild." << name << " failed";
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

// Where copy_file_range is refused (an older kernel, a filter), the fork
// copies the memory files through a buffer (os_copy_file_data), a mapped one:
// 16 KiB of it used to sit on the stack of the thread that forks.
TEST(MeshChild, ForkCopiesWithoutCopyFileRange) {
  MESH_CHILD("ForkCopiesWithoutCopyFileRange");
  ASSERT_TRUE(kt::seccomp_errno_on_syscalls({__NR_copy_file_range}, ENOSYS));
  fork_isolation(false);
}

// --- meshing -------------------------------------------------------------

// kCount objects of kSize bytes (an order-0 class), each filled with its own
// pattern; a random 90% freed (fixed seed), so nearly every slab keeps a few.
constexpr size_t kSize = 48;
constexpr size_t kCount = 200000;

struct population {
  std::vector<void *> live;
  std::vector<uint32_t> seed;
  kalloc_vmstat full;     // after the fill, before the frees (which may mesh already)
  long file_full;         // memfd_bytes() then
  population() {
    std::vector<void *> all(kCount);
    for (size_t i = 0; i < kCount; i++) {
      all[i] = malloc(kSize);
      EXPECT_NE(all[i], nullptr);
      fill(all[i], kSize, (uint32_t)i);
    }
    full = kt::vmstat_now();
    file_full = memfd_bytes();
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < kCount; i++) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      if (x % 10 == 0) {
        live.push_back(all[i]);
        seed.push_back((uint32_t)i);
      } else {
        free(all[i]);
      }
    }
  }
  size_t bad() const {
    size_t n = 0;
    for (size_t i = 0; i < live.size(); i++)
      if (check(live[i], kSize, seed[i]) != kSize) n++;
    return n;
  }
};

// The pass merges slabs, the file pages drop, every survivor keeps its
// bytes; new objects of the class go into the merged slabs' free slots
// without touching the survivors; freeing everything (through alias and
// primary addresses alike) gives every alias back, and the memory is reused.
TEST(MeshChild, MergesHalfEmptySlabs) {
  MESH_CHILD("MergesHalfEmptySlabs");
  population pop;
  const kalloc_vmstat &before = pop.full;
  long file_before = pop.file_full;
  kalloc_compact();
  kalloc_vmstat after = kt::vmstat_now();
  long file_after = memfd_bytes();
  EXPECT_GT(after.mesh_success, before.mesh_success);
  EXPECT_GT(after.mesh_pages, 0u);
  EXPECT_EQ(after.mesh_skip_threads, before.mesh_skip_threads);
  // 200,000 x 48 B is about 2300 pages; 90% freed: at least 1000 merged away.
  EXPECT_GE(after.mesh_pages, 1000u);
  EXPECT_LE(file_after, file_before - 1000l * 4096) << file_before << " -> " << file_after;
  EXPECT_EQ(pop.bad(), 0u);

  // Reallocate: the merged slabs hand out their free slots.
  std::vector<void *> fresh;
  for (size_t i = 0; i < kCount / 2; i++) {
    void *p = malloc(kSize);
    ASSERT_NE(p, nullptr);
    fill(p, kSize, (uint32_t)(i + 1000000));
    fresh.push_back(p);
  }
  EXPECT_EQ(pop.bad(), 0u);
  for (size_t i = 0; i < fresh.size(); i++)
    ASSERT_EQ(check(fresh[i], kSize, (uint32_t)(i + 1000000)), kSize) << i;
  for (void *p : fresh) free(p);
  EXPECT_EQ(pop.bad(), 0u);

  // Free every survivor: every merged slab empties, every alias goes back.
  for (void *p : pop.live) free(p);
  pop.live.clear();
  kalloc_thread_flush();
  kalloc_vmstat end = kt::vmstat_now();
  // Every alias is accounted for (merged = given back + still merged), and
  // all but a few are given back: a merged slab may also hold objects the
  // test harness allocated meanwhile (gtest's own 48-byte blocks).
  EXPECT_EQ(end.mesh_success - end.unmesh, end.mesh_pages);
  EXPECT_LE(end.mesh_pages, 16u);
  EXPECT_GE(end.unmesh - before.unmesh + 16, end.mesh_success - before.mesh_success);

  // The memory is usable again (aliases' pages included).
  std::vector<void *> again;
  for (size_t i = 0; i < kCount; i++) {
    void *p = malloc(kSize);
    ASSERT_NE(p, nullptr);
    fill(p, kSize, (uint32_t)(i + 2000000));
    again.push_back(p);
  }
  for (size_t i = 0; i < again.size(); i++)
    ASSERT_EQ(check(again[i], kSize, (uint32_t)(i + 2000000)), kSize) << i;
  for (void *p : again) free(p);
}

// With every mapping the process may make taken (vm.max_map_count), a pass
// cannot map an alias onto its partner (the remap splits the zone's
// mapping): the pair stays unmerged, the pass counts it (mesh_fail_map) and
// stops, and every object keeps its bytes (kalloc aborted here before, in
// "cannot map a slab page back").  With the mappings given back, the next
// pass merges.
TEST(MeshChild, NoMappingLeft) {
  MESH_CHILD("NoMappingLeft");
  long max = kt::max_map_count();
  if (max < 0 || max > (1l << 20))
    GTEST_SKIP() << "vm.max_map_count is " << max << ": too many mappings to take in a test";
  population pop;
  kalloc_vmstat before = kt::vmstat_now();
  kt::mapping_hog hog(max);
  ASSERT_TRUE(hog.exhausted()) << hog.splits << " splits, errno " << hog.last_errno;
  kalloc_compact();
  kalloc_vmstat during = kt::vmstat_now();
  size_t bad = pop.bad();
  hog.release();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(during.mesh_fail_map, before.mesh_fail_map + 1) << "one refusal ends the pass";
  EXPECT_LE(during.mesh_success, before.mesh_success + 1) << "a remap needs a mapping";
  kalloc_compact();
  kalloc_vmstat after = kt::vmstat_now();
  EXPECT_GE(after.mesh_success, during.mesh_success + 1000);
  EXPECT_EQ(after.mesh_fail_map, during.mesh_fail_map);
  EXPECT_EQ(pop.bad(), 0u);

  // fork() with the aliases in place and no mapping left: the child maps
  // its own copy of the memory file over the zone and every alias onto its
  // primary again (as many mappings as the parent holds), and reads every
  // object.
  kt::mapping_hog again(max);
  ASSERT_TRUE(again.exhausted());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    size_t b = pop.bad();
    for (size_t i = 0; i < pop.live.size(); i += 2) fill(pop.live[i], kSize, pop.seed[i] ^ 0x5555);
    for (size_t i = 0; i < pop.live.size(); i += 2) b += check(pop.live[i], kSize, pop.seed[i] ^ 0x5555) != kSize;
    _exit(b ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  again.release();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child " << (WIFSIGNALED(status) ? "died of a signal" : "found objects changed");
  EXPECT_EQ(pop.bad(), 0u) << "the child's writes reached the parent";
  for (void *p : pop.live) free(p);
}

// malloc_trim(0) meshes too.
TEST(MeshChild, TrimMeshes) {
  MESH_CHILD("TrimMeshes");
  population pop;
  kalloc_vmstat before = kt::vmstat_now();
  malloc_trim(0);
  kalloc_vmstat after = kt::vmstat_now();
  EXPECT_GT(after.mesh_success, before.mesh_success);
  EXPECT_EQ(pop.bad(), 0u);
  for (void *p : pop.live) free(p);
}

// The child's half of the fork tests: the survivors as at the fork (else
// 1), rewritten and read back (else 2), then freed (unmeshing in the
// child).  Returns those bits.
int child_rewrites_and_frees(population &pop, uint64_t salt) {
  int bad = pop.bad() ? 1 : 0;
  for (size_t i = 0; i < pop.live.size(); i++) fill(pop.live[i], kSize, pop.seed[i] + salt);
  for (size_t i = 0; i < pop.live.size(); i++)
    if (check(pop.live[i], kSize, pop.seed[i] + salt) != kSize) bad |= 2;
  for (void *p : pop.live) free(p);
  return bad;
}

// A fork child's heap after its zones changed under it: 20,000 new blocks
// written, read back and freed.  16 when one read back wrong, else 0.
int child_allocates_again() {
  int bad = 0;
  std::vector<void *> more;
  for (int i = 0; i < 20000; i++) {
    more.push_back(malloc(kSize));
    fill(more.back(), kSize, (uint64_t)i);
  }
  for (size_t i = 0; i < more.size(); i++)
    if (check(more[i], kSize, (uint64_t)i) != kSize) bad |= 16;
  for (void *p : more) free(p);
  return bad;
}

// The parent's half of the fork tests: the child's byte (end of file if
// it died), the parent's survivors untouched by the child's writes, the
// child's exit status 0 (`legend` says what its bits mean); then the
// survivors are freed.
void parent_waits_for(pid_t pid, int to_parent[2], population &pop, const char *legend) {
  close(to_parent[1]);              // a child that dies gives end of file
  char c;
  EXPECT_EQ(read(to_parent[0], &c, 1), 1) << "the child died before it was done";
  close(to_parent[0]);
  EXPECT_EQ(pop.bad(), 0u) << "the child's writes reached the parent";
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << legend;
  for (void *p : pop.live) free(p);
}

// fork after meshing: the child sees every survivor (aliases mapped onto
// its own copy), writes them, and the parent's stay as they were.
TEST(MeshChild, ForkAfterMeshing) {
  MESH_CHILD("ForkAfterMeshing");
  population pop;
  kalloc_compact();
  ASSERT_GT(kt::vmstat_now().mesh_pages, 0u);
  int to_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = child_rewrites_and_frees(pop, 5000000);
    if (write(to_parent[1], "c", 1) != 1) bad |= 4;
    _exit(bad);
  }
  parent_waits_for(pid, to_parent, pop, "child: 1 data at fork wrong, 2 own writes lost, 4 pipe");
}

// fork after meshing, under a seccomp filter installed since the zones were
// made that refuses memfd_create (as man-db's sandbox does, then forks):
// the child cannot copy the zones into a memory file of its own, so they
// become private anonymous memory with the same contents (each alias with
// its own copy of its primary's page).  The child sees every survivor,
// writes them, frees them (unmeshing in an anonymous zone) and allocates
// again; the parent's stay as they were.  The previous library aborted the
// child ("cannot copy a memory-file zone").
TEST(MeshChild, ForkUnderAFilterRefusingMemfd) {
  MESH_CHILD("ForkUnderAFilterRefusingMemfd");
  population pop;
  kalloc_compact();
  ASSERT_GT(kt::vmstat_now().mesh_pages, 0u);
  ASSERT_GT(memfd_bytes(), 0);
  ASSERT_TRUE(kt::seccomp_errno_on_syscalls({__NR_memfd_create}, ENOSYS));
  int to_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = memfd_bytes() != 0 ? 8 : 0;   // the zones' files are the parent's: closed here
    bad |= child_rewrites_and_frees(pop, 7000000);
    bad |= child_allocates_again();
    if (write(to_parent[1], "c", 1) != 1) bad |= 4;
    _exit(bad);
  }
  parent_waits_for(pid, to_parent, pop,
                   "child: 1 data at fork wrong, 2 own writes lost, 4 pipe, 8 a kalloc memory file "
                   "open, 16 new blocks wrong");
}

// A sandbox that kills what glibc's malloc never calls: the calls memory
// files need (memfd_create, ftruncate, fallocate, lseek, copy_file_range,
// pread/pwrite), the parent's waits at a fork (pipe, pipe2, waitid) and
// madvise(MADV_REMOVE), installed after meshing (the sshd pre-auth child
// installs OpenSSH's after its fork).
bool kill_file_calls(bool and_waits) {
  if (and_waits)
    return kt::seccomp_kill_on_calls_and_madvise(
        {__NR_memfd_create, __NR_ftruncate, __NR_fallocate, __NR_lseek, __NR_copy_file_range, __NR_pread64,
         __NR_pwrite64, __NR_pipe, __NR_pipe2, __NR_waitid},
        MADV_REMOVE);
  return kt::seccomp_kill_on_calls_and_madvise({__NR_memfd_create, __NR_ftruncate, __NR_fallocate, __NR_lseek,
                                                __NR_copy_file_range, __NR_pread64, __NR_pwrite64},
                                               MADV_REMOVE);
}

// One thread: the next look (here a mesh pass) sees the filter and copies
// every zone through its mapping into private anonymous memory, closing
// the memory files; meshed aliases each get their copy.  Then the heap
// grows, gives back (MADV_DONTNEED) and forks with none of those calls.
// The previous library died of SIGSYS (the pass's fallocate, trim's
// MADV_REMOVE, the fork's pipe or the child's memfd_create).
TEST(MeshChild, AFilterKillingFileCallsOneThread) {
  MESH_CHILD("AFilterKillingFileCallsOneThread");
  population pop;
  kalloc_compact();
  ASSERT_GT(kt::vmstat_now().mesh_pages, 0u);
  ASSERT_GT(memfd_bytes(), 0);
  int to_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_TRUE(kill_file_calls(true));
  kalloc_compact();
  kalloc_vmstat v = kt::vmstat_now();
  EXPECT_GE(v.memfd_sandboxed, 1u);
  EXPECT_EQ(memfd_bytes(), 0) << "a kalloc memory file still open";
  EXPECT_EQ(mapping_of(pop.live[0]).find("memfd"), std::string::npos) << mapping_of(pop.live[0]);
  EXPECT_EQ(pop.bad(), 0u) << "survivors changed by the copy";
  std::vector<void *> big;
  for (int i = 0; i < 1024; i++) {
    void *p = malloc(64 << 10);
    ASSERT_NE(p, nullptr);
    fill(p, 64 << 10, (uint32_t)i);
    big.push_back(p);
  }
  for (size_t i = 0; i < big.size(); i++) EXPECT_EQ(check(big[i], 64 << 10, (uint32_t)i), 64u << 10);
  for (void *p : big) free(p);
  malloc_trim(0);
  EXPECT_EQ(pop.bad(), 0u);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = child_rewrites_and_frees(pop, 9000000);
    void *p = malloc(1 << 20);
    if (!p) bad |= 8;
    else { memset(p, 3, 1 << 20); free(p); }
    if (write(to_parent[1], "c", 1) != 1) bad |= 4;
    _exit(bad);
  }
  parent_waits_for(pid, to_parent, pop, "child: 1 data at fork wrong, 2 own writes lost, 4 pipe, 8 malloc");
}

// With a second thread the parent keeps its memory files (copying them
// would lose that thread's writes); the fork child, under the filter too,
// copies them through their mappings (no memfd_create, lseek or
// copy_file_range) while the parent waits on its pipe.  The previous
// library's child died of SIGSYS at memfd_create.
TEST(MeshChild, AFilterKillingFileCallsWithThreads) {
  MESH_CHILD("AFilterKillingFileCallsWithThreads");
  population pop;
  kalloc_compact();
  ASSERT_GT(kt::vmstat_now().mesh_pages, 0u);
  std::atomic<bool> stop{false};
  std::thread t([&] {
    while (!stop.load()) {
      void *p = malloc(48);
      if (p) memset(p, 1, 48);
      free(p);
    }
  });
  int to_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_TRUE(kill_file_calls(false));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = memfd_bytes() != 0 ? 8 : 0;
    bad |= child_rewrites_and_frees(pop, 11000000);
    bad |= child_allocates_again();
    if (write(to_parent[1], "c", 1) != 1) bad |= 4;
    _exit(bad);
  }
  stop = true;
  t.join();
  EXPECT_GT(memfd_bytes(), 0) << "the parent kept its memory files";
  parent_waits_for(pid, to_parent, pop,
                   "child: 1 data at fork wrong, 2 own writes lost, 4 pipe, 8 a kalloc memory file "
                   "open, 16 new blocks wrong");
}

// A sandbox that answers madvise(MADV_REMOVE) with EPERM (Chromium's
// answers advices it does not list so), in a process with a thread (its
// memory files stay): what trim gives back must still read zero, so kalloc
// writes zeros where the kernel refused.  The previous library took EPERM
// as done: calloc returned the old bytes.
TEST(MeshChild, AFilterRefusingMadviseRemove) {
  MESH_CHILD("AFilterRefusingMadviseRemove");
  std::atomic<bool> stop{false};
  std::thread t([&] { while (!stop.load()) usleep(1000); });
  ASSERT_TRUE(kt::seccomp_errno_on_madvise(MADV_REMOVE, EPERM));
  const size_t kBlock = 256 << 10;
  std::vector<void *> ps;
  for (int i = 0; i < 64; i++) {
    void *p = malloc(kBlock);
    ASSERT_NE(p, nullptr);
    memset(p, 0xa5, kBlock);
    ps.push_back(p);
  }
  for (void *p : ps) free(p);
  malloc_trim(0);
  size_t dirty = 0;
  for (int i = 0; i < 64; i++) {
    unsigned char *p = (unsigned char *)calloc(1, kBlock);
    ASSERT_NE(p, nullptr);
    for (size_t j = 0; j < kBlock; j += 512)
      if (p[j]) { dirty++; break; }
    ps[i] = p;
  }
  for (void *p : ps) free(p);
  stop = true;
  t.join();
  EXPECT_EQ(dirty, 0u) << "calloc blocks holding old bytes";
}

// A process with a second thread does not mesh (no write protection yet).
TEST(MeshChild, MultiThreadedDoesNotMesh) {
  MESH_CHILD("MultiThreadedDoesNotMesh");
  std::atomic<bool> stop{false};
  std::thread t([&] { while (!stop.load()) usleep(1000); });
  population pop;   // its frees do not mesh either
  EXPECT_EQ(kt::vmstat_now().mesh_success, pop.full.mesh_success);
  kalloc_vmstat before = kt::vmstat_now();
  kalloc_compact();
  kalloc_vmstat after = kt::vmstat_now();
  stop = true;
  t.join();
  EXPECT_EQ(after.mesh_success, before.mesh_success);
  EXPECT_GT(after.mesh_skip_threads, before.mesh_skip_threads);
  EXPECT_EQ(pop.bad(), 0u);
  for (void *p : pop.live) free(p);
}

// fork() in a child (the pop's objects are read, then overwritten there);
// the parent's objects must not change.  Returns the child's exit status.
int fork_and_overwrite(population &pop) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    size_t b = pop.bad();
    for (size_t i = 0; i < pop.live.size(); i++) fill(pop.live[i], kSize, pop.seed[i] ^ 0x5555);
    for (size_t i = 0; i < pop.live.size(); i++) b += check(pop.live[i], kSize, pop.seed[i] ^ 0x5555) != kSize;
    void *big = malloc(8 << 20);
    if (big) memset(big, 1, 8 << 20);
    free(big);
    _exit(b ? 1 : 0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return status;
}

// A daemon's start: the program closes every descriptor it did not open,
// then opens its own files, which take the numbers of kalloc's memory
// files.  kalloc must never map, punch or copy those files: before, zone
// growth mapped the program's file into the heap (SIGBUS past its end, its
// bytes overwritten within it).  Now each use of a memory file checks it is
// still the file kalloc made (memfd_lost); such a zone stops growing and
// meshing, gives aliases back as private pages, and a fork child copies it
// through its mapping.
TEST(MeshChild, TheProgramClosesTheMemoryFile) {
  MESH_CHILD("TheProgramClosesTheMemoryFile");
  population pop;
  kalloc_compact();
  ASSERT_GT(kt::vmstat_now().mesh_pages, 0u);
  // The program's file: 1 MiB of 0x77, opened under every low number.
  char path[] = "/tmp/kalloc-mesh-closed-XXXXXX";
  int tfd = mkstemp(path);
  ASSERT_GE(tfd, 0);
  std::vector<char> content(1 << 20, 0x77);
  ASSERT_EQ(write(tfd, content.data(), content.size()), (ssize_t)content.size());
  close(tfd);
  for (int fd = 3; fd < 1024; fd++) close(fd);
  std::vector<int> fds;
  for (int i = 0; i < 32; i++) {
    int fd = open(path, O_RDWR);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  unlink(path);
  EXPECT_EQ(fds[0], 3);
  // Grow the heap (a new zone takes a new memory file, which keeps working),
  // trim, compact (mesh passes), give aliases back, fork.
  std::vector<void *> big;
  for (uint32_t i = 0; i < 256; i++) {
    void *p = malloc(256 << 10);
    ASSERT_NE(p, nullptr);
    fill(p, 256 << 10, i + 7);
    big.push_back(p);
  }
  for (size_t i = 0; i < big.size(); i += 2) free(big[i]), big[i] = nullptr;
  malloc_trim(0);
  kalloc_compact();
  for (size_t i = 0; i < pop.live.size(); i += 2) free(pop.live[i]), pop.live[i] = nullptr;
  std::vector<void *> keep;
  std::vector<uint32_t> keep_seed;
  for (size_t i = 1; i < pop.live.size(); i += 2) keep.push_back(pop.live[i]), keep_seed.push_back(pop.seed[i]);
  pop.live = keep;
  pop.seed = keep_seed;
  kalloc_compact();
  EXPECT_EQ(pop.bad(), 0u);
  int status = fork_and_overwrite(pop);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(pop.bad(), 0u) << "the child's writes reached the parent";
  for (size_t i = 1; i < big.size(); i += 2)
    EXPECT_EQ(check(big[i], 256 << 10, (uint32_t)i + 7), (size_t)(256 << 10)) << i;
  kalloc_vmstat v = kt::vmstat_now();
  EXPECT_GE(v.memfd_lost, 1u);
  // The program's file is as it wrote it, through every descriptor.
  for (int fd : fds) {
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_EQ(st.st_size, (off_t)content.size()) << "fd " << fd;
    std::vector<char> now(content.size());
    ASSERT_EQ(pread(fd, now.data(), now.size(), 0), (ssize_t)now.size());
    EXPECT_TRUE(now == content) << "fd " << fd << ": the program's file changed";
  }
  for (int fd : fds) close(fd);
  for (void *p : pop.live) free(p);
  for (void *p : big) free(p);
}

// fork() with no descriptor left for the pipe that makes the parent wait
// for the child's copy (it aborted: "no pipe for the memory-file zones'
// copy"): the wait goes through shared memory instead, and the child's
// writes stay its own.
TEST(MeshChild, ForkWithNoDescriptorLeft) {
  MESH_CHILD("ForkWithNoDescriptorLeft");
  population pop;
  kalloc_compact();
  std::vector<int> dups;
  for (int fd; (fd = dup(0)) >= 0;) dups.push_back(fd);
  ASSERT_EQ(errno, EMFILE);
  int status = fork_and_overwrite(pop);
  for (int fd : dups) close(fd);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(pop.bad(), 0u) << "the child's writes reached the parent";
  for (void *p : pop.live) free(p);
}

// A program started with stderr closed (cron jobs, some daemons' children):
// the first memory file must not take descriptor 2, or the program's next
// message to stderr is written into the heap (the previous library: SIGSEGV
// after 50 lines of stderr).  The child checks 2 is not open, prints to it
// anyway, and reads every object back.
TEST(MeshChild, StartedWithStderrClosed) {
  MESH_CHILD("StartedWithStderrClosed");
  std::vector<char *> keep;
  for (int i = 0; i < 2000; i++) {
    char *p = (char *)malloc(64);
    ASSERT_NE(p, nullptr);
    memset(p, 'A' + i % 26, 64);
    keep.push_back(p);
  }
  EXPECT_EQ(fcntl(2, F_GETFD), -1) << "descriptor 2 is open: kalloc's memory file took it";
  for (int r = 0; r < 50; r++) {
    const char line[] = "an error message a program writes to stderr\n";
    ssize_t w = write(2, line, sizeof line - 1);
    (void)w;
  }
  size_t bad = 0;
  for (int i = 0; i < 2000; i++)
    for (int k = 0; k < 64; k++) bad += keep[i][k] != 'A' + i % 26;
  EXPECT_EQ(bad, 0u);
  for (char *p : keep) free(p);
}

// RLIMIT_DATA counts only private writable mappings, so memory-file zones
// escaped it: a program capping its heap with the limit ran on to the OOM
// killer (24 GB on the test machine).  kalloc counts its memory files with
// the process's VmData: 1 MiB blocks under a limit 64 MiB above the start
// end in NULL and ENOMEM near 64 MiB, and work again once freed.
TEST(MeshChild, RespectsTheDataLimit) {
  MESH_CHILD("RespectsTheDataLimit");
  FILE *f = fopen("/proc/self/status", "r");
  ASSERT_NE(f, nullptr);
  char line[256];
  long data_kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmData: %ld kB", &data_kb) == 1) break;
  fclose(f);
  ASSERT_GT(data_kb, 0);
  struct rlimit rl;
  rl.rlim_cur = (rlim_t)(data_kb << 10) + (64ul << 20);
  rl.rlim_max = RLIM_INFINITY;
  ASSERT_EQ(setrlimit(RLIMIT_DATA, &rl), 0);
  std::vector<void *> got;
  for (;;) {
    errno = 0;
    void *p = malloc(1 << 20);
    if (!p) {
      EXPECT_EQ(errno, ENOMEM);
      break;
    }
    memset(p, 0x33, 1 << 20);
    got.push_back(p);
    ASSERT_LT(got.size(), 256u) << "256 MiB allocated under a limit 64 MiB above the start";
  }
  EXPECT_GE(got.size(), 32u) << "the limit left 64 MiB";
  for (void *p : got) free(p);
  void *again = malloc(1 << 20);
  EXPECT_NE(again, nullptr) << "freed, the memory is had again";
  free(again);
}

// KALLOC_MESH=1: the frees themselves start passes (a pass per quarter of a
// class's objects freed), with no compaction or trim call.
TEST(MeshChild, FreesMesh) {
  MESH_CHILD("FreesMesh");
  population pop;
  kalloc_vmstat after = kt::vmstat_now();
  long file_after = memfd_bytes();
  EXPECT_GT(after.mesh_success, pop.full.mesh_success);
  EXPECT_GE(after.mesh_pages, 500u);
  EXPECT_LE(file_after, pop.file_full - 500l * 4096) << pop.file_full << " -> " << file_after;
  EXPECT_EQ(pop.bad(), 0u);
  for (void *p : pop.live) free(p);
}

// KALLOC_MESH=2 (on demand only) for the tests of kalloc_compact and trim.
TEST(Mesh, MergesHalfEmptySlabs) { run_mesh_child("MergesHalfEmptySlabs", "2"); }
TEST(Mesh, TrimMeshes) { run_mesh_child("TrimMeshes", "2"); }
TEST(Mesh, NoMappingLeft) { run_mesh_child("NoMappingLeft", "2"); }
TEST(Mesh, TheProgramClosesTheMemoryFile) { run_mesh_child("TheProgramClosesTheMemoryFile", "2"); }
TEST(Mesh, ForkWithNoDescriptorLeft) { run_mesh_child("ForkWithNoDescriptorLeft", "2"); }
TEST(Mesh, RespectsTheDataLimit) { run_mesh_child("RespectsTheDataLimit", "2"); }
TEST(Mesh, StartedWithStderrClosed) {
  // The child is started with descriptor 2 closed (not through run_self,
  // which gives it one); its gtest output goes to stdout.
  fflush(nullptr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(2);
    setenv("KALLOC_MESH", "1", 1);
    setenv("KALLOC_TEST_MESH_CHILD", "StartedWithStderrClosed", 1);
    char filter[] = "--gtest_filter=MeshChild.StartedWithStderrClosed";
    char self[] = "/proc/self/exe";
    char *argv[] = {self, filter, nullptr};
    execv(self, argv);
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "MeshChild.StartedWithStderrClosed: status " << status << " (a signal: " << WIFSIGNALED(status) << ")";
}
TEST(Mesh, FreesMesh) { run_mesh_child("FreesMesh", "1"); }
TEST(Mesh, ForkAfterMeshing) { run_mesh_child("ForkAfterMeshing"); }
TEST(Mesh, ForkUnderAFilterRefusingMemfd) { run_mesh_child("ForkUnderAFilterRefusingMemfd"); }
TEST(Mesh, AFilterKillingFileCallsOneThread) { run_mesh_child("AFilterKillingFileCallsOneThread"); }
TEST(Mesh, AFilterKillingFileCallsWithThreads) { run_mesh_child("AFilterKillingFileCallsWithThreads"); }
TEST(Mesh, AFilterRefusingMadviseRemove) { run_mesh_child("AFilterRefusingMadviseRemove"); }
TEST(Mesh, MultiThreadedDoesNotMesh) { run_mesh_child("MultiThreadedDoesNotMesh"); }
TEST(Mesh, ZonesAreMemoryFileBacked) { run_mesh_child("ZonesAreMemoryFileBacked"); }
TEST(Mesh, GivenBackLeavesTheFile) { run_mesh_child("GivenBackLeavesTheFile"); }
TEST(Mesh, ForkCopiesSingleThreaded) { run_mesh_child("ForkCopiesSingleThreaded"); }
TEST(Mesh, ForkCopiesWithThreads) { run_mesh_child("ForkCopiesWithThreads"); }
TEST(Mesh, ForkCopiesWithoutCopyFileRange) { run_mesh_child("ForkCopiesWithoutCopyFileRange"); }

}  // namespace
