// http/peer_client: parallel requests with one deadline against a real
// cpp-httplib server on 127.0.0.1, and the /patroni answer parser.
#include "core/no_postgres.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "core/health_api.hpp"
#include "core/snapshot.hpp"
#include "http/peer_client.hpp"

using namespace pgha;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t ms_since(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// A port on 127.0.0.1 that nobody listens on (bound, then closed).
int closed_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0) {
        socklen_t len = sizeof addr;
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len);
        port = ntohs(addr.sin_port);
    }
    ::close(fd);
    return port;
}

NodeSnapshot primary_snapshot() {
    NodeSnapshot s;
    s.scope = "demo";
    s.name = "node1";
    s.version = "0.1.0";
    s.state = "running";
    s.role = "primary";
    s.is_leader = true;
    s.accepts_writes = true;
    s.dcs_ok = true;
    s.dcs_last_seen = 1'700'000'000;
    s.local.state = PgState::Running;
    s.local.accepts_connections = true;
    s.local.in_recovery = false;
    s.local.server_version = 150004;
    s.local.write_lsn = 0x3000060;
    s.local.timeline = 3;
    s.cluster.leader = "node1";
    s.cluster.config_present = true;
    return s;
}

NodeSnapshot replica_snapshot() {
    NodeSnapshot s = primary_snapshot();
    s.name = "node2";
    s.role = "replica";
    s.is_leader = false;
    s.accepts_writes = false;
    s.local.in_recovery = true;
    s.local.replication_state = "streaming";
    s.local.receive_lsn = 0x5000000;
    s.local.replay_lsn = 0x4000000;
    s.tags.nofailover = true;
    s.cluster.leader = "node1";
    s.cluster.config.pause = true;
    return s;
}

class PeerClientTest : public ::testing::Test {
  protected:
    void SetUp() override {
        server_.Get(R"(/echo/(\d+))", [](const httplib::Request &req, httplib::Response &res) {
            const int n = std::stoi(req.matches[1]);
            // Later requests answer first: the replies must still be in request order.
            std::this_thread::sleep_for(std::chrono::milliseconds(200 - 30 * n));
            res.set_content("echo " + std::to_string(n), "text/plain");
        });
        server_.Get("/slow", [this](const httplib::Request &, httplib::Response &res) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait_for(lock, std::chrono::seconds(2), [this] { return stopping_; });  // TearDown cuts it short
            res.set_content("finally", "text/plain");
        });
        server_.Get("/fast", [](const httplib::Request &, httplib::Response &res) {
            res.set_content("quick", "text/plain");
        });
        server_.Post("/failsafe", [this](const httplib::Request &req, httplib::Response &res) {
            std::lock_guard<std::mutex> lock(mu_);
            got_method_ = req.method;
            got_body_ = req.body;
            got_content_type_ = req.get_header_value("Content-Type");
            got_auth_ = req.get_header_value("Authorization");
            res.set_content("Accepted", "text/plain");
        });
        server_.Get("/unavailable", [](const httplib::Request &, httplib::Response &res) {
            res.status = 503;
            res.set_content("{\"state\":\"running\"}", "application/json");
        });
        server_.Get("/redirect", [](const httplib::Request &, httplib::Response &res) {
            res.set_redirect("/fast");
        });
        server_.Get("/big", [](const httplib::Request &, httplib::Response &res) {
            res.set_content(std::string(2 * 1024 * 1024, 'x'), "text/plain");  // with Content-Length
        });
        server_.Get("/big-chunked", [](const httplib::Request &, httplib::Response &res) {
            // No Content-Length: the cap must hold while the body streams in.
            res.set_chunked_content_provider("text/plain", [](size_t offset, httplib::DataSink &sink) {
                if (offset >= 3 * 1024 * 1024) {
                    sink.done();
                    return true;
                }
                const std::string chunk(64 * 1024, 'y');
                return sink.write(chunk.data(), chunk.size());
            });
        });
        server_.Get("/patroni-primary", [](const httplib::Request &, httplib::Response &res) {
            res.set_content(patroni_status_json(primary_snapshot()).dump(), "application/json");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        ASSERT_GT(port_, 0);
        thread_ = std::thread([this] { server_.listen_after_bind(); });  // already listening: no wait needed
    }

    void TearDown() override {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        server_.stop();
        if (thread_.joinable()) thread_.join();
    }

    std::string url(const std::string &path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

    PeerRequest get(const std::string &name, const std::string &path) const {
        PeerRequest r;
        r.name = name;
        r.url = url(path);
        return r;
    }

    httplib::Server server_;
    std::thread thread_;
    int port_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::string got_method_, got_body_, got_content_type_, got_auth_;
};

TEST_F(PeerClientTest, ParallelGetsKeepRequestOrder) {
    std::vector<PeerRequest> reqs;
    for (int i = 0; i < 5; ++i) reqs.push_back(get("n" + std::to_string(i), "/echo/" + std::to_string(i)));
    const auto start = Clock::now();
    const auto replies = http_parallel(reqs, 5000);
    const auto took = ms_since(start);
    ASSERT_EQ(replies.size(), reqs.size());
    for (int i = 0; i < 5; ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(replies[i].name, "n" + std::to_string(i));
        EXPECT_TRUE(replies[i].ok) << replies[i].error;
        EXPECT_EQ(replies[i].status, 200);
        EXPECT_EQ(replies[i].body, "echo " + std::to_string(i));
        EXPECT_EQ(replies[i].error, "");
    }
    // Sequentially this takes 200+170+140+110+80 = 700 ms.
    EXPECT_LT(took, 500) << "requests did not run in parallel";
    EXPECT_GE(replies[0].elapsed_ms, replies[4].elapsed_ms);
}

TEST_F(PeerClientTest, PostSendsBodyContentTypeAndBasicAuth) {
    PeerRequest r = get("node3", "/failsafe");
    r.method = "POST";
    r.body = R"({"name":"node1","conn_url":"postgres://10.0.0.1:5432/postgres"})";
    r.basic_auth = "patroni:s3:cret";  // the password may contain ':'
    r.allow_http_credentials = true;   // plain http test server
    const auto replies = http_parallel({r}, 2000);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_TRUE(replies[0].ok) << replies[0].error;
    EXPECT_EQ(replies[0].status, 200);
    EXPECT_EQ(replies[0].body, "Accepted");
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(got_method_, "POST");
    EXPECT_EQ(got_body_, r.body);
    EXPECT_EQ(got_content_type_, "application/json");
    EXPECT_EQ(got_auth_, "Basic cGF0cm9uaTpzMzpjcmV0");
}

TEST_F(PeerClientTest, SlowPeerTimesOutWithoutDelayingTheOthers) {
    const std::vector<PeerRequest> reqs{get("a", "/fast"), get("slow", "/slow"), get("b", "/fast")};
    const auto start = Clock::now();
    const auto replies = http_parallel(reqs, 300);
    const auto took = ms_since(start);
    ASSERT_EQ(replies.size(), 3u);
    EXPECT_GE(took, 250);
    EXPECT_LT(took, 1000) << "the deadline was not kept";
    EXPECT_TRUE(replies[0].ok) << replies[0].error;
    EXPECT_TRUE(replies[2].ok) << replies[2].error;
    EXPECT_EQ(replies[0].body, "quick");
    EXPECT_LT(replies[0].elapsed_ms, 300);
    EXPECT_LT(replies[2].elapsed_ms, 300);
    EXPECT_EQ(replies[1].name, "slow");
    EXPECT_FALSE(replies[1].ok);
    EXPECT_EQ(replies[1].status, 0);
    EXPECT_EQ(replies[1].body, "");
    EXPECT_FALSE(replies[1].error.empty());
    EXPECT_GE(replies[1].elapsed_ms, 250);
    EXPECT_LT(replies[1].elapsed_ms, 1000);
}

TEST_F(PeerClientTest, ConnectionRefused) {
    PeerRequest r;
    r.name = "gone";
    r.url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/patroni";
    const auto start = Clock::now();
    const auto replies = http_parallel({r, get("up", "/fast")}, 2000);
    EXPECT_LT(ms_since(start), 1000);
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_FALSE(replies[0].ok);
    EXPECT_EQ(replies[0].status, 0);
    EXPECT_FALSE(replies[0].error.empty());
    EXPECT_NE(replies[0].error.find("onnect"), std::string::npos) << replies[0].error;
    EXPECT_TRUE(replies[1].ok) << replies[1].error;
}

TEST_F(PeerClientTest, OversizeBodyIsAnError) {
    PeerRequest small_cap = get("cap", "/fast");
    small_cap.max_body_bytes = 3;  // "quick" is 5 bytes
    const auto replies = http_parallel({get("big", "/big"), get("chunked", "/big-chunked"), small_cap}, 5000);
    ASSERT_EQ(replies.size(), 3u);
    for (const auto &r : replies) {
        SCOPED_TRACE(r.name);
        EXPECT_FALSE(r.ok);
        EXPECT_EQ(r.body, "");
        EXPECT_NE(r.error.find("larger than"), std::string::npos) << r.error;
    }
    EXPECT_NE(replies[0].error.find("1048576"), std::string::npos) << replies[0].error;
}

TEST_F(PeerClientTest, HttpErrorStatusAndRedirectAreAnswersNotFollowed) {
    const auto replies = http_parallel({get("u", "/unavailable"), get("r", "/redirect")}, 2000);
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_TRUE(replies[0].ok) << replies[0].error;
    EXPECT_EQ(replies[0].status, 503);
    EXPECT_EQ(replies[0].body, "{\"state\":\"running\"}");
    EXPECT_TRUE(replies[1].ok) << replies[1].error;
    EXPECT_EQ(replies[1].status, 302);
}

TEST_F(PeerClientTest, ParsesOurOwnPatroniEndpointOverHttp) {
    const auto replies = http_parallel({get("node1", "/patroni-primary")}, 2000);
    ASSERT_EQ(replies.size(), 1u);
    ASSERT_TRUE(replies[0].ok) << replies[0].error;
    const PeerStatus st = parse_patroni_status(replies[0].body);
    EXPECT_TRUE(st.valid) << st.error;
    EXPECT_EQ(st.role, "primary");
    EXPECT_FALSE(st.in_recovery);
    EXPECT_EQ(st.position, 0x3000060u);
    EXPECT_EQ(st.timeline, 3);
    EXPECT_EQ(st.name, "node1");
}

TEST_F(PeerClientTest, ConcurrentCallsFromSeveralThreads) {
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            const auto replies = http_parallel({get("a", "/fast"), get("b", "/fast")}, 2000);
            if (replies.size() == 2 && replies[0].ok && replies[1].ok) ++good;
        });
    for (auto &t : threads) t.join();
    EXPECT_EQ(good.load(), 4);
}

TEST(PeerClient, EmptyRequestList) {
    const auto start = Clock::now();
    EXPECT_TRUE(http_parallel({}, 1000).empty());
    EXPECT_LT(ms_since(start), 100);
}

TEST(PeerClient, InvalidRequestsFailWithoutIo) {
    PeerRequest bad_method;
    bad_method.name = "m";
    bad_method.url = "http://127.0.0.1:1/";
    bad_method.method = "GET /x HTTP/1.1\r\nHost: evil";
    PeerRequest no_url;
    no_url.name = "u";
    PeerRequest ftp;
    ftp.name = "f";
    ftp.url = "ftp://127.0.0.1/file";
    const auto replies = http_parallel({bad_method, no_url, ftp}, 1000);
    ASSERT_EQ(replies.size(), 3u);
    for (const auto &r : replies) {
        SCOPED_TRACE(r.name);
        EXPECT_FALSE(r.ok);
        EXPECT_FALSE(r.error.empty());
    }
    EXPECT_EQ(replies[0].name, "m");
    EXPECT_NE(replies[0].error.find("method"), std::string::npos) << replies[0].error;

    const auto none = http_parallel({ftp}, 0);
    ASSERT_EQ(none.size(), 1u);
    EXPECT_FALSE(none[0].ok);
    EXPECT_NE(none[0].error.find("timeout"), std::string::npos) << none[0].error;
}

// ---- parse_patroni_status ---------------------------------------------------

TEST(ParsePatroniStatus, Patroni30Primary) {
    const PeerStatus st = parse_patroni_status(R"({
        "state": "running", "postmaster_start_time": "2024-01-02 03:04:05.123+00:00",
        "role": "master", "server_version": 150004,
        "xlog": {"location": 50331744}, "timeline": 4,
        "replication": [{"usename": "replicator", "application_name": "pg-2", "client_addr": "10.0.0.2",
                         "state": "streaming", "sync_state": "async", "sync_priority": 0}],
        "dcs_last_seen": 1700000000, "database_system_identifier": "7301234567890123456",
        "patroni": {"version": "3.0.2", "scope": "batman", "name": "pg-1"}})");
    EXPECT_TRUE(st.valid) << st.error;
    EXPECT_EQ(st.error, "");
    EXPECT_EQ(st.role, "primary");
    EXPECT_EQ(st.state, "running");
    EXPECT_FALSE(st.in_recovery);
    EXPECT_EQ(st.position, 50331744u);
    EXPECT_EQ(st.timeline, 4);
    EXPECT_FALSE(st.nofailover);
    EXPECT_FALSE(st.paused);
    EXPECT_EQ(st.dcs_last_seen, 1700000000);
    EXPECT_EQ(st.name, "pg-1");
}

TEST(ParsePatroniStatus, PatroniReplica) {
    const PeerStatus st = parse_patroni_status(R"({
        "state": "running", "role": "replica", "server_version": 150004,
        "xlog": {"received_location": 67108864, "replayed_location": 67109000,
                 "replayed_timestamp": null, "paused": true},
        "timeline": 4, "tags": {"nofailover": true, "clonefrom": true}, "pause": true,
        "cluster_unlocked": true, "watchdog_failed": true, "sync_standby": true,
        "patroni": {"version": "3.0.2", "scope": "batman", "name": "pg-2"}})");
    EXPECT_TRUE(st.valid) << st.error;
    EXPECT_EQ(st.role, "replica");
    EXPECT_TRUE(st.in_recovery);
    EXPECT_EQ(st.position, 67109000u);  // max(received, replayed)
    EXPECT_EQ(st.timeline, 4);
    EXPECT_TRUE(st.nofailover);
    EXPECT_TRUE(st.paused);
    EXPECT_TRUE(st.replay_paused);
    EXPECT_TRUE(st.watchdog_failed);
    EXPECT_TRUE(st.sync_standby);
    EXPECT_EQ(st.name, "pg-2");
}

TEST(ParsePatroniStatus, WalKeyAndFullRangeLsnAndStringTag) {
    const PeerStatus st = parse_patroni_status(
        R"({"role":"replica","wal":{"received_location":18446744073709551615,"replayed_location":1},)"
        R"("tags":{"nofailover":"on"}})");
    EXPECT_TRUE(st.valid) << st.error;
    EXPECT_EQ(st.position, 18446744073709551615ull);
    EXPECT_TRUE(st.nofailover);
    EXPECT_EQ(st.timeline, 0);
}

TEST(ParsePatroniStatus, PrimaryRoleWinsOverXlogShape) {
    const PeerStatus st = parse_patroni_status(R"({"role":"primary","xlog":{"received_location":5}})");
    EXPECT_TRUE(st.valid) << st.error;
    EXPECT_FALSE(st.in_recovery);
}

TEST(ParsePatroniStatus, OurOwnPrimaryAndReplicaBodies) {
    const PeerStatus p = parse_patroni_status(patroni_status_json(primary_snapshot()).dump());
    EXPECT_TRUE(p.valid) << p.error;
    EXPECT_EQ(p.role, "primary");
    EXPECT_EQ(p.state, "running");
    EXPECT_FALSE(p.in_recovery);
    EXPECT_EQ(p.position, 0x3000060u);
    EXPECT_EQ(p.timeline, 3);
    EXPECT_FALSE(p.nofailover);
    EXPECT_FALSE(p.paused);
    EXPECT_EQ(p.name, "node1");
    EXPECT_EQ(p.dcs_last_seen, 1'700'000'000);

    const PeerStatus r = parse_patroni_status(patroni_status_json(replica_snapshot()).dump());
    EXPECT_TRUE(r.valid) << r.error;
    EXPECT_EQ(r.role, "replica");
    EXPECT_TRUE(r.in_recovery);
    EXPECT_EQ(r.position, 0x5000000u);
    EXPECT_EQ(r.timeline, 3);
    EXPECT_TRUE(r.nofailover);
    EXPECT_TRUE(r.paused);
    EXPECT_FALSE(r.replay_paused);
    EXPECT_EQ(r.name, "node2");
}

TEST(ParsePatroniStatus, NotRunningHasNoXlog) {
    NodeSnapshot s = replica_snapshot();
    s.state = "stopped";
    s.local.state = PgState::Stopped;
    const PeerStatus st = parse_patroni_status(patroni_status_json(s).dump());
    EXPECT_FALSE(st.valid);
    EXPECT_NE(st.error.find("xlog"), std::string::npos) << st.error;
    EXPECT_EQ(st.state, "stopped");  // still filled in, for messages
    EXPECT_EQ(st.name, "node2");
}

TEST(ParsePatroniStatus, GarbageAndWrongTypes) {
    const char *bad[] = {
        "",
        "not json",
        "{\"role\": \"replica\", \"xlog\": {",
        "[1, 2, 3]",
        "null",
        "42",
        R"({"role": 1, "xlog": {"location": 5}})",
        R"({"state": ["running"], "xlog": {"location": 5}})",
        R"({"role": "primary", "xlog": {"location": "0/3000060"}})",
        R"({"role": "primary", "xlog": {"location": -1}})",
        R"({"role": "primary", "xlog": {"location": 1.5}})",
        R"({"role": "replica", "xlog": {"received_location": true}})",
        R"({"role": "replica", "xlog": [1]})",
        R"({"role": "replica", "xlog": {"replayed_location": 1}, "timeline": "1"})",
        R"({"role": "replica", "xlog": {"replayed_location": 1}, "timeline": 99999999999})",
        R"({"role": "replica", "xlog": {"replayed_location": 1}, "tags": ["nofailover"]})",
        R"({"role": "replica", "xlog": {"replayed_location": 1}, "pause": "true"})",
        R"({"role": "replica", "xlog": {"replayed_location": 1, "paused": 0}})",
        R"({"role": "replica", "xlog": {"replayed_location": 1}, "patroni": "pg-2"})",
        R"({"role": "replica", "xlog": {"replayed_location": 1}, "patroni": {"name": 2}})",
        R"({"role": "replica", "xlog": {"replayed_location": 1}, "dcs_last_seen": "yesterday"})",
    };
    for (const char *body : bad) {
        SCOPED_TRACE(body);
        const PeerStatus st = parse_patroni_status(body);
        EXPECT_FALSE(st.valid);
        EXPECT_FALSE(st.error.empty());
    }
    // Deep nesting must not blow the stack.
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    EXPECT_FALSE(parse_patroni_status(deep).valid);
}

}  // namespace
