// ZooKeeper requests of an idle cluster (issue 14 item 4): what each member
// sends per HA loop once the cluster has settled. The figures bench/zk_load.py
// measures on a real ZooKeeper (with pings, which the fake does not count)
// come from these requests; this test pins them per loop, so a change that
// brings back a read of the whole cluster per pass, or a write nobody needs,
// fails here rather than in a benchmark nobody reruns.
#include "engine_fixture.hpp"

#include <sstream>

namespace {

class ZkRequestsTest : public EngineTest {
  protected:
    static int total(const std::map<std::string, int> &r) {
        int n = 0;
        for (const auto &kv : r) n += kv.second;
        return n;
    }
    static std::string show(const std::string &name, const std::map<std::string, int> &r) {
        std::ostringstream o;
        o << name << ":";
        for (const auto &kv : r) o << " [" << kv.first << "] x" << kv.second;
        return o.str();
    }
};

}  // namespace

TEST_F(ZkRequestsTest, AnIdleClusterSendsFewRequestsPerLoop) {
    const int loop_wait = 10;
    server.put(path("config"), "{\"ttl\":30,\"loop_wait\":10,\"retry_timeout\":10}");
    Node n1(server, clock, "pg-1", true, peers_behind(1000));
    Node n2(server, clock, "pg-2", false, peers_behind(1000));
    Node n3(server, clock, "pg-3", false, peers_behind(1000));
    std::vector<Node *> all{&n1, &n2, &n3};
    for (auto *n : all) n->zk->negotiate_timeout = true;  // ttl 30: a 30 s session, as ZooKeeper gives
    ASSERT_TRUE(run(all, [&] {
        return server.get(path("leader")) == "pg-1" && server.has(path("members/pg-2")) &&
               server.has(path("members/pg-3"));
    }, 2000));
    // Settle: slots, status, the first full reads, the members published.
    ASSERT_FALSE(run(all, [] { return false; }, 60 * 20));  // 60 s
    for (auto *n : all) n->zk->requests.clear();
    const int loops = 12;  // 120 s idle, nothing changes
    ASSERT_FALSE(run(all, [] { return false; }, loops * loop_wait * 20));
    ASSERT_EQ(server.get(path("leader")), "pg-1");

    std::string report;
    for (auto *n : all) report += show(n->s.node_name, n->zk->requests) + "\n";
    // The leader: per loop its renewal's sync and the read of its leader znode
    // (the lease hardening: proof the lock is still its own, from the server).
    EXPECT_LE(total(n1.zk->requests), 2 * loops + 2) << report;
    // A standby reads nothing its watches did not report, writes nothing that
    // did not change (pings aside: the C client sends those, ttl/3 apart).
    EXPECT_LE(total(n2.zk->requests), 2) << report;
    EXPECT_LE(total(n3.zk->requests), 2) << report;
    std::cout << report;

    // pg-2 replays more WAL every loop and publishes it: each change costs
    // its write, its own read of it (that read re-arms the watch that shows
    // another node writing under its name) and one read by each of the others; the
    // leader's renewals stay on their schedule (a notice's pass is no renewal).
    for (auto *n : all) n->zk->requests.clear();
    for (int i = 0; i < loops; ++i) {
        n2.local.receive_lsn = n2.local.replay_lsn = n2.local.replay_lsn + 100;
        ASSERT_FALSE(run(all, [] { return false; }, loop_wait * 20));
    }
    report.clear();
    for (auto *n : all) report += show(n->s.node_name, n->zk->requests) + "\n";
    EXPECT_LE(n1.zk->requests["sync "], loops + 1) << report;
    EXPECT_LE(n1.zk->requests["get /leader"], loops + 1) << report;
    EXPECT_GE(n1.zk->requests["get /members/pg-2"], loops - 1) << report;
    EXPECT_LE(total(n1.zk->requests), 3 * loops + 3) << report;
    EXPECT_LE(total(n2.zk->requests), 2 * loops + 2) << report;
    EXPECT_LE(total(n3.zk->requests), loops + 2) << report;  // its reads of members/pg-2
    std::cout << report;
}

// Under write load every position moves on every pass: the primary's
// write_lsn and the standbys' replay. Each write wakes every watcher (the
// writer itself included), so publishing each new position at once made the
// primary write its member znode and `status` tens of times a second, and a
// 1 s network delay then queued its lease renewals behind those writes.
// Positions go out once per loop_wait, as Patroni's. Per loop the leader
// sends its renewal (sync + leader read), its member row and `status`, and
// reads the rows that changed (each member's, its own included, and
// `status`); a standby writes its row and reads the changed ones.
TEST_F(ZkRequestsTest, UnderWriteLoadPositionsArePublishedOncePerLoop) {
    const int loop_wait = 2;  // the fixture's config
    Node n1(server, clock, "pg-1", true, peers_behind(1000));
    Node n2(server, clock, "pg-2", false, peers_behind(1000));
    Node n3(server, clock, "pg-3", false, peers_behind(1000));
    std::vector<Node *> all{&n1, &n2, &n3};
    ASSERT_TRUE(run(all, [&] {
        return server.get(path("leader")) == "pg-1" && server.has(path("members/pg-2")) &&
               server.has(path("members/pg-3"));
    }, 2000));
    ASSERT_FALSE(run(all, [] { return false; }, 20 * 20));  // settle: 20 s
    for (auto *n : all) n->zk->requests.clear();
    const int loops = 10;
    ASSERT_FALSE(run(all, [&] {  // every 50 ms: new WAL everywhere
        n1.local.write_lsn += 100;
        for (Node *n : {&n2, &n3}) n->local.receive_lsn = n->local.replay_lsn = n1.local.write_lsn;
        return false;
    }, loops * loop_wait * 20));
    ASSERT_EQ(server.get(path("leader")), "pg-1");
    std::string report;
    for (auto *n : all) report += show(n->s.node_name, n->zk->requests) + "\n";
    for (auto *n : all) EXPECT_LE(n->zk->requests["set /members/" + n->s.node_name], loops + 1) << report;
    EXPECT_LE(n1.zk->requests["set /status"], loops + 1) << report;
    EXPECT_LE(total(n1.zk->requests), 8 * loops + 8) << report;
    EXPECT_LE(total(n2.zk->requests), 5 * loops + 5) << report;
    // and they were published: the newest positions are at most a loop old
    std::string err;
    auto m2 = decode_member("pg-2", server.get(path("members/pg-2")), err);
    ASSERT_TRUE(m2.has_value()) << err;
    EXPECT_GE(m2->position() + Lsn(loop_wait * 20 * 100 + 100), n2.local.replay_lsn) << report;
    EXPECT_GE(decode_status(server.get(path("status")), err) + Lsn(loop_wait * 20 * 100 + 100), n1.local.write_lsn)
        << report;
    std::cout << report;
}

// Answers that come late (a slow network, a loaded ZooKeeper) must not stretch
// the renewal cadence. The lease is send time + ttl - margin (3 s here); with
// a renewal per second, answers 1.6 s late still leave 0.4 s to spare, but
// only if the next sync goes out on schedule while the last pass still waits
// for its answers. Waiting for the pass first made renewals 1.6 s apart,
// answered 3.2 s after the previous send: the lease ran out on every cycle.
TEST_F(ZkRequestsTest, LateAnswersDoNotStretchTheRenewalCadence) {
    server.put(path("config"), "{\"ttl\":4,\"loop_wait\":1,\"retry_timeout\":1}");
    Node n1(server, clock, "pg-1", true, peers_behind(1000), /*margin_ms=*/1000);
    n1.zk->negotiate_timeout = true;  // ttl 4: a 4 s session
    ASSERT_TRUE(run({&n1}, [&] { return server.get(path("leader")) == "pg-1" && n1.last.lease_deadline_ms > clock.now; },
                    400));
    ASSERT_FALSE(run({&n1}, [] { return false; }, 100));  // settle: 5 s
    n1.zk->latency_ms = 1600;
    int lapsed = 0, steps = 0;
    ASSERT_FALSE(run({&n1}, [&] {
        ++steps;
        if (n1.last.lease_deadline_ms <= clock.now) ++lapsed;
        return false;
    }, 30 * 20));  // 30 s
    EXPECT_EQ(lapsed, 0) << "steps without a lease: " << lapsed << " of " << steps;
    EXPECT_EQ(server.get(path("leader")), "pg-1");
    EXPECT_FALSE(n1.logged("fenc")) << ::testing::PrintToString(n1.logs);
    EXPECT_LE(n1.zk->requests["sync "], 2 * 35) << show("pg-1", n1.zk->requests);  // about one a second
}
