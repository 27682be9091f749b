// Huge blocks (> 4 MiB) are reused from a small cache of freed areas: reuse
// must never leak old contents through calloc, and a freed huge block must
// still be reported when freed again.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

TEST(HugeReuse, CallocOfAReusedAreaIsZero)
{
    for (int round = 0; round < 4; round++) {
        size_t n = (size_t)(12 + round) << 20;
        unsigned char *p = (unsigned char *)malloc(n);
        ASSERT_NE(p, nullptr);
        memset(p, 0xab, n);
        free(p);
        unsigned char *q = (unsigned char *)calloc(1, n);
        ASSERT_NE(q, nullptr);
        for (size_t i = 0; i < n; i += 4093)
            ASSERT_EQ(q[i], 0) << "offset " << i;
        ASSERT_EQ(q[n - 1], 0);
        free(q);
    }
}

TEST(HugeReuse, ScratchBufferLoopKeepsContentsPerIteration)
{
    for (int i = 0; i < 50; i++) {
        size_t n = 16u << 20;
        unsigned char *p = (unsigned char *)malloc(n);
        ASSERT_NE(p, nullptr);
        p[0] = (unsigned char)i;
        p[n - 1] = (unsigned char)(i + 1);
        ASSERT_EQ(p[0], (unsigned char)i);
        ASSERT_EQ(p[n - 1], (unsigned char)(i + 1));
        free(p);
    }
}

TEST(HugeReuseDeathTest, DoubleFreeOfACachedAreaIsReported)
{
    testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_DEATH(
        {
            void *p = malloc(16u << 20);
            free(p);
            free(p);
        },
        "free\\(\\).*0x[0-9a-f]+");
}
