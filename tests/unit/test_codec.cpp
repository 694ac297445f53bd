// Patroni's ZooKeeper formats, config validation, settings file parsing.
#include <gtest/gtest.h>

#include "core/dynamic_config.hpp"
#include "core/lsn.hpp"
#include "core/patroni_codec.hpp"
#include "core/settings_file.hpp"

using namespace pgha;

TEST(Lsn, RoundTrip) {
    EXPECT_EQ(format_lsn(0x16B374D848ULL), "16/B374D848");
    EXPECT_EQ(parse_lsn("16/B374D848").value(), 0x16B374D848ULL);
    EXPECT_FALSE(parse_lsn("nonsense"));
    EXPECT_FALSE(parse_lsn("1/"));
    EXPECT_EQ(parse_size_bytes("16kB").value(), 16384);
    EXPECT_EQ(parse_size_bytes("1048576").value(), 1048576);
    EXPECT_FALSE(parse_size_bytes("12 parsecs"));
}

TEST(Codec, MemberRoundTripKeepsPatroniFields) {
    Member m;
    m.name = "pg-1";
    m.conn_url = "postgres://10.0.0.1:5432/postgres";
    m.api_url = "http://10.0.0.1:8008/patroni";
    m.state = "running";
    m.role = "replica";
    m.version = "0.1.0";
    m.xlog_location = 12345;
    m.timeline = 3;
    m.replication_state = "streaming";
    m.tags.nofailover = true;
    std::string err;
    auto back = decode_member("pg-1", encode_member(m), err);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->xlog_location, 12345u);
    EXPECT_EQ(back->timeline, 3);
    EXPECT_EQ(back->host(), "10.0.0.1");
    EXPECT_EQ(back->port(), 5432);
    EXPECT_TRUE(back->tags.nofailover);
    auto j = nlohmann::json::parse(encode_member(m));
    EXPECT_EQ(j["conn_url"], m.conn_url);
    EXPECT_EQ(j["tags"]["nofailover"], true);
}

TEST(Codec, PatroniMasterRoleIsPrimary) {
    std::string err;
    auto m = decode_member("x", R"({"role":"master","state":"running","conn_url":"postgres://h:1/postgres"})", err);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->role, "primary");
}

TEST(Codec, BadMemberDataIsRejectedWithError) {
    std::string err;
    EXPECT_FALSE(decode_member("x", "{not json", err));
    EXPECT_FALSE(err.empty());
    err.clear();
    EXPECT_FALSE(decode_member("x", "[1,2]", err));
    EXPECT_FALSE(err.empty());
}

TEST(Codec, SyncFailoverStatusHistory) {
    std::string err;
    SyncState s = decode_sync(R"({"leader":"a","sync_standby":"b,c"})", err);
    EXPECT_EQ(s.leader, "a");
    EXPECT_EQ(s.sync_standby, (std::vector<std::string>{"b", "c"}));
    EXPECT_TRUE(decode_sync("{}", err).empty());
    auto f = decode_failover(R"({"leader":"a","member":"b","scheduled_at":"2026-01-01T00:00:00+00:00"})", err);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->candidate, "b");
    EXPECT_EQ(decode_status(encode_status(777), err), 777u);
    EXPECT_EQ(decode_status("1234", err), 1234u);  // legacy optime/leader
    auto h = decode_history(R"([[1, 100, "no recovery target specified", "2026-01-01T00:00:00+00:00", "pg-2"], "junk"])", err);
    ASSERT_EQ(h.size(), 1u);
    EXPECT_EQ(h[0].new_leader, "pg-2");
    EXPECT_FALSE(err.empty());  // the junk row was reported
}

TEST(Codec, SlotNames) {
    EXPECT_EQ(slot_name_for_member("pg-1"), "pg_1");
    EXPECT_EQ(slot_name_for_member("Node.A"), "node_a");
}

TEST(DynamicConfig, DefaultsAndValidation) {
    DynamicConfig d;
    EXPECT_TRUE(d.validate().empty());
    std::vector<std::string> errors;
    auto c = DynamicConfig::from_json(nlohmann::json::parse(R"({"ttl": 20, "loop_wait": 10, "retry_timeout": 5})"), errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_TRUE(c.validate().empty());
    c = DynamicConfig::from_json(nlohmann::json::parse(R"({"ttl": 10, "loop_wait": 10, "retry_timeout": 10})"), errors);
    EXPECT_TRUE(c.validate().empty()) << "adjusted as Patroni does (test_dynamic_config.cpp)";
    EXPECT_EQ(c.loop_wait_ms + 2 * c.retry_timeout_ms, 9000);
    errors.clear();
    c = DynamicConfig::from_json(nlohmann::json::parse(R"({"ttl": "abc", "loop_wait": "x", "pause": "maybe", "x": 1})"), errors);
    EXPECT_EQ(errors.size(), 3u);
    EXPECT_EQ(c.ttl_ms, 30000);  // bad values leave defaults
    EXPECT_EQ(c.to_json()["x"], 1);  // unknown keys survive a round trip
    c = DynamicConfig::from_json(nlohmann::json::parse(R"({"postgresql": {"use_slots": false}})"), errors);
    EXPECT_FALSE(c.use_slots);
}

TEST(SettingsFile, ParsesPostgresSyntax) {
    auto s = parse_settings("# comment\npg_ha.scope = 'batman'\nport = 5433 # trailing\nx = 'it''s'\nbad line\n"
                            "y = 'unterminated\n");
    EXPECT_EQ(s.get("pg_ha.scope"), "batman");
    EXPECT_EQ(s.get_int("port", 0), 5433);
    EXPECT_EQ(s.get("x"), "it's");
    EXPECT_EQ(s.errors.size(), 1u) << (s.errors.empty() ? "" : s.errors[0]);
}

TEST(HostPort, Parsing) {
    std::string h;
    int p = 0;
    EXPECT_TRUE(parse_host_port("[::1]:8008", h, p));
    EXPECT_EQ(h, "::1");
    EXPECT_FALSE(parse_host_port("nohost", h, p));
    EXPECT_FALSE(parse_host_port("h:99999", h, p));
    EXPECT_TRUE(parse_conn_url("postgres://u:p@db:5432/postgres", h, p));
    EXPECT_EQ(h, "db");
}

TEST(Codec, HistoryOutOfRangeNumbersAreSkippedNotCast) {
    std::string err;
    auto h = decode_history(
        R"([[1, 100, "ok"], [2147483648, 200, "tl beyond int"], [0, 300, "tl zero"], [-3, 300, "negative tl"],
            [2, -5, "negative lsn"], [3, 1.5, "fractional lsn"], [4, 1e300, "huge lsn"],
            [2147483647, 18446744073709551615, "max", "2026-01-01T00:00:00+00:00", "pg-9"], [5, 64.0, "integral float"]])",
        err);
    ASSERT_EQ(h.size(), 3u) << err;
    EXPECT_EQ(h[0].timeline, 1);
    EXPECT_EQ(h[1].timeline, 2147483647);
    EXPECT_EQ(h[1].lsn, 18446744073709551615ull);
    EXPECT_EQ(h[1].new_leader, "pg-9");
    EXPECT_EQ(h[2].lsn, 64u);
    EXPECT_FALSE(err.empty());
}

TEST(Codec, MemberNumbersOutOfRangeCountAsUnreported) {
    std::string err;
    auto m = decode_member("pg-1",
                           R"({"state":"running","timeline":4294967297,"xlog_location":-5,"receive_lsn":-1,
                              "replay_lsn":18446744073709551615,"pending_restart":true})",
                           err);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->timeline, 0);
    EXPECT_EQ(m->xlog_location, 0u);
    EXPECT_FALSE(m->receive_lsn.has_value());
    EXPECT_FALSE(m->replay_lsn.has_value());  // beyond int64: not cast
    EXPECT_TRUE(m->pending_restart);
    auto back = decode_member("pg-1", encode_member(*m), err);
    ASSERT_TRUE(back);
    EXPECT_TRUE(back->pending_restart);
    EXPECT_EQ(decode_status(R"({"optime": -7})", err), 0u);
    EXPECT_EQ(decode_status("-7", err), 0u);
}
