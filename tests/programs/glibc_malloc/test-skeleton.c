/* test-skeleton.c stand-in (kalloc, glibc_malloc.sh copies it to where the
 * tests include it from, "../test-skeleton.c"): the older tests define
 * TEST_FUNCTION as an expression, such as do_test (), where the newer
 * driver takes a function's name. */
#include "shim.h"
#ifndef TEST_FUNCTION
#define TEST_FUNCTION do_test ()
#endif
static int kshim_legacy_test(void) { return TEST_FUNCTION; }
#undef TEST_FUNCTION
#define TEST_FUNCTION kshim_legacy_test
#include <support/test-driver.c>   /* ours: the -I directory, not glibc's */
