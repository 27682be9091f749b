#!/usr/bin/env bash
# A C++ program that replaces the base operator new(size_t) and operator
# delete(void*) (as Firefox does with its own allocator) and leaves the
# other forms to the standard library, whose others call the bases: the
# sized delete a C++14 compiler emits for `delete p`, the array forms, the
# nothrow forms.  kalloc's exports of those forms come before libstdc++'s,
# so they must reach the program's bases too (preload/new_delete.cc);
# before 2026-12-07 the first `delete` aborted with "kalloc: free():
# invalid pointer".  Checked with the same output as the system allocator:
#   - the program's counts of news and deletes, and that every delete got a
#     block of its own arena, with the scalar bases replaced;
#   - the same from a shared library the program links (its calls go
#     through the global scope);
#   - with the aligned bases replaced too, and with no base replaced.
#   cxx_replaced.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

cat > "$WORK/lib.cc" <<'CC'
#include <string>
#include <vector>
struct L { long a[5]; };
extern "C" long lib_work() {
  long sum = 0;
  for (int i = 0; i < 100; i++) {
    L *l = new L();              // sized delete below
    l->a[0] = i;
    sum += l->a[0];
    delete l;
    std::vector<std::string> v;
    for (int k = 0; k < 20; k++) v.push_back(std::string(40 + k, 'x'));
    sum += (long)v.size();
  }
  return sum;
}
CC
cat > "$WORK/main.cc" <<'CC'
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>
extern "C" long lib_work();
alignas(64) static unsigned char arena[1 << 23];
static size_t off;
static unsigned long news, deletes, foreign, dtors;
static bool mine(void *p) { return (unsigned char *)p >= arena && (unsigned char *)p < arena + sizeof arena; }
static void *take(size_t n, size_t align) {
  off = (off + align - 1) & ~(align - 1);
  void *p = arena + off;
  off += n ? n : 1;
  if (off > sizeof arena) std::abort();
  return p;
}
#ifndef NOTHING
void *operator new(size_t n) { news++; return take(n, 16); }
void operator delete(void *p) noexcept { if (!p) return; deletes++; foreign += !mine(p); }
#endif
#ifdef ALIGNED
void *operator new(size_t n, std::align_val_t al) { news++; return take(n, (size_t)al); }
void operator delete(void *p, std::align_val_t) noexcept { if (!p) return; deletes++; foreign += !mine(p); }
#endif
struct S { long a[8]; };
struct D { long a[3]; ~D() { dtors++; } };
struct alignas(64) A { long a[8]; };
int main() {
  S *s = new S(); delete s;                           // operator delete(void*, size_t)
  S *arr = new S[10]; delete[] arr;                   // new[] / delete[]
  D *darr = new D[7]; delete[] darr;                  // operator delete[](void*, size_t)
  S *nt = new (std::nothrow) S(); delete nt;          // nothrow new
  char *nta = new (std::nothrow) char[33]; delete[] nta;
  ::operator delete(::operator new(40), std::nothrow);
  ::operator delete[](::operator new[](50), std::nothrow);
  A *a = new A(); delete a;                           // aligned forms
  A *aa = new A[3]; delete[] aa;
  A *an = new (std::nothrow) A(); delete an;
  std::vector<std::string> v;
  for (int k = 0; k < 200; k++) v.push_back(std::string(30 + k % 50, 'y'));
  long w = lib_work();
  std::printf("lib %ld vector %zu dtors %lu\n", w, v.size(), dtors);
  v.clear();
  v.shrink_to_fit();
#ifndef NOTHING
  std::printf("news %lu deletes %lu foreign %lu\n", news, deletes, foreign);
#endif
  return foreign != 0;
}
CC
g++ -O1 -std=c++17 -shared -fPIC -o "$WORK/libcxxlib.so" "$WORK/lib.cc"
g++ -O1 -std=c++17 -o "$WORK/scalar" "$WORK/main.cc" -L"$WORK" -lcxxlib -Wl,-rpath,"$WORK"
g++ -O1 -std=c++17 -DALIGNED -o "$WORK/aligned" "$WORK/main.cc" -L"$WORK" -lcxxlib -Wl,-rpath,"$WORK"
g++ -O1 -std=c++17 -DNOTHING -o "$WORK/nothing" "$WORK/main.cc" -L"$WORK" -lcxxlib -Wl,-rpath,"$WORK"

scalar() { "$WORK/scalar"; }
aligned() { "$WORK/aligned"; }
nothing() { "$WORK/nothing"; }

run_workload scalar scalar && compare_output scalar
run_workload aligned aligned && compare_output aligned
run_workload nothing nothing && compare_output nothing
finish
