#!/usr/bin/env bash
# A plugin loaded with dlopen(RTLD_DEEPBIND), as PHP loads its extensions
# (deepbind_host.c, deepbind_plugin.c): blocks cross between the program and
# the plugin both ways, including one the plugin's constructor made before
# kalloc could rebind it.  stdout must be the same as with the system
# allocator.
#   deepbind.sh /path/to/libkalloc.so /path/to/deepbind_host
. "$(dirname "$0")/common.sh" "$1"
DB_HOST="$(realpath "${2:?usage: $0 libkalloc.so deepbind_host}")"
export DB_HOST

db_work() { "$DB_HOST" "$(dirname "$DB_HOST")"; }

run_workload deepbind db_work && compare_output deepbind
finish
