// The HA state machine: every (leader situation x local role) transition.
#include <gtest/gtest.h>

#include "core/ha_state_machine.hpp"

using namespace pgha;

namespace {

Member member(const std::string &name, const std::string &role, Lsn pos, const std::string &state = "running") {
    Member m;
    m.name = name;
    m.role = role;
    m.state = state;
    m.conn_url = "postgres://10.0.0." + name.substr(name.size() - 1) + ":5432/postgres";
    m.api_url = "http://10.0.0." + name.substr(name.size() - 1) + ":8008/patroni";
    m.xlog_location = pos;
    return m;
}

Observation base(LocalRole role) {
    Observation o;
    o.me = "pg-1";
    o.role = role;
    o.running = role == LocalRole::Primary || role == LocalRole::Standby;
    o.dcs_ok = true;
    o.session_id = 42;
    o.local.system_identifier = "7000";
    o.local.timeline = 1;
    o.local.in_recovery = role != LocalRole::Primary;
    o.local.write_lsn = 1000;
    o.local.receive_lsn = 1000;
    o.local.replay_lsn = 1000;
    o.cluster.initialize = "7000";
    o.cluster.config_present = true;
    o.cluster.members = {member("pg-1", role == LocalRole::Primary ? "primary" : "replica", 1000),
                         member("pg-2", "replica", 900), member("pg-3", "replica", 800)};
    return o;
}

}  // namespace

TEST(StateMachine, PrimaryTakesFreeLock) {
    auto d = decide(base(LocalRole::Primary));
    EXPECT_TRUE(d.has(ActionKind::AcquireLeader));
    EXPECT_FALSE(d.is_leader);
    EXPECT_EQ(d.role, "primary");
}

TEST(StateMachine, PrimaryWithLockRenewsAndPublishes) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    o.cluster.status_optime = 500;
    auto d = decide(o);
    EXPECT_TRUE(d.is_leader);
    ASSERT_TRUE(d.has(ActionKind::WriteStatus));
    EXPECT_EQ(d.find(ActionKind::WriteStatus)->lsn, 1000u);
    ASSERT_TRUE(d.has(ActionKind::EnsureSlots));
    EXPECT_EQ(d.find(ActionKind::EnsureSlots)->names, (std::vector<std::string>{"pg_2", "pg_3"}));
    EXPECT_FALSE(d.has(ActionKind::Promote));
    EXPECT_FALSE(d.has(ActionKind::Demote));
}

TEST(StateMachine, LeaderWritesDefaultConfigWhenMissing) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    o.cluster.config_present = false;
    auto d = decide(o);
    EXPECT_TRUE(d.has(ActionKind::WriteDefaultConfig));
}

TEST(StateMachine, NoSlotsWhenDisabled) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    o.cluster.config.use_slots = false;
    EXPECT_FALSE(decide(o).has(ActionKind::EnsureSlots));
}

TEST(StateMachine, StaleLeaderFromOurOldSessionIsRemoved) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 7;  // not our session
    auto d = decide(o);
    EXPECT_TRUE(d.has(ActionKind::DeleteStaleLeader));
    EXPECT_FALSE(d.is_leader);
}

TEST(StateMachine, PrimaryDemotesWhenAnotherHoldsTheLock) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-2";
    auto d = decide(o);
    ASSERT_TRUE(d.has(ActionKind::Demote));
    EXPECT_EQ(d.find(ActionKind::Demote)->target, "pg-2");
}

TEST(StateMachine, PausedPrimaryDoesNotDemote) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-2";
    o.cluster.config.pause = true;
    EXPECT_FALSE(decide(o).has(ActionKind::Demote));
}

TEST(StateMachine, StandbyFollowsLeaderItIsNotConnectedTo) {
    auto o = base(LocalRole::Standby);
    o.cluster.leader = "pg-2";
    o.local.upstream_host = "10.0.0.3";
    o.local.upstream_port = 5432;
    auto d = decide(o);
    ASSERT_TRUE(d.has(ActionKind::Follow));
    EXPECT_EQ(d.find(ActionKind::Follow)->target, "pg-2");
    o.local.upstream_host = "10.0.0.2";
    EXPECT_FALSE(decide(o).has(ActionKind::Follow));
}

TEST(StateMachine, StandbyWaitsWhenLeaderMemberUnknown) {
    auto o = base(LocalRole::Standby);
    o.cluster.leader = "pg-9";
    auto d = decide(o);
    EXPECT_TRUE(d.actions.empty());
}

TEST(StateMachine, StandbyHoldingLockPromotes) {
    auto o = base(LocalRole::Standby);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    auto d = decide(o);
    EXPECT_TRUE(d.has(ActionKind::Promote));
    EXPECT_TRUE(d.is_leader);
    o.cluster.config.pause = true;
    EXPECT_FALSE(decide(o).has(ActionKind::Promote));
}

TEST(StateMachine, RecoveringPrimaryKeepsLockWithoutActing) {
    auto o = base(LocalRole::Recovering);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    auto d = decide(o);
    EXPECT_TRUE(d.is_leader);
    EXPECT_FALSE(d.has(ActionKind::Promote));
    EXPECT_FALSE(d.has(ActionKind::Demote));
}

TEST(StateMachine, HealthiestStandbyTakesFreeLock) {
    auto o = base(LocalRole::Standby);
    o.cluster.status_optime = 1000;
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, StandbyBehindAPeerDoesNotTakeLock) {
    auto o = base(LocalRole::Standby);
    o.cluster.members[1].xlog_location = 2000;
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("pg-2 is ahead"), std::string::npos) << d.message;
}

TEST(StateMachine, TieBreaksByName) {
    auto o = base(LocalRole::Standby);
    o.me = "pg-3";
    o.cluster.members[0].role = "replica";
    o.cluster.members[0].xlog_location = 1000;  // pg-1 as far as we are
    o.cluster.members[2] = member("pg-3", "replica", 1000);
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("wins the tie"), std::string::npos) << d.message;
}

TEST(StateMachine, UnreachablePeerDoesNotBlockFailover) {
    auto o = base(LocalRole::Standby);
    o.cluster.members[1].xlog_location = 2000;
    o.peers_checked = true;  // pg-2 did not answer on its API
    o.peer_positions = {{"pg-3", 800}};
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, NofailoverNeverTakesLock) {
    auto o = base(LocalRole::Standby);
    o.tags.nofailover = true;
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("nofailover"), std::string::npos);
}

TEST(StateMachine, LaggingStandbyNeverTakesLock) {
    auto o = base(LocalRole::Standby);
    o.cluster.status_optime = 1000 + 2 * 1048576;
    o.cluster.members[1].xlog_location = 0;
    o.cluster.members[2].xlog_location = 0;
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("maximum_lag_on_failover"), std::string::npos) << d.message;
}

TEST(StateMachine, NotRunningStandbyNeverTakesLock) {
    auto o = base(LocalRole::Standby);
    o.running = false;
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, PausedClusterNobodyTakesOver) {
    auto o = base(LocalRole::Standby);
    o.cluster.config.pause = true;
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, ForeignSystemIdentifierTakesNoAction) {
    auto o = base(LocalRole::Primary);
    o.cluster.initialize = "9999";
    auto d = decide(o);
    EXPECT_TRUE(d.actions.empty());
    EXPECT_NE(d.message.find("does not belong"), std::string::npos);
}

TEST(StateMachine, MissingInitializeIsWrittenByRunningPrimary) {
    auto o = base(LocalRole::Primary);
    o.cluster.initialize.reset();
    EXPECT_TRUE(decide(o).has(ActionKind::WriteInitialize));
}

TEST(StateMachine, PrimaryOnOldTimelineDoesNotTakeLock) {
    auto o = base(LocalRole::Primary);
    o.cluster.history = {HistoryEntry{1, 500, "promoted", "", "pg-2"}};  // cluster is on timeline 2
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, NewlyPromotedLeaderRecordsHistory) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    o.local.timeline = 2;
    EXPECT_TRUE(decide(o).has(ActionKind::RecordPromotion));
    o.cluster.history = {HistoryEntry{1, 500, "promoted", "", "pg-1"}};
    EXPECT_FALSE(decide(o).has(ActionKind::RecordPromotion));
}

TEST(StateMachine, NoZooKeeperNoAction) {
    for (auto role : {LocalRole::Primary, LocalRole::Standby, LocalRole::Recovering, LocalRole::Stopped}) {
        auto o = base(role);
        o.dcs_ok = false;
        auto d = decide(o);
        EXPECT_TRUE(d.actions.empty()) << to_string(role);
    }
}
