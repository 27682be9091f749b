#!/usr/bin/env bash
# The install, seen from a user's project:
#   1. cmake --install <build> --prefix <tmp>: the tree must hold
#      include/kalloc/kalloc.h, <libdir>/libkalloc.so (-> .so.0 -> .so.0.1.0),
#      <libdir>/libkalloc.a, the CMake package and the pkg-config file
#      (<libdir> is the build's CMAKE_INSTALL_LIBDIR: GNUInstallDirs gives
#      "lib" for a /usr/local or /tmp prefix, lib/<multiarch> for /usr).
#   2. an out-of-tree CMake project, find_package(kalloc REQUIRED) with
#      CMAKE_PREFIX_PATH=<tmp>, builds examples/api_demo.c against
#      kalloc::kalloc and kalloc::kalloc_static; both run.
#   3. cc api_demo.c $(pkg-config --cflags --libs kalloc) with
#      PKG_CONFIG_PATH=<tmp>/<libdir>/pkgconfig builds it again; it runs.
# Every build must take kalloc from <tmp>, nothing else.
#   install_test.sh /path/to/build-dir /path/to/examples-source-dir
set -euo pipefail
build="$(realpath "${1:?usage: $0 build-dir examples-dir}")"
examples="$(realpath "${2:?usage: $0 build-dir examples-dir}")"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/kalloc-install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
unset LD_PRELOAD KALLOC_STATS LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH
prefix="$tmp/prefix"
status=0
fail() { echo "FAIL: $*" >&2; status=1; }

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
cat "$tmp/install.log"

libdir_rel="$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$build/CMakeCache.txt")"
incdir_rel="$(sed -n 's/^CMAKE_INSTALL_INCLUDEDIR:[A-Z]*=//p' "$build/CMakeCache.txt")"
: "${libdir_rel:=lib}" "${incdir_rel:=include}"
libdir="$prefix/$libdir_rel"
echo "== installed tree (libdir: $libdir_rel)"
(cd "$prefix" && find . \( -type f -o -type l \) | sort)
for f in "$incdir_rel/kalloc/kalloc.h" "$libdir_rel/libkalloc.so" "$libdir_rel/libkalloc.a" \
         "$libdir_rel/cmake/kalloc/kallocConfig.cmake" \
         "$libdir_rel/cmake/kalloc/kallocConfigVersion.cmake" \
         "$libdir_rel/cmake/kalloc/kallocTargets.cmake" \
         "$libdir_rel/pkgconfig/kalloc.pc"; do
  [ -e "$prefix/$f" ] || fail "installed tree lacks $f"
done
if [ -e "$libdir/libkalloc.so" ]; then
  real="$(readlink -f "$libdir/libkalloc.so")"
  case "$real" in "$libdir"/libkalloc.so.*) ;; *) fail "libkalloc.so points to $real" ;; esac
  soname="$(objdump -p "$real" | awk '$1 == "SONAME" {print $2}')"
  [ -e "$libdir/$soname" ] || fail "the SONAME link $soname is not installed"
  dsyms="$(nm -D --defined-only "$real")"
  grep -qw malloc <<<"$dsyms" || fail "installed libkalloc.so does not export malloc"
  grep -qw kalloc_stats_get <<<"$dsyms" || fail "installed libkalloc.so does not export kalloc_stats_get"
fi
# libkalloc-hardened.so, when the build made it (KALLOC_BUILD_HARDENED):
# installed beside libkalloc.so, preloadable, and saying it is hardened.
if grep -q '^KALLOC_BUILD_HARDENED:BOOL=ON' "$build/CMakeCache.txt" &&
   ! grep -q '^KALLOC_HARDENED:BOOL=ON' "$build/CMakeCache.txt"; then
  if [ -e "$libdir/libkalloc-hardened.so" ]; then
    hsyms="$(nm -D --defined-only "$(readlink -f "$libdir/libkalloc-hardened.so")")"
    grep -qw malloc <<<"$hsyms" || fail "installed libkalloc-hardened.so does not export malloc"
    grep -qw kalloc_hardened <<<"$hsyms" || fail "installed libkalloc-hardened.so does not export kalloc_hardened"
    out="$(LD_PRELOAD="$libdir/libkalloc-hardened.so" python3 -c \
      'import ctypes; print(ctypes.CDLL(None).kalloc_hardened())' 2>&1)" || true
    [ "$out" = 1 ] || fail "kalloc_hardened() under the installed libkalloc-hardened.so said: $out"
  else
    fail "installed tree lacks $libdir_rel/libkalloc-hardened.so"
  fi
fi
if [ -e "$libdir/libkalloc.a" ]; then
  ssyms="$(nm --defined-only "$libdir/libkalloc.a" 2>/dev/null)"
  grep -qw 'T kalloc_malloc' <<<"$ssyms" || fail "installed libkalloc.a does not define kalloc_malloc"
  if grep -qE ' T (malloc|free)$' <<<"$ssyms"; then
    fail "libkalloc.a defines malloc/free: it should export only the kalloc_ API"
  fi
fi
[ "$status" -eq 0 ] || exit 1

# run_demo BINARY yes|no: runs an api_demo build, checks it uses the
# installed libkalloc.so (if any) and what it says about malloc.
run_demo() {
  local bin=$1 expect=$2
  echo "== $bin"
  local deps where
  deps="$(ldd "$bin")"
  if grep -q libkalloc <<<"$deps"; then
    where="$(awk '/libkalloc/ {print $3}' <<<"$deps")"
    echo "uses $where"
    case "$(readlink -f "$where")" in
      "$libdir"/*) ;;
      *) fail "$bin loads libkalloc from $where, not from the installed tree"; return ;;
    esac
  elif [ "$expect" = yes ]; then
    fail "$bin is not linked with libkalloc.so"
    return
  fi
  bash "$examples/check_api_demo.sh" "$bin" "$expect" || fail "$bin failed"
}

echo "== out-of-tree CMake project with find_package(kalloc)"
mkdir -p "$tmp/consumer"
cp "$examples/api_demo.c" "$tmp/consumer/"
cat >"$tmp/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(kalloc_consumer LANGUAGES C)
find_package(kalloc 0.1 REQUIRED)
message(STATUS "kalloc ${kalloc_VERSION} from ${kalloc_DIR}")
add_executable(api_demo_shared api_demo.c)
target_link_libraries(api_demo_shared PRIVATE kalloc::kalloc)
add_executable(api_demo_static api_demo.c)
target_link_libraries(api_demo_static PRIVATE kalloc::kalloc_static)
CMAKE
if ! cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_BUILD_TYPE=Release \
       -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/consumer.log" 2>&1 \
   || ! cmake --build "$tmp/consumer/build" >>"$tmp/consumer.log" 2>&1; then
  cat "$tmp/consumer.log"
  fail "the find_package(kalloc) project does not configure/build"
else
  grep -E 'kalloc .* from' "$tmp/consumer.log" || true
  case "$(sed -n 's/^kalloc_DIR:PATH=//p' "$tmp/consumer/build/CMakeCache.txt")" in
    "$prefix"/*) ;;
    *) fail "find_package(kalloc) did not find the package in $prefix" ;;
  esac
  run_demo "$tmp/consumer/build/api_demo_shared" yes
  run_demo "$tmp/consumer/build/api_demo_static" no
fi

echo "== pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
echo "--- kalloc.pc"; cat "$libdir/pkgconfig/kalloc.pc"; echo "---"
if ! flags="$(pkg-config --cflags --libs kalloc)"; then
  fail "pkg-config does not know kalloc"
else
  echo "pkg-config --cflags --libs kalloc: $flags"
  echo "pkg-config --modversion kalloc: $(pkg-config --modversion kalloc)"
  [ "$(pkg-config --modversion kalloc)" = "0.1.0" ] || fail "pkg-config --modversion is not 0.1.0"
  # The flags must point into the installed tree (a .pc file that names the
  # configure-time prefix instead breaks every `cmake --install --prefix`).
  inc_ok=0 lib_ok=0
  for f in $flags; do
    case "$f" in
      -I*) [ "$(realpath -m -- "${f#-I}")" = "$(realpath "$prefix/$incdir_rel")" ] && inc_ok=1 ;;
      -L*) [ "$(realpath -m -- "${f#-L}")" = "$(realpath "$libdir")" ] && lib_ok=1 ;;
    esac
  done
  [ "$inc_ok" -eq 1 ] || fail "pkg-config --cflags has no -I for $prefix/$incdir_rel"
  [ "$lib_ok" -eq 1 ] || fail "pkg-config --libs has no -L for $libdir"
  # shellcheck disable=SC2086
  if cc -O2 "$examples/api_demo.c" $flags -Wl,-rpath,"$libdir" -o "$tmp/api_demo_pc" 2>"$tmp/cc.log"; then
    run_demo "$tmp/api_demo_pc" yes
  else
    cat "$tmp/cc.log" >&2
    fail "cc api_demo.c \$(pkg-config --cflags --libs kalloc) does not build"
  fi
  # The same binary, found through LD_LIBRARY_PATH instead of the rpath.
  if cc -O2 "$examples/api_demo.c" $flags -o "$tmp/api_demo_pc2" 2>"$tmp/cc2.log"; then
    echo "== api_demo_pc2 with LD_LIBRARY_PATH=$libdir"
    LD_LIBRARY_PATH="$libdir" bash "$examples/check_api_demo.sh" "$tmp/api_demo_pc2" yes \
      || fail "api_demo_pc2 (LD_LIBRARY_PATH) failed"
  else
    cat "$tmp/cc2.log" >&2
    fail "cc api_demo.c \$(pkg-config --cflags --libs kalloc) does not build"
  fi
fi

if [ "$status" -eq 0 ]; then
  echo "PASSED: install"
else
  echo "FAILED: install" >&2
fi
exit "$status"
