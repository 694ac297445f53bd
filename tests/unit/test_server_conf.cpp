// core/server_conf: pg_ha.auto.conf, the file pg_ha persists server parameters in
// (instead of ALTER SYSTEM), and moving its keys out of postgresql.auto.conf.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/pgdata.hpp"
#include "core/server_conf.hpp"

using namespace pgha;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/pgha-unit-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string slurp(const fs::path &p) {
    std::ifstream in(p);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST(ServerConf, QuoteAndParseRoundTrip) {
    const std::string nasty = "host=a password='it''s \\ x' #not a comment";
    const std::string text = render_server_conf({{"primary_conninfo", nasty}, {"primary_slot_name", ""}});
    const ConfParams back = parse_conf(text);
    ASSERT_EQ(back.size(), 2u);
    EXPECT_EQ(back[0].first, "primary_conninfo");
    EXPECT_EQ(back[0].second, nasty);
    EXPECT_EQ(back[1].second, "");
    EXPECT_EQ(conf_quote("a'b\\c"), "'a''b\\\\c'");
}

TEST(ServerConf, ParsesPostgresqlSyntax) {
    const ConfParams p = parse_conf(
        "# comment\n\n  Primary_Slot_Name='s1'  # trailing\nport 5433\ninclude 'x.conf'\n"
        "include_if_exists 'pg_ha.auto.conf'\nwork_mem = 4MB#c\nbroken = 'unterminated\n");
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[0], (std::pair<std::string, std::string>{"primary_slot_name", "s1"}));
    EXPECT_EQ(p[1], (std::pair<std::string, std::string>{"port", "5433"}));
    EXPECT_EQ(p[2], (std::pair<std::string, std::string>{"work_mem", "4MB"}));
}

TEST(ServerConf, MergeReplacesInPlaceAndAppends) {
    const ConfParams m = merge_conf({{"a", "1"}, {"b", "2"}, {"a", "3"}}, {{"b", "x"}, {"c", "y"}});
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0], (std::pair<std::string, std::string>{"b", "x"}));
    EXPECT_EQ(m[1], (std::pair<std::string, std::string>{"a", "3"}));  // last value of a repeated name
    EXPECT_EQ(m[2], (std::pair<std::string, std::string>{"c", "y"}));
}

TEST(ServerConf, UpdateWritesAtomicallyWithMode0600AndMerges) {
    TempDir d;
    std::string err;
    ASSERT_TRUE(update_server_conf(d.path, {{"primary_conninfo", "host=a"}, {"primary_slot_name", "n1"}}, err)) << err;
    ASSERT_TRUE(update_server_conf(d.path, {{"synchronous_standby_names", "\"n2\""}, {"primary_conninfo", "host=b"}},
                                   err))
        << err;
    const fs::path f = d.path / kServerConfFile;
    struct stat st {};
    ASSERT_EQ(stat(f.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_FALSE(fs::exists(f.string() + ".tmp"));
    const ConfParams p = parse_conf(slurp(f));
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[0], (std::pair<std::string, std::string>{"primary_conninfo", "host=b"}));
    EXPECT_EQ(p[1], (std::pair<std::string, std::string>{"primary_slot_name", "n1"}));
    EXPECT_EQ(p[2], (std::pair<std::string, std::string>{"synchronous_standby_names", "\"n2\""}));
}

TEST(ServerConf, ParametersLeavingTheConfigKeyAreRemovedAndPgHasOwnStay) {
    TempDir d;
    std::string err;
    std::vector<std::string> removed;
    ASSERT_TRUE(remove_other_server_conf_keys(d.path, {}, removed, err)) << err;  // no file yet
    EXPECT_TRUE(removed.empty());
    ASSERT_TRUE(update_server_conf(d.path, {{"primary_conninfo", "host=a"}, {"shared_buffers", "96MB"},
                                            {"work_mem", "8MB"}, {"synchronous_standby_names", "ANY 1 (a)"}},
                                   err))
        << err;
    ASSERT_TRUE(remove_other_server_conf_keys(d.path, {"work_mem"}, removed, err)) << err;
    EXPECT_EQ(removed, std::vector<std::string>{"shared_buffers"});
    const ConfParams p = parse_conf(slurp(d.path / kServerConfFile));
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[0].first, "primary_conninfo");
    EXPECT_EQ(p[1].first, "work_mem");
    EXPECT_EQ(p[2].first, "synchronous_standby_names");
    ASSERT_TRUE(remove_other_server_conf_keys(d.path, {"work_mem"}, removed, err)) << err;
    EXPECT_TRUE(removed.empty());
}

TEST(ServerConf, UpdateFailsCleanlyAndKeepsTheOldFile) {
    std::string err;
    EXPECT_FALSE(update_server_conf("/nonexistent-pg-ha-dir", {{"a", "1"}}, err));
    EXPECT_NE(err.find("/nonexistent-pg-ha-dir/pg_ha.auto.conf"), std::string::npos) << err;
    if (geteuid() == 0) return;  // root writes anywhere
    TempDir d;
    ASSERT_TRUE(update_server_conf(d.path, {{"a", "1"}}, err)) << err;
    chmod(d.path.c_str(), 0500);
    EXPECT_FALSE(update_server_conf(d.path, {{"a", "2"}}, err));
    chmod(d.path.c_str(), 0700);
    EXPECT_EQ(parse_conf(slurp(d.path / kServerConfFile))[0].second, "1");
}

TEST(ServerConf, StripKeysFromAutoConf) {
    ConfParams removed;
    const std::string rest = strip_conf_keys(
        "# Do not edit this file manually!\nprimary_conninfo = 'host=old'\nwork_mem = '8MB'\n"
        "primary_conninfo = 'host=newer'\nprimary_slot_name = 's'\n",
        {"primary_conninfo", "primary_slot_name"}, removed);
    EXPECT_EQ(rest, "# Do not edit this file manually!\nwork_mem = '8MB'\n");
    ASSERT_EQ(removed.size(), 2u);
    EXPECT_EQ(removed[0], (std::pair<std::string, std::string>{"primary_conninfo", "host=newer"}));
    EXPECT_EQ(removed[1], (std::pair<std::string, std::string>{"primary_slot_name", "s"}));
}

// pg_hactl boot on a data directory from an older pg_ha (ALTER SYSTEM) or
// pg_basebackup -R: postgresql.auto.conf would override pg_ha.auto.conf.
TEST(ServerConf, BootMovesOwnedKeysOutOfAutoConf) {
    TempDir d;
    {
        std::ofstream(d.path / "postgresql.auto.conf")
            << "# Do not edit this file manually!\nprimary_conninfo = 'host=old'\nwork_mem = '8MB'\n"
               "synchronous_standby_names = '\"n2\"'\nmax_connections = 50\n";
        std::ofstream(d.path / "pg_ha.auto.conf") << "primary_conninfo = 'host=mine'\nmax_connections = '60'\n";
        std::ofstream(d.path / "postgresql.conf") << "port = 5432\n";
    }
    const pgha::cli::PgData pg{d.path.string(), "/nonexistent"};
    pgha::cli::write_managed_block(pg, "/etc/pg_ha.yml");
    pgha::cli::write_managed_block(pg, "/etc/pg_ha.yml");  // idempotent
    const std::string conf = slurp(d.path / "postgresql.conf");
    EXPECT_EQ(conf.find("include_if_exists 'pg_ha.auto.conf'"), conf.rfind("include_if_exists 'pg_ha.auto.conf'"));
    EXPECT_NE(conf.find("include_if_exists 'pg_ha.auto.conf'\n# END pg_ha"), std::string::npos) << conf;
    EXPECT_EQ(slurp(d.path / "postgresql.auto.conf"), "# Do not edit this file manually!\nwork_mem = '8MB'\n");
    const ConfParams p = parse_conf(slurp(d.path / "pg_ha.auto.conf"));
    ASSERT_EQ(p.size(), 3u);
    // auto.conf's values were the ones in effect.
    EXPECT_EQ(p[0], (std::pair<std::string, std::string>{"primary_conninfo", "host=old"}));
    EXPECT_EQ(p[1], (std::pair<std::string, std::string>{"max_connections", "50"}));
    EXPECT_EQ(p[2], (std::pair<std::string, std::string>{"synchronous_standby_names", "\"n2\""}));
}
