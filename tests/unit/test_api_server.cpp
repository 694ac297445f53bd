// http/api_server: real sockets on 127.0.0.1, cpp-httplib client and raw requests.
#include "core/no_postgres.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "http/api_server.hpp"

using namespace pgha;
using nlohmann::json;

namespace {

// Management requests without credentials (these tests are about the
// transport; test_api_auth.cpp covers the closed default).
ApiServerOptions open_options() {
    ApiServerOptions o;
    o.allow_unauthenticated = true;
    return o;
}

std::int64_t steady_ms() { return snapshot_clock_ms(); }  // the snapshots' clock

SnapshotPtr make_primary(bool accepts_writes = true) {
    auto s = std::make_shared<NodeSnapshot>();
    s->scope = "demo";
    s->name = "node1";
    s->version = "0.1.0";
    s->state = "running";
    s->role = "primary";
    s->is_leader = true;
    s->accepts_writes = accepts_writes;
    s->dcs_ok = true;
    s->loop_steady_ms = steady_ms();
    s->lease_until_steady_ms = s->loop_steady_ms + 3600 * 1000;
    s->local.state = PgState::Running;
    s->local.in_recovery = false;
    s->local.write_lsn = 0x3000060;
    s->local.timeline = 1;
    s->cluster.leader = "node1";
    s->cluster.config_present = true;
    return s;
}

SnapshotPtr make_replica() {
    auto s = std::make_shared<NodeSnapshot>(*make_primary(false));
    s->role = "replica";
    s->is_leader = false;
    s->local.in_recovery = true;
    s->local.replication_state = "streaming";
    s->local.receive_lsn = s->local.replay_lsn = 0x3000060;
    s->cluster.leader = "node2";
    return s;
}

// Sends raw bytes, returns whatever the server answers until it closes the
// connection, a complete response arrives, or 5 s pass. With `closed`, also
// waits up to 1 s after a complete response to see whether the server closes.
std::string raw_request(int port, const std::string &data, bool *closed = nullptr) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return "socket failed";
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return "connect failed";
    }
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server may close before reading everything
        off += static_cast<std::size_t>(n);
    }
    std::string out;
    char buf[4096];
    bool eof = false;
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            eof = n == 0 || errno == ECONNRESET;
            break;
        }
        out.append(buf, static_cast<std::size_t>(n));
        auto end = out.find("\r\n\r\n");
        if (end != std::string::npos) {
            auto cl = out.find("Content-Length: ");
            std::size_t len = cl == std::string::npos ? 0 : std::stoul(out.substr(cl + 16));
            if (out.size() >= end + 4 + len) {
                if (!closed) break;
                timeval shortwait{1, 0};
                ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &shortwait, sizeof shortwait);
                eof = ::recv(fd, buf, sizeof buf, 0) == 0;
                break;
            }
        }
    }
    ::close(fd);
    if (closed) *closed = eof;
    return out;
}

int status_of(const std::string &raw) {
    if (raw.rfind("HTTP/1.", 0) != 0 || raw.size() < 12) return 0;
    return std::stoi(raw.substr(9, 3));
}

// A listening socket on 127.0.0.1 with a kernel-chosen port (no SO_REUSE*).
struct Occupier {
    int fd = -1;
    int port = 0;
    Occupier() {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0 && ::listen(fd, 4) == 0) {
            socklen_t len = sizeof addr;
            ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len);
            port = ntohs(addr.sin_port);
        }
    }
    ~Occupier() {
        if (fd >= 0) ::close(fd);
    }
};

class ApiServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string error;
        ASSERT_TRUE(server.start("127.0.0.1:0", box, error)) << error;
        ASSERT_GT(server.port(), 0);
    }
    httplib::Client client() {
        httplib::Client c("127.0.0.1", server.port());
        c.set_connection_timeout(5, 0);
        c.set_read_timeout(5, 0);
        return c;
    }
    SnapshotBox box;
    ApiServer server{open_options()};
};

}  // namespace

TEST_F(ApiServerTest, AnswersFromTheNewestSnapshot) {
    auto cli = client();
    cli.set_keep_alive(true);

    // before the first HA loop
    auto r = cli.Get("/primary");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(json::parse(r->body)["state"], "starting");

    box.publish(make_primary());
    r = cli.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    EXPECT_EQ(json::parse(r->body)["role"], "primary");

    box.publish(make_primary(/*accepts_writes=*/false));
    r = cli.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);

    box.publish(make_replica());
    r = cli.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    r = cli.Get("/replica?lag=16kB&tag_x=");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);

    r = cli.Options("/read-only");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->body.empty());

    r = cli.Head("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_TRUE(r->body.empty());
    r = cli.Head("/replica");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);

    r = cli.Get("/metrics");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find("patroni_replica{scope=\"demo\",name=\"node1\"} 1\n"), std::string::npos);

    EXPECT_GE(server.requests_served(), 9u);
    EXPECT_TRUE(server.alive());
}

TEST_F(ApiServerTest, HaproxyStyleOptionsOverHttp10) {
    box.publish(make_primary());
    bool closed = false;
    const std::string raw = raw_request(server.port(), "OPTIONS /primary HTTP/1.0\r\n\r\n", &closed);
    EXPECT_EQ(status_of(raw), 200) << raw;
    EXPECT_NE(raw.find("Content-Length: 0"), std::string::npos) << raw;
    EXPECT_TRUE(closed);  // HTTP/1.0 without keep-alive
}

TEST_F(ApiServerTest, MalformedRequestsGet4xxAndTheServerKeepsServing) {
    box.publish(make_primary());
    for (const std::string &bad : {std::string("GARBAGE\r\n\r\n"), std::string("GET /primary HTTP/9.9\r\n\r\n"),
                                  std::string("GET\r\n\r\n"), std::string("\x16\x03\x01\x02\x00\x01\x00\r\n\r\n", 11),
                                  std::string("BREW /coffee HTTP/1.1\r\n\r\n")}) {
        const std::string raw = raw_request(server.port(), bad);  // "" when closed without an answer
        const int st = status_of(raw);
        // an unknown method is well-formed: Patroni's 501; HTTP/9.9: 505
        EXPECT_TRUE((st >= 400 && st < 500) || (st == 501 && bad.rfind("BREW", 0) == 0) ||
                    (st == 505 && bad.find("HTTP/9.9") != std::string::npos) || raw.empty())
            << "request " << bad << " got " << raw;
    }
    // header line beyond cpp-httplib's 8 KiB limit
    {
        const std::string req = "GET /primary HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
        const std::string raw = raw_request(server.port(), req);
        const int st = status_of(raw);
        EXPECT_TRUE((st >= 400 && st < 500) || raw.empty()) << raw.substr(0, 200);
    }
    // request target beyond the URI limit
    {
        const std::string req = "GET /" + std::string(10000, 'p') + " HTTP/1.1\r\nHost: x\r\n\r\n";
        const int st = status_of(raw_request(server.port(), req));
        EXPECT_TRUE(st == 414 || st == 400 || st == 0) << st;
    }
    auto cli = client();
    auto r = cli.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(ApiServerTest, OversizedBodyIs413) {
    box.publish(make_primary());
    auto cli = client();
    auto r = cli.Post("/switchover", std::string(200 * 1024, 'x'), "application/json");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 413);
    r = cli.Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(ApiServerTest, ManagementMethodsAre501AndBodilessPostIsPrompt) {
    box.publish(make_primary());
    auto cli = client();
    auto r = cli.Post("/switchover", "{\"leader\":\"node1\"}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 501);
    EXPECT_TRUE(json::parse(r->body).contains("error"));
    r = cli.Delete("/switchover");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 501);
    r = cli.Patch("/config", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 501);
    r = cli.Put("/config", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 501);

    // No Content-Length: no body, answered at once (not after the read timeout).
    const auto t0 = std::chrono::steady_clock::now();
    const std::string raw = raw_request(server.port(), "POST /reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(raw), 501) << raw;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(ApiServer, ManagementHookRunsOnThreadsWithAllSignalsBlocked) {
    sigset_t before;
    pthread_sigmask(SIG_BLOCK, nullptr, &before);

    SnapshotBox box;
    box.publish(make_primary());
    ApiServer server{open_options()};
    std::atomic<int> checked{0};
    std::atomic<bool> all_blocked{true};
    const bool installed = server.set_management_hook([&](const NodeSnapshot *snap,
                                                          const HttpRequestView &req) -> std::optional<HttpReply> {
        sigset_t mask;
        pthread_sigmask(SIG_BLOCK, nullptr, &mask);
        for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGURG, SIGALRM, SIGCHLD, SIGPIPE})
            if (!sigismember(&mask, sig)) all_blocked = false;
        ++checked;
        if (req.path == "/throw") throw std::runtime_error("boom");
        return HttpReply{202, "text/plain", "accepted " + req.body + " " + (snap ? snap->name : "")};
    });
    ASSERT_TRUE(installed);
    std::string error;
    ASSERT_TRUE(server.start("127.0.0.1:0", box, error)) << error;
    EXPECT_FALSE(server.set_management_hook(ManagementHook()));  // not while running

    // start() restored the caller's signal mask
    sigset_t after;
    pthread_sigmask(SIG_BLOCK, nullptr, &after);
    for (int sig = 1; sig < NSIG; ++sig) EXPECT_EQ(sigismember(&before, sig), sigismember(&after, sig)) << sig;

    httplib::Client cli("127.0.0.1", server.port());
    auto r = cli.Post("/reload", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(r->body, "accepted {} node1");
    r = cli.Post("/throw", "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 500);
    EXPECT_EQ(checked.load(), 2);
    EXPECT_TRUE(all_blocked.load());
    server.stop();
}

TEST(ApiServer, PortInUseIsAnErrorNamingTheAddress) {
    Occupier occupied;
    ASSERT_GT(occupied.port, 0);
    SnapshotBox box;
    ApiServer server;
    std::string error;
    const std::string listen = "127.0.0.1:" + std::to_string(occupied.port);
    EXPECT_FALSE(server.start(listen, box, error));
    EXPECT_NE(error.find(listen), std::string::npos) << error;
    EXPECT_NE(error.find("in use"), std::string::npos) << error;
    EXPECT_FALSE(server.alive());
    server.stop();  // harmless after a failed start
}

TEST(ApiServer, SecondServerOnTheSamePortFails) {
    // cpp-httplib's default socket options include SO_REUSEPORT, which would
    // let two servers share the port silently.
    SnapshotBox box;
    ApiServer first, second;
    std::string error;
    ASSERT_TRUE(first.start("127.0.0.1:0", box, error)) << error;
    const std::string listen = "127.0.0.1:" + std::to_string(first.port());
    EXPECT_FALSE(second.start(listen, box, error));
    EXPECT_NE(error.find(listen), std::string::npos) << error;
}

TEST(ApiServer, UnparsableAddresses) {
    SnapshotBox box;
    for (const char *bad : {"localhost", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:99999", "[::1", "[::1]8008",
                            "[]:8008", ""}) {
        ApiServer server;
        std::string error;
        EXPECT_FALSE(server.start(bad, box, error)) << bad;
        EXPECT_NE(error.find(std::string("\"") + bad + "\""), std::string::npos) << error;
    }
    std::string host, error;
    int port = -1;
    ASSERT_TRUE(ApiServer::parse_listen_address("[::]:8008", host, port, error));
    EXPECT_EQ(host, "::");
    EXPECT_EQ(port, 8008);
    ASSERT_TRUE(ApiServer::parse_listen_address("*:8008", host, port, error));
    EXPECT_EQ(host, "");
    ASSERT_TRUE(ApiServer::parse_listen_address(":8009", host, port, error));
    EXPECT_EQ(host, "");
    EXPECT_EQ(port, 8009);
    ASSERT_TRUE(ApiServer::parse_listen_address("node1.example:8008", host, port, error));
    EXPECT_EQ(host, "node1.example");
}

TEST(ApiServer, StopIsIdempotentAndTheServerCanRestart) {
    SnapshotBox box;
    box.publish(make_primary());
    ApiServer server;
    std::string error;
    server.stop();  // before start
    ASSERT_TRUE(server.start("127.0.0.1:0", box, error)) << error;
    const int port = server.port();
    EXPECT_FALSE(server.start("127.0.0.1:0", box, error));  // already running
    server.stop();
    server.stop();
    EXPECT_FALSE(server.alive());
    EXPECT_EQ(server.port(), 0);
    // the port is released
    httplib::Client cli("127.0.0.1", port);
    cli.set_connection_timeout(1, 0);
    EXPECT_FALSE(cli.Get("/primary"));
    ASSERT_TRUE(server.start("127.0.0.1:" + std::to_string(port), box, error)) << error;
    auto r = httplib::Client("127.0.0.1", port).Get("/primary");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST(ApiServer, ImmediateStopAfterStart) {
    SnapshotBox box;
    for (int i = 0; i < 20; ++i) {
        ApiServer server;
        std::string error;
        ASSERT_TRUE(server.start("127.0.0.1:0", box, error)) << error;
        server.stop();
    }
}

TEST(ApiServer, StopDoesNotWaitLongForIdleKeepAliveConnections) {
    SnapshotBox box;
    box.publish(make_primary());
    ApiServerOptions options;
    options.keep_alive_timeout_s = 1;
    ApiServer server(options);
    std::string error;
    ASSERT_TRUE(server.start("127.0.0.1:0", box, error)) << error;
    httplib::Client cli("127.0.0.1", server.port());
    cli.set_keep_alive(true);
    ASSERT_TRUE(cli.Get("/primary"));  // the connection now idles in the server
    const auto t0 = std::chrono::steady_clock::now();
    server.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

TEST(ApiServer, Ipv6Loopback) {
    SnapshotBox box;
    box.publish(make_primary());
    ApiServer server;
    std::string error;
    if (!server.start("[::1]:0", box, error)) GTEST_SKIP() << "no IPv6 loopback: " << error;
    httplib::Client cli("::1", server.port());
    auto r = cli.Get("/primary");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
}

TEST(ApiServer, ConcurrentClientsWhileSnapshotsChange) {
    SnapshotBox box;
    box.publish(make_primary());
    ApiServer server;
    std::string error;
    ASSERT_TRUE(server.start("127.0.0.1:0", box, error)) << error;
    const int port = server.port();
    std::atomic<bool> stop{false};
    std::thread publisher([&] {
        bool primary = true;
        while (!stop) {
            box.publish(primary ? make_primary() : make_replica());
            primary = !primary;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    std::atomic<int> ok{0}, inconsistent{0}, failed{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 6; ++t) {
        clients.emplace_back([&] {
            httplib::Client cli("127.0.0.1", port);
            cli.set_keep_alive(true);
            for (int i = 0; i < 150; ++i) {
                auto r = cli.Get("/primary");
                if (!r) {
                    ++failed;
                    continue;
                }
                // status and body come from the same snapshot
                const std::string role = json::parse(r->body)["role"];
                if ((r->status == 200) != (role == "primary")) ++inconsistent;
                ++ok;
            }
        });
    }
    for (auto &c : clients) c.join();
    stop = true;
    publisher.join();
    EXPECT_EQ(failed.load(), 0);
    EXPECT_EQ(inconsistent.load(), 0);
    EXPECT_EQ(ok.load(), 6 * 150);
    EXPECT_GE(server.requests_served(), 900u);
}
