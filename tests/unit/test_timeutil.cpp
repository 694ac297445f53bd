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

TEST(Iso8601, FormatsFourDigitYearsAndRoundTrips) {
    // 0999-12-31T23:59:59Z: strftime's %Y would give "999".
    EXPECT_EQ(format_iso8601(-30610224001LL), "0999-12-31T23:59:59+00:00");
    EXPECT_EQ(format_iso8601(0), "1970-01-01T00:00:00+00:00");
    for (std::int64_t t : {std::int64_t(0), std::int64_t(1795561800), std::int64_t(-30610224001LL), std::int64_t(253402300799LL)}) {
        std::int64_t back = 0;
        std::string err;
        ASSERT_TRUE(parse_iso8601(format_iso8601(t), back, err)) << format_iso8601(t) << ": " << err;
        EXPECT_EQ(back, t);
    }
    EXPECT_EQ(format_iso8601_now().size(), 25u);
}
