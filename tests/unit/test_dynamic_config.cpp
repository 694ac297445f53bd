// core/dynamic_config: range checks before any cast, and the one
// merge-and-validate step for operator changes.
#include <gtest/gtest.h>

#include "core/dynamic_config.hpp"
#include "core/node_settings.hpp"
#include "core/patroni_parameters.hpp"

#include <set>

using namespace pgha;
using nlohmann::json;

namespace {
std::vector<std::string> errors_of(const json &j) {
    std::vector<std::string> e;
    DynamicConfig::from_json(j, e);
    return e;
}
}  // namespace

TEST(DynamicConfig, HugeAndFractionalNumbersAreErrorsNotCasts) {
    for (const char *text : {R"({"ttl": 1e300})", R"({"ttl": -1e300})", R"({"ttl": 18446744073709551615})",
                             R"({"maximum_lag_on_failover": 1e19})", R"({"maximum_lag_on_failover": 9223372036854775808})",
                             R"({"loop_wait": 2147483648})", R"({"ttl": "99999999999999999999"})"}) {
        auto e = errors_of(json::parse(text));
        ASSERT_EQ(e.size(), 1u) << text;
        EXPECT_NE(e[0].find("out of range"), std::string::npos) << text << ": " << e[0];
    }
    auto e = errors_of(json::parse(R"({"maximum_lag_on_failover": 30.5})"));
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0], "maximum_lag_on_failover: expected an integer, got 30.5");
    std::vector<std::string> none;
    DynamicConfig c = DynamicConfig::from_json(json::parse(R"({"ttl": 40.0, "maximum_lag_on_failover": 9223372036854775807})"), none);
    EXPECT_TRUE(none.empty());
    EXPECT_EQ(c.ttl_ms, 40000);
    EXPECT_EQ(c.maximum_lag_on_failover, INT64_MAX);
    e = errors_of(json::parse(R"({"ttl": 3601})"));
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0], "ttl: 3601 is out of range [-2147483, 3600] seconds");
}

// pg_ha takes the timings to the millisecond (Patroni: whole seconds), as a
// number or a numeric string, and writes them back in the same form.
TEST(DynamicConfig, TimingsTakeMilliseconds) {
    std::vector<std::string> errors;
    auto c = DynamicConfig::from_json(json::parse(R"({"ttl": 1.6, "loop_wait": "0.2", "retry_timeout": 0.25})"), errors);
    EXPECT_TRUE(errors.empty()) << config_errors_text(errors);
    EXPECT_TRUE(c.adjusted.empty());
    EXPECT_EQ(c.ttl_ms, 1600);
    EXPECT_EQ(c.loop_wait_ms, 200);
    EXPECT_EQ(c.retry_timeout_ms, 250);
    EXPECT_EQ(c.to_json()["ttl"].dump(), "1.6");
    EXPECT_EQ(c.to_json()["loop_wait"].dump(), "0.2");
    EXPECT_EQ(c.to_json()["retry_timeout"].dump(), "0.25");
    c = DynamicConfig::from_json(json::parse(R"({"ttl": "30"})"), errors);
    EXPECT_EQ(c.to_json()["ttl"].dump(), "30") << "whole seconds stay integers";
    for (const char *text : {R"({"ttl": 1.0005})", R"({"ttl": "1.5s"})", R"({"ttl": ""})", R"({"ttl": " 2"})",
                             R"({"ttl": true})", R"({"ttl": [2]})", R"({"ttl": "nan"})", R"({"ttl": "inf"})"}) {
        auto e = errors_of(json::parse(text));
        ASSERT_EQ(e.size(), 1u) << text;
        EXPECT_EQ(e[0].rfind("ttl: ", 0), 0u) << text << ": " << e[0];
    }
    EXPECT_EQ(errors_of(json::parse(R"({"ttl": 1.0005})"))[0], "ttl: 1.0005 has more than three decimals (milliseconds)");
    EXPECT_EQ(errors_of(json::parse(R"({"ttl": "x"})"))[0], "ttl: expected a number of seconds, got \"x\"");
    EXPECT_EQ(seconds_text(30000), "30");
    EXPECT_EQ(seconds_text(1050), "1.05");
    EXPECT_EQ(seconds_text(7), "0.007");
    EXPECT_EQ(seconds_text(-1500), "-1.5");
}

// Patroni adjusts these with a warning instead of refusing them.
TEST(DynamicConfig, TimingsAdjustedAsPatroniDoes) {
    std::vector<std::string> errors;
    auto c = DynamicConfig::from_json(json{{"ttl", 20}, {"loop_wait", 10}, {"retry_timeout", 10}}, errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_EQ(c.loop_wait_ms, 1000);
    EXPECT_EQ(c.retry_timeout_ms, 9000);
    ASSERT_EQ(c.adjusted.size(), 1u);
    EXPECT_EQ(c.adjusted[0], "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=20. "
                             "Adjusting loop_wait from 10 to 1 and retry_timeout from 10 to 9");
    EXPECT_EQ(c.raw["loop_wait"], 10) << "the key keeps what was written";
    c = DynamicConfig::from_json(json{{"ttl", 30}, {"loop_wait", 15}, {"retry_timeout", 10}}, errors);
    EXPECT_EQ(c.loop_wait_ms, 10000);
    EXPECT_EQ(c.retry_timeout_ms, 10000);
    ASSERT_EQ(c.adjusted.size(), 1u);
    EXPECT_NE(c.adjusted[0].find("Adjusting loop_wait from 15 to 10"), std::string::npos) << c.adjusted[0];
    c = DynamicConfig::from_json(json{{"ttl", 0.5}, {"loop_wait", 0}, {"retry_timeout", -3}}, errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_EQ(c.ttl_ms, kMinTtlMs);
    EXPECT_EQ(c.loop_wait_ms, kMinLoopWaitMs);
    EXPECT_EQ(c.retry_timeout_ms, kMinRetryTimeoutMs);
    ASSERT_EQ(c.adjusted.size(), 3u);
    EXPECT_EQ(c.adjusted[0], "loop_wait=0 can't be smaller than 0.1, adjusting");
    EXPECT_EQ(c.adjusted[1], "retry_timeout=-3 can't be smaller than 0.1, adjusting");
    EXPECT_EQ(c.adjusted[2], "ttl=0.5 can't be smaller than 1, adjusting");
    c = DynamicConfig::from_json(json{{"ttl", 10}, {"loop_wait", 2}, {"retry_timeout", 2}}, errors);
    EXPECT_TRUE(c.adjusted.empty());
    EXPECT_EQ(c.loop_wait_ms, 2000);
    // A ttl of 4 with Patroni's loop_wait 10 and retry_timeout 10: whole seconds, as Patroni.
    c = DynamicConfig::from_json(json{{"ttl", 4}}, errors);
    EXPECT_EQ(c.loop_wait_ms, 1000);
    EXPECT_EQ(c.retry_timeout_ms, 1000);
    // Below a second of retry_timeout, milliseconds; a loop_wait already under 1 s is kept.
    c = DynamicConfig::from_json(json{{"ttl", 2}}, errors);
    EXPECT_EQ(c.loop_wait_ms, 1000);
    EXPECT_EQ(c.retry_timeout_ms, 500);
    c = DynamicConfig::from_json(json{{"ttl", 1.5}, {"loop_wait", 0.3}, {"retry_timeout", 1}}, errors);
    EXPECT_EQ(c.loop_wait_ms, 300);
    EXPECT_EQ(c.retry_timeout_ms, 600);
    EXPECT_EQ(c.adjusted.back(), "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=1.5. "
                                 "Adjusting loop_wait from 0.3 to 0.3 and retry_timeout from 1 to 0.6");
}

TEST(DynamicConfig, ConfigErrorsIncludeRelations) {
    EXPECT_TRUE(config_errors(json{{"ttl", 10}, {"loop_wait", 10}}).empty()) << "adjusted, not refused";
    auto e = config_errors(json{{"ttl", 1}});
    ASSERT_EQ(e.size(), 1u) << "too small a ttl to adjust for";
    EXPECT_EQ(e[0], "loop_wait + 2 * retry_timeout (1.2) must not exceed ttl (1)");
    EXPECT_EQ(config_errors_text({"a", "b"}), "invalid configuration: a; b");
    EXPECT_TRUE(config_errors(json::object()).empty());
    EXPECT_FALSE(config_errors(json::array()).empty());
}

TEST(ConfigPatch, MergePatchNullRemovesAndNestedMerges) {
    json current = {{"ttl", 30}, {"postgresql", {{"parameters", {{"work_mem", "4MB"}, {"a", 1}}}}}, {"pause", true}};
    auto r = apply_config_patch(current, json{{"pause", nullptr}, {"postgresql", {{"parameters", {{"a", nullptr}}}}}},
                                false);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.merged, json({{"ttl", 30}, {"postgresql", {{"parameters", {{"work_mem", "4MB"}}}}}}));
    EXPECT_FALSE(r.config.pause);
    EXPECT_EQ(r.config.ttl_ms, 30000);
}

TEST(ConfigPatch, ReplaceByFlagOrMarker) {
    json current = {{"ttl", 30}, {"loop_wait", 10}};
    auto r = apply_config_patch(current, json{{"ttl", 60}}, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.merged, json({{"ttl", 60}}));
    r = apply_config_patch(current, json{{"ttl", 60}, {"__replace__", true}}, false);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.merged, json({{"ttl", 60}}));  // the marker itself is not written
}

TEST(ConfigPatch, InvalidResultIsRefusedWithEveryError) {
    auto r = apply_config_patch(json{{"ttl", 30}}, json{{"ttl", "x"}, {"loop_wait", 3601}}, false);
    EXPECT_FALSE(r.ok());
    ASSERT_GE(r.errors.size(), 2u);
    const std::string text = config_errors_text(r.errors);
    EXPECT_NE(text.find("ttl"), std::string::npos);
    EXPECT_NE(text.find("loop_wait"), std::string::npos);
    EXPECT_EQ(text.rfind("invalid configuration: ", 0), 0u);
    r = apply_config_patch(json::object(), json::array(), false);
    EXPECT_FALSE(r.ok());
    // a current value that is not an object counts as {}
    r = apply_config_patch(json("junk"), json{{"ttl", 30}}, false);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.merged, json({{"ttl", 30}}));
}

// The config key's postgresql.pg_hba (issue 12 item 3): checked where it is
// written (ha_set_config, PATCH /config, edit-config) and where it is applied.
TEST(PgHbaLines, RecordsAndCommentsOnlyOneLineEach) {
    std::vector<std::string> lines;
    std::string why;
    auto j = nlohmann::json::parse(R"(["# ours", "local all all peer", "host replication replicator 0.0.0.0/0 md5",
                                       "  hostssl all all ::/0 scram-sha-256", ""])");
    ASSERT_TRUE(parse_pg_hba_lines(j, lines, why)) << why;
    EXPECT_EQ(lines.size(), 5u);
    EXPECT_EQ(lines[3], "  hostssl all all ::/0 scram-sha-256");
    auto refused = [&](const char *text) {
        std::vector<std::string> out;
        std::string w;
        EXPECT_FALSE(parse_pg_hba_lines(nlohmann::json::parse(text), out, w)) << text;
        return w;
    };
    EXPECT_EQ(refused(R"("host all all 0.0.0.0/0 md5")"), "postgresql.pg_hba must be a list of pg_hba.conf lines");
    EXPECT_EQ(refused(R"(["local all all peer", 5])"), "postgresql.pg_hba[1] must be a string");
    EXPECT_EQ(refused(R"(["local all all peer\nhost all all 0.0.0.0/0 trust"])"),
              "postgresql.pg_hba[0] contains a control character (one line per entry)");
    EXPECT_EQ(refused(R"(["include /etc/passwd"])").rfind("postgresql.pg_hba[0]: \"include\" is not a pg_hba.conf", 0), 0u);
    EXPECT_EQ(refused(R"(["include_dir /tmp"])").rfind("postgresql.pg_hba[0]: \"include_dir\"", 0), 0u);
    EXPECT_EQ(refused(R"(["hots all all 0.0.0.0/0 md5"])").rfind("postgresql.pg_hba[0]: \"hots\"", 0), 0u);
    EXPECT_EQ(refused(R"([])"), "postgresql.pg_hba has no record: nobody could log in");
    EXPECT_EQ(refused(R"(["# only a comment"])"), "postgresql.pg_hba has no record: nobody could log in");
}

TEST(PgHbaLines, InvalidPgHbaIsAConfigError) {
    auto errs = config_errors(nlohmann::json::parse(R"({"postgresql": {"pg_hba": ["include x"]}})"));
    ASSERT_EQ(errs.size(), 1u);
    EXPECT_NE(errs[0].find("include"), std::string::npos);
    EXPECT_TRUE(config_errors(nlohmann::json::parse(R"({"postgresql": {"pg_hba": ["local all all peer"]}})")).empty());
    EXPECT_TRUE(config_errors(nlohmann::json::parse(R"({"postgresql": {"pg_hba": null}})")).empty());
}

// A standby starts with at least the primary's values (issue 12 item 3:
// rolling changes of max_connections and friends).
TEST(StandbyMinimums, RaisedToTheControlFilesValuesOnly) {
    std::map<std::string, std::string> cd = {{"max_connections setting", "100"},
                                             {"max_worker_processes setting", "8"},
                                             {"max_wal_senders setting", "10"},
                                             {"max_prepared_xacts setting", "5"},
                                             {"max_locks_per_xact setting", "64"}};
    std::map<std::string, std::string> conf = {{"max_connections", "50"},           // lowered: raised back
                                               {"max_worker_processes", "16"},      // higher: kept
                                               {"max_wal_senders", "10"},           // equal: kept
                                               {"max_prepared_transactions", "0"},  // lower: raised
                                               {"max_locks_per_transaction", ""}};  // unknown: left alone
    auto r = raise_to_primary_values(conf, cd);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0], (std::pair<std::string, std::string>{"max_connections", "100"}));
    EXPECT_EQ(r[1], (std::pair<std::string, std::string>{"max_prepared_transactions", "5"}));
    cd["max_connections setting"] = "garbage";
    EXPECT_EQ(raise_to_primary_values(conf, cd).size(), 1u);
    EXPECT_TRUE(raise_to_primary_values(conf, {}).empty());
    EXPECT_EQ(standby_minimum_parameters().size(), 5u);
}

// ---- timing profiles (pg_hactl edit-config --profile) ----

TEST(TimingProfiles, EachIsAValidConfigurationAsWrittenWithItsMargin) {
    ASSERT_GE(timing_profiles().size(), 2u);
    std::set<std::string> names;
    for (const auto &p : timing_profiles()) {
        SCOPED_TRACE(p.name);
        EXPECT_TRUE(names.insert(p.name).second) << "duplicate profile name";
        ConfigPatchResult r = apply_config_patch(json::object(), timing_profile_patch(p), false);
        ASSERT_TRUE(r.ok()) << config_errors_text(r.errors);
        // Taken as written: Patroni's adjustment would change what the profile promises.
        EXPECT_TRUE(r.config.adjusted.empty()) << r.config.adjusted.front();
        EXPECT_EQ(r.config.ttl_ms, p.ttl_ms);
        EXPECT_EQ(r.config.loop_wait_ms, p.loop_wait_ms);
        EXPECT_EQ(r.config.retry_timeout_ms, p.retry_timeout_ms);
        // The margin it is measured with is usable, covers a tick (a follower
        // touches sessions every tickTime/2), and leaves slack for late answers.
        EXPECT_EQ(lease_margin_problem(p.lease_safety_margin_ms, p.ttl_ms), "");
        EXPECT_GE(p.lease_safety_margin_ms, p.max_tick_time_ms);
        EXPECT_GE(p.ttl_ms - p.lease_safety_margin_ms - p.loop_wait_ms, 1000);
        // ZooKeeper's default minSessionTimeout (2 ticks) grants the session ttl asks for.
        EXPECT_LE(2 * p.max_tick_time_ms, p.ttl_ms);
        EXPECT_GT(std::string(p.summary).size(), 10u);
    }
    EXPECT_EQ(timing_profile_names(), "default, fast, fastest");
}

TEST(TimingProfiles, DefaultIsTheBuiltInTimingAndLookupIsExact) {
    const TimingProfile *d = find_timing_profile("default");
    ASSERT_NE(d, nullptr);
    const DynamicConfig builtin;
    EXPECT_EQ(d->ttl_ms, builtin.ttl_ms);
    EXPECT_EQ(d->loop_wait_ms, builtin.loop_wait_ms);
    EXPECT_EQ(d->retry_timeout_ms, builtin.retry_timeout_ms);
    const TimingProfile *f = find_timing_profile("fast");
    ASSERT_NE(f, nullptr);
    EXPECT_LT(f->ttl_ms, d->ttl_ms);
    EXPECT_EQ(timing_profile_patch(*f), json::parse(R"({"ttl": 4, "loop_wait": 1, "retry_timeout": 1})"));
    const TimingProfile *x = find_timing_profile("fastest");
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(timing_profile_patch(*x), json::parse(R"({"ttl": 1.7, "loop_wait": 0.1, "retry_timeout": 0.5})"));
    for (const char *bad : {"", "Fast", "fast ", "tight", "default\n"}) EXPECT_EQ(find_timing_profile(bad), nullptr) << bad;
}

TEST(TimingProfiles, LeaseMarginMustStayBelowTwoThirdsOfTheSession) {
    EXPECT_EQ(lease_margin_problem(2000, 4000), "");
    EXPECT_EQ(lease_margin_problem(1999, 3000), "");
    EXPECT_NE(lease_margin_problem(2000, 3000), "");  // 2000 >= 2/3 of 3000
    EXPECT_NE(lease_margin_problem(20000, 30000), "");
    EXPECT_EQ(lease_margin_problem(19999, 30000), "");
    const std::string why = lease_margin_problem(2000, 3000);
    EXPECT_NE(why.find("pg_ha.lease_safety_margin (2000 ms)"), std::string::npos) << why;
    EXPECT_NE(why.find("3000 ms"), std::string::npos) << why;
}
