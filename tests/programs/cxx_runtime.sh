#!/usr/bin/env bash
# libkalloc.so does not depend on libstdc++ (preload/new_delete.cc binds the
# C++ runtime weakly) nor on libgcc_s (no libgcc helper calls in src/).
# Checks, with the same output as the system allocator:
#   - a C program gets neither libstdc++ nor libgcc_s mapped;
#   - a C program that dlopen()s a C++ plugin with RTLD_LOCAL (libstdc++ then
#     is not in the global scope): the plugin's operator new is kalloc's, and
#     a failing `new` still throws std::bad_alloc the plugin catches, a
#     failing nothrow `new` returns nullptr, and a new_handler is called;
#   - the same plugin linked into a C++ program.
#   cxx_runtime.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

cat > "$WORK/plugin.cc" <<'CC'
#include <cstdio>
#include <new>
static int handler_calls;
static void handler() { if (++handler_calls == 3) std::set_new_handler(nullptr); }
extern "C" int plugin_run(void) {
  int r = 0;
  try { char *p = new char[1ull << 46]; delete[] p; r += 1; } catch (const std::bad_alloc &) { r += 10; }
  char *q = new (std::nothrow) char[1ull << 46];
  r += q ? 1 : 100;
  delete[] q;
  std::set_new_handler(handler);
  try { char *p = new char[1ull << 46]; delete[] p; } catch (const std::bad_alloc &) { r += 1000; }
  std::printf("plugin: r=%d handler_calls=%d\n", r, handler_calls);
  char *s = new char[100];
  s[0] = 1;
  delete[] s;
  return r;
}
CC
cat > "$WORK/main.c" <<'C'
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
static int mapped(const char *name) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, name)) found = 1;
  if (f) fclose(f);
  return found;
}
int main(int argc, char **argv) {
  printf("libstdc++ mapped at start: %s\n", mapped("libstdc++") ? "yes" : "no");
  printf("libgcc_s mapped at start: %s\n", mapped("libgcc_s") ? "yes" : "no");
  if (argc < 2) return 0;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
  int (*run)(void) = (int (*)(void))dlsym(h, "plugin_run");
  printf("plugin_run: %d\n", run());
  return 0;
}
C
cat > "$WORK/main_cxx.cc" <<'CC'
#include <cstdio>
extern "C" int plugin_run(void);
int main() { std::printf("plugin_run: %d\n", plugin_run()); return 0; }
CC
g++ -O1 -shared -fPIC -o "$WORK/libplugin.so" "$WORK/plugin.cc"
cc -O1 -o "$WORK/main_c" "$WORK/main.c" -ldl
g++ -O1 -o "$WORK/main_cxx" "$WORK/main_cxx.cc" -L"$WORK" -lplugin -Wl,-rpath,"$WORK"

c_alone() { "$WORK/main_c"; }
c_plugin() { "$WORK/main_c" "$WORK/libplugin.so"; }
cxx_linked() { "$WORK/main_cxx"; }

run_workload c_alone c_alone && compare_output c_alone
run_workload c_plugin c_plugin && compare_output c_plugin
run_workload cxx_linked cxx_linked && compare_output cxx_linked
finish
