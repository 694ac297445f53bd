#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/node_settings.hpp"

using namespace pgha;

namespace {

NodeSettings parse(const std::map<std::string, std::string> &kv, std::vector<std::string> &errors) {
    errors.clear();
    return NodeSettings::from_map(kv, errors);
}

std::string joined(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &e : v) s += e + "\n";
    return s;
}

}  // namespace

TEST(NodeSettings, DefaultsComeFromTheTable) {
    std::vector<std::string> errors;
    NodeSettings s = parse({}, errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_EQ(s.scope, "");
    EXPECT_EQ(s.ns, "/service");
    EXPECT_EQ(s.api_listen, "0.0.0.0:8008");
    EXPECT_EQ(s.superuser, "postgres");
    EXPECT_EQ(s.replication_user, "replicator");
    EXPECT_EQ(s.rewind_user, "rewind_user");
    EXPECT_EQ(s.admin_user, "admin");
    EXPECT_FALSE(s.nofailover);
    EXPECT_TRUE(s.lease_enforcement);
    EXPECT_EQ(s.lease_safety_margin, 2000);
    EXPECT_EQ(s.watchdog_mode, kWatchdogAutomatic);
    EXPECT_EQ(s.watchdog_device, "/dev/watchdog");
    EXPECT_EQ(s.watchdog_safety_margin, 5);
    EXPECT_EQ(s.restapi_verify_client, "none");
    EXPECT_EQ(s.port, 5432);
    EXPECT_EQ(s.socket_dir, "/tmp");
}

TEST(NodeSettings, KeysWithOrWithoutPrefixAnyCase) {
    std::vector<std::string> errors;
    NodeSettings s = parse({{"pg_ha.scope", "batman"},
                            {"namespace", "/ns"},
                            {"PG_HA.Node_Name", "pg-1"},
                            {"pg_ha.superuser_password", " it's secret "},
                            {"shared_buffers", "16MB"}},  // PostgreSQL's: ignored
                           errors);
    EXPECT_TRUE(errors.empty()) << joined(errors);
    EXPECT_EQ(s.scope, "batman");
    EXPECT_EQ(s.ns, "/ns");
    EXPECT_EQ(s.node_name, "pg-1");
    EXPECT_EQ(s.superuser_password, " it's secret ");  // strings are taken as they are
}

TEST(NodeSettings, BooleansLikePostgres) {
    std::vector<std::string> errors;
    for (const char *t : {"on", "ON", "true", "t", "tru", "yes", "y", "1", " on "}) {
        NodeSettings s = parse({{"pg_ha.nofailover", t}}, errors);
        EXPECT_TRUE(errors.empty()) << t << ": " << joined(errors);
        EXPECT_TRUE(s.nofailover) << t;
    }
    for (const char *f : {"off", "of", "false", "f", "no", "n", "0", "FALSE"}) {
        NodeSettings s = parse({{"pg_ha.lease_enforcement", f}}, errors);
        EXPECT_TRUE(errors.empty()) << f << ": " << joined(errors);
        EXPECT_FALSE(s.lease_enforcement) << f;
    }
    for (const char *bad : {"", "o", "maybe", "2", "onn", "yess", "10"}) {
        NodeSettings s = parse({{"pg_ha.lease_enforcement", bad}}, errors);
        ASSERT_EQ(errors.size(), 1u) << bad;
        EXPECT_NE(errors[0].find("pg_ha.lease_enforcement"), std::string::npos) << errors[0];
        EXPECT_TRUE(s.lease_enforcement) << bad;  // keeps the default
    }
}

TEST(NodeSettings, IntegersWithUnits) {
    std::vector<std::string> errors;
    struct Case {
        const char *text;
        int ms;
    } cases[] = {{"2500", 2500}, {"2500ms", 2500}, {"3s", 3000}, {"3 s", 3000}, {"1min", 60000},
                 {"1.5s", 1500}, {"0x100", 256}, {"100000us", 100}, {" 700 ", 700}};
    for (const auto &c : cases) {
        NodeSettings s = parse({{"pg_ha.lease_safety_margin", c.text}}, errors);
        EXPECT_TRUE(errors.empty()) << c.text << ": " << joined(errors);
        EXPECT_EQ(s.lease_safety_margin, c.ms) << c.text;
    }
    // a setting in seconds
    NodeSettings s = parse({{"pg_ha.watchdog_safety_margin", "2min"}}, errors);
    EXPECT_TRUE(errors.empty()) << joined(errors);
    EXPECT_EQ(s.watchdog_safety_margin, 120);
    s = parse({{"pg_ha.watchdog_safety_margin", "-1"}}, errors);
    EXPECT_TRUE(errors.empty()) << joined(errors);
    EXPECT_EQ(s.watchdog_safety_margin, -1);
    s = parse({{"pg_ha.watchdog_safety_margin", "3000ms"}}, errors);
    EXPECT_EQ(s.watchdog_safety_margin, 3);
    // not numbers, unknown units, out of range
    for (const char *bad : {"", "abc", "12 parsecs", "5 S", "99", "60001", "2min", "1e20", "99999999999"}) {
        s = parse({{"pg_ha.lease_safety_margin", bad}}, errors);
        ASSERT_EQ(errors.size(), 1u) << bad;
        EXPECT_NE(errors[0].find("pg_ha.lease_safety_margin"), std::string::npos) << errors[0];
        EXPECT_EQ(s.lease_safety_margin, 2000) << bad;
    }
    s = parse({{"pg_ha.lease_safety_margin", "50"}}, errors);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].find("100..60000 ms"), std::string::npos) << errors[0];
}

TEST(NodeSettings, EnumsByLabelAndAlias) {
    std::vector<std::string> errors;
    struct Case {
        const char *text;
        int mode;
    } cases[] = {{"off", kWatchdogOff},        {"automatic", kWatchdogAutomatic}, {"required", kWatchdogRequired},
                 {"Required", kWatchdogRequired}, {"auto", kWatchdogAutomatic},  {"require", kWatchdogRequired},
                 {"no", kWatchdogOff},         {"on", kWatchdogAutomatic}};
    for (const auto &c : cases) {
        NodeSettings s = parse({{"pg_ha.watchdog_mode", c.text}}, errors);
        EXPECT_TRUE(errors.empty()) << c.text;
        EXPECT_EQ(s.watchdog_mode, c.mode) << c.text;
    }
    parse({{"pg_ha.watchdog_mode", "sometimes"}}, errors);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].find("off, automatic, required"), std::string::npos) << errors[0];
}

TEST(NodeSettings, UnknownPgHaKeysAreReported) {
    std::vector<std::string> errors;
    parse({{"pg_ha.scpoe", "batman"}, {"pg_ha.scope", "batman"}, {"scpoe", "x"}}, errors);
    ASSERT_EQ(errors.size(), 1u) << joined(errors);  // the un-prefixed typo is PostgreSQL's business
    EXPECT_NE(errors[0].find("pg_ha.scpoe"), std::string::npos);
    // a caller may read further pg_ha.* keys itself
    errors.clear();
    NodeSettings::from_map({{"pg_ha.ctl_insecure", "on"}, {"pg_ha.bogus", "1"}}, errors, {"ctl_insecure"});
    ASSERT_EQ(errors.size(), 1u) << joined(errors);
    EXPECT_NE(errors[0].find("pg_ha.bogus"), std::string::npos);
}

TEST(NodeSettings, PostgresOwnSettings) {
    std::vector<std::string> errors;
    NodeSettings s = parse({{"port", "5433"}, {"unix_socket_directories", " /run/pg , /tmp"}, {"data_directory", "/d"}},
                           errors);
    EXPECT_TRUE(errors.empty()) << joined(errors);
    EXPECT_EQ(s.port, 5433);
    EXPECT_EQ(s.socket_dir, "/run/pg");
    EXPECT_EQ(s.data_dir, "/d");
    s = parse({{"unix_socket_directories", ""}}, errors);
    EXPECT_EQ(s.socket_dir, "/tmp");
    parse({{"port", "70000"}}, errors);
    EXPECT_EQ(errors.size(), 1u);
}

TEST(NodeSettings, RowsDescribeTheTable) {
    const auto &rows = setting_rows();
    ASSERT_GE(rows.size(), 30u);
    int secrets = 0;
    for (const auto &r : rows) {
        EXPECT_FALSE(r.description.empty()) << r.name;
        // pg_settings.context: every row is read at server start but the reloadable one(s)
        const bool reloadable = r.name == "synchronous_strict_fail_fast" || r.name == "nofailover" ||
                                r.name == "noloadbalance" || r.name == "nosync" || r.name == "clonefrom";
        EXPECT_EQ(r.context, reloadable ? "sighup" : "postmaster") << r.name;
        if (r.secret) {
            secrets++;
            EXPECT_EQ(r.type, "string") << r.name;
            EXPECT_NE(r.name.find("password"), std::string::npos) << r.name;
        }
        // every row round-trips: its default text parses back to the default
        std::vector<std::string> errors;
        NodeSettings::from_map({{r.name, r.default_text}}, errors);
        EXPECT_TRUE(errors.empty()) << r.name << ": " << joined(errors);
    }
    EXPECT_EQ(secrets, 7);  // 6 + zookeeper_password (issue 10)
    auto find = [&](const std::string &n) -> const SettingInfo * {
        for (const auto &r : rows)
            if (r.name == n) return &r;
        return nullptr;
    };
    ASSERT_NE(find("namespace"), nullptr);
    EXPECT_EQ(find("lease_safety_margin")->default_text, "2000 ms");
    EXPECT_EQ(find("watchdog_safety_margin")->default_text, "5 s");
    EXPECT_EQ(find("watchdog_mode")->default_text, "automatic");
    EXPECT_EQ(find("lease_enforcement")->default_text, "on");
    // every password is a secret
    for (const auto &r : rows) {
        if (r.name.find("password") != std::string::npos) {
            EXPECT_TRUE(r.secret) << r.name;
        }
    }
}
