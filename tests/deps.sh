# Sourced by tests/run.sh and bench/run.sh.  kalloc_install_deps installs, from Debian's packages,
# whatever the build, the tests and the benchmarks need and the machine lacks.
# Idempotent: with everything present it runs no apt-get at all.
KALLOC_DEB_PACKAGES=(
  cmake g++ make pkg-config
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev
  python3 sqlite3 git perl php-cli redis-server redis-tools nodejs openjdk-17-jdk-headless postgresql
  graphviz glibc-source rsync faketime
  libpython3.11-testsuite
  hyperfine time procps valgrind
)

kalloc_install_deps() {
  local missing=() p
  for p in "${KALLOC_DEB_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "kalloc: installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Configure (Release) and build the whole project into $1; the build
# directory of both README commands (KALLOC_BUILD_DIR overrides it).
kalloc_build() {
  local root="$1" build="$2"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$build" -j"$(nproc)"
}
