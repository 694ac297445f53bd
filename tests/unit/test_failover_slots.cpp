// PostgreSQL 17's failover logical slots (core/failover_slots): which
// settings pg_ha keeps, on which servers, and which members' physical slots
// the primary waits for before a logical consumer gets a change.
#include "core/no_postgres.hpp"

#include <gtest/gtest.h>

#include <map>

#include "core/failover_slots.hpp"
#include "sync_fixtures.hpp"

using namespace pgha;
using pgha::test::sync_member;

namespace {

struct World {
    ClusterView view;
    FailoverSlotInputs in;
    World() {
        view.members = {sync_member("pg-1", "primary"), sync_member("pg-2"), sync_member("pg-3")};
        in.server_version = 170012;
        in.me = "pg-1";
        in.physical_slots = {"pg_2", "pg_3"};
        in.wal_level_logical = true;
    }
    FailoverSlotPlan plan() {
        in.view = &view;
        return plan_failover_slots(in);
    }
    Member &member(const std::string &name) {
        for (auto &m : view.members)
            if (m.name == name) return m;
        throw std::runtime_error("no member " + name);
    }
};

std::map<std::string, std::string> as_map(const ConfParams &p) { return {p.begin(), p.end()}; }

std::string standby_slots(World &w) {
    const FailoverSlotPlan p = w.plan();
    EXPECT_TRUE(p.active) << p.inactive_why;
    return as_map(p.params)["synchronized_standby_slots"];
}

}  // namespace

TEST(FailoverSlots, OnSeventeenEveryMemberKeepsTheThreeSettings) {
    World w;
    const FailoverSlotPlan p = w.plan();
    ASSERT_TRUE(p.active) << p.inactive_why;
    auto m = as_map(p.params);
    EXPECT_EQ(m.size(), failover_slot_parameter_names().size());
    for (const auto &name : failover_slot_parameter_names()) EXPECT_EQ(m.count(name), 1u) << name;
    EXPECT_EQ(m["hot_standby_feedback"], "on");
    EXPECT_EQ(m["sync_replication_slots"], "on");
    EXPECT_EQ(m["synchronized_standby_slots"], "pg_2,pg_3");
    // A standby computes the list it would need as a primary: the others, never the primary.
    w.in.me = "pg-2";
    w.in.physical_slots = {"pg_1", "pg_3"};
    EXPECT_EQ(standby_slots(w), "pg_3");
}

TEST(FailoverSlots, WithoutLogicalWalLevelTheSlotSyncWorkerStaysOff) {
    // PostgreSQL's slot sync worker refuses wal_level replica (and says so
    // every few seconds); there is no logical slot to copy either. The other
    // two settings are kept: the list follows the members all the same.
    World w;
    w.in.wal_level_logical = false;
    const FailoverSlotPlan p = w.plan();
    ASSERT_TRUE(p.active) << p.inactive_why;
    auto m = as_map(p.params);
    EXPECT_EQ(m["sync_replication_slots"], "off");
    EXPECT_EQ(m["hot_standby_feedback"], "on");
    EXPECT_EQ(m["synchronized_standby_slots"], "pg_2,pg_3");
}

TEST(FailoverSlots, InactiveBeforeSeventeenWhenTurnedOffOrWithoutSlots) {
    for (int version : {0, 150018, 160009}) {
        World w;
        w.in.server_version = version;
        const FailoverSlotPlan p = w.plan();
        EXPECT_FALSE(p.active) << version;
        EXPECT_TRUE(p.params.empty());
        EXPECT_NE(p.inactive_why.find("17"), std::string::npos) << p.inactive_why;
    }
    World off;
    off.view.config.logical_slot_failover = false;
    EXPECT_FALSE(off.plan().active);
    EXPECT_NE(off.plan().inactive_why.find("logical_slot_failover"), std::string::npos);
    World noslots;
    noslots.view.config.use_slots = false;
    EXPECT_FALSE(noslots.plan().active);
    EXPECT_NE(noslots.plan().inactive_why.find("use_slots"), std::string::npos);
    EXPECT_FALSE(plan_failover_slots(FailoverSlotInputs{}).active);  // no view: nothing
}

TEST(FailoverSlots, OnlyMembersThatMayBePromotedAreWaitedFor) {
    World w;
    w.member("pg-3").tags.nofailover = true;
    EXPECT_EQ(standby_slots(w), "pg_2");
    w.member("pg-3").tags.nofailover = false;
    for (const char *state : {"starting", "stopped", "restarting", "creating replica"}) {
        w.member("pg-2").state = state;
        EXPECT_EQ(standby_slots(w), "pg_3") << state;
    }
    w.member("pg-2").state = "running";
    // A second primary in the view (an old leader that has not stepped down) is no standby.
    w.member("pg-3").role = "primary";
    EXPECT_EQ(standby_slots(w), "pg_2");
    w.member("pg-3").role = "replica";
    // A member whose slot is not on this node yet: PostgreSQL would refuse the whole list.
    w.in.physical_slots = {"pg_3"};
    EXPECT_EQ(standby_slots(w), "pg_3");
    w.in.physical_slots = {};
    EXPECT_EQ(standby_slots(w), "");
}

TEST(FailoverSlots, SynchronousModeWaitsForTheSynchronousStandbysOnly) {
    World w;
    w.view.config.synchronous_mode = true;
    w.view.sync.leader = "pg-1";
    w.view.sync.sync_standby = {"pg-3"};
    EXPECT_EQ(standby_slots(w), "pg_3");
    w.view.sync.sync_standby = {};
    EXPECT_EQ(standby_slots(w), "");
    w.view.sync.sync_standby = {"pg-2", "pg-3"};
    EXPECT_EQ(standby_slots(w), "pg_2,pg_3");
    // A sync key someone else wrote: nobody but its leader may be promoted.
    w.view.sync.valid = false;
    EXPECT_EQ(standby_slots(w), "");
}

TEST(FailoverSlots, ConfigKeyTurnsItOffAndRejectsANonBoolean) {
    std::vector<std::string> errors;
    DynamicConfig c = DynamicConfig::from_json(nlohmann::json::parse(R"({"logical_slot_failover": false})"), errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_FALSE(c.logical_slot_failover);
    c = DynamicConfig::from_json(nlohmann::json::object(), errors);
    EXPECT_TRUE(c.logical_slot_failover);
    EXPECT_EQ(c.to_json()["logical_slot_failover"], true);
    c = DynamicConfig::from_json(nlohmann::json::parse(R"({"logical_slot_failover": "maybe"})"), errors);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].find("logical_slot_failover"), std::string::npos);
    EXPECT_TRUE(c.logical_slot_failover);
}

// pg_hactl boot and the worker apply the config key's parameters through the
// same rule: the owned ones are left out (and kept in pg_ha.auto.conf) while
// active, applied like any other when not.
TEST(FailoverSlots, ConfigKeyParametersLeaveOutTheOwnedOnesWhileActive) {
    std::vector<std::string> errors;
    const DynamicConfig c = DynamicConfig::from_json(
        nlohmann::json::parse(R"({"postgresql": {"parameters": {"hot_standby_feedback": false, "work_mem": "8MB",
                                  "synchronized_standby_slots": "x"}}})"),
        errors);
    ASSERT_TRUE(errors.empty());
    std::vector<std::string> keep;
    ClusterParameters cp = member_parameters(c, {}, false, 170012, keep);
    EXPECT_EQ(cp.apply, (std::vector<std::pair<std::string, std::string>>{{"work_mem", "8MB"}}));
    EXPECT_EQ(cp.skipped.size(), 2u);
    EXPECT_EQ(std::set<std::string>(keep.begin(), keep.end()),
              (std::set<std::string>{"hot_standby_feedback", "sync_replication_slots", "synchronized_standby_slots",
                                     "work_mem"}));
    cp = member_parameters(c, {}, false, 150018, keep);
    EXPECT_EQ(cp.apply.size(), 3u);
    EXPECT_TRUE(cp.skipped.empty());
    EXPECT_EQ(std::set<std::string>(keep.begin(), keep.end()),
              (std::set<std::string>{"hot_standby_feedback", "synchronized_standby_slots", "work_mem"}));
}
