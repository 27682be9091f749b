/*
 * malloc/stats.h - what kalloc_stats_get / kalloc_stats_print, mallinfo2,
 * malloc_stats and malloc_info report.
 */
#pragma once

#include <malloc.h>
#include <stdio.h>

#include "kalloc/kalloc.h"

namespace kalloc {

void stats_get(kalloc_stats *out);
int stats_vmstat_get(kalloc_vmstat *out);
void stats_print(int fd);
/* KALLOC_TRACE_VMSCAN=N: the reclaim trace (mm/vmscan.h) on fd. */
void trace_print(int fd);
struct mallinfo2 stats_mallinfo2();
int stats_malloc_info(int options, FILE *fp);

} // namespace kalloc
