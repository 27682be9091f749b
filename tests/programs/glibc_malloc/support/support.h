#include "shim.h"  /* kalloc: glibc_malloc.sh builds the tests against shim.h */
