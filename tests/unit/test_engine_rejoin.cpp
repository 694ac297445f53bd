// The engine after a rejoin: a standby without its stream is woken to retry,
// what it publishes follows its state within 250 ms, and a diverged
// standby's WAL receiver blips do not hide that it cannot follow.
#include "engine_fixture.hpp"

namespace {
// Its own suite name: GoogleTest refuses one suite name for the fixture
// classes of two translation units.
class EngineRejoinTest : public EngineTest {};
}  // namespace

// A standby that lost its stream while the leader runs is woken every
// kStreamRetryEveryMs (not PostgreSQL's 5 s wal_retrieve_retry_interval),
// and the worker's wait never outlasts the next wake; streaming again, or
// once the decision says the window is over, it stops.
TEST_F(EngineRejoinTest, AStandbyWithoutItsStreamIsWokenToRetryEveryHalfSecond) {
    pg2_leads();
    Node n1(server, clock, "pg-1", false, nullptr);
    n1.local.primary_conninfo = "host=10.0.0.2 port=5432 user=replicator";
    n1.local.walreceiver_streaming = false;
    int wakes = 0;
    for (int i = 0; i < 30; ++i) {  // 3 s
        if (n1.step().retry_stream) ++wakes;
        int fd = -1, wake_fd = -1;
        bool r = false, w = false;
        long timeout = 1000;
        n1.engine->wait_interest(fd, r, w, wake_fd, timeout);
        if (wakes > 0) {  // once the first decision is in
            EXPECT_LE(timeout, kStreamRetryEveryMs);
        }
        clock.now += 100;
    }
    EXPECT_GE(wakes, 5);
    EXPECT_LE(wakes, 7);
    n1.local.walreceiver_streaming = true;
    wakes = 0;
    for (int i = 0; i < 20; ++i) {
        if (n1.step().retry_stream) ++wakes;
        clock.now += 100;
    }
    EXPECT_EQ(wakes, 0) << "streaming: nothing to retry";
}

// A worker's first session asks for the built-in 30 s; once the first read
// shows another ttl it starts a session with that timeout, at once (the
// loop slept up to a second without a session, so a restarted standby was
// published "running" a second after it streamed).
TEST_F(EngineRejoinTest, TheSessionForAnotherTtlIsOpenedAtOnce) {
    server.put(path("config"), "{\"ttl\":4,\"loop_wait\":1,\"retry_timeout\":1}");
    pg2_leads();
    Node n1(server, clock, "pg-1", false, nullptr);
    bool closed_seen = false;
    for (int i = 0; i < 50 && !(closed_seen && n1.zk->is_open()); ++i) {
        n1.step();
        int fd = -1, wake_fd = -1;
        bool r = false, w = false;
        long timeout = 1000;
        n1.engine->wait_interest(fd, r, w, wake_fd, timeout);
        if (!n1.zk->is_open()) {
            closed_seen = true;
            EXPECT_EQ(timeout, 0) << "no session: the loop must open one at once";
        }
        clock.now += std::max<long>(timeout, 1);
    }
    EXPECT_TRUE(closed_seen) << "the session for ttl 4 replaced the first one";
    EXPECT_EQ(n1.zk->opens, 2);
    EXPECT_TRUE(n1.zk->is_open());
}

// Issue 14 item 2: a rejoined standby is published "running" (and
// "streaming") as soon as it accepts connections, not a loop_wait later;
// a switchover to it in that window was refused with "is not running".
TEST_F(EngineRejoinTest, ARejoinedStandbyIsPublishedRunningAndStreamingAsSoonAsItIs) {
    server.put(path("config"), "{\"ttl\":30,\"loop_wait\":10,\"retry_timeout\":10}");
    pg2_leads();
    Node n1(server, clock, "pg-1", false, nullptr);
    n1.local.primary_conninfo = "host=10.0.0.2 port=5432 user=replicator";
    n1.local.hot_standby_active = false;
    n1.local.walreceiver_streaming = false;
    n1.sql.fail_all = true;  // not accepting connections yet
    auto published = [&] {
        std::string err;
        return decode_member("pg-1", server.get(path("members/pg-1")), err).value_or(Member{});
    };
    ASSERT_TRUE(run({&n1}, [&] { return server.has(path("members/pg-1")); }, 20, 50));
    EXPECT_EQ(published().state, "starting");
    run({&n1}, [] { return false; }, 40, 50);  // 2 s: the first loop's reads are done
    ASSERT_EQ(published().state, "starting");
    // Consistent: hot standby accepts connections, and the stream is up.
    n1.local.hot_standby_active = true;
    n1.local.walreceiver_streaming = true;
    n1.sql.fail_all = false;
    const std::int64_t t0 = clock.now;
    ASSERT_TRUE(run({&n1}, [&] { return published().state == "running"; }, 40, 50))
        << server.get(path("members/pg-1"));
    EXPECT_LE(clock.now - t0, 300) << "a change is published within 250 ms, not at the next loop (10 s)";
    EXPECT_EQ(published().replication_state, "streaming");
    // The stream breaks: published at once too.
    n1.local.walreceiver_streaming = false;
    const std::int64_t t1 = clock.now;
    ASSERT_TRUE(run({&n1}, [&] { return published().replication_state != "streaming"; }, 40, 50));
    EXPECT_LE(clock.now - t1, 300);
}

// A standby whose timeline forked before its position: every retry of its
// WAL receiver streams for a few milliseconds and ends ("End of WAL reached
// on timeline 1"). Those blips are not streaming: after 30 s it restarts
// through pg_hactl boot to be rewound (a fast stop: named demotion), even
// while it is woken to retry every 500 ms. (With every blip counted, the
// 500 ms retries kept the rule from ever firing: a CI run's fenced primary
// never rejoined.)
TEST_F(EngineRejoinTest, WalReceiverBlipsDoNotHideAStandbyThatCannotFollow) {
    server.put(path("leader"), "pg-2", 555);
    server.put(path("members/pg-2"), member_json("pg-2", "primary", 5000, 2), 555);  // promoted: timeline 2
    server.live_sessions.insert(555);
    Node n1(server, clock, "pg-1", false, nullptr);
    n1.local.primary_conninfo = "host=10.0.0.2 port=5432 user=replicator";
    n1.local.hot_standby_active = true;
    bool demoted = false;
    int blips = 0;
    for (int i = 0; i < 900 && !demoted; ++i) {  // 45 s of 50 ms steps
        // a blip of one step every 500 ms (each woken retry)
        n1.local.walreceiver_streaming = i % 10 == 0;
        blips += n1.local.walreceiver_streaming ? 1 : 0;
        n1.step();
        demoted = n1.last.shutdown || n1.logged("cannot follow pg-2");
        clock.now += 50;
    }
    EXPECT_TRUE(demoted) << "still waiting after " << blips << " blips";
    EXPECT_TRUE(n1.logged("cannot follow pg-2"));
    for (int i = 0; i < 20 && !n1.last.shutdown; ++i) {
        n1.step();
        clock.now += 50;
    }
    EXPECT_TRUE(n1.last.shutdown);
    EXPECT_FALSE(n1.last.shutdown_immediate) << "a standby stops cleanly";
}
