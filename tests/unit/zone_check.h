// Shared by the unit tests: check every zone's buddy invariants under its lock.
#pragma once

#include <gtest/gtest.h>

#include "mm/page_alloc.h"

inline void verify_all_zones()
{
    using namespace kalloc;
    unsigned n = __atomic_load_n(&nr_zones, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        zone *z = zones[i];
        spin_lock(&z->lock);
        const char *why = __zone_verify(z);
        spin_unlock(&z->lock);
        ASSERT_EQ(why, nullptr) << "zone " << i << ": " << why;
    }
}
