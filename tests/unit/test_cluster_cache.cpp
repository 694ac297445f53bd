// dcs/cluster_cache: the engine's reads kept current by watches. Each pass
// gives the view a full read gives (ClusterStore::read), with the requests
// limited to the leader znode and what a watch reported.
#include "engine_fixture.hpp"  // member_json, the in-memory ZooKeeper

#include "dcs/cluster_cache.hpp"
#include "dcs/cluster_store.hpp"


namespace {

const std::string kCacheBase = kBase;

class ClusterCacheTest : public ::testing::Test {
  protected:
    FakeZkServer server;
    ManualClock clock;
    FakeZk zk{server, clock};
    ClusterStore store{zk, "/service", "batman"};
    ClusterCache cache{zk, store};

    void SetUp() override {
        std::string err;
        ASSERT_TRUE(zk.open("zk:2181", 10000, nullptr, err));
        zk.set_watcher([this](const std::string &p) { cache.changed(p); });
        server.put(kCacheBase + "/initialize", "7000");
        server.put(kCacheBase + "/config", "{\"ttl\":10,\"loop_wait\":2}");
        server.put(kCacheBase + "/leader", "pg-1", 501);
        server.put(kCacheBase + "/members/pg-1", member_json("pg-1", "primary", 5000), 501);
        server.put(kCacheBase + "/members/pg-2", member_json("pg-2", "replica", 4000), 502);
        server.live_sessions.insert(501);
        server.live_sessions.insert(502);
    }
    // One pass of the cache; fails the test when it does not finish.
    // `leading`: a leader's pass (reads the leader znode every time).
    ClusterView pass(bool leading = true) {
        bool done = false, ok = false;
        ClusterView view;
        cache.read(clock.now, leading, leading, [&](bool o, const ClusterView &v, const std::string &) {
            done = true;
            ok = o;
            view = v;
        });
        for (int i = 0; i < 10 && !done; ++i) zk.process(true, true);
        EXPECT_TRUE(done);
        EXPECT_TRUE(ok);
        return view;
    }
    // A pass that cannot be sent: answered at once, as failed.
    void expect_failed_at_once(bool leading) {
        bool done = false, ok = true;
        cache.read(clock.now, leading, leading, [&](bool o, const ClusterView &, const std::string &) {
            done = true;
            ok = o;
        });
        EXPECT_TRUE(done);
        EXPECT_FALSE(ok);
        EXPECT_FALSE(cache.reading());
    }
    // What a full read (pg_hactl's, ClusterStore::read without watches) sees.
    ClusterView full() {
        FakeZk other(server, clock);
        std::string err;
        EXPECT_TRUE(other.open("zk:2181", 10000, nullptr, err));
        ClusterStore s(other, "/service", "batman");
        bool done = false;
        ClusterView view;
        s.read(false, [&](bool, const ClusterView &v, const std::string &) {
            done = true;
            view = v;
        });
        for (int i = 0; i < 10 && !done; ++i) other.process(true, true);
        EXPECT_TRUE(done);
        other.abandon();
        return view;
    }
    static std::string text(const ClusterView &v) {
        std::string out = "leader=" + v.leader.value_or("-") + "@" + std::to_string(v.leader_owner) +
                          " config=" + std::to_string(v.config_version) + "/" + std::to_string(v.config.ttl_ms) +
                          " init=" + v.initialize.value_or("-") + " failover=" + (v.failover ? v.failover->candidate : "-") +
                          " sync=" + std::to_string(v.sync_version) + " members:";
        for (const auto &m : v.members)
            out += " " + m.name + "/" + m.role + "/" + std::to_string(m.position()) + "@" + std::to_string(m.session);
        return out;
    }
};

}  // namespace

TEST_F(ClusterCacheTest, AnIdlePassReadsOnlyTheLeaderZnode) {
    const ClusterView first = pass();
    EXPECT_GE(cache.last_requests(), 7) << "first pass: both lists, every key, every member";
    EXPECT_EQ(text(first), text(full()));
    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(text(pass()), text(first));
        EXPECT_EQ(cache.last_requests(), 1);
    }
}

TEST_F(ClusterCacheTest, AnIdleStandbyPassSendsNothingAndStillSeesTheLeaderGo) {
    const ClusterView first = pass(false);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(text(pass(false)), text(first));
        EXPECT_EQ(cache.last_requests(), 0);
    }
    server.expire(501);  // the leader's session ends: its znodes go, the watches fire
    const ClusterView v = pass(false);
    EXPECT_FALSE(v.leader.has_value());
    EXPECT_EQ(v.member("pg-1"), nullptr);
    EXPECT_EQ(text(v), text(full()));
    server.put(kCacheBase + "/leader", "pg-2", 502);  // a new leader: the scope's list changed
    EXPECT_EQ(pass(false).leader.value_or("-"), "pg-2");
    // Without a connected session no pass is answered from the cache.
    zk.partitioned = true;
    expect_failed_at_once(false);
}

TEST_F(ClusterCacheTest, AChangedMemberIsReadAgainAloneAndEveryLaterChangeToo) {
    pass();
    for (Lsn pos : {4100, 4200, 4300}) {  // the watch is set again by each read
        server.put(kCacheBase + "/members/pg-2", member_json("pg-2", "replica", pos), 502);
        const ClusterView v = pass();
        EXPECT_EQ(cache.last_requests(), 2) << "leader + members/pg-2";
        EXPECT_EQ(v.member("pg-2")->position(), pos);
        EXPECT_EQ(text(v), text(full()));
    }
}

// Issue 14 item 4: positions, written by every member every loop_wait, are
// read by the leader only; a member's news (a replaced row) reaches all.
TEST_F(ClusterCacheTest, AStandbyIsNotWokenByPositionsButSeesEveryMembersNews) {
    pass(false);
    server.put(kCacheBase + "/members/pg-1", member_json("pg-1", "primary", 5100), 501);
    ClusterView v = pass(false);
    EXPECT_EQ(cache.last_requests(), 0) << "a standby leaves no watch on member rows";
    EXPECT_EQ(v.member("pg-1")->position(), 5000u) << "positions are the leader's business";
    // News (here a new role) replaces the row: members/'s list fires, every row is read again.
    server.replace(kCacheBase + "/members/pg-2", member_json("pg-2", "primary", 4000), 502);
    v = pass(false);
    EXPECT_EQ(cache.last_requests(), 3) << "the list + both rows";
    EXPECT_EQ(v.member("pg-2")->role, "primary");
    EXPECT_EQ(text(v), text(full()));
    v = pass(false);
    EXPECT_EQ(cache.last_requests(), 0) << "the rows were read without a watch";
    // Once leader, it reads every row again with a watch, and follows positions.
    v = pass(true);
    EXPECT_EQ(cache.last_requests(), 3) << "leader + both rows";
    server.put(kCacheBase + "/members/pg-2", member_json("pg-2", "primary", 4100), 502);
    v = pass(true);
    EXPECT_EQ(cache.last_requests(), 2) << "leader + members/pg-2";
    EXPECT_EQ(v.member("pg-2")->position(), 4100u);
    EXPECT_EQ(text(v), text(full()));
}

TEST_F(ClusterCacheTest, ALeaderSeesAReplacedRowAndNeverMissesTheMember) {
    pass(true);
    server.replace(kCacheBase + "/members/pg-2", member_json("pg-2", "replica", 4500), 502);
    const ClusterView v = pass(true);
    ASSERT_NE(v.member("pg-2"), nullptr);
    EXPECT_EQ(v.member("pg-2")->position(), 4500u);
    EXPECT_EQ(cache.last_requests(), 3) << "leader + the list + members/pg-2 (its data watch fired)";
    EXPECT_EQ(text(v), text(full()));
    server.put(kCacheBase + "/members/pg-2", member_json("pg-2", "replica", 4600), 502);
    EXPECT_EQ(pass(true).member("pg-2")->position(), 4600u) << "the replaced row is watched again";
}

TEST_F(ClusterCacheTest, KeysAndMembersThatComeAndGoAreSeen) {
    pass();
    server.put(kCacheBase + "/failover", "{\"leader\":\"pg-1\",\"member\":\"pg-2\"}");
    server.put(kCacheBase + "/members/pg-3", member_json("pg-3", "replica", 3000), 503);
    server.live_sessions.insert(503);
    ClusterView v = pass();
    ASSERT_TRUE(v.failover);
    EXPECT_EQ(v.failover->candidate, "pg-2");
    EXPECT_NE(v.member("pg-3"), nullptr);
    EXPECT_EQ(text(v), text(full()));
    // The leader's session ends: its leader and member znodes go.
    server.expire(501);
    std::string err;
    zk.remove(kCacheBase + "/failover", -1, [](int) {});
    v = pass();
    v = pass();  // (the remove ran in the first pass's process())
    EXPECT_FALSE(v.leader);
    EXPECT_EQ(v.member("pg-1"), nullptr);
    EXPECT_FALSE(v.failover);
    EXPECT_EQ(text(v), text(full()));
    // A new leader.
    server.put(kCacheBase + "/leader", "pg-2", 502);
    v = pass();
    EXPECT_EQ(v.leader.value_or(""), "pg-2");
    EXPECT_EQ(v.leader_owner, 502);
    EXPECT_EQ(text(v), text(full()));
}

TEST_F(ClusterCacheTest, ChangedDataOfEveryKeyIsSeen) {
    pass();
    server.put(kCacheBase + "/config", "{\"ttl\":20,\"loop_wait\":2}");
    server.put(kCacheBase + "/sync", "{\"leader\":\"pg-1\",\"sync_standby\":\"pg-2\"}");
    server.put(kCacheBase + "/status", "{\"optime\":6000}");
    ClusterView v = pass();
    EXPECT_EQ(v.config.ttl_ms, 20000);
    EXPECT_EQ(v.sync.sync_standby, std::vector<std::string>{"pg-2"});
    EXPECT_EQ(v.status_optime, 6000u);
    EXPECT_EQ(text(v), text(full()));
    server.put(kCacheBase + "/sync", "{\"leader\":\"pg-1\",\"sync_standby\":null}");
    v = pass();
    EXPECT_TRUE(v.sync.sync_standby.empty());
    EXPECT_EQ(v.sync_version, 1);
}

TEST_F(ClusterCacheTest, SessionEventsFailuresAndTimeReadEverythingAgain) {
    pass();
    cache.changed("");  // a reconnect
    pass();
    EXPECT_GE(cache.last_requests(), 7);
    pass();
    EXPECT_EQ(cache.last_requests(), 1);
    clock.now += ClusterCache::kFullReadEveryMs;
    pass();
    EXPECT_GE(cache.last_requests(), 7) << "the safety net";
    // A pass that fails (here: nothing can be queued): the next one reads everything.
    zk.close();
    expect_failed_at_once(true);
    std::string err;
    ASSERT_TRUE(zk.open("zk:2181", 10000, nullptr, err));
    EXPECT_EQ(text(pass()), text(full()));
    EXPECT_GE(cache.last_requests(), 7);
}

TEST_F(ClusterCacheTest, NoClusterYetIsReadAgainUntilItExists) {
    FakeZkServer empty;
    FakeZk z(empty, clock);
    std::string err;
    ASSERT_TRUE(z.open("zk:2181", 10000, nullptr, err));
    ClusterStore s(z, "/service", "batman");
    ClusterCache c(z, s);
    z.set_watcher([&](const std::string &p) { c.changed(p); });
    auto once = [&] {
        bool done = false;
        ClusterView view;
        c.read(clock.now, false, false, [&](bool, const ClusterView &v, const std::string &) {
            done = true;
            view = v;
        });
        for (int i = 0; i < 10 && !done; ++i) z.process(true, true);
        EXPECT_TRUE(done);
        return view;
    };
    EXPECT_TRUE(once().members.empty());
    empty.put(kCacheBase + "/members/pg-1", member_json("pg-1", "replica", 1), 0);
    empty.put(kCacheBase + "/initialize", "42");
    const ClusterView v = once();  // no watch could be set on a missing scope: read everything
    EXPECT_EQ(v.initialize.value_or(""), "42");
    EXPECT_FALSE(v.warnings.empty()) << "pg-1's znode is persistent: a warning, not a member";
}
