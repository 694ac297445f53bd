// core/health_api: Patroni's REST API status codes and bodies, from snapshots.
#include "core/no_postgres.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/health_api.hpp"

using namespace pgha;
using nlohmann::json;

namespace {

constexpr std::int64_t kNowMs = 10'000'000;  // steady clock "now" in every test
constexpr std::int64_t kNowEpoch = 1'700'000'100;
constexpr Lsn kMB = 1024 * 1024;

Member member(const std::string &name, const std::string &host, Lsn xlog) {
    Member m;
    m.name = name;
    m.conn_url = "postgres://" + host + ":5432/postgres";
    m.api_url = "http://" + host + ":8008/patroni";
    m.state = "running";
    m.role = "replica";
    m.xlog_location = xlog;
    m.timeline = 2;
    return m;
}

NodeSnapshot base(const std::string &me) {
    NodeSnapshot s;
    s.scope = "demo";
    s.name = me;
    s.version = "0.1.0";
    s.api_url = "http://10.0.0.1:8008/patroni";
    s.conn_url = "postgres://10.0.0.1:5432/postgres";
    s.state = "running";
    s.dcs_ok = true;
    s.dcs_last_seen = 1'700'000'000;
    s.loop_steady_ms = kNowMs - 1000;
    s.postmaster_start_time = 1'700'000'000;
    s.local.state = PgState::Running;
    s.local.accepts_connections = true;
    s.local.system_identifier = "7301234567890123456";
    s.local.server_version = 150004;
    s.local.timeline = 2;
    s.cluster.config_present = true;
    s.cluster.config.ttl_ms = 30000;
    s.cluster.status_optime = 100 * kMB;
    s.cluster.members = {member("node2", "10.0.0.2", 100 * kMB), member("node1", "10.0.0.1", 100 * kMB),
                         member("node3", "10.0.0.3", 90 * kMB)};
    s.cluster.members[1].role = "primary";
    return s;
}

// The leader with a valid lease whose server accepts writes.
NodeSnapshot primary() {
    NodeSnapshot s = base("node1");
    s.role = "primary";
    s.is_leader = true;
    s.accepts_writes = true;
    s.lease_until_steady_ms = kNowMs + 10000;
    s.local.in_recovery = false;
    s.local.write_lsn = 100 * kMB;
    s.cluster.leader = "node1";
    s.message = "no action: i am the leader with the lock";
    WalSender w;
    w.application_name = "node2";
    w.client_addr = "10.0.0.2";
    w.state = "streaming";
    w.sync_state = "async";
    s.local.replication.push_back(w);
    w.application_name = "node3";
    w.client_addr = "";
    s.local.replication.push_back(w);
    return s;
}

// A streaming replica that is fully caught up.
NodeSnapshot replica(const std::string &me = "node2") {
    NodeSnapshot s = base(me);
    s.role = "replica";
    s.local.in_recovery = true;
    s.local.receive_lsn = 100 * kMB;
    s.local.replay_lsn = 100 * kMB;
    s.local.replication_state = "streaming";
    s.cluster.leader = "node1";
    s.message = "no action: following node1";
    return s;
}

NodeSnapshot lagging_replica() {
    NodeSnapshot s = replica();
    s.local.receive_lsn = 96 * kMB;
    s.local.replay_lsn = 95 * kMB;  // 5 MB behind the /status optime
    return s;
}

NodeSnapshot sync_replica() {
    NodeSnapshot s = replica();
    s.cluster.config.synchronous_mode = true;
    s.cluster.sync.leader = "node1";
    s.cluster.sync.sync_standby = {"node2"};
    return s;
}

NodeSnapshot quorum_replica() {
    NodeSnapshot s = sync_replica();
    s.cluster.config.synchronous_mode_quorum = true;
    s.cluster.sync.quorum = 1;
    return s;
}

HttpRequestView req(const std::string &method, const std::string &target) {
    HttpRequestView r;
    r.method = method;
    auto q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) {
        std::string rest = target.substr(q + 1);
        std::size_t start = 0;
        while (start <= rest.size()) {
            auto amp = rest.find('&', start);
            std::string kv = rest.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
            auto eq = kv.find('=');
            if (!kv.empty()) r.query.emplace(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
            if (amp == std::string::npos) break;
            start = amp + 1;
        }
    }
    return r;
}

HttpReply call(const NodeSnapshot *s, const std::string &method, const std::string &target,
               std::int64_t now_ms = kNowMs) {
    return handle_request(s, req(method, target), now_ms);
}

HttpReply get(const NodeSnapshot &s, const std::string &target) { return call(&s, "GET", target); }

json body(const HttpReply &r) { return json::parse(r.body); }

struct Case {
    const char *situation;
    std::function<NodeSnapshot()> make;
    const char *target;
    int status;
};

NodeSnapshot primary_without_writes() {
    NodeSnapshot s = primary();
    s.accepts_writes = false;  // leader key held, but e.g. lease ran out / local probe failed
    return s;
}

NodeSnapshot primary_not_leader() {
    NodeSnapshot s = primary();
    s.is_leader = false;
    s.accepts_writes = false;
    s.cluster.leader = "node2";
    return s;
}

NodeSnapshot noloadbalance_replica() {
    NodeSnapshot s = replica();
    s.tags.noloadbalance = true;
    return s;
}

NodeSnapshot nofailover_replica() {
    NodeSnapshot s = replica();
    s.tags.nofailover = true;
    return s;
}

NodeSnapshot stopped_replica() {
    NodeSnapshot s = replica();
    s.state = "stopped";
    s.local.state = PgState::Stopped;
    return s;
}

NodeSnapshot dcs_down_replica() {
    NodeSnapshot s = sync_replica();
    s.dcs_ok = false;
    return s;
}

NodeSnapshot sync_without_sync_mode() {
    NodeSnapshot s = sync_replica();
    s.cluster.config.synchronous_mode = false;
    return s;
}

NodeSnapshot noloadbalance_sync_replica() {
    NodeSnapshot s = sync_replica();
    s.tags.noloadbalance = true;
    return s;
}

NodeSnapshot paused_primary_dcs_down() {
    NodeSnapshot s = primary();
    s.cluster.config.pause = true;
    s.dcs_ok = false;
    s.is_leader = false;        // cannot confirm the lock without ZooKeeper
    s.accepts_writes = false;   // and the lease is not renewed
    return s;
}

NodeSnapshot standby_leader() {
    NodeSnapshot s = replica("node1");
    s.role = "standby_leader";
    s.is_leader = true;
    return s;
}

const std::vector<Case> &cases() {
    static const std::vector<Case> table = {
        // primary leader with a valid lease, accepting writes
        {"primary", primary, "/", 200},
        {"primary", primary, "/primary", 200},
        {"primary", primary, "/master", 200},
        {"primary", primary, "/read-write", 200},
        {"primary", primary, "/leader", 200},
        {"primary", primary, "/standby-leader", 503},
        {"primary", primary, "/standby_leader", 503},
        {"primary", primary, "/replica", 503},
        {"primary", primary, "/read-only", 200},
        {"primary", primary, "/sync", 503},
        {"primary", primary, "/synchronous", 503},
        {"primary", primary, "/read-only-sync", 200},
        {"primary", primary, "/async", 503},
        {"primary", primary, "/asynchronous", 503},
        {"primary", primary, "/health", 200},
        {"primary", primary, "/liveness", 200},
        {"primary", primary, "/readiness", 200},
        {"primary", primary, "/patroni", 200},
        {"primary", primary, "/cluster", 200},
        {"primary", primary, "/history", 200},
        {"primary", primary, "/config", 200},
        {"primary", primary, "/metrics", 200},
        {"primary", primary, "/no-such-path", 503},
        {"primary", primary, "/primary?tag_dc=east", 200},  // tags ignored on leader paths
        {"primary", primary, "/leader?tag_nofailover=true", 200},
        {"primary", primary, "/read-only?tag_dc=east", 503},  // but not on read-only
        {"primary", primary, "/primary?lag=0", 200},

        // leader key held, but the server does not (yet / any more) accept writes
        {"primary w/o writes", primary_without_writes, "/primary", 503},
        {"primary w/o writes", primary_without_writes, "/", 503},
        {"primary w/o writes", primary_without_writes, "/master", 503},
        {"primary w/o writes", primary_without_writes, "/read-write", 503},
        {"primary w/o writes", primary_without_writes, "/leader", 200},
        {"primary w/o writes", primary_without_writes, "/read-only", 503},
        {"primary w/o writes", primary_without_writes, "/read-only-sync", 503},
        {"primary w/o writes", primary_without_writes, "/health", 200},
        {"primary w/o writes", primary_without_writes, "/readiness", 200},

        // running primary without the leader key (about to be fenced/demoted)
        {"primary not leader", primary_not_leader, "/primary", 503},
        {"primary not leader", primary_not_leader, "/leader", 503},
        {"primary not leader", primary_not_leader, "/replica", 503},
        {"primary not leader", primary_not_leader, "/read-only", 503},
        {"primary not leader", primary_not_leader, "/readiness", 503},

        // streaming replica, caught up
        {"replica", [] { return replica(); }, "/primary", 503},
        {"replica", [] { return replica(); }, "/", 503},
        {"replica", [] { return replica(); }, "/leader", 503},
        {"replica", [] { return replica(); }, "/standby-leader", 503},
        {"replica", [] { return replica(); }, "/replica", 200},
        {"replica", [] { return replica(); }, "/read-only", 200},
        {"replica", [] { return replica(); }, "/async", 200},
        {"replica", [] { return replica(); }, "/asynchronous", 200},
        {"replica", [] { return replica(); }, "/sync", 503},
        {"replica", [] { return replica(); }, "/read-only-sync", 503},
        {"replica", [] { return replica(); }, "/health", 200},
        {"replica", [] { return replica(); }, "/liveness", 200},
        {"replica", [] { return replica(); }, "/readiness", 200},
        {"replica", [] { return replica(); }, "/replica?lag=1MB", 200},
        {"replica", [] { return replica(); }, "/replica?lag=0", 200},
        {"replica", [] { return replica(); }, "/replica?replication_state=streaming", 200},
        {"replica", [] { return replica(); }, "/replica?replication_state=catchup", 503},
        {"replica", [] { return replica(); }, "/replicas", 200},  // Patroni matches substrings
        {"replica", [] { return replica(); }, "/no-such-path", 503},

        // replica 5 MB behind the leader's /status optime
        {"lagging replica", lagging_replica, "/replica", 200},
        {"lagging replica", lagging_replica, "/replica?lag=1MB", 503},
        {"lagging replica", lagging_replica, "/replica?lag=1048576", 503},
        {"lagging replica", lagging_replica, "/replica?lag=5MB", 200},
        {"lagging replica", lagging_replica, "/replica?lag=6MB", 200},
        {"lagging replica", lagging_replica, "/replica?lag=4096kB", 503},
        {"lagging replica", lagging_replica, "/read-only?lag=1MB", 503},
        {"lagging replica", lagging_replica, "/async?lag=1MB", 503},
        {"lagging replica", lagging_replica, "/async?lag=10MB", 200},
        {"lagging replica", lagging_replica, "/health?lag=1MB", 200},  // lag applies to replica rules only
        // Patroni: an unparsable lag is ignored (parse_int -> None -> no limit)
        {"lagging replica", lagging_replica, "/replica?lag=abc", 200},
        {"lagging replica", lagging_replica, "/replica?lag=", 200},
        {"lagging replica", lagging_replica, "/replica?lag=16KB", 200},  // unit is case-sensitive
        // readiness: default limit maximum_lag_on_failover (1 MB)
        {"lagging replica", lagging_replica, "/readiness", 503},
        {"lagging replica", lagging_replica, "/readiness?lag=abc", 503},
        {"lagging replica", lagging_replica, "/readiness?lag=10MB", 200},
        {"lagging replica", lagging_replica, "/readiness?lag=4MB", 503},
        {"lagging replica", lagging_replica, "/readiness?lag=4MB&mode=write", 200},  // received: 4 MB behind
        {"lagging replica", lagging_replica, "/readiness?lag=3MB&mode=write", 503},

        // noloadbalance: never a read-only target
        {"noloadbalance", noloadbalance_replica, "/replica", 503},
        {"noloadbalance", noloadbalance_replica, "/read-only", 503},
        {"noloadbalance", noloadbalance_replica, "/async", 503},
        {"noloadbalance", noloadbalance_replica, "/health", 200},
        {"noloadbalance", noloadbalance_replica, "/readiness", 200},
        {"noloadbalance", noloadbalance_replica, "/replica?tag_noloadbalance=true", 503},
        {"noloadbalance", noloadbalance_replica, "/health?tag_noloadbalance=true", 200},

        // tag filters
        {"nofailover", nofailover_replica, "/replica?tag_nofailover=true", 200},
        {"nofailover", nofailover_replica, "/replica?tag_nofailover=false", 503},
        {"nofailover", nofailover_replica, "/replica?tag_nofailover=True", 503},  // exact, lower-cased values
        {"nofailover", nofailover_replica, "/replica?tag_dc=east", 503},          // missing tag
        {"nofailover", nofailover_replica, "/read-only?tag_nofailover=true", 200},
        {"nofailover", nofailover_replica, "/async?tag_nofailover=true&tag_dc=x", 503},
        {"nofailover", nofailover_replica, "/replica?tag_dc=", 200},  // blank values are dropped (parse_qs)
        {"replica", [] { return replica(); }, "/replica?tag_nofailover=false", 503},  // false tags are absent
        {"replica", [] { return replica(); }, "/replica?tag_nofailover=true", 503},

        // synchronous standby
        {"sync replica", sync_replica, "/sync", 200},
        {"sync replica", sync_replica, "/synchronous", 200},
        {"sync replica", sync_replica, "/read-only-sync", 200},
        {"sync replica", sync_replica, "/read-only-synchronous", 200},
        {"sync replica", sync_replica, "/async", 503},
        {"sync replica", sync_replica, "/replica", 200},
        {"sync replica", sync_replica, "/read-only", 200},
        {"sync replica", sync_replica, "/sync?tag_dc=east", 503},
        {"sync noloadbalance", noloadbalance_sync_replica, "/sync", 503},
        // quorum standby (Patroni 4: /quorum, not /sync)
        {"quorum replica", quorum_replica, "/quorum", 200},
        {"quorum replica", quorum_replica, "/read-only-quorum", 200},
        {"quorum replica", quorum_replica, "/sync", 503},
        {"quorum replica", quorum_replica, "/async", 503},
        {"quorum replica", quorum_replica, "/read-only", 200},
        {"sync replica", sync_replica, "/quorum", 503},
        {"sync replica", sync_replica, "/read-only-quorum", 503},
        {"replica", [] { return replica(); }, "/quorum", 503},
        {"primary", primary, "/quorum", 503},
        {"primary", primary, "/read-only-quorum", 200},
        {"sync key, mode off", sync_without_sync_mode, "/sync", 503},
        {"sync key, mode off", sync_without_sync_mode, "/async", 200},
        {"dcs down", dcs_down_replica, "/sync", 503},
        {"dcs down", dcs_down_replica, "/async", 503},
        {"dcs down", dcs_down_replica, "/read-only-sync", 503},
        {"dcs down", dcs_down_replica, "/replica", 200},
        {"dcs down", dcs_down_replica, "/health", 200},

        // server not running
        {"stopped", stopped_replica, "/replica", 503},
        {"stopped", stopped_replica, "/read-only", 503},
        {"stopped", stopped_replica, "/health", 503},
        {"stopped", stopped_replica, "/readiness", 503},
        {"stopped", stopped_replica, "/liveness", 200},
        {"stopped", stopped_replica, "/patroni", 200},

        // maintenance mode with ZooKeeper unreachable: Patroni trusts the local role for /leader
        {"paused, dcs down", paused_primary_dcs_down, "/leader", 200},
        {"paused, dcs down", paused_primary_dcs_down, "/primary", 503},  // pg_ha: only if it accepts writes
        {"paused, dcs down", paused_primary_dcs_down, "/replica", 503},
        {"paused, dcs down", paused_primary_dcs_down, "/health", 200},

        // standby leader (standby cluster; not supported yet, but answered as Patroni does)
        {"standby leader", standby_leader, "/standby-leader", 200},
        {"standby leader", standby_leader, "/standby_leader", 200},
        {"standby leader", standby_leader, "/leader", 200},
        {"standby leader", standby_leader, "/primary", 503},
        {"standby leader", standby_leader, "/replica", 503},
        {"standby leader", standby_leader, "/read-only", 200},
    };
    return table;
}

}  // namespace

TEST(HealthApi, StatusTable) {
    for (const auto &c : cases()) {
        const NodeSnapshot s = c.make();
        for (const char *method : {"GET", "HEAD", "OPTIONS"}) {
            const HttpReply r = call(&s, method, c.target);
            EXPECT_EQ(r.status, c.status) << c.situation << ": " << method << " " << c.target;
            if (std::string(method) != "GET") {
                EXPECT_TRUE(r.body.empty()) << c.situation << ": " << method << " " << c.target;
                EXPECT_TRUE(r.content_type.empty()) << c.situation << ": " << method << " " << c.target;
            }
        }
    }
}

// A snapshot can outlive the lease it was published under (a worker stuck
// in a call, the HTTP thread still answering): from the lease's end on the
// write checks say 503, as the commit check would refuse the writes.
TEST(HealthApi, PrimaryChecksFailOnceTheSnapshotsLeaseRanOut) {
    NodeSnapshot s = primary();
    s.lease_until_steady_ms = kNowMs + 1;
    for (const char *path : {"/primary", "/read-write", "/master", "/read-only"})
        EXPECT_EQ(call(&s, "GET", path).status, 200) << path;
    s.lease_until_steady_ms = kNowMs;
    for (const char *path : {"/primary", "/read-write", "/master", "/read-only"})
        EXPECT_EQ(call(&s, "OPTIONS", path).status, 503) << path;
    EXPECT_EQ(call(&s, "GET", "/leader").status, 200) << "the lock is still ours";
    EXPECT_EQ(call(&s, "GET", "/health").status, 200);
}

TEST(HealthApi, HealthPathsAnswerWithThePatroniStatusBody) {
    const NodeSnapshot s = replica();
    for (const char *path : {"/replica", "/primary", "/health", "/no-such-path", "/async"}) {
        const HttpReply r = get(s, path);
        ASSERT_EQ(r.content_type, "application/json") << path;
        const json j = body(r);
        EXPECT_EQ(j["state"], "running") << path;
        EXPECT_EQ(j["role"], "replica") << path;
        EXPECT_EQ(j["patroni"]["name"], "node2") << path;
    }
}

// The API server renders the status body once per snapshot and passes it in;
// the answer is the same as building it per request.
TEST(HealthApi, StatusBodyRenderedOncePerSnapshotIsTheSameAnswer) {
    const NodeSnapshot s = replica();
    const std::string rendered = status_body_text(s);
    for (const char *path : {"/replica", "/primary", "/patroni", "/health"}) {
        const HttpReply built = get(s, path);
        const HttpReply given = handle_request(&s, req("GET", path), kNowMs, ManagementHook(), &rendered);
        EXPECT_EQ(given.status, built.status) << path;
        EXPECT_EQ(given.body, built.body) << path;
        EXPECT_EQ(given.content_type, built.content_type) << path;
    }
    EXPECT_TRUE(handle_request(&s, req("HEAD", "/replica"), kNowMs, ManagementHook(), &rendered).body.empty());
}

TEST(HealthApi, LivenessAndReadinessHaveNoBody) {
    const NodeSnapshot s = primary();
    for (const char *path : {"/liveness", "/readiness"}) {
        const HttpReply r = get(s, path);
        EXPECT_EQ(r.status, 200);
        EXPECT_TRUE(r.body.empty()) << path;
    }
}

TEST(HealthApi, NullSnapshot) {
    for (const char *path : {"/", "/primary", "/leader", "/replica", "/read-only", "/sync", "/async", "/health",
                             "/liveness", "/readiness", "/patroni", "/cluster", "/history", "/config", "/metrics",
                             "/no-such-path"}) {
        for (const char *method : {"GET", "HEAD", "OPTIONS"}) {
            const HttpReply r = call(nullptr, method, path);
            EXPECT_EQ(r.status, 503) << method << " " << path;
            if (std::string(method) != "GET") {
                EXPECT_TRUE(r.body.empty()) << method << " " << path;
            }
        }
    }
    const HttpReply r = call(nullptr, "GET", "/patroni");
    EXPECT_EQ(body(r)["state"], "starting");
    EXPECT_EQ(call(nullptr, "POST", "/switchover").status, 501);
}

TEST(HealthApi, LivenessPrimaryUsesTtlReplicaTwiceTtl) {
    NodeSnapshot p = primary();
    NodeSnapshot r = replica();
    auto live = [](NodeSnapshot &s, std::int64_t age_ms) {
        s.loop_steady_ms = kNowMs - age_ms;
        return call(&s, "GET", "/liveness").status;
    };
    EXPECT_EQ(live(p, 0), 200);
    EXPECT_EQ(live(p, 29'999), 200);
    EXPECT_EQ(live(p, 30'000), 503);
    EXPECT_EQ(live(p, 45'000), 503);
    EXPECT_EQ(live(r, 30'000), 200);
    EXPECT_EQ(live(r, 59'999), 200);
    EXPECT_EQ(live(r, 60'000), 503);
    // ttl comes from the cluster config
    p.cluster.config.ttl_ms = 10000;
    EXPECT_EQ(live(p, 9'000), 200);
    EXPECT_EQ(live(p, 11'000), 503);
    // a stopped primary is judged like a replica (Patroni: role primary AND running)
    p.state = "stopped";
    EXPECT_EQ(live(p, 15'000), 200);
    // paused: a stuck loop is fine
    r.cluster.config.pause = true;
    EXPECT_EQ(live(r, 3'600'000), 200);
    // HEAD/OPTIONS give the same answer (pg_ha; Patroni answers 503 to those)
    r.cluster.config.pause = false;
    r.loop_steady_ms = kNowMs - 120'000;
    EXPECT_EQ(call(&r, "HEAD", "/liveness").status, 503);
    r.loop_steady_ms = kNowMs;
    EXPECT_EQ(call(&r, "OPTIONS", "/liveness").status, 200);
}

TEST(HealthApi, Readiness) {
    NodeSnapshot r = replica();
    EXPECT_EQ(get(r, "/readiness").status, 200);
    r.local.replication_state = "in archive recovery";
    EXPECT_EQ(get(r, "/readiness").status, 503);
    r.local.replication_state = "streaming";
    r.dcs_ok = false;
    EXPECT_EQ(get(r, "/readiness").status, 200);  // received LSN known: judge against it
    r.local.receive_lsn = 0;
    EXPECT_EQ(get(r, "/readiness").status, 503);  // Patroni: 'DCS is not accessible'
    // the leader is ready whatever its lag parameters say
    NodeSnapshot p = primary();
    EXPECT_EQ(get(p, "/readiness?lag=0").status, 200);
    // maximum_lag_on_failover is the default limit
    NodeSnapshot l = lagging_replica();
    l.cluster.config.maximum_lag_on_failover = 10 * static_cast<std::int64_t>(kMB);
    EXPECT_EQ(get(l, "/readiness").status, 200);
}

TEST(HealthApi, LagUsesReceivedPositionWhenStatusIsStale) {
    // /status optime is behind what the replica already received: replay is
    // what lags, and Patroni's max(optime, latest_end_lsn) rule catches it.
    NodeSnapshot s = replica();
    s.cluster.status_optime = 10 * kMB;
    s.local.receive_lsn = 50 * kMB;
    s.local.replay_lsn = 20 * kMB;
    EXPECT_EQ(get(s, "/replica?lag=1MB").status, 503);
    EXPECT_EQ(get(s, "/replica?lag=40MB").status, 200);
    // unknown leader position: never lagging (Patroni: `leader_optime and ...`)
    s.cluster.status_optime = 0;
    s.local.receive_lsn = 0;
    EXPECT_EQ(get(s, "/replica?lag=0").status, 200);
}

TEST(HealthApi, PatroniBodyPrimary) {
    const NodeSnapshot s = primary();
    const HttpReply r = get(s, "/patroni");
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.content_type, "application/json");
    const json j = body(r);
    EXPECT_EQ(j["state"], "running");
    EXPECT_EQ(j["role"], "primary");
    EXPECT_EQ(j["server_version"], 150004);
    EXPECT_EQ(j["postmaster_start_time"], "2023-11-14 22:13:20+00:00");
    EXPECT_EQ(j["xlog"], json({{"location", 100 * kMB}}));
    EXPECT_EQ(j["timeline"], 2);
    EXPECT_EQ(j["dcs_last_seen"], 1'700'000'000);
    EXPECT_EQ(j["database_system_identifier"], "7301234567890123456");
    EXPECT_EQ(j["patroni"], json({{"version", "0.1.0"}, {"scope", "demo"}, {"name", "node1"}}));
    EXPECT_EQ(j["message"], "no action: i am the leader with the lock");
    ASSERT_EQ(j["replication"].size(), 2u);
    EXPECT_EQ(j["replication"][0]["application_name"], "node2");
    EXPECT_EQ(j["replication"][0]["client_addr"], "10.0.0.2");
    EXPECT_EQ(j["replication"][0]["state"], "streaming");
    EXPECT_EQ(j["replication"][0]["sync_state"], "async");
    EXPECT_TRUE(j["replication"][1]["client_addr"].is_null());
    for (const char *absent : {"cluster_unlocked", "pause", "pending_restart", "watchdog_failed", "tags",
                               "sync_standby", "replication_state"})
        EXPECT_FALSE(j.contains(absent)) << absent;
}

TEST(HealthApi, PatroniBodyReplica) {
    NodeSnapshot s = sync_replica();
    s.local.receive_lsn = 101 * kMB;
    s.tags.nofailover = true;
    s.cluster.config.pause = true;
    s.pending_restart = true;
    s.watchdog_failed = true;
    const json j = body(get(s, "/patroni"));
    EXPECT_EQ(j["role"], "replica");
    EXPECT_EQ(j["xlog"]["received_location"], 101 * kMB);
    EXPECT_EQ(j["xlog"]["replayed_location"], 100 * kMB);
    EXPECT_TRUE(j["xlog"]["replayed_timestamp"].is_null());
    EXPECT_EQ(j["xlog"]["paused"], false);
    EXPECT_FALSE(j["xlog"].contains("location"));
    EXPECT_EQ(j["replication_state"], "streaming");
    EXPECT_EQ(j["sync_standby"], true);
    EXPECT_EQ(j["tags"], json({{"nofailover", true}}));
    EXPECT_EQ(j["pause"], true);
    EXPECT_EQ(j["pending_restart"], true);
    EXPECT_EQ(j["watchdog_failed"], true);
    EXPECT_FALSE(j.contains("replication"));
    // received_location falls back to the replayed one (Patroni: row[4] or row[3])
    s.local.receive_lsn = 0;
    EXPECT_EQ(body(get(s, "/patroni"))["xlog"]["received_location"], 100 * kMB);
}

TEST(HealthApi, PatroniBodyNotRunningAndUnlocked) {
    NodeSnapshot s = stopped_replica();
    s.cluster.leader.reset();
    s.postmaster_start_time = 0;
    const json j = body(get(s, "/patroni"));
    EXPECT_EQ(j["state"], "stopped");
    EXPECT_EQ(j["role"], "replica");
    EXPECT_EQ(j["cluster_unlocked"], true);
    for (const char *absent : {"xlog", "timeline", "server_version", "postmaster_start_time", "replication"})
        EXPECT_FALSE(j.contains(absent)) << absent;
    // DCS unreachable also reports cluster_unlocked (Patroni: `not cluster`)
    NodeSnapshot r = replica();
    r.dcs_ok = false;
    EXPECT_EQ(body(get(r, "/patroni"))["cluster_unlocked"], true);
}

TEST(HealthApi, InvalidUtf8NeverBreaksTheReply) {
    NodeSnapshot s = primary();
    s.message = "bad \xff\xfe bytes";
    s.local.replication[0].application_name = "\xc3";
    const HttpReply r = get(s, "/patroni");
    EXPECT_EQ(r.status, 200);
    EXPECT_NO_THROW(json::parse(r.body));
}

TEST(HealthApi, Cluster) {
    NodeSnapshot s = sync_replica();
    s.cluster.members[0].xlog_location = 99 * kMB;  // node2
    s.cluster.members[2].xlog_location = 0;         // node3: did not report
    s.cluster.members[2].tags.nofailover = true;
    s.cluster.config.pause = true;
    s.cluster.failover = FailoverRequest{"node1", "node2", "2030-01-01T00:00:00+00:00"};
    const HttpReply r = get(s, "/cluster");
    ASSERT_EQ(r.status, 200);
    const json j = body(r);
    EXPECT_EQ(j["scope"], "demo");
    EXPECT_EQ(j["pause"], true);
    EXPECT_EQ(j["scheduled_switchover"],
              json({{"at", "2030-01-01T00:00:00+00:00"}, {"from", "node1"}, {"to", "node2"}}));
    const json &m = j["members"];
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0]["name"], "node1");
    EXPECT_EQ(m[1]["name"], "node2");
    EXPECT_EQ(m[2]["name"], "node3");
    EXPECT_EQ(m[0]["role"], "leader");
    EXPECT_EQ(m[1]["role"], "sync_standby");
    EXPECT_EQ(m[2]["role"], "replica");
    EXPECT_FALSE(m[0].contains("lag"));
    EXPECT_EQ(m[1]["lag"], kMB);
    EXPECT_EQ(m[2]["lag"], "unknown");
    EXPECT_EQ(m[0]["host"], "10.0.0.1");
    EXPECT_EQ(m[0]["port"], 5432);
    EXPECT_EQ(m[0]["api_url"], "http://10.0.0.1:8008/patroni");
    EXPECT_EQ(m[0]["state"], "running");
    EXPECT_EQ(m[0]["timeline"], 2);
    EXPECT_EQ(m[2]["tags"], json({{"nofailover", true}}));
    EXPECT_FALSE(m[0].contains("tags"));
    // a member ahead of the /status optime has lag 0
    s.cluster.members[0].xlog_location = 200 * kMB;
    EXPECT_EQ(body(get(s, "/cluster"))["members"][1]["lag"], 0);
    // no scheduled_switchover for an immediate failover request, no pause when not paused
    s.cluster.failover = FailoverRequest{"", "node2", ""};
    s.cluster.config.pause = false;
    const json j2 = body(get(s, "/cluster"));
    EXPECT_FALSE(j2.contains("scheduled_switchover"));
    EXPECT_FALSE(j2.contains("pause"));
}

TEST(HealthApi, HistoryAndConfig) {
    NodeSnapshot s = primary();
    EXPECT_EQ(body(get(s, "/history")), json::array());
    s.cluster.history.push_back(HistoryEntry{1, 50331808, "no recovery target specified",
                                             "2024-01-02T03:04:05.123456+00:00", "node1"});
    s.cluster.history.push_back(HistoryEntry{2, 83886240, "no recovery target specified", "", ""});
    const HttpReply h = get(s, "/history");
    EXPECT_EQ(h.status, 200);
    EXPECT_EQ(h.content_type, "application/json");
    const json hj = body(h);
    ASSERT_EQ(hj.size(), 2u);
    EXPECT_EQ(hj[0], json({1, 50331808, "no recovery target specified", "2024-01-02T03:04:05.123456+00:00",
                           "node1"}));

    s.cluster.config.ttl_ms = 20000;
    s.cluster.config.synchronous_mode = true;
    const HttpReply c = get(s, "/config");
    EXPECT_EQ(c.status, 200);
    const json cj = body(c);
    EXPECT_EQ(cj["ttl"], 20);
    EXPECT_EQ(cj["synchronous_mode"], true);
    EXPECT_EQ(cj["maximum_lag_on_failover"], 1048576);

    s.cluster.config_present = false;
    const HttpReply missing = get(s, "/config");
    EXPECT_EQ(missing.status, 502);
    EXPECT_TRUE(body(missing).contains("error"));
    EXPECT_EQ(call(&s, "HEAD", "/config").status, 502);
}

TEST(HealthApi, Metrics) {
    NodeSnapshot s = primary();
    s.scope = "de\"mo";
    const HttpReply r = get(s, "/metrics");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.content_type, "text/plain");
    const std::string labels = "{scope=\"de\\\"mo\",name=\"node1\"}";
    for (const std::string &line : std::vector<std::string>{
             "patroni_version" + labels + " 000100",
             "patroni_postgres_running" + labels + " 1",
             "patroni_postmaster_start_time" + labels + " 1700000000",
             "patroni_primary" + labels + " 1",
             "patroni_master" + labels + " 1",
             "patroni_replica" + labels + " 0",
             "patroni_xlog_location" + labels + " " + std::to_string(100 * kMB),
             "patroni_xlog_received_location" + labels + " 0",
             "patroni_xlog_replayed_location" + labels + " 0",
             "patroni_postgres_timeline" + labels + " 2",
             "patroni_postgres_server_version" + labels + " 150004",
             "patroni_dcs_last_seen" + labels + " 1700000000",
             "patroni_cluster_unlocked" + labels + " 0",
             "patroni_is_paused" + labels + " 0",
             "patroni_pending_restart" + labels + " 0",
             "pgha_accepts_writes" + labels + " 1",
             std::string("# TYPE patroni_xlog_location counter"),
         })
        EXPECT_NE(r.body.find(line + "\n"), std::string::npos) << line;

    NodeSnapshot rep = replica();
    rep.cluster.leader.reset();
    rep.cluster.config.pause = true;
    rep.local.receive_lsn = 101 * kMB;
    const std::string t = get(rep, "/metrics").body;
    const std::string l2 = "{scope=\"demo\",name=\"node2\"}";
    for (const std::string &line : std::vector<std::string>{
             "patroni_primary" + l2 + " 0",
             "patroni_replica" + l2 + " 1",
             "patroni_xlog_location" + l2 + " 0",
             "patroni_xlog_received_location" + l2 + " " + std::to_string(101 * kMB),
             "patroni_xlog_replayed_location" + l2 + " " + std::to_string(100 * kMB),
             "patroni_postgres_streaming" + l2 + " 1",
             "patroni_cluster_unlocked" + l2 + " 1",
             "patroni_is_paused" + l2 + " 1",
         })
        EXPECT_NE(t.find(line + "\n"), std::string::npos) << line;
}

TEST(HealthApi, JsonPathsRouteOnTheFirstSegment) {
    const NodeSnapshot s = primary();
    EXPECT_EQ(body(get(s, "/patroni/extra"))["patroni"]["name"], "node1");
    EXPECT_TRUE(body(get(s, "/cluster/")).contains("members"));
    // HEAD/OPTIONS on JSON endpoints: the GET status, no body (pg_ha)
    EXPECT_EQ(call(&s, "HEAD", "/patroni").status, 200);
    EXPECT_EQ(call(&s, "OPTIONS", "/cluster").status, 200);
    EXPECT_EQ(call(&s, "HEAD", "/metrics").status, 200);
    EXPECT_TRUE(call(&s, "HEAD", "/metrics").body.empty());
    // failsafe_mode off: Patroni's 502
    EXPECT_EQ(get(s, "/failsafe").status, 502);
    // on: the members a leader without ZooKeeper asks for promises
    NodeSnapshot fs = primary();
    fs.cluster.config.failsafe_mode = true;
    Member other;
    other.name = "node2";
    other.api_url = "http://10.0.0.2:8008/patroni";
    fs.cluster.members.push_back(other);
    auto r = get(fs, "/failsafe");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(body(r)["node2"], "http://10.0.0.2:8008/patroni");
    fs.failsafe_active = true;
    EXPECT_NE(get(fs, "/metrics").body.find("patroni_failsafe_mode_is_active{scope=\"demo\",name=\"node1\"} 1"),
              std::string::npos)
        << get(fs, "/metrics").body;
}

TEST(HealthApi, UnsupportedMethods) {
    const NodeSnapshot s = primary();
    for (const char *method : {"POST", "PUT", "PATCH", "DELETE", "TRACE"}) {
        const HttpReply r = call(&s, method, "/switchover");
        EXPECT_EQ(r.status, 501) << method;
        EXPECT_EQ(r.content_type, "application/json");
        EXPECT_NE(body(r)["error"].get<std::string>().find(method), std::string::npos);
    }
}

TEST(HealthApi, ManagementHook) {
    const NodeSnapshot s = primary();
    std::vector<std::string> seen;
    ManagementHook hook = [&](const NodeSnapshot *snap, const HttpRequestView &r) -> std::optional<HttpReply> {
        seen.push_back(r.method + " " + r.path + " " + r.body + " " + (snap ? snap->name : "-"));
        if (r.path == "/reload") return HttpReply{202, "text/html", "reload scheduled"};
        if (r.path == "/boom") throw std::runtime_error("boom");
        return std::nullopt;
    };
    HttpRequestView r = req("POST", "/reload");
    r.body = "{}";
    HttpReply reply = handle_request(&s, r, kNowMs, hook);
    EXPECT_EQ(reply.status, 202);
    EXPECT_EQ(reply.body, "reload scheduled");
    EXPECT_EQ(handle_request(&s, req("POST", "/nothing"), kNowMs, hook).status, 501);
    EXPECT_EQ(handle_request(&s, req("DELETE", "/boom"), kNowMs, hook).status, 500);
    // GET never reaches the hook
    EXPECT_EQ(handle_request(&s, req("GET", "/reload"), kNowMs, hook).status, 503);
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0], "POST /reload {} node1");
}

TEST(HealthApi, RepeatedQueryKeyUsesTheFirstValue) {
    const NodeSnapshot s = lagging_replica();
    EXPECT_EQ(get(s, "/replica?lag=1MB&lag=100MB").status, 503);
    EXPECT_EQ(get(s, "/replica?lag=100MB&lag=1MB").status, 200);
}

TEST(HealthApi, ParseLagBytes) {
    EXPECT_EQ(parse_lag_bytes("1048576"), 1048576);
    EXPECT_EQ(parse_lag_bytes("16kB"), 16384);
    EXPECT_EQ(parse_lag_bytes("1MB"), 1048576);
    EXPECT_EQ(parse_lag_bytes(" 1 MB "), 1048576);
    EXPECT_EQ(parse_lag_bytes("2GB"), 2147483648LL);
    EXPECT_EQ(parse_lag_bytes("1TB"), 1099511627776LL);
    EXPECT_EQ(parse_lag_bytes("100B"), 100);
    EXPECT_EQ(parse_lag_bytes("0x10"), 16);
    EXPECT_EQ(parse_lag_bytes("010"), 8);  // strtol base 0, as Patroni
    EXPECT_EQ(parse_lag_bytes("1.5kB"), 1536);
    EXPECT_EQ(parse_lag_bytes("1e3"), 1000);
    EXPECT_EQ(parse_lag_bytes("0.5"), 0);  // round half to even
    EXPECT_EQ(parse_lag_bytes("-1"), -1);
    EXPECT_EQ(parse_lag_bytes("+7"), 7);
    EXPECT_EQ(parse_lag_bytes("99999999999999999999999"), INT64_MAX);
    for (const char *bad : {"", " ", "abc", "16KB", "16 kb", "1MiB", "MB", "08", "-", "1.MB", "0x"})
        EXPECT_FALSE(parse_lag_bytes(bad).has_value()) << bad;
}

TEST(HealthApi, PostmasterStartTimeFormat) {
    EXPECT_EQ(format_postmaster_start_time(0), "1970-01-01 00:00:00+00:00");
    EXPECT_EQ(format_postmaster_start_time(1'700'000'000), "2023-11-14 22:13:20+00:00");
}
