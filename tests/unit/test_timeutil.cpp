#include <gtest/gtest.h>

#include "core/timeutil.hpp"

using namespace pgha;

TEST(Iso8601, ParsesPatroniForms) {
    std::int64_t e;
    std::string err;
    ASSERT_TRUE(parse_iso8601("2026-11-24T23:10:00+00:00", e, err)) << err;
    EXPECT_EQ(e, 1795561800);
    ASSERT_TRUE(parse_iso8601("2026-11-24T23:10:00Z", e, err));
    EXPECT_EQ(e, 1795561800);
    ASSERT_TRUE(parse_iso8601("2026-11-25T00:10:00.123456+01:00", e, err));
    EXPECT_EQ(e, 1795561800);
    ASSERT_TRUE(parse_iso8601("2026-11-24 18:10-0500", e, err));
    EXPECT_EQ(e, 1795561800);
    EXPECT_EQ(format_iso8601(1795561800), "2026-11-24T23:10:00+00:00");
}

TEST(Iso8601, RefusesGarbage) {
    std::int64_t e = 7;
    std::string err;
    for (const char *bad : {"", "tomorrow", "2026-11-24", "2026-11-24T23:10:00", "2026-13-01T00:00Z", "2026-02-31T00:00Z",
                            "2026-11-24T25:00Z", "2026-11-24T23:10:00+00:00 junk", "2026-11-24T23:10:00.Z"}) {
        EXPECT_FALSE(parse_iso8601(bad, e, err)) << bad;
        EXPECT_FALSE(err.empty());
    }
    EXPECT_EQ(e, 7);
}
