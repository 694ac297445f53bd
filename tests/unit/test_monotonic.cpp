// core/monotonic.h: the lease clock is CLOCK_BOOTTIME (counts suspend) and never goes back.
#include <gtest/gtest.h>

#include <cstdint>
#include <ctime>

#include "core/no_postgres.hpp"
#include "core/monotonic.h"

namespace {

std::int64_t clock_ms(clockid_t id) {
    struct timespec ts;
    EXPECT_EQ(clock_gettime(id, &ts), 0);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

TEST(Monotonic, IsClockBoottime) {
    static_assert(PGHA_LEASE_CLOCK == CLOCK_BOOTTIME, "the lease clock must count suspend (review F6)");
    // Bracketed by CLOCK_BOOTTIME readings taken around it.
    for (int i = 0; i < 1000; ++i) {
        const std::int64_t before = clock_ms(CLOCK_BOOTTIME);
        const std::int64_t v = pgha_monotonic_ms();
        const std::int64_t after = clock_ms(CLOCK_BOOTTIME);
        ASSERT_LE(before, v);
        ASSERT_LE(v, after);
    }
}

TEST(Monotonic, NeverGoesBackAndAdvances) {
    std::int64_t prev = pgha_monotonic_ms();
    EXPECT_GT(prev, 0);
    const std::int64_t start = prev;
    for (int i = 0; i < 100000; ++i) {
        const std::int64_t now = pgha_monotonic_ms();
        ASSERT_GE(now, prev);
        prev = now;
    }
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, nullptr);
    EXPECT_GE(pgha_monotonic_ms() - start, 20);
}
