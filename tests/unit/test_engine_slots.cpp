// The engine keeps PostgreSQL 17's failover logical slot settings
// (core/failover_slots) in pg_ha.auto.conf: the list follows the members that
// may be promoted, the config key's postgresql.parameters cannot override
// them while they are pg_ha's, and they go (the config key's value back) when
// logical_slot_failover is turned off.
#include "engine_fixture.hpp"

#include "core/server_conf.hpp"

namespace {

class EngineSlotsTest : public EngineTest {
  protected:
    std::string dir;
    void SetUp() override {
        EngineTest::SetUp();
        char tmpl[] = "/tmp/pgha-engine-slots-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir); }
    std::map<std::string, std::string> conf() const {
        std::string text;
        if (!read_text_file(dir + "/" + kServerConfFile, text)) return {};
        const ConfParams p = parse_conf(text);
        return {p.begin(), p.end()};
    }
    void config(const std::string &extra) {
        server.put(path("config"), "{\"ttl\":10,\"loop_wait\":2,\"retry_timeout\":2,"
                                   "\"postgresql\":{\"parameters\":{\"hot_standby_feedback\":false,"
                                   "\"work_mem\":\"8MB\"}}" + extra + "}");
    }
};

}  // namespace

TEST_F(EngineSlotsTest, FailoverSlotSettingsFollowThePromotableMembersAndTheConfigKey) {
    config("");
    server.put(path("members/pg-2"), member_json("pg-2", "replica", 1000), 555);
    server.put(path("members/pg-3"), member_json("pg-3", "replica", 1000), 556);
    server.live_sessions.insert(555);
    server.live_sessions.insert(556);
    Node n1(server, clock, "pg-1", true, peers_behind(0), 2000, dir);
    n1.local.server_version = 170012;
    n1.local.wal_level_logical = true;
    n1.sql.conf_dir = dir;
    n1.sql.slots = {{"pg_2", "physical", "", "", "0", "1", "0/5000000"},
                    {"pg_3", "physical", "", "", "0", "1", "0/5000000"},
                    {"app", "logical", "postgres", "pgoutput", "0", "0", "0/4000000"}};
    ASSERT_TRUE(run({&n1}, [&] { return conf()["synchronized_standby_slots"] == "pg_2,pg_3"; }, 200))
        << "conf: " << conf().size() << " entries";
    EXPECT_EQ(conf()["sync_replication_slots"], "on");
    // pg_ha's value wins over the config key's, which is reported, not applied.
    ASSERT_TRUE(run({&n1}, [&] { return n1.logged("hot_standby_feedback: set by pg_ha"); }, 100));
    EXPECT_EQ(conf()["hot_standby_feedback"], "on");
    EXPECT_EQ(conf()["work_mem"], "8MB");

    // pg-3 is tagged nofailover: the primary no longer waits for its slot.
    std::string error;
    Member m3 = decode_member("pg-3", member_json("pg-3", "replica", 1000), error).value();
    m3.tags.nofailover = true;
    server.put(path("members/pg-3"), encode_member(m3), 556);
    EXPECT_TRUE(run({&n1}, [&] { return conf()["synchronized_standby_slots"] == "pg_2"; }, 200));
    EXPECT_EQ(conf()["hot_standby_feedback"], "on") << "the config key's value stays out";

    // Turned off: the three settings go, the config key's hot_standby_feedback is back.
    config(",\"logical_slot_failover\":false");
    ASSERT_TRUE(run({&n1}, [&] { return conf()["hot_standby_feedback"] == "off"; }, 200));
    EXPECT_EQ(conf().count("sync_replication_slots"), 0u);
    EXPECT_EQ(conf().count("synchronized_standby_slots"), 0u);
    EXPECT_EQ(conf()["work_mem"], "8MB");
    EXPECT_TRUE(n1.logged("settings no longer kept by pg_ha (logical_slot_failover is off"));
}

TEST_F(EngineSlotsTest, BeforeSeventeenNoFailoverSlotSettingIsWritten) {
    config("");
    server.put(path("members/pg-2"), member_json("pg-2", "replica", 1000), 555);
    server.live_sessions.insert(555);
    Node n1(server, clock, "pg-1", true, peers_behind(0), 2000, dir);
    n1.sql.conf_dir = dir;
    n1.sql.slots = {{"pg_2", "physical", "", "", "0", "1", "0/5000000"}};
    ASSERT_TRUE(run({&n1}, [&] { return conf()["work_mem"] == "8MB"; }, 200));
    EXPECT_FALSE(run({&n1}, [&] { return conf().count("synchronized_standby_slots") > 0; }, 100));
    EXPECT_EQ(conf()["hot_standby_feedback"], "off") << "the config key's value applies";
    EXPECT_EQ(conf().count("sync_replication_slots"), 0u);
}
