/* deepbind_soname.c - two builds of one library name (soname
 * libkalloc_soname.so): one in other/, loaded by path first, one in the
 * host's RUNPATH.  A later dlopen of the bare soname must get the object
 * already loaded, as glibc matches loaded names before it searches
 * (deepbind_host.c). */
#define EXPORT __attribute__((visibility("default")))
EXPORT int soname_which(void) { return WHICH; }
