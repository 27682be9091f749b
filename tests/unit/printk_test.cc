// kvsnprintf: the allocator's own formatter (no libc printf inside kalloc).
#include <gtest/gtest.h>

#include <cstdio>

#include "platform/printk.h"

using namespace kalloc;

TEST(Printk, FormatsLikePrintf)
{
    char a[128], b[128];
    ksnprintf(a, sizeof a, "%d %u %lu %5d|%-5d|%05u %x %s %c %%", -42, 7u, 123456789012ul, 42, 42,
              42u, 0xbeefu, "str", 'z');
    snprintf(b, sizeof b, "%d %u %lu %5d|%-5d|%05u %x %s %c %%", -42, 7u, 123456789012ul, 42, 42,
             42u, 0xbeefu, "str", 'z');
    EXPECT_STREQ(a, b);
    ksnprintf(a, sizeof a, "%p", (void *)0x1234abcd);
    EXPECT_STREQ(a, "0x1234abcd");
}

TEST(Printk, TruncatesWithoutOverflow)
{
    char buf[8];
    memset(buf, 'X', sizeof buf);
    size_t n = ksnprintf(buf, 6, "%s", "abcdefghij");
    EXPECT_EQ(n, 5u);
    EXPECT_STREQ(buf, "abcde");
    EXPECT_EQ(buf[6], 'X');
}
