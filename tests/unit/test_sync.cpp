// Synchronous replication: the dynamic settings, the leader's choice of sync
// standbys and the order of its steps (core/sync_rules), and who may be
// promoted (state machine, switchover rules).
#include <gtest/gtest.h>

#include "core/dynamic_config.hpp"
#include "core/ha_state_machine.hpp"
#include "core/operator_rules.hpp"
#include "core/sync_rules.hpp"
#include "sync_fixtures.hpp"

using namespace pgha;
using nlohmann::json;

namespace {

Member member(const std::string &name, const std::string &role = "replica", Lsn pos = 1000) {
    return test::sync_member(name, role, pos);
}

WalSender ws(const std::string &name, Lsn flush, const std::string &sync_state = "async",
             const std::string &state = "streaming") {
    return test::walsender_at(name, flush, sync_state, state);
}

SyncInput input() {
    SyncInput in;
    in.me = "pg-1";
    in.config.synchronous_mode = true;
    in.members = {member("pg-1", "primary"), member("pg-2"), member("pg-3")};
    in.walsenders = {ws("pg-2", 900), ws("pg-3", 950)};
    in.primary_lsn = 1000;
    in.key.leader = "pg-1";
    in.ssn_managed = true;
    in.grace_ms = 10000;
    return in;
}

std::string ssn(std::vector<std::string> names) { return format_synchronous_standby_names(names); }

}  // namespace

// ---- settings --------------------------------------------------------------

TEST(SyncConfig, ModesCountAndLag) {
    std::vector<std::string> errors;
    auto c = DynamicConfig::from_json(json{{"synchronous_mode", "on"}, {"synchronous_node_count", 2},
                                           {"maximum_lag_on_syncnode", 1024}},
                                      errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_TRUE(c.synchronous_mode);
    EXPECT_FALSE(c.synchronous_mode_quorum);
    EXPECT_EQ(c.synchronous_node_count, 2);
    EXPECT_EQ(c.maximum_lag_on_syncnode, 1024);
    c = DynamicConfig::from_json(json{{"synchronous_mode", true}}, errors);
    EXPECT_TRUE(c.synchronous_mode);
    EXPECT_EQ(c.synchronous_node_count, 1);
    EXPECT_EQ(c.maximum_lag_on_syncnode, -1);
    c = DynamicConfig::from_json(json{{"synchronous_mode", "off"}}, errors);
    EXPECT_FALSE(c.synchronous_mode);
    EXPECT_TRUE(errors.empty());
    c = DynamicConfig::from_json(json{{"synchronous_mode", "quorum"}}, errors);
    EXPECT_TRUE(c.synchronous_mode_quorum);
    EXPECT_EQ(c.to_json()["synchronous_mode"], "quorum");
}

TEST(SyncConfig, InvalidValuesAndCombinationsAreRefusedWithTheReason) {
    auto bad = [](const json &patch) {
        auto r = apply_config_patch(json{{"ttl", 30}}, patch, false);
        return r.ok() ? std::string() : config_errors_text(r.errors);
    };
    EXPECT_EQ(bad(json{{"synchronous_mode", true}, {"synchronous_mode_strict", true}}), "");
    EXPECT_NE(bad(json{{"synchronous_mode", "maybe"}}).find("synchronous_mode: expected a boolean"), std::string::npos);
    EXPECT_NE(bad(json{{"synchronous_node_count", 0}}).find("synchronous_node_count"), std::string::npos);
    EXPECT_NE(bad(json{{"synchronous_node_count", "x"}}).find("synchronous_node_count"), std::string::npos);
    EXPECT_NE(bad(json{{"maximum_lag_on_syncnode", -2}}).find("maximum_lag_on_syncnode"), std::string::npos);
    EXPECT_NE(bad(json{{"synchronous_mode_strict", true}}).find("synchronous_mode_strict requires synchronous_mode"),
              std::string::npos);
    EXPECT_EQ(bad(json{{"synchronous_mode", "quorum"}}), "");  // quorum commit (test_sync_quorum.cpp)
    EXPECT_NE(bad(json{{"synchronous_mode", "quorum"}, {"synchronous_node_count", 0}}).find("synchronous_node_count"),
              std::string::npos);
}

// ---- synchronous_standby_names ----------------------------------------------

TEST(SyncNames, FormatAndParse) {
    EXPECT_EQ(ssn({}), "");
    EXPECT_EQ(ssn({"pg-2"}), "1 (\"pg-2\")");
    EXPECT_EQ(ssn({"a", "b\"c"}), "2 (\"a\",\"b\"\"c\")");
    int num;
    bool any;
    std::vector<std::string> names;
    ASSERT_TRUE(parse_synchronous_standby_names(ssn({"a", "b\"c"}), num, names, any));
    EXPECT_EQ(num, 2);
    EXPECT_EQ(names, (std::vector<std::string>{"a", "b\"c"}));
    ASSERT_TRUE(parse_synchronous_standby_names("FIRST 1 (x, y)", num, names, any));
    EXPECT_EQ(num, 1);
    EXPECT_EQ(names, (std::vector<std::string>{"x", "y"}));
    ASSERT_TRUE(parse_synchronous_standby_names("ANY 2 (x,y,z)", num, names, any));
    EXPECT_TRUE(any);
    ASSERT_TRUE(parse_synchronous_standby_names("x, y", num, names, any));
    EXPECT_EQ(num, 1);
    ASSERT_TRUE(parse_synchronous_standby_names("  ", num, names, any));
    EXPECT_TRUE(names.empty());
    EXPECT_FALSE(parse_synchronous_standby_names("1 (x", num, names, any));
    EXPECT_FALSE(parse_synchronous_standby_names("1 (\"x)", num, names, any));
    EXPECT_FALSE(parse_synchronous_standby_names("x,,y", num, names, any));
}

// ---- choosing and ordering ----------------------------------------------------

TEST(SyncPlan, NewLeaderTakesTheKeyFirst) {
    auto in = input();
    in.key = SyncState{"pg-0", {"pg-1"}};
    auto p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_EQ(p.key.leader, "pg-1");
    EXPECT_TRUE(p.key.sync_standby.empty());
}

TEST(SyncPlan, AddingSetsTheServerFirstAndNamesOnlyAConfirmedStandby) {
    auto in = input();
    // Least lag wins: pg-3.
    auto p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::SetSsn);
    EXPECT_EQ(p.ssn, ssn({"pg-3"}));
    // The server lists it but pg_stat_replication does not show it as sync yet: nothing to do.
    in.ssn = p.ssn;
    p = plan_sync(in);
    EXPECT_EQ(p.step, SyncStep::None);
    // Confirmed: now the key names it.
    in.walsenders[1].sync_state = "sync";
    p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_EQ(p.key.sync_standby, (std::vector<std::string>{"pg-3"}));
    in.key = p.key;
    EXPECT_EQ(plan_sync(in).step, SyncStep::None);
}

TEST(SyncPlan, RemovingClearsTheKeyFirstThenTheServer) {
    auto in = input();
    in.ssn = ssn({"pg-3"});
    in.key.sync_standby = {"pg-3"};
    in.walsenders = {ws("pg-2", 900)};  // pg-3 gone
    in.unhealthy_ms["pg-3"] = 10000;    // for the whole grace
    auto p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_TRUE(p.key.sync_standby.empty());
    in.key = p.key;
    p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::SetSsn);
    EXPECT_EQ(p.ssn, ssn({"pg-2"}));
}

TEST(SyncPlan, StableWhileHealthyEvenWhenAnotherHasLessLag) {
    auto in = input();
    in.ssn = ssn({"pg-2"});
    in.key.sync_standby = {"pg-2"};
    in.walsenders = {ws("pg-2", 900, "sync"), ws("pg-3", 1000)};
    EXPECT_EQ(plan_sync(in).step, SyncStep::None);
    // Equal lag: the current one stays too.
    in.walsenders = {ws("pg-2", 1000, "sync"), ws("pg-3", 1000)};
    EXPECT_EQ(plan_sync(in).step, SyncStep::None);
    // Equal lag, nothing current: the name breaks the tie.
    in = input();
    in.walsenders = {ws("pg-3", 1000), ws("pg-2", 1000)};
    EXPECT_EQ(plan_sync(in).ssn, ssn({"pg-2"}));
}

TEST(SyncPlan, ABlipWithinTheGraceKeepsTheStandby) {
    auto in = input();
    in.ssn = ssn({"pg-2"});
    in.key.sync_standby = {"pg-2"};
    in.walsenders = {ws("pg-2", 900, "sync", "catchup"), ws("pg-3", 1000)};
    in.unhealthy_ms["pg-2"] = 9999;
    auto p = plan_sync(in);
    EXPECT_EQ(p.step, SyncStep::None);
    EXPECT_TRUE(p.degrade_pending);
    EXPECT_NE(p.message.find("pg-2 is not streaming"), std::string::npos);
    in.unhealthy_ms["pg-2"] = 10000;
    p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);  // replaced by pg-3: the key drops pg-2 first
    EXPECT_TRUE(p.key.sync_standby.empty());
}

TEST(SyncPlan, MaximumLagOnSyncnode) {
    auto in = input();
    in.config.maximum_lag_on_syncnode = 60;
    in.walsenders = {ws("pg-2", 900), ws("pg-3", 930)};
    auto p = plan_sync(in);
    EXPECT_EQ(p.step, SyncStep::None);  // nobody within 60 bytes, nothing listed
    EXPECT_TRUE(p.picked.empty());
    in.walsenders = {ws("pg-2", 990), ws("pg-3", 930)};
    EXPECT_EQ(plan_sync(in).ssn, ssn({"pg-2"}));
    EXPECT_NE(sync_candidate_problem(in, "pg-3").find("maximum_lag_on_syncnode"), std::string::npos);
}

TEST(SyncPlan, NosyncNonMembersAndNonStreamingAreNeverPicked) {
    auto in = input();
    in.members[1].tags.nosync = true;  // pg-2
    in.walsenders = {ws("pg-2", 1000), ws("pg-3", 500, "async", "catchup"), ws("pg-9", 1000),
                     ws("pg-1", 1000)};
    auto p = plan_sync(in);
    EXPECT_TRUE(p.picked.empty());
    EXPECT_EQ(p.step, SyncStep::None);
    // nosync set on the current standby: dropped at once, no grace.
    in = input();
    in.ssn = ssn({"pg-2"});
    in.key.sync_standby = {"pg-2"};
    in.members[1].tags.nosync = true;
    p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_TRUE(p.key.sync_standby.empty());
}

TEST(SyncPlan, NodeCountPicksTheLeastLagged) {
    auto in = input();
    in.config.synchronous_node_count = 2;
    in.members.push_back(member("pg-4"));
    in.walsenders = {ws("pg-2", 900), ws("pg-3", 950), ws("pg-4", 990)};
    EXPECT_EQ(plan_sync(in).ssn, ssn({"pg-4", "pg-3"}));
    in.config.synchronous_node_count = 5;
    EXPECT_EQ(plan_sync(in).ssn, ssn({"pg-4", "pg-3", "pg-2"}));
}

TEST(SyncPlan, NonStrictDegradesAfterTheGraceAndRecovers) {
    auto in = input();
    in.ssn = ssn({"pg-2"});
    in.key.sync_standby = {"pg-2"};
    in.walsenders = {};
    in.unhealthy_ms["pg-2"] = 3000;
    EXPECT_EQ(plan_sync(in).step, SyncStep::None);  // writes wait during the grace
    in.unhealthy_ms["pg-2"] = 10000;
    auto p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_TRUE(p.key.sync_standby.empty());
    EXPECT_EQ(p.key.leader, "pg-1");
    in.key = p.key;
    p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::SetSsn);
    EXPECT_EQ(p.ssn, "");
    in.ssn = "";
    EXPECT_EQ(plan_sync(in).step, SyncStep::None);
    // It comes back.
    in.walsenders = {ws("pg-2", 1000)};
    EXPECT_EQ(plan_sync(in).ssn, ssn({"pg-2"}));
}

TEST(SyncPlan, StrictKeepsWaitingVisiblyAndUsesAPlaceholderWhenNobodyWasListed) {
    auto in = input();
    in.config.synchronous_mode_strict = true;
    in.ssn = ssn({"pg-2"});
    in.key.sync_standby = {"pg-2"};
    in.walsenders = {};
    in.unhealthy_ms["pg-2"] = 60000;
    auto p = plan_sync(in);
    EXPECT_EQ(p.step, SyncStep::None);
    EXPECT_TRUE(p.strict_waiting);
    EXPECT_NE(p.message.find("commits wait for pg-2"), std::string::npos);
    EXPECT_NE(p.message.find("pg-2 is not connected"), std::string::npos);
    // Nothing listed yet: a placeholder nobody matches (not '*', which any standby would satisfy).
    in.ssn = "";
    in.key.sync_standby = {};
    p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::SetSsn);
    EXPECT_EQ(p.ssn, ssn({kStrictPlaceholder}));
    EXPECT_TRUE(p.strict_waiting);
    in.ssn = p.ssn;
    EXPECT_EQ(plan_sync(in).step, SyncStep::None);
    // A standby arrives: the placeholder is replaced.
    in.walsenders = {ws("pg-3", 1000)};
    p = plan_sync(in);
    EXPECT_FALSE(p.strict_waiting);
    EXPECT_EQ(p.ssn, ssn({"pg-3"}));
}

TEST(SyncPlan, OffClearsTheKeyFirstThenOnlyWhatPgHaWrote) {
    auto in = input();
    in.config.synchronous_mode = false;
    in.ssn = ssn({"pg-2"});
    in.key.sync_standby = {"pg-2"};
    auto p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_TRUE(p.key.empty());
    in.key = SyncState{};
    p = plan_sync(in);
    ASSERT_EQ(p.step, SyncStep::SetSsn);
    EXPECT_EQ(p.ssn, "");
    in.ssn_managed = false;  // the operator's own value stays
    EXPECT_EQ(plan_sync(in).step, SyncStep::None);
}

TEST(SyncPlan, ForeignOrAnyValueIsReplaced) {
    auto in = input();
    in.ssn = "ANY 1 (pg-3)";
    EXPECT_EQ(plan_sync(in).ssn, ssn({"pg-3"}));
    in.ssn = "1 (pg-3, pg-2)";  // FIRST 1 of two: pg-2 could confirm instead of pg-3
    EXPECT_EQ(plan_sync(in).ssn, ssn({"pg-3"}));
}

// The invariant over many sequences: after any step, every standby the key
// names is one the server waits for (listed in synchronous_standby_names).
TEST(SyncPlan, KeyNeverNamesAStandbyTheServerDoesNotWaitFor) {
    for (int seed = 0; seed < 400; ++seed) {
        auto in = input();
        in.members.push_back(member("pg-4"));
        unsigned r = static_cast<unsigned>(seed) * 2654435761u;
        auto next = [&r] { r = r * 1103515245u + 12345u; return (r >> 16) & 0x7fff; };
        in.config.synchronous_node_count = 1 + next() % 2;
        for (int stepno = 0; stepno < 30; ++stepno) {
            // Random world: who streams, lag, nosync.
            in.walsenders.clear();
            for (const char *n : {"pg-2", "pg-3", "pg-4"}) {
                if (next() % 4 == 0) continue;
                int num;
                bool any;
                std::vector<std::string> listed;
                parse_synchronous_standby_names(in.ssn, num, listed, any);
                bool is_listed = std::find(listed.begin(), listed.end(), n) != listed.end();
                in.walsenders.push_back(ws(n, 900 + next() % 100, is_listed ? "sync" : "async"));
            }
            for (auto &m : in.members) m.tags.nosync = m.name != "pg-1" && next() % 10 == 0;
            in.unhealthy_ms.clear();
            for (const char *n : {"pg-2", "pg-3", "pg-4"}) in.unhealthy_ms[n] = next() % 20000;
            auto p = plan_sync(in);
            if (p.step == SyncStep::WriteKey) in.key = p.key;
            if (p.step == SyncStep::SetSsn) in.ssn = p.ssn;
            int num;
            bool any;
            std::vector<std::string> listed;
            ASSERT_TRUE(parse_synchronous_standby_names(in.ssn, num, listed, any));
            EXPECT_EQ(num, static_cast<int>(listed.size()));
            for (const auto &k : in.key.sync_standby)
                ASSERT_NE(std::find(listed.begin(), listed.end(), k), listed.end())
                    << "seed " << seed << " step " << stepno << ": key names " << k << ", server waits for '"
                    << in.ssn << "'";
        }
    }
}

// ---- who may be promoted -------------------------------------------------------

namespace {

Observation standby_without_leader(const std::string &me) {
    Observation o;
    o.me = me;
    o.role = LocalRole::Standby;
    o.running = true;
    o.dcs_ok = true;
    o.session_id = 42;
    o.local.system_identifier = "7000";
    o.local.timeline = 1;
    o.local.in_recovery = true;
    o.local.receive_lsn = o.local.replay_lsn = 900;
    o.cluster.initialize = "7000";
    o.cluster.config_present = true;
    o.cluster.config.synchronous_mode = true;
    o.cluster.sync = SyncState{"pg-1", {"pg-2"}};
    o.cluster.status_optime = 900;
    o.cluster.members = {member("pg-2", "replica", 900), member("pg-3", "replica", 950)};
    return o;
}

}  // namespace

TEST(SyncPromotion, OnlyTheSyncStandbyTakesTheLockEvenWhenAnAsyncOneIsAhead) {
    auto o = standby_without_leader("pg-2");
    auto d = decide(o);
    EXPECT_TRUE(d.has(ActionKind::AcquireLeader)) << d.message;
    o = standby_without_leader("pg-3");
    o.local.receive_lsn = o.local.replay_lsn = 950;
    d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("not a synchronous standby"), std::string::npos) << d.message;
    // Off: the most advanced one wins as before.
    o.cluster.config.synchronous_mode = false;
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
    // On but the key was never written (sync not active yet): no restriction.
    o.cluster.config.synchronous_mode = true;
    o.cluster.sync = SyncState{};
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(SyncPromotion, DegradedKeyLetsNobodyButTheOldLeaderTakeOver) {
    auto o = standby_without_leader("pg-2");
    o.cluster.members[1].xlog_location = 800;  // pg-3 behind: only the key holds pg-2 back
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader));
    o.cluster.sync = SyncState{"pg-1", {}};
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
}

TEST(SyncPromotion, NamedFailoverCandidateMustBeSynchronous) {
    auto o = standby_without_leader("pg-3");
    o.cluster.failover = FailoverRequest{"", "pg-3", ""};
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("not a synchronous standby"), std::string::npos) << d.message;
}

TEST(SyncPromotion, SwitchoverAndFailoverToAnAsyncMemberAreRefusedWithTheReason) {
    ClusterView v;
    v.leader = "pg-1";
    v.members = {member("pg-1", "primary"), member("pg-2"), member("pg-3", "replica", 2000)};
    v.config.synchronous_mode = true;
    v.sync = SyncState{"pg-1", {"pg-2"}};
    SwitchoverRequest req;
    req.candidate = "pg-3";
    auto r = check_switchover(v, req, 0);
    ASSERT_TRUE(std::holds_alternative<Refusal>(r));
    EXPECT_EQ(std::get<Refusal>(r).http_status, 412);
    EXPECT_NE(std::get<Refusal>(r).message.find("pg-3 is not a synchronous standby"), std::string::npos);
    req.candidate = "pg-2";
    EXPECT_TRUE(std::holds_alternative<SwitchoverPlan>(check_switchover(v, req, 0)));
    // No candidate: the sync one, although pg-3 is further ahead.
    req.candidate = "";
    r = check_switchover(v, req, 0);
    ASSERT_TRUE(std::holds_alternative<SwitchoverPlan>(r));
    EXPECT_EQ(std::get<SwitchoverPlan>(r).target, "pg-2");
    // Leader-less failover.
    v.leader.reset();
    req.failover = true;
    req.candidate = "pg-3";
    r = check_switchover(v, req, 0);
    ASSERT_TRUE(std::holds_alternative<Refusal>(r));
    EXPECT_NE(std::get<Refusal>(r).message.find("not a synchronous standby"), std::string::npos);
}
