/*
 * platform/os.h - the operating system as the allocator sees it.
 *
 * The only place (with printk, options and cpu) that talks to the kernel:
 * reserving and returning address space (mmap/munmap/mremap), giving pages
 * back (madvise), and writing bytes to a file descriptor.  Everything above
 * calls these, so the page allocator can be tested on a fake platform and
 * a zone's backing can change (anonymous memory now, a memory file later)
 * without touching the buddy code.
 *
 * All functions are async-signal-safe system-call wrappers; none allocates.
 * Failures return nullptr/false with errno set by the kernel.
 */
#pragma once

#include "platform/compiler.h"

namespace kalloc {

constexpr size_t OS_PAGE_SIZE = 4096;

/* Map `len` bytes of fresh zeroed read-write memory exactly at `addr`,
 * failing (nullptr) instead of replacing anything already mapped there
 * (MAP_FIXED_NOREPLACE; on kernels that treat it as a hint, a mapping that
 * lands elsewhere is undone).  `fd` < 0: anonymous memory; otherwise a
 * shared mapping of `fd` at `offset` (memory-file backed zones). */
void *os_map_fixed(void *addr, size_t len, int fd, uint64_t offset);

/* Map `len` bytes of fresh zeroed memory anywhere (metadata, huge blocks).
 * `noreserve`: MAP_NORESERVE, for large descriptor arrays touched lazily. */
void *os_map(size_t len, bool noreserve);

void os_unmap(void *addr, size_t len);

/* Grow or shrink a mapping in place (mremap without MREMAP_MAYMOVE). */
bool os_remap_inplace(void *addr, size_t old_len, size_t new_len);

/* Move a mapping to `new_addr` (mremap MREMAP_MAYMOVE|MREMAP_FIXED); the
 * kernel moves the page tables, no bytes are copied. */
void *os_remap_fixed(void *addr, size_t old_len, size_t new_len, void *new_addr);

/* Give the pages back (MADV_DONTNEED): they read as zero afterwards and no
 * longer count in the resident set. */
void os_decommit(void *addr, size_t len);

/* Ask for transparent hugepages on a 2 MiB aligned range (MADV_HUGEPAGE). */
void os_hugepage(void *addr, size_t len);

/* write(2) all of buf, retrying on EINTR / short writes; errno preserved. */
void os_write(int fd, const char *buf, size_t len);

/* Resident set size of the process in bytes (from /proc/self/statm), 0 if
 * unknown. */
uint64_t os_resident_bytes();

/* Resident set and the part of it backed by transparent hugepages, in
 * bytes, from /proc/self/smaps_rollup (Rss, AnonHugePages), read into a
 * stack buffer without allocating.  False (both 0) when the file cannot be
 * read (kernels before 4.14, no /proc). */
bool os_smaps_rollup(uint64_t *rss, uint64_t *anon_huge);

/* A 64-bit random seed (AT_RANDOM bytes mixed with the clock). */
uint64_t os_random_seed();

} // namespace kalloc
