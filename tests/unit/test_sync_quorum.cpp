// Quorum commit (synchronous_mode: quorum): the overlap rule, the leader's
// steps between the `sync` key and synchronous_standby_names, and the votes a
// member needs to take over. The simulation keeps the ground truth (which
// standby flushed which acknowledged commit) and checks after every step that
// any voters a candidate could count on hold every acknowledged commit.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/dynamic_config.hpp"
#include "core/ha_state_machine.hpp"
#include "core/patroni_codec.hpp"
#include "core/sync_rules.hpp"
#include "sync_fixtures.hpp"

using namespace pgha;
using nlohmann::json;

namespace {

Member qmember(const std::string &name, const std::string &role = "replica", Lsn pos = 1000) {
    return test::sync_member(name, role, pos);
}

WalSender qws(const std::string &name, Lsn flush) { return test::walsender_at(name, flush, "quorum"); }

QuorumKey key(std::vector<std::string> v, int q) { return QuorumKey{v, q}; }
QuorumSsn any(int k, std::vector<std::string> s) { return QuorumSsn{k, s}; }

}  // namespace

TEST(QuorumRule, SteadyStatesAreSafeAndOneVoteLessIsNot) {
    const std::vector<std::string> all = {"a", "b", "c", "d", "e"};
    for (std::size_t n = 1; n <= all.size(); ++n) {
        std::vector<std::string> s(all.begin(), all.begin() + static_cast<long>(n));
        for (int k = 1; k <= static_cast<int>(n); ++k) {
            const int q = static_cast<int>(n) - k;
            EXPECT_TRUE(quorum_safe(key(s, q), any(k, s))) << n << " " << k;
            if (q > 0) {
                EXPECT_FALSE(quorum_safe(key(s, q - 1), any(k, s))) << n << " " << k;
            }
        }
    }
    // No voters: nobody but the leader may be promoted, safe with anything.
    EXPECT_TRUE(quorum_safe(key({}, 0), any(0, {})));
    // Voters while nothing is synchronous: never.
    EXPECT_FALSE(quorum_safe(key({"a"}, 0), any(0, {})));
    // A voter that confirms nothing (not in S) needs the votes of the others.
    EXPECT_FALSE(quorum_safe(key({"a", "b"}, 0), any(1, {"a"})));
    EXPECT_TRUE(quorum_safe(key({"a", "b"}, 1), any(1, {"a"})));
    // Patroni's example: ANY 2 (node1,node2,node3) with quorum 1.
    EXPECT_TRUE(quorum_safe(key({"node1", "node2", "node3"}, 1), any(2, {"node1", "node2", "node3"})));
}

TEST(QuorumRule, StrongerKeys) {
    EXPECT_TRUE(quorum_stronger(key({}, 0), key({"a"}, 0)));
    EXPECT_TRUE(quorum_stronger(key({"a"}, 1), key({"a", "b"}, 1)));
    EXPECT_FALSE(quorum_stronger(key({"a", "b"}, 1), key({"a"}, 1)));
    EXPECT_FALSE(quorum_stronger(key({"a"}, 0), key({"a"}, 1)));
}

TEST(QuorumRule, SynchronousStandbyNamesAsAGuarantee) {
    EXPECT_EQ(format_quorum_ssn(any(2, {"a", "b\"c"})), "ANY 2 (\"a\",\"b\"\"c\")");
    EXPECT_EQ(format_quorum_ssn(any(0, {})), "");
    EXPECT_EQ(quorum_ssn_of("ANY 2 (\"b\",\"a\",c)"), any(2, {"a", "b", "c"}));
    EXPECT_EQ(quorum_ssn_of("FIRST 1 (a, b)"), any(1, {"a", "b"}));  // on 1 of them at least
    EXPECT_EQ(quorum_ssn_of("*"), any(0, {}));
    EXPECT_EQ(quorum_ssn_of("ANY 5 (a)"), any(1, {"a"}));
    EXPECT_EQ(quorum_ssn_of("ANY (a)"), any(0, {}));
}

TEST(QuorumConfig, QuorumIsAcceptedAndRoundTrips) {
    std::vector<std::string> errors;
    auto c = DynamicConfig::from_json(json{{"synchronous_mode", "quorum"}, {"synchronous_node_count", 2}}, errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_TRUE(c.validate().empty());
    EXPECT_TRUE(c.synchronous_mode && c.synchronous_mode_quorum);
    EXPECT_EQ(c.to_json()["synchronous_mode"], "quorum");
}

TEST(QuorumKeyCodec, QuorumFieldRoundTripsAndBadValuesMakeTheKeyUnusable) {
    SyncState s{"pg-1", {"pg-2", "pg-3"}};
    s.quorum = 1;
    std::string err;
    auto back = decode_sync(encode_sync(s), err);
    EXPECT_TRUE(err.empty());
    EXPECT_EQ(back.quorum, 1);
    EXPECT_TRUE(back.valid);
    for (const char *bad : {R"({"leader":"pg-1","sync_standby":"pg-2","quorum":-1})",
                            R"({"leader":"pg-1","sync_standby":"pg-2","quorum":"1"})",
                            R"({"leader":"pg-1","sync_standby":"pg-2","quorum":1e300})", "not json"}) {
        err.clear();
        auto d = decode_sync(bad, err);
        EXPECT_FALSE(err.empty()) << bad;
        EXPECT_FALSE(d.valid) << bad;
        ClusterView v;
        v.config.synchronous_mode = true;
        v.sync = d;
        // Fails closed: nobody may be promoted on a key nobody can read.
        EXPECT_NE(sync_ineligibility(v, "pg-2"), "") << bad;
    }
}

// ---- the leader's steps ---------------------------------------------------

namespace {

struct World {
    std::vector<std::string> standbys = {"pg-2", "pg-3", "pg-4", "pg-5"};
    std::map<std::string, bool> up;
    std::map<std::string, Lsn> flush;  // ground truth: what each standby has
    Lsn lsn = 1000;
    std::vector<std::pair<Lsn, bool>> commits;  // LSN, acknowledged
    SyncInput in;
    QuorumProgress pr;

    World() {
        in.me = "pg-1";
        in.config.synchronous_mode = true;
        in.config.synchronous_mode_quorum = true;
        in.config.synchronous_node_count = 1;
        in.members.push_back(qmember("pg-1", "primary"));
        for (const auto &n : standbys) {
            in.members.push_back(qmember(n));
            up[n] = true;
            flush[n] = lsn;
        }
        in.key.leader = "pg-1";
        in.ssn_managed = true;
        in.grace_ms = 0;
    }
    void observe() {
        in.walsenders.clear();
        for (const auto &n : standbys)
            if (up[n]) in.walsenders.push_back(qws(n, flush[n]));
        in.primary_lsn = lsn;
        in.quorum = pr;
    }
    // Commits waiting are released by the synchronous_standby_names in force.
    void release() {
        const QuorumSsn g = quorum_ssn_of(in.ssn);
        for (auto &c : commits) {
            if (c.second) continue;
            int have = 0;
            for (const auto &n : g.names)
                if (flush.count(n) && flush[n] >= c.first) ++have;
            if (have >= g.k) c.second = true;
        }
    }
    // Any q + 1 voters hold every acknowledged commit.
    ::testing::AssertionResult safe() const {
        if (in.key.leader != in.me || in.key.sync_standby.empty()) return ::testing::AssertionSuccess();
        std::vector<Lsn> f;
        for (const auto &v : in.key.sync_standby) f.push_back(flush.count(v) ? flush.at(v) : 0);
        std::sort(f.begin(), f.end());
        const std::size_t q = static_cast<std::size_t>(in.key.quorum);
        if (q + 1 > f.size()) return ::testing::AssertionSuccess();
        for (const auto &c : commits)
            if (c.second && f[q] < c.first)
                return ::testing::AssertionFailure()
                       << "commit at " << c.first << " acknowledged, but quorum " << q << " of "
                       << in.key.sync_standby.size() << " voters can miss it (ssn '" << in.ssn << "')";
        return ::testing::AssertionSuccess();
    }
};

}  // namespace

TEST(QuorumPlan, ReachesTheSteadyStateAndDegradesAndRecovers) {
    World w;
    w.in.config.synchronous_node_count = 2;
    auto run = [&](int steps) {
        for (int i = 0; i < steps; ++i) {
            w.observe();
            if (w.pr.confirm_lsn == 0) w.pr.confirm_lsn = w.lsn, w.in.quorum = w.pr;
            auto p = plan_sync(w.in);
            quorum_progress_after(w.pr, w.in, p);
            if (p.step == SyncStep::WriteKey) w.in.key = p.key;
            if (p.step == SyncStep::SetSsn) w.in.ssn = p.ssn;
            if (p.step == SyncStep::None) return p;
        }
        return SyncPlan{};
    };
    auto p = run(10);
    EXPECT_EQ(w.in.ssn, "ANY 2 (\"pg-2\",\"pg-3\",\"pg-4\",\"pg-5\")");
    EXPECT_EQ(w.in.key.sync_standby, (std::vector<std::string>{"pg-2", "pg-3", "pg-4", "pg-5"}));
    EXPECT_EQ(w.in.key.quorum, 2);
    EXPECT_EQ(p.message, "");
    // Two die: after the grace both leave, k stays 2 of the two left.
    w.up["pg-4"] = w.up["pg-5"] = false;
    run(10);
    EXPECT_EQ(w.in.ssn, "ANY 2 (\"pg-2\",\"pg-3\")");
    EXPECT_EQ(w.in.key.quorum, 0);
    // All die, not strict: asynchronous, and the key names the leader only.
    w.up["pg-2"] = w.up["pg-3"] = false;
    run(10);
    EXPECT_EQ(w.in.ssn, "");
    EXPECT_TRUE(w.in.key.sync_standby.empty());
    // Back.
    for (auto &u : w.up) u.second = true;
    run(10);
    EXPECT_EQ(w.in.key.quorum, 2);
    EXPECT_EQ(w.in.key.sync_standby.size(), 4u);
}

TEST(QuorumPlan, StrictKeepsTheVotersAndWaits) {
    World w;
    w.in.config.synchronous_mode_strict = true;
    w.in.ssn = "ANY 1 (\"pg-2\")";
    w.in.key.sync_standby = {"pg-2"};
    w.pr.prev = QuorumProgress::Prev::None;
    w.pr.confirm_lsn = w.lsn;
    for (const auto &n : w.standbys) w.up[n] = false;
    w.observe();
    auto p = plan_sync(w.in);
    EXPECT_EQ(p.step, SyncStep::None) << p.message;
    EXPECT_TRUE(p.strict_waiting);
    EXPECT_NE(p.message.find("commits wait"), std::string::npos) << p.message;
    // Nobody ever listed: a placeholder no standby uses.
    World e;
    e.in.config.synchronous_mode_strict = true;
    for (const auto &n : e.standbys) e.up[n] = false;
    e.observe();
    p = plan_sync(e.in);
    ASSERT_EQ(p.step, SyncStep::SetSsn);
    EXPECT_NE(p.ssn.find(kStrictPlaceholder), std::string::npos);
}

TEST(QuorumPlan, ANewLeaderPromisesNothingUntilItsStandbysConfirm) {
    World w;
    w.in.key = SyncState{"pg-0", {"pg-1", "pg-2", "pg-3"}};
    w.in.key.quorum = 1;
    w.in.ssn = "ANY 2 (\"pg-1\",\"pg-2\",\"pg-3\")";  // left from when it was a standby
    w.observe();
    auto p = plan_sync(w.in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_EQ(p.key.leader, "pg-1");
    EXPECT_TRUE(p.key.sync_standby.empty());
}

TEST(QuorumPlan, FromOnModeAndBackTheKeyPromisesNothingFirst) {
    World w;  // quorum mode, key from "on": pg-2 had every commit, FIRST 1
    w.in.key.sync_standby = {"pg-2"};
    w.in.ssn = "1 (\"pg-2\")";
    w.pr.prev = QuorumProgress::Prev::None;
    w.pr.confirm_lsn = w.lsn;
    w.observe();
    auto p = plan_sync(w.in);
    // pg-2 with quorum 0 is safe with FIRST 1 (pg-2); adding voters needs votes.
    if (p.step == SyncStep::WriteKey) {
        QuorumKey k{p.key.sync_standby, p.key.quorum};
        EXPECT_TRUE(quorum_safe(k, quorum_ssn_of(w.in.ssn))) << p.message;
    }
    // Back to on: a key with a quorum is dropped to the leader first.
    World b;
    b.in.config.synchronous_mode_quorum = false;
    b.in.key.sync_standby = {"pg-2", "pg-3"};
    b.in.key.quorum = 1;
    b.in.ssn = "ANY 1 (\"pg-2\",\"pg-3\")";
    b.observe();
    p = plan_sync(b.in);
    ASSERT_EQ(p.step, SyncStep::WriteKey);
    EXPECT_TRUE(p.key.sync_standby.empty());
    EXPECT_EQ(p.key.quorum, 0);
}

TEST(QuorumPlan, NoAcknowledgedCommitIsEverOutsideTheVotersAQuorumCanCount) {
    for (int seed = 0; seed < 300; ++seed) {
        World w;
        unsigned r = static_cast<unsigned>(seed) * 2654435761u + 7;
        auto next = [&r] { r = r * 1103515245u + 12345u; return (r >> 16) & 0x7fff; };
        w.in.config.synchronous_mode_strict = next() % 3 == 0;
        bool restarted = true;  // the keeper starts knowing nothing
        for (int step = 0; step < 80; ++step) {
            // The world moves: commits, standbys flush (the up ones), die, come back.
            if (next() % 10 == 0) w.in.config.synchronous_node_count = 1 + static_cast<int>(next() % 4);
            for (const auto &n : w.standbys) {
                if (next() % 12 == 0) w.up[n] = !w.up[n];
                if (w.up[n] && next() % 3 != 0) w.flush[n] = w.lsn - (next() % 3) * 5;
            }
            w.lsn += 10;
            w.commits.emplace_back(w.lsn, false);
            w.release();
            ASSERT_TRUE(w.safe()) << "seed " << seed << " step " << step;
            // The keeper: takes confirm_lsn a while after a change (walsenders reloaded).
            if (w.pr.confirm_lsn == 0 && next() % 2 == 0) w.pr.confirm_lsn = w.lsn;
            if (restarted) {
                w.pr = QuorumProgress{};
                w.pr.frozen = QuorumKey{w.in.key.sync_standby, w.in.key.quorum};
                std::sort(w.pr.frozen.voters.begin(), w.pr.frozen.voters.end());
                restarted = false;
            }
            w.observe();
            w.in.grace_ms = 1000;
            for (const auto &n : w.standbys) w.in.unhealthy_ms[n] = w.up[n] ? 0 : (next() % 2) * 5000;
            auto p = plan_sync(w.in);
            quorum_progress_after(w.pr, w.in, p);
            const bool lost = next() % 6 == 0;  // the write or the reload did not happen
            if (p.step == SyncStep::WriteKey && !lost) w.in.key = p.key;
            if (p.step == SyncStep::SetSsn && !lost) w.in.ssn = p.ssn;
            w.release();
            ASSERT_TRUE(w.safe()) << "seed " << seed << " step " << step << " after: " << p.message;
            if (next() % 40 == 0) restarted = true;
        }
        // Everyone up and quiet: it settles on all four voting.
        for (auto &u : w.up) u.second = true;
        for (int step = 0; step < 30; ++step) {
            for (const auto &n : w.standbys) w.flush[n] = w.lsn;
            if (w.pr.confirm_lsn == 0) w.pr.confirm_lsn = w.lsn;
            w.observe();
            w.in.unhealthy_ms.clear();
            auto p = plan_sync(w.in);
            quorum_progress_after(w.pr, w.in, p);
            if (p.step == SyncStep::WriteKey) w.in.key = p.key;
            if (p.step == SyncStep::SetSsn) w.in.ssn = p.ssn;
            w.release();
            ASSERT_TRUE(w.safe());
        }
        EXPECT_EQ(w.in.key.sync_standby.size(), 4u) << "seed " << seed;
        const int k = std::min(4, w.in.config.synchronous_node_count);
        EXPECT_EQ(w.in.key.quorum, 4 - k) << "seed " << seed;
    }
}

// ---- who may take over ----------------------------------------------------

namespace {

Observation quorum_race(const std::string &me, Lsn my_pos) {
    Observation o;
    o.me = me;
    o.role = LocalRole::Standby;
    o.running = true;
    o.dcs_ok = true;
    o.session_id = 42;
    o.local.system_identifier = "7000";
    o.local.timeline = 1;
    o.local.in_recovery = true;
    o.local.receive_lsn = o.local.replay_lsn = my_pos;
    o.cluster.initialize = "7000";
    o.cluster.config_present = true;
    o.cluster.config.synchronous_mode = true;
    o.cluster.config.synchronous_mode_quorum = true;
    o.cluster.sync = SyncState{"pg-1", {"pg-2", "pg-3", "pg-4"}};
    o.cluster.sync.quorum = 1;  // ANY 2 of three
    o.cluster.status_optime = 900;
    o.cluster.members = {qmember("pg-2", "replica", 900), qmember("pg-3", "replica", 900),
                         qmember("pg-4", "replica", 900), qmember("pg-5", "replica", 990)};
    o.peers_checked = true;
    return o;
}

}  // namespace

TEST(QuorumPromotion, AVoterNeedsTheKeysQuorumOfVotesNotAhead) {
    auto o = quorum_race("pg-2", 950);
    // Nobody answered: no votes, no takeover.
    auto d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("0 of the 1 votes"), std::string::npos) << d.message;
    // pg-3 answered and is not ahead: one vote, enough.
    o.vote_positions = {{"pg-3", 940}};
    o.peer_positions = o.vote_positions;
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader)) << decide(o).message;
    // A member that is not a voter does not vote (pg-5, async, and ahead: not a candidate either).
    o.vote_positions = {{"pg-5", 900}};
    o.peer_positions = o.vote_positions;
    EXPECT_FALSE(decide(o).has(ActionKind::AcquireLeader));
    // A voter ahead of us: it takes over, not us.
    o.vote_positions = {{"pg-3", 960}, {"pg-4", 900}};
    o.peer_positions = o.vote_positions;
    d = decide(o);
    EXPECT_FALSE(d.has(ActionKind::AcquireLeader));
    EXPECT_NE(d.message.find("ahead"), std::string::npos) << d.message;
    // A nofailover voter still votes (it answered; it is not a candidate).
    o.vote_positions = {{"pg-4", 900}};
    o.peer_positions.clear();
    EXPECT_TRUE(decide(o).has(ActionKind::AcquireLeader)) << decide(o).message;
    // Not a voter at all: never, however far ahead.
    auto a = quorum_race("pg-5", 990);
    a.vote_positions = {{"pg-2", 900}, {"pg-3", 900}, {"pg-4", 900}};
    a.peer_positions = a.vote_positions;
    EXPECT_FALSE(decide(a).has(ActionKind::AcquireLeader));
}

TEST(QuorumPlan, AStandbyJoinsOnlyAfterBeingHealthyForTheGrace) {
    World w;
    w.in.grace_ms = 2000;
    w.observe();
    for (const auto &n : w.standbys) w.in.healthy_ms[n] = 500;  // just connected (a clone, a flapping link)
    auto p = plan_sync(w.in);
    EXPECT_EQ(p.step, SyncStep::None) << p.message;
    w.in.healthy_ms["pg-3"] = 2000;
    p = plan_sync(w.in);
    ASSERT_EQ(p.step, SyncStep::SetSsn) << p.message;
    EXPECT_EQ(p.ssn, "ANY 1 (\"pg-3\")");
}
