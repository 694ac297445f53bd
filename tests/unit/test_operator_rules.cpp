// core/operator_rules: switchover/failover preconditions (one place for the
// engine, the state machine and pg_hactl) and "did it happen".
#include <gtest/gtest.h>

#include "core/operator_rules.hpp"
#include "core/timeutil.hpp"

using namespace pgha;

namespace {

constexpr std::int64_t kNow = 1900000000;  // 2030-03-17

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

ClusterView cluster(const std::string &leader = "pg-1") {
    ClusterView v;
    if (!leader.empty()) v.leader = leader;
    v.members = {member("pg-1", leader == "pg-1" ? "primary" : "replica", 1000), member("pg-2", "replica", 900),
                 member("pg-3", "replica", 800)};
    return v;
}

SwitchoverRequest sw(const std::string &candidate = "", const std::string &leader = "") {
    SwitchoverRequest r;
    r.candidate = candidate;
    r.leader = leader;
    return r;
}

SwitchoverRequest fo(const std::string &candidate) {
    SwitchoverRequest r;
    r.failover = true;
    r.candidate = candidate;
    return r;
}

Refusal refused(const SwitchoverCheck &c) {
    EXPECT_TRUE(std::holds_alternative<Refusal>(c));
    return std::holds_alternative<Refusal>(c) ? std::get<Refusal>(c) : Refusal{0, ""};
}

SwitchoverPlan planned(const SwitchoverCheck &c) {
    if (auto *r = std::get_if<Refusal>(&c)) ADD_FAILURE() << r->http_status << " " << r->message;
    return std::holds_alternative<SwitchoverPlan>(c) ? std::get<SwitchoverPlan>(c) : SwitchoverPlan{};
}

}  // namespace

TEST(OperatorCommand, NamesRoundTrip) {
    for (auto c : {OperatorCommand::Switchover, OperatorCommand::Failover, OperatorCommand::Pause,
                   OperatorCommand::Resume, OperatorCommand::SetConfig, OperatorCommand::ReplaceConfig,
                   OperatorCommand::Reload, OperatorCommand::Restart, OperatorCommand::Reinitialize,
                   OperatorCommand::CancelRestart}) {
        auto back = parse_operator_command(to_string(c));
        ASSERT_TRUE(back.has_value()) << to_string(c);
        EXPECT_EQ(*back, c);
    }
    EXPECT_STREQ(to_string(OperatorCommand::SetConfig), "set_config");
    EXPECT_STREQ(to_string(OperatorCommand::Reinitialize), "reinitialize");
    EXPECT_FALSE(parse_operator_command("Switchover").has_value());
    EXPECT_FALSE(parse_operator_command("").has_value());
}

TEST(CheckSwitchover, PlansWithAndWithoutCandidate) {
    auto p = planned(check_switchover(cluster(), sw("pg-2", "pg-1"), kNow));
    EXPECT_EQ(p.leader, "pg-1");
    EXPECT_EQ(p.target, "pg-2");
    EXPECT_EQ(p.scheduled_at, "");
    EXPECT_EQ(p.failover_key().leader, "pg-1");
    EXPECT_EQ(p.failover_key().candidate, "pg-2");
    // Without a candidate the key names the chosen member (the most advanced
    // eligible one), so the old leader cannot retake the lock it releases.
    auto any = planned(check_switchover(cluster(), sw(), kNow));
    EXPECT_EQ(any.target, best_switchover_candidate(cluster(), "pg-1"));
    EXPECT_FALSE(any.target.empty());
    EXPECT_EQ(any.failover_key().candidate, any.target);
}

TEST(CheckSwitchover, EveryRefusalWithItsStatusAndText) {
    struct Case {
        const char *what;
        ClusterView view;
        SwitchoverRequest req;
        int status;
        std::string message;
    };
    ClusterView pending = cluster();
    pending.failover = FailoverRequest{"pg-1", "pg-3", "2031-01-01T00:00:00+00:00"};
    ClusterView pending_any = cluster();
    pending_any.failover = FailoverRequest{"pg-1", "", ""};
    ClusterView paused = cluster();
    paused.config.pause = true;
    ClusterView nofail = cluster();
    nofail.members[2].tags.nofailover = true;
    ClusterView stopped = cluster();
    stopped.members[1].state = "stopped";
    ClusterView two_primaries = cluster();
    two_primaries.members[1].role = "primary";
    ClusterView nobody_left = cluster();
    nobody_left.members[1].state = "stopped";
    nobody_left.members[2].tags.nofailover = true;
    ClusterView leaderless = cluster("");
    ClusterView leaderless_nofail = leaderless;
    leaderless_nofail.members[1].tags.nofailover = true;
    ClusterView leaderless_stopped = leaderless;
    leaderless_stopped.members[1].state = "crashed";
    SwitchoverRequest scheduled = sw("pg-2");
    scheduled.scheduled_at = "2031-01-01T00:00:00+00:00";
    SwitchoverRequest past = sw("pg-2");
    past.scheduled_at = "2020-01-01T00:00:00+00:00";
    SwitchoverRequest garbage = sw("pg-2");
    garbage.scheduled_at = "tomorrow";
    SwitchoverRequest sql_failover = fo("pg-2");
    sql_failover.require_no_leader = true;
    SwitchoverRequest past_failover = fo("pg-2");
    past_failover.scheduled_at = "2020-01-01T00:00:00Z";

    const std::vector<Case> cases = {
        {"failover without candidate", cluster(), fo(""), 400,
         "Failover could be performed only to a specific candidate"},
        {"ha_failover() with a leader", cluster(), sql_failover, 412,
         "the cluster has a leader (pg-1): use a switchover to move a healthy primary"},
        {"switchover without leader", leaderless, sw("pg-2"), 412,
         "switchover is not possible: the cluster has no leader (use failover with a candidate)"},
        {"wrong leader", cluster(), sw("pg-1", "pg-2"), 412, "leader name does not match the current leader pg-1"},
        {"leader named, none exists", leaderless, [] { auto r = fo("pg-2"); r.leader = "pg-1"; return r; }(), 412,
         "leader name does not match the current leader (nobody)"},
        {"pending", pending, sw("pg-2"), 409,
         "a switchover or failover is already pending (to pg-3, at 2031-01-01T00:00:00+00:00); wait for it or clear it"},
        {"pending to any", pending_any, sw("pg-2"), 409,
         "a switchover or failover is already pending (to any member); wait for it or clear it"},
        {"paused without candidate", paused, sw(), 412,
         "switchover is possible only to a specific candidate in a paused state"},
        {"scheduled while paused", paused, scheduled, 412, "Can't schedule switchover in the paused state"},
        {"in the past", cluster(), past, 422, "Cannot schedule switchover in the past"},
        {"failover in the past", cluster(), past_failover, 422, "Cannot schedule failover in the past"},
        {"unparsable time", cluster(), garbage, 400,
         "Invalid scheduled_at: \"tomorrow\" is not an ISO 8601 timestamp with a time zone (e.g. "
         "2026-11-24T23:10:00+00:00)"},
        {"unknown candidate", cluster(), sw("pg-9"), 412, "switchover is not possible: member pg-9 does not exist"},
        {"nofailover candidate", nofail, sw("pg-3"), 412, "switchover is not possible: pg-3 is tagged nofailover"},
        {"the leader itself", cluster(), sw("pg-1"), 412, "switchover is not possible: pg-1 is already the leader"},
        {"stopped candidate", stopped, sw("pg-2"), 412,
         "switchover is not possible: pg-2 is not running (state stopped)"},
        {"candidate runs as primary", two_primaries, sw("pg-2"), 412,
         "switchover is not possible: pg-2 runs as a primary"},
        {"nobody eligible", nobody_left, sw(), 412, "switchover is not possible: no member can take over"},
        {"failover with leader: nofailover", nofail, fo("pg-3"), 412,
         "failover is not possible: pg-3 is tagged nofailover"},
        {"leaderless failover: unknown", leaderless, fo("pg-9"), 412,
         "failover is not possible: member pg-9 does not exist"},
        {"leaderless failover: nofailover", leaderless_nofail, fo("pg-2"), 412,
         "failover is not possible: pg-2 is tagged nofailover"},
        {"leaderless failover: not running", leaderless_stopped, fo("pg-2"), 412,
         "failover is not possible: pg-2 is not running (state crashed)"},
    };
    for (const auto &c : cases) {
        Refusal r = refused(check_switchover(c.view, c.req, kNow));
        EXPECT_EQ(r.http_status, c.status) << c.what;
        EXPECT_EQ(r.message, c.message) << c.what;
    }
}

TEST(CheckSwitchover, OrderOfChecks) {
    // A wrong --leader is reported before the candidate (pg_hactl's tests
    // rely on it: --leader pg-2 --candidate pg-1).
    EXPECT_EQ(refused(check_switchover(cluster(), sw("pg-1", "pg-2"), kNow)).message,
              "leader name does not match the current leader pg-1");
    // A pending request is reported before a bad candidate.
    ClusterView pending = cluster();
    pending.failover = FailoverRequest{"pg-1", "pg-2", ""};
    EXPECT_EQ(refused(check_switchover(pending, sw("pg-9"), kNow)).http_status, 409);
    // The time is checked before the candidate.
    SwitchoverRequest past = sw("pg-9");
    past.scheduled_at = "2020-01-01T00:00:00+00:00";
    EXPECT_EQ(refused(check_switchover(cluster(), past, kNow)).http_status, 422);
}

TEST(CheckSwitchover, ScheduledTimeIsNormalised) {
    SwitchoverRequest r = sw("pg-2");
    r.scheduled_at = "2031-01-01T02:00:00+02:00";
    auto p = planned(check_switchover(cluster(), r, kNow));
    EXPECT_EQ(p.scheduled_at, "2031-01-01T00:00:00+00:00");
    EXPECT_EQ(p.failover_key().scheduled_at, "2031-01-01T00:00:00+00:00");
    r.scheduled_at = format_iso8601(kNow);  // exactly now is not the past
    EXPECT_TRUE(std::holds_alternative<SwitchoverPlan>(check_switchover(cluster(), r, kNow)));
}

TEST(CheckSwitchover, FailoverPlans) {
    auto p = planned(check_switchover(cluster(""), fo("pg-2"), kNow));
    EXPECT_EQ(p.leader, "");
    EXPECT_EQ(p.target, "pg-2");
    // a failover to a lagging member is allowed (the operator chose it)
    ClusterView v = cluster("");
    v.status_optime = 1u << 30;
    EXPECT_TRUE(std::holds_alternative<SwitchoverPlan>(check_switchover(v, fo("pg-3"), kNow)));
    // with a leader, a failover is a switchover to the named member
    auto q = planned(check_switchover(cluster(), fo("pg-3"), kNow));
    EXPECT_EQ(q.leader, "pg-1");
    EXPECT_EQ(q.target, "pg-3");
    // pause does not stop a named failover
    ClusterView paused = cluster("");
    paused.config.pause = true;
    EXPECT_TRUE(std::holds_alternative<SwitchoverPlan>(check_switchover(paused, fo("pg-2"), kNow)));
}

TEST(SwitchoverTarget, BestCandidateAndIneligibility) {
    ClusterView v = cluster();
    EXPECT_EQ(best_switchover_candidate(v, "pg-1"), "pg-2");
    v.members[1].tags.nofailover = true;
    EXPECT_EQ(best_switchover_candidate(v, "pg-1"), "pg-3");
    std::string target;
    EXPECT_EQ(choose_switchover_target(v, "pg-1", "", target), "");
    EXPECT_EQ(target, "pg-3");
    EXPECT_EQ(choose_switchover_target(v, "pg-1", "pg-2", target), "pg-2 is tagged nofailover");
    EXPECT_EQ(target, "pg-2");
    v.members[2].state = "starting";
    EXPECT_EQ(choose_switchover_target(v, "pg-1", "", target), "no member can take over");
    EXPECT_EQ(target, "");
    EXPECT_EQ(switchover_ineligibility(v, "pg-1", "pg-1"), "pg-1 is already the leader");
}

// ---- assess_switchover --------------------------------------------------------

TEST(AssessSwitchover, WaitingWhileTheOldLeaderLeadsAndTheKeyIsThere) {
    ClusterView v = cluster();
    v.failover = FailoverRequest{"pg-1", "pg-2", ""};
    auto a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Waiting);
    EXPECT_EQ(a.probe, "");
    EXPECT_EQ(a.message, "");
}

TEST(AssessSwitchover, NewLeaderMustAnswerPrimaryBeforeDone) {
    ClusterView v = cluster("pg-2");
    auto a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Waiting);
    EXPECT_EQ(a.probe, "pg-2");
    a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", true, true);
    EXPECT_EQ(a.progress, SwitchoverProgress::Done);
    EXPECT_EQ(a.message, "Successfully switched over to \"pg-2\"");
    a = assess_switchover(v, OperatorCommand::Failover, "pg-1", "pg-2", false, true);
    EXPECT_EQ(a.progress, SwitchoverProgress::Done);
    EXPECT_EQ(a.message, "Successfully failed over to \"pg-2\"");
    // no target named: any new leader counts
    a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "", false, true);
    EXPECT_EQ(a.progress, SwitchoverProgress::Done);
}

TEST(AssessSwitchover, NewLeaderWithoutMemberDataOrApiIsNotProbed) {
    ClusterView v = cluster("pg-2");
    v.members[1].api_url.clear();
    auto a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Waiting);
    EXPECT_EQ(a.probe, "");
    v.members.erase(v.members.begin() + 1);
    a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Waiting);
    EXPECT_EQ(a.probe, "");
}

TEST(AssessSwitchover, AnotherMemberTookOver) {
    ClusterView v = cluster("pg-3");
    auto a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", false, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Diverted);
    EXPECT_EQ(a.message, "Switched over to \"pg-3\" instead of \"pg-2\"");
    a = assess_switchover(v, OperatorCommand::Failover, "", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Diverted);
    EXPECT_EQ(a.message, "Failed over to \"pg-3\" instead of \"pg-2\"");
}

TEST(AssessSwitchover, KeyConsumedButNothingChangedIsAFailure) {
    ClusterView v = cluster();  // pg-1 still leads, no key
    auto a = assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Failed);
    EXPECT_EQ(a.message,
              "Switchover failed: pg-1 is still the leader and the failover key is gone (see the members' logs)");
    // the key was never seen: maybe not written yet
    EXPECT_EQ(assess_switchover(v, OperatorCommand::Switchover, "pg-1", "pg-2", false, false).progress,
              SwitchoverProgress::Waiting);
    // nobody leads and the key is gone
    ClusterView none = cluster("");
    a = assess_switchover(none, OperatorCommand::Failover, "", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Failed);
    EXPECT_EQ(a.message, "Failover failed: nobody holds the leader lock and the failover key is gone (see the "
                         "members' logs)");
    a = assess_switchover(none, OperatorCommand::Switchover, "pg-1", "pg-2", true, false);
    EXPECT_EQ(a.progress, SwitchoverProgress::Failed);
    // the key is still there: waiting, even if seen
    none.failover = FailoverRequest{"", "pg-2", ""};
    EXPECT_EQ(assess_switchover(none, OperatorCommand::Failover, "", "pg-2", true, false).progress,
              SwitchoverProgress::Waiting);
}

TEST(AssessSwitchover, ProgressNames) {
    EXPECT_STREQ(to_string(SwitchoverProgress::Waiting), "waiting");
    EXPECT_STREQ(to_string(SwitchoverProgress::Done), "done");
    EXPECT_STREQ(to_string(SwitchoverProgress::Diverted), "diverted");
    EXPECT_STREQ(to_string(SwitchoverProgress::Failed), "failed");
}

// ---- POST /restart conditions (issue 12 item 4) ----------------------------------------

TEST(RestartConditions, PostgresVersionLikePatroni) {
    EXPECT_EQ(postgres_version_to_int("15.4"), 150004);
    EXPECT_EQ(postgres_version_to_int("17.12"), 170012);
    EXPECT_EQ(postgres_version_to_int("9.6.24"), 90624);
    for (const char *bad : {"", "15", "9.6", "15.4.1.2", "15.x", "a.b", "15..4", "-1.2", "15.4 ", "123456.1"})
        EXPECT_EQ(postgres_version_to_int(bad), -1) << bad;
}

TEST(RestartConditions, BodyIsValidatedWithPatronisWording) {
    auto refused = [](const char *body) {
        auto r = parse_restart_request(nlohmann::json::parse(body), kNow, false);
        const Refusal *x = std::get_if<Refusal>(&r);
        return x ? std::to_string(x->http_status) + " " + x->message : std::string("accepted");
    };
    EXPECT_EQ(refused("{}"), "accepted");
    EXPECT_EQ(refused(R"({"role": "replica", "postgres_version": "17.1", "restart_pending": true, "timeout": 30})"),
              "accepted");
    EXPECT_EQ(refused(R"({"role": "leader"})"), "400 PostgreSQL role should be either primary or replica");
    EXPECT_EQ(refused(R"({"role": 1})"), "400 PostgreSQL role should be either primary or replica");
    EXPECT_EQ(refused(R"({"postgres_version": "x"})").rfind("400 Invalid PostgreSQL version format", 0), 0u);
    EXPECT_EQ(refused(R"({"timeout": 0})"), "400 Timeout should be a positive number of seconds");
    EXPECT_EQ(refused(R"({"timeout": "5"})"), "400 Timeout should be a positive number of seconds");
    EXPECT_EQ(refused(R"({"force": true})"), "400 Unknown filter for the scheduled restart: force");
    EXPECT_EQ(refused("[]"), "400 Bad request: the body must be a JSON object");
    auto r = std::get<RestartRequest>(parse_restart_request(nlohmann::json::parse(R"({"role": "master"})"), kNow, false));
    EXPECT_EQ(r.role, "primary");
    EXPECT_EQ(r.schedule_epoch_s, 0);  // now
}

TEST(RestartConditions, TimeoutIsTheNextStartsPrimaryStartTimeout) {
    auto parse = [](const char *body) { return parse_restart_request(nlohmann::json::parse(body), kNow, false); };
    EXPECT_EQ(std::get<RestartRequest>(parse(R"({"timeout": 30})")).timeout_s, 30);
    EXPECT_EQ(std::get<RestartRequest>(parse(R"({"timeout": 2.5})")).timeout_s, 3) << "rounded up";
    EXPECT_EQ(std::get<RestartRequest>(parse(R"({})")).timeout_s, 0);
    for (const char *bad : {R"({"timeout": 0})", R"({"timeout": -3})", R"({"timeout": "30"})"})
        EXPECT_EQ(std::get<Refusal>(parse(bad)).http_status, 400) << bad;
    // carried to the next worker in the marker file
    EXPECT_EQ(restart_marker_text(0), "");
    EXPECT_EQ(restart_marker_timeout(restart_marker_text(45)), 45);
    for (const char *bad : {"", "timeout=", "timeout=abc", "timeout=99999999999", "x=5", " timeout=5"})
        EXPECT_EQ(restart_marker_timeout(bad), 0) << bad;
    // and used instead of the config key's primary_start_timeout
    ClusterView v = cluster();
    v.config.master_start_timeout = 300;
    EXPECT_EQ(crash_failover_target(v, "pg-1", true, 9, 10), "");
    EXPECT_EQ(crash_failover_target(v, "pg-1", true, 10, 10), "pg-2");
}

TEST(RestartConditions, ScheduleIsParsedAndRefusedAsPatroniDoes) {
    auto parse = [](const std::string &body, bool paused = false) {
        return parse_restart_request(nlohmann::json::parse(body), kNow, paused);
    };
    auto refused = [&](const std::string &body, bool paused = false) {
        auto r = parse(body, paused);
        const Refusal *x = std::get_if<Refusal>(&r);
        return x ? std::to_string(x->http_status) + " " + x->message : std::string("accepted");
    };
    const std::string future = format_iso8601(kNow + 60);
    auto r = std::get<RestartRequest>(parse(R"({"schedule": ")" + future + R"(", "role": "replica"})"));
    EXPECT_EQ(r.schedule_epoch_s, kNow + 60);
    EXPECT_EQ(r.schedule, future);
    EXPECT_EQ(r.role, "replica");
    // another zone, same instant, written back in UTC
    auto z = std::get<RestartRequest>(parse(R"({"schedule": ")" + format_iso8601(kNow + 3600).substr(0, 19) +
                                            R"(+01:00"})"));
    EXPECT_EQ(z.schedule_epoch_s, kNow);
    EXPECT_EQ(refused(R"({"schedule": ")" + format_iso8601(kNow - 1) + R"("})"), "422 Cannot schedule restart in the past");
    EXPECT_EQ(refused(R"({"schedule": "2030-01-01T00:00:00"})").rfind("400 Unable to parse scheduled timestamp", 0), 0u);
    EXPECT_EQ(refused(R"({"schedule": "tomorrow"})").rfind("400 Unable to parse scheduled timestamp", 0), 0u);
    EXPECT_EQ(refused(R"({"schedule": 1896000000})").rfind("400 Unable to parse scheduled timestamp", 0), 0u);
    EXPECT_EQ(refused(R"({"schedule": ")" + future + R"("})", true), "500 Can't schedule restart in the paused state");
    EXPECT_EQ(refused("{}", true), "accepted");  // an immediate restart is allowed while paused
}

TEST(RestartConditions, ScheduledRestartRunsWhenDueAndIsDroppedWhenStale) {
    const std::int64_t at = kNow;
    EXPECT_EQ(scheduled_restart_step(at, at - 100, 10, false), ScheduledStep::Wait);
    EXPECT_EQ(scheduled_restart_step(at, at - 1, 10, false), ScheduledStep::Wait);
    EXPECT_EQ(scheduled_restart_step(at, at, 10, false), ScheduledStep::Run);
    EXPECT_EQ(scheduled_restart_step(at, at + 15, 10, false), ScheduledStep::Run);   // int(1.5 x 10) late
    EXPECT_EQ(scheduled_restart_step(at, at + 16, 10, false), ScheduledStep::Stale);
    EXPECT_EQ(scheduled_restart_step(at, at + 1, 1, false), ScheduledStep::Run);
    EXPECT_EQ(scheduled_restart_step(at, at + 2, 1, false), ScheduledStep::Stale);
    EXPECT_EQ(scheduled_restart_step(at, at + 3, 0, false), ScheduledStep::Stale);  // loop_wait 0 counts as 1
    // paused: kept, never run (Patroni runs no scheduled action while paused)
    EXPECT_EQ(scheduled_restart_step(at, at, 10, true), ScheduledStep::Wait);
    EXPECT_EQ(scheduled_restart_step(at, at + 100, 10, true), ScheduledStep::Wait);
    EXPECT_STREQ(to_string(ScheduledStep::Stale), "stale");
}

TEST(RestartConditions, MatchesTheNodeAsPatroniDoes) {
    RestartRequest any;
    EXPECT_EQ(restart_mismatch(any, true, 150020, false), "");
    RestartRequest replica;
    replica.role = "replica";
    EXPECT_EQ(restart_mismatch(replica, true, 150020, false), "host role mismatch");  // the primary stays up
    EXPECT_EQ(restart_mismatch(replica, false, 150020, false), "");
    RestartRequest primary;
    primary.role = "primary";
    EXPECT_EQ(restart_mismatch(primary, false, 150020, false), "host role mismatch");
    EXPECT_EQ(restart_mismatch(primary, true, 150020, false), "");
    RestartRequest version;
    version.postgres_version = 150020;  // restart only servers older than 15.20
    EXPECT_EQ(restart_mismatch(version, true, 150020, false), "postgres version mismatch");
    EXPECT_EQ(restart_mismatch(version, true, 150019, false), "");
    RestartRequest pending;
    pending.restart_pending = true;
    EXPECT_EQ(restart_mismatch(pending, false, 150020, false), "pending restart flag is not set");
    EXPECT_EQ(restart_mismatch(pending, false, 150020, true), "");
}

// ---- where a new replica clones from (issue 12 item 7: clonefrom) ---------------------

TEST(CloneMember, ClonefromMemberElseTheLeader) {
    ClusterView v;
    v.leader = "pg-1";
    auto add = [&](const char *name, const char *state, bool clonefrom) {
        Member m;
        m.name = name;
        m.state = state;
        m.conn_url = std::string("postgres://") + name + ":5432/postgres";
        m.tags.clonefrom = clonefrom;
        v.members.push_back(m);
    };
    add("pg-1", "running", false);
    add("pg-2", "running", false);
    ASSERT_NE(v.clone_member("pg-4"), nullptr);
    EXPECT_EQ(v.clone_member("pg-4")->name, "pg-1");  // nobody tagged: the leader
    add("pg-3", "stopped", true);
    EXPECT_EQ(v.clone_member("pg-4")->name, "pg-1");  // tagged but not running
    add("pg-5", "running", true);
    add("pg-4", "running", true);
    EXPECT_EQ(v.clone_member("pg-4")->name, "pg-5");  // never itself
    EXPECT_EQ(v.clone_member("pg-6")->name, "pg-4");  // the first by name: stable
    ClusterView empty;
    EXPECT_EQ(empty.clone_member("pg-1"), nullptr);
}

// ---- primary_start_timeout 0 (issue 12 item 5) ------------------------------------------

TEST(CrashFailover, OnlyWithTimeoutZeroTheLockAndSomeoneToTakeOver) {
    ClusterView v = cluster();
    v.config.master_start_timeout = 0;
    EXPECT_EQ(crash_failover_target(v, "pg-1", true), "pg-2");  // the most advanced eligible member
    EXPECT_EQ(crash_failover_target(v, "pg-1", false), "") << "shut down cleanly: start again";
    EXPECT_EQ(crash_failover_target(v, "pg-2", true), "") << "not the leader";
    ClusterView waits = v;
    waits.config.master_start_timeout = 300;  // Patroni's default: start again
    EXPECT_EQ(crash_failover_target(waits, "pg-1", true), "");
    ClusterView paused = v;
    paused.config.pause = true;
    EXPECT_EQ(crash_failover_target(paused, "pg-1", true), "");
    ClusterView nobody = v;
    for (auto &m : nobody.members)
        if (m.name != "pg-1") m.tags.nofailover = true;
    EXPECT_EQ(crash_failover_target(nobody, "pg-1", true), "") << "nobody to fail over to: start again";
    ClusterView one = v;
    one.members[1].state = "stopped";
    EXPECT_EQ(crash_failover_target(one, "pg-1", true), "pg-3");
    ClusterView leaderless = v;
    leaderless.leader.reset();
    EXPECT_EQ(crash_failover_target(leaderless, "pg-1", true), "");
}

TEST(CrashFailover, AfterPrimaryStartTimeoutOfRecovery) {
    ClusterView v = cluster();
    v.config.master_start_timeout = 300;
    EXPECT_EQ(crash_failover_target(v, "pg-1", true, 299), "");
    EXPECT_EQ(crash_failover_target(v, "pg-1", true, 300), "pg-2");
    EXPECT_EQ(crash_failover_target(v, "pg-1", true, -1), "") << "a clock that went back";
}

TEST(PrimaryStopTimeout, OnlyForAPrimaryInSynchronousMode) {
    std::vector<std::string> errors;
    DynamicConfig c = DynamicConfig::from_json(nlohmann::json::parse(R"({"primary_stop_timeout": 7})"), errors);
    ASSERT_TRUE(errors.empty());
    EXPECT_EQ(c.primary_stop_timeout, 7);
    EXPECT_EQ(primary_stop_kill_after_s(c, true), 0) << "asynchronous: Patroni's rule, no limit";
    c.synchronous_mode = true;
    EXPECT_EQ(primary_stop_kill_after_s(c, true), 7);
    EXPECT_EQ(primary_stop_kill_after_s(c, false), 0) << "a standby is never killed";
    c.primary_stop_timeout = 0;
    EXPECT_EQ(primary_stop_kill_after_s(c, true), 0);
    // master_stop_timeout (Patroni < 3) too; a bad value is an error and changes nothing
    EXPECT_EQ(DynamicConfig::from_json(nlohmann::json::parse(R"({"master_stop_timeout": 9})"), errors)
                  .primary_stop_timeout, 9);
    auto bad = DynamicConfig::from_json(nlohmann::json::parse(R"({"primary_stop_timeout": "soon"})"), errors);
    EXPECT_EQ(bad.primary_stop_timeout, 0);
    EXPECT_FALSE(errors.empty());
}

TEST(RejoinPath, EveryStateSignalAndTimeline) {
    // The control file's states (pg_controldata), with and without standby.signal.
    const char *states[] = {"starting up", "shut down", "shut down in recovery", "shutting down",
                            "in crash recovery", "in archive recovery", "in production", "unrecognized status code"};
    for (const char *st : states) {
        const std::string s = st;
        for (bool signal : {false, true}) {
            for (int local : {0, 3, 4}) {
                const RejoinPath p = rejoin_path(s, signal, local, 4);
                const bool older = local == 3;
                const bool standby_dir = signal || s == "in archive recovery" || s == "shut down in recovery";
                SCOPED_TRACE(s + (signal ? " + standby.signal" : "") + ", local timeline " + std::to_string(local));
                EXPECT_EQ(is_standby_directory(s, signal), standby_dir);
                if (standby_dir && !older) {
                    EXPECT_EQ(p, RejoinPath::Follow);
                } else if (standby_dir && s == "in archive recovery") {
                    // never crash recovery in single-user mode for a standby
                    EXPECT_EQ(p, RejoinPath::FollowCrashed);
                } else if (standby_dir && s == "shut down in recovery") {
                    EXPECT_EQ(p, RejoinPath::Rewind);
                } else if (s == "in production" || s == "shut down") {
                    EXPECT_EQ(p, RejoinPath::CheckPrimaryWal);
                } else {
                    EXPECT_EQ(p, RejoinPath::Rewind);
                }
            }
        }
    }
    // The shape of the CI failure: a standby killed with its primary, a
    // previous boot's single-user attempt having removed standby.signal.
    EXPECT_EQ(rejoin_path("in archive recovery", false, 3, 4), RejoinPath::FollowCrashed);
    EXPECT_EQ(rejoin_path("in archive recovery", true, 2, 4), RejoinPath::FollowCrashed);
    // A rewound directory whose server never started: the leader's timeline.
    EXPECT_EQ(rejoin_path("in archive recovery", false, 4, 4), RejoinPath::Follow);
    // The leader's timeline unknown: nothing says it is older.
    EXPECT_EQ(rejoin_path("in archive recovery", true, 3, 0), RejoinPath::Follow);
    EXPECT_STREQ(to_string(RejoinPath::FollowCrashed), "follow-crashed");
}
