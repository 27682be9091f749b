#!/usr/bin/env bash
# PHP under kalloc (php_workload.php), with PHP's own allocator (the
# default: it still uses malloc for its chunks and the extensions' data) and
# with USE_ZEND_ALLOC=0 (every allocation through malloc).  php loads its
# extensions with RTLD_DEEPBIND (platform/dl_rebind.h).  stdout must be the
# same as with the system allocator.
#   php.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v php >/dev/null || { echo "FAIL: php not found (tests/deps.sh installs php-cli)" >&2; exit 1; }

php_work() { php "$SRC_DIR/php_workload.php"; }
php_malloc_work() { USE_ZEND_ALLOC=0 php "$SRC_DIR/php_workload.php"; }

run_workload php php_work && compare_output php
run_workload php-malloc php_malloc_work && compare_output php-malloc
finish
