// The HA state machine: every (leader situation x local role) transition.
#include <gtest/gtest.h>

#include <functional>

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
    EXPECT_EQ(d.role, PublishedRole::Primary);
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

TEST(StateMachine, LeaderPublishesItsPositionOncePerLoop) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    o.cluster.status_optime = 500;
    o.status_due = false;  // written less than loop_wait ago
    auto d = decide(o);
    EXPECT_TRUE(d.is_leader);
    EXPECT_FALSE(d.has(ActionKind::WriteStatus));
    EXPECT_TRUE(d.has(ActionKind::EnsureSlots));  // the rest of the loop is unchanged
    o.cluster.status_optime = 0;                  // no optime at all yet: at once
    EXPECT_TRUE(decide(o).has(ActionKind::WriteStatus));
    o.cluster.status_optime = 500;
    o.status_due = true;
    EXPECT_TRUE(decide(o).has(ActionKind::WriteStatus));
    o.cluster.status_optime = 1000;  // unchanged: nothing to write
    EXPECT_FALSE(decide(o).has(ActionKind::WriteStatus));
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
    // ... unless it handed the lock to pg-2 in an operator's switchover.
    o.cluster.failover = FailoverRequest{"pg-1", "pg-2", ""};
    EXPECT_TRUE(decide(o).has(ActionKind::Demote));
    o.cluster.failover = FailoverRequest{"pg-1", "pg-3", ""};  // not to the holder
    EXPECT_FALSE(decide(o).has(ActionKind::Demote));
    o.cluster.failover = FailoverRequest{"pg-3", "pg-2", ""};  // someone else's
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

TEST(StateMachine, SwitchoverCandidateWaitsForTheOldLeadersStreamToEnd) {
    auto o = base(LocalRole::Standby);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    o.cluster.failover = FailoverRequest{"pg-2", "pg-1", ""};
    o.streaming = true;
    o.leader_for_ms = 0;
    // Handed the lock and still streaming from pg-2, which stops cleanly now:
    // no promotion until its shutdown checkpoint is here and the stream ended.
    auto d = decide(o);
    EXPECT_TRUE(d.is_leader);
    EXPECT_FALSE(d.has(ActionKind::Promote));
    EXPECT_TRUE(d.recheck_soon);
    EXPECT_NE(d.message.find("pg-2's stream to end"), std::string::npos) << d.message;
    o.leader_for_ms = kHandoverStreamWaitMs - 1;
    EXPECT_FALSE(decide(o).has(ActionKind::Promote));
    // The stream ended: promote.
    o.streaming = false;
    d = decide(o);
    EXPECT_TRUE(d.has(ActionKind::Promote));
    EXPECT_FALSE(d.recheck_soon);
    // Still streaming, but the wait is over (the old leader does not stop):
    // promote anyway (it rejoins with pg_rewind).
    o.streaming = true;
    o.leader_for_ms = kHandoverStreamWaitMs;
    EXPECT_TRUE(decide(o).has(ActionKind::Promote));
    // A failover without an old leader (it is gone), or a key naming us as
    // the leader: nothing to wait for.
    o.leader_for_ms = 0;
    o.cluster.failover = FailoverRequest{"", "pg-1", ""};
    EXPECT_TRUE(decide(o).has(ActionKind::Promote));
    o.cluster.failover = FailoverRequest{"pg-1", "pg-1", ""};
    EXPECT_TRUE(decide(o).has(ActionKind::Promote));
    o.cluster.failover.reset();
    EXPECT_TRUE(decide(o).has(ActionKind::Promote));
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

TEST(StateMachine, RecoveringPrimaryReleasesTheLockAfterPrimaryStartTimeout) {
    auto o = base(LocalRole::Recovering);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    o.cluster.config.master_start_timeout = 300;
    o.recovering_s = 299;
    auto d = decide(o);
    EXPECT_TRUE(d.is_leader);
    EXPECT_FALSE(d.has(ActionKind::ReleaseLeader));
    o.recovering_s = 300;
    d = decide(o);
    EXPECT_TRUE(d.has(ActionKind::ReleaseLeader));
    EXPECT_FALSE(d.is_leader);
    EXPECT_EQ(d.message, "crash recovery has taken 300 s, primary_start_timeout is 300 s: releasing the leader lock "
                         "(pg-2 can take over)");
    EXPECT_EQ(d.role, PublishedRole::Primary);
    // 0: at once
    o.cluster.config.master_start_timeout = 0;
    o.recovering_s = 0;
    EXPECT_TRUE(decide(o).has(ActionKind::ReleaseLeader));
    // -1: not a crash recovery (a standby being promoted is in recovery too)
    o.recovering_s = -1;
    EXPECT_FALSE(decide(o).has(ActionKind::ReleaseLeader));
    o.recovering_s = 0;
    // not while paused
    o.cluster.config.pause = true;
    EXPECT_FALSE(decide(o).has(ActionKind::ReleaseLeader));
    o.cluster.config.pause = false;
    // not when nobody can take over (not running, nofailover)
    o.cluster.members[1].state = "stopped";
    o.cluster.members[2].tags.nofailover = true;
    d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::ReleaseLeader));
    EXPECT_TRUE(d.is_leader);
    o.cluster.members[2].tags.nofailover = false;
    EXPECT_TRUE(decide(o).has(ActionKind::ReleaseLeader));
    // a standby (standby.signal) is never "recovering"
    auto s = base(LocalRole::Standby);
    s.cluster.leader = "pg-1";
    s.cluster.leader_owner = 42;
    s.cluster.config.master_start_timeout = 0;
    s.recovering_s = 1000;
    EXPECT_FALSE(decide(s).has(ActionKind::ReleaseLeader));
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

TEST(StateMachine, HistoryTimelineAtIntMaxDoesNotOverflow) {
    // newest_history_timeline is entry + 1: at INT_MAX it must not wrap to a
    // negative number (which would let an old primary take the lock).
    auto o = base(LocalRole::Primary);
    o.cluster.history = {HistoryEntry{2147483647, 500, "promoted", "", "pg-2"}};
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader)) << d.message;
    EXPECT_NE(d.message.find("timeline 2147483648"), std::string::npos) << d.message;
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

// ---- fencing without ZooKeeper, failsafe mode, REST cross-check, watchdog

TEST(StateMachine, LeaderWithoutZooKeeperKeepsWritingWhileLeaseValid) {
    auto o = base(LocalRole::Primary);
    o.dcs_ok = false;
    o.was_leader = true;
    o.lease_valid = true;
    auto d = decide(o);
    EXPECT_TRUE(d.actions.empty());
    EXPECT_NE(d.message.find("until the leader lease runs out"), std::string::npos);
}

TEST(StateMachine, LeaderWithoutZooKeeperFencesWhenLeaseRunsOut) {
    auto o = base(LocalRole::Primary);
    o.dcs_ok = false;
    o.was_leader = true;
    o.lease_valid = false;
    auto d = decide(o);
    ASSERT_TRUE(d.has(ActionKind::Demote));
    EXPECT_EQ(d.actions.size(), 1u);
    EXPECT_FALSE(d.is_leader);
}

// Patroni's retry_timeout: a lease that ran out while ZooKeeper stays
// connected waits for the late answer; commits are refused meanwhile.
TEST(StateMachine, LeaderInLeaseGraceDoesNotFenceYet) {
    auto o = base(LocalRole::Primary);
    o.dcs_ok = false;
    o.was_leader = true;
    o.lease_valid = false;
    o.lease_grace = true;
    auto d = decide(o);
    EXPECT_TRUE(d.actions.empty());
    EXPECT_NE(d.message.find("commits are refused"), std::string::npos) << d.message;
    o.lease_grace = false;
    EXPECT_TRUE(decide(o).has(ActionKind::Demote));
}

TEST(StateMachine, NoFencingWithoutZooKeeperWhenPausedOrNotLeaderOrStandby) {
    auto paused = base(LocalRole::Primary);
    paused.dcs_ok = false;
    paused.was_leader = true;
    paused.cluster.config.pause = true;
    EXPECT_TRUE(decide(paused).actions.empty());

    auto never_led = base(LocalRole::Primary);  // writes are refused by the lease anyway
    never_led.dcs_ok = false;
    EXPECT_TRUE(decide(never_led).actions.empty());

    auto standby = base(LocalRole::Standby);
    standby.dcs_ok = false;
    standby.was_leader = true;
    EXPECT_TRUE(decide(standby).actions.empty());
}

TEST(StateMachine, FailsafeLeaderIsFollowedInsteadOfRacing) {
    auto o = base(LocalRole::Standby);
    o.cluster.config.failsafe_mode = true;
    o.local.receive_lsn = o.local.replay_lsn = 5000;  // would win the race otherwise
    Member fl = member("pg-9", "primary", 4000);
    o.failsafe_leader = fl;
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    ASSERT_TRUE(d.has(ActionKind::Follow));
    EXPECT_EQ(d.find(ActionKind::Follow)->target, "pg-9");
    EXPECT_NE(d.message.find("failsafe"), std::string::npos);
}

TEST(StateMachine, PeerStillRunningAsPrimaryBlocksTakeover) {
    auto o = base(LocalRole::Standby);
    o.local.receive_lsn = o.local.replay_lsn = 5000;
    o.peers_checked = true;
    o.peer_positions = {{"pg-3", 800}};
    o.primaries_alive = {"pg-2"};
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("pg-2 still runs as a primary"), std::string::npos);
    o.primaries_alive.clear();
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, UnreachablePeerDropsOutOfTheRace) {
    auto o = base(LocalRole::Standby);
    o.local.receive_lsn = o.local.replay_lsn = 850;  // behind pg-2's znode (900)
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
    o.peers_checked = true;
    o.peer_positions = {{"pg-3", 800}};  // pg-2 did not answer
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
    o.peer_positions = {{"pg-2", 2000}, {"pg-3", 800}};  // its API is ahead of its znode
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, RequiredWatchdogFailureBlocksLeadership) {
    auto s = base(LocalRole::Standby);
    s.local.receive_lsn = s.local.replay_lsn = 5000;
    s.cannot_lead = "watchdog device /dev/watchdog is not usable";
    auto d = decide(s);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("watchdog"), std::string::npos);
    auto p = base(LocalRole::Primary);
    p.cannot_lead = "watchdog device /dev/watchdog is not usable";
    EXPECT_FALSE(decide(p).has(ActionKind::AcquireLeader));
}

// ---- switchover and manual failover (the `failover` key)

namespace {
Observation leader_obs() {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 42;
    return o;
}
FailoverRequest fo(const std::string &leader, const std::string &cand) {
    FailoverRequest f;
    f.leader = leader;
    f.candidate = cand;
    return f;
}
}  // namespace

TEST(Switchover, LeaderHandsOverToNamedCandidate) {
    auto o = leader_obs();
    o.cluster.failover = fo("pg-1", "pg-3");
    auto d = decide(o);
    ASSERT_TRUE(d.has(ActionKind::Handover));
    EXPECT_EQ(d.find(ActionKind::Handover)->target, "pg-3");
    EXPECT_FALSE(d.has(ActionKind::EnsureSlots));
}

TEST(Switchover, WithoutCandidateTheMostAdvancedEligibleMemberIsChosen) {
    auto o = leader_obs();
    o.cluster.failover = fo("pg-1", "");
    EXPECT_EQ(decide(o).find(ActionKind::Handover)->target, "pg-2");  // 900 > 800
    o.cluster.members[1].tags.nofailover = true;
    EXPECT_EQ(decide(o).find(ActionKind::Handover)->target, "pg-3");
    o.cluster.members[2].state = "stopped";
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::Handover));
    EXPECT_TRUE(d.has(ActionKind::ClearFailover));
    EXPECT_NE(d.message.find("no member can take over"), std::string::npos);
}

TEST(Switchover, IneligibleCandidatesAreRefusedAndTheKeyCleared) {
    for (auto mutate : std::vector<std::function<void(Observation &)>>{
             [](Observation &o) { o.cluster.failover = fo("pg-1", "pg-7"); },
             [](Observation &o) { o.cluster.members[1].tags.nofailover = true; },
             [](Observation &o) { o.cluster.members[1].state = "starting"; },
             [](Observation &o) { o.cluster.failover = fo("pg-3", "pg-2"); },
         }) {
        auto o = leader_obs();
        o.cluster.failover = fo("pg-1", "pg-2");
        mutate(o);
        auto d = decide(o);
        EXPECT_FALSE(d.has(ActionKind::Handover)) << d.message;
        EXPECT_TRUE(d.has(ActionKind::ClearFailover)) << d.message;
        // The engine logs a refusal from this field, not from the text.
        EXPECT_TRUE(d.failover_refused) << d.message;
    }
}

TEST(Switchover, RefusedFlagOnlyWhenTheKeyCannotBeHonoured) {
    auto o = leader_obs();
    o.cluster.failover = fo("pg-1", "pg-2");
    EXPECT_FALSE(decide(o).failover_refused);  // handing over
    o.cluster.failover = fo("pg-9", "pg-1");
    o.cluster.failover->leader = "";
    auto done = decide(o);  // the switchover to us is done: cleared, not refused
    EXPECT_TRUE(done.has(ActionKind::ClearFailover));
    EXPECT_FALSE(done.failover_refused);
    EXPECT_EQ(done.message, "switchover to pg-1 done");
    o.cluster.failover = fo("pg-3", "pg-2");
    auto other = decide(o);
    EXPECT_TRUE(other.failover_refused);
    EXPECT_EQ(other.message, "ignoring the failover key: it names pg-3 as the leader, not pg-1");
    o.cluster.failover = fo("pg-1", "pg-7");
    auto gone = decide(o);
    EXPECT_TRUE(gone.failover_refused);
    EXPECT_EQ(gone.message, "switchover not possible: member pg-7 does not exist");
    EXPECT_FALSE(decide(base(LocalRole::Standby)).failover_refused);
}

TEST(Switchover, ScheduledSwitchoverWaits) {
    auto o = leader_obs();
    o.cluster.failover = fo("pg-1", "pg-2");
    o.cluster.failover->scheduled_at = "2030-01-01T00:00:00+00:00";
    o.failover_due = false;
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::Handover));
    EXPECT_FALSE(d.has(ActionKind::ClearFailover));
    EXPECT_NE(d.message.find("scheduled"), std::string::npos);
    o.failover_due = true;
    EXPECT_TRUE(decide(o).has(ActionKind::Handover));
}

TEST(Switchover, CandidateTakesFreeLockAtOnceOthersWait) {
    auto o = base(LocalRole::Standby);  // pg-1 is a standby here, 1000 is the best position
    o.cluster.failover = fo("pg-9", "pg-3");
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("in progress"), std::string::npos);
    o.me = "pg-3";  // the candidate, behind pg-1 and pg-2: still takes it
    o.cluster.members[0].role = "replica";
    o.local.receive_lsn = o.local.replay_lsn = 800;
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
    o.tags.nofailover = true;
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(Switchover, CandidateGoneMeansNormalRace) {
    auto o = base(LocalRole::Standby);
    o.cluster.failover = fo("pg-9", "pg-3");
    o.cluster.members[2].state = "stopped";
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(Switchover, OldPrimaryDoesNotRetakeTheLockDuringHandover) {
    auto o = base(LocalRole::Primary);
    o.cluster.failover = fo("pg-1", "pg-2");
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("switchover to pg-2 in progress"), std::string::npos);
}

TEST(Switchover, NewLeaderClearsTheKey) {
    auto o = leader_obs();
    o.cluster.failover = fo("pg-9", "pg-1");
    o.cluster.failover->leader = "";
    EXPECT_TRUE(decide(o).has(ActionKind::ClearFailover));
}

TEST(Switchover, PausedClusterStillHonoursANamedCandidate) {
    auto o = base(LocalRole::Standby);
    o.me = "pg-3";
    o.cluster.members[0].role = "replica";
    o.cluster.config.pause = true;
    o.cluster.failover = fo("pg-1", "pg-3");
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
    o.cluster.leader = "pg-3";  // got it: promotes although paused
    o.cluster.leader_owner = 42;
    EXPECT_TRUE(decide(o).has(ActionKind::Promote));
    o.cluster.failover.reset();  // without the key, pause holds
    EXPECT_FALSE(decide(o).has(ActionKind::Promote));
    // the old primary does not grab the free lock back while paused
    auto p = base(LocalRole::Primary);
    p.cluster.config.pause = true;
    p.cluster.failover = fo("pg-1", "pg-3");
    EXPECT_FALSE(decide(p).has(ActionKind::AcquireLeader));
}

TEST(StateMachine, StandbyStuckOnAnOldTimelineRestartsToRewind) {
    auto o = base(LocalRole::Standby);
    o.cluster.leader = "pg-2";
    o.cluster.members[1].role = "primary";
    o.cluster.members[1].timeline = 2;
    o.local.upstream_host = "10.0.0.2";
    o.local.upstream_port = 5432;
    o.not_streaming_s = 45;
    auto d = decide(o);
    ASSERT_TRUE(d.has(ActionKind::Demote)) << d.message;
    EXPECT_NE(d.message.find("rewind"), std::string::npos);
    // a named demotion stops cleanly: pg_rewind takes "shut down in recovery"
    EXPECT_EQ(d.find(ActionKind::Demote)->target, "pg-2");
    o.not_streaming_s = 5;  // just reconnecting
    EXPECT_FALSE(decide(o).has(ActionKind::Demote));
    o.not_streaming_s = 45;
    o.local.timeline = 2;  // same timeline: a network problem, not a fork
    EXPECT_FALSE(decide(o).has(ActionKind::Demote));
    o.local.timeline = 1;
    o.cluster.config.pause = true;
    EXPECT_FALSE(decide(o).has(ActionKind::Demote));
}

// "I lead" is ownership of the leader znode, not its content.
TEST(StateMachine, OwnedLeaderZnodeWithForeignContentIsRepairedNotObeyed) {
    auto o = base(LocalRole::Primary);
    o.cluster.leader = "pg-2";  // someone rewrote the content
    o.cluster.leader_owner = 42;  // still our session's ephemeral node
    auto d = decide(o);
    EXPECT_TRUE(d.is_leader);
    EXPECT_TRUE(d.has(ActionKind::RepairLeader));
    EXPECT_FALSE(d.has(ActionKind::Demote));
    o.cluster.leader.reset();  // emptied content
    d = decide(o);
    EXPECT_TRUE(d.is_leader);
    EXPECT_TRUE(d.has(ActionKind::RepairLeader));
    // Content naming us but owned by another session is not ours.
    o.cluster.leader = "pg-1";
    o.cluster.leader_owner = 77;
    d = decide(o);
    EXPECT_FALSE(d.is_leader);
}

// A standby whose stream ended is woken to retry at once while the leader
// runs as a primary, within kStreamRetryWindowS of losing the stream.
TEST(StateMachine, StandbyRetriesItsStreamAtOnceWhileTheLeaderRuns) {
    auto o = base(LocalRole::Standby);
    o.cluster.leader = "pg-2";
    o.cluster.members[1].role = "primary";
    o.local.upstream_host = "10.0.0.2";
    o.local.upstream_port = 5432;
    o.streaming = false;
    o.not_streaming_s = 1;
    auto d = decide(o);
    EXPECT_TRUE(d.retry_stream) << d.message;
    EXPECT_FALSE(d.has(ActionKind::Follow));
    o.local.upstream_host = "10.0.0.9";  // re-pointed this loop: retry as well
    d = decide(o);
    EXPECT_TRUE(d.has(ActionKind::Follow));
    EXPECT_TRUE(d.retry_stream);
    o.local.upstream_host = "10.0.0.2";
    o.streaming = true;
    EXPECT_FALSE(decide(o).retry_stream) << "streaming: nothing to retry";
    o.streaming = false;
    o.not_streaming_s = kStreamRetryWindowS;
    EXPECT_FALSE(decide(o).retry_stream) << "past the window: the server's own pace";
    o.not_streaming_s = 1;
    o.cluster.members[1].state = "starting";
    EXPECT_FALSE(decide(o).retry_stream) << "the leader does not run: nothing to connect to";
    o.cluster.members[1].state = "running";
    o.cluster.members[1].role = "replica";  // holds the lock, not promoted yet
    EXPECT_FALSE(decide(o).retry_stream);
    o.cluster.members[1].role = "primary";
    for (LocalRole r : {LocalRole::Primary, LocalRole::Recovering, LocalRole::Stopped}) {
        auto p = o;
        p.role = r;
        EXPECT_FALSE(decide(p).retry_stream) << to_string(r);
    }
    auto none = o;
    none.cluster.leader.reset();
    EXPECT_FALSE(decide(none).retry_stream) << "no leader to stream from";
}
